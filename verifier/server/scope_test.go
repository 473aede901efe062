package server_test

import (
	"context"
	"fmt"
	"slices"
	"testing"

	"github.com/clearance/clearance/internal/protoagent"
	adminv1 "github.com/clearance/clearance/proto/gen/clearance/admin/v1"
	agentv1 "github.com/clearance/clearance/proto/gen/clearance/agent/v1"
	"github.com/clearance/clearance/verifier/storage"
)

// TestScopedPolicyFailsOnlyItsPeoplesMacs: a policy for Engineering fails
// on every Mac. It makes failing only the Macs of someone in Engineering,
// and those whose people are not all known (held to every policy, as their
// sign-ins are); a Mac used only by people outside the group (assigned to
// alice, its one account hers) is compliant, the policy listed apart. GetDevice, ListDevices, --policy and the
// clearance_devices metric agree.
func TestScopedPolicyFailsOnlyItsPeoplesMacs(t *testing.T) {
	t.Parallel()
	h := startWith(t, engOnly(t))
	h.user(t, "u-alice", "alice@example.com")
	h.user(t, "u-bob", "bob@example.com")
	h.group(t, "g-eng", "Engineering", "u-bob")
	secret := h.secret()
	// Macs that stay connected, each failing eng-only, whose one local
	// account is the one named ("admin" binds no one here).
	mac := func(account string) *protoagent.Agent {
		t.Helper()
		a := h.enrolled(secret)
		st := h.connect(a)
		t.Cleanup(func() { st.Close() })
		r := a.Report(st.PolicySet, 1, h.clock.Now(), nil, agentv1.PolicyStatus_POLICY_STATUS_FAIL)
		r.Accounts = []*agentv1.LocalAccount{{Name: account, Console: true}}
		if m, err := st.Exchange(protoagent.Sign(a.Key, r)); err != nil || m.GetAck().GetSeq() != 1 {
			t.Fatalf("report: %v %v", m, err)
		}
		return a
	}
	alices, bobs, nobodys, strangers := mac("alice"), mac("bob"), mac("admin"), mac("admin")
	for _, as := range []struct {
		mac  *protoagent.Agent
		user string
	}{{alices, "alice@example.com"}, {bobs, "bob@example.com"}} {
		if _, err := h.admin.AssignDevice(h.ctx(), &adminv1.AssignDeviceRequest{DeviceId: as.mac.DeviceID, User: as.user}); err != nil {
			t.Fatal(err)
		}
	}
	// A username the directory does not hold: nobody's work.
	h.signedIn(t, strangers, "zed@example.com")

	list, err := h.admin.ListDevices(h.ctx(), &adminv1.ListDevicesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	sums := map[string]*adminv1.PostureSummary{}
	for _, d := range list.GetDevices() {
		sums[d.GetDeviceId()] = d.GetSummary()
	}
	for _, want := range []struct {
		what      string
		mac       *protoagent.Agent
		compliant bool
	}{
		{"alice's Mac (not in Engineering)", alices, true},
		{"bob's Mac (in Engineering)", bobs, false},
		{"a Mac whose people are not known", nobodys, false},
		{"a Mac only a stranger signed in from", strangers, false},
	} {
		s := sums[want.mac.DeviceID]
		failing, apart := []string{"eng-only"}, []string(nil)
		if want.compliant {
			failing, apart = nil, []string{"eng-only"}
		}
		if s.GetCompliant() != want.compliant || !slices.Equal(s.GetFailing(), failing) || !slices.Equal(s.GetFailingOutOfScope(), apart) {
			t.Errorf("%s: ListDevices summary %v, want compliant %v", want.what, s, want.compliant)
		}
		got, err := h.admin.GetDevice(h.ctx(), &adminv1.GetDeviceRequest{DeviceId: want.mac.DeviceID})
		if err != nil {
			t.Fatal(err)
		}
		if g := got.GetDevice().GetSummary(); g.GetCompliant() != want.compliant || !slices.Equal(g.GetFailingOutOfScope(), apart) {
			t.Errorf("%s: GetDevice summary %v, want compliant %v", want.what, g, want.compliant)
		}
	}

	h.srv.CountDevices(h.ctx())
	got := gauges(t, h, "clearance_devices")
	if got[`state="compliant"`] != 1 || got[`state="failing"`] != 3 {
		t.Errorf("clearance_devices = %v, want 1 compliant (alice's), 3 failing", got)
	}
}

// TestScopedPolicyHoldsWhenItsPeopleAreInDoubt: a Mac is judged for its
// people only when they are bound to it and all read. Assigned to 17, of
// whom only the 17th is in Engineering (16 are read), it is failing; its
// console user in Engineering never signed in and a visitor did, it is
// failing; its console user signed in, then 20 refused sign-ins by someone
// not bound to it came, it is failing, and the forecast still decides it
// for her; bound to no one, whoever signed in last, it is failing; so is
// one with an account that binds none of the people read: alice's pushed
// out of the sign-ins read by bob's, or never signed in from it at all.
// Assigned to bob, alice's account on it makes her one of its people.
func TestScopedPolicyHoldsWhenItsPeopleAreInDoubt(t *testing.T) {
	t.Parallel()
	h := startWith(t, engOnly(t))
	summary := func(mac *protoagent.Agent) *adminv1.PostureSummary {
		t.Helper()
		got, err := h.admin.GetDevice(h.ctx(), &adminv1.GetDeviceRequest{DeviceId: mac.DeviceID})
		if err != nil {
			t.Fatal(err)
		}
		return got.GetDevice().GetSummary()
	}
	failing := func(what string, mac *protoagent.Agent) {
		t.Helper()
		if s := summary(mac); s.GetCompliant() || !slices.Equal(s.GetFailing(), []string{"eng-only"}) || len(s.GetFailingOutOfScope()) != 0 {
			t.Errorf("%s: %v, want failing eng-only", what, s)
		}
	}
	notBound := func(mac *protoagent.Agent, name string, allow bool) {
		t.Helper()
		if _, err := h.srv.Store.AppendDecision(context.Background(), storage.DecisionRecord{At: h.clock.Now(), DeviceID: mac.DeviceID,
			Username: name, Source: "sso", Reason: "allowed", Allow: allow, UserNotBound: true}); err != nil {
			t.Fatal(err)
		}
	}

	shared := accountMac(t, h, []string{"admin"}, "eng-only")
	for i := range 17 {
		name := fmt.Sprintf("user%02d@example.com", i)
		h.user(t, fmt.Sprintf("u-%02d", i), name)
		if _, err := h.admin.AssignDevice(h.ctx(), &adminv1.AssignDeviceRequest{DeviceId: shared.DeviceID, User: name}); err != nil {
			t.Fatal(err)
		}
	}
	h.user(t, "u-alice", "alice@example.com")
	h.user(t, "u-bob", "bob@example.com")
	h.group(t, "g-eng", "Engineering", "u-16", "u-alice")
	failing("a Mac of 17 people, the 17th in Engineering", shared)

	visited := accountMac(t, h, []string{"alice"}, "eng-only")
	notBound(visited, "bob@example.com", true)
	failing("alice's Mac, a visitor's sign-in its only one", visited)

	flooded := accountMac(t, h, []string{"alice"}, "eng-only")
	h.signedIn(t, flooded, "alice@example.com")
	for range 20 {
		notBound(flooded, "bob@example.com", false)
	}
	failing("alice's Mac after 20 refused sign-ins by bob", flooded)
	if rows := forecastAll(t, h)[flooded.DeviceID]; len(rows) != 1 || rows[0].GetUsername() != "alice@example.com" || rows[0].GetUsernameSource() != "local_account" {
		t.Errorf("forecast of alice's flooded Mac: %v, want decided for alice, bound by her account", rows)
	}

	// Bound to no one, its latest sign-in bob's (under --user-binding off
	// nothing marks it): that may be a visitor, so it is failing.
	unbound := accountMac(t, h, []string{"admin"}, "eng-only")
	h.signedIn(t, unbound, "bob@example.com")
	failing("a Mac bound to no one, bob's sign-in its latest", unbound)

	// alice's and bob's accounts; bob (bound too) signs in 20 times after
	// her: her account binds no one read, so it is failing.
	pushed := accountMac(t, h, []string{"alice", "bob"}, "eng-only")
	h.signedIn(t, pushed, "alice@example.com")
	for range 20 {
		h.signedIn(t, pushed, "bob@example.com")
	}
	failing("alice's and bob's Mac after 20 sign-ins by bob", pushed)

	// Assigned to bob; alice's account is on it too and she signs in from
	// it: she is one of its people.
	assigned := accountMac(t, h, []string{"alice"}, "eng-only")
	h.signedIn(t, assigned, "alice@example.com")
	if _, err := h.admin.AssignDevice(h.ctx(), &adminv1.AssignDeviceRequest{DeviceId: assigned.DeviceID, User: "bob@example.com"}); err != nil {
		t.Fatal(err)
	}
	failing("bob's Mac alice signs in on with her account", assigned)

	// alice at the console, never signed in from it; bob signed in once.
	console := accountMac(t, h, []string{"alice", "bob"}, "eng-only")
	h.signedIn(t, console, "bob@example.com")
	failing("a Mac whose console user never signed in from it", console)

	// bob's account alone, and bob signing in: bob's Mac, not in
	// Engineering: compliant.
	bobs := accountMac(t, h, []string{"bob"}, "eng-only")
	h.signedIn(t, bobs, "bob@example.com")
	if s := summary(bobs); !s.GetCompliant() || !slices.Equal(s.GetFailingOutOfScope(), []string{"eng-only"}) {
		t.Errorf("bob's own Mac: %v, want compliant, eng-only apart", s)
	}
}
