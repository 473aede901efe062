package stream

import (
	"sync"
	"time"

	agentv1 "github.com/clearance/clearance/proto/gen/clearance/agent/v1"
)

// maxCheckTTL bounds the time to live a CheckNow is taken to have: far
// beyond any live check's wait, and keeping sums of times clear of
// overflow whatever a verifier sends.
const maxCheckTTL = time.Hour

// checkArrivals remembers when each CheckNow of a session arrived and how
// long it had to live then (its ttl, as the verifier counts it from when
// it sent it), from the stream's reader until the session takes it. The
// inbox bounds how many wait. Its callers pass time.Now(), which carries
// both the Mac's clocks (lapsed says how each counts); the verifier's clock
// does not move the time a check has left. A check without a ttl
// (an older verifier's) is not judged. Its arrival is recorded all the
// same: a run of every policy that began after it answers it.
type checkArrivals struct {
	mu sync.Mutex
	at map[*agentv1.CheckNow]checkArrival
}

type checkArrival struct {
	local time.Time // zero if its arrival was not recorded
	ttl   time.Duration
	known bool // the check said its ttl
}

// lapsed says whether, by now, the check has waited as long as it had to
// live: the verifier has given up on it, and a run for it is wasted. One
// that did not say its ttl has not. The wait is measured on both of the
// Mac's clocks, and the longer counts: the monotonic one, which steps of
// the wall clock do not move, pauses while the Mac sleeps, and the wall
// clock, which goes on through a sleep, can be stepped back. A step forward
// can only drop a check early, which fails closed (the sign-in waiting on it
// is not allowed by it).
func (arr checkArrival) lapsed(now time.Time) bool {
	return arr.lapsedAfter(now.Sub(arr.local), now.Round(0).Sub(arr.local.Round(0)))
}

// lapsedAfter is lapsed for a wait of monotonic on the monotonic clock and
// wall on the wall clock.
func (arr checkArrival) lapsedAfter(monotonic, wall time.Duration) bool {
	return arr.known && max(monotonic, wall) >= arr.ttl
}

func newCheckArrivals() *checkArrivals {
	return &checkArrivals{at: map[*agentv1.CheckNow]checkArrival{}}
}

// put records check's arrival at local, and how long it lives if it says.
func (a *checkArrivals) put(check *agentv1.CheckNow, local time.Time) {
	arr := checkArrival{local: local}
	if check.GetTtl() != nil && check.GetTtl().CheckValid() == nil {
		arr.ttl = min(max(check.GetTtl().AsDuration(), 0), maxCheckTTL)
		arr.known = true
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.at[check] = arr
}

// take forgets check's arrival and returns it (known false if the check
// did not say its ttl, local zero if it was not recorded).
func (a *checkArrivals) take(check *agentv1.CheckNow) checkArrival {
	a.mu.Lock()
	defer a.mu.Unlock()
	arr := a.at[check]
	delete(a.at, check)
	return arr
}
