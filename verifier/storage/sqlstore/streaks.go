package sqlstore

import (
	"bytes"
	"context"
	"fmt"

	"github.com/clearance/clearance/verifier/storage"
)

// --- policy streaks ---

func scanStreak(sc scanner) (storage.PolicyStreak, error) {
	var (
		st    storage.PolicyStreak
		since int64
	)
	if err := sc.Scan(&st.PolicyID, &st.Status, &st.QuerySHA256, &since); err != nil {
		return storage.PolicyStreak{}, err
	}
	st.Since = fromNS(since)
	return st, nil
}

const streakColumns = `policy_id, status, query_sha256, since`

func streaksOf(ctx context.Context, q conn, query, deviceID string) (map[string]storage.PolicyStreak, error) {
	rows, err := list(ctx, q, scanStreak, query, deviceID)
	if err != nil {
		return nil, err
	}
	m := make(map[string]storage.PolicyStreak, len(rows))
	for _, r := range rows {
		m[r.PolicyID] = r
	}
	return m, nil
}

// PolicyStreaks returns the device's streaks by policy id.
func (s *Store) PolicyStreaks(ctx context.Context, deviceID string) (map[string]storage.PolicyStreak, error) {
	if !storable(deviceID) {
		return map[string]storage.PolicyStreak{}, nil
	}
	m, err := streaksOf(ctx, s.reader(), `SELECT `+streakColumns+` FROM policy_streaks WHERE device_id = $1`, deviceID)
	if err != nil {
		return nil, fmt.Errorf("reading policy streaks: %w", err)
	}
	return m, nil
}

// checkStreaks refuses what UpdatePolicyStreaks must not store.
func checkStreaks(deviceID string, now []storage.PolicyStreak) error {
	if err := checkTexts(true, textField{"device ID", deviceID}); err != nil {
		return err
	}
	if len(now) > storage.MaxPolicyStreaks {
		return fmt.Errorf("%d streaks, more than the %d allowed", len(now), storage.MaxPolicyStreaks)
	}
	seen := make(map[string]bool, len(now))
	for _, st := range now {
		if err := checkTexts(true, textField{"policy ID", st.PolicyID}); err != nil {
			return err
		}
		if seen[st.PolicyID] {
			return fmt.Errorf("policy %q named twice", st.PolicyID)
		}
		seen[st.PolicyID] = true
		switch st.Status {
		case "PASS", "FAIL", "ERROR", "MISSING":
		default:
			return fmt.Errorf("policy %q: status %q is none of PASS, FAIL, ERROR, MISSING", st.PolicyID, st.Status)
		}
		if len(st.QuerySHA256) > 64 {
			return fmt.Errorf("policy %q: query digest is %d bytes, more than 64", st.PolicyID, len(st.QuerySHA256))
		}
	}
	return nil
}

// UpdatePolicyStreaks makes the device's streaks those of u: read, then
// only the rows that differ written, and every row marked with u's
// receipt, in one transaction (the group commit's, where there is one).
func (s *Store) UpdatePolicyStreaks(ctx context.Context, deviceID string, u storage.StreakUpdate) (bool, error) {
	fail := func(err error) (bool, error) { return false, fmt.Errorf("updating policy streaks: %w", err) }
	now := u.Streaks
	if err := checkStreaks(deviceID, now); err != nil {
		return fail(fmt.Errorf("%w: %v", storage.ErrInvalid, err))
	}
	var tc timeCodec
	n, asOf := tc.ns("observed at", u.ObservedAt), tc.ns("received at", u.ReceivedAt)
	if tc.err != nil {
		return fail(fmt.Errorf("%w: %v", storage.ErrInvalid, tc.err))
	}
	if n == 0 || asOf == 0 {
		return fail(fmt.Errorf("%w: no time given", storage.ErrInvalid))
	}
	var changed bool
	// Lazy in the group commit: a run lost to a crash of the machine is
	// written again, since a stream's first report compares with the store.
	err := s.groupedLazy(ctx, func(ctx context.Context, q conn) error {
		changed = false
		var latest int64
		if err := q.queryRow(ctx, `SELECT COALESCE(MAX(as_of), 0) FROM policy_streaks WHERE device_id = $1`, deviceID).Scan(&latest); err != nil {
			return err
		}
		if latest > asOf {
			return nil // a later report's update was taken: this one is stale
		}
		old, err := streaksOf(ctx, q, `SELECT `+streakColumns+` FROM policy_streaks WHERE device_id = $1`, deviceID)
		if err != nil {
			return err
		}
		keep := make(map[string]bool, len(now))
		for _, st := range now {
			keep[st.PolicyID] = true
			if o, ok := old[st.PolicyID]; ok && o.Status == st.Status && bytes.Equal(o.QuerySHA256, st.QuerySHA256) {
				continue
			}
			changed = true
			if _, err := q.exec(ctx, `INSERT INTO policy_streaks (device_id, `+streakColumns+`, as_of) VALUES ($1, $2, $3, $4, $5, $6)
				ON CONFLICT (device_id, policy_id) DO UPDATE SET status = excluded.status, query_sha256 = excluded.query_sha256, since = excluded.since, as_of = excluded.as_of`,
				deviceID, st.PolicyID, st.Status, blob(st.QuerySHA256), n, asOf); err != nil {
				return err
			}
		}
		for id := range old {
			if keep[id] {
				continue
			}
			changed = true
			if _, err := q.exec(ctx, `DELETE FROM policy_streaks WHERE device_id = $1 AND policy_id = $2`, deviceID, id); err != nil {
				return err
			}
		}
		// Every row marked with this receipt, changed or not, so that a
		// replaced stream's update of an earlier report, written late,
		// finds it and changes nothing.
		_, err = q.exec(ctx, `UPDATE policy_streaks SET as_of = $1 WHERE device_id = $2 AND as_of <> $1`, asOf, deviceID)
		return err
	})
	if err != nil {
		return fail(err)
	}
	return changed, nil
}
