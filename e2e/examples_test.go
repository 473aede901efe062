package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestExampleServiceUnit: the systemd unit in examples/ is one systemd
// accepts as written, every key known, with the real binary in place of
// the installed one.
func TestExampleServiceUnit(t *testing.T) {
	t.Parallel()
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze is not installed here")
	}
	raw, err := os.ReadFile("../examples/clearance-verifier.service")
	if err != nil {
		t.Fatal(err)
	}
	bin, err := filepath.Abs(filepath.Join(binDir, "clearance-verifier"))
	if err != nil {
		t.Fatal(err)
	}
	unit := strings.ReplaceAll(string(raw), "/usr/local/bin/clearance-verifier", bin)
	if unit == string(raw) {
		t.Fatal("the unit does not run /usr/local/bin/clearance-verifier")
	}
	p := filepath.Join(t.TempDir(), "clearance-verifier.service")
	if err := os.WriteFile(p, []byte(unit), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(analyze, "verify", "--man=no", p).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
}
