package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/clearance/clearance/internal/protoagent"
	adminv1 "github.com/clearance/clearance/proto/gen/clearance/admin/v1"
	agentv1 "github.com/clearance/clearance/proto/gen/clearance/agent/v1"
)

// TestSIGHUPAppliesEnforcement follows docs/operations.md's rollout with
// the real binary: enforcement: monitor in the settings file lets a failing
// Mac through; once the line is removed and the verifier sent SIGHUP,
// ExplainAccess says enforce and denies, the log says the ceiling changed,
// and `policies` shows the new mode. The last log line says it stopped.
func TestSIGHUPAppliesEnforcement(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	settings := filepath.Join(t.TempDir(), "verifier.yaml")
	if err := os.WriteFile(settings, []byte("enforcement: monitor\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	v := startVerifierArgs(t, dir, append([]string{"--config", settings}, offSSO...)...)
	if !strings.Contains(v.logs.String(), "enforcement ceiling") {
		t.Fatalf("the start-up log does not say the ceiling:\n%s", v.logs.String())
	}

	// A Mac whose firewall is off.
	pa := enrollAgent(t, v.grpcAddr, v.rootPEM(), v.enrollSecret(), "5A1C0A7E-0000-4000-8000-0000000E0C7A")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	st, err := pa.Connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	rep := pa.Report(st.PolicySet, 1, time.Now(), nil, agentv1.PolicyStatus_POLICY_STATUS_PASS)
	for _, r := range rep.GetResults() {
		if r.GetPolicyId() == "firewall" {
			r.Status = agentv1.PolicyStatus_POLICY_STATUS_FAIL
		}
	}
	if m, err := st.Exchange(protoagent.Sign(pa.Key, rep)); err != nil || m.GetAck() == nil {
		t.Fatalf("report not acknowledged: %v, %v", m, err)
	}

	admin, actx := v.admin()
	explain := func() *adminv1.ExplainAccessResponse {
		t.Helper()
		resp, err := admin.ExplainAccess(actx, &adminv1.ExplainAccessRequest{DeviceId: pa.DeviceID})
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	if r := explain(); !r.GetAllow() || r.GetMode() != "monitor" {
		t.Fatalf("under enforcement: monitor: allow %v, mode %q", r.GetAllow(), r.GetMode())
	}
	if out := cli(t, "policies", "--data-dir", dir, "--wide"); !strings.Contains(out, "monitor (file: enforce)") {
		t.Fatalf("policies under monitor:\n%s", out)
	}

	// 3. Warn, with a grace period: the ceiling comes off, SIGHUP.
	if err := os.WriteFile(settings, []byte("# enforcement: monitor\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_ = v.cmd.Process.Signal(syscall.SIGHUP)
	waitFor(t, "mode enforce after SIGHUP", func() bool { return explain().GetMode() == "enforce" })
	if r := explain(); r.GetAllow() {
		t.Fatalf("a failing Mac is let in under enforce: %v", r)
	}
	if !strings.Contains(v.logs.String(), `msg="enforcement ceiling changed" component=server from=monitor to=enforce`) {
		t.Fatalf("the log does not say the ceiling changed:\n%s", v.logs.String())
	}
	resp, err := admin.ListPolicies(actx, &adminv1.ListPoliciesRequest{})
	if err != nil || resp.GetEnforcementCeiling() != "enforce" {
		t.Fatalf("ListPolicies ceiling %q, %v", resp.GetEnforcementCeiling(), err)
	}

	st.Close()
	v.stop()
	if !strings.Contains(v.logs.String(), "clearance-verifier stopped") {
		t.Fatalf("no last line when stopped:\n%s", v.logs.String())
	}
}
