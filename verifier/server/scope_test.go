package server_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/clearance/clearance/internal/protoagent"
	adminv1 "github.com/clearance/clearance/proto/gen/clearance/admin/v1"
	agentv1 "github.com/clearance/clearance/proto/gen/clearance/agent/v1"
	"github.com/clearance/clearance/verifier/config"
	"github.com/clearance/clearance/verifier/storage"
	"google.golang.org/protobuf/types/known/durationpb"
)

// strictPeople is engOnly's policy file under --user-binding enforce and
// --scim-users required: only provisioned users bound to a Mac sign in
// from it.
func strictPeople(t *testing.T, rule string) func(*config.Config) {
	file := filepath.Join(t.TempDir(), "policies.yaml")
	if err := os.WriteFile(file, []byte(engOnlyPolicies), 0o600); err != nil {
		t.Fatal(err)
	}
	return func(c *config.Config) {
		c.Policies, c.UserBinding, c.SCIMUsers, c.UserBindingRule = file, "enforce", "required", rule
	}
}

// scopeRig is a verifier whose Macs stay connected, each failing eng-only
// with the local accounts named.
type scopeRig struct {
	*harness
	t      *testing.T
	secret string
}

func (r scopeRig) mac(accounts ...string) *protoagent.Agent {
	r.t.Helper()
	a := r.enrolled(r.secret)
	st := r.connect(a)
	r.t.Cleanup(func() { st.Close() })
	rep := a.Report(st.PolicySet, 1, r.clock.Now(), nil, agentv1.PolicyStatus_POLICY_STATUS_FAIL)
	for i, name := range accounts {
		rep.Accounts = append(rep.Accounts, &agentv1.LocalAccount{Name: name, Console: i == 0})
	}
	if m, err := st.Exchange(protoagent.Sign(a.Key, rep)); err != nil || m.GetAck().GetSeq() != 1 {
		r.t.Fatalf("report: %v %v", m, err)
	}
	return a
}

func (r scopeRig) summary(mac *protoagent.Agent) *adminv1.PostureSummary {
	r.t.Helper()
	got, err := r.admin.GetDevice(r.ctx(), &adminv1.GetDeviceRequest{DeviceId: mac.DeviceID})
	if err != nil {
		r.t.Fatal(err)
	}
	return got.GetDevice().GetSummary()
}

// is checks the Mac's summary: compliant with eng-only apart, or failing
// it; and that what sign-in would decide for each named person agrees:
// blocked by eng-only where the Mac is failing for them.
func (r scopeRig) is(what string, mac *protoagent.Agent, compliant bool, people ...string) {
	r.t.Helper()
	s := r.summary(mac)
	switch {
	case compliant && (!s.GetCompliant() || !slices.Equal(s.GetFailingOutOfScope(), []string{"eng-only"}) || len(s.GetFailing()) != 0):
		r.t.Errorf("%s: %v, want compliant, eng-only apart", what, s)
	case !compliant && (s.GetCompliant() || !slices.Equal(s.GetFailing(), []string{"eng-only"}) || len(s.GetFailingOutOfScope()) != 0):
		r.t.Errorf("%s: %v, want failing eng-only", what, s)
	}
	if !compliant {
		return
	}
	// Compliant: no one who may sign in from it is blocked by eng-only.
	for _, name := range people {
		ex, err := r.admin.ExplainAccess(r.ctx(), &adminv1.ExplainAccessRequest{DeviceId: mac.DeviceID, Username: name})
		if err != nil {
			r.t.Fatal(err)
		}
		for _, f := range ex.GetFailing() {
			if f.GetPolicyId() == "eng-only" && ex.GetReason() != "user_not_bound" && ex.GetReason() != "user_not_provisioned" {
				r.t.Errorf("%s: compliant, but %s would be held to eng-only: %v", what, name, ex)
			}
		}
	}
}

// TestScopedPolicyFailsOnlyItsPeoplesMacs: a required policy for
// Engineering fails on every Mac. Under --user-binding enforce and
// --scim-users required, only provisioned users bound to a Mac sign in from
// it, so a Mac is failing only if one of them is in Engineering: its people
// are those assigned to it and every active user the binding rule binds to
// one of its accounts. ListDevices, GetDevice, --policy and the
// clearance_devices metric agree, and so does what sign-in decides.
func TestScopedPolicyFailsOnlyItsPeoplesMacs(t *testing.T) {
	t.Parallel()
	h := startWith(t, strictPeople(t, ""))
	r := scopeRig{h, t, h.secret()}
	for _, u := range []struct{ id, name, email string }{
		{"u-alice", "alice@example.com", ""}, {"u-bob", "bob@example.com", ""},
		{"u-jdoe-a", "jdoe@a.example", ""}, {"u-jdoe-b", "jdoe@b.example", ""},
		{"u-kim", "kim@example.com", ""}, {"u-old", "old@example.com", ""},
	} {
		h.user(t, u.id, u.name)
	}
	h.group(t, "g-eng", "Engineering", "u-bob", "u-jdoe-a", "u-old")

	alices := r.mac("alice")
	r.is("alice's Mac (her account; not in Engineering)", alices, true, "alice@example.com", "bob@example.com")
	r.is("bob's Mac (in Engineering)", r.mac("bob"), false)
	r.is("alice's and bob's Mac", r.mac("alice", "bob"), false)
	// One account, two users it binds: jdoe@a is in Engineering.
	r.is("jdoe's Mac, two jdoes", r.mac("jdoe"), false)
	// An account no one is: no one signs in from it.
	r.is("a Mac no one is bound to", r.mac("admin"), false)
	// Assigned to kim, alice's account on it: both its people.
	shared := r.mac("alice")
	if _, err := h.admin.AssignDevice(h.ctx(), &adminv1.AssignDeviceRequest{DeviceId: shared.DeviceID, User: "kim@example.com"}); err != nil {
		t.Fatal(err)
	}
	r.is("alice's Mac assigned to kim", shared, true, "alice@example.com", "kim@example.com", "bob@example.com")
	if _, err := h.admin.AssignDevice(h.ctx(), &adminv1.AssignDeviceRequest{DeviceId: shared.DeviceID, User: "bob@example.com"}); err != nil {
		t.Fatal(err)
	}
	r.is("alice's Mac assigned to bob too", shared, false)
	// A deactivated Engineering user's account: they sign in nowhere.
	olds := r.mac("old", "alice")
	old, err := h.srv.Store.GetUser(context.Background(), "u-old")
	if err != nil {
		t.Fatal(err)
	}
	old.Active = false
	if _, err := h.srv.Store.UpdateUser(context.Background(), old, storage.AuditEvent{At: h.clock.Now(), Actor: "test", Action: "user.deactivate"}); err != nil {
		t.Fatal(err)
	}
	r.is("a Mac with a deactivated Engineering user's account", olds, true, "alice@example.com", "old@example.com")

	list, err := h.admin.ListDevices(h.ctx(), &adminv1.ListDevicesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	compliant := 0
	for _, d := range list.GetDevices() {
		if d.GetSummary().GetCompliant() {
			compliant++
		}
	}
	h.srv.CountDevices(h.ctx())
	if got := gauges(t, h, "clearance_devices"); compliant != 2 || got[`state="compliant"`] != 2 || got[`state="failing"`] != 5 {
		t.Errorf("ListDevices compliant %d, clearance_devices %v; want 2 compliant, 5 failing", compliant, got)
	}
	failing, err := h.admin.ListDevices(h.ctx(), &adminv1.ListDevicesRequest{PolicyId: "eng-only"})
	if err != nil || len(failing.GetDevices()) != 7 {
		t.Errorf("ListDevices policy_id eng-only: %d devices (%v), want every Mac", len(failing.GetDevices()), err)
	}
}

// TestScopedPolicyHoldsUnlessOnlyBoundPeopleSignIn: under --user-binding
// warn (the default) anyone may sign in from any Mac, and under
// --scim-users optional a username Okta never provisioned may, its groups
// unknown: every Mac is held to every policy, as such a sign-in is.
// Under a {local}@ rule, an account binds the user whose e-mail it makes.
func TestScopedPolicyHoldsUnlessOnlyBoundPeopleSignIn(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		set       func(*config.Config)
		compliant bool
	}{
		{"warn", func(c *config.Config) { c.UserBinding = "warn" }, false},
		{"optional", func(c *config.Config) { c.SCIMUsers = "optional" }, false},
		{"rule", func(c *config.Config) { c.UserBindingRule = "{local}@example.com" }, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			strict := strictPeople(t, "")
			h := startWith(t, func(c *config.Config) { strict(c); tc.set(c) })
			r := scopeRig{h, t, h.secret()}
			h.user(t, "u-alice", "alice@example.com")
			h.user(t, "u-bob", "bob@example.com")
			h.group(t, "g-eng", "Engineering", "u-bob")
			r.is(tc.name+": alice's Mac", r.mac("alice"), tc.compliant, "alice@example.com", "bob@example.com")
		})
	}
}

// A policy for everyone beside engOnly's.
const scopedAndBasePolicies = engOnlyPolicies + `  - id: base
    name: Base check
    query: SELECT 2
    resolution: Fix it.
    enforcement: warn
`

// TestScopedRunIsNotDated: the run of failures failing_since dates is
// recorded against every required policy, so a Mac judged without a policy
// out of its people's scope has no failing_since or compliant_since: one
// that failed eng-only (not its people's) for hours and base since a
// moment ago is not listed by failing_for 2h as failing that long.
func TestScopedRunIsNotDated(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "policies.yaml")
	if err := os.WriteFile(file, []byte(scopedAndBasePolicies), 0o600); err != nil {
		t.Fatal(err)
	}
	h := startWith(t, func(c *config.Config) {
		c.Policies, c.UserBinding, c.SCIMUsers = file, "enforce", "required"
	})
	h.user(t, "u-alice", "alice@example.com")
	a := h.enrolled(h.secret())
	st := h.connect(a)
	defer st.Close()
	send := func(seq uint64, failing ...string) {
		t.Helper()
		rep := a.Report(st.PolicySet, seq, h.clock.Now(), nil, agentv1.PolicyStatus_POLICY_STATUS_PASS)
		for _, res := range rep.Results {
			if slices.Contains(failing, res.GetPolicyId()) {
				res.Status = agentv1.PolicyStatus_POLICY_STATUS_FAIL
			}
		}
		rep.Accounts = []*agentv1.LocalAccount{{Name: "alice", Console: true}}
		if m, err := st.Exchange(protoagent.Sign(a.Key, rep)); err != nil || m.GetAck().GetSeq() != seq {
			t.Fatalf("report %d: %v %v", seq, m, err)
		}
	}
	summary := func() *adminv1.PostureSummary {
		t.Helper()
		got, err := h.admin.GetDevice(h.ctx(), &adminv1.GetDeviceRequest{DeviceId: a.DeviceID})
		if err != nil {
			t.Fatal(err)
		}
		return got.GetDevice().GetSummary()
	}
	send(1, "eng-only")
	if s := summary(); !s.GetCompliant() || s.GetCompliantSince() != nil || s.GetFailingSince() != nil {
		t.Errorf("failing eng-only only, not its people's: %v, want compliant, its run undated", s)
	}
	h.clock.Add(3 * time.Hour)
	send(2, "eng-only", "base")
	waitFor(t, "the Mac failing base", func() bool { return !summary().GetCompliant() })
	if s := summary(); s.GetFailingSince() != nil {
		t.Errorf("failing base since a moment ago: failing_since %v, want none (the run began with eng-only)", s.GetFailingSince().AsTime())
	}
	list, err := h.admin.ListDevices(h.ctx(), &adminv1.ListDevicesRequest{FailingFor: durationpb.New(2 * time.Hour)})
	if err != nil || len(list.GetDevices()) != 0 {
		t.Errorf("failing_for 2h: %v (%v), want none", list.GetDevices(), err)
	}
}
