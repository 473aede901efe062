package stream

import (
	"sync"
	"time"

	agentv1 "github.com/clearance/clearance/proto/gen/clearance/agent/v1"
)

// checkQueued is how long a CheckNow must have waited, between its arrival
// and its turn, before its expiry is judged by the agent: one taken at once
// is always run, and whether it has expired is the verifier's to say (a
// step of the Mac's clock moves the verifier's time as the agent knows it;
// see usableCheck). One that waited behind a run of its own has no such
// benefit of the doubt: a run outlasting a live check's wait would
// otherwise be followed by a run whose report is refused, ending the
// stream.
const checkQueued = time.Second

// checkArrivals remembers when each CheckNow of a session arrived, on the
// Mac's clock and in the verifier's time as known then, from the stream's
// reader until the session takes it. The inbox bounds how many wait.
type checkArrivals struct {
	mu sync.Mutex
	at map[*agentv1.CheckNow]checkArrival
}

type checkArrival struct{ local, verifier time.Time }

func newCheckArrivals() *checkArrivals {
	return &checkArrivals{at: map[*agentv1.CheckNow]checkArrival{}}
}

// put records check's arrival.
func (a *checkArrivals) put(check *agentv1.CheckNow, local, verifier time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.at[check] = checkArrival{local, verifier}
}

// lapsed forgets check's arrival and says whether, by now (the Mac's
// clock), it waited at least checkQueued and longer than the time it had
// left when it arrived.
func (a *checkArrivals) lapsed(check *agentv1.CheckNow, now time.Time) bool {
	a.mu.Lock()
	arr, ok := a.at[check]
	delete(a.at, check)
	a.mu.Unlock()
	if !ok || check.GetExpiresAt() == nil {
		return false
	}
	waited := now.Sub(arr.local)
	return waited >= checkQueued && waited >= check.GetExpiresAt().AsTime().Sub(arr.verifier)
}
