// Package ingest decides whether a signed posture report is accepted. It owns
// the trust rules for reports: signature over the exact received bytes with
// the enrolled key, which must still be the device's when the report is
// stored, device id bound to the mTLS certificate, strictly increasing and
// bounded seq, bounded clock skew, single-use nonces, and bounded,
// well-formed keychain certificate claims, local accounts and word of
// rejected settings, which the device keeps as its latest report says. A report is accepted only once it
// is durably stored; an exact resend of a stored report is accepted again.
//
// The gRPC code of a refusal tells the agent what to do: PermissionDenied
// only when the device (or the key its stream holds) may not report at
// all; InvalidArgument, FailedPrecondition, AlreadyExists and
// ResourceExhausted when this one report will never be accepted (the next
// one may be); Unavailable when nothing is wrong with the report. A
// report answering a live check that has since expired is not refused: it is
// stored as a report that answers no check (Accepted.Lapsed).
package ingest

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/clearance/clearance/pkg/report"
	agentv1 "github.com/clearance/clearance/proto/gen/clearance/agent/v1"
	"github.com/clearance/clearance/verifier/storage"
)

// Defaults for Verifier's zero fields.
const (
	DefaultMaxSkew = 5 * time.Minute
	DefaultKeep    = 100
)

// Reason is why a report was refused, as a metric label and log field; the
// values never change once released.
type Reason string

// Reasons a report is refused.
const (
	RejectBadSignature     Reason = "bad_signature"
	RejectCanceled         Reason = "canceled"
	RejectDeviceMismatch   Reason = "device_mismatch"
	RejectDeviceRevoked    Reason = "device_revoked"
	RejectFuture           Reason = "future"
	RejectInternal         Reason = "internal"
	RejectKeyReplaced      Reason = "key_replaced"
	RejectMalformed        Reason = "malformed"
	RejectNonceUnknown     Reason = "nonce_unknown"
	RejectNonceUsed        Reason = "nonce_used"
	RejectNonceWrongDevice Reason = "nonce_wrong_device"
	RejectSeqReplay        Reason = "seq_replay"
	RejectSeqTooLarge      Reason = "seq_too_large"
	RejectStale            Reason = "stale"
	RejectStorage          Reason = "storage"
	RejectTooLarge         Reason = "too_large"
	RejectUnknownDevice    Reason = "unknown_device"
)

// RejectNonceExpired is no longer given: a report whose nonce expired is
// stored as one that answers no check (Accepted.Lapsed). Its label stays
// reserved.
const RejectNonceExpired Reason = "nonce_expired"

// Rejection is why a report was refused. It carries the gRPC status the agent
// sees and a short reason used as a metric label and log field.
type Rejection struct {
	Reason Reason
	Code   codes.Code
	Msg    string
	// Cause is the internal error, if any; it is logged, never sent.
	Cause error
}

func (r *Rejection) Error() string { return r.Msg }

// GRPCStatus lets grpc turn a Rejection into the status the agent receives.
func (r *Rejection) GRPCStatus() *status.Status { return status.New(r.Code, r.Msg) }

// Unwrap exposes the internal cause to errors.Is.
func (r *Rejection) Unwrap() error { return r.Cause }

func reject(reason Reason, code codes.Code, cause error, format string, a ...any) *Rejection {
	return &Rejection{Reason: reason, Code: code, Msg: fmt.Sprintf(format, a...), Cause: cause}
}

// MaxSeq bounds a report's seq (report.MaxSeq says why).
const MaxSeq = report.MaxSeq

// Bounds on PostureReport.certificates. The agent keeps within them; a report
// beyond them is refused whole rather than trimmed, since it is signed.
const (
	MaxCertificates     = 32
	MaxCertSerialLength = 64
	MaxCertPathLength   = 1024
	MaxCertIssuerLength = 256
)

var (
	// certSerial is how the verifier writes serials: big.Int.Text(16) of a
	// positive serial.
	certSerial = regexp.MustCompile(`^(0|[1-9a-f][0-9a-f]*)$`)
	certSHA1   = regexp.MustCompile(`^[0-9a-f]{40}$`)
)

// Bounds on a report's local accounts (what the agent's osquery.LocalAccounts
// returns at most).
const (
	MaxAccounts          = 32
	MaxAccountNameLength = 64
)

// CheckAccounts refuses local accounts a report may not carry: too many,
// names empty, too long, not UTF-8 or holding control characters.
func CheckAccounts(accounts []*agentv1.LocalAccount) error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{report.ErrMalformed}, a...)...)
	}
	if len(accounts) > MaxAccounts {
		return bad("%d accounts, limit %d", len(accounts), MaxAccounts)
	}
	for i, a := range accounts {
		n := a.GetName()
		switch {
		case n == "" || len(n) > MaxAccountNameLength:
			return bad("accounts[%d]: name empty or longer than %d bytes", i, MaxAccountNameLength)
		case !utf8.ValidString(n) || strings.ContainsFunc(n, unicode.IsControl):
			return bad("accounts[%d]: name is not printable UTF-8", i)
		case a.GetLastLogin() != nil && a.GetLastLogin().CheckValid() != nil:
			return bad("accounts[%d]: last_login: %v", i, a.GetLastLogin().CheckValid())
		}
	}
	return nil
}

// CheckCertificates validates the keychain certificates a report lists. The
// error wraps report.ErrMalformed and names the offending entry.
func CheckCertificates(certs []*agentv1.KeychainCertificate) error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{report.ErrMalformed}, a...)...)
	}
	if len(certs) > MaxCertificates {
		return bad("%d certificates, limit %d", len(certs), MaxCertificates)
	}
	for i, c := range certs {
		switch {
		case len(c.GetSerial()) > MaxCertSerialLength:
			return bad("certificates[%d]: serial longer than %d characters", i, MaxCertSerialLength)
		case !certSerial.MatchString(c.GetSerial()):
			return bad("certificates[%d]: serial %q is not lowercase hex without leading zeros", i, c.GetSerial())
		case !certSHA1.MatchString(c.GetSha1()):
			return bad("certificates[%d]: sha1 is not 40 lowercase hex characters", i)
		case len(c.GetPath()) > MaxCertPathLength:
			return bad("certificates[%d]: path longer than %d bytes", i, MaxCertPathLength)
		case len(c.GetIssuer()) > MaxCertIssuerLength:
			return bad("certificates[%d]: issuer longer than %d bytes", i, MaxCertIssuerLength)
		case c.GetNotValidAfter() != nil && c.GetNotValidAfter().CheckValid() != nil:
			return bad("certificates[%d]: not_valid_after: %v", i, c.GetNotValidAfter().CheckValid())
		}
	}
	return nil
}

// Accepted is a stored report.
type Accepted struct {
	Report *agentv1.PostureReport
	Stored storage.Report
	// Duplicate is true when the report was an exact resend of one already
	// stored (its ack was lost); nothing new was stored.
	Duplicate bool
	// Lapsed is true when the report answered a live check of this device
	// whose nonce had expired when it arrived: it is stored as a report
	// like any other, answers no check, and its nonce stays unused.
	Lapsed bool
}

// Verifier accepts reports into a Store.
type Verifier struct {
	Store storage.ReportStore
	// Now is the clock (default time.Now).
	Now func() time.Time
	// MaxSkew bounds |now - observed_at| (default DefaultMaxSkew).
	MaxSkew time.Duration
	// Keep is how many reports per device are kept (default DefaultKeep).
	Keep int

	// keys caches parsed device keys by their DER: a device sends a report
	// every interval, and parsing its key each time is wasted work.
	keysMu sync.Mutex
	keys   map[string]crypto.PublicKey
}

// maxCachedKeys bounds the key cache; past it the cache starts over, so a
// fleet churning keys (re-enrollments) cannot grow it without bound.
const maxCachedKeys = 100_000

func (v *Verifier) publicKey(der []byte) (crypto.PublicKey, error) {
	v.keysMu.Lock()
	pub, ok := v.keys[string(der)]
	v.keysMu.Unlock()
	if ok {
		return pub, nil
	}
	pub, err := x509.ParsePKIXPublicKey(der)
	if err != nil {
		return nil, err
	}
	v.keysMu.Lock()
	if v.keys == nil || len(v.keys) >= maxCachedKeys {
		v.keys = make(map[string]crypto.PublicKey)
	}
	v.keys[string(der)] = pub
	v.keysMu.Unlock()
	return pub, nil
}

func (v *Verifier) now() time.Time {
	if v.Now != nil {
		return v.Now()
	}
	return time.Now()
}

// Accept verifies sr as coming from dev (the device the mTLS certificate
// names) and stores it. The returned error is a *Rejection for anything the
// agent did wrong, and also for storage failures (code Unavailable).
func (v *Verifier) Accept(ctx context.Context, dev storage.Device, sr *agentv1.SignedReport) (*Accepted, error) {
	return v.AcceptWith(ctx, dev, sr, nil)
}

// AcceptWith is Accept storing, with the report and in its transaction,
// the policy streaks streaks returns for it once it is verified
// (storage.Report.Streaks; nil leaves them). streaks may be nil.
func (v *Verifier) AcceptWith(ctx context.Context, dev storage.Device, sr *agentv1.SignedReport, streaks func(*agentv1.PostureReport) []storage.PolicyStreak) (*Accepted, error) {
	now := v.now()

	// 1. The device must be allowed to report at all.
	if dev.Revoked() {
		return nil, reject(RejectDeviceRevoked, codes.PermissionDenied, nil, "device %s is revoked; "+storage.RevokedWayBack, dev.ID)
	}

	// 2. Signature over the exact bytes received, with the enrolled key.
	pub, err := v.publicKey(dev.PublicKey)
	if err != nil {
		return nil, reject(RejectInternal, codes.Internal, err, "device key on record is unreadable")
	}
	r, err := report.Verify(pub, sr)
	switch {
	case errors.Is(err, report.ErrTooLarge):
		return nil, reject(RejectTooLarge, codes.ResourceExhausted, err, "%v", err)
	case errors.Is(err, report.ErrBadSignature):
		return nil, reject(RejectBadSignature, codes.PermissionDenied, err, "report signature does not verify with the key enrolled for device %s", dev.ID)
	case errors.Is(err, report.ErrMalformed):
		return nil, reject(RejectMalformed, codes.InvalidArgument, err, "%v", err)
	case err != nil:
		return nil, reject(RejectBadSignature, codes.PermissionDenied, err, "report cannot be verified: %v", err)
	}

	// 3. The report must be about the device whose certificate sent it.
	if r.GetDeviceId() != dev.ID {
		return nil, reject(RejectDeviceMismatch, codes.PermissionDenied, nil,
			"report is for device %q but the client certificate is for device %q", r.GetDeviceId(), dev.ID)
	}

	// 4. A seq the agent can have reached.
	if r.GetSeq() > MaxSeq {
		return nil, reject(RejectSeqTooLarge, codes.InvalidArgument, nil,
			"report seq %d is above the limit %d", r.GetSeq(), uint64(MaxSeq))
	}

	// 5. The browser certificates it vouches for are well formed: at sign-in
	// they are matched against what the device CA issued.
	if err := CheckCertificates(r.GetCertificates()); err != nil {
		return nil, reject(RejectMalformed, codes.InvalidArgument, err, "%v", err)
	}
	if err := CheckAccounts(r.GetAccounts()); err != nil {
		return nil, reject(RejectMalformed, codes.InvalidArgument, err, "%v", err)
	}

	// 6. Fresh, and not from the future.
	skew := v.MaxSkew
	if skew <= 0 {
		skew = DefaultMaxSkew
	}
	observed := r.GetObservedAt().AsTime()
	if d := now.Sub(observed); d > skew {
		return nil, reject(RejectStale, codes.InvalidArgument, nil,
			"report observed_at %s is %s old; the limit is %s", observed.Format(time.RFC3339), d.Round(time.Second), skew)
	}
	if d := observed.Sub(now); d > skew {
		return nil, reject(RejectFuture, codes.InvalidArgument, nil,
			"report observed_at %s is %s in the future; the limit is %s (check the device clock)", observed.Format(time.RFC3339), d.Round(time.Second), skew)
	}

	// 7. Key still current, sequence, nonce and storage in one
	// transaction: a re-enrollment since the stream began is seen here.
	keep := v.Keep
	if keep <= 0 {
		keep = DefaultKeep
	}
	stored := storage.Report{
		DeviceID:   dev.ID,
		Seq:        r.GetSeq(),
		ObservedAt: observed,
		ReceivedAt: now,
		Payload:    sr.GetPayload(),
		Signature:  sr.GetSignature(),
		Key:        dev.PublicKey,
	}
	if sr := r.GetSettingsRejection(); sr != nil {
		// Checked with the report (report.Check): bounded, printable.
		stored.SettingsRejectedAt, stored.SettingsRejected = sr.GetAt().AsTime(), sr.GetReason()
	}
	if streaks != nil {
		stored.Streaks = streaks(r)
	}
	err = v.Store.SaveReport(ctx, stored, r.GetNonce(), keep)
	lapsed := false
	if errors.Is(err, storage.ErrNonceExpired) {
		// The answer to this device's own check came too late for the
		// check, which has given up on it, but it is a fresh, signed
		// report all the same: stored without answering the check, and
		// the stream goes on. (Refusing it would end the stream, and the
		// agent would connect again for nothing.)
		lapsed = true
		err = v.Store.SaveReport(ctx, stored, nil, keep)
	}
	switch {
	case err == nil:
		return &Accepted{Report: r, Stored: stored, Lapsed: lapsed}, nil
	case errors.Is(err, storage.ErrReportStored):
		// An exact resend of a stored report is answered with its ack
		// again: the agent resends whatever it has no ack for, and must not
		// lose or skip reports because an ack was lost on the way.
		return &Accepted{Report: r, Stored: stored, Duplicate: true}, nil
	case errors.Is(err, storage.ErrSeqNotIncreasing):
		return nil, reject(RejectSeqReplay, codes.AlreadyExists, err,
			"report seq %d is not greater than the last accepted seq for device %s", r.GetSeq(), dev.ID)
	case errors.Is(err, storage.ErrKeyReplaced):
		return nil, reject(RejectKeyReplaced, codes.PermissionDenied, err,
			"device %s enrolled again with another key; this stream's key is no longer the device's", dev.ID)
	case errors.Is(err, storage.ErrNonceUnknown):
		return nil, reject(RejectNonceUnknown, codes.FailedPrecondition, err, "report nonce was never issued by this verifier")
	case errors.Is(err, storage.ErrNonceWrongDevice):
		return nil, reject(RejectNonceWrongDevice, codes.FailedPrecondition, err, "report nonce was not issued to device %s", dev.ID)
	case errors.Is(err, storage.ErrNonceUsed):
		return nil, reject(RejectNonceUsed, codes.FailedPrecondition, err, "report nonce was already used")
	case errors.Is(err, storage.ErrDeviceRevoked):
		return nil, reject(RejectDeviceRevoked, codes.PermissionDenied, err, "device %s is revoked; "+storage.RevokedWayBack, dev.ID)
	case errors.Is(err, storage.ErrNotFound):
		return nil, reject(RejectUnknownDevice, codes.PermissionDenied, err, "device %s is not enrolled", dev.ID)
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return nil, reject(RejectCanceled, codes.Canceled, err, "report not stored: request ended")
	default:
		return nil, reject(RejectStorage, codes.Unavailable, err, "report not stored; try again")
	}
}
