//go:build !linux

package steal

import (
	"errors"
	"time"
)

// Total is Linux-only: other kernels do not report steal.
func Total() (time.Duration, error) {
	return 0, errors.New("steal is read from /proc/stat, which only Linux has")
}
