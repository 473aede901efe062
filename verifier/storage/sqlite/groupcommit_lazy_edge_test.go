package sqlite

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
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
// `PRAGMA synchronous = NORMAL` or COMMIT fail, and a count of closed
// connections.
type faultDriver struct {
	failNormal, failCommit atomic.Int32
	closed                 atomic.Int32
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

// insertX is a write of x into table t.
func insertX(x int) func(ctx context.Context, tx *sqlstore.Tx) error {
	return func(ctx context.Context, tx *sqlstore.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO t (x) VALUES (?)`, x)
		return err
	}
}

// faultWriter opens a database of two connections through the fault
// driver, makes its table with schema, and starts a writer on it; both
// close when the test ends.
func faultWriter(t *testing.T, schema string) (*sql.DB, *reportWriter) {
	t.Helper()
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "clearance.db")
	db, err := sql.Open("sqlite-faults", dsn(path, false))
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
	if err := w.do(ctx, true, insertX(1)); err == nil {
		t.Error("lazy write whose commit fails: nil, want its error")
	}
	if got := faults.closed.Load() - closed; got != 1 || w.lazyConn != nil {
		t.Errorf("%d connections closed, lazy connection %v; want 1 and none", got, w.lazyConn)
	}
	check("after a failed lazy commit")

	// 2. The next one cannot be set to NORMAL.
	closed = faults.closed.Load()
	faults.failNormal.Store(1)
	if err := w.do(ctx, true, insertX(2)); err != nil {
		t.Errorf("lazy write whose connection cannot be set to NORMAL: %v, want it committed durably", err)
	}
	if got := faults.closed.Load() - closed; got != 1 || w.lazyConn != nil {
		t.Errorf("%d connections closed, lazy connection %v; want 1 and none", got, w.lazyConn)
	}
	check("after a failed lazy setup")

	// 3. Then lazy and durable writes go on as before.
	must(t, w.do(ctx, true, insertX(3)))
	if got := synchronous(w.lazyConn); got != 1 {
		t.Errorf("the new lazy connection's synchronous = %d, want 1 (NORMAL)", got)
	}
	must(t, w.do(ctx, false, insertX(4)))
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

// Durable and lazy batches run on the writer's one connection, at
// synchronous=NORMAL, so that its page cache survives from one batch to
// the next; the store's other writes get FULL connections throughout. A
// durable batch is answered only once an fsync of the WAL that began
// after its commit has returned. While that fsync runs, lazy batches
// commit and are answered; the next durable batch waits (growing), and is
// not committed until then.
func TestDurableBatchesAnsweredAfterSync(t *testing.T) {
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
	stored := func(x int) bool {
		t.Helper()
		var n int
		must(t, db.QueryRowContext(ctx, `SELECT count(*) FROM t WHERE x = ?`, x).Scan(&n))
		return n == 1
	}
	// The syncer's fsync, held until the test lets it go; each call says
	// which rows were committed when it began.
	began := make(chan []int, 8)
	release := make(chan error)
	w.syncWAL = func() error {
		var xs []int
		r, err := db.QueryContext(context.Background(), `SELECT x FROM t ORDER BY x`)
		if err != nil {
			return err
		}
		for r.Next() {
			var x int
			if err := r.Scan(&x); err != nil {
				return err
			}
			xs = append(xs, x)
		}
		r.Close()
		began <- xs
		return <-release
	}
	answered := func(x int, lazy bool) chan error {
		c := make(chan error, 1)
		go func() { c <- w.do(ctx, lazy, insert(x)) }()
		return c
	}
	waitAnswer := func(c chan error, what string) {
		t.Helper()
		select {
		case err := <-c:
			must(t, err)
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: no answer", what)
		}
	}
	notYet := func(c chan error, what string) {
		t.Helper()
		select {
		case err := <-c:
			t.Fatalf("%s answered (%v) before its fsync returned", what, err)
		case <-time.After(50 * time.Millisecond):
		}
	}

	// 1. A lazy write: answered without an fsync, on the writer's
	// connection, at NORMAL.
	must(t, w.do(ctx, true, insert(1)))
	_, err := w.lazyConn.ExecContext(ctx, `CREATE TEMP TABLE mark (x INTEGER)`)
	must(t, err)

	// 2. A durable write: committed, then synced, then answered.
	d2 := answered(2, false)
	if got := syncBegan(t, began); fmt.Sprint(got) != "[1 2]" {
		t.Fatalf("the fsync began with rows %v committed, want [1 2]", got)
	}
	notYet(d2, "durable write 2")

	// 3. Meanwhile a lazy write is answered, and a durable one is not
	// even committed.
	waitAnswer(answered(3, true), "lazy write 3 during an fsync")
	d4 := answered(4, false)
	notYet(d4, "durable write 4")
	if stored(4) {
		t.Error("durable write 4 committed while the previous durable batch was being synced")
	}

	// 4. The fsync returns: 2 is answered, then 4 is committed, synced
	// and answered.
	release <- nil
	waitAnswer(d2, "durable write 2")
	if got := syncBegan(t, began); fmt.Sprint(got) != "[1 2 3 4]" {
		t.Fatalf("the second fsync began with rows %v committed, want [1 2 3 4]", got)
	}
	notYet(d4, "durable write 4")
	release <- nil
	waitAnswer(d4, "durable write 4")

	for x := 2; x <= 4; x++ {
		var sync, marked int
		must(t, db.QueryRowContext(ctx, `SELECT sync, marked FROM t WHERE x = ?`, x).Scan(&sync, &marked))
		if sync != 1 || marked != 1 {
			t.Errorf("write %d ran at synchronous = %d, marked %d; want 1 (NORMAL) on the writer's connection", x, sync, marked)
		}
	}
	var sync int
	must(t, db.QueryRowContext(ctx, `PRAGMA synchronous`).Scan(&sync))
	if sync != 2 {
		t.Errorf("synchronous = %d on the pool's connection, want 2 (FULL)", sync)
	}
	if c, l, n := w.commits.Load(), w.lazyCommits.Load(), w.syncs.Load(); c != 4 || l != 2 || n != 2 {
		t.Errorf("%d commits, %d lazy, %d fsyncs; want 4, 2 and 2", c, l, n)
	}

	// 5. A durable write refused alone is answered after an fsync too:
	// what it was refused for may not be durable yet.
	refused := errors.New("refused")
	r5 := make(chan error, 1)
	go func() { r5 <- w.do(ctx, false, func(context.Context, *sqlstore.Tx) error { return refused }) }()
	syncBegan(t, began)
	notYet(r5, "a refused durable write")
	release <- nil
	if err := <-r5; !errors.Is(err, refused) {
		t.Errorf("refused durable write: %v, want its own error", err)
	}
}

// A failed fsync: the batch it was for is answered with the error, and
// from then on no write is answered as stored, lazy or durable, nor
// written, through the group commit or around it; the fsync is not tried
// again, since a kernel that failed one may have dropped the pages it
// could not write.
func TestDurableSyncFailureSticks(t *testing.T) {
	ctx := t.Context()
	db, w := faultWriter(t, `CREATE TABLE t (x INTEGER PRIMARY KEY)`)
	var calls atomic.Int32
	eio := errors.New("input/output error")
	began, release := make(chan []int, 1), make(chan struct{})
	w.syncWAL = func() error { calls.Add(1); began <- nil; <-release; return eio }
	d1, d2 := make(chan error, 1), make(chan error, 1)
	go func() { d1 <- w.do(ctx, false, insertX(1)) }()
	syncBegan(t, began)
	// A durable write queued behind the failing fsync is not committed
	// once it fails.
	go func() { d2 <- w.do(ctx, false, insertX(2)) }()
	time.Sleep(50 * time.Millisecond)
	close(release)
	if err := <-d1; !errors.Is(err, eio) || !strings.Contains(err.Error(), "restart the verifier") {
		t.Fatalf("durable write with a failed fsync: %v", err)
	}
	if err := <-d2; !errors.Is(err, eio) {
		t.Errorf("durable write queued behind a failed fsync: %v, want its error", err)
	}
	for i, lazy := range []bool{true, false, true} {
		if err := w.do(ctx, lazy, insertX(3+i)); !errors.Is(err, eio) {
			t.Errorf("write %d (lazy %v) after a failed fsync: %v, want the fsync's error", 3+i, lazy, err)
		}
	}
	// The pool is closed: no write outside the group commit either.
	if _, err := db.ExecContext(ctx, `INSERT INTO t (x) VALUES (9)`); err == nil {
		t.Error("a write on the pool after a failed fsync succeeded")
	}
	other, err := sql.Open("sqlite", dsn(strings.TrimSuffix(w.walPath, "-wal"), true))
	must(t, err)
	defer other.Close()
	var n int
	must(t, other.QueryRowContext(ctx, `SELECT count(*) FROM t WHERE x > 1`).Scan(&n))
	if n != 0 || calls.Load() != 1 {
		t.Errorf("after a failed fsync: %d rows written, %d fsyncs tried; want 0 and 1", n, calls.Load())
	}
}

// syncBegan waits for a held fsync to begin and returns the rows then
// committed.
func syncBegan(t *testing.T, began chan []int) []int {
	t.Helper()
	select {
	case xs := <-began:
		return xs
	case <-time.After(10 * time.Second):
		t.Fatal("no fsync began")
		return nil
	}
}

// The real fsync: of the WAL file SQLite writes, held open since the
// writer started (a failed write-back is reported to files open when it
// failed), found through symbolic links as SQLite finds it, and refused
// once another file is at its path.
func TestFsyncWAL(t *testing.T) {
	dir := t.TempDir()
	must(t, os.Mkdir(filepath.Join(dir, "real"), 0o700))
	link := filepath.Join(dir, "clearance.db")
	must(t, os.Symlink(filepath.Join("real", "x.db"), link))
	s := open(t, link)
	durable := func(q string) error {
		return s.reports.do(t.Context(), false, func(ctx context.Context, tx *sqlstore.Tx) error {
			_, err := tx.ExecContext(ctx, q)
			return err
		})
	}
	must(t, durable(`CREATE TABLE probe (x INTEGER)`))
	if n := s.reports.syncs.Load(); n != 1 {
		t.Errorf("%d fsyncs after a durable write, want 1", n)
	}
	real, err := os.Stat(filepath.Join(dir, "real", "x.db-wal"))
	must(t, err)
	held, err := s.reports.wal.Stat()
	must(t, err)
	if !os.SameFile(real, held) {
		t.Errorf("the writer syncs %s, not the WAL SQLite writes (real/x.db-wal)", s.reports.walPath)
	}

	// Another file at the WAL's path: refused, not synced in its place.
	other := filepath.Join(dir, "other")
	must(t, os.WriteFile(other, nil, 0o600))
	f, err := os.Open(other)
	must(t, err)
	defer f.Close()
	w := &reportWriter{wal: f, walPath: filepath.Join(dir, "real", "x.db-wal")}
	if err := w.fsyncWAL(); err == nil || !strings.Contains(err.Error(), "no longer the file") {
		t.Errorf("fsync of a WAL replaced under the writer: %v", err)
	}

	// A failed one: the store's Ping fails from then on, as its writes do.
	eio := errors.New("input/output error")
	s.reports.syncWAL = func() error { return eio }
	if err := durable(`INSERT INTO probe (x) VALUES (1)`); !errors.Is(err, eio) {
		t.Errorf("durable write with a failed fsync: %v", err)
	}
	if err := s.Ping(t.Context()); !errors.Is(err, eio) {
		t.Errorf("Ping after a failed fsync: %v, want its error", err)
	}
	if err := s.CreateEnrollSecret(t.Context(), secret("b"), storage.AuditEvent{At: t0}); err == nil {
		t.Error("a write outside the group commit succeeded after a failed fsync")
	}
	if _, err := s.ListDevices(t.Context(), "", 10); err != nil {
		t.Errorf("reads after a failed fsync: %v, want them served", err)
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
