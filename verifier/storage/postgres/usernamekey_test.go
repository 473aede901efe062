package postgres_test

import (
	"testing"

	"github.com/clearance/clearance/internal/testkit/testpg"
	"github.com/clearance/clearance/verifier/storage/storagetest"
)

// TestUserNameKeyMigration: a database whose user name keys were folded
// over the whole of Unicode finds every user exactly once, under the
// ASCII-only fold, once it is migrated.
func TestUserNameKeyMigration(t *testing.T) {
	ctx := t.Context()
	dsn := testpg.NewDatabase(t)

	// The schema before 00016_user_name_key_ascii, and users stored by the
	// code of that time.
	db, p := migrator(t, dsn)
	if _, err := p.UpTo(ctx, 15); err != nil {
		t.Fatal(err)
	}
	for _, u := range storagetest.PreASCIIUserNames {
		if _, err := db.ExecContext(ctx, `INSERT INTO directory_users (id, user_name, user_name_key, external_id,
			display_name, email, active, resource, version, created_at, updated_at)
			VALUES ($1, $2, $3, '', '', $2, true, '\x7b7d', 1, 0, 0)`, u.ID, u.UserName, u.OldKey); err != nil {
			t.Fatal(err)
		}
	}

	storagetest.CheckPreASCIIUserNames(t, open(t, dsn))
}
