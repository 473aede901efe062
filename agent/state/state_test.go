package state

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSeqPersistsAndNeverRepeats(t *testing.T) {
	t.Parallel()
	path := t.TempDir()
	d, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	for want := uint64(1); want <= 3; want++ {
		got, err := d.NextSeq()
		if err != nil || got != want {
			t.Fatalf("NextSeq = %d, %v; want %d", got, err, want)
		}
	}
	// A new process continues from the file.
	d2, _ := Open(path)
	if got, _ := d2.NextSeq(); got != 4 {
		t.Errorf("after reopen NextSeq = %d, want 4", got)
	}
	if got, _ := d2.RaiseSeq(1000); got != 1001 {
		t.Errorf("RaiseSeq(1000) = %d, want 1001", got)
	}
	if got, _ := d2.RaiseSeq(10); got != 1002 {
		t.Errorf("RaiseSeq below the current seq = %d, want 1002", got)
	}
	fi, err := os.Stat(d.File(SeqFile))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("seq file mode %04o", fi.Mode().Perm())
	}
	entries, _ := os.ReadDir(path)
	for _, e := range entries {
		if strings.Contains(e.Name(), ".tmp") {
			t.Errorf("temporary file left behind: %s", e.Name())
		}
	}
}

func TestCorruptSeqRefused(t *testing.T) {
	t.Parallel()
	d, _ := Open(t.TempDir())
	if err := os.WriteFile(d.File(SeqFile), []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := d.NextSeq(); err == nil || !strings.Contains(err.Error(), "corrupt") {
		t.Errorf("err = %v, want a refusal: restarting at 1 would repeat seqs", err)
	}
}

func TestNotEnrolled(t *testing.T) {
	t.Parallel()
	d, _ := Open(t.TempDir())
	if _, err := d.LoadIdentity(); err != ErrNotEnrolled {
		t.Errorf("err = %v, want ErrNotEnrolled", err)
	}
}

// An existing state dir someone else could write is refused, not used:
// MkdirAll leaves an existing directory's mode as it finds it, and what is
// inside says which key signs for the device.
func TestOpenRefusesADirOthersCanWrite(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	fresh := filepath.Join(base, "new", "state")
	if _, err := Open(fresh); err != nil {
		t.Fatalf("Open(new dir) = %v", err)
	}
	if fi, err := os.Stat(fresh); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("new state dir: %v, %v; want mode 0700", fi.Mode().Perm(), err)
	}
	for _, tc := range []struct {
		mode os.FileMode
		want string // "" means accepted
	}{
		{0o700, ""},
		{0o755, ""},
		{0o777, "is writable by group or others (mode 0777); check what it holds, then run: chmod go-w "},
		{0o775, "is writable by group or others (mode 0775)"},
		{0o777 | os.ModeSticky, "is writable by group or others (mode 0777)"},
		{0o702, "is writable by group or others (mode 0702)"},
	} {
		dir := filepath.Join(base, fmt.Sprintf("m%o", uint32(tc.mode)))
		if err := os.Mkdir(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(dir, tc.mode); err != nil {
			t.Fatal(err)
		}
		_, err := Open(dir)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("mode %s: %v, want accepted", tc.mode, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), "state dir "+dir+" "+tc.want)):
			t.Errorf("mode %s: err = %v, want %q", tc.mode, err, tc.want)
		}
	}
}

func TestOpenRefusesADirAnotherUserOwns(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Skip("giving a directory to another user needs root, which the agent runs as")
	}
	dir := filepath.Join(t.TempDir(), "state")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(dir, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	_, err := Open(dir)
	if want := "state dir " + dir + " is owned by uid 65534, not by root or the user running this (uid 0)"; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("err = %v, want %q", err, want)
	}
}

// TestOpenResolvesTheStateDir: the state dir is used by its resolved path,
// and a link to it, or a directory above it, that another user could point
// elsewhere or move is refused, sticky or not (a link in /tmp is anyone's
// to replace once its owner's; the directory it sits in decides).
func TestOpenResolvesTheStateDir(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	real := filepath.Join(base, "real")
	if err := os.Mkdir(real, 0o700); err != nil {
		t.Fatal(err)
	}
	safeLink := filepath.Join(base, "link")
	if err := os.Symlink(real, safeLink); err != nil {
		t.Fatal(err)
	}
	d, err := Open(safeLink)
	if want, _ := filepath.EvalSymlinks(real); err != nil || d.Path != want {
		t.Fatalf("Open(a link in a safe directory): %v, path %v; want %s", err, d, want)
	}

	shared := filepath.Join(base, "shared")
	if err := os.Mkdir(shared, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(shared, 0o777|os.ModeSticky); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(real, filepath.Join(shared, "clearance")); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(filepath.Join(shared, "clearance")); err == nil || !strings.Contains(err.Error(), shared+" is writable by group or others") {
		t.Errorf("Open(a link in a sticky directory anyone can write): %v", err)
	}

	open := filepath.Join(base, "open")
	if err := os.Mkdir(open, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(open, 0o777); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(filepath.Join(open, "sub", "state")); err == nil || !strings.Contains(err.Error(), open+" is writable by group or others") {
		t.Errorf("Open(a state dir under a directory anyone can write): %v", err)
	}
}

// The last settings that ran hold the enroll secret: they are written
// 0600 with nothing left behind, and read back only from a regular file
// no one else may read or write.
func TestLastSettings(t *testing.T) {
	t.Parallel()
	d, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if raw, err := d.LoadLastSettings(); raw != nil || err != nil {
		t.Fatalf("none recorded: %q, %v", raw, err)
	}
	want := []byte(`{"settings":{"EnrollSecret":{"value":"hunter2"}}}` + "\n")
	if err := d.SaveLastSettings(want); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(d.File(LastSettingsFile))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, %v; want 0600", fi.Mode(), err)
	}
	entries, _ := os.ReadDir(d.Path)
	if len(entries) != 1 {
		t.Errorf("the state dir holds %v, want the record alone", entries)
	}
	if raw, err := d.LoadLastSettings(); string(raw) != string(want) || err != nil {
		t.Errorf("read back %q, %v", raw, err)
	}
	if err := os.Chmod(d.File(LastSettingsFile), 0o640); err != nil {
		t.Fatal(err)
	}
	if _, err := d.LoadLastSettings(); err == nil || !strings.Contains(err.Error(), "chmod go-rwx") {
		t.Errorf("a record others may read: %v", err)
	}
	os.Remove(d.File(LastSettingsFile))
	if err := os.Symlink(filepath.Join(t.TempDir(), "elsewhere"), d.File(LastSettingsFile)); err != nil {
		t.Fatal(err)
	}
	if _, err := d.LoadLastSettings(); err == nil {
		t.Error("a link is read as the record")
	}
}
