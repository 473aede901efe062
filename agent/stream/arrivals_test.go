package stream

import (
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	agentv1 "github.com/clearance/clearance/proto/gen/clearance/agent/v1"
)

// TestCheckArrivals: a check has lapsed once it has waited as long as its
// ttl, counted from its arrival; its expiry and either clock play no part;
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
