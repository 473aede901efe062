package postgres_test

import (
	"testing"

	"github.com/clearance/clearance/internal/testkit/testpg"
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
		{"00018_exemption_username_key", 17, storagetest.ExemptionUserNameKeys},
		{"00020_hostname_key", 19, storagetest.HostnameKeys},
	} {
		t.Run(m.name, func(t *testing.T) {
			ctx := t.Context()
			dsn := testpg.NewDatabase(t)
			s := open(t, dsn)
			m.Write(t, s)
			s.Close()

			// Back to the schema before the key, then up again as Open does.
			db, p := migrator(t, dsn)
			if _, err := p.DownTo(ctx, m.before); err != nil {
				t.Fatal(err)
			}
			var keys, oldIndex int
			if err := db.QueryRowContext(ctx, `SELECT
				(SELECT count(*) FROM information_schema.columns WHERE table_name = $1 AND column_name = $2),
				(SELECT count(*) FROM pg_indexes WHERE tablename = $1 AND indexname = $3)`,
				m.Table, m.Column, m.OldIndex).Scan(&keys, &oldIndex); err != nil {
				t.Fatal(err)
			}
			if keys != 0 || oldIndex != 1 {
				t.Fatalf("after the down migration: %d %s columns, %d %s indexes; want 0 and 1", keys, m.Column, oldIndex, m.OldIndex)
			}

			m.Check(t, open(t, dsn))
		})
	}
}
