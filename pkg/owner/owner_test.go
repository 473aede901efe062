//go:build unix

package owner_test

import (
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
