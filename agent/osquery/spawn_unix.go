//go:build !windows

package osquery

import "syscall"

// childAttr puts osqueryd in its own process group, so a terminal's Ctrl-C
// reaches the agent only and the agent decides how the child stops.
func childAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setpgid: true} }
