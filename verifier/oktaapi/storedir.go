package oktaapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/clearance/clearance/verifier/storage"
)

// SyncActor is the audit actor of every change the API sync makes.
const SyncActor = "okta-api-sync"

// storeAttempts bounds the retries of a write that lost a race with
// another writer (SCIM, another replica's sync).
const storeAttempts = 3

// StoreDirectory is the Directory on the verifier's user store, the one
// SCIM fills: what the sync writes is what sign-in reads. Records keep
// Okta's IDs; a record SCIM manages is never changed (ErrOtherSource),
// and a write that would change nothing is not made, so a reconciliation
// that finds Okta as it was writes no row and no audit event.
type StoreDirectory struct {
	Store storage.PeopleStore
	Now   func() time.Time
}

var _ Directory = (*StoreDirectory)(nil)

func (d *StoreDirectory) now() time.Time {
	if d.Now != nil {
		return d.Now()
	}
	return time.Now()
}

func (d *StoreDirectory) audit(action, detail string) storage.AuditEvent {
	return storage.AuditEvent{At: d.now(), Actor: SyncActor, Action: action, Detail: detail}
}

// apiResource is the SCIM view of a synced user, served by the SCIM
// endpoint's reads like any other user.
type apiResource struct {
	UserName string `json:"userName"`
	Name     struct {
		GivenName  string `json:"givenName,omitempty"`
		FamilyName string `json:"familyName,omitempty"`
	} `json:"name"`
	DisplayName string     `json:"displayName,omitempty"`
	Emails      []apiEmail `json:"emails,omitempty"`
	Active      bool       `json:"active"`
}

type apiEmail struct {
	Value   string `json:"value"`
	Primary bool   `json:"primary"`
	Type    string `json:"type"`
}

func displayName(u DirUser) string {
	return strings.TrimSpace(u.GivenName + " " + u.FamilyName)
}

// storeUser is u as the store keeps it, on top of cur (the stored record,
// or zero).
func storeUser(cur storage.User, u DirUser, now time.Time) (storage.User, error) {
	var r apiResource
	r.UserName, r.DisplayName, r.Active = u.Login, displayName(u), u.Active
	r.Name.GivenName, r.Name.FamilyName = u.GivenName, u.FamilyName
	if u.Email != "" {
		r.Emails = []apiEmail{{Value: u.Email, Primary: true, Type: "work"}}
	}
	res, err := json.Marshal(r)
	if err != nil {
		return storage.User{}, err
	}
	next := cur
	next.ID, next.UserName, next.ExternalID, next.DisplayName, next.Email = u.ID, u.Login, u.ID, displayName(u), u.Email
	next.Active, next.Resource, next.Source = u.Active, res, storage.SourceOktaAPI
	if next.CreatedAt.IsZero() {
		next.CreatedAt = now
	}
	next.UpdatedAt = now
	return next, nil
}

// sameUser reports whether storing b over a would change nothing a reader
// sees.
func sameUser(a, b storage.User) bool {
	return a.UserName == b.UserName && a.ExternalID == b.ExternalID && a.DisplayName == b.DisplayName &&
		a.Email == b.Email && a.Active == b.Active && a.Source == b.Source && string(a.Resource) == string(b.Resource)
}

// dirUserOf is the stored user as the Directory shows it. Okta's status is
// not stored: an active user reads as ACTIVE, another as DEPROVISIONED.
func dirUserOf(u storage.User) DirUser {
	var r apiResource
	_ = json.Unmarshal(u.Resource, &r)
	status := "DEPROVISIONED"
	if u.Active {
		status = "ACTIVE"
	}
	return DirUser{ID: u.ID, Login: u.UserName, Email: u.Email, GivenName: r.Name.GivenName,
		FamilyName: r.Name.FamilyName, Active: u.Active, Status: status, Source: u.Source}
}

func (d *StoreDirectory) UpsertUser(ctx context.Context, u DirUser) error {
	if u.Source != SourceAPI {
		return ErrOtherSource
	}
	return retried(func() error { return d.upsertUser(ctx, u) })
}

// retried runs write again, up to storeAttempts times in all, when it lost
// a race with another writer: ErrStale, or one of also.
func retried(write func() error, also ...error) error {
	for attempt := 1; ; attempt++ {
		err := write()
		lost := errors.Is(err, storage.ErrStale)
		for _, e := range also {
			lost = lost || errors.Is(err, e)
		}
		if !lost || attempt == storeAttempts {
			return err
		}
	}
}

// owned reads a lookup of a record the sync would change: done when there
// is nothing more to do, with the error to return (nil for a record that
// is not stored, ErrOtherSource for one the API sync does not manage).
func owned(err error, recordSource, source string) (done bool, _ error) {
	switch {
	case errors.Is(err, storage.ErrNotFound):
		return true, nil
	case err != nil:
		return true, err
	case recordSource != storage.SourceOktaAPI || source != SourceAPI:
		return true, ErrOtherSource
	}
	return false, nil
}

// gone is a delete's error, where a record deleted meanwhile is none.
func gone(err error) error {
	if errors.Is(err, storage.ErrNotFound) {
		return nil
	}
	return err
}

func (d *StoreDirectory) upsertUser(ctx context.Context, u DirUser) error {
	cur, err := d.Store.GetUser(ctx, u.ID)
	found := err == nil
	if err != nil && !errors.Is(err, storage.ErrNotFound) {
		return err
	}
	// A person SCIM manages (it took this record over, or holds Okta's ID
	// as its externalId) stays SCIM's, but Okta's deactivation applies to
	// it: deny wins. No API copy of that person is made; one made before
	// the SCIM user claimed the ID stays (a claim is SCIM's word, and must
	// not remove the record of someone Okta still has).
	holders, err := d.scimHolders(ctx, u.ID, cur, found)
	if err != nil {
		return err
	}
	for _, h := range holders {
		if err := d.denyWins(ctx, h, u); !errors.Is(err, ErrOtherSource) {
			return err
		}
	}
	if found && cur.Source != storage.SourceOktaAPI || !found && len(holders) > 0 {
		return ErrOtherSource
	}
	if !found {
		if err := d.nameFree(ctx, u); err != nil {
			return err
		}
		next, err := storeUser(storage.User{}, u, d.now())
		if err != nil {
			return err
		}
		_, err = d.Store.CreateUser(ctx, next, d.audit("user.create", "user "+u.ID+" ("+u.Login+") created from the Okta API"))
		return d.storeErr(err)
	}
	next, err := storeUser(cur, u, d.now())
	if err != nil {
		return err
	}
	if sameUser(cur, next) {
		return nil
	}
	action, verb := "user.update", "updated"
	switch {
	case cur.Active && !next.Active:
		action, verb = "user.deactivate", "deactivated"
	case !cur.Active && next.Active:
		action, verb = "user.reactivate", "reactivated"
	}
	_, err = d.Store.UpdateUser(ctx, next, d.audit(action, "user "+u.ID+" ("+u.Login+") "+verb+" from the Okta API"))
	err = d.storeErr(err)
	if (errors.Is(err, ErrOtherSource) || errors.Is(err, ErrNotStored)) && cur.Active && !u.Active {
		// Fail closed: the rest of Okta's record cannot be stored (a
		// field too long, a login another record holds), but its
		// deactivation lands on its own.
		cur.Active, cur.UpdatedAt = false, d.now()
		if _, derr := d.Store.UpdateUser(ctx, cur, d.audit("user.deactivate",
			"user "+u.ID+" ("+cur.UserName+") deactivated from the Okta API (Okta's other changes not stored)")); derr != nil {
			return derr
		}
	}
	return err
}

// scimHolders are the SCIM-managed users that are the person Okta calls
// oktaID: the record with that ID if SCIM's, and every SCIM user whose
// externalId it is (more than one is a SCIM client's mistake, or a decoy:
// Okta's deactivation reaches them all).
func (d *StoreDirectory) scimHolders(ctx context.Context, oktaID string, cur storage.User, found bool) ([]storage.User, error) {
	var out []storage.User
	if found && cur.Source != storage.SourceOktaAPI {
		out = append(out, cur)
	}
	for off := 0; ; off += storage.MaxPeoplePage {
		p, err := d.Store.ListUsers(ctx, storage.PeopleQuery{ExternalID: oktaID, Offset: off, Limit: storage.MaxPeoplePage})
		if err != nil {
			return nil, err
		}
		for _, u := range p.Users {
			if u.Source != storage.SourceOktaAPI && (!found || u.ID != cur.ID) {
				out = append(out, u)
			}
		}
		if len(p.Users) < storage.MaxPeoplePage {
			return out, nil
		}
	}
}

// denyWins applies Okta's deactivation of u to rec, a user another source
// manages (never its activation: that source decides), and reports
// ErrOtherSource: nothing else of u is stored.
func (d *StoreDirectory) denyWins(ctx context.Context, rec storage.User, u DirUser) error {
	if u.Active || !rec.Active {
		return ErrOtherSource
	}
	rec.Active, rec.UpdatedAt = false, d.now()
	_, err := d.Store.UpdateUser(ctx, rec, d.audit("user.deactivate",
		"user "+rec.ID+" ("+rec.UserName+") deactivated: Okta's API says "+u.ID+" is "+u.Status))
	if err != nil {
		return err
	}
	return ErrOtherSource
}

// nameFree reports whether a new user's login is free. A login another
// API record holds waits (ErrOtherSource) until the full reconciliation
// has removed that record, once Okta no longer lists it: Okta's logins are
// unique, but only its own listing says which holder is gone. A login a
// SCIM user holds is that person, SCIM's (unless its externalId names
// another Okta user): Okta's deactivation applies to it, nothing else.
func (d *StoreDirectory) nameFree(ctx context.Context, u DirUser) error {
	old, err := d.Store.GetUserByName(ctx, u.Login)
	switch {
	case errors.Is(err, storage.ErrNotFound):
		return nil
	case err != nil:
		return err
	case old.Source != storage.SourceOktaAPI && (old.ExternalID == "" || old.ExternalID == u.ID):
		// The same person, unless SCIM says it is another Okta user.
		return d.denyWins(ctx, old, u)
	}
	return ErrOtherSource
}

// storeErr turns a name another record took in the meantime into
// ErrOtherSource (the sync skips it and tries again at its next read), and
// a record the store refuses into ErrNotStored.
func (d *StoreDirectory) storeErr(err error) error {
	switch {
	case errors.Is(err, storage.ErrAlreadyExists):
		return fmt.Errorf("%w: %w", ErrOtherSource, err)
	case errors.Is(err, storage.ErrInvalid):
		return fmt.Errorf("%w: %w", ErrNotStored, err)
	}
	return err
}

func (d *StoreDirectory) DeactivateUser(ctx context.Context, id, source string) error {
	u, err := d.Store.GetUser(ctx, id)
	if done, err := owned(err, u.Source, source); done {
		return err
	}
	du := dirUserOf(u)
	du.Active, du.Status = false, "DEPROVISIONED"
	return d.UpsertUser(ctx, du)
}

func (d *StoreDirectory) DeleteUser(ctx context.Context, id, source string) error {
	// At the version read: a record SCIM took over meanwhile is not the
	// API's to delete (ErrStale, then read again).
	return retried(func() error {
		u, err := d.Store.GetUser(ctx, id)
		if done, err := owned(err, u.Source, source); done {
			return err
		}
		return gone(d.Store.DeleteUser(ctx, id, u.Version, d.audit("user.delete", "user "+id+" ("+u.UserName+") deleted: gone from Okta")))
	})
}

func (d *StoreDirectory) UpsertGroup(ctx context.Context, g DirGroup) error {
	if g.Source != SourceAPI {
		return ErrOtherSource
	}
	return retried(func() error { return d.upsertGroup(ctx, g) })
}

func (d *StoreDirectory) upsertGroup(ctx context.Context, g DirGroup) error {
	cur, err := d.Store.GetGroup(ctx, g.ID)
	switch {
	case errors.Is(err, storage.ErrNotFound):
		if err := d.freeGroupName(ctx, g); err != nil {
			return err
		}
		now := d.now()
		_, err := d.Store.CreateGroup(ctx, storage.Group{ID: g.ID, DisplayName: g.Name, ExternalID: g.ID,
			Source: storage.SourceOktaAPI, CreatedAt: now, UpdatedAt: now},
			d.audit("group.create", "group "+g.ID+" ("+g.Name+") created from the Okta API"))
		return d.storeErr(err)
	case err != nil:
		return err
	case cur.Source != storage.SourceOktaAPI:
		return ErrOtherSource
	case cur.DisplayName == g.Name && cur.ExternalID == g.ID:
		return nil
	}
	cur.DisplayName, cur.ExternalID, cur.UpdatedAt = g.Name, g.ID, d.now()
	_, err = d.Store.UpdateGroup(ctx, cur, d.audit("group.update", "group "+g.ID+" ("+g.Name+") updated from the Okta API"))
	return d.storeErr(err)
}

// freeGroupName is nameFree for groups (Okta's group names are unique): a
// name another API group holds waits for the full reconciliation; a name
// SCIM holds is SCIM's.
func (d *StoreDirectory) freeGroupName(ctx context.Context, g DirGroup) error {
	p, err := d.Store.ListGroups(ctx, storage.PeopleQuery{Name: g.Name, Limit: 1, WithoutMembers: true})
	if err != nil || len(p.Groups) == 0 {
		return err
	}
	return ErrOtherSource
}

func (d *StoreDirectory) DeleteGroup(ctx context.Context, id, source string) error {
	// At the version read, as DeleteUser.
	return retried(func() error {
		g, err := d.Store.GetGroup(ctx, id)
		if done, err := owned(err, g.Source, source); done {
			return err
		}
		return gone(d.Store.DeleteGroup(ctx, id, g.Version, d.audit("group.delete", "group "+id+" ("+g.DisplayName+") deleted: gone from Okta")))
	})
}

// SetMembers makes the Okta members the store knows the group's members:
// an Okta ID is a user synced under that ID, or the user whose external ID
// it is; a member the store does not have (not synced yet, or a SCIM user
// Okta's ID cannot be matched to) is left out until it is.
func (d *StoreDirectory) SetMembers(ctx context.Context, groupID, source string, userIDs []string) (changed bool, err error) {
	if len(userIDs) > storage.MaxGroupMembers {
		return false, fmt.Errorf("%w: group %s has %d members, more than the %d kept", ErrNotStored, groupID, len(userIDs), storage.MaxGroupMembers)
	}
	// ErrUnknownMember: a member deleted meanwhile; map them again.
	err = retried(func() (err error) {
		changed, err = d.setMembers(ctx, groupID, source, userIDs)
		return err
	}, storage.ErrUnknownMember)
	return changed, err
}

func (d *StoreDirectory) setMembers(ctx context.Context, groupID, source string, userIDs []string) (bool, error) {
	g, err := d.Store.GetGroup(ctx, groupID)
	if err != nil {
		return false, err
	}
	if g.Source != storage.SourceOktaAPI || source != SourceAPI {
		return false, ErrOtherSource
	}
	known := make(map[string]bool, len(g.Members))
	for _, id := range g.Members {
		known[id] = true
	}
	want := make([]string, 0, len(userIDs))
	for _, id := range userIDs {
		if known[id] {
			want = append(want, id)
			continue
		}
		sids, err := d.storeUserIDs(ctx, id)
		if err != nil {
			return false, err
		}
		want = append(want, sids...)
	}
	slices.Sort(want)
	want = slices.Compact(want)
	if slices.Equal(want, g.Members) {
		return false, nil
	}
	added, removed := 0, 0
	for _, id := range want {
		if !known[id] {
			added++
		}
	}
	removed = len(g.Members) + added - len(want)
	g.Members, g.UpdatedAt = want, d.now()
	_, err = d.Store.UpdateGroup(ctx, g, d.audit("group.members",
		fmt.Sprintf("group %s (%s) from the Okta API: %d members added, %d removed", groupID, g.DisplayName, added, removed)))
	return err == nil, d.storeErr(err)
}

// storeUserIDs are the store's users Okta calls oktaID: the record with
// that ID, and the SCIM users whose externalId it is.
func (d *StoreDirectory) storeUserIDs(ctx context.Context, oktaID string) ([]string, error) {
	if oktaID == "" {
		return nil, nil
	}
	cur, err := d.Store.GetUser(ctx, oktaID)
	found := err == nil
	if err != nil && !errors.Is(err, storage.ErrNotFound) {
		return nil, err
	}
	var ids []string
	if found {
		ids = append(ids, cur.ID)
	}
	holders, err := d.scimHolders(ctx, oktaID, cur, found)
	if err != nil {
		return nil, err
	}
	for _, h := range holders {
		if h.ID != oktaID {
			ids = append(ids, h.ID)
		}
	}
	return ids, nil
}

func (d *StoreDirectory) ListUsers(ctx context.Context, source string) ([]DirUser, error) {
	var out []DirUser
	for off := 0; ; off += storage.MaxPeoplePage {
		p, err := d.Store.ListUsers(ctx, storage.PeopleQuery{Offset: off, Limit: storage.MaxPeoplePage})
		if err != nil {
			return nil, err
		}
		for _, u := range p.Users {
			if source == "" || u.Source == source {
				out = append(out, dirUserOf(u))
			}
		}
		if len(p.Users) < storage.MaxPeoplePage {
			return out, nil
		}
	}
}

func (d *StoreDirectory) ListGroups(ctx context.Context, source string) ([]DirGroup, error) {
	var out []DirGroup
	for off := 0; ; off += storage.MaxPeoplePage {
		p, err := d.Store.ListGroups(ctx, storage.PeopleQuery{Offset: off, Limit: storage.MaxPeoplePage, WithoutMembers: true})
		if err != nil {
			return nil, err
		}
		for _, g := range p.Groups {
			if source == "" || g.Source == source {
				out = append(out, DirGroup{ID: g.ID, Name: g.DisplayName, Source: g.Source})
			}
		}
		if len(p.Groups) < storage.MaxPeoplePage {
			return out, nil
		}
	}
}

func (d *StoreDirectory) Members(ctx context.Context, groupID string) ([]string, error) {
	g, err := d.Store.GetGroup(ctx, groupID)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return g.Members, nil
}
