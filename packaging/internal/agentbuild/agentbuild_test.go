package agentbuild_test

import (
	"bytes"
	"os"
	"testing"

	"github.com/clearance/clearance/packaging/internal/agentbuild"
)

// TestBuildLinksVersionAndCommit: the packaged agent says which source it
// was built from, as make build's binaries do.
func TestBuildLinksVersionAndCommit(t *testing.T) {
	t.Parallel()
	p, err := agentbuild.Build("arm64", "9.8.7", "c0ffee0123456789c0ffee0123456789c0ffee01", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	bin, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"9.8.7", "c0ffee0123456789c0ffee0123456789c0ffee01"} {
		if !bytes.Contains(bin, []byte(want)) {
			t.Errorf("the binary does not hold %q", want)
		}
	}
}
