package loadgen

import (
	"context"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// verifierBinary builds clearance-verifier for the test, as the e2e tests
// do, so the test never depends on a `make build` left lying around.
func verifierBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "clearance-verifier")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/clearance/clearance/verifier/cmd/clearance-verifier")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building clearance-verifier: %v\n%s", err, out)
	}
	return bin
}

// TestRunAgainstVerifier runs every phase against the real verifier binary
// with 20 agents, and checks what a user of the numbers relies on: every
// agent connected and stayed connected, reports were acked, sign-ins from
// passing Macs were allowed and from failing ones denied (checkFirst has
// Okta validate a response), live checks came back, and the verifier's
// RSS was read.
func TestRunAgainstVerifier(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the verifier")
	}
	bin := verifierBinary(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	p, err := Start(ctx, StartOptions{Binary: bin, Policies: "../../examples/policies.yaml", LiveCheckAfter: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := p.Stop(); err != nil {
			t.Errorf("verifier stopped with %v", err)
		}
	}()
	res, err := Run(ctx, Config{
		Target: &p.Target, Agents: 20, FailingShare: 0.25, SourceAddrs: 4,
		ReportInterval: 500 * time.Millisecond, Duration: 3 * time.Second,
		Signins: 2, CheckRate: 10,
	})
	if err != nil {
		t.Fatalf("run: %v\nverifier log: %s", err, p.LogTail())
	}
	if res.Connected != 20 || res.Failed != 0 {
		t.Errorf("%d agents connected at the end, %d failed to start; want 20 and 0", res.Connected, res.Failed)
	}
	for name, s := range map[string]Summary{
		"ingest": res.Ingest, "steady acks": res.SteadyIngest, "allowed sign-ins": res.Allow, "allowed sign-ins with the agent's proof": res.AllowAgent,
		"denied sign-ins": res.Deny, "sign-ins at rate": res.SigninsAtRate, "live checks": res.Check,
	} {
		if s.Count == 0 || s.P50 <= 0 || s.P99 < s.P50 {
			t.Errorf("%s: %+v; want some, with 0 < p50 <= p99", name, s)
		}
	}
	for _, kind := range []string{"start", "report", "signin", "check", "okta_request"} {
		if n := res.Errors[kind]; n > 0 {
			t.Errorf("%d %s errors", n, kind)
		}
	}
	if res.RSSBase == 0 || res.RSSConnected == 0 || res.RSS == 0 {
		t.Errorf("verifier RSS %d/%d/%d; want all read", res.RSSBase, res.RSSConnected, res.RSS)
	}
}
