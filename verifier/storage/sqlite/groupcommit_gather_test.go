package sqlite

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/clearance/clearance/verifier/storage/sqlstore"
)

// newGatherRig is a writer whose fsyncs the test holds and lets go, and
// which waits as long as it takes for a batch to gather; with it, insert
// queues a durable write, synced lets the next fsync return once it has
// begun, answered waits for writes' answers, and stored says whether a
// write is in the table.
func newGatherRig(t *testing.T) (*reportWriter, func(x int) chan error, func(), func(...chan error), func(x int) bool) {
	t.Helper()
	db, w := faultWriter(t, `CREATE TABLE t (x INTEGER PRIMARY KEY)`)
	w.gatherFor = time.Hour
	began := make(chan struct{}, 8)
	release := make(chan error)
	w.syncWAL = func() error { began <- struct{}{}; return <-release }
	t.Cleanup(func() {
		// Whatever fsync is still held is let go, so the writer can stop.
		for {
			select {
			case release <- nil:
			case <-time.After(100 * time.Millisecond):
				return
			}
		}
	})
	insert := func(x int) chan error {
		c := make(chan error, 1)
		go func() {
			c <- w.do(t.Context(), false, func(ctx context.Context, tx *sqlstore.Tx) error {
				_, err := tx.ExecContext(ctx, `INSERT INTO t (x) VALUES (?)`, x)
				return err
			})
		}()
		return c
	}
	// synced waits for the next fsync to begin, and lets it return.
	synced := func() {
		t.Helper()
		select {
		case <-began:
		case <-time.After(10 * time.Second):
			t.Fatal("no fsync began")
		}
		release <- nil
	}
	answered := func(cs ...chan error) {
		t.Helper()
		for _, c := range cs {
			select {
			case err := <-c:
				must(t, err)
			case <-time.After(10 * time.Second):
				t.Fatal("a durable write was not answered")
			}
		}
	}
	stored := func(x int) bool {
		t.Helper()
		var n int
		must(t, db.QueryRowContext(t.Context(), `SELECT count(*) FROM t WHERE x = ?`, x).Scan(&n))
		return n == 1
	}
	return w, insert, synced, answered, stored
}

// waitFor polls cond until it holds, failing the test after 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not after 10 s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// A durable batch waits for more writes only after a durable batch of at
// least gatherAfter: then it is not committed until gatherTo writes are
// there (or gatherFor has passed), and one commit and one fsync take them
// all. Writes that come one at a time, as sign-ins' decisions do, never
// wait.
func TestDurableBatchGathersAfterALargeOne(t *testing.T) {
	w, insert, synced, answered, stored := newGatherRig(t)

	// 1. Lone durable writes: none waits.
	for x := 1; x <= 3; x++ {
		c := insert(x)
		synced()
		answered(c)
	}
	if n := w.gathers.Load(); n != 0 {
		t.Fatalf("%d batches waited for more writes after batches of one", n)
	}

	// 2. gatherAfter durable writes queue while one is being synced, and
	// are committed in one batch.
	first := insert(100)
	waitFor(t, "the first write committed", func() bool { return stored(100) })
	var batch []chan error
	for i := range gatherAfter {
		batch = append(batch, insert(200+i))
	}
	// The writer holds the first of them, waiting for the fsync.
	waitFor(t, "the writes queued", func() bool { return len(w.queue) == gatherAfter-1 })
	synced()
	answered(first)
	waitFor(t, "the batch committed", func() bool { return stored(200 + gatherAfter - 1) })

	// 3. The next durable write waits for more, uncommitted.
	commits := w.commits.Load()
	next := insert(300)
	synced()
	answered(batch...)
	waitFor(t, "the next batch gathering", func() bool { return w.gathers.Load() == 1 })
	if stored(300) {
		t.Fatal("a gathering batch was committed before gatherTo writes were queued")
	}

	// 4. Once gatherTo are there, one commit takes them all.
	more := []chan error{next}
	for i := range gatherTo - 1 {
		more = append(more, insert(400+i))
	}
	synced()
	answered(more...)
	if got := w.commits.Load() - commits; got != 1 {
		t.Errorf("the gathered writes took %d commits, want 1", got)
	}
	for _, x := range []int{300, 400, 400 + gatherTo - 2} {
		if !stored(x) {
			t.Errorf("write %d not stored", x)
		}
	}
}

// Closing the store while a batch gathers: the writer stops waiting, the
// batch's write is answered, and what it was told is what is stored.
func TestCloseWhileGathering(t *testing.T) {
	w, insert, synced, answered, stored := newGatherRig(t)
	// Longer than the test waits for close, short enough that a writer
	// that did not stop waiting still lets the test end.
	w.gatherFor = 30 * time.Second
	first := insert(1)
	waitFor(t, "the first write committed", func() bool { return stored(1) })
	var batch []chan error
	for i := range gatherAfter {
		batch = append(batch, insert(10+i))
	}
	// The writer holds the first of them, waiting for the fsync.
	waitFor(t, "the writes queued", func() bool { return len(w.queue) == gatherAfter-1 })
	synced()
	answered(first)
	waitFor(t, "the batch committed", func() bool { return stored(10 + gatherAfter - 1) })
	last := insert(100)
	synced()
	answered(batch...)
	waitFor(t, "the next batch gathering", func() bool { return w.gathers.Load() == 1 })

	closed := make(chan error, 1)
	go func() { closed <- w.close() }()
	// The gathering batch is committed as the writer stops, and synced.
	go synced()
	select {
	case err := <-closed:
		must(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("close waited for a gathering batch")
	}
	err := <-last
	switch {
	case err == nil && !stored(100):
		t.Error("the gathering write was answered as stored and is not")
	case errors.Is(err, ErrClosed) && stored(100):
		t.Error("the gathering write was answered ErrClosed and is stored")
	case err != nil && !errors.Is(err, ErrClosed):
		t.Errorf("the gathering write: %v, want nil or ErrClosed", err)
	}
}
