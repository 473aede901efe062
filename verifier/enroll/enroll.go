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
	"regexp"
	"time"
	"unicode/utf8"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	agentv1 "github.com/clearance/clearance/proto/gen/clearance/agent/v1"
	"github.com/clearance/clearance/verifier/ca"
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

// Service runs enrollments and renewals.
type Service struct {
	Store        storage.Store
	CA           Issuer
	CertLifetime time.Duration
	Now          func() time.Time
	Logger       *slog.Logger
}

func (s *Service) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

func (s *Service) lifetime() time.Duration {
	if s.CertLifetime > 0 {
		return s.CertLifetime
	}
	return DefaultCertLifetime
}

// Outcome labels for metrics.
const (
	OutcomeEnrolled   = "enrolled"
	OutcomeReenrolled = "reenrolled"
)

// Enroll checks an enrollment request and issues the device's certificate.
// It returns the response, an outcome label for metrics, and a gRPC status
// error on refusal. A refused enrollment changes nothing.
func (s *Service) Enroll(ctx context.Context, req *agentv1.EnrollRequest) (*agentv1.EnrollResponse, string, error) {
	now := s.now()

	// 1. The secret: unknown and wrong look the same from outside.
	secret, err := CheckSecret(ctx, s.Store, req.GetEnrollSecret())
	switch {
	case errors.Is(err, ErrSecretInvalid):
		return nil, "bad_secret", status.Error(codes.Unauthenticated, "enroll secret is not valid")
	case errors.Is(err, ErrSecretRevoked):
		return nil, "revoked_secret", status.Error(codes.Unauthenticated, "enroll secret has been revoked; ask your administrator for a current one")
	case err != nil:
		return nil, "internal", s.internal("checking enroll secret", err)
	}

	// 2. The CSR: ECDSA P-256/P-384 with a valid self-signature.
	csr, err := ca.ParseCSR(req.GetCsr())
	if err != nil {
		return nil, "bad_csr", status.Errorf(codes.InvalidArgument, "certificate request rejected: %v", err)
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

	// 4. Known hardware keeps its device id and history; the key is replaced.
	deviceID, reenroll := "", false
	existing, err := s.Store.GetDeviceByHardwareUUID(ctx, facts.GetHardwareUuid())
	switch {
	case err == nil && existing.Revoked():
		return nil, "revoked_device", status.Errorf(codes.PermissionDenied, "device %s (hardware UUID %s) is revoked and cannot re-enroll", existing.ID, facts.GetHardwareUuid())
	case err == nil:
		deviceID, reenroll = existing.ID, true
	case errors.Is(err, storage.ErrNotFound):
		deviceID = newDeviceID()
	default:
		return nil, "internal", s.internal("looking up hardware UUID", err)
	}

	// 5. Issue, then commit device, certificate and audit in one transaction.
	cert, err := s.CA.IssueDeviceCert(csr, deviceID, s.lifetime())
	if err != nil {
		return nil, "internal", s.internal("issuing device certificate", err)
	}
	action := "device.enroll"
	if reenroll {
		action = "device.reenroll"
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
		PublicKey:    ca.CSRPublicKeyDER(csr),
		CertSerial:   ca.SerialHex(cert),
		CertNotAfter: cert.NotAfter,
		EnrolledAt:   now,
	}
	stored, reenrolled, err := s.Store.EnrollDevice(ctx, storage.Enrollment{
		Device:   dev,
		Cert:     storage.Cert{Serial: ca.SerialHex(cert), DeviceID: deviceID, Kind: "device", NotBefore: cert.NotBefore, NotAfter: cert.NotAfter, DER: cert.Raw},
		SecretID: secret.ID,
		Audit: storage.AuditEvent{At: now, Actor: "agent", Action: action,
			Detail: fmt.Sprintf("hardware UUID %s, serial %s, enroll secret %s, certificate %s", facts.GetHardwareUuid(), facts.GetSerialNumber(), secret.ID, ca.SerialHex(cert))},
	})
	switch {
	case errors.Is(err, storage.ErrSecretRevoked):
		return nil, "revoked_secret", status.Error(codes.Unauthenticated, "enroll secret has been revoked; ask your administrator for a current one")
	case errors.Is(err, storage.ErrDeviceRevoked):
		return nil, "revoked_device", status.Errorf(codes.PermissionDenied, "device with hardware UUID %s is revoked and cannot re-enroll", facts.GetHardwareUuid())
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
		"reenrolled", reenrolled, "enrollments", stored.Enrollments, "secret_id", secret.ID, "cert_serial", dev.CertSerial)
	return &agentv1.EnrollResponse{
		DeviceId:    stored.ID,
		Certificate: cert.Raw,
		CaChain:     s.CA.Chain(),
		NotAfter:    timestamppb.New(cert.NotAfter),
		// Sent as late as possible: the agent takes its clock offset from it.
		VerifierTime: timestamppb.New(s.now()),
	}, outcome, nil
}

// Renew issues a new certificate to an authenticated device for the key it
// enrolled with.
func (s *Service) Renew(ctx context.Context, dev storage.Device, req *agentv1.RenewRequest) (*agentv1.RenewResponse, error) {
	now := s.now()
	csr, err := ca.ParseCSR(req.GetCsr())
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "certificate request rejected: %v", err)
	}
	if !bytes.Equal(ca.CSRPublicKeyDER(csr), dev.PublicKey) {
		return nil, status.Error(codes.PermissionDenied, "renewal must be for the device's enrolled key; to change keys, enroll again")
	}
	cert, err := s.CA.IssueDeviceCert(csr, dev.ID, s.lifetime())
	if err != nil {
		return nil, s.internal("issuing device certificate", err)
	}
	err = s.Store.RenewDeviceCert(ctx,
		storage.Cert{Serial: ca.SerialHex(cert), DeviceID: dev.ID, Kind: "device", NotBefore: cert.NotBefore, NotAfter: cert.NotAfter, DER: cert.Raw},
		storage.AuditEvent{At: now, Actor: "agent", Action: "device.renew", DeviceID: dev.ID, Detail: "certificate " + ca.SerialHex(cert)})
	switch {
	case errors.Is(err, storage.ErrDeviceRevoked):
		return nil, status.Errorf(codes.PermissionDenied, "device %s is revoked", dev.ID)
	case err != nil:
		return nil, s.internal("storing renewed certificate", err)
	}
	s.log().Info("device certificate renewed", "device_id", dev.ID, "cert_serial", ca.SerialHex(cert), "not_after", cert.NotAfter)
	return &agentv1.RenewResponse{Certificate: cert.Raw, CaChain: s.CA.Chain(), NotAfter: timestamppb.New(cert.NotAfter), VerifierTime: timestamppb.New(s.now())}, nil
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
	}
	return nil
}

func truncate(s string) string {
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return s
}

// newDeviceID returns a random UUID (version 4) as the device id.
func newDeviceID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand never fails on supported platforms
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}
