package sqlite

import (
	"context"
	"crypto/rand"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/clearance/clearance/verifier/storage"
)

// BenchmarkSaveReports is the report writer alone under a fleet's load:
// fleetSize devices, each already holding its keep reports (so every
// report also prunes one), report back to back from one goroutine each,
// as their streams do. It prints the writer's CPU per report (the whole
// process's, which here is the writer and its callers only) and how many
// reports a commit carries.
func BenchmarkSaveReports(b *testing.B) {
	const (
		fleetSize = 500
		keep      = 100
	)
	ctx := context.Background()
	s := open(b, filepath.Join(b.TempDir(), "clearance.db"))
	must(b, s.CreateEnrollSecret(ctx, secret("a"), storage.AuditEvent{At: t0}))
	devs := make([]storage.Device, fleetSize)
	for i := range devs {
		d, _, err := s.EnrollDevice(ctx, enrollment(i+1, "a"))
		must(b, err)
		devs[i] = d
	}
	// The sizes of a simulated agent's report: its payload, an ECDSA
	// signature and a PKIX key.
	payload := make([]byte, 420)
	sig := make([]byte, 71)
	rand.Read(payload)
	rand.Read(sig)
	seqs := make([]uint64, fleetSize)
	save := func(i int) error {
		seqs[i]++
		at := time.Now()
		return s.SaveReport(ctx, storage.Report{DeviceID: devs[i].ID, Seq: seqs[i], ObservedAt: at, ReceivedAt: at,
			Payload: payload, Signature: sig, Key: devs[i].PublicKey}, nil, keep)
	}
	// Every device at its keep, so that retention deletes from now on.
	fill := func(per int) {
		var wg sync.WaitGroup
		for i := range devs {
			wg.Go(func() {
				for range per {
					if err := save(i); err != nil {
						b.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
	}
	fill(keep)

	var left atomic.Int64
	left.Store(int64(b.N))
	commits := s.reports.commits.Load()
	cpu := cpuTime()
	b.ResetTimer()
	var wg sync.WaitGroup
	for i := range devs {
		wg.Go(func() {
			for left.Add(-1) >= 0 {
				if err := save(i); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	b.ReportMetric(float64(cpuTime()-cpu)/1e3/float64(b.N), "cpu-us/report")
	b.ReportMetric(float64(b.N)/float64(s.reports.commits.Load()-commits), "reports/commit")
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "reports/s")
}

// cpuTime is the CPU time (user and system) this process used so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
