// Package postgres is the storage backend for several verifier replicas
// sharing one PostgreSQL database (pgx/v5), with the schema migrated by
// goose from migrations embedded in the binary.
//
// Write transactions run at READ COMMITTED and lock the rows they decide
// on (the device, the secret, the nonce) before reading them, so
// concurrent writers in any process queue on those rows; a transaction that
// loses a race it cannot queue for (two first enrollments of one machine, a
// deadlock, a serialization failure) is retried from the start. The
// queries are sqlstore's; this package opens, migrates and relays.
package postgres

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"

	"github.com/clearance/clearance/verifier/storage"
	"github.com/clearance/clearance/verifier/storage/sqlstore"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Store is a storage.Store backed by a PostgreSQL database: the shared SQL
// store over this package's pool and dialect.
type Store struct {
	*sqlstore.Store
	// pool also serves the relay (cluster.go), which needs pgx itself.
	pool *pgxpool.Pool
}

var _ storage.Store = (*Store)(nil)

// dialect is PostgreSQL's: writers in several processes at once lock the
// rows they decide on, and a transaction that lost a race runs again. NO
// KEY lets foreign key checks of inserts that name a locked row go on.
var dialect = sqlstore.Dialect{
	Name: "postgres",
	// PostgreSQL's lower() follows the locale, beyond A–Z.
	ASCIILower: func(col string) string {
		return "translate(" + col + ", 'ABCDEFGHIJKLMNOPQRSTUVWXYZ', 'abcdefghijklmnopqrstuvwxyz')"
	},
	LockRow:           " FOR NO KEY UPDATE",
	LockKey:           `SELECT pg_advisory_xact_lock(hashtextextended($1, 0))`,
	SkipLocked:        " FOR UPDATE SKIP LOCKED",
	IsUniqueViolation: func(err error) bool { return hasCode(err, "23505") },
	// Serialization failure, deadlock.
	IsRetryable: func(err error) bool { return hasCode(err, "40001", "40P01") },
	ReadTx:      sql.TxOptions{Isolation: sql.LevelRepeatableRead, ReadOnly: true},
	Catalog: sqlstore.Catalog{
		Tables: `SELECT tablename FROM pg_tables
			WHERE schemaname = current_schema() AND tablename NOT IN ('goose_db_version', 'health_probe')
			ORDER BY tablename COLLATE "C"`,
		Columns: `SELECT a.attname, coalesce(array_position(i.indkey::int2[], a.attnum), 0)
			FROM pg_attribute a
			LEFT JOIN pg_index i ON i.indrelid = a.attrelid AND i.indisprimary
			WHERE a.attrelid = (quote_ident(current_schema()) || '.' || quote_ident($1))::regclass
				AND a.attnum > 0 AND NOT a.attisdropped
			ORDER BY a.attnum`,
	},
}

// hasCode reports whether err is a PostgreSQL error with one of codes.
func hasCode(err error, codes ...string) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && slices.Contains(codes, pe.Code)
}

// Open connects to the database named by dsn (a postgres:// URL or
// key=value string, as pgx accepts) and brings its schema up to date.
// Several replicas may open one database at once: migrations run under an
// advisory lock.
func Open(ctx context.Context, dsn string) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("opening postgres store: %w", parseError(err))
	}
	if err := migrate(ctx, cfg.ConnConfig); err != nil {
		return nil, fmt.Errorf("opening postgres store: %w", err)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("opening postgres store: %w", err)
	}
	// database/sql borrows the pool's connections; pgx caches each
	// connection's prepared statements itself.
	db := stdlib.OpenDBFromPool(pool)
	st, err := sqlstore.New(ctx, dialect, db, db, nil)
	if err != nil {
		db.Close()
		pool.Close()
		return nil, fmt.Errorf("opening postgres store: %w", err)
	}
	s := &Store{Store: st, pool: pool}
	if err := s.Ping(ctx); err != nil {
		s.Close()
		return nil, fmt.Errorf("opening postgres store: %w", err)
	}
	return s, nil
}

// SchemaVersion reads, without changing anything, the schema version of
// the database named by dsn (0 when no verifier has opened it) and this
// binary's: a command that only reads asks first, since Open would
// migrate a database an older verifier still serves, or give a mistyped
// one an empty schema.
func SchemaVersion(ctx context.Context, dsn string) (current, latest int64, err error) {
	if latest, err = sqlstore.LatestMigration(migrations, "migrations"); err != nil {
		return 0, 0, err
	}
	// pgxpool's parser, as Open's: it takes the pool's own parameters
	// (pool_max_conns) out of what the server is sent.
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return 0, 0, fmt.Errorf("opening postgres store: %w", parseError(err))
	}
	conn, err := pgx.ConnectConfig(ctx, cfg.ConnConfig)
	if err != nil {
		return 0, 0, fmt.Errorf("opening postgres store: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var tables bool
	if err := conn.QueryRow(ctx, `SELECT to_regclass('goose_db_version') IS NOT NULL AND to_regclass('enroll_secrets') IS NOT NULL`).Scan(&tables); err != nil {
		return 0, 0, fmt.Errorf("reading the schema: %w", err)
	}
	if !tables {
		return 0, latest, nil
	}
	if err := conn.QueryRow(ctx, `SELECT coalesce(max(version_id), 0) FROM goose_db_version WHERE is_applied`).Scan(&current); err != nil {
		return 0, 0, fmt.Errorf("reading the schema version: %w", err)
	}
	return current, latest, nil
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
	// A database a newer verifier migrated is refused (sqlstore.NewerSchema).
	if v, err := p.GetDBVersion(ctx); err != nil {
		return fmt.Errorf("reading schema version: %w", err)
	} else if latest, err := sqlstore.LatestMigration(migrations, "migrations"); err != nil {
		return err
	} else if v > latest {
		return sqlstore.NewerSchema(v, latest)
	}
	if _, err := p.Up(ctx); err != nil {
		return fmt.Errorf("applying migrations: %w", err)
	}
	return sqlstore.RekeyGroups(ctx, db, nil)
}

var _ storage.DatabaseClock = (*Store)(nil)

// DatabaseTime is the server's clock (clock_timestamp(): the time it
// answers, not its transaction's start).
func (s *Store) DatabaseTime(ctx context.Context) (time.Time, error) {
	var t time.Time
	if err := s.pool.QueryRow(ctx, `SELECT clock_timestamp()`).Scan(&t); err != nil {
		return time.Time{}, fmt.Errorf("reading the database's clock: %w", err)
	}
	return t, nil
}

// Close closes every connection, waiting for those in use to be released.
func (s *Store) Close() error {
	err := s.Store.Close()
	s.pool.Close()
	return err
}

// parseError is pgx's error for a connection string that does not parse,
// without the string: pgx leaves its password out, but not other
// parameters that may carry one (options='-c password=…'), and its
// reasons may quote a value.
func parseError(err error) error {
	var pe *pgconn.ParseConfigError
	if !errors.As(err, &pe) {
		return err
	}
	const unreadable = "its syntax or a parameter's value (check its percent-encoding and brackets)"
	if strings.Contains(pe.ConnString, "://") {
		if _, err := url.Parse(pe.ConnString); err != nil {
			// Its values cannot be told apart to mask them.
			return fmt.Errorf("the connection string does not parse: %s", unreadable)
		}
	}
	// "cannot parse `<the string, its password masked>`: <why>", every
	// value of the string masked first, so that a value holding "`: "
	// cannot move the cut.
	why := unreadable
	msg := maskValues(pe.Error(), pe.ConnString)
	if i := strings.LastIndex(msg, "`: "); i >= 0 && strings.HasPrefix(msg, "cannot parse `") {
		why = msg[i+len("`: "):]
	}
	return fmt.Errorf("the connection string does not parse: %s", why)
}

// maskValues writes "…" in s for each value dsn gives (its user, password,
// host, database and parameters'), longest first: pgx's reasons quote the
// value they could not use, and a parameter may carry a password.
func maskValues(s, dsn string) string {
	var vals []string
	if u, err := url.Parse(dsn); err == nil && strings.Contains(dsn, "://") {
		if u.User != nil {
			vals = append(vals, u.User.String())
		}
		vals = append(vals, u.Host, strings.TrimPrefix(u.Path, "/"), u.Fragment)
		for _, kv := range strings.FieldsFunc(u.RawQuery, func(r rune) bool { return r == '&' || r == ';' }) {
			_, v, _ := strings.Cut(kv, "=")
			vals = append(vals, v)
			vals = append(vals, strings.Fields(v)...)
			if uv, err := url.QueryUnescape(v); err == nil {
				vals = append(vals, uv)
				vals = append(vals, strings.Fields(uv)...)
			}
		}
	} else {
		for _, f := range strings.Fields(dsn) {
			if _, v, ok := strings.Cut(f, "="); ok {
				vals = append(vals, strings.Trim(v, `'"`))
			} else {
				vals = append(vals, strings.Trim(f, `'"`))
			}
		}
	}
	slices.SortFunc(vals, func(a, b string) int { return len(b) - len(a) })
	for _, v := range vals {
		if len(v) >= 3 {
			s = strings.ReplaceAll(s, v, "…")
		}
	}
	return s
}
