//go:build !windows

package osquery

import (
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
// serves it (checkSocket, checkPeer).
func open(path string, timeout time.Duration) (thrift.TTransport, error) {
	st, err := os.Lstat(path)
	if err != nil {
		return nil, fmt.Errorf("socket %s: %w", path, err)
	}
	if err := checkSocket(path, st); err != nil {
		return nil, err
	}
	conn, err := net.DialTimeout("unix", path, timeout)
	if err != nil {
		return nil, err
	}
	if err := checkPeer(path, conn); err != nil {
		conn.Close()
		return nil, err
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
func peerError(path string, uid, pid int) error {
	return fmt.Errorf("osquery socket %s is served by uid %d (pid %d), not by root or the agent's user (uid %d): the agent takes posture only from an osqueryd running as root (or as itself)",
		path, uid, pid, os.Geteuid())
}

// checkOsqueryd refuses to start an osqueryd that anyone but root or the
// agent's own user could have replaced: the agent starts it as root. The
// file, after symbolic links, must be a regular file owned so and writable
// by no one else, in a directory of the same kind; so must the directory
// holding the configured name, when that is a link.
func checkOsqueryd(path string) error {
	if !filepath.IsAbs(path) {
		return fmt.Errorf("osqueryd %s: the path must be absolute", path)
	}
	lst, err := os.Lstat(path)
	if err != nil {
		return fmt.Errorf("osqueryd: %w", err)
	}
	dirs := []string{filepath.Dir(path)}
	real := path
	if lst.Mode()&fs.ModeSymlink != 0 {
		if real, err = filepath.EvalSymlinks(path); err != nil {
			return fmt.Errorf("osqueryd: %w", err)
		}
		dirs = append(dirs, filepath.Dir(real))
	}
	st, err := os.Stat(real)
	if err != nil {
		return fmt.Errorf("osqueryd: %w", err)
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("osqueryd %s is not a regular file", real)
	}
	if err := checkTrusted("osqueryd", real, st); err != nil {
		return err
	}
	for _, dir := range dirs {
		dst, err := os.Stat(dir)
		if err != nil {
			return fmt.Errorf("osqueryd's directory: %w", err)
		}
		if err := checkTrusted("the directory of osqueryd", dir, dst); err != nil {
			return err
		}
	}
	return nil
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
