package agentbuild_test

import (
	"os"
	"strings"
	"testing"

	"github.com/clearance/clearance/packaging/internal/agentbuild"
)

// TestBuildRefusesFlags: a version or commit with a space, or starting
// with '-', never reaches the linker's flags, whoever calls Build.
func TestBuildRefusesFlags(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ version, commit, want string }{
		{"1.0.0 -badflag", "", `version "1.0.0 -badflag"`},
		{"-X", "", `version "-X"`},
		{"1.2.3", "abc1234 -X main.x=y", `commit "abc1234 -X main.x=y"`},
		{"1.2.3", "-dirty", `commit "-dirty"`},
		{"1.2.3\t-s", "", `version "1.2.3\t-s"`},
	} {
		dir := t.TempDir()
		_, err := agentbuild.Build("arm64", tc.version, tc.commit, dir)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Build(%q, %q): %v, want an error naming %s", tc.version, tc.commit, err, tc.want)
		}
		if entries, _ := os.ReadDir(dir); len(entries) != 0 {
			t.Errorf("Build(%q, %q) wrote %v", tc.version, tc.commit, entries)
		}
	}
}
