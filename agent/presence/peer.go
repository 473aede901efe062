package presence

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"strconv"
	"strings"
)

// PeerCheck decides whether the local program at the other end of a
// loopback connection may ask for a statement.
type PeerCheck interface {
	// CheckPeer finds the program(s) holding the client end of the TCP
	// connection from client to server (the agent's end) and returns nil
	// only when every one is an allowed browser. The error wraps
	// ErrNotBrowser when the program was found and is not allowed; any
	// other error means it could not be determined. Peer describes what
	// was found, for logs, even with an error.
	CheckPeer(ctx context.Context, server, client netip.AddrPort) (Peer, error)
}

// Peer describes the program at the other end of a connection.
type Peer struct {
	PIDs []int
	// Program is the executable path, and on macOS its signing identity.
	Program string
}

func (p Peer) String() string {
	if len(p.PIDs) == 0 {
		return p.Program
	}
	pids := make([]string, len(p.PIDs))
	for i, pid := range p.PIDs {
		pids[i] = strconv.Itoa(pid)
	}
	return fmt.Sprintf("pid %s: %s", strings.Join(pids, ","), p.Program)
}

// Errors from a PeerCheck; match with errors.Is.
var (
	ErrNotBrowser  = errors.New("the program that asked is not an allowed browser")
	ErrUnsupported = errors.New("checking which program asked is not supported on this platform")
)

// Browsers says which programs count as a browser.
type Browsers struct {
	// Executables are exact, absolute paths of allowed executables
	// (Linux). The program's /proc/<pid>/exe must equal one of them.
	Executables []string
	// TeamIDs are the Apple Developer Team IDs whose Developer ID or Mac
	// App Store signed programs are allowed (macOS); nil means
	// DefaultTeamIDs. A browser's helper processes (Chrome's network
	// service runs in "Google Chrome Helper") are signed by the same team.
	TeamIDs []string
	// AppleIdentifiers are signing identifiers of Apple's own programs
	// that are allowed (macOS); nil means DefaultAppleIdentifiers.
	AppleIdentifiers []string
}

// NewBrowserCheck returns this platform's PeerCheck for b, or an error that
// says why b cannot be used here (ErrUnsupported on platforms without one).
func NewBrowserCheck(b Browsers) (PeerCheck, error) { return newBrowserCheck(b) }

// checkExecutables validates the Linux list.
func checkExecutables(paths []string) (map[string]bool, error) {
	if len(paths) == 0 {
		return nil, errors.New("no browser executables listed: name the exact path of each allowed browser")
	}
	allowed := make(map[string]bool, len(paths))
	for _, p := range paths {
		if !filepath.IsAbs(p) || filepath.Clean(p) != p {
			return nil, fmt.Errorf("browser executable %q is not a clean absolute path", p)
		}
		allowed[p] = true
	}
	return allowed, nil
}

// sameConn reports whether a socket from local to remote is the client end
// of the connection from client to server. IPv4-mapped IPv6 addresses
// compare equal to their IPv4 form: a dual-stack client socket shows them.
func sameConn(local, remote, client, server netip.AddrPort) bool {
	unmap := func(a netip.AddrPort) netip.AddrPort { return netip.AddrPortFrom(a.Addr().Unmap(), a.Port()) }
	return unmap(local) == unmap(client) && unmap(remote) == unmap(server)
}
