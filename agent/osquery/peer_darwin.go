package osquery

import "golang.org/x/sys/unix"

// peerCred asks the kernel who serves the connection on fd
// (LOCAL_PEERCRED, and LOCAL_PEERPID to name the process; -1 if that
// fails).
func peerCred(fd int) (uid, pid int, err error) {
	cred, err := unix.GetsockoptXucred(fd, unix.SOL_LOCAL, unix.LOCAL_PEERCRED)
	if err != nil {
		return 0, 0, err
	}
	pid, perr := unix.GetsockoptInt(fd, unix.SOL_LOCAL, unix.LOCAL_PEERPID)
	if perr != nil {
		pid = -1
	}
	return int(cred.Uid), pid, nil
}
