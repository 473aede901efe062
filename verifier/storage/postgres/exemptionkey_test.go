package postgres_test

import (
	"testing"

	"github.com/clearance/clearance/internal/testkit/testpg"
	"github.com/clearance/clearance/verifier/storage/storagetest"
)

// TestExemptionUsernameKeyMigration: exemptions stored before
// 00018_exemption_username_key are found by their user names, and not by
// a look-alike's, once it is applied; and it can be undone.
func TestExemptionUsernameKeyMigration(t *testing.T) {
	ctx := t.Context()
	dsn := testpg.NewDatabase(t)
	s := open(t, dsn)
	storagetest.WriteExemptionUserNames(t, s)
	s.Close()

	// Back to the schema before the key, then up again as Open does.
	db, p := migrator(t, dsn)
	if _, err := p.DownTo(ctx, 17); err != nil {
		t.Fatal(err)
	}
	var keys, oldIndex int
	if err := db.QueryRowContext(ctx, `SELECT
		(SELECT count(*) FROM information_schema.columns WHERE table_name = 'exemptions' AND column_name = 'username_key'),
		(SELECT count(*) FROM pg_indexes WHERE tablename = 'exemptions' AND indexname = 'exemptions_username')`).Scan(&keys, &oldIndex); err != nil {
		t.Fatal(err)
	}
	if keys != 0 || oldIndex != 1 {
		t.Fatalf("after the down migration: %d username_key columns, %d exemptions_username indexes; want 0 and 1", keys, oldIndex)
	}

	storagetest.CheckExemptionUserNames(t, open(t, dsn))
}
