package postgres_test

import (
	"testing"

	"github.com/clearance/clearance/internal/testkit/testpg"
	"github.com/clearance/clearance/verifier/storage/postgres"
	"github.com/clearance/clearance/verifier/storage/storagetest"
)

// BenchmarkCountAgentVersions is the read behind
// clearance_devices_by_agent_version, made once a minute by every
// replica, at 20,000 Macs.
func BenchmarkCountAgentVersions(b *testing.B) {
	testpg.Require(b)
	for _, tc := range []struct {
		name     string
		versions int
	}{{"3_versions", 3}, {"a_version_per_mac", 20000}} {
		b.Run(tc.name, func(b *testing.B) {
			s, err := postgres.Open(b.Context(), testpg.NewDatabase(b))
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { s.Close() })
			storagetest.BenchCountAgentVersions(b, s, 20000, tc.versions)
		})
	}
}
