package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"testing"
	"time"

	"github.com/clearance/clearance/verifier/storage/sqlstore"
)

// gatherRig is a writer whose fsyncs the test holds and lets go, and which
// waits as long as it takes for a batch to gather.
type gatherRig struct {
	t       *testing.T
	db      *sql.DB
	w       *reportWriter
	began   chan struct{}
	release chan error
}

func newGatherRig(t *testing.T) *gatherRig {
	t.Helper()
	db, w := faultWriter(t, `CREATE TABLE t (x INTEGER PRIMARY KEY)`)
	r := &gatherRig{t: t, db: db, w: w, began: make(chan struct{}, 8), release: make(chan error)}
	w.gatherFor = time.Hour
	w.syncWAL = func() error { r.began <- struct{}{}; return <-r.release }
	t.Cleanup(func() {
		// Whatever fsync is still held is let go, so the writer can stop.
		for {
			select {
			case r.release <- nil:
			case <-time.After(100 * time.Millisecond):
				return
			}
		}
	})
	return r
}

// insert queues a durable write of x.
func (r *gatherRig) insert(x int) chan error {
	c := make(chan error, 1)
	go func() {
		c <- r.w.do(r.t.Context(), false, func(ctx context.Context, tx *sqlstore.Tx) error {
			_, err := tx.ExecContext(ctx, `INSERT INTO t (x) VALUES (?)`, x)
			return err
		})
	}()
	return c
}

// synced waits for the next fsync to begin, and lets it return.
func (r *gatherRig) synced() {
	r.t.Helper()
	select {
	case <-r.began:
	case <-time.After(10 * time.Second):
		r.t.Fatal("no fsync began")
	}
	r.release <- nil
}

// answered waits for each write's answer, which must be nil.
func (r *gatherRig) answered(cs ...chan error) {
	r.t.Helper()
	for _, c := range cs {
		select {
		case err := <-c:
			must(r.t, err)
		case <-time.After(10 * time.Second):
			r.t.Fatal("a durable write was not answered")
		}
	}
}

func (r *gatherRig) stored(x int) bool {
	r.t.Helper()
	var n int
	must(r.t, r.db.QueryRowContext(r.t.Context(), `SELECT count(*) FROM t WHERE x = ?`, x).Scan(&n))
	return n == 1
}

// waitFor polls cond until it holds, failing the test after 10 s.
func (r *gatherRig) waitFor(what string, cond func() bool) {
	r.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			r.t.Fatalf("%s: not after 10 s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// largeBatch commits a durable batch of gatherAfter writes, from, from+1…,
// queued while the write before it was being synced, and holds its fsync:
// the batches after it gather. It returns their answers, which come once
// that fsync is let go.
func (r *gatherRig) largeBatch(from int) []chan error {
	r.t.Helper()
	first := r.insert(from - 1)
	r.waitFor("the first write committed", func() bool { return r.stored(from - 1) })
	var batch []chan error
	for i := range gatherAfter {
		batch = append(batch, r.insert(from+i))
	}
	// The writer holds the first of them, waiting for the fsync.
	r.waitFor("the writes queued", func() bool { return len(r.w.queue) == gatherAfter-1 })
	r.synced()
	r.answered(first)
	r.waitFor("the batch committed", func() bool { return r.stored(from + gatherAfter - 1) })
	return batch
}

// A durable batch waits for more writes only after a durable batch of at
// least gatherAfter: then it is not committed until gatherTo writes are
// there (or gatherFor has passed), and one commit and one fsync take them
// all. Writes that come one at a time, as sign-ins' decisions do, never
// wait.
func TestDurableBatchGathersAfterALargeOne(t *testing.T) {
	r := newGatherRig(t)

	// 1. Lone durable writes: none waits.
	for x := 1; x <= 3; x++ {
		c := r.insert(x)
		r.synced()
		r.answered(c)
	}
	if n := r.w.gathers.Load(); n != 0 {
		t.Fatalf("%d batches waited for more writes after batches of one", n)
	}

	// 2. A batch of gatherAfter; 3. the next durable write waits for more,
	// uncommitted.
	batch := r.largeBatch(200)
	commits := r.w.commits.Load()
	next := r.insert(300)
	r.synced()
	r.answered(batch...)
	r.waitFor("the next batch gathering", func() bool { return r.w.gathers.Load() == 1 })
	if r.stored(300) {
		t.Fatal("a gathering batch was committed before gatherTo writes were queued")
	}

	// 4. Once gatherTo are there, one commit takes them all.
	more := []chan error{next}
	for i := range gatherTo - 1 {
		more = append(more, r.insert(400+i))
	}
	r.synced()
	r.answered(more...)
	if got := r.w.commits.Load() - commits; got != 1 {
		t.Errorf("the gathered writes took %d commits, want 1", got)
	}
	for _, x := range []int{300, 400, 400 + gatherTo - 2} {
		if !r.stored(x) {
			t.Errorf("write %d not stored", x)
		}
	}
}

// Closing the store while a batch gathers: the writer stops waiting, the
// batch's write is answered, and what it was told is what is stored.
func TestCloseWhileGathering(t *testing.T) {
	r := newGatherRig(t)
	// Longer than the test waits for close, short enough that a writer
	// that did not stop waiting still lets the test end.
	r.w.gatherFor = 30 * time.Second
	batch := r.largeBatch(10)
	last := r.insert(100)
	r.synced()
	r.answered(batch...)
	r.waitFor("the next batch gathering", func() bool { return r.w.gathers.Load() == 1 })

	closed := make(chan error, 1)
	go func() { closed <- r.w.close() }()
	// The gathering batch is committed as the writer stops, and synced.
	go func() {
		select {
		case <-r.began:
			r.release <- nil
		case <-time.After(10 * time.Second):
			t.Error("the gathering batch was not synced as the writer stopped")
		}
	}()
	select {
	case err := <-closed:
		must(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("close waited for a gathering batch")
	}
	err := <-last
	switch {
	case err == nil && !r.stored(100):
		t.Error("the gathering write was answered as stored and is not")
	case errors.Is(err, ErrClosed) && r.stored(100):
		t.Error("the gathering write was answered ErrClosed and is stored")
	case err != nil && !errors.Is(err, ErrClosed):
		t.Errorf("the gathering write: %v, want nil or ErrClosed", err)
	}
}

// streamOver commits a large batch and lets its fsync return: the next
// durable batch would gather.
func (r *gatherRig) streamOver(from int) {
	r.t.Helper()
	batch := r.largeBatch(from)
	r.synced()
	r.answered(batch...)
}

// A durable write that comes after a pause longer than gatherFor does not
// wait: the stream of writes is over.
func TestGatherEndsWithTheStream(t *testing.T) {
	r := newGatherRig(t)
	r.w.gatherFor = 50 * time.Millisecond
	r.streamOver(10)
	time.Sleep(2 * r.w.gatherFor)
	c := r.insert(100)
	r.synced()
	r.answered(c)
	if n := r.w.gathers.Load(); n != 0 {
		t.Errorf("a lone write after a pause gathered (%d batches)", n)
	}
}

// A lazy write (a sign-in's) ends the wait: the gathering batch takes it
// and commits, and both are answered after one fsync.
func TestLazyWriteEndsTheGather(t *testing.T) {
	r := newGatherRig(t)
	r.streamOver(10)
	d := r.insert(100)
	r.waitFor("the batch gathering", func() bool { return r.w.gathers.Load() == 1 })
	l := make(chan error, 1)
	go func() {
		l <- r.w.do(t.Context(), true, func(ctx context.Context, tx *sqlstore.Tx) error {
			_, err := tx.ExecContext(ctx, `INSERT INTO t (x) VALUES (101)`)
			return err
		})
	}()
	r.synced()
	r.answered(d, l)
}

// After a failed fsync the next batch is refused at once, without
// gathering first.
func TestNoGatherAfterAFailedSync(t *testing.T) {
	r := newGatherRig(t)
	batch := r.largeBatch(10)
	next := r.insert(100)
	select {
	case <-r.began:
	case <-time.After(10 * time.Second):
		t.Fatal("no fsync began")
	}
	r.release <- errors.New("input/output error")
	for _, c := range append(batch, next) {
		select {
		case err := <-c:
			if err == nil {
				t.Error("a write was answered as stored after its fsync failed")
			}
		case <-time.After(10 * time.Second):
			t.Fatal("a write was not answered after the fsync failed")
		}
	}
	if n := r.w.gathers.Load(); n != 0 {
		t.Errorf("%d batches gathered after the fsync failed", n)
	}
}

// The stream's end is timed from the fsync's return, as the syncer saw
// it: a writer busy with a slow lazy batch then, that sees it later, does
// not take a durable write long after for part of the stream.
func TestGatherTimedFromTheFsync(t *testing.T) {
	r := newGatherRig(t)
	r.w.gatherFor = 50 * time.Millisecond
	batch := r.largeBatch(10)
	slow := make(chan error, 1)
	go func() {
		slow <- r.w.do(t.Context(), true, func(context.Context, *sqlstore.Tx) error {
			time.Sleep(6 * r.w.gatherFor)
			return nil
		})
	}()
	r.waitFor("the slow lazy write taken", func() bool { return len(r.w.queue) == 0 })
	time.Sleep(10 * time.Millisecond)
	r.synced()
	r.answered(batch...)
	time.Sleep(3 * r.w.gatherFor)
	d := r.insert(100)
	r.answered(slow)
	r.synced()
	r.answered(d)
	if n := r.w.gathers.Load(); n != 0 {
		t.Errorf("a write that came %v after the stream's last fsync gathered", 3*r.w.gatherFor)
	}
}
