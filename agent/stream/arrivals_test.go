package stream

import (
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	agentv1 "github.com/clearance/clearance/proto/gen/clearance/agent/v1"
)

// TestCheckArrivals: a check has lapsed once it has waited as long as its
// ttl, counted from its arrival; its expiry plays no part;
// one without a usable ttl is never judged; and each arrival is forgotten
// once read.
func TestCheckArrivals(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	check := func(ttl *durationpb.Duration) *agentv1.CheckNow {
		// An expiry long past, by any clock: only the ttl counts.
		return &agentv1.CheckNow{Nonce: []byte("n"), ExpiresAt: timestamppb.New(time.Unix(0, 0)), Ttl: ttl}
	}
	for _, tt := range []struct {
		name   string
		ttl    *durationpb.Duration
		waited time.Duration
		want   bool
	}{
		{"taken at once", durationpb.New(3 * time.Second), 0, false},
		{"waited, time left", durationpb.New(3 * time.Second), 2999 * time.Millisecond, false},
		{"waited its ttl", durationpb.New(3 * time.Second), 3 * time.Second, true},
		{"no ttl", nil, time.Hour, false},
		{"invalid ttl", &durationpb.Duration{Seconds: 1, Nanos: -1}, time.Hour, false},
		{"negative ttl", durationpb.New(-time.Minute), 0, true},
		{"ttl past any bound", &durationpb.Duration{Seconds: 315576000000}, 2 * time.Hour, true},
	} {
		a := newCheckArrivals()
		c := check(tt.ttl)
		a.put(c, at)
		if got := a.take(c).lapsed(at.Add(tt.waited)); got != tt.want {
			t.Errorf("%s: lapsed %v, want %v", tt.name, got, tt.want)
		}
		if len(a.at) != 0 {
			t.Errorf("%s: %d arrivals kept after the check was read", tt.name, len(a.at))
		}
		if a.take(c).lapsed(at.Add(24 * time.Hour)) {
			t.Errorf("%s: a check read before is lapsed", tt.name)
		}
	}
}

// TestCheckLapsedByEitherClock: the wait is the longer of the Mac's two
// clocks': the wall clock's through a sleep, which pauses the monotonic
// one, and the monotonic one's after the wall clock is stepped back.
func TestCheckLapsedByEitherClock(t *testing.T) {
	t.Parallel()
	arr := checkArrival{ttl: 10 * time.Second, known: true}
	for _, tt := range []struct {
		name            string
		monotonic, wall time.Duration
		want            bool
	}{
		{"both short", 9 * time.Second, 9 * time.Second, false},
		{"slept through it", time.Second, time.Hour, true},
		{"wall clock stepped back", 11 * time.Second, -time.Hour, true},
		{"wall clock stepped back, time left", 5 * time.Second, -time.Hour, false},
		{"both long", time.Minute, time.Minute, true},
	} {
		if got := arr.lapsedAfter(tt.monotonic, tt.wall); got != tt.want {
			t.Errorf("%s: lapsed %v, want %v", tt.name, got, tt.want)
		}
	}
	if (checkArrival{ttl: time.Second}).lapsedAfter(time.Hour, time.Hour) {
		t.Error("a check without a ttl lapsed")
	}
	// Through lapsed: a reading with a monotonic clock, against one
	// without (whose difference is the wall clock's).
	local := time.Now()
	arr.local = local
	if arr.lapsed(local.Add(time.Second)) {
		t.Error("a check lapsed after a second")
	}
	if !arr.lapsed(local.Round(0).Add(time.Minute)) {
		t.Error("a check not lapsed a minute later by the wall clock")
	}
}
