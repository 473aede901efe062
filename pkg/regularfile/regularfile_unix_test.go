//go:build unix

package regularfile

import (
	"errors"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestFIFORefusedAtOnce: a FIFO with no writer in the file's place is
// refused without waiting for one.
func TestFIFORefusedAtOnce(t *testing.T) {
	t.Parallel()
	p := filepath.Join(t.TempDir(), "settings.yaml")
	if err := syscall.Mkfifo(p, 0o600); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { _, err := Read(p, 100); done <- err }()
	select {
	case err := <-done:
		if !errors.Is(err, ErrNotRegular) || !strings.Contains(err.Error(), "a FIFO") {
			t.Fatalf("Read of a FIFO: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Read of a FIFO with no writer blocked")
	}
}
