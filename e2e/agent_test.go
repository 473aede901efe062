package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	adminv1 "github.com/clearance/clearance/proto/gen/clearance/admin/v1"
	agentv1 "github.com/clearance/clearance/proto/gen/clearance/agent/v1"
)

// proc is a running binary whose output is kept for failure reports.
type proc struct {
	t      *testing.T
	name   string
	cmd    *exec.Cmd
	logs   *syncBuffer
	exited chan error
}

func startProc(t *testing.T, name string, args ...string) *proc {
	t.Helper()
	return startProcEnv(t, name, nil, args...)
}

// startProcEnv is startProc with extra environment variables (KEY=VALUE).
func startProcEnv(t *testing.T, name string, env []string, args ...string) *proc {
	t.Helper()
	p := &proc{t: t, name: name, logs: &syncBuffer{}, exited: make(chan error, 1)}
	p.cmd = exec.Command(filepath.Join(binDir, name), args...)
	if env != nil {
		p.cmd.Env = append(os.Environ(), env...)
	}
	p.cmd.Stdout, p.cmd.Stderr = p.logs, p.logs
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.exited <- p.cmd.Wait() }()
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			t.Logf("%s log:\n%s", name, p.logs.String())
		}
	})
	return p
}

func (p *proc) stop() {
	if p.cmd.ProcessState != nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(20 * time.Second):
		_ = p.cmd.Process.Kill()
		p.t.Errorf("%s did not stop within 20s of SIGTERM", p.name)
	}
}

// agentStatus runs `clearance-agent status` with args (and env, KEY=VALUE,
// added to the environment) and returns what it printed and its exit code:
// the Mac's standing, 0 or 3 to 5. Any other code fails the test.
func agentStatus(t *testing.T, env []string, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(filepath.Join(binDir, "clearance-agent"), append([]string{"status"}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	code := cmd.ProcessState.ExitCode()
	if err != nil && (code < 3 || code > 5) {
		t.Fatalf("clearance-agent status: %v\n%s", err, out)
	}
	return string(out), code
}

// device polls GetDevice until cond holds or the wait runs out.
func waitDevice(t *testing.T, v *verifier, what string, within time.Duration, cond func(*adminv1.GetDeviceResponse) bool) *adminv1.GetDeviceResponse {
	t.Helper()
	admin, ctx := v.admin()
	deadline := time.Now().Add(within)
	for {
		list, err := admin.ListDevices(ctx, &adminv1.ListDevicesRequest{})
		if err == nil && len(list.GetDevices()) == 1 {
			got, err := admin.GetDevice(ctx, &adminv1.GetDeviceRequest{DeviceId: list.GetDevices()[0].GetDeviceId()})
			if err == nil && cond(got) {
				return got
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", within, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func statuses(got *adminv1.GetDeviceResponse) map[string]agentv1.PolicyStatus {
	m := map[string]agentv1.PolicyStatus{}
	for _, p := range got.GetPolicies() {
		m[p.GetPolicyId()] = p.GetStatus()
	}
	return m
}

// Fixtures of the osquery stand-in: a Mac that passes every example
// policy, and one that fails them.
const (
	compliantMac = "../internal/osquerysim/testdata/compliant-mac.json"
	failingMac   = "../internal/osquerysim/testdata/failing-mac.json"
)

// startStandIn starts the osquery stand-in for the Mac in dir, serving
// dir/mac.json (a copy of the fixture from, which a test may replace to
// change the Mac) on the socket dir/osq.sock.
func startStandIn(t *testing.T, dir, from string) (fixture, sock string, osq *proc) {
	t.Helper()
	fixture, sock = filepath.Join(dir, "mac.json"), filepath.Join(dir, "osq.sock")
	copyFile(t, from, fixture)
	return fixture, sock, startProc(t, "osquery-sim", "--socket", sock, "--fixture", fixture)
}

// agentRun is `clearance-agent run` on the Mac in dir (its state in
// dir/agent, no managed preferences): asking osquery at sock, enrolling
// with secret at the verifier at addr whose CA is caFile. More flags
// (--interval, --presence-listen…) follow.
func agentRun(dir, addr, caFile, secret, sock string, more ...string) []string {
	return append([]string{"run", "--verifier", addr, "--ca-file", caFile, "--enroll-secret", secret,
		"--osquery-socket", sock, "--state-dir", filepath.Join(dir, "agent"), "--managed-plist", filepath.Join(dir, "none.plist")}, more...)
}

// waitCompliant waits until v's one device is connected and compliant.
func waitCompliant(t *testing.T, v *verifier) *adminv1.GetDeviceResponse {
	t.Helper()
	return waitDevice(t, v, "a compliant report", within, func(g *adminv1.GetDeviceResponse) bool {
		return g.GetDevice().GetConnected() && g.GetDevice().GetSummary().GetCompliant()
	})
}

func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	// Write then rename, so the stand-in never reads half a file.
	tmp := dst + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, dst); err != nil {
		t.Fatal(err)
	}
}

// interval is how often the agent runs every policy in these tests.
const interval = 3 * time.Second

// within is one interval plus room for start-up on a loaded machine.
const within = interval + 10*time.Second

// TestAgentEndToEnd runs the real verifier, the real agent and the osquery
// stand-in: enroll, pass, flip to failing, live check, verifier restart and
// agent restart.
func TestAgentEndToEnd(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	dataDir := filepath.Join(dir, "verifier")
	v := startVerifier(t, dataDir)
	secret := v.enrollSecret()

	fixture, sock, _ := startStandIn(t, dir, compliantMac)

	stateDir := filepath.Join(dir, "agent")
	agentArgs := agentRun(dir, v.grpcAddr, filepath.Join(dataDir, "ca.pem"), secret, sock, "--interval", interval.String(),
		// Sign-in is not tested here; parallel tests' agents would share the
		// default loopback port.
		"--presence-listen", "off")
	agent := startProc(t, "clearance-agent", agentArgs...)

	// 1. Enrolls and its passing report is visible.
	got := waitDevice(t, v, "a compliant report", within, func(g *adminv1.GetDeviceResponse) bool {
		return g.GetDevice().GetSummary().GetCompliant()
	})
	deviceID := got.GetDevice().GetDeviceId()
	if got.GetDevice().GetFacts().GetHardwareUuid() == "" || got.GetDevice().GetFacts().GetPlatform() != "darwin" {
		t.Fatalf("facts: %v", got.GetDevice().GetFacts())
	}

	// 2. The Mac falls out of compliance: visible within one interval.
	copyFile(t, failingMac, fixture)
	got = waitDevice(t, v, "a failing report", within, func(g *adminv1.GetDeviceResponse) bool {
		s := statuses(g)
		return s["filevault"] == agentv1.PolicyStatus_POLICY_STATUS_FAIL && s["firewall"] == agentv1.PolicyStatus_POLICY_STATUS_FAIL
	})
	if got.GetDevice().GetSummary().GetCompliant() {
		t.Fatal("failing device reported compliant")
	}

	// 3. A live check returns a fresh report within 2 s.
	copyFile(t, compliantMac, fixture)
	time.Sleep(500 * time.Millisecond) // the stand-in polls its fixture every 200 ms
	admin, ctx := v.admin()
	rc, err := admin.RequestCheck(ctx, &adminv1.RequestCheckRequest{DeviceId: deviceID, Timeout: durationpb.New(2 * time.Second)})
	if err != nil {
		t.Fatalf("RequestCheck: %v", err)
	}
	for _, p := range rc.GetPolicies() {
		if p.GetRequired() && p.GetStatus() != agentv1.PolicyStatus_POLICY_STATUS_PASS {
			t.Fatalf("live check: %s = %s", p.GetPolicyId(), p.GetStatus())
		}
	}
	seqBefore := rc.GetReport().GetReport().GetSeq()

	// `status` says the Mac is reporting: connected, its last report
	// stored, in good standing (exit 0).
	status := func() (string, int) {
		t.Helper()
		return agentStatus(t, nil, "--state-dir", stateDir, "--managed-plist", filepath.Join(dir, "none.plist"))
	}
	if st, code := status(); code != 0 || !strings.Contains(st, "connected:") || !strings.Contains(st, "last report stored:") || strings.Contains(st, "NOT CONNECTED") ||
		!strings.Contains(st, "standing:") {
		t.Errorf("status of a reporting Mac: exit %d\n%s", code, st)
	}

	// 4. The verifier is stopped and started again: the agent comes back by
	// itself; meanwhile `status` says it cannot connect, and why.
	grpcAddr, httpAddr := v.grpcAddr, v.httpAddr
	v.stop()
	waitLog(t, agent.logs, "the agent losing the verifier", "not connected to verifier")
	if st, _ := status(); !strings.Contains(st, "NOT CONNECTED:") || !strings.Contains(st, "Unavailable") {
		t.Errorf("status with the verifier down:\n%s", st)
	}
	v = startVerifierAt(t, dataDir, policiesFile(t), grpcAddr, httpAddr)
	got = waitDevice(t, v, "the agent to reconnect and report", within+30*time.Second, func(g *adminv1.GetDeviceResponse) bool {
		return g.GetDevice().GetConnected() && g.GetDevice().GetLastSeq() > seqBefore
	})
	seqBefore = got.GetDevice().GetLastSeq()

	// 5. The Mac is renamed and the agent restarts: seq keeps climbing, no
	// re-enrollment, and the inventory shows the new name.
	agent.stop()
	raw, err := os.ReadFile(fixture)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(fixture, []byte(strings.Replace(string(raw), `"computer_name": "Alice's MacBook Pro"`, `"computer_name": "Bob's MacBook Pro"`, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond) // the stand-in polls its fixture every 200 ms
	startProc(t, "clearance-agent", agentArgs...)
	got = waitDevice(t, v, "the restarted agent's report", within, func(g *adminv1.GetDeviceResponse) bool {
		return g.GetDevice().GetConnected() && g.GetDevice().GetLastSeq() > seqBefore
	})
	if got.GetDevice().GetEnrollments() != 1 {
		t.Fatalf("agent re-enrolled on restart: %d enrollments", got.GetDevice().GetEnrollments())
	}
	if h := got.GetDevice().GetFacts().GetHostname(); h != "Bob's MacBook Pro" {
		t.Errorf("hostname after the Mac was renamed: %q", h)
	}

	// The enroll secret reaches neither log, and the device key is private.
	if strings.Contains(agent.logs.String(), secret) || strings.Contains(v.logs.String(), secret) {
		t.Error("a log contains the enroll secret")
	}
	st, err := os.Stat(filepath.Join(stateDir, "device.key"))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("device key: %v, %v; want mode 0600", st, err)
	}
}

// TestAgentRestartsOsquery runs the agent in spawn mode with the stand-in as
// its osqueryd, kills the child while restarts are made to fail, and expects
// only ERROR results (never a stale PASS) until osquery can start again, and
// then passing results from the new process.
func TestAgentRestartsOsquery(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	dataDir := filepath.Join(dir, "verifier")
	v := startVerifier(t, dataDir)
	secret := v.enrollSecret()
	stateDir := filepath.Join(dir, "agent")

	// osqueryd for the agent: the stand-in, unless the marker file exists.
	broken := filepath.Join(dir, "osquery-broken")
	wrapper := filepath.Join(dir, "osqueryd")
	script := "#!/bin/sh\nif [ -e '" + broken + "' ]; then echo 'osqueryd: cannot start' >&2; exit 1; fi\nexec '" +
		filepath.Join(binDir, "osquery-sim") + "' \"$@\"\n"
	if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	startProc(t, "clearance-agent", "run", "--verifier", v.grpcAddr, "--ca-file", filepath.Join(dataDir, "ca.pem"),
		"--enroll-secret", secret, "--osqueryd", wrapper, "--state-dir", stateDir,
		"--interval", interval.String(), "--managed-plist", filepath.Join(dir, "none.plist"), "--presence-listen", "off")

	got := waitDevice(t, v, "a compliant report", within, func(g *adminv1.GetDeviceResponse) bool {
		return g.GetDevice().GetSummary().GetCompliant()
	})
	lastSeq := got.GetDevice().GetLastSeq()

	// osquery dies and cannot come back for now.
	if err := os.WriteFile(broken, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	pid := childPid(t, stateDir)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	got = waitDevice(t, v, "a report of ERROR results", within, func(g *adminv1.GetDeviceResponse) bool {
		if g.GetDevice().GetLastSeq() == lastSeq {
			return false
		}
		lastSeq = g.GetDevice().GetLastSeq()
		s := g.GetDevice().GetSummary()
		if s.GetPass() > 0 {
			t.Fatalf("report %d has %d PASS results while osquery is down", lastSeq, s.GetPass())
		}
		return s.GetError() > 0
	})
	for _, p := range got.GetPolicies() {
		if p.GetStatus() != agentv1.PolicyStatus_POLICY_STATUS_ERROR || p.GetMessage() == "" {
			t.Fatalf("policy %s: %s %q, want ERROR with osquery's message", p.GetPolicyId(), p.GetStatus(), p.GetMessage())
		}
	}

	// osquery can start again: the agent restarts it and passes again.
	if err := os.Remove(broken); err != nil {
		t.Fatal(err)
	}
	waitDevice(t, v, "passing results from a restarted osquery", within+60*time.Second, func(g *adminv1.GetDeviceResponse) bool {
		return g.GetDevice().GetSummary().GetCompliant()
	})
	if childPid(t, stateDir) == pid {
		t.Fatal("osquery was not restarted")
	}
}

// childPid reads the spawned osqueryd's pid file under the agent's state dir.
func childPid(t *testing.T, stateDir string) int {
	t.Helper()
	var found string
	_ = filepath.WalkDir(stateDir, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.Name() == "osquery.pid" {
			found = p
		}
		return nil
	})
	if found == "" {
		t.Fatal("no osquery.pid under the agent's state dir")
	}
	b, err := os.ReadFile(found)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatalf("pid file: %v", err)
	}
	return pid
}

// TestAgentRunBudget: the Mac admin's run budget, from `clearance-verifier
// profile agent --run-budget` through the managed preferences, bounds a run
// of the real agent. A query that outlasts it is given up, the policy after
// it is reported as ERROR "not run" naming that budget, and the security
// team sees both failing closed.
func TestAgentRunBudget(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	policies := filepath.Join(dir, "policies.yaml")
	// The first counts to a billion in osquery's SQL, far longer than the
	// budget; the second would pass at once if it were reached.
	const slow = `WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 1000000000) SELECT 1 FROM c WHERE x = 1000000000`
	if err := os.WriteFile(policies, []byte(`policies:
  - id: slow
    name: Slow
    query: "`+slow+`"
  - id: quick
    name: Quick
    query: "SELECT 1"
`), 0o600); err != nil {
		t.Fatal(err)
	}
	dataDir := filepath.Join(dir, "verifier")
	v := startVerifierWith(t, dataDir, policies)
	out := filepath.Join(dir, "agent.mobileconfig")
	cli(t, "profile", "agent", "--data-dir", dataDir, "--verifier", v.grpcAddr, "--enroll-secret", v.enrollSecret(),
		"--organization", "Example Corp", "--interval", "1h", "--run-budget", "10s", "--out", out)
	managed := managedPrefs(t, out, dir)
	_, sock, _ := startStandIn(t, dir, compliantMac)
	startProc(t, "clearance-agent", "run", "--managed-plist", managed,
		"--osquery-socket", sock, "--state-dir", filepath.Join(dir, "agent"), "--presence-listen", "off")

	got := waitDevice(t, v, "a report with the run cut short", 10*time.Second+within+20*time.Second, func(g *adminv1.GetDeviceResponse) bool {
		return len(g.GetPolicies()) == 2 && statuses(g)["quick"] != agentv1.PolicyStatus_POLICY_STATUS_UNSPECIFIED
	})
	for _, p := range got.GetPolicies() {
		if p.GetStatus() != agentv1.PolicyStatus_POLICY_STATUS_ERROR {
			t.Errorf("%s: %s (%q), want ERROR", p.GetPolicyId(), p.GetStatus(), p.GetMessage())
		}
		if p.GetPolicyId() == "quick" && !strings.Contains(p.GetMessage(), "time budget (10s)") {
			t.Errorf("quick: message %q does not name the 10s budget", p.GetMessage())
		}
	}
	if got.GetDevice().GetSummary().GetCompliant() {
		t.Error("a run cut short left the Mac compliant")
	}
}
