package main

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/clearance/clearance/verifier/datadir"
)

// TestBackupRestore: backup writes a private archive outside the data
// dir and never over a file; restore makes a data dir from it, with the
// verifier's modes, only where there is none.
func TestBackupRestore(t *testing.T) {
	t.Parallel()
	dir := newDataDir(t)
	out := t.TempDir()
	archive := filepath.Join(out, "clearance.tar.gz")

	code, stdout, stderr := exitOf(noEnv, "backup", "--data-dir", dir, "--to", archive)
	if code != 0 {
		t.Fatalf("backup: exit %d: %s", code, stderr)
	}
	for _, want := range []string{"wrote " + archive, "mode 0600", "ca.key", "clearance.db", "0 devices, 0 decisions"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("backup's output lacks %q:\n%s", want, stdout)
		}
	}
	if st, err := os.Stat(archive); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("archive: %v %v", st, err)
	}
	if ents, _ := os.ReadDir(out); len(ents) != 1 {
		t.Errorf("backup left %v beside the archive", ents)
	}

	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"exists", []string{"--data-dir", dir, "--to", archive}, 1, "exists: backup never overwrites"},
		{"inside the data dir", []string{"--data-dir", dir, "--to", filepath.Join(dir, "b.tar")}, 1, "inside the data dir"},
		{"a name that says nothing", []string{"--data-dir", dir, "--to", filepath.Join(out, "b.zip")}, 2, ".tar, .tar.gz or .tgz"},
		{"no --to", []string{"--data-dir", dir}, 2, "--to is required"},
		{"not a data dir", []string{"--data-dir", out, "--to", filepath.Join(out, "c.tar")}, 1, "not a clearance-verifier data dir"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, stderr := exitOf(noEnv, append([]string{"backup"}, tc.args...)...)
			if code != tc.code || !strings.Contains(stderr, tc.want) || strings.Count(strings.TrimSpace(stderr), "\n") > 0 {
				t.Errorf("exit %d, %q; want exit %d and one line with %q", code, stderr, tc.code, tc.want)
			}
		})
	}
	if _, err := os.Stat(filepath.Join(dir, "b.tar")); err == nil {
		t.Error("a refused backup left its file")
	}

	restored := filepath.Join(t.TempDir(), "restored")
	code, stdout, stderr = exitOf(noEnv, "restore", "--from", archive, "--data-dir", restored)
	if code != 0 || !strings.Contains(stdout, "integrity_check and schema ok: 0 devices") {
		t.Fatalf("restore: exit %d:\n%s%s", code, stdout, stderr)
	}
	if st, _ := os.Stat(restored); st.Mode().Perm() != 0o700 {
		t.Errorf("restored data dir mode %04o, want 0700", st.Mode().Perm())
	}
	for _, f := range datadir.Files {
		st, err := os.Stat(filepath.Join(restored, f.Name))
		if err != nil || st.Mode().Perm() != f.Mode {
			t.Errorf("%s restored: %v %v, want mode %04o", f.Name, st, err, f.Mode)
			continue
		}
		if f.Name == datadir.SQLiteFile || f.Name == datadir.RecordFile {
			continue
		}
		a, _ := os.ReadFile(filepath.Join(dir, f.Name))
		b, _ := os.ReadFile(filepath.Join(restored, f.Name))
		if string(a) != string(b) {
			t.Errorf("%s restored differs from the original", f.Name)
		}
	}
	// The restored dir is one the other commands take.
	if code, _, stderr := exitOf(noEnv, "secret", "list", "--data-dir", restored); code != 0 {
		t.Errorf("secret list on the restored dir: %s", stderr)
	}

	code, _, stderr = exitOf(noEnv, "restore", "--from", archive, "--data-dir", dir)
	if code != 1 || !strings.Contains(stderr, "is not empty") {
		t.Errorf("restore over a data dir: exit %d, %q", code, stderr)
	}
	bad := filepath.Join(out, "bad.tar")
	if err := os.WriteFile(bad, []byte(strings.Repeat("x", 2048)), 0o600); err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(t.TempDir(), "new")
	code, _, stderr = exitOf(noEnv, "restore", "--from", bad, "--data-dir", target)
	if code != 1 || !strings.Contains(stderr, "not a backup archive") {
		t.Errorf("restore of a bad archive: exit %d, %q", code, stderr)
	}
	if _, err := os.Stat(target); err == nil {
		t.Error("a failed restore left the data dir it made")
	}
}

// TestBackupRefusesOpenDataDir: a data dir the other commands refuse,
// backup refuses too.
func TestBackupRefusesOpenDataDir(t *testing.T) {
	t.Parallel()
	dir := newDataDir(t)
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	code, _, stderr := exitOf(noEnv, "backup", "--data-dir", dir, "--to", filepath.Join(t.TempDir(), "b.tar"))
	if code != 1 || !strings.Contains(stderr, "writable by group or others") {
		t.Errorf("exit %d, %q", code, stderr)
	}
}

// TestBackupPostgres: with PostgreSQL the archive holds the files, and
// the output names the database, without its password, for pg_dump.
func TestBackupPostgres(t *testing.T) {
	t.Parallel()
	dir := newDataDir(t)
	if err := datadir.Write(dir, datadir.Record{Database: "postgres://clearance:hunter2@db.internal/clearance"}); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, datadir.SQLiteFile)); err != nil {
		t.Fatal(err)
	}
	archive := filepath.Join(t.TempDir(), "b.tgz")
	code, stdout, stderr := exitOf(noEnv, "backup", "--data-dir", dir, "--to", archive)
	if code != 0 || !strings.Contains(stdout, "PostgreSQL db.internal:5432/clearance is backed up with its own tools (pg_dump)") ||
		strings.Contains(stdout+stderr, "hunter2") || strings.Contains(stdout, "clearance.db") {
		t.Fatalf("exit %d:\n%s%s", code, stdout, stderr)
	}
	code, stdout, stderr = exitOf(noEnv, "restore", "--from", archive, "--data-dir", filepath.Join(t.TempDir(), "r"))
	if code != 0 || !strings.Contains(stdout, "pg_restore") {
		t.Fatalf("restore: exit %d:\n%s%s", code, stdout, stderr)
	}
}

// TestBackupRefusesSharedDir: backup writes the database's snapshot
// beside the archive and uses it by name, so it refuses a directory where
// another user could swap it, and takes a sticky one such as /tmp.
func TestBackupRefusesSharedDir(t *testing.T) {
	t.Parallel()
	dir := newDataDir(t)
	for _, tc := range []struct {
		mode os.FileMode
		want string // "" when backup takes it
	}{
		{0o777, "directory of the archive"},
		{0o770, "writable by group or others (mode 0770)"},
		{0o777 | os.ModeSticky, ""},
		{0o755, ""},
	} {
		t.Run(tc.mode.String(), func(t *testing.T) {
			out := t.TempDir()
			if err := os.Chmod(out, tc.mode); err != nil {
				t.Fatal(err)
			}
			archive := filepath.Join(out, "b.tar")
			code, _, stderr := exitOf(noEnv, "backup", "--data-dir", dir, "--to", archive)
			if tc.want == "" {
				if code != 0 {
					t.Fatalf("exit %d: %s", code, stderr)
				}
				return
			}
			if code != 1 || !strings.Contains(stderr, tc.want) || !strings.Contains(stderr, "chmod go-w "+out) {
				t.Errorf("exit %d, %q; want a refusal with %q", code, stderr, tc.want)
			}
			if ents, _ := os.ReadDir(out); len(ents) != 0 {
				t.Errorf("a refused backup left %v", ents)
			}
		})
	}
}

// TestBackupRefusesForeignAncestor: a --to directory private to root, in a
// directory another user owns (who could move it away, and what backup
// makes in it, between the check and the writes), is refused too.
func TestBackupRefusesForeignAncestor(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Skip("needs root to give a directory to another user")
	}
	dir := newDataDir(t)
	g := filepath.Join(t.TempDir(), "g")
	if err := os.Mkdir(g, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(g, 12345, 12345); err != nil {
		t.Fatal(err)
	}
	bk := filepath.Join(g, "bk")
	if err := os.Mkdir(bk, 0o700); err != nil {
		t.Fatal(err)
	}
	code, _, stderr := exitOf(noEnv, "backup", "--data-dir", dir, "--to", filepath.Join(bk, "b.tar"))
	if code != 1 || !strings.Contains(stderr, "owned by uid 12345") {
		t.Fatalf("exit %d, %q; want a refusal naming the directory's owner", code, stderr)
	}
	if ents, _ := os.ReadDir(bk); len(ents) != 0 {
		t.Errorf("a refused backup left %v", ents)
	}
	good := filepath.Join(t.TempDir(), "b.tar")
	if code, _, stderr := exitOf(noEnv, "backup", "--data-dir", dir, "--to", good); code != 0 {
		t.Fatalf("backup: exit %d: %s", code, stderr)
	}
	code, _, stderr = exitOf(noEnv, "restore", "--from", good, "--data-dir", filepath.Join(bk, "restored"))
	if code == 0 || !strings.Contains(stderr, "owned by uid 12345") {
		t.Errorf("restore under a foreign directory: exit %d, %q", code, stderr)
	}
}

// TestRestoreInterrupted: a restore stopped while it extracts (a signal)
// leaves no data dir, half or whole, and nothing beside it; into an empty
// dir, it leaves the dir empty. One that completes leaves only the dir.
func TestRestoreInterrupted(t *testing.T) {
	t.Parallel()
	archive := filepath.Join(t.TempDir(), "b.tar.gz")
	if code, _, stderr := exitOf(noEnv, "backup", "--data-dir", newDataDir(t), "--to", archive); code != 0 {
		t.Fatalf("backup: %s", stderr)
	}
	a := &app{stdout: io.Discard, stderr: io.Discard, getenv: noEnv, now: time.Now}
	for _, exists := range []bool{false, true} {
		parent := t.TempDir()
		dir := filepath.Join(parent, "restored")
		if exists {
			if err := os.Mkdir(dir, 0o700); err != nil {
				t.Fatal(err)
			}
		}
		ctx := &cancelAfter{Context: context.Background()}
		ctx.n.Store(5) // a few of the archive's reads
		err := a.restore(ctx, archive, dir)
		if err == nil || !strings.Contains(err.Error(), "restore interrupted: nothing was restored into "+dir) {
			t.Fatalf("exists %v: restore = %v", exists, err)
		}
		ents, _ := os.ReadDir(parent)
		if !exists && len(ents) != 0 {
			t.Errorf("an interrupted restore left %v", ents)
		}
		if exists {
			if left, _ := os.ReadDir(dir); len(ents) != 1 || len(left) != 0 {
				t.Errorf("an interrupted restore into an empty dir left %v, %v in it", ents, left)
			}
		}

		if err := a.restore(context.Background(), archive, dir); err != nil {
			t.Fatalf("exists %v: restore after an interrupted one: %v", exists, err)
		}
		if ents, _ := os.ReadDir(parent); len(ents) != 1 || ents[0].Name() != "restored" {
			t.Errorf("beside the restored dir: %v", ents)
		}
		if ents, _ := os.ReadDir(dir); len(ents) != len(datadir.Files) {
			t.Errorf("the restored dir holds %v", ents)
		}
	}
}

// cancelAfter is a context that ends after n calls of Err: a signal
// arriving in the middle of a restore, without a race.
type cancelAfter struct {
	context.Context
	n atomic.Int64
}

func (c *cancelAfter) Err() error {
	if c.n.Add(-1) < 0 {
		return context.Canceled
	}
	return nil
}
