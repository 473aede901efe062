package postgres_test

import (
	"strings"
	"testing"

	"github.com/clearance/clearance/internal/testkit/testpg"
	"github.com/clearance/clearance/verifier/storage/postgres"
)

// TestNewerSchemaRefused: a database a newer verifier migrated is refused
// at Open, saying what to do, and nothing is migrated.
func TestNewerSchemaRefused(t *testing.T) {
	ctx := t.Context()
	dsn := testpg.NewDatabase(t)
	open(t, dsn)
	db, _ := migrator(t, dsn)
	if _, err := db.ExecContext(ctx, `INSERT INTO goose_db_version (version_id, is_applied) VALUES (999, true)`); err != nil {
		t.Fatal(err)
	}
	if s, err := postgres.Open(ctx, dsn); err == nil {
		s.Close()
		t.Fatal("Open took a database a newer verifier migrated")
	} else if !strings.Contains(err.Error(), "schema is version 999, newer than this verifier's") {
		t.Fatalf("Open of a newer database: %v", err)
	}
}
