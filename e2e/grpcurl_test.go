package e2e

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/clearance/clearance/internal/protoagent"
	"github.com/clearance/clearance/internal/testkit"
	agentv1 "github.com/clearance/clearance/proto/gen/clearance/agent/v1"
)

// grpcurlPath finds the pinned grpcurl that `make tools` installs into ./bin.
func grpcurlPath(t *testing.T) string {
	t.Helper()
	return testkit.RequireTool(t, "grpcurl")
}

// shell runs a script with bash -eu, grpcurl on PATH, and env set.
func shell(t *testing.T, script string, env ...string) (string, error) {
	t.Helper()
	cmd := exec.Command("bash", "-euo", "pipefail", "-c", script)
	// Files an example writes (a token) land in a directory of the test's.
	cmd.Dir = t.TempDir()
	// The binaries built for this package come first: README examples run
	// clearance-verifier too.
	cmd.Env = append(os.Environ(), "PATH="+binDir+":"+filepath.Dir(grpcurlPath(t))+":"+os.Getenv("PATH"), "COLUMNS=80")
	cmd.Env = append(cmd.Env, env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

var exampleBlock = regexp.MustCompile("(?s)<!-- example: ([a-z-]+) -->\n```sh\n(.*?)```")

// TestGrpcurl checks the public gRPC surface with the real grpcurl, and runs
// every example in the README exactly as written.
func TestGrpcurl(t *testing.T) {
	t.Parallel()
	dataDir := t.TempDir()
	v := startVerifier(t, dataDir)
	adminToken, err := os.ReadFile(filepath.Join(dataDir, "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	_, httpPort, err := net.SplitHostPort(v.httpAddr)
	if err != nil {
		t.Fatal(err)
	}
	env := []string{"VERIFIER=" + v.grpcAddr, "HTTP=localhost:" + httpPort, "DATA=" + dataDir, "ADMIN_TOKEN=" + strings.TrimSpace(string(adminToken))}

	// A device that answers CheckNow, so every example has something to show.
	secret := v.enrollSecret()
	a := enrollAgent(t, v.grpcAddr, v.rootPEM(), secret, "0A1B2C3D-4E5F-4061-8172-839405A6B7C8")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st, err := a.Connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.Send(protoagent.Sign(a.Key, a.Report(st.PolicySet, 1, time.Now(), nil, agentv1.PolicyStatus_POLICY_STATUS_PASS))); err != nil {
		t.Fatal(err)
	}
	go answerChecks(a, st, 1)
	env = append(env, "DEVICE="+a.DeviceID)

	// A second device that fails every policy: its "compliant": false must
	// show in grpcurl's JSON, which drops plain bools that are false.
	failing := enrollAgent(t, v.grpcAddr, v.rootPEM(), secret, "0A1B2C3D-4E5F-4061-8172-839405A6B7C9")
	fst, err := failing.Connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer fst.Close()
	if _, err := fst.Exchange(protoagent.Sign(failing.Key, failing.Report(fst.PolicySet, 1, time.Now(), nil, agentv1.PolicyStatus_POLICY_STATUS_FAIL))); err != nil {
		t.Fatal(err)
	}
	// Since when each Mac fails or passes is stored with its report (the
	// passing Mac's report was sent without waiting for its ack): the
	// examples below show it.
	waitFor(t, "failing_since and compliant_since", func() bool {
		out, err := shell(t, `clearance-verifier devices --data-dir "$DATA" --json`, env...)
		return err == nil && strings.Contains(out, `"failingSince"`) && strings.Contains(out, `"compliantSince"`)
	})

	t.Run("admin call without token is refused", func(t *testing.T) {
		out, err := shell(t, `grpcurl -cacert "$DATA/ca.pem" "$VERIFIER" clearance.admin.v1.AdminService/ListDevices`, env...)
		if err == nil || !strings.Contains(out, "Code: Unauthenticated") {
			t.Fatalf("err=%v out=%s", err, out)
		}
	})
	t.Run("admin call with a wrong token is refused", func(t *testing.T) {
		out, err := shell(t, `grpcurl -cacert "$DATA/ca.pem" -H "authorization: Bearer nope" "$VERIFIER" clearance.admin.v1.AdminService/ListDevices`, env...)
		if err == nil || !strings.Contains(out, "Code: Unauthenticated") || !strings.Contains(out, "admin token is not valid") {
			t.Fatalf("err=%v out=%s", err, out)
		}
	})

	t.Run("a read token is refused a change", func(t *testing.T) {
		out, err := shell(t, `(umask 077; clearance-verifier admin-token create --data-dir "$DATA" --name ops-bot --role read > bot.token)
BOT_TOKEN="$(cat bot.token)" grpcurl -cacert "$DATA/ca.pem" -expand-headers -H 'authorization: Bearer ${BOT_TOKEN}' -d "{\"device_id\": \"$DEVICE\", \"reason\": \"x\"}" \
  "$VERIFIER" clearance.admin.v1.AdminService/RevokeDevice`, env...)
		if err == nil || !strings.Contains(out, "Code: PermissionDenied") || !strings.Contains(out, "ops-bot has role read") {
			t.Fatalf("err=%v out=%s", err, out)
		}
		out, err = shell(t, `clearance-verifier devices --data-dir "$DATA" --wide`, env...)
		if err != nil || strings.Contains(out, "revoked") {
			t.Fatalf("after the refused revocation: err=%v\n%s", err, out)
		}
	})

	// operations.md's lookup by serial number, pointed at this verifier
	// and at the failing Mac's serial, in other case with spaces around.
	t.Run("operations.md ListDevices by serial number", func(t *testing.T) {
		ops, err := os.ReadFile("../docs/operations.md")
		if err != nil {
			t.Fatal(err)
		}
		const docSerial = "C02XK1ABJGH5"
		var script string
		for _, b := range regexp.MustCompile("(?s)```sh\n(.*?)```").FindAllStringSubmatch(string(ops), -1) {
			if strings.Contains(b[1], `"serial_number": "`+docSerial+`"`) && strings.Contains(b[1], "/ListDevices") {
				script = b[1]
			}
		}
		if script == "" {
			t.Fatal("operations.md has no ListDevices example by serial number")
		}
		script = strings.NewReplacer("/var/lib/clearance", `$DATA`, "localhost:8443", `$VERIFIER`,
			docSerial, " "+strings.ToLower(failing.Facts.GetSerialNumber())+" ").Replace(script)
		out, err := shell(t, script, env...)
		if err != nil || !strings.Contains(out, `"deviceId": "`+failing.DeviceID+`"`) || strings.Contains(out, a.DeviceID) || strings.Contains(out, "nextPageToken") {
			t.Fatalf("%v\n%s\n%s", err, script, out)
		}
	})

	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	// What each example must show.
	want := map[string][]string{
		"list":         {"clearance.admin.v1.AdminService", "clearance.agent.v1.AgentService", "grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection"},
		"health":       {`"status": "SERVING"`},
		"list-devices": {a.DeviceID, `"compliant": true`, `"lastSeen"`, failing.DeviceID, `"compliant": false`, `"failing": [`, `"filevault"`},
		// The CLI's table: both devices by their short ids, the failing
		// one with what it fails.
		"devices":    {"DEVICE", "HOST", "PASS/FAIL", a.DeviceID[:8], failing.DeviceID[:8], "filevault"},
		"get-device": {a.DeviceID, `"latestReport"`, `"POLICY_STATUS_PASS"`, `"filevault"`, `"since"`, `"compliantSince"`},
		// The metrics, with the metrics token from standard input.
		"metrics":       {"clearance_devices{", "clearance_reports_accepted_total"},
		"request-check": {`"nonce"`, `"POLICY_STATUS_PASS"`},
		"list-policies": {`"filevault"`, `"resolution"`},
		"create-secret": {`"secret"`, `"Kandji, design team"`},
		// The device passes every policy on its stored report, decided without
		// asking the agent (no live_check in the example).
		"explain-access": {a.DeviceID, `"allow": true`, `"reason": "allowed"`, `"liveCheck": "none"`, `"POLICY_STATUS_PASS"`, `"filevault"`},
		"describe":       {"rpc RequestCheck", "rpc RevokeDevice", "rpc ListDecisions", "rpc ExplainAccess", "rpc AssignDevice", "rpc ListAuditEvents"},
		// The CLI's table: the enrollments by the agents, the test's
		// secret by the CLI.
		"audit": {"TIME", "ACTOR", "ACTION", "agent", "device.enroll", a.DeviceID[:8], failing.DeviceID[:8]},
		// The CLI's table of the policies in force: the examples' set,
		// enforced as written (no ceiling).
		"policies": {"ID", "MODE", "GRACE", "filevault", "enforce"},
		// The fleet's forecast: the failing Mac blocked, the passing one
		// left out of the table but counted.
		"forecast": {"DEVICE", "IF ENFORCED", failing.DeviceID[:8], "blocked", "filevault",
			"If every policy were enforced, they would stop 1 of 2 sign-ins (1 of 2 Macs)"},
		"forecast-enforcement": {`"policyIds": [`, `"firewall"`, failing.DeviceID, a.DeviceID, `"blockingPolicyIds": [`, `"enforced"`},
		// The CLI's dry run for the passing device: let in, every policy
		// passing.
		"explain": {"decision     allow: allowed", a.DeviceID, "EFFECT", "filevault", "PASS"},
		// The device's enrollment, by its agent.
		"list-audit": {`"actor": "agent"`, `"action": "device.enroll"`, `"deviceId": "` + a.DeviceID + `"`},
		// A read token made by the CLI lists the policies over grpcurl
		// and the devices with the CLI.
		"admin-token": {`"filevault"`, "DEVICE", a.DeviceID[:8], "actor     admin:jane@example.com", "role      read"},
	}
	// What each example must print in full. Nobody signs in during this test,
	// so the decision log is empty: the example only shows that the call and
	// its filters are accepted and answer with no decisions.
	exact := map[string]string{
		"list-decisions": "{}",
		// Nobody provisioned users or pushed groups over SCIM here.
		"list-users":  "{}",
		"list-groups": "{}",
		"decisions":   "no sign-ins match",
		"people":      "no people are provisioned: they come from Okta, over SCIM or the Okta API sync (see docs/okta.md)",
	}
	blocks := exampleBlock.FindAllStringSubmatch(string(readme), -1)
	seen := map[string]bool{}
	for _, b := range blocks {
		name, script := b[1], b[2]
		seen[name] = true
		t.Run("README "+name, func(t *testing.T) {
			out, err := shell(t, script, env...)
			if err != nil {
				t.Fatalf("README example %q failed: %v\n%s", name, err, out)
			}
			w, ok := want[name]
			e, isExact := exact[name]
			if !ok && !isExact {
				t.Fatalf("README example %q has no expectations in this test", name)
			}
			if isExact && strings.TrimSpace(out) != e {
				t.Errorf("output is not %q:\n%s", e, out)
			}
			for _, s := range w {
				if !strings.Contains(out, s) {
					t.Errorf("output lacks %q:\n%s", s, out)
				}
			}
		})
	}
	for name := range want {
		if !seen[name] {
			t.Errorf("README lost its %q example", name)
		}
	}
	for name := range exact {
		if !seen[name] {
			t.Errorf("README lost its %q example", name)
		}
	}
}
