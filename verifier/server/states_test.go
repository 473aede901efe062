package server_test

import (
	"maps"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/clearance/clearance/internal/protoagent"
	adminv1 "github.com/clearance/clearance/proto/gen/clearance/admin/v1"
	agentv1 "github.com/clearance/clearance/proto/gen/clearance/agent/v1"
	"github.com/clearance/clearance/verifier/config"
)

// TestDeviceStateGauges: clearance_devices counts each unrevoked device in
// one state, as an operator alerting on it would read /metrics.
func TestDeviceStateGauges(t *testing.T) {
	t.Parallel()
	h := start(t)
	secret := h.secret()
	// rejected, when set, says the agent rejected the settings it was
	// given.
	var rejected *agentv1.SettingsRejection
	report := func(a *protoagent.Agent, st *protoagent.Stream, seq uint64, status agentv1.PolicyStatus) {
		t.Helper()
		r := a.Report(st.PolicySet, seq, h.clock.Now(), nil, status)
		r.SettingsRejection = rejected
		if _, err := st.Exchange(protoagent.Sign(a.Key, r)); err != nil {
			t.Fatal(err)
		}
	}
	connect := func() (*protoagent.Agent, *protoagent.Stream) {
		t.Helper()
		a := h.enrolled(secret)
		st := h.connect(a)
		return a, st
	}
	compliant, cst := connect()
	failing, fst := connect()
	stale, sst := connect()
	report(stale, sst, 1, agentv1.PolicyStatus_POLICY_STATUS_PASS)
	h.clock.Add(6 * time.Minute) // past --max-posture-age (5m)
	// The compliant Mac's agent, and the one revoked later, did not take
	// a profile pushed to them.
	const why = "unknown key \"CAFingerprnt\": did you mean CAFingerprint?"
	wantRejected := &agentv1.SettingsRejection{At: timestamppb.New(h.clock.Now().Add(-time.Minute)), Reason: why}
	rejected = wantRejected
	report(compliant, cst, 1, agentv1.PolicyStatus_POLICY_STATUS_PASS)
	revoked, rst := connect()
	report(revoked, rst, 1, agentv1.PolicyStatus_POLICY_STATUS_PASS)
	rejected = nil
	report(failing, fst, 1, agentv1.PolicyStatus_POLICY_STATUS_FAIL)
	never := h.enrolled(secret) // never connects: offline
	if _, err := h.admin.RevokeDevice(h.ctx(), &adminv1.RevokeDeviceRequest{DeviceId: revoked.DeviceID}); err != nil {
		t.Fatal(err)
	}

	h.srv.CountDevices(h.ctx())
	got := gauges(t, h, "clearance_devices")
	want := map[string]float64{`state="compliant"`: 1, `state="failing"`: 1, `state="stale"`: 1, `state="offline"`: 1}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("clearance_devices{%s} = %v, want %v (all: %v)", k, got[k], v, got)
		}
	}
	if len(got) != len(want) {
		t.Errorf("states: %v", got)
	}
	// Counted with them: the unrevoked Macs that did not take their
	// settings.
	if got := gauges(t, h, "clearance_devices_settings_rejected"); got[""] != 1 {
		t.Errorf("clearance_devices_settings_rejected = %v, want 1", got)
	}
	// The admin API says when and why.
	g, err := h.admin.GetDevice(h.ctx(), &adminv1.GetDeviceRequest{DeviceId: compliant.DeviceID})
	if err != nil {
		t.Fatal(err)
	}
	if sr := g.GetDevice().GetSettingsRejection(); !proto.Equal(sr, wantRejected) {
		t.Errorf("GetDevice: settings_rejection %v, want rejected a minute ago for %q", sr, why)
	}

	// ListDevices asks the same fleet-health questions as the devices
	// command, revoked Macs left out unless asked for.
	ids := func(req *adminv1.ListDevicesRequest) []string {
		t.Helper()
		resp, err := h.admin.ListDevices(h.ctx(), req)
		if err != nil {
			t.Fatalf("ListDevices %v: %v", req, err)
		}
		var out []string
		for _, d := range resp.GetDevices() {
			out = append(out, d.GetDeviceId())
		}
		slices.Sort(out)
		return out
	}
	sorted := func(ids ...string) []string { slices.Sort(ids); return ids }
	for _, tc := range []struct {
		req  *adminv1.ListDevicesRequest
		want []string
	}{
		// A Mac that never reported fails for want of a report.
		{&adminv1.ListDevicesRequest{Failing: true}, sorted(failing.DeviceID, stale.DeviceID, never.DeviceID)},
		{&adminv1.ListDevicesRequest{Offline: true}, sorted(never.DeviceID)},
		{&adminv1.ListDevicesRequest{Offline: true, IncludeRevoked: true}, sorted(never.DeviceID, revoked.DeviceID)},
		{&adminv1.ListDevicesRequest{PolicyId: "filevault"}, sorted(failing.DeviceID, never.DeviceID)},
		{&adminv1.ListDevicesRequest{FailingFor: durationpb.New(time.Hour)}, nil},
		// 0s: every Mac whose run of failures is recorded, as the CLI's
		// --failing-for 0s.
		{&adminv1.ListDevicesRequest{FailingFor: durationpb.New(0)}, sorted(failing.DeviceID)},
		{&adminv1.ListDevicesRequest{FailingFor: durationpb.New(0), IncludeRevoked: true}, sorted(failing.DeviceID)},
		{&adminv1.ListDevicesRequest{SettingsRejected: true}, sorted(compliant.DeviceID)},
		{&adminv1.ListDevicesRequest{SettingsRejected: true, IncludeRevoked: true}, sorted(compliant.DeviceID, revoked.DeviceID)},
		{&adminv1.ListDevicesRequest{SettingsRejected: true, Failing: true}, nil},
	} {
		if got := ids(tc.req); !slices.Equal(got, tc.want) {
			t.Errorf("ListDevices %v: %v, want %v", tc.req, got, tc.want)
		}
	}
	for _, bad := range []*adminv1.ListDevicesRequest{
		{PolicyId: "filevualt"}, {IncludeRevoked: true}, {FailingFor: durationpb.New(-time.Hour)},
	} {
		if _, err := h.admin.ListDevices(h.ctx(), bad); status.Code(err) != codes.InvalidArgument {
			t.Errorf("ListDevices %v: %v, want INVALID_ARGUMENT", bad, err)
		}
	}

	// The profile fixed: the agent's next report clears it everywhere.
	report(compliant, cst, 2, agentv1.PolicyStatus_POLICY_STATUS_PASS)
	h.srv.CountDevices(h.ctx())
	if got := gauges(t, h, "clearance_devices_settings_rejected"); got[""] != 0 {
		t.Errorf("clearance_devices_settings_rejected after the fix = %v, want 0", got)
	}
	if got := ids(&adminv1.ListDevicesRequest{SettingsRejected: true}); len(got) != 0 {
		t.Errorf("ListDevices settings_rejected after the fix: %v", got)
	}
}

// TestAgentVersionGauge: clearance_devices_by_agent_version follows the
// fleet from one agent version to the next, as the security team watching
// an upgrade reads /metrics: enrolled, unrevoked Macs by the version their
// agent last gave, and no series for a version no Mac runs any more.
func TestAgentVersionGauge(t *testing.T) {
	t.Parallel()
	h := start(t)
	secret := h.secret()
	enroll := func(version string) *protoagent.Agent {
		t.Helper()
		a, err := protoagent.New(h.addr, h.rootPEM, nextUUID())
		if err != nil {
			t.Fatal(err)
		}
		a.Facts.AgentVersion = version
		if _, err := a.Enroll(h.ctx(), secret); err != nil {
			t.Fatal(err)
		}
		return a
	}
	versions := func(want map[string]float64) {
		t.Helper()
		h.srv.CountDevices(h.ctx())
		got := gauges(t, h, "clearance_devices_by_agent_version")
		wantKeys := map[string]float64{}
		for v, n := range want {
			wantKeys[`version="`+v+`"`] = n
		}
		if !maps.Equal(got, wantKeys) {
			t.Errorf("clearance_devices_by_agent_version = %v, want %v", got, wantKeys)
		}
	}
	old1, old2 := enroll("1.4.2"), enroll("1.4.2")
	enroll("1.5.0")
	lost := enroll("1.4.2")
	enroll("")             // an agent that gave no version
	enroll("1.5.0 (beta)") // not a version the gauge names
	if _, err := h.admin.RevokeDevice(h.ctx(), &adminv1.RevokeDeviceRequest{DeviceId: lost.DeviceID}); err != nil {
		t.Fatal(err)
	}
	versions(map[string]float64{"1.4.2": 2, "1.5.0": 1, "unknown": 1, "invalid": 1})

	// The upgrade reaches the last two Macs on 1.4.2: their agents give
	// the new version when they connect, and 1.4.2's series goes.
	for _, a := range []*protoagent.Agent{old1, old2} {
		facts := proto.CloneOf(a.Facts)
		facts.AgentVersion = "1.5.0"
		a.HelloFacts = facts
		h.connect(a)
	}
	versions(map[string]float64{"1.5.0": 3, "unknown": 1, "invalid": 1})
}

// gauges reads a gauge vector from the registry /metrics serves, by its
// label pairs.
func gauges(t *testing.T, h *harness, name string) map[string]float64 {
	t.Helper()
	return metricVector(t, h, name, true)
}

// TestRequestCheckWaitsLiveCheckTimeout: without a timeout of its own,
// RequestCheck waits --live-check-timeout, as serve -h says.
func TestRequestCheckWaitsLiveCheckTimeout(t *testing.T) {
	t.Parallel()
	h := startWith(t, func(c *config.Config) { c.LiveCheckTimeout = 300 * time.Millisecond })
	a := h.enrolled(h.secret())
	h.connect(a) // connected, and silent
	start := time.Now()
	_, err := h.admin.RequestCheck(h.ctx(), &adminv1.RequestCheckRequest{DeviceId: a.DeviceID})
	checkStatus(t, err, codes.DeadlineExceeded, "did not send a fresh report within 300ms")
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("waited %s", d)
	}
}
