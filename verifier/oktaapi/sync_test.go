package oktaapi_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/clearance/clearance/internal/oktaorg"
	"github.com/clearance/clearance/verifier/oktaapi"
)

// orgWithPeople fills org with n users and groups g00..g19, user i in
// group i%20.
func orgWithPeople(org *oktaorg.Org, n int) {
	addUsers(org, n)
	for g := range 20 {
		org.PutGroup(fmt.Sprintf("00g%02d", g), fmt.Sprintf("group %d", g))
	}
	for i := range n {
		org.SetMember(fmt.Sprintf("00g%02d", i%20), fmt.Sprintf("00u%06d", i), true)
	}
}

func TestSyncTenThousandUsers(t *testing.T) {
	t.Parallel()
	org, c, sl := newOrg(t)
	orgWithPeople(org, 10000)
	// touch updates one user without changing it, a few milliseconds on:
	// the setup's thousands of writes share Okta's millisecond
	// timestamps, which incremental reads re-read.
	touch := func() {
		time.Sleep(3 * time.Millisecond)
		org.SetUserStatus("00u000009", "ACTIVE")
	}
	touch()
	dir := t.TempDir()
	store := openStore(t, dir)
	d := oktaapi.NewMemoryDirectory()
	// A user SCIM manages: the API sync leaves it alone.
	scimUser := oktaapi.DirUser{ID: "00u000007", Login: "scim-name@example.com", Active: true, Source: oktaapi.SourceSCIM}
	if err := d.UpsertUser(context.Background(), scimUser); err != nil {
		t.Fatal(err)
	}
	// Everything here happens within milliseconds; Okta's writes are
	// seconds apart.
	s := &oktaapi.Syncer{Client: c, Dir: d, State: store, Overlap: time.Millisecond}
	ctx := context.Background()

	// 1. A full sync, with a 429 in the middle of the user pages.
	org.FailAfter(25, 429)
	r, err := s.Once(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !r.Full || r.Users != 9999 || r.Skipped != 1 || r.Groups != 20 || r.Memberships != 20 {
		t.Errorf("first sync %+v, want full: 9999 users (one is SCIM's), 20 groups and their members", r)
	}
	users, _ := d.ListUsers(ctx, "")
	if len(users) != 10000 {
		t.Fatalf("%d users in the directory, want 10000", len(users))
	}
	if u := users[7]; u != scimUser {
		t.Errorf("the SCIM-managed user became %+v", u)
	}
	if waits := sl.all(); len(waits) != 1 {
		t.Errorf("waits %v, want one (the 429, waited out once)", waits)
	}
	// 50 pages of users, 1 of deactivated users, 1 of groups, 20×3 of
	// members, and the request refused with 429.
	if n := len(org.Requests()); n != 50+1+1+60+1 {
		t.Errorf("%d requests, want %d", n, 50+1+1+60+1)
	}
	members, _ := d.Members(ctx, "00g03")
	if len(members) != 500 || members[0] != "00u000003" {
		t.Errorf("group 3 has %d members from %v, want 500 from 00u000003", len(members), members[:1])
	}

	// 2. Changes in Okta: a deactivation, a move between groups, a
	// rename, a deletion (Okta deletes only deactivated users).
	time.Sleep(2 * time.Millisecond) // lastUpdated has millisecond precision
	org.SetUserStatus("00u000001", "DEPROVISIONED")
	org.SetMember("00g02", "00u000002", false)
	org.SetMember("00g05", "00u000002", true)
	org.PutGroup("00g09", "renamed")
	org.SetUserStatus("00u000042", "DEPROVISIONED")
	org.DeleteUser("00u000042")
	org.DeleteGroup("00g19")
	touch()
	before := len(org.Requests())

	// An incremental read (the full interval has not passed) sees the
	// deactivation and the group changes at once.
	r, err = s.Once(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if r.Full || r.Deactivated != 1 {
		t.Errorf("incremental sync %+v, want one deactivation", r)
	}
	// Changed users, changed groups, and three groups' members (3 pages
	// each).
	if n := len(org.Requests()) - before; n != 2+9 {
		t.Errorf("incremental sync made %d requests, want a handful: %v", n, org.Requests()[before:])
	}
	checkUser(t, d, "00u000001", false)
	if m, _ := d.Members(ctx, "00g05"); !slices.Contains(m, "00u000002") {
		t.Error("00u000002 did not join group 5")
	}
	if m, _ := d.Members(ctx, "00g02"); slices.Contains(m, "00u000002") {
		t.Error("00u000002 is still in group 2")
	}
	// The next full reconciliation removes what was deleted.
	r, err = s.Full(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if r.Deleted != 1 || r.GroupsDeleted != 1 {
		t.Errorf("full sync %+v, want one user and one group deleted", r)
	}
	if u, _ := d.ListUsers(ctx, ""); len(u) != 9999 {
		t.Errorf("%d users after the deletion, want 9999", len(u))
	}
	if gs, _ := d.ListGroups(ctx, ""); len(gs) != 19 || gs[9].Name != "renamed" {
		t.Errorf("groups after the sync: %d, group 9 %q", len(gs), gs[9].Name)
	}

	// 3. A restart: the state is in the database. The next sync is an
	// incremental read that changes nothing and writes nothing.
	if err := store.Close(); err != nil {
		t.Fatal(err)
	}
	store = openStore(t, dir)
	defer store.Close()
	writes := d.Writes
	before = len(org.Requests())
	s = &oktaapi.Syncer{Client: c, Dir: d, State: store, Overlap: time.Millisecond}
	r, err = s.Once(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if r.Full || d.Writes != writes {
		t.Errorf("after a restart: %+v and %d writes, want an incremental read and none", r, d.Writes-writes)
	}
	if n := len(org.Requests()) - before; n != 2 {
		t.Errorf("after a restart %d requests, want 2 (changed users, changed groups)", n)
	}
	if u, _ := d.ListUsers(ctx, ""); len(u) != 9999 {
		t.Errorf("%d users after the restart, want 9999 (no duplicates)", len(u))
	}

	// 4. A full reconciliation with nothing changed reads every user and
	// group but no group's members, and writes nothing.
	before = len(org.Requests())
	r, err = s.Full(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(org.Requests()) - before; n != 50+1+1 || d.Writes != writes {
		t.Errorf("an unchanged full sync: %d requests, %d writes, %+v; want 52 and none", n, d.Writes-writes, r)
	}
}

func TestSyncOneFullCycle(t *testing.T) {
	t.Parallel()
	org, c, _ := newOrg(t)
	orgWithPeople(org, 300)
	store := openStore(t, t.TempDir())
	defer store.Close()
	d := oktaapi.NewMemoryDirectory()
	s := &oktaapi.Syncer{Client: c, Dir: d, State: store}
	ctx := context.Background()
	if _, err := s.Full(ctx); err != nil {
		t.Fatal(err)
	}
	org.SetUserStatus("00u000010", "DEPROVISIONED")
	org.SetMember("00g00", "00u000020", false)
	org.SetUserStatus("00u000030", "DEPROVISIONED")
	org.DeleteUser("00u000030")
	r, err := s.Full(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if r.Deactivated != 1 || r.Deleted != 1 || r.Memberships != 1 {
		t.Errorf("one full cycle: %+v, want the deactivation, the deletion and the membership change", r)
	}
	checkUser(t, d, "00u000010", false)
	if m, _ := d.Members(ctx, "00g00"); slices.Contains(m, "00u000020") {
		t.Error("00u000020 is still in group 0")
	}
}

func checkUser(t *testing.T, d *oktaapi.MemoryDirectory, id string, active bool) {
	t.Helper()
	us, _ := d.ListUsers(context.Background(), "")
	for _, u := range us {
		if u.ID == id {
			if u.Active != active {
				t.Errorf("user %s active = %v, want %v", id, u.Active, active)
			}
			return
		}
	}
	t.Errorf("user %s missing", id)
}
