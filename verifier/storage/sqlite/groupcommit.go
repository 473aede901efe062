package sqlite

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/clearance/clearance/verifier/storage/sqlstore"
)

// Group commit for reports, and for the small writes every sign-in makes
// (its request ID, its decision, a held sign-in): the sqlstore.Group of
// this backend. A durable SQLite commit costs an fsync, which is far more
// than the work of storing one row; with many agents reporting and users
// signing in at once, one writer goroutine stores every write that is
// waiting in one transaction and pays the fsync once. Each report runs in
// a savepoint of its own, so a refused report (seq, nonce, revoked device)
// is rolled back alone and its caller gets its own error; a report alone
// in its batch needs none, the transaction's rollback being its own.
//
// A single caller is not delayed: the writer takes what is queued and
// commits at once. Batches grow by themselves under load, while the
// previous durable batch waits for its fsync. When that batch was large
// (gatherAfter) and its fsync has just returned, writes are coming in a
// stream, and the next durable batch takes more as they come, for up to
// gatherFor or until a lazy write comes: a commit's fsync and the pages
// every batch rewrites then serve more writes each.
//
// Every batch runs on a connection the writer takes from the pool for
// good (the writer's connection, lazyConn), at synchronous=NORMAL: its
// COMMIT writes the batch's frames to the WAL without an fsync. One
// connection for every batch keeps its page cache: SQLite drops a
// connection's whole cache when another connection committed since its
// last transaction. While a batch runs the writer holds the pool's other
// connection too, so that the store's other writes (at FULL, the DSN's
// setting) wait for it in database/sql rather than in SQLite's busy
// handler.
//
// A durable batch's callers are answered by the syncer goroutine, only
// once an fsync of the WAL file that began after the batch's COMMIT has
// returned. An fsync makes durable every write to the file before it,
// whichever batch or connection wrote it; and frames that a checkpoint
// copies into the database file meanwhile are durable there first (at
// NORMAL as at FULL, SQLite syncs the WAL before a checkpoint copies
// frames and the database file after). One durable batch is synced at a
// time: the next one waits, growing, while lazy batches still commit and
// are answered. A durable write that is refused is answered after an fsync
// too, since what it was refused for (a report already stored) may be a
// write not yet durable. The WAL is synced through a file opened once,
// when the writer starts: Linux reports a failed write-back to each file
// that was open when it failed, once. The first failed fsync stays: it
// answers its batch and every later write of the group commit with its
// error, without trying again, since a kernel that failed an fsync may
// have dropped the pages it could not write and report the next one as a
// success; the write pool is closed, so that the store's other writes
// (enrollments, revocations, on the pool's connections) fail too; and the
// store's Ping fails, so its health check does. Those batches' rows were
// committed, and may be read, or be on disk after a restart, though their
// callers were told they failed.
//
// A durable write is visible to readers from its COMMIT, before its
// fsync; no caller is answered on it until then, and an answer given on a
// later durable write covers it, that write's fsync coming after. A write
// whose durability may wait (sqlstore.Group's lazy: a sign-in's request
// ID and challenge, which no response is sent on until the sign-in's
// decision is on record) is answered at its COMMIT when its batch holds
// only such writes. A crash of the process loses nothing committed (the
// WAL is in the page cache); only an OS crash or power loss before the
// next fsync can. A durable write that comes while a lazy batch fills
// waits for the next batch.
//
// A writer's connection that failed (in its setup or a batch) is closed,
// never pooled, and the next batch opens another (waiting in database/sql,
// holding the pool's other connection, while a write outside the group
// commit has it); a batch whose connection cannot be opened or set up
// commits on the pool's connection, at FULL, and is answered as a durable
// one. Until the writer's connection is open again, the pool's two
// connections are free for the store's other writes, and a second of them
// waits in SQLite's busy handler.

const (
	// maxBatch bounds the reports in one transaction, so that one commit
	// does not hold the write lock (and the other processes on the file)
	// for long.
	maxBatch = 128
	// queueLen bounds the reports waiting for the writer; beyond it
	// SaveReport blocks.
	queueLen = 2 * maxBatch

	// A durable batch waits for more writes, for up to gatherFor or until
	// gatherTo are queued, when the durable batch before it held at least
	// gatherAfter: writes are then coming in a stream (agents reporting
	// back to back), and what every commit costs whatever its size (its
	// fsync, the pages that every batch rewrites) is shared by more of
	// them; a lazy write ends the wait. A durable batch after a small one,
	// or after a pause longer than gatherFor, never waits: a sign-in's
	// decision when reports are few. While reports stream in, a sign-in's
	// writes may each wait up to gatherFor more.
	gatherAfter = 16
	gatherTo    = maxBatch
	gatherFor   = 3 * time.Millisecond
)

// ErrClosed is returned by SaveReport once the store is closing.
var ErrClosed = errors.New("sqlite store is closed")

// A saveReq moves from pending to exactly one of taken (the writer stores
// it and reports the outcome) or abandoned (its caller's context ended
// first; it is never written).
const (
	reqPending int32 = iota
	reqTaken
	reqAbandoned
)

// saveReq is one SaveReport call waiting for the writer.
type saveReq struct {
	ctx   context.Context
	lazy  bool // its durability may wait for the next durable commit
	save  func(ctx context.Context, tx *sqlstore.Tx) error
	state atomic.Int32
	done  chan error // buffered: the writer never blocks on a caller
}

// reportWriter owns the goroutine that commits queued reports. It is
// started by Open and stopped by Store.Close; its do is the store's
// sqlstore.Group.
type reportWriter struct {
	db *sql.DB
	// lazyConn is the writer's connection: one of db's, held by the
	// writer for every batch, at synchronous=NORMAL; nil until a batch
	// opens it, and after it failed. Only the writer goroutine uses it,
	// once started.
	lazyConn *sql.Conn
	sp       savepoints
	queue    chan *saveReq
	stop     chan struct{}
	exited   chan struct{}
	// ctx is the transactions' context. It is not a caller's: a caller
	// that gives up must not roll back the others' reports.
	ctx context.Context
	// afterTake, when set (by tests), runs once a request is taken, before
	// its report is written.
	afterTake func()
	closeOnce sync.Once
	// commits counts the batches committed; lazyCommits those of them
	// committed without an fsync.
	commits, lazyCommits atomic.Int64
	// carry is a durable request taken from the queue while a lazy batch
	// filled: it starts the next batch.
	carry *saveReq

	// wal is the WAL file the syncer makes durable, opened once when the
	// writer starts and kept: Linux reports a failed write-back to fsync
	// once per open file, and only to files open when it failed, so a
	// file opened for each fsync could miss an error that SQLite's own
	// fsync (in a checkpoint, whose failure it ignores) saw first. walPath
	// is its path, as SQLite resolved it.
	wal     *os.File
	walPath string
	walOnce sync.Once // closes wal
	// answers carries a durable batch's answers from the writer to the
	// syncer, which sends them once an fsync of the WAL that began after
	// their commit has returned, and then sends the time on syncDone. One batch
	// is synced at a time; the writer commits lazy batches meanwhile, and
	// the next durable batch grows while it waits. The writer closes
	// answers when it stops.
	answers  chan answers
	syncDone chan time.Time
	// syncing: a durable batch handed to the syncer has not been
	// answered yet. Only the writer goroutine uses it.
	syncing bool
	// synced is closed once the syncer has sent its last answers.
	synced chan struct{}
	// syncs counts the WAL's fsyncs that returned nil (the syncer's and
	// syncAfter's).
	syncs atomic.Int64
	// syncFailed holds the first fsync error: from then on no write of
	// the group commit is answered as stored (see sync).
	syncFailed atomic.Pointer[error]
	// syncWAL makes the WAL durable; tests replace it.
	syncWAL func() error
	// lazyAnswer, when a test sets it, runs on the writer before each
	// lazy write of a batch is answered (nil otherwise).
	lazyAnswer func()
	// syncLock is held (a value in it) across every fsync of wal, the
	// syncer's and syncAfter's: two fsyncs of one open file at once share
	// the one report of a failed write-back, and the one that missed it
	// would answer writes the disk lost. syncedThrough, which only its
	// holder uses, is how many batches had been committed when the last
	// fsync that returned nil began.
	syncLock      chan struct{}
	syncedThrough int64
	// lastDurable is how many requests the last durable batch took, and
	// syncedAt when its fsync returned (as the syncer saw it, however busy
	// the writer was then); gatherFor is how long the next one
	// may wait for more (see gatherAfter; tests change it), and gathers
	// counts the batches that did. Only the writer goroutine uses
	// lastDurable and syncedAt.
	lastDurable int
	syncedAt    time.Time
	gatherFor   time.Duration
	gathers     atomic.Int64
}

// answers are a committed durable batch's requests and their results,
// waiting for an fsync.
type answers struct {
	reqs    []*saveReq
	results []error
}

// savepoints are the statements around each report of a batch.
type savepoints struct {
	begin, release, rollback *sql.Stmt
}

// newReportWriter prepares the savepoint statements on db, which must be
// the store's writing pool, and starts the writer. db must allow two open
// connections: the writer holds one of them for its lazy batches.
func newReportWriter(ctx context.Context, db *sql.DB) (*reportWriter, error) {
	if n := db.Stats().MaxOpenConnections; n != 0 && n < 2 {
		// The writer would wait forever for a durable batch's connection.
		return nil, fmt.Errorf("the group commit needs 2 connections, the pool allows %d", n)
	}
	var sp [3]*sql.Stmt
	for i, q := range []string{`SAVEPOINT report`, `RELEASE report`, `ROLLBACK TO report`} {
		st, err := db.PrepareContext(ctx, q)
		if err != nil {
			for _, st := range sp[:i] {
				st.Close()
			}
			return nil, fmt.Errorf("preparing %q: %w", q, err)
		}
		sp[i] = st
	}
	w := &reportWriter{
		db:     db,
		sp:     savepoints{begin: sp[0], release: sp[1], rollback: sp[2]},
		queue:  make(chan *saveReq, queueLen),
		stop:   make(chan struct{}),
		exited: make(chan struct{}),
		ctx:    context.Background(),

		answers:  make(chan answers, 1),
		syncDone: make(chan time.Time, 1),
		synced:   make(chan struct{}),
		syncLock: make(chan struct{}, 1),
	}
	w.syncWAL = w.fsyncWAL
	w.gatherFor = gatherFor
	// Taken now, so that the pool's other connection is the only one the
	// store's other writes get.
	err := w.openLazy()
	if err == nil {
		err = w.openWAL()
	}
	if err != nil {
		w.dropLazy()
		for _, st := range sp {
			st.Close()
		}
		return nil, err
	}
	go w.run()
	go w.syncer()
	return w, nil
}

// close stops the writer after the batch it is committing, if any, and
// closes its statements. Calls still waiting get ErrClosed.
func (w *reportWriter) close() error {
	w.closeOnce.Do(func() { close(w.stop) })
	<-w.exited
	err := errors.Join(w.sp.begin.Close(), w.sp.release.Close(), w.sp.rollback.Close())
	// An fsync a sign-in began (syncAfter) finishes on an open file first.
	w.syncLock <- struct{}{}
	defer func() { <-w.syncLock }()
	w.walOnce.Do(func() { err = errors.Join(err, w.wal.Close()) })
	return err
}

// openWAL opens the WAL file of the writer's connection's database, at the
// path SQLite gives it (symbolic links resolved, as SQLite resolves them
// to name the WAL).
func (w *reportWriter) openWAL() error {
	var file string
	if err := w.lazyConn.QueryRowContext(w.ctx, `SELECT file FROM pragma_database_list WHERE name = 'main'`).Scan(&file); err != nil {
		return fmt.Errorf("finding the database's file: %w", err)
	}
	if file == "" {
		return errors.New("the database has no file: its writes cannot be made durable")
	}
	f, err := os.Open(file + "-wal")
	if err != nil {
		return fmt.Errorf("opening the database's write-ahead log: %w", err)
	}
	w.wal, w.walPath = f, file+"-wal"
	return nil
}

// do queues save and waits for its outcome: sqlstore.Group.
func (w *reportWriter) do(ctx context.Context, lazy bool, save func(ctx context.Context, tx *sqlstore.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	select {
	case <-w.stop:
		return ErrClosed
	default:
	}
	req := &saveReq{ctx: ctx, lazy: lazy, save: save, done: make(chan error, 1)}
	select {
	case w.queue <- req:
	case <-ctx.Done():
		return ctx.Err()
	case <-w.stop:
		return ErrClosed
	}
	select {
	case err := <-req.done:
		return err
	case <-ctx.Done():
		if req.state.CompareAndSwap(reqPending, reqAbandoned) {
			return ctx.Err()
		}
		// The writer has it: the real outcome follows its commit.
		return <-req.done
	case <-w.exited:
		// The writer answers before it exits, so an answer is there if
		// the request was taken; otherwise it never will be.
		select {
		case err := <-req.done:
			return err
		default:
			return ErrClosed
		}
	}
}

func (w *reportWriter) run() {
	w.serve()
	// Not reached when a write panics, which ends the process: no caller
	// is told ErrClosed, and no answer is sent, before the panic is
	// reported. Closed by the goroutine that owns it, before close
	// returns.
	w.dropLazy()
	close(w.answers)
	// Every durable answer is sent before exited is closed.
	<-w.synced
	close(w.exited)
}

// serve commits what is queued until the writer is stopped.
func (w *reportWriter) serve() {
	batch := make([]*saveReq, 0, maxBatch)
	for {
		// Stopping wins over a full queue.
		select {
		case <-w.stop:
			return
		default:
		}
		if req := w.carry; req != nil {
			w.carry = nil
			w.commit(append(batch[:0], req))
			clear(batch[:cap(batch)])
			continue
		}
		var synced <-chan time.Time
		if w.syncing {
			synced = w.syncDone
		}
		select {
		case <-w.stop:
			return
		case at := <-synced:
			w.syncing = false
			w.syncedAt = at
		case req := <-w.queue:
			w.commit(append(batch[:0], req))
			clear(batch[:cap(batch)]) // let answered requests be collected
		}
	}
}

// handOver gives a durable batch's answers to the syncer.
func (w *reportWriter) handOver(a answers) {
	w.waitSynced()
	w.answers <- a
	w.syncing = true
}

// waitSynced waits until the durable batch handed to the syncer, if any,
// has been answered.
func (w *reportWriter) waitSynced() {
	if w.syncing {
		w.syncedAt = <-w.syncDone
		w.syncing = false
	}
}

// commit stores batch, and whatever else is queued once the transaction
// has begun, in one transaction, and answers every request in it. batch
// has room for maxBatch requests.
func (w *reportWriter) commit(batch []*saveReq) {
	if p := w.syncFailed.Load(); p != nil {
		// Nothing is stored once an fsync has failed: see sync.
		for _, req := range batch {
			if req.take() {
				req.done <- *p
			}
		}
		return
	}
	// 1. The transaction. Waiting for the write lock (another process may
	// hold it) takes nobody's report: a caller may still give up. A batch
	// that starts lazy is committed without an fsync, on the lazy
	// connection.
	lazy := batch[0].lazy
	if !lazy {
		// One durable batch is synced at a time: this one grows
		// meanwhile, as it did while a commit waited for its own fsync.
		w.waitSynced()
		if p := w.syncFailed.Load(); p != nil {
			// That fsync failed: nothing more is stored.
			for _, req := range batch {
				if req.take() {
					req.done <- *p
				}
			}
			return
		}
		// Still streaming: the last durable batch was large, and its
		// fsync returned just now.
		if w.lastDurable >= gatherAfter && time.Since(w.syncedAt) < w.gatherFor {
			batch = w.gather(batch)
		}
	}
	sqlTx, end, own, durable, err := w.begin(lazy)
	// Without the writer's connection the batch commits with an fsync: a
	// lazy write may always be made durable sooner.
	lazy = !durable
	if err != nil {
		err = fmt.Errorf("beginning transaction: %w", err)
		for _, req := range batch {
			if req.take() {
				req.done <- err
			}
		}
		return
	}
	// After the transaction's end, whichever it is. A panic in a write
	// leaves it open: it is rolled back first (Rollback after an end is a
	// no-op), so that no connection is left holding the write lock.
	defer func() {
		_ = sqlTx.Rollback()
		end()
	}()
	tx := sqlstore.NewTx(sqlTx)

	// 2. Everything queued meanwhile joins the batch: while the lock was
	// taken, or the previous commit's fsync ran, more reports came. A
	// lazy batch takes no durable write: the first one starts the next.
fill:
	for len(batch) < maxBatch {
		select {
		case req := <-w.queue:
			if lazy && !req.lazy {
				w.carry = req
				break fill
			}
			batch = append(batch, req)
		default:
			break fill
		}
	}

	// 3. Each report whose caller still waits, in its own savepoint. A
	// batch of one needs none: rolling back the transaction rolls back
	// that write alone, and a sign-in's lazy writes often come one by one.
	alone := len(batch) == 1
	taken := make([]*saveReq, 0, len(batch))
	results := make([]error, 0, len(batch))
	fail := func(err error) {
		_ = tx.Rollback()
		if own {
			// Its state is not known: the next batch opens another.
			w.dropLazy()
		}
		for _, req := range taken {
			req.done <- err
		}
		// The rest of the batch was not reached: nothing of this
		// transaction is stored, and no one else would answer them.
		for _, req := range batch {
			if req.take() {
				req.done <- err
			}
		}
	}
	for _, req := range batch {
		if !req.take() {
			continue
		}
		if w.afterTake != nil {
			w.afterTake()
		}
		taken = append(taken, req)
		if alone {
			res := req.save(w.ctx, tx)
			if res != nil {
				// Refused: nothing is stored, its caller gets its own
				// error, and there is nothing to commit. A durable
				// write's refusal may rest on a write not yet synced
				// (a report already stored): it waits for a sync too.
				_ = tx.Rollback()
				if lazy {
					req.done <- res
				} else {
					w.lastDurable = 1
					w.handOver(answers{reqs: []*saveReq{req}, results: []error{res}})
				}
				return
			}
			results = append(results, res)
			continue
		}
		if err := w.exec(tx, w.sp.begin); err != nil {
			fail(err)
			return
		}
		res := req.save(w.ctx, tx)
		results = append(results, res)
		end := []*sql.Stmt{w.sp.release}
		if res != nil {
			end = []*sql.Stmt{w.sp.rollback, w.sp.release}
		}
		for _, q := range end {
			// If this fails, SQLite may have rolled back the whole
			// transaction (it does on some I/O errors): nobody's report
			// is known to be stored.
			if err := w.exec(tx, q); err != nil {
				fail(err)
				return
			}
		}
	}
	if len(taken) == 0 {
		_ = tx.Rollback()
		return
	}

	// 4. One commit, one fsync; only then the answers.
	if err := tx.Commit(); err != nil {
		// Nothing was stored. Refusals were judged against reports that
		// are not stored either, so every caller gets the commit's error
		// and may retry.
		fail(fmt.Errorf("committing transaction: %w", err))
		return
	}
	// Counted before any of the batch is answered: a lazy write's mark,
	// read once it is answered, must count its commit, or an fsync that
	// began before the commit could be taken to cover it (syncAfter).
	w.commits.Add(1)
	if lazy {
		w.lazyCommits.Add(1)
		for i, req := range taken {
			if w.lazyAnswer != nil {
				w.lazyAnswer()
			}
			req.done <- results[i]
		}
		return
	}
	w.lastDurable = len(taken)
	w.handOver(answers{reqs: taken, results: results})
}

// gather takes queued requests into the durable batch, for up to
// w.gatherFor, until it holds gatherTo, a lazy write comes (a sign-in's,
// which is not kept waiting longer than the fsync it now shares), or the
// writer stops. It returns the batch.
func (w *reportWriter) gather(batch []*saveReq) []*saveReq {
	w.gathers.Add(1)
	t := time.NewTimer(w.gatherFor)
	defer t.Stop()
	for len(batch) < gatherTo {
		select {
		case <-w.stop:
			return batch
		case <-t.C:
			return batch
		case req := <-w.queue:
			batch = append(batch, req)
			if req.lazy {
				return batch
			}
		}
	}
	return batch
}

// begin begins a batch's transaction on the writer's connection, opening
// it if need be, while it holds the pool's connection (see the package's
// comment). own says the transaction is on the writer's connection. If
// that connection cannot be opened or begin a transaction, the
// transaction is begun on the held connection instead, at FULL: lazy
// writes do not fail for want of a connection that only makes them
// cheaper. durable says the batch is to be answered as a durable one:
// lazy is false, or the transaction is not on the writer's connection.
// end, once the transaction has ended, lets the pool's connection go.
func (w *reportWriter) begin(lazy bool) (tx *sql.Tx, end func(), own, durable bool, err error) {
	held, err := w.db.Conn(w.ctx)
	if err != nil {
		return nil, nil, false, false, err
	}
	end = func() { _ = held.Close() }
	if w.lazyConn == nil {
		err = w.openLazy()
	}
	if err == nil {
		if tx, err = w.lazyConn.BeginTx(w.ctx, nil); err != nil {
			w.dropLazy()
		}
	}
	if err == nil {
		return tx, end, true, !lazy, nil
	}
	if tx, err = held.BeginTx(w.ctx, nil); err != nil {
		end()
		return nil, nil, false, false, err
	}
	return tx, end, false, true, nil
}

// openLazy takes one of the pool's connections for good and sets it to
// synchronous=NORMAL (which SQLite lets change only outside a
// transaction); FULL is every pool connection's setting from the DSN.
// SQLite applies a PRAGMA's setting when the statement is prepared, not
// when it runs: it is executed as text, never kept prepared.
func (w *reportWriter) openLazy() error {
	c, err := w.db.Conn(w.ctx)
	if err != nil {
		return err
	}
	w.lazyConn = c
	if _, err := c.ExecContext(w.ctx, `PRAGMA synchronous = NORMAL`); err != nil {
		w.dropLazy()
		return fmt.Errorf("opening the writer's connection: %w", err)
	}
	return nil
}

// dropLazy closes the writer's connection, if any. Raw's ErrBadConn makes
// database/sql close it rather than pool it: no other write may ever
// commit at NORMAL on it.
func (w *reportWriter) dropLazy() {
	if w.lazyConn == nil {
		return
	}
	_ = w.lazyConn.Raw(func(any) error { return driver.ErrBadConn })
	_ = w.lazyConn.Close()
	w.lazyConn = nil
}

// take moves a pending request to the writer. It returns false if the
// caller gave up first; a caller whose context ended is answered here.
func (req *saveReq) take() bool {
	if !req.state.CompareAndSwap(reqPending, reqTaken) {
		return false
	}
	if err := req.ctx.Err(); err != nil {
		req.done <- err
		return false
	}
	return true
}

func (w *reportWriter) exec(tx *sqlstore.Tx, st *sql.Stmt) error {
	if _, err := tx.Stmt(w.ctx, st).ExecContext(w.ctx); err != nil {
		return fmt.Errorf("savepoint: %w", err)
	}
	return nil
}

// syncer answers each durable batch the writer hands it once the WAL it
// was committed to is durable: the fsync begins after the batch's COMMIT
// returned, and an fsync makes durable every write to the file before it.
// It then tells the writer, which meanwhile has committed lazy batches
// only.
func (w *reportWriter) syncer() {
	defer close(w.synced)
	for a := range w.answers {
		err := w.sync()
		for i, req := range a.reqs {
			if err != nil {
				req.done <- err
			} else {
				req.done <- a.results[i]
			}
		}
		w.syncDone <- time.Now()
	}
}

// sync makes the WAL durable, or returns why it cannot: the first fsync
// error stays, since after a failed fsync the kernel may have dropped the
// pages it could not write, and no later fsync would say so.
func (w *reportWriter) sync() error {
	w.syncLock <- struct{}{}
	defer func() { <-w.syncLock }()
	return w.syncHeld()
}

// syncHeld is sync with syncLock held.
func (w *reportWriter) syncHeld() error {
	if p := w.syncFailed.Load(); p != nil {
		return *p
	}
	// Counted before the fsync begins: every batch counted had returned
	// from its commit, its frames written to the file.
	through := w.commits.Load()
	if err := w.syncWAL(); err != nil {
		err = fmt.Errorf("syncing the database's log; restart the verifier once the disk is fixed: %w", err)
		if w.syncFailed.CompareAndSwap(nil, &err) {
			// The store's other writes stop too: a commit appended after
			// frames the disk lost is lost with them at a power loss,
			// whatever its own fsync said. Closing the write pool fails
			// every write that has not begun; reads go on.
			_ = w.db.Close()
		}
		return *w.syncFailed.Load()
	}
	w.syncs.Add(1)
	w.syncedThrough = through
	return nil
}

// fsyncWAL syncs the WAL file the writer opened, and checks that it is
// still the one at its path. SQLite makes a new WAL only once every
// connection to the database has closed, which the writer's held
// connection prevents: another file there means the database was changed
// under the verifier, and its writes are not known to be durable.
func (w *reportWriter) fsyncWAL() error {
	if err := w.wal.Sync(); err != nil {
		return err
	}
	held, err := w.wal.Stat()
	if err != nil {
		return err
	}
	now, err := os.Stat(w.walPath)
	if err != nil {
		return err
	}
	if !os.SameFile(held, now) {
		return fmt.Errorf("%s is no longer the file the verifier opened", w.walPath)
	}
	return nil
}
