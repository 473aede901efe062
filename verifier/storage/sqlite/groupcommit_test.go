package sqlite

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/clearance/clearance/verifier/storage"
)

// fleet opens a store at path with n enrolled devices, dev-1 … dev-n.
func fleet(t *testing.T, path string, n int) (*Store, []storage.Device) {
	t.Helper()
	s := open(t, path)
	must(t, s.CreateEnrollSecret(t.Context(), secret("s"), storage.AuditEvent{At: t0}))
	ds := make([]storage.Device, n)
	for i := range ds {
		d, _, err := s.EnrollDevice(t.Context(), enrollment(i+1, "s"))
		must(t, err)
		ds[i] = d
	}
	return s, ds
}

func report(d storage.Device, seq uint64) storage.Report {
	return storage.Report{DeviceID: d.ID, Seq: seq, ObservedAt: t0, ReceivedAt: t0, Payload: []byte("p"), Signature: []byte("s"), Key: d.PublicKey}
}

// holdWriter takes the store's only write connection until the returned
// function is called, so the report writer waits to begin its transaction.
func holdWriter(t *testing.T, s *Store) (release func()) {
	t.Helper()
	held, done := make(chan struct{}), make(chan struct{})
	errc := make(chan error, 1)
	go func() {
		tx, err := s.w.BeginTx(context.Background(), nil)
		if err != nil {
			errc <- err
			close(held)
			return
		}
		close(held)
		<-done
		errc <- tx.Rollback()
	}()
	<-held
	var once sync.Once
	release = func() {
		once.Do(func() {
			close(done)
			must(t, <-errc)
		})
	}
	t.Cleanup(release)
	return release
}

// waitQueued waits until n calls wait in the writer's queue.
func waitQueued(s *Store, n int) {
	for len(s.reports.queue) < n {
		runtime.Gosched()
	}
}

func lastSeq(t *testing.T, s *Store, id string) uint64 {
	t.Helper()
	d, err := s.GetDevice(t.Context(), id)
	must(t, err)
	return d.LastSeq
}

// Reports that wait together are committed together.
func TestSaveReportGroupsCommits(t *testing.T) {
	const n = 20
	s, ds := fleet(t, filepath.Join(t.TempDir(), "clearance.db"), n)
	release := holdWriter(t, s)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i, d := range ds {
		wg.Go(func() { errs[i] = s.SaveReport(t.Context(), report(d, 1), nil, 10) })
	}
	// The writer holds one call while it waits for the connection.
	waitQueued(s, n-1)
	release()
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("report of %s: %v", ds[i].ID, err)
		}
		if got := lastSeq(t, s, ds[i].ID); got != 1 {
			t.Errorf("%s: LastSeq = %d, want 1", ds[i].ID, got)
		}
	}
	if got := s.reports.commits.Load(); got != 1 {
		t.Errorf("%d reports took %d commits, want 1", n, got)
	}
}

// A caller that gives up while its report waits gets ctx.Err(), at once,
// and the report is not written; the others are.
func TestSaveReportCanceledWhileWaiting(t *testing.T) {
	s, ds := fleet(t, filepath.Join(t.TempDir(), "clearance.db"), 2)
	release := holdWriter(t, s)
	ctx, cancel := context.WithCancel(t.Context())
	canceled, other := make(chan error, 1), make(chan error, 1)
	go func() { canceled <- s.SaveReport(ctx, report(ds[0], 1), nil, 10) }()
	go func() { other <- s.SaveReport(t.Context(), report(ds[1], 1), nil, 10) }()
	waitQueued(s, 1)
	cancel()
	// Answered while the writer is still blocked.
	if err := <-canceled; !errors.Is(err, context.Canceled) {
		t.Errorf("canceled call: %v, want %v", err, context.Canceled)
	}
	release()
	must(t, <-other)
	if got := lastSeq(t, s, ds[0].ID); got != 0 {
		t.Errorf("canceled report was written: LastSeq = %d", got)
	}
	if _, err := s.LatestReport(t.Context(), ds[0].ID); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("LatestReport of the canceled device: %v, want %v", err, storage.ErrNotFound)
	}
	if got := lastSeq(t, s, ds[1].ID); got != 1 {
		t.Errorf("other report: LastSeq = %d, want 1", got)
	}
}

// A caller that gives up after its report was taken gets the real result:
// the report is stored, and the agent gets no false error to act on.
func TestSaveReportCanceledAfterTaken(t *testing.T) {
	s, ds := fleet(t, filepath.Join(t.TempDir(), "clearance.db"), 1)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	s.reports.afterTake = cancel
	if err := s.SaveReport(ctx, report(ds[0], 1), nil, 10); err != nil {
		t.Fatalf("SaveReport: %v, want the stored report's nil", err)
	}
	if ctx.Err() == nil {
		t.Fatal("the context was not canceled")
	}
	if got := lastSeq(t, s, ds[0].ID); got != 1 {
		t.Errorf("LastSeq = %d, want 1", got)
	}
	// A context that ended before the call stores nothing.
	s.reports.afterTake = nil
	if err := s.SaveReport(ctx, report(ds[0], 2), nil, 10); !errors.Is(err, context.Canceled) {
		t.Errorf("SaveReport with an ended context: %v, want %v", err, context.Canceled)
	}
	if got := lastSeq(t, s, ds[0].ID); got != 1 {
		t.Errorf("LastSeq = %d, want 1", got)
	}
}

// Close with a full queue and callers blocked on it: the batch being
// committed is answered with its result, every other call with ErrClosed,
// and none hangs.
func TestCloseWithReportsWaiting(t *testing.T) {
	const n = queueLen + 10
	path := filepath.Join(t.TempDir(), "clearance.db")
	s, ds := fleet(t, path, n)
	release := holdWriter(t, s)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i, d := range ds {
		wg.Go(func() { errs[i] = s.SaveReport(t.Context(), report(d, 1), nil, 10) })
	}
	waitQueued(s, queueLen)
	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	<-s.reports.stop
	release()
	wg.Wait()
	must(t, <-closed)

	stored, refused := 0, 0
	for i, err := range errs {
		switch {
		case err == nil:
			stored++
		case errors.Is(err, ErrClosed):
			refused++
		default:
			t.Errorf("report of %s: %v", ds[i].ID, err)
		}
	}
	// The writer had taken one report and filled its batch from the queue.
	if stored != maxBatch || refused != n-maxBatch {
		t.Errorf("%d stored, %d refused; want %d and %d", stored, refused, maxBatch, n-maxBatch)
	}
	if err := s.SaveReport(t.Context(), report(ds[0], 2), nil, 10); !errors.Is(err, ErrClosed) {
		t.Errorf("SaveReport after Close: %v, want %v", err, ErrClosed)
	}

	// What the callers were told is what is on disk.
	s = open(t, path)
	for i, d := range ds {
		want := uint64(0)
		if errs[i] == nil {
			want = 1
		}
		if got := lastSeq(t, s, d.ID); got != want {
			t.Errorf("%s: LastSeq = %d after reopening, want %d", d.ID, got, want)
		}
	}
}

// BenchmarkSaveReportParallel is BenchmarkSaveReport with many devices
// reporting at once: the writer's cost per report once commits are shared.
func BenchmarkSaveReportParallel(b *testing.B) {
	ctx := context.Background()
	const perCPU = 32
	n := perCPU * runtime.GOMAXPROCS(0)
	s := open(b, filepath.Join(b.TempDir(), "clearance.db"))
	must(b, s.CreateEnrollSecret(ctx, secret("a"), storage.AuditEvent{At: t0}))
	ds := make([]storage.Device, n)
	for i := range ds {
		d, _, err := s.EnrollDevice(ctx, enrollment(i+1, "a"))
		must(b, err)
		ds[i] = d
	}
	payload := bytes.Repeat([]byte("posture-report-"), 2048/15+1)[:2048]
	sig := bytes.Repeat([]byte{0x30}, 72)
	var next atomic.Int64
	b.SetBytes(int64(len(payload)))
	b.SetParallelism(perCPU)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		d := ds[next.Add(1)-1]
		seq := uint64(0)
		for pb.Next() {
			seq++
			now := t0.Add(time.Duration(seq) * time.Second)
			r := storage.Report{DeviceID: d.ID, Seq: seq, ObservedAt: now, ReceivedAt: now, Payload: payload, Signature: sig, Key: d.PublicKey}
			if err := s.SaveReport(ctx, r, nil, 100); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/float64(s.reports.commits.Load()), "reports/commit")
}
