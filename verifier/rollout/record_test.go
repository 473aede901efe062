package rollout

import (
	"context"
	"errors"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/clearance/clearance/verifier/decision"
)

// graceStore keeps grace starts in memory and counts the writes.
type graceStore struct {
	Store  // the rest unused
	starts map[string]time.Time
	writes int
	fail   error
}

func (g *graceStore) GraceStarts(context.Context, string) (map[string]time.Time, error) {
	return maps.Clone(g.starts), g.fail
}

func (g *graceStore) StartGrace(_ context.Context, _, policyID string, at time.Time) (time.Time, error) {
	g.writes++
	if _, ok := g.starts[policyID]; !ok {
		g.starts[policyID] = at
	}
	return g.starts[policyID], nil
}

func (g *graceStore) EndGrace(_ context.Context, _, policyID string) error {
	g.writes++
	delete(g.starts, policyID)
	return nil
}

type settings map[string]decision.PolicyRollout

func (s settings) Rollout() map[string]decision.PolicyRollout { return s }

// TestRecordWritesOnlyChanges: a grace starts at the first FAIL and ends
// at a PASS; a decision that finds the state as recorded writes nothing
// (Cloudflare asks about every Mac every few minutes); a grace that cannot
// be read is an error, not a grace started again.
func TestRecordWritesOnlyChanges(t *testing.T) {
	t0 := time.Date(2026, 12, 6, 9, 0, 0, 0, time.UTC)
	g := &graceStore{starts: map[string]time.Time{}}
	src := &Source{Store: g, Settings: settings{"firewall": {Grace: time.Hour}, "sip": {}}}
	failing := decision.Decision{DeviceID: "dev-1",
		Results: []decision.Finding{{PolicyID: "firewall", Status: decision.StatusFail}, {PolicyID: "sip", Status: decision.StatusPass}},
		Failing: []decision.Finding{{PolicyID: "firewall", Status: decision.StatusFail, GraceStarted: t0}}}
	passing := decision.Decision{DeviceID: "dev-1",
		Results: []decision.Finding{{PolicyID: "firewall", Status: decision.StatusPass}, {PolicyID: "sip", Status: decision.StatusPass}}}

	for i, step := range []struct {
		d       decision.Decision
		writes  int
		started bool
		what    string
	}{
		{failing, 1, true, "the first FAIL starts the grace"},
		{failing, 1, true, "a FAIL again writes nothing"},
		{passing, 2, false, "a PASS ends it"},
		{passing, 2, false, "a PASS again writes nothing"},
		{decision.Decision{DeviceID: "dev-1"}, 2, false, "a decision before policies were judged records nothing"},
	} {
		if err := src.Record(context.Background(), step.d); err != nil {
			t.Fatalf("%d: %v", i, err)
		}
		_, started := g.starts["firewall"]
		if g.writes != step.writes || started != step.started {
			t.Fatalf("%s: %d writes, started %v; want %d, %v", step.what, g.writes, started, step.writes, step.started)
		}
	}
	if !g.starts["firewall"].IsZero() {
		t.Fatal("ended grace still stored")
	}
	g.fail = errors.New("database is locked")
	if err := src.Record(context.Background(), failing); err == nil {
		t.Fatal("an unreadable grace state recorded as nothing")
	}
}

var _ Store = (*graceStore)(nil)

// keptStore records what ForgetGraces is asked to keep.
type keptStore struct {
	Store
	keep []string
}

func (k *keptStore) ForgetGraces(_ context.Context, keep []string) (int, error) {
	k.keep = keep
	return 0, nil
}

// TestForgetIdleGracesKeeps: the graces kept are those of the policies
// enforced with a grace, whatever this replica's ceiling; warn, monitor
// and no grace are forgotten.
func TestForgetIdleGracesKeeps(t *testing.T) {
	t.Parallel()
	set := settings{
		"enforced":          {Grace: time.Hour},
		"enforced-explicit": {Enforcement: decision.Enforce, Grace: time.Hour},
		"warn":              {Enforcement: decision.Warn, Grace: time.Hour},
		"monitor":           {Enforcement: decision.Monitor, Grace: time.Hour},
		"no-grace":          {AllowBypass: true},
	}
	for _, ceiling := range []decision.Enforcement{"", decision.Enforce, decision.Warn, decision.Monitor} {
		st := &keptStore{}
		s := &Source{Store: st, Ceiling: ceiling}
		if _, err := s.ForgetIdleGraces(t.Context(), set); err != nil {
			t.Fatal(err)
		}
		slices.Sort(st.keep)
		if !slices.Equal(st.keep, []string{"enforced", "enforced-explicit"}) {
			t.Errorf("ceiling %q: kept %v", ceiling, st.keep)
		}
	}
}
