//go:build !windows

package osquery

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/apache/thrift/lib/go/thrift"

	"github.com/clearance/clearance/pkg/owner"
)

// open connects to the extensions socket at path, once it has checked who
// serves it (checkSocket, checkPeer). Its errors are SocketErrors.
func open(path string, timeout time.Duration) (thrift.TTransport, error) {
	fail := func(err error) (thrift.TTransport, error) { return nil, &SocketError{Path: path, Err: err} }
	st, err := os.Lstat(path)
	if err != nil {
		return fail(fmt.Errorf("socket %s: %w", path, err))
	}
	if err := checkSocket(path, st); err != nil {
		return fail(err)
	}
	conn, err := net.DialTimeout("unix", path, timeout)
	if err != nil {
		return fail(err)
	}
	if err := checkPeer(path, conn); err != nil {
		conn.Close()
		return fail(err)
	}
	return thrift.NewTSocketFromConnConf(conn, &thrift.TConfiguration{ConnectTimeout: timeout, SocketTimeout: timeout}), nil
}

// checkSocket refuses a socket that anyone but root or the agent's own user
// could be serving. The agent's results are only as true as the osqueryd
// that answers: an unprivileged program listening on the socket path would
// have every policy pass. The socket must be the path itself (not a link),
// owned by root or the agent's user, in a directory owned so that no one
// else may write, unless it is sticky (/tmp): otherwise another user could
// put their own socket in its place between this check and the connection.
func checkSocket(path string, st fs.FileInfo) error {
	switch {
	case st.Mode()&fs.ModeSymlink != 0:
		return fmt.Errorf("osquery socket %s is a symbolic link; set the socket's own path", path)
	case st.Mode().Type() != fs.ModeSocket:
		return fmt.Errorf("osquery socket %s is not a socket", path)
	}
	if uid, foreign := owner.Foreign(st); foreign {
		return fmt.Errorf("osquery socket %s is owned by uid %d, not by root or the agent's user (uid %d): the agent takes posture only from an osqueryd running as root (or as itself)",
			path, uid, os.Geteuid())
	}
	dir := filepath.Dir(path)
	dst, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("osquery socket's directory: %w", err)
	}
	deny := fs.FileMode(0o022)
	if dst.Mode()&fs.ModeSticky != 0 {
		deny = 0 // others may add names there, not replace ours
	}
	return owner.Check("directory of the osquery socket", dir, dst, deny)
}

// peerError is the socket's server running as another user.
// errNoPeerCred: this system has no kernel answer to who serves a socket.
var errNoPeerCred = errors.New("no peer credentials on this system")

// checkPeer asks the kernel who serves the connection (peerCred): root or
// the agent's own user. This closes the gap checkSocket leaves between
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
	var uid, pid int
	var cerr error
	if err := raw.Control(func(fd uintptr) { uid, pid, cerr = peerCred(int(fd)) }); err != nil {
		return fmt.Errorf("osquery socket %s: %w", path, err)
	}
	switch {
	case errors.Is(cerr, errNoPeerCred):
		return nil
	case cerr != nil:
		return fmt.Errorf("osquery socket %s: asking who serves it: %w", path, cerr)
	case uid != 0 && uid != os.Geteuid():
		return peerError(path, uid, pid)
	}
	return nil
}

func peerError(path string, uid, pid int) error {
	return fmt.Errorf("osquery socket %s is served by uid %d (pid %d), not by root or the agent's user (uid %d): the agent takes posture only from an osqueryd running as root (or as itself)",
		path, uid, pid, os.Geteuid())
}

// checkOsqueryd refuses to start an osqueryd that anyone but root or the
// agent's own user could have replaced: the agent starts it as root. It
// returns the program to run: the configured path with every symbolic link
// resolved, so that nothing is looked up again between this check and the
// start. That file must be a regular file owned so and writable by no one
// else; every directory above it must be owned so too and writable by no
// one else (one above its own may be sticky, as /tmp is: no one else can
// move what is in it); and so must the directory of the configured name
// and of every link it goes through, whose owners could otherwise point
// the name at another program before the next start.
func checkOsqueryd(path string) (string, error) {
	if !filepath.IsAbs(path) {
		return "", fmt.Errorf("osqueryd %s: the path must be absolute", path)
	}
	real, err := owner.Resolve("the directory of osqueryd", path)
	if err != nil {
		return "", fmt.Errorf("refusing to start osqueryd: %w", err)
	}
	st, err := os.Stat(real)
	if err != nil {
		return "", fmt.Errorf("osqueryd: %w", err)
	}
	if !st.Mode().IsRegular() {
		return "", fmt.Errorf("osqueryd %s is not a regular file", real)
	}
	if err := checkTrusted("osqueryd", real, st); err != nil {
		return "", err
	}
	return real, nil
}

func checkTrusted(what, path string, st fs.FileInfo) error {
	uid, foreign := owner.Foreign(st)
	if !foreign && owner.Bits(st, 0o022) == 0 {
		return nil
	}
	why := fmt.Sprintf("is writable by group or others (mode %04o)", st.Mode().Perm())
	if foreign {
		why = fmt.Sprintf("is owned by uid %d, not by root or the agent's user (uid %d)", uid, os.Geteuid())
	}
	return fmt.Errorf("refusing to start osqueryd: %s %s %s, so another user could replace the program the agent runs as root; install osquery from its own package (under /opt/osquery, owned by root) or fix the owner and mode",
		what, path, why)
}
