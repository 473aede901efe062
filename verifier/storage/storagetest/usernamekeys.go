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

// exemptionUserNames are the users of the exemptions WriteExemptionUserNames
// grants: two users in two ASCII cases each, and a look-alike of each that
// a database's lower() on a UTF-8 database folds into the name it imitates.
var exemptionUserNames = []string{
	"kate@example.com", "KATE@example.com",
	"\u212Aate@example.com", "\u212AATE@EXAMPLE.COM", // Kelvin sign
	"ida@example.com", "Ida@Example.com",
	"\u0130da@example.com", "\u0130DA@example.com", // dotted capital I
}

// WriteExemptionUserNames grants an exemption to each of a few users and
// their look-alikes. A backend writes them, migrates its schema down past
// the exemptions' username keys and up again, and hands the store to
// CheckExemptionUserNames.
func WriteExemptionUserNames(t *testing.T, s storage.Store) {
	t.Helper()
	for _, name := range exemptionUserNames {
		createExemption(t, s, newExemption("", name))
	}
}

// CheckExemptionUserNames checks a store holding the exemptions
// WriteExemptionUserNames granted: each user's are found by its name in any
// ASCII case, and no look-alike's.
func CheckExemptionUserNames(t *testing.T, s storage.Store) {
	t.Helper()
	ctx := t.Context()
	for _, name := range exemptionUserNames {
		want := 0
		for _, n := range exemptionUserNames {
			if storage.SameUserName(n, name) {
				want++
			}
		}
		for _, q := range []string{name, asciiUpper(name)} {
			read, err := s.ExemptionsFor(ctx, "", q, at(hour))
			must(t, err)
			listed, err := s.ListExemptions(ctx, storage.ExemptionFilter{Username: q})
			must(t, err)
			for what, es := range map[string][]storage.Exemption{"ExemptionsFor": read, "ListExemptions": listed} {
				if len(es) != want {
					t.Errorf("%s(%+q) = %d exemptions, want %d", what, q, len(es), want)
				}
				for _, e := range es {
					if !storage.SameUserName(e.Username, q) {
						t.Errorf("%s(%+q) found %+q's exemption %d", what, q, e.Username, e.ID)
					}
				}
			}
		}
	}
}
