package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
)

// Snapshot writes a consistent copy of the database at path into dst, an
// empty file the caller made (with the mode it wants: SQLite would create
// one with the umask's). It reads as the store's own connections do,
// waiting up to busyTimeout for a lock, and runs beside a server that is
// writing: VACUUM INTO copies what one read transaction sees. The copy is
// in rollback-journal mode; Open turns it back to WAL.
func Snapshot(ctx context.Context, path, dst string) error {
	abs, err := filepath.Abs(path)
	if err != nil {
		return err
	}
	if _, err := os.Stat(abs); err != nil {
		return fmt.Errorf("snapshot of the database: %w", err)
	}
	q := url.Values{}
	q.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", busyTimeout.Milliseconds()))
	// mode=ro rather than query_only, which refuses VACUUM INTO.
	q.Set("mode", "ro")
	db, err := sql.Open("sqlite", fileURI(abs, q))
	if err != nil {
		return err
	}
	defer db.Close()
	if _, err := db.ExecContext(ctx, `VACUUM INTO ?`, dst); err != nil {
		return fmt.Errorf("snapshot of the database %s: %w", abs, err)
	}
	return nil
}

// Summary is what Inspect found in a database file.
type Summary struct {
	Devices   int64
	Decisions int64
}

// Inspect checks a database file no process is using (a snapshot, or one
// just restored): SQLite's integrity_check, and that its schema is exactly
// what this verifier's migrations make at its version, which is not newer
// than theirs. It opens the file read-only and immutable, so it writes nothing
// beside it, and returns what it counted.
func Inspect(ctx context.Context, path string) (Summary, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return Summary{}, err
	}
	if _, err := os.Stat(abs); err != nil {
		return Summary{}, err
	}
	q := url.Values{}
	q.Set("mode", "ro")
	q.Set("immutable", "1")
	db, err := sql.Open("sqlite", fileURI(abs, q))
	if err != nil {
		return Summary{}, err
	}
	defer db.Close()
	// integrity_check, not quick_check: it also finds an index that
	// does not match its table (an index rebuilt over another column and
	// its SQL written back), which would make lookups miss rows.
	rows, err := db.QueryContext(ctx, `PRAGMA integrity_check`)
	if err != nil {
		return Summary{}, fmt.Errorf("not a readable SQLite database: %w", err)
	}
	var problems []string
	for rows.Next() {
		var line string
		if err := rows.Scan(&line); err != nil {
			rows.Close()
			return Summary{}, err
		}
		if line != "ok" && len(problems) < 3 {
			problems = append(problems, line)
		}
	}
	if err := rows.Close(); err != nil {
		return Summary{}, err
	}
	if err := rows.Err(); err != nil {
		return Summary{}, fmt.Errorf("not a readable SQLite database: %w", err)
	}
	if len(problems) > 0 {
		return Summary{}, fmt.Errorf("the database is damaged (integrity_check: %q)", problems)
	}
	if err := sameSchema(ctx, db); err != nil {
		return Summary{}, err
	}
	var s Summary
	for _, c := range []struct {
		table string
		n     *int64
	}{{"devices", &s.Devices}, {"decisions", &s.Decisions}} {
		if err := db.QueryRowContext(ctx, `SELECT count(*) FROM `+c.table).Scan(c.n); err != nil {
			return Summary{}, fmt.Errorf("not a clearance-verifier database (counting its %s: %w)", c.table, err)
		}
	}
	return s, nil
}

// fileURI is the file: URI of abs with the query q, as dsn builds one.
func fileURI(abs string, q url.Values) string {
	u := url.URL{Scheme: "file", Path: filepath.ToSlash(abs), RawQuery: q.Encode()}
	return u.String()
}

// schemaOf lists a database's schema: every table, index, view and
// trigger with its SQL, goose's own table left out (its rows differ).
func schemaOf(ctx context.Context, db *sql.DB) ([]string, error) {
	// SQLite's own objects are those whose name starts with "sqlite_"
	// exactly (LIKE would take '_' for any character and ignore case, and
	// leave out a trigger named "sqliteXaudit").
	rows, err := db.QueryContext(ctx, `SELECT type, name, tbl_name, coalesce(sql, '') FROM sqlite_master
		WHERE substr(name, 1, 7) <> 'sqlite_' ORDER BY type, name`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var typ, name, table, text string
		if err := rows.Scan(&typ, &name, &table, &text); err != nil {
			return nil, err
		}
		out = append(out, typ+" "+name+" on "+table+": "+text)
	}
	return out, rows.Err()
}

// sameSchema refuses a database whose schema is not what this verifier's
// migrations make at the version it records: a table dropped or changed, an
// index rewritten, or a version newer than this verifier knows.
func sameSchema(ctx context.Context, db *sql.DB) error {
	// The version as the store reads it when it opens the database (the
	// highest recorded, applied or not), and every version recorded once
	// and applied, as migrations record them.
	var version, unapplied, repeated int64
	if err := db.QueryRowContext(ctx, `SELECT coalesce(max(version_id), 0), count(*) FILTER (WHERE NOT is_applied),
		count(*) - count(DISTINCT version_id) FROM goose_db_version`).Scan(&version, &unapplied, &repeated); err != nil {
		return fmt.Errorf("not a clearance-verifier database (reading its schema version: %w)", err)
	}
	if unapplied > 0 || repeated > 0 {
		return fmt.Errorf("not this verifier's schema: its migration record holds %d versions not applied and %d recorded twice", unapplied, repeated)
	}
	latest, err := latestMigration()
	if err != nil {
		return err
	}
	if version > latest {
		return newerSchema(version, latest)
	}
	got, err := schemaOf(ctx, db)
	if err != nil {
		return fmt.Errorf("reading the database's schema: %w", err)
	}
	ref, err := sql.Open("sqlite", "file:schema-reference?mode=memory")
	if err != nil {
		return err
	}
	defer ref.Close()
	ref.SetMaxOpenConns(1)
	if err := migrateTo(ctx, ref, version); err != nil {
		return fmt.Errorf("building the schema of version %d: %w", version, err)
	}
	want, err := schemaOf(ctx, ref)
	if err != nil {
		return err
	}
	if d := firstDifference(got, want); d != "" {
		return fmt.Errorf("not this verifier's schema at version %d: %s", version, d)
	}
	return nil
}

// firstDifference names the first entry only one of got and want has.
func firstDifference(got, want []string) string {
	have := map[string]bool{}
	for _, g := range got {
		have[g] = true
	}
	for _, w := range want {
		if !have[w] {
			return fmt.Sprintf("missing or changed: %.200s", w)
		}
		delete(have, w)
	}
	for _, g := range got {
		if have[g] {
			return fmt.Sprintf("not expected: %.200s", g)
		}
	}
	return ""
}
