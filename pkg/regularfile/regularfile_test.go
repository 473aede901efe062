package regularfile

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRead(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	p := filepath.Join(dir, "settings.yaml")
	if err := os.WriteFile(p, []byte("enforcement: warn\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got, err := Read(p, 100); err != nil || string(got) != "enforcement: warn\n" {
		t.Fatalf("Read = %q, %v", got, err)
	}
	// A link to a regular file is read: configuration managers link files.
	l := filepath.Join(dir, "link.yaml")
	if err := os.Symlink(p, l); err != nil {
		t.Fatal(err)
	}
	if got, err := Read(l, 100); err != nil || len(got) == 0 {
		t.Fatalf("Read through a link = %q, %v", got, err)
	}
	if _, err := Read(p, 5); !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), "larger than 5 bytes") {
		t.Errorf("Read of a file past the bound: %v", err)
	}
	if _, err := Read(dir, 100); !errors.Is(err, ErrNotRegular) || !strings.Contains(err.Error(), "a directory") {
		t.Errorf("Read of a directory: %v", err)
	}
	if _, err := Read(filepath.Join(dir, "none"), 100); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Read of nothing: %v", err)
	}
}

func TestDevice(t *testing.T) {
	t.Parallel()
	if _, err := os.Stat("/dev/zero"); err != nil {
		t.Skip("no /dev/zero")
	}
	if _, err := Read("/dev/zero", 100); !errors.Is(err, ErrNotRegular) || !strings.Contains(err.Error(), "a device") {
		t.Fatalf("Read of /dev/zero: %v", err)
	}
}
