//go:build unix

package logfile

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// follower holds which file fds write to.
type follower struct {
	path     string
	fds      []int
	dev, ino uint64
}

// start returns a follower for those of fds that write to the regular
// file at path; nil when none does.
func start(path string, fds []int) *follower {
	var named unix.Stat_t
	if unix.Lstat(path, &named) != nil || named.Mode&unix.S_IFMT != unix.S_IFREG {
		return nil
	}
	var on []int
	for _, fd := range fds {
		var held unix.Stat_t
		if unix.Fstat(fd, &held) == nil && held.Mode&unix.S_IFMT == unix.S_IFREG &&
			uint64(held.Dev) == uint64(named.Dev) && uint64(held.Ino) == uint64(named.Ino) {
			on = append(on, fd)
		}
	}
	if len(on) == 0 {
		return nil
	}
	restrict(on[0])
	return &follower{path: path, fds: on, dev: uint64(named.Dev), ino: uint64(named.Ino)}
}

// logMode is the log's mode: each line of it says when someone signed in
// from the Mac and with which browser, which is no other local user's
// business; logGroup (administrators, on macOS) may read it too.
const logMode = 0o640

// restrict gives the log file fd writes to logMode and logGroup, whatever
// made it (launchd opens the file with its own mode). At best: a log that
// cannot be changed is still written to.
func restrict(fd int) {
	_ = unix.Fchmod(fd, logMode)
	if logGroup >= 0 {
		_ = unix.Fchown(fd, -1, logGroup)
	}
}

// check moves fds onto the file at path when it is no longer the one they
// write to, and says whether it did.
func (f *follower) check() (bool, error) {
	var named unix.Stat_t
	err := unix.Lstat(f.path, &named)
	if err == nil && uint64(named.Dev) == f.dev && uint64(named.Ino) == f.ino {
		return false, nil
	}
	if err != nil && err != unix.ENOENT {
		return false, fmt.Errorf("stat %s: %w", f.path, err)
	}
	fd, err := unix.Open(f.path, unix.O_WRONLY|unix.O_APPEND|unix.O_CREAT|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_NONBLOCK, logMode)
	if err != nil {
		return false, fmt.Errorf("open %s: %w", f.path, err)
	}
	defer unix.Close(fd)
	var opened unix.Stat_t
	if err := unix.Fstat(fd, &opened); err != nil {
		return false, fmt.Errorf("stat %s: %w", f.path, err)
	}
	if opened.Mode&unix.S_IFMT != unix.S_IFREG {
		return false, fmt.Errorf("%s is not a regular file", f.path)
	}
	// A hard link to another file, or a file someone else made, is not a
	// new log: newsyslog makes it ours, with one name.
	if opened.Nlink != 1 || int(opened.Uid) != unix.Geteuid() {
		return false, fmt.Errorf("%s has %d names or is owned by uid %d, not this process's %d", f.path, opened.Nlink, opened.Uid, unix.Geteuid())
	}
	restrict(fd)
	// Writes block again once the descriptor is in place.
	if err := unix.SetNonblock(fd, false); err != nil {
		return false, fmt.Errorf("open %s: %w", f.path, err)
	}
	for _, target := range f.fds {
		if err := unix.Dup2(fd, target); err != nil {
			return false, fmt.Errorf("moving descriptor %d onto %s: %w", target, f.path, err)
		}
	}
	f.dev, f.ino = uint64(opened.Dev), uint64(opened.Ino)
	return true, nil
}
