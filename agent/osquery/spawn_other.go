//go:build windows

package osquery

import "syscall"

func childAttr() *syscall.SysProcAttr { return nil }
