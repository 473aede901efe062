package sqlite

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/clearance/clearance/verifier/storage/storagetest"
)

// TestUserNameKeyMigration: a database whose user name keys were folded
// over the whole of Unicode finds every user exactly once, under the
// ASCII-only fold, once it is migrated.
func TestUserNameKeyMigration(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "clearance.db")

	// The schema before 00015_user_name_key_ascii, and users stored by the
	// code of that time.
	db, p := migrator(t, path)
	_, err := p.UpTo(ctx, 14)
	must(t, err)
	for _, u := range storagetest.PreASCIIUserNames {
		_, err := db.ExecContext(ctx, `INSERT INTO directory_users (id, user_name, user_name_key, external_id,
			display_name, email, active, resource, version, created_at, updated_at)
			VALUES (?, ?, ?, '', '', ?, 1, X'7B7D', 1, 0, 0)`, u.ID, u.UserName, u.OldKey, u.UserName)
		must(t, err)
	}
	must(t, db.Close())

	storagetest.CheckPreASCIIUserNames(t, open(t, path))
}
