package scim

import (
	"bytes"
	"context"
	"log/slog"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/clearance/clearance/verifier/storage"
)

// bounds sets the bounds on what SCIM adds for one test, counted afresh
// on every write.
func bounds(t *testing.T, users, groups, memberships int) {
	t.Helper()
	prevU, prevG, prevM, prevEvery := maxUsers, maxGroups, maxMemberships, countEvery
	maxUsers, maxGroups, maxMemberships, countEvery = users, groups, memberships, 0
	t.Cleanup(func() { maxUsers, maxGroups, maxMemberships, countEvery = prevU, prevG, prevM, prevEvery })
}

// A SCIM token cannot fill the disk: past the bounds on users, groups and
// memberships, a write that adds is refused with 403 and changes nothing;
// one that removes makes room again.
func TestPeopleBounds(t *testing.T) {
	bounds(t, 2, 1, 1)
	f := newFixture(t)
	for _, name := range []string{"ada@example.com", "bob@example.com"} {
		if r := f.do(t, "POST", "/scim/v2/Users", `{"userName":"`+name+`"}`); r.status != 201 {
			t.Fatalf("create %s = %d %s", name, r.status, r.raw)
		}
	}
	refused := func(what, method, path, body string) {
		t.Helper()
		before := f.dump(t)
		r := f.do(t, method, path, body)
		if r.status != 403 || !strings.Contains(r.raw, "at most") {
			t.Errorf("%s = %d %s, want 403 naming the bound", what, r.status, r.raw)
		}
		if f.dump(t) != before {
			t.Errorf("the refused %s changed the store", what)
		}
	}
	refused("a third user", "POST", "/scim/v2/Users", `{"userName":"cy@example.com"}`)
	refused("a group of two", "POST", "/scim/v2/Groups", `{"displayName":"Eng","members":[{"value":"id-0001"},{"value":"id-0002"}]}`)
	if r := f.do(t, "POST", "/scim/v2/Groups", `{"displayName":"Eng","members":[{"value":"id-0001"}]}`); r.status != 201 {
		t.Fatalf("create a group of one = %d %s", r.status, r.raw)
	}
	refused("a second group", "POST", "/scim/v2/Groups", `{"displayName":"Ops"}`)
	patch := `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"add","path":"members","value":[{"value":"id-0002"}]}]}`
	refused("a second membership", "PATCH", "/scim/v2/Groups/id-0003", patch)
	// A swap adds as many as it removes.
	swap := `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[` +
		`{"op":"remove","path":"members[value eq \"id-0001\"]"},{"op":"add","path":"members","value":[{"value":"id-0002"}]}]}`
	if r := f.do(t, "PATCH", "/scim/v2/Groups/id-0003", swap); r.status != 204 {
		t.Errorf("swap a member = %d %s", r.status, r.raw)
	}
	if r := f.do(t, "DELETE", "/scim/v2/Users/id-0001", ""); r.status != 204 {
		t.Fatalf("delete = %d %s", r.status, r.raw)
	}
	if r := f.do(t, "POST", "/scim/v2/Users", `{"userName":"cy@example.com"}`); r.status != 201 {
		t.Errorf("create once a user was deleted = %d %s", r.status, r.raw)
	}
}

// Between recounts the handler counts what it let through, so a burst
// within countEvery cannot pass a bound either.
func TestPeopleBoundsBetweenRecounts(t *testing.T) {
	bounds(t, 2, 1, 1)
	countEvery = time.Hour
	f := newFixture(t)
	for i, name := range []string{"ada@example.com", "bob@example.com", "cy@example.com"} {
		want := 201
		if i == 2 {
			want = 403
		}
		if r := f.do(t, "POST", "/scim/v2/Users", `{"userName":"`+name+`"}`); r.status != want {
			t.Errorf("create %s = %d %s, want %d", name, r.status, r.raw, want)
		}
	}
}

// Refusals are logged one line per kind every refusedLogEvery, with what
// the sender chose clipped: a token's holder cannot make the log as large
// as its requests.
func TestRefusalLogBounded(t *testing.T) {
	f := newFixture(t)
	var logs bytes.Buffer
	f.h.Log = slog.New(slog.NewTextHandler(&logs, nil))
	long := strings.Repeat("A", 60_000)
	for range 20 {
		if r := f.do(t, "GET", "/scim/v2/Users/"+long, ""); r.status != 404 {
			t.Fatalf("GET a long id = %d", r.status)
		}
	}
	if r := f.do(t, "POST", "/scim/v2/Users", `{"userName":"x@example.com","`+long+`":"1"}`); r.status != 400 {
		t.Fatalf("POST an unknown attribute = %d", r.status)
	}
	lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
	if len(lines) != 2 {
		t.Errorf("%d lines for 20 refusals of one kind and one of another, want 2:\n%s", len(lines), logs.String())
	}
	for _, l := range lines {
		if len(l) > 1024 {
			t.Errorf("a line of %d bytes: %.200s…", len(l), l)
		}
	}
	f.h.Now = func() time.Time { return t0.Add(refusedLogEvery) }
	logs.Reset()
	f.do(t, "GET", "/scim/v2/Users/"+long, "")
	if !strings.Contains(logs.String(), "others_not_logged=19") {
		t.Errorf("the next line does not count the 19 left out: %s", logs.String())
	}
}

// A name in a right-to-left script may hold bidirectional marks; a record
// stored before the rules on shown text keeps what it holds, and Okta can
// still deactivate it and write it back unchanged; a new value is held to
// the rules.
func TestShownTextRules(t *testing.T) {
	f := newFixture(t)
	if r := f.do(t, "POST", "/scim/v2/Users", `{"userName":"dana@example.com","displayName":"\u05d3\u05e0\u05d4 \u200f(IT)","name":{"givenName":"\u05d3\u05e0\u05d4\u200f"}}`); r.status != 201 {
		t.Fatalf("a right-to-left name with marks = %d %s", r.status, r.raw)
	}
	if r := f.do(t, "POST", "/scim/v2/Users", `{"userName":"Dana Levi"}`); r.status != 201 {
		t.Fatalf("a userName with an ASCII space = %d %s", r.status, r.raw)
	}
	if r := f.do(t, "POST", "/scim/v2/Groups", `{"displayName":"\ud83d\udc69\u200d\ud83d\udcbb Devs"}`); r.status != 201 {
		t.Fatalf("a group named with an emoji's joiner = %d %s", r.status, r.raw)
	}
	// Stored before the rules.
	old := storage.User{ID: "old-1", UserName: "zoe\u200b@example.com", DisplayName: "Zo\u202ee", Active: true,
		Resource: []byte(`{"displayName":"Zo\u202ee"}`), Source: storage.SourceSCIM, CreatedAt: t0, UpdatedAt: t0}
	if _, err := f.store.CreateUser(t.Context(), old, storage.AuditEvent{At: t0, Actor: "test", Action: "user.create"}); err != nil {
		t.Fatal(err)
	}
	deactivate := `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"replace","value":{"active":false}}]}`
	if r := f.do(t, "PATCH", "/scim/v2/Users/old-1", deactivate); r.status != 200 || r.body["active"] != false {
		t.Fatalf("Okta's deactivation of a record stored before the rules = %d %s", r.status, r.raw)
	}
	if r := f.do(t, "PUT", "/scim/v2/Users/old-1", `{"userName":"zoe\u200b@example.com","displayName":"Zo\u202ee","active":true}`); r.status != 200 {
		t.Fatalf("the record written back unchanged = %d %s", r.status, r.raw)
	}
	before := f.dump(t)
	for _, body := range []string{
		`{"userName":"zoe\u200b@example.com","displayName":"Zo\u202ee","title":"\u202eevil","active":true}`,
		`{"userName":"zo\u200be@example.com","displayName":"Zo\u202ee","active":true}`,
	} {
		if r := f.do(t, "PUT", "/scim/v2/Users/old-1", body); r.status != 400 {
			t.Errorf("a new value breaking the rules = %d %s", r.status, r.raw)
		}
	}
	if f.dump(t) != before {
		t.Error("a refused write changed the store")
	}

	// What a record holds in one place passes there only: moved into an
	// identifier it is held to the identifier's rule.
	if r := f.do(t, "POST", "/scim/v2/Users", `{"userName":"mallory@example.com","title":"alice\u200b@example.com","externalId":"m1"}`); r.status != 201 {
		t.Fatalf("create mallory = %d %s", r.status, r.raw)
	}
	mallory := f.do(t, "GET", "/scim/v2/Users?filter="+url.QueryEscape(`userName eq "mallory@example.com"`), "")
	id := mallory.body["Resources"].([]any)[0].(map[string]any)["id"].(string)
	moveTo := func(path string) string {
		return `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"replace","path":"` + path + `","value":"alice\u200b@example.com"}]}`
	}
	for _, path := range []string{"userName", "externalId"} {
		if r := f.do(t, "PATCH", "/scim/v2/Users/"+id, moveTo(path)); r.status != 400 {
			t.Errorf("the title's text moved into %s = %d %s", path, r.status, r.raw)
		}
	}
	g := f.do(t, "POST", "/scim/v2/Groups", `{"displayName":"Eng\u200bineering"}`)
	if g.status != 201 {
		t.Fatalf("create a group = %d %s", g.status, g.raw)
	}
	gid := g.body["id"].(string)
	patch := `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"replace","path":"externalId","value":"Eng\u200bineering"}]}`
	if r := f.do(t, "PATCH", "/scim/v2/Groups/"+gid, patch); r.status != 400 {
		t.Errorf("the group's name moved into its externalId = %d %s", r.status, r.raw)
	}

	// Characters drawn as nothing, or blank, that are not format
	// characters, and spaces.
	for _, c := range []string{`\u034f`, `\ufe0f`, `\u3164`, `\u2800`, `\u115f`, `\u17b4`, `\uffa0`, `\u3000`, `\u00a0`} {
		if r := f.do(t, "POST", "/scim/v2/Users", `{"userName":"alice`+c+`@example.com"}`); r.status != 400 {
			t.Errorf("a userName holding %s = %d %s", c, r.status, r.raw)
		}
	}
}

// stallingStore holds its first CreateUser until let go.
type stallingStore struct {
	storage.PeopleStore
	first       atomic.Bool
	held, letGo chan struct{}
}

func (s *stallingStore) CreateUser(ctx context.Context, u storage.User, a storage.AuditEvent) (storage.User, error) {
	if s.first.CompareAndSwap(false, true) {
		close(s.held)
		<-s.letGo
	}
	return s.PeopleStore.CreateUser(ctx, u, a)
}

// A recount keeps the writes still in flight: one let through before it
// and committed after still counts.
func TestPeopleBoundsKeepWritesInFlight(t *testing.T) {
	bounds(t, 2, 1, 1)
	countEvery = time.Minute
	f := newFixture(t)
	var mu sync.Mutex
	now := t0
	f.h.Now = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	st := &stallingStore{PeopleStore: f.h.Store, held: make(chan struct{}), letGo: make(chan struct{})}
	f.h.Store = st
	first := make(chan int, 1)
	go func() {
		r := httptest.NewRequest("POST", "https://sso.example.com/scim/v2/Users", strings.NewReader(`{"userName":"ada@example.com"}`))
		r.Header.Set("Authorization", "Bearer "+f.token)
		w := httptest.NewRecorder()
		f.h.ServeHTTP(w, r)
		first <- w.Code
	}()
	<-st.held
	mu.Lock()
	now = now.Add(countEvery) // the next write recounts, the first not yet stored
	mu.Unlock()
	if r := f.do(t, "POST", "/scim/v2/Users", `{"userName":"bob@example.com"}`); r.status != 201 {
		t.Fatalf("the second user = %d %s", r.status, r.raw)
	}
	if r := f.do(t, "POST", "/scim/v2/Users", `{"userName":"cy@example.com"}`); r.status != 403 {
		t.Errorf("a third user, the first still in flight = %d %s", r.status, r.raw)
	}
	close(st.letGo)
	if code := <-first; code != 201 {
		t.Fatalf("the first user = %d", code)
	}
	if c, err := f.store.CountPeople(t.Context()); err != nil || c.Users != 2 {
		t.Errorf("stored %d users (%v), bound 2", c.Users, err)
	}
}
