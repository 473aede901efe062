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
// just restored): SQLite's quick_check, and that it holds the verifier's
// schema. It opens the file read-only and immutable, so it writes nothing
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
	rows, err := db.QueryContext(ctx, `PRAGMA quick_check`)
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
		return Summary{}, fmt.Errorf("the database is damaged (quick_check: %q)", problems)
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
