// Package sqlstore is the storage contract's one SQL implementation, over
// database/sql: every query, row mapping and transaction of the SQL
// backends lives here once. A backend (sqlite, postgres) opens its
// database, migrates its schema and hands over its pools with a Dialect,
// which holds only what differs between the engines.
//
// Queries are written in PostgreSQL's placeholder style ($1, $2, ...), in
// SQL both engines run; the dialect rewrites placeholders for its driver.
// Both schemas store times as unix nanoseconds (0: not set) and never hold
// a NULL blob.
package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/clearance/clearance/verifier/storage"
)

// Dialect is what one SQL engine does its own way.
type Dialect struct {
	// Name names the engine in errors ("sqlite", "postgres").
	Name string
	// Rebind rewrites a query's $n placeholders for the driver; nil leaves
	// them as they are.
	Rebind func(query string) string
	// ASCIILower is the SQL that lowers A–Z only in the column it is
	// given (storage.UserNameKey's rule), where a query compares user names
	// as sign-ins do; the decisions' index on the username is built on the
	// same expression, so that such a query uses it.
	ASCIILower func(column string) string
	// LockRow ends a SELECT of a row that the transaction goes on to decide
	// on and change, so that concurrent writers of that row queue behind
	// it. Empty where write transactions run one at a time anyway.
	LockRow string
	// LockKey, where set, is a statement that takes a lock on its text
	// argument, $1, until the transaction ends: for a decision on a key
	// no row may exist for yet. Empty where write transactions run one at
	// a time anyway.
	LockKey string
	// SkipLocked ends a SELECT of rows to remove that another transaction
	// may be deciding on: it locks those it returns and passes over the
	// ones locked, so that a clean-up never waits on (and never deadlocks
	// with) the decision. Empty where writes run one at a time anyway.
	SkipLocked string
	// IsUniqueViolation reports whether err is a PRIMARY KEY or UNIQUE
	// violation.
	IsUniqueViolation func(err error) bool
	// IsRetryable reports whether err says a transaction lost a race with a
	// concurrent one and changed nothing (a serialization failure, a
	// deadlock), so that it can simply run again; nil: never.
	IsRetryable func(err error) bool
	// ReadTx begins the read-only transactions of calls that read more than
	// once and need what they read to agree. Write transactions begin with
	// the driver's defaults (the sqlite backend's DSN makes them BEGIN
	// IMMEDIATE).
	ReadTx sql.TxOptions
	// Prepare keeps the hot statements (see prepared) prepared on the
	// writing pool, for a driver that does not cache statements itself:
	// New prepares them, and calls on that pool use them.
	Prepare bool
	// Catalog describes the application's tables, for tools that read
	// every row (storagetest.Dump).
	Catalog Catalog
	// UninterruptedReads runs the hot reads (hotRead) outside a
	// transaction to their end even when their caller's context ends
	// meanwhile (one that has ended before still fails). An interruptible
	// read costs two goroutines (the driver's and database/sql's, each
	// watching the context) for a statement that, on an embedded engine,
	// is over in microseconds: a point lookup or a device's few rows.
	UninterruptedReads bool
}

// Catalog holds the queries that describe a database's own tables.
type Catalog struct {
	// Tables lists the application's tables by name, leaving out the
	// migrations' bookkeeping, the health check's probe row and the
	// engine's internal tables.
	Tables string
	// Columns lists table $1's columns in declaration order, each with its
	// position in the primary key (0: not part of it).
	Columns string
}

// Group runs fn in a transaction that other callers' writes may share,
// rolls fn's writes back alone when it fails, and returns once they are
// durable: SQLite's group commit. fn may run with a context of the group's
// own. With lazy, it may return once they are committed and visible, and
// be durable only when a later durable commit of the group returns.
type Group func(ctx context.Context, lazy bool, fn func(ctx context.Context, tx *Tx) error) error

// Tx is a write transaction with the prepared statements bound to it so
// far: database/sql binds a statement to a transaction afresh (a new
// *sql.Stmt) on every call of StmtContext, and a group commit's
// transaction runs the same few statements for every report in it.
type Tx struct {
	*sql.Tx
	bound map[*sql.Stmt]*sql.Stmt
}

// NewTx wraps tx.
func NewTx(tx *sql.Tx) *Tx { return &Tx{Tx: tx} }

// Stmt is st bound to the transaction, bound once. The bound statements
// close with the transaction.
func (t *Tx) Stmt(ctx context.Context, st *sql.Stmt) *sql.Stmt {
	if b, ok := t.bound[st]; ok {
		return b
	}
	b := t.StmtContext(ctx, st)
	if t.bound == nil {
		t.bound = make(map[*sql.Stmt]*sql.Stmt, 8)
	}
	t.bound[st] = b
	return b
}

// writeAttempts bounds the runs of a write transaction that lost a race.
const writeAttempts = 5

// errRace marks a transaction that lost a race to a concurrent one and can
// simply run again.
var errRace = errors.New("lost a race with a concurrent transaction")

// Store is a storage.Store over database/sql. Backends embed it.
type Store struct {
	d Dialect
	// w takes writes; r serves reads (the same pool unless the engine
	// gains from a pool of its own for each).
	w, r  *sql.DB
	group Group
	// lazyMark and syncLazy, when the group commit has them (SetLazySync),
	// mark a lazy write once it has returned, and make what was committed
	// up to a mark durable.
	lazyMark func() int64
	syncLazy func(ctx context.Context, mark int64) error
	// stmts are the prepared statements on w, by query, when the dialect
	// prepares; filled by New and only read after.
	stmts map[string]*sql.Stmt
	// reads are the hot reads (hotRead) prepared on r, when it is a pool
	// of its own and the dialect prepares, from their first use: a sign-in
	// runs a dozen reads, and preparing them afresh (parsing and planning)
	// was a large part of its time in the store.
	reads  sync.Map // query → *sql.Stmt
	closed atomic.Bool
	close  sync.Once
}

// hotReads are the texts of the reads kept prepared (hotRead).
var hotReads sync.Map // query → struct{}

// hotRead marks query, a read the code writes whole (never one built from
// a caller's filters or a list's length), as one to keep prepared, and
// returns it. Only such texts are kept, so no caller can fill the store
// with statements.
func hotRead(query string) string {
	if _, ok := hotReads.Load(query); !ok {
		hotReads.Store(query, struct{}{})
	}
	return query
}

var _ storage.Store = (*Store)(nil)

// hot lists the statements the Prepare dialects keep prepared: those every
// report or sign-in runs, where preparing each time would cost more than
// running them.
var hot []string

// prepared declares query hot and returns it.
func prepared(query string) string {
	hot = append(hot, query)
	return query
}

// New returns a store that writes through w and reads through r (which
// may be w). group, when set, commits the frequent small writes (reports,
// sign-ins); without it each runs in a transaction of its own. Once New
// succeeds the store owns w and r: Close closes them.
func New(ctx context.Context, d Dialect, w, r *sql.DB, group Group) (*Store, error) {
	s := &Store{d: d, w: w, r: r, group: group}
	if d.Prepare {
		s.stmts = make(map[string]*sql.Stmt, len(hot))
		for _, q := range hot {
			st, err := w.PrepareContext(ctx, s.rebind(q))
			if err != nil {
				for _, st := range s.stmts {
					st.Close()
				}
				return nil, fmt.Errorf("preparing %q: %w", q, err)
			}
			s.stmts[q] = st
		}
	}
	return s, nil
}

// Ping checks that the database is reachable through both pools.
func (s *Store) Ping(ctx context.Context) error {
	for _, db := range s.pools() {
		if err := db.PingContext(ctx); err != nil {
			return fmt.Errorf("pinging %s store: %w", s.d.Name, err)
		}
	}
	return nil
}

// CheckWrite commits one write to the one-row health_probe table: a store
// that answers reads but cannot commit (a full disk, a read-only file, a
// primary gone read-only) fails here, which Ping cannot see.
func (s *Store) CheckWrite(ctx context.Context, at time.Time) error {
	var c timeCodec
	n := c.ns("probe time", at)
	if c.err != nil {
		return fmt.Errorf("checking writes: %w", c.err)
	}
	_, err := s.writer().exec(ctx, `INSERT INTO health_probe (id, probed_at) VALUES (1, $1)
		ON CONFLICT (id) DO UPDATE SET probed_at = excluded.probed_at`, n)
	if err != nil {
		return fmt.Errorf("checking writes to the %s store: %w", s.d.Name, err)
	}
	return nil
}

// Close closes the prepared statements and the pools, readers first, so
// that the writer closes last (SQLite checkpoints its WAL then). A group
// must be stopped before.
func (s *Store) Close() error {
	var errs []error
	s.close.Do(func() {
		for _, st := range s.stmts {
			errs = append(errs, st.Close())
		}
		s.closed.Store(true)
		s.reads.Range(func(_, st any) bool {
			errs = append(errs, st.(*sql.Stmt).Close())
			return true
		})
		pools := s.pools()
		for i := len(pools) - 1; i >= 0; i-- {
			errs = append(errs, pools[i].Close())
		}
	})
	return errors.Join(errs...)
}

func (s *Store) pools() []*sql.DB {
	if s.r == s.w {
		return []*sql.DB{s.w}
	}
	return []*sql.DB{s.w, s.r}
}

// Snapshot runs fn in one read-only transaction, with the dialect's catalog
// queries ready for tx: for tools that read the whole database, such as
// storagetest.Dump.
func (s *Store) Snapshot(ctx context.Context, fn func(tx *sql.Tx, c Catalog) error) error {
	c := Catalog{Tables: s.rebind(s.d.Catalog.Tables), Columns: s.rebind(s.d.Catalog.Columns)}
	return s.read(ctx, func(q conn) error { return fn(q.tx.Tx, c) })
}

func (s *Store) rebind(query string) string {
	if s.d.Rebind == nil {
		return query
	}
	return s.d.Rebind(query)
}

func (s *Store) writer() conn { return conn{s: s, pool: s.w} }
func (s *Store) reader() conn { return conn{s: s, pool: s.r} }

// write runs fn in one write transaction, committed only if fn succeeds,
// and runs it again (fn must start from scratch) when it lost a race.
func (s *Store) write(ctx context.Context, fn func(q conn) error) error {
	for attempt := 1; ; attempt++ {
		err := s.inTx(ctx, s.w, nil, fn)
		if err == nil || !s.retryable(err) || attempt == writeAttempts || ctx.Err() != nil {
			return err
		}
	}
}

// read runs fn in one read-only transaction, so that what it reads agrees.
func (s *Store) read(ctx context.Context, fn func(q conn) error) error {
	return s.inTx(ctx, s.r, &s.d.ReadTx, fn)
}

func (s *Store) inTx(ctx context.Context, pool *sql.DB, opts *sql.TxOptions, fn func(q conn) error) error {
	tx, err := pool.BeginTx(ctx, opts)
	if err != nil {
		return fmt.Errorf("beginning transaction: %w", err)
	}
	if err := fn(conn{s: s, pool: pool, tx: NewTx(tx)}); err != nil {
		// The rollback error adds nothing: fn's error says why, and the
		// engine drops an unfinished transaction anyway.
		_ = tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("committing transaction: %w", err)
	}
	return nil
}

func (s *Store) retryable(err error) bool {
	return errors.Is(err, errRace) || (s.d.IsRetryable != nil && s.d.IsRetryable(err))
}

// grouped runs fn, a few statements that must commit together, in the
// group commit when there is one, else in a write transaction of its own.
func (s *Store) grouped(ctx context.Context, fn func(ctx context.Context, q conn) error) error {
	return s.inGroup(ctx, false, false, fn)
}

// groupedOne is grouped for a single statement, which needs no transaction
// of its own without a group commit.
func (s *Store) groupedOne(ctx context.Context, fn func(ctx context.Context, q conn) error) error {
	return s.inGroup(ctx, true, false, fn)
}

// SetLazySync gives the store its group commit's way of making lazy
// writes durable after the fact: mark, read once a lazy write has
// returned, counts that write's commit, and sync returns once every write
// a mark counts is durable, or the error that keeps it from being. Call it
// before the store is used.
func (s *Store) SetLazySync(mark func() int64, sync func(ctx context.Context, mark int64) error) {
	s.lazyMark, s.syncLazy = mark, sync
}

// groupedLazy and groupedOneLazy are grouped and groupedOne for a sign-in's
// writes that no response waits on before its decision's durable write
// (storage.SAMLRequestStore): the group commit may leave their fsync to
// that write. Without a group commit they are durable at once.
func (s *Store) groupedLazy(ctx context.Context, fn func(ctx context.Context, q conn) error) error {
	return s.inGroup(ctx, false, true, fn)
}

func (s *Store) groupedOneLazy(ctx context.Context, fn func(ctx context.Context, q conn) error) error {
	return s.inGroup(ctx, true, true, fn)
}

func (s *Store) inGroup(ctx context.Context, one, lazy bool, fn func(ctx context.Context, q conn) error) error {
	switch {
	case s.group != nil:
		return s.group(ctx, lazy, func(ctx context.Context, tx *Tx) error {
			return fn(ctx, conn{s: s, pool: s.w, tx: tx})
		})
	case one:
		return fn(ctx, s.writer())
	}
	return s.write(ctx, func(q conn) error { return fn(ctx, q) })
}

// conn runs queries on a pool or in one of its transactions, rewritten for
// the dialect, through the prepared statement when there is one.
type conn struct {
	s    *Store
	pool *sql.DB
	tx   *Tx // nil: on the pool
}

// querier is what *sql.DB and *sql.Tx have in common.
type querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

func (c conn) exec(ctx context.Context, query string, args ...any) (sql.Result, error) {
	if st := c.stmt(ctx, query); st != nil {
		return st.ExecContext(ctx, args...)
	}
	return c.on().ExecContext(ctx, c.s.rebind(query), args...)
}

func (c conn) query(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	if st := c.stmt(ctx, query); st != nil {
		return st.QueryContext(c.uninterrupted(ctx), args...)
	}
	return c.on().QueryContext(ctx, c.s.rebind(query), args...)
}

func (c conn) queryRow(ctx context.Context, query string, args ...any) *sql.Row {
	if st := c.stmt(ctx, query); st != nil {
		return st.QueryRowContext(c.uninterrupted(ctx), args...)
	}
	return c.on().QueryRowContext(ctx, c.s.rebind(query), args...)
}

// uninterrupted is the context a kept-prepared statement runs with: one
// that is not cancelled, on a dialect with UninterruptedReads, outside a
// transaction, when ctx has not ended yet. Those statements are the hot
// reads (hotRead): point lookups and a device's few rows, over in
// microseconds; listings and every other read keep their context.
func (c conn) uninterrupted(ctx context.Context) context.Context {
	if c.tx == nil && c.s.d.UninterruptedReads && ctx.Err() == nil {
		return context.WithoutCancel(ctx)
	}
	return ctx
}

func (c conn) on() querier {
	if c.tx != nil {
		return c.tx
	}
	return c.pool
}

// stmt returns query's prepared statement for c, or nil if there is none.
func (c conn) stmt(ctx context.Context, query string) *sql.Stmt {
	if c.tx == nil && c.pool == c.s.r && c.s.r != c.s.w && c.s.d.Prepare {
		return c.s.readStmt(ctx, query)
	}
	st := c.s.stmts[query]
	switch {
	case st == nil || c.pool != c.s.w:
		return nil
	case c.tx != nil:
		return c.tx.Stmt(ctx, st)
	}
	return st
}

// readStmt returns query prepared on r if it is a hot read, preparing it
// on first use; nil (the query then runs unprepared) for other reads, or
// when it cannot be prepared. database/sql prepares it again on each of
// r's connections as it first runs there.
func (s *Store) readStmt(ctx context.Context, query string) *sql.Stmt {
	if st, ok := s.reads.Load(query); ok {
		return st.(*sql.Stmt)
	}
	if _, hot := hotReads.Load(query); !hot {
		return nil
	}
	st, err := s.r.PrepareContext(ctx, s.rebind(query))
	if err != nil {
		return nil // running it unprepared reports the error
	}
	if prev, loaded := s.reads.LoadOrStore(query, st); loaded {
		st.Close()
		return prev.(*sql.Stmt)
	}
	if s.closed.Load() {
		// Close may have passed the cache already: nobody else will close
		// this one. Its pool is closed, so the read fails as it would.
		st.Close()
	}
	return st
}

// scanner is what *sql.Row and *sql.Rows have in common.
type scanner interface {
	Scan(dest ...any) error
}

// list runs query and returns every row as scan reads it: never nil.
func list[T any](ctx context.Context, q conn, scan func(scanner) (T, error), query string, args ...any) ([]T, error) {
	rows, err := q.query(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []T{}
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

func scanString(sc scanner) (string, error) {
	var v string
	err := sc.Scan(&v)
	return v, err
}

// filter builds the WHERE clause of a listing, each condition on a
// parameter of its own.
type filter struct {
	conds []string
	args  []any
}

// add adds cond, in which ? stands for v's parameter.
func (f *filter) add(cond string, v any) {
	f.args = append(f.args, v)
	f.conds = append(f.conds, strings.ReplaceAll(cond, "?", "$"+strconv.Itoa(len(f.args))))
}

// nothing is a condition no row meets.
const nothing = "0 = 1"

// between adds the window [since, until) on the time column col, either end
// unset when zero. Since and Until may lie outside the range timeCodec can
// store (the admin API takes any year from 1 to 9999); no stored time lies
// outside it, so such a bound selects everything or nothing, as it would if
// it fitted.
func (f *filter) between(col string, since, until time.Time) {
	switch {
	case since.IsZero() || since.Before(minTime):
	case since.After(maxTime):
		f.conds = append(f.conds, nothing)
	default:
		f.add(col+" >= ?", since.UnixNano())
	}
	switch {
	case until.IsZero() || until.After(maxTime):
	case until.Before(minTime):
		f.conds = append(f.conds, nothing)
	default:
		f.add(col+" < ?", until.UnixNano())
	}
}

// query is base with the conditions, ordered by order and limited to
// limit rows, and its arguments.
func (f *filter) query(base, order string, limit int) (string, []any) {
	q := base
	if len(f.conds) > 0 {
		q += ` WHERE ` + strings.Join(f.conds, ` AND `)
	}
	args := append(f.args, limit)
	return q + ` ORDER BY ` + order + ` LIMIT $` + strconv.Itoa(len(args)), args
}

// one runs query, a SELECT of at most one row, and returns the row as scan
// reads it: ErrNotFound, after notFound, when there is none; any other
// error after "reading what".
func one[T any](ctx context.Context, q conn, scan func(scanner) (T, error), what, notFound, query string, args ...any) (T, error) {
	v, err := scan(q.queryRow(ctx, query, args...))
	if errors.Is(err, sql.ErrNoRows) {
		var zero T
		return zero, fmt.Errorf("%s: %w", notFound, storage.ErrNotFound)
	}
	if err != nil {
		var zero T
		return zero, fmt.Errorf("reading %s: %w", what, err)
	}
	return v, nil
}

// insert runs query, an INSERT of the what named key: ErrAlreadyExists
// when a key of the row is taken, any other error after "inserting what".
func (c conn) insert(ctx context.Context, what, key, query string, args ...any) (sql.Result, error) {
	res, err := c.exec(ctx, query, args...)
	if c.s.d.IsUniqueViolation(err) {
		return nil, fmt.Errorf("%s %q: %w", what, key, storage.ErrAlreadyExists)
	}
	if err != nil {
		return nil, fmt.Errorf("inserting %s: %w", what, err)
	}
	return res, nil
}

// execOne runs query, a statement meant to change one row, and returns
// none when it changed none.
func (c conn) execOne(ctx context.Context, none error, query string, args ...any) error {
	res, err := c.exec(ctx, query, args...)
	if err != nil {
		return err
	}
	return oneRow(res, none)
}

// oneRow returns nil if res affected a row and none otherwise: the
// statement's key was taken (insert) or absent (update, delete).
func oneRow(res sql.Result, none error) error {
	n, err := res.RowsAffected()
	if err != nil {
		return err
	}
	if n == 0 {
		return none
	}
	return nil
}

// exists reports whether query, a SELECT 1 of at most one row, found it.
func exists(ctx context.Context, q conn, query string, args ...any) (bool, error) {
	var one int
	err := q.queryRow(ctx, query, args...).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	return err == nil, err
}

// deleteBefore runs query, a DELETE with one time parameter, and returns
// how many rows it removed.
func (s *Store) deleteBefore(ctx context.Context, query string, before time.Time) (int, error) {
	var c timeCodec
	b := c.ns("before", before)
	if c.err != nil {
		return 0, c.err
	}
	res, err := s.writer().exec(ctx, query, b)
	if err != nil {
		return 0, err
	}
	n, err := res.RowsAffected()
	return int(n), err
}
