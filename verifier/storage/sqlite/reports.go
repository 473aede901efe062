package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/clearance/clearance/verifier/storage"
	"github.com/clearance/clearance/verifier/storage/internal/sqlrow"
)

// A device's reports are ordered by (enrollment, seq): re-enrollment starts
// seq again from 1 but the new reports are still the newest.
const newestFirst = `ORDER BY enrollment DESC, seq DESC`

// SaveReport stores r and updates its device, consuming nonce when it is
// set. The checks run in the documented order, so the first failing one
// names the error: device, seq, then nonce (unknown, wrong device, used,
// expired). Concurrent calls share one transaction and its fsync (see
// groupcommit.go); a call whose ctx ends before its report is taken into
// a batch returns ctx.Err() and stores nothing.
func (s *Store) SaveReport(ctx context.Context, r storage.Report, nonce []byte, keep int) error {
	if keep < 1 {
		return fmt.Errorf("saving report: keep is %d, must be at least 1", keep)
	}
	// SQLite integers are signed. An agent counts from 1 and cannot get
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

	// The writer runs this in the batch's transaction, with a context of
	// its own: once taken, a report's outcome no longer depends on ctx. It
	// runs in a savepoint that is rolled back if it returns an error, so it
	// may write before its last check.
	st := s.reportStmts
	err := s.reports.do(ctx, func(ctx context.Context, tx *sql.Tx) error {
		// 1.-2. Device known and not revoked, seq strictly increasing: the
		// device's summary is updated only then. When it is not, the
		// device is read to tell which check failed.
		var enrollment int64
		err := tx.StmtContext(ctx, st.update).QueryRowContext(ctx,
			r.DeviceID, int64(r.Seq), observedAt, receivedAt).Scan(&enrollment)
		if errors.Is(err, sql.ErrNoRows) {
			return st.refusal(ctx, tx, r)
		}
		if err != nil {
			return fmt.Errorf("updating device: %w", err)
		}

		// 3. Nonce, consumed only if everything else succeeds.
		if len(nonce) > 0 {
			if err := st.useNonce(ctx, tx, nonce, r.DeviceID, receivedAt); err != nil {
				return err
			}
		}

		// 4. The report.
		if _, err := tx.StmtContext(ctx, st.insert).ExecContext(ctx,
			r.DeviceID, enrollment, int64(r.Seq), observedAt, receivedAt, sqlrow.Blob(r.Payload), sqlrow.Blob(r.Signature)); err != nil {
			return fmt.Errorf("inserting report: %w", err)
		}

		// 5. Retention: every report beyond the keep newest.
		if _, err := tx.StmtContext(ctx, st.prune).ExecContext(ctx, r.DeviceID, keep); err != nil {
			return fmt.Errorf("pruning reports: %w", err)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("saving report: %w", err)
	}
	return nil
}

// reportStmts are SaveReport's statements, prepared once on the writer's
// connection: with reports committed in groups, preparing them for every
// report would cost more than running them.
type reportStmts struct {
	device, nonce, consumeNonce, insert, update, prune *sql.Stmt
}

func prepareReportStmts(ctx context.Context, p *preparer) *reportStmts {
	return &reportStmts{
		device: p.prepare(ctx, `SELECT revoked_at, last_seq FROM devices WHERE id = ?`),
		nonce:  p.prepare(ctx, `SELECT device_id, expires_at, used FROM nonces WHERE nonce = ?`),
		consumeNonce: p.prepare(ctx,
			`UPDATE nonces SET used = 1, used_at = ? WHERE nonce = ?`),
		insert: p.prepare(ctx, `INSERT INTO reports (
			device_id, enrollment, seq, observed_at, received_at, payload, signature)
			VALUES (?, ?, ?, ?, ?, ?, ?)`),
		update: p.prepare(ctx, `UPDATE devices SET
			last_seq = ?2, last_report_at = ?3, last_seen = max(last_seen, ?4)
			WHERE id = ?1 AND revoked_at = 0 AND last_seq < ?2
			RETURNING enrollments`),
		prune: p.prepare(ctx, `DELETE FROM reports WHERE rowid IN (
			SELECT rowid FROM reports WHERE device_id = ? `+newestFirst+` LIMIT -1 OFFSET ?)`),
	}
}

// refusal says why the device's summary could not be updated for r: the
// device is unknown, revoked, or r.Seq is not above its LastSeq.
func (st *reportStmts) refusal(ctx context.Context, tx *sql.Tx, r storage.Report) error {
	var revokedAt, lastSeq int64
	err := tx.StmtContext(ctx, st.device).QueryRowContext(ctx, r.DeviceID).Scan(&revokedAt, &lastSeq)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return fmt.Errorf("device %q: %w", r.DeviceID, storage.ErrNotFound)
	case err != nil:
		return fmt.Errorf("reading device: %w", err)
	case revokedAt != 0:
		return fmt.Errorf("device %q: %w", r.DeviceID, storage.ErrDeviceRevoked)
	case r.Seq <= uint64(lastSeq):
		return fmt.Errorf("seq %d after %d: %w", r.Seq, lastSeq, storage.ErrSeqNotIncreasing)
	}
	return fmt.Errorf("device %q was not updated", r.DeviceID)
}

// useNonce marks nonce used by deviceID at receivedAt, or says why it
// cannot be.
func (st *reportStmts) useNonce(ctx context.Context, tx *sql.Tx, nonce []byte, deviceID string, receivedAt int64) error {
	var (
		owner     string
		expiresAt int64
		used      bool
	)
	err := tx.StmtContext(ctx, st.nonce).QueryRowContext(ctx, nonce).
		Scan(&owner, &expiresAt, &used)
	switch {
	case errors.Is(err, sql.ErrNoRows):
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
	if _, err := tx.StmtContext(ctx, st.consumeNonce).ExecContext(ctx, receivedAt, nonce); err != nil {
		return fmt.Errorf("consuming nonce: %w", err)
	}
	return nil
}

// LatestReport returns the device's newest report, or ErrNotFound.
func (s *Store) LatestReport(ctx context.Context, deviceID string) (storage.Report, error) {
	r, err := sqlrow.ScanReport(s.r.QueryRowContext(ctx,
		`SELECT `+sqlrow.ReportColumns+` FROM reports WHERE device_id = ? `+newestFirst+` LIMIT 1`, deviceID))
	if errors.Is(err, sql.ErrNoRows) {
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
	// One read transaction, so the device check and the list agree.
	tx, err := s.r.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, fmt.Errorf("listing reports: %w", err)
	}
	defer tx.Rollback()
	var one int
	err = tx.QueryRowContext(ctx, `SELECT 1 FROM devices WHERE id = ?`, deviceID).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("listing reports of device %q: %w", deviceID, storage.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("listing reports: %w", err)
	}
	rows, err := tx.QueryContext(ctx,
		`SELECT `+sqlrow.ReportColumns+` FROM reports WHERE device_id = ? `+newestFirst+` LIMIT ?`,
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
	err := s.write(ctx, func(tx *sql.Tx) error {
		var one int
		err := tx.QueryRowContext(ctx, `SELECT 1 FROM devices WHERE id = ?`, deviceID).Scan(&one)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("device %q: %w", deviceID, storage.ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("reading device: %w", err)
		}
		_, err = tx.ExecContext(ctx,
			`INSERT INTO nonces (nonce, device_id, expires_at) VALUES (?, ?, ?)`,
			nonce, deviceID, exp)
		if isDuplicate(err) {
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
	res, err := s.w.ExecContext(ctx, `DELETE FROM nonces WHERE expires_at < ?`, b)
	if err != nil {
		return 0, fmt.Errorf("deleting expired nonces: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("deleting expired nonces: %w", err)
	}
	return int(n), nil
}
