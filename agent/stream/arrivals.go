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

// checkArrivals remembers when each CheckNow of a session arrived, and how
// long it had left then, from the stream's reader until the session takes
// it. The inbox bounds how many wait. The time a check had left is
// reckoned from the stream's own Session: its verifier time plus the time
// elapsed since it arrived. Its callers pass time.Now(), whose differences
// are on the monotonic clock, so that a step of the Mac's wall clock (and of
// the verifier's time as the agent knows it, built on that) cannot make an
// honest check look expired. Without a Session first, nothing is judged.
type checkArrivals struct {
	mu sync.Mutex
	// sessVerifier and sessLocal are the stream's first Session's verifier
	// time and when it arrived; sessKnown once it did, with a valid time.
	sessVerifier, sessLocal time.Time
	sessKnown, sessSeen     bool
	at                      map[*agentv1.CheckNow]checkArrival
}

type checkArrival struct {
	local time.Time
	left  time.Duration
	known bool // left was reckoned from a Session
}

func newCheckArrivals() *checkArrivals {
	return &checkArrivals{at: map[*agentv1.CheckNow]checkArrival{}}
}

// session records the stream's first Session, which arrived at local; the
// session takes no other either.
func (a *checkArrivals) session(s *agentv1.Session, local time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.sessSeen {
		return
	}
	a.sessSeen = true
	if s.GetVerifierTime().IsValid() {
		a.sessVerifier, a.sessLocal, a.sessKnown = s.GetVerifierTime().AsTime(), local, true
	}
}

// put records check's arrival at local.
func (a *checkArrivals) put(check *agentv1.CheckNow, local time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	arr := checkArrival{local: local}
	if a.sessKnown && check.GetExpiresAt().IsValid() {
		verifierNow := a.sessVerifier.Add(local.Sub(a.sessLocal))
		arr.left, arr.known = check.GetExpiresAt().AsTime().Sub(verifierNow), true
	}
	a.at[check] = arr
}

// lapsed forgets check's arrival and says whether, by now, it waited at
// least checkQueued and has less time left than a run takes (runTakes:
// the last run of every policy), or none: a run for it would send a
// report the verifier refuses.
func (a *checkArrivals) lapsed(check *agentv1.CheckNow, now time.Time, runTakes time.Duration) bool {
	a.mu.Lock()
	arr, ok := a.at[check]
	delete(a.at, check)
	a.mu.Unlock()
	if !ok || !arr.known {
		return false
	}
	waited := now.Sub(arr.local)
	return waited >= checkQueued && arr.left-waited <= runTakes
}
