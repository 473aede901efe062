package presence

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
)

// BrowserCheckDefault says whether the agent checks the browser unless told
// otherwise. On Linux the check needs a list of executables, so it is off
// until one is configured.
const BrowserCheckDefault = false

func newBrowserCheck(b Browsers) (PeerCheck, error) {
	if len(b.TeamIDs) > 0 || len(b.AppleIdentifiers) > 0 {
		return nil, errors.New("browser Team IDs and Apple identifiers apply on macOS; on Linux list executables")
	}
	allowed, err := checkExecutables(b.Executables)
	if err != nil {
		return nil, err
	}
	return &procCheck{proc: "/proc", allowed: allowed}, nil
}

// procCheck finds the peer through /proc: the client socket's inode from
// /proc/net/tcp{,6}, the processes holding it from /proc/*/fd, and each
// one's executable from /proc/<pid>/exe.
type procCheck struct {
	proc    string
	allowed map[string]bool
}

var _ PeerCheck = (*procCheck)(nil)

func (c *procCheck) CheckPeer(ctx context.Context, server, client netip.AddrPort) (Peer, error) {
	// 1. The client's socket.
	inode, err := c.inode(client, server)
	if err != nil {
		return Peer{}, err
	}
	// 2. Who holds it: every process, whoever runs it. (Only the socket
	// owner's would be faster, but a user with subordinate uids makes
	// the socket under one and uses it from a program under another.)
	pids, err := c.owners(ctx, inode)
	if err != nil {
		return Peer{}, err
	}
	// 3. What each one runs. Every holder must be allowed: a socket passed
	// to or inherited by another program is that program's too.
	peer := Peer{PIDs: pids}
	for _, pid := range pids {
		exe, err := os.Readlink(filepath.Join(c.proc, strconv.Itoa(pid), "exe"))
		if err != nil {
			return peer, fmt.Errorf("reading the executable of pid %d: %w", pid, err)
		}
		peer.Program = exe
		if !c.allowed[exe] {
			return peer, fmt.Errorf("%w: %s", ErrNotBrowser, exe)
		}
		// The path is the process's view: in a mount namespace of its own
		// (which any user may make) another file can sit at the listed
		// path. The file it runs must be the one at that path here.
		if err := sameExecutable(filepath.Join(c.proc, strconv.Itoa(pid), "exe"), exe); err != nil {
			return peer, fmt.Errorf("%w: pid %d: %v", ErrNotBrowser, pid, err)
		}
	}
	return peer, nil
}

// sameExecutable says whether the file a process runs (its /proc/<pid>/exe,
// which names the file itself whatever the process's namespaces) is the
// file at path.
func sameExecutable(procExe, path string) error {
	running, err := os.Stat(procExe)
	if err != nil {
		return fmt.Errorf("reading its executable: %w", err)
	}
	listed, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("reading %s: %w", path, err)
	}
	if !os.SameFile(running, listed) {
		return fmt.Errorf("it runs another file than %s", path)
	}
	return nil
}

func (c *procCheck) inode(client, server netip.AddrPort) (uint64, error) {
	for _, table := range []string{"net/tcp", "net/tcp6"} {
		f, err := os.Open(filepath.Join(c.proc, table))
		if errors.Is(err, os.ErrNotExist) {
			continue // no IPv6
		}
		if err != nil {
			return 0, fmt.Errorf("reading /proc/%s: %w", table, err)
		}
		inode, ok, err := findSocketInode(f, binary.NativeEndian, client, server)
		f.Close()
		if err != nil {
			return 0, fmt.Errorf("reading /proc/%s: %w", table, err)
		}
		if ok {
			return inode, nil
		}
	}
	return 0, fmt.Errorf("no established socket from %s to %s", client, server)
}

func (c *procCheck) owners(ctx context.Context, inode uint64) ([]int, error) {
	entries, err := os.ReadDir(c.proc)
	if err != nil {
		return nil, fmt.Errorf("listing processes: %w", err)
	}
	want := socketInodeLink(inode)
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid <= 0 {
			continue
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		dir := filepath.Join(c.proc, e.Name(), "fd")
		fds, err := os.ReadDir(dir)
		if err != nil {
			// Gone, or another user's process we may not read: if it
			// held the socket, nothing is found and the check refuses.
			continue
		}
		for _, fd := range fds {
			if link, err := os.Readlink(filepath.Join(dir, fd.Name())); err == nil && link == want {
				pids = append(pids, pid)
				break
			}
		}
	}
	if len(pids) == 0 {
		return nil, fmt.Errorf("no process found holding socket inode %d", inode)
	}
	slices.Sort(pids)
	return pids, nil
}
