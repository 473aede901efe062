package server_test

import (
	"slices"
	"testing"
	"time"

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
