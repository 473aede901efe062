package osquery

import (
	"fmt"
	"net"
	"syscall"
)

// checkPeer asks the kernel who serves the connection (SO_PEERCRED): root
// or the agent's own user. This closes the gap checkSocket leaves between
// looking at the path and connecting to it.
func checkPeer(path string, conn net.Conn) error {
	uc, ok := conn.(*net.UnixConn)
	if !ok {
		return fmt.Errorf("osquery socket %s: not a unix connection", path)
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return fmt.Errorf("osquery socket %s: %w", path, err)
	}
	var cred *syscall.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = syscall.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED)
	}); err != nil {
		return fmt.Errorf("osquery socket %s: %w", path, err)
	}
	if cerr != nil {
		return fmt.Errorf("osquery socket %s: asking who serves it: %w", path, cerr)
	}
	if !peerAllowed(int(cred.Uid)) {
		return peerError(path, int(cred.Uid), int(cred.Pid))
	}
	return nil
}
