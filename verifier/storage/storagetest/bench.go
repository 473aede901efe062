package storagetest

import (
	"fmt"
	"sync"
	"testing"

	"github.com/clearance/clearance/verifier/storage"
)

// BenchCountAgentVersions measures CountAgentVersions on s, an empty store
// it first fills with devices enrolled Macs (every tenth revoked) whose
// agents give, between them, versions distinct versions: a fleet
// mid-upgrade gives a few, one whose device keys were turned against the
// gauge one per Mac. Each backend's benchmark calls it.
func BenchCountAgentVersions(b *testing.B, s storage.Store, devices, versions int) {
	ctx := b.Context()
	sec := newSecret("fleet", t0)
	if err := s.CreateEnrollSecret(ctx, sec, storage.AuditEvent{At: t0, Actor: "cli", Action: "secret.create"}); err != nil {
		b.Fatal(err)
	}
	const workers = 8
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for n := w + 1; n <= devices; n += workers {
				e := newEnrollment(n, "fleet")
				e.Device.AgentVersion = fmt.Sprintf("1.%d.0", n%versions)
				if _, _, err := s.EnrollDevice(ctx, e); err != nil {
					b.Error(err)
					return
				}
				if n%10 == 0 {
					if _, err := s.RevokeDevice(ctx, e.Device.ID, "lost", at(hour), storage.AuditEvent{At: at(hour), Actor: "cli", Action: "device.revoke"}); err != nil {
						b.Error(err)
						return
					}
				}
			}
		})
	}
	wg.Wait()
	if b.Failed() {
		return
	}
	b.ResetTimer()
	var counts map[string]int
	for b.Loop() {
		var err error
		if counts, err = s.CountAgentVersions(ctx); err != nil {
			b.Fatal(err)
		}
	}
	total := 0
	for _, n := range counts {
		total += n
	}
	if want := devices - devices/10; total != want {
		b.Fatalf("counted %d devices, want %d", total, want)
	}
	b.ReportMetric(float64(len(counts)), "versions")
}
