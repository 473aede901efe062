package stream

import (
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	agentv1 "github.com/clearance/clearance/proto/gen/clearance/agent/v1"
)

// TestCheckArrivals: a check is judged lapsed only when it waited at least
// checkQueued and longer than it had left on arrival, reckoned from the
// stream's first Session and the Mac's clock since; one taken sooner is run
// whatever its expiry says; without a Session nothing is judged; and each
// arrival is forgotten once read.
func TestCheckArrivals(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	verifier := at.Add(time.Hour) // the verifier's time, an hour ahead of the Mac's
	session := &agentv1.Session{VerifierTime: timestamppb.New(verifier)}
	check := func(left time.Duration) *agentv1.CheckNow {
		// Sent 10 s after the Session, with left to go.
		return &agentv1.CheckNow{Nonce: []byte("n"), ExpiresAt: timestamppb.New(verifier.Add(10*time.Second + left))}
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
		a.session(session, at)
		// A later Session, with another time, is not taken.
		a.session(&agentv1.Session{VerifierTime: timestamppb.New(verifier.Add(time.Hour))}, at)
		c := check(tt.left)
		a.put(c, at.Add(10*time.Second))
		if got := a.lapsed(c, at.Add(10*time.Second+tt.waited), 0); got != tt.want {
			t.Errorf("%s: lapsed %v, want %v", tt.name, got, tt.want)
		}
		if len(a.at) != 0 {
			t.Errorf("%s: %d arrivals kept after the check was read", tt.name, len(a.at))
		}
		if a.lapsed(c, at.Add(time.Hour), 0) {
			t.Errorf("%s: a check read before is lapsed", tt.name)
		}
	}
	// One that waited, with less time left than a run takes, is lapsed;
	// with more, it is not.
	for runTakes, want := range map[time.Duration]bool{1500 * time.Millisecond: true, 500 * time.Millisecond: false} {
		a := newCheckArrivals()
		a.session(session, at)
		c := check(3 * time.Second)
		a.put(c, at.Add(10*time.Second))
		if got := a.lapsed(c, at.Add(12*time.Second), runTakes); got != want {
			t.Errorf("1 s left, a run taking %s: lapsed %v, want %v", runTakes, got, want)
		}
	}
	// Without a Session (or with one that has no time) nothing is judged.
	for name, a := range map[string]*checkArrivals{"no session": newCheckArrivals(), "session without a time": newCheckArrivals()} {
		if name == "session without a time" {
			a.session(&agentv1.Session{}, at)
		}
		c := check(-time.Hour)
		a.put(c, at)
		if a.lapsed(c, at.Add(time.Minute), time.Hour) {
			t.Errorf("%s: a check was judged lapsed", name)
		}
	}
}
