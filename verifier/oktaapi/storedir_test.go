package oktaapi_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/clearance/clearance/internal/oktaorg"
	"github.com/clearance/clearance/verifier/oktaapi"
	"github.com/clearance/clearance/verifier/storage"
)

// newestAudit is the newest audit event, to tell whether a sync wrote.
func newestAudit(t *testing.T, s storage.Store) storage.AuditEvent {
	t.Helper()
	es, err := s.ListAudit(context.Background(), storage.AuditFilter{Limit: 1})
	if err != nil {
		t.Fatal(err)
	}
	if len(es) == 0 {
		return storage.AuditEvent{}
	}
	return es[0]
}

func userByName(t *testing.T, s storage.Store, name string) storage.User {
	t.Helper()
	u, err := s.GetUserByName(context.Background(), name)
	if err != nil {
		t.Fatalf("user %s: %v", name, err)
	}
	return u
}

func groupNames(t *testing.T, s storage.Store, userID string) []string {
	t.Helper()
	gs, err := s.UserGroups(context.Background(), userID)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, g := range gs {
		out = append(out, g.DisplayName)
	}
	return out
}

// TestSyncIntoStore runs the sync into the user store sign-in reads (the
// one SCIM fills), 10,000 users in 200-user pages: everything arrives with
// its source, SCIM's records are left alone, a deactivation, a group move
// and a deletion arrive within a cycle, and a restart writes nothing.
func TestSyncIntoStore(t *testing.T) {
	t.Parallel()
	org, c, sl := newOrg(t)
	orgWithPeople(org, 10000)
	// Touches a user and a group without changing them, a few
	// milliseconds on: the setup's thousands of writes share Okta's
	// millisecond timestamps, which incremental reads re-read.
	time.Sleep(3 * time.Millisecond)
	org.SetUserStatus("00u000009", "ACTIVE")
	org.PutGroup("00g00", "group 0")
	dir := t.TempDir()
	store := openStore(t, dir)
	ctx := context.Background()
	// user7 is SCIM's, under an ID the verifier issued.
	scimUser, err := store.CreateUser(ctx, storage.User{ID: "5c1e0000000000000000000000000007", UserName: "USER7@example.com",
		Active: true, Source: storage.SourceSCIM, Resource: []byte(`{}`)}, storage.AuditEvent{Actor: "scim:t"})
	if err != nil {
		t.Fatal(err)
	}
	s := &oktaapi.Syncer{Client: c, Dir: &oktaapi.StoreDirectory{Store: store}, State: store, Overlap: time.Millisecond}

	org.FailAfter(25, 429)
	r, err := s.Once(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !r.Full || r.Users != 9999 || r.Skipped != 1 || r.Groups != 20 || r.Memberships != 20 {
		t.Errorf("first sync %+v, want full: 9999 users (one is SCIM's), 20 groups and their members", r)
	}
	if waits := sl.all(); len(waits) != 1 {
		t.Errorf("waits %v, want one (the 429, waited out once)", waits)
	}
	// 50 pages of users, 1 of deactivated users, 1 of groups, 20×3 of
	// members, and the request refused with 429.
	if n := len(org.Requests()); n != 50+1+1+60+1 {
		t.Errorf("%d requests, want %d", n, 50+1+1+60+1)
	}
	p, err := store.ListUsers(ctx, storage.PeopleQuery{Limit: 1})
	if err != nil || p.Total != 10000 {
		t.Fatalf("%d users stored (%v), want 10000", p.Total, err)
	}
	u1 := userByName(t, store, "user1@example.com")
	if u1.ID != "00u000001" || u1.Source != storage.SourceOktaAPI || !u1.Active || u1.ExternalID != "00u000001" {
		t.Errorf("synced user = %+v", u1)
	}
	if got := userByName(t, store, "user7@example.com"); got.ID != scimUser.ID || got.Source != storage.SourceSCIM || got.Version != 1 {
		t.Errorf("the SCIM user became %+v", got)
	}
	if g := groupNames(t, store, "00u000003"); !slices.Equal(g, []string{"group 3"}) {
		t.Errorf("user3's groups = %v", g)
	}
	// group 7 has the 499 API users; Okta's ID of the SCIM user matches
	// nothing in the store, so that member is left out.
	grp, err := store.GetGroup(ctx, "00g07")
	if err != nil || len(grp.Members) != 499 || grp.Source != storage.SourceOktaAPI {
		t.Errorf("group 7: %d members, source %q, %v", len(grp.Members), grp.Source, err)
	}

	// Okta changes: a deactivation, a move, a rename, a deletion.
	time.Sleep(2 * time.Millisecond)
	org.SetUserStatus("00u000001", "DEPROVISIONED")
	org.SetUserStatus("00u000004", "SUSPENDED")
	org.SetMember("00g02", "00u000002", false)
	org.SetMember("00g05", "00u000002", true)
	org.PutGroup("00g09", "renamed")
	org.SetUserStatus("00u000042", "DEPROVISIONED")
	org.DeleteUser("00u000042")
	org.DeleteGroup("00g19")
	time.Sleep(3 * time.Millisecond)
	org.SetUserStatus("00u000009", "ACTIVE")
	org.PutGroup("00g00", "group 0")
	before := len(org.Requests())
	// An incremental read (the full interval has not passed) sees the
	// deactivations and the group changes at once.
	if r, err = s.Once(ctx); err != nil || r.Full || r.Deactivated != 2 {
		t.Fatalf("incremental sync %+v, %v; want two deactivations", r, err)
	}
	// Changed users, changed groups, and the members of the two groups
	// whose membership changed (3 pages each); the renamed group's members
	// are not read again.
	if n := len(org.Requests()) - before; n != 2+6 {
		t.Errorf("incremental sync made %d requests, want a handful: %v", n, org.Requests()[before:])
	}
	if userByName(t, store, "user1@example.com").Active || userByName(t, store, "user4@example.com").Active {
		t.Error("a user Okta deactivated or suspended is still active")
	}
	if g := groupNames(t, store, "00u000002"); !slices.Equal(g, []string{"group 5"}) {
		t.Errorf("user2's groups after the move = %v", g)
	}
	if r, err = s.Full(ctx); err != nil || r.Deleted != 1 || r.GroupsDeleted != 1 {
		t.Fatalf("full sync %+v, %v; want one user and one group deleted", r, err)
	}
	if _, err := store.GetUser(ctx, "00u000042"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("deleted user: %v", err)
	}
	if g := groupNames(t, store, "00u000009"); !slices.Equal(g, []string{"renamed"}) {
		t.Errorf("user9's groups = %v", g)
	}
	es, err := store.ListAudit(ctx, storage.AuditFilter{Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	var actions []string
	for _, e := range es {
		if e.Actor != oktaapi.SyncActor {
			t.Errorf("audit event by %q: %+v", e.Actor, e)
		}
		actions = append(actions, e.Action)
	}
	for _, want := range []string{"user.deactivate", "user.delete", "group.delete", "group.update", "group.members"} {
		if !slices.Contains(actions, want) {
			t.Errorf("no %s in the audit log: %v", want, actions)
		}
	}

	// A restart: a new store handle and directory. Nothing changed in
	// Okta, so neither the incremental read nor a full one writes.
	if err := store.Close(); err != nil {
		t.Fatal(err)
	}
	store = openStore(t, dir)
	defer store.Close()
	last := newestAudit(t, store)
	s = &oktaapi.Syncer{Client: c, Dir: &oktaapi.StoreDirectory{Store: store}, State: store, Overlap: time.Millisecond}
	before = len(org.Requests())
	if r, err = s.Once(ctx); err != nil || r.Full {
		t.Fatalf("after a restart %+v, %v; want an incremental read", r, err)
	}
	if n := len(org.Requests()) - before; n != 2 {
		t.Errorf("after a restart %d requests, want 2 (changed users, changed groups)", n)
	}
	// A full reconciliation with nothing changed reads every user, group
	// and group's members (19 groups of 3 pages), and changes nothing.
	before = len(org.Requests())
	if r, err = s.Full(ctx); err != nil {
		t.Fatal(err)
	}
	if n := len(org.Requests()) - before; n != 50+1+1+57 || r.Users != 0 || r.Memberships != 0 {
		t.Errorf("an unchanged full sync: %d requests, %+v; want 109 and no change", n, r)
	}
	if got := newestAudit(t, store); got.ID != last.ID {
		t.Errorf("an unchanged sync wrote %+v", got)
	}
	if p, _ := store.ListUsers(ctx, storage.PeopleQuery{Limit: 1}); p.Total != 9999 {
		t.Errorf("%d users after the restart, want 9999 (no duplicates)", p.Total)
	}
}

// TestStoreDirectorySCIMWins: a record SCIM took over is never changed by
// the sync again, and names SCIM holds are never taken.
func TestStoreDirectorySCIMWins(t *testing.T) {
	t.Parallel()
	org, c, _ := newOrg(t)
	orgWithPeople(org, 40)
	store := openStore(t, t.TempDir())
	defer store.Close()
	ctx := context.Background()
	s := &oktaapi.Syncer{Client: c, Dir: &oktaapi.StoreDirectory{Store: store}, State: store}
	if _, err := s.Full(ctx); err != nil {
		t.Fatal(err)
	}
	// SCIM takes over user1 and group 1 (as a SCIM write does).
	u := userByName(t, store, "user1@example.com")
	u.Source, u.DisplayName = storage.SourceSCIM, "Ada"
	if _, err := store.UpdateUser(ctx, u, storage.AuditEvent{Actor: "scim:t"}); err != nil {
		t.Fatal(err)
	}
	g, err := store.GetGroup(ctx, "00g01")
	if err != nil {
		t.Fatal(err)
	}
	g.Source = storage.SourceSCIM
	if _, err := store.UpdateGroup(ctx, g, storage.AuditEvent{Actor: "scim:t"}); err != nil {
		t.Fatal(err)
	}
	// SCIM holds a name Okta gives a new user, and a group name.
	if _, err := store.CreateUser(ctx, storage.User{ID: "5c1e", UserName: "new@example.com", Active: true, Resource: []byte(`{}`)},
		storage.AuditEvent{}); err != nil {
		t.Fatal(err)
	}
	if _, err := store.CreateGroup(ctx, storage.Group{ID: "5c1e-g", DisplayName: "SCIM group"}, storage.AuditEvent{}); err != nil {
		t.Fatal(err)
	}
	org.SetUserStatus("00u000001", "DEPROVISIONED")
	org.SetMember("00g01", "00u000021", false)
	org.PutUser(oktaorg.User{ID: "00unew", Login: "NEW@example.com"})
	org.PutGroup("00gnew", "scim group")
	org.DeleteUser("00u000001")
	org.DeleteGroup("00g01")
	before := newestAudit(t, store)
	r, err := s.Full(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if r.Users != 0 || r.Deleted != 0 || r.GroupsDeleted != 0 || r.Skipped != 2 {
		t.Errorf("sync %+v, want nothing written and the two records SCIM holds skipped", r)
	}
	if got := newestAudit(t, store); got.ID != before.ID {
		t.Errorf("the sync wrote %+v", got)
	}
	if got := userByName(t, store, "user1@example.com"); !got.Active || got.DisplayName != "Ada" {
		t.Errorf("SCIM's user changed: %+v", got)
	}
	if got, err := store.GetGroup(ctx, "00g01"); err != nil || !slices.Contains(got.Members, "00u000021") {
		t.Errorf("SCIM's group changed: %+v %v", got, err)
	}
	if got := userByName(t, store, "new@example.com"); got.ID != "5c1e" {
		t.Errorf("the API took SCIM's name: %+v", got)
	}
}

// TestStoreDirectoryHostileRecords: records the store cannot keep are
// skipped and logged, never fail the sync or change what is stored.
func TestStoreDirectoryHostileRecords(t *testing.T) {
	t.Parallel()
	org, c, _ := newOrg(t)
	orgWithPeople(org, 20)
	org.PutUser(oktaorg.User{ID: "00ulong", Login: strings.Repeat("a", storage.MaxNameLen+1) + "@example.com"})
	org.PutUser(oktaorg.User{ID: "00unul", Login: "nul\x00@example.com"})
	org.PutUser(oktaorg.User{ID: "00uempty", Login: ""})
	org.PutGroup("00glong", strings.Repeat("g", storage.MaxNameLen+1))
	store := openStore(t, t.TempDir())
	defer store.Close()
	ctx := context.Background()
	s := &oktaapi.Syncer{Client: c, Dir: &oktaapi.StoreDirectory{Store: store}, State: store}
	r, err := s.Full(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if r.Users != 20 || r.Skipped != 4 {
		t.Errorf("sync %+v, want the 20 good users and the 4 bad records skipped", r)
	}
	for _, id := range []string{"00ulong", "00unul", "00uempty"} {
		if _, err := store.GetUser(ctx, id); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("hostile user %s stored: %v", id, err)
		}
	}
	// The directory's own bound on members.
	d := &oktaapi.StoreDirectory{Store: store}
	_, err = d.SetMembers(ctx, "00g00", oktaapi.SourceAPI, make([]string, storage.MaxGroupMembers+1))
	if !errors.Is(err, oktaapi.ErrNotStored) {
		t.Errorf("an oversized group: %v, want ErrNotStored", err)
	}
	if err := d.UpsertUser(ctx, oktaapi.DirUser{ID: "x", Login: "x@example.com", Source: oktaapi.SourceSCIM}); !errors.Is(err, oktaapi.ErrOtherSource) {
		t.Errorf("a write for another source: %v", err)
	}
	for i := range 3 {
		if _, err := store.GetUser(ctx, fmt.Sprintf("00u%06d", i)); err != nil {
			t.Error(err)
		}
	}
}

// TestStoreDirectoryAuditNamesThePeople: every change the sync makes about
// a person is an audit event that names them, as they were, so the audit
// log's user filter answers "what changed for user1?": created, renamed
// (found by either name), deactivated, added to and removed from a group
// (an event about only the members it changed), her group deleted (an
// event about its members then), and deleted.
func TestStoreDirectoryAuditNamesThePeople(t *testing.T) {
	t.Parallel()
	org, c, _ := newOrg(t)
	addUsers(org, 3)
	org.PutGroup("00g1", "eng")
	org.SetMember("00g1", "00u000000", true)
	store := openStore(t, t.TempDir())
	defer store.Close()
	ctx := context.Background()
	s := &oktaapi.Syncer{Client: c, Dir: &oktaapi.StoreDirectory{Store: store}, State: store}
	sync := func() {
		t.Helper()
		if _, err := s.Full(ctx); err != nil {
			t.Fatal(err)
		}
	}
	sync()
	org.PutUser(oktaorg.User{ID: "00u000001", Login: "user1.renamed@example.com"})
	org.SetUserStatus("00u000001", "DEPROVISIONED")
	org.SetMember("00g1", "00u000001", true)
	org.SetMember("00g1", "00u000002", true)
	sync()
	org.SetMember("00g1", "00u000000", false)
	sync()
	org.DeleteGroup("00g1")
	sync()
	org.DeleteUser("00u000001")
	sync()

	history := func(user string) []string {
		t.Helper()
		es, err := store.ListAudit(ctx, storage.AuditFilter{User: user})
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for i := len(es) - 1; i >= 0; i-- {
			var subs []string
			for _, s := range es[i].Subjects {
				subs = append(subs, s.UserID+"="+s.UserName)
			}
			if es[i].Actor != oktaapi.SyncActor {
				t.Errorf("%s by %q, want the sync", es[i].Action, es[i].Actor)
			}
			out = append(out, es[i].Action+" "+strings.Join(subs, ","))
		}
		return out
	}
	user1 := []string{
		"user.create 00u000001=user1@example.com",
		"user.deactivate 00u000001=user1.renamed@example.com,00u000001=user1@example.com",
		"group.members 00u000001=user1.renamed@example.com,00u000002=user2@example.com",
		"group.delete 00u000001=user1.renamed@example.com,00u000002=user2@example.com",
		"user.delete 00u000001=user1.renamed@example.com",
	}
	for user, want := range map[string][]string{
		"00u000001": user1,
		// Gone, and still found by either name she had.
		"USER1@example.com":         {user1[0], "user.deactivate 00u000001=user1@example.com,00u000001=user1.renamed@example.com"},
		"user1.renamed@example.com": user1[1:],
		// user0: added when the group came, removed later; the change
		// that added the others is not about her.
		"00u000000": {
			"user.create 00u000000=user0@example.com",
			"group.members 00u000000=user0@example.com",
			"group.members 00u000000=user0@example.com",
		},
	} {
		if got := history(user); strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("history of %s:\n%s\nwant\n%s", user, strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
	}
}
