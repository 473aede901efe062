package server_test

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/clearance/clearance/internal/protoagent"
	"github.com/clearance/clearance/pkg/keyrotation"
	adminv1 "github.com/clearance/clearance/proto/gen/clearance/admin/v1"
	agentv1 "github.com/clearance/clearance/proto/gen/clearance/agent/v1"
	"github.com/clearance/clearance/verifier/config"
	"github.com/clearance/clearance/verifier/storage"
)

// startKnownList starts a verifier under --enroll-approval known whose
// list of managed Macs holds devices.
func startKnownList(t *testing.T, devices ...*adminv1.KnownDevice) *harness {
	t.Helper()
	h := startWith(t, func(c *config.Config) { c.EnrollApproval = config.EnrollKnown })
	if _, err := h.admin.ImportKnownDevices(h.ctx(), &adminv1.ImportKnownDevicesRequest{Devices: devices, Source: "test"}); err != nil {
		t.Fatal(err)
	}
	return h
}

// TestUnprovenReenrollmentWaits: the secret and a known hardware UUID with
// another key do not replace the device's key; the request waits (with its
// detail), the device keeps reporting, a bad rotation proof changes
// nothing either, and approval replaces the key and ends the old stream.
func TestUnprovenReenrollmentWaits(t *testing.T) {
	t.Parallel()
	h := start(t)
	secret := h.secret()
	a := h.enrolled(secret)
	st := h.connect(a)

	other, err := protoagent.New(h.addr, h.rootPEM, a.Facts.GetHardwareUuid())
	if err != nil {
		t.Fatal(err)
	}
	before := h.dump()
	_, err = other.Enroll(h.ctx(), secret)
	checkStatus(t, err, codes.FailedPrecondition, "waits for approval")
	var detail *agentv1.EnrollmentPending
	for _, d := range statusDetails(err) {
		if p, ok := d.(*agentv1.EnrollmentPending); ok {
			detail = p
		}
	}
	if detail.GetReason() != "unproven_key" || detail.GetRequestId() == "" || detail.GetRetryAfter().AsDuration() <= 0 {
		t.Fatalf("EnrollmentPending detail = %v", detail)
	}
	if h.dump() == before {
		t.Fatal("the waiting request was not stored")
	}

	// A proof signed by a key that is not the device's is no proof.
	csr, _ := protoagent.CSR(other.Key)
	proof, _ := keyrotation.Sign(other.Key, csr)
	_, err = other.EnrollRaw(h.ctx(), &agentv1.EnrollRequest{EnrollSecret: secret, Csr: csr, Facts: other.Facts, KeyProof: proof})
	checkStatus(t, err, codes.FailedPrecondition, detail.GetRequestId())
	// An oversized proof is refused as such.
	_, err = other.EnrollRaw(h.ctx(), &agentv1.EnrollRequest{EnrollSecret: secret, Csr: csr, Facts: other.Facts, KeyProof: make([]byte, 4096)})
	checkStatus(t, err, codes.InvalidArgument, "key_proof is 4096 bytes")

	// The real device still reports with its key.
	if m, err := st.Exchange(protoagent.Sign(a.Key, a.Report(st.PolicySet, 1, h.clock.Now(), nil, pass))); err != nil || m.GetAck().GetSeq() != 1 {
		t.Fatalf("report while the request waits: %v %v", m, err)
	}
	dev, err := h.admin.GetDevice(h.ctx(), &adminv1.GetDeviceRequest{DeviceId: a.DeviceID})
	if err != nil || dev.GetDevice().GetEnrollments() != 1 || dev.GetDevice().GetEnrollSecretId() != strings.SplitN(secret, ".", 2)[0] {
		t.Fatalf("device while the request waits: %v %v", dev, err)
	}

	list, err := h.admin.ListPendingEnrollments(h.ctx(), &adminv1.ListPendingEnrollmentsRequest{})
	if err != nil || len(list.GetPending()) != 1 {
		t.Fatalf("ListPendingEnrollments: %v %v", list, err)
	}
	p := list.GetPending()[0]
	if p.GetDeviceId() != a.DeviceID || p.GetRequests() != 2 || p.GetSource() != "127.0.0.1" || p.GetDeviceKeyFingerprint() != dev.GetDevice().GetKeyFingerprint() || p.GetKeyFingerprint() == dev.GetDevice().GetKeyFingerprint() ||
		len(p.GetSerialHolders()) != 0 || p.GetSerialHolderCount() != 0 {
		t.Fatalf("pending request = %v", p)
	}

	// Approved: the old key's stream ends, the new key enrolls on its own.
	resp, err := h.admin.ApproveEnrollment(h.ctx(), &adminv1.ApproveEnrollmentRequest{RequestId: p.GetRequestId()})
	if err != nil || !resp.GetReplacedKey() || resp.GetDevice().GetKeyFingerprint() != p.GetKeyFingerprint() {
		t.Fatalf("ApproveEnrollment: %v %v", resp, err)
	}
	checkStatus(t, streamEnd(t, st, "the old key's stream ending at approval"), codes.PermissionDenied, "enrolled again with another key")
	if _, err := other.Enroll(h.ctx(), secret); err != nil {
		t.Fatalf("the approved key's enrollment: %v", err)
	}
	if other.DeviceID != a.DeviceID {
		t.Fatalf("approved device id %s, want %s", other.DeviceID, a.DeviceID)
	}
	_, err = a.Connect(h.ctx())
	checkStatus(t, err, codes.PermissionDenied, "no longer uses")
}

// TestNewDevicePolicies: under manual a new device waits; rejected, its key
// stays out; under known a listed serial enrolls.
func TestNewDevicePolicies(t *testing.T) {
	t.Parallel()
	h := startWith(t, func(c *config.Config) { c.EnrollApproval = config.EnrollManual })
	secret := h.secret()
	a, err := protoagent.New(h.addr, h.rootPEM, nextUUID())
	if err != nil {
		t.Fatal(err)
	}
	_, err = a.Enroll(h.ctx(), secret)
	checkStatus(t, err, codes.FailedPrecondition, "manual")
	list, err := h.admin.ListPendingEnrollments(h.ctx(), &adminv1.ListPendingEnrollmentsRequest{})
	if err != nil || len(list.GetPending()) != 1 {
		t.Fatalf("ListPendingEnrollments: %v %v", list, err)
	}
	id := list.GetPending()[0].GetRequestId()
	if _, err := h.admin.RejectEnrollment(h.ctx(), &adminv1.RejectEnrollmentRequest{RequestId: id}); err != nil {
		t.Fatal(err)
	}
	_, err = a.Enroll(h.ctx(), secret)
	checkStatus(t, err, codes.PermissionDenied, "rejected by the security team")
	_, err = h.admin.ApproveEnrollment(h.ctx(), &adminv1.ApproveEnrollmentRequest{RequestId: id})
	checkStatus(t, err, codes.FailedPrecondition, "was rejected")

	// A new Mac approved: its agent collects the certificate, which is
	// not a second enrollment, and is audited as what it is.
	b, err := protoagent.New(h.addr, h.rootPEM, nextUUID())
	if err != nil {
		t.Fatal(err)
	}
	_, err = b.Enroll(h.ctx(), secret)
	checkStatus(t, err, codes.FailedPrecondition, "manual")
	list, err = h.admin.ListPendingEnrollments(h.ctx(), &adminv1.ListPendingEnrollmentsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var approved *adminv1.ApproveEnrollmentResponse
	for _, p := range list.GetPending() {
		if p.GetFacts().GetHardwareUuid() == b.Facts.HardwareUuid {
			if approved, err = h.admin.ApproveEnrollment(h.ctx(), &adminv1.ApproveEnrollmentRequest{RequestId: p.GetRequestId()}); err != nil {
				t.Fatal(err)
			}
		}
	}
	if approved == nil {
		t.Fatalf("no request of the new Mac among %v", list)
	}
	if _, err := b.Enroll(h.ctx(), secret); err != nil {
		t.Fatalf("the approved key collecting its certificate: %v", err)
	}
	dev := approved.GetDevice().GetDeviceId()
	if got, err := h.admin.GetDevice(h.ctx(), &adminv1.GetDeviceRequest{DeviceId: dev}); err != nil || got.GetDevice().GetEnrollments() != 1 {
		t.Errorf("an approved Mac that collected its certificate: %v %v; want one enrollment", got, err)
	}
	events, err := h.admin.ListAuditEvents(h.ctx(), &adminv1.ListAuditEventsRequest{DeviceId: dev})
	if err != nil || len(events.GetEvents()) != 2 || events.GetEvents()[0].GetAction() != "device.collect" ||
		!strings.Contains(events.GetEvents()[0].GetDetail(), "proof approved_key") || events.GetEvents()[1].GetAction() != "device.enroll_approve" {
		t.Errorf("audit of an approved Mac: %v %v; want its approval, then the collection", events, err)
	}
	// Enrolling again with the same key, later, is a re-enrollment.
	if _, err := b.Enroll(h.ctx(), secret); err != nil {
		t.Fatal(err)
	}
	if got, err := h.admin.GetDevice(h.ctx(), &adminv1.GetDeviceRequest{DeviceId: dev}); err != nil || got.GetDevice().GetEnrollments() != 2 {
		t.Errorf("a later enrollment with the same key: %v %v; want two enrollments", got, err)
	}

	k := startKnownList(t, &adminv1.KnownDevice{SerialNumber: "c02test0001", Name: "test mac"})
	ksecret := k.secret()
	listed := enrolledListed(t, k, ksecret)
	unlisted, _ := protoagent.New(k.addr, k.rootPEM, nextUUID())
	unlisted.Facts.SerialNumber = "C02OTHER99"
	_, err = unlisted.Enroll(k.ctx(), ksecret)
	checkStatus(t, err, codes.FailedPrecondition, "unknown_serial")
	if listed.DeviceID == "" {
		t.Fatal("the listed serial did not enroll")
	}
}

// TestApprovalAdminBadInput: unknown, empty and oversized ids, and bad
// imports, get clear errors and change nothing.
func TestApprovalAdminBadInput(t *testing.T) {
	t.Parallel()
	h := start(t)
	h.secret()
	before := h.dump()
	ctx := h.ctx()
	long := strings.Repeat("x", 65)
	importing := func(ds ...*adminv1.KnownDevice) func() error {
		return func() error {
			_, err := h.admin.ImportKnownDevices(ctx, &adminv1.ImportKnownDevicesRequest{Devices: ds})
			return err
		}
	}
	serials := func(ss ...string) []*adminv1.KnownDevice {
		var ds []*adminv1.KnownDevice
		for _, s := range ss {
			ds = append(ds, &adminv1.KnownDevice{SerialNumber: s})
		}
		return ds
	}
	for _, tc := range []struct {
		name string
		call func() error
		code codes.Code
		msg  string
	}{
		{"approve unknown", func() error {
			_, err := h.admin.ApproveEnrollment(ctx, &adminv1.ApproveEnrollmentRequest{RequestId: "no-such-request"})
			return err
		}, codes.NotFound, `no enrollment request "no-such-request"`},
		{"reject unknown", func() error {
			_, err := h.admin.RejectEnrollment(ctx, &adminv1.RejectEnrollmentRequest{RequestId: "no-such-request"})
			return err
		}, codes.NotFound, `no enrollment request "no-such-request"`},
		{"approve by the start of an id", func() error {
			_, err := h.admin.ApproveEnrollment(ctx, &adminv1.ApproveEnrollmentRequest{RequestId: "df7a38fe"})
			return err
		}, codes.NotFound, `no enrollment request "df7a38fe": a request id is given whole, as 'devices pending' lists it (36 characters), not by its start`},
		{"approve a whole id no request has", func() error {
			_, err := h.admin.ApproveEnrollment(ctx, &adminv1.ApproveEnrollmentRequest{RequestId: "df7a38fe-0000-4000-8000-000000000000"})
			return err
		}, codes.NotFound, `it was answered or expired`},
		{"approve empty", func() error {
			_, err := h.admin.ApproveEnrollment(ctx, &adminv1.ApproveEnrollmentRequest{})
			return err
		}, codes.InvalidArgument, "request_id is required"},
		{"reject oversized", func() error {
			_, err := h.admin.RejectEnrollment(ctx, &adminv1.RejectEnrollmentRequest{RequestId: long})
			return err
		}, codes.InvalidArgument, "at most 64"},
		{"bad page token", func() error {
			_, err := h.admin.ListPendingEnrollments(ctx, &adminv1.ListPendingEnrollmentsRequest{PageToken: "%%%"})
			return err
		}, codes.InvalidArgument, "page_token"},
		{"import nothing", importing(), codes.InvalidArgument, "devices is empty"},
		{"import hostile serial", importing(serials("C02GOOD001", "=cmd|' /C calc'!A0")...), codes.InvalidArgument, "devices[1]: serial number"},
		{"import a look-alike serial", importing(serials("c02good00\u0131")...), codes.InvalidArgument, "devices[0]: serial number"},
		{"import control characters in a name", importing(&adminv1.KnownDevice{SerialNumber: "C02GOOD001", Name: "a\x1b[2Jb"}),
			codes.InvalidArgument, "control character"},
		{"import a serial twice", importing(serials("C02GOOD001", "c02good001")...), codes.InvalidArgument, "listed twice"},
		// 5,001 rows are over the message bound of a connection without a
		// device certificate, before any count (admin's own tests check
		// MaxImport); the CLI sends lists in pieces that fit.
		{"import too many", importing(serials(slices.Repeat([]string{"C02GOOD001"}, 5001)...)...), codes.ResourceExhausted, "larger than max"},
		{"secret with a negative expiry", func() error {
			_, err := h.admin.CreateEnrollSecret(ctx, &adminv1.CreateEnrollSecretRequest{ExpiresIn: durationpb.New(-time.Hour)})
			return err
		}, codes.InvalidArgument, "expires_in must be positive"},
		{"secret that outlives a year", func() error {
			_, err := h.admin.CreateEnrollSecret(ctx, &adminv1.CreateEnrollSecretRequest{ExpiresIn: durationpb.New(400 * 24 * time.Hour)})
			return err
		}, codes.InvalidArgument, "more than"},
		{"revoke unknown secret", func() error {
			_, err := h.admin.RevokeEnrollSecret(ctx, &adminv1.RevokeEnrollSecretRequest{Id: "0000000000000000"})
			return err
		}, codes.NotFound, "no enroll secret"},
	} {
		err := tc.call()
		if err == nil {
			t.Errorf("%s: no error", tc.name)
			continue
		}
		checkStatus(t, err, tc.code, tc.msg)
	}
	if after := h.dump(); after != before {
		t.Errorf("refused admin calls changed the store:\n%s\n---\n%s", before, after)
	}
}

// TestRevokedSecretNamesItsDevices: RevokeEnrollSecret returns the devices
// whose current key it enrolled.
func TestRevokedSecretNamesItsDevices(t *testing.T) {
	t.Parallel()
	h := start(t)
	resp, err := h.admin.CreateEnrollSecret(h.ctx(), &adminv1.CreateEnrollSecretRequest{ExpiresIn: durationpb.New(time.Hour), MaxUses: 5})
	if err != nil {
		t.Fatal(err)
	}
	if s := resp.GetEnrollSecret(); s.GetMaxUses() != 5 || !s.GetExpiresAt().AsTime().Equal(h.clock.Now().Add(time.Hour)) {
		t.Fatalf("secret = %v", s)
	}
	a := h.enrolled(resp.GetSecret())
	h.enrolled(h.secret())
	rev, err := h.admin.RevokeEnrollSecret(h.ctx(), &adminv1.RevokeEnrollSecretRequest{Id: resp.GetEnrollSecret().GetId()})
	if err != nil {
		t.Fatal(err)
	}
	if len(rev.GetDevices()) != 1 || rev.GetDevices()[0].GetDeviceId() != a.DeviceID {
		t.Fatalf("devices named by the revocation: %v", rev.GetDevices())
	}
	_, err = protoagentEnroll(h, resp.GetSecret())
	checkStatus(t, err, codes.Unauthenticated, "revoked")
}

// pendingOf is the one waiting request, or fails.
func pendingOf(t *testing.T, h *harness) *adminv1.PendingEnrollment {
	t.Helper()
	list, err := h.admin.ListPendingEnrollments(h.ctx(), &adminv1.ListPendingEnrollmentsRequest{})
	if err != nil || len(list.GetPending()) != 1 {
		t.Fatalf("ListPendingEnrollments: want one request, got %v %v", list, err)
	}
	return list.GetPending()[0]
}

// listedSerial is the serial number the known-list tests list, and the one
// newAgent's devices have unless a test changes it.
const listedSerial = "C02TEST0001"

func newAgent(t *testing.T, h *harness, hardwareUUID string) *protoagent.Agent {
	t.Helper()
	a, err := protoagent.New(h.addr, h.rootPEM, hardwareUUID)
	if err != nil {
		t.Fatal(err)
	}
	a.Facts.SerialNumber = listedSerial
	return a
}

// enrolledListed is a new device with listedSerial, enrolled with secret.
func enrolledListed(t *testing.T, h *harness, secret string) *protoagent.Agent {
	t.Helper()
	a := newAgent(t, h, nextUUID())
	if _, err := a.Enroll(h.ctx(), secret); err != nil {
		t.Fatal(err)
	}
	return a
}

// TestStaleRequestNeverApproved: a request made before the Mac enrolled,
// or against a key the Mac has since changed, can no longer be approved:
// approving it would hand the Mac's device id to a key the security team
// read about another state. The same key asking again shows the state as
// it is.
func TestStaleRequestNeverApproved(t *testing.T) {
	t.Parallel()
	h := startKnownList(t, &adminv1.KnownDevice{SerialNumber: "C02TEST0001"})
	secret := h.secret()
	victim := nextUUID()

	// 1. Before the Mac enrolls, someone asks as it with an unlisted serial.
	attacker := newAgent(t, h, victim)
	attacker.Facts.SerialNumber = "C02OTHER99"
	_, err := attacker.Enroll(h.ctx(), secret)
	checkStatus(t, err, codes.FailedPrecondition, "unknown_serial")
	early := pendingOf(t, h)
	if early.GetDeviceId() != "" {
		t.Fatalf("early request names device %q", early.GetDeviceId())
	}

	// 2. The Mac enrolls (its serial is listed).
	mac := newAgent(t, h, victim)
	if _, err := mac.Enroll(h.ctx(), secret); err != nil {
		t.Fatal(err)
	}
	before := h.dump()
	_, err = h.admin.ApproveEnrollment(h.ctx(), &adminv1.ApproveEnrollmentRequest{RequestId: early.GetRequestId()})
	checkStatus(t, err, codes.NotFound, "enrolled or changed key")
	if after := h.dump(); after != before {
		t.Errorf("the refused approval changed the store:\n%s\n---\n%s", before, after)
	}
	list, err := h.admin.ListPendingEnrollments(h.ctx(), &adminv1.ListPendingEnrollmentsRequest{})
	if err != nil || len(list.GetPending()) != 0 {
		t.Fatalf("requests after the Mac enrolled: %v %v", list, err)
	}

	// 3. The attacker asks again: an unproven key for the Mac's device,
	// shown as such.
	_, err = attacker.Enroll(h.ctx(), secret)
	checkStatus(t, err, codes.FailedPrecondition, "unproven_key")
	dev, err := h.admin.GetDevice(h.ctx(), &adminv1.GetDeviceRequest{DeviceId: mac.DeviceID})
	if err != nil {
		t.Fatal(err)
	}
	p := pendingOf(t, h)
	if p.GetDeviceId() != mac.DeviceID || p.GetDeviceKeyFingerprint() != dev.GetDevice().GetKeyFingerprint() || p.GetReason() != "unproven_key" {
		t.Fatalf("request after the Mac enrolled = %v", p)
	}

	// 4. The Mac rotates its key with proof: the request made against the
	// old key is gone and cannot be approved.
	rotated := newAgent(t, h, victim)
	if _, err := rotated.EnrollRotating(h.ctx(), secret, mac.Key); err != nil {
		t.Fatal(err)
	}
	_, err = h.admin.ApproveEnrollment(h.ctx(), &adminv1.ApproveEnrollmentRequest{RequestId: p.GetRequestId()})
	checkStatus(t, err, codes.NotFound, "enrolled or changed key")
	if _, err := rotated.Connect(h.ctx()); err != nil {
		t.Fatalf("the rotated key after the refused approval: %v", err)
	}
	_, err = attacker.Connect(h.ctx())
	if err == nil {
		t.Fatal("the attacker's key connected")
	}
}

// TestFullQueueTakesTheGenuineRequest: whoever holds the secret fills a
// Mac's waiting places with their own keys; the Mac's own request is still
// recorded (in the place of the oldest), and can be approved.
func TestFullQueueTakesTheGenuineRequest(t *testing.T) {
	t.Parallel()
	h := start(t)
	secret := h.secret()
	mac := enrolledListed(t, h, secret)
	for range 6 {
		_, err := newAgent(t, h, mac.Facts.GetHardwareUuid()).Enroll(h.ctx(), secret)
		checkStatus(t, err, codes.FailedPrecondition, "unproven_key")
		h.clock.Add(time.Second)
	}
	reinstalled := newAgent(t, h, mac.Facts.GetHardwareUuid())
	_, err := reinstalled.Enroll(h.ctx(), secret)
	checkStatus(t, err, codes.FailedPrecondition, "unproven_key")
	var detail *agentv1.EnrollmentPending
	for _, d := range statusDetails(err) {
		if p, ok := d.(*agentv1.EnrollmentPending); ok {
			detail = p
		}
	}
	list, err := h.admin.ListPendingEnrollments(h.ctx(), &adminv1.ListPendingEnrollmentsRequest{})
	if err != nil || len(list.GetPending()) != 4 {
		t.Fatalf("waiting requests: %v %v; want the 4 places full", list, err)
	}
	if _, err := h.admin.ApproveEnrollment(h.ctx(), &adminv1.ApproveEnrollmentRequest{RequestId: detail.GetRequestId()}); err != nil {
		t.Fatalf("approving the genuine request: %v", err)
	}
	if _, err := reinstalled.Enroll(h.ctx(), secret); err != nil || reinstalled.DeviceID != mac.DeviceID {
		t.Fatalf("the approved Mac: %v, device %s", err, reinstalled.DeviceID)
	}
}

// TestKnownSerialAdmitsOneMac: under known, a listed serial admits one
// machine; another claiming it waits, and a serial that is not exactly
// letters and digits never matches the list.
func TestKnownSerialAdmitsOneMac(t *testing.T) {
	t.Parallel()
	h := startKnownList(t, &adminv1.KnownDevice{SerialNumber: "C02TEST0001"}, &adminv1.KnownDevice{SerialNumber: "C02VICTIM01"})
	secret := h.secret()
	enrolledListed(t, h, secret)
	for _, tc := range []struct{ serial, reason string }{
		{"C02TEST0001", "serial_enrolled"},
		{"c02test0001", "serial_enrolled"},
		{" c02victim01 ", "unknown_serial"},
		{"C02V\u0131CTIM01", "unknown_serial"}, // dotless ı
		{"C02VICTIM01\u00a0", "unknown_serial"},
		{"C02VICT\u0130M01", "unknown_serial"}, // dotted İ
	} {
		a := newAgent(t, h, nextUUID())
		a.Facts.SerialNumber = tc.serial
		_, err := a.Enroll(h.ctx(), secret)
		if err == nil {
			t.Errorf("serial %q enrolled; want it to wait (%s)", tc.serial, tc.reason)
			continue
		}
		checkStatus(t, err, codes.FailedPrecondition, tc.reason)
	}
	// The exact serial still admits its Mac.
	a := newAgent(t, h, nextUUID())
	a.Facts.SerialNumber = "C02VICTIM01"
	if _, err := a.Enroll(h.ctx(), secret); err != nil {
		t.Fatalf("the listed Mac: %v", err)
	}

	// A serial that is not listed but that an enrolled device has (one
	// approved by hand) is a claim on it, as the listing and the approval
	// see it, at every ask: else each poll re-filed the request the
	// approver was about to approve, and a Mac with a new logic board
	// could never be approved.
	unlisted := newAgent(t, h, nextUUID())
	unlisted.Facts.SerialNumber = "C02UNLISTED"
	_, err := unlisted.Enroll(h.ctx(), secret)
	checkStatus(t, err, codes.FailedPrecondition, "unknown_serial")
	if _, err := h.admin.ApproveEnrollment(h.ctx(), &adminv1.ApproveEnrollmentRequest{RequestId: requestOf(t, h, unlisted).GetRequestId()}); err != nil {
		t.Fatal(err)
	}
	if _, err := unlisted.Enroll(h.ctx(), secret); err != nil {
		t.Fatal(err)
	}
	board := newAgent(t, h, nextUUID())
	board.Facts.SerialNumber = "C02UNLISTED"
	for range 2 { // two asks: the same request, the same reason
		_, err = board.Enroll(h.ctx(), secret)
		checkStatus(t, err, codes.FailedPrecondition, "serial_enrolled")
	}
	p := requestOf(t, h, board)
	if _, err := h.admin.ApproveEnrollment(h.ctx(), &adminv1.ApproveEnrollmentRequest{RequestId: p.GetRequestId()}); err != nil {
		t.Fatalf("approving the new board, listed as %s: %v", p.GetReason(), err)
	}
	if _, err := board.Enroll(h.ctx(), secret); err != nil {
		t.Fatalf("the approved board: %v", err)
	}
}

// requestOf is the waiting request of a's hardware UUID, or fails.
func requestOf(t *testing.T, h *harness, a *protoagent.Agent) *adminv1.PendingEnrollment {
	t.Helper()
	list, err := h.admin.ListPendingEnrollments(h.ctx(), &adminv1.ListPendingEnrollmentsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range list.GetPending() {
		if p.GetFacts().GetHardwareUuid() == a.Facts.GetHardwareUuid() {
			return p
		}
	}
	t.Fatalf("no request waits for %s", a.Facts.GetHardwareUuid())
	return nil
}

// TestAutoAdmitsOneMacASerial: under auto, too, a new machine claiming
// the serial of an enrolled Mac waits for the security team, also once that
// Mac is revoked: a stolen Mac's serial is not free for whoever holds the
// secret (Cloudflare would score the stolen Mac by the impostor's
// posture). The security team can still approve it (a logic board
// replaced), and a serial no device has enrolls at once.
func TestAutoAdmitsOneMacASerial(t *testing.T) {
	t.Parallel()
	h := start(t)
	secret := h.secret()
	stolen := h.enrolled(secret)
	serial := stolen.Facts.GetSerialNumber()
	claim := func(s string) error {
		a := newAgent(t, h, nextUUID())
		a.Facts.SerialNumber = s
		_, err := a.Enroll(h.ctx(), secret)
		return err
	}
	checkStatus(t, claim(serial), codes.FailedPrecondition, "serial_enrolled")
	checkStatus(t, claim(strings.ToLower(serial)), codes.FailedPrecondition, "serial_enrolled")
	if _, err := h.admin.RevokeDevice(h.ctx(), &adminv1.RevokeDeviceRequest{DeviceId: stolen.DeviceID, Reason: "stolen"}); err != nil {
		t.Fatal(err)
	}
	impostor := newAgent(t, h, nextUUID())
	impostor.Facts.SerialNumber = serial
	_, err := impostor.Enroll(h.ctx(), secret)
	checkStatus(t, err, codes.FailedPrecondition, "serial_enrolled")
	if d, err := h.srv.Store.GetDeviceBySerial(h.ctx(), serial); err != nil || d.ID != stolen.DeviceID {
		t.Fatalf("the serial's device: %v, %v; want only the revoked Mac", d.ID, err)
	}
	if _, err := impostor.Connect(h.ctx()); err == nil {
		t.Fatal("the impostor connected")
	}

	// Each claim is listed with the device whose serial it claims, the
	// stolen Mac, revoked; so is a rejected one.
	list, err := h.admin.ListPendingEnrollments(h.ctx(), &adminv1.ListPendingEnrollmentsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var (
		id       string
		rejected bool
	)
	holder := &adminv1.SerialHolder{DeviceId: stolen.DeviceID, Hostname: stolen.Facts.GetHostname(), Revoked: true}
	for _, p := range list.GetPending() {
		if p.GetReason() != "serial_enrolled" || len(p.GetSerialHolders()) != 1 || !proto.Equal(p.GetSerialHolders()[0], holder) || p.GetSerialHolderCount() != 1 {
			t.Errorf("request %s: reason %s, serial held by %v (%d); want serial_enrolled, held by %v", p.GetRequestId(), p.GetReason(), p.GetSerialHolders(), p.GetSerialHolderCount(), holder)
		}
		if p.GetFacts().GetHardwareUuid() == impostor.Facts.GetHardwareUuid() {
			id = p.GetRequestId()
		} else if !rejected {
			rejected = true
			rej, err := h.admin.RejectEnrollment(h.ctx(), &adminv1.RejectEnrollmentRequest{RequestId: p.GetRequestId()})
			if err != nil || len(rej.GetPending().GetSerialHolders()) != 1 || !proto.Equal(rej.GetPending().GetSerialHolders()[0], holder) {
				t.Errorf("RejectEnrollment of a claim: %v, %v; want it to name %v", rej, err, holder)
			}
		}
	}
	if !rejected {
		t.Error("no claim but the impostor's was listed")
	}
	if _, err := h.admin.ApproveEnrollment(h.ctx(), &adminv1.ApproveEnrollmentRequest{RequestId: id}); err != nil {
		t.Fatalf("approving: %v", err)
	}
	if _, err := impostor.Enroll(h.ctx(), secret); err != nil {
		t.Fatalf("the approved Mac: %v", err)
	}
	if err := claim("C02FRESH0001"); err != nil {
		t.Fatalf("a serial no device has: %v", err)
	}
}

// TestManualNamesAClaimedSerial: under manual every new device waits, and
// one claiming an enrolled Mac's serial waits as serial_enrolled, so that
// the approver sees the claim.
func TestManualNamesAClaimedSerial(t *testing.T) {
	t.Parallel()
	h := startWith(t, func(c *config.Config) { c.EnrollApproval = config.EnrollManual })
	secret := h.secret()
	mac := newAgent(t, h, nextUUID())
	_, err := mac.Enroll(h.ctx(), secret)
	checkStatus(t, err, codes.FailedPrecondition, "manual")
	p := pendingOf(t, h)
	if _, err := h.admin.ApproveEnrollment(h.ctx(), &adminv1.ApproveEnrollmentRequest{RequestId: p.GetRequestId()}); err != nil {
		t.Fatal(err)
	}
	if _, err := mac.Enroll(h.ctx(), secret); err != nil {
		t.Fatalf("the approved Mac: %v", err)
	}
	claim := newAgent(t, h, nextUUID())
	_, err = claim.Enroll(h.ctx(), secret)
	checkStatus(t, err, codes.FailedPrecondition, "serial_enrolled")
	other := newAgent(t, h, nextUUID())
	other.Facts.SerialNumber = "C02OTHER99"
	_, err = other.Enroll(h.ctx(), secret)
	checkStatus(t, err, codes.FailedPrecondition, "manual")
}

// TestListingNamesASerialEnrolledSince: a request that waited for another
// reason is listed as serial_enrolled once a device has enrolled on its
// serial, so the approver sees the claim whatever the order of events.
func TestListingNamesASerialEnrolledSince(t *testing.T) {
	t.Parallel()
	h := startWith(t, func(c *config.Config) { c.EnrollApproval = config.EnrollManual })
	secret := h.secret()
	first, second := newAgent(t, h, nextUUID()), newAgent(t, h, nextUUID())
	for _, a := range []*protoagent.Agent{first, second} {
		_, err := a.Enroll(h.ctx(), secret)
		checkStatus(t, err, codes.FailedPrecondition, "manual")
	}
	reasons := func() map[string]string {
		list, err := h.admin.ListPendingEnrollments(h.ctx(), &adminv1.ListPendingEnrollmentsRequest{})
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]string{}
		for _, p := range list.GetPending() {
			out[p.GetFacts().GetHardwareUuid()] = p.GetRequestId() + " " + p.GetReason()
		}
		return out
	}
	rs := reasons()
	id, _, _ := strings.Cut(rs[second.Facts.GetHardwareUuid()], " ")
	if _, err := h.admin.ApproveEnrollment(h.ctx(), &adminv1.ApproveEnrollmentRequest{RequestId: id}); err != nil {
		t.Fatal(err)
	}
	if _, r, _ := strings.Cut(reasons()[first.Facts.GetHardwareUuid()], " "); r != "serial_enrolled" {
		t.Fatalf("the first request is listed as %q once a device enrolled on its serial; want serial_enrolled", r)
	}
}

// TestApprovalRechecksTheSerial: two requests on one serial, both read as
// manual; the first approved, the second is refused once (its serial is
// taken since), told why, and listed as serial_enrolled; approved again
// with that in view (a Mac with a new logic board), it enrolls.
func TestApprovalRechecksTheSerial(t *testing.T) {
	t.Parallel()
	h := startWith(t, func(c *config.Config) { c.EnrollApproval = config.EnrollManual })
	secret := h.secret()
	mac, claim := newAgent(t, h, nextUUID()), newAgent(t, h, nextUUID())
	ids := map[*protoagent.Agent]string{}
	for _, a := range []*protoagent.Agent{mac, claim} {
		_, err := a.Enroll(h.ctx(), secret)
		checkStatus(t, err, codes.FailedPrecondition, "manual")
	}
	list, err := h.admin.ListPendingEnrollments(h.ctx(), &adminv1.ListPendingEnrollmentsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range list.GetPending() {
		for _, a := range []*protoagent.Agent{mac, claim} {
			if p.GetFacts().GetHardwareUuid() == a.Facts.GetHardwareUuid() {
				ids[a] = p.GetRequestId()
			}
		}
	}
	approve := func(a *protoagent.Agent) error {
		_, err := h.admin.ApproveEnrollment(h.ctx(), &adminv1.ApproveEnrollmentRequest{RequestId: ids[a]})
		return err
	}
	if err := approve(mac); err != nil {
		t.Fatal(err)
	}
	checkStatus(t, approve(claim), codes.FailedPrecondition, "which a device has enrolled on since")
	if _, err := claim.Enroll(h.ctx(), secret); err == nil {
		t.Fatal("the refused request's agent enrolled")
	}
	// Filed anew: the id read before finds nothing, whoever retries it.
	checkStatus(t, approve(claim), codes.NotFound, "no enrollment request")
	got := pendingOf(t, h)
	if got.GetRequestId() == ids[claim] || got.GetReason() != "serial_enrolled" {
		t.Fatalf("after the refusal the request is %s %s; want a new id, serial_enrolled", got.GetRequestId(), got.GetReason())
	}
	ids[claim] = got.GetRequestId()
	if err := approve(claim); err != nil {
		t.Fatalf("approved, read as a claim: %v", err)
	}
}

// TestPollDoesNotShowAClaimForTheApprover: a request read as manual whose
// serial a device enrolls on meanwhile is filed anew when its agent asks
// again (now serial_enrolled): the id the approver read finds nothing, so
// no poll turns their approval into one of a claim they were not shown.
func TestPollDoesNotShowAClaimForTheApprover(t *testing.T) {
	t.Parallel()
	h := startWith(t, func(c *config.Config) { c.EnrollApproval = config.EnrollManual })
	secret := h.secret()
	mac, claim := newAgent(t, h, nextUUID()), newAgent(t, h, nextUUID())
	_, err := claim.Enroll(h.ctx(), secret)
	checkStatus(t, err, codes.FailedPrecondition, "manual")
	read := pendingOf(t, h).GetRequestId()
	_, err = mac.Enroll(h.ctx(), secret)
	checkStatus(t, err, codes.FailedPrecondition, "manual")
	list, err := h.admin.ListPendingEnrollments(h.ctx(), &adminv1.ListPendingEnrollmentsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range list.GetPending() {
		if p.GetRequestId() != read {
			if _, err := h.admin.ApproveEnrollment(h.ctx(), &adminv1.ApproveEnrollmentRequest{RequestId: p.GetRequestId()}); err != nil {
				t.Fatal(err)
			}
		}
	}
	_, err = claim.Enroll(h.ctx(), secret) // the poll
	checkStatus(t, err, codes.FailedPrecondition, "serial_enrolled")
	_, err = h.admin.ApproveEnrollment(h.ctx(), &adminv1.ApproveEnrollmentRequest{RequestId: read})
	checkStatus(t, err, codes.NotFound, "no enrollment request")
	if _, err := claim.Connect(h.ctx()); err == nil {
		t.Fatal("the claim enrolled")
	}
}

// TestFirstSerialOnce: a Mac enrolled with no serial number (osquery
// returned none) takes the one it reports at its next proven enrollment,
// once: after that its serial is its own, and a claim on it waits; its key
// cannot move it to another.
func TestFirstSerialOnce(t *testing.T) {
	t.Parallel()
	h := start(t)
	secret := h.secret()
	mac := newAgent(t, h, nextUUID())
	mac.Facts.SerialNumber = ""
	if _, err := mac.Enroll(h.ctx(), secret); err != nil {
		t.Fatal(err)
	}
	mac.Facts.SerialNumber = "C02FIRST001"
	if _, err := mac.Enroll(h.ctx(), secret); err != nil {
		t.Fatalf("re-enrolling with its serial: %v", err)
	}
	if d, err := h.srv.Store.GetDeviceBySerial(h.ctx(), "C02FIRST001"); err != nil || d.ID != mac.DeviceID {
		t.Fatalf("the serial's device: %q, %v; want %s", d.ID, err, mac.DeviceID)
	}
	impostor := newAgent(t, h, nextUUID())
	impostor.Facts.SerialNumber = "C02FIRST001"
	_, err := impostor.Enroll(h.ctx(), secret)
	checkStatus(t, err, codes.FailedPrecondition, "serial_enrolled")
	mac.Facts.SerialNumber = "C02SECOND01"
	_, err = mac.Enroll(h.ctx(), secret)
	checkStatus(t, err, codes.PermissionDenied, "cannot change by re-enrolling")

	// Under manual no approver has seen that serial: the Mac re-enrolls,
	// keeping none (its key must not take a serial a waiting request of
	// the real Mac claims).
	m := startWith(t, func(c *config.Config) { c.EnrollApproval = config.EnrollManual })
	msecret := m.secret()
	approved := newAgent(t, m, nextUUID())
	approved.Facts.SerialNumber = ""
	_, err = approved.Enroll(m.ctx(), msecret)
	checkStatus(t, err, codes.FailedPrecondition, "manual")
	if _, err := m.admin.ApproveEnrollment(m.ctx(), &adminv1.ApproveEnrollmentRequest{RequestId: pendingOf(t, m).GetRequestId()}); err != nil {
		t.Fatal(err)
	}
	if _, err := approved.Enroll(m.ctx(), msecret); err != nil {
		t.Fatal(err)
	}
	approved.Facts.SerialNumber = "C02FIRST002"
	if _, err := approved.Enroll(m.ctx(), msecret); err != nil {
		t.Fatalf("under manual, re-enrolling reporting a serial: %v", err)
	}
	if _, err := m.srv.Store.GetDeviceBySerial(m.ctx(), "C02FIRST002"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("under manual, the device took a serial no approver saw: %v", err)
	}
}

// TestSerialStaysWithItsMac: the holder of an enrolled Mac's key cannot
// move it to another serial number (a listed one no Mac has yet, or a
// Mac's that enrolled), by re-enrolling with the same key or by a proven
// rotation; nothing changes and the device keeps reporting. Revoking a Mac
// does not free its serial: another machine claiming it waits.
func TestSerialStaysWithItsMac(t *testing.T) {
	t.Parallel()
	h := startKnownList(t, &adminv1.KnownDevice{SerialNumber: "C02TEST0001"}, &adminv1.KnownDevice{SerialNumber: "C02VICTIM01"},
		&adminv1.KnownDevice{SerialNumber: "C02VICTIM02"})
	secret := h.secret()
	a := enrolledListed(t, h, secret)
	victim := newAgent(t, h, nextUUID())
	victim.Facts.SerialNumber = "C02VICTIM02"
	if _, err := victim.Enroll(h.ctx(), secret); err != nil {
		t.Fatalf("the victim Mac: %v", err)
	}

	for _, serial := range []string{"C02VICTIM01", "c02victim02", "", "C02TEST0001 "} {
		before := h.dump()
		a.Facts.SerialNumber = serial
		_, err := a.Enroll(h.ctx(), secret)
		checkStatus(t, err, codes.PermissionDenied, "cannot change by re-enrolling")
		if h.dump() != before {
			t.Errorf("a same-key re-enrollment reporting serial %q changed the store", serial)
		}
		rotated := newAgent(t, h, a.Facts.GetHardwareUuid())
		rotated.Facts.SerialNumber = serial
		_, err = rotated.EnrollRotating(h.ctx(), secret, a.Key)
		checkStatus(t, err, codes.PermissionDenied, "cannot change by re-enrolling")
		if h.dump() != before {
			t.Errorf("a proven rotation reporting serial %q changed the store", serial)
		}
	}
	// The same serial, in another case, is the same serial.
	a.Facts.SerialNumber = "c02test0001"
	if _, err := a.Enroll(h.ctx(), secret); err != nil {
		t.Fatalf("re-enrollment on its own serial: %v", err)
	}
	st := h.connect(a)
	if m, err := st.Exchange(protoagent.Sign(a.Key, a.Report(st.PolicySet, 1, h.clock.Now(), nil, pass))); err != nil || m.GetAck().GetSeq() != 1 {
		t.Fatalf("report after the refusals: %v %v", m, err)
	}
	// The listed serial nobody enrolled still admits its Mac.
	listed := newAgent(t, h, nextUUID())
	listed.Facts.SerialNumber = "C02VICTIM01"
	if _, err := listed.Enroll(h.ctx(), secret); err != nil {
		t.Fatalf("the listed Mac: %v", err)
	}

	// Revoked, the victim's serial admits no other machine by itself.
	if _, err := h.admin.RevokeDevice(h.ctx(), &adminv1.RevokeDeviceRequest{DeviceId: victim.DeviceID, Reason: "stolen"}); err != nil {
		t.Fatal(err)
	}
	claim := newAgent(t, h, nextUUID())
	claim.Facts.SerialNumber = "C02VICTIM02"
	_, err := claim.Enroll(h.ctx(), secret)
	checkStatus(t, err, codes.FailedPrecondition, "serial_enrolled")
}

// TestApprovalSpendsOneUse: an approved Mac collects its certificate even
// when the approval spent the secret's last use, or the secret expired
// since; the key holder re-enrolls likewise. Neither spends a use, and the
// device keeps the secret that gave it its key.
func TestApprovalSpendsOneUse(t *testing.T) {
	t.Parallel()
	h := startWith(t, func(c *config.Config) { c.EnrollApproval = config.EnrollManual })
	resp, err := h.admin.CreateEnrollSecret(h.ctx(), &adminv1.CreateEnrollSecretRequest{MaxUses: 1, ExpiresIn: durationpb.New(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	secret, secretID := resp.GetSecret(), resp.GetEnrollSecret().GetId()
	a := newAgent(t, h, nextUUID())
	_, err = a.Enroll(h.ctx(), secret)
	checkStatus(t, err, codes.FailedPrecondition, "manual")
	if _, err := h.admin.ApproveEnrollment(h.ctx(), &adminv1.ApproveEnrollmentRequest{RequestId: pendingOf(t, h).GetRequestId()}); err != nil {
		t.Fatal(err)
	}
	uses := func() uint32 {
		t.Helper()
		l, err := h.admin.ListEnrollSecrets(h.ctx(), &adminv1.ListEnrollSecretsRequest{})
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range l.GetEnrollSecrets() {
			if s.GetId() == secretID {
				return s.GetUses()
			}
		}
		t.Fatal("secret not listed")
		return 0
	}
	if u := uses(); u != 1 {
		t.Fatalf("uses after the approval = %d, want 1", u)
	}
	if _, err := a.Enroll(h.ctx(), secret); err != nil {
		t.Fatalf("the approved Mac collecting its certificate with a used-up secret: %v", err)
	}
	h.clock.Add(2 * time.Hour)
	if _, err := a.Enroll(h.ctx(), secret); err != nil {
		t.Fatalf("the key holder re-enrolling with an expired secret: %v", err)
	}
	if u := uses(); u != 1 {
		t.Errorf("uses = %d, want 1 (the approval only)", u)
	}
	// Someone else with the lapsed secret gets nothing recorded.
	_, err = newAgent(t, h, nextUUID()).Enroll(h.ctx(), secret)
	checkStatus(t, err, codes.Unauthenticated, "expired")
	// A same-key re-enrollment with another secret keeps the one that gave
	// the device its key.
	if _, err := a.Enroll(h.ctx(), h.secret()); err != nil {
		t.Fatal(err)
	}
	dev, err := h.admin.GetDevice(h.ctx(), &adminv1.GetDeviceRequest{DeviceId: a.DeviceID})
	if err != nil || dev.GetDevice().GetEnrollSecretId() != secretID {
		t.Fatalf("device secret after a same-key re-enrollment: %v %v; want %s", dev, err, secretID)
	}
}

// TestRejectedKeyStaysOut: a key rejected for a Mac is refused whatever
// would admit it: a listed serial, or a switch to auto.
func TestRejectedKeyStaysOut(t *testing.T) {
	t.Parallel()
	h := startKnownList(t, &adminv1.KnownDevice{SerialNumber: "C02TEST0001"})
	secret := h.secret()
	a := newAgent(t, h, nextUUID())
	a.Facts.SerialNumber = "C02OTHER99"
	_, err := a.Enroll(h.ctx(), secret)
	checkStatus(t, err, codes.FailedPrecondition, "unknown_serial")
	p := pendingOf(t, h)
	if _, err := h.admin.RejectEnrollment(h.ctx(), &adminv1.RejectEnrollmentRequest{RequestId: p.GetRequestId()}); err != nil {
		t.Fatal(err)
	}
	a.Facts.SerialNumber = "C02TEST0001"
	before := h.dump()
	_, err = a.Enroll(h.ctx(), secret)
	checkStatus(t, err, codes.PermissionDenied, "rejected")
	if after := h.dump(); after != before {
		t.Errorf("the rejected key's enrollment changed the store:\n%s\n---\n%s", before, after)
	}
	// Another key for that Mac is a new question.
	if _, err := newAgent(t, h, a.Facts.GetHardwareUuid()).Enroll(h.ctx(), secret); err != nil {
		t.Fatalf("another key with the listed serial: %v", err)
	}
	_, err = a.Enroll(h.ctx(), secret)
	checkStatus(t, err, codes.PermissionDenied, "rejected")
}

// TestRefusedEnrollmentLogBounded: refused enrollments, which anyone who
// reaches the port can send, log short lines, and a flood of them a line
// now and then with a count.
func TestRefusedEnrollmentLogBounded(t *testing.T) {
	t.Parallel()
	h := start(t)
	a := newAgent(t, h, nextUUID())
	csr, _ := protoagent.CSR(a.Key)
	facts := proto.CloneOf(a.Facts)
	// As large as a connection without a device certificate takes: 50
	// of them unclipped would be 350 KiB of log.
	facts.HardwareUuid = strings.Repeat("A", 7<<10)
	facts.Hostname = strings.Repeat("h", 255)
	before := len(h.logs.String())
	for range 50 {
		_, err := a.EnrollRaw(h.ctx(), &agentv1.EnrollRequest{EnrollSecret: "0000000000000000.nope", Csr: csr, Facts: facts})
		checkStatus(t, err, codes.Unauthenticated, "not valid")
	}
	// With a valid secret, facts storage would refuse are the sender's
	// error, sampled like the others, not an internal error per request.
	secret := h.secret()
	facts = proto.CloneOf(a.Facts)
	facts.Hostname = "host\x00name"
	for range 20 {
		_, err := a.EnrollRaw(h.ctx(), &agentv1.EnrollRequest{EnrollSecret: secret, Csr: csr, Facts: facts})
		checkStatus(t, err, codes.InvalidArgument, "control character U+0000")
	}
	logged := h.logs.String()[before:]
	if strings.Contains(logged, "level=ERROR") {
		t.Errorf("refused facts logged as errors:\n%.2000s", logged)
	}
	if n := len(logged); n > 4096 {
		t.Errorf("50 refused enrollments logged %d bytes; want a few short lines:\n%.2000s", n, logged)
	}
	if !strings.Contains(logged, "enrollment refused") {
		t.Errorf("no refusal logged at all:\n%s", logged)
	}
}

func protoagentEnroll(h *harness, secret string) (*agentv1.EnrollResponse, error) {
	a, err := protoagent.New(h.addr, h.rootPEM, nextUUID())
	if err != nil {
		return nil, err
	}
	return a.Enroll(h.ctx(), secret)
}

func statusDetails(err error) []any {
	st, _ := status.FromError(err)
	return st.Details()
}

// TestRejectByKey: a key that changes its serial number at every ask is
// filed anew under another id each time, so the id the security team read
// is gone when they reject it; rejected by its fingerprint (the 16 digits
// the listing shows), every request it waits with is, for each Mac it
// asked as, and it is refused from then on. Another key's request is
// untouched.
func TestRejectByKey(t *testing.T) {
	t.Parallel()
	h := startWith(t, func(c *config.Config) { c.EnrollApproval = config.EnrollManual })
	secret := h.secret()
	hopper := newAgent(t, h, nextUUID())
	ask := func(hardwareUUID, serial string) {
		t.Helper()
		hopper.Facts.HardwareUuid, hopper.Facts.SerialNumber = hardwareUUID, serial
		_, err := hopper.Enroll(h.ctx(), secret)
		checkStatus(t, err, codes.FailedPrecondition, "waits for approval")
	}
	first, second := hopper.Facts.GetHardwareUuid(), nextUUID()
	ask(first, "C02HOP0001")
	read := pendingOf(t, h)
	ask(first, "C02HOP0002")
	ask(second, "C02HOP0003")
	other := newAgent(t, h, nextUUID())
	other.Facts.SerialNumber = "C02OTHER99"
	_, err := other.Enroll(h.ctx(), secret)
	checkStatus(t, err, codes.FailedPrecondition, "manual")
	otherReq := requestOf(t, h, other)

	_, err = h.admin.RejectEnrollment(h.ctx(), &adminv1.RejectEnrollmentRequest{RequestId: read.GetRequestId()})
	checkStatus(t, err, codes.NotFound, "no enrollment request")

	resp, err := h.admin.RejectEnrollment(h.ctx(), &adminv1.RejectEnrollmentRequest{KeyFingerprint: strings.ToUpper(read.GetKeyFingerprint()[:16])})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, p := range resp.GetRejected() {
		if p.GetKeyFingerprint() != read.GetKeyFingerprint() || p.GetRejectedAt() == nil {
			t.Errorf("rejected %v; want the key's request, rejected", p)
		}
		got[p.GetFacts().GetHardwareUuid()] = p.GetFacts().GetSerialNumber()
	}
	if want := map[string]string{first: "C02HOP0002", second: "C02HOP0003"}; len(got) != 2 || got[first] != want[first] || got[second] != want[second] {
		t.Errorf("rejected requests (hardware UUID: serial) %v, want %v", got, want)
	}
	if !proto.Equal(resp.GetPending(), resp.GetRejected()[0]) {
		t.Errorf("pending %v, want the first rejected", resp.GetPending())
	}
	if p := pendingOf(t, h); !proto.Equal(p, otherReq) {
		t.Errorf("the other key's request after the rejection: %v, want %v", p, otherReq)
	}

	// Refused from then on, whatever serial it reports, on either Mac.
	for _, hw := range []string{first, second} {
		hopper.Facts.HardwareUuid, hopper.Facts.SerialNumber = hw, "C02HOP0004"
		_, err := hopper.Enroll(h.ctx(), secret)
		checkStatus(t, err, codes.PermissionDenied, "rejected")
	}
	// By id, a rejection's response lists the request too.
	r, err := h.admin.RejectEnrollment(h.ctx(), &adminv1.RejectEnrollmentRequest{RequestId: otherReq.GetRequestId()})
	if err != nil || len(r.GetRejected()) != 1 || !proto.Equal(r.GetRejected()[0], r.GetPending()) || r.GetPending().GetRequestId() != otherReq.GetRequestId() {
		t.Errorf("RejectEnrollment by id: %v, %v", r, err)
	}
}

// TestRejectByKeyBadInput: a rejection that names both a request and a
// key, or neither, or a key fingerprint that is no hex, too short, too
// long, or no waiting key's, is refused with a clear error, and changes
// nothing. (A prefix of 16 digits that two keys share cannot be made
// here; admin's own tests refuse an ambiguous one.)
func TestRejectByKeyBadInput(t *testing.T) {
	t.Parallel()
	h := startWith(t, func(c *config.Config) { c.EnrollApproval = config.EnrollManual })
	secret := h.secret()
	a := newAgent(t, h, nextUUID())
	_, err := a.Enroll(h.ctx(), secret)
	checkStatus(t, err, codes.FailedPrecondition, "manual")
	p := pendingOf(t, h)
	fp := p.GetKeyFingerprint()
	// A fingerprint no waiting key has: the last digit changed.
	last := "0"
	if fp[63] == '0' {
		last = "1"
	}
	unknown := fp[:63] + last
	before := h.dump()
	for _, tc := range []struct {
		name string
		req  *adminv1.RejectEnrollmentRequest
		code codes.Code
		msg  string
	}{
		{"both", &adminv1.RejectEnrollmentRequest{RequestId: p.GetRequestId(), KeyFingerprint: fp}, codes.InvalidArgument, "not several"},
		{"neither", &adminv1.RejectEnrollmentRequest{}, codes.InvalidArgument, "request_id, key_fingerprint or source is required"},
		{"not hex", &adminv1.RejectEnrollmentRequest{KeyFingerprint: "zz" + fp[2:16]}, codes.InvalidArgument, "is not hex"},
		{"a colon-separated fingerprint", &adminv1.RejectEnrollmentRequest{KeyFingerprint: fp[:2] + ":" + fp[2:16]}, codes.InvalidArgument, "is not hex"},
		{"short", &adminv1.RejectEnrollmentRequest{KeyFingerprint: fp[:15]}, codes.InvalidArgument, "is 15 hex digits; give at least 16"},
		{"long", &adminv1.RejectEnrollmentRequest{KeyFingerprint: fp + "0"}, codes.InvalidArgument, "is 65 characters"},
		{"not found", &adminv1.RejectEnrollmentRequest{KeyFingerprint: unknown}, codes.NotFound, "no waiting enrollment request has a key whose fingerprint starts with " + unknown},
	} {
		_, err := h.admin.RejectEnrollment(h.ctx(), tc.req)
		if err == nil {
			t.Errorf("%s: no error", tc.name)
			continue
		}
		if s := status.Convert(err); s.Code() != tc.code || !strings.Contains(s.Message(), tc.msg) {
			t.Errorf("%s: %s %q, want %s containing %q", tc.name, s.Code(), s.Message(), tc.code, tc.msg)
		}
	}
	if after := h.dump(); after != before {
		t.Errorf("refused rejections changed the store:\n%s\n---\n%s", before, after)
	}
	if got := pendingOf(t, h); !proto.Equal(got, p) {
		t.Errorf("the request after refused rejections: %v, want %v", got, p)
	}
}

// TestRemovedRejectionWaitsAgain: rejected requests are kept up to a
// bound, the oldest rejection going first. Losing one fails safe: its key
// asking again waits for the security team again, under the reason it
// waited for at first (another key for an enrolled Mac; a new machine
// claiming an enrolled Mac's serial, even under auto), and is never let in.
func TestRemovedRejectionWaitsAgain(t *testing.T) {
	t.Parallel()
	h := start(t)
	secret := h.secret()
	mac := h.enrolled(secret)
	other := newAgent(t, h, mac.Facts.GetHardwareUuid())
	other.Facts.SerialNumber = mac.Facts.GetSerialNumber()
	claim := newAgent(t, h, nextUUID())
	claim.Facts.SerialNumber = mac.Facts.GetSerialNumber()
	for _, tc := range []struct {
		a      *protoagent.Agent
		reason string
	}{{other, "unproven_key"}, {claim, "serial_enrolled"}} {
		_, err := tc.a.Enroll(h.ctx(), secret)
		checkStatus(t, err, codes.FailedPrecondition, tc.reason)
		p := requestOf(t, h, tc.a)
		if _, err := h.admin.RejectEnrollment(h.ctx(), &adminv1.RejectEnrollmentRequest{RequestId: p.GetRequestId()}); err != nil {
			t.Fatal(err)
		}
		_, err = tc.a.Enroll(h.ctx(), secret)
		checkStatus(t, err, codes.PermissionDenied, "rejected")
	}

	// A later rejection, with room for one: both earlier ones go.
	last := newAgent(t, h, nextUUID())
	last.Facts.SerialNumber = mac.Facts.GetSerialNumber()
	_, err := last.Enroll(h.ctx(), secret)
	checkStatus(t, err, codes.FailedPrecondition, "serial_enrolled")
	when := h.clock.Now().Add(time.Minute)
	if _, err := h.srv.Store.RejectEnrollment(h.ctx(), requestOf(t, h, last).GetRequestId(), when, storage.PendingLimits{Rejected: 1},
		storage.AuditEvent{At: when, Actor: "test", Action: "device.enroll_reject"}); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		a      *protoagent.Agent
		reason string
	}{{other, "unproven_key"}, {claim, "serial_enrolled"}} {
		_, err := tc.a.Enroll(h.ctx(), secret)
		checkStatus(t, err, codes.FailedPrecondition, tc.reason)
		if p := requestOf(t, h, tc.a); p.GetRejectedAt() != nil || p.GetRequests() != 1 {
			t.Errorf("the request after its rejection was removed: %v; want a new request, waiting", p)
		}
	}
	_, err = last.Enroll(h.ctx(), secret)
	checkStatus(t, err, codes.PermissionDenied, "rejected")
	d, err := h.admin.GetDevice(h.ctx(), &adminv1.GetDeviceRequest{DeviceId: mac.DeviceID})
	if err != nil {
		t.Fatal(err)
	}
	devs, err := h.admin.ListDevices(h.ctx(), &adminv1.ListDevicesRequest{})
	if err != nil || len(devs.GetDevices()) != 1 || d.GetDevice().GetEnrollments() != 1 {
		t.Errorf("devices after the removed rejections' keys asked again: %v, %v; want only the Mac, enrolled once", devs, err)
	}
}

// TestReinstate: a revoked Mac comes back only through the security team,
// with a new key. Its revoked key is refused and records nothing; a new key
// waits as revoked_device under auto, spending no use; rejecting keeps the
// Mac revoked and that key out; approving reinstates the same device with
// the new key, audited, and the agent enrolls and reports again.
func TestReinstate(t *testing.T) {
	t.Parallel()
	h := start(t)
	secret := h.secret()
	a := h.enrolled(secret)
	st := h.connect(a)
	if _, err := h.admin.RevokeDevice(h.ctx(), &adminv1.RevokeDeviceRequest{DeviceId: a.DeviceID, Reason: "stolen"}); err != nil {
		t.Fatal(err)
	}
	checkStatus(t, streamEnd(t, st, "the revoked device's stream"), codes.PermissionDenied, "revoked")

	// The revoked key: refused.
	before := h.dump()
	_, err := a.Enroll(h.ctx(), secret)
	checkStatus(t, err, codes.PermissionDenied, "a key it held cannot enroll again")
	if h.dump() != before {
		t.Fatal("the revoked key's request changed the database")
	}

	// A new key waits with its reason, and the device stays revoked.
	// The same Mac (its hardware UUID and serial) with a new key.
	sameMac := func() *protoagent.Agent {
		n := newAgent(t, h, a.Facts.GetHardwareUuid())
		n.Facts.SerialNumber = a.Facts.GetSerialNumber()
		return n
	}
	rejected := sameMac()
	_, err = rejected.Enroll(h.ctx(), secret)
	checkStatus(t, err, codes.FailedPrecondition, "revoked_device")
	p := pendingOf(t, h)
	if p.GetReason() != "revoked_device" || p.GetDeviceId() != a.DeviceID || p.GetDeviceRevokedAt() == nil {
		t.Fatalf("pending request = %v", p)
	}
	if _, err := h.admin.RejectEnrollment(h.ctx(), &adminv1.RejectEnrollmentRequest{RequestId: p.GetRequestId()}); err != nil {
		t.Fatal(err)
	}
	_, err = rejected.Enroll(h.ctx(), secret)
	checkStatus(t, err, codes.PermissionDenied, "rejected")
	dev, err := h.admin.GetDevice(h.ctx(), &adminv1.GetDeviceRequest{DeviceId: a.DeviceID})
	if err != nil || dev.GetDevice().GetRevokedAt() == nil {
		t.Fatalf("after the rejection: %v %v; want the device revoked", dev, err)
	}

	// Another new key, proved by the revoked key's signature: no proof for
	// a revoked Mac; it waits too.
	back := sameMac()
	_, err = back.EnrollRotating(h.ctx(), secret, a.Key)
	checkStatus(t, err, codes.FailedPrecondition, "revoked_device")
	p = pendingOf(t, h)
	resp, err := h.admin.ApproveEnrollment(h.ctx(), &adminv1.ApproveEnrollmentRequest{RequestId: p.GetRequestId()})
	if err != nil || !resp.GetReinstated() || resp.GetDevice().GetDeviceId() != a.DeviceID || resp.GetDevice().GetRevokedAt() != nil ||
		resp.GetDevice().GetKeyFingerprint() != p.GetKeyFingerprint() {
		t.Fatalf("ApproveEnrollment: %v %v", resp, err)
	}
	audit, err := h.admin.ListAuditEvents(h.ctx(), &adminv1.ListAuditEventsRequest{DeviceId: a.DeviceID, Action: "device.reinstate"})
	if err != nil || len(audit.GetEvents()) != 1 || !strings.Contains(audit.GetEvents()[0].GetDetail(), `"stolen"`) {
		t.Fatalf("reinstatement audit: %v %v", audit, err)
	}

	// The approved key collects its certificate and reports under the same
	// device id; the revoked key stays out.
	if _, err := back.Enroll(h.ctx(), secret); err != nil {
		t.Fatalf("the approved key's enrollment: %v", err)
	}
	if back.DeviceID != a.DeviceID {
		t.Fatalf("reinstated device id %s, want %s", back.DeviceID, a.DeviceID)
	}
	st = h.connect(back)
	if m, err := st.Exchange(protoagent.Sign(back.Key, back.Report(st.PolicySet, 1, h.clock.Now(), nil, pass))); err != nil || m.GetAck().GetSeq() != 1 {
		t.Fatalf("report after reinstatement: %v %v", m, err)
	}
	_, err = a.Connect(h.ctx())
	checkStatus(t, err, codes.PermissionDenied, "no longer uses")
	_, err = a.Enroll(h.ctx(), secret)
	checkStatus(t, err, codes.FailedPrecondition, "unproven_key")
}
