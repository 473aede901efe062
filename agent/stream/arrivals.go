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
// inbox bounds how many wait. Its callers pass time.Now(), whose
// differences are on the monotonic clock: neither wall clock, the Mac's or
// the verifier's, moves the time a check has left. A check without a ttl
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
// live: a run for it would send a report the verifier refuses, which ends
// the stream. One that did not say its ttl has not.
func (arr checkArrival) lapsed(now time.Time) bool {
	return arr.known && now.Sub(arr.local) >= arr.ttl
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
