package server_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	adminv1 "github.com/clearance/clearance/proto/gen/clearance/admin/v1"
	agentv1 "github.com/clearance/clearance/proto/gen/clearance/agent/v1"
)

// TestDeviceStateInTheAdminAPI: a device's state says what its sign-ins
// meet now, as the clearance_devices metric counts it: a compliant Mac
// whose latest report is older than --max-posture-age is "stale" (its
// sign-ins are refused until it reports), not compliant; the summary
// lists the policies that are not required and fail too.
func TestDeviceStateInTheAdminAPI(t *testing.T) {
	t.Parallel()
	e := startSSO(t, true, nil)
	good, _ := e.device(t, agentv1.PolicyStatus_POLICY_STATUS_PASS, nil)
	bad, _ := e.device(t, agentv1.PolicyStatus_POLICY_STATUS_FAIL, nil)
	device := func(id string) *adminv1.Device {
		t.Helper()
		r, err := e.admin.GetDevice(e.ctx(), &adminv1.GetDeviceRequest{DeviceId: id})
		if err != nil {
			t.Fatal(err)
		}
		return r.GetDevice()
	}
	if d := device(good.DeviceID); d.GetState() != "compliant" || !d.GetSummary().GetCompliant() {
		t.Errorf("the passing Mac: state %q, summary %v", d.GetState(), d.GetSummary())
	}
	d := device(bad.DeviceID)
	if d.GetState() != "failing" || !slices.Contains(d.GetSummary().GetFailing(), "filevault") || !slices.Equal(d.GetSummary().GetAdvisoryFailing(), []string{"screen-lock"}) {
		t.Errorf("the failing Mac: state %q, summary %v", d.GetState(), d.GetSummary())
	}

	e.clock.Add(e.cfg.MaxPostureAge + time.Minute)
	if d := device(good.DeviceID); d.GetState() != "stale" || !d.GetSummary().GetCompliant() {
		t.Errorf("the passing Mac, its report old: state %q, summary %v", d.GetState(), d.GetSummary())
	}
	list, err := e.admin.ListDevices(e.ctx(), &adminv1.ListDevicesRequest{})
	if err != nil || len(list.GetDevices()) != 2 || list.GetDevices()[0].GetState() != "stale" || list.GetDevices()[1].GetState() != "stale" {
		t.Errorf("ListDevices: %v %v", list, err)
	}
	ex, err := e.admin.ExplainAccess(e.ctx(), &adminv1.ExplainAccessRequest{DeviceId: good.DeviceID})
	if err != nil || ex.GetReason() != "stale_posture" {
		t.Errorf("ExplainAccess of the stale Mac: %v %v", ex, err)
	}
	// Offline and old: stale, which is what its sign-ins meet.
	e.clock.Add(-(e.cfg.MaxPostureAge + time.Minute))
	third, st := e.device(t, agentv1.PolicyStatus_POLICY_STATUS_PASS, nil)
	st.Close()
	waitFor(t, "the third Mac disconnected", func() bool { return device(third.DeviceID).GetState() == "offline" })
	e.clock.Add(e.cfg.MaxPostureAge + time.Minute)
	if d := device(third.DeviceID); d.GetState() != "stale" {
		t.Errorf("an offline Mac with an old report: state %q", d.GetState())
	}
	if _, err := e.admin.RevokeDevice(e.ctx(), &adminv1.RevokeDeviceRequest{DeviceId: bad.DeviceID, Reason: "lost"}); err != nil {
		t.Fatal(err)
	}
	if d := device(bad.DeviceID); d.GetState() != "revoked" {
		t.Errorf("the revoked Mac: state %q", d.GetState())
	}
}

// TestFactsFollowTheMac: the facts an agent gives when it connects update
// the inventory (audited, old and new), but never its identity facts, and
// a device that keeps changing them is written for three times, then
// once every ten minutes.
func TestFactsFollowTheMac(t *testing.T) {
	t.Parallel()
	h := start(t)
	a := h.enrolled(h.secret())
	device := func() *adminv1.Device {
		t.Helper()
		r, err := h.admin.GetDevice(h.ctx(), &adminv1.GetDeviceRequest{DeviceId: a.DeviceID})
		if err != nil {
			t.Fatal(err)
		}
		return r.GetDevice()
	}
	connectWith := func(mut func(*agentv1.DeviceFacts)) {
		t.Helper()
		f := proto.Clone(a.Facts).(*agentv1.DeviceFacts)
		mut(f)
		a.HelloFacts = f
		st := h.connect(a)
		st.Close()
	}
	connectWith(func(f *agentv1.DeviceFacts) {
		f.Hostname, f.OsVersion, f.AgentVersion = "Bob's MacBook Pro", "26.1", "1.2.4"
	})
	waitFor(t, "the renamed Mac", func() bool { return device().GetFacts().GetHostname() == "Bob's MacBook Pro" })
	if d := device(); d.GetFacts().GetOsVersion() != "26.1" || d.GetFacts().GetAgentVersion() != "1.2.4" || d.GetFacts().GetSerialNumber() != a.Facts.GetSerialNumber() {
		t.Errorf("facts after the connection: %v", d.GetFacts())
	}
	audit, err := h.admin.ListAuditEvents(h.ctx(), &adminv1.ListAuditEventsRequest{DeviceId: a.DeviceID, Action: "device.facts"})
	if err != nil || len(audit.GetEvents()) != 1 || !strings.Contains(audit.GetEvents()[0].GetDetail(), `→ "Bob's MacBook Pro"`) {
		t.Fatalf("audit of the change: %v %v", audit, err)
	}

	// Another serial number: not this Mac's facts, nothing changes.
	connectWith(func(f *agentv1.DeviceFacts) { f.Hostname, f.SerialNumber = "Mallory's Mac", "C02OTHER0001" })
	if d := device(); d.GetFacts().GetHostname() != "Bob's MacBook Pro" {
		t.Errorf("facts of another serial number were taken: %v", d.GetFacts())
	}

	// Renamed again and again: two more writes (three in all), then none.
	for i := range 5 {
		connectWith(func(f *agentv1.DeviceFacts) { f.Hostname = fmt.Sprint("name-", i) })
	}
	waitFor(t, "the writes the limit allows", func() bool { return device().GetFacts().GetHostname() == "name-1" })
	if audit, err := h.admin.ListAuditEvents(h.ctx(), &adminv1.ListAuditEventsRequest{DeviceId: a.DeviceID, Action: "device.facts"}); err != nil || len(audit.GetEvents()) != 3 {
		t.Errorf("facts written %d times, want 3: %v", len(audit.GetEvents()), err)
	}
}
