package sqlstore

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/clearance/clearance/verifier/storage"
)

// browserCertColumns are the certs table's columns in browserCertArgs' and
// scanBrowserCert's order.
const browserCertColumns = `serial, device_id, kind, not_before, not_after, der,
	hardware_uuid, sha1, revoke_after, revoked_reason`

// browserCertArgs checks c and returns its values in browserCertColumns'
// order, for RecordBrowserCert's insert: revoke_after and revoked_reason
// start unset whatever c says, since a new certificate counts.
func browserCertArgs(c storage.BrowserCert) ([]any, error) {
	c.HardwareUUID = storage.CanonicalHardwareUUID(c.HardwareUUID)
	if c.Kind != storage.CertKindBrowser {
		return nil, fmt.Errorf("certificate kind is %q, want %q", c.Kind, storage.CertKindBrowser)
	}
	if err := checkTexts(true, textField{"cert serial", c.Serial}, textField{"device ID", c.DeviceID},
		textField{"hardware UUID", c.HardwareUUID}); err != nil {
		return nil, err
	}
	if err := checkSHA1(c.SHA1); err != nil {
		return nil, err
	}
	var tc timeCodec
	notBefore := tc.ns("cert not before", c.NotBefore)
	notAfter := tc.ns("cert not after", c.NotAfter)
	if tc.err != nil {
		return nil, tc.err
	}
	return []any{c.Serial, c.DeviceID, c.Kind, notBefore, notAfter, blob(c.DER),
		c.HardwareUUID, c.SHA1, int64(0), ""}, nil
}

// checkSHA1 refuses a fingerprint that is not 40 lowercase hex digits: the
// agent's keychain report is matched against it byte for byte.
func checkSHA1(s string) error {
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

func scanBrowserCert(sc scanner) (storage.BrowserCert, error) {
	var (
		c                                storage.BrowserCert
		notBefore, notAfter, revokeAfter int64
	)
	if err := sc.Scan(&c.Serial, &c.DeviceID, &c.Kind, &notBefore, &notAfter, &c.DER,
		&c.HardwareUUID, &c.SHA1, &revokeAfter, &c.RevokedReason); err != nil {
		return storage.BrowserCert{}, err
	}
	c.NotBefore = fromNS(notBefore)
	c.NotAfter = fromNS(notAfter)
	c.RevokeAfter = fromNS(revokeAfter)
	return c, nil
}

// RecordBrowserCert stores a browser certificate, consuming its one-time
// challenge when one is given: see storage.BrowserCertStore. The device row is locked first,
// so one device's recordings queue, and each counts the certificates the
// previous one stored against limit; the challenge is consumed by one conditional
// UPDATE, which a concurrent transaction waits on and then re-checks, so of
// concurrent calls with one challenge only one finds it unused.
func (s *Store) RecordBrowserCert(ctx context.Context, c storage.BrowserCert, challengeHash []byte, limit storage.IssueLimit, now time.Time, audit storage.AuditEvent) error {
	args, err := browserCertArgs(c)
	if err != nil {
		return fmt.Errorf("recording browser cert: %w", err)
	}
	// now must be set: a used_at of 0 would read as "unused".
	var tc timeCodec
	nowNS := tc.ns("now", now)
	notBefore := tc.ns("cert not before", c.NotBefore)
	if tc.err == nil && nowNS == 0 {
		tc.err = errors.New("now is not set")
	}
	if tc.err != nil {
		return fmt.Errorf("recording browser cert: %w", tc.err)
	}
	err = s.write(ctx, func(q conn) error {
		// 1. The device: enrolled, not revoked, the Mac the certificate names.
		d, err := lockUnrevoked(ctx, q, c.DeviceID)
		if err != nil {
			return err
		}
		if d.HardwareUUID != storage.CanonicalHardwareUUID(c.HardwareUUID) {
			return fmt.Errorf("device %q has hardware UUID %q, the certificate names %q", d.ID, d.HardwareUUID, c.HardwareUUID)
		}

		// 2. The device's allowance, counted behind the row's lock.
		if err := certLimit(ctx, q, d.ID, storage.CertKindBrowser, notBefore, limit); err != nil {
			return err
		}

		// 3. The one-time challenge, consumed only if the rest succeeds
		// (the transaction rolls back otherwise).
		if challengeHash != nil {
			res, err := q.exec(ctx, `UPDATE scep_challenges SET used_at = $1
				WHERE hash = $2 AND used_at = 0 AND expires_at > $1`, nowNS, blob(challengeHash))
			if err != nil {
				return fmt.Errorf("consuming SCEP challenge: %w", err)
			}
			if err := oneRow(res, storage.ErrNotFound); err != nil {
				return fmt.Errorf("SCEP challenge unknown, used or expired: %w", err)
			}
		}

		// 4. The certificate.
		if _, err := q.insert(ctx, "certificate", c.Serial, `INSERT INTO certs (`+browserCertColumns+`)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`, args...); err != nil {
			return err
		}

		// 5. Audit.
		return insertAuditOf(ctx, q, audit, d.ID)
	})
	if err != nil {
		return fmt.Errorf("recording browser cert: %w", err)
	}
	return nil
}

// SupersedeBrowserCerts starts the grace period of the browser certificates
// older than serial, which the Mac's agent reported: see
// storage.BrowserCertStore.
func (s *Store) SupersedeBrowserCerts(ctx context.Context, serial string, now time.Time, grace time.Duration, audit storage.AuditEvent) (int, error) {
	if grace < 0 {
		return 0, fmt.Errorf("superseding browser certs: grace period %s is negative", grace)
	}
	var tc timeCodec
	revokeAfter := tc.ns("end of the grace period", now.Add(grace))
	if tc.err != nil {
		return 0, fmt.Errorf("superseding browser certs: %w", tc.err)
	}
	n := 0
	err := s.write(ctx, func(q conn) error {
		n = 0
		c, err := scanBrowserCert(q.queryRow(ctx, `SELECT `+browserCertColumns+` FROM certs WHERE serial = $1 AND kind = $2`, serial, storage.CertKindBrowser))
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("browser certificate %q: %w", serial, storage.ErrNotFound)
		}
		if err != nil {
			return err
		}
		if c.RevokedAt(now) {
			return nil
		}
		// Older: an earlier NotBefore, or the same and a lower serial (the
		// order ListBrowserCerts lists them in).
		res, err := q.exec(ctx, `UPDATE certs SET revoke_after = $1, revoked_reason = $2
			WHERE device_id = $3 AND kind = $4 AND serial <> $5 AND (revoke_after = 0 OR revoke_after > $1)
			  AND (not_before < $6 OR (not_before = $6 AND serial < $5))`,
			revokeAfter, storage.SupersededReason+serial, c.DeviceID, storage.CertKindBrowser, serial, c.NotBefore.UnixNano())
		if err != nil {
			return fmt.Errorf("starting the grace period of older certificates: %w", err)
		}
		changed, err := res.RowsAffected()
		if err != nil {
			return err
		}
		if n = int(changed); n == 0 {
			return nil
		}
		return insertAuditOf(ctx, q, audit, c.DeviceID)
	})
	if err != nil {
		return 0, fmt.Errorf("superseding browser certs: %w", err)
	}
	return n, nil
}

// GetBrowserCert returns a browser certificate by serial, or ErrNotFound.
func (s *Store) GetBrowserCert(ctx context.Context, serial string) (storage.BrowserCert, error) {
	return one(ctx, s.reader(), scanBrowserCert, "browser certificate", fmt.Sprintf("browser certificate %q", serial),
		hotRead(`SELECT `+browserCertColumns+` FROM certs WHERE serial = $1 AND kind = $2`), serial, storage.CertKindBrowser)
}

// ListBrowserCerts returns the device's newest (at most 1000) browser
// certificates, newest first; ErrNotFound if the device is unknown.
func (s *Store) ListBrowserCerts(ctx context.Context, deviceID string) ([]storage.BrowserCert, error) {
	var certs []storage.BrowserCert
	// One snapshot, so the device check and the list agree.
	err := s.read(ctx, func(q conn) error {
		if err := deviceExists(ctx, q, deviceID); err != nil {
			return err
		}
		var err error
		certs, err = list(ctx, q, scanBrowserCert, `SELECT `+browserCertColumns+` FROM certs
			WHERE device_id = $1 AND kind = $2 ORDER BY not_before DESC, serial DESC LIMIT $3`,
			deviceID, storage.CertKindBrowser, MaxListLimit)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("listing browser certs: %w", err)
	}
	return certs, nil
}

// CountBrowserCertsSince counts the device's browser certificates with
// NotBefore at or after since; ErrNotFound if the device is unknown.
func (s *Store) CountBrowserCertsSince(ctx context.Context, deviceID string, since time.Time) (int, error) {
	// The zero time counts everything.
	sinceNS := int64(math.MinInt64)
	if !since.IsZero() {
		var tc timeCodec
		if sinceNS = tc.ns("since", since); tc.err != nil {
			return 0, fmt.Errorf("counting browser certs: %w", tc.err)
		}
	}
	// One statement, so the device check and the count agree.
	var n int
	err := s.reader().queryRow(ctx, `SELECT (SELECT count(*) FROM certs
			WHERE device_id = devices.id AND kind = $1 AND not_before >= $2)
		FROM devices WHERE id = $3`, storage.CertKindBrowser, sinceNS, deviceID).Scan(&n)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, fmt.Errorf("counting browser certs of device %q: %w", deviceID, storage.ErrNotFound)
	}
	if err != nil {
		return 0, fmt.Errorf("counting browser certs: %w", err)
	}
	return n, nil
}

// RevokeBrowserCert moves the certificate's RevokeAfter to at, with reason,
// unless it is already at or before at; the audit event is appended either
// way, since it records the request.
func (s *Store) RevokeBrowserCert(ctx context.Context, serial, reason string, at time.Time, audit storage.AuditEvent) error {
	if err := checkText("reason", reason, storage.MaxTextLen); err != nil {
		return fmt.Errorf("revoking browser cert: %w", err)
	}
	var tc timeCodec
	atNS := tc.ns("revocation time", at)
	// 0 is how "not revoked" is stored.
	if tc.err == nil && atNS == 0 {
		tc.err = errors.New("revocation time is not set")
	}
	if tc.err != nil {
		return fmt.Errorf("revoking browser cert: %w", tc.err)
	}
	err := s.write(ctx, func(q conn) error {
		// The row is locked, so a concurrent revocation or grace-period
		// update waits, and the earliest time wins whatever the order.
		deviceID, err := one(ctx, q, scanString, "browser certificate", fmt.Sprintf("browser certificate %q", serial),
			`SELECT device_id FROM certs WHERE serial = $1 AND kind = $2`+s.d.LockRow, serial, storage.CertKindBrowser)
		if err != nil {
			return err
		}
		if _, err := q.exec(ctx, `UPDATE certs SET revoke_after = $1, revoked_reason = $2
			WHERE serial = $3 AND (revoke_after = 0 OR revoke_after > $1)`, atNS, reason, serial); err != nil {
			return fmt.Errorf("updating browser certificate: %w", err)
		}
		return insertAuditOf(ctx, q, audit, deviceID)
	})
	if err != nil {
		return fmt.Errorf("revoking browser cert: %w", err)
	}
	return nil
}

// CreateSCEPChallenge stores a one-time challenge's hash; ErrAlreadyExists
// if it is stored already.
func (s *Store) CreateSCEPChallenge(ctx context.Context, hash []byte, expiresAt time.Time, audit storage.AuditEvent) error {
	if err := checkChallengeHash(hash); err != nil {
		return fmt.Errorf("creating SCEP challenge: %w", err)
	}
	var tc timeCodec
	exp := tc.ns("challenge expiry", expiresAt)
	if tc.err == nil && expiresAt.IsZero() {
		tc.err = errors.New("challenge expiry is not set")
	}
	if tc.err != nil {
		return fmt.Errorf("creating SCEP challenge: %w", tc.err)
	}
	err := s.write(ctx, func(q conn) error {
		res, err := q.exec(ctx, `INSERT INTO scep_challenges (hash, expires_at) VALUES ($1, $2)
			ON CONFLICT (hash) DO NOTHING`, hash, exp)
		if err != nil {
			return fmt.Errorf("inserting SCEP challenge: %w", err)
		}
		if err := oneRow(res, storage.ErrAlreadyExists); err != nil {
			return err
		}
		return insertAudit(ctx, q, audit)
	})
	if err != nil {
		return fmt.Errorf("creating SCEP challenge: %w", err)
	}
	return nil
}

// checkChallengeHash refuses a SCEP challenge key that is not a SHA-256.
func checkChallengeHash(h []byte) error {
	if len(h) != sha256.Size {
		return fmt.Errorf("challenge hash is %d bytes, want %d", len(h), sha256.Size)
	}
	return nil
}

// SCEPChallengeUsable reports whether the challenge exists, is unused and
// has not expired at now.
func (s *Store) SCEPChallengeUsable(ctx context.Context, hash []byte, now time.Time) (bool, error) {
	var tc timeCodec
	nowNS := tc.ns("now", now)
	if tc.err != nil {
		return false, fmt.Errorf("checking SCEP challenge: %w", tc.err)
	}
	var ok bool
	err := s.reader().queryRow(ctx, `SELECT EXISTS (SELECT 1 FROM scep_challenges
		WHERE hash = $1 AND used_at = 0 AND expires_at > $2)`, blob(hash), nowNS).Scan(&ok)
	if err != nil {
		return false, fmt.Errorf("checking SCEP challenge: %w", err)
	}
	return ok, nil
}

// DeleteExpiredSCEPChallenges removes challenges, used or not, whose expiry
// is strictly before the given time.
func (s *Store) DeleteExpiredSCEPChallenges(ctx context.Context, before time.Time) (int, error) {
	n, err := s.deleteBefore(ctx, `DELETE FROM scep_challenges WHERE expires_at < $1`, before)
	if err != nil {
		return 0, fmt.Errorf("deleting expired SCEP challenges: %w", err)
	}
	return n, nil
}
