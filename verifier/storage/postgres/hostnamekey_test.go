package postgres_test

import (
	"testing"

	"github.com/clearance/clearance/internal/testkit/testpg"
	"github.com/clearance/clearance/verifier/storage/storagetest"
)

// TestHostnameKeyMigration: devices enrolled before 00020_hostname_key are
// found by their hostnames, and not by a look-alike's, once it is applied;
// and it can be undone.
func TestHostnameKeyMigration(t *testing.T) {
	ctx := t.Context()
	dsn := testpg.NewDatabase(t)
	s := open(t, dsn)
	storagetest.WriteHostnames(t, s)
	s.Close()

	// Back to the schema before the key, then up again as Open does.
	db, p := migrator(t, dsn)
	if _, err := p.DownTo(ctx, 19); err != nil {
		t.Fatal(err)
	}
	var keys, oldIndex int
	if err := db.QueryRowContext(ctx, `SELECT
		(SELECT count(*) FROM information_schema.columns WHERE table_name = 'devices' AND column_name = 'hostname_key'),
		(SELECT count(*) FROM pg_indexes WHERE tablename = 'devices' AND indexname = 'devices_hostname_lower')`).Scan(&keys, &oldIndex); err != nil {
		t.Fatal(err)
	}
	if keys != 0 || oldIndex != 1 {
		t.Fatalf("after the down migration: %d hostname_key columns, %d devices_hostname_lower indexes; want 0 and 1", keys, oldIndex)
	}

	storagetest.CheckHostnames(t, open(t, dsn))
}
