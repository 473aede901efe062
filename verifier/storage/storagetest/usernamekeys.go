package storagetest

import (
	"strings"
	"testing"

	"github.com/clearance/clearance/verifier/storage"
)

// PreASCIIUserNames are user names as a database made before user names
// folded ASCII case only holds them: each with the key of the Unicode fold
// it was stored under (strings.ToLower), no two sharing one. A backend
// writes them as its schema of that time did, migrates, and hands the
// store to CheckPreASCIIUserNames.
var PreASCIIUserNames = []struct{ ID, UserName, OldKey string }{
	preASCII("u-kelvin", "\u212Aate@example.com"),      // old key kate@example.com
	preASCII("u-ascii", "Bob@Example.com"),             // same key as now
	preASCII("u-umlaut", "\u00c4rzte@example.com"),     // old key ärzte@example.com
	preASCII("u-dotted", "\u0130da@example.com"),       // old key ida@example.com
	preASCII("u-long-s", "\u017Fam@example.com"),       // ToLower leaves ſ
	preASCII("u-fullwidth", "\uff2Bim@example.com"),    // old key ｋim@example.com
	preASCII("u-decomposed", "Rene\u0301@example.com"), // old key rene\u0301@example.com
}

func preASCII(id, name string) struct{ ID, UserName, OldKey string } {
	return struct{ ID, UserName, OldKey string }{id, name, strings.ToLower(name)}
}

// CheckPreASCIIUserNames checks a store migrated from a database holding
// PreASCIIUserNames: every user is found exactly once by its name in any
// ASCII case and by no look-alike, a look-alike the old key merged with a
// stored name can now be created, and an ASCII case variant still cannot.
func CheckPreASCIIUserNames(t *testing.T, s storage.Store) {
	t.Helper()
	ctx := t.Context()
	for _, u := range PreASCIIUserNames {
		for _, name := range []string{u.UserName, asciiUpper(u.UserName)} {
			got, err := s.GetUserByName(ctx, name)
			if err != nil || got.ID != u.ID {
				t.Errorf("GetUserByName(%+q) = %s, %v; want %s", name, got.ID, err, u.ID)
			}
			p, err := s.ListUsers(ctx, storage.PeopleQuery{Name: name, Limit: 10})
			must(t, err)
			if p.Total != 1 || len(p.Users) != 1 || p.Users[0].ID != u.ID {
				t.Errorf("ListUsers(Name %+q) = %+v, want only %s", name, p, u.ID)
			}
		}
		_, err := s.CreateUser(ctx, newUser(u.ID+"-case", asciiUpper(u.UserName)), scimAudit("user.create"))
		wantErr(t, err, storage.ErrAlreadyExists)
		if u.OldKey == storage.UserNameKey(u.UserName) {
			continue
		}
		// The old key named this user; now it names no one, and can be
		// provisioned as the user it is.
		if got, err := s.GetUserByName(ctx, u.OldKey); err == nil {
			t.Errorf("GetUserByName(%+q) = %s %+q, want no user", u.OldKey, got.ID, got.UserName)
		}
		if _, err := s.CreateUser(ctx, newUser(u.ID+"-plain", u.OldKey), scimAudit("user.create")); err != nil {
			t.Errorf("creating %+q beside %+q: %v", u.OldKey, u.UserName, err)
		}
		got, err := s.GetUserByName(ctx, u.OldKey)
		if err != nil || got.ID != u.ID+"-plain" {
			t.Errorf("GetUserByName(%+q) = %s, %v; want %s-plain", u.OldKey, got.ID, err, u.ID)
		}
	}
}
