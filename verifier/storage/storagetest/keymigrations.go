package storagetest

import (
	"testing"

	"github.com/clearance/clearance/verifier/storage"
)

// KeyMigration is a migration that added a column of keys to a table in
// place of an index over an expression: a backend writes rows with Write,
// migrates down past it, checks that Column is gone and OldIndex back, and
// hands the store, migrated up again, to Check.
type KeyMigration struct {
	Table, Column, OldIndex string
	Write, Check            func(*testing.T, storage.Store)
}

// The key migrations, the same on both backends.
var (
	ExemptionUserNameKeys = KeyMigration{"exemptions", "username_key", "exemptions_username", WriteExemptionUserNames, CheckExemptionUserNames}
	HostnameKeys          = KeyMigration{"devices", "hostname_key", "devices_hostname_lower", WriteHostnames, CheckHostnames}
)
