package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/clearance/clearance/internal/protoagent"
	"github.com/clearance/clearance/internal/testkit"
	adminv1 "github.com/clearance/clearance/proto/gen/clearance/admin/v1"
	agentv1 "github.com/clearance/clearance/proto/gen/clearance/agent/v1"
	"github.com/clearance/clearance/verifier/storage"
)

// TestFleetCommands asks a running verifier, found through the address
// serve recorded in the data dir, for its devices and decisions.
func TestFleetCommands(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	secretOut, _, err := execute(noEnv, "secret", "create", "--data-dir", s.dir, "--description", "fleet test")
	if err != nil {
		t.Fatal(err)
	}
	secret := lastLine(secretOut)
	good := s.enroll(t, secret, "0A1B2C3D-0000-4000-8000-000000000001", agentv1.PolicyStatus_POLICY_STATUS_PASS)
	bad := s.enroll(t, secret, "0A1B2C3D-0000-4000-8000-000000000002", agentv1.PolicyStatus_POLICY_STATUS_FAIL)
	env := envOf(map[string]string{"COLUMNS": "80"})

	devices := func(args ...string) string {
		t.Helper()
		out, stderr, err := execute(env, append([]string{"devices", "--data-dir", s.dir}, args...)...)
		if err != nil {
			t.Fatalf("devices %v: %v\n%s", args, err, stderr)
		}
		return out
	}
	out := devices()
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "DEVICE") {
		t.Fatalf("table:\n%s", out)
	}
	for _, l := range lines {
		if n := len([]rune(l)); n > 80 {
			t.Errorf("line of %d characters: %q", n, l)
		}
	}
	goodRow, badRow := row(t, out, good.DeviceID[:8]), row(t, out, bad.DeviceID[:8])
	for _, w := range []string{"yes", "6/0", "just now"} {
		if !strings.Contains(goodRow, w) {
			t.Errorf("compliant device's row lacks %q: %q", w, goodRow)
		}
	}
	for _, w := range []string{"yes", "0/6", "filevault"} {
		if !strings.Contains(badRow, w) {
			t.Errorf("failing device's row lacks %q: %q", w, badRow)
		}
	}

	if out := devices("--failing"); !strings.Contains(out, bad.DeviceID[:8]) || strings.Contains(out, good.DeviceID[:8]) {
		t.Errorf("--failing:\n%s", out)
	}
	// --failing-for: the failing Mac once its run is recorded (after its
	// report's ack), and only for as long as it has failed.
	testkit.Eventually(t, 10*time.Second, "the failing Mac failing for 1ms", func() bool {
		out, _, err := execute(env, "devices", "--data-dir", s.dir, "--failing-for", "1ms")
		return err == nil && strings.Contains(out, bad.DeviceID[:8]) && !strings.Contains(out, good.DeviceID[:8])
	})
	if out := devices("--failing-for", "0s"); !strings.Contains(out, bad.DeviceID[:8]) || strings.Contains(out, good.DeviceID[:8]) {
		t.Errorf("--failing-for 0s lists more than the failing Mac:\n%s", out)
	}
	if out, stderr, err := execute(env, "devices", "--data-dir", s.dir, "--failing-for", "1h"); err != nil || out != "" || stderr != "no devices match\n" {
		t.Errorf("--failing-for 1h: %q %q %v", out, stderr, err)
	}
	if _, stderr, err := execute(env, "devices", "--data-dir", s.dir, "--failing-for", "-1h"); err == nil || !strings.Contains(fmt.Sprint(err, stderr), "--failing-for -1h0m0s is negative") {
		t.Errorf("--failing-for -1h: %q %v", stderr, err)
	}
	if out := devices("--policy", "sip"); !strings.Contains(out, bad.DeviceID[:8]) || strings.Contains(out, good.DeviceID[:8]) {
		t.Errorf("--policy sip:\n%s", out)
	}
	if out := devices("--wide"); !strings.Contains(out, good.DeviceID) || !strings.Contains(out, "filevault,firewall,sip,gatekeeper,macos-version") {
		t.Errorf("--wide:\n%s", out)
	}
	// Both agents hold their streams: nothing is offline.
	if out, stderr, err := execute(env, "devices", "--data-dir", s.dir, "--offline"); err != nil || out != "" || stderr != "no devices match\n" {
		t.Errorf("--offline: %q %q %v", out, stderr, err)
	}
	var listed struct {
		Devices []struct {
			DeviceID string `json:"deviceId"`
			Summary  struct {
				Compliant *bool    `json:"compliant"`
				Failing   []string `json:"failing"`
			} `json:"summary"`
		} `json:"devices"`
	}
	if err := json.Unmarshal([]byte(devices("--json")), &listed); err != nil || len(listed.Devices) != 2 {
		t.Fatalf("--json: %v %+v", err, listed)
	}
	for _, d := range listed.Devices {
		if d.Summary.Compliant == nil {
			t.Errorf("%s: compliant is missing from the JSON", d.DeviceID)
		} else if *d.Summary.Compliant != (d.DeviceID == good.DeviceID) {
			t.Errorf("%s: compliant %v", d.DeviceID, *d.Summary.Compliant)
		}
	}

	// Decisions: a denial for the failing Mac and an allowed sign-in.
	ctx := context.Background()
	now := time.Now()
	for _, d := range []storage.DecisionRecord{
		{At: now.Add(-time.Minute), Username: "alice@example.com", DeviceID: good.DeviceID, Allow: true, Reason: "allowed", Source: "sso", LiveCheck: "none"},
		{At: now, Username: "bob@example.com", DeviceID: bad.DeviceID, Allow: false, Reason: "policy_failed", Source: "sso", LiveCheck: "answered",
			Results: []storage.DecisionResult{{PolicyID: "filevault", Status: "FAIL", Required: true}, {PolicyID: "macos-version", Status: "FAIL"}, {PolicyID: "sip", Status: "PASS", Required: true}}},
	} {
		if _, err := s.srv.Store.AppendDecision(ctx, d); err != nil {
			t.Fatal(err)
		}
	}
	out, _, err = execute(env, "decisions", "--data-dir", s.dir)
	if err != nil {
		t.Fatal(err)
	}
	if lines := strings.Split(strings.TrimSpace(out), "\n"); len(lines) != 3 || !strings.Contains(lines[1], "bob@example.com") ||
		!strings.Contains(lines[1], "DENY") || !strings.Contains(lines[1], "policy_failed: filevault") || strings.Contains(lines[1], "macos-version") ||
		!strings.Contains(lines[2], "allow") {
		t.Errorf("decisions:\n%s", out)
	}
	for _, args := range [][]string{{"--denied"}, {"--user", "bob@example.com"}, {"--device", bad.DeviceID[:8]}, {"--device", bad.DeviceID}} {
		out, _, err := execute(env, append([]string{"decisions", "--data-dir", s.dir}, args...)...)
		if err != nil || strings.Count(strings.TrimSpace(out), "\n") != 1 || !strings.Contains(out, "bob@example.com") {
			t.Errorf("decisions %v: %v\n%s", args, err, out)
		}
	}
	if out, _, err := execute(env, "decisions", "--data-dir", s.dir, "--limit", "1"); err != nil || strings.Count(strings.TrimSpace(out), "\n") != 1 {
		t.Errorf("--limit 1: %v\n%s", err, out)
	}
	if _, _, err := execute(env, "decisions", "--data-dir", s.dir, "--device", "ffffffff"); err == nil || !strings.Contains(err.Error(), "no device id starts with") {
		t.Errorf("unknown device: %v", err)
	}

	// The audit log: the start, the secret the CLI made, then both
	// enrollments.
	audit := func(args ...string) []string {
		t.Helper()
		out, stderr, err := execute(env, append([]string{"audit", "--data-dir", s.dir}, args...)...)
		if err != nil {
			t.Fatalf("audit %v: %v\n%s", args, err, stderr)
		}
		return strings.Split(strings.TrimSpace(out), "\n")
	}
	lines = audit()
	if len(lines) != 5 || !strings.HasPrefix(lines[0], "TIME") || !strings.Contains(lines[3], "cli") || !strings.Contains(lines[3], "secret.create") ||
		!strings.Contains(lines[4], "serve") || !strings.Contains(lines[4], "verifier.start") {
		t.Fatalf("audit:\n%s", strings.Join(lines, "\n"))
	}
	for _, l := range lines[1:3] {
		if !strings.Contains(l, "agent") || !strings.Contains(l, "device.enroll") {
			t.Errorf("audit: enrollment row %q", l)
		}
	}
	for _, tc := range []struct {
		args []string
		want []string // a word of each row, in order
	}{
		{[]string{"--device", bad.DeviceID[:8]}, []string{bad.DeviceID[:8]}},
		{[]string{"--device", strings.ToUpper(good.DeviceID)}, []string{good.DeviceID[:8]}},
		{[]string{"--actor", "cli"}, []string{"secret.create"}},
		{[]string{"--action", "device."}, []string{"device.enroll", "device.enroll"}},
		{[]string{"--action", "device"}, nil},
		{[]string{"--since", "1h"}, []string{"device.enroll", "device.enroll", "secret.create", "verifier.start"}},
		{[]string{"--actor", "serve"}, []string{"verifier.start"}},
		{[]string{"--since", time.Now().Add(time.Hour).Format(time.RFC3339)}, nil},
		{[]string{"--limit", "1"}, []string{"device.enroll"}},
		{[]string{"--until", "1h"}, nil},
		{[]string{"--since", "1h", "--until", time.Now().Add(time.Hour).Format(time.RFC3339), "--all"}, []string{"device.enroll", "device.enroll", "secret.create", "verifier.start"}},
	} {
		out, stderr, err := execute(env, append([]string{"audit", "--data-dir", s.dir}, tc.args...)...)
		if err != nil {
			t.Errorf("audit %v: %v", tc.args, err)
			continue
		}
		if len(tc.want) == 0 {
			if out != "" || !strings.HasPrefix(stderr, "no audit events match") {
				t.Errorf("audit %v: %q %q, want no events", tc.args, out, stderr)
			}
			if tc.args[0] == "--action" && !strings.Contains(stderr, `give "device."`) {
				t.Errorf("audit %v: %q, want the start of an action suggested", tc.args, stderr)
			}
			continue
		}
		// A listing cut short says so, and how to see the rest.
		if cut := tc.args[0] == "--limit"; cut != strings.Contains(stderr, "more events match") {
			t.Errorf("audit %v: stderr %q", tc.args, stderr)
		}
		rows := strings.Split(strings.TrimSpace(out), "\n")[1:]
		if len(rows) != len(tc.want) {
			t.Errorf("audit %v: %d rows, want %d:\n%s", tc.args, len(rows), len(tc.want), out)
			continue
		}
		for i, w := range tc.want {
			if !strings.Contains(rows[i], w) {
				t.Errorf("audit %v: row %q lacks %q", tc.args, rows[i], w)
			}
		}
	}
	var listedAudit struct {
		Events []struct{ ID, Actor, Action, DeviceID string }
	}
	out, _, err = execute(env, "audit", "--data-dir", s.dir, "--json", "--action", "device.enroll", "--device", good.DeviceID)
	if err := json.Unmarshal([]byte(out), &listedAudit); err != nil || len(listedAudit.Events) != 1 ||
		listedAudit.Events[0].Actor != "agent" || listedAudit.Events[0].DeviceID != good.DeviceID || listedAudit.Events[0].ID == "" {
		t.Errorf("audit --json: %v %+v\n%s", err, listedAudit, out)
	}
}

// TestDevicesBySerialAndHost: the verifier finds Macs by serial number
// (any case, spaces around ignored) and the start of the host name; a
// revoked Mac is found by its serial and shown revoked, but --offline
// leaves it out unless --revoked keeps it.
func TestDevicesBySerialAndHost(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	secret := s.newSecret(t)
	const keptUUID, goneUUID = "0A1B2C3D-0000-4000-8000-0000000000A1", "0A1B2C3D-0000-4000-8000-0000000000A2"
	kept := s.enroll(t, secret, keptUUID, agentv1.PolicyStatus_POLICY_STATUS_PASS).DeviceID
	gone := s.enroll(t, secret, goneUUID, agentv1.PolicyStatus_POLICY_STATUS_PASS).DeviceID
	if _, _, err := execute(noEnv, "devices", "revoke", "--data-dir", s.dir, gone[:8], "--reason", "stolen"); err != nil {
		t.Fatal(err)
	}
	devices := func(args ...string) (string, string, error) {
		return execute(noEnv, append([]string{"devices", "--data-dir", s.dir, "--wide"}, args...)...)
	}
	out, _, err := devices("--serial", " "+strings.ToLower(protoagent.SerialFor(goneUUID))+" ")
	if err != nil || !strings.Contains(out, gone) || strings.Contains(out, kept) || !strings.Contains(row(t, out, gone), "revoked") {
		t.Fatalf("--serial of the revoked Mac: %v\n%s", err, out)
	}
	// Both agents' streams are open, but a revoked Mac's is not.
	if out, stderr, err := devices("--serial", protoagent.SerialFor(goneUUID), "--offline"); err != nil || out != "" || stderr != "no devices match\n" {
		t.Errorf("--serial of the revoked Mac --offline: %v %q %q", err, out, stderr)
	}
	if out, _, err := devices("--serial", protoagent.SerialFor(goneUUID), "--offline", "--revoked"); err != nil || !strings.Contains(out, gone) {
		t.Errorf("--serial of the revoked Mac --offline --revoked: %v\n%s", err, out)
	}
	// Every made-up Mac is test-mac.
	if out, _, err := devices("--host", "TEST-", "--serial", protoagent.SerialFor(keptUUID)); err != nil || !strings.Contains(out, kept) || strings.Contains(out, gone) {
		t.Errorf("--host TEST- --serial of the kept Mac: %v\n%s", err, out)
	}
	if out, stderr, err := devices("--host", "test-macbook"); err != nil || out != "" || stderr != "no devices match\n" {
		t.Errorf("--host test-macbook: %v %q %q", err, out, stderr)
	}
	for _, flag := range []string{"--serial", "--host"} {
		if _, _, err := devices(flag, ""); err == nil || !strings.Contains(err.Error(), flag+" is empty") {
			t.Errorf("%s '': %v", flag, err)
		}
	}
}

func row(t *testing.T, table, prefix string) string {
	t.Helper()
	for _, l := range strings.Split(table, "\n") {
		if strings.HasPrefix(l, prefix) {
			return l
		}
	}
	t.Fatalf("no row for %s in:\n%s", prefix, table)
	return ""
}

// TestFleetCommandsExplainFailures: no verifier at the address, or one
// that does not know this data dir's token, is said plainly.
func TestFleetCommandsExplainFailures(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	// A data dir that trusts the same CA but holds another admin token.
	other := newDataDir(t)
	ca, err := os.ReadFile(filepath.Join(s.dir, "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(other, "ca.pem"), ca, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"devices", "--data-dir", s.dir, "--verifier", "127.0.0.1:1"}, "cannot reach the verifier at 127.0.0.1:1"},
		{[]string{"decisions", "--data-dir", other, "--verifier", s.addr}, "refused the data dir's admin token"},
		{[]string{"devices", "--data-dir", t.TempDir()}, "is not a clearance-verifier data dir"},
		{[]string{"devices", "--data-dir", newDataDir(t), "--verifier", s.addr}, "is not the verifier serving this data dir: its certificate is not from the data dir's ca.pem"},
		{[]string{"devices", "--data-dir", s.dir, "--verifier", "nope"}, `--verifier "nope" is not HOST:PORT`},
	} {
		_, _, err := execute(noEnv, tc.args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want %q", tc.args, err, tc.want)
		}
	}
}

// TestTables pins the tables' layout (testdata/*.golden; go test -update
// rewrites them): 80 columns, a hostile host name kept on one line.
func TestTables(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 3, 4, 12, 0, 0, 0, time.UTC)
	dev := func(id, host, serial string, seen time.Duration, connected bool, pass, fail uint32, failing ...string) *adminv1.Device {
		return &adminv1.Device{
			DeviceId: id, Status: adminv1.DeviceStatus_DEVICE_STATUS_ACTIVE, Connected: connected,
			Facts:        &agentv1.DeviceFacts{Hostname: host, SerialNumber: serial},
			LastSeen:     timestamppb.New(now.Add(-seen)),
			LastReportAt: timestamppb.New(now.Add(-seen)),
			Summary:      &adminv1.PostureSummary{Pass: pass, Fail: fail, Compliant: proto.Bool(len(failing) == 0), Failing: failing},
		}
	}
	revoked := dev("7c9e6679-7425-40de-944b-e07fc1f90ae7", "old-mac", "C02YY0000000", 400*time.Hour, false, 6, 0)
	revoked.Status = adminv1.DeviceStatus_DEVICE_STATUS_REVOKED
	fresh := dev("0d5b3c1e-51b2-4b7a-9d3e-000000000009", "new-mac", "", 0, true, 0, 0)
	fresh.LastReportAt, fresh.LastSeen = nil, nil
	devs := []*adminv1.Device{
		dev("3f2c8a4e-9b1d-4e7f-8a6c-2d5e9f0b1c3a", "alices-macbook-pro.corp.example.com", "C02XK1ABJGH5", 12*time.Second, true, 6, 0),
		dev("a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d", "bob-mbp", "FVFXC2QJQ6L4", 3*time.Hour, false, 2, 4, "filevault", "firewall", "sip", "screen-lock"),
		dev("deadbeef-0000-4000-8000-000000000000", "evil\nhost\tname\x1b[31m", "X", 90*time.Minute, true, 5, 1, "filevault"),
		dev("c0ffee00-0000-4000-8000-000000000000", "\u0430lices-macbook-pro.corp.example.com", "C02LOOKALIKE", time.Minute, true, 6, 0),
		// macOS's own name, with its right single quotation mark: no mark.
		dev("b0b0b0b0-0000-4000-8000-000000000000", "Bob\u2019s MacBook Pro", "C02BOBSMAC01", time.Minute, true, 6, 0),
		revoked, fresh,
	}
	// bob's firewall check could not run, and his Mac sent no screen-lock
	// result: the table says so beside each.
	devs[1].Summary.FailingError, devs[1].Summary.FailingMissing = []string{"firewall"}, []string{"screen-lock"}
	// A policy for a group none of its people are in fails on Bob's
	// MacBook Pro: compliant, the policy shown apart.
	devs[4].Summary.FailingOutOfScope = []string{"eng-only"}
	// Who used each Mac, in the wide table: one with a name a terminal
	// would act on.
	devs[0].LocalUser, devs[1].LocalUser, devs[2].LocalUser = "alice", "bob", "mallory\x1b[2J"
	devs[3].LocalUser, devs[4].LocalUser = "\u0430lice", "bob\u2800\u3164"
	// Names that would pass for something else in plain ASCII: a written
	// escape, a cell that fakes the next columns, the "none" dash.
	devs[5].LocalUser, devs[6].LocalUser = `bob\u2800`, "eve  C02XK1ABJGH5  12s ago"
	devs = append(devs, dev("e0e0e0e0-0000-4000-8000-000000000000", "dash-mac", "C02DASHDASH1", time.Minute, true, 6, 0))
	devs[7].LocalUser = "-"
	// Which agent each runs, in the wide table: one reports none, one a
	// version that would move the cursor.
	devs[0].Facts.AgentVersion, devs[1].Facts.AgentVersion, devs[2].Facts.AgentVersion = "1.4.0", "1.3.2", "9.9\x1b[2J"
	// How long each has been as it is, in the wide table's FOR column: bob
	// failing for 3 days, alice compliant for 26 hours, the others not
	// recorded.
	devs[1].Summary.FailingSince = timestamppb.New(now.Add(-75 * time.Hour))
	devs[0].Summary.CompliantSince = timestamppb.New(now.Add(-26 * time.Hour))
	// Macs whose agents did not take the profile pushed to them: a
	// compliant one, and bob's, failing, whose mark is kept as the list
	// shortens; the stale one's in words a terminal would act on.
	devs[0].SettingsRejection = &agentv1.SettingsRejection{At: timestamppb.New(now.Add(-2 * time.Hour)),
		Reason: `CAFingerprint from /Library/Managed Preferences/com.clearance.agent.plist key CAFingerprint: no configured CA certificate has this fingerprint (the new ones changed CAFingerprint)`}
	devs[1].SettingsRejection = &agentv1.SettingsRejection{At: timestamppb.New(now.Add(-50 * time.Hour)),
		Reason: `/Library/Managed Preferences/com.clearance.agent.plist: unknown key "CAFingerprnt": did you mean CAFingerprint? (known keys: VerifierAddress, CAFile, CAPEM, CAFingerprint, EnrollSecret)`}
	devs[2].SettingsRejection = &agentv1.SettingsRejection{At: timestamppb.New(now.Add(-time.Minute)), Reason: "StateDir \u202eevil\x1b[2J"}
	for _, tc := range []struct {
		name  string
		width int
	}{{"devices", 80}, {"devices-wide", 0}} {
		var b strings.Builder
		if err := renderDevices(&b, devs, now, tc.width); err != nil {
			t.Fatal(err)
		}
		checkTable(t, tc.name, b.String(), tc.width)
	}
	// devices --settings-rejected: those Macs, with when and why, cut to
	// the width or whole.
	for _, tc := range []struct {
		name  string
		width int
	}{{"devices-settings-rejected", 80}, {"devices-settings-rejected-wide", 0}} {
		var b strings.Builder
		if err := renderRejectedSettings(&b, devs[:3], now, tc.width); err != nil {
			t.Fatal(err)
		}
		checkTable(t, tc.name, b.String(), tc.width)
	}
	ds := []*adminv1.Decision{
		{At: timestamppb.New(now), Username: "bob@example.com", DeviceId: "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d", Reason: "policy_failed",
			Results: []*adminv1.DecisionPolicyResult{
				{PolicyId: "filevault", Status: adminv1.PolicyStatus_POLICY_STATUS_FAIL, Required: true},
				{PolicyId: "firewall", Status: adminv1.PolicyStatus_POLICY_STATUS_ERROR, Required: true},
				{PolicyId: "screen-lock", Status: adminv1.PolicyStatus_POLICY_STATUS_MISSING, Required: true},
				{PolicyId: "macos-version", Status: adminv1.PolicyStatus_POLICY_STATUS_FAIL},
			}},
		{At: timestamppb.New(now.Add(-time.Hour)), Username: "alice.with.a.very.long.name@corp.example.com", DeviceId: "3f2c8a4e-9b1d-4e7f-8a6c-2d5e9f0b1c3a", Allow: true, Reason: "allowed", UserNotBound: true},
		{At: timestamppb.New(now.Add(-2 * time.Hour)), Username: "carol@example.com", Reason: "unknown_device"},
		{At: timestamppb.New(now.Add(-3 * time.Hour)), Username: "dan@example.com", DeviceId: "3f2c8a4e-9b1d-4e7f-8a6c-2d5e9f0b1c3a", Allow: true,
			Reason: "policy_failed", Source: "cloudflare", Score: 90, Mode: "warn", Results: []*adminv1.DecisionPolicyResult{
				{PolicyId: "filevault", Status: adminv1.PolicyStatus_POLICY_STATUS_FAIL, Required: true, Enforcement: "warn"},
			}},
		// Let in though failing: the mode says by what, beside the result.
		{At: timestamppb.New(now.Add(-4 * time.Hour)), Username: "erin.with.a.long.name@corp.example.com", DeviceId: "3f2c8a4e-9b1d-4e7f-8a6c-2d5e9f0b1c3a", Allow: true,
			Reason: "allowed", Mode: "monitor", Results: []*adminv1.DecisionPolicyResult{
				{PolicyId: "filevault", Status: adminv1.PolicyStatus_POLICY_STATUS_FAIL, Required: true, Enforcement: "monitor"},
				{PolicyId: "firewall", Status: adminv1.PolicyStatus_POLICY_STATUS_FAIL, Required: true, Enforcement: "monitor"},
			}},
		{At: timestamppb.New(now.Add(-5 * time.Hour)), Username: "fay@example.com", DeviceId: "3f2c8a4e-9b1d-4e7f-8a6c-2d5e9f0b1c3a", Allow: true,
			Reason: "allowed", Mode: "bypassed", Results: []*adminv1.DecisionPolicyResult{
				{PolicyId: "firewall", Status: adminv1.PolicyStatus_POLICY_STATUS_FAIL, Required: true},
			}},
	}
	// A denial names what blocked first; what only a monitor, an
	// exemption or a warning touched is marked as such.
	mixed := &adminv1.Decision{At: timestamppb.New(now.Add(-6 * time.Hour)), Username: "gus@example.com", DeviceId: "3f2c8a4e-9b1d-4e7f-8a6c-2d5e9f0b1c3a",
		Reason: "policy_failed", Results: []*adminv1.DecisionPolicyResult{
			{PolicyId: "firewall", Status: adminv1.PolicyStatus_POLICY_STATUS_FAIL, Required: true, Enforcement: "monitor", Waiver: "monitor"},
			{PolicyId: "screen-lock", Status: adminv1.PolicyStatus_POLICY_STATUS_FAIL, Required: true, Enforcement: "enforce", Waiver: "exempt", ExemptionId: 4},
			{PolicyId: "sip", Status: adminv1.PolicyStatus_POLICY_STATUS_FAIL, Required: true, Enforcement: "warn"},
			{PolicyId: "filevault", Status: adminv1.PolicyStatus_POLICY_STATUS_FAIL, Required: true, Enforcement: "enforce"},
			{PolicyId: "gatekeeper", Status: adminv1.PolicyStatus_POLICY_STATUS_ERROR, Required: true},
		}}
	if got, want := strings.Join(failedPolicies(mixed), ","), "filevault,gatekeeper,firewall (monitor),screen-lock (exempt),sip (warn)"; got != want {
		t.Errorf("a denial's policies read %q, want %q", got, want)
	}
	ds = append(ds, mixed)
	// A username a Cyrillic а makes another person's is marked.
	ds = append(ds, &adminv1.Decision{At: timestamppb.New(now.Add(-7 * time.Hour)), Username: "\u0430lice@example.com",
		DeviceId: "3f2c8a4e-9b1d-4e7f-8a6c-2d5e9f0b1c3a", Reason: "user_not_bound", UserNotBound: true})
	// A wider terminal's columns go to the reason: the others are whole
	// at 80 already, or give way first.
	for _, tc := range []struct {
		name  string
		width int
	}{{"decisions", 80}, {"decisions-120", 120}} {
		var b strings.Builder
		if err := renderDecisions(&b, ds, time.UTC, tc.width); err != nil {
			t.Fatal(err)
		}
		checkTable(t, tc.name, b.String(), tc.width)
	}

	es := []*adminv1.AuditEvent{
		{Id: 4, At: timestamppb.New(now), Actor: "admin-api", Action: "exemption.grant", DeviceId: "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d",
			Detail: "exemption 3 from filevault, firewall until 2026-03-11T12:00:00Z: replacement Mac on order, arriving next week"},
		{Id: 3, At: timestamppb.New(now.Add(-time.Minute)), Actor: "admin:jane@example.com", Action: "device.revoke", DeviceId: "3f2c8a4e-9b1d-4e7f-8a6c-2d5e9f0b1c3a", Detail: "stolen"},
		{Id: 6, At: timestamppb.New(now.Add(-2 * time.Minute)), Actor: "okta-api-sync", Action: "group.members",
			Detail:   "group 00g1 (Engineering) from the Okta API: 2 members added, 3 removed",
			Subjects: []*adminv1.AuditSubject{{UserId: "00u2", Username: "bob@example.com"}, {UserId: "00u3", Username: "cy@example.com"}}, MoreSubjects: 3},
		// A username given to someone else after its first holder left:
		// each row names its person's id.
		{Id: 5, At: timestamppb.New(now.Add(-3 * time.Minute)), Actor: "scim:7f3a9c2e41d0", Action: "user.create", Detail: "user 00u9 (ada@example.com) created",
			Subjects: []*adminv1.AuditSubject{{UserId: "00u9", Username: "ada@example.com"}}},
		{Id: 2, At: timestamppb.New(now.Add(-time.Hour)), Actor: "scim:7f3a9c2e41d0", Action: "user.deactivate", Detail: "user 00u1 (evil\x1b[2J@example.com) deactivated",
			Subjects: []*adminv1.AuditSubject{{UserId: "00u1", Username: "evil\x1b[2J@example.com"}}},
		{Id: 7, At: timestamppb.New(now.Add(-2 * time.Hour)), Actor: "scim:7f3a9c2e41d0", Action: "user.delete", Detail: "user 00u4 deleted",
			Subjects: []*adminv1.AuditSubject{{UserId: "00u4", Username: "ADA@example.com"}}},
		{Id: 8, At: timestamppb.New(now.Add(-3 * time.Hour)), Actor: "admin:jane@example.com", Action: "exemption.grant", Detail: "exemption 2: user \u0430da@example.com, all policies",
			Subjects: []*adminv1.AuditSubject{{Username: "\u0430da@example.com"}}},
		{Id: 1, At: timestamppb.New(now.Add(-400 * time.Hour)), Actor: "cli", Action: "secret.create"},
	}
	for _, tc := range []struct {
		name  string
		width int
	}{{"audit", 80}, {"audit-120", 120}, {"audit-wide", 0}} {
		var b strings.Builder
		if err := renderAudit(&b, es, time.UTC, tc.width); err != nil {
			t.Fatal(err)
		}
		checkTable(t, tc.name, b.String(), tc.width)
	}
	// A listing about no one (a device's history, a log older than
	// subjects) has no SUBJECT column of dashes.
	var b strings.Builder
	if err := renderAudit(&b, []*adminv1.AuditEvent{es[0], es[1], es[len(es)-1]}, time.UTC, 80); err != nil {
		t.Fatal(err)
	}
	if head, _, _ := strings.Cut(b.String(), "\n"); head != "TIME UTC             ACTOR             ACTION           DEVICE    DETAIL" {
		t.Errorf("audit about no one:\n%s", b.String())
	}
}

func checkTable(t *testing.T, name, got string, width int) {
	t.Helper()
	if strings.ContainsAny(got, "\t\x1b") {
		t.Errorf("%s has control characters:\n%q", name, got)
	}
	for _, l := range strings.Split(strings.TrimSuffix(got, "\n"), "\n") {
		if n := len([]rune(l)); width > 0 && n > width {
			t.Errorf("%s: line of %d characters: %q", name, n, l)
		}
	}
	checkGolden(t, "testdata/"+name+".golden", got)
}

// Names cut to fit keep their ends, which tell look-alike prefixes apart,
// and a leading mark stays whole.
func TestCutMiddle(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		n    int
		want string
	}{
		{"alice.smith@example.com", 16, "alice.sm…ple.com"},
		{"alice.smith@example.com.evil.io", 16, "alice.sm…evil.io"},
		{"alice.smith@example.com", 23, "alice.smith@example.com"},
		{"(not ASCII) аlice.smith@example.com", 24, "(not ASCII) аlice.…e.com"},
		{"(not ASCII) аlice.smith@example.com", 13, "(not ASCII) …"},
		{"abc", 2, "a…"},
		// Only the two marks are kept whole: a name that begins like one
		// is cut as any other.
		{"(admin) alice.smith@example.com", 16, "(admin) …ple.com"},
	} {
		if got := cutMiddle(tc.in, tc.n); got != tc.want || runeLen(got) > tc.n {
			t.Errorf("cutMiddle(%q, %d) = %q, want %q", tc.in, tc.n, got, tc.want)
		}
	}
}

// A verifier older than --settings-rejected lists every Mac: the command
// says so instead of showing each as rejecting its settings.
func TestOnlySettingsRejected(t *testing.T) {
	t.Parallel()
	rejected := &adminv1.Device{DeviceId: "a", SettingsRejection: &agentv1.SettingsRejection{Reason: "x"}}
	if err := onlySettingsRejected([]*adminv1.Device{rejected}); err != nil {
		t.Errorf("a filtered answer refused: %v", err)
	}
	if err := onlySettingsRejected([]*adminv1.Device{rejected, {DeviceId: "b"}}); err == nil || !strings.Contains(err.Error(), "upgrade the verifier") {
		t.Errorf("an unfiltered answer: %v, want it refused", err)
	}
}
