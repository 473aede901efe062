package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/clearance/clearance/verifier/storage"
	"github.com/clearance/clearance/verifier/storage/internal/sqlrow"
)

// RecordBrowserCert stores a browser certificate, consuming its one-time
// challenge when one is given, and starts the grace period of the device's
// older ones: see storage.BrowserCertStore. The device row is locked first,
// so one device's recordings queue (and each sees the certificates the
// previous one stored); the challenge is consumed by one conditional
// UPDATE, which a concurrent transaction waits on and then re-checks, so of
// concurrent calls with one challenge only one finds it unused.
func (s *Store) RecordBrowserCert(ctx context.Context, c storage.BrowserCert, challengeHash []byte, now time.Time, grace time.Duration, audit storage.AuditEvent) error {
	args, err := sqlrow.BrowserCertArgs(c)
	if err != nil {
		return fmt.Errorf("recording browser cert: %w", err)
	}
	nowNS, revokeAfter, err := sqlrow.RecordTimes(now, grace)
	if err != nil {
		return fmt.Errorf("recording browser cert: %w", err)
	}
	err = s.write(ctx, func(tx pgx.Tx) error {
		// 1. The device: enrolled, not revoked, the Mac the certificate names.
		d, err := lockDevice(ctx, tx, "id", c.DeviceID)
		if err != nil {
			return err
		}
		if d.Revoked() {
			return fmt.Errorf("device %q: %w", d.ID, storage.ErrDeviceRevoked)
		}
		if d.HardwareUUID != c.HardwareUUID {
			return fmt.Errorf("device %q has hardware UUID %q, the certificate names %q", d.ID, d.HardwareUUID, c.HardwareUUID)
		}

		// 2. The one-time challenge, consumed only if the rest succeeds
		// (the transaction rolls back otherwise).
		if challengeHash != nil {
			if err := useSCEPChallenge(ctx, tx, challengeHash, nowNS); err != nil {
				return err
			}
		}

		// 3. The certificate.
		_, err = tx.Exec(ctx, `INSERT INTO certs (`+sqlrow.BrowserCertColumns+`)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`, args...)
		if isDuplicate(err, "") {
			return fmt.Errorf("certificate %q: %w", c.Serial, storage.ErrAlreadyExists)
		}
		if err != nil {
			return fmt.Errorf("inserting certificate: %w", err)
		}

		// 4. The older ones count until the grace period ends, or until
		// they were already to stop counting.
		if _, err := tx.Exec(ctx, `UPDATE certs SET revoke_after = $1, revoked_reason = $2
			WHERE device_id = $3 AND kind = $4 AND serial <> $5 AND (revoke_after = 0 OR revoke_after > $1)`,
			revokeAfter, sqlrow.SupersededBy(c.Serial), d.ID, storage.CertKindBrowser, c.Serial); err != nil {
			return fmt.Errorf("starting the grace period of older certificates: %w", err)
		}

		// 5. Audit.
		if audit.DeviceID == "" {
			audit.DeviceID = d.ID
		}
		return insertAudit(ctx, tx, audit)
	})
	if err != nil {
		return fmt.Errorf("recording browser cert: %w", err)
	}
	return nil
}

// useSCEPChallenge marks the challenge used at now if it exists, is unused
// and has not expired, and returns ErrNotFound otherwise.
func useSCEPChallenge(ctx context.Context, tx pgx.Tx, hash []byte, now int64) error {
	tag, err := tx.Exec(ctx, `UPDATE scep_challenges SET used_at = $1
		WHERE hash = $2 AND used_at = 0 AND expires_at > $1`, now, sqlrow.Blob(hash))
	if err != nil {
		return fmt.Errorf("consuming SCEP challenge: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("SCEP challenge unknown, used or expired: %w", storage.ErrNotFound)
	}
	return nil
}

// GetBrowserCert returns a browser certificate by serial, or ErrNotFound.
func (s *Store) GetBrowserCert(ctx context.Context, serial string) (storage.BrowserCert, error) {
	c, err := sqlrow.ScanBrowserCert(s.pool.QueryRow(ctx,
		`SELECT `+sqlrow.BrowserCertColumns+` FROM certs WHERE serial = $1 AND kind = $2`,
		serial, storage.CertKindBrowser))
	if errors.Is(err, pgx.ErrNoRows) {
		return storage.BrowserCert{}, fmt.Errorf("browser certificate %q: %w", serial, storage.ErrNotFound)
	}
	if err != nil {
		return storage.BrowserCert{}, fmt.Errorf("reading browser certificate: %w", err)
	}
	return c, nil
}

// ListBrowserCerts returns the device's newest (at most 1000) browser
// certificates, newest first; ErrNotFound if the device is unknown.
func (s *Store) ListBrowserCerts(ctx context.Context, deviceID string) ([]storage.BrowserCert, error) {
	// One snapshot, so the device check and the list agree.
	var certs []storage.BrowserCert
	err := s.read(ctx, func(tx pgx.Tx) error {
		var one int
		err := tx.QueryRow(ctx, `SELECT 1 FROM devices WHERE id = $1`, deviceID).Scan(&one)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("device %q: %w", deviceID, storage.ErrNotFound)
		}
		if err != nil {
			return err
		}
		rows, err := tx.Query(ctx, `SELECT `+sqlrow.BrowserCertColumns+` FROM certs
			WHERE device_id = $1 AND kind = $2 ORDER BY not_before DESC, serial DESC LIMIT $3`,
			deviceID, storage.CertKindBrowser, sqlrow.MaxListLimit)
		if err != nil {
			return err
		}
		defer rows.Close()
		certs = []storage.BrowserCert{}
		for rows.Next() {
			c, err := sqlrow.ScanBrowserCert(rows)
			if err != nil {
				return err
			}
			certs = append(certs, c)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("listing browser certs: %w", err)
	}
	return certs, nil
}

// CountBrowserCertsSince counts the device's browser certificates with
// NotBefore at or after since; ErrNotFound if the device is unknown.
func (s *Store) CountBrowserCertsSince(ctx context.Context, deviceID string, since time.Time) (int, error) {
	sinceNS, err := sqlrow.SinceNS(since)
	if err != nil {
		return 0, fmt.Errorf("counting browser certs: %w", err)
	}
	// One statement, so the device check and the count agree.
	var n int
	err = s.pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM certs
			WHERE device_id = devices.id AND kind = $1 AND not_before >= $2)
		FROM devices WHERE id = $3`, storage.CertKindBrowser, sinceNS, deviceID).Scan(&n)
	if errors.Is(err, pgx.ErrNoRows) {
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
	atNS, err := sqlrow.CheckRevocation(reason, at)
	if err != nil {
		return fmt.Errorf("revoking browser cert: %w", err)
	}
	err = s.write(ctx, func(tx pgx.Tx) error {
		// The row is locked, so a concurrent revocation or grace-period
		// update waits, and the earliest time wins whatever the order.
		var deviceID string
		err := tx.QueryRow(ctx, `SELECT device_id FROM certs WHERE serial = $1 AND kind = $2 FOR NO KEY UPDATE`,
			serial, storage.CertKindBrowser).Scan(&deviceID)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("browser certificate %q: %w", serial, storage.ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("reading browser certificate: %w", err)
		}
		if _, err := tx.Exec(ctx, `UPDATE certs SET revoke_after = $1, revoked_reason = $2
			WHERE serial = $3 AND (revoke_after = 0 OR revoke_after > $1)`,
			atNS, reason, serial); err != nil {
			return fmt.Errorf("updating browser certificate: %w", err)
		}
		if audit.DeviceID == "" {
			audit.DeviceID = deviceID
		}
		return insertAudit(ctx, tx, audit)
	})
	if err != nil {
		return fmt.Errorf("revoking browser cert: %w", err)
	}
	return nil
}

// CreateSCEPChallenge stores a one-time challenge's hash; ErrAlreadyExists
// if it is stored already.
func (s *Store) CreateSCEPChallenge(ctx context.Context, hash []byte, expiresAt time.Time, audit storage.AuditEvent) error {
	if err := sqlrow.CheckChallengeHash(hash); err != nil {
		return fmt.Errorf("creating SCEP challenge: %w", err)
	}
	exp, err := sqlrow.ChallengeExpiry(expiresAt)
	if err != nil {
		return fmt.Errorf("creating SCEP challenge: %w", err)
	}
	err = s.write(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `INSERT INTO scep_challenges (hash, expires_at)
			VALUES ($1, $2) ON CONFLICT (hash) DO NOTHING`, hash, exp)
		if err != nil {
			return fmt.Errorf("inserting SCEP challenge: %w", err)
		}
		if tag.RowsAffected() == 0 {
			return storage.ErrAlreadyExists
		}
		return insertAudit(ctx, tx, audit)
	})
	if err != nil {
		return fmt.Errorf("creating SCEP challenge: %w", err)
	}
	return nil
}

// SCEPChallengeUsable reports whether the challenge exists, is unused and
// has not expired at now.
func (s *Store) SCEPChallengeUsable(ctx context.Context, hash []byte, now time.Time) (bool, error) {
	var tc sqlrow.TimeCodec
	nowNS := tc.NS("now", now)
	if tc.Err != nil {
		return false, fmt.Errorf("checking SCEP challenge: %w", tc.Err)
	}
	var ok bool
	err := s.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM scep_challenges
		WHERE hash = $1 AND used_at = 0 AND expires_at > $2)`, sqlrow.Blob(hash), nowNS).Scan(&ok)
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
