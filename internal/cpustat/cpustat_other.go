//go:build !linux

package cpustat

import "errors"

// Read is Linux-only: other kernels do not report these times.
func Read() (Times, error) {
	return Times{}, errors.New("CPU times are read from /proc/stat, which only Linux has")
}
