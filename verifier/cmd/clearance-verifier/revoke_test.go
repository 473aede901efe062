package main

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/clearance/clearance/internal/testkit"
	agentv1 "github.com/clearance/clearance/proto/gen/clearance/agent/v1"
)

// TestDevicesRevoke revokes a device by the start of its id, with a
// reason, and refuses one without a reason or naming no device.
func TestDevicesRevoke(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	secret, _, err := execute(noEnv, "secret", "create", "--data-dir", s.dir)
	if err != nil {
		t.Fatal(err)
	}
	mac := s.enroll(t, lastLine(secret), "0A1B2C3D-4E5F-4061-8172-839405A6B7D1", agentv1.PolicyStatus_POLICY_STATUS_PASS).DeviceID
	if _, _, err := execute(noEnv, "devices", "revoke", "--data-dir", s.dir, mac[:8]); err == nil || !strings.Contains(err.Error(), "--reason is required") {
		t.Fatalf("revoke without a reason: %v", err)
	}
	if _, _, err := execute(noEnv, "devices", "revoke", "--data-dir", s.dir, "ffffffff", "--reason", "stolen"); err == nil || !strings.Contains(err.Error(), `no enrolled device's id is or starts with "ffffffff"`) {
		t.Fatalf("revoke of no device: %v", err)
	}
	if out, _, _ := execute(noEnv, "devices", "--data-dir", s.dir, "--wide"); strings.Contains(out, "revoked") {
		t.Fatalf("a refused revoke revoked:\n%s", out)
	}
	out, _, err := execute(noEnv, "devices", "revoke", "--data-dir", s.dir, strings.ToUpper(mac[:8]), "--reason", "reported stolen, ticket 4711")
	if err != nil || !strings.Contains(out, "revoked: device "+mac) {
		t.Fatalf("revoke: %v %q", err, out)
	}
	if out, _, _ := execute(noEnv, "devices", "--data-dir", s.dir, "--wide"); !strings.Contains(out, "revoked") {
		t.Fatalf("the revoked device is not shown revoked:\n%s", out)
	}
	// Again: the first revocation stands, said so, and nothing is added
	// to the audit log.
	_, _, err = execute(noEnv, "devices", "revoke", "--data-dir", s.dir, mac[:8], "--reason", "again")
	if err == nil || !strings.Contains(err.Error(), "was revoked already") || !strings.Contains(err.Error(), `"reported stolen, ticket 4711"`) {
		t.Fatalf("a second revoke: %v", err)
	}
	if out, _, _ := execute(noEnv, "audit", "--data-dir", s.dir, "--action", "device.revoke"); strings.Count(out, "device.revoke") != 1 || strings.Contains(out, "again") {
		t.Fatalf("audit after a second revoke:\n%s", out)
	}
}

// TestHealthFiltersLeaveRevokedOut: a revoked Mac can sign in to nothing,
// so the fleet-health filters leave it out unless --revoked keeps it;
// the whole table and a search by serial still show it.
func TestHealthFiltersLeaveRevokedOut(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	secret, _, err := execute(noEnv, "secret", "create", "--data-dir", s.dir)
	if err != nil {
		t.Fatal(err)
	}
	kept := s.enroll(t, lastLine(secret), "0A1B2C3D-4E5F-4061-8172-839405A6B7E1", agentv1.PolicyStatus_POLICY_STATUS_FAIL).DeviceID
	stolen := s.enroll(t, lastLine(secret), "0A1B2C3D-4E5F-4061-8172-839405A6B7E2", agentv1.PolicyStatus_POLICY_STATUS_FAIL).DeviceID
	if _, _, err := execute(noEnv, "devices", "revoke", "--data-dir", s.dir, stolen[:8], "--reason", "stolen"); err != nil {
		t.Fatal(err)
	}
	list := func(args ...string) string {
		t.Helper()
		out, stderr, err := execute(noEnv, append([]string{"devices", "--data-dir", s.dir}, args...)...)
		if err != nil {
			t.Fatalf("devices %v: %v\n%s", args, err, stderr)
		}
		return out
	}
	for _, args := range [][]string{{"--failing"}, {"--policy", "sip"}, {"--failing-for", "0s"}} {
		testkit.Eventually(t, 10*time.Second, fmt.Sprintf("devices %v listing the active failing Mac", args), func() bool {
			return strings.Contains(list(args...), kept[:8])
		})
		if out := list(args...); strings.Contains(out, stolen[:8]) {
			t.Errorf("devices %v lists the revoked Mac:\n%s", args, out)
		}
		if out := list(append(args, "--revoked")...); !strings.Contains(out, stolen[:8]) || !strings.Contains(out, kept[:8]) {
			t.Errorf("devices %v --revoked:\n%s", args, out)
		}
	}
	// The revoked Mac's stream is closed: offline, but not listed so.
	testkit.Eventually(t, 10*time.Second, "--offline --revoked listing the revoked Mac", func() bool {
		return strings.Contains(list("--offline", "--revoked"), stolen[:8])
	})
	if out, stderr, err := execute(noEnv, "devices", "--data-dir", s.dir, "--offline"); err != nil || out != "" || stderr != "no devices match\n" {
		t.Errorf("--offline: %q %q %v", out, stderr, err)
	}
	for _, args := range [][]string{nil, {"--wide"}} {
		if out := list(args...); !strings.Contains(out, stolen[:8]) || !strings.Contains(out, "revoked") {
			t.Errorf("devices %v leaves the revoked Mac out:\n%s", args, out)
		}
	}
	code, _, stderr := exitOf(noEnv, "devices", "--data-dir", s.dir, "--revoked")
	if code != 2 || !strings.Contains(stderr, "--revoked keeps revoked Macs in --failing") {
		t.Errorf("--revoked alone: exit %d, %q", code, stderr)
	}
}
