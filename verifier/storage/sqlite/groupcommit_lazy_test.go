package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/clearance/clearance/verifier/storage"
	"github.com/clearance/clearance/verifier/storage/sqlstore"
)

// writerSynchronous is the synchronous setting of the connection the
// store's writes outside the group commit get from the pool (2: FULL).
func writerSynchronous(t *testing.T, s *Store) int {
	t.Helper()
	var got int
	must(t, s.w.QueryRowContext(t.Context(), "PRAGMA synchronous").Scan(&got))
	return got
}

// A sign-in's request ID is committed without an fsync when nothing
// durable shares its batch; its decision is committed with one; and the
// pool's connection is FULL after the lazy commit, so that writes outside
// the group commit stay durable.
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
	if c, l := s.reports.commits.Load(), s.reports.lazyCommits.Load(); c != 2 || l != 1 {
		// The refused second request ID, alone in its batch, is rolled
		// back: nothing to commit.
		t.Fatalf("after a decision: %d commits, %d lazy; want 2 and 1", c, l)
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

// A lazy write, committed on the lazy connection, is seen at once by
// another connection to the file, and by the durable batch after it: a
// replayed request ID is refused whichever commits it.
// What both commits stored is there after reopening.
func TestLazyThenDurableSeenByAnotherConnection(t *testing.T) {
	path := filepath.Join(t.TempDir(), "clearance.db")
	s := open(t, path)
	ctx := t.Context()
	other, err := sql.Open("sqlite", dsn(path, true))
	must(t, err)
	defer other.Close()
	requestIDs := func() int {
		var n int
		must(t, other.QueryRowContext(ctx, `SELECT count(*) FROM saml_request_ids`).Scan(&n))
		return n
	}

	must(t, s.UseRequestID(ctx, "https://okta.example", "id-1", t0.Add(time.Hour)))
	if got := requestIDs(); got != 1 {
		t.Fatalf("another connection sees %d request IDs after the lazy commit, want 1", got)
	}
	// The same ID in a durable batch: on the other connection, refused.
	err = s.reports.do(ctx, false, func(ctx context.Context, tx *sqlstore.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO saml_request_ids (issuer, id, expires_at) VALUES (?, ?, ?)`,
			"https://okta.example", "id-1", t0.Add(time.Hour).UnixNano())
		return err
	})
	if !isDuplicate(err) {
		t.Fatalf("the lazy write's ID again in a durable batch: %v, want a unique violation", err)
	}
	if _, err := s.AppendDecision(ctx, storage.DecisionRecord{At: t0, Username: "ada@example.com", Reason: "ok", Allow: true}); err != nil {
		t.Fatal(err)
	}
	var decisions int
	must(t, other.QueryRowContext(ctx, `SELECT count(*) FROM decisions`).Scan(&decisions))
	if decisions != 1 {
		t.Fatalf("another connection sees %d decisions, want 1", decisions)
	}
	if c, l := s.reports.commits.Load(), s.reports.lazyCommits.Load(); l != 1 || c < 2 {
		t.Fatalf("%d commits, %d lazy; want 1 lazy and the durable ones", c, l)
	}
	must(t, other.Close())
	must(t, s.Close())

	s = open(t, path)
	if err := s.UseRequestID(ctx, "https://okta.example", "id-1", t0.Add(time.Hour)); !errors.Is(err, storage.ErrAlreadyExists) {
		t.Errorf("id-1 after reopening: %v, want ErrAlreadyExists", err)
	}
	ds, err := s.ListDecisions(ctx, storage.DecisionFilter{Limit: 10})
	must(t, err)
	if len(ds) != 1 {
		t.Errorf("%d decisions after reopening, want 1", len(ds))
	}
}

// A write alone in its batch runs without a savepoint: when it fails
// after a statement that succeeded, that statement is rolled back with the
// transaction, lazy or durable, and its caller gets its own error; the
// next write commits as usual.
func TestLoneRefusedWriteLeavesNothing(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "clearance.db"))
	ctx := t.Context()
	refused := errors.New("refused after its first statement")
	insertThen := func(id string, res error) func(ctx context.Context, tx *sqlstore.Tx) error {
		return func(ctx context.Context, tx *sqlstore.Tx) error {
			if _, err := tx.ExecContext(ctx, `INSERT INTO saml_request_ids (issuer, id, expires_at) VALUES (?, ?, ?)`,
				"https://okta.example", id, t0.Add(time.Hour).UnixNano()); err != nil {
				return err
			}
			return res
		}
	}
	for _, lazy := range []bool{true, false} {
		if err := s.reports.do(ctx, lazy, insertThen("refused", refused)); !errors.Is(err, refused) {
			t.Fatalf("lazy %v: %v, want its own error", lazy, err)
		}
	}
	must(t, s.reports.do(ctx, false, insertThen("stored", nil)))
	var ids []string
	rows, err := s.r.QueryContext(ctx, `SELECT id FROM saml_request_ids ORDER BY id`)
	must(t, err)
	for rows.Next() {
		var id string
		must(t, rows.Scan(&id))
		ids = append(ids, id)
	}
	must(t, rows.Err())
	if len(ids) != 1 || ids[0] != "stored" {
		t.Errorf("request IDs %v, want [stored]", ids)
	}
	if c := s.reports.commits.Load(); c != 1 {
		t.Errorf("%d commits, want 1 (the refused writes commit nothing)", c)
	}
}
