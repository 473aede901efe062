package sqlite

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/clearance/clearance/verifier/storage"
)

// TestGroupKeysRekeyed: groups stored under the keys of Go's
// strings.ToLower, which merged a Kelvin-sign name with its ASCII
// look-alike, are found by their names under storage.GroupNameKey once
// the store is opened again, and the look-alike can then be created as
// the other group it is.
func TestGroupKeysRekeyed(t *testing.T) {
	ctx := context.Background()
	s := openWithOldGroupKeys(t, []oldGroup{
		{"g-kelvin", "\u212Aiosk-Exempt"}, // old key kiosk-exempt
		{"g-dotted", "\u0130stanbul"},     // old key i̇stanbul
		{"g-plain", "Engineering"},        // unchanged
		// Apart under the old keys, one under the new: both keep theirs.
		{"g-sigma", "ΠΩΛΗΣΕΙΣ"}, // old key πωλησεισ
		{"g-final", "Πωλησεις"}, // old key πωλησεις
	})
	byName := func(name string) []string {
		page, err := s.ListGroups(ctx, storage.PeopleQuery{Name: name, Limit: 10})
		must(t, err)
		var ids []string
		for _, g := range page.Groups {
			ids = append(ids, g.ID)
		}
		return ids
	}
	for name, id := range map[string]string{"\u212Aiosk-Exempt": "g-kelvin", "\u0130stanbul": "g-dotted", "ENGINEERING": "g-plain"} {
		if got := byName(name); len(got) != 1 || got[0] != id {
			t.Errorf("groups named %+q: %v; want %s", name, got, id)
		}
	}
	if got := byName("ΠΩΛΗΣΕΙΣ"); len(got) != 1 {
		t.Errorf("groups named ΠΩΛΗΣΕΙΣ after the rekey: %v", got)
	}
	if got := byName("Kiosk-Exempt"); len(got) != 0 {
		t.Errorf("the look-alike's ASCII name finds %v", got)
	}
}

// TestGroupKeysRekeyedClash: groups the old keys kept apart and the new
// ones merge, one of them holding the merged key already, still open: no
// two end up with one key, and the name finds one of them.
func TestGroupKeysRekeyedClash(t *testing.T) {
	ctx := context.Background()
	s := openWithOldGroupKeys(t, []oldGroup{
		{"g-1", "ΠΩΛΗΣΕΙΣ"},
		{"g-2", "Πωλησεις"},
		{"g-3", "πωληςεις"}, // its old key is the new key of all three
	})
	page, err := s.ListGroups(ctx, storage.PeopleQuery{Limit: 10})
	must(t, err)
	if len(page.Groups) != 3 {
		t.Fatalf("%d groups after the rekey, want 3", len(page.Groups))
	}
	page, err = s.ListGroups(ctx, storage.PeopleQuery{Name: "ΠΩΛΗΣΕΙΣ", Limit: 10})
	must(t, err)
	if len(page.Groups) != 1 {
		t.Errorf("groups named ΠΩΛΗΣΕΙΣ: %d, want 1", len(page.Groups))
	}
	// Every group stays writable, those left on their old keys too.
	for _, id := range []string{"g-1", "g-2", "g-3"} {
		g, err := s.GetGroup(ctx, id)
		must(t, err)
		g.ExternalID = "ext-" + id
		if _, err := s.UpdateGroup(ctx, g, storage.AuditEvent{At: time.Unix(1, 0), Actor: "test", Action: "group.update"}); err != nil {
			t.Errorf("updating %s after the rekey: %v", id, err)
		}
	}
}

// oldGroup is a group as an earlier release stored it: its key Go's
// strings.ToLower of its name.
type oldGroup struct{ id, name string }

// openWithOldGroupKeys stores groups under their old keys in a new
// database and opens it as a store, which rekeys them.
func openWithOldGroupKeys(t *testing.T, groups []oldGroup) *Store {
	t.Helper()
	path := filepath.Join(t.TempDir(), "clearance.db")
	must(t, open(t, path).Close())
	db, _ := migrator(t, path)
	for _, g := range groups {
		_, err := db.ExecContext(context.Background(), `INSERT INTO directory_groups (id, display_name, display_name_key, external_id, source, version, created_at, updated_at)
			VALUES (?, ?, ?, '', 'scim', 1, 0, 0)`, g.id, g.name, strings.ToLower(g.name))
		must(t, err)
	}
	must(t, db.Close())
	return open(t, path)
}
