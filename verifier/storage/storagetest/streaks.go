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
	{"Refused", testPolicyStreaksRefused},
}

func streak(id, status string, digest byte) storage.PolicyStreak {
	return storage.PolicyStreak{PolicyID: id, Status: status, QuerySHA256: []byte{digest}}
}

func testPolicyStreaks(t *testing.T, s storage.Store) {
	ctx := t.Context()
	update := func(h int, want bool, now ...storage.PolicyStreak) {
		t.Helper()
		changed, err := s.UpdatePolicyStreaks(ctx, "dev", storage.StreakUpdate{ObservedAt: at(time.Duration(h) * hour), ReceivedAt: at(time.Duration(h) * hour), Streaks: now})
		must(t, err)
		if changed != want {
			t.Errorf("update at hour %d: changed = %v, want %v", h, changed, want)
		}
	}
	check := func(what string, want ...storage.PolicyStreak) {
		t.Helper()
		got, err := s.PolicyStreaks(ctx, "dev")
		must(t, err)
		wm := make(map[string]storage.PolicyStreak, len(want))
		for _, w := range want {
			wm[w.PolicyID] = w
		}
		equal(t, what, got, wm)
	}
	since := func(st storage.PolicyStreak, h int) storage.PolicyStreak {
		st.Since = at(time.Duration(h) * hour)
		return st
	}

	got, err := s.PolicyStreaks(ctx, "dev")
	must(t, err)
	equal(t, "no streaks yet", got, map[string]storage.PolicyStreak{})

	update(1, true, streak("fv", "FAIL", 1), streak("fw", "PASS", 2), streak("os", "MISSING", 3))
	check("first report", since(streak("fv", "FAIL", 1), 1), since(streak("fw", "PASS", 2), 1), since(streak("os", "MISSING", 3), 1))
	// The same results later change nothing and keep every start.
	update(2, false, streak("fv", "FAIL", 1), streak("fw", "PASS", 2), streak("os", "MISSING", 3))
	// fv passes, fw's query changes, os is no longer in force, gk is new.
	update(3, true, streak("fv", "PASS", 1), streak("fw", "PASS", 9), streak("gk", "ERROR", 4))
	check("after changes", since(streak("fv", "PASS", 1), 3), since(streak("fw", "PASS", 9), 3), since(streak("gk", "ERROR", 4), 3))
	// Another device's streaks are its own.
	if _, err := s.UpdatePolicyStreaks(ctx, "other", storage.StreakUpdate{ObservedAt: at(5 * hour), ReceivedAt: at(5 * hour), Streaks: []storage.PolicyStreak{streak("fv", "FAIL", 1)}}); err != nil {
		t.Fatal(err)
	}
	check("other device untouched", since(streak("fv", "PASS", 1), 3), since(streak("fw", "PASS", 9), 3), since(streak("gk", "ERROR", 4), 3))
	// An update of a report received before the last one taken (a
	// replaced stream's, written late) changes nothing, even one that
	// would change every streak; one that changes nothing still marks the
	// rows, so that an earlier one that comes after it is refused too.
	stale := func(observed, received int) {
		t.Helper()
		changed, err := s.UpdatePolicyStreaks(ctx, "dev", storage.StreakUpdate{
			ObservedAt: at(time.Duration(observed) * hour), ReceivedAt: at(time.Duration(received) * hour),
			Streaks: []storage.PolicyStreak{streak("fv", "FAIL", 1)},
		})
		must(t, err)
		if changed {
			t.Errorf("a stale update (received at hour %d) changed the streaks", received)
		}
	}
	stale(2, 2)
	check("after a stale update", since(streak("fv", "PASS", 1), 3), since(streak("fw", "PASS", 9), 3), since(streak("gk", "ERROR", 4), 3))
	update(8, false, streak("fv", "PASS", 1), streak("fw", "PASS", 9), streak("gk", "ERROR", 4))
	stale(7, 7)
	check("after a stale update behind an unchanged one", since(streak("fv", "PASS", 1), 3), since(streak("fw", "PASS", 9), 3), since(streak("gk", "ERROR", 4), 3))
	// Nothing in force: every streak forgotten.
	update(9, true)
	check("nothing in force")
	update(10, false)
}

func testPolicyStreaksRefused(t *testing.T, s storage.Store) {
	ctx := t.Context()
	_, err := s.UpdatePolicyStreaks(ctx, "dev", storage.StreakUpdate{ObservedAt: at(hour), ReceivedAt: at(hour), Streaks: []storage.PolicyStreak{streak("fv", "FAIL", 1)}})
	must(t, err)
	before := dumpOf(t, s)
	many := make([]storage.PolicyStreak, storage.MaxPolicyStreaks+1)
	for i := range many {
		many[i] = streak(fmt.Sprintf("p%d", i), "PASS", 1)
	}
	for name, tc := range map[string]struct {
		device string
		at     int
		now    []storage.PolicyStreak
	}{
		"empty device":      {"", 2, nil},
		"oversized device":  {strings.Repeat("d", storage.MaxTextLen+1), 2, nil},
		"no time":           {"dev", -1, []storage.PolicyStreak{streak("fv", "PASS", 1)}},
		"empty policy":      {"dev", 2, []storage.PolicyStreak{streak("", "PASS", 1)}},
		"NUL in policy":     {"dev", 2, []storage.PolicyStreak{streak("f\x00v", "PASS", 1)}},
		"policy twice":      {"dev", 2, []storage.PolicyStreak{streak("fv", "PASS", 1), streak("fv", "FAIL", 1)}},
		"unknown status":    {"dev", 2, []storage.PolicyStreak{streak("fv", "pass", 1)}},
		"oversized digest":  {"dev", 2, []storage.PolicyStreak{{PolicyID: "fv", Status: "PASS", QuerySHA256: make([]byte, 65)}}},
		"too many policies": {"dev", 2, many},
		"no receipt":        {"dev", -2, []storage.PolicyStreak{streak("fv", "PASS", 1)}},
	} {
		var when time.Time
		if tc.at >= 0 {
			when = at(time.Duration(tc.at) * hour)
		}
		received := at(2 * hour)
		if tc.at == -2 {
			when, received = at(2*hour), time.Time{}
		}
		t.Run(name, func(t *testing.T) {
			_, err := s.UpdatePolicyStreaks(ctx, tc.device, storage.StreakUpdate{ObservedAt: when, ReceivedAt: received, Streaks: tc.now})
			wantErr(t, err, storage.ErrInvalid)
		})
	}
	sameDump(t, "refused updates", before, s)
	got, err := s.PolicyStreaks(ctx, strings.Repeat("d", storage.MaxTextLen+1))
	must(t, err)
	equal(t, "oversized id reads nothing", got, map[string]storage.PolicyStreak{})
}
