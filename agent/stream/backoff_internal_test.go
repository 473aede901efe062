package stream

import (
	"testing"

	"github.com/clearance/clearance/agent/retry"
)

// TestBackoffRestart: a lasting session starts the backoff over, and so
// does one refusal after sessions that went well; refusals in a row do not,
// however long each session lasted.
func TestBackoffRestart(t *testing.T) {
	t.Parallel()
	var r backoffRestart
	for i, step := range []struct {
		action retry.Action
		stable bool
		want   bool
	}{
		{retry.Again, true, true},
		{retry.Again, false, false},
		{retry.Drop, true, true},    // one refusal after a good session
		{retry.Drop, true, false},   // a second in a row
		{retry.Drop, true, false},   // and a third
		{retry.Again, false, false}, // a short session ends the row but starts nothing over
		{retry.Drop, true, true},    // a refusal after it is the first again
		{retry.Drop, false, false},
		{retry.Reenroll, true, true},
	} {
		if got := r.after(step.action, step.stable); got != step.want {
			t.Errorf("step %d (%s, stable %v): restart %v, want %v", i, step.action, step.stable, got, step.want)
		}
	}
}
