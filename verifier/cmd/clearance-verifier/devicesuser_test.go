package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/clearance/clearance/internal/protoagent"
	agentv1 "github.com/clearance/clearance/proto/gen/clearance/agent/v1"
	"github.com/clearance/clearance/verifier/storage"
)

// TestDevicesOfAUser: `devices --user` lists the Macs a person signed in
// from, with no directory to ask (GetUser answers NotFound): the decision
// log says.
func TestDevicesOfAUser(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	secret := s.newSecret(t)
	const alicesUUID = "0A1B2C3D-4E5F-4061-8172-839405A6B7E1"
	alices := s.enroll(t, secret, alicesUUID, agentv1.PolicyStatus_POLICY_STATUS_PASS).DeviceID
	other := s.enroll(t, secret, "0A1B2C3D-4E5F-4061-8172-839405A6B7E2", agentv1.PolicyStatus_POLICY_STATUS_PASS).DeviceID
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
	out, stderr, err := execute(noEnv, "devices", "--data-dir", s.dir, "--user", "alice@example.com", "--wide")
	if err != nil || !strings.Contains(out, alices) || strings.Contains(out, other) || stderr != "" {
		t.Fatalf("devices --user alice: %v %q\n%s", err, stderr, out)
	}
	// With the other filters, which the verifier applies too: her Mac
	// passes, and a known person with no Mac left is no typo.
	if out, stderr, err := execute(noEnv, "devices", "--data-dir", s.dir, "--user", "alice@example.com", "--failing"); err != nil || out != "" || stderr != "no devices match\n" {
		t.Fatalf("devices --user alice --failing: %v %q %q", err, out, stderr)
	}
	if out, _, err := execute(noEnv, "devices", "--data-dir", s.dir, "--user", "alice@example.com", "--serial", protoagent.SerialFor(alicesUUID), "--wide"); err != nil || !strings.Contains(out, alices) {
		t.Fatalf("devices --user alice --serial of her Mac: %v\n%s", err, out)
	}
	// A name nobody has, or one that passes for alice's (a Cyrillic а),
	// lists nothing and says why on stderr.
	for _, name := range []string{"nobody@example.com", "\u0430lice@example.com"} {
		out, stderr, err := execute(noEnv, "devices", "--data-dir", s.dir, "--user", name)
		if err != nil || out != "" || !strings.Contains(stderr, "note: no user named") ||
			!strings.Contains(stderr, "no Mac is bound to that username or signed in from by it") || !strings.HasSuffix(stderr, "no devices match\n") {
			t.Errorf("devices --user %q: %v %q %q", name, err, out, stderr)
		}
	}
	if _, _, err := execute(noEnv, "devices", "--data-dir", s.dir, "--user", " "); err == nil || !strings.Contains(err.Error(), "--user is empty") {
		t.Errorf("devices --user ' ': %v", err)
	}
}

// TestDevicesOfAConsoleUser: `devices --user` lists the Mac whose local
// account the binding rule maps to the person, who has neither signed in
// from it nor been assigned it.
func TestDevicesOfAConsoleUser(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	secret := s.newSecret(t)
	henrys := s.enrollWith(t, secret, "0A1B2C3D-4E5F-4061-8172-839405A6B7E3", agentv1.PolicyStatus_POLICY_STATUS_PASS, func(r *agentv1.PostureReport) {
		r.Accounts = []*agentv1.LocalAccount{{Name: "henry", Console: true}}
	}).DeviceID
	other := s.enroll(t, secret, "0A1B2C3D-4E5F-4061-8172-839405A6B7E4", agentv1.PolicyStatus_POLICY_STATUS_PASS).DeviceID
	now := time.Now()
	if _, err := s.srv.Store.CreateUser(context.Background(), storage.User{ID: "u-henry", UserName: "henry@example.com", Active: true, CreatedAt: now, UpdatedAt: now},
		storage.AuditEvent{At: now, Actor: "scim:test", Action: "user.create"}); err != nil {
		t.Fatal(err)
	}
	out, _, err := execute(noEnv, "devices", "--data-dir", s.dir, "--user", "henry@example.com", "--wide")
	if err != nil || !strings.Contains(out, henrys) || strings.Contains(out, other) {
		t.Fatalf("devices --user henry: %v\n%s", err, out)
	}
}

// TestDevicesAssign: a Mac assigned by the start of its id to a person by
// username, shown on the person's list and in the audit log, and taken
// back; unknown people and devices, and a second unassignment, are
// refused with what is wrong.
func TestDevicesAssign(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	secret := s.newSecret(t)
	mac := s.enroll(t, secret, "0A1B2C3D-4E5F-4061-8172-839405A6B7F1", agentv1.PolicyStatus_POLICY_STATUS_PASS).DeviceID
	now := time.Now()
	if _, err := s.srv.Store.CreateUser(context.Background(), storage.User{ID: "u-jane", UserName: "jane@example.com", Active: true, CreatedAt: now, UpdatedAt: now},
		storage.AuditEvent{At: now, Actor: "scim:test", Action: "user.create"}); err != nil {
		t.Fatal(err)
	}
	out, _, err := execute(noEnv, "devices", "assign", "--data-dir", s.dir, mac[:8], "Jane@Example.com")
	if err != nil || !strings.Contains(out, "assigned: device "+mac+" to jane@example.com (u-jane)") {
		t.Fatalf("assign: %v %q", err, out)
	}
	if out, _, err := execute(noEnv, "devices", "--data-dir", s.dir, "--user", "jane@example.com", "--wide"); err != nil || !strings.Contains(out, mac) {
		t.Fatalf("devices --user jane after the assignment: %v\n%s", err, out)
	}
	if out, _, err := execute(noEnv, "audit", "--data-dir", s.dir, "--action", "device.assign", "--wide"); err != nil || !strings.Contains(out, "u-jane") {
		t.Fatalf("audit: %v\n%s", err, out)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"assign", mac[:8], "nobody@example.com"}, "nobody@example.com"},
		{[]string{"assign", "ffffffff", "jane@example.com"}, `no device id starts with "ffffffff"`},
		{[]string{"assign", mac[:8]}, "the user's username or id"},
	} {
		args := append([]string{"devices", tc.args[0], "--data-dir", s.dir}, tc.args[1:]...)
		if _, _, err := execute(noEnv, args...); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want %q", tc.args, err, tc.want)
		}
	}
	if out, _, err := execute(noEnv, "devices", "unassign", "--data-dir", s.dir, mac[:8], "jane@example.com"); err != nil || !strings.Contains(out, "unassigned") {
		t.Fatalf("unassign: %v %q", err, out)
	}
	if _, _, err := execute(noEnv, "devices", "unassign", "--data-dir", s.dir, mac[:8], "jane@example.com"); err == nil || !strings.Contains(err.Error(), "is not assigned") {
		t.Fatalf("a second unassign: %v", err)
	}
}
