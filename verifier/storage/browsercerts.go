package storage

import (
	"context"
	"time"
)

// Certificate kinds (Cert.Kind). CertKindBrowser marks a certificate issued
// through SCEP to a Mac's browser (its key made by macOS from the
// user-scope profile); agent certificates are CertKindDevice.
const (
	CertKindDevice  = "device"
	CertKindBrowser = "browser"
)

// SupersededReason is the RevokedReason RecordBrowserCert gives the older
// browser certificates of a Mac when it records a newer one: "superseded
// by " and the newer certificate's serial.
const SupersededReason = "superseded by "

// BrowserCert is an issued browser certificate and its state. Its Cert is
// what GetCert returns for the same serial.
type BrowserCert struct {
	Cert
	// HardwareUUID is the Mac the certificate names in its SAN (upper
	// case), the same as its device's HardwareUUID.
	HardwareUUID string
	// SHA1 is the certificate's SHA-1 fingerprint (40 lowercase hex
	// digits), as osquery's certificates table reports it; the agent
	// vouches for the certificate by it.
	SHA1 string
	// RevokeAfter, when set, is when the certificate stops counting: set on
	// older certificates of the device when a newer one is recorded (a grace
	// period, so the browser can switch), or by RevokeBrowserCert. It only
	// ever moves earlier. RevokedReason says why it has its value
	// (SupersededReason and the newer serial, or the revoker's reason).
	RevokeAfter   time.Time
	RevokedReason string
}

// RevokedAt reports whether c no longer counts at now.
func (c BrowserCert) RevokedAt(now time.Time) bool {
	return !c.RevokeAfter.IsZero() && !now.Before(c.RevokeAfter)
}

// BrowserCertStore keeps browser certificates and one-time SCEP challenges.
// Browser certificates live beside agent certificates: GetCert finds them
// too (Kind CertKindBrowser).
type BrowserCertStore interface {
	// RecordBrowserCert stores c in one transaction. c.Kind must be
	// CertKindBrowser, c.DeviceID an enrolled device whose HardwareUUID is
	// c.HardwareUUID, c.SHA1 a fingerprint; c.RevokeAfter and
	// c.RevokedReason are ignored (a new certificate counts). now must be
	// set and grace must not be negative. The transaction checks, in this
	// order, and the first failure is the error:
	//   1. the device: ErrNotFound if unknown, ErrDeviceRevoked if revoked;
	//   2. limit: a *TooManyCertsError (ErrTooManyCerts) if the device
	//      already has limit.Certs browser certificates or more with a
	//      NotBefore within limit.Per before c.NotBefore. Counted with the
	//      device's row locked, so that concurrent recordings for one
	//      device, on any replica, count one after the other; the zero
	//      value bounds nothing;
	//   3. when challengeHash is non-nil, the one-time SCEP challenge with
	//      that hash: ErrNotFound if it does not exist, was used, or has
	//      expired (expires_at <= now). It is consumed: marked used at now,
	//      not deleted, until DeleteExpiredSCEPChallenges sweeps it (so a
	//      reuse is told apart from a typo). Of concurrent calls with the
	//      same challenge, exactly one succeeds;
	//   4. the serial: ErrAlreadyExists if any certificate (browser or
	//      agent) has it.
	// It then appends audit (its DeviceID filled in when empty). Recording
	// supersedes nothing: a holder of the SCEP challenge could otherwise
	// have a Mac's certificates cut off by minting new ones for its UUID
	// (SupersedeBrowserCerts runs only once the Mac's own agent reports the
	// new certificate). On error nothing changes.
	RecordBrowserCert(ctx context.Context, c BrowserCert, challengeHash []byte, limit IssueLimit, now time.Time, audit AuditEvent) error
	// SupersedeBrowserCerts records that the Mac's own agent reported the
	// browser certificate serial in a keychain: the device's browser
	// certificates older than it (earlier NotBefore, or the same NotBefore
	// and a lower serial) get RevokeAfter = now + grace (grace 0: now), with
	// SupersededReason and serial, unless their RevokeAfter is already at or
	// before that (so repeating the call changes nothing). It returns how
	// many changed and appends audit when any did (DeviceID filled in).
	// ErrNotFound if serial is no browser certificate; a certificate that
	// no longer counts at now supersedes nothing. grace must not be
	// negative.
	SupersedeBrowserCerts(ctx context.Context, serial string, now time.Time, grace time.Duration, audit AuditEvent) (int, error)
	// GetBrowserCert returns a browser certificate by serial, or
	// ErrNotFound (an agent certificate's serial included).
	GetBrowserCert(ctx context.Context, serial string) (BrowserCert, error)
	// ListBrowserCerts returns the device's browser certificates, newest
	// (NotBefore, then serial, descending) first, at most 1000 of them;
	// ErrNotFound if the device is unknown.
	ListBrowserCerts(ctx context.Context, deviceID string) ([]BrowserCert, error)
	// CountBrowserCertsSince counts the device's browser certificates with
	// NotBefore at or after since (the per-device issuance rate limit; a
	// zero since counts them all); ErrNotFound if the device is unknown.
	CountBrowserCertsSince(ctx context.Context, deviceID string, since time.Time) (int, error)
	// RevokeBrowserCert sets RevokeAfter = at and RevokedReason = reason,
	// unless RevokeAfter is already at or before at (then both stay: the
	// earliest revocation wins, so a repeated call changes nothing), and
	// appends audit either way (DeviceID filled in when empty), as it
	// records the request. at must be set. ErrNotFound if no browser
	// certificate has the serial.
	RevokeBrowserCert(ctx context.Context, serial, reason string, at time.Time, audit AuditEvent) error

	// CreateSCEPChallenge stores a one-time SCEP challenge, only its
	// SHA-256 (32 bytes; the challenge itself is never stored), valid
	// until expiresAt (must be set), and appends audit; ErrAlreadyExists
	// on a duplicate, which changes nothing.
	CreateSCEPChallenge(ctx context.Context, hash []byte, expiresAt time.Time, audit AuditEvent) error
	// SCEPChallengeUsable reports whether the challenge exists, is unused
	// and has not expired at now (expires_at > now): a check before
	// issuing, which consumes nothing; RecordBrowserCert consumes.
	SCEPChallengeUsable(ctx context.Context, hash []byte, now time.Time) (bool, error)
	// DeleteExpiredSCEPChallenges removes challenges whose expiry is
	// strictly before the given time, used or not, and returns how many.
	DeleteExpiredSCEPChallenges(ctx context.Context, before time.Time) (int, error)
}
