package oktaapi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"time"

	"github.com/clearance/clearance/verifier/storage"
)

// Names the sync's state is stored under (in the System Log's cursor table).
const (
	// syncFullCursor: when the last full reconciliation started.
	syncFullCursor = "sync_full"
	// syncUsersCursor and syncGroupsCursor: the newest lastUpdated read
	// from Okta, on Okta's clock, from which incremental reads of users
	// and of groups continue. Two, because users and groups are read one
	// after the other: one watermark would let a group changed after the
	// users were read hide a user changed in between.
	syncUsersCursor  = "sync_since_users"
	syncGroupsCursor = "sync_since_groups"
)

// Bounds on what one sync reads from Okta, so that an org (or a hostile
// answer) cannot grow the verifier's memory or database without limit. A
// sync over a bound fails before it changes anything; a larger org
// provisions the Clearance app's users over SCIM instead.
const (
	MaxSyncUsers  = 100_000
	MaxSyncGroups = 50_000
)

// maxClockLead is how far past the verifier's clock a watermark may be
// set: a lastUpdated Okta dates later (a hostile answer, a wrong clock)
// would otherwise stop incremental reads from seeing anything until then.
const maxClockLead = 5 * time.Minute

// The bounds in force (tests lower them).
var (
	maxSyncUsers  = MaxSyncUsers
	maxSyncGroups = MaxSyncGroups
	maxMembers    = storage.MaxGroupMembers
)

// errTooMany: a listing is over its bound.
var errTooMany = errors.New("more than the sync reads")

// activeStatuses are Okta's statuses of a user who may sign in; any other
// (SUSPENDED, DEPROVISIONED, STAGED, one Okta adds later) is inactive.
var activeStatuses = map[string]bool{
	"ACTIVE": true, "PROVISIONED": true, "RECOVERY": true, "PASSWORD_EXPIRED": true, "LOCKED_OUT": true,
}

// Sync defaults.
const (
	DefaultSyncInterval = 15 * time.Minute
	DefaultPollInterval = time.Minute
	// DefaultOverlap is re-read before the watermark at every incremental
	// read: Okta's lastUpdated has millisecond precision and writes land
	// out of order; unchanged users re-read are not written again.
	DefaultOverlap = 2 * time.Second
)

// CursorStore keeps the sync's state across restarts.
type CursorStore interface {
	OktaCursor(ctx context.Context, name string) (string, error)
	SaveOktaLogPage(ctx context.Context, cursorName, cursor string, at time.Time, events []storage.OktaSignIn) ([]string, error)
}

// Syncer keeps a Directory in step with Okta's users, groups and
// memberships: a full reconciliation every Interval (the only way to
// notice a deleted user or group) and, every PollInterval between, the
// users and groups Okta changed since the last read.
type Syncer struct {
	Client *Client
	Dir    Directory
	State  CursorStore
	Log    *slog.Logger
	// Interval between full reconciliations; PollInterval between
	// incremental reads. Zero: the defaults.
	Interval, PollInterval time.Duration
	// Overlap: see DefaultOverlap.
	Overlap time.Duration
	Now     func() time.Time
}

// SyncResult counts what one sync changed.
type SyncResult struct {
	Full                                 bool
	Users, Deactivated, Deleted, Skipped int
	Groups, GroupsDeleted, Memberships   int
}

func (s *Syncer) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

func (s *Syncer) log() *slog.Logger {
	if s.Log != nil {
		return s.Log
	}
	return slog.New(slog.DiscardHandler)
}

// Run syncs until ctx ends; a failed sync is logged and tried again at
// the next tick.
func (s *Syncer) Run(ctx context.Context) error {
	t := time.NewTicker(orDefault(s.PollInterval, DefaultPollInterval))
	defer t.Stop()
	for {
		if r, err := s.Once(ctx); err != nil && ctx.Err() == nil {
			s.log().Warn("okta_sync_failed", "component", "oktaapi", "err", err)
		} else if err == nil {
			s.log().Info("okta_sync", "component", "oktaapi", "full", r.Full, "users", r.Users, "deactivated", r.Deactivated,
				"deleted", r.Deleted, "skipped", r.Skipped, "groups", r.Groups, "groups_deleted", r.GroupsDeleted, "memberships", r.Memberships)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Once runs a full reconciliation if one is due (none yet, or the last
// started Interval ago), else an incremental read.
func (s *Syncer) Once(ctx context.Context) (SyncResult, error) {
	last, err := s.cursorTime(ctx, syncFullCursor)
	if err != nil {
		return SyncResult{}, err
	}
	since, err := s.cursorTime(ctx, syncUsersCursor)
	if err != nil {
		return SyncResult{}, err
	}
	groupsSince, err := s.cursorTime(ctx, syncGroupsCursor)
	if err != nil {
		return SyncResult{}, err
	}
	if last.IsZero() || since.IsZero() || groupsSince.IsZero() || s.now().Sub(last) >= orDefault(s.Interval, DefaultSyncInterval) {
		return s.Full(ctx)
	}
	return s.Incremental(ctx, since, groupsSince)
}

func (s *Syncer) cursorTime(ctx context.Context, name string) (time.Time, error) {
	v, err := s.State.OktaCursor(ctx, name)
	if errors.Is(err, storage.ErrNotFound) {
		return time.Time{}, nil
	}
	if err != nil {
		return time.Time{}, err
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return time.Time{}, nil // unreadable: start over with a full sync
	}
	return t, nil
}

func (s *Syncer) setCursor(ctx context.Context, name string, t time.Time) error {
	_, err := s.State.SaveOktaLogPage(ctx, name, t.UTC().Format(time.RFC3339Nano), s.now(), nil)
	return err
}

// dirUser is u as the directory keeps it.
func dirUser(u User) DirUser {
	return DirUser{
		ID: u.ID, Login: u.Profile.Login, Email: u.Profile.Email, GivenName: u.Profile.FirstName,
		FamilyName: u.Profile.LastName, Status: u.Status, Source: SourceAPI,
		Active: activeStatuses[u.Status],
	}
}

// state is what the directory holds from the API, by ID.
type state struct {
	users  map[string]DirUser
	groups map[string]DirGroup
	owner  map[string]string // user or group ID → source, every source
}

func (s *Syncer) load(ctx context.Context) (*state, error) {
	st := &state{users: map[string]DirUser{}, groups: map[string]DirGroup{}, owner: map[string]string{}}
	us, err := s.Dir.ListUsers(ctx, "")
	if err != nil {
		return nil, err
	}
	for _, u := range us {
		st.owner[u.ID] = u.Source
		if u.Source == SourceAPI {
			st.users[u.ID] = u
		}
	}
	gs, err := s.Dir.ListGroups(ctx, "")
	if err != nil {
		return nil, err
	}
	for _, g := range gs {
		st.owner["g:"+g.ID] = g.Source
		if g.Source == SourceAPI {
			st.groups[g.ID] = g
		}
	}
	return st, nil
}

// putUser writes u unless it is unchanged or another source's.
func (s *Syncer) putUser(ctx context.Context, st *state, u User, r *SyncResult) error {
	du := dirUser(u)
	if src, ok := st.owner[du.ID]; ok && src != SourceAPI && du.Active {
		// Another source's, and nothing to deny (a deactivation goes to
		// the directory, which applies it: deny wins).
		r.Skipped++
		return nil
	}
	if old, ok := st.users[du.ID]; ok && sameDirUser(old, du) {
		return nil
	}
	err := s.Dir.UpsertUser(ctx, du)
	if s.skipped(err, "user", du.ID, r) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("storing user %s: %w", du.ID, err)
	}
	if old, ok := st.users[du.ID]; ok && old.Active && !du.Active {
		r.Deactivated++
	}
	st.users[du.ID], st.owner[du.ID] = du, SourceAPI
	r.Users++
	return nil
}

// sameDirUser reports whether storing b over a would change nothing: the
// directory keeps whether a user is active, not Okta's exact status.
func sameDirUser(a, b DirUser) bool {
	a.Status, b.Status = "", ""
	return a == b
}

// capped is t, or the latest a watermark may be.
func (s *Syncer) capped(t time.Time) time.Time {
	if limit := s.now().Add(maxClockLead); t.After(limit) {
		return limit
	}
	return t
}

// putGroup writes g and, unless they are known and unchanged since
// (zero: whatever they are), its members.
func (s *Syncer) putGroup(ctx context.Context, st *state, g Group, since time.Time, r *SyncResult) error {
	dg := DirGroup{ID: g.ID, Name: g.Profile.Name, Source: SourceAPI}
	if src, ok := st.owner["g:"+g.ID]; ok && src != SourceAPI {
		r.Skipped++
		return nil
	}
	_, known := st.groups[g.ID]
	if old, ok := st.groups[g.ID]; !ok || old != dg {
		if err := s.Dir.UpsertGroup(ctx, dg); s.skipped(err, "group", g.ID, r) {
			return nil
		} else if err != nil {
			return fmt.Errorf("storing group %s: %w", g.ID, err)
		}
		st.groups[g.ID], st.owner["g:"+g.ID] = dg, SourceAPI
		r.Groups++
	}
	// Reading every group's members is a request per 200 members; a group
	// whose membership Okta has not touched since the last read is skipped
	// (Okta stamps lastMembershipUpdated on every change, deletions of
	// members included).
	if known && !since.IsZero() && !g.LastMembershipUpdated.IsZero() &&
		g.LastMembershipUpdated.Before(since.Add(-orDefault(s.Overlap, DefaultOverlap))) {
		return nil
	}
	ids, err := s.Client.Members(ctx, g.ID)
	if s.skipped(err, "members of group", g.ID, r) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading members of group %s: %w", g.ID, err)
	}
	sort.Strings(ids)
	ids = slices.Compact(ids)
	have, err := s.Dir.Members(ctx, g.ID)
	if err != nil {
		return err
	}
	if !slices.Equal(have, ids) {
		changed, err := s.Dir.SetMembers(ctx, g.ID, SourceAPI, ids)
		if s.skipped(err, "members of group", g.ID, r) {
			return nil
		} else if err != nil {
			return fmt.Errorf("storing members of group %s: %w", g.ID, err)
		}
		if changed {
			r.Memberships++
		}
	}
	return nil
}

// skipped reports whether err left a record out without failing the sync:
// another source manages it (counted), or the directory cannot keep it
// (counted and logged, since only an operator can act on it).
func (s *Syncer) skipped(err error, kind, id string, r *SyncResult) bool {
	switch {
	case errors.Is(err, ErrOtherSource):
		r.Skipped++
		return true
	case errors.Is(err, ErrNotStored):
		r.Skipped++
		s.log().Warn("okta_sync_not_stored", "component", "oktaapi", "kind", kind, "id", id, "err", err)
		return true
	}
	return false
}

// Full reads every user and group and makes the directory's API-sourced
// records exactly Okta's: deactivated users marked so, deleted ones removed.
// Everything is read before anything changes, so a listing that fails or
// is over its bound changes nothing.
func (s *Syncer) Full(ctx context.Context) (SyncResult, error) {
	r := SyncResult{Full: true}
	start := s.now()
	st, err := s.load(ctx)
	if err != nil {
		return r, err
	}
	// A plain list leaves deactivated users out; a search includes them. A
	// user in both (changed between the two reads) is taken as last
	// updated, and deactivated on a tie.
	var users []User
	at := map[string]int{}
	take := func(us []User) error {
		for _, u := range us {
			if u.ID == "" {
				continue
			}
			unstorable(&u)
			i, seen := at[u.ID]
			switch {
			case !seen && len(users) >= maxSyncUsers:
				return fmt.Errorf("%w: Okta lists more than %d users", errTooMany, maxSyncUsers)
			case !seen:
				at[u.ID] = len(users)
				users = append(users, u)
			case u.LastUpdated.After(users[i].LastUpdated) ||
				(u.LastUpdated.Equal(users[i].LastUpdated) && !activeStatuses[u.Status]):
				users[i] = u
			}
		}
		return nil
	}
	if err := s.Client.Users(ctx, "", take); err != nil {
		return r, fmt.Errorf("listing users: %w", err)
	}
	if err := s.Client.Users(ctx, `status eq "DEPROVISIONED"`, take); err != nil {
		return r, fmt.Errorf("listing deactivated users: %w", err)
	}
	var groups []Group
	seenGroups := map[string]bool{}
	err = s.Client.Groups(ctx, "", func(gs []Group) error {
		for _, g := range gs {
			if g.ID == "" || seenGroups[g.ID] {
				continue
			}
			if len(groups) >= maxSyncGroups {
				return fmt.Errorf("%w: Okta lists more than %d groups", errTooMany, maxSyncGroups)
			}
			seenGroups[g.ID] = true
			groups = append(groups, g)
		}
		return nil
	})
	if err != nil {
		return r, fmt.Errorf("listing groups: %w", err)
	}

	// Deletions first: a login or group name Okta gave to a new ID is
	// free once the record that held it is gone.
	for id := range st.users {
		if _, ok := at[id]; ok {
			continue
		}
		if err := s.Dir.DeleteUser(ctx, id, SourceAPI); err != nil && !errors.Is(err, ErrOtherSource) {
			return r, fmt.Errorf("deleting user %s: %w", id, err)
		}
		delete(st.users, id)
		r.Deleted++
	}
	for id := range st.groups {
		if seenGroups[id] {
			continue
		}
		if err := s.Dir.DeleteGroup(ctx, id, SourceAPI); err != nil && !errors.Is(err, ErrOtherSource) {
			return r, fmt.Errorf("deleting group %s: %w", id, err)
		}
		delete(st.groups, id)
		r.GroupsDeleted++
	}

	if err := s.parkMovedLogins(ctx, st, users, at, &r); err != nil {
		return r, err
	}
	var newestUser, newestGroup time.Time
	for _, u := range users {
		newestUser = later(newestUser, u.LastUpdated)
		if err := s.putUser(ctx, st, u, &r); err != nil {
			return r, err
		}
	}
	for _, g := range groups {
		newestGroup = later(newestGroup, later(g.LastUpdated, g.LastMembershipUpdated))
		// Every group's members, changed or not: a member the store did
		// not have at an earlier read (created meanwhile, or waiting for
		// its login) is added now.
		if err := s.putGroup(ctx, st, g, time.Time{}, &r); err != nil {
			return r, err
		}
	}
	for name, t := range map[string]time.Time{syncUsersCursor: newestUser, syncGroupsCursor: newestGroup} {
		if t.IsZero() {
			t = start
		}
		if err := s.setCursor(ctx, name, s.capped(t)); err != nil {
			return r, err
		}
	}
	return r, s.setCursor(ctx, syncFullCursor, start)
}

// unstorable empties the profile of a user whose fields the store could
// not keep (its empty login then stores nothing but a deactivation), so
// that a full reconciliation holds at most a few hundred bytes a user
// whatever Okta sends.
func unstorable(u *User) {
	for _, f := range []string{u.Profile.Login, u.Profile.Email, u.Profile.FirstName, u.Profile.LastName} {
		if len(f) > storage.MaxNameLen {
			u.Profile = UserProfile{}
			return
		}
	}
}

// parkedLogin is the login a synced user holds for a moment while Okta's
// logins move between users: the reserved .invalid domain is no one's.
func parkedLogin(id string) string { return "okta-rename-pending." + id + "@login.invalid" }

// parkMovedLogins makes way for logins Okta moved between synced users (a
// swap, a chain of renames): each rename would otherwise wait on the
// other's stored login for good. A user whose stored login another user
// now has, and who is renamed too, is parked under parkedLogin and
// deactivated until its own rename is stored in the same reconciliation.
func (s *Syncer) parkMovedLogins(ctx context.Context, st *state, users []User, at map[string]int, r *SyncResult) error {
	holder := map[string]string{}
	for id, du := range st.users {
		holder[storage.UserNameKey(du.Login)] = id
	}
	for _, u := range users {
		old, ok := st.users[u.ID]
		if !ok || u.Profile.Login == "" || storage.UserNameKey(old.Login) == storage.UserNameKey(u.Profile.Login) {
			continue
		}
		h, held := holder[storage.UserNameKey(u.Profile.Login)]
		if !held || h == u.ID {
			continue
		}
		i, listed := at[h]
		if !listed || storage.UserNameKey(users[i].Profile.Login) == storage.UserNameKey(st.users[h].Login) {
			continue // the holder keeps its login: u waits
		}
		parked := st.users[h]
		delete(holder, storage.UserNameKey(parked.Login))
		parked.Login, parked.Active, parked.Status = parkedLogin(h), false, "PARKED"
		if err := s.Dir.UpsertUser(ctx, parked); err != nil && !s.skipped(err, "user", h, r) {
			return fmt.Errorf("parking user %s: %w", h, err)
		}
		st.users[h] = parked
	}
	return nil
}

// Incremental reads the users changed after usersSince and the groups
// changed after groupsSince.
func (s *Syncer) Incremental(ctx context.Context, usersSince, groupsSince time.Time) (SyncResult, error) {
	var r SyncResult
	st, err := s.load(ctx)
	if err != nil {
		return r, err
	}
	overlap := orDefault(s.Overlap, DefaultOverlap)
	newest, read := usersSince, 0
	err = s.Client.Users(ctx, UsersUpdatedSince(usersSince.Add(-overlap)), func(us []User) error {
		for _, u := range us {
			if read++; read > maxSyncUsers {
				return fmt.Errorf("%w: Okta lists more than %d changed users", errTooMany, maxSyncUsers)
			}
			newest = later(newest, u.LastUpdated)
			if err := s.putUser(ctx, st, u, &r); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return r, fmt.Errorf("listing changed users: %w", err)
	}
	if err := s.setCursor(ctx, syncUsersCursor, s.capped(newest)); err != nil {
		return r, err
	}
	newest, read = groupsSince, 0
	err = s.Client.Groups(ctx, GroupsChangedSince(groupsSince.Add(-overlap)), func(gs []Group) error {
		for _, g := range gs {
			if read++; read > maxSyncGroups {
				return fmt.Errorf("%w: Okta lists more than %d changed groups", errTooMany, maxSyncGroups)
			}
			newest = later(newest, later(g.LastUpdated, g.LastMembershipUpdated))
			if err := s.putGroup(ctx, st, g, groupsSince, &r); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return r, fmt.Errorf("listing changed groups: %w", err)
	}
	return r, s.setCursor(ctx, syncGroupsCursor, s.capped(newest))
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
