package main

import (
	"context"
	"strings"
	"testing"
	"time"

	agentv1 "github.com/clearance/clearance/proto/gen/clearance/agent/v1"
	"github.com/clearance/clearance/verifier/storage"
)

// TestDevicesOfAUser: `devices --user` lists the Macs a person signed in
// from, with no directory to ask (GetUser answers NotFound): the decision
// log says.
func TestDevicesOfAUser(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	secret, _, err := execute(noEnv, "secret", "create", "--data-dir", s.dir)
	if err != nil {
		t.Fatal(err)
	}
	alices := s.enroll(t, lastLine(secret), "0A1B2C3D-4E5F-4061-8172-839405A6B7E1", agentv1.PolicyStatus_POLICY_STATUS_PASS).DeviceID
	other := s.enroll(t, lastLine(secret), "0A1B2C3D-4E5F-4061-8172-839405A6B7E2", agentv1.PolicyStatus_POLICY_STATUS_PASS).DeviceID
	for _, d := range []storage.DecisionRecord{
		{At: time.Now(), Username: "alice@example.com", DeviceID: alices, Allow: true, Reason: "allowed", Source: "sso"},
		{At: time.Now(), Username: "bob@example.com", DeviceID: other, Allow: true, Reason: "allowed", Source: "sso"},
		// Cloudflare's evaluations name no person who used the Mac.
		{At: time.Now(), Username: "alice@example.com", DeviceID: other, Allow: true, Reason: "allowed", Source: storage.SourceCloudflare},
	} {
		if _, err := s.srv.Store.AppendDecision(context.Background(), d); err != nil {
			t.Fatal(err)
		}
	}
	out, _, err := execute(noEnv, "devices", "--data-dir", s.dir, "--user", "alice@example.com", "--wide")
	if err != nil || !strings.Contains(out, alices) || strings.Contains(out, other) {
		t.Fatalf("devices --user alice: %v\n%s", err, out)
	}
	if _, stderr, err := execute(noEnv, "devices", "--data-dir", s.dir, "--user", "nobody@example.com"); err != nil || !strings.Contains(stderr, "no devices match") {
		t.Fatalf("devices --user nobody: %v %q", err, stderr)
	}
}
