//go:build unix

package secretfile

import (
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
