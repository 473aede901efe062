package agentapi

import (
	"slices"
	"sync"
	"time"
)

// workerIdle is how long a worker waits for its next job before it ends:
// under load the next report comes within milliseconds, and a worker kept
// longer holds its grown stack for nothing. Below that load a report on a
// fresh goroutine costs a few microseconds more, which nothing notices.
const workerIdle = 100 * time.Millisecond

// workers runs the streams' deep work (see Connect) on goroutines that
// stay a little while after their job, waiting for the next one. A fresh
// goroutine for each job starts at the smallest stack and grows it, a copy
// each time it doubles, to the tens of KiB a report's verification and
// store need; a worker that has done a report already has that stack. The
// pool never bounds how many jobs run at once: a job that finds no idle
// worker starts one (reports wait for the store's group commit, and a
// bound would shrink its batches). So there are never more workers than
// jobs at the busiest moment, and the idle ones end after workerIdle. A
// job's panic is not recovered: it ends the process, as it would on any
// goroutine. The zero value is ready.
type workers struct {
	mu sync.Mutex
	// idle is a stack: the worker idle the shortest time is reused first,
	// so that when there are more workers than jobs the same few stay
	// busy and the others expire.
	idle []*worker
	// idleFor is workerIdle unless a test says otherwise.
	idleFor time.Duration
}

// worker is one goroutine of the pool; jobs hands it its next job once it
// has been taken off the idle stack.
type worker struct{ jobs chan *job }

// job is one call of do, reused (jobPool) so that a report costs no
// channel of its own.
type job struct {
	fn   func() error
	err  error
	done chan struct{}
}

var jobPool = sync.Pool{New: func() any { return &job{done: make(chan struct{}, 1)} }}

// do runs fn on a worker and returns its error once it has returned.
func (p *workers) do(fn func() error) error {
	j := jobPool.Get().(*job)
	j.fn = fn
	p.mu.Lock()
	if n := len(p.idle); n > 0 {
		w := p.idle[n-1]
		p.idle[n-1] = nil
		p.idle = p.idle[:n-1]
		p.mu.Unlock()
		// Never blocks: an idle worker's channel is empty.
		w.jobs <- j
	} else {
		p.mu.Unlock()
		go p.work(&worker{jobs: make(chan *job, 1)}, j)
	}
	<-j.done
	err := j.err
	j.fn, j.err = nil, nil
	jobPool.Put(j)
	return err
}

// work runs j, then each job handed to w, until w has been idle for
// idleFor.
func (p *workers) work(w *worker, j *job) {
	idleFor := p.idleFor
	if idleFor <= 0 {
		idleFor = workerIdle
	}
	var t *time.Timer
	for {
		j.err = j.fn()
		// Idle before done: the caller's next job (a stream's next
		// report) finds this worker on top.
		p.mu.Lock()
		p.idle = append(p.idle, w)
		p.mu.Unlock()
		j.done <- struct{}{}
		if t == nil {
			t = time.NewTimer(idleFor)
		} else {
			t.Reset(idleFor)
		}
		select {
		case j = <-w.jobs:
		case <-t.C:
			if p.leave(w) {
				return
			}
			// Taken off the stack as the timer fired: its job is on
			// the way.
			j = <-w.jobs
		}
	}
}

// leave takes w off the idle stack, and says whether it was still there.
func (p *workers) leave(w *worker) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i, x := range p.idle {
		if x == w {
			// Delete clears the vacated slot: no dead worker is kept.
			p.idle = slices.Delete(p.idle, i, i+1)
			return true
		}
	}
	return false
}
