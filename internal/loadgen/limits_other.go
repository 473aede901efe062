//go:build !linux

package loadgen

import (
	"errors"
	"time"
)

var errNotLinux = errors.New("not supported on this platform: loadgen reads /proc and spreads over 127.0.0.x, which Linux routes")

// RaiseFileLimit is Linux-only.
func RaiseFileLimit(want uint64) (uint64, error) { return 0, errNotLinux }

// RSS is Linux-only.
func RSS(pid int) (uint64, error) { return 0, errNotLinux }

// CPUTime is Linux-only.
func CPUTime(pid int) (time.Duration, error) { return 0, errNotLinux }
