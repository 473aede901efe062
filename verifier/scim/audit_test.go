package scim

import (
	"strings"
	"testing"

	"github.com/clearance/clearance/verifier/storage"
)

// Every change Okta pushes about a person is an audit event that names
// them, as they were: the audit log's user filter answers "what changed
// for ada?" from her creation to her deletion (which Okta's request names
// by id only), and a group change names only the members it added or
// removed.
func TestAuditNamesThePeople(t *testing.T) {
	f := newFixture(t)
	for _, n := range []string{"ada", "bob", "cy"} {
		if r := f.do(t, "POST", "/scim/v2/Users", `{"userName":"`+n+`@example.com"}`); r.status != 201 {
			t.Fatalf("create %s = %d %s", n, r.status, r.raw)
		}
	}
	// ada: id-0001, bob: id-0002, cy: id-0003.
	patchOp := `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[`
	steps := []struct{ method, path, body string }{
		{"PUT", "/scim/v2/Users/id-0001", `{"id":"id-0001","userName":"ada.lovelace@example.com","active":true}`},
		{"PATCH", "/scim/v2/Users/id-0001", patchOp + `{"op":"replace","value":{"active":false}}]}`},
		{"POST", "/scim/v2/Groups", `{"displayName":"Eng","members":[{"value":"id-0001"},{"value":"id-0002"}]}`},
		{"PATCH", "/scim/v2/Groups/id-0004", patchOp + `{"op":"add","path":"members","value":[{"value":"id-0003"}]}]}`},
		{"PATCH", "/scim/v2/Groups/id-0004", patchOp + `{"op":"remove","path":"members[value eq \"id-0002\"]"}]}`},
		{"PATCH", "/scim/v2/Groups/id-0004", patchOp + `{"op":"replace","value":{"id":"id-0004","displayName":"Engineering"}}]}`},
		{"DELETE", "/scim/v2/Groups/id-0004", ""},
		{"DELETE", "/scim/v2/Users/id-0001", ""},
	}
	for _, s := range steps {
		if r := f.do(t, s.method, s.path, s.body); r.status/100 != 2 {
			t.Fatalf("%s %s = %d %s", s.method, s.path, r.status, r.raw)
		}
	}

	// history is the user's events, oldest first, each as its action and
	// subjects.
	history := func(user string) []string {
		t.Helper()
		es, err := f.store.ListAudit(t.Context(), storage.AuditFilter{User: user})
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for i := len(es) - 1; i >= 0; i-- {
			var subs []string
			for _, s := range es[i].Subjects {
				subs = append(subs, s.UserID+"="+s.UserName)
			}
			if es[i].Actor != "scim:"+f.tokID {
				t.Errorf("%s by %q, want the token's", es[i].Action, es[i].Actor)
			}
			out = append(out, es[i].Action+" "+strings.Join(subs, ","))
		}
		return out
	}
	ada := []string{
		"user.create id-0001=ada@example.com",
		"user.replace id-0001=ada.lovelace@example.com,id-0001=ada@example.com",
		"user.deactivate id-0001=ada.lovelace@example.com",
		"group.create id-0001=ada.lovelace@example.com,id-0002=bob@example.com",
		"group.delete id-0001=ada.lovelace@example.com,id-0003=cy@example.com",
		"user.delete id-0001=ada.lovelace@example.com",
	}
	for user, want := range map[string][]string{
		"id-0001": ada,
		// By the name she had first: created, and renamed (that name
		// first).
		"ADA@example.com": {ada[0], "user.replace id-0001=ada@example.com,id-0001=ada.lovelace@example.com"},
		// By the name she had last, though she is gone.
		"ada.lovelace@example.com": ada[1:],
		// Bob, first in the events that name him; the add and the rename
		// are not about him.
		"bob@example.com": {
			"user.create id-0002=bob@example.com",
			"group.create id-0002=bob@example.com,id-0001=ada.lovelace@example.com",
			"group.patch id-0002=bob@example.com",
		},
		"id-0003": {
			"user.create id-0003=cy@example.com",
			"group.patch id-0003=cy@example.com",
			"group.delete id-0003=cy@example.com,id-0001=ada.lovelace@example.com",
		},
	} {
		if got := history(user); strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("history of %s:\n%s\nwant\n%s", user, strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
	}
}

// auditEvents is how many audit events the store holds.
func (f *fixture) auditEvents(t *testing.T) int {
	t.Helper()
	es, err := f.store.ListAudit(t.Context(), storage.AuditFilter{})
	if err != nil {
		t.Fatal(err)
	}
	return len(es)
}

// A PATCH or PUT that changes nothing the verifier keeps (a password, which
// it never stores; the attributes as they are) answers the user as it is:
// no write, no audit row, the same version.
func TestUnchangingWriteLeavesNoTrace(t *testing.T) {
	f := newFixture(t)
	if r := f.do(t, "POST", "/scim/v2/Users", `{"userName":"ada@example.com","active":true}`); r.status != 201 {
		t.Fatalf("create = %d %s", r.status, r.raw)
	}
	before, err := f.store.GetUser(t.Context(), "id-0001")
	if err != nil {
		t.Fatal(err)
	}
	events := func() int { return f.auditEvents(t) }
	n := events()
	patchOp := `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[`
	for _, s := range []struct{ method, body string }{
		{"PATCH", patchOp + `{"op":"replace","value":{"password":"S3cret!!"}}]}`},
		{"PATCH", patchOp + `{"op":"replace","value":{"active":true}}]}`},
		{"PUT", `{"id":"id-0001","userName":"ada@example.com","active":true}`},
	} {
		r := f.do(t, s.method, "/scim/v2/Users/id-0001", s.body)
		if r.status != 200 {
			t.Fatalf("%s = %d %s", s.method, r.status, r.raw)
		}
		if strings.Contains(string(r.raw), "S3cret") {
			t.Errorf("%s answered the password: %s", s.method, r.raw)
		}
		after, err := f.store.GetUser(t.Context(), "id-0001")
		if err != nil {
			t.Fatal(err)
		}
		if after.Version != before.Version || !after.UpdatedAt.Equal(before.UpdatedAt) {
			t.Errorf("%s %s: version %d updated %s, want %d %s as created", s.method, s.body, after.Version, after.UpdatedAt, before.Version, before.UpdatedAt)
		}
		if got := events(); got != n {
			t.Errorf("%s %s: %d audit events, want %d", s.method, s.body, got, n)
		}
	}
	// A change is still a change.
	if r := f.do(t, "PATCH", "/scim/v2/Users/id-0001", patchOp+`{"op":"replace","value":{"active":false}}]}`); r.status != 200 {
		t.Fatalf("deactivate = %d %s", r.status, r.raw)
	}
	if after, _ := f.store.GetUser(t.Context(), "id-0001"); after.Active || after.Version != before.Version+1 || events() != n+1 {
		t.Errorf("deactivation: active %v version %d, %d audit events; want false, %d, %d", after.Active, after.Version, events(), before.Version+1, n+1)
	}
}

// The same for a group: members added that are members already, its name
// replaced by itself.
func TestUnchangingGroupWriteLeavesNoTrace(t *testing.T) {
	f := newFixture(t)
	if r := f.do(t, "POST", "/scim/v2/Users", `{"userName":"ada@example.com"}`); r.status != 201 {
		t.Fatalf("create user = %d %s", r.status, r.raw)
	}
	if r := f.do(t, "POST", "/scim/v2/Groups", `{"displayName":"Eng","members":[{"value":"id-0001"}]}`); r.status != 201 {
		t.Fatalf("create group = %d %s", r.status, r.raw)
	}
	before, err := f.store.GetGroup(t.Context(), "id-0002")
	if err != nil {
		t.Fatal(err)
	}
	events := func() int { return f.auditEvents(t) }
	n := events()
	patchOp := `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[`
	for _, body := range []string{
		patchOp + `{"op":"add","path":"members","value":[{"value":"id-0001"}]}]}`,
		patchOp + `{"op":"replace","value":{"id":"id-0002","displayName":"Eng"}}]}`,
	} {
		if r := f.do(t, "PATCH", "/scim/v2/Groups/id-0002", body); r.status/100 != 2 {
			t.Fatalf("PATCH %s = %d %s", body, r.status, r.raw)
		}
		after, err := f.store.GetGroup(t.Context(), "id-0002")
		if err != nil {
			t.Fatal(err)
		}
		if after.Version != before.Version || events() != n {
			t.Errorf("PATCH %s: version %d, %d audit events; want %d, %d", body, after.Version, events(), before.Version, n)
		}
	}
}
