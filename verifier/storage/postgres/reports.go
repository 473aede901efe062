package postgres

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/clearance/clearance/verifier/storage"
	"github.com/clearance/clearance/verifier/storage/internal/sqlrow"
)

// A device's reports are ordered by (enrollment, seq): re-enrollment starts
// seq again from 1 but the new reports are still the newest.
const newestFirst = `ORDER BY enrollment DESC, seq DESC`

// SaveReport stores r and updates its device, consuming nonce when it is
// set. The checks run in the documented order, so the first failing one
// names the error: device, seq, then nonce (unknown, wrong device, used,
// expired).
func (s *Store) SaveReport(ctx context.Context, r storage.Report, nonce []byte, keep int) error {
	if keep < 1 {
		return fmt.Errorf("saving report: keep is %d, must be at least 1", keep)
	}
	// PostgreSQL integers are signed. An agent counts from 1 and cannot get
	// anywhere near this; a report that claims to is refused, not wrapped.
	if r.Seq > math.MaxInt64 {
		return fmt.Errorf("saving report: seq %d exceeds the storable maximum %d", r.Seq, int64(math.MaxInt64))
	}
	var c sqlrow.TimeCodec
	observedAt := c.NS("observed at", r.ObservedAt)
	receivedAt := c.NS("received at", r.ReceivedAt)
	if c.Err != nil {
		return fmt.Errorf("saving report: %w", c.Err)
	}

	err := s.write(ctx, func(tx pgx.Tx) error {
		// 1. Device: known and not revoked. Its row stays locked, so
		// concurrent reports of one device, from any replica, are stored
		// one after the other and each sees the last one's seq.
		var (
			revokedAt, enrollment int64
			lastSeq               int64
		)
		err := tx.QueryRow(ctx,
			`SELECT revoked_at, enrollments, last_seq FROM devices WHERE id = $1 FOR NO KEY UPDATE`, r.DeviceID).
			Scan(&revokedAt, &enrollment, &lastSeq)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("device %q: %w", r.DeviceID, storage.ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("reading device: %w", err)
		}
		if revokedAt != 0 {
			return fmt.Errorf("device %q: %w", r.DeviceID, storage.ErrDeviceRevoked)
		}

		// 2. Seq strictly increasing.
		if r.Seq <= uint64(lastSeq) {
			return fmt.Errorf("seq %d after %d: %w", r.Seq, lastSeq, storage.ErrSeqNotIncreasing)
		}

		// 3. Nonce, consumed only if everything else succeeds (the
		// transaction rolls back otherwise).
		if len(nonce) > 0 {
			if err := useNonce(ctx, tx, nonce, r.DeviceID, receivedAt); err != nil {
				return err
			}
		}

		// 4. The report and the device's summary of it.
		if _, err := tx.Exec(ctx, `INSERT INTO reports (
			device_id, enrollment, seq, observed_at, received_at, payload, signature)
			VALUES ($1, $2, $3, $4, $5, $6, $7)`,
			r.DeviceID, enrollment, int64(r.Seq), observedAt, receivedAt, sqlrow.Blob(r.Payload), sqlrow.Blob(r.Signature)); err != nil {
			return fmt.Errorf("inserting report: %w", err)
		}
		if _, err := tx.Exec(ctx, `UPDATE devices SET
			last_seq = $1, last_report_at = $2, last_seen = GREATEST(last_seen, $3)
			WHERE id = $4`,
			int64(r.Seq), observedAt, receivedAt, r.DeviceID); err != nil {
			return fmt.Errorf("updating device: %w", err)
		}

		// 5. Retention: everything older than the keep-th newest report.
		// With fewer than keep reports the subquery is NULL and the
		// comparison deletes nothing.
		if _, err := tx.Exec(ctx, `DELETE FROM reports
			WHERE device_id = $1 AND (enrollment, seq) < (
				SELECT enrollment, seq FROM reports WHERE device_id = $1
				`+newestFirst+` LIMIT 1 OFFSET $2)`,
			r.DeviceID, keep-1); err != nil {
			return fmt.Errorf("pruning reports: %w", err)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("saving report: %w", err)
	}
	return nil
}

// useNonce marks nonce used by deviceID at receivedAt, or says why it
// cannot be.
func useNonce(ctx context.Context, tx pgx.Tx, nonce []byte, deviceID string, receivedAt int64) error {
	var (
		owner     string
		expiresAt int64
		used      bool
	)
	err := tx.QueryRow(ctx,
		`SELECT device_id, expires_at, used FROM nonces WHERE nonce = $1 FOR UPDATE`, nonce).
		Scan(&owner, &expiresAt, &used)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return storage.ErrNonceUnknown
	case err != nil:
		return fmt.Errorf("reading nonce: %w", err)
	case owner != deviceID:
		return storage.ErrNonceWrongDevice
	case used:
		return storage.ErrNonceUsed
	case expiresAt <= receivedAt:
		return storage.ErrNonceExpired
	}
	if _, err := tx.Exec(ctx,
		`UPDATE nonces SET used = true, used_at = $1 WHERE nonce = $2`, receivedAt, nonce); err != nil {
		return fmt.Errorf("consuming nonce: %w", err)
	}
	return nil
}

// LatestReport returns the device's newest report, or ErrNotFound.
func (s *Store) LatestReport(ctx context.Context, deviceID string) (storage.Report, error) {
	r, err := sqlrow.ScanReport(s.pool.QueryRow(ctx,
		`SELECT `+sqlrow.ReportColumns+` FROM reports WHERE device_id = $1 `+newestFirst+` LIMIT 1`, deviceID))
	if errors.Is(err, pgx.ErrNoRows) {
		return storage.Report{}, fmt.Errorf("latest report of device %q: %w", deviceID, storage.ErrNotFound)
	}
	if err != nil {
		return storage.Report{}, fmt.Errorf("reading latest report: %w", err)
	}
	return r, nil
}

// ListReports returns up to limit (clamped to [1, 1000]) of the device's
// reports, newest first; ErrNotFound if the device is unknown.
func (s *Store) ListReports(ctx context.Context, deviceID string, limit int) ([]storage.Report, error) {
	// One snapshot, so the device check and the list agree.
	var reports []storage.Report
	err := s.read(ctx, func(tx pgx.Tx) error {
		var err error
		reports, err = listReports(ctx, tx, deviceID, limit)
		return err
	})
	return reports, err
}

func listReports(ctx context.Context, tx pgx.Tx, deviceID string, limit int) ([]storage.Report, error) {
	var one int
	err := tx.QueryRow(ctx, `SELECT 1 FROM devices WHERE id = $1`, deviceID).Scan(&one)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("listing reports of device %q: %w", deviceID, storage.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("listing reports: %w", err)
	}
	rows, err := tx.Query(ctx,
		`SELECT `+sqlrow.ReportColumns+` FROM reports WHERE device_id = $1 `+newestFirst+` LIMIT $2`,
		deviceID, sqlrow.ClampLimit(limit))
	if err != nil {
		return nil, fmt.Errorf("listing reports: %w", err)
	}
	defer rows.Close()
	reports := []storage.Report{}
	for rows.Next() {
		r, err := sqlrow.ScanReport(rows)
		if err != nil {
			return nil, fmt.Errorf("listing reports: %w", err)
		}
		reports = append(reports, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing reports: %w", err)
	}
	return reports, nil
}

// CreateNonce records a nonce issued to a device: ErrAlreadyExists if it
// was issued before (to any device), ErrNotFound if the device is unknown.
func (s *Store) CreateNonce(ctx context.Context, deviceID string, nonce []byte, expiresAt time.Time) error {
	// An empty nonce means "no nonce" to SaveReport, so it could never be
	// consumed.
	if len(nonce) == 0 {
		return errors.New("creating nonce: empty nonce")
	}
	var c sqlrow.TimeCodec
	exp := c.NS("expires at", expiresAt)
	if c.Err != nil {
		return fmt.Errorf("creating nonce: %w", c.Err)
	}
	err := s.write(ctx, func(tx pgx.Tx) error {
		// The foreign key check would also refuse an unknown device, but
		// with an error that has to be told apart from others.
		var one int
		err := tx.QueryRow(ctx, `SELECT 1 FROM devices WHERE id = $1`, deviceID).Scan(&one)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("device %q: %w", deviceID, storage.ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("reading device: %w", err)
		}
		_, err = tx.Exec(ctx,
			`INSERT INTO nonces (nonce, device_id, expires_at) VALUES ($1, $2, $3)`,
			nonce, deviceID, exp)
		if isDuplicate(err, "") {
			return storage.ErrAlreadyExists
		}
		if err != nil {
			return fmt.Errorf("inserting nonce: %w", err)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("creating nonce: %w", err)
	}
	return nil
}

// DeleteExpiredNonces removes nonces, used or not, whose expiry is strictly
// before the given time.
func (s *Store) DeleteExpiredNonces(ctx context.Context, before time.Time) (int, error) {
	var c sqlrow.TimeCodec
	b := c.NS("before", before)
	if c.Err != nil {
		return 0, fmt.Errorf("deleting expired nonces: %w", c.Err)
	}
	res, err := s.pool.Exec(ctx, `DELETE FROM nonces WHERE expires_at < $1`, b)
	if err != nil {
		return 0, fmt.Errorf("deleting expired nonces: %w", err)
	}
	return int(res.RowsAffected()), nil
}
