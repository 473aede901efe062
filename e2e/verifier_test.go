package e2e

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/clearance/clearance/internal/protoagent"
	"github.com/clearance/clearance/internal/testkit"
	adminv1 "github.com/clearance/clearance/proto/gen/clearance/admin/v1"
	agentv1 "github.com/clearance/clearance/proto/gen/clearance/agent/v1"
)

// TestVerifierEnrollReportRestart drives the real verifier binary with a
// client built only from the proto: enroll, Connect, PolicySet, a signed
// report visible through GetDevice, and all of it again after a restart.
func TestVerifierEnrollReportRestart(t *testing.T) {
	t.Parallel()
	dataDir := t.TempDir()
	v := startVerifier(t, dataDir)

	// 1. An enroll secret from the CLI, while the server runs.
	secret := lastLine(cli(t, "secret", "create", "--data-dir", dataDir, "--description", "e2e"))
	if !strings.Contains(secret, ".") {
		t.Fatalf("secret create printed %q", secret)
	}

	// 2. Enroll.
	a, err := protoagent.New(v.grpcAddr, v.rootPEM(), "6F1D4C1A-2B3C-4D5E-8F90-0123456789AB")
	if err != nil {
		t.Fatal(err)
	}
	admin, ctx := v.admin()
	enr, err := a.Enroll(ctx, secret)
	if err != nil {
		t.Fatal(err)
	}
	if enr.GetDeviceId() == "" || len(enr.GetCaChain()) != 2 {
		t.Fatalf("enroll response: %v", enr)
	}

	// 3. Connect: the policy set arrives first.
	st, err := a.Connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ps := st.PolicySet
	if len(ps.GetPolicies()) == 0 || ps.GetVersion() == "" {
		t.Fatalf("policy set: %v", ps)
	}

	// 4. A signed report is acked and visible through GetDevice.
	m, err := st.Exchange(protoagent.Sign(a.Key, a.Report(ps, 1, time.Now(), nil, agentv1.PolicyStatus_POLICY_STATUS_PASS)))
	if err != nil || m.GetAck().GetSeq() != 1 {
		t.Fatalf("report: %v %v", m, err)
	}
	got, err := admin.GetDevice(ctx, &adminv1.GetDeviceRequest{DeviceId: a.DeviceID})
	if err != nil {
		t.Fatal(err)
	}
	checkDevice(t, got, 1, true)

	// The HTTP listener: health and the metrics an operator alerts on.
	if body := v.get(t, "/healthz"); strings.TrimSpace(body) != "ok" {
		t.Fatalf("/healthz = %q", body)
	}
	metrics := v.get(t, "/metrics")
	if status, _ := v.getStatus(t, "/metrics"); status != http.StatusUnauthorized {
		t.Errorf("/metrics without the metrics token: %d, want 401", status)
	}
	for _, want := range []string{
		"clearance_reports_accepted_total 1",
		"clearance_agents_connected 1",
		`clearance_enrollments_total{outcome="enrolled"} 1`,
		"clearance_ingest_duration_seconds_count 1",
		// Counted at start and every minute: every state is always there.
		`clearance_devices{state="compliant"}`,
		`clearance_devices{state="offline"}`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	st.Close()

	// Secrets never reach the log.
	for name, secretValue := range map[string]string{"enroll secret": secret, "admin token": v.token()} {
		if strings.Contains(v.logs.String(), secretValue) {
			t.Errorf("verifier log contains the %s", name)
		}
	}

	// 5. Restart: same CA, same device, seq continues and cannot go back.
	rootBefore := string(v.rootPEM())
	v.stop()
	v = startVerifier(t, dataDir)
	if string(v.rootPEM()) != rootBefore {
		t.Fatal("restart made a new CA")
	}
	admin, ctx = v.admin()
	got, err = admin.GetDevice(ctx, &adminv1.GetDeviceRequest{DeviceId: a.DeviceID})
	if err != nil {
		t.Fatal(err)
	}
	checkDevice(t, got, 1, false)

	a.Addr = v.grpcAddr
	st, err = a.Connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	_, err = st.Exchange(protoagent.Sign(a.Key, a.Report(ps, 1, time.Now(), nil, agentv1.PolicyStatus_POLICY_STATUS_FAIL)))
	if status.Code(err) != codes.AlreadyExists {
		t.Fatalf("seq 1 again after restart: %v, want AlreadyExists", err)
	}
	st, err = a.Connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	m, err = st.Exchange(protoagent.Sign(a.Key, a.Report(ps, 2, time.Now(), nil, agentv1.PolicyStatus_POLICY_STATUS_FAIL)))
	if err != nil || m.GetAck().GetSeq() != 2 {
		t.Fatalf("report after restart: %v %v", m, err)
	}
	got, err = admin.GetDevice(ctx, &adminv1.GetDeviceRequest{DeviceId: a.DeviceID})
	if err != nil {
		t.Fatal(err)
	}
	if got.GetDevice().GetLastSeq() != 2 || got.GetDevice().GetSummary().GetCompliant() {
		t.Fatalf("after failing report: %v", got.GetDevice())
	}
	for _, p := range got.GetPolicies() {
		if p.GetStatus() != agentv1.PolicyStatus_POLICY_STATUS_FAIL {
			t.Fatalf("policy %s = %s, want FAIL", p.GetPolicyId(), p.GetStatus())
		}
	}
}

// get fetches a path from the HTTPS listener, trusting only ca.pem.
func (v *verifier) get(t *testing.T, path string) string {
	t.Helper()
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(v.rootPEM())
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: "localhost"}}}
	req, _ := http.NewRequest(http.MethodGet, "https://"+v.httpAddr+path, nil)
	if path == "/metrics" {
		// As Prometheus scrapes: with the data dir's metrics token.
		req.Header.Set("Authorization", "Bearer "+v.readToken("metrics.token"))
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s %s", path, resp.Status, b)
	}
	return string(b)
}

// TestSighupReloadsPolicies edits the policy file under a running verifier
// and sends SIGHUP: a broken file is refused and logged, a good one served.
func TestSighupReloadsPolicies(t *testing.T) {
	t.Parallel()
	orig, err := os.ReadFile(policiesFile(t))
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "policies.yaml")
	if err := os.WriteFile(file, orig, 0o600); err != nil {
		t.Fatal(err)
	}
	v := startVerifierWith(t, t.TempDir(), file)
	admin, ctx := v.admin()
	before, err := admin.ListPolicies(ctx, &adminv1.ListPoliciesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	version := func() string {
		r, err := admin.ListPolicies(ctx, &adminv1.ListPoliciesRequest{})
		if err != nil {
			t.Fatal(err)
		}
		return r.GetPolicySet().GetVersion()
	}

	if err := os.WriteFile(file, []byte("policies: []\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_ = v.cmd.Process.Signal(syscall.SIGHUP)
	waitFor(t, "the refused reload in the log", func() bool { return strings.Contains(v.logs.String(), "policy reload failed") })
	if version() != before.GetPolicySet().GetVersion() {
		t.Fatal("a broken file replaced the policy set")
	}

	if err := os.WriteFile(file, []byte(strings.Replace(string(orig), "name: Firewall is on", "name: The firewall is on", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	_ = v.cmd.Process.Signal(syscall.SIGHUP)
	waitFor(t, "the new policy set", func() bool { return version() != before.GetPolicySet().GetVersion() })
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testkit.Eventually(t, 15*time.Second, what, cond)
}

func checkDevice(t *testing.T, got *adminv1.GetDeviceResponse, seq uint64, connected bool) {
	t.Helper()
	d := got.GetDevice()
	if d.GetLastSeq() != seq || got.GetLatestReport().GetReport().GetSeq() != seq {
		t.Fatalf("last seq %d / report seq %d, want %d", d.GetLastSeq(), got.GetLatestReport().GetReport().GetSeq(), seq)
	}
	if d.GetConnected() != connected {
		t.Fatalf("connected = %v, want %v", d.GetConnected(), connected)
	}
	if d.GetFacts().GetHardwareUuid() != "6F1D4C1A-2B3C-4D5E-8F90-0123456789AB" || d.GetStatus() != adminv1.DeviceStatus_DEVICE_STATUS_ACTIVE {
		t.Fatalf("device: %v", d)
	}
	if s := d.GetSummary(); !s.GetCompliant() || s.GetPass() != uint32(len(got.GetPolicies())) || s.GetFail()+s.GetError()+s.GetMissing() != 0 {
		t.Fatalf("summary: %v", s)
	}
}
