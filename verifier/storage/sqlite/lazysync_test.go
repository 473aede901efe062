package sqlite

import (
	"context"
	"errors"
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
	began   chan struct{}
	release chan error
}

func newHeldSyncs(t *testing.T) *heldSyncs {
	t.Helper()
	_, w := faultWriter(t, `CREATE TABLE t (x INTEGER PRIMARY KEY)`)
	h := &heldSyncs{w: w, began: make(chan struct{}, 8), release: make(chan error)}
	w.syncWAL = func() error { h.calls.Add(1); h.began <- struct{}{}; return <-h.release }
	return h
}

func (h *heldSyncs) syncAfter(ctx context.Context, after time.Time) chan error {
	c := make(chan error, 1)
	go func() { c <- h.w.syncAfter(ctx, after) }()
	return c
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

// syncAfter answers a caller only after an fsync that began after the
// instant it names; callers whose instant precedes a running fsync's start
// share it, and a later one gets an fsync of its own.
func TestSyncAfterSharesAnFsyncThatBeganLater(t *testing.T) {
	h := newHeldSyncs(t)
	ctx := t.Context()

	first, second := time.Now(), time.Now()
	a := h.syncAfter(ctx, first)
	h.began1(t)
	b := h.syncAfter(ctx, second) // committed before the running fsync began: it waits for that one
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

	// Committed after that fsync began: a new one.
	c := h.syncAfter(ctx, time.Now())
	h.began1(t)
	unanswered(t, c, "a caller committed after the last fsync began")
	h.release <- nil
	if err := answer(t, c); err != nil {
		t.Fatal(err)
	}
	if n := h.calls.Load(); n != 2 {
		t.Fatalf("%d fsyncs, want 2", n)
	}

	// An instant before the last successful fsync began: nothing to do.
	if err := answer(t, h.syncAfter(ctx, first)); err != nil {
		t.Fatal(err)
	}
	if n := h.calls.Load(); n != 2 {
		t.Fatalf("%d fsyncs after a caller already covered, want 2", n)
	}
}

// A failed fsync is the writer's: its caller, every later caller that
// needs an fsync and every durable write get the error, and the failed
// fsync covers nothing.
func TestSyncAfterFailureSticks(t *testing.T) {
	h := newHeldSyncs(t)
	ctx := t.Context()
	before := time.Now()
	a := h.syncAfter(ctx, before)
	h.began1(t)
	b := h.syncAfter(ctx, before)
	h.release <- syscall.EIO
	if err := answer(t, a); !errors.Is(err, syscall.EIO) {
		t.Fatalf("first caller: %v, want EIO", err)
	}
	// The second waited for a fsync that failed: it is not covered, and the
	// error stays without another fsync.
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

// A caller waiting for another's fsync gives up when its context ends.
func TestSyncAfterContext(t *testing.T) {
	h := newHeldSyncs(t)
	a := h.syncAfter(t.Context(), time.Now())
	h.began1(t)
	ctx, cancel := context.WithCancel(t.Context())
	b := h.syncAfter(ctx, time.Now())
	cancel()
	if err := answer(t, b); !errors.Is(err, context.Canceled) {
		t.Fatalf("canceled caller: %v", err)
	}
	h.release <- nil
	if err := answer(t, a); err != nil {
		t.Fatal(err)
	}
}

// Through the store: a lazy decision is visible once appended, and durable
// waits for an fsync that began after its commit; a failed one is named.
func TestAppendDecisionLazy(t *testing.T) {
	ctx := t.Context()
	s, err := Open(ctx, t.TempDir()+"/clearance.db")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	var calls atomic.Int64
	fail := atomic.Bool{}
	s.reports.syncWAL = func() error {
		calls.Add(1)
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
	before := calls.Load()
	if err := durable(ctx); err != nil {
		t.Fatal(err)
	}
	if calls.Load() != before+1 {
		t.Fatalf("durable made %d fsyncs, want 1", calls.Load()-before)
	}

	rec.RequestID = "id-2"
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
