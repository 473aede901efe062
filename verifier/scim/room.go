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

// peopleCount holds the store's counts between recounts, with what this
// handler added since: counting on every write would cost an initial
// import from Okta a scan of the tables per user. Replicas count apart, so
// the bounds hold to within what they add in countEvery.
type peopleCount struct {
	mu sync.Mutex
	c  storage.PeopleCount
	at time.Time
}

// room refuses a write that would take the store past a bound: users,
// groups and memberships are what it adds (0 for none). A write let
// through is counted at once, whether or not it then succeeds, until the
// next recount.
func (h *Handler) room(ctx context.Context, users, groups, memberships int) error {
	if users <= 0 && groups <= 0 && memberships <= 0 {
		return nil
	}
	h.counted.mu.Lock()
	defer h.counted.mu.Unlock()
	now := h.now()
	if h.counted.at.IsZero() || now.Sub(h.counted.at) >= countEvery || now.Before(h.counted.at) {
		c, err := h.Store.CountPeople(ctx)
		if err != nil {
			return err
		}
		h.counted.c, h.counted.at = c, now
	}
	c := &h.counted.c
	switch {
	case users > 0 && c.Users+users > maxUsers:
		return errorf(http.StatusForbidden, "", "the verifier keeps at most %d users; delete users before adding more", maxUsers)
	case groups > 0 && c.Groups+groups > maxGroups:
		return errorf(http.StatusForbidden, "", "the verifier keeps at most %d groups; delete groups before adding more", maxGroups)
	case memberships > 0 && c.Memberships+memberships > maxMemberships:
		return errorf(http.StatusForbidden, "", "the verifier keeps at most %d group memberships in all; remove members before adding more", maxMemberships)
	}
	c.Users += max(users, 0)
	c.Groups += max(groups, 0)
	c.Memberships += max(memberships, 0)
	return nil
}
