package state_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

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
}
