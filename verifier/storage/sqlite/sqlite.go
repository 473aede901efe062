// Package sqlite is the embedded storage backend: one SQLite file in the
// verifier's data directory (modernc.org/sqlite, pure Go, WAL), with the
// schema migrated by goose from migrations embedded in the binary.
//
// Several processes may open the same file at once: the CLI writes enroll
// secrets while the server runs. Every write transaction starts with BEGIN
// IMMEDIATE and waits on SQLite's busy timeout, so concurrent writers queue
// instead of failing. The queries are sqlstore's; this package opens the
// file, migrates it and commits small writes in groups.
package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"github.com/pressly/goose/v3"
	sqlite "modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/clearance/clearance/verifier/storage"
	"github.com/clearance/clearance/verifier/storage/sqlstore"
)

//go:embed migrations/*.sql
var migrations embed.FS

// busyTimeout bounds how long a statement waits for another connection
// (in this process or another one) to release the database lock.
const busyTimeout = 10 * time.Second

// Store is a storage.Store backed by one SQLite file: the shared SQL
// store over this package's pools, dialect and group commit.
type Store struct {
	*sqlstore.Store
	// w holds the writing connections of this process: one for every
	// write, and the group commit's lazy connection, on which its writer
	// commits every batch, holding the other meanwhile. Writers queue in
	// database/sql instead of spinning in SQLite's busy handler.
	w *sql.DB
	// r serves reads; WAL lets them run beside the writer.
	r *sql.DB
	// reports commits reports and sign-in writes in groups, through w.
	reports *reportWriter
}

var _ storage.Store = (*Store)(nil)

// dialect is SQLite's: one writer at a time (BEGIN IMMEDIATE, see dsn), so
// no row locks and no lost races, and statements prepared by the store
// since the driver keeps none.
var dialect = sqlstore.Dialect{
	Name:   "sqlite",
	Rebind: rebind,
	// SQLite's lower() lowers ASCII only (there is no ICU here).
	ASCIILower:         func(col string) string { return "lower(" + col + ")" },
	IsUniqueViolation:  isDuplicate,
	ReadTx:             sql.TxOptions{ReadOnly: true},
	Prepare:            true,
	UninterruptedReads: true,
	Catalog: sqlstore.Catalog{
		Tables: `SELECT name FROM sqlite_schema
			WHERE type = 'table' AND name NOT LIKE 'sqlite\_%' ESCAPE '\' AND name NOT IN ('goose_db_version', 'health_probe')
			ORDER BY name`,
		Columns: `SELECT name, pk FROM pragma_table_info($1) ORDER BY cid`,
	},
}

// rebind turns the store's $n placeholders into SQLite's ?n, which bind the
// n-th argument too. The store's queries hold no '$' in string literals.
func rebind(query string) string {
	b := []byte(query)
	for i := 0; i+1 < len(b); i++ {
		if b[i] == '$' && b[i+1] >= '0' && b[i+1] <= '9' {
			b[i] = '?'
		}
	}
	return string(b)
}

// SchemaVersion reads, without changing anything, the schema version of
// the database file at path (0 when it holds no verifier's tables) and
// this binary's. A missing file is an error wrapping fs.ErrNotExist:
// nothing is created.
func SchemaVersion(ctx context.Context, path string) (current, latest int64, err error) {
	if latest, err = latestMigration(); err != nil {
		return 0, 0, err
	}
	if _, err := os.Stat(path); err != nil {
		return 0, 0, err
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return 0, 0, err
	}
	q := url.Values{}
	q.Set("mode", "ro")
	q.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", busyTimeout.Milliseconds()))
	db, err := sql.Open("sqlite", (&url.URL{Scheme: "file", Path: filepath.ToSlash(abs), RawQuery: q.Encode()}).String())
	if err != nil {
		return 0, 0, err
	}
	defer db.Close()
	var tables int
	if err := db.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name IN ('goose_db_version', 'enroll_secrets')`).Scan(&tables); err != nil {
		return 0, 0, fmt.Errorf("reading the schema of %s: %w", abs, err)
	}
	if tables != 2 {
		return 0, latest, nil
	}
	if err := db.QueryRowContext(ctx, `SELECT coalesce(max(version_id), 0) FROM goose_db_version WHERE is_applied`).Scan(&current); err != nil {
		return 0, 0, fmt.Errorf("reading the schema version of %s: %w", abs, err)
	}
	return current, latest, nil
}

// Open opens (creating it if needed, mode 0600) the database at path and
// brings its schema up to date.
func Open(ctx context.Context, path string) (*Store, error) {
	if path == "" {
		return nil, errors.New("opening sqlite store: empty path")
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("opening sqlite store: %w", err)
	}
	if err := createPrivate(abs); err != nil {
		return nil, fmt.Errorf("opening sqlite store: %w", err)
	}

	// Prepare the file through a pool of its own: goose holds a connection
	// for the whole migration, and the writer pool's two are the writer's.
	m, err := sql.Open("sqlite", dsn(abs, false))
	if err != nil {
		return nil, fmt.Errorf("opening sqlite store: %w", err)
	}
	err = enableWAL(ctx, m)
	if err == nil {
		err = migrate(ctx, m)
	}
	if err == nil {
		err = sqlstore.RekeyGroups(ctx, m, rebind)
	}
	if cerr := m.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("opening sqlite store %s: %w", abs, err)
	}

	w, err := sql.Open("sqlite", dsn(abs, false))
	if err != nil {
		return nil, fmt.Errorf("opening sqlite store: %w", err)
	}
	w.SetMaxOpenConns(2)
	w.SetMaxIdleConns(2)
	w.SetConnMaxIdleTime(0)
	w.SetConnMaxLifetime(0)

	r, err := sql.Open("sqlite", dsn(abs, true))
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("opening sqlite store: %w", err)
	}
	n := max(4, runtime.GOMAXPROCS(0))
	r.SetMaxOpenConns(n)
	r.SetMaxIdleConns(n)

	s := &Store{w: w, r: r}
	s.reports, err = newReportWriter(ctx, w)
	if err == nil {
		s.Store, err = sqlstore.New(ctx, dialect, w, r, s.reports.do)
	}
	if err == nil {
		s.Store.SetLazySync(s.reports.mark, s.reports.syncAfter)
	}
	if err == nil {
		err = s.Ping(ctx)
	}
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("opening sqlite store %s: %w", abs, err)
	}
	return s, nil
}

// createPrivate makes sure the database and its WAL companions are readable
// by their owner only: they hold enroll secret hashes and device reports.
// SQLite gives the -wal and -shm files it creates the database file's mode,
// so the database is created first, with 0600.
func createPrivate(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		if err := os.Chmod(p, 0o600); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	return nil
}

// checkpointPages is how many pages the WAL holds before the commit that
// passes it checkpoints them into the database file (SQLite's default is
// 1000). That checkpoint runs on the committing connection, the group
// commit's writer under load, and holds every write behind it for two
// fsyncs (the WAL's, then the database file's) and the copy between. At
// 4000 the writer stops a quarter as often, and each checkpoint copies the
// last version of each page once, where four would each have copied the
// pages every batch rewrites (the devices' rows, the reports' index): with
// 500 agents reporting back to back, about 4 % more reports per second and
// the idle share of the cores from 0.12 to 0.08 (docs/performance.md). Each
// stop is longer (about three times the distinct pages to write), their sum
// shorter. The WAL file keeps its largest size, about 16.5 MB (4000 frames
// of a 4 KiB page and its header, and the commit that passed them), where
// it was about 4 MB: the data directory's volume needs that much free
// beyond the database, since a WAL that cannot grow to its checkpoint
// leaves every write failing until space is freed (docs/operations.md).
const checkpointPages = 4000

// dsn builds the connection string. The path goes through a file: URI so
// that characters such as '?' and '#' in it cannot be taken for parameters.
func dsn(path string, readOnly bool) string {
	q := url.Values{}
	q.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", busyTimeout.Milliseconds()))
	if readOnly {
		// Reads never need a write lock; query_only turns a stray write on
		// this pool into an error instead of a lock upgrade.
		q.Add("_pragma", "query_only(1)")
	} else {
		q.Add("_pragma", "foreign_keys(1)")
		// FULL: a commit is fsynced before it returns, because acknowledging
		// a report to an agent promises it is durable.
		q.Add("_pragma", "synchronous(FULL)")
		q.Add("_pragma", fmt.Sprintf("wal_autocheckpoint(%d)", checkpointPages))
		// Take the write lock at BEGIN: a deferred transaction that reads
		// and then writes can fail with SQLITE_BUSY (without waiting) when
		// another connection committed in between.
		q.Set("_txlock", "immediate")
	}
	u := url.URL{Scheme: "file", Path: filepath.ToSlash(path), RawQuery: q.Encode()}
	return u.String()
}

// enableWAL puts the database in WAL mode, which lets readers run beside
// the writer. The mode is a property of the file, so it is set once here
// rather than by every new connection: converting a file reads it and then
// takes the write lock, and SQLite refuses that upgrade at once, without
// waiting, when another connection holds a lock (as when two processes open
// a new database together). So it is retried until busyTimeout.
func enableWAL(ctx context.Context, db *sql.DB) error {
	deadline := time.Now().Add(busyTimeout)
	for {
		var mode string
		err := db.QueryRowContext(ctx, `PRAGMA journal_mode = WAL`).Scan(&mode)
		switch {
		case err == nil && mode == "wal":
			return nil
		case err == nil:
			return fmt.Errorf("enabling WAL: journal mode is %q", mode)
		case !isBusy(err) || time.Now().After(deadline):
			return fmt.Errorf("enabling WAL: %w", err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("enabling WAL: %w", ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// migrate applies pending migrations. When several processes open a new
// database at once, goose in one of them can see a migration as pending,
// wait for the write lock while another process applies it, and then fail
// on "table already exists". The failed migration rolled back, so it is
// retried as long as someone else made progress in the meantime.
// provider is goose's over this verifier's migrations on db.
func provider(db *sql.DB) (*goose.Provider, error) {
	sub, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return nil, err
	}
	p, err := goose.NewProvider(goose.DialectSQLite3, db, sub,
		goose.WithDisableGlobalRegistry(true))
	if err != nil {
		return nil, fmt.Errorf("loading migrations: %w", err)
	}
	return p, nil
}

// latestMigration is the newest schema version this verifier knows.
func latestMigration() (int64, error) { return sqlstore.LatestMigration(migrations, "migrations") }

// newerSchema is the refusal of a database a newer verifier has migrated.
func newerSchema(version, latest int64) error { return sqlstore.NewerSchema(version, latest) }

// migrateTo applies the migrations up to version to db.
func migrateTo(ctx context.Context, db *sql.DB, version int64) error {
	p, err := provider(db)
	if err != nil {
		return err
	}
	_, err = p.UpTo(ctx, version)
	return err
}

func migrate(ctx context.Context, db *sql.DB) error {
	p, err := provider(db)
	if err != nil {
		return err
	}
	// A database a newer verifier migrated has tables and columns this one
	// does not know of, which it would write around: refused.
	if v, err := p.GetDBVersion(ctx); err != nil {
		return fmt.Errorf("reading schema version: %w", err)
	} else if latest, err := latestMigration(); err != nil {
		return err
	} else if v > latest {
		return newerSchema(v, latest)
	}
	const attempts = 5
	for i := 1; ; i++ {
		before, err := p.GetDBVersion(ctx)
		if err != nil {
			return fmt.Errorf("reading schema version: %w", err)
		}
		_, upErr := p.Up(ctx)
		if upErr == nil {
			return nil
		}
		after, err := p.GetDBVersion(ctx)
		if err != nil || after <= before || i == attempts {
			return fmt.Errorf("applying migrations: %w", upErr)
		}
	}
}

// Commits returns how many transactions the group commit committed so far,
// and how many of them lazily (answered without an fsync): the benchmarks
// divide them by the writes they made.
func (s *Store) Commits() (all, lazy int64) {
	if s.reports == nil {
		return 0, 0
	}
	return s.reports.commits.Load(), s.reports.lazyCommits.Load()
}

// Syncs returns how many fsyncs of the WAL the group commit made so far
// (not counting SQLite's own in checkpoints): the benchmarks divide them
// by the writes they made.
func (s *Store) Syncs() int64 {
	if s.reports == nil {
		return 0
	}
	return s.reports.syncs.Load()
}

// Ping checks the store as sqlstore's Ping does, and fails once an fsync
// of the write-ahead log has failed: from then on the group commit answers
// every write with that error, until the verifier restarts.
func (s *Store) Ping(ctx context.Context) error {
	if s.reports != nil {
		if p := s.reports.syncFailed.Load(); p != nil {
			return *p
		}
	}
	return s.Store.Ping(ctx)
}

// Close closes the store. The report writer stops first, after the batch
// it is committing; reports still queued get ErrClosed. Readers close next
// so that the writer, closing last, checkpoints the WAL into the database
// file.
func (s *Store) Close() error {
	var errs []error
	if s.reports != nil {
		errs = append(errs, s.reports.close())
	}
	if s.Store != nil {
		return errors.Join(append(errs, s.Store.Close())...)
	}
	return errors.Join(append(errs, s.r.Close(), s.w.Close())...)
}

// isBusy reports whether err is SQLITE_BUSY, extended codes included.
func isBusy(err error) bool {
	var se *sqlite.Error
	return errors.As(err, &se) && se.Code()&0xff == sqlite3.SQLITE_BUSY
}

// isDuplicate reports whether err is a PRIMARY KEY or UNIQUE violation.
func isDuplicate(err error) bool {
	var se *sqlite.Error
	if !errors.As(err, &se) {
		return false
	}
	switch se.Code() {
	case sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY, sqlite3.SQLITE_CONSTRAINT_UNIQUE:
		return true
	}
	return false
}
