package stream

import (
	"testing"
	"time"

	agentv1 "github.com/clearance/clearance/proto/gen/clearance/agent/v1"
)

// TestFullRunAnswers: a run's results answer a check only if the check
// arrived before the run began, the run was of the set still in force, and
// the check's arrival was recorded.
func TestFullRunAnswers(t *testing.T) {
	t.Parallel()
	began := time.Now()
	ps, other := &agentv1.PolicySet{Version: "a"}, &agentv1.PolicySet{Version: "a"}
	run := fullRun{began: began, ps: ps, report: &agentv1.PostureReport{}}
	before := checkArrival{local: began.Add(-time.Millisecond)}
	for _, tc := range []struct {
		name string
		run  fullRun
		arr  checkArrival
		ps   *agentv1.PolicySet
		want bool
	}{
		{"arrived before the run began", run, before, ps, true},
		{"arrived as it began", run, checkArrival{local: began}, ps, false},
		{"arrived after it began", run, checkArrival{local: began.Add(time.Millisecond)}, ps, false},
		{"arrival not recorded", run, checkArrival{}, ps, false},
		{"another set since, even an equal one", run, before, other, false},
		{"no set", run, before, nil, false},
		{"no run yet", fullRun{}, before, ps, false},
	} {
		if got := tc.run.answers(tc.arr, tc.ps); got != tc.want {
			t.Errorf("%s: answers %v, want %v", tc.name, got, tc.want)
		}
	}
}

// TestNoteRun: only a run of every policy that reached them all answers
// checks, and any other run's report ends the last full run's answers (it
// is no longer the latest report filed).
func TestNoteRun(t *testing.T) {
	t.Parallel()
	ps := &agentv1.PolicySet{Version: "a", Policies: []*agentv1.Policy{{Id: "p1"}, {Id: "p2"}}}
	c := &Client{ps: ps, policies: ps.GetPolicies()}
	began := time.Now()
	before := checkArrival{local: began.Add(-time.Millisecond)}
	r := &agentv1.PostureReport{Seq: 7, Nonce: []byte("n"), Results: []*agentv1.PolicyResult{{PolicyId: "p1"}, {PolicyId: "p2"}}}

	c.noteRun(began, 2, true, r)
	if !c.lastFull.answers(before, ps) {
		t.Fatal("a full run answers no check that came before it")
	}
	r.Results[0].PolicyId = "changed"
	if got := c.lastFull.report.GetResults()[0].GetPolicyId(); got != "p1" {
		t.Errorf("the run kept is changed with the report filed: %q", got)
	}

	c.noteRun(began.Add(time.Second), 1, true, r) // the schedule's run of p1 alone
	if c.lastFull.answers(before, ps) {
		t.Error("a full run still answers checks after a later run of some policies was filed")
	}

	c.noteRun(began, 2, true, r)
	c.noteRun(began.Add(time.Second), 2, false, r) // the run budget spent before p2, or during it
	if c.lastFull.answers(before, ps) || c.lastFull.answers(checkArrival{local: began.Add(2 * time.Second)}, ps) {
		t.Error("a run cut short by its budget answers checks")
	}
}
