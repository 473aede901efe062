//go:build unix

package secretfile

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestRead(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name, data string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(data), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil { // past the umask
			t.Fatal(err)
		}
		return p
	}
	good := write("admin.token", "secret\n", 0o600)
	// What an attacker's data dir offers in the token's place: a link to
	// the admin's own token elsewhere.
	link := filepath.Join(dir, "link.token")
	if err := os.Symlink(good, link); err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(dir, "fifo.token")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	big := write("big.token", strings.Repeat("x", MaxSize+1), 0o600)

	if b, err := Read(good); err != nil || string(b) != "secret\n" {
		t.Fatalf("Read(0600 file) = %q, %v", b, err)
	}
	if b, err := Read(write("readonly.token", "ro", 0o400)); err != nil || string(b) != "ro" {
		t.Errorf("Read(0400 file) = %q, %v", b, err)
	}
	for _, tc := range []struct {
		name, path, want string
		is               error
	}{
		{"missing", filepath.Join(dir, "none"), "no such file", fs.ErrNotExist},
		{"symbolic link", link, "is a symbolic link", nil},
		{"directory", dir, "not a regular file", nil},
		{"FIFO", fifo, "not a regular file", nil},
		{"group readable", write("g.token", "x", 0o640), "chmod 600", ErrMode},
		{"world writable", write("w.token", "x", 0o602), "(mode 0602)", ErrMode},
		{"too large", big, "larger than", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := Read(tc.path)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Read = %q, %v; want an error with %q", b, err, tc.want)
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("%v is not %v", err, tc.is)
			}
		})
	}
}

// TestReadRefusesAnotherUsersFile needs root to give a file away.
func TestReadRefusesAnotherUsersFile(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Skip("needs root to chown a file to another user")
	}
	p := filepath.Join(t.TempDir(), "admin.token")
	if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(p, 4242, 4242); err != nil {
		t.Fatal(err)
	}
	if _, err := Read(p); err == nil || !strings.Contains(err.Error(), "owned by uid 4242") {
		t.Errorf("Read(another user's file) = %v", err)
	}
}
