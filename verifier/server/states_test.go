package server_test

import (
	"testing"
	"time"

	"google.golang.org/grpc/codes"

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
	report := func(a *protoagent.Agent, st *protoagent.Stream, seq uint64, status agentv1.PolicyStatus) {
		t.Helper()
		if _, err := st.Exchange(protoagent.Sign(a.Key, a.Report(st.PolicySet, seq, h.clock.Now(), nil, status))); err != nil {
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
	report(compliant, cst, 1, agentv1.PolicyStatus_POLICY_STATUS_PASS)
	report(failing, fst, 1, agentv1.PolicyStatus_POLICY_STATUS_FAIL)
	h.enrolled(secret) // never connects: offline
	revoked := h.enrolled(secret)
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
