package server_test

import (
	"slices"
	"testing"

	"github.com/clearance/clearance/internal/protoagent"
	adminv1 "github.com/clearance/clearance/proto/gen/clearance/admin/v1"
	agentv1 "github.com/clearance/clearance/proto/gen/clearance/agent/v1"
)

// TestScopedPolicyFailsOnlyItsPeoplesMacs: a policy for Engineering fails
// on every Mac. It makes failing only the Macs of someone in Engineering,
// and those whose people are not known (held to every policy, as their
// sign-ins are); a Mac used only by people outside the group is compliant,
// the policy listed apart. GetDevice, ListDevices, --policy and the
// clearance_devices metric agree.
func TestScopedPolicyFailsOnlyItsPeoplesMacs(t *testing.T) {
	t.Parallel()
	h := startWith(t, engOnly(t))
	h.user(t, "u-alice", "alice@example.com")
	h.user(t, "u-bob", "bob@example.com")
	h.group(t, "g-eng", "Engineering", "u-bob")
	secret := h.secret()
	// Macs that stay connected, each failing eng-only, with local
	// accounts that bind no one here (the rule maps "admin" to no user).
	mac := func() *protoagent.Agent {
		t.Helper()
		a := h.enrolled(secret)
		st := h.connect(a)
		t.Cleanup(func() { st.Close() })
		r := a.Report(st.PolicySet, 1, h.clock.Now(), nil, agentv1.PolicyStatus_POLICY_STATUS_FAIL)
		r.Accounts = []*agentv1.LocalAccount{{Name: "admin", Console: true}}
		if m, err := st.Exchange(protoagent.Sign(a.Key, r)); err != nil || m.GetAck().GetSeq() != 1 {
			t.Fatalf("report: %v %v", m, err)
		}
		return a
	}
	alices, bobs, nobodys, strangers := mac(), mac(), mac(), mac()
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
