package oktaapi_test

// Deny wins without hitting the wrong person, and nothing sticks, flaps
// or grows: what a second hostile read of the sync found, kept as tests.

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/clearance/clearance/internal/oktaorg"
	"github.com/clearance/clearance/verifier/oktaapi"
	"github.com/clearance/clearance/verifier/storage"
)

func scimUser(t *testing.T, store storage.Store, id, name, ext string) {
	t.Helper()
	if _, err := store.CreateUser(context.Background(), storage.User{ID: id, UserName: name, ExternalID: ext,
		Active: true, Source: storage.SourceSCIM, Resource: []byte(`{}`)}, storage.AuditEvent{Actor: "scim:t"}); err != nil {
		t.Fatal(err)
	}
}

// SCIM manages hank under the app username "hank" (externalId 00uH, active
// in Okta). Another, deactivated Okta user's login is "hank": that is not
// hank, whose externalId names 00uH, and he stays active.
func TestSyncUsernameMatchRespectsExternalID(t *testing.T) {
	org, s, store := hostileSyncer(t)
	scimUser(t, store, "5c1e01", "hank", "00uH")
	org.PutUser(oktaorg.User{ID: "00uH", Login: "hank.smith@example.com"})
	org.PutUser(oktaorg.User{ID: "00uZ", Login: "hank", Status: "DEPROVISIONED"}) // a former employee
	mustFull(t, s)
	if u, _ := store.GetUser(context.Background(), "5c1e01"); !u.Active {
		t.Errorf("hank (SCIM, externalId 00uH, ACTIVE in Okta) was deactivated because another Okta user 00uZ with login %q is deactivated", u.UserName)
	}
}

// A decoy SCIM user with the victim's Okta ID as externalId (a SCIM token
// holder's doing) shields nobody: Okta's deactivation reaches every SCIM
// user with that externalId.
func TestSyncDenyReachesEveryExternalIDHolder(t *testing.T) {
	org, s, store := hostileSyncer(t)
	scimUser(t, store, "5c1e01", "hank", "00uH")
	org.PutUser(oktaorg.User{ID: "00uH", Login: "hank@example.com"})
	mustFull(t, s)
	scimUser(t, store, "0000decoy", "decoy", "00uH") // any SCIM token holder; a random ID sorts first 1 in 16
	org.SetUserStatus("00uH", "SUSPENDED")
	for range 3 {
		mustFull(t, s)
	}
	if u, _ := store.GetUser(context.Background(), "5c1e01"); u.Active {
		t.Errorf("Okta suspended 00uH; after three full reconciliations hank (externalId 00uH) is still active: the deactivation went to the decoy")
	}
}

// A SCIM write that reactivates a person Okta deactivated lasts until the
// next full reconciliation (incremental reads see only the users Okta
// changed), which deactivates them again.
func TestSyncFullReconciliationUndoesSCIMReactivation(t *testing.T) {
	org, s, store := hostileSyncer(t)
	s.Interval = time.Hour
	ctx := context.Background()
	scimUser(t, store, "5c1e01", "hank", "00uH")
	org.PutUser(oktaorg.User{ID: "00uH", Login: "hank@example.com"})
	if _, err := s.Once(ctx); err != nil {
		t.Fatal(err)
	}
	org.SetUserStatus("00uH", "SUSPENDED")
	if _, err := s.Once(ctx); err != nil {
		t.Fatal(err)
	}
	u, _ := store.GetUser(ctx, "5c1e01")
	if u.Active {
		t.Fatal("setup: not deactivated")
	}
	// Any other user Okta changes afterwards (a busy org) moves the
	// watermark past hank's change by more than the overlap.
	time.Sleep(2200 * time.Millisecond)
	org.PutUser(oktaorg.User{ID: "00uX", Login: "other@example.com"})
	if _, err := s.Once(ctx); err != nil {
		t.Fatal(err)
	}
	u, _ = store.GetUser(ctx, "5c1e01")
	u.Active = true // then a SCIM PATCH active=true
	if _, err := store.UpdateUser(ctx, u, storage.AuditEvent{Actor: "scim:t"}); err != nil {
		t.Fatal(err)
	}
	if r, err := s.Once(ctx); err != nil || r.Full {
		t.Fatal(err, r)
	}
	if _, err := s.Full(ctx); err != nil {
		t.Fatal(err)
	}
	if u, _ := store.GetUser(ctx, "5c1e01"); u.Active {
		t.Errorf("Okta suspended 00uH; a SCIM reactivation survives a full reconciliation")
	}
}

// A member the store does not have when its group is read (here created
// and added between an incremental read's users and groups) is added by
// the next full reconciliation, which reads every group's members.
func TestSyncLateMemberAdded(t *testing.T) {
	org, c, _ := newOrg(t)
	store := openStore(t, t.TempDir())
	ht := &hookTransport{base: c.HTTP.Transport, path: "/api/v1/groups"}
	c.HTTP = &http.Client{Transport: ht}
	s := &oktaapi.Syncer{Client: c, Dir: &oktaapi.StoreDirectory{Store: store}, State: store, Interval: time.Hour}
	ctx := context.Background()
	org.PutUser(oktaorg.User{ID: "00uA", Login: "ann@example.com"})
	org.PutGroup("00gM", "macs-enforced")
	org.SetMember("00gM", "00uA", true)
	if _, err := s.Once(ctx); err != nil {
		t.Fatal(err)
	}
	time.Sleep(10 * time.Millisecond)
	ht.hook = func() {
		org.PutUser(oktaorg.User{ID: "00uB", Login: "ben@example.com"})
		org.SetMember("00gM", "00uB", true)
		// Another group changes a little later (a busy org).
		time.Sleep(2200 * time.Millisecond)
		org.PutGroup("00gO", "other")
	}
	for range 3 {
		if _, err := s.Once(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Full(ctx); err != nil {
		t.Fatal(err)
	}
	if gs := groupNames(t, store, "00uB"); len(gs) != 1 {
		t.Errorf("ben is in Okta's group macs-enforced; after 3 incremental reads and a full reconciliation his groups here are %v", gs)
	}
}

// Two synced users swap logins in Okta (or a chain of renames lands
// between two reads). Each rename would wait on the other's stored login;
// the full reconciliation parks them and stores both, so the store's
// alice@ is Okta's alice@, and her deactivation reaches her.
func TestSyncLoginSwap(t *testing.T) {
	org, s, store := hostileSyncer(t)
	org.PutUser(oktaorg.User{ID: "00uA", Login: "alice@example.com"})
	org.PutUser(oktaorg.User{ID: "00uB", Login: "bob@example.com"})
	org.PutGroup("00gE", "exempt")
	org.SetMember("00gE", "00uA", true)
	mustFull(t, s)
	org.PutUser(oktaorg.User{ID: "00uA", Login: "bob@example.com"})
	org.PutUser(oktaorg.User{ID: "00uB", Login: "alice@example.com"})
	for range 3 {
		mustFull(t, s)
	}
	if u := userByName(t, store, "alice@example.com"); u.ID != "00uB" {
		t.Errorf("Okta's alice@ is 00uB; after three full reconciliations the store's alice@ is %s (groups %v)", u.ID, groupNames(t, store, u.ID))
	}
	org.SetUserStatus("00uB", "SUSPENDED")
	mustFull(t, s)
	if u := userByName(t, store, "alice@example.com"); u.Active {
		t.Errorf("Okta suspended its alice@ (00uB); the store's alice@ (%s) is active", u.ID)
	}
}

// profilesSeen records the largest profile field the directory is given.
type profilesSeen struct {
	*oktaapi.StoreDirectory
	largest int
}

func (p *profilesSeen) UpsertUser(ctx context.Context, u oktaapi.DirUser) error {
	for _, f := range []string{u.Login, u.Email, u.GivenName, u.FamilyName} {
		p.largest = max(p.largest, len(f))
	}
	return p.StoreDirectory.UpsertUser(ctx, u)
}

// A full reconciliation reads everything before it writes, so it keeps no
// profile the store would refuse: 30 users with 400 KB names (one 12 MB
// page) are held as empty profiles from the moment they are read, and
// stored as nothing.
func TestSyncFullHoldsNoOversizedProfiles(t *testing.T) {
	org, c, _ := newOrg(t)
	store := openStore(t, t.TempDir())
	dir := &profilesSeen{StoreDirectory: &oktaapi.StoreDirectory{Store: store}}
	s := &oktaapi.Syncer{Client: c, Dir: dir, State: store}
	big := strings.Repeat("A", 400<<10)
	for i := range 30 {
		org.PutUser(oktaorg.User{ID: fmt.Sprintf("00u%03d", i), Login: fmt.Sprintf("u%d@example.com", i), FirstName: big + fmt.Sprint(i)})
	}
	org.PutUser(oktaorg.User{ID: "00uok", Login: "ok@example.com", FirstName: "Ok"})
	r := mustFull(t, s)
	if dir.largest > storage.MaxNameLen {
		t.Errorf("the directory was given a %d-byte profile field: the reconciliation held it", dir.largest)
	}
	if r.Users != 1 || r.Skipped != 30 {
		t.Errorf("sync %+v, want the one storable user and 30 skipped", r)
	}
}

// A SCIM user claiming an active synced user's Okta ID as externalId (a
// SCIM token holder's doing) does not remove that user's record.
func TestSyncExternalIDClaimKeepsSyncedUser(t *testing.T) {
	org, s, store := hostileSyncer(t)
	org.PutUser(oktaorg.User{ID: "00uV", Login: "victor@example.com"})
	org.PutGroup("00gE", "exempt")
	org.SetMember("00gE", "00uV", true)
	mustFull(t, s)
	scimUser(t, store, "5c1e0m", "mallory", "00uV")
	// The next time Okta changes victor (any profile edit) the sync acts.
	org.PutUser(oktaorg.User{ID: "00uV", Login: "victor@example.com", LastName: "Vance"})
	for range 2 {
		mustFull(t, s)
	}
	if _, err := store.GetUser(context.Background(), "00uV"); err != nil {
		t.Errorf("victor (ACTIVE in Okta) is gone from the store after a SCIM user claimed his Okta ID as externalId: %v; mallory's groups %v",
			err, groupNames(t, store, "5c1e0m"))
	}
}

// A reconciliation that finds Okta as it was counts no user as changed,
// whatever their status (the store keeps only active or not).
func TestSyncUnchangedStatusesNotCounted(t *testing.T) {
	org, s, _ := hostileSyncer(t)
	org.PutUser(oktaorg.User{ID: "00uL", Login: "lou@example.com", Status: "LOCKED_OUT"})
	org.PutUser(oktaorg.User{ID: "00uS", Login: "sue@example.com", Status: "SUSPENDED"})
	mustFull(t, s)
	if r := mustFull(t, s); r.Users != 0 {
		t.Errorf("a reconciliation that finds Okta as it was reports %d users changed", r.Users)
	}
}
