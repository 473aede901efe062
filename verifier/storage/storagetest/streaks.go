package storagetest

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/clearance/clearance/verifier/storage"
)

var streakTests = []test{
	{"StartKeepForget", testPolicyStreaks},
	{"WithTheirReport", testPolicyStreaksWithTheirReport},
	{"Refused", testPolicyStreaksRefused},
}

func streak(id, status string, digest byte) storage.PolicyStreak {
	return storage.PolicyStreak{PolicyID: id, Status: status, QuerySHA256: []byte{digest}}
}

// streakReport is the device's report seq, received at hour h, carrying
// streaks (nil: none).
func streakReport(deviceID string, seq uint64, h int, streaks []storage.PolicyStreak) storage.Report {
	r := newReport(deviceID, seq, at(time.Duration(h)*hour))
	r.Streaks = streaks
	return r
}

func checkStreaks(t *testing.T, s storage.Store, deviceID, what string, want ...storage.PolicyStreak) {
	t.Helper()
	got, err := s.PolicyStreaks(t.Context(), deviceID)
	must(t, err)
	wm := make(map[string]storage.PolicyStreak, len(want))
	for _, w := range want {
		wm[w.PolicyID] = w
	}
	equal(t, what, got, wm)
}

// since is st with the start of a run the report received at hour h began.
func since(st storage.PolicyStreak, h int) storage.PolicyStreak {
	st.Since = at(time.Duration(h)*hour - 2*time.Second)
	return st
}

func testPolicyStreaks(t *testing.T, s storage.Store) {
	ctx := t.Context()
	dev := enrollN(t, s, 2)
	id := dev[0].ID
	got, err := s.PolicyStreaks(ctx, id)
	must(t, err)
	equal(t, "no streaks yet", got, map[string]storage.PolicyStreak{})

	save(t, s, streakReport(id, 1, 1, []storage.PolicyStreak{streak("fv", "FAIL", 1), streak("fw", "PASS", 2), streak("os", "MISSING", 3)}), nil, 10)
	checkStreaks(t, s, id, "first report", since(streak("fv", "FAIL", 1), 1), since(streak("fw", "PASS", 2), 1), since(streak("os", "MISSING", 3), 1))
	// A report without streaks leaves them; the same results later keep
	// every start.
	save(t, s, streakReport(id, 2, 2, nil), nil, 10)
	save(t, s, streakReport(id, 3, 3, []storage.PolicyStreak{streak("fv", "FAIL", 1), streak("fw", "PASS", 2), streak("os", "MISSING", 3)}), nil, 10)
	checkStreaks(t, s, id, "unchanged", since(streak("fv", "FAIL", 1), 1), since(streak("fw", "PASS", 2), 1), since(streak("os", "MISSING", 3), 1))
	// fv passes, fw's query changes, os is no longer in force, gk is new.
	save(t, s, streakReport(id, 4, 4, []storage.PolicyStreak{streak("fv", "PASS", 1), streak("fw", "PASS", 9), streak("gk", "ERROR", 4)}), nil, 10)
	checkStreaks(t, s, id, "after changes", since(streak("fv", "PASS", 1), 4), since(streak("fw", "PASS", 9), 4), since(streak("gk", "ERROR", 4), 4))
	// Another device's streaks are its own.
	save(t, s, streakReport(dev[1].ID, 1, 5, []storage.PolicyStreak{streak("fv", "FAIL", 1)}), nil, 10)
	checkStreaks(t, s, id, "other device untouched", since(streak("fv", "PASS", 1), 4), since(streak("fw", "PASS", 9), 4), since(streak("gk", "ERROR", 4), 4))
	// Nothing in force: every streak forgotten.
	save(t, s, streakReport(id, 5, 6, []storage.PolicyStreak{}), nil, 10)
	checkStreaks(t, s, id, "nothing in force")
}

// testPolicyStreaksWithTheirReport: streaks are written with their report
// or not at all: a report refused (a replay, an earlier seq a replaced
// stream sends late, a revoked device, a used nonce) changes none, nor
// does an exact resend; and the ones written follow the reports' order.
func testPolicyStreaksWithTheirReport(t *testing.T, s storage.Store) {
	ctx := t.Context()
	ds := enrollN(t, s, 2)
	id := ds[0].ID
	save(t, s, streakReport(id, 2, 2, []storage.PolicyStreak{streak("fv", "FAIL", 1)}), nil, 10)
	before := dumpOf(t, s)
	flip := []storage.PolicyStreak{streak("fv", "PASS", 1)}
	wantErr(t, s.SaveReport(ctx, streakReport(id, 1, 3, flip), nil, 10), storage.ErrSeqNotIncreasing)
	wantErr(t, s.SaveReport(ctx, streakReport(id, 3, 3, flip), []byte("no-such-nonce"), 10), storage.ErrNonceUnknown)
	wantErr(t, s.SaveReport(ctx, signedWith(streakReport(id, 3, 3, flip), []byte("another key")), nil, 10), storage.ErrKeyReplaced)
	resend := streakReport(id, 2, 2, flip)
	wantErr(t, s.SaveReport(ctx, resend, nil, 10), storage.ErrReportStored)
	sameDump(t, "refused reports", before, s)
	checkStreaks(t, s, id, "after refused reports", since(streak("fv", "FAIL", 1), 2))

	revokeDevice(t, s, ds[1].ID)
	before = dumpOf(t, s)
	wantErr(t, s.SaveReport(ctx, streakReport(ds[1].ID, 1, 4, flip), nil, 10), storage.ErrDeviceRevoked)
	sameDump(t, "a revoked device's report", before, s)
}

func testPolicyStreaksRefused(t *testing.T, s storage.Store) {
	ctx := t.Context()
	id := enrollN(t, s, 1)[0].ID
	save(t, s, streakReport(id, 1, 1, []storage.PolicyStreak{streak("fv", "FAIL", 1)}), nil, 10)
	before := dumpOf(t, s)
	many := make([]storage.PolicyStreak, storage.MaxPolicyStreaks+1)
	for i := range many {
		many[i] = streak(fmt.Sprintf("p%d", i), "PASS", 1)
	}
	for name, streaks := range map[string][]storage.PolicyStreak{
		"empty policy":      {streak("", "PASS", 1)},
		"oversized policy":  {streak(strings.Repeat("p", storage.MaxTextLen+1), "PASS", 1)},
		"NUL in policy":     {streak("f\x00v", "PASS", 1)},
		"policy twice":      {streak("fv", "PASS", 1), streak("fv", "FAIL", 1)},
		"unknown status":    {streak("fv", "pass", 1)},
		"oversized digest":  {{PolicyID: "fv", Status: "PASS", QuerySHA256: make([]byte, 65)}},
		"too many policies": many,
	} {
		t.Run(name, func(t *testing.T) {
			wantErr(t, s.SaveReport(ctx, streakReport(id, 2, 2, streaks), nil, 10), storage.ErrInvalid)
		})
	}
	sameDump(t, "reports with streaks no store keeps", before, s)
	got, err := s.PolicyStreaks(ctx, strings.Repeat("d", storage.MaxTextLen+1))
	must(t, err)
	equal(t, "oversized id reads nothing", got, map[string]storage.PolicyStreak{})
}
