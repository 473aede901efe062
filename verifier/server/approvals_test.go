package server_test

import (
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/clearance/clearance/internal/protoagent"
	"github.com/clearance/clearance/pkg/keyrotation"
	adminv1 "github.com/clearance/clearance/proto/gen/clearance/admin/v1"
	agentv1 "github.com/clearance/clearance/proto/gen/clearance/agent/v1"
	"github.com/clearance/clearance/verifier/config"
)

// TestUnprovenReenrollmentWaits: the secret and a known hardware UUID with
// another key do not replace the device's key; the request waits (with its
// detail), the device keeps reporting, a bad rotation proof changes
// nothing either, and approval replaces the key and ends the old stream.
func TestUnprovenReenrollmentWaits(t *testing.T) {
	t.Parallel()
	h := start(t)
	secret := h.secret()
	a := h.enrolled(secret)
	st, err := a.Connect(h.ctx())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()

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
	if p.GetDeviceId() != a.DeviceID || p.GetRequests() != 2 || !strings.HasPrefix(p.GetSource(), "127.0.0.1:") || p.GetKeyFingerprint() == dev.GetDevice().GetKeyFingerprint() {
		t.Fatalf("pending request = %v", p)
	}

	// Approved: the old key's stream ends, the new key enrolls on its own.
	resp, err := h.admin.ApproveEnrollment(h.ctx(), &adminv1.ApproveEnrollmentRequest{RequestId: p.GetRequestId()})
	if err != nil || !resp.GetReplacedKey() || resp.GetDevice().GetKeyFingerprint() != p.GetKeyFingerprint() {
		t.Fatalf("ApproveEnrollment: %v %v", resp, err)
	}
	ended := make(chan error, 1)
	go func() {
		for {
			if _, err := st.Client.Recv(); err != nil {
				ended <- err
				return
			}
		}
	}()
	select {
	case err := <-ended:
		checkStatus(t, err, codes.PermissionDenied, "enrolled again with another key")
	case <-time.After(5 * time.Second):
		t.Fatal("the old key's stream did not end at approval")
	}
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

	k := startWith(t, func(c *config.Config) { c.EnrollApproval = config.EnrollKnown })
	ksecret := k.secret()
	if _, err := k.admin.ImportKnownDevices(k.ctx(), &adminv1.ImportKnownDevicesRequest{
		Devices: []*adminv1.KnownDevice{{SerialNumber: "c02test0001", Name: "test mac"}}, Source: "test",
	}); err != nil {
		t.Fatal(err)
	}
	listed := k.enrolled(ksecret) // protoagent's serial is C02TEST0001
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
		{"import nothing", func() error {
			_, err := h.admin.ImportKnownDevices(ctx, &adminv1.ImportKnownDevicesRequest{})
			return err
		}, codes.InvalidArgument, "devices is empty"},
		{"import hostile serial", func() error {
			_, err := h.admin.ImportKnownDevices(ctx, &adminv1.ImportKnownDevicesRequest{Devices: []*adminv1.KnownDevice{
				{SerialNumber: "C02GOOD001"}, {SerialNumber: "=cmd|' /C calc'!A0"}}})
			return err
		}, codes.InvalidArgument, "devices[1]: serial number"},
		{"import control characters in a name", func() error {
			_, err := h.admin.ImportKnownDevices(ctx, &adminv1.ImportKnownDevicesRequest{Devices: []*adminv1.KnownDevice{
				{SerialNumber: "C02GOOD001", Name: "a\x1b[2Jb"}}})
			return err
		}, codes.InvalidArgument, "control character"},
		{"import a serial twice", func() error {
			_, err := h.admin.ImportKnownDevices(ctx, &adminv1.ImportKnownDevicesRequest{Devices: []*adminv1.KnownDevice{
				{SerialNumber: "C02GOOD001"}, {SerialNumber: "c02good001"}}})
			return err
		}, codes.InvalidArgument, "listed twice"},
		// 5,001 rows are over the message bound of a connection without a
		// device certificate, before any count (admin's own tests check
		// MaxImport); the CLI sends lists in pieces that fit.
		{"import too many", func() error {
			ds := make([]*adminv1.KnownDevice, 5001)
			for i := range ds {
				ds[i] = &adminv1.KnownDevice{SerialNumber: "C02GOOD001"}
			}
			_, err := h.admin.ImportKnownDevices(ctx, &adminv1.ImportKnownDevicesRequest{Devices: ds})
			return err
		}, codes.ResourceExhausted, "larger than max"},
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
