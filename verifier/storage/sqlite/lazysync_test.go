package sqlite

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/clearance/clearance/verifier/storage"
	"github.com/clearance/clearance/verifier/storage/sqlstore"
)

// heldSyncs is a writer whose fsyncs the test holds and lets go.
type heldSyncs struct {
	w       *reportWriter
	calls   atomic.Int64
	next    atomic.Int64
	began   chan struct{}
	release chan error
}

func newHeldSyncs(t *testing.T) *heldSyncs {
	t.Helper()
	_, w := faultWriter(t, `CREATE TABLE t (x INTEGER PRIMARY KEY)`)
	h := &heldSyncs{w: w, began: make(chan struct{}, 8), release: make(chan error)}
	w.syncWAL = func() error { h.calls.Add(1); h.began <- struct{}{}; return <-h.release }
	t.Cleanup(func() {
		// Whatever fsync is still held is let go, so the writer can stop.
		for {
			select {
			case h.release <- nil:
			case <-time.After(100 * time.Millisecond):
				return
			}
		}
	})
	return h
}

func (h *heldSyncs) syncAfter(ctx context.Context, mark int64) chan error {
	c := make(chan error, 1)
	go func() { c <- h.w.syncAfter(ctx, mark) }()
	return c
}

// commit commits a lazy write and returns its mark.
func (h *heldSyncs) commit(t *testing.T) int64 {
	t.Helper()
	x := h.next.Add(1)
	if err := h.w.do(t.Context(), true, func(ctx context.Context, tx *sqlstore.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO t (x) VALUES (?)`, x)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return h.w.mark()
}

func (h *heldSyncs) began1(t *testing.T) {
	t.Helper()
	select {
	case <-h.began:
	case <-time.After(10 * time.Second):
		t.Fatal("no fsync began")
	}
}

func answer(t *testing.T, c chan error) error {
	t.Helper()
	select {
	case err := <-c:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("syncAfter did not return")
		return nil
	}
}

func unanswered(t *testing.T, c chan error, what string) {
	t.Helper()
	select {
	case err := <-c:
		t.Fatalf("%s returned (%v) before the fsync it needs", what, err)
	case <-time.After(50 * time.Millisecond):
	}
}

// syncAfter answers a caller only after an fsync that began once its
// write was committed; callers whose writes were committed before a
// running fsync began share it, and a write committed while it runs needs
// another.
func TestSyncAfterSharesAnFsyncThatBeganLater(t *testing.T) {
	h := newHeldSyncs(t)
	ctx := t.Context()

	first := h.commit(t)
	second := h.commit(t)
	a := h.syncAfter(ctx, first)
	h.began1(t)
	b := h.syncAfter(ctx, second) // committed before the running fsync began: it waits for that one
	during := h.commit(t)         // committed while it runs
	unanswered(t, a, "the first caller")
	unanswered(t, b, "a caller waiting on the running fsync")
	h.release <- nil
	if err := answer(t, a); err != nil {
		t.Fatal(err)
	}
	if err := answer(t, b); err != nil {
		t.Fatal(err)
	}
	if n := h.calls.Load(); n != 1 {
		t.Fatalf("%d fsyncs for two writes committed before the first began, want 1", n)
	}
	c := h.syncAfter(ctx, during)
	h.began1(t)
	unanswered(t, c, "a caller whose write was committed during the last fsync")
	h.release <- nil
	if err := answer(t, c); err != nil {
		t.Fatal(err)
	}
	if n := h.calls.Load(); n != 2 {
		t.Fatalf("%d fsyncs, want 2", n)
	}

	// Every write so far is covered: nothing to do.
	if err := answer(t, h.syncAfter(ctx, during)); err != nil {
		t.Fatal(err)
	}
	if n := h.calls.Load(); n != 2 {
		t.Fatalf("%d fsyncs after a caller already covered, want 2", n)
	}
}

// The syncer's fsyncs and syncAfter's never run at once (two fsyncs of
// one open file share the one report of a failed write-back), and a
// syncer's fsync that began after a write was committed covers it.
func TestSyncAfterAndTheSyncerTakeTurns(t *testing.T) {
	h := newHeldSyncs(t)
	ctx := t.Context()
	lazy := h.commit(t)
	durable := make(chan error, 1)
	go func() {
		durable <- h.w.do(ctx, false, func(ctx context.Context, tx *sqlstore.Tx) error {
			_, err := tx.ExecContext(ctx, `INSERT INTO t (x) VALUES (-1)`)
			return err
		})
	}()
	h.began1(t) // the syncer's, for the durable write
	covered := h.syncAfter(ctx, lazy)
	after := h.commit(t)
	late := h.syncAfter(ctx, after)
	select {
	case <-h.began:
		t.Fatal("an fsync began while the syncer's ran")
	case <-time.After(100 * time.Millisecond):
	}
	unanswered(t, covered, "a caller whose write the syncer's running fsync covers")
	h.release <- nil
	if err := answer(t, durable); err != nil {
		t.Fatal(err)
	}
	h.began1(t) // the late write's own (the covered caller may wait behind it)
	h.release <- nil
	if err := answer(t, covered); err != nil {
		t.Fatal(err)
	}
	if err := answer(t, late); err != nil {
		t.Fatal(err)
	}
	if n := h.calls.Load(); n != 2 {
		t.Fatalf("%d fsyncs, want 2: the syncer's covers the first write", n)
	}
}

// A failed fsync is the writer's: its caller, every later caller that
// needs an fsync and every durable write get the error, and the failed
// fsync covers nothing.
func TestSyncAfterFailureSticks(t *testing.T) {
	h := newHeldSyncs(t)
	ctx := t.Context()
	m := h.commit(t)
	a := h.syncAfter(ctx, m)
	h.began1(t)
	b := h.syncAfter(ctx, m)
	h.release <- syscall.EIO
	if err := answer(t, a); !errors.Is(err, syscall.EIO) {
		t.Fatalf("first caller: %v, want EIO", err)
	}
	// The second waited for an fsync that failed: it is not covered, and
	// the error stays without another fsync.
	if err := answer(t, b); !errors.Is(err, syscall.EIO) {
		t.Fatalf("second caller: %v, want the sticky EIO", err)
	}
	if n := h.calls.Load(); n != 1 {
		t.Fatalf("%d fsyncs, want 1: the error stays", n)
	}
	err := h.w.do(ctx, false, func(context.Context, *sqlstore.Tx) error { return nil })
	if !errors.Is(err, syscall.EIO) {
		t.Fatalf("a durable write after the failure: %v, want EIO", err)
	}
}

// A caller waiting for another's fsync gives up when its context ends;
// one that comes once the writer is stopping is told so, and the writer
// is not marked failed.
func TestSyncAfterContextAndClose(t *testing.T) {
	h := newHeldSyncs(t)
	m := h.commit(t)
	a := h.syncAfter(t.Context(), m)
	h.began1(t)
	ctx, cancel := context.WithCancel(t.Context())
	b := h.syncAfter(ctx, m)
	cancel()
	if err := answer(t, b); !errors.Is(err, context.Canceled) {
		t.Fatalf("canceled caller: %v", err)
	}
	h.release <- nil
	if err := answer(t, a); err != nil {
		t.Fatal(err)
	}

	// Closing waits for an fsync a caller began, on an open file: it
	// succeeds, and nothing is marked failed.
	m = h.commit(t)
	inFlight := h.syncAfter(t.Context(), m)
	h.began1(t)
	closed := make(chan error, 1)
	go func() { closed <- h.w.close() }()
	unanswered(t, closed, "close, with an fsync running")
	h.release <- nil
	if err := answer(t, inFlight); err != nil {
		t.Fatalf("the fsync running when the store closed: %v", err)
	}
	if err := answer(t, closed); err != nil {
		t.Fatal(err)
	}
	// A caller that comes once the writer is stopping is told so.
	if err := answer(t, h.syncAfter(t.Context(), h.commits()+1)); !errors.Is(err, ErrClosed) {
		t.Fatalf("after close: %v, want ErrClosed", err)
	}
	if p := h.w.syncFailed.Load(); p != nil {
		t.Fatalf("closing marked the writer failed: %v", *p)
	}
}

// Through the store: a lazy decision is visible once appended, durable
// waits for an fsync that began after its commit (one committed while an
// fsync runs needs the next), and a failed one is named.
func TestAppendDecisionLazy(t *testing.T) {
	ctx := t.Context()
	s, err := Open(ctx, t.TempDir()+"/clearance.db")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	var calls atomic.Int64
	var fail, hold atomic.Bool
	began, release := make(chan struct{}, 4), make(chan struct{})
	s.reports.syncWAL = func() error {
		calls.Add(1)
		if hold.Load() {
			began <- struct{}{}
			<-release
		}
		if fail.Load() {
			return syscall.EIO
		}
		return s.reports.fsyncWAL()
	}
	rec := storage.DecisionRecord{At: time.Now().UTC(), Username: "ada@example.com", DeviceID: "dev-1", Allow: true, Reason: "ok",
		Source: "sso", RequestID: "id-1", LiveCheck: "none"}
	id, durable, err := s.AppendDecisionLazy(ctx, rec)
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.ListDecisions(ctx, storage.DecisionFilter{Limit: 10})
	if err != nil || len(got) != 1 || got[0].ID != id {
		t.Fatalf("after the lazy append: %+v %v, want decision %d", got, err, id)
	}

	// Its fsync held: a decision committed meanwhile is not covered by it.
	hold.Store(true)
	first := make(chan error, 1)
	go func() { first <- durable(ctx) }()
	waitFor(t, began)
	rec.RequestID = "id-2"
	_, durable2, err := s.AppendDecisionLazy(ctx, rec)
	if err != nil {
		t.Fatal(err)
	}
	second := make(chan error, 1)
	go func() { second <- durable2(ctx) }()
	release <- struct{}{}
	if err := answer(t, first); err != nil {
		t.Fatal(err)
	}
	select {
	case <-began:
	case err := <-second:
		t.Fatalf("a decision committed during an fsync was made durable (%v) by it", err)
	case <-time.After(10 * time.Second):
		t.Fatal("no second fsync")
	}
	release <- struct{}{}
	if err := answer(t, second); err != nil {
		t.Fatal(err)
	}
	if n := calls.Load(); n != 2 {
		t.Fatalf("%d fsyncs, want 2", n)
	}
	hold.Store(false)

	rec.RequestID = "id-3"
	_, durable, err = s.AppendDecisionLazy(ctx, rec)
	if err != nil {
		t.Fatal(err)
	}
	fail.Store(true)
	err = durable(ctx)
	if !errors.Is(err, syscall.EIO) || !strings.Contains(err.Error(), "making decision") {
		t.Fatalf("durable after a failed fsync: %v", err)
	}
}

func waitFor(t *testing.T, c chan struct{}) {
	t.Helper()
	select {
	case <-c:
	case <-time.After(10 * time.Second):
		t.Fatal("no fsync began")
	}
}

// commits is the writer's commit count.
func (h *heldSyncs) commits() int64 { return h.w.mark() }

// A lazy write's mark, read as soon as the write is answered, counts the
// write's commit: the writer counts a batch before it answers any of it.
// Counted after, an fsync that began before the commit would be taken to
// cover it. The marks are read on the writer just before each answer:
// one batch of one write, held there while three more queue, then one
// batch of those three.
func TestLazyMarkCountsItsCommit(t *testing.T) {
	_, w := faultWriter(t, `CREATE TABLE t (x INTEGER PRIMARY KEY)`)
	entered, hold := make(chan struct{}), make(chan struct{})
	var marks []int64 // the writer's alone until every write is answered
	w.lazyAnswer = func() {
		if len(marks) == 0 {
			close(entered)
			select {
			case <-hold:
			case <-t.Context().Done():
			}
		}
		marks = append(marks, w.mark())
	}
	errs := make(chan error, 4)
	write := func(x int) {
		go func() {
			errs <- w.do(t.Context(), true, func(ctx context.Context, tx *sqlstore.Tx) error {
				_, err := tx.ExecContext(ctx, `INSERT INTO t (x) VALUES (?)`, x)
				return err
			})
		}()
	}
	write(0)
	select {
	case <-entered:
	case <-time.After(10 * time.Second):
		t.Fatal("the first write was not answered")
	}
	for x := 1; x <= 3; x++ {
		write(x)
	}
	for deadline := time.Now().Add(10 * time.Second); len(w.queue) < 3; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			close(hold)
			t.Fatalf("%d writes queued, want 3", len(w.queue))
		}
	}
	close(hold)
	for range 4 {
		select {
		case err := <-errs:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("a write was not answered")
		}
	}
	if want := []int64{1, 2, 2, 2}; !slices.Equal(marks, want) {
		t.Fatalf("marks read before each answer %v, want %v: a batch counted after an answer", marks, want)
	}
}
