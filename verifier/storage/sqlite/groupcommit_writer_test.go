package sqlite

// The group commit's lazy connection and lone writes, probed from outside
// the writer: per-connection settings, writes beside it, partial lone
// writes, Close under another process's lock, leaks, repeated failures and
// callers who give up.

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/clearance/clearance/verifier/storage"
	"github.com/clearance/clearance/verifier/storage/sqlstore"
)

// Every per-connection setting the store may rely on is the same on the
// lazy connection as on the pool's connection, synchronous apart; the
// checkpoint comes at checkpointPages on both.
func TestWriterLazyConnectionPragmasMatch(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "clearance.db"))
	ctx := t.Context()
	must(t, s.UseRequestID(ctx, "https://okta.example", "id-1", t0.Add(time.Hour)))
	pragmas := []string{"foreign_keys", "busy_timeout", "cache_size", "temp_store", "journal_mode",
		"wal_autocheckpoint", "query_only", "recursive_triggers", "secure_delete", "automatic_index",
		"cell_size_check", "mmap_size", "journal_size_limit", "locking_mode", "defer_foreign_keys",
		"ignore_check_constraints", "trusted_schema", "checkpoint_fullfsync", "fullfsync", "synchronous"}
	read := func(q interface {
		QueryRowContext(context.Context, string, ...any) *sql.Row
	}, p string) string {
		var v string
		must(t, q.QueryRowContext(ctx, "PRAGMA "+p).Scan(&v))
		return v
	}
	// The writer goroutine owns lazyConn; it is idle between batches.
	lazy := s.reports.lazyConn
	if lazy == nil {
		t.Fatal("no lazy connection")
	}
	for _, p := range pragmas {
		l, f := read(lazy, p), read(s.w, p)
		if p == "synchronous" {
			if l != "1" || f != "2" {
				t.Errorf("synchronous: lazy %s, pool %s; want 1 and 2", l, f)
			}
			continue
		}
		// The writer checkpoints at checkpointPages, not SQLite's 1000.
		if want := strconv.Itoa(checkpointPages); p == "wal_autocheckpoint" && l != want {
			t.Errorf("wal_autocheckpoint: lazy connection %s, want %s", l, want)
		}
		if l != f {
			t.Errorf("PRAGMA %s: lazy connection %q, pool connection %q", p, l, f)
		}
	}
}

// Writes outside the group commit (TouchDevice, AppendAudit, admin
// transactions, DeletePendingSignIn) run while lazy and durable batches
// commit: nothing deadlocks, and every call ends within its deadline.
func TestWriterOutsideWritesDuringLazyBatches(t *testing.T) {
	s, ds := fleet(t, filepath.Join(t.TempDir(), "clearance.db"), 4)
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	errc := make(chan error, 1000)
	run := func(name string, n int, f func(i int) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range n {
				if err := f(i); err != nil {
					errc <- fmt.Errorf("%s %d: %w", name, i, err)
					return
				}
			}
		}()
	}
	for g := range 3 {
		run("lazy", 150, func(i int) error {
			return s.UseRequestID(ctx, "https://okta.example", fmt.Sprintf("id-%d-%d", g, i), t0.Add(time.Hour))
		})
	}
	run("decision", 150, func(i int) error {
		_, err := s.AppendDecision(ctx, storage.DecisionRecord{At: t0, Username: "ada@example.com", Reason: "ok", Allow: true})
		return err
	})
	for d := range ds {
		run("report", 60, func(i int) error { return s.SaveReport(ctx, report(ds[d], uint64(i+1)), nil, 3) })
		run("touch", 60, func(i int) error { return s.TouchDevice(ctx, ds[d].ID, t0.Add(time.Duration(i)*time.Second)) })
	}
	run("audit", 100, func(i int) error {
		return s.AppendAudit(ctx, storage.AuditEvent{At: t0, Actor: "admin", Action: "test", Detail: fmt.Sprint(i)})
	})
	run("secret", 50, func(i int) error {
		return s.CreateEnrollSecret(ctx, secret(fmt.Sprintf("x-%d", i)), storage.AuditEvent{At: t0})
	})
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(90 * time.Second):
		t.Fatal("writes did not finish: deadlock?")
	}
	close(errc)
	for err := range errc {
		t.Error(err)
	}
	if st := s.w.Stats(); st.OpenConnections > 2 {
		t.Errorf("%d open write connections, want at most 2", st.OpenConnections)
	}
}

// Lone writes without a savepoint: one that fails after a statement that
// succeeded leaves nothing, lazy or durable; one that swallows a failed
// statement keeps the statements before it, as it would in a savepoint.
func TestWriterLoneWritePartialStatements(t *testing.T) {
	path := filepath.Join(t.TempDir(), "clearance.db")
	db, err := sql.Open("sqlite", dsn(path, false))
	must(t, err)
	defer db.Close()
	db.SetMaxOpenConns(2)
	ctx := t.Context()
	must(t, enableWAL(ctx, db))
	_, err = db.ExecContext(ctx, `CREATE TABLE t (x INTEGER PRIMARY KEY, y INTEGER CHECK (y >= 0))`)
	must(t, err)
	w, err := newReportWriter(ctx, db)
	must(t, err)
	defer func() { must(t, w.close()) }()
	refused := errors.New("refused")
	rows := func() string {
		var xs []int
		r, err := db.QueryContext(ctx, `SELECT x FROM t ORDER BY x`)
		must(t, err)
		defer r.Close()
		for r.Next() {
			var x int
			must(t, r.Scan(&x))
			xs = append(xs, x)
		}
		return fmt.Sprint(xs)
	}
	for _, lazy := range []bool{false, true} {
		base := 0
		if lazy {
			base = 100
		}
		// Two statements that succeed, then an error.
		err := w.do(ctx, lazy, func(ctx context.Context, tx *sqlstore.Tx) error {
			for _, x := range []int{base + 1, base + 2} {
				if _, err := tx.ExecContext(ctx, `INSERT INTO t (x, y) VALUES (?, 0)`, x); err != nil {
					return err
				}
			}
			return refused
		})
		if !errors.Is(err, refused) {
			t.Errorf("lazy=%v: %v, want refused", lazy, err)
		}
		// A multi-row statement failing on its second row, swallowed.
		err = w.do(ctx, lazy, func(ctx context.Context, tx *sqlstore.Tx) error {
			if _, err := tx.ExecContext(ctx, `INSERT INTO t (x, y) VALUES (?, 0)`, base+3); err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO t (x, y) VALUES (?, 0), (?, -1)`, base+4, base+5); err == nil {
				return errors.New("CHECK did not fail")
			}
			return nil
		})
		must(t, err)
	}
	if got := rows(); got != "[3 103]" {
		t.Errorf("rows %s, want [3 103]", got)
	}
	if c, l := w.commits.Load(), w.lazyCommits.Load(); c != 2 || l != 1 {
		t.Errorf("%d commits, %d lazy; want 2 and 1", c, l)
	}
}

// Another process holds the write lock while a lazy batch waits for it,
// with a durable write and writes outside the group commit queued behind,
// and the store is closed meanwhile: once the lock is released, the lazy
// write commits, Close returns, every call ends, and the store's pool
// holds no connection at NORMAL afterwards (reopen and check).
func TestWriterCloseDuringLazyBatchBlockedByAnotherProcess(t *testing.T) {
	path := filepath.Join(t.TempDir(), "clearance.db")
	s, ds := fleet(t, path, 1)
	other, err := sql.Open("sqlite", dsn(path, false))
	must(t, err)
	defer other.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	lock, err := other.BeginTx(ctx, nil) // BEGIN IMMEDIATE: the write lock
	must(t, err)
	results := make(chan string, 4)
	go func() {
		err := s.UseRequestID(ctx, "https://okta.example", "id-1", t0.Add(time.Hour))
		results <- fmt.Sprintf("lazy: %v", err)
	}()
	waitTaken(t, s)
	go func() {
		_, err := s.AppendDecision(ctx, storage.DecisionRecord{At: t0, Username: "ada@example.com", Reason: "ok", Allow: true})
		results <- fmt.Sprintf("durable: %v", err)
	}()
	touchCtx, touchCancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer touchCancel()
	go func() {
		results <- fmt.Sprintf("touch: %v", s.TouchDevice(touchCtx, ds[0].ID, t0.Add(time.Hour)))
	}()
	time.Sleep(100 * time.Millisecond)
	closed := make(chan error, 1)
	start := time.Now()
	go func() { closed <- s.Close() }()
	time.Sleep(time.Second)
	must(t, lock.Rollback())
	select {
	case err := <-closed:
		t.Logf("Close returned after %v: %v", time.Since(start), err)
	case <-time.After(15 * time.Second):
		t.Fatal("Close hangs")
	}
	for range 3 {
		select {
		case r := <-results:
			t.Log(r)
			if r == "lazy: <nil>" {
				continue
			}
		case <-time.After(5 * time.Second):
			t.Fatal("a call never returned")
		}
	}
}

// Opening and closing stores that made lazy and durable writes, and one
// whose lazy connection failed, leaves no goroutine and no connection.
func TestWriterCloseLeaksNothing(t *testing.T) {
	dir := t.TempDir()
	ctx := t.Context()
	runtime.GC()
	before := runtime.NumGoroutine()
	for i := range 10 {
		s, err := Open(ctx, filepath.Join(dir, "clearance.db"))
		must(t, err)
		must(t, s.UseRequestID(ctx, "https://okta.example", fmt.Sprintf("id-%d", i), t0.Add(time.Hour)))
		_, err = s.AppendDecision(ctx, storage.DecisionRecord{At: t0, Username: "ada@example.com", Reason: "ok", Allow: true})
		must(t, err)
		must(t, s.UseRequestID(ctx, "https://okta.example", fmt.Sprintf("id-%d-b", i), t0.Add(time.Hour)))
		w, r := s.w, s.r
		must(t, s.Close())
		if n := w.Stats().OpenConnections + r.Stats().OpenConnections; n != 0 {
			t.Errorf("store %d: %d connections open after Close", i, n)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		t.Errorf("%d goroutines after closing, %d before", n, before)
	}
	if _, err := os.Stat(filepath.Join(dir, "clearance.db-wal")); err == nil {
		t.Log("WAL file left after the last Close (not checkpointed and removed)")
	}
}

// The writer's connection failing again and again (its commit, then its
// setup to NORMAL, in turn) leaks no connection, never leaves a NORMAL
// connection in the pool, and writes in between go on. A failed commit
// fails its lazy write; a failed setup commits the lazy write with an
// fsync instead.
func TestWriterLazyConnectionFailsRepeatedly(t *testing.T) {
	ctx := t.Context()
	db, w := faultWriter(t, `CREATE TABLE t (x INTEGER PRIMARY KEY)`)
	insert := func(ctx context.Context, tx *sqlstore.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO t (x) VALUES (NULL)`)
		return err
	}
	ok := 0
	check := func(i int, step string) {
		t.Helper()
		if st := db.Stats(); st.OpenConnections > 2 {
			t.Fatalf("%d, %s: %d open connections", i, step, st.OpenConnections)
		}
		var sync int
		must(t, db.QueryRowContext(ctx, `PRAGMA synchronous`).Scan(&sync))
		if sync != 2 {
			t.Fatalf("%d, %s: a pool connection at synchronous=%d", i, step, sync)
		}
	}
	for i := range 20 {
		// 1. A lazy commit fails: its write fails, the connection goes.
		faults.failCommit.Store(1)
		if err := w.do(ctx, true, insert); err == nil {
			t.Fatalf("%d: injected commit failure, nil", i)
		}
		if w.lazyConn != nil {
			t.Fatalf("%d: the writer's connection kept after its commit failed", i)
		}
		check(i, "failed commit")

		// 2. The next cannot be set up: committed with an fsync.
		faults.failNormal.Store(1)
		lazy := w.lazyCommits.Load()
		if err := w.do(ctx, true, insert); err != nil {
			t.Fatalf("%d: lazy write without a lazy connection: %v, want it committed durably", i, err)
		}
		if w.lazyCommits.Load() != lazy || w.lazyConn != nil {
			t.Fatalf("%d: lazy write after a failed setup committed lazily, or the connection kept", i)
		}
		ok++
		check(i, "failed setup")

		// 3. A durable write opens another.
		must(t, w.do(ctx, false, insert))
		ok++
		if w.lazyConn == nil {
			t.Fatalf("%d: no writer's connection after a durable batch", i)
		}
		check(i, "durable")
	}
	faults.failCommit.Store(0)
	faults.failNormal.Store(0)
	must(t, w.do(ctx, true, insert))
	var n int
	must(t, db.QueryRowContext(ctx, `SELECT count(*) FROM t`).Scan(&n))
	if n != ok+1 {
		t.Errorf("%d rows, want %d", n, ok+1)
	}
}

// A lazy caller that gives up while the writer waits for the pool's
// connection (held by a write outside the group commit) is never
// written, and a durable one carried behind a lazy batch likewise.
func TestWriterLazyCallerGivesUpWhileWriterWaits(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "clearance.db"))
	release := holdWriter(t, s)
	ctx, cancel := context.WithCancel(t.Context())
	errc := make(chan error, 2)
	go func() { errc <- s.UseRequestID(ctx, "https://okta.example", "id-1", t0.Add(time.Hour)) }()
	waitTaken(t, s)
	go func() { errc <- s.CreateEnrollSecret(ctx, secret("gone"), storage.AuditEvent{At: t0}) }()
	time.Sleep(50 * time.Millisecond)
	cancel()
	for range 2 {
		if err := <-errc; !errors.Is(err, context.Canceled) {
			t.Errorf("gave up: %v, want context.Canceled", err)
		}
	}
	release()
	// Not stored: the same ID is new.
	must(t, s.UseRequestID(t.Context(), "https://okta.example", "id-1", t0.Add(time.Hour)))
	if c, l := s.reports.commits.Load(), s.reports.lazyCommits.Load(); c != 1 || l != 1 {
		t.Errorf("%d commits, %d lazy; want 1 and 1", c, l)
	}
}
