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

// checkStreaks refuses streaks SaveReport must not store.
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

// setStreaks makes the device's streaks those of now, in the caller's
// transaction (SaveReport's, after the device's row was updated, which
// orders the reports of one device): read, then only the rows that differ
// written, observedAt starting each run that changes.
func setStreaks(ctx context.Context, q conn, deviceID string, observedAt int64, now []storage.PolicyStreak) error {
	old, err := streaksOf(ctx, q, `SELECT `+streakColumns+` FROM policy_streaks WHERE device_id = $1`, deviceID)
	if err != nil {
		return fmt.Errorf("reading policy streaks: %w", err)
	}
	keep := make(map[string]bool, len(now))
	for _, st := range now {
		keep[st.PolicyID] = true
		if o, ok := old[st.PolicyID]; ok && o.Status == st.Status && bytes.Equal(o.QuerySHA256, st.QuerySHA256) {
			continue
		}
		if _, err := q.exec(ctx, upsertStreak, deviceID, st.PolicyID, st.Status, blob(st.QuerySHA256), observedAt); err != nil {
			return fmt.Errorf("writing policy streak: %w", err)
		}
	}
	for id := range old {
		if keep[id] {
			continue
		}
		if _, err := q.exec(ctx, `DELETE FROM policy_streaks WHERE device_id = $1 AND policy_id = $2`, deviceID, id); err != nil {
			return fmt.Errorf("forgetting policy streak: %w", err)
		}
	}
	return nil
}

var upsertStreak = `INSERT INTO policy_streaks (device_id, ` + streakColumns + `) VALUES ($1, $2, $3, $4, $5)
	ON CONFLICT (device_id, policy_id) DO UPDATE SET status = excluded.status, query_sha256 = excluded.query_sha256, since = excluded.since`
