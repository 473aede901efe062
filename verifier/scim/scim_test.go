package scim

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/clearance/clearance/internal/testkit/testpg"
	"github.com/clearance/clearance/verifier/storage"
	"github.com/clearance/clearance/verifier/storage/postgres"
	"github.com/clearance/clearance/verifier/storage/sqlite"
	"github.com/clearance/clearance/verifier/storage/storagetest"
)

var t0 = time.Date(2026, time.March, 4, 5, 6, 7, 0, time.UTC)

type fixture struct {
	store storage.Store
	h     *Handler
	token string
	tokID string
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "clearance.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return fixtureOn(t, st)
}

// newPostgresFixture is newFixture on a database of its own on the test
// PostgreSQL server; it skips without one, except in CI.
func newPostgresFixture(t *testing.T) *fixture {
	t.Helper()
	st, err := postgres.Open(t.Context(), testpg.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return fixtureOn(t, st)
}

func fixtureOn(t testing.TB, st storage.Store) *fixture {
	t.Helper()
	rec, tok, err := CreateToken(t.Context(), st, "okta", "cli", t0)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	h := &Handler{Store: st, BaseURL: "https://sso.example.com/scim/v2", Now: func() time.Time { return t0 },
		NewID: func() string { n++; return fmt.Sprintf("id-%04d", n) }}
	return &fixture{store: st, h: h, token: tok, tokID: rec.ID}
}

type reply struct {
	status int
	header http.Header
	body   map[string]any
	raw    string
}

func (f *fixture) do(t *testing.T, method, path, body string, hdr ...string) reply {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	r := httptest.NewRequest(method, "https://sso.example.com"+path, rd)
	r.Header.Set("Authorization", "Bearer "+f.token)
	if body != "" {
		r.Header.Set("Content-Type", "application/scim+json; charset=utf-8")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		if hdr[i+1] == "" {
			r.Header.Del(hdr[i])
		} else {
			r.Header.Set(hdr[i], hdr[i+1])
		}
	}
	w := httptest.NewRecorder()
	f.h.ServeHTTP(w, r)
	out := reply{status: w.Code, header: w.Header(), raw: w.Body.String()}
	if w.Body.Len() > 0 {
		if err := json.Unmarshal(w.Body.Bytes(), &out.body); err != nil {
			t.Fatalf("%s %s: body is not JSON: %q", method, path, w.Body.String())
		}
	}
	return out
}

func (f *fixture) dump(t *testing.T) string {
	t.Helper()
	d, err := storagetest.Dump(t.Context(), f.store)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

const oktaUser = `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"test.user@okta.local",
"name":{"givenName":"Test","familyName":"User"},"emails":[{"primary":true,"value":"test.user@okta.local","type":"work"}],
"displayName":"Test User","locale":"en-US","externalId":"00ujl29u0le5T6Aj10h7","groups":[],"password":"1mz050nq","active":true}`

func TestOktaUserLifecycle(t *testing.T) {
	f := newFixture(t)
	// 1. Okta looks the user up first.
	r := f.do(t, "GET", `/scim/v2/Users?filter=userName%20eq%20%22test.user%40okta.local%22&startIndex=1&count=100`, "")
	if r.status != 200 || r.body["totalResults"] != 0.0 || len(r.body["Resources"].([]any)) != 0 {
		t.Fatalf("lookup of an absent user = %d %s", r.status, r.raw)
	}
	// 2. Create.
	r = f.do(t, "POST", "/scim/v2/Users", oktaUser)
	if r.status != 201 || r.body["id"] != "id-0001" || r.body["active"] != true || r.body["userName"] != "test.user@okta.local" {
		t.Fatalf("create = %d %s", r.status, r.raw)
	}
	if _, ok := r.body["password"]; ok {
		t.Error("the password is returned")
	}
	if r.header.Get("Location") != "https://sso.example.com/scim/v2/Users/id-0001" {
		t.Errorf("Location = %q", r.header.Get("Location"))
	}
	// The filter matches regardless of case.
	r = f.do(t, "GET", `/scim/v2/Users?filter=userName+eq+%22TEST.USER%40okta.local%22&startIndex=1&count=100`, "")
	if r.body["totalResults"] != 1.0 || r.body["itemsPerPage"] != 1.0 || r.body["startIndex"] != 1.0 {
		t.Fatalf("lookup = %s", r.raw)
	}
	// 3. Update: GET then PUT.
	put := strings.Replace(oktaUser, `"givenName":"Test"`, `"givenName":"Another"`, 1)
	put = strings.Replace(put, `{"schemas"`, `{"id":"id-0001","schemas"`, 1)
	r = f.do(t, "PUT", "/scim/v2/Users/id-0001", put)
	if r.status != 200 || r.body["name"].(map[string]any)["givenName"] != "Another" {
		t.Fatalf("put = %d %s", r.status, r.raw)
	}
	// 4. Deactivate and reactivate.
	r = f.do(t, "PATCH", "/scim/v2/Users/id-0001", `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"replace","value":{"active":false}}]}`)
	if r.status != 200 || r.body["active"] != false {
		t.Fatalf("deactivate = %d %s", r.status, r.raw)
	}
	u, err := f.store.GetUserByName(t.Context(), "test.user@okta.local")
	if err != nil || u.Active {
		t.Fatalf("stored user after deactivation: %+v %v", u, err)
	}
	r = f.do(t, "PATCH", "/scim/v2/Users/id-0001", `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"replace","value":{"active":true}}]}`)
	if r.status != 200 || r.body["active"] != true {
		t.Fatalf("reactivate = %d %s", r.status, r.raw)
	}
	// Path forms too.
	r = f.do(t, "PATCH", "/scim/v2/Users/id-0001", `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"Replace","path":"name.familyName","value":"Lovelace"}]}`)
	if r.status != 200 || r.body["name"].(map[string]any)["familyName"] != "Lovelace" || r.body["name"].(map[string]any)["givenName"] != "Another" {
		t.Fatalf("path patch = %d %s", r.status, r.raw)
	}
	// The audit names the token.
	events, err := f.store.ListAudit(t.Context(), storage.AuditFilter{Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	var actions []string
	for _, e := range events {
		if e.Actor == "scim:"+f.tokID {
			actions = append([]string{e.Action}, actions...)
		}
	}
	if want := "user.create user.replace user.deactivate user.reactivate user.patch"; strings.Join(actions, " ") != want {
		t.Errorf("audit = %q, want %q", strings.Join(actions, " "), want)
	}
	// DELETE works though Okta does not send it.
	if r = f.do(t, "DELETE", "/scim/v2/Users/id-0001", ""); r.status != 204 {
		t.Fatalf("delete = %d %s", r.status, r.raw)
	}
	if r = f.do(t, "GET", "/scim/v2/Users/id-0001", ""); r.status != 404 {
		t.Fatalf("get after delete = %d", r.status)
	}
}

func TestPaging(t *testing.T) {
	f := newFixture(t)
	for i := range 5 {
		body := fmt.Sprintf(`{"userName":"u%d@example.com"}`, i)
		if r := f.do(t, "POST", "/scim/v2/Users", body, "Content-Type", "application/json"); r.status != 201 {
			t.Fatalf("create %d: %s", i, r.raw)
		}
	}
	var seen []string
	for start := 1; start <= 5; start += 2 {
		r := f.do(t, "GET", fmt.Sprintf("/scim/v2/Users?startIndex=%d&count=2", start), "")
		if r.body["totalResults"] != 5.0 || r.body["startIndex"] != float64(start) {
			t.Fatalf("page at %d: %s", start, r.raw)
		}
		for _, res := range r.body["Resources"].([]any) {
			seen = append(seen, res.(map[string]any)["id"].(string))
		}
	}
	if strings.Join(seen, ",") != "id-0001,id-0002,id-0003,id-0004,id-0005" {
		t.Errorf("paged ids = %v", seen)
	}
	if !strings.Contains(f.do(t, "GET", "/scim/v2/Users?count=0", "").raw, `"Resources":[]`) {
		t.Error("count=0 does not give an empty Resources array")
	}
}

func TestGroupPush(t *testing.T) {
	f := newFixture(t)
	for _, n := range []string{"ada", "bob"} {
		f.do(t, "POST", "/scim/v2/Users", `{"userName":"`+n+`@example.com"}`)
	}
	r := f.do(t, "POST", "/scim/v2/Groups", `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:Group"],"displayName":"Test SCIMv2","members":[]}`)
	if r.status != 201 || r.body["id"] != "id-0003" {
		t.Fatalf("create group = %d %s", r.status, r.raw)
	}
	patch := func(ops string) reply {
		return f.do(t, "PATCH", "/scim/v2/Groups/id-0003", `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[`+ops+`]}`)
	}
	if r = patch(`{"op":"add","path":"members","value":[{"value":"id-0001","display":"ada@example.com"},{"value":"id-0002","display":"bob@example.com"}]}`); r.status != 204 {
		t.Fatalf("add members = %d %s", r.status, r.raw)
	}
	if r = patch(`{"op":"remove","path":"members[value eq \"id-0001\"]"}`); r.status != 204 {
		t.Fatalf("remove member = %d %s", r.status, r.raw)
	}
	if r = patch(`{"op":"replace","value":{"id":"id-0003","displayName":"Engineering"}}`); r.status != 204 {
		t.Fatalf("rename = %d %s", r.status, r.raw)
	}
	r = f.do(t, "GET", "/scim/v2/Groups/id-0003", "")
	ms := r.body["members"].([]any)
	if r.body["displayName"] != "Engineering" || len(ms) != 1 || ms[0].(map[string]any)["value"] != "id-0002" {
		t.Fatalf("group = %s", r.raw)
	}
	gs, err := f.store.UserGroups(t.Context(), "id-0002")
	if err != nil || len(gs) != 1 || gs[0].DisplayName != "Engineering" {
		t.Fatalf("bob's groups = %+v %v", gs, err)
	}
	if r = patch(`{"op":"replace","path":"members","value":[{"value":"id-0001"}]}`); r.status != 204 {
		t.Fatalf("replace members = %d %s", r.status, r.raw)
	}
	r = f.do(t, "GET", "/scim/v2/Groups?filter=displayName%20eq%20%22engineering%22&excludedAttributes=members", "")
	if r.body["totalResults"] != 1.0 || r.body["Resources"].([]any)[0].(map[string]any)["members"] != nil {
		t.Fatalf("filtered list = %s", r.raw)
	}
	put := `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:Group"],"id":"id-0003","displayName":"Eng","members":[{"value":"id-0002"}]}`
	if r = f.do(t, "PUT", "/scim/v2/Groups/id-0003", put); r.status != 200 || r.body["displayName"] != "Eng" {
		t.Fatalf("put group = %d %s", r.status, r.raw)
	}
	if r = f.do(t, "DELETE", "/scim/v2/Groups/id-0003", ""); r.status != 204 {
		t.Fatalf("delete group = %d %s", r.status, r.raw)
	}
	if r = f.do(t, "GET", "/scim/v2/Groups/id-0003", ""); r.status != 404 {
		t.Fatalf("get after delete = %d", r.status)
	}
}

func TestDiscovery(t *testing.T) {
	f := newFixture(t)
	for _, p := range []string{"/scim/v2/ServiceProviderConfig", "/scim/v2/Schemas", "/scim/v2/ResourceTypes",
		"/scim/v2/Schemas/" + UserSchema, "/scim/v2/ResourceTypes/Group"} {
		if r := f.do(t, "GET", p, ""); r.status != 200 || r.body["schemas"] == nil {
			t.Errorf("GET %s = %d %s", p, r.status, r.raw)
		}
	}
	if r := f.do(t, "GET", "/scim/v2/ServiceProviderConfig", ""); r.body["patch"].(map[string]any)["supported"] != true {
		t.Error("patch not advertised")
	}
}

// TestRefusals: every kind of bad input gets its status and SCIM error and
// changes nothing stored.
func TestRefusals(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) { testRefusals(t, newFixture(t)) })
	t.Run("postgres", func(t *testing.T) { testRefusals(t, newPostgresFixture(t)) })
}

func testRefusals(t *testing.T, f *fixture) {
	f.do(t, "POST", "/scim/v2/Users", `{"userName":"ada@example.com"}`)
	f.do(t, "POST", "/scim/v2/Groups", `{"displayName":"Eng"}`)
	revoked, revokedTok, err := CreateToken(t.Context(), f.store, "old", "cli", t0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.store.RevokeSCIMToken(t.Context(), revoked.ID, t0, storage.AuditEvent{At: t0, Actor: "cli", Action: "scim_token.revoke"}); err != nil {
		t.Fatal(err)
	}
	patchOp := func(ops string) string {
		return `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[` + ops + `]}`
	}
	cases := []struct {
		name, method, path, body string
		hdr                      []string
		status                   int
		scimType                 string
	}{
		{"malformed JSON", "POST", "/scim/v2/Users", `{"userName":`, nil, 400, "invalidSyntax"},
		{"trailing data", "POST", "/scim/v2/Users", `{"userName":"x@example.com"} {}`, nil, 400, "invalidSyntax"},
		{"not an object", "POST", "/scim/v2/Users", `["userName"]`, nil, 400, "invalidSyntax"},
		{"unknown attribute", "POST", "/scim/v2/Users", `{"userName":"x@example.com","favouriteColour":"red"}`, nil, 400, "invalidSyntax"},
		{"unknown schema", "POST", "/scim/v2/Users", `{"schemas":["urn:example:custom"],"userName":"x@example.com"}`, nil, 400, "invalidSyntax"},
		{"active not a boolean", "POST", "/scim/v2/Users", `{"userName":"x@example.com","active":"false"}`, nil, 400, "invalidValue"},
		{"no userName", "POST", "/scim/v2/Users", `{"displayName":"X"}`, nil, 400, "invalidValue"},
		{"control character", "POST", "/scim/v2/Users", `{"userName":"x\u0000@example.com"}`, nil, 400, "invalidValue"},
		{"control character in the e-mail", "POST", "/scim/v2/Users", `{"userName":"x@example.com","emails":[{"value":"x\u001b[31m@example.com","primary":true}]}`, nil, 400, "invalidValue"},
		{"e-mail not UTF-8", "POST", "/scim/v2/Users", `{"userName":"x@example.com","emails":[{"value":"x\ufffd@example.com"}]}`, nil, 400, "invalidValue"},
		{"bidirectional override in a userName", "POST", "/scim/v2/Users", `{"userName":"bob\u202emoc.elpmaxe@evil"}`, nil, 400, "invalidValue"},
		{"bidirectional isolate in a displayName", "POST", "/scim/v2/Users", `{"userName":"x@example.com","displayName":"Bob \u2066admin\u2069"}`, nil, 400, "invalidValue"},
		{"bidirectional override in a given name", "POST", "/scim/v2/Users", `{"userName":"x@example.com","name":{"givenName":"a\u202eb"}}`, nil, 400, "invalidValue"},
		{"bidirectional mark in a userName", "POST", "/scim/v2/Users", `{"userName":"x\u200f@example.com"}`, nil, 400, "invalidValue"},
		{"bidirectional override in the e-mail", "POST", "/scim/v2/Users", `{"userName":"x@example.com","emails":[{"value":"x\u202ey@example.com","primary":true}]}`, nil, 400, "invalidValue"},
		{"zero-width space in a userName", "POST", "/scim/v2/Users", `{"userName":"ad\u200ba@example.com"}`, nil, 400, "invalidValue"},
		{"zero-width joiner in an externalId", "POST", "/scim/v2/Users", `{"userName":"x@example.com","externalId":"00u\u200d1"}`, nil, 400, "invalidValue"},
		{"bidirectional override in a group's name", "POST", "/scim/v2/Groups", `{"displayName":"eng\u202esnimda"}`, nil, 400, "invalidValue"},
		{"group renamed with a bidirectional override", "PATCH", "/scim/v2/Groups/id-0002", patchOp(`{"op":"replace","value":{"displayName":"eng\u202esnimda"}}`), nil, 400, "invalidValue"},
		{"user patched to a bidirectional userName", "PATCH", "/scim/v2/Users/id-0001", patchOp(`{"op":"replace","path":"userName","value":"ada\u202e@example.com"}`), nil, 400, "invalidValue"},
		{"duplicate userName", "POST", "/scim/v2/Users", `{"userName":"ADA@example.com"}`, nil, 409, "uniqueness"},
		{"duplicate group", "POST", "/scim/v2/Groups", `{"displayName":"eng"}`, nil, 409, "uniqueness"},
		{"unknown member", "POST", "/scim/v2/Groups", `{"displayName":"Ops","members":[{"value":"ghost"}]}`, nil, 400, "invalidValue"},
		{"oversized body", "POST", "/scim/v2/Users", `{"userName":"x@example.com","title":"` + strings.Repeat("a", MaxBody) + `"}`, nil, 413, ""},
		{"wrong media type", "POST", "/scim/v2/Users", `{"userName":"x@example.com"}`, []string{"Content-Type", "text/plain"}, 415, ""},
		{"invalid filter", "GET", "/scim/v2/Users?filter=userName%20co%20%22a%22", "", nil, 400, "invalidFilter"},
		{"unterminated filter", "GET", "/scim/v2/Users?filter=userName%20eq%20%22a", "", nil, 400, "invalidFilter"},
		{"unsupported filter attribute", "GET", "/scim/v2/Users?filter=title%20eq%20%22a%22", "", nil, 400, "invalidFilter"},
		{"bad count", "GET", "/scim/v2/Users?count=many", "", nil, 400, "invalidValue"},
		{"missing token", "GET", "/scim/v2/Users", "", []string{"Authorization", ""}, 401, ""},
		{"bad token", "GET", "/scim/v2/Users", "", []string{"Authorization", "Bearer scim_0123456789abcdef.nope"}, 401, ""},
		{"token id not hex (not UTF-8 either)", "GET", "/scim/v2/Users", "", []string{"Authorization", "Bearer scim_\xf0\xf1\xf2\xf3\xf4\xf5\xf6\xf7\xf8\xf9\xfa\xfb\xfc\xfd\xfe\xff.x"}, 401, ""},
		{"revoked token", "POST", "/scim/v2/Users", `{"userName":"x@example.com"}`, []string{"Authorization", "Bearer " + revokedTok}, 401, ""},
		{"basic auth", "GET", "/scim/v2/Users", "", []string{"Authorization", "Basic b2t0YTpva3Rh"}, 401, ""},
		{"unknown user", "GET", "/scim/v2/Users/nope", "", nil, 404, ""},
		{"put unknown user", "PUT", "/scim/v2/Users/nope", `{"userName":"x@example.com"}`, nil, 404, ""},
		{"patch unknown user", "PATCH", "/scim/v2/Users/nope", patchOp(`{"op":"replace","value":{"active":false}}`), nil, 404, ""},
		{"delete unknown group", "DELETE", "/scim/v2/Groups/nope", "", nil, 404, ""},
		{"patch without schema", "PATCH", "/scim/v2/Users/id-0001", `{"Operations":[{"op":"replace","value":{"active":false}}]}`, nil, 400, "invalidSyntax"},
		{"patch bad op", "PATCH", "/scim/v2/Users/id-0001", patchOp(`{"op":"move","value":{"active":false}}`), nil, 400, "invalidSyntax"},
		{"patch bad path", "PATCH", "/scim/v2/Users/id-0001", patchOp(`{"op":"replace","path":"emails[type eq","value":"x"}`), nil, 400, "invalidPath"},
		{"patch remove no path", "PATCH", "/scim/v2/Users/id-0001", patchOp(`{"op":"remove"}`), nil, 400, "noTarget"},
		{"patch to invalid user", "PATCH", "/scim/v2/Users/id-0001", patchOp(`{"op":"replace","value":{"active":false}},{"op":"remove","path":"userName"}`), nil, 400, "invalidValue"},
		{"patch names active twice", "PATCH", "/scim/v2/Users/id-0001", patchOp(`{"op":"replace","value":{"active":false,"Active":true}}`), nil, 400, "invalidSyntax"},
		{"patch names a sub-attribute twice", "PATCH", "/scim/v2/Users/id-0001", patchOp(`{"op":"replace","path":"name","value":{"givenName":"A","GIVENNAME":"B"}}`), nil, 400, "invalidSyntax"},
		{"patch names an attribute and a part of it", "PATCH", "/scim/v2/Users/id-0001", patchOp(`{"op":"replace","value":{"active":false,"active.x":true}}`), nil, 400, "invalidSyntax"},
		{"patch names a part and the whole", "PATCH", "/scim/v2/Users/id-0001", patchOp(`{"op":"replace","value":{"name.givenName":"Mallory","NAME":{"givenName":"Alice"}}}`), nil, 400, "invalidSyntax"},
		{"group patch names displayName twice", "PATCH", "/scim/v2/Groups/id-0002", patchOp(`{"op":"replace","value":{"displayName":"X","displayname":"Y"}}`), nil, 400, "invalidSyntax"},
		{"patch unknown attribute", "PATCH", "/scim/v2/Users/id-0001", patchOp(`{"op":"add","path":"shoeSize","value":"9"}`), nil, 400, "invalidSyntax"},
		{"group patch unknown member", "PATCH", "/scim/v2/Groups/id-0002", patchOp(`{"op":"add","path":"members","value":[{"value":"ghost"}]}`), nil, 400, "invalidValue"},
		{"group patch change id", "PATCH", "/scim/v2/Groups/id-0002", patchOp(`{"op":"replace","value":{"id":"other","displayName":"X"}}`), nil, 400, "mutability"},
		{"NUL in an id", "GET", "/scim/v2/Users/id-0001%00", "", nil, 404, ""},
		{"id not UTF-8", "PATCH", "/scim/v2/Groups/%ff%fe", patchOp(`{"op":"replace","value":{"displayName":"X"}}`), nil, 404, ""},
		{"oversized id", "DELETE", "/scim/v2/Users/" + strings.Repeat("a", 600), "", nil, 404, ""},
		{"NUL in a filter", "GET", "/scim/v2/Users?filter=userName%20eq%20%22ada%00%22", "", nil, 400, "invalidFilter"},
		{"filter value not UTF-8", "GET", "/scim/v2/Users?filter=externalId%20eq%20%22%ff%fe%22", "", nil, 200, ""},
		{"filter not UTF-8", "GET", "/scim/v2/Groups?filter=displayName%20eq%20%22%ff%22", "", nil, 200, ""},
		{"NUL in a member", "POST", "/scim/v2/Groups", `{"displayName":"Ops","members":[{"value":"id-0001\u0000"}]}`, nil, 400, "invalidValue"},
		{"member not UTF-8", "PATCH", "/scim/v2/Groups/id-0002", patchOp(`{"op":"add","path":"members","value":[{"value":"\udcff"}]}`), nil, 400, "invalidValue"},
		{"unknown endpoint", "GET", "/scim/v2/Bulk", "", nil, 404, ""},
		{"method", "POST", "/scim/v2/ServiceProviderConfig", "{}", nil, 405, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := f.dump(t)
			r := f.do(t, tc.method, tc.path, tc.body, tc.hdr...)
			if r.status != tc.status {
				t.Fatalf("status = %d, want %d: %s", r.status, tc.status, r.raw)
			}
			if tc.status == 200 {
				// A filter nothing stored can match: an empty list.
				if r.body["totalResults"] != 0.0 {
					t.Errorf("matched %s", r.raw)
				}
				return
			}
			if r.body["status"] != fmt.Sprint(tc.status) || r.body["detail"] == "" ||
				fmt.Sprint(r.body["schemas"]) != "["+ErrorSchema+"]" {
				t.Errorf("not a SCIM error body: %s", r.raw)
			}
			if got, _ := r.body["scimType"].(string); got != tc.scimType {
				t.Errorf("scimType = %q, want %q", got, tc.scimType)
			}
			if tc.status == 401 && r.header.Get("WWW-Authenticate") == "" {
				t.Error("401 without WWW-Authenticate")
			}
			if after := f.dump(t); after != before {
				t.Errorf("the refused request changed the store:\n%s\n--- after ---\n%s", before, after)
			}
		})
	}
}

func TestParseFilter(t *testing.T) {
	good := map[string]Filter{
		`userName eq "ada@example.com"`:    {"userName", "ada@example.com"},
		`userName EQ "a \"quoted\" name"`:  {"userName", `a "quoted" name`},
		`name.givenName eq "Ada"`:          {"name.givenName", "Ada"},
		`externalId eq "00u1"`:             {"externalId", "00u1"},
		`displayName eq "Eng \u00e9quipe"`: {"displayName", "Eng équipe"},
	}
	for in, want := range good {
		got, err := ParseFilter(in)
		if err != nil || got != want {
			t.Errorf("ParseFilter(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "userName", `userName eq`, `userName eq ada`, `userName co "a"`,
		`userName eq "a" and active eq true`, `userName eq "a`, `(userName eq "a")`, `1userName eq "a"`,
		`userName eq "a" junk`, strings.Repeat("a", MaxFilterLen+1), `userName eq "\x"`} {
		if f, err := ParseFilter(in); err == nil {
			t.Errorf("ParseFilter(%q) = %+v, want an error", in, f)
		}
	}
}

func TestParsePath(t *testing.T) {
	p, err := ParsePath(`members[value eq "abc"]`)
	if err != nil || p.Attr != "members" || p.Filter == nil || p.Filter.Value != "abc" {
		t.Errorf("members filter = %+v %v", p, err)
	}
	p, err = ParsePath("name.givenName")
	if err != nil || p.Attr != "name" || p.Sub != "givenName" {
		t.Errorf("sub-attribute = %+v %v", p, err)
	}
	for _, in := range []string{"", "members[", `members[value eq "a"`, `members[value eq "a"]x`, "a.b.c", `name.given[value eq "a"]`} {
		if p, err := ParsePath(in); err == nil {
			t.Errorf("ParsePath(%q) = %+v, want an error", in, p)
		}
	}
}

// TestGroupListMemberBudget: a page of groups stops adding groups once it
// lists maxListedMembers members (always at least one group), so large
// groups cannot make one response of millions of members.
func TestGroupListMemberBudget(t *testing.T) {
	f := newFixture(t)
	for _, n := range []string{"ada", "bob"} {
		f.do(t, "POST", "/scim/v2/Users", `{"userName":"`+n+`@example.com"}`)
	}
	for _, g := range []string{"A", "B", "C"} {
		if r := f.do(t, "POST", "/scim/v2/Groups", `{"displayName":"`+g+`","members":[{"value":"id-0001"},{"value":"id-0002"}]}`); r.status != 201 {
			t.Fatalf("create group %s = %d %s", g, r.status, r.raw)
		}
	}
	prev := maxListedMembers
	maxListedMembers = 3
	t.Cleanup(func() { maxListedMembers = prev })
	r := f.do(t, "GET", "/scim/v2/Groups?startIndex=1&count=100", "")
	if r.body["totalResults"] != 3.0 || r.body["itemsPerPage"] != 2.0 {
		t.Fatalf("first page = %s; want 2 of 3 groups (4 members listed, the budget 3)", r.raw)
	}
	r = f.do(t, "GET", "/scim/v2/Groups?startIndex=3&count=100", "")
	if r.body["itemsPerPage"] != 1.0 || len(r.body["Resources"].([]any)[0].(map[string]any)["members"].([]any)) != 2 {
		t.Fatalf("next page = %s", r.raw)
	}
	r = f.do(t, "GET", "/scim/v2/Groups?count=100&excludedAttributes=members", "")
	if r.body["itemsPerPage"] != 3.0 {
		t.Fatalf("without members, every group fits: %s", r.raw)
	}
}

// TestSCIMTakesOverAPIRecords: SCIM wins. Creating a user or group whose
// name the Okta API sync holds makes that record SCIM's, keeping its ID,
// groups and Macs; any SCIM write to a synced record does the same. A
// name SCIM already holds is still a conflict.
func TestSCIMTakesOverAPIRecords(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	api := storage.AuditEvent{Actor: "okta-api-sync"}
	for _, u := range []storage.User{
		{ID: "00u1", UserName: "test.user@okta.local", ExternalID: "00u1", Active: false, Resource: []byte(`{}`), Source: storage.SourceOktaAPI},
		{ID: "00u2", UserName: "bob@example.com", ExternalID: "00u2", Active: true, Resource: []byte(`{}`), Source: storage.SourceOktaAPI},
	} {
		if _, err := f.store.CreateUser(ctx, u, api); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := f.store.CreateGroup(ctx, storage.Group{ID: "00g1", DisplayName: "Engineering", Members: []string{"00u1"},
		Source: storage.SourceOktaAPI}, api); err != nil {
		t.Fatal(err)
	}

	r := f.do(t, "POST", "/scim/v2/Users", oktaUser)
	if r.status != 201 || r.body["id"] != "00u1" || r.body["active"] != true || r.body["displayName"] != "Test User" {
		t.Fatalf("create over a synced user = %d %s", r.status, r.raw)
	}
	u, err := f.store.GetUser(ctx, "00u1")
	if err != nil || u.Source != storage.SourceSCIM || !u.Active {
		t.Fatalf("taken-over user %+v %v", u, err)
	}
	if gs, _ := f.store.UserGroups(ctx, "00u1"); len(gs) != 1 {
		t.Errorf("the taken-over user lost its groups: %+v", gs)
	}
	// A PATCH to a synced user takes it over too.
	r = f.do(t, "PATCH", "/scim/v2/Users/00u2", `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"replace","value":{"active":false}}]}`)
	if r.status != 200 {
		t.Fatalf("patch a synced user = %d %s", r.status, r.raw)
	}
	if u, _ := f.store.GetUser(ctx, "00u2"); u.Source != storage.SourceSCIM || u.Active {
		t.Errorf("patched synced user %+v", u)
	}
	r = f.do(t, "POST", "/scim/v2/Groups", `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:Group"],"displayName":"engineering","members":[{"value":"00u2"}]}`)
	if r.status != 201 || r.body["id"] != "00g1" {
		t.Fatalf("create over a synced group = %d %s", r.status, r.raw)
	}
	g, err := f.store.GetGroup(ctx, "00g1")
	if err != nil || g.Source != storage.SourceSCIM || g.DisplayName != "engineering" || len(g.Members) != 1 || g.Members[0] != "00u2" {
		t.Fatalf("taken-over group %+v %v", g, err)
	}
	// Now SCIM's: a second create is the usual conflict, with nothing changed.
	before := f.dump(t)
	if r = f.do(t, "POST", "/scim/v2/Users", oktaUser); r.status != 409 {
		t.Errorf("second create = %d %s", r.status, r.raw)
	}
	if r = f.do(t, "POST", "/scim/v2/Groups", `{"displayName":"Engineering"}`); r.status != 409 {
		t.Errorf("second group create = %d %s", r.status, r.raw)
	}
	if f.dump(t) != before {
		t.Error("a refused create changed the store")
	}
}

// TestReplaceWithoutActiveKeepsIt: active has no default, so a PUT that
// leaves it out, or a PATCH that removes it or sets it to null, keeps a
// deactivated user deactivated; only active:true reactivates.
func TestReplaceWithoutActiveKeepsIt(t *testing.T) {
	f := newFixture(t)
	f.do(t, "POST", "/scim/v2/Users", `{"userName":"ada@example.com","active":true}`)
	patch := `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"replace","value":{"active":false}}]}`
	if r := f.do(t, "PATCH", "/scim/v2/Users/id-0001", patch); r.status != 200 || r.body["active"] != false {
		t.Fatalf("deactivate = %d %s", r.status, r.raw)
	}
	if r := f.do(t, "PUT", "/scim/v2/Users/id-0001", `{"userName":"ada@example.com","displayName":"Ada"}`); r.status != 200 || r.body["active"] != false {
		t.Fatalf("a PUT without active = %d %s, want the user still inactive", r.status, r.raw)
	}
	if u, _ := f.store.GetUser(t.Context(), "id-0001"); u.Active {
		t.Fatal("a PUT without active reactivated the user")
	}
	for _, op := range []string{`{"op":"remove","path":"active"}`, `{"op":"replace","path":"active","value":null}`} {
		p := `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[` + op + `]}`
		f.do(t, "PATCH", "/scim/v2/Users/id-0001", p) // refused (null) or applied: either way
		if u, _ := f.store.GetUser(t.Context(), "id-0001"); u.Active {
			t.Fatalf("PATCH %s reactivated the user", op)
		}
	}
	if r := f.do(t, "PUT", "/scim/v2/Users/id-0001", `{"userName":"ada@example.com","active":true}`); r.status != 200 || r.body["active"] != true {
		t.Fatalf("a PUT with active:true = %d %s", r.status, r.raw)
	}
}

// TestLookAlikeUserNames: userName compares regardless of ASCII case
// only. A look-alike of a user's name (a Kelvin sign for a k) is created as a user of its own, is what a filter on it
// finds, and takes over no record of the Okta API sync; the same name in
// other ASCII case is the usual conflict.
func TestLookAlikeUserNames(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) { testLookAlikeUserNames(t, newFixture(t)) })
	t.Run("postgres", func(t *testing.T) { testLookAlikeUserNames(t, newPostgresFixture(t)) })
}

func testLookAlikeUserNames(t *testing.T, f *fixture) {
	find := func(name string) reply {
		t.Helper()
		return f.do(t, "GET", "/scim/v2/Users?filter="+url.QueryEscape(`userName eq "`+name+`"`), "")
	}
	if r := f.do(t, "POST", "/scim/v2/Users", `{"userName":"kate@example.com"}`); r.status != 201 || r.body["id"] != "id-0001" {
		t.Fatalf("create kate = %d %s", r.status, r.raw)
	}
	if r := f.do(t, "POST", "/scim/v2/Users", `{"userName":"\u212Aate@example.com"}`); r.status != 201 || r.body["id"] != "id-0002" {
		t.Fatalf("create the Kelvin-sign look-alike = %d %s", r.status, r.raw)
	}
	for name, id := range map[string]string{"\u212Aate@example.com": "id-0002", "\u212AATE@EXAMPLE.COM": "id-0002",
		"kate@example.com": "id-0001", "KATE@EXAMPLE.COM": "id-0001"} {
		r := find(name)
		res, _ := r.body["Resources"].([]any)
		if r.status != 200 || r.body["totalResults"] != 1.0 || len(res) != 1 || res[0].(map[string]any)["id"] != id {
			t.Errorf("filter userName eq %+q = %d %s, want only %s", name, r.status, r.raw, id)
		}
	}
	for _, name := range []string{"KATE@example.com", "\u212AATE@example.com"} {
		before := f.dump(t)
		if r := f.do(t, "POST", "/scim/v2/Users", `{"userName":"`+name+`"}`); r.status != 409 {
			t.Errorf("create %+q = %d %s, want 409", name, r.status, r.raw)
		}
		if f.dump(t) != before {
			t.Errorf("the refused create of %+q changed the store", name)
		}
	}

	// A look-alike of a synced user's login is not that user: SCIM creates
	// it beside the synced record instead of taking that over.
	if _, err := f.store.CreateUser(t.Context(), storage.User{ID: "00u1", UserName: "kim@example.com", ExternalID: "00u1", Active: true,
		Resource: []byte(`{}`), Source: storage.SourceOktaAPI}, storage.AuditEvent{Actor: "okta-api-sync"}); err != nil {
		t.Fatal(err)
	}
	if r := f.do(t, "POST", "/scim/v2/Users", `{"userName":"\u212Aim@example.com"}`); r.status != 201 || r.body["id"] == "00u1" {
		t.Fatalf("create the look-alike of a synced login = %d %s", r.status, r.raw)
	}
	if u, err := f.store.GetUser(t.Context(), "00u1"); err != nil || u.Source != storage.SourceOktaAPI || u.UserName != "kim@example.com" {
		t.Errorf("the synced user after a look-alike's create: %+v %v", u, err)
	}
}

// Two parts of one attribute in one path-less value are two changes, not
// an overlap: both apply.
func TestPatchTwoPartsOfOneAttribute(t *testing.T) {
	f := newFixture(t)
	f.do(t, "POST", "/scim/v2/Users", `{"userName":"ada@example.com"}`)
	r := f.do(t, "PATCH", "/scim/v2/Users/id-0001", `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[`+
		`{"op":"replace","value":{"name.givenName":"Ada","name.familyName":"Lovelace"}}]}`)
	if r.status != 200 {
		t.Fatalf("status %d: %s", r.status, r.raw)
	}
	name, _ := r.body["name"].(map[string]any)
	if name["givenName"] != "Ada" || name["familyName"] != "Lovelace" {
		t.Fatalf("name = %v", r.body["name"])
	}
}
