package agentapi

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// goroutineID is the calling goroutine's number, read from its stack
// trace's first line ("goroutine 42 [running]:").
func goroutineID() string {
	buf := make([]byte, 64)
	buf = buf[:runtime.Stack(buf, false)]
	f := bytes.Fields(buf)
	if len(f) < 2 {
		return ""
	}
	return string(f[1])
}

func (p *workers) idleCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.idle)
}

// waitFor polls cond until it holds or a few seconds have passed.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestWorkersReuseAStack(t *testing.T) {
	p := &workers{idleFor: time.Minute}
	caller := goroutineID()
	var ran []string
	want := errors.New("from the job")
	for i := range 5 {
		err := p.do(func() error {
			ran = append(ran, goroutineID())
			if i == 2 {
				return want
			}
			return nil
		})
		if (i == 2) != (err == want) {
			t.Fatalf("job %d returned %v", i, err)
		}
	}
	if ran[0] == caller {
		t.Fatalf("a job ran on the caller's goroutine")
	}
	for i, g := range ran {
		if g != ran[0] {
			t.Fatalf("job %d ran on goroutine %s, job 0 on %s: one after another, they should share one worker", i, g, ran[0])
		}
	}
	if n := p.idleCount(); n != 1 {
		t.Fatalf("%d idle workers after jobs one at a time, want 1", n)
	}
}

// The pool never makes a job wait for another: as many jobs as are
// called at once run at once, and then as many workers wait, no more.
func TestWorkersUnboundedThenExpire(t *testing.T) {
	const n = 50
	before := runtime.NumGoroutine()
	p := &workers{idleFor: time.Second} // outlasts the callers' wake-up on a loaded machine
	var started, release sync.WaitGroup
	started.Add(n)
	release.Add(1)
	var callers sync.WaitGroup
	for range n {
		callers.Go(func() {
			_ = p.do(func() error {
				started.Done()
				release.Wait()
				return nil
			})
		})
	}
	// Every job is running before any may end: nothing queued them.
	started.Wait()
	release.Done()
	callers.Wait()
	if got := p.idleCount(); got != n {
		t.Fatalf("%d idle workers after %d jobs at once, want %d", got, n, n)
	}

	// Jobs one at a time keep reusing the most recent worker; the others
	// expire meanwhile.
	waitFor(t, "the unused workers to expire", func() bool {
		_ = p.do(func() error { return nil })
		return p.idleCount() == 1
	})

	// And with no jobs at all, the last one ends too, and its goroutine
	// with it.
	waitFor(t, "the last worker to expire", func() bool { return p.idleCount() == 0 })
	waitFor(t, "the workers' goroutines to end", func() bool { return runtime.NumGoroutine() <= before })

	// A pool emptied by expiry still runs jobs.
	if err := p.do(func() error { return nil }); err != nil {
		t.Fatal(err)
	}
}

// A job that finds its worker expiring gets it, or a new one: never lost.
func TestWorkersExpiryRace(t *testing.T) {
	p := &workers{idleFor: time.Microsecond}
	for i := range 2000 {
		if err := p.do(func() error { return nil }); err != nil {
			t.Fatalf("job %d: %v", i, err)
		}
		if i%100 == 0 {
			time.Sleep(10 * time.Microsecond)
		}
	}
}

// A job's panic ends the process with the panic's message, as it would on
// any goroutine the stream started: nothing recovers it.
func TestWorkersPanicEndsTheProcess(t *testing.T) {
	if os.Getenv("CLEARANCE_WORKERS_PANIC") == "1" {
		p := &workers{}
		_ = p.do(func() error { panic("job panicked") })
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run", "^TestWorkersPanicEndsTheProcess$")
	cmd.Env = append(os.Environ(), "CLEARANCE_WORKERS_PANIC=1")
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 2 {
		t.Fatalf("process ended with %v, want exit status 2 (an unrecovered panic); output:\n%s", err, out)
	}
	if !strings.Contains(string(out), "panic: job panicked") {
		t.Fatalf("output lacks the panic:\n%s", out)
	}
}

// grow uses about n KiB of stack, as a report's verification and store do.
//
//go:noinline
func grow(n int) byte {
	var b [1024]byte
	if n <= 1 {
		return b[0]
	}
	b[n%1024] = byte(n)
	return grow(n-1) + b[0]
}

// BenchmarkDeepWork compares a job on a fresh goroutine with one on the
// pool's workers, for a job that needs a report's stack.
func BenchmarkDeepWork(b *testing.B) {
	job := func() error { grow(40); return nil }
	b.Run("fresh-goroutine", func(b *testing.B) {
		for b.Loop() {
			done := make(chan error, 1)
			go func() { done <- job() }()
			<-done
		}
	})
	b.Run("workers", func(b *testing.B) {
		var p workers
		for b.Loop() {
			_ = p.do(job)
		}
	})
}
