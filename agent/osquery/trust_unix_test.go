//go:build !windows

package osquery

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// mkfile writes an executable at path with mode, past the umask.
func mkfile(t *testing.T, path string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte("#!/bin/sh\n"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

func mkdir(t *testing.T, path string, mode os.FileMode) {
	t.Helper()
	if err := os.Mkdir(path, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

// The agent starts osqueryd as root: a program another user could replace,
// in place or through its directory, is not started.
func TestCheckOsqueryd(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	good := filepath.Join(base, "good")
	mkdir(t, good, 0o755)
	open := filepath.Join(base, "open")
	mkdir(t, open, 0o777)
	sticky := filepath.Join(base, "sticky")
	mkdir(t, sticky, 0o777|os.ModeSticky)

	mkfile(t, filepath.Join(good, "osqueryd"), 0o755)
	mkfile(t, filepath.Join(good, "writable"), 0o775)
	mkfile(t, filepath.Join(open, "osqueryd"), 0o755)
	mkfile(t, filepath.Join(sticky, "osqueryd"), 0o755)
	if err := os.Symlink(filepath.Join(open, "osqueryd"), filepath.Join(good, "link-to-open")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(good, "osqueryd"), filepath.Join(open, "link-to-good")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(good, "osqueryd"), filepath.Join(good, "link")); err != nil {
		t.Fatal(err)
	}
	// A link to a link in a directory others can write: they can point
	// theirs elsewhere before the next start.
	if err := os.Symlink(filepath.Join(open, "link-to-good"), filepath.Join(good, "via-open")); err != nil {
		t.Fatal(err)
	}
	// A safe directory inside one others can write: they can move it and
	// put their own in its place.
	mkdir(t, filepath.Join(open, "sub"), 0o755)
	mkfile(t, filepath.Join(open, "sub", "osqueryd"), 0o755)

	for _, tc := range []struct {
		name, path, want string // want "" means accepted
	}{
		{"root's or ours, 0755", filepath.Join(good, "osqueryd"), ""},
		{"link within a safe directory", filepath.Join(good, "link"), ""},
		{"group-writable file", filepath.Join(good, "writable"), "osqueryd " + filepath.Join(good, "writable") + " is writable by group or others (mode 0775)"},
		{"directory others can write", filepath.Join(open, "osqueryd"), "the directory of osqueryd " + open + " is writable by group or others (mode 0777)"},
		{"sticky directory others can write", filepath.Join(sticky, "osqueryd"), "the directory of osqueryd " + sticky + " is writable by group or others"},
		{"link to a file in a directory others can write", filepath.Join(good, "link-to-open"), "the directory of osqueryd " + open + " is writable"},
		{"link in a directory others can write", filepath.Join(open, "link-to-good"), "the directory of osqueryd " + open + " is writable"},
		{"relative path", "osqueryd", "the path must be absolute"},
		{"missing", filepath.Join(good, "none"), "no such file"},
		{"a directory", good, "is not a regular file"},
		{"link through a link in a directory others can write", filepath.Join(good, "via-open"), "the directory of osqueryd " + open + " is writable"},
		{"in a directory under one others can write", filepath.Join(open, "sub", "osqueryd"), "the directory of osqueryd " + open + " is writable"},
	} {
		_, err := checkOsqueryd(tc.path)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v, want accepted", tc.name, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: err = %v, want %q", tc.name, err, tc.want)
		}
	}

	if os.Geteuid() != 0 {
		t.Skip("giving osqueryd to another user needs root, which the agent runs as")
	}
	theirs := filepath.Join(good, "theirs")
	mkfile(t, theirs, 0o755)
	if err := os.Chown(theirs, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	if _, err := checkOsqueryd(theirs); err == nil || !strings.Contains(err.Error(), "osqueryd "+theirs+" is owned by uid 65534, not by root or the agent's user (uid 0)") {
		t.Errorf("owned by uid 65534: err = %v", err)
	}
}

// TestCheckOsquerydReturnsTheProgram: the program started is the
// configured name with its links resolved, so that nothing is looked up
// again between the check and the start.
func TestCheckOsquerydReturnsTheProgram(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	good := filepath.Join(base, "good")
	mkdir(t, good, 0o755)
	mkfile(t, filepath.Join(good, "osqueryd"), 0o755)
	if err := os.Symlink("osqueryd", filepath.Join(good, "link")); err != nil {
		t.Fatal(err)
	}
	got, err := checkOsqueryd(filepath.Join(good, "link"))
	want, _ := filepath.EvalSymlinks(filepath.Join(good, "osqueryd"))
	if err != nil || got != want {
		t.Errorf("checkOsqueryd(link) = %q, %v; want %q", got, err, want)
	}
}

// A socket that cannot be used is said in full for the agent's log, and
// without its path (a setting, which may be a secret put under the wrong
// key) for what leaves the Mac.
func TestSocketErrorBrief(t *testing.T) {
	t.Parallel()
	const secret = "S3CRET-pasted-as-a-path"
	dir := filepath.Join(t.TempDir(), secret)
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	notSocket := filepath.Join(dir, "osquery.em")
	if err := os.WriteFile(notSocket, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{filepath.Join(dir, "missing.em"), notSocket, "/" + secret} {
		_, err := open(path, time.Second)
		var se *SocketError
		if !errors.As(err, &se) {
			t.Fatalf("open(%s) = %v, want a SocketError", path, err)
		}
		if !strings.Contains(err.Error(), secret) {
			t.Errorf("the log's error %q does not say which path", err)
		}
		if b := se.Brief(); strings.Contains(b, secret) || !strings.Contains(b, "(the configured socket") {
			t.Errorf("Brief() = %q, want it without the path", b)
		}
	}
}
