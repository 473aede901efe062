// Package postgres is the storage backend for several verifier replicas
// sharing one PostgreSQL database (pgx/v5), with the schema migrated by
// goose from migrations embedded in the binary.
//
// Write transactions run at READ COMMITTED and lock the rows they decide
// on (the device, the secret, the nonce) before reading them, so
// concurrent writers in any process queue on those rows; a transaction that
// loses a race it cannot queue for (two first enrollments of one machine, a
// deadlock, a serialization failure) is retried from the start.
package postgres

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"

	"github.com/clearance/clearance/verifier/storage"
)

//go:embed migrations/*.sql
var migrations embed.FS

// writeAttempts bounds the retries of a write transaction that lost a race.
const writeAttempts = 5

// errRace marks a transaction that lost a race to a concurrent one and can
// simply run again.
var errRace = errors.New("lost a race with a concurrent transaction")

// Store is a storage.Store backed by a PostgreSQL database.
type Store struct {
	pool *pgxpool.Pool
}

var _ storage.Store = (*Store)(nil)

// Open connects to the database named by dsn (a postgres:// URL or
// key=value string, as pgx accepts) and brings its schema up to date.
// Several replicas may open one database at once: migrations run under an
// advisory lock.
func Open(ctx context.Context, dsn string) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		// pgx's parse error leaves the password out.
		return nil, fmt.Errorf("opening postgres store: %w", err)
	}
	if err := migrate(ctx, cfg.ConnConfig); err != nil {
		return nil, fmt.Errorf("opening postgres store: %w", err)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("opening postgres store: %w", err)
	}
	s := &Store{pool: pool}
	if err := s.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("opening postgres store: %w", err)
	}
	return s, nil
}

// migrate applies pending migrations through database/sql, which goose
// needs, on a connection of its own.
func migrate(ctx context.Context, cc *pgx.ConnConfig) (err error) {
	db := stdlib.OpenDB(*cc)
	defer func() {
		if cerr := db.Close(); err == nil && cerr != nil {
			err = cerr
		}
	}()
	return migrateDB(ctx, db)
}

func migrateDB(ctx context.Context, db *sql.DB) error {
	sub, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return err
	}
	// Replicas starting together wait for the first to migrate; polling
	// every second (goose's default is 5s) keeps that wait short, and 300
	// polls leave room for a long migration.
	locker, err := lock.NewPostgresSessionLocker(lock.WithLockTimeout(1, 300))
	if err != nil {
		return fmt.Errorf("creating migration lock: %w", err)
	}
	p, err := goose.NewProvider(goose.DialectPostgres, db, sub,
		goose.WithDisableGlobalRegistry(true), goose.WithSessionLocker(locker))
	if err != nil {
		return fmt.Errorf("loading migrations: %w", err)
	}
	if _, err := p.Up(ctx); err != nil {
		return fmt.Errorf("applying migrations: %w", err)
	}
	return nil
}

// Ping checks that the database is reachable.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.pool.Ping(ctx); err != nil {
		return fmt.Errorf("pinging postgres store: %w", err)
	}
	return nil
}

// Close closes every connection, waiting for those in use to be released.
func (s *Store) Close() error {
	s.pool.Close()
	return nil
}

// querier is what *pgxpool.Pool and pgx.Tx have in common.
type querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// write runs fn in one transaction, committed only if fn succeeds, and runs
// it again (fn must start from scratch) when it lost a race.
func (s *Store) write(ctx context.Context, fn func(tx pgx.Tx) error) error {
	for attempt := 1; ; attempt++ {
		err := pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{}, fn)
		if err == nil || !retryable(err) || attempt == writeAttempts || ctx.Err() != nil {
			return err
		}
	}
}

// read runs fn in one read-only snapshot, so that what it reads agrees.
func (s *Store) read(ctx context.Context, fn func(tx pgx.Tx) error) error {
	return pgx.BeginTxFunc(ctx, s.pool,
		pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, fn)
}

// retryable reports whether err says the transaction lost a race and
// changed nothing: serialization failure, deadlock, or errRace.
func retryable(err error) bool {
	if errors.Is(err, errRace) {
		return true
	}
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (pe.Code == "40001" || pe.Code == "40P01")
}

// isDuplicate reports whether err is a PRIMARY KEY or UNIQUE violation, of
// the named constraint when constraint is set.
func isDuplicate(err error, constraint string) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "23505" &&
		(constraint == "" || pe.ConstraintName == constraint)
}
