package main

import (
	"strings"
	"testing"

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
