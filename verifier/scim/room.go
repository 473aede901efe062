package scim

import (
	"context"
	"net/http"
	"sync"
	"time"

	"github.com/clearance/clearance/verifier/storage"
)

// Bounds on what SCIM adds, and how often the store is counted against
// them (variables for tests).
var (
	maxUsers, maxGroups, maxMemberships = storage.MaxUsers, storage.MaxGroups, storage.MaxMemberships
	countEvery                          = 10 * time.Second
)

// peopleCount holds the store's counts at the last recount, with what
// this handler let through since (added: done; inflight: not yet): counting
// on every write would cost an initial import from Okta a scan of the
// tables per user. A recount keeps the writes still in flight, which it
// may not have seen committed. Replicas count apart, so the bounds hold to
// within what they add in countEvery.
type peopleCount struct {
	mu          sync.Mutex
	base, added storage.PeopleCount
	inflight    storage.PeopleCount
	at          time.Time
}

// room refuses a write that would take the store past a bound: users,
// groups and memberships are what it adds (0 or less for none). A write let
// through counts at once, whether or not it then succeeds, until the next
// recount after done is called; done must be called once the write has
// returned.
func (h *Handler) room(ctx context.Context, users, groups, memberships int) (done func(), err error) {
	add := storage.PeopleCount{Users: max(users, 0), Groups: max(groups, 0), Memberships: max(memberships, 0)}
	if add == (storage.PeopleCount{}) {
		return func() {}, nil
	}
	pc := &h.counted
	pc.mu.Lock()
	defer pc.mu.Unlock()
	now := h.now()
	if pc.at.IsZero() || now.Sub(pc.at) >= countEvery || now.Before(pc.at) {
		c, err := h.Store.CountPeople(ctx)
		if err != nil {
			return nil, err
		}
		pc.base, pc.added, pc.at = c, storage.PeopleCount{}, now
	}
	after := plus(plus(plus(pc.base, pc.added, 1), pc.inflight, 1), add, 1)
	switch {
	case add.Users > 0 && after.Users > maxUsers:
		return nil, errorf(http.StatusForbidden, "", "the verifier keeps at most %d users; delete users before adding more", maxUsers)
	case add.Groups > 0 && after.Groups > maxGroups:
		return nil, errorf(http.StatusForbidden, "", "the verifier keeps at most %d groups; delete groups before adding more", maxGroups)
	case add.Memberships > 0 && after.Memberships > maxMemberships:
		return nil, errorf(http.StatusForbidden, "", "the verifier keeps at most %d group memberships in all; remove members before adding more", maxMemberships)
	}
	pc.inflight = plus(pc.inflight, add, 1)
	var once sync.Once
	return func() {
		once.Do(func() {
			pc.mu.Lock()
			defer pc.mu.Unlock()
			pc.inflight = plus(pc.inflight, add, -1)
			pc.added = plus(pc.added, add, 1)
		})
	}, nil
}

// plus is a + sign×b.
func plus(a, b storage.PeopleCount, sign int) storage.PeopleCount {
	return storage.PeopleCount{Users: a.Users + sign*b.Users, Groups: a.Groups + sign*b.Groups, Memberships: a.Memberships + sign*b.Memberships}
}
