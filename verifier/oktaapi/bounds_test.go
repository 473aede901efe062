package oktaapi

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/clearance/clearance/internal/oktaorg"
	"github.com/clearance/clearance/verifier/storage"
	"github.com/clearance/clearance/verifier/storage/sqlite"
)

// TestSyncBounds: an org that lists more users, groups or members than a
// sync reads fails the sync before anything changes (users, groups), or
// leaves that group's members as they were (members); reading stops at the
// bound, so memory and the database stay bounded. Not parallel: the bounds
// are lowered for the test.
func TestSyncBounds(t *testing.T) {
	defer func(u, g, m int) { maxSyncUsers, maxSyncGroups, maxMembers = u, g, m }(maxSyncUsers, maxSyncGroups, maxMembers)
	maxSyncUsers, maxSyncGroups, maxMembers = 300, 5, 250
	org := oktaorg.New()
	defer org.Close()
	org.AddToken("tok", oktaorg.Scopes(ScopeUsers, ScopeGroups))
	tok, err := NewAPIToken("tok")
	if err != nil {
		t.Fatal(err)
	}
	c, err := NewClient(org.URL(), tok)
	if err != nil {
		t.Fatal(err)
	}
	c.HTTP = org.Server.Client()
	store, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "clearance.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	s := &Syncer{Client: c, Dir: &StoreDirectory{Store: store}, State: store}
	ctx := context.Background()
	for i := range 300 {
		org.PutUser(oktaorg.User{ID: fmt.Sprintf("00u%03d", i), Login: fmt.Sprintf("u%d@example.com", i)})
	}
	org.PutGroup("00gbig", "everyone")
	for i := range 260 {
		org.SetMember("00gbig", fmt.Sprintf("00u%03d", i), true)
	}
	r, err := s.Full(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if r.Users != 300 || r.Groups != 1 || r.Memberships != 0 || r.Skipped != 1 {
		t.Errorf("sync %+v, want 300 users, the group, and its 260 members skipped", r)
	}
	if g, _ := store.GetGroup(ctx, "00gbig"); len(g.Members) != 0 {
		t.Errorf("the group over the bound has %d members stored", len(g.Members))
	}
	// One user more than the bound: the sync fails and changes nothing.
	org.PutUser(oktaorg.User{ID: "00u999", Login: "one-too-many@example.com"})
	org.SetUserStatus("00u001", "DEPROVISIONED")
	before, _ := store.ListAudit(ctx, storage.AuditFilter{Limit: 1})
	if _, err := s.Full(ctx); !errors.Is(err, errTooMany) {
		t.Errorf("a sync over the user bound: %v", err)
	}
	if u, _ := store.GetUser(ctx, "00u001"); !u.Active {
		t.Error("a sync that failed its bound changed a user")
	}
	if after, _ := store.ListAudit(ctx, storage.AuditFilter{Limit: 1}); len(after) != 1 || after[0].ID != before[0].ID {
		t.Error("a sync that failed its bound wrote")
	}
	org.DeleteUser("00u999")
	for i := range 5 {
		org.PutGroup(fmt.Sprintf("00gx%d", i), fmt.Sprintf("extra %d", i))
	}
	if _, err := s.Full(ctx); !errors.Is(err, errTooMany) {
		t.Errorf("a sync over the group bound: %v", err)
	}
}
