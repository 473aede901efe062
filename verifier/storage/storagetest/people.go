package storagetest

import (
	"fmt"
	"strings"
	"testing"

	"github.com/clearance/clearance/verifier/storage"
)

var peopleTests = []test{
	{"SCIMTokens", testSCIMTokens},
	{"UserCreateGet", testUserCreateGet},
	{"UserDuplicateName", testUserDuplicateName},
	{"UserNameLookAlikes", testUserNameLookAlikes},
	{"UserUpdate", testUserUpdate},
	{"UserDelete", testUserDelete},
	{"UserList", testUserList},
	{"Groups", testGroups},
	{"Sources", testSources},
	{"UnstorableKeys", testUnstorableKeys},
	{"VersionedDelete", testVersionedDelete},
	{"GroupRefusals", testGroupRefusals},
	{"DeviceBindings", testDeviceBindings},
	{"Count", testPeopleCount},
}

func scimAudit(action string) storage.AuditEvent {
	return storage.AuditEvent{At: t0, Actor: "scim:tok1", Action: action, Detail: action}
}

func newUser(id, name string) storage.User {
	return storage.User{
		ID: id, UserName: name, ExternalID: "ext-" + id, DisplayName: "User " + id, Email: name,
		Active: true, Resource: []byte(`{"userName":"` + name + `"}`), Source: storage.SourceSCIM, CreatedAt: t0, UpdatedAt: t0,
	}
}

func createUser(t *testing.T, s storage.Store, id, name string) storage.User {
	t.Helper()
	u, err := s.CreateUser(t.Context(), newUser(id, name), scimAudit("user.create"))
	must(t, err)
	return u
}

func newGroup(id, name string, members ...string) storage.Group {
	return storage.Group{ID: id, DisplayName: name, Members: members, CreatedAt: t0, UpdatedAt: t0}
}

func createGroup(t *testing.T, s storage.Store, g storage.Group) storage.Group {
	t.Helper()
	got, err := s.CreateGroup(t.Context(), g, scimAudit("group.create"))
	must(t, err)
	return got
}

func testSCIMTokens(t *testing.T, s storage.Store) {
	ctx := t.Context()
	a := storage.SCIMToken{ID: "a", Description: "okta", Hash: []byte{1, 2, 3}, CreatedAt: at(hour)}
	b := storage.SCIMToken{ID: "b", Description: "okta next", Hash: []byte{4, 5, 6}, CreatedAt: at(0)}
	for _, tok := range []storage.SCIMToken{a, b} {
		must(t, s.CreateSCIMToken(ctx, tok, scimAudit("scim_token.create")))
	}
	before := dumpOf(t, s)
	wantErr(t, s.CreateSCIMToken(ctx, a, scimAudit("scim_token.create")), storage.ErrAlreadyExists)
	sameDump(t, "a duplicate token", before, s)

	list, err := s.ListSCIMTokens(ctx)
	must(t, err)
	equal(t, "ListSCIMTokens", list, []storage.SCIMToken{b, a})
	got, err := s.RevokeSCIMToken(ctx, "a", at(2*hour), scimAudit("scim_token.revoke"))
	must(t, err)
	a.RevokedAt = at(2 * hour)
	equal(t, "revoked token", got, a)
	// A second revocation keeps the first time.
	got, err = s.RevokeSCIMToken(ctx, "a", at(3*hour), scimAudit("scim_token.revoke"))
	must(t, err)
	equal(t, "revoked again", got, a)
	_, err = s.RevokeSCIMToken(ctx, "nope", at(hour), scimAudit("scim_token.revoke"))
	wantErr(t, err, storage.ErrNotFound)
	_, err = s.GetSCIMToken(ctx, "nope")
	wantErr(t, err, storage.ErrNotFound)
}

func testUserCreateGet(t *testing.T, s storage.Store) {
	ctx := t.Context()
	want := newUser("u1", "Ada.Lovelace@Example.com")
	want.Version = 1
	got := createUser(t, s, "u1", "Ada.Lovelace@Example.com")
	equal(t, "CreateUser", got, want)
	got, err := s.GetUser(ctx, "u1")
	must(t, err)
	equal(t, "GetUser", got, want)
	// User names match regardless of case; IDs do not.
	got, err = s.GetUserByName(ctx, "ada.lovelace@example.COM")
	must(t, err)
	equal(t, "GetUserByName", got, want)
	_, err = s.GetUser(ctx, "U1")
	wantErr(t, err, storage.ErrNotFound)
	_, err = s.GetUserByName(ctx, "nobody@example.com")
	wantErr(t, err, storage.ErrNotFound)
	if es := listAudit(t, s, ""); len(es) != 1 || es[0].Actor != "scim:tok1" {
		t.Errorf("audit = %+v, want one event by the token", es)
	}
}

func testUserDuplicateName(t *testing.T, s storage.Store) {
	createUser(t, s, "u1", "ada@example.com")
	before := dumpOf(t, s)
	_, err := s.CreateUser(t.Context(), newUser("u2", "ADA@example.com"), scimAudit("user.create"))
	wantErr(t, err, storage.ErrAlreadyExists)
	_, err = s.CreateUser(t.Context(), newUser("u1", "other@example.com"), scimAudit("user.create"))
	wantErr(t, err, storage.ErrAlreadyExists)
	big := newUser("u3", "big@example.com")
	big.Resource = make([]byte, storage.MaxResourceLen+1)
	_, err = s.CreateUser(t.Context(), big, scimAudit("user.create"))
	wantErr(t, err, storage.ErrInvalid)
	sameDump(t, "refused creates", before, s)
}

// asciiUpper is s with its ASCII letters in upper case, and only those.
func asciiUpper(s string) string {
	return strings.Map(func(r rune) rune {
		if 'a' <= r && r <= 'z' {
			return r - 'a' + 'A'
		}
		return r
	}, s)
}

// testUserNameLookAlikes: user names compare regardless of the case of
// ASCII letters only. A name that Unicode case mapping would fold into
// another (a Kelvin sign for a k, a long s for an s) or that differs from
// it in a way no one sees (a decomposed é) is another user: it is created
// beside the name it imitates, in either order, and a lookup of either
// finds its own record. ASCII case differences still name the same user.
func testUserNameLookAlikes(t *testing.T, s storage.Store) {
	ctx := t.Context()
	for i, c := range []struct{ what, plain, alike string }{
		{"Kelvin sign", "kate", "\u212Aate"},
		{"long s", "sam", "\u017Fam"},
		{"dotless i", "ian", "\u0131an"},
		{"dotted capital I", "ida", "\u0130da"},
		{"decomposed e acute", "ren\u00e9", "rene\u0301"},
		{"capital E acute", "ren\u00e9", "ren\u00c9"},
		{"fullwidth k", "kate", "\uff4Bate"},
		{"fullwidth capital K", "\uff4Bim", "\uff2Bim"},
	} {
		for _, alikeFirst := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/alike first %v", c.what, alikeFirst), func(t *testing.T) {
				domain := fmt.Sprintf("@%d-%v.example.com", i, alikeFirst)
				plain := storage.User{ID: fmt.Sprintf("p%d-%v", i, alikeFirst), UserName: c.plain + domain}
				alike := storage.User{ID: fmt.Sprintf("a%d-%v", i, alikeFirst), UserName: c.alike + domain}
				order := []storage.User{plain, alike}
				if alikeFirst {
					order = []storage.User{alike, plain}
				}
				for _, u := range order {
					createUser(t, s, u.ID, u.UserName)
				}
				for _, u := range []storage.User{plain, alike} {
					for _, name := range []string{u.UserName, asciiUpper(u.UserName)} {
						got, err := s.GetUserByName(ctx, name)
						must(t, err)
						if got.ID != u.ID || got.UserName != u.UserName {
							t.Errorf("GetUserByName(%+q) = %s %+q, want %s %+q", name, got.ID, got.UserName, u.ID, u.UserName)
						}
						p, err := s.ListUsers(ctx, storage.PeopleQuery{Name: name, Limit: 10})
						must(t, err)
						if p.Total != 1 || len(p.Users) != 1 || p.Users[0].ID != u.ID {
							t.Errorf("ListUsers(Name %+q) = %+v, want only %s", name, p, u.ID)
						}
					}
					// The same name in other ASCII case is taken.
					before := dumpOf(t, s)
					_, err := s.CreateUser(ctx, newUser(u.ID+"-again", asciiUpper(u.UserName)), scimAudit("user.create"))
					wantErr(t, err, storage.ErrAlreadyExists)
					sameDump(t, "a name taken in other ASCII case", before, s)
				}
			})
		}
	}
	// Renaming a user to a look-alike of another's name is no collision;
	// renaming to its ASCII case variant is.
	u := createUser(t, s, "r1", "rob@example.com")
	createUser(t, s, "r2", "kim@example.com")
	u.UserName = "\u212Aim@example.com"
	u, err := s.UpdateUser(ctx, u, scimAudit("user.update"))
	must(t, err)
	u.UserName = "KIM@example.com"
	_, err = s.UpdateUser(ctx, u, scimAudit("user.update"))
	wantErr(t, err, storage.ErrAlreadyExists)
	got, err := s.GetUserByName(ctx, "kim@EXAMPLE.com")
	must(t, err)
	equal(t, "the user kim@example.com after a look-alike rename", got.ID, "r2")
}

func testUserUpdate(t *testing.T, s storage.Store) {
	ctx := t.Context()
	u := createUser(t, s, "u1", "ada@example.com")
	createUser(t, s, "u2", "bob@example.com")
	u.Active = false
	u.UserName = "Ada@example.org"
	u.UpdatedAt = at(hour)
	got, err := s.UpdateUser(ctx, u, scimAudit("user.update"))
	must(t, err)
	want := u
	want.Version = 2
	equal(t, "UpdateUser", got, want)

	before := dumpOf(t, s)
	// u is at version 1: stale.
	_, err = s.UpdateUser(ctx, u, scimAudit("user.update"))
	wantErr(t, err, storage.ErrStale)
	taken := got
	taken.UserName = "BOB@example.com"
	_, err = s.UpdateUser(ctx, taken, scimAudit("user.update"))
	wantErr(t, err, storage.ErrAlreadyExists)
	missing := got
	missing.ID = "u9"
	_, err = s.UpdateUser(ctx, missing, scimAudit("user.update"))
	wantErr(t, err, storage.ErrNotFound)
	sameDump(t, "refused updates", before, s)
}

func testUserDelete(t *testing.T, s storage.Store) {
	ctx := t.Context()
	createUser(t, s, "u1", "ada@example.com")
	createUser(t, s, "u2", "bob@example.com")
	createGroup(t, s, newGroup("g1", "Eng", "u1", "u2"))
	must(t, s.DeleteUser(ctx, "u1", 0, scimAudit("user.delete")))
	_, err := s.GetUser(ctx, "u1")
	wantErr(t, err, storage.ErrNotFound)
	g, err := s.GetGroup(ctx, "g1")
	must(t, err)
	equal(t, "members after delete", g.Members, []string{"u2"})
	before := dumpOf(t, s)
	wantErr(t, s.DeleteUser(ctx, "u1", 0, scimAudit("user.delete")), storage.ErrNotFound)
	sameDump(t, "deleting an unknown user", before, s)
}

func testUserList(t *testing.T, s storage.Store) {
	ctx := t.Context()
	for i := 5; i >= 1; i-- {
		createUser(t, s, fmt.Sprintf("u%d", i), fmt.Sprintf("user%d@example.com", i))
	}
	p, err := s.ListUsers(ctx, storage.PeopleQuery{Offset: 1, Limit: 2})
	must(t, err)
	if p.Total != 5 || len(p.Users) != 2 || p.Users[0].ID != "u2" || p.Users[1].ID != "u3" {
		t.Errorf("page = %d %+v, want total 5 and u2, u3", p.Total, p.Users)
	}
	p, err = s.ListUsers(ctx, storage.PeopleQuery{Name: "USER4@example.com", Limit: 10})
	must(t, err)
	if p.Total != 1 || len(p.Users) != 1 || p.Users[0].ID != "u4" {
		t.Errorf("by name = %+v", p)
	}
	p, err = s.ListUsers(ctx, storage.PeopleQuery{Name: "none@example.com", Limit: 10})
	must(t, err)
	if p.Total != 0 || p.Users == nil || len(p.Users) != 0 {
		t.Errorf("no match = %+v, want an empty, non-nil page", p)
	}
	p, err = s.ListUsers(ctx, storage.PeopleQuery{ExternalID: "ext-u3", Limit: 10})
	must(t, err)
	if p.Total != 1 || p.Users[0].ID != "u3" {
		t.Errorf("by external id = %+v", p)
	}
	p, err = s.ListUsers(ctx, storage.PeopleQuery{Offset: 10, Limit: 10})
	must(t, err)
	if p.Total != 5 || len(p.Users) != 0 {
		t.Errorf("past the end = %+v", p)
	}

	// A keyset page starts after its key, whatever was created before it
	// since, and Total still counts every match.
	p, err = s.ListUsers(ctx, storage.PeopleQuery{After: "u2", Limit: 2})
	must(t, err)
	equal(t, "after u2", userIDs(p.Users), []string{"u3", "u4"})
	if p.Total != 5 {
		t.Errorf("after u2: total %d, want 5", p.Total)
	}
	createUser(t, s, "u0", "user0@example.com")
	p, err = s.ListUsers(ctx, storage.PeopleQuery{After: "u4", Limit: 2})
	must(t, err)
	equal(t, "after u4, u0 created since", userIDs(p.Users), []string{"u5"})
	p, err = s.ListUsers(ctx, storage.PeopleQuery{After: "u5", Limit: 2})
	must(t, err)
	if p.Total != 6 || len(p.Users) != 0 {
		t.Errorf("after the last = %+v", p)
	}

	// Group keeps the group's members, and pages as any other query.
	createGroup(t, s, newGroup("g1", "Eng", "u4", "u1", "u3"))
	p, err = s.ListUsers(ctx, storage.PeopleQuery{Group: "g1", Limit: 10})
	must(t, err)
	equal(t, "members of g1", userIDs(p.Users), []string{"u1", "u3", "u4"})
	p, err = s.ListUsers(ctx, storage.PeopleQuery{Group: "g1", After: "u1", Limit: 1})
	must(t, err)
	equal(t, "members of g1 after u1", userIDs(p.Users), []string{"u3"})
	if p.Total != 3 {
		t.Errorf("members of g1: total %d, want 3", p.Total)
	}
	p, err = s.ListUsers(ctx, storage.PeopleQuery{Group: "nope", Limit: 10})
	must(t, err)
	if p.Total != 0 || len(p.Users) != 0 {
		t.Errorf("members of an unknown group = %+v", p)
	}
	gp, err := s.ListGroups(ctx, storage.PeopleQuery{After: "g1", Limit: 10})
	must(t, err)
	if gp.Total != 1 || len(gp.Groups) != 0 {
		t.Errorf("groups after the last = %+v", gp)
	}
	gp, err = s.ListGroups(ctx, storage.PeopleQuery{After: "g0", Limit: 10})
	must(t, err)
	if len(gp.Groups) != 1 || gp.Groups[0].ID != "g1" {
		t.Errorf("groups after g0 = %+v", gp)
	}
}

func userIDs(us []storage.User) []string {
	ids := []string{}
	for _, u := range us {
		ids = append(ids, u.ID)
	}
	return ids
}

func testGroups(t *testing.T, s storage.Store) {
	ctx := t.Context()
	createUser(t, s, "u1", "ada@example.com")
	createUser(t, s, "u2", "bob@example.com")
	g := newGroup("g1", "Engineering", "u2", "u1", "u2")
	g.ExternalID = "okta-g1"
	g = createGroup(t, s, g)
	want := storage.Group{ID: "g1", DisplayName: "Engineering", ExternalID: "okta-g1", Members: []string{"u1", "u2"},
		Source: storage.SourceSCIM, Version: 1, CreatedAt: t0, UpdatedAt: t0}
	equal(t, "CreateGroup", g, want)
	got, err := s.GetGroup(ctx, "g1")
	must(t, err)
	equal(t, "GetGroup", got, want)

	g.DisplayName = "Eng"
	g.Members = []string{"u2"}
	g.UpdatedAt = at(hour)
	got, err = s.UpdateGroup(ctx, g, scimAudit("group.update"))
	must(t, err)
	want.DisplayName, want.Members, want.Version, want.UpdatedAt = "Eng", []string{"u2"}, 2, at(hour)
	equal(t, "UpdateGroup", got, want)

	gs, err := s.UserGroups(ctx, "u2")
	must(t, err)
	if len(gs) != 1 || gs[0].DisplayName != "Eng" {
		t.Errorf("UserGroups(u2) = %+v", gs)
	}
	gs, err = s.UserGroups(ctx, "u1")
	must(t, err)
	if len(gs) != 0 {
		t.Errorf("UserGroups(u1) = %+v, want none", gs)
	}
	p, err := s.ListGroups(ctx, storage.PeopleQuery{Name: "eng", Limit: 10})
	must(t, err)
	if p.Total != 1 {
		t.Fatalf("ListGroups by name = %+v", p)
	}
	equal(t, "listed group", p.Groups[0], want)
	must(t, s.DeleteGroup(ctx, "g1", 0, scimAudit("group.delete")))
	_, err = s.GetGroup(ctx, "g1")
	wantErr(t, err, storage.ErrNotFound)
}

func testGroupRefusals(t *testing.T, s storage.Store) {
	ctx := t.Context()
	createUser(t, s, "u1", "ada@example.com")
	g := createGroup(t, s, newGroup("g1", "Eng"))
	before := dumpOf(t, s)
	_, err := s.CreateGroup(ctx, newGroup("g2", "ENG"), scimAudit("group.create"))
	wantErr(t, err, storage.ErrAlreadyExists)
	_, err = s.CreateGroup(ctx, newGroup("g3", "Ops", "u1", "ghost"), scimAudit("group.create"))
	wantErr(t, err, storage.ErrUnknownMember)
	g.Members = []string{"ghost"}
	_, err = s.UpdateGroup(ctx, g, scimAudit("group.update"))
	wantErr(t, err, storage.ErrUnknownMember)
	g.Members, g.Version = nil, 7
	_, err = s.UpdateGroup(ctx, g, scimAudit("group.update"))
	wantErr(t, err, storage.ErrStale)
	wantErr(t, s.DeleteGroup(ctx, "g9", 0, scimAudit("group.delete")), storage.ErrNotFound)
	sameDump(t, "refused group changes", before, s)
}

func testDeviceBindings(t *testing.T, s storage.Store) {
	ctx := t.Context()
	devs := enrollN(t, s, 2)
	createUser(t, s, "u1", "ada@example.com")
	b := storage.DeviceUser{DeviceID: devs[0].ID, UserID: "u1", Source: "admin", CreatedAt: at(hour)}
	must(t, s.BindDevice(ctx, b, scimAudit("device.assign")))
	// Idempotent: the first binding stays.
	again := b
	again.CreatedAt = at(2 * hour)
	must(t, s.BindDevice(ctx, again, scimAudit("device.assign")))
	got, err := s.DeviceUsers(ctx, devs[0].ID)
	must(t, err)
	equal(t, "DeviceUsers", got, []storage.DeviceUser{b})
	got, err = s.UserDevices(ctx, "u1")
	must(t, err)
	equal(t, "UserDevices", got, []storage.DeviceUser{b})

	before := dumpOf(t, s)
	wantErr(t, s.BindDevice(ctx, storage.DeviceUser{DeviceID: "nope", UserID: "u1", CreatedAt: t0}, scimAudit("device.assign")), storage.ErrNotFound)
	wantErr(t, s.BindDevice(ctx, storage.DeviceUser{DeviceID: devs[1].ID, UserID: "nope", CreatedAt: t0}, scimAudit("device.assign")), storage.ErrNotFound)
	wantErr(t, s.UnbindDevice(ctx, devs[1].ID, "u1", scimAudit("device.unassign")), storage.ErrNotFound)
	sameDump(t, "refused bindings", before, s)

	must(t, s.UnbindDevice(ctx, devs[0].ID, "u1", scimAudit("device.unassign")))
	got, err = s.DeviceUsers(ctx, devs[0].ID)
	must(t, err)
	if len(got) != 0 {
		t.Errorf("after unbinding: %+v", got)
	}
}

// testSources: each user and group records who manages it; a record stored
// without a source is SCIM's, an update stores the source it carries, and
// a source the store does not know is refused with nothing changed.
func testSources(t *testing.T, s storage.Store) {
	ctx := t.Context()
	plain := newUser("u1", "ada@example.com")
	plain.Source = ""
	got, err := s.CreateUser(ctx, plain, scimAudit("user.create"))
	must(t, err)
	if got.Source != storage.SourceSCIM {
		t.Errorf("user stored without a source has source %q, want %q", got.Source, storage.SourceSCIM)
	}
	api := newUser("00u2", "bob@example.com")
	api.Source = storage.SourceOktaAPI
	_, err = s.CreateUser(ctx, api, scimAudit("user.create"))
	must(t, err)
	got, err = s.GetUserByName(ctx, "BOB@example.com")
	must(t, err)
	if got.Source != storage.SourceOktaAPI {
		t.Errorf("API user read back with source %q", got.Source)
	}
	g := newGroup("00g1", "Eng", "00u2")
	g.Source = storage.SourceOktaAPI
	g = createGroup(t, s, g)
	if g.Source != storage.SourceOktaAPI {
		t.Errorf("API group stored with source %q", g.Source)
	}
	gs, err := s.UserGroups(ctx, "00u2")
	must(t, err)
	if len(gs) != 1 || gs[0].Source != storage.SourceOktaAPI {
		t.Errorf("UserGroups = %+v, want the API group with its source", gs)
	}

	before := dumpOf(t, s)
	bad := newUser("u3", "eve@example.com")
	bad.Source = "ldap"
	_, err = s.CreateUser(ctx, bad, scimAudit("user.create"))
	wantErr(t, err, storage.ErrInvalid)
	badGroup := g
	badGroup.Source = "SCIM"
	_, err = s.UpdateGroup(ctx, badGroup, scimAudit("group.update"))
	wantErr(t, err, storage.ErrInvalid)
	sameDump(t, "unknown sources", before, s)

	// A SCIM write takes the record over.
	got.Source = storage.SourceSCIM
	got, err = s.UpdateUser(ctx, got, scimAudit("user.update"))
	must(t, err)
	if got.Source != storage.SourceSCIM {
		t.Errorf("user taken over by SCIM has source %q", got.Source)
	}
	g.Source = storage.SourceSCIM
	g, err = s.UpdateGroup(ctx, g, scimAudit("group.update"))
	must(t, err)
	if g.Source != storage.SourceSCIM {
		t.Errorf("group taken over by SCIM has source %q", g.Source)
	}
	p, err := s.ListGroups(ctx, storage.PeopleQuery{Limit: 10})
	must(t, err)
	if len(p.Groups) != 1 || p.Groups[0].Source != storage.SourceSCIM {
		t.Errorf("listed groups = %+v", p.Groups)
	}
}

// testUnstorableKeys: a key no record can have (a NUL byte, invalid UTF-8,
// which PostgreSQL refuses outright) names nothing: lookups find nothing,
// changes are ErrNotFound or ErrUnknownMember, and nothing changes.
func testUnstorableKeys(t *testing.T, s storage.Store) {
	ctx := t.Context()
	createUser(t, s, "u1", "ada@example.com")
	g := createGroup(t, s, newGroup("g1", "Eng"))
	before := dumpOf(t, s)
	for _, k := range []string{"u1\x00", "\xff\xfe", "ada@example.com\x00"} {
		_, err := s.GetUser(ctx, k)
		wantErr(t, err, storage.ErrNotFound)
		_, err = s.GetUserByName(ctx, k)
		wantErr(t, err, storage.ErrNotFound)
		_, err = s.GetGroup(ctx, k)
		wantErr(t, err, storage.ErrNotFound)
		wantErr(t, s.DeleteUser(ctx, k, 0, scimAudit("user.delete")), storage.ErrNotFound)
		wantErr(t, s.DeleteGroup(ctx, k, 0, scimAudit("group.delete")), storage.ErrNotFound)
		wantErr(t, s.BindDevice(ctx, storage.DeviceUser{DeviceID: k, UserID: "u1", Source: "admin", CreatedAt: t0}, scimAudit("device.assign")), storage.ErrNotFound)
		wantErr(t, s.UnbindDevice(ctx, "d1", k, scimAudit("device.unassign")), storage.ErrNotFound)
		g.Members = []string{"u1", k}
		_, err = s.UpdateGroup(ctx, g, scimAudit("group.update"))
		wantErr(t, err, storage.ErrUnknownMember)
		if gs, err := s.UserGroups(ctx, k); err != nil || len(gs) != 0 {
			t.Errorf("UserGroups(%q) = %v, %v", k, gs, err)
		}
		if bs, err := s.DeviceUsers(ctx, k); err != nil || len(bs) != 0 {
			t.Errorf("DeviceUsers(%q) = %v, %v", k, bs, err)
		}
		if bs, err := s.UserDevices(ctx, k); err != nil || len(bs) != 0 {
			t.Errorf("UserDevices(%q) = %v, %v", k, bs, err)
		}
		for _, q := range []storage.PeopleQuery{{Name: k, Limit: 10}, {ExternalID: k, Limit: 10}} {
			if p, err := s.ListUsers(ctx, q); err != nil || p.Total != 0 {
				t.Errorf("ListUsers(%+v) = %+v, %v", q, p, err)
			}
			if p, err := s.ListGroups(ctx, q); err != nil || p.Total != 0 {
				t.Errorf("ListGroups(%+v) = %+v, %v", q, p, err)
			}
		}
	}
	sameDump(t, "unstorable keys", before, s)
}

// testVersionedDelete: a delete at a version deletes only a record still
// at it (ErrStale otherwise, with nothing changed); version 0 is any.
func testVersionedDelete(t *testing.T, s storage.Store) {
	ctx := t.Context()
	u := createUser(t, s, "u1", "ada@example.com")
	g := createGroup(t, s, newGroup("g1", "Eng", "u1"))
	u.DisplayName = "Ada"
	_, err := s.UpdateUser(ctx, u, scimAudit("user.update"))
	must(t, err)
	before := dumpOf(t, s)
	wantErr(t, s.DeleteUser(ctx, "u1", u.Version, scimAudit("user.delete")), storage.ErrStale)
	wantErr(t, s.DeleteGroup(ctx, "g1", g.Version+1, scimAudit("group.delete")), storage.ErrStale)
	wantErr(t, s.DeleteUser(ctx, "u9", 1, scimAudit("user.delete")), storage.ErrNotFound)
	sameDump(t, "deletes at a stale version", before, s)
	must(t, s.DeleteUser(ctx, "u1", u.Version+1, scimAudit("user.delete")))
	must(t, s.DeleteGroup(ctx, "g1", g.Version, scimAudit("group.delete")))
	_, err = s.GetUser(ctx, "u1")
	wantErr(t, err, storage.ErrNotFound)
}

// CountPeople counts what is stored, and follows creates and deletes.
func testPeopleCount(t *testing.T, s storage.Store) {
	ctx := t.Context()
	count := func() storage.PeopleCount {
		t.Helper()
		c, err := s.CountPeople(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	if c := count(); c != (storage.PeopleCount{}) {
		t.Errorf("an empty store counts %+v", c)
	}
	createUser(t, s, "u1", "ada@example.com")
	createUser(t, s, "u2", "bob@example.com")
	createGroup(t, s, newGroup("g1", "Eng", "u1", "u2"))
	createGroup(t, s, newGroup("g2", "Ops", "u1"))
	if c, want := count(), (storage.PeopleCount{Users: 2, Groups: 2, Memberships: 3}); c != want {
		t.Errorf("counted %+v, want %+v", c, want)
	}
	if err := s.DeleteUser(ctx, "u1", 0, scimAudit("user.delete")); err != nil {
		t.Fatal(err)
	}
	if c, want := count(), (storage.PeopleCount{Users: 1, Groups: 2, Memberships: 1}); c != want {
		t.Errorf("after a delete, counted %+v, want %+v", c, want)
	}
}
