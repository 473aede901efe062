package agentapi

import (
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	agentv1 "github.com/clearance/clearance/proto/gen/clearance/agent/v1"
	"github.com/clearance/clearance/verifier/storage"
)

// TestStreakUpdates: a stream's report carries its device's streaks at the
// stream's first report and at each that judges something otherwise, and
// only then; after a report that was not stored (refused, a failed write,
// a resend) the next carries them whatever it says; the set the report
// came under judges it; which policies are required is part of the
// judgement (the device's compliance).
func TestStreakUpdates(t *testing.T) {
	c := &agentStream{s: &Server{}, deviceID: "dev"}
	set := func(screenLockRequired bool) *agentv1.PolicySet {
		return &agentv1.PolicySet{Version: "v", Policies: []*agentv1.Policy{
			{Id: "filevault", Query: "SELECT 1", Required: true},
			{Id: "screen-lock", Query: "SELECT 2", Required: screenLockRequired},
		}}
	}
	ps := set(false)
	t0 := time.Date(2026, 3, 4, 12, 0, 0, 0, time.UTC)
	seq := 0
	// report runs one report through the stream's streaks as
	// AcceptWith would, stored or not, and returns what it carried.
	report := func(ps *agentv1.PolicySet, stored bool, fv, sl agentv1.PolicyStatus) []storage.PolicyStreak {
		t.Helper()
		seq++
		r := &agentv1.PostureReport{ObservedAt: timestamppb.New(t0.Add(time.Duration(seq) * time.Minute)), Results: []*agentv1.PolicyResult{
			{PolicyId: "filevault", Status: fv}, {PolicyId: "screen-lock", Status: sl},
		}}
		fn, done := c.streaks(ps)
		got := fn(r)
		done(stored)
		return got
	}
	carries := func(got []storage.PolicyStreak, want bool, what string) {
		t.Helper()
		if (got != nil) != want {
			t.Fatalf("%s: carries streaks %v, want %v", what, got != nil, want)
		}
	}
	const (
		pass = agentv1.PolicyStatus_POLICY_STATUS_PASS
		fail = agentv1.PolicyStatus_POLICY_STATUS_FAIL
	)
	got := report(ps, true, fail, pass)
	carries(got, true, "the stream's first report")
	if len(got) != 3 || got[2].PolicyID != storage.ComplianceStreak || got[2].Status != "FAIL" || got[0].Status != "FAIL" || got[1].Status != "PASS" {
		t.Fatalf("first report's streaks: %+v", got)
	}
	carries(report(ps, true, fail, pass), false, "the same results again")

	// Not stored (refused, or the write failed), then a report back at
	// what was stored before: it carries them, since the store may hold
	// either.
	carries(report(ps, false, pass, pass), true, "a change")
	carries(report(ps, true, fail, pass), true, "the report after one not stored")
	carries(report(ps, true, fail, fail), true, "an advisory policy failing")
	carries(report(ps, true, fail, fail), false, "unchanged again")

	// screen-lock made required while no result changes: the device's
	// compliance is judged by the new set.
	got = report(ps, true, pass, fail)
	carries(got, true, "filevault fixed")
	if got[2].Status != "PASS" {
		t.Errorf("compliance with screen-lock advisory: %s, want PASS", got[2].Status)
	}
	got = report(set(true), true, pass, fail)
	carries(got, true, "screen-lock made required")
	if got[2].Status != "FAIL" {
		t.Errorf("compliance with screen-lock required: %s, want FAIL", got[2].Status)
	}
	// No set in force: nothing carried, nothing known.
	if fn, _ := c.streaks(nil); fn != nil {
		t.Error("a stream with no set in force carries streaks")
	}
}
