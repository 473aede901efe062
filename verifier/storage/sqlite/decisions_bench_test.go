package sqlite

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/clearance/clearance/verifier/storage"
)

// cloudflareBatch is the decisions one Cloudflare posture request records.
func cloudflareBatch(now time.Time) []storage.DecisionRecord {
	ds := make([]storage.DecisionRecord, 1000)
	for i := range ds {
		ds[i] = storage.DecisionRecord{
			At: now, Username: fmt.Sprintf("user%d@example.com", i), DeviceID: fmt.Sprintf("dev-%04d", i),
			Allow: true, Reason: "allowed", PolicySetVersion: "sha256:3b1f", ReportSeq: 42, LiveCheck: "none",
			Results: []storage.DecisionResult{{PolicyID: "filevault", Status: "PASS", Required: true}, {PolicyID: "firewall", Status: "PASS", Required: true}},
			Latency: time.Millisecond, Source: storage.SourceCloudflare, RequestID: fmt.Sprintf("cf-%04d", i), Score: 100,
		}
	}
	return ds
}

// BenchmarkAppendDecisionsBatch records a Cloudflare batch of 1,000
// evaluations in one commit (what the posture endpoint does).
func BenchmarkAppendDecisionsBatch(b *testing.B) {
	s := open(b, filepath.Join(b.TempDir(), "clearance.db"))
	ds := cloudflareBatch(time.Now())
	for b.Loop() {
		must(b, s.AppendDecisions(context.Background(), ds))
	}
	b.ReportMetric(float64(b.N*len(ds))/b.Elapsed().Seconds(), "rows/s")
}

// BenchmarkAppendDecisionsOneByOne records the same 1,000 evaluations one
// durable append at a time, as a sign-in records its one decision: what
// the batch saves.
func BenchmarkAppendDecisionsOneByOne(b *testing.B) {
	s := open(b, filepath.Join(b.TempDir(), "clearance.db"))
	ds := cloudflareBatch(time.Now())
	for b.Loop() {
		for _, d := range ds {
			if _, err := s.AppendDecision(context.Background(), d); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(b.N*len(ds))/b.Elapsed().Seconds(), "rows/s")
}
