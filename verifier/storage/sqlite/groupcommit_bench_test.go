package sqlite

import (
	"context"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/clearance/clearance/verifier/storage"
)

// BenchmarkLazyWrite is one sign-in's request ID at a time: every write a
// lazy batch of its own, so the cost of a lazy commit (no fsync) shows
// whole.
func BenchmarkLazyWrite(b *testing.B) {
	ctx := context.Background()
	s := open(b, filepath.Join(b.TempDir(), "clearance.db"))
	expires := time.Now().Add(time.Hour)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		must(b, s.UseRequestID(ctx, "https://okta.example", fmt.Sprintf("id-%d", i), expires))
	}
}

// BenchmarkSignInWrites is many certificate-bound sign-ins at once, each
// its request ID (lazy) then its decision (durable): lazy and durable
// batches alternate as they do under the sign-in benchmark.
func BenchmarkSignInWrites(b *testing.B) {
	ctx := context.Background()
	s := open(b, filepath.Join(b.TempDir(), "clearance.db"))
	expires := time.Now().Add(time.Hour)
	var next atomic.Int64
	b.SetParallelism(8)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := next.Add(1)
			if err := s.UseRequestID(ctx, "https://okta.example", fmt.Sprintf("id-%d", i), expires); err != nil {
				b.Error(err)
				return
			}
			d := storage.DecisionRecord{At: time.Now(), Username: "ada@example.com", Reason: "allowed", Allow: true, RequestID: fmt.Sprintf("id-%d", i)}
			if _, err := s.AppendDecision(ctx, d); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(s.reports.commits.Load())/float64(b.N), "commits/op")
	b.ReportMetric(float64(s.reports.lazyCommits.Load())/float64(b.N), "lazy/op")
}
