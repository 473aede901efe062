// Package logfile keeps the agent's standard output and error on its log
// file when the file is rotated. launchd opens the log (service.LogPath)
// once, when it starts the agent, and newsyslog rotates it by renaming it
// and creating a new, empty one: without this, the agent would write to
// the renamed file for the rest of its run, and the log would grow past
// its bound again in the archive. A Follower notices the new file and
// moves the descriptors onto it.
package logfile

import (
	"context"
	"log/slog"
	"time"
)

// Every is how often a Follower looks for a rotated log.
const Every = 30 * time.Second

// Follow returns a Follower for those of fds that write to the regular
// file at path now (the agent as launchd runs it), and nil when none does
// (a terminal, a file the person chose, the journal): a descriptor that
// writes elsewhere is never moved.
func Follow(path string, fds ...int) *Follower {
	f := start(path, fds)
	if f == nil {
		return nil
	}
	return &Follower{f: f, path: path}
}

// Follower keeps descriptors on a log file that is rotated.
type Follower struct {
	f    *follower
	path string
}

// Run looks every every until ctx ends: each time the file at the path is
// another one than the descriptors write to (newsyslog renamed it and made
// a new one) or is gone, it opens the file at the path (created if gone; a
// link or anything but a regular file is refused) and makes every
// descriptor write to it. log says when the log was reopened or could not
// be. A nil Follower returns at once.
func (fl *Follower) Run(ctx context.Context, every time.Duration, log *slog.Logger) {
	if fl == nil {
		return
	}
	t := time.NewTicker(every)
	defer t.Stop()
	failed := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		moved, err := fl.f.check()
		switch {
		case err != nil && !failed:
			log.Warn("the log file was rotated but could not be opened again; the agent keeps writing to the old one", "component", "log", "path", fl.path, "err", err)
			failed = true
		case moved:
			log.Info("log file rotated; writing to the new one", "component", "log", "path", fl.path)
			failed = false
		}
	}
}
