package admin_test

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	adminv1 "github.com/clearance/clearance/proto/gen/clearance/admin/v1"
	"github.com/clearance/clearance/verifier/admin"
	"github.com/clearance/clearance/verifier/storage"
	"github.com/clearance/clearance/verifier/storage/sqlite"
	"github.com/clearance/clearance/verifier/storage/storagetest"
)

var approvalsNow = time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)

// approvalStore is a new SQLite store with one enroll secret, "sec".
func approvalStore(t *testing.T) *sqlite.Store {
	t.Helper()
	store, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "db.sqlite"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	if err := store.CreateEnrollSecret(t.Context(), storage.EnrollSecret{ID: "sec", Hash: []byte("h"), CreatedAt: approvalsNow},
		storage.AuditEvent{At: approvalsNow, Action: "secret.create"}); err != nil {
		t.Fatal(err)
	}
	return store
}

// waitWith files a new device's request of key for hardware UUID n.
func waitWith(t *testing.T, store storage.Store, n int, key string) storage.PendingEnrollment {
	t.Helper()
	p, err := store.RequestEnrollment(t.Context(), storage.PendingEnrollment{
		ID: fmt.Sprintf("req-%05d-%s", n, key), HardwareUUID: fmt.Sprintf("5A1B2C3D-0000-4000-8000-%012d", n),
		SerialNumber: fmt.Sprintf("C02X%05d", n), PublicKey: []byte(key), SecretID: "sec", Reason: "manual",
		LastRequestAt: approvalsNow,
	}, storage.PendingLimits{}, storage.AuditEvent{At: approvalsNow, Action: "device.enroll_pending"})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// firstDigit is a store that matches key fingerprints by their first hex
// digit only: two keys share one digit readily, and 16 digits (what the
// admin API takes at least) never, so only so can a rejection by an
// ambiguous prefix be made.
type firstDigit struct{ storage.Store }

func (s firstDigit) RejectEnrollmentKey(ctx context.Context, prefix string, maxMacs int, at time.Time, limits storage.PendingLimits, audit storage.AuditEvent) ([]storage.PendingEnrollment, error) {
	return s.Store.RejectEnrollmentKey(ctx, prefix[:1], maxMacs, at, limits, audit)
}

// A key fingerprint that waiting requests of several keys start with is
// refused, naming how many, and nothing is rejected.
func TestRejectAmbiguousKey(t *testing.T) {
	t.Parallel()
	store := approvalStore(t)
	s := &admin.Server{Store: firstDigit{store}, Now: func() time.Time { return approvalsNow }}
	// Keys until two fingerprints start with the same digit.
	byDigit := map[byte][]string{}
	var shared []string
	for n := 0; shared == nil; n++ {
		p := waitWith(t, store, n, fmt.Sprintf("key-%d", n))
		fp := storage.KeyFingerprint(p.PublicKey)
		byDigit[fp[0]] = append(byDigit[fp[0]], fp)
		if len(byDigit[fp[0]]) == 2 {
			shared = byDigit[fp[0]]
		}
	}
	before, err := storagetest.Dump(t.Context(), store)
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.RejectEnrollment(t.Context(), &adminv1.RejectEnrollmentRequest{KeyFingerprint: shared[1][:16]})
	want := fmt.Sprintf("key_fingerprint %s is ambiguous: waiting requests of 2 keys have fingerprints starting with it", shared[1][:16])
	if st := status.Convert(err); st.Code() != codes.InvalidArgument || !strings.Contains(st.Message(), want) {
		t.Errorf("rejecting by an ambiguous prefix: %v; want INVALID_ARGUMENT %q", err, want)
	}
	if after, err := storagetest.Dump(t.Context(), store); err != nil || after != before {
		t.Errorf("a refused rejection changed the store (%v):\n%s\n---\n%s", err, before, after)
	}
}

// A key waiting for more hardware UUIDs than one transaction locks is
// rejected for all of them in one call, the response listing each.
func TestRejectKeyOfManyMacs(t *testing.T) {
	t.Parallel()
	store := approvalStore(t)
	s := &admin.Server{Store: store, Now: func() time.Time { return approvalsNow }}
	const macs = 1003
	for n := range macs {
		waitWith(t, store, n, "flood-key")
	}
	other := waitWith(t, store, 0, "another-key")
	resp, err := s.RejectEnrollment(t.Context(), &adminv1.RejectEnrollmentRequest{KeyFingerprint: storage.KeyFingerprint([]byte("flood-key"))})
	if err != nil {
		t.Fatal(err)
	}
	if n := resp.GetRejectedCount(); n != macs {
		t.Errorf("%d requests rejected, want %d", n, macs)
	}
	if n := len(resp.GetRejected()); n != admin.MaxRejectedShown {
		t.Errorf("%d rejected requests in the answer, want the first %d", n, admin.MaxRejectedShown)
	}
	for i, p := range resp.GetRejected() {
		if want := fmt.Sprintf("req-%05d-flood-key", i); p.GetRequestId() != want || p.GetRejectedAt() == nil {
			t.Fatalf("rejected[%d] = %s (rejected at %v), want %s, rejected", i, p.GetRequestId(), p.GetRejectedAt(), want)
		}
	}
	left, err := store.ListPendingEnrollments(t.Context(), "", 10)
	if err != nil || len(left) != 1 || left[0].ID != other.ID {
		t.Errorf("waiting after the rejection: %v, %v; want only %s", left, err, other.ID)
	}
}
