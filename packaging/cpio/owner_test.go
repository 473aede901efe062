package cpio

import (
	"io/fs"
	"syscall"
)

// owner reads the numeric owner of an extracted file (Linux and macOS).
func owner(fi fs.FileInfo) (int, int) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return -1, -1
	}
	return int(st.Uid), int(st.Gid)
}
