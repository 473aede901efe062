package sqlite

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/clearance/clearance/verifier/storage/sqlstore"
)

// Group commit for reports, and for the small writes every sign-in makes
// (its request ID, its decision, a held sign-in): the sqlstore.Group of
// this backend. A durable SQLite commit
// costs an fsync, which is far more than the work of storing one row; with
// many agents reporting and users signing in at once, one writer goroutine
// stores every write that is waiting in one transaction and pays the fsync
// once. Each report runs in a
// savepoint of its own, so a refused report (seq, nonce, revoked device)
// is rolled back alone and its caller gets its own error; a report alone
// in its batch needs none, the transaction's rollback being its own. Every
// caller gets its result only after the batch's COMMIT returned, or, alone
// and refused, after its rollback.
//
// A single caller is not delayed: the writer takes what is queued and
// commits at once. Batches grow by themselves under load, while the
// previous commit waits for its fsync.
//
// A write whose durability may wait (sqlstore.Group's lazy: a sign-in's
// request ID and challenge, which no response is sent on until the
// sign-in's decision is on record) is committed without an fsync when
// its batch holds only such writes. Every batch runs on a connection the
// writer takes from the pool for good (the lazy connection), at
// synchronous=NORMAL between batches and for a lazy batch, set to FULL
// for a durable batch and back after it. One connection for both keeps
// its page cache: SQLite drops a connection's whole cache when another
// connection committed since its last transaction, and a sign-in's lazy
// and durable writes come in turn. While a batch runs the writer holds
// the pool's other connection too, so that the store's other writes wait
// for it in database/sql rather than in SQLite's busy handler. A FULL
// commit ends with an fsync of the WAL file (SQLite's walFrames: xSync on
// the WAL's file at a commit when synchronous=FULL), which makes every
// frame written before it durable, whichever connection or batch wrote
// it. A lazy write is visible to every reader
// when it returns, and a crash of the process loses nothing (the WAL is
// in the page cache); only an OS crash or power loss before the next
// durable commit that writes can (SQLite writes no frame, and syncs
// nothing, for a transaction that changed no page; every durable write
// this store makes inserts a row). A checkpoint (wal_autocheckpoint) runs on the
// connection whose commit crosses the threshold; at NORMAL as at FULL
// SQLite syncs the WAL before it copies frames into the database file and
// the database file after. A durable write that comes while a lazy batch
// fills waits for the next batch. A lazy connection that failed (in its
// setup, a switch of its setting, or a batch) is closed, never pooled,
// and the next batch opens another (waiting in database/sql, holding the
// pool's other connection, while a write outside the group commit has
// it); a batch whose connection cannot be opened or set up commits with an
// fsync on the pool's connection. Until a lazy connection is open again,
// the pool's two connections are free for the store's other writes, and a
// second of them waits in SQLite's busy handler.

const (
	// maxBatch bounds the reports in one transaction, so that one commit
	// does not hold the write lock (and the other processes on the file)
	// for long.
	maxBatch = 128
	// queueLen bounds the reports waiting for the writer; beyond it
	// SaveReport blocks.
	queueLen = 2 * maxBatch
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
	// lazyConn is the lazy connection: one of db's, held by the writer
	// for every batch, at synchronous=NORMAL but during a durable batch;
	// nil until a batch opens it, and after it failed. Only the writer
	// goroutine uses it, once started.
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
	}
	// Taken now, so that the pool's other connection is the only one the
	// store's other writes get.
	if err := w.openLazy(); err != nil {
		for _, st := range sp {
			st.Close()
		}
		return nil, err
	}
	go w.run()
	return w, nil
}

// close stops the writer after the batch it is committing, if any, and
// closes its statements. Calls still waiting get ErrClosed.
func (w *reportWriter) close() error {
	w.closeOnce.Do(func() { close(w.stop) })
	<-w.exited
	return errors.Join(w.sp.begin.Close(), w.sp.release.Close(), w.sp.rollback.Close())
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
	defer close(w.exited)
	// Closed by the goroutine that owns it, before close returns.
	defer w.dropLazy()
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
		select {
		case <-w.stop:
			return
		case req := <-w.queue:
			w.commit(append(batch[:0], req))
			clear(batch[:cap(batch)]) // let answered requests be collected
		}
	}
}

// commit stores batch, and whatever else is queued once the transaction
// has begun, in one transaction, and answers every request in it. batch
// has room for maxBatch requests.
func (w *reportWriter) commit(batch []*saveReq) {
	// 1. The transaction. Waiting for the write lock (another process may
	// hold it) takes nobody's report: a caller may still give up. A batch
	// that starts lazy is committed without an fsync, on the lazy
	// connection.
	lazy := batch[0].lazy
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
				// error, and there is nothing to commit.
				_ = tx.Rollback()
				req.done <- res
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
	w.commits.Add(1)
	if lazy {
		w.lazyCommits.Add(1)
	}
	for i, req := range taken {
		req.done <- results[i]
	}
}

// begin begins a batch's transaction on the writer's connection (the lazy
// connection), opening it if need be, while it holds the pool's connection
// (see the package's comment on lazy writes). A lazy batch runs at NORMAL,
// the connection's setting between batches; a durable one at FULL, set for
// it and set back by end once the transaction has ended. Every batch runs
// on that one connection so that its page cache stays warm: a connection
// drops its whole cache when it finds that another one committed since
// its last transaction, and a lazy and a durable connection committing in
// turn (as a sign-in's writes do) would each find that every time. own
// says the transaction is on the writer's connection. If that connection
// cannot be opened, set to FULL or begin a transaction, the transaction is
// begun on the held connection instead, at FULL, and durable says so:
// lazy writes do not fail for want of a connection that only makes them
// cheaper. end, once the transaction has ended, lets the pool's connection
// go.
func (w *reportWriter) begin(lazy bool) (tx *sql.Tx, end func(), own, durable bool, err error) {
	held, err := w.db.Conn(w.ctx)
	if err != nil {
		return nil, nil, false, false, err
	}
	end = func() { _ = held.Close() }
	if w.lazyConn == nil {
		err = w.openLazy()
	}
	// SQLite applies a PRAGMA's setting when the statement is prepared,
	// not when it runs: these must be executed as text, parsed anew each
	// time, never kept prepared (a kept `PRAGMA synchronous = FULL` would
	// run and leave the connection at NORMAL).
	if err == nil && !lazy {
		if _, err = w.lazyConn.ExecContext(w.ctx, `PRAGMA synchronous = FULL`); err != nil {
			w.dropLazy()
		}
	}
	if err == nil {
		if tx, err = w.lazyConn.BeginTx(w.ctx, nil); err != nil {
			w.dropLazy()
		}
	}
	if err == nil {
		if !lazy {
			c := w.lazyConn
			end = func() {
				// Back to NORMAL, or closed: never at FULL for a lazy
				// batch, never pooled. One that failed is closed already.
				if w.lazyConn == c {
					if _, err := c.ExecContext(w.ctx, `PRAGMA synchronous = NORMAL`); err != nil {
						w.dropLazy()
					}
				}
				_ = held.Close()
			}
		}
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
func (w *reportWriter) openLazy() error {
	c, err := w.db.Conn(w.ctx)
	if err != nil {
		return err
	}
	w.lazyConn = c
	if _, err := c.ExecContext(w.ctx, `PRAGMA synchronous = NORMAL`); err != nil {
		w.dropLazy()
		return fmt.Errorf("opening the lazy connection: %w", err)
	}
	return nil
}

// dropLazy closes the lazy connection, if any. Raw's ErrBadConn makes
// database/sql close it rather than pool it: no other write may ever
// commit at NORMAL on it, nor a lazy batch at FULL.
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
