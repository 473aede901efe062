package sqlite

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/clearance/clearance/verifier/storage/storagetest"
)

// TestExemptionUsernameKeyMigration: exemptions stored before
// 00017_exemption_username_key are found by their user names, and not by
// a look-alike's, once it is applied; and it can be undone.
func TestExemptionUsernameKeyMigration(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "clearance.db")
	s, err := Open(ctx, path)
	must(t, err)
	storagetest.WriteExemptionUserNames(t, s)
	must(t, s.Close())

	// Back to the schema before the key, then up again as Open does.
	db, p := migrator(t, path)
	_, err = p.DownTo(ctx, 16)
	must(t, err)
	var keys, oldIndex int
	must(t, db.QueryRowContext(ctx, `SELECT
		(SELECT count(*) FROM pragma_table_xinfo('exemptions') WHERE name = 'username_key'),
		(SELECT count(*) FROM sqlite_schema WHERE type = 'index' AND name = 'exemptions_username')`).Scan(&keys, &oldIndex))
	if keys != 0 || oldIndex != 1 {
		t.Fatalf("after the down migration: %d username_key columns, %d exemptions_username indexes; want 0 and 1", keys, oldIndex)
	}
	must(t, db.Close())

	storagetest.CheckExemptionUserNames(t, open(t, path))
}
