//go:build unix

package server

import "syscall"

// openFileLimit is the process's RLIMIT_NOFILE (soft), 0 if unknown.
func openFileLimit() uint64 {
	var r syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r); err != nil {
		return 0
	}
	return r.Cur
}
