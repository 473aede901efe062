package access

import (
	"context"
	"path/filepath"
	"testing"

	agentv1 "github.com/clearance/clearance/proto/gen/clearance/agent/v1"
	"github.com/clearance/clearance/verifier/decision"
	"github.com/clearance/clearance/verifier/reason"
	"github.com/clearance/clearance/verifier/storage"
	"github.com/clearance/clearance/verifier/storage/sqlite"
)

type scopes map[string]decision.Scope

func (s scopes) Scopes() map[string]decision.Scope { return s }

// TestLookAlikeUsername: a sign-in as a look-alike of a provisioned
// username (a Kelvin sign for the k of kate@) is not that user: it is not
// provisioned unless provisioned itself, has none of their groups, and
// binds neither to the Mac the admin assigned them nor through the Mac's
// local account named after them. The same username in other ASCII case
// is the user, with all of these.
func TestLookAlikeUsername(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	people, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "clearance.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { people.Close() })
	audit := storage.AuditEvent{At: now, Actor: "test", Action: "setup"}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(people.CreateEnrollSecret(ctx, storage.EnrollSecret{ID: "s", Hash: []byte("h"), CreatedAt: now}, audit))
	dev, _, err := people.EnrollDevice(ctx, storage.Enrollment{
		Device: storage.Device{ID: "dev1", HardwareUUID: "HW-1", Platform: "darwin", PublicKey: []byte("key"),
			CertSerial: "c1", CertNotAfter: now.Add(24 * 3600e9), EnrolledAt: now},
		Cert:     storage.Cert{Serial: "c1", Kind: "device", NotBefore: now, NotAfter: now.Add(24 * 3600e9), DER: []byte("der")},
		SecretID: "s",
		Audit:    audit,
	})
	must(err)
	user := func(id, name string) storage.User {
		return storage.User{ID: id, UserName: name, Email: name, Active: true, Resource: []byte(`{}`), CreatedAt: now, UpdatedAt: now}
	}
	_, err = people.CreateUser(ctx, user("u-kate", "kate@example.com"), audit)
	must(err)
	_, err = people.CreateGroup(ctx, storage.Group{ID: "g-kiosk", DisplayName: "Kiosk", Members: []string{"u-kate"},
		CreatedAt: now, UpdatedAt: now}, audit)
	must(err)
	must(people.BindDevice(ctx, storage.DeviceUser{DeviceID: dev.ID, UserID: "u-kate", Source: "admin", CreatedAt: now}, audit))

	const kate, lookAlike = "KATE@example.com", "\u212Aate@example.com"
	// FileVault is off on the Mac, whose one local account is kate; Kiosk
	// members are exempt from FileVault.
	off := report(agentv1.PolicyStatus_POLICY_STATUS_FAIL, now)
	off.Accounts = []*agentv1.LocalAccount{{Name: "kate"}}
	decide := func(username string, rules PeopleRules) decision.Decision {
		t.Helper()
		g := gate(&fakeStore{dev: &dev, report: stored(off)}, &fakeChecker{})
		g.People, g.Rules = people, rules
		g.Scopes = scopes{"filevault": {Exclude: []string{"Kiosk"}}}
		d, err := g.Decide(ctx, Query{DeviceID: dev.ID, Username: username}, StoredOnly)
		must(err)
		return d
	}
	provisioned := PeopleRules{RequireProvisioned: true, Binding: decision.BindingEnforce, BindingRule: DefaultBindingRule}
	anyone := PeopleRules{Binding: decision.BindingEnforce, BindingRule: DefaultBindingRule}

	if d := decide(kate, provisioned); !d.Allow {
		t.Fatalf("kate herself: %s, want allowed (provisioned, bound, exempt as a Kiosk member)", d.Reason)
	}
	if d := decide(lookAlike, provisioned); d.Allow || d.Reason != reason.UserUnknown {
		t.Errorf("the look-alike, with provisioning required: allow %v %s, want %s", d.Allow, d.Reason, reason.UserUnknown)
	}
	// Not provisioned: the Mac's account kate does not bind the look-alike.
	if d := decide(lookAlike, anyone); d.Allow || d.Reason != reason.UserNotBound {
		t.Errorf("the look-alike, not provisioned: allow %v %s, want %s", d.Allow, d.Reason, reason.UserNotBound)
	}
	if Binds(DefaultBindingRule, "kate", storage.User{UserName: lookAlike}) || Binds(DefaultBindingRule, "\u212Aate", storage.User{UserName: "kate@example.com"}) ||
		Binds("{local}@example.com", "\u212Aate", storage.User{UserName: "kate@example.com", Email: "kate@example.com"}) {
		t.Error("a look-alike account name binds")
	}

	// Provisioned as a user of its own (which the look-alike now can be),
	// it has its own record: none of kate's groups, none of her Macs.
	_, err = people.CreateUser(ctx, user("u-lookalike", lookAlike), audit)
	must(err)
	if d := decide(lookAlike, provisioned); d.Allow || d.Reason != reason.UserNotBound {
		t.Errorf("the look-alike, provisioned: allow %v %s, want %s", d.Allow, d.Reason, reason.UserNotBound)
	}
	warn := provisioned
	warn.Binding = decision.BindingWarn
	if d := decide(lookAlike, warn); d.Allow || len(d.Failing) != 1 || d.Failing[0].PolicyID != "filevault" {
		t.Errorf("the look-alike, binding only warned: allow %v %s failing %+v, want FileVault to apply (not a Kiosk member)",
			d.Allow, d.Reason, d.Failing)
	}
	if d := decide(kate, warn); !d.Allow || d.BindingMismatch {
		t.Errorf("kate after the look-alike is provisioned: allow %v %s mismatch %v", d.Allow, d.Reason, d.BindingMismatch)
	}
}
