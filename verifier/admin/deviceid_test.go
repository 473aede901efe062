package admin_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	adminv1 "github.com/clearance/clearance/proto/gen/clearance/admin/v1"
	"github.com/clearance/clearance/verifier/admin"
	"github.com/clearance/clearance/verifier/hub"
	"github.com/clearance/clearance/verifier/storage"
)

// TestDeviceByTheStartOfItsID: the calls that name one device take the
// start of its id, as the tables show ids, and say plainly when it names
// none or more than one; nothing is revoked on a start two ids share.
func TestDeviceByTheStartOfItsID(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	store := newStore(t)
	now := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	s := &admin.Server{Store: store, Hub: &hub.Hub{}, Now: func() time.Time { return now }, Policies: fixedPolicies("v7", "firewall")}
	setup := storage.AuditEvent{At: now, Actor: "test", Action: "setup"}
	if err := store.CreateEnrollSecret(ctx, storage.EnrollSecret{ID: "s", Hash: []byte("h"), CreatedAt: now}, setup); err != nil {
		t.Fatal(err)
	}
	ids := []string{"3f2a8c1e-0000-4000-8000-000000000001", "3f2a8c1f-0000-4000-8000-000000000002", "a6630940-0000-4000-8000-000000000003"}
	for i, id := range ids {
		if _, _, err := store.EnrollDevice(ctx, storage.Enrollment{
			Device: storage.Device{ID: id, HardwareUUID: "HW-" + id, Platform: "darwin", PublicKey: []byte{byte(i)},
				CertSerial: "c" + id, CertNotAfter: now.Add(24 * time.Hour), EnrolledAt: now},
			Cert:     storage.Cert{Serial: "c" + id, Kind: "device", NotBefore: now, NotAfter: now.Add(24 * time.Hour), DER: []byte("der")},
			SecretID: "s", Audit: setup,
		}); err != nil {
			t.Fatal(err)
		}
	}
	for in, want := range map[string]string{"a663094b": "", "A6630940": ids[2], "3f2a8c1e": ids[0], ids[1]: ids[1]} {
		got, err := s.GetDevice(ctx, &adminv1.GetDeviceRequest{DeviceId: in})
		switch {
		case want == "" && status.Code(err) != codes.NotFound:
			t.Errorf("GetDevice(%q) = %v, want NOT_FOUND", in, err)
		case want == "" && !strings.Contains(status.Convert(err).Message(), `no enrolled device's id is or starts with "a663094b"`):
			t.Errorf("GetDevice(%q): %q", in, status.Convert(err).Message())
		case want != "" && (err != nil || got.GetDevice().GetDeviceId() != want):
			t.Errorf("GetDevice(%q) = %v, %v; want %s", in, got.GetDevice().GetDeviceId(), err, want)
		}
	}
	for _, in := range []string{"3f2a8c1", "dev\x00", strings.Repeat("a", 300), "\xff"} {
		_, err := s.RevokeDevice(ctx, &adminv1.RevokeDeviceRequest{DeviceId: in, Reason: "stolen"})
		if c := status.Code(err); c != codes.InvalidArgument && c != codes.NotFound {
			t.Errorf("RevokeDevice(%q) = %v, want INVALID_ARGUMENT or NOT_FOUND", in, err)
		}
	}
	if _, err := s.RevokeDevice(ctx, &adminv1.RevokeDeviceRequest{DeviceId: "3f2a8c1"}); !strings.Contains(status.Convert(err).Message(), `more than one device's id starts with`) {
		t.Errorf("RevokeDevice on a shared start: %v", err)
	}
	for _, id := range ids {
		if d, _ := store.GetDevice(ctx, id); d.Revoked() {
			t.Fatalf("%s was revoked by a refused call", id)
		}
	}
	r, err := s.RevokeDevice(ctx, &adminv1.RevokeDeviceRequest{DeviceId: "a6630940", Reason: "stolen"})
	if err != nil || r.GetDevice().GetDeviceId() != ids[2] {
		t.Fatalf("RevokeDevice by the start of its id: %v, %v", r, err)
	}
	if d, _ := store.GetDevice(ctx, ids[2]); !d.Revoked() {
		t.Fatal("the device named by the start of its id is not revoked")
	}
	if es, _ := store.ListAudit(ctx, storage.AuditFilter{DeviceID: ids[2], Limit: 10}); len(es) == 0 || es[0].Action != "device.revoke" || es[0].DeviceID != ids[2] {
		t.Errorf("audit of the revocation: %+v", es)
	}
}
