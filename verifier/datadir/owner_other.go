//go:build !unix

package datadir

import "io/fs"

// checkOwner has no POSIX owner or permission bits to check here: ACLs are
// the operator's business.
func checkOwner(string, fs.FileInfo) error { return nil }
