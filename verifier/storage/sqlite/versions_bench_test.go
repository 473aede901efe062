package sqlite

import (
	"path/filepath"
	"testing"

	"github.com/clearance/clearance/verifier/storage/storagetest"
)

// BenchmarkCountAgentVersions is the read behind
// clearance_devices_by_agent_version, made once a minute, at 20,000 Macs.
func BenchmarkCountAgentVersions(b *testing.B) {
	for _, tc := range []struct {
		name     string
		versions int
	}{{"3_versions", 3}, {"a_version_per_mac", 20000}} {
		b.Run(tc.name, func(b *testing.B) {
			storagetest.BenchCountAgentVersions(b, open(b, filepath.Join(b.TempDir(), "clearance.db")), 20000, tc.versions)
		})
	}
}
