package presence

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// The socket's owner comes from /proc/net/tcp, and only that user's
// processes are read for who holds it: another user's, however many
// descriptors they hold (each costs a read), are not. Here another user's
// process (uid 0) holds the same inode and runs an unlisted program; it is
// not read, so the check stands on the owner's process alone.
func TestProcCheckReadsTheOwnersProcessesOnly(t *testing.T) {
	table := fixture(t, "proc-net-tcp.txt")
	inode, uid, found, err := findSocketInode(bytes.NewReader(table), binary.LittleEndian, clientAddr, agentAddr)
	if err != nil || !found || inode != 3000 || uid != 1000 {
		t.Fatalf("findSocketInode = %d, uid %d, %v, %v; want 3000, uid 1000", inode, uid, found, err)
	}

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
	must(os.WriteFile(filepath.Join(proc, "net", "tcp"), table, 0o644))
	for _, p := range []struct {
		pid, uids, exe string
	}{
		{"100", "1000\t1000\t1000\t1000", browser},
		{"200", "0\t0\t0\t0", other},
	} {
		must(os.MkdirAll(filepath.Join(proc, p.pid, "fd"), 0o755))
		must(os.WriteFile(filepath.Join(proc, p.pid, "status"), []byte("Name:\tx\nUmask:\t0022\nUid:\t"+p.uids+"\nGid:\t0\t0\t0\t0\n"), 0o644))
		must(os.Symlink("socket:[3000]", filepath.Join(proc, p.pid, "fd", "5")))
		must(os.Symlink(p.exe, filepath.Join(proc, p.pid, "exe")))
	}
	c := &procCheck{proc: proc, allowed: map[string]bool{browser: true}}
	peer, err := c.CheckPeer(context.Background(), agentAddr, clientAddr)
	if err != nil || !slices.Equal(peer.PIDs, []int{100}) || peer.Program != browser {
		t.Fatalf("CheckPeer = %+v, %v; want pid 100 running %s", peer, err, browser)
	}

	// The owner's own processes are all read: one of them running an
	// unlisted program is refused.
	must(os.WriteFile(filepath.Join(proc, "200", "status"), []byte("Uid:\t0\t1000\t0\t1000\n"), 0o644))
	if _, err := c.CheckPeer(context.Background(), agentAddr, clientAddr); !errors.Is(err, ErrNotBrowser) {
		t.Fatalf("a holder with the owner's effective uid running an unlisted program: %v, want refused", err)
	}
}
