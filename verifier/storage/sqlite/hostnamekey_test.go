package sqlite

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/clearance/clearance/verifier/storage/storagetest"
)

// TestHostnameKeyMigration: devices enrolled before 00018_hostname_key are
// found by their hostnames, and not by a look-alike's, once it is applied;
// and it can be undone.
func TestHostnameKeyMigration(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "clearance.db")
	s, err := Open(ctx, path)
	must(t, err)
	storagetest.WriteHostnames(t, s)
	must(t, s.Close())

	// Back to the schema before the key, then up again as Open does.
	db, p := migrator(t, path)
	_, err = p.DownTo(ctx, 17)
	must(t, err)
	var keys, oldIndex int
	must(t, db.QueryRowContext(ctx, `SELECT
		(SELECT count(*) FROM pragma_table_xinfo('devices') WHERE name = 'hostname_key'),
		(SELECT count(*) FROM sqlite_schema WHERE type = 'index' AND name = 'devices_hostname_lower')`).Scan(&keys, &oldIndex))
	if keys != 0 || oldIndex != 1 {
		t.Fatalf("after the down migration: %d hostname_key columns, %d devices_hostname_lower indexes; want 0 and 1", keys, oldIndex)
	}
	must(t, db.Close())

	storagetest.CheckHostnames(t, open(t, path))
}
