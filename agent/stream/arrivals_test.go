package stream

import (
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	agentv1 "github.com/clearance/clearance/proto/gen/clearance/agent/v1"
)

// TestCheckArrivals: a check is judged lapsed only when it waited at least
// checkQueued and longer than it had left on arrival; one taken sooner is
// run whatever its expiry says (a step of the Mac's clock can make an honest
// check look expired); and each arrival is forgotten once read.
func TestCheckArrivals(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	verifier := at.Add(time.Hour) // the verifier's time as known, an hour ahead
	check := func(left time.Duration) *agentv1.CheckNow {
		return &agentv1.CheckNow{Nonce: []byte("n"), ExpiresAt: timestamppb.New(verifier.Add(left))}
	}
	for _, tt := range []struct {
		name   string
		left   time.Duration // on arrival, in the verifier's time
		waited time.Duration
		want   bool
	}{
		{"taken at once", 3 * time.Second, 0, false},
		{"waited, time left", 3 * time.Second, 2 * time.Second, false},
		{"waited past its expiry", 3 * time.Second, 3 * time.Second, true},
		{"already expired, taken at once", -time.Hour, 500 * time.Millisecond, false},
		{"already expired, waited", -time.Hour, checkQueued, true},
		{"short-lived, waited less than checkQueued", 200 * time.Millisecond, 900 * time.Millisecond, false},
	} {
		a := newCheckArrivals()
		c := check(tt.left)
		a.put(c, at, verifier)
		if got := a.lapsed(c, at.Add(tt.waited)); got != tt.want {
			t.Errorf("%s: lapsed %v, want %v", tt.name, got, tt.want)
		}
		if len(a.at) != 0 {
			t.Errorf("%s: %d arrivals kept after the check was read", tt.name, len(a.at))
		}
		if a.lapsed(c, at.Add(time.Hour)) {
			t.Errorf("%s: a check read before is lapsed", tt.name)
		}
	}
}
