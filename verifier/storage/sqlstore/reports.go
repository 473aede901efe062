package sqlstore

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/clearance/clearance/verifier/storage"
)

// reportColumns are the reports table's columns in scanReport's order.
const reportColumns = `device_id, seq, observed_at, received_at, payload, signature, device_key`

func scanReport(sc scanner) (storage.Report, error) {
	var (
		r                    storage.Report
		seq                  int64
		observedAt, received int64
	)
	if err := sc.Scan(&r.DeviceID, &seq, &observedAt, &received, &r.Payload, &r.Signature, &r.Key); err != nil {
		return storage.Report{}, err
	}
	r.Seq = uint64(seq) // never negative: CHECK (seq > 0)
	r.ObservedAt = fromNS(observedAt)
	r.ReceivedAt = fromNS(received)
	return r, nil
}

// A device's reports are ordered by (enrollment, seq): re-enrollment starts
// seq again from 1 but the new reports are still the newest.
const newestFirst = `ORDER BY enrollment DESC, seq DESC`

// SaveReport's statements: every report runs the first three, as execs:
// on a transaction, database/sql's rows (a goroutine and a context per
// query) cost more than most of these statements' work.
var (
	// advanceDevice is checks 1 to 3 and the device's summary at once: it
	// changes the device only if it is known, not revoked, still holds the
	// key the report was verified with and is behind r.Seq, and then holds
	// its row until the commit, so concurrent reports of one device are
	// stored one after the other, and a re-enrollment (which writes the
	// same row) comes wholly before or after each of them.
	//
	// It also sets what the report says of the agent's settings ($7, $8:
	// set or clear), which costs the row it writes anyway no more
	// statement, and counts the report against retention ($6 reports kept):
	// report_count is how many the device holds once pruneReports has run,
	// over_keep how many of its oldest pruneReports is to delete (both
	// computed from the count before this report). Only SaveReport stores
	// or deletes reports; anything that comes to must keep report_count
	// exact, or retention deletes too few or too many.
	advanceDevice = prepared(`UPDATE devices SET last_seq = $2, last_report_at = $3, ` + lastSeenAt("$4") + `,
		report_count = CASE WHEN report_count < $6 THEN report_count + 1 ELSE $6 END,
		over_keep = CASE WHEN report_count < $6 THEN 0 ELSE report_count + 1 - $6 END,
		settings_rejected_at = $7, settings_rejected = $8
		WHERE id = $1 AND revoked_at = 0 AND public_key = $5 AND last_seq < $2`)
	deviceState  = prepared(`SELECT revoked_at, public_key, last_seq, enrollments FROM devices WHERE id = $1`)
	storedReport = prepared(`SELECT 1 FROM reports WHERE device_id = $1 AND enrollment = $2 AND seq = $3 AND payload = $4`)
	// insertReport stores the report under the device's current
	// enrollment, which advanceDevice's row lock keeps as it is.
	insertReport = prepared(`INSERT INTO reports (device_id, enrollment, seq, observed_at, received_at, payload, signature, device_key)
		VALUES ($1, (SELECT enrollments FROM devices WHERE id = $1), $2, $3, $4, $5, $6, $7)`)
	// pruneReports deletes the device's over_keep oldest reports, each
	// found by its primary key. While over_keep is 0, device_id is
	// compared with NULL, which matches nothing: no report is visited.
	pruneReports = prepared(`DELETE FROM reports
		WHERE device_id = (SELECT id FROM devices WHERE id = $1 AND over_keep > 0)
		AND (enrollment, seq) IN (SELECT enrollment, seq FROM reports WHERE device_id = $1 ` + oldestFirst + `
			LIMIT (SELECT over_keep FROM devices WHERE id = $1))`)
)

// oldestFirst is newestFirst reversed.
const oldestFirst = `ORDER BY enrollment, seq`

// SaveReport stores r and updates its device, consuming nonce when it is
// set. The checks run in the documented order, so the first failing one
// names the error: device, key, seq (an exact resend first), then nonce
// (unknown, wrong device, used, expired). With a group commit, a call whose ctx ends before its report
// is taken into a batch returns ctx.Err() and stores nothing.
func (s *Store) SaveReport(ctx context.Context, r storage.Report, nonce []byte, keep int) error {
	if keep < 1 {
		return fmt.Errorf("saving report: keep is %d, must be at least 1", keep)
	}
	// Both engines' integers are signed. An agent counts from 1 and cannot
	// get anywhere near this; a report that claims to is refused, not wrapped.
	if r.Seq > math.MaxInt64 {
		return fmt.Errorf("saving report: seq %d exceeds the storable maximum %d", r.Seq, int64(math.MaxInt64))
	}
	var c timeCodec
	observedAt := c.ns("observed at", r.ObservedAt)
	receivedAt := c.ns("received at", r.ReceivedAt)
	settingsRejectedAt := c.ns("settings rejected at", r.SettingsRejectedAt)
	if c.err != nil {
		return fmt.Errorf("saving report: %w", c.err)
	}
	if err := checkSettingsRejected(r); err != nil {
		return fmt.Errorf("saving report: %w: %v", storage.ErrInvalid, err)
	}
	if r.Streaks != nil {
		if err := checkStreaks(r.DeviceID, r.Streaks); err != nil {
			return fmt.Errorf("saving report: %w: %v", storage.ErrInvalid, err)
		}
	}

	// Any error rolls back what fn wrote, so it may write before its last
	// check.
	err := s.grouped(ctx, func(ctx context.Context, q conn) error {
		// 1.-3. Device known, not revoked and still holding r.Key; seq
		// strictly increasing.
		res, err := q.exec(ctx, advanceDevice, r.DeviceID, int64(r.Seq), observedAt, receivedAt, blob(r.Key), keep,
			settingsRejectedAt, r.SettingsRejected)
		if err != nil {
			return fmt.Errorf("updating device: %w", err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return fmt.Errorf("updating device: %w", err)
		} else if n == 0 {
			return refusal(ctx, q, r)
		}

		// 4. Nonce, consumed only if everything else succeeds.
		if len(nonce) > 0 {
			if err := useNonce(ctx, q, nonce, r.DeviceID, receivedAt); err != nil {
				return err
			}
		}

		// 5. The report.
		if _, err := q.exec(ctx, insertReport, r.DeviceID, int64(r.Seq), observedAt, receivedAt,
			blob(r.Payload), blob(r.Signature), blob(r.Key)); err != nil {
			return fmt.Errorf("inserting report: %w", err)
		}

		// 6. Retention.
		if _, err := q.exec(ctx, pruneReports, r.DeviceID); err != nil {
			return fmt.Errorf("pruning reports: %w", err)
		}

		// 7. The runs the report changes, in its order (step 1 holds the
		// device's row).
		if r.Streaks != nil {
			return setStreaks(ctx, q, r.DeviceID, observedAt, r.Streaks)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("saving report: %w", err)
	}
	return nil
}

// checkSettingsRejected refuses a report's settings rejection no store
// keeps: a time without a reason or a reason without a time, or a reason
// checkText refuses.
func checkSettingsRejected(r storage.Report) error {
	if r.SettingsRejectedAt.IsZero() != (r.SettingsRejected == "") {
		return errors.New("a settings rejection needs both a time and a reason")
	}
	return checkText("settings rejection reason", r.SettingsRejected, storage.MaxTextLen)
}

// refusal says why advanceDevice did not change the device for r: it is
// unknown, revoked, holds another key now, or r.Seq is not above its
// LastSeq — in which case r may be an exact resend of a stored report.
func refusal(ctx context.Context, q conn, r storage.Report) error {
	var (
		revokedAt, lastSeq, enrollment int64
		key                            []byte
	)
	err := q.queryRow(ctx, deviceState, r.DeviceID).Scan(&revokedAt, &key, &lastSeq, &enrollment)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return fmt.Errorf("device %q: %w", r.DeviceID, storage.ErrNotFound)
	case err != nil:
		return fmt.Errorf("reading device: %w", err)
	case revokedAt != 0:
		return fmt.Errorf("device %q: %w", r.DeviceID, storage.ErrDeviceRevoked)
	case !bytes.Equal(key, r.Key):
		return fmt.Errorf("device %q: %w", r.DeviceID, storage.ErrKeyReplaced)
	case r.Seq <= uint64(lastSeq):
		// The payload is compared whole: it is signed, so the same bytes
		// under the same seq are the same report.
		stored, err := exists(ctx, q, storedReport, r.DeviceID, enrollment, int64(r.Seq), blob(r.Payload))
		switch {
		case err != nil:
			return fmt.Errorf("reading report: %w", err)
		case stored:
			return fmt.Errorf("seq %d: %w", r.Seq, storage.ErrReportStored)
		}
		return fmt.Errorf("seq %d after %d: %w", r.Seq, lastSeq, storage.ErrSeqNotIncreasing)
	}
	// The device changed between advanceDevice and this read (only possible
	// where writers run concurrently): run again to see it as it is now.
	return fmt.Errorf("device %q changed meanwhile: %w", r.DeviceID, errRace)
}

var (
	selectNonce = prepared(`SELECT device_id, expires_at, used FROM nonces WHERE nonce = $1`)
	useNonceSQL = prepared(`UPDATE nonces SET used = TRUE, used_at = $1 WHERE nonce = $2`)
)

// useNonce marks nonce used by deviceID at receivedAt, or says why it
// cannot be.
func useNonce(ctx context.Context, q conn, nonce []byte, deviceID string, receivedAt int64) error {
	var (
		owner     string
		expiresAt int64
		used      bool
	)
	err := q.queryRow(ctx, selectNonce+q.s.d.LockRow, nonce).Scan(&owner, &expiresAt, &used)
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
	if _, err := q.exec(ctx, useNonceSQL, receivedAt, nonce); err != nil {
		return fmt.Errorf("consuming nonce: %w", err)
	}
	return nil
}

// LatestReport returns the device's newest report, or ErrNotFound.
func (s *Store) LatestReport(ctx context.Context, deviceID string) (storage.Report, error) {
	return one(ctx, s.reader(), scanReport, "latest report", fmt.Sprintf("latest report of device %q", deviceID),
		hotRead(`SELECT `+reportColumns+` FROM reports WHERE device_id = $1 `+newestFirst+` LIMIT 1`), deviceID)
}

// ListReports returns up to limit (clamped to [1, 1000]) of the device's
// reports, newest first; ErrNotFound if the device is unknown.
func (s *Store) ListReports(ctx context.Context, deviceID string, limit int) ([]storage.Report, error) {
	var reports []storage.Report
	// One snapshot, so the device check and the list agree.
	err := s.read(ctx, func(q conn) error {
		if err := deviceExists(ctx, q, deviceID); err != nil {
			return err
		}
		var err error
		reports, err = list(ctx, q, scanReport,
			`SELECT `+reportColumns+` FROM reports WHERE device_id = $1 `+newestFirst+` LIMIT $2`,
			deviceID, clampLimit(limit))
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("listing reports: %w", err)
	}
	return reports, nil
}

// deviceExists returns ErrNotFound if the device is unknown.
func deviceExists(ctx context.Context, q conn, id string) error {
	ok, err := exists(ctx, q, `SELECT 1 FROM devices WHERE id = $1`, id)
	switch {
	case err != nil:
		return fmt.Errorf("reading device: %w", err)
	case !ok:
		return fmt.Errorf("device %q: %w", id, storage.ErrNotFound)
	}
	return nil
}

// CreateNonce records a nonce issued to a device: ErrAlreadyExists if it
// was issued before (to any device), ErrNotFound if the device is unknown.
func (s *Store) CreateNonce(ctx context.Context, deviceID string, nonce []byte, expiresAt time.Time) error {
	// An empty nonce means "no nonce" to SaveReport, so it could never be
	// consumed.
	if len(nonce) == 0 {
		return errors.New("creating nonce: empty nonce")
	}
	var c timeCodec
	exp := c.ns("expires at", expiresAt)
	if c.err != nil {
		return fmt.Errorf("creating nonce: %w", c.err)
	}
	err := s.write(ctx, func(q conn) error {
		// The foreign key would also refuse an unknown device, but with an
		// error that has to be told apart from others.
		if err := deviceExists(ctx, q, deviceID); err != nil {
			return err
		}
		_, err := q.exec(ctx, `INSERT INTO nonces (nonce, device_id, expires_at) VALUES ($1, $2, $3)`,
			nonce, deviceID, exp)
		if s.d.IsUniqueViolation(err) {
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
	n, err := s.deleteBefore(ctx, `DELETE FROM nonces WHERE expires_at < $1`, before)
	if err != nil {
		return 0, fmt.Errorf("deleting expired nonces: %w", err)
	}
	return n, nil
}
