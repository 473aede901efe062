package state_test

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/clearance/clearance/agent/state"
)

// TestRunningLock: one agent at a time holds the state dir's running lock,
// status learns from it whether one runs, and a link at its name is not
// followed.
func TestRunningLock(t *testing.T) {
	dir, err := state.Open(filepath.Join(t.TempDir(), "state"))
	if err != nil {
		t.Fatal(err)
	}
	running := func() bool {
		t.Helper()
		ok, err := dir.AgentRunning()
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	if running() {
		t.Fatal("running before any lock")
	}
	release, err := dir.LockRunning()
	if err != nil {
		t.Fatal(err)
	}
	if !running() {
		t.Error("not running while the lock is held")
	}
	if _, err := dir.LockRunning(); !errors.Is(err, state.ErrAgentRunning) {
		t.Errorf("a second agent: %v, want ErrAgentRunning", err)
	}
	release()

	// status holding it for a moment while an agent starts: the agent
	// waits for it, and starts.
	held, err := dir.LockRunning()
	if err != nil {
		t.Fatal(err)
	}
	time.AfterFunc(300*time.Millisecond, held)
	started, err := dir.LockRunning()
	if err != nil {
		t.Fatalf("an agent starting while the lock is held for a moment: %v", err)
	}
	started()
	if running() {
		t.Error("running after the release")
	}
	again, err := dir.LockRunning()
	if err != nil {
		t.Fatalf("after the release: %v", err)
	}
	again()

	// A link in the lock's place is refused, not followed.
	if err := os.Remove(dir.File(state.RunningLock)); err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(t.TempDir(), "elsewhere")
	if err := os.Symlink(target, dir.File(state.RunningLock)); err != nil {
		t.Fatal(err)
	}
	if _, err := dir.LockRunning(); err == nil {
		t.Error("a link at the lock's name was followed")
	}
	if _, err := os.Stat(target); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the link's target was created: %v", err)
	}

	// A FIFO in its place neither hangs status nor passes for the lock.
	if err := os.Remove(dir.File(state.RunningLock)); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(dir.File(state.RunningLock), 0o600); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { _, err := dir.AgentRunning(); done <- err }()
	select {
	case err := <-done:
		if err == nil {
			t.Error("status took a FIFO for the lock")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("status hangs on a FIFO at the lock's name")
	}
	if _, err := dir.LockRunning(); err == nil {
		t.Error("an agent took a FIFO for the lock")
	}
}
