package sqlite

import (
	"context"
	"database/sql"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
)

// tampered is a closed verifier database (one exemption in it) changed by
// edit, as someone handing over a crafted backup could.
func tampered(t *testing.T, edit ...string) string {
	t.Helper()
	ctx := context.Background()
	p := filepath.Join(t.TempDir(), "clearance.db")
	s, err := Open(ctx, p)
	must(t, err)
	must(t, s.Close())
	// Back to a rollback journal, as a snapshot is, so that the edits land
	// in the file itself.
	q := url.Values{}
	q.Add("_pragma", "journal_mode(DELETE)")
	db, err := sql.Open("sqlite", fileURI(p, q))
	must(t, err)
	defer db.Close()
	db.SetMaxOpenConns(1)
	for _, e := range edit {
		if _, err := db.ExecContext(ctx, e); err != nil {
			t.Fatalf("%s: %v", e, err)
		}
	}
	return p
}

// TestInspectRefusesAnotherSchema: a database that passes SQLite's own
// checks but is not this verifier's schema at its version, or is of a
// newer verifier, is refused by Inspect (restore's check); Open (serve)
// refuses a newer one too, and changes nothing in it.
func TestInspectRefusesAnotherSchema(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	if _, err := Inspect(ctx, tampered(t)); err != nil {
		t.Fatalf("the verifier's own database: %v", err)
	}
	for _, tc := range []struct {
		name string
		edit []string
		want string
	}{
		{"a table dropped", []string{"DROP TABLE exemptions"}, "missing or changed: index exemptions_device_id on exemptions"},
		{"a table changed", []string{"DROP TABLE policy_bypasses", "CREATE TABLE policy_bypasses (x)"}, "policy_bypasses"},
		{"a table added", []string{"CREATE TABLE extra (x)"}, "not expected: table extra"},
		{"a trigger named almost as SQLite's own", []string{"CREATE TRIGGER sqliteXaudit AFTER INSERT ON audit BEGIN DELETE FROM audit WHERE rowid = NEW.rowid; END"},
			"not expected: trigger sqliteXaudit"},
		{"a view", []string{"CREATE VIEW sqliteview AS SELECT 1"}, "not expected: view sqliteview"},
		{"a migration recorded as not applied", []string{"UPDATE goose_db_version SET is_applied = 0 WHERE version_id = (SELECT max(version_id) FROM goose_db_version)"},
			"versions not applied"},
		{"a newer version recorded as not applied", []string{"INSERT INTO goose_db_version (version_id, is_applied, tstamp) VALUES (999, 0, '2030-01-01')"},
			"versions not applied"},
		{"a version recorded twice", []string{"INSERT INTO goose_db_version (version_id, is_applied, tstamp) SELECT max(version_id), 1, '2030-01-01' FROM goose_db_version"},
			"recorded twice"},
		{"a newer verifier's", []string{"INSERT INTO goose_db_version (version_id, is_applied, tstamp) VALUES (999, 1, '2030-01-01')"},
			"newer than this verifier's"},
		{"an index rebuilt on another column, its SQL written back", []string{
			"INSERT INTO exemptions (device_id, username, policy_ids, reason, created_by, created_at, expires_at, revoked_at) VALUES ('dev-1', '', '', 'r', 'cli', 1, 2, 0)",
			"DROP INDEX exemptions_device_id",
			"CREATE INDEX exemptions_device_id ON exemptions (reason)",
			"PRAGMA writable_schema = ON",
			"UPDATE sqlite_master SET sql = replace(sql, '(reason)', '(device_id)') WHERE name = 'exemptions_device_id'",
			"PRAGMA writable_schema = OFF",
		}, "integrity_check"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := tampered(t, tc.edit...)
			_, err := Inspect(ctx, p)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Inspect = %v, want an error with %q", err, tc.want)
			}
		})
	}
	p := tampered(t, "INSERT INTO goose_db_version (version_id, is_applied, tstamp) VALUES (999, 1, '2030-01-01')")
	if s, err := Open(ctx, p); err == nil {
		s.Close()
		t.Fatal("Open took a database a newer verifier migrated")
	} else if !strings.Contains(err.Error(), "schema is version 999, newer than this verifier's") {
		t.Fatalf("Open of a newer database: %v", err)
	}
	// Nothing was migrated: the schema is as the newer verifier left it.
	if _, err := Inspect(ctx, p); err == nil || !strings.Contains(err.Error(), "version 999") {
		t.Fatalf("after Open refused it: %v", err)
	}
}
