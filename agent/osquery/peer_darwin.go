package osquery

import (
	"fmt"
	"net"

	"golang.org/x/sys/unix"
)

// checkPeer asks the kernel who serves the connection (LOCAL_PEERCRED, and
// LOCAL_PEERPID to name it): root or the agent's own user. This closes the
// gap checkSocket leaves between looking at the path and connecting to it.
func checkPeer(path string, conn net.Conn) error {
	uc, ok := conn.(*net.UnixConn)
	if !ok {
		return fmt.Errorf("osquery socket %s: not a unix connection", path)
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return fmt.Errorf("osquery socket %s: %w", path, err)
	}
	var cred *unix.Xucred
	var cerr error
	pid := -1
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptXucred(int(fd), unix.SOL_LOCAL, unix.LOCAL_PEERCRED)
		if p, err := unix.GetsockoptInt(int(fd), unix.SOL_LOCAL, unix.LOCAL_PEERPID); err == nil {
			pid = p
		}
	}); err != nil {
		return fmt.Errorf("osquery socket %s: %w", path, err)
	}
	if cerr != nil {
		return fmt.Errorf("osquery socket %s: asking who serves it: %w", path, cerr)
	}
	if !peerAllowed(int(cred.Uid)) {
		return peerError(path, int(cred.Uid), pid)
	}
	return nil
}
