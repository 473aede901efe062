package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/clearance/clearance/agent/config"
	"github.com/clearance/clearance/agent/state"
	"github.com/clearance/clearance/internal/osquerysim"
	"github.com/clearance/clearance/pkg/agentprefs"
	policyfile "github.com/clearance/clearance/pkg/policy"
	agentv1 "github.com/clearance/clearance/proto/gen/clearance/agent/v1"
)

var update = flag.Bool("update", false, "rewrite golden files under testdata/")

// policiesYAML leaves "required" out of filevault-on: a policy is required
// unless it says otherwise, so failing it fails the check.
const policiesYAML = `policies:
  - id: filevault-on
    name: FileVault is on
    query: SELECT 1 FROM disk_encryption WHERE filevault_status = 'on' LIMIT 1
    resolution: Turn on FileVault in System Settings.
    interval: 60s
  - id: broken
    name: Broken query
    query: SELECT sid FROM certificates
    required: false
  - id: linux-only
    name: Not for Macs
    query: SELECT 1
    platforms: [windows]
`

func TestCheck(t *testing.T) {
	t.Parallel()
	tests := []struct {
		fixture  string
		wantCode int
		want     []string
	}{
		{"compliant-mac", 0, []string{"filevault-on  PASS", "broken        ERROR", "no such column"}},
		{"failing-mac", 1, []string{"filevault-on  FAIL", "Turn on FileVault"}},
	}
	for _, tt := range tests {
		t.Run(tt.fixture, func(t *testing.T) {
			t.Parallel()
			dir, socket := startSim(t, tt.fixture)
			code, stdout, stderr := check(t, dir, socket, policiesYAML)
			if code != tt.wantCode {
				t.Errorf("exit code %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tt.wantCode, stdout, stderr)
			}
			out := stdout
			if !strings.HasPrefix(out, "ID") || strings.Contains(out, "linux-only") {
				t.Errorf("table:\n%s", out)
			}
			for _, w := range tt.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
			if want := "1 policy skipped: not for platform darwin\n"; stderr != want {
				t.Errorf("stderr %q, want %q", stderr, want)
			}
		})
	}
}

// TestCheckEverySkipped: a file whose policies are all for other platforms
// checks nothing, and says so rather than print a bare header and pass
// silently.
func TestCheckEverySkipped(t *testing.T) {
	t.Parallel()
	const others = `policies:
  - id: windows-only
    name: Windows only
    query: SELECT 1
    platforms: [windows]
  - id: linux-only
    name: Linux only
    query: SELECT 1
    platforms: [linux]
`
	dir, socket := startSim(t, "compliant-mac")
	code, stdout, stderr := check(t, dir, socket, others)
	if code != 0 || strings.TrimSpace(stdout) != "ID  STATUS  NAME  MESSAGE" {
		t.Errorf("exit code %d, stdout:\n%s", code, stdout)
	}
	if want := "2 policies skipped: not for platform darwin\n"; stderr != want {
		t.Errorf("stderr %q, want %q", stderr, want)
	}
}

func TestUsage(t *testing.T) {
	t.Parallel()
	var stdout, stderr bytes.Buffer
	if code := realMain([]string{"bogus"}, &stdout, &stderr); code != 2 || !strings.Contains(stderr.String(), "unknown command") {
		t.Errorf("code %d, stderr %q", code, stderr.String())
	}
	if code := realMain([]string{"run", "--verifier", "nope", "--managed-plist", "/nonexistent"}, &stdout, &stderr); code != 1 || !strings.Contains(stderr.String(), "not HOST:PORT") {
		t.Errorf("bad flag: code %d, stderr %q", code, stderr.String())
	}
}

// startSim serves the named osquery fixture and returns a scratch dir and
// the socket. The dir is short (not t.TempDir) because unix socket paths
// are limited to about 100 bytes.
func startSim(t *testing.T, fixture string) (dir, socket string) {
	t.Helper()
	dir, err := os.MkdirTemp("", "ck")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	socket = filepath.Join(dir, "osquery.em")
	f, err := osquerysim.LoadFixture(fixture)
	if err != nil {
		t.Fatal(err)
	}
	sim, err := osquerysim.New(f)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); sim.Serve(ctx, socket) }()
	t.Cleanup(func() { cancel(); <-done; sim.Close() })
	return dir, socket
}

// check writes policies to dir/policies.yaml and runs
// `clearance-agent check --policies` against the osquery socket.
func check(t *testing.T, dir, socket, policies string) (code int, stdout, stderr string) {
	t.Helper()
	file := filepath.Join(dir, "policies.yaml")
	if err := os.WriteFile(file, []byte(policies), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	code = realMain([]string{"check", "--policies", file, "--osquery-socket", socket,
		"--state-dir", filepath.Join(dir, "state"), "--managed-plist", filepath.Join(dir, "none.plist")}, &out, &errOut)
	return code, out.String(), errOut.String()
}

// TestCheckRequiredByDefault: a failing policy that does not say
// "required" fails the check, as it would deny access at the verifier.
func TestCheckRequiredByDefault(t *testing.T) {
	t.Parallel()
	const failing = `policies:
  - id: filevault-on
    name: FileVault is on
    query: SELECT 1 FROM disk_encryption WHERE filevault_status = 'on'
`
	tests := []struct {
		name     string
		yaml     string
		wantCode int
	}{
		{"required left out", failing, 1},
		{"required: true", failing + "    required: true\n", 1},
		{"required: null", failing + "    required:\n", 1},
		{"required: false", failing + "    required: false\n", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir, socket := startSim(t, "failing-mac")
			code, stdout, stderr := check(t, dir, socket, tt.yaml)
			if code != tt.wantCode || !strings.Contains(stdout, "filevault-on  FAIL") {
				t.Errorf("exit code %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tt.wantCode, stdout, stderr)
			}
		})
	}
}

// TestCheckPolicyFileErrors: a bad policy file is refused before osquery
// is asked anything, with the verifier's file:line:col messages, every
// problem on its own line.
func TestCheckPolicyFileErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, file string
		want       string // exact stderr; "" reads testdata/<file>.golden
	}{
		{"every problem", "testdata/bad-policies.yaml", ""},
		{"syntax", "testdata/bad-syntax.yaml",
			"clearance-agent check: loading policies: testdata/bad-syntax.yaml:2: invalid YAML: did not find expected '-' indicator\n"},
		{"interval below the verifier's minimum", "testdata/short-interval.yaml",
			`clearance-agent check: loading policies: testdata/short-interval.yaml:5:15: policy "filevault": "interval" 5s is shorter than the minimum of 10s` + "\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			var stdout, stderr bytes.Buffer
			// The socket does not exist: the file must be refused first.
			code := realMain([]string{"check", "--policies", tt.file, "--osquery-socket", filepath.Join(dir, "absent.em"),
				"--state-dir", filepath.Join(dir, "state"), "--managed-plist", filepath.Join(dir, "none.plist")}, &stdout, &stderr)
			if code != 1 || stdout.Len() != 0 {
				t.Errorf("exit code %d, stdout %q; want 1 and nothing", code, stdout.String())
			}
			want := tt.want
			if want == "" {
				golden := strings.TrimSuffix(tt.file, ".yaml") + ".golden"
				if *update {
					if err := os.WriteFile(golden, stderr.Bytes(), 0o644); err != nil {
						t.Fatal(err)
					}
				}
				raw, err := os.ReadFile(golden)
				if err != nil {
					t.Fatalf("%v (run go test -update to create it)", err)
				}
				want = string(raw)
			}
			if got := stderr.String(); got != want {
				t.Errorf("stderr:\n%s\nwant:\n%s", got, want)
			}
		})
	}
}

// TestCheckVersionMatchesVerifier: check runs the example file as the
// policy set the verifier would push for it, version included. The version
// is the one pkg/policy's golden file pins for the verifier.
func TestCheckVersionMatchesVerifier(t *testing.T) {
	t.Parallel()
	const example = "../../../examples/policies.yaml"
	golden, err := os.ReadFile("../../../pkg/policy/testdata/examples.golden")
	if err != nil {
		t.Fatal(err)
	}
	first, _, _ := strings.Cut(string(golden), "\n")
	want, ok := strings.CutPrefix(first, "version: ")
	if !ok || len(want) != 16 {
		t.Fatalf("examples.golden starts %q, want a version line", first)
	}
	ps, err := checkPolicies(example, nil)
	if err != nil {
		t.Fatal(err)
	}
	if ps.GetVersion() != want {
		t.Errorf("check's policy set version %q, the verifier's %q", ps.GetVersion(), want)
	}
	// And the policies themselves are what the verifier pushes.
	set, err := policyfile.Load(example)
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(ps, set.Proto()) {
		t.Errorf("check's policy set differs from the verifier's:\n%v\n%v", ps, set.Proto())
	}
}

// TestCheckOverBudget: check says when its run took longer than the
// daemon's run budget, and nothing when it did not.
func TestCheckOverBudget(t *testing.T) {
	t.Parallel()
	var b bytes.Buffer
	overBudget(&b, 50*time.Second, 10*time.Second, 2*time.Minute)
	if b.Len() != 0 {
		t.Errorf("a run within half its budget: %q", b.String())
	}
	// The listings count toward the posture's age, not the budget.
	overBudget(&b, 50*time.Second, 11*time.Second, 2*time.Minute)
	if want := "this run took 1m1s (the policies 50s, the report's certificate and account listings 11s), more than half the run budget of 2m0s"; !strings.HasPrefix(b.String(), want) || !strings.Contains(b.String(), "--max-posture-age") {
		t.Errorf("a run past half its budget with its listings: %q, want it to start %q and name --max-posture-age", b.String(), want)
	}
	b.Reset()
	overBudget(&b, 2*time.Minute, 0, 2*time.Minute)
	if want := "this run took 2m0s (the policies 2m0s, the report's certificate and account listings 0s), more than half"; !strings.HasPrefix(b.String(), want) {
		t.Errorf("a run within its budget, past half: %q, want it to start %q", b.String(), want)
	}
	b.Reset()
	overBudget(&b, 100*time.Second, 30*time.Second, 2*time.Minute) // the policies within it, the listings not
	if want := "this run took 2m10s (the policies 1m40s, the report's certificate and account listings 30s), longer than the run budget of 2m0s"; !strings.HasPrefix(b.String(), want) {
		t.Errorf("a run past its budget with its listings: %q, want it to start %q", b.String(), want)
	}
	b.Reset()
	overBudget(&b, 151234567*time.Microsecond, time.Minute, 2*time.Minute)
	if want := "this run's policies took 2m31.235s, longer than the run budget of 2m0s"; !strings.HasPrefix(b.String(), want) || !strings.Contains(b.String(), "RunBudget") {
		t.Errorf("over budget: %q, want it to start %q and name RunBudget", b.String(), want)
	}
}

// TestCheckTakesTheRunBudget: check reads the run budget as the daemon
// does, and refuses one the daemon would refuse.
func TestCheckTakesTheRunBudget(t *testing.T) {
	t.Parallel()
	dir, socket := startSim(t, "compliant-mac")
	file := filepath.Join(dir, "policies.yaml")
	if err := os.WriteFile(file, []byte(policiesYAML), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	code := realMain([]string{"check", "--policies", file, "--osquery-socket", socket, "--run-budget", "5s",
		"--state-dir", filepath.Join(dir, "state"), "--managed-plist", filepath.Join(dir, "none.plist")}, &out, &errOut)
	if code == 0 || !strings.Contains(errOut.String(), "RunBudget from flag --run-budget: 5s is shorter than the minimum of 10s") {
		t.Errorf("code %d, stderr %q", code, errOut.String())
	}
	out.Reset()
	errOut.Reset()
	code = realMain([]string{"check", "--policies", file, "--osquery-socket", socket, "--run-budget", "10s",
		"--state-dir", filepath.Join(dir, "state"), "--managed-plist", filepath.Join(dir, "none.plist")}, &out, &errOut)
	if code != 0 || errOut.String() != "1 policy skipped: not for platform darwin\n" {
		t.Errorf("code %d, stderr %q", code, errOut.String())
	}
}

// TestStatusShowsTheRunBudget: status says which run budget the daemon
// runs with, and where it comes from.
func TestStatusShowsTheRunBudget(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	managed := filepath.Join(dir, "managed.plist")
	status := func(args ...string) string {
		t.Helper()
		var stdout, stderr bytes.Buffer
		// Not enrolled: no agent ever ran here.
		if code := realMain(append([]string{"status", "--state-dir", filepath.Join(dir, "state"), "--managed-plist", managed}, args...), &stdout, &stderr); code != standingNotEnrolled.code {
			t.Fatalf("status: %d, %s", code, stderr.String())
		}
		return stdout.String()
	}
	if out := status(); !strings.Contains(out, "run budget:") || !strings.Contains(out, "2m0s (default)") {
		t.Errorf("without a setting:\n%s", out)
	}
	if err := os.WriteFile(managed, []byte(`<?xml version="1.0" encoding="UTF-8"?>
<plist version="1.0"><dict><key>RunBudget</key><integer>150</integer></dict></plist>
`), 0o600); err != nil {
		t.Fatal(err)
	}
	if out := status(); !strings.Contains(out, "2m30s ("+managed+" key RunBudget)") {
		t.Errorf("from the managed plist:\n%s", out)
	}
	if out := status("--run-budget", "90s"); !strings.Contains(out, "1m30s (flag --run-budget)") {
		t.Errorf("from a flag:\n%s", out)
	}
}

// TestCheckMarksLatePolicies: a policy that finished after the run budget
// is marked in check's table as the daemon would report it, and a required
// one fails the check even if it passed.
func TestCheckMarksLatePolicies(t *testing.T) {
	t.Parallel()
	ps := &agentv1.PolicySet{Policies: []*agentv1.Policy{
		{Id: "slow", Name: "Slow", Required: true},
		{Id: "quick", Name: "Quick", Required: true},
		{Id: "extra", Name: "Extra"},
	}}
	results := []*agentv1.PolicyResult{
		{PolicyId: "slow", Status: agentv1.PolicyStatus_POLICY_STATUS_PASS},
		{PolicyId: "quick", Status: agentv1.PolicyStatus_POLICY_STATUS_PASS},
		{PolicyId: "extra", Status: agentv1.PolicyStatus_POLICY_STATUS_PASS},
	}
	var out bytes.Buffer
	if err := printResults(&out, ps, results, nil, 10*time.Second); err != nil {
		t.Errorf("in time: %v", err)
	}
	out.Reset()
	err := printResults(&out, ps, results, map[string]bool{"quick": true, "extra": true}, 10*time.Second)
	if err != errFailed {
		t.Errorf("a required policy late: %v, want errFailed", err)
	}
	for _, l := range strings.Split(out.String(), "\n") {
		late := strings.HasPrefix(l, "quick") || strings.HasPrefix(l, "extra")
		marked := strings.Contains(l, "ERROR") && strings.Contains(l, "finished after the run budget (10s), the daemon reports it as ERROR; here: PASS")
		if late != marked {
			t.Errorf("line %q: marked %v, want %v", l, marked, late)
		}
	}
	out.Reset()
	if err := printResults(&out, ps, results, map[string]bool{"extra": true}, 10*time.Second); err != nil {
		t.Errorf("only an optional policy late: %v", err)
	}
}

// TestRunningRows: status says what the running agent uses, from its
// record: the settings files as it runs them, changed since it started,
// or new ones it would not take; and that an agent no longer runs.
func TestRunningRows(t *testing.T) {
	now := time.Date(2026, 3, 4, 12, 0, 0, 0, time.UTC)
	cfg := &config.Config{Verifier: "verifier.example.com:8443", EnrollSecret: "s3cret", RunBudget: time.Minute}
	r := &state.Running{PID: 4242, Version: "1.2.3", StartedAt: now.Add(-time.Hour), Settings: config.Fingerprints(cfg)}
	text := func(rows [][2]string) string {
		var b strings.Builder
		for _, kv := range rows {
			fmt.Fprintf(&b, "%s: %s\n", kv[0], kv[1])
		}
		return b.String()
	}
	if got := text(runningRows(r, cfg, now, true, nil)); !strings.Contains(got, "agent: running since 2026-03-04T11:00:00Z (1h0m0s ago), version 1.2.3, process 4242\n") ||
		!strings.Contains(got, "settings: in use as the files say\n") {
		t.Errorf("as the files say:\n%s", got)
	}
	changed := *cfg
	changed.EnrollSecret, changed.RunBudget = "another", 2*time.Minute
	if got := text(runningRows(r, &changed, now, true, nil)); !strings.Contains(got, "settings: the files changed EnrollSecret, RunBudget since the agent started; it takes them within 30s") {
		t.Errorf("changed files:\n%s", got)
	}
	r.RejectedAt, r.Rejected, r.RejectedKeys = now.Add(-time.Minute), "CAFingerprint matches no certificate", []string{"CAFingerprint"}
	if got := text(runningRows(r, &changed, now, true, nil)); !strings.Contains(got, "NEW SETTINGS REJECTED: at 2026-03-04T11:59:00Z: CAFingerprint matches no certificate; the agent runs on with the settings it had (the new ones changed CAFingerprint)") {
		t.Errorf("rejected:\n%s", got)
	}
	// A key the agent's flag sets is not the files' to change: status
	// does not say the agent takes them.
	pinned := *r
	pinned.RejectedAt, pinned.Rejected, pinned.RejectedKeys = time.Time{}, "", nil
	pinned.Pinned = map[string]string{agentprefs.KeyPresenceListen: "flag --presence-listen"}
	files := *cfg
	files.PresenceListen = agentprefs.DefaultPresenceListen
	pinned.Settings = config.Fingerprints(&config.Config{Verifier: cfg.Verifier, EnrollSecret: cfg.EnrollSecret, RunBudget: cfg.RunBudget, PresenceListen: agentprefs.PresenceOff})
	if got := text(runningRows(&pinned, &files, now, true, nil)); !strings.Contains(got, "settings: in use as the files say; the agent's flag --presence-listen sets PresenceListen, over the files\n") {
		t.Errorf("a key the agent's flag pins:\n%s", got)
	}
	files.RunBudget = 2 * time.Minute
	if got := text(runningRows(&pinned, &files, now, true, nil)); !strings.Contains(got, "settings: the files changed RunBudget since the agent started; it takes them within 30s (at once on SIGHUP); the agent's flag --presence-listen sets PresenceListen, over the files\n") {
		t.Errorf("a key the agent's flag pins, another changed:\n%s", got)
	}
	if got := text(runningRows(r, cfg, now, false, nil)); got != "agent: not running (last started 2026-03-04T11:00:00Z (1h0m0s ago), version 1.2.3, process 4242)\n" {
		t.Errorf("not running:\n%s", got)
	}
	for _, fp := range r.Settings {
		if strings.Contains(fp, "s3cret") {
			t.Errorf("a fingerprint holds the secret: %q", fp)
		}
	}
}

// TestRejectedWhyHoldsNoSecret: a settings error that quotes a value (an
// enroll secret pasted under the verifier's key, say) is recorded, shown
// by status and reported to the verifier without the enroll secret of the
// settings that run or of the rejected ones.
func TestRejectedWhyHoldsNoSecret(t *testing.T) {
	t.Parallel()
	running := &config.Config{EnrollSecret: "s3cret-that-runs"}
	rejected := &config.Config{EnrollSecret: "n3w-s3cret"}
	err := fmt.Errorf(`VerifierAddress from managed.plist: "s3cret-that-runs" is not HOST:PORT; CAFile: "n3w-s3cret" is not an absolute path`)
	got := rejectedWhy(err, running, nil, rejected)
	if want := `VerifierAddress from managed.plist: "(the enroll secret)" is not HOST:PORT; CAFile: "(the enroll secret)" is not an absolute path`; got != want {
		t.Errorf("rejectedWhy = %q, want %q", got, want)
	}
	rec := newRecord(&state.Dir{Path: t.TempDir()}, running, &rejection{why: got, brief: reportedWhy(err), keys: []string{"VerifierAddress"}}, nil)
	if at, why := rec.rejected(); at.IsZero() || why != "the new settings do not read or would not run (the new ones changed VerifierAddress); 'clearance-agent status' on the Mac says why" {
		t.Errorf("the reports' rejection: %v, %q", at, why)
	}
}

// The verifier is told which setting was refused, never a value from the
// settings, whatever the key: a new enroll secret pasted under another
// key, which the agent cannot know for a secret, is not sent (nor is it
// replaced, as it is in what status shows on the Mac).
func TestReportedWhyQuotesNoValue(t *testing.T) {
	t.Parallel()
	const pasted = "5f3c.new-secret-pasted-under-the-wrong-key"
	for _, tc := range []struct {
		name string
		err  error
		want string
	}{
		{"a refused setting", &config.SettingError{Key: "PresenceListen", Source: "/Library/Managed Preferences/com.clearance.agent.plist key PresenceListen",
			Err: fmt.Errorf("%q is not a loopback IP address", pasted)}, "the new settings' PresenceListen was refused"},
		{"wrapped", fmt.Errorf("starting: %w", &config.SettingError{Key: "CAFile", Source: "flag --ca-file", Err: fmt.Errorf("open %s: no such file", pasted)}),
			"the new settings' CAFile was refused"},
		{"misspelt key", &agentprefs.UnknownKeyError{Name: pasted, Meant: "CAFingerprint"}, "the new settings have an unknown key (did you mean CAFingerprint?)"},
		{"unknown key", &agentprefs.UnknownKeyError{Name: pasted}, "the new settings have an unknown key"},
		{"anything else", fmt.Errorf("plist: unknown element %s", pasted), "the new settings do not read or would not run"},
	} {
		if got := reportedWhy(tc.err); got != tc.want || strings.Contains(got, pasted) {
			t.Errorf("%s: reportedWhy = %q, want %q", tc.name, got, tc.want)
		}
	}
	rec := newRecord(&state.Dir{Path: t.TempDir()}, &config.Config{}, &rejection{why: "x " + pasted, brief: reportedWhy(fmt.Errorf("%s", pasted)), keys: []string{"EnrollSecret", "PresenceListen"}}, nil)
	if _, why := rec.rejected(); strings.Contains(why, pasted) || !strings.Contains(why, "(the new ones changed EnrollSecret, PresenceListen)") {
		t.Errorf("the reports' rejection %q", why)
	}
}

// TestCheckWithoutOsquery: a check osquery never answered fails, even when
// the policies it chose by the agent's own platform all skip.
func TestCheckWithoutOsquery(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	code, _, stderr := check(t, dir, filepath.Join(dir, "no-osquery.em"), `policies:
  - id: filevault-on
    name: FileVault is on
    platforms: [windows]
    query: SELECT 1 FROM disk_encryption WHERE filevault_status = 'on'
`)
	if code != 1 || !strings.Contains(stderr, "osquery did not say which platform it observes") {
		t.Errorf("exit %d, stderr:\n%s\nwant exit 1 and that osquery did not answer", code, stderr)
	}
}
