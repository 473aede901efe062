package sqlrow

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/clearance/clearance/verifier/storage"
)

// BrowserCertColumns are the certs table's columns in BrowserCertArgs' and
// ScanBrowserCert's order.
const BrowserCertColumns = `serial, device_id, kind, not_before, not_after, der,
	hardware_uuid, sha1, revoke_after, revoked_reason`

// BrowserCertArgs checks c and returns its values in BrowserCertColumns'
// order, for RecordBrowserCert's insert: revoke_after and revoked_reason
// start unset whatever c says, since a new certificate counts.
func BrowserCertArgs(c storage.BrowserCert) ([]any, error) {
	if c.Kind != storage.CertKindBrowser {
		return nil, fmt.Errorf("certificate kind is %q, want %q", c.Kind, storage.CertKindBrowser)
	}
	for _, f := range []struct{ name, value string }{
		{"cert serial", c.Serial},
		{"device ID", c.DeviceID},
		{"hardware UUID", c.HardwareUUID},
	} {
		if f.value == "" {
			return nil, fmt.Errorf("empty %s", f.name)
		}
		if err := CheckText(f.name, f.value, storage.MaxTextLen); err != nil {
			return nil, err
		}
	}
	if err := CheckSHA1(c.SHA1); err != nil {
		return nil, err
	}
	var tc TimeCodec
	notBefore := tc.NS("cert not before", c.NotBefore)
	notAfter := tc.NS("cert not after", c.NotAfter)
	if tc.Err != nil {
		return nil, tc.Err
	}
	return []any{c.Serial, c.DeviceID, c.Kind, notBefore, notAfter, Blob(c.DER),
		c.HardwareUUID, c.SHA1, int64(0), ""}, nil
}

// CheckSHA1 refuses a fingerprint that is not 40 lowercase hex digits: the
// agent's keychain report is matched against it byte for byte.
func CheckSHA1(s string) error {
	if len(s) != 2*20 {
		return fmt.Errorf("SHA-1 fingerprint is %d characters, want 40 lowercase hex digits", len(s))
	}
	for i := range len(s) {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return errors.New("SHA-1 fingerprint is not lowercase hex")
		}
	}
	return nil
}

// ScanBrowserCert reads a row of BrowserCertColumns.
func ScanBrowserCert(sc Scanner) (storage.BrowserCert, error) {
	var (
		c                                storage.BrowserCert
		notBefore, notAfter, revokeAfter int64
	)
	if err := sc.Scan(&c.Serial, &c.DeviceID, &c.Kind, &notBefore, &notAfter, &c.DER,
		&c.HardwareUUID, &c.SHA1, &revokeAfter, &c.RevokedReason); err != nil {
		return storage.BrowserCert{}, err
	}
	c.NotBefore = FromNS(notBefore)
	c.NotAfter = FromNS(notAfter)
	c.RevokeAfter = FromNS(revokeAfter)
	return c, nil
}

// RecordTimes checks RecordBrowserCert's clock and grace period and returns
// now and now + grace as unix nanoseconds. now must be set: a used_at of 0
// would read as "unused".
func RecordTimes(now time.Time, grace time.Duration) (nowNS, revokeAfter int64, err error) {
	if grace < 0 {
		return 0, 0, fmt.Errorf("grace period %s is negative", grace)
	}
	var tc TimeCodec
	nowNS = tc.NS("now", now)
	revokeAfter = tc.NS("end of the grace period", now.Add(grace))
	if tc.Err != nil {
		return 0, 0, tc.Err
	}
	if nowNS == 0 {
		return 0, 0, errors.New("now is not set")
	}
	return nowNS, revokeAfter, nil
}

// SupersededBy is the reason older browser certificates get when serial
// replaces them.
func SupersededBy(serial string) string { return storage.SupersededReason + serial }

// CheckRevocation checks RevokeBrowserCert's arguments and returns at as
// unix nanoseconds.
func CheckRevocation(reason string, at time.Time) (int64, error) {
	if err := CheckText("reason", reason, storage.MaxTextLen); err != nil {
		return 0, err
	}
	var tc TimeCodec
	n := tc.NS("revocation time", at)
	if tc.Err != nil {
		return 0, tc.Err
	}
	// 0 is how "not revoked" is stored.
	if n == 0 {
		return 0, errors.New("revocation time is not set")
	}
	return n, nil
}

// CheckChallengeHash refuses a SCEP challenge key that is not a SHA-256.
func CheckChallengeHash(h []byte) error {
	if len(h) != sha256.Size {
		return fmt.Errorf("challenge hash is %d bytes, want %d", len(h), sha256.Size)
	}
	return nil
}

// SinceNS is since as a lower bound on stored unix nanoseconds: the zero
// time counts everything.
func SinceNS(since time.Time) (int64, error) {
	if since.IsZero() {
		return math.MinInt64, nil
	}
	var tc TimeCodec
	n := tc.NS("since", since)
	return n, tc.Err
}

// ChallengeExpiry checks a SCEP challenge's expiry and returns it as unix
// nanoseconds.
func ChallengeExpiry(expiresAt time.Time) (int64, error) {
	if expiresAt.IsZero() {
		return 0, errors.New("challenge expiry is not set")
	}
	var tc TimeCodec
	n := tc.NS("challenge expiry", expiresAt)
	return n, tc.Err
}
