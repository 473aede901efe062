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

// newStore is a new, empty SQLite store, closed when the test ends.
func newStore(t *testing.T) *sqlite.Store {
	t.Helper()
	store, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "db.sqlite"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	return store
}

// approvalStore is a new SQLite store with one enroll secret, "sec".
func approvalStore(t *testing.T) *sqlite.Store {
	t.Helper()
	store := newStore(t)
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

// waitFrom files a new device's request of key for hardware UUID n, asked
// from source.
func waitFrom(t *testing.T, store storage.Store, n int, key, source string) storage.PendingEnrollment {
	t.Helper()
	p, err := store.RequestEnrollment(t.Context(), storage.PendingEnrollment{
		ID: fmt.Sprintf("req-%05d-%s", n, key), HardwareUUID: fmt.Sprintf("5A1B2C3D-0000-4000-8000-%012d", n),
		SerialNumber: fmt.Sprintf("C02X%05d", n), PublicKey: []byte(key), SecretID: "sec", Reason: "manual",
		Source: source, SourceNet: source, LastRequestAt: approvalsNow,
	}, storage.PendingLimits{}, storage.AuditEvent{At: approvalsNow, Action: "device.enroll_pending"})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// A rejection by source takes an address, as before, or a network: every
// waiting request from it is rejected, for each Mac, whatever its key,
// also past one transaction's worth of Macs; the others wait on.
func TestRejectBySource(t *testing.T) {
	t.Parallel()
	store := approvalStore(t)
	s := &admin.Server{Store: store, Now: func() time.Time { return approvalsNow }}
	// A flood spread over one /64, more Macs than one transaction takes.
	const flood = 1003
	for n := range flood {
		waitFrom(t, store, n, fmt.Sprintf("flood-%d", n), fmt.Sprintf("2001:db8:1:2::%x", n+1))
	}
	next := waitFrom(t, store, flood, "next-door", "2001:db8:1:3::1")
	mapped := waitFrom(t, store, flood+1, "mapped", "::ffff:198.51.100.7")
	other := waitFrom(t, store, flood+2, "other", "198.51.100.8")

	resp, err := s.RejectEnrollment(t.Context(), &adminv1.RejectEnrollmentRequest{Source: "2001:db8:1:2::/64"})
	if err != nil {
		t.Fatal(err)
	}
	if n := resp.GetRejectedCount(); n != flood {
		t.Errorf("%d requests rejected from the /64, want %d", n, flood)
	}
	if n := len(resp.GetRejected()); n != admin.MaxRejectedShown {
		t.Errorf("%d rejected requests in the answer, want the first %d", n, admin.MaxRejectedShown)
	}
	for _, p := range resp.GetRejected() {
		if !strings.HasPrefix(p.GetSource(), "2001:db8:1:2::") || p.GetRejectedAt() == nil {
			t.Fatalf("rejected %s from %s (rejected at %v); want only the /64's, rejected", p.GetRequestId(), p.GetSource(), p.GetRejectedAt())
		}
	}
	// One address, the IPv4-mapped source as the IPv4 address it is.
	resp, err = s.RejectEnrollment(t.Context(), &adminv1.RejectEnrollmentRequest{Source: "198.51.100.7"})
	if err != nil || resp.GetRejectedCount() != 1 || resp.GetPending().GetRequestId() != mapped.ID {
		t.Errorf("rejecting from 198.51.100.7: %v, %v; want %s alone", resp, err, mapped.ID)
	}
	left, err := store.ListPendingEnrollments(t.Context(), "", 10)
	if err != nil || len(left) != 2 || left[0].ID != next.ID || left[1].ID != other.ID {
		t.Errorf("waiting after the rejections: %v, %v; want %s and %s", left, err, next.ID, other.ID)
	}
	_, err = s.RejectEnrollment(t.Context(), &adminv1.RejectEnrollmentRequest{Source: "2001:db8:1:2::/64"})
	if st := status.Convert(err); st.Code() != codes.NotFound || !strings.Contains(st.Message(), "no waiting enrollment request comes from 2001:db8:1:2::/64") {
		t.Errorf("rejecting from the /64 again: %v; want NOT_FOUND", err)
	}
}

// A source that is no address or network, too broad a network, or one with
// bits set past its prefix, is refused with what to give instead, and
// nothing changes.
func TestRejectBySourceBadInput(t *testing.T) {
	t.Parallel()
	store := approvalStore(t)
	s := &admin.Server{Store: store, Now: func() time.Time { return approvalsNow }}
	p := waitFrom(t, store, 1, "key", "198.51.100.7")
	before, err := storagetest.Dump(t.Context(), store)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		source, want string
	}{
		{strings.Repeat("1", 1<<20), "the source is 1048576 characters"},
		{" 198.51.100.7", "is not an IP address"},
		{"198.51.100.7\n", "is not an IP address"},
		{"198.51.100.07", "is not an IP address"},
		{"example.com", "is not an IP address"},
		{"198.51.100.7\x1b[2J", "is not an IP address"},
		{"fe80::1%eth0", "has a zone"},
		{"198.51.100.0/33", "is not a network in CIDR form"},
		{"198.51.100.0/", "is not a network in CIDR form"},
		{"198.51.100.0/24/24", "is not a network in CIDR form"},
		{"/24", "is not a network in CIDR form"},
		{"198.51.100.7/24", "has bits set past its prefix: the network is 198.51.100.0/24"},
		{"0.0.0.0/0", "is broader than /16"},
		{"10.0.0.0/8", "is broader than /16"},
		{"198.48.0.0/15", "is broader than /16"},
		{"::/0", "is broader than /32"},
		{"2001:db8::/31", "is broader than /32"},
		{"::ffff:198.51.100.0/120", "IPv4-mapped"},
	} {
		_, err := s.RejectEnrollment(t.Context(), &adminv1.RejectEnrollmentRequest{Source: tc.source})
		st := status.Convert(err)
		if st.Code() != codes.InvalidArgument || !strings.Contains(st.Message(), tc.want) || len(st.Message()) > 512 {
			t.Errorf("source %.40q: %v; want INVALID_ARGUMENT saying %q, briefly", tc.source, err, tc.want)
		}
	}
	for _, req := range []*adminv1.RejectEnrollmentRequest{
		{RequestId: p.ID, Source: "198.51.100.7"},
		{KeyFingerprint: storage.KeyFingerprint(p.PublicKey), Source: "198.51.100.7"},
	} {
		_, err := s.RejectEnrollment(t.Context(), req)
		if st := status.Convert(err); st.Code() != codes.InvalidArgument || !strings.Contains(st.Message(), "not several") {
			t.Errorf("%v: %v; want INVALID_ARGUMENT, one of them", req, err)
		}
	}
	if after, err := storagetest.Dump(t.Context(), store); err != nil || after != before {
		t.Errorf("refused rejections changed the store (%v):\n%s\n---\n%s", err, before, after)
	}
	// The broadest networks allowed are taken.
	for _, source := range []string{"198.51.0.0/16", "2001:db8::/32"} {
		if _, err := admin.ParseSource(source); err != nil {
			t.Errorf("ParseSource(%s): %v", source, err)
		}
	}
}
