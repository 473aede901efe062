package enroll_test

import (
	"errors"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	agentv1 "github.com/clearance/clearance/proto/gen/clearance/agent/v1"
	"github.com/clearance/clearance/verifier/enroll"
	"github.com/clearance/clearance/verifier/storage"
)

// TestRevokedMacWaits: under auto, a revoked Mac's new keys wait for the
// security team as revoked_device, within the per-Mac bound and spending
// no use; its revoked key, and a rotation that key signed, never enroll.
func TestRevokedMacWaits(t *testing.T) {
	f := newFixture(t, 2)
	f.svc.Admission = enroll.AdmitAuto
	f.svc.PendingLimits = storage.PendingLimits{PerDevice: 2, Total: 10}
	m := newMac(t, 1)
	if _, _, err := f.enroll(t, m); err != nil {
		t.Fatal(err)
	}
	dev := f.device(t, m)
	if _, err := f.store.RevokeDevice(t.Context(), dev.ID, "stolen", f.clock.now(), storage.AuditEvent{At: f.clock.now(), Actor: "admin-api", Action: "device.revoke"}); err != nil {
		t.Fatal(err)
	}

	// The revoked key: refused, with what to do.
	_, outcome, err := f.enroll(t, m)
	if status.Code(err) != codes.PermissionDenied || outcome != "revoked_device" {
		t.Fatalf("the revoked key: %s %v; want PermissionDenied", outcome, err)
	}

	// New keys, and one the revoked key signed for: each waits.
	for i := range 3 {
		var err error
		if i == 0 {
			_, outcome, err = f.rotate(t, m)
		} else {
			_, outcome, err = f.svc.Enroll(t.Context(), f.enrollReq(t, m, newKey(t)))
		}
		var pending *agentv1.EnrollmentPending
		for _, d := range status.Convert(err).Details() {
			if p, ok := d.(*agentv1.EnrollmentPending); ok {
				pending = p
			}
		}
		if outcome != enroll.OutcomePending || pending.GetReason() != enroll.PendingRevokedDevice {
			t.Fatalf("new key %d: %s %v; want pending as %s", i, outcome, err, enroll.PendingRevokedDevice)
		}
	}
	ps, err := f.store.ListPendingEnrollments(t.Context(), "", 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(ps) != 2 {
		t.Fatalf("%d requests wait; want the per-Mac bound, 2", len(ps))
	}
	for _, p := range ps {
		if p.DeviceID != dev.ID || !p.DeviceRevokedAt.Equal(f.device(t, m).RevokedAt) {
			t.Errorf("request %s: device %s revoked at %v; want %s's revocation", p.ID, p.DeviceID, p.DeviceRevokedAt, dev.ID)
		}
	}
	if u := f.uses(t); u != 1 {
		t.Errorf("secret uses = %d; want 1, the first enrollment's (waiting spends none)", u)
	}
	if d := f.device(t, m); !d.Revoked() {
		t.Error("the device is no longer revoked")
	}
	if _, err := f.store.FindEnrollmentRequest(t.Context(), m.uuid, dev.PublicKey); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("a request for the revoked key: %v; want none", err)
	}
}

// TestRevokedMacsEarlierKeyRefused: a key the Mac rotated away from before
// it was revoked is refused as its last key is, and nothing waits for it.
func TestRevokedMacsEarlierKeyRefused(t *testing.T) {
	f := newFixture(t, 2)
	f.svc.Admission = enroll.AdmitAuto
	m := newMac(t, 1)
	if _, _, err := f.enroll(t, m); err != nil {
		t.Fatal(err)
	}
	first := m.key
	if _, _, err := f.rotate(t, m); err != nil {
		t.Fatal(err)
	}
	dev := f.device(t, m)
	if _, err := f.store.RevokeDevice(t.Context(), dev.ID, "stolen", f.clock.now(), storage.AuditEvent{At: f.clock.now(), Actor: "admin-api", Action: "device.revoke"}); err != nil {
		t.Fatal(err)
	}
	_, outcome, err := f.svc.Enroll(t.Context(), f.enrollReq(t, m, first))
	if status.Code(err) != codes.PermissionDenied || outcome != "revoked_device" || !strings.Contains(status.Convert(err).Message(), "a key it held cannot enroll again") {
		t.Fatalf("the key before the last: %s %v; want PermissionDenied", outcome, err)
	}
	if ps, err := f.store.ListPendingEnrollments(t.Context(), "", 10); err != nil || len(ps) != 0 {
		t.Fatalf("requests waiting after an earlier key asked: %v %v", ps, err)
	}
}
