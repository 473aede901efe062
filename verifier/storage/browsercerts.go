package storage

import (
	"context"
	"time"
)

// CertKindBrowser marks a certificate issued through SCEP to a Mac's
// browser (its key made by macOS from the user-scope profile); agent
// certificates are CertKindDevice.
const (
	CertKindDevice  = "device"
	CertKindBrowser = "browser"
)

// BrowserCert is an issued browser certificate and its state.
type BrowserCert struct {
	Cert
	// HardwareUUID is the Mac the certificate names (upper case).
	HardwareUUID string
	// SHA1 is the certificate's SHA-1 fingerprint (lowercase hex), as
	// osquery's certificates table reports it; the agent vouches by it.
	SHA1 string
	// RevokeAfter, when set, is when the certificate stops counting: set on
	// older certificates of the device when a newer one is recorded (a grace
	// period, so the browser can switch), or at once by RevokeBrowserCert.
	RevokeAfter   time.Time
	RevokedReason string
}

// RevokedAt reports whether c no longer counts at now.
func (c BrowserCert) RevokedAt(now time.Time) bool {
	return !c.RevokeAfter.IsZero() && !now.Before(c.RevokeAfter)
}

// BrowserCertStore keeps browser certificates and SCEP challenges.
type BrowserCertStore interface {
	// RecordBrowserCert stores c (Kind CertKindBrowser, DeviceID of the
	// enrolled device with that HardwareUUID) in one transaction that also:
	//   - when challengeHash is non-nil, consumes that one-time SCEP
	//     challenge: ErrNotFound if it does not exist, was used, or expired
	//     (expires_at <= now); a consumed challenge is marked used, not
	//     deleted, until it expires (so reuse is told apart from a typo);
	//   - sets RevokeAfter = now + grace on the device's other browser
	//     certificates that have no earlier RevokeAfter (grace 0: now);
	//   - appends audit.
	// ErrNotFound / ErrDeviceRevoked if the device is unknown / revoked;
	// ErrAlreadyExists on a duplicate serial. On error nothing changes.
	RecordBrowserCert(ctx context.Context, c BrowserCert, challengeHash []byte, now time.Time, grace time.Duration, audit AuditEvent) error
	// GetBrowserCert returns a browser certificate by serial, or ErrNotFound.
	GetBrowserCert(ctx context.Context, serial string) (BrowserCert, error)
	// ListBrowserCerts returns the device's browser certificates, newest
	// (NotBefore, then serial) first.
	ListBrowserCerts(ctx context.Context, deviceID string) ([]BrowserCert, error)
	// CountBrowserCertsSince counts the device's browser certificates with
	// NotBefore at or after since (the per-device issuance rate limit).
	CountBrowserCertsSince(ctx context.Context, deviceID string, since time.Time) (int, error)
	// RevokeBrowserCert sets RevokeAfter = at (unless already earlier) and
	// the reason, and appends audit; ErrNotFound if unknown.
	RevokeBrowserCert(ctx context.Context, serial, reason string, at time.Time, audit AuditEvent) error

	// CreateSCEPChallenge stores a one-time SCEP challenge (only its
	// SHA-256) valid until expiresAt, and appends audit; ErrAlreadyExists
	// on a duplicate.
	CreateSCEPChallenge(ctx context.Context, hash []byte, expiresAt time.Time, audit AuditEvent) error
	// SCEPChallengeUsable reports whether the challenge exists, is unused
	// and has not expired at now (a check before issuing; the consuming
	// happens in RecordBrowserCert).
	SCEPChallengeUsable(ctx context.Context, hash []byte, now time.Time) (bool, error)
	// DeleteExpiredSCEPChallenges removes challenges that expired before
	// the given time, used or not, and returns how many.
	DeleteExpiredSCEPChallenges(ctx context.Context, before time.Time) (int, error)
}
