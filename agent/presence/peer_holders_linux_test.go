package presence

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// Every process holding the socket is read, whoever runs it: a user with
// subordinate uids can make the socket under one uid, hand it to a program
// under another, and leave a listed browser holding a copy. Here the
// socket's owner (uid 1000, in /proc/net/tcp) runs the listed program, and
// a process of another uid holds the same socket running an unlisted one.
func TestProcCheckReadsEveryHolder(t *testing.T) {
	dir := t.TempDir()
	browser, other := filepath.Join(dir, "browser"), filepath.Join(dir, "other")
	for _, f := range []string{browser, other} {
		if err := os.WriteFile(f, []byte(f), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	proc := filepath.Join(dir, "proc")
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(proc, "net"), 0o755))
	must(os.WriteFile(filepath.Join(proc, "net", "tcp"), fixture(t, "proc-net-tcp.txt"), 0o644))
	holder := func(pid, exe string) {
		must(os.MkdirAll(filepath.Join(proc, pid, "fd"), 0o755))
		must(os.Symlink("socket:[3000]", filepath.Join(proc, pid, "fd", "5")))
		must(os.Symlink(exe, filepath.Join(proc, pid, "exe")))
	}
	holder("100", browser)
	c := &procCheck{proc: proc, allowed: map[string]bool{browser: true}}
	peer, err := c.CheckPeer(context.Background(), agentAddr, clientAddr)
	if err != nil || !slices.Equal(peer.PIDs, []int{100}) || peer.Program != browser {
		t.Fatalf("CheckPeer = %+v, %v; want pid 100 running %s", peer, err, browser)
	}
	holder("200", other)
	peer, err = c.CheckPeer(context.Background(), agentAddr, clientAddr)
	if !errors.Is(err, ErrNotBrowser) || !slices.Equal(peer.PIDs, []int{100, 200}) {
		t.Fatalf("a second holder running an unlisted program: %+v, %v; want refused", peer, err)
	}
}
