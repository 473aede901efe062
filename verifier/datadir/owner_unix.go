//go:build unix

package datadir

import (
	"fmt"
	"io/fs"
	"os"
	"syscall"
)

func checkOwner(dir string, st fs.FileInfo) error {
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		if uid := os.Geteuid(); int(sys.Uid) != uid && sys.Uid != 0 {
			return fmt.Errorf("data dir %s is owned by uid %d, not by this user (uid %d) or root: run this as the user that owns it", dir, sys.Uid, uid)
		}
	}
	if st.Mode().Perm()&0o022 != 0 {
		return fmt.Errorf("data dir %s is writable by group or others (mode %04o), so its record and token cannot be trusted; run: chmod go-w %s", dir, st.Mode().Perm(), dir)
	}
	return nil
}
