package sqlite

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/clearance/clearance/verifier/storage"
)

// writerSynchronous is the writer connection's synchronous setting (2: FULL).
func writerSynchronous(t *testing.T, s *Store) int {
	t.Helper()
	var got int
	must(t, s.w.QueryRowContext(t.Context(), "PRAGMA synchronous").Scan(&got))
	return got
}

// A sign-in's request ID is committed without an fsync when nothing
// durable shares its batch; its decision is committed with one; and the
// writer's connection is FULL again after the lazy commit, so that writes
// outside the group commit stay durable.
func TestLazyCommitSkipsTheFsyncOnly(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "clearance.db"))
	ctx := t.Context()
	must(t, s.UseRequestID(ctx, "https://okta.example", "id-1", t0.Add(time.Hour)))
	if c, l := s.reports.commits.Load(), s.reports.lazyCommits.Load(); c != 1 || l != 1 {
		t.Fatalf("after a request ID: %d commits, %d lazy; want 1 and 1", c, l)
	}
	if got := writerSynchronous(t, s); got != 2 {
		t.Fatalf("writer synchronous = %d after a lazy commit, want 2 (FULL)", got)
	}
	// Visible at once: the replay check holds before any fsync.
	if err := s.UseRequestID(ctx, "https://okta.example", "id-1", t0.Add(time.Hour)); !errors.Is(err, storage.ErrAlreadyExists) {
		t.Fatalf("the same request ID again: %v, want ErrAlreadyExists", err)
	}
	if _, err := s.AppendDecision(ctx, storage.DecisionRecord{At: t0, Username: "ada@example.com", Reason: "ok", Allow: true}); err != nil {
		t.Fatal(err)
	}
	if c, l := s.reports.commits.Load(), s.reports.lazyCommits.Load(); c != 3 || l != 2 {
		// The refused second request ID is a lazy batch of its own.
		t.Fatalf("after a decision: %d commits, %d lazy; want 3 and 2", c, l)
	}
}

// A durable write queued while a lazy batch fills is not committed in it:
// it starts the next batch, which pays the fsync.
func TestDurableWriteLeavesALazyBatch(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "clearance.db"))
	release := holdWriter(t, s)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	errc := make(chan error, 3)
	go func() { errc <- s.UseRequestID(ctx, "https://okta.example", "id-1", t0.Add(time.Hour)) }()
	// The writer takes it and waits for the connection.
	deadline := time.Now().Add(5 * time.Second)
	for len(s.reports.queue) > 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond)
	go func() {
		_, err := s.AppendDecision(ctx, storage.DecisionRecord{At: t0, Username: "ada@example.com", Reason: "ok", Allow: true})
		errc <- err
	}()
	go func() { errc <- s.UseRequestID(ctx, "https://okta.example", "id-2", t0.Add(time.Hour)) }()
	for len(s.reports.queue) < 2 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	release()
	for range 3 {
		must(t, <-errc)
	}
	if c, l := s.reports.commits.Load(), s.reports.lazyCommits.Load(); c != 2 || l != 1 {
		t.Fatalf("%d commits, %d lazy; want 2 and 1 (the decision in a durable batch of its own making)", c, l)
	}
	if got := writerSynchronous(t, s); got != 2 {
		t.Fatalf("writer synchronous = %d, want 2 (FULL)", got)
	}
}
