package oktaapi_test

// What a hostile or unusual org, a SCIM token holder and races do to the
// sync into the user store: deny wins, and nothing flaps.

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clearance/clearance/internal/oktaorg"
	"github.com/clearance/clearance/verifier/oktaapi"
	"github.com/clearance/clearance/verifier/scim"
	"github.com/clearance/clearance/verifier/storage"
)

func hostileSyncer(t *testing.T) (*oktaorg.Org, *oktaapi.Syncer, storage.Store) {
	t.Helper()
	org, c, _ := newOrg(t)
	store := openStore(t, t.TempDir())
	s := &oktaapi.Syncer{Client: c, Dir: &oktaapi.StoreDirectory{Store: store}, State: store}
	return org, s, store
}

func mustFull(t *testing.T, s *oktaapi.Syncer) oktaapi.SyncResult {
	t.Helper()
	r, err := s.Full(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// A deactivation in Okta lands even when the same record carries a field
// the store refuses: the rest is not stored, the deactivation is.
func TestSyncDeactivationLandsDespiteUnstorableField(t *testing.T) {
	org, s, store := hostileSyncer(t)
	org.PutUser(oktaorg.User{ID: "00uA", Login: "alice@example.com", FirstName: "Alice"})
	mustFull(t, s)
	if !userByName(t, store, "alice@example.com").Active {
		t.Fatal("setup: alice not active")
	}
	org.PutUser(oktaorg.User{ID: "00uA", Login: "alice@example.com", FirstName: strings.Repeat("A", 600), Status: "DEPROVISIONED"})
	r := mustFull(t, s)
	if u := userByName(t, store, "alice@example.com"); u.Active {
		t.Errorf("Okta deactivated alice but the store keeps her active (sync %+v)", r)
	}
}

// Same with a rename the store refuses (the new login is a SCIM user's).
func TestSyncDeactivationLandsDespiteRenameCollision(t *testing.T) {
	org, s, store := hostileSyncer(t)
	if _, err := store.CreateUser(context.Background(), storage.User{ID: "scim-1", UserName: "bob@example.com", Active: true,
		Source: storage.SourceSCIM, Resource: []byte(`{}`)}, storage.AuditEvent{Actor: "scim:t"}); err != nil {
		t.Fatal(err)
	}
	org.PutUser(oktaorg.User{ID: "00uA", Login: "alice@example.com"})
	mustFull(t, s)
	org.PutUser(oktaorg.User{ID: "00uA", Login: "BOB@example.com", Status: "SUSPENDED"})
	r := mustFull(t, s)
	if u := userByName(t, store, "alice@example.com"); u.Active || u.Source != storage.SourceOktaAPI {
		t.Errorf("Okta suspended 00uA (renamed onto a SCIM login); the store keeps %q active: %+v (sync %+v)", u.UserName, u.Active, r)
	}
}

// Two Okta user IDs with one login (a hostile org, or a login reused
// while the old holder is renamed): the first holder keeps it, and the
// record never flips between them (each flip would take the other's
// groups and Macs with it).
func TestSyncDuplicateLoginDoesNotFlap(t *testing.T) {
	org, s, store := hostileSyncer(t)
	org.PutUser(oktaorg.User{ID: "00uA", Login: "dup@example.com"})
	org.PutUser(oktaorg.User{ID: "00uB", Login: "DUP@example.com", Status: "DEPROVISIONED"})
	org.PutGroup("00gX", "exempt")
	org.SetMember("00gX", "00uA", true)
	var ids []string
	var actives []bool
	for range 4 {
		mustFull(t, s)
		u := userByName(t, store, "dup@example.com")
		ids, actives = append(ids, u.ID), append(actives, u.Active)
	}
	if ids[0] != ids[1] || ids[1] != ids[2] {
		t.Errorf("the record for one login flaps between Okta IDs %v (active %v); each flip deletes the other's memberships and Mac bindings", ids, actives)
	}
}

// deleteRace runs hook just before a DeleteUser reaches the store, as a
// concurrent SCIM request would.
type deleteRace struct {
	storage.Store
	once sync.Once
	hook func()
}

func (d *deleteRace) DeleteUser(ctx context.Context, id string, version int64, a storage.AuditEvent) error {
	d.once.Do(d.hook)
	return d.Store.DeleteUser(ctx, id, version, a)
}

// A delete is made at the version the sync read: a SCIM takeover in
// between is not deleted.
func TestSyncDeleteSparesSCIMTakeover(t *testing.T) {
	org, c, _ := newOrg(t)
	store := openStore(t, t.TempDir())
	_, tok, err := scim.CreateToken(context.Background(), store, "okta", "cli", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	h := &scim.Handler{Store: store, BaseURL: "https://sso.example.com/scim/v2"}
	race := &deleteRace{Store: store}
	s := &oktaapi.Syncer{Client: c, Dir: &oktaapi.StoreDirectory{Store: race}, State: store}
	org.PutUser(oktaorg.User{ID: "00uA", Login: "carol@example.com"})
	mustFull(t, s)
	org.SetUserStatus("00uA", "DEPROVISIONED")
	org.DeleteUser("00uA")
	race.hook = func() {
		// SCIM creates carol (Okta assigned her to the app): a takeover.
		scimCreateUser(t, h, tok, "carol@example.com", false)
	}
	mustFull(t, s)
	if _, err := store.GetUserByName(context.Background(), "carol@example.com"); err != nil {
		t.Errorf("the API sync deleted a record SCIM had just taken over (SCIM-managed, deactivated): %v", err)
	}
}

// hookTransport runs hook before the first request whose path is exactly path.
type hookTransport struct {
	base http.RoundTripper
	path string
	once sync.Once
	hook func()
}

func (h *hookTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.URL.Path == h.path && h.hook != nil {
		h.once.Do(h.hook)
	}
	return h.base.RoundTrip(r)
}

// Users and groups keep their own watermarks: a user changed after the
// users were read, but before a group that changed later was read, is seen
// by the next incremental read.
func TestSyncWatermarkPerKind(t *testing.T) {
	org, c, _ := newOrg(t)
	store := openStore(t, t.TempDir())
	ht := &hookTransport{base: c.HTTP.Transport, path: "/api/v1/groups"}
	c.HTTP = &http.Client{Transport: ht}
	s := &oktaapi.Syncer{Client: c, Dir: &oktaapi.StoreDirectory{Store: store}, State: store}
	org.PutUser(oktaorg.User{ID: "00uA", Login: "dave@example.com"})
	org.PutUser(oktaorg.User{ID: "00uB", Login: "erin@example.com"})
	org.PutGroup("00gX", "staff")
	mustFull(t, s)
	ctx := context.Background()
	since := func(name string) time.Time {
		v, _ := store.OktaCursor(ctx, name)
		t, _ := time.Parse(time.RFC3339Nano, v)
		return t
	}
	ht.hook = func() {
		org.SetUserStatus("00uA", "DEPROVISIONED") // lands after the users read
		time.Sleep(2100 * time.Millisecond)        // > DefaultOverlap
		org.SetMember("00gX", "00uB", true)        // a later group change
	}
	time.Sleep(5 * time.Millisecond)
	if _, err := s.Incremental(ctx, since("sync_since_users"), since("sync_since_groups")); err != nil {
		t.Fatal(err)
	}
	for range 3 { // the minutely reads that follow
		if _, err := s.Incremental(ctx, since("sync_since_users"), since("sync_since_groups")); err != nil {
			t.Fatal(err)
		}
	}
	if userByName(t, store, "dave@example.com").Active {
		t.Errorf("dave was deactivated in Okta; four incremental reads later he is still active (only the next full reconciliation sees it)")
	}
}

// A SCIM create (any SCIM token holder) over a synced user Okta has
// deactivated makes it SCIM's, but Okta's deactivation still applies:
// deny wins.
func TestSyncDenyWinsOverSCIMTakeover(t *testing.T) {
	org, s, store := hostileSyncer(t)
	_, tok, err := scim.CreateToken(context.Background(), store, "okta", "cli", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	h := &scim.Handler{Store: store, BaseURL: "https://sso.example.com/scim/v2"}
	org.PutUser(oktaorg.User{ID: "00uF", Login: "frank@example.com", Status: "DEPROVISIONED"})
	org.PutGroup("00gX", "exempt")
	org.SetMember("00gX", "00uF", true)
	mustFull(t, s)
	scimCreateUser(t, h, tok, "Frank@example.com", true)
	mustFull(t, s)
	u := userByName(t, store, "frank@example.com")
	if u.Source != storage.SourceSCIM || u.ID != "00uF" {
		t.Errorf("frank after the takeover: %+v", u)
	}
	if u.Active {
		t.Errorf("a user Okta deactivated is active after a SCIM create and a full API reconciliation")
	}
}

// A member list names records by ID: one whose ID is a SCIM user's (no
// real org's IDs are) puts that user in the group, as for any member.
func TestSyncMembersByStoreID(t *testing.T) {
	org, s, store := hostileSyncer(t)
	if _, err := store.CreateUser(context.Background(), storage.User{ID: "5c1e0000000000000000000000000009", UserName: "gina@example.com",
		Active: true, Source: storage.SourceSCIM, Resource: []byte(`{}`)}, storage.AuditEvent{Actor: "scim:t"}); err != nil {
		t.Fatal(err)
	}
	// Okta lists a "user" whose ID is the SCIM user's store ID.
	org.PutUser(oktaorg.User{ID: "5c1e0000000000000000000000000009", Login: "ghost@example.com"})
	org.PutGroup("00gX", "exempt")
	org.SetMember("00gX", "5c1e0000000000000000000000000009", true)
	mustFull(t, s)
	// Okta's IDs are never a SCIM user's issued ID in a real org; the
	// record that ID names is the member, whatever its source.
	if gs := groupNames(t, store, "5c1e0000000000000000000000000009"); len(gs) != 1 {
		t.Errorf("groups %v", gs)
	}
}

// Okta's SCIM app username often differs from the Okta login. SCIM keeps
// the person under the app username (externalId = Okta ID); the API sync
// makes no second record of them, maps their memberships to the SCIM
// user, and applies Okta's deactivation to it.
func TestSyncSCIMUserByExternalID(t *testing.T) {
	org, s, store := hostileSyncer(t)
	if _, err := store.CreateUser(context.Background(), storage.User{ID: "5c1e01", UserName: "hank", ExternalID: "00uH",
		Active: true, Source: storage.SourceSCIM, Resource: []byte(`{}`)}, storage.AuditEvent{Actor: "scim:t"}); err != nil {
		t.Fatal(err)
	}
	org.PutUser(oktaorg.User{ID: "00uH", Login: "hank@example.com"})
	org.PutGroup("00gC", "contractors")
	org.SetMember("00gC", "00uH", true)
	mustFull(t, s)
	if _, err := store.GetUserByName(context.Background(), "hank@example.com"); err == nil {
		t.Error("a second, API record for the person SCIM manages as hank")
	}
	if g := groupNames(t, store, "5c1e01"); len(g) != 1 || g[0] != "contractors" {
		t.Errorf("the SCIM user whose externalId is 00uH has groups %v, want 00uH's API group", g)
	}
	// Okta deactivates 00uH: deny wins over SCIM's active.
	org.SetUserStatus("00uH", "SUSPENDED")
	mustFull(t, s)
	if u, _ := store.GetUser(context.Background(), "5c1e01"); u.Active || u.Source != storage.SourceSCIM {
		t.Errorf("after Okta suspended 00uH, hank is %+v", u)
	}
}

// Okta statuses the sync does not know (a new one, an empty one) are not
// active: only the statuses of a user who may sign in are.
func TestSyncUnknownStatusInactive(t *testing.T) {
	org, s, store := hostileSyncer(t)
	org.PutUser(oktaorg.User{ID: "00uI", Login: "ivy@example.com", Status: "DEPROVISIONING"})
	mustFull(t, s)
	if userByName(t, store, "ivy@example.com").Active {
		t.Error("an unknown status is stored active")
	}
}

// scimCreateUser has Okta create a user over SCIM, as its provisioning does.
func scimCreateUser(t *testing.T, h http.Handler, token, userName string, active bool) {
	t.Helper()
	body := fmt.Sprintf(`{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":%q,"active":%t}`, userName, active)
	r := httptest.NewRequest("POST", "https://sso.example.com/scim/v2/Users", strings.NewReader(body))
	r.Header.Set("Authorization", "Bearer "+token)
	r.Header.Set("Content-Type", "application/scim+json")
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	if w.Code != 201 {
		t.Fatalf("scim create %d %s", w.Code, w.Body)
	}
}
