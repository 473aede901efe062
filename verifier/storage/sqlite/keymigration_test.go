package sqlite

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/clearance/clearance/verifier/storage/storagetest"
)

// TestKeyMigrations: rows stored before a migration that added a key
// column are found by their names, and not by a look-alike's, once it is
// applied; and it can be undone, bringing back the index it replaced.
func TestKeyMigrations(t *testing.T) {
	for _, m := range []struct {
		name   string
		before int64 // the version before the migration
		storagetest.KeyMigration
	}{
		{"00017_exemption_username_key", 16, storagetest.ExemptionUserNameKeys},
		{"00018_hostname_key", 17, storagetest.HostnameKeys},
	} {
		t.Run(m.name, func(t *testing.T) {
			ctx := context.Background()
			path := filepath.Join(t.TempDir(), "clearance.db")
			s, err := Open(ctx, path)
			must(t, err)
			m.Write(t, s)
			must(t, s.Close())

			// Back to the schema before the key, then up again as Open does.
			db, p := migrator(t, path)
			_, err = p.DownTo(ctx, m.before)
			must(t, err)
			var keys, oldIndex int
			must(t, db.QueryRowContext(ctx, `SELECT
				(SELECT count(*) FROM pragma_table_xinfo($1) WHERE name = $2),
				(SELECT count(*) FROM sqlite_schema WHERE type = 'index' AND name = $3)`,
				m.Table, m.Column, m.OldIndex).Scan(&keys, &oldIndex))
			if keys != 0 || oldIndex != 1 {
				t.Fatalf("after the down migration: %d %s columns, %d %s indexes; want 0 and 1", keys, m.Column, oldIndex, m.OldIndex)
			}
			must(t, db.Close())

			m.Check(t, open(t, path))
		})
	}
}
