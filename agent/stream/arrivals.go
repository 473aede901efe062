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
// (an older verifier's) is not judged.
type checkArrivals struct {
	mu sync.Mutex
	at map[*agentv1.CheckNow]checkArrival
}

type checkArrival struct {
	local time.Time
	ttl   time.Duration
}

func newCheckArrivals() *checkArrivals {
	return &checkArrivals{at: map[*agentv1.CheckNow]checkArrival{}}
}

// put records check's arrival at local, if it says how long it lives.
func (a *checkArrivals) put(check *agentv1.CheckNow, local time.Time) {
	if check.GetTtl() == nil || check.GetTtl().CheckValid() != nil {
		return
	}
	ttl := min(max(check.GetTtl().AsDuration(), 0), maxCheckTTL)
	a.mu.Lock()
	defer a.mu.Unlock()
	a.at[check] = checkArrival{local: local, ttl: ttl}
}

// lapsed forgets check's arrival and says whether, by now, it has waited
// as long as it had to live: a run for it would send a report the
// verifier refuses, which ends the stream.
func (a *checkArrivals) lapsed(check *agentv1.CheckNow, now time.Time) bool {
	a.mu.Lock()
	arr, ok := a.at[check]
	delete(a.at, check)
	a.mu.Unlock()
	return ok && now.Sub(arr.local) >= arr.ttl
}
