// Package enroll owns the enrollment ceremony: enroll secrets, the checks on
// a device's CSR and facts, issuing its certificate, and renewal. It speaks in
// gRPC statuses because its errors go straight to the agent.
package enroll

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"regexp"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/clearance/clearance/pkg/keyrotation"
	"github.com/clearance/clearance/pkg/logsample"
	"github.com/clearance/clearance/pkg/printable"
	agentv1 "github.com/clearance/clearance/proto/gen/clearance/agent/v1"
	"github.com/clearance/clearance/verifier/ca"
	"github.com/clearance/clearance/verifier/ratelimit"
	"github.com/clearance/clearance/verifier/storage"
)

// DefaultCertLifetime is how long a device certificate lasts unless configured.
const DefaultCertLifetime = 30 * 24 * time.Hour

// Issuer issues device certificates; *ca.Authority implements it.
type Issuer interface {
	IssueDeviceCert(csr *x509.CertificateRequest, deviceID string, lifetime time.Duration) (*x509.Certificate, error)
	Chain() [][]byte
}

var _ Issuer = (*ca.Authority)(nil)

// Admission policies for new devices (--enroll-approval).
const (
	// AdmitAuto enrolls every new device that presents a valid secret.
	AdmitAuto = "auto"
	// AdmitKnown enrolls new devices whose serial number is on the known
	// list; the others wait for approval.
	AdmitKnown = "known"
	// AdmitManual holds every new device for approval.
	AdmitManual = "manual"
)

// CheckAdmission reports whether policy is one of the admission policies.
func CheckAdmission(policy string) error {
	switch policy {
	case AdmitAuto, AdmitKnown, AdmitManual:
		return nil
	}
	return fmt.Errorf("enroll approval %q is not one of auto, known, manual", policy)
}

// Why a request waits (EnrollmentPending.reason).
const (
	PendingUnprovenKey   = "unproven_key"
	PendingUnknownSerial = "unknown_serial"
	PendingManual        = "manual"
	// PendingSerialEnrolled: a device already enrolled on the serial (a
	// revoked one included); under known, the serial is on the list.
	PendingSerialEnrolled = "serial_enrolled"
	// PendingRevokedDevice: the hardware UUID is a revoked device's, and
	// the request presents a new key. Whatever the admission policy, only
	// the security team brings a revoked Mac back: approve only if it is
	// back in your hands. Approving reinstates the device.
	PendingRevokedDevice = "revoked_device"
)

// Default bounds on the requests that wait at once (storage.PendingLimits):
// 4 per Mac, 50 per source address (an IPv6 /64), 10,000 in all; a new
// request over a bound evicts the oldest the bound counts. A request not
// asked again for 14 days is removed (a waiting agent asks every 30
// seconds). At most DefaultMaxRejected rejected requests are kept.
var DefaultPendingLimits = storage.PendingLimits{PerDevice: 4, PerSource: 50, Total: 10000, MaxAge: DefaultPendingMaxAge,
	Rejected: DefaultMaxRejected}

// DefaultMaxRejected bounds the rejected requests kept, the oldest
// rejection going first: ten times the waiting bound, so that rejecting a
// full queue of a flood (10,000) nine times over still keeps every
// rejection made before, while the rows stay bounded (a request is a few
// hundred bytes, at most about 2 KB with every fact at its limit: 100,000
// is some 40 MB, at most about 200 MB). A rejection removed so fails safe:
// its key asking again is decided afresh, as a request never rejected.
const DefaultMaxRejected = 100000

// DefaultPendingMaxAge is how long a request waits without being asked
// again before it is removed.
const DefaultPendingMaxAge = 14 * 24 * time.Hour

// DefaultRetryAfter is the poll interval the verifier suggests to an agent
// whose request waits.
const DefaultRetryAfter = 30 * time.Second

// DefaultIssueLimit bounds the certificates one enrolled device's own
// requests are issued, renewals, re-enrollments with its key and key
// rotations together: 4 in any hour. Each issued certificate is a certs
// row, an audit row and an info line, some 1.5 KB; so one device can make
// the verifier write at most about 6 KB an hour (some 150 KB a day, the
// certificates swept once they expire and are superseded), however fast
// it asks. A genuine agent renews at two thirds of its certificate's life
// (at least 40 minutes: --device-cert-lifetime is at least an hour), so
// four leave room for a lost certificate and a rotation besides. Past the
// limit, a renewal or a re-enrollment with the device's key is answered
// with its current certificate, which writes nothing; a rotation is
// refused as RESOURCE_EXHAUSTED with when to retry.
var DefaultIssueLimit = storage.IssueLimit{Certs: 4, Per: time.Hour}

// Service runs enrollments and renewals.
type Service struct {
	Store        storage.Store
	CA           Issuer
	CertLifetime time.Duration
	// Admission is the policy for new devices: AdmitAuto (the default),
	// AdmitKnown or AdmitManual. Re-enrollment of a known hardware UUID
	// needs proof of its current key whatever the policy.
	Admission string
	// PendingLimits bound the requests that wait (DefaultPendingLimits
	// when zero).
	PendingLimits storage.PendingLimits
	// RetryAfter is suggested to waiting agents (DefaultRetryAfter when
	// zero).
	RetryAfter time.Duration
	// IssueLimit bounds the certificates one device's own requests are
	// issued (DefaultIssueLimit when zero).
	IssueLimit storage.IssueLimit
	Now        func() time.Time
	Logger     *slog.Logger

	// pendingLog samples the log lines of new waiting requests: anyone
	// with a secret can make them.
	pendingLog     logsample.Sample
	pendingLogOnce sync.Once
}

// pendingLogEvery is how often a new waiting request is logged at warn; the
// others in between are logged at debug, and counted in the next line.
const pendingLogEvery = 10 * time.Second

func (s *Service) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// CertLimit is the bound in force on the certificates one device is issued.
func (s *Service) CertLimit() storage.IssueLimit {
	if s.IssueLimit == (storage.IssueLimit{}) {
		return DefaultIssueLimit
	}
	return s.IssueLimit
}

// Limits are the bounds in force on waiting requests.
func (s *Service) Limits() storage.PendingLimits {
	if s.PendingLimits == (storage.PendingLimits{}) {
		return DefaultPendingLimits
	}
	return s.PendingLimits
}

func (s *Service) lifetime() time.Duration {
	if s.CertLifetime > 0 {
		return s.CertLifetime
	}
	return DefaultCertLifetime
}

// Outcome labels for metrics and logs.
const (
	OutcomeEnrolled   = "enrolled"
	OutcomeReenrolled = "reenrolled"
	// OutcomePending: the request waits for approval.
	OutcomePending = "pending"
	// OutcomeRenewed: Renew issued a new certificate.
	OutcomeRenewed = "renewed"
	// OutcomeCurrentCert: the device was issued as many certificates as
	// IssueLimit allows lately, and a renewal or a re-enrollment with its
	// key was answered with the certificate it has, writing nothing.
	OutcomeCurrentCert = "current_cert"
	// OutcomeTooManyCerts: the same, for a request that the current
	// certificate cannot answer (a rotation): refused, RESOURCE_EXHAUSTED.
	OutcomeTooManyCerts = "too_many_certs"
)

// secretRefusal maps a refused secret to its outcome and status: each
// reason its own, so the agent's log and the verifier's metrics say which.
func secretRefusal(err error) (string, error, bool) {
	switch {
	case errors.Is(err, ErrSecretInvalid):
		return "bad_secret", status.Error(codes.Unauthenticated, "enroll secret is not valid"), true
	case errors.Is(err, ErrSecretRevoked), errors.Is(err, storage.ErrSecretRevoked):
		return "revoked_secret", status.Error(codes.Unauthenticated, "enroll secret has been revoked; ask your administrator for a current one"), true
	case errors.Is(err, ErrSecretExpired), errors.Is(err, storage.ErrSecretExpired):
		return "expired_secret", status.Error(codes.Unauthenticated, "enroll secret has expired; ask your administrator for a current one"), true
	case errors.Is(err, ErrSecretExhausted), errors.Is(err, storage.ErrSecretExhausted):
		return "exhausted_secret", status.Error(codes.Unauthenticated, "enroll secret has been used as many times as it may be; ask your administrator for a current one"), true
	}
	return "", nil, false
}

// Enroll checks an enrollment request and issues the device's certificate,
// or records it as waiting for approval. It returns the response, an
// outcome label for metrics, and a gRPC status error on refusal (a waiting
// request is FAILED_PRECONDITION with an EnrollmentPending detail). A
// refused enrollment changes nothing.
func (s *Service) Enroll(ctx context.Context, req *agentv1.EnrollRequest) (*agentv1.EnrollResponse, string, error) {
	now := s.now()

	// 1. The secret: unknown and wrong look the same from outside. One
	// that expired or ran out still serves the holder of the device's
	// current key (step 5); anything else it refuses.
	secret, err := CheckSecret(ctx, s.Store, req.GetEnrollSecret(), now)
	lapsed := err
	if errors.Is(err, ErrSecretExpired) || errors.Is(err, ErrSecretExhausted) {
		err = nil
	}
	if outcome, st, ok := secretRefusal(err); ok {
		return nil, outcome, st
	} else if err != nil {
		return nil, "internal", s.internal("checking enroll secret", err)
	}

	// 2. The CSR: ECDSA P-256/P-384 with a valid self-signature, which
	// proves the requester holds its key.
	csr, err := ca.ParseCSR(req.GetCsr())
	if err != nil {
		return nil, "bad_csr", status.Errorf(codes.InvalidArgument, "certificate request rejected: %v", err)
	}
	if n := len(req.GetKeyProof()); n > keyrotation.MaxProofSize {
		return nil, "bad_proof", status.Errorf(codes.InvalidArgument, "key_proof is %d bytes; the limit is %d", n, keyrotation.MaxProofSize)
	}

	// 3. The facts.
	facts := req.GetFacts()
	if err := CheckFacts(facts); err != nil {
		return nil, "bad_facts", status.Errorf(codes.InvalidArgument, "device facts rejected: %v", err)
	}
	// One Mac, one spelling: every lookup, record and log line uses the
	// canonical UUID, so a Mac cannot pass for another by changing case.
	facts = proto.CloneOf(facts)
	facts.HardwareUuid = storage.CanonicalHardwareUUID(facts.GetHardwareUuid())
	key := ca.CSRPublicKeyDER(csr)

	// 4. A key the security team rejected for this Mac is refused before
	// anything could admit it (storage refuses it again at the commit).
	switch p, err := s.Store.FindEnrollmentRequest(ctx, facts.GetHardwareUuid(), key); {
	case err == nil && p.Rejected():
		return nil, "rejected", rejectedStatus(p.ID)
	case err != nil && !errors.Is(err, storage.ErrNotFound):
		return nil, "internal", s.internal("looking up enrollment requests", err)
	}

	// 5. Admission. Known hardware keeps its device id and history, and
	// its key is replaced only on proof of the current one: a CSR for that
	// key (a lost certificate, or the approved key collecting its
	// certificate) or the current key's signature over this CSR (a
	// rotation). Anything else waits for the security team, and the
	// current enrollment keeps working meanwhile. A new device is
	// admitted by policy.
	deviceID, reenroll, proof := "", false, ""
	checked := &storage.Checked{}
	existing, err := s.Store.GetDeviceByHardwareUUID(ctx, facts.GetHardwareUuid())
	heldBefore := false
	if err == nil && existing.Revoked() && !bytes.Equal(key, existing.PublicKey) {
		if heldBefore, err = s.Store.DeviceHadKey(ctx, existing.ID, key); err != nil {
			return nil, "internal", s.internal("reading the device's keys", err)
		}
	}
	switch {
	case err == nil && existing.Revoked() && (heldBefore || bytes.Equal(key, existing.PublicKey)):
		// The key a revocation cut off never comes back, not even by
		// approval: a stolen Mac's key is what revocation is for; nor does
		// one the Mac held before it (rotated away from, and perhaps
		// still on the Mac).
		return nil, "revoked_device", status.Errorf(codes.PermissionDenied,
			"device %s (hardware UUID %s) is revoked, and a key it held cannot enroll again; to bring this Mac back, make it a new key (clearance-agent rotate-key) and have the security team approve its request", existing.ID, facts.GetHardwareUuid())
	case err == nil && existing.Revoked():
		// A new key for a revoked Mac waits for the security team, under
		// any policy and whatever it proves (a rotation proof is the
		// revoked key's signature), and spends no use until approved.
		if lapsed != nil {
			break
		}
		return s.pend(ctx, facts, key, secret, existing, PendingRevokedDevice, now)
	case err == nil:
		deviceID, reenroll = existing.ID, true
		checked.Key = existing.PublicKey
		switch {
		case bytes.Equal(key, existing.PublicKey):
			// The key holder: an expired or used-up secret is no reason
			// to refuse it (nor does it spend a use).
			proof, lapsed = "same_key", nil
		case len(req.GetKeyProof()) > 0 && keyrotation.Verify(existing.PublicKey, req.GetCsr(), req.GetKeyProof()) == nil:
			// The key holder too, moving to a new key: the device keeps
			// its enrollment, and no use is spent.
			proof, lapsed = "rotation", nil
		case lapsed != nil:
		default:
			// A key that proves nothing waits, unless the security team
			// said this Mac would be wiped and set up again, and it is
			// the same Mac by its serial number too.
			expected, err := s.reinstallExpected(ctx, existing, facts, now)
			if err != nil {
				return nil, "internal", s.internal("reading the device's expected reinstall", err)
			}
			if !expected {
				return s.pend(ctx, facts, key, secret, existing, PendingUnprovenKey, now)
			}
			proof = "reinstall_expected"
			checked.Reinstall = now
		}
		// The key proves the hardware UUID, not a serial number: a Mac's
		// serial does not change with its board, and the known list, the
		// Cloudflare match and the operator's inventory rely on it. A
		// re-enrollment that reports another one is refused, and the
		// current enrollment stays as it is.
		//
		// One exception: a Mac that enrolled with no Apple-style serial
		// (osquery returned none) re-enrolls reporting one, and takes it,
		// once, if the policy would admit a new device on it (auto: no
		// device has it; known: listed too). Until then Cloudflare could
		// match it only by hostname, and its real serial was anyone's to
		// claim. Otherwise (manual, where no approver has seen that serial;
		// a serial another device has) it re-enrolls keeping none.
		if got := storage.StoredSerial(facts.GetSerialNumber()); proof != "" && got != existing.SerialNumber {
			if storage.CanonicalSerial(existing.SerialNumber) == "" && storage.CanonicalSerial(got) != "" {
				reason, serial, err := s.admitNew(ctx, facts)
				if err != nil {
					return nil, "internal", s.internal("checking the device's serial number", err)
				}
				if reason == "" && serial != "" {
					checked.Serial = serial
				}
				break
			}
			return nil, "serial_changed", status.Errorf(codes.PermissionDenied,
				"serial number %q is not the %q device %s (hardware UUID %s) enrolled with: a Mac's serial number cannot change by re-enrolling; the enrollment is unchanged",
				logsample.Clip(facts.GetSerialNumber()), logsample.Clip(existing.SerialNumber), existing.ID, facts.GetHardwareUuid())
		}
	case errors.Is(err, storage.ErrNotFound):
		if lapsed != nil {
			break
		}
		deviceID = NewDeviceID()
		reason, serial, err := s.admitNew(ctx, facts)
		if err != nil {
			return nil, "internal", s.internal("checking the device's serial number", err)
		} else if reason != "" {
			return s.pend(ctx, facts, key, secret, storage.Device{}, reason, now)
		}
		checked.Serial = serial
	default:
		return nil, "internal", s.internal("looking up hardware UUID", err)
	}
	if outcome, st, ok := secretRefusal(lapsed); ok {
		return nil, outcome, st
	}

	// 6. Issue, then commit device, certificate and audit in one
	// transaction. A re-enrollment is the device's own request, bounded
	// by IssueLimit: checked first as a read, so that a flood is answered
	// without taking the write lock, and again as it commits.
	cert, err := s.CA.IssueDeviceCert(csr, deviceID, s.lifetime())
	if err != nil {
		return nil, "internal", s.internal("issuing device certificate", err)
	}
	limit := s.CertLimit()
	if reenroll {
		if err := s.Store.CheckCertLimit(ctx, deviceID, cert.NotBefore, limit); err != nil {
			return s.reenrollOverLimit(ctx, existing, key, proof, err, now)
		}
	}
	action := "device.enroll"
	if reenroll {
		action = "device.reenroll"
	}
	facts0 := fmt.Sprintf("hardware UUID %s, serial %q, enroll secret %s, certificate %s", facts.GetHardwareUuid(), logsample.Clip(facts.GetSerialNumber()), secret.ID, ca.SerialHex(cert))
	detail := facts0
	if proof != "" {
		detail += ", proof " + proof
	}
	var collect *storage.AuditEvent
	if proof == "same_key" {
		// If the device still has no certificate as this commits, it is
		// the approved key collecting its first: the approval was the
		// enrollment, audited as such; storage decides, under its lock.
		collect = &storage.AuditEvent{At: now, Actor: "agent", Action: "device.collect", Detail: facts0 + ", proof approved_key"}
	}
	dev := storage.Device{
		ID:           deviceID,
		HardwareUUID: facts.GetHardwareUuid(),
		SerialNumber: facts.GetSerialNumber(),
		Model:        facts.GetModel(),
		OSName:       facts.GetOsName(),
		OSVersion:    facts.GetOsVersion(),
		Hostname:     facts.GetHostname(),
		Platform:     facts.GetPlatform(),
		AgentVersion: facts.GetAgentVersion(),
		PublicKey:    key,
		CertSerial:   ca.SerialHex(cert),
		CertNotAfter: cert.NotAfter,
		EnrolledAt:   now,
	}
	stored, reenrolled, err := s.Store.EnrollDevice(ctx, storage.Enrollment{
		Device:   dev,
		Cert:     storage.Cert{Serial: ca.SerialHex(cert), DeviceID: deviceID, Kind: "device", NotBefore: cert.NotBefore, NotAfter: cert.NotAfter, DER: cert.Raw},
		SecretID: secret.ID,
		Audit:    storage.AuditEvent{At: now, Actor: "agent", Action: action, Detail: detail},
		Collect:  collect,
		Checked:  checked,
		Limit:    limit,
	})
	if outcome, st, ok := secretRefusal(err); ok {
		return nil, outcome, st
	}
	switch {
	case errors.Is(err, storage.ErrTooManyCerts):
		return s.reenrollOverLimit(ctx, existing, key, proof, err, now)
	case errors.Is(err, storage.ErrDeviceRevoked):
		return nil, "revoked_device", status.Errorf(codes.PermissionDenied, "device with hardware UUID %s is revoked and cannot re-enroll", facts.GetHardwareUuid())
	case errors.Is(err, storage.ErrRequestRejected):
		return nil, "rejected", rejectedStatus("")
	case errors.Is(err, storage.ErrReinstallNotExpected):
		// Taken back, or past, while the request was checked: it waits,
		// as any other unproven key.
		return s.pend(ctx, facts, key, secret, existing, PendingUnprovenKey, now)
	case errors.Is(err, storage.ErrKeyReplaced), errors.Is(err, storage.ErrNotFound), errors.Is(err, storage.ErrSerialEnrolled):
		// The device appeared, or changed keys, between the check and the
		// commit: the next request is decided afresh.
		return nil, "conflict", status.Error(codes.Aborted, "this device's enrollment changed while the request was checked; retry")
	case err != nil:
		return nil, "internal", s.internal("storing enrollment", err)
	case stored.ID != deviceID:
		// Two enrollments of the same new hardware raced; the certificate
		// names the loser's id. Nothing usable was stored for it.
		return nil, "conflict", status.Error(codes.Aborted, "another enrollment for this hardware UUID finished first; retry")
	}
	outcome := OutcomeEnrolled
	if reenrolled {
		outcome = OutcomeReenrolled
	}
	s.log().Info("device enrolled", "device_id", stored.ID, "hardware_uuid", stored.HardwareUUID,
		"reenrolled", reenrolled, "proof", proof, "enrollments", stored.Enrollments, "secret_id", secret.ID, "cert_serial", dev.CertSerial)
	return &agentv1.EnrollResponse{
		DeviceId:    stored.ID,
		Certificate: cert.Raw,
		CaChain:     s.CA.Chain(),
		NotAfter:    timestamppb.New(cert.NotAfter),
		// Sent as late as possible: the agent takes its clock offset from it.
		VerifierTime: timestamppb.New(s.now()),
	}, outcome, nil
}

// reinstallExpected reports whether an unproven key for the enrolled,
// unrevoked device d is admitted by a reinstall the security team expects
// now (storage.DeviceStore.ExpectReinstall): only for the serial number d
// enrolled with, an Apple-style one, as serial numbers are stored (trimmed,
// in capitals).
func (s *Service) reinstallExpected(ctx context.Context, d storage.Device, facts *agentv1.DeviceFacts, now time.Time) (bool, error) {
	if storage.CanonicalSerial(d.SerialNumber) == "" || storage.StoredSerial(facts.GetSerialNumber()) != d.SerialNumber {
		return false, nil
	}
	until, err := s.Store.ReinstallExpected(ctx, d.ID)
	if err != nil {
		return false, err
	}
	return now.Before(until), nil
}

// admitNew returns "" when policy admits a new device, else why it waits;
// also the canonical serial it was admitted on, which must still be free
// when the enrollment commits.
//
// No policy admits a new device on a serial number that an enrolled one
// has, revoked or not: Cloudflare names Macs by serial number, and a made-up
// hardware UUID claiming a revoked Mac's serial (anyone with an enroll
// secret can send one, a thief from the stolen Mac's disk among them) would
// otherwise be the one unrevoked device it matches, and score the stolen
// Mac by its own posture; claiming an unrevoked Mac's serial would leave it
// unscored. A Mac whose logic board was replaced (a new hardware UUID, the
// same serial) waits for the security team too.
func (s *Service) admitNew(ctx context.Context, facts *agentv1.DeviceFacts) (reason, serial string, err error) {
	switch s.Admission {
	case AdmitAuto, "":
		// A Mac without an Apple-style serial claims none, and Cloudflare
		// cannot match it by one.
		serial := storage.CanonicalSerial(facts.GetSerialNumber())
		if serial == "" {
			return "", "", nil
		}
		return s.serialUnclaimed(ctx, serial)
	case AdmitKnown:
		// Only an exact Apple-style serial (letters and digits) can match:
		// spaces, punctuation and look-alike characters never do.
		serial := storage.CanonicalSerial(facts.GetSerialNumber())
		if serial == "" {
			return PendingUnknownSerial, "", nil
		}
		// A serial admits one Mac, listed or not: a claim on an enrolled
		// one says so first (as the listing and the approval see it), so
		// that the reason does not change between asks.
		reason, admitted, err := s.serialUnclaimed(ctx, serial)
		if err != nil || reason != "" {
			return reason, "", err
		}
		_, err = s.Store.GetKnownDevice(ctx, serial)
		switch {
		case errors.Is(err, storage.ErrNotFound):
			return PendingUnknownSerial, "", nil
		case err != nil:
			return "", "", err
		}
		return "", admitted, nil
	default:
		// AdmitManual, and anything unexpected: fail closed. A request on
		// an enrolled serial says so, whatever the policy: the approver
		// must see that it claims another device's (a stolen Mac's).
		if serial := storage.CanonicalSerial(facts.GetSerialNumber()); serial != "" {
			if reason, _, err := s.serialUnclaimed(ctx, serial); err != nil || reason != "" {
				return reason, "", err
			}
		}
		return PendingManual, "", nil
	}
}

// serialUnclaimed admits a new device on serial unless a device, revoked
// or not, is enrolled on it: another machine claiming an enrolled Mac's
// serial waits for the security team, also once that Mac is revoked (a lost
// or stolen Mac's serial is not free for whoever holds the secret).
func (s *Service) serialUnclaimed(ctx context.Context, serial string) (reason, admitted string, err error) {
	_, err = s.Store.GetDeviceBySerial(ctx, serial)
	switch {
	case err == nil:
		return PendingSerialEnrolled, "", nil
	case errors.Is(err, storage.ErrNotFound):
		return "", serial, nil
	default:
		return "", "", err
	}
}

func rejectedStatus(requestID string) error {
	if requestID == "" {
		return status.Error(codes.PermissionDenied, "the security team rejected this key for this Mac; it cannot enroll")
	}
	return status.Errorf(codes.PermissionDenied, "enrollment request %s was rejected by the security team; this key cannot enroll", requestID)
}

// sourceOf is the request's peer address (without its port) and the
// network the per-source limit counts it under.
func sourceOf(ctx context.Context) (addr, network string) {
	p, ok := peer.FromContext(ctx)
	if !ok || p.Addr == nil {
		return "", ""
	}
	addr = p.Addr.String()
	if host, _, err := net.SplitHostPort(addr); err == nil {
		addr = host
	}
	if a, err := netip.ParseAddr(addr); err == nil {
		return addr, ratelimit.Key(a).String()
	}
	return addr, addr
}

// pend records (or refreshes) the request as waiting for approval and
// answers with the status that says so. dev is the device that holds the
// hardware UUID (zero for none): the state the request is made against.
func (s *Service) pend(ctx context.Context, facts *agentv1.DeviceFacts, key []byte, secret storage.EnrollSecret, dev storage.Device, reason string, now time.Time) (*agentv1.EnrollResponse, string, error) {
	source, network := sourceOf(ctx)
	p, err := s.Store.RequestEnrollment(ctx, storage.PendingEnrollment{
		ID:              NewDeviceID(),
		HardwareUUID:    facts.GetHardwareUuid(),
		SerialNumber:    facts.GetSerialNumber(),
		Model:           facts.GetModel(),
		OSName:          facts.GetOsName(),
		OSVersion:       facts.GetOsVersion(),
		Hostname:        facts.GetHostname(),
		Platform:        facts.GetPlatform(),
		AgentVersion:    facts.GetAgentVersion(),
		PublicKey:       key,
		SecretID:        secret.ID,
		DeviceID:        dev.ID,
		DeviceKey:       dev.PublicKey,
		DeviceRevokedAt: dev.RevokedAt,
		Reason:          reason,
		Source:          source,
		SourceNet:       network,
		LastRequestAt:   now,
	}, s.Limits(), storage.AuditEvent{At: now, Actor: "agent", Action: "device.enroll_pending", DeviceID: dev.ID,
		Detail: fmt.Sprintf("hardware UUID %s, serial %q, enroll secret %s, reason %s, key %s, from %s",
			facts.GetHardwareUuid(), logsample.Clip(facts.GetSerialNumber()), secret.ID, reason, KeyFingerprint(key), source)})
	switch {
	case errors.Is(err, storage.ErrRequestRejected):
		return nil, "rejected", rejectedStatus(p.ID)
	case errors.Is(err, storage.ErrDeviceRevoked):
		return nil, "revoked_device", status.Errorf(codes.PermissionDenied, "device with hardware UUID %s is revoked, and its key cannot enroll again", facts.GetHardwareUuid())
	case errors.Is(err, storage.ErrKeyReplaced):
		return nil, "conflict", status.Error(codes.Aborted, "this device's enrollment changed while the request was checked; retry")
	case errors.Is(err, storage.ErrTooManyPending):
		return nil, "too_many_pending", status.Error(codes.ResourceExhausted, "too many enrollment requests wait for approval; try again later")
	case err != nil:
		return nil, "internal", s.internal("recording enrollment request", err)
	}
	retry := s.RetryAfter
	if retry <= 0 {
		retry = DefaultRetryAfter
	}
	if p.Requests == 1 {
		s.pendingLogOnce.Do(func() { s.pendingLog.Every = pendingLogEvery })
		attrs := []any{"request_id", p.ID, "reason", reason, "device_id", dev.ID,
			"hardware_uuid", p.HardwareUUID, "serial", logsample.Clip(p.SerialNumber), "hostname", logsample.Clip(p.Hostname),
			"secret_id", secret.ID, "source", source, "key_fingerprint", KeyFingerprint(key)}
		if ok, skipped := s.pendingLog.Take(s.now()); ok {
			s.log().Warn("enrollment waits for approval", append(attrs, "others_not_logged", skipped)...)
		} else {
			s.log().Debug("enrollment waits for approval", attrs...)
		}
	}
	st, err := status.New(codes.FailedPrecondition,
		fmt.Sprintf("enrollment waits for approval by the security team (request %s, %s)", p.ID, reason)).
		WithDetails(&agentv1.EnrollmentPending{
			RequestId: p.ID, Reason: reason, RequestedAt: timestamppb.New(p.RequestedAt), RetryAfter: durationpb.New(retry),
		})
	if err != nil {
		return nil, "internal", s.internal("answering a waiting request", err)
	}
	return nil, OutcomePending, st.Err()
}

// KeyFingerprint is a device key's SHA-256 (PKIX DER) in lowercase hex, as
// the admin API and `clearance-agent status` show it.
func KeyFingerprint(pkix []byte) string { return storage.KeyFingerprint(pkix) }

// Renew issues a new certificate to an authenticated device for the key it
// enrolled with. It returns an outcome label for metrics and logs, like
// Enroll. Past IssueLimit it answers with the device's current certificate
// (OutcomeCurrentCert): a renewal repeated because its answer was lost
// gets the certificate it was issued, and a flood writes nothing.
func (s *Service) Renew(ctx context.Context, dev storage.Device, req *agentv1.RenewRequest) (*agentv1.RenewResponse, string, error) {
	now := s.now()
	csr, err := ca.ParseCSR(req.GetCsr())
	if err != nil {
		return nil, "bad_csr", status.Errorf(codes.InvalidArgument, "certificate request rejected: %v", err)
	}
	key := ca.CSRPublicKeyDER(csr)
	if !bytes.Equal(key, dev.PublicKey) {
		return nil, "wrong_key", status.Error(codes.PermissionDenied, "renewal must be for the device's enrolled key; to change keys, enroll again")
	}
	cert, err := s.CA.IssueDeviceCert(csr, dev.ID, s.lifetime())
	if err != nil {
		return nil, "internal", s.internal("issuing device certificate", err)
	}
	limit := s.CertLimit()
	err = s.Store.CheckCertLimit(ctx, dev.ID, cert.NotBefore, limit)
	if err == nil {
		err = s.Store.RenewDeviceCert(ctx,
			storage.Cert{Serial: ca.SerialHex(cert), DeviceID: dev.ID, Kind: "device", NotBefore: cert.NotBefore, NotAfter: cert.NotAfter, DER: cert.Raw},
			limit,
			storage.AuditEvent{At: now, Actor: "agent", Action: "device.renew", DeviceID: dev.ID, Detail: "certificate " + ca.SerialHex(cert)})
	}
	switch {
	case errors.Is(err, storage.ErrTooManyCerts):
		cur, outcome, err := s.overLimit(ctx, dev.ID, key, err, now)
		if err != nil {
			return nil, outcome, err
		}
		return &agentv1.RenewResponse{Certificate: cur.Raw, CaChain: s.CA.Chain(), NotAfter: timestamppb.New(cur.NotAfter), VerifierTime: timestamppb.New(s.now())}, outcome, nil
	case errors.Is(err, storage.ErrDeviceRevoked):
		return nil, "revoked_device", status.Errorf(codes.PermissionDenied, "device %s is revoked; "+storage.RevokedWayBack, dev.ID)
	case err != nil:
		return nil, "internal", s.internal("storing renewed certificate", err)
	}
	s.log().Info("device certificate renewed", "device_id", dev.ID, "cert_serial", ca.SerialHex(cert), "not_after", cert.NotAfter)
	return &agentv1.RenewResponse{Certificate: cert.Raw, CaChain: s.CA.Chain(), NotAfter: timestamppb.New(cert.NotAfter), VerifierTime: timestamppb.New(s.now())}, OutcomeRenewed, nil
}

// reenrollOverLimit answers a re-enrollment of dev past IssueLimit (limitErr):
// with the device's current certificate for its own key, else refused.
func (s *Service) reenrollOverLimit(ctx context.Context, dev storage.Device, key []byte, proof string, limitErr error, now time.Time) (*agentv1.EnrollResponse, string, error) {
	if proof != "same_key" {
		// A new key (a rotation) needs a new certificate.
		key = nil
	}
	cur, outcome, err := s.overLimit(ctx, dev.ID, key, limitErr, now)
	if err != nil {
		return nil, outcome, err
	}
	return &agentv1.EnrollResponse{
		DeviceId:     dev.ID,
		Certificate:  cur.Raw,
		CaChain:      s.CA.Chain(),
		NotAfter:     timestamppb.New(cur.NotAfter),
		VerifierTime: timestamppb.New(s.now()),
	}, outcome, nil
}

// overLimit answers a request of the device id past IssueLimit (limitErr,
// a *storage.TooManyCertsError): with its current certificate when that is
// for key (nil: none will do), issued by the current device CA and valid a
// while yet; else RESOURCE_EXHAUSTED, with a RetryInfo saying when another
// certificate may be issued.
func (s *Service) overLimit(ctx context.Context, deviceID string, key []byte, limitErr error, now time.Time) (*x509.Certificate, string, error) {
	var tooMany *storage.TooManyCertsError
	if !errors.As(limitErr, &tooMany) {
		return nil, "internal", s.internal("checking the device's certificate limit", limitErr)
	}
	if key != nil {
		cur, err := s.currentCert(ctx, deviceID, key, now)
		if err == nil {
			s.log().Debug("device certificate limit reached; answered with the current certificate",
				"device_id", deviceID, "cert_serial", ca.SerialHex(cur))
			return cur, OutcomeCurrentCert, nil
		}
		s.log().Debug("device certificate limit reached; the current certificate cannot answer", "device_id", deviceID, "err", err)
	}
	retry := max(tooMany.RetryAt.Sub(now), time.Second)
	st, err := status.New(codes.ResourceExhausted, fmt.Sprintf(
		"device %s was issued %d certificates in the last %s, as many as it may be; retry after %s",
		deviceID, tooMany.Limit.Certs, tooMany.Limit.Per, tooMany.RetryAt.UTC().Format(time.RFC3339))).
		WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(retry.Round(time.Second))})
	if err != nil {
		return nil, "internal", s.internal("answering a request over the certificate limit", err)
	}
	return nil, OutcomeTooManyCerts, st.Err()
}

// currentCert returns the device's current certificate if it is for key,
// signed by the device CA that issues now, and valid for at least a tenth
// of a lifetime more: an answer the agent can use as a new one.
func (s *Service) currentCert(ctx context.Context, deviceID string, key []byte, now time.Time) (*x509.Certificate, error) {
	dev, err := s.Store.GetDevice(ctx, deviceID)
	if err != nil {
		return nil, err
	}
	if dev.Revoked() {
		return nil, storage.ErrDeviceRevoked
	}
	if !bytes.Equal(dev.PublicKey, key) {
		return nil, errors.New("the device's key changed")
	}
	rec, err := s.Store.GetCert(ctx, dev.CertSerial)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(rec.DER)
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(cert.RawSubjectPublicKeyInfo, key) {
		return nil, errors.New("the current certificate is for another key")
	}
	if !now.Before(cert.NotAfter.Add(-s.lifetime() / 10)) {
		return nil, errors.New("the current certificate expires soon")
	}
	chain := s.CA.Chain()
	if len(chain) == 0 {
		return nil, errors.New("no device CA")
	}
	issuer, err := x509.ParseCertificate(chain[0])
	if err != nil {
		return nil, err
	}
	if err := cert.CheckSignatureFrom(issuer); err != nil {
		return nil, fmt.Errorf("the current certificate is not the current device CA's: %w", err)
	}
	return cert, nil
}

func (s *Service) log() *slog.Logger {
	l := s.Logger
	if l == nil {
		l = slog.Default()
	}
	return l.With("component", "enroll")
}

// internal logs the cause and returns a status that does not reveal it.
func (s *Service) internal(what string, err error) error {
	s.log().Error("enrollment failed", "step", what, "err", err)
	return status.Errorf(codes.Internal, "%s failed; see the verifier log", what)
}

var hardwareUUID = regexp.MustCompile(`^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$`)

// CheckFacts validates the facts an agent reports at enrollment.
func CheckFacts(f *agentv1.DeviceFacts) error {
	if f == nil {
		return errors.New("facts are missing")
	}
	if !hardwareUUID.MatchString(f.GetHardwareUuid()) {
		return fmt.Errorf("hardware_uuid %q is not a UUID", truncate(f.GetHardwareUuid()))
	}
	for _, fld := range []struct{ name, v string }{
		{"serial_number", f.GetSerialNumber()}, {"model", f.GetModel()}, {"os_name", f.GetOsName()},
		{"os_version", f.GetOsVersion()}, {"hostname", f.GetHostname()}, {"platform", f.GetPlatform()},
		{"agent_version", f.GetAgentVersion()},
	} {
		if len(fld.v) > 255 {
			return fmt.Errorf("%s is %d bytes; the limit is 255", fld.name, len(fld.v))
		}
		if !utf8.ValidString(fld.v) {
			return fmt.Errorf("%s is not UTF-8", fld.name)
		}
		// Facts end up in the admin's terminal and in pages: control
		// characters (C0, C1) and bidirectional controls have no place in a
		// name and could steer or reorder what is shown. Other invisible
		// format characters (a zero-width joiner in an emoji host name) are
		// kept and shown escaped.
		for i, r := range fld.v {
			switch {
			case unicode.IsControl(r):
				return fmt.Errorf("%s has control character %U at byte %d", fld.name, r, i)
			case printable.Bidi(r):
				return fmt.Errorf("%s has bidirectional control character %U at byte %d", fld.name, r, i)
			}
		}
	}
	return nil
}

func truncate(s string) string {
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return s
}

// NewDeviceID returns a random UUID (version 4), for a device id or a
// request id.
func NewDeviceID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand never fails on supported platforms
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}
