//go:build unix

package owner_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/clearance/clearance/pkg/owner"
)

func TestCheck(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cases := []struct {
		name string
		mode os.FileMode
		deny os.FileMode
		want string // "" means accepted
	}{
		{"private file", 0o600, 0o077, ""},
		{"read-only file", 0o400, 0o077, ""},
		{"world-readable, writes denied", 0o644, 0o022, ""},
		{"group-writable", 0o620, 0o022, "is writable by group or others (mode 0620); check what it holds, then run: chmod go-w "},
		{"world-writable", 0o606, 0o022, "is writable by group or others (mode 0606)"},
		{"group-readable secret", 0o640, 0o077, "is readable or writable by group or others (mode 0640); check what it holds, then run: chmod go-rwx "},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-"))
			if err := os.WriteFile(p, nil, 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(p, tc.mode); err != nil { // past the umask
				t.Fatal(err)
			}
			st, err := os.Stat(p)
			if err != nil {
				t.Fatal(err)
			}
			err = owner.Check("key file", p, st, tc.deny)
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("Check = %v, want accepted", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), "key file "+p+" "+tc.want)):
				t.Errorf("Check = %v, want %q", err, tc.want)
			}
		})
	}
}

// What root owns is trusted by everyone; what another user owns is not.
func TestCheckOwner(t *testing.T) {
	t.Parallel()
	st, err := os.Stat("/")
	if err != nil {
		t.Fatal(err)
	}
	if err := owner.Check("dir", "/", st, 0o022); err != nil {
		t.Errorf("Check(/) = %v, want accepted: root owns it", err)
	}
	if os.Geteuid() != 0 {
		t.Skip("giving a file to another user needs root")
	}
	p := filepath.Join(t.TempDir(), "planted")
	if err := os.WriteFile(p, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(p, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	st, err = os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if uid, foreign := owner.Foreign(st); !foreign || uid != 65534 {
		t.Errorf("Foreign = %d, %v; want 65534, true", uid, foreign)
	}
	want := "key file " + p + " is owned by uid 65534, not by root or the user running this (uid 0), who could have put anything there; check what it holds, then run: chown root " + p
	if err := owner.Check("key file", p, st, 0o077); err == nil || err.Error() != want {
		t.Errorf("Check = %v\nwant %s", err, want)
	}
}

// TestResolve: a path is resolved a name at a time, and every directory a
// name is looked up in must be one no one else could change: a link in
// one, reached directly, through another link, or past a "..", is
// refused; so is a chain longer than the kernel would follow.
func TestResolve(t *testing.T) {
	t.Parallel()
	base, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	mk := func(path string, mode os.FileMode) {
		t.Helper()
		if err := os.Mkdir(path, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(path, mode); err != nil {
			t.Fatal(err)
		}
	}
	link := func(target, at string) {
		t.Helper()
		if err := os.Symlink(target, at); err != nil {
			t.Fatal(err)
		}
	}
	good := filepath.Join(base, "good")
	mk(good, 0o755)
	mk(filepath.Join(good, "sub"), 0o755)
	if err := os.WriteFile(filepath.Join(good, "sub", "f"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	open := filepath.Join(base, "open")
	mk(open, 0o777)
	link(filepath.Join(good, "sub"), filepath.Join(open, "to-sub")) // a link others can repoint
	link(filepath.Join(open, "to-sub"), filepath.Join(good, "via-open"))
	link("../good/sub/f", filepath.Join(good, "rel"))
	link(filepath.Join(good, "sub", "f")+"/.", filepath.Join(good, "dotted"))
	link(filepath.Join(open, "to-sub", "..", "sub", "f"), filepath.Join(good, "dotdot"))
	// A chain of 41 links, all in a safe directory.
	chain := filepath.Join(good, "chain")
	mk(chain, 0o755)
	link(filepath.Join(good, "sub", "f"), filepath.Join(chain, "l00"))
	for i := 1; i <= 41; i++ {
		link(filepath.Join(chain, fmt.Sprintf("l%02d", i-1)), filepath.Join(chain, fmt.Sprintf("l%02d", i)))
	}
	real := filepath.Join(good, "sub", "f")
	for _, tc := range []struct {
		name, path, want string // want "" means resolved to real
	}{
		{"a plain path", real, ""},
		{"a relative link", filepath.Join(good, "rel"), ""},
		{"forty links", filepath.Join(chain, "l39"), ""},
		{"a link in a directory others can write", filepath.Join(open, "to-sub", "f"), open + " is writable by group or others"},
		{"through a link to a link in one", filepath.Join(good, "via-open", "f"), open + " is writable by group or others"},
		{"a '..' after a link in one", filepath.Join(good, "dotdot"), open + " is writable by group or others"},
		{"forty-one links", filepath.Join(chain, "l41"), "more than 40 symbolic links"},
		{"a link to a file named as a directory", filepath.Join(good, "dotted"), "is not a directory"},
	} {
		got, err := owner.Resolve("directory", tc.path)
		switch {
		case tc.want == "" && (err != nil || got != real):
			t.Errorf("%s: %q, %v; want %q", tc.name, got, err, real)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: %q, %v; want an error with %q", tc.name, got, err, tc.want)
		}
	}
}

// TestResolveStickyDirectory: a sticky directory anyone may write is
// passed through only to an entry of a trusted owner in a directory of a
// trusted owner: the owner of either could move it.
func TestResolveStickyDirectory(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("giving a directory to another user needs root")
	}
	t.Parallel()
	base, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name               string
		dirOwner, entOwner int
		want               string
	}{
		{"root's sticky directory, root's entry", 0, 0, ""},
		{"another user's sticky directory", 65534, 0, "owned by uid 65534"},
		{"another user's entry", 0, 65534, "owned by uid 65534 in the directory"},
	} {
		sticky := filepath.Join(base, fmt.Sprintf("sticky-%d-%d", tc.dirOwner, tc.entOwner))
		if err := os.Mkdir(sticky, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(sticky, 0o777|os.ModeSticky); err != nil {
			t.Fatal(err)
		}
		entry := filepath.Join(sticky, "state")
		if err := os.Mkdir(entry, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(sticky, tc.dirOwner, tc.dirOwner); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(entry, tc.entOwner, tc.entOwner); err != nil {
			t.Fatal(err)
		}
		_, err := owner.Resolve("directory", filepath.Join(entry, "x"))
		switch {
		case tc.want == "" && err != nil && !errors.Is(err, os.ErrNotExist):
			t.Errorf("%s: %v", tc.name, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: %v, want an error with %q", tc.name, err, tc.want)
		}
	}
}
