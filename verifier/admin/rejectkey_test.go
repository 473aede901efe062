package admin_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/clearance/clearance/internal/testkit/testpg"
	adminv1 "github.com/clearance/clearance/proto/gen/clearance/admin/v1"
	"github.com/clearance/clearance/verifier/admin"
	"github.com/clearance/clearance/verifier/storage"
	"github.com/clearance/clearance/verifier/storage/postgres"
)

// TestRejectKeyGoesOnAfterAShortBatch: a key waiting for 1,500 Macs is
// rejected in batches. While the first batch waits for one Mac's lock,
// another request from the first network evicts the key's request for
// the first Mac, so the batch comes back short (999). The rejection goes
// on until nothing of the key waits, rather than reading a short batch as
// the last.
func TestRejectKeyGoesOnAfterAShortBatch(t *testing.T) {
	testpg.Require(t)
	ctx := t.Context()
	dsn := testpg.NewDatabase(t)
	store, err := postgres.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	if err := store.CreateEnrollSecret(ctx, storage.EnrollSecret{ID: "sec", Hash: []byte("h"), CreatedAt: approvalsNow},
		storage.AuditEvent{At: approvalsNow, Action: "secret.create"}); err != nil {
		t.Fatal(err)
	}
	key := []byte("attacker-key")
	const macs = 1500
	file := func(id, hw, net string, k []byte, at time.Time, lim storage.PendingLimits) error {
		_, err := store.RequestEnrollment(ctx, storage.PendingEnrollment{
			ID: id, HardwareUUID: hw, SerialNumber: "C02" + fmt.Sprint(len(id)), PublicKey: k, SecretID: "sec",
			Reason: "manual", Source: net, SourceNet: net, LastRequestAt: at,
		}, lim, storage.AuditEvent{At: at, Action: "device.enroll_pending"})
		return err
	}
	// The key asks as 1500 Macs, 50 per source network (the per-source bound).
	for n := range macs {
		at := approvalsNow.Add(time.Duration(n) * time.Millisecond)
		if err := file(fmt.Sprintf("req-%05d", n), fmt.Sprintf("5A1B2C3D-0000-4000-8000-%012d", n),
			fmt.Sprintf("198.51.100.%d", n/50), key, at, storage.PendingLimits{}); err != nil {
			t.Fatal(err)
		}
	}
	fp := storage.KeyFingerprint(key)
	s := &admin.Server{Store: store, Now: func() time.Time { return approvalsNow.Add(time.Hour) }}

	// Something holds the second Mac's lock for a moment (the key's own
	// poll for that Mac, say): the rejection has read the key's Macs and
	// waits, holding the first Mac's lock.
	holder, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close(ctx)
	probe, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer probe.Close(ctx)
	tx, err := holder.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtextextended($1, 0))`, "hardware uuid 5A1B2C3D-0000-4000-8000-000000000001"); err != nil {
		t.Fatal(err)
	}
	type result struct {
		resp *adminv1.RejectEnrollmentResponse
		err  error
	}
	done := make(chan result, 1)
	go func() {
		resp, err := s.RejectEnrollment(ctx, &adminv1.RejectEnrollmentRequest{KeyFingerprint: fp[:16]})
		done <- result{resp, err}
	}()
	deadline := time.Now().Add(20 * time.Second)
	for {
		var waiting int
		if err := probe.QueryRow(ctx, `SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted`).Scan(&waiting); err != nil {
			t.Fatal(err)
		}
		if waiting > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the rejection never waited")
		}
		time.Sleep(5 * time.Millisecond)
	}
	// Meanwhile the requester files one more request from the first
	// network (another key, another Mac): the per-source bound (50)
	// evicts that network's oldest request, the key's for the first Mac.
	if err := file("req-evictor", "5A1B2C3D-0000-4000-8000-999999999999", "198.51.100.0", []byte("other-key"),
		approvalsNow.Add(time.Minute), storage.PendingLimits{PerDevice: 4, PerSource: 50, Total: 10000}); err != nil {
		t.Fatal(err)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	r := <-done
	if r.err != nil {
		t.Fatal(r.err)
	}
	// What still waits of the key.
	left := 0
	after := ""
	for {
		ps, err := store.ListPendingEnrollments(ctx, after, 1000)
		if err != nil {
			t.Fatal(err)
		}
		if len(ps) == 0 {
			break
		}
		for _, p := range ps {
			if string(p.PublicKey) == string(key) {
				left++
			}
		}
		after = ps[len(ps)-1].ID
	}
	if left != 0 {
		t.Errorf("RejectEnrollment(key_fingerprint=%s) answered OK with rejected_count %d, yet %d requests of that key still wait", fp[:16], r.resp.GetRejectedCount(), left)
	}
}

// roundFails is a store whose rejection by key fails from its second call
// on, and which records the prefixes it was given.
type roundFails struct {
	storage.Store
	prefixes []string
}

func (s *roundFails) RejectEnrollmentKey(ctx context.Context, prefix string, maxMacs int, at time.Time, limits storage.PendingLimits, audit storage.AuditEvent) ([]storage.PendingEnrollment, error) {
	s.prefixes = append(s.prefixes, prefix)
	if len(s.prefixes) > 1 {
		return nil, errors.New("the database went away")
	}
	return s.Store.RejectEnrollmentKey(ctx, prefix, maxMacs, at, limits, audit)
}

// TestRejectKeyLaterRoundFails: when a round after the first fails, the
// caller is told how many were rejected and that the rest may wait
// (Aborted), not answered OK; and the rounds after the first name the key
// by its whole fingerprint, not by the prefix given.
func TestRejectKeyLaterRoundFails(t *testing.T) {
	t.Parallel()
	store := approvalStore(t)
	for n := range 1500 {
		waitWith(t, store, n, "flood-key")
	}
	fp := storage.KeyFingerprint([]byte("flood-key"))
	w := &roundFails{Store: store}
	s := &admin.Server{Store: w, Now: func() time.Time { return approvalsNow }}
	_, err := s.RejectEnrollment(t.Context(), &adminv1.RejectEnrollmentRequest{KeyFingerprint: strings.ToUpper(fp[:16])})
	if status.Code(err) != codes.Aborted || !strings.Contains(err.Error(), "rejected 1000 requests") {
		t.Errorf("a failed second round: %v, want Aborted saying 1000 were rejected", err)
	}
	if len(w.prefixes) != 2 || w.prefixes[1] != fp {
		t.Errorf("prefixes given to the store: %q; want the second round to name %s", w.prefixes, fp)
	}
}
