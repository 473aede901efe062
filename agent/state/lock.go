package state

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"syscall"
)

// RunningLock is the file a running agent holds locked for as long as it
// runs with the state dir: one agent at a time per state dir, and `status`
// learns whether one runs from the lock, which ends with its process
// however it ends, not from a process id that another process may have
// taken since.
const RunningLock = "running.lock"

// ErrAgentRunning is LockRunning's answer while another process holds the
// lock.
var ErrAgentRunning = errors.New("another clearance-agent runs with this state dir")

// LockRunning takes the state dir's running lock for this process; release
// gives it back. ErrAgentRunning while another process holds it.
func (d *Dir) LockRunning() (release func(), err error) {
	f, err := os.OpenFile(d.File(RunningLock), os.O_RDWR|os.O_CREATE|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", d.File(RunningLock), err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%s: %w", d.Path, ErrAgentRunning)
		}
		return nil, fmt.Errorf("locking %s: %w", d.File(RunningLock), err)
	}
	return func() { f.Close() }, nil
}

// AgentRunning reports whether a process holds the state dir's running
// lock. It takes the lock for a moment when none does.
func (d *Dir) AgentRunning() (bool, error) {
	f, err := os.OpenFile(d.File(RunningLock), os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	defer f.Close()
	err = syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB)
	switch {
	case errors.Is(err, syscall.EWOULDBLOCK):
		return true, nil
	case err != nil:
		return false, err
	}
	return false, nil
}
