package sqlite

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/clearance/clearance/verifier/storage"
)

// emptyFile makes the file a snapshot goes into, as the backup command
// does: private from the start.
func emptyFile(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "snapshot.db")
	must(t, os.WriteFile(p, nil, 0o600))
	return p
}

// TestSnapshotWhileWriting: a snapshot taken while the store commits is
// whole (quick_check passes) and, reopened as a store, holds what was
// committed before it began; the file keeps the mode it was made with.
func TestSnapshotWhileWriting(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "clearance.db")
	s := open(t, path)
	must(t, s.CreateEnrollSecret(ctx, secret("a"), storage.AuditEvent{At: t0}))
	if _, _, err := s.EnrollDevice(ctx, enrollment(1, "a")); err != nil {
		t.Fatal(err)
	}

	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			_ = s.CreateEnrollSecret(ctx, secret("w"+strings.Repeat("x", i%7)+string(rune('a'+i%26))), storage.AuditEvent{At: t0})
		}
	}()
	dst := emptyFile(t)
	err := Snapshot(ctx, path, dst)
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}
	sum, err := Inspect(ctx, dst)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Devices != 1 || sum.Decisions != 0 {
		t.Errorf("Inspect = %+v, want 1 device, 0 decisions", sum)
	}
	if st, _ := os.Stat(dst); st.Mode().Perm() != 0o600 {
		t.Errorf("snapshot mode %04o, want 0600", st.Mode().Perm())
	}
	if ents, _ := os.ReadDir(filepath.Dir(dst)); len(ents) != 1 {
		t.Errorf("Inspect left files beside the snapshot: %v", ents)
	}
	got := dump(t, open(t, dst))
	if !strings.Contains(got, "dev-1") {
		t.Errorf("the snapshot lacks the enrolled device:\n%s", got)
	}
}

// TestSnapshotStopped: a snapshot of a database no server has open.
func TestSnapshotStopped(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "clearance.db")
	s, err := Open(ctx, path)
	must(t, err)
	must(t, s.CreateEnrollSecret(ctx, secret("a"), storage.AuditEvent{At: t0}))
	must(t, s.Close())
	dst := emptyFile(t)
	must(t, Snapshot(ctx, path, dst))
	if _, err := Inspect(ctx, dst); err != nil {
		t.Fatal(err)
	}
}

func TestInspectRefuses(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	good := filepath.Join(dir, "good.db")
	s, err := Open(ctx, good)
	must(t, err)
	must(t, s.Close())
	raw, err := os.ReadFile(good)
	must(t, err)
	damaged := append([]byte(nil), raw...)
	for i := 4096; i < len(damaged) && i < 4096*8; i++ {
		damaged[i] ^= 0x5a
	}
	for _, tc := range []struct {
		name string
		data []byte
		want string
	}{
		{"not a database", []byte("ca.key is not a database"), "not a readable SQLite database"},
		{"damaged", damaged, ""},
		{"another database", nil, "not a clearance-verifier database"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "x.db")
			must(t, os.WriteFile(p, tc.data, 0o600))
			_, err := Inspect(ctx, p)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Inspect = %v, want an error with %q", err, tc.want)
			}
		})
	}
}
