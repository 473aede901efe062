package server_test

import (
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/clearance/clearance/internal/protoagent"
	adminv1 "github.com/clearance/clearance/proto/gen/clearance/admin/v1"
	agentv1 "github.com/clearance/clearance/proto/gen/clearance/agent/v1"
)

// TestExpectedReinstall: a Mac the security team said would be wiped
// enrolls its new key without approval, once, within the time given, with
// the serial number it enrolled with; the old key's stream ends, and the
// enrollment is audited as such. Another key after that, a key claiming
// another serial, or one after the time waits as any unproven key does.
func TestExpectedReinstall(t *testing.T) {
	t.Parallel()
	h := start(t)
	secret := h.secret()
	a := h.enrolled(secret)
	st := h.connect(a)
	wiped := func() *protoagent.Agent { t.Helper(); return newKeyFor(t, h, a) }

	// Not expected: the new key waits.
	_, err := wiped().Enroll(h.ctx(), secret)
	checkStatus(t, err, codes.FailedPrecondition, "waits for approval")

	resp, err := h.admin.ExpectReinstall(h.ctx(), &adminv1.ExpectReinstallRequest{DeviceId: a.DeviceID[:8], Within: durationpb.New(2 * time.Hour)})
	if err != nil || !resp.GetUntil().AsTime().Equal(h.clock.Now().Add(2*time.Hour)) {
		t.Fatalf("ExpectReinstall: %v %v", resp, err)
	}
	dev, err := h.admin.GetDevice(h.ctx(), &adminv1.GetDeviceRequest{DeviceId: a.DeviceID})
	if err != nil || !dev.GetDevice().GetReinstallExpectedUntil().AsTime().Equal(resp.GetUntil().AsTime()) {
		t.Fatalf("GetDevice while a reinstall is expected: %v %v", dev.GetDevice().GetReinstallExpectedUntil(), err)
	}

	// A key claiming another serial number is not that Mac's reinstall.
	other := wiped()
	other.Facts.SerialNumber = "C02OTHER0001"
	_, err = other.Enroll(h.ctx(), secret)
	checkStatus(t, err, codes.FailedPrecondition, "waits for approval")

	// The reinstalled Mac: enrolled, the same device, the old stream ended.
	w := wiped()
	if _, err := w.Enroll(h.ctx(), secret); err != nil {
		t.Fatalf("the expected reinstall's enrollment: %v", err)
	}
	if w.DeviceID != a.DeviceID {
		t.Fatalf("reinstalled as %s, want %s", w.DeviceID, a.DeviceID)
	}
	checkStatus(t, streamEnd(t, st, "the old key's stream ending at the reinstall"), codes.PermissionDenied, "enrolled again with another key")
	ws := h.connect(w)
	if m, err := ws.Exchange(protoagent.Sign(w.Key, w.Report(ws.PolicySet, 1, h.clock.Now(), nil, agentv1.PolicyStatus_POLICY_STATUS_PASS))); err != nil || m.GetAck() == nil {
		t.Fatalf("the reinstalled Mac's report: %v %v", m, err)
	}
	audit, err := h.admin.ListAuditEvents(h.ctx(), &adminv1.ListAuditEventsRequest{DeviceId: a.DeviceID, Action: "device."})
	if err != nil {
		t.Fatal(err)
	}
	var actions []string
	for _, e := range audit.GetEvents() {
		actions = append(actions, e.GetAction()+": "+e.GetDetail())
	}
	joined := strings.Join(actions, "\n")
	if !strings.Contains(joined, "device.expect_reinstall: reinstall expected until") || !strings.Contains(joined, "proof reinstall_expected") {
		t.Errorf("audit:\n%s", joined)
	}
	dev, err = h.admin.GetDevice(h.ctx(), &adminv1.GetDeviceRequest{DeviceId: a.DeviceID})
	if err != nil || dev.GetDevice().GetReinstallExpectedUntil() != nil {
		t.Errorf("after the reinstall the expectation stays: %v %v", dev.GetDevice().GetReinstallExpectedUntil(), err)
	}

	// Once: the next new key waits.
	_, err = wiped().Enroll(h.ctx(), secret)
	checkStatus(t, err, codes.FailedPrecondition, "waits for approval")

	// Past its time: waits too.
	if _, err := h.admin.ExpectReinstall(h.ctx(), &adminv1.ExpectReinstallRequest{DeviceId: a.DeviceID, Within: durationpb.New(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	h.clock.Add(time.Hour)
	_, err = wiped().Enroll(h.ctx(), secret)
	checkStatus(t, err, codes.FailedPrecondition, "waits for approval")
	// Taken back: waits.
	if _, err := h.admin.ExpectReinstall(h.ctx(), &adminv1.ExpectReinstallRequest{DeviceId: a.DeviceID, Within: durationpb.New(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.admin.ExpectReinstall(h.ctx(), &adminv1.ExpectReinstallRequest{DeviceId: a.DeviceID, Cancel: true}); err != nil {
		t.Fatal(err)
	}
	_, err = wiped().Enroll(h.ctx(), secret)
	checkStatus(t, err, codes.FailedPrecondition, "waits for approval")
}

// TestExpectReinstallBadInput: out-of-range times, unknown and revoked
// devices are refused with what is wrong, and change nothing.
func TestExpectReinstallBadInput(t *testing.T) {
	t.Parallel()
	h := start(t)
	secret := h.secret()
	a := h.enrolled(secret)
	b := h.enrolled(secret)
	if _, err := h.admin.RevokeDevice(h.ctx(), &adminv1.RevokeDeviceRequest{DeviceId: b.DeviceID, Reason: "lost"}); err != nil {
		t.Fatal(err)
	}
	noSerial, err := protoagent.New(h.addr, h.rootPEM, nextUUID())
	if err != nil {
		t.Fatal(err)
	}
	noSerial.Facts.SerialNumber = ""
	if _, err := noSerial.Enroll(h.ctx(), secret); err != nil {
		t.Fatal(err)
	}
	before := h.dump()
	for _, tc := range []struct {
		req  *adminv1.ExpectReinstallRequest
		code codes.Code
		msg  string
	}{
		{&adminv1.ExpectReinstallRequest{DeviceId: a.DeviceID, Within: durationpb.New(time.Second)}, codes.InvalidArgument, "outside 1m to 168h"},
		{&adminv1.ExpectReinstallRequest{DeviceId: a.DeviceID, Within: durationpb.New(169 * time.Hour)}, codes.InvalidArgument, "outside 1m to 168h"},
		{&adminv1.ExpectReinstallRequest{DeviceId: a.DeviceID, Within: durationpb.New(-time.Hour)}, codes.InvalidArgument, "outside 1m to 168h"},
		{&adminv1.ExpectReinstallRequest{DeviceId: a.DeviceID, Within: durationpb.New(time.Hour), Cancel: true}, codes.InvalidArgument, "within and cancel together"},
		{&adminv1.ExpectReinstallRequest{DeviceId: "", Within: durationpb.New(time.Hour)}, codes.InvalidArgument, "device_id is required"},
		{&adminv1.ExpectReinstallRequest{DeviceId: "00000000-0000-4000-8000-000000000000"}, codes.NotFound, "no enrolled device"},
		{&adminv1.ExpectReinstallRequest{DeviceId: strings.Repeat("a", 5000)}, codes.InvalidArgument, "device_id"},
		{&adminv1.ExpectReinstallRequest{DeviceId: b.DeviceID}, codes.FailedPrecondition, "is revoked"},
		{&adminv1.ExpectReinstallRequest{DeviceId: noSerial.DeviceID}, codes.FailedPrecondition, "enrolled with no serial number"},
	} {
		_, err := h.admin.ExpectReinstall(h.ctx(), tc.req)
		checkStatus(t, err, tc.code, tc.msg)
	}
	// Taking back what was never expected changes nothing, audit included.
	if _, err := h.admin.ExpectReinstall(h.ctx(), &adminv1.ExpectReinstallRequest{DeviceId: a.DeviceID, Cancel: true}); err != nil {
		t.Fatal(err)
	}
	if after := h.dump(); after != before {
		t.Error("refused calls, or a cancel with nothing to take back, changed the store")
	}
}

// TestExpectedReinstallEndsWithAnyKeyChange: an approval made meanwhile,
// and a revocation, end an expected reinstall: after either, another
// unproven key waits (a reinstated Mac included), and nothing shows one.
func TestExpectedReinstallEndsWithAnyKeyChange(t *testing.T) {
	t.Parallel()
	h := start(t)
	secret := h.secret()
	wiped := func(a *protoagent.Agent) *protoagent.Agent { t.Helper(); return newKeyFor(t, h, a) }
	waiting := func() *adminv1.PendingEnrollment {
		t.Helper()
		list, err := h.admin.ListPendingEnrollments(h.ctx(), &adminv1.ListPendingEnrollmentsRequest{})
		if err != nil || len(list.GetPending()) != 1 {
			t.Fatalf("ListPendingEnrollments: %v %v", list, err)
		}
		return list.GetPending()[0]
	}
	expected := func(id string) bool {
		t.Helper()
		d, err := h.admin.GetDevice(h.ctx(), &adminv1.GetDeviceRequest{DeviceId: id})
		if err != nil {
			t.Fatal(err)
		}
		return d.GetDevice().GetReinstallExpectedUntil() != nil
	}

	// A key waits; a reinstall is expected; another admin approves the
	// waiting key: the expectation is spent, the next key waits.
	a := h.enrolled(secret)
	approved := wiped(a)
	_, err := approved.Enroll(h.ctx(), secret)
	checkStatus(t, err, codes.FailedPrecondition, "waits for approval")
	p := waiting()
	if _, err := h.admin.ExpectReinstall(h.ctx(), &adminv1.ExpectReinstallRequest{DeviceId: a.DeviceID, Within: durationpb.New(4 * time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.admin.ApproveEnrollment(h.ctx(), &adminv1.ApproveEnrollmentRequest{RequestId: p.GetRequestId()}); err != nil {
		t.Fatal(err)
	}
	if _, err := approved.Enroll(h.ctx(), secret); err != nil {
		t.Fatal(err)
	}
	if expected(a.DeviceID) {
		t.Error("a reinstall is still expected after an approval changed the key")
	}
	_, err = wiped(a).Enroll(h.ctx(), secret)
	checkStatus(t, err, codes.FailedPrecondition, "waits for approval")

	// Expected, then revoked, then reinstated by approval: the
	// expectation from before the revocation does not come back.
	b := h.enrolled(secret)
	if _, err := h.admin.ExpectReinstall(h.ctx(), &adminv1.ExpectReinstallRequest{DeviceId: b.DeviceID, Within: durationpb.New(168 * time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.admin.RevokeDevice(h.ctx(), &adminv1.RevokeDeviceRequest{DeviceId: b.DeviceID, Reason: "stolen"}); err != nil {
		t.Fatal(err)
	}
	back := wiped(b)
	_, err = back.Enroll(h.ctx(), secret)
	checkStatus(t, err, codes.FailedPrecondition, "revoked_device")
	var req string
	list, err := h.admin.ListPendingEnrollments(h.ctx(), &adminv1.ListPendingEnrollmentsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range list.GetPending() {
		if p.GetDeviceId() == b.DeviceID {
			req = p.GetRequestId()
		}
	}
	if _, err := h.admin.ApproveEnrollment(h.ctx(), &adminv1.ApproveEnrollmentRequest{RequestId: req}); err != nil {
		t.Fatal(err)
	}
	if _, err := back.Enroll(h.ctx(), secret); err != nil {
		t.Fatal(err)
	}
	if expected(b.DeviceID) {
		t.Error("the reinstated Mac shows the expectation from before its revocation")
	}
	_, err = wiped(b).Enroll(h.ctx(), secret)
	checkStatus(t, err, codes.FailedPrecondition, "waits for approval")
}

// newKeyFor is a's Mac wiped and set up again: its hardware UUID and
// serial number, a new key.
func newKeyFor(t *testing.T, h *harness, a *protoagent.Agent) *protoagent.Agent {
	t.Helper()
	w, err := protoagent.New(h.addr, h.rootPEM, a.Facts.GetHardwareUuid())
	if err != nil {
		t.Fatal(err)
	}
	return w
}
