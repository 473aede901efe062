//go:build unix

package logfile

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// held opens path for appending as launchd opens the agent's log, and
// returns the descriptor (closed when the test ends).
func held(t *testing.T, path string) int {
	t.Helper()
	fd, err := unix.Open(path, unix.O_WRONLY|unix.O_APPEND|unix.O_CREAT|unix.O_CLOEXEC, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	return fd
}

func write(t *testing.T, fd int, s string) {
	t.Helper()
	if _, err := unix.Write(fd, []byte(s)); err != nil {
		t.Fatal(err)
	}
}

func read(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// newsyslog's rotation: the log renamed to .0 and a new, empty one made.
func TestFollowsARotation(t *testing.T) {
	path := filepath.Join(t.TempDir(), "agent.log")
	out := held(t, path)
	errOut, err := unix.Dup(out)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(errOut) })
	f := start(path, []int{out, errOut})
	if f == nil {
		t.Fatal("no follower for descriptors on the log")
	}
	write(t, out, "before\n")
	if moved, err := f.check(); moved || err != nil {
		t.Fatalf("check before a rotation: %v %v", moved, err)
	}
	if err := os.Rename(path, path+".0"); err != nil {
		t.Fatal(err)
	}
	write(t, out, "between\n")
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if moved, err := f.check(); !moved || err != nil {
		t.Fatalf("check after a rotation: %v %v", moved, err)
	}
	write(t, out, "after, stdout\n")
	write(t, errOut, "after, stderr\n")
	if got := read(t, path+".0"); got != "before\nbetween\n" {
		t.Errorf("the archive holds %q", got)
	}
	if got := read(t, path); got != "after, stdout\nafter, stderr\n" {
		t.Errorf("the new log holds %q", got)
	}
	if moved, err := f.check(); moved || err != nil {
		t.Fatalf("check once moved: %v %v", moved, err)
	}
}

// A log deleted outright is made again.
func TestRecreatesADeletedLog(t *testing.T) {
	path := filepath.Join(t.TempDir(), "agent.log")
	fd := held(t, path)
	f := start(path, []int{fd})
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if moved, err := f.check(); !moved || err != nil {
		t.Fatalf("check after deletion: %v %v", moved, err)
	}
	write(t, fd, "again\n")
	if got := read(t, path); got != "again\n" {
		t.Errorf("the new log holds %q", got)
	}
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != logMode {
		t.Errorf("the new log: %v %v; want %v", st.Mode(), err, os.FileMode(logMode))
	}
}

// The log launchd opened (mode 0644, whatever its umask) is made logMode:
// its lines say when someone signed in, no other local user's business.
// So is one newsyslog made.
func TestRestrictsTheLog(t *testing.T) {
	path := filepath.Join(t.TempDir(), "agent.log")
	fd := held(t, path)
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	f := start(path, []int{fd})
	mode := func() os.FileMode {
		t.Helper()
		st, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		return st.Mode().Perm()
	}
	if got := mode(); got != logMode {
		t.Errorf("the log launchd opened is %v, want %v", got, os.FileMode(logMode))
	}
	if err := os.Rename(path, path+".0"); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if moved, err := f.check(); !moved || err != nil {
		t.Fatalf("check after a rotation: %v %v", moved, err)
	}
	if got := mode(); got != logMode {
		t.Errorf("the rotated log is %v, want %v", got, os.FileMode(logMode))
	}
}

// A link or a FIFO put where the log was is not followed: the descriptors
// keep writing to the file they had.
func TestRefusesALinkOrAFIFO(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "agent.log")
	fd := held(t, path)
	f := start(path, []int{fd})
	elsewhere := filepath.Join(dir, "elsewhere")
	if err := os.WriteFile(elsewhere, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path, path+".0"); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(elsewhere, path); err != nil {
		t.Fatal(err)
	}
	if moved, err := f.check(); moved || err == nil {
		t.Fatalf("check with a link: %v %v", moved, err)
	}
	// A hard link to another file is not a new log either.
	os.Remove(path)
	if err := os.Link(elsewhere, path); err != nil {
		t.Fatal(err)
	}
	if moved, err := f.check(); moved || err == nil || !strings.Contains(err.Error(), "2 names") {
		t.Fatalf("check with a hard link: %v %v", moved, err)
	}
	os.Remove(path)
	if err := unix.Mkfifo(path, 0o644); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		// Refused: opening it for writing with no reader fails, or it is
		// found to be no regular file.
		if moved, err := f.check(); moved || err == nil {
			t.Errorf("check with a FIFO: %v %v", moved, err)
		}
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("check blocked on a FIFO")
	}
	write(t, fd, "still here\n")
	if got := read(t, path+".0"); got != "still here\n" {
		t.Errorf("the old log holds %q", got)
	}
	if got := read(t, elsewhere); got != "" {
		t.Errorf("the link's target got %q", got)
	}
}

// Descriptors on something other than the log (a terminal, a file the
// person chose) are left alone.
func TestLeavesOtherOutputAlone(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "agent.log")
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	other := held(t, filepath.Join(dir, "mine.log"))
	if start(path, []int{other}) != nil {
		t.Error("a follower for a descriptor on another file")
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	if start(path, []int{int(w.Fd())}) != nil {
		t.Error("a follower for a pipe")
	}
	if start(path, nil) != nil {
		t.Error("a follower for no descriptors")
	}
	// Of two descriptors, only the one on the log follows it.
	mine := filepath.Join(dir, "mine.log")
	on := held(t, path)
	fl := start(path, []int{on, other})
	if fl == nil || len(fl.fds) != 1 || fl.fds[0] != on {
		t.Fatalf("follower for one descriptor on the log and one elsewhere: %+v", fl)
	}
	if err := os.Rename(path, path+".0"); err != nil {
		t.Fatal(err)
	}
	if moved, err := fl.check(); !moved || err != nil {
		t.Fatalf("check after a rotation: %v %v", moved, err)
	}
	write(t, other, "still mine\n")
	if got := read(t, mine); got != "still mine\n" {
		t.Errorf("the other descriptor's file holds %q", got)
	}
	if got := read(t, path); got != "" {
		t.Errorf("the new log holds %q", got)
	}

	// Follow gives none, and Run on none returns at once.
	none := Follow(path, other)
	if none != nil {
		t.Fatal("Follow for a descriptor on another file")
	}
	none.Run(context.Background(), time.Millisecond, slog.New(slog.DiscardHandler))
}

// Run moves the descriptors and says so, once.
func TestRunSaysWhenItMoved(t *testing.T) {
	path := filepath.Join(t.TempDir(), "agent.log")
	fd := held(t, path)
	var logged bytes.Buffer
	ctx, cancel := context.WithCancel(context.Background())
	fl := Follow(path, fd)
	if fl == nil {
		t.Fatal("no Follower for a descriptor on the log")
	}
	done := make(chan struct{})
	go func() {
		fl.Run(ctx, 5*time.Millisecond, slog.New(slog.NewTextHandler(&logged, nil)))
		close(done)
	}()
	if err := os.Rename(path, path+".0"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(path); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the log was not made again")
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	<-done
	if !strings.Contains(logged.String(), "log file rotated") {
		t.Errorf("logged %q", logged.String())
	}
}
