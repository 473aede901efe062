package agentapi

import (
	"context"
	"errors"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	agentv1 "github.com/clearance/clearance/proto/gen/clearance/agent/v1"
	"github.com/clearance/clearance/verifier/ingest"
	"github.com/clearance/clearance/verifier/storage"
)

// streakStore records the updates a stream asks for, and fails them on
// demand.
type streakStore struct {
	storage.Store
	fail    bool
	updates []storage.StreakUpdate
}

func (s *streakStore) UpdatePolicyStreaks(_ context.Context, _ string, u storage.StreakUpdate) (bool, error) {
	s.updates = append(s.updates, u)
	if s.fail {
		return false, errors.New("database is locked")
	}
	return true, nil
}

// TestStreakUpdates: a stream writes its device's streaks at its first
// report and at each that judges something otherwise, and only then; a
// write that failed is made again at the next report, whatever it says;
// the set the report came under judges it; which policies are required is
// part of the judgement (the device's compliance).
func TestStreakUpdates(t *testing.T) {
	store := &streakStore{}
	c := &agentStream{s: &Server{Store: store}, deviceID: "dev"}
	set := func(screenLockRequired bool) *agentv1.PolicySet {
		return &agentv1.PolicySet{Version: "v", Policies: []*agentv1.Policy{
			{Id: "filevault", Query: "SELECT 1", Required: true},
			{Id: "screen-lock", Query: "SELECT 2", Required: screenLockRequired},
		}}
	}
	ps := set(false)
	t0 := time.Date(2026, 3, 4, 12, 0, 0, 0, time.UTC)
	seq := 0
	report := func(ps *agentv1.PolicySet, fv, sl agentv1.PolicyStatus) {
		t.Helper()
		seq++
		at := t0.Add(time.Duration(seq) * time.Minute)
		r := &agentv1.PostureReport{ObservedAt: timestamppb.New(at), Results: []*agentv1.PolicyResult{
			{PolicyId: "filevault", Status: fv}, {PolicyId: "screen-lock", Status: sl},
		}}
		c.streaks(context.Background(), &ingest.Accepted{Report: r, Stored: storage.Report{ReceivedAt: at.Add(time.Second)}}, ps)
	}
	writes := func(want int, what string) {
		t.Helper()
		if len(store.updates) != want {
			t.Fatalf("%s: %d updates, want %d", what, len(store.updates), want)
		}
	}
	const (
		pass = agentv1.PolicyStatus_POLICY_STATUS_PASS
		fail = agentv1.PolicyStatus_POLICY_STATUS_FAIL
	)
	report(ps, fail, pass)
	writes(1, "the stream's first report")
	u := store.updates[0]
	if !u.ObservedAt.Equal(t0.Add(time.Minute)) || !u.ReceivedAt.Equal(t0.Add(time.Minute+time.Second)) || len(u.Streaks) != 3 ||
		u.Streaks[2].PolicyID != storage.ComplianceStreak || u.Streaks[2].Status != "FAIL" || u.Streaks[0].Status != "FAIL" {
		t.Fatalf("first update: %+v", u)
	}
	report(ps, fail, pass)
	writes(1, "the same results again")

	// A write that fails, then a report back at what was written before:
	// written again, since the store may not hold what the stream last wrote.
	store.fail = true
	report(ps, pass, pass)
	writes(2, "a change")
	store.fail = false
	report(ps, fail, pass)
	writes(3, "the report after a failed write, back at the last written results")
	report(ps, fail, fail)
	writes(4, "an advisory policy failing")

	// screen-lock made required while nothing else changes: the device's
	// compliance changes, and is written.
	report(ps, pass, fail)
	writes(5, "filevault fixed")
	if got := store.updates[4].Streaks[2].Status; got != "PASS" {
		t.Errorf("compliance with screen-lock advisory: %s, want PASS", got)
	}
	report(set(true), pass, fail)
	writes(6, "screen-lock made required")
	if got := store.updates[5].Streaks[2].Status; got != "FAIL" {
		t.Errorf("compliance with screen-lock required: %s, want FAIL", got)
	}
}
