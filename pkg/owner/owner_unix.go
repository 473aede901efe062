//go:build unix

package owner

import (
	"io/fs"
	"syscall"
)

const posixMode = true

func fileUID(st fs.FileInfo) (int, bool) {
	sys, ok := st.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, false
	}
	return int(sys.Uid), true
}
