package sqlite

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	sqlite "modernc.org/sqlite"

	"github.com/clearance/clearance/verifier/storage"
	"github.com/clearance/clearance/verifier/storage/sqlstore"
)

// waitTaken waits until the writer has taken everything queued, and a
// little more for it to block on the held connection.
func waitTaken(t *testing.T, s *Store) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for len(s.reports.queue) > 0 {
		if time.Now().After(deadline) {
			t.Fatal("the writer did not take the queued call")
		}
		time.Sleep(time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond)
}

// Close while a lazy batch commits and a durable write waits in the carry
// slot: the lazy write is answered with its commit, the carried decision
// and the call behind it with ErrClosed, none hangs, and what they were
// told is what a reopened store holds.
func TestCloseWithADurableWriteCarried(t *testing.T) {
	path := filepath.Join(t.TempDir(), "clearance.db")
	s := open(t, path)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	release := holdWriter(t, s)

	lazy := make(chan error, 1)
	go func() { lazy <- s.UseRequestID(ctx, "https://okta.example", "id-1", t0.Add(time.Hour)) }()
	waitTaken(t, s)
	decision := make(chan error, 1)
	go func() {
		_, err := s.AppendDecision(ctx, storage.DecisionRecord{At: t0, Username: "ada@example.com", Reason: "ok", Allow: true})
		decision <- err
	}()
	waitQueued(s, 1)
	behind := make(chan error, 1)
	go func() { behind <- s.UseRequestID(ctx, "https://okta.example", "id-2", t0.Add(time.Hour)) }()
	waitQueued(s, 2)

	// Once the lazy batch has taken its call (the decision is carried by
	// then), the store starts to close.
	closed := make(chan error, 1)
	var once sync.Once
	s.reports.afterTake = func() {
		once.Do(func() {
			go func() { closed <- s.Close() }()
			<-s.reports.stop
		})
	}
	release()

	if err := <-lazy; err != nil {
		t.Errorf("the lazy request ID: %v, want nil (its batch was committing)", err)
	}
	if err := <-decision; !errors.Is(err, ErrClosed) {
		t.Errorf("the carried decision: %v, want ErrClosed", err)
	}
	if err := <-behind; !errors.Is(err, ErrClosed) {
		t.Errorf("the request ID behind it: %v, want ErrClosed", err)
	}
	must(t, <-closed)
	if c, l := s.reports.commits.Load(), s.reports.lazyCommits.Load(); c != 1 || l != 1 {
		t.Errorf("%d commits, %d lazy; want 1 and 1", c, l)
	}

	s = open(t, path)
	if err := s.UseRequestID(ctx, "https://okta.example", "id-1", t0.Add(time.Hour)); !errors.Is(err, storage.ErrAlreadyExists) {
		t.Errorf("id-1 after reopening: %v, want ErrAlreadyExists (it was answered as stored)", err)
	}
	if err := s.UseRequestID(ctx, "https://okta.example", "id-2", t0.Add(time.Hour)); err != nil {
		t.Errorf("id-2 after reopening: %v, want nil (it was refused with ErrClosed)", err)
	}
	ds, err := s.ListDecisions(ctx, storage.DecisionFilter{Limit: 10})
	must(t, err)
	if len(ds) != 0 {
		t.Errorf("%d decisions stored, want 0 (the decision was refused with ErrClosed)", len(ds))
	}
}

// A durable batch that lazy calls joined: one commit with its fsync, each
// call its own outcome, and each statement bound once to the transaction
// still runs after another call's statement failed and was rolled back to
// its savepoint.
func TestBatchKeepsBoundStatementsAfterAFailedOne(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "clearance.db"))
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	// No ON CONFLICT: a second insert of a pair is a statement error.
	strict, err := s.w.PrepareContext(ctx, `INSERT INTO saml_request_ids (issuer, id, expires_at) VALUES (?1, ?2, ?3)`)
	must(t, err)
	defer strict.Close()
	insert := func(id string) func(ctx context.Context, tx *sqlstore.Tx) error {
		return func(ctx context.Context, tx *sqlstore.Tx) error {
			_, err := tx.Stmt(ctx, strict).ExecContext(ctx, "https://okta.example", id, t0.Add(time.Hour).UnixNano())
			return err
		}
	}

	release := holdWriter(t, s)
	type outcome struct {
		i   int
		err error
	}
	out := make(chan outcome, 6)
	ids := make([]int64, 2)
	calls := []func() error{
		func() error {
			var err error
			ids[0], err = s.AppendDecision(ctx, storage.DecisionRecord{At: t0, Username: "ada@example.com", Reason: "ok", Allow: true})
			return err
		},
		func() error { return s.reports.do(ctx, true, insert("a")) },
		func() error { return s.reports.do(ctx, true, insert("a")) },
		func() error { return s.reports.do(ctx, true, insert("b")) },
		func() error { return s.UseRequestID(ctx, "https://okta.example", "b", t0.Add(time.Hour)) },
		func() error {
			var err error
			ids[1], err = s.AppendDecision(ctx, storage.DecisionRecord{At: t0, Username: "bob@example.com", Reason: "ok", Allow: true})
			return err
		},
	}
	for i, call := range calls {
		go func() { out <- outcome{i, call()} }()
		if i == 0 {
			waitTaken(t, s)
		} else {
			waitQueued(s, i)
		}
	}
	release()
	errs := make([]error, len(calls))
	for range calls {
		o := <-out
		errs[o.i] = o.err
	}
	for i, err := range errs {
		switch i {
		case 2:
			if !isDuplicate(err) {
				t.Errorf("call %d (a again): %v, want a unique violation", i, err)
			}
		case 4:
			if !errors.Is(err, storage.ErrAlreadyExists) {
				t.Errorf("call %d (b again): %v, want ErrAlreadyExists", i, err)
			}
		default:
			if err != nil {
				t.Errorf("call %d: %v, want nil", i, err)
			}
		}
	}
	if ids[0] == 0 || ids[1] <= ids[0] {
		t.Errorf("decision ids %v, want two, increasing", ids)
	}
	if c, l := s.reports.commits.Load(), s.reports.lazyCommits.Load(); c != 1 || l != 0 {
		t.Errorf("%d commits, %d lazy; want 1 durable commit for the whole batch", c, l)
	}
	for _, id := range []string{"a", "b"} {
		if err := s.UseRequestID(ctx, "https://okta.example", id, t0.Add(time.Hour)); !errors.Is(err, storage.ErrAlreadyExists) {
			t.Errorf("%s: %v, want ErrAlreadyExists (stored by the batch)", id, err)
		}
	}
}

// Lazy and durable calls interleaved at random, many at once: every call
// is answered with its own outcome, none waits forever, every durable
// commit is one the writer made with FULL, and the pool's connection is
// FULL at the end.
func TestLazyAndDurableInterleaved(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "clearance.db"))
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	const n = 3 * queueLen
	release := holdWriter(t, s)
	var wg sync.WaitGroup
	errs := make([]error, n)
	var decisions atomic.Int64
	for i := range n {
		lazy := rand.IntN(3) != 0
		wg.Go(func() {
			if lazy {
				errs[i] = s.UseRequestID(ctx, "https://okta.example", fmt.Sprintf("id-%d", i), t0.Add(time.Hour))
				return
			}
			_, errs[i] = s.AppendDecision(ctx, storage.DecisionRecord{At: t0, Username: "ada@example.com", Reason: "ok", Allow: true})
			if errs[i] == nil {
				decisions.Add(1)
			}
		})
	}
	waitQueued(s, queueLen)
	release()
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("call %d: %v", i, err)
		}
	}
	ds, err := s.ListDecisions(ctx, storage.DecisionFilter{Limit: 1000})
	must(t, err)
	if int64(len(ds)) != decisions.Load() {
		t.Errorf("%d decisions stored, %d answered as stored", len(ds), decisions.Load())
	}
	if got := writerSynchronous(t, s); got != 2 {
		t.Errorf("writer synchronous = %d, want 2 (FULL)", got)
	}
	t.Logf("%d calls: %d commits, %d of them lazy", n, s.reports.commits.Load(), s.reports.lazyCommits.Load())
}

// faultDriver is SQLite's driver with switches that make the next
// `PRAGMA synchronous = NORMAL`, `PRAGMA synchronous = FULL` or COMMIT
// fail, and a count of closed connections.
type faultDriver struct {
	failNormal, failFull, failCommit atomic.Int32
	closed                           atomic.Int32
}

func (f *faultDriver) Open(name string) (driver.Conn, error) {
	c, err := (&sqlite.Driver{}).Open(name)
	if err != nil {
		return nil, err
	}
	return &faultConn{Conn: c, f: f}, nil
}

type faultConn struct {
	driver.Conn
	f *faultDriver
}

func (c *faultConn) Close() error {
	c.f.closed.Add(1)
	return c.Conn.Close()
}

func (c *faultConn) BeginTx(ctx context.Context, opts driver.TxOptions) (driver.Tx, error) {
	tx, err := c.Conn.(driver.ConnBeginTx).BeginTx(ctx, opts)
	if err != nil {
		return nil, err
	}
	return &faultTx{Tx: tx, f: c.f}, nil
}

func (c *faultConn) PrepareContext(ctx context.Context, q string) (driver.Stmt, error) {
	return c.Conn.(driver.ConnPrepareContext).PrepareContext(ctx, q)
}

func (c *faultConn) ExecContext(ctx context.Context, q string, args []driver.NamedValue) (driver.Result, error) {
	if strings.Contains(q, "synchronous = NORMAL") && c.f.failNormal.Add(-1) >= 0 {
		return nil, errors.New("injected failure")
	}
	if strings.Contains(q, "synchronous = FULL") && c.f.failFull.Add(-1) >= 0 {
		return nil, errors.New("injected failure")
	}
	return c.Conn.(driver.ExecerContext).ExecContext(ctx, q, args)
}

func (c *faultConn) QueryContext(ctx context.Context, q string, args []driver.NamedValue) (driver.Rows, error) {
	return c.Conn.(driver.QueryerContext).QueryContext(ctx, q, args)
}

type faultTx struct {
	driver.Tx
	f *faultDriver
}

// Commit fails as a COMMIT that SQLite refused and rolled back.
func (t *faultTx) Commit() error {
	if t.f.failCommit.Add(-1) >= 0 {
		return errors.Join(errors.New("injected failure"), t.Tx.Rollback())
	}
	return t.Tx.Commit()
}

var faults = func() *faultDriver {
	f := &faultDriver{}
	sql.Register("sqlite-faults", f)
	return f
}()

// faultWriter opens a database of two connections through the fault
// driver, makes its table with schema, and starts a writer on it; both
// close when the test ends.
func faultWriter(t *testing.T, schema string) (*sql.DB, *reportWriter) {
	t.Helper()
	ctx := t.Context()
	db, err := sql.Open("sqlite-faults", dsn(filepath.Join(t.TempDir(), "clearance.db"), false))
	must(t, err)
	t.Cleanup(func() { db.Close() })
	db.SetMaxOpenConns(2)
	db.SetMaxIdleConns(2)
	must(t, enableWAL(ctx, db))
	_, err = db.ExecContext(ctx, schema)
	must(t, err)
	w, err := newReportWriter(ctx, db)
	must(t, err)
	t.Cleanup(func() { must(t, w.close()) })
	return db, w
}

// The lazy connection failing. A lazy batch whose commit fails answers
// its callers with the error, stores nothing, and its connection is
// closed rather than pooled at NORMAL; the next lazy batch opens another,
// and one that cannot be set to NORMAL is closed too, its batch committed
// with an fsync on the pool's connection instead. Lazy writes still commit
// without an fsync afterwards, and every connection the store's other
// writes get stays FULL.
func TestLazyConnectionFailure(t *testing.T) {
	ctx := t.Context()
	db, w := faultWriter(t, `CREATE TABLE t (x INTEGER PRIMARY KEY)`)
	insert := func(x int) func(ctx context.Context, tx *sqlstore.Tx) error {
		return func(ctx context.Context, tx *sqlstore.Tx) error {
			_, err := tx.ExecContext(ctx, `INSERT INTO t (x) VALUES (?)`, x)
			return err
		}
	}
	synchronous := func(q interface {
		QueryRowContext(context.Context, string, ...any) *sql.Row
	}) int {
		var got int
		must(t, q.QueryRowContext(ctx, `PRAGMA synchronous`).Scan(&got))
		return got
	}
	check := func(when string) {
		t.Helper()
		if got := synchronous(db); got != 2 {
			t.Errorf("%s: synchronous = %d on the pool's connection, want 2 (FULL)", when, got)
		}
	}
	if got := synchronous(w.lazyConn); got != 1 {
		t.Fatalf("the lazy connection's synchronous = %d, want 1 (NORMAL)", got)
	}

	// 1. A lazy commit fails.
	closed := faults.closed.Load()
	faults.failCommit.Store(1)
	if err := w.do(ctx, true, insert(1)); err == nil {
		t.Error("lazy write whose commit fails: nil, want its error")
	}
	if got := faults.closed.Load() - closed; got != 1 || w.lazyConn != nil {
		t.Errorf("%d connections closed, lazy connection %v; want 1 and none", got, w.lazyConn)
	}
	check("after a failed lazy commit")

	// 2. The next one cannot be set to NORMAL.
	closed = faults.closed.Load()
	faults.failNormal.Store(1)
	if err := w.do(ctx, true, insert(2)); err != nil {
		t.Errorf("lazy write whose connection cannot be set to NORMAL: %v, want it committed durably", err)
	}
	if got := faults.closed.Load() - closed; got != 1 || w.lazyConn != nil {
		t.Errorf("%d connections closed, lazy connection %v; want 1 and none", got, w.lazyConn)
	}
	check("after a failed lazy setup")

	// 3. Then lazy and durable writes go on as before.
	must(t, w.do(ctx, true, insert(3)))
	if got := synchronous(w.lazyConn); got != 1 {
		t.Errorf("the new lazy connection's synchronous = %d, want 1 (NORMAL)", got)
	}
	must(t, w.do(ctx, false, insert(4)))
	check("at the end")
	if c, l := w.commits.Load(), w.lazyCommits.Load(); c != 3 || l != 1 {
		t.Errorf("%d commits, %d lazy; want 3 and 1", c, l)
	}
	var xs []int
	rows, err := db.QueryContext(ctx, `SELECT x FROM t ORDER BY x`)
	must(t, err)
	for rows.Next() {
		var x int
		must(t, rows.Scan(&x))
		xs = append(xs, x)
	}
	must(t, rows.Err())
	if fmt.Sprint(xs) != "[2 3 4]" {
		t.Errorf("rows %v, want [2 3 4]", xs)
	}
}

// Durable and lazy batches run on the writer's one connection, so that
// its page cache survives from one batch to the next: a durable batch at
// FULL, a lazy one at NORMAL, and the connection back at NORMAL between
// batches. A connection that cannot be set to FULL is closed and its batch
// commits on the pool's connection, at FULL; one that cannot be set back
// to NORMAL is closed, its batch committed. The store's other writes get
// FULL connections throughout.
func TestDurableBatchesOnTheWriterConnection(t *testing.T) {
	ctx := t.Context()
	db, w := faultWriter(t, `CREATE TABLE t (x INTEGER PRIMARY KEY, sync INTEGER NOT NULL, marked INTEGER NOT NULL)`)
	// insert stores x with the synchronous setting its transaction runs
	// at, and whether it runs on the connection mark marked.
	insert := func(x int) func(ctx context.Context, tx *sqlstore.Tx) error {
		return func(ctx context.Context, tx *sqlstore.Tx) error {
			var sync, marked int
			if err := tx.QueryRowContext(ctx, `PRAGMA synchronous`).Scan(&sync); err != nil {
				return err
			}
			if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM temp.sqlite_master WHERE name = 'mark'`).Scan(&marked); err != nil {
				return err
			}
			_, err := tx.ExecContext(ctx, `INSERT INTO t (x, sync, marked) VALUES (?, ?, ?)`, x, sync, marked)
			return err
		}
	}
	mark := func() {
		t.Helper()
		_, err := w.lazyConn.ExecContext(ctx, `CREATE TEMP TABLE mark (x INTEGER)`)
		must(t, err)
	}
	syncOf := func(x int) int {
		t.Helper()
		var sync int
		must(t, db.QueryRowContext(ctx, `SELECT sync FROM t WHERE x = ?`, x).Scan(&sync))
		return sync
	}
	idle := func(when string) {
		t.Helper()
		var got int
		must(t, db.QueryRowContext(ctx, `PRAGMA synchronous`).Scan(&got))
		if got != 2 {
			t.Errorf("%s: synchronous = %d on the pool's connection, want 2 (FULL)", when, got)
		}
		if w.lazyConn == nil {
			return
		}
		must(t, w.lazyConn.QueryRowContext(ctx, `PRAGMA synchronous`).Scan(&got))
		if got != 1 {
			t.Errorf("%s: synchronous = %d on the writer's connection between batches, want 1 (NORMAL)", when, got)
		}
	}

	// 1. Lazy, durable, lazy: one connection, at the setting each needs.
	must(t, w.do(ctx, true, insert(1)))
	conn := w.lazyConn
	mark()
	closed := faults.closed.Load()
	must(t, w.do(ctx, false, insert(2)))
	must(t, w.do(ctx, true, insert(3)))
	if w.lazyConn != conn || faults.closed.Load() != closed {
		t.Errorf("the writer's connection changed across a durable batch (%d closed)", faults.closed.Load()-closed)
	}
	for x, want := range map[int]int{1: 1, 2: 2, 3: 1} {
		if got := syncOf(x); got != want {
			t.Errorf("write %d ran at synchronous = %d, want %d", x, got, want)
		}
	}
	for _, x := range []int{2, 3} {
		var marked int
		must(t, db.QueryRowContext(ctx, `SELECT marked FROM t WHERE x = ?`, x).Scan(&marked))
		if marked != 1 {
			t.Errorf("write %d did not run on the writer's connection", x)
		}
	}
	idle("after lazy, durable, lazy")

	// 2. The connection cannot be set to FULL: closed, and the batch
	// commits on the pool's connection at FULL. 3. It cannot be set back
	// to NORMAL after a durable batch: the batch is committed, the
	// connection closed.
	for i, c := range []struct {
		what  string
		fault *atomic.Int32
	}{{"a failed switch to FULL", &faults.failFull}, {"a failed switch back to NORMAL", &faults.failNormal}} {
		x := 4 + 2*i
		must(t, w.do(ctx, true, insert(x)))
		closed = faults.closed.Load()
		c.fault.Store(1)
		must(t, w.do(ctx, false, insert(x+1)))
		if got := syncOf(x + 1); got != 2 {
			t.Errorf("%s: the durable write ran at synchronous = %d, want 2", c.what, got)
		}
		if w.lazyConn != nil || faults.closed.Load()-closed != 1 {
			t.Errorf("after %s: lazy connection %v, %d closed; want none and 1", c.what, w.lazyConn, faults.closed.Load()-closed)
		}
		idle("after " + c.what)
	}

	// 4. And on: the next lazy write opens another connection at NORMAL.
	must(t, w.do(ctx, true, insert(8)))
	if got := syncOf(8); got != 1 {
		t.Errorf("lazy write on a new connection ran at synchronous = %d, want 1", got)
	}
	idle("at the end")
	if c, l := w.commits.Load(), w.lazyCommits.Load(); c != 8 || l != 5 {
		t.Errorf("%d commits, %d lazy; want 8 and 5", c, l)
	}
}

// The group commit refuses a pool that cannot give it its two
// connections, rather than wait forever.
func TestGroupCommitNeedsTwoConnections(t *testing.T) {
	db, err := sql.Open("sqlite", dsn(filepath.Join(t.TempDir(), "clearance.db"), false))
	must(t, err)
	defer db.Close()
	db.SetMaxOpenConns(1)
	if w, err := newReportWriter(t.Context(), db); err == nil {
		w.close()
		t.Fatal("newReportWriter on a pool of one connection succeeded")
	}
}
