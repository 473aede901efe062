package state

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"syscall"
	"time"
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

// lockWait is how long LockRunning tries again while the lock is held:
// `status` holds it for a moment to learn whether an agent runs, and an
// agent starting again (new settings) must not take that for another
// agent.
const lockWait = 2 * time.Second

// openLock opens the lock file: never through a link, never waiting (a
// FIFO put in its place), and only a regular file.
func (d *Dir) openLock(flag int) (*os.File, error) {
	f, err := os.OpenFile(d.File(RunningLock), flag|syscall.O_NOFOLLOW|syscall.O_NONBLOCK|syscall.O_NOCTTY, 0o600)
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if !st.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("%s is not a regular file (%s)", d.File(RunningLock), st.Mode().Type())
	}
	return f, nil
}

// LockRunning takes the state dir's running lock for this process; release
// gives it back. ErrAgentRunning while another process holds it.
func (d *Dir) LockRunning() (release func(), err error) {
	f, err := d.openLock(os.O_RDWR | os.O_CREATE)
	if err != nil {
		return nil, fmt.Errorf("opening the running lock: %w", err)
	}
	deadline := time.Now().Add(lockWait)
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() { f.Close() }, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	f.Close()
	if errors.Is(err, syscall.EWOULDBLOCK) {
		return nil, fmt.Errorf("%s: %w", d.Path, ErrAgentRunning)
	}
	return nil, fmt.Errorf("locking %s (the state dir must be on a local file system): %w", d.File(RunningLock), err)
}

// AgentRunning reports whether a process holds the state dir's running
// lock. It takes the lock, shared, for a moment when none does.
func (d *Dir) AgentRunning() (bool, error) {
	f, err := d.openLock(os.O_RDONLY)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("opening the running lock: %w", err)
	}
	defer f.Close()
	err = syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB)
	switch {
	case errors.Is(err, syscall.EWOULDBLOCK):
		return true, nil
	case err != nil:
		return false, fmt.Errorf("locking %s (the state dir must be on a local file system): %w", d.File(RunningLock), err)
	}
	return false, nil
}
