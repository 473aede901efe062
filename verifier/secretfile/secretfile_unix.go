//go:build unix

package secretfile

import (
	"fmt"
	"io/fs"
	"os"
	"syscall"
)

func open(path string) (*os.File, error) {
	// O_NONBLOCK: a FIFO planted in the file's place must not hang us
	// before the regular-file check.
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, notLink(path, err)
	}
	return f, nil
}

func checkOwner(path string, st fs.FileInfo) error {
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		if uid := os.Geteuid(); int(sys.Uid) != uid && sys.Uid != 0 {
			return fmt.Errorf("%s is owned by uid %d, not by this user (uid %d) or root; run this as the user that owns the data dir", path, sys.Uid, uid)
		}
	}
	if st.Mode().Perm()&0o077 != 0 {
		return modeError(fmt.Sprintf("%s is readable or writable by group or others (mode %04o); run: chmod 600 %s", path, st.Mode().Perm(), path))
	}
	return nil
}
