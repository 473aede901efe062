package datadir

import (
	"io/fs"

	"github.com/clearance/clearance/verifier/admin"
	"github.com/clearance/clearance/verifier/ca"
	"github.com/clearance/clearance/verifier/idp"
	"github.com/clearance/clearance/verifier/metrics"
)

// File is one file serve keeps in a data dir, with the mode the verifier
// gives it.
type File struct {
	Name string
	Mode fs.FileMode
}

// Secret reports whether only the owner may read the file: keys, tokens,
// the database and the record.
func (f File) Secret() bool { return f.Mode&0o077 == 0 }

// Files are the files of a data dir, each with its mode (the table in
// docs/operations.md): what a backup holds and the only names a restore
// writes. SQLiteFile is last; its -wal and -shm companions are not files
// of their own to a backup, which takes a snapshot of the database instead.
var Files = []File{
	{ca.RootCertFile, 0o644},
	{ca.RootKeyFile, 0o600},
	{ca.DeviceCACertFile, 0o644},
	{ca.DeviceCAKeyFile, 0o600},
	{ca.TLSCertFile, 0o644},
	{ca.TLSKeyFile, 0o600},
	{ca.RACertFile, 0o644},
	{ca.RAKeyFile, 0o600},
	{admin.TokenFile, 0o600},
	{metrics.TokenFile, 0o600},
	{idp.CertFile, 0o644},
	{idp.KeyFile, 0o600},
	{RecordFile, 0o600},
	{SQLiteFile, 0o600},
}

// Required are the files without which a data dir's verifier would make a
// new CA or a new admin token, or refuse to start: a restore insists on
// them. serve makes the others again when they are missing (a new SAML
// pair, which Okta must then be given, unless --idp-signing-key keeps the
// key elsewhere).
var Required = []string{ca.RootCertFile, ca.RootKeyFile, ca.DeviceCACertFile, ca.DeviceCAKeyFile, admin.TokenFile}

// Lookup returns the data dir file called name.
func Lookup(name string) (File, bool) {
	for _, f := range Files {
		if f.Name == name {
			return f, true
		}
	}
	return File{}, false
}
