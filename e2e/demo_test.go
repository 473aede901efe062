package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestDemo runs the script behind `make demo` (on free ports, in a temp data
// dir) and checks it tells the story the README promises.
func TestDemo(t *testing.T) {
	t.Parallel()
	data := filepath.Join(t.TempDir(), "demo-data")
	cmd := exec.Command("bash", "../scripts/demo.sh")
	cmd.Stdin = nil
	cmd.Env = append(os.Environ(),
		"BIN="+binDir, "DATA="+data, "DEMO_EXIT=1",
		"VERIFIER="+freePort(t), "HTTP="+freePort(t), "SSO="+freePort(t),
		"PATH="+filepath.Dir(grpcurlPath(t))+":"+os.Getenv("PATH"))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("demo failed: %v\n%s", err, out)
	}
	for _, want := range []string{
		"PASS  filevault", "=> compliant",
		"FAIL  filevault", "FAIL  firewall", "PASS  sip",
		"fresh signed report in", "=> not compliant",
		"HTTP 200: a signed SAMLResponse", "=> decision log: allowed",
		"HTTP 403: Your Mac needs attention", "=> decision log: policy_failed: filevault firewall",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("demo output lacks %q:\n%s", want, out)
		}
	}
}
