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
