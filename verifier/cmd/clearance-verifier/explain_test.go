package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	adminv1 "github.com/clearance/clearance/proto/gen/clearance/admin/v1"
	agentv1 "github.com/clearance/clearance/proto/gen/clearance/agent/v1"
)

// TestRenderExplain: each policy's row says its own part in the decision,
// as the page's items do, and what let a failing one through.
func TestRenderExplain(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 3, 4, 12, 0, 0, 0, time.UTC)
	ends := now.Add(52 * time.Hour)
	const (
		pass = adminv1.PolicyStatus_POLICY_STATUS_PASS
		fail = adminv1.PolicyStatus_POLICY_STATUS_FAIL
		miss = adminv1.PolicyStatus_POLICY_STATUS_MISSING
	)
	failing := []*adminv1.PolicyFinding{
		{PolicyId: "filevault", Name: "FileVault is on", Required: true, Critical: true, Status: fail, Enforcement: "warn"},
		{PolicyId: "firewall", Name: "Firewall is on", Required: true, Status: fail, Enforcement: "enforce", BypassOffered: true},
		{PolicyId: "macos-version", Name: "macOS is up to date", Required: true, Status: fail, Enforcement: "warn",
			GraceEnds: timestamppb.New(ends), BlocksFrom: timestamppb.New(ends)},
		{PolicyId: "gatekeeper", Name: "Gatekeeper is on", Required: true, Status: miss, Enforcement: "warn"},
		{PolicyId: "sip", Name: "System Integrity Protection is on", Required: true, Status: fail, Enforcement: "enforce", Waiver: "exempt", ExemptionId: 7, OtherExemptionIds: []int64{9}},
		{PolicyId: "xprotect", Name: "XProtect is current", Required: true, Status: fail, Enforcement: "monitor", Waiver: "monitor"},
	}
	results := append([]*adminv1.PolicyFinding{}, failing...)
	results = append(results,
		&adminv1.PolicyFinding{PolicyId: "screen-lock", Name: "Screen locks within 60 seconds", Status: fail},
		&adminv1.PolicyFinding{PolicyId: "auto-update", Name: "Automatic updates are on", Required: true, Status: pass},
	)
	// Since when each result has held, in the FOR column; gatekeeper's is
	// not recorded.
	for i, ago := range []time.Duration{75 * time.Hour, 6 * time.Hour, 20 * time.Minute, 0, 400 * time.Hour, 40 * time.Second, 3 * time.Hour, 30 * 24 * time.Hour} {
		if ago > 0 {
			results[i].Since = timestamppb.New(now.Add(-ago))
		}
	}
	resp := &adminv1.ExplainAccessResponse{
		DeviceId: "3f2c8a4e-9b1d-4e7f-8a6c-2d5e9f0b1c3a", DeviceName: "alices-mbp\x1b[31m", Username: "alice@example.com",
		Reason: "policy_failed", Mode: "enforce", CanResolveLater: true,
		Message:    "This Mac doesn't meet your organization's security requirements. Fix the items below, then press Check again.",
		Failing:    failing,
		Advisory:   results[6:7],
		Results:    results,
		BlockFrom:  timestamppb.New(ends),
		ObservedAt: timestamppb.New(now.Add(-90 * time.Second)), PostureAge: durationpb.New(90 * time.Second), ReportSeq: 31,
		PolicySetVersion: "v7", ReportPolicySetVersion: "v6", LiveCheck: "none",
	}
	for _, tc := range []struct {
		name  string
		width int
	}{{"explain", 80}, {"explain-wide", 0}} {
		var b strings.Builder
		if err := renderExplain(&b, resp, now, time.UTC, tc.width); err != nil {
			t.Fatal(err)
		}
		checkTable(t, tc.name, b.String(), tc.width)
	}

	// An allow that monitor mode let through says what enforcing would do;
	// one decided before any policy counted says so instead of a table.
	var b strings.Builder
	if err := renderExplain(&b, &adminv1.ExplainAccessResponse{DeviceId: "d", Allow: true, Reason: "allowed", Mode: "monitor", WouldDeny: "policy_failed", LiveCheck: "none"}, now, time.UTC, 80); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"allow: allowed (monitor); enforced, it would deny: policy_failed", "user         none given", "report       none usable", "no policy was judged"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("lacks %q:\n%s", want, b.String())
		}
	}
	// An exemption, or a Resolve later, lets the sign-in in under enforce
	// too: what would deny it is their absence, not enforcement.
	for mode, want := range map[string]string{
		"exempt":   "allow: allowed (exempt); without the exemption, it would deny: policy_failed",
		"bypassed": "allow: allowed (bypassed); without the Resolve later, it would deny: policy_failed",
		"warned":   "allow: allowed (warned); enforced, it would deny: policy_failed",
	} {
		b.Reset()
		if err := renderExplain(&b, &adminv1.ExplainAccessResponse{DeviceId: "d", Allow: true, Reason: "allowed", Mode: mode, WouldDeny: "policy_failed", LiveCheck: "none"}, now, time.UTC, 0); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(b.String(), want) {
			t.Errorf("lacks %q:\n%s", want, b.String())
		}
	}
}

// TestExplainAgainstServer asks a running verifier about a passing and a
// failing Mac by the start of their ids, and refuses a device it does
// not know, as the admin API does.
func TestExplainAgainstServer(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	good, bad := s.passingAndFailing(t)

	out, _, err := execute(noEnv, "explain", "--data-dir", s.dir, good[:8], "--user", "alice@example.com")
	if err != nil || !strings.Contains(out, "decision     allow: allowed") || !strings.Contains(out, "user         alice@example.com") || !strings.Contains(out, good) {
		t.Fatalf("explain of a passing Mac: %v\n%s", err, out)
	}
	out, _, err = execute(noEnv, "explain", "--data-dir", s.dir, strings.ToUpper(bad[:8]), "--wide")
	if err != nil || !strings.Contains(out, "decision     DENY: policy_failed") {
		t.Fatalf("explain of a failing Mac: %v\n%s", err, out)
	}
	for _, want := range []string{"filevault", "blocks now, can't be skipped", "advisory: never blocks", "page offers  nothing to skip"} {
		if !strings.Contains(out, want) {
			t.Errorf("explain of a failing Mac lacks %q:\n%s", want, out)
		}
	}
	out, _, err = execute(noEnv, "explain", "--data-dir", s.dir, bad, "--json")
	var parsed map[string]any
	// A denial says "allow": false, where the API's JSON would leave it out.
	if err != nil || json.Unmarshal([]byte(out), &parsed) != nil || parsed["reason"] != "policy_failed" || parsed["allow"] != false {
		t.Fatalf("explain --json: %v\n%s", err, out)
	}
	if _, _, err := execute(noEnv, "explain", "--data-dir", s.dir, "ffffffff"); err == nil || !strings.Contains(err.Error(), `no enrolled device's id is or starts with "ffffffff"`) {
		t.Fatalf("explain of no device: %v", err)
	}
	// Nothing was recorded: the decision log holds only real sign-ins.
	if out, errOut, err := execute(noEnv, "decisions", "--data-dir", s.dir); err != nil || !strings.Contains(errOut, "no sign-ins match") {
		t.Fatalf("explain recorded a decision: %v\n%s%s", err, out, errOut)
	}
}

// TestDevicesPolicyFilter: --policy finds the Macs failing a policy that is
// not required too, and a typo is an error naming the policy meant, not
// "no devices match".
func TestDevicesPolicyFilter(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	good, bad := s.passingAndFailing(t)
	out, _, err := execute(noEnv, "devices", "--data-dir", s.dir, "--policy", "screen-lock")
	if err != nil || !strings.Contains(out, bad[:8]) || strings.Contains(out, good[:8]) {
		t.Fatalf("devices --policy screen-lock (advisory): %v\n%s", err, out)
	}
	// By serial number and by the start of the host name, any case.
	devs, _, err := execute(noEnv, "devices", "--data-dir", s.dir, "--wide")
	if err != nil {
		t.Fatal(err)
	}
	var serial, host string
	for _, row := range strings.Split(devs, "\n") {
		// DEVICE HOST USER SERIAL …
		if f := strings.Fields(row); len(f) > 3 && f[0] == bad {
			host, serial = f[1], f[3]
		}
	}
	if serial == "" || host == "" {
		t.Fatalf("no serial or host for %s:\n%s", bad, devs)
	}
	for _, args := range [][]string{{"--serial", strings.ToLower(serial)}, {"--host", strings.ToUpper(host[:3])}} {
		out, _, err := execute(noEnv, append([]string{"devices", "--data-dir", s.dir, "--wide"}, args...)...)
		if err != nil || !strings.Contains(out, bad) || (args[0] == "--serial" && strings.Contains(out, good)) {
			t.Errorf("devices %v: %v\n%s", args, err, out)
		}
	}
	_, _, err = execute(noEnv, "devices", "--data-dir", s.dir, "--policy", "filevaul")
	if err == nil || !strings.Contains(err.Error(), `--policy "filevaul" is not a policy in force`) || !strings.Contains(err.Error(), "did you mean filevault?") {
		t.Fatalf("devices --policy with a typo: %v", err)
	}
	_, _, err = execute(noEnv, "devices", "--data-dir", s.dir, "--policy", "nothing-like-it")
	if err == nil || !strings.Contains(err.Error(), "the policies in force are filevault, firewall") {
		t.Fatalf("devices --policy naming no policy: %v", err)
	}
}

// passingAndFailing enrolls two made-up Macs with a secret from the CLI,
// one passing every policy and one failing every one, and returns their
// ids.
func (s *testServer) passingAndFailing(t *testing.T) (good, bad string) {
	t.Helper()
	secret, _, err := execute(noEnv, "secret", "create", "--data-dir", s.dir)
	if err != nil {
		t.Fatal(err)
	}
	good = s.enroll(t, lastLine(secret), "0A1B2C3D-4E5F-4061-8172-839405A6B7D1", agentv1.PolicyStatus_POLICY_STATUS_PASS).DeviceID
	bad = s.enroll(t, lastLine(secret), "1A1B2C3D-4E5F-4061-8172-839405A6B7D2", agentv1.PolicyStatus_POLICY_STATUS_FAIL).DeviceID
	return good, bad
}

// hostPhrase escapes what its agent chose, and marks a look-alike.
func TestHostPhrase(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"alice-mbp\u200b":           `alice-mbp\u200b`,
		"alice-mbp\u2028revoked: X": `alice-mbp\u2028revoked: X`,
		"\u0430lice-mbp":            "(look-alike) \u0430lice-mbp",
		"Alice\u2019s MacBook Pro":  "Alice\u2019s MacBook Pro",
		"":                          "no hostname",
	} {
		if got := hostPhrase(in); got != want {
			t.Errorf("hostPhrase(%q) = %q, want %q", in, got, want)
		}
	}
}
