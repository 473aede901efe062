package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	agentv1 "github.com/clearance/clearance/proto/gen/clearance/agent/v1"
)

// TestAdminTokenCommands: a person's read token lists devices and is
// refused a revocation with what to do; an admin token's revocation is
// audited with its holder's name; a revoked token is refused at once;
// bad names, roles and files are refused before anything is stored.
func TestAdminTokenCommands(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	secret, _, err := execute(noEnv, "secret", "create", "--data-dir", s.dir)
	if err != nil {
		t.Fatal(err)
	}
	mac := s.enroll(t, lastLine(secret), "0A1B2C3D-4E5F-4061-8172-839405A6B7E2", agentv1.PolicyStatus_POLICY_STATUS_PASS).DeviceID

	for _, bad := range [][]string{
		{"--name", ""},
		{"--name", "bob smith"},
		{"--name", "bоb"}, // Cyrillic o
		{"--name", "bob", "--role", "owner"},
		{"--name", "bob", "--expires", "-1h"},
		{"--name", "bob", "--expires", "1ns"},
		{"--name", "bob", "--expires", "2100000h"},
		{"--name", "ä@example.com"},
	} {
		args := append([]string{"admin-token", "create", "--data-dir", s.dir}, bad...)
		if _, _, err := execute(noEnv, args...); err == nil {
			t.Errorf("%q: accepted", bad)
		}
	}
	if out, _, err := execute(noEnv, "admin-token", "list", "--data-dir", s.dir); err != nil || strings.Count(out, "\n") != 1 {
		t.Fatalf("refused creations stored tokens: %v\n%s", err, out)
	}

	tokenFile := func(name, role string) string {
		out, errOut, err := execute(noEnv, "admin-token", "create", "--data-dir", s.dir, "--name", name, "--role", role)
		if err != nil || !strings.Contains(errOut, "shown only once") {
			t.Fatalf("create %s: %v %s", name, err, errOut)
		}
		p := filepath.Join(t.TempDir(), "token")
		if err := os.WriteFile(p, []byte(lastLine(out)+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	bob := tokenFile("bob@example.com", "read")
	alice := tokenFile("alice@example.com", "admin")
	if _, _, err := execute(noEnv, "admin-token", "create", "--data-dir", s.dir, "--name", "bob@example.com"); err == nil ||
		!strings.Contains(err.Error(), "already has an admin token") {
		t.Fatalf("a second token for bob: %v", err)
	}

	// whoami: each token as the verifier takes it.
	whoami := func(env func(string) string, args ...string) string {
		t.Helper()
		out, _, err := execute(env, append([]string{"admin-token", "whoami", "--data-dir", s.dir}, args...)...)
		if err != nil {
			t.Fatalf("whoami %v: %v", args, err)
		}
		return out
	}
	if out := whoami(noEnv, "--admin-token-file", bob); !strings.Contains(out, "actor     admin:bob@example.com\n") ||
		!strings.Contains(out, "role      read (lists and reads, changes nothing)\n") || !strings.Contains(out, "expires   never\n") ||
		!strings.Contains(out, "token     named, id ") {
		t.Errorf("whoami with bob's token:\n%s", out)
	}
	if out := whoami(noEnv); !strings.Contains(out, "actor     admin-api\n") || !strings.Contains(out, "the data dir's admin.token") ||
		!strings.Contains(out, "role      admin (every admin call)\n") {
		t.Errorf("whoami with the data dir's token:\n%s", out)
	}
	carol := func() string {
		out, _, err := execute(noEnv, "admin-token", "create", "--data-dir", s.dir, "--name", "carol", "--role", "read", "--expires", "2160h")
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(t.TempDir(), "token")
		if err := os.WriteFile(p, []byte(lastLine(out)+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}()
	if out := whoami(noEnv, "--admin-token-file", carol); !strings.Contains(out, "expires   20") || !strings.Contains(out, "(in 89d)") {
		t.Errorf("whoami with carol's expiring token:\n%s", out)
	}
	if _, _, err := execute(noEnv, "admin-token", "whoami", "--data-dir", s.dir, "extra"); err == nil {
		t.Error("whoami with an argument: no error")
	}

	if out, _, err := execute(noEnv, "devices", "--data-dir", s.dir, "--admin-token-file", bob, "--wide"); err != nil || !strings.Contains(out, mac) {
		t.Fatalf("devices with a read token: %v\n%s", err, out)
	}
	_, _, err = execute(noEnv, "devices", "revoke", "--data-dir", s.dir, "--admin-token-file", bob, mac[:8], "--reason", "lost")
	if err == nil || !strings.Contains(err.Error(), "has role read") || !strings.Contains(err.Error(), "ask for a token with role admin") {
		t.Fatalf("revoke with a read token: %v", err)
	}
	env := func(k string) string {
		if k == "CLEARANCE_ADMIN_TOKEN_FILE" {
			return alice
		}
		return ""
	}
	if _, _, err := execute(env, "devices", "revoke", "--data-dir", s.dir, mac[:8], "--reason", "lost"); err != nil {
		t.Fatalf("revoke with an admin token from the environment: %v", err)
	}
	out, _, err := execute(noEnv, "audit", "--data-dir", s.dir, "--actor", "admin:alice@example.com", "--wide")
	if err != nil || !strings.Contains(out, "device.revoke") {
		t.Fatalf("audit by alice: %v\n%s", err, out)
	}

	list, _, err := execute(noEnv, "admin-token", "list", "--data-dir", s.dir)
	if err != nil {
		t.Fatal(err)
	}
	var bobID string
	for _, line := range strings.Split(list, "\n") {
		if strings.Contains(line, "bob@example.com") {
			bobID = strings.Fields(line)[0]
		}
	}
	// From another machine: no data dir, the CA and the address given.
	caFile := filepath.Join(s.dir, "ca.pem")
	if out, _, err := execute(noEnv, "devices", "--ca-file", caFile, "--verifier", s.addr, "--admin-token-file", bob, "--wide"); err != nil || !strings.Contains(out, mac) {
		t.Fatalf("devices from another machine: %v\n%s", err, out)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--ca-file", caFile, "--admin-token-file", bob}, "give its gRPC address with --verifier"},
		{[]string{"--ca-file", caFile, "--verifier", s.addr}, "give your named admin token with --admin-token-file"},
		{[]string{"--ca-file", bob, "--verifier", s.addr, "--admin-token-file", bob}, "--ca-file"},
		// An unset variable in a script does not fall back to admin.token.
		{[]string{"--data-dir", s.dir, "--admin-token-file", ""}, "--admin-token-file is empty"},
		{[]string{"--data-dir", s.dir, "--ca-file", ""}, "--ca-file is empty"},
		// Another verifier's CA: refused before the token is sent, and
		// said so without a data dir.
		{[]string{"--ca-file", filepath.Join(startServer(t).dir, "ca.pem"), "--verifier", s.addr, "--admin-token-file", bob}, "is not the verifier --ca-file names"},
	} {
		if _, _, err := execute(noEnv, append([]string{"devices"}, tc.args...)...); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("devices %q: %v, want %q", tc.args, err, tc.want)
		}
	}

	// CLEARANCE_ADMIN_TOKEN_FILE set but empty is an error too.
	var stdout, stderr bytes.Buffer
	emptyVar := &app{stdout: &stdout, stderr: &stderr, getenv: noEnv, now: time.Now,
		lookupenv: func(k string) (string, bool) { return "", k == "CLEARANCE_ADMIN_TOKEN_FILE" }}
	if err := emptyVar.program().Execute(context.Background(), []string{"devices", "--data-dir", s.dir}); err == nil ||
		!strings.Contains(err.Error(), "CLEARANCE_ADMIN_TOKEN_FILE is set but empty") {
		t.Errorf("an empty CLEARANCE_ADMIN_TOKEN_FILE: %v", err)
	}

	// Revoked by the whole token, as a secret scanner finds it, without
	// repeating its secret; a second revocation changes nothing.
	bobToken, err := os.ReadFile(bob)
	if err != nil {
		t.Fatal(err)
	}
	out, _, err = execute(noEnv, "admin-token", "revoke", "--data-dir", s.dir, strings.TrimSpace(string(bobToken)))
	if err != nil || !strings.Contains(out, "revoked "+bobID) || strings.Contains(out, strings.TrimSpace(string(bobToken))[25:]) {
		t.Fatalf("revoke bob's token: %v %s", err, out)
	}
	if out, _, err := execute(noEnv, "admin-token", "revoke", "--data-dir", s.dir, bobID); err != nil || !strings.Contains(out, "was revoked already") {
		t.Fatalf("revoke bob's token again: %v %s", err, out)
	}
	if out, _, err := execute(noEnv, "audit", "--data-dir", s.dir, "--action", "admin_token.revoke"); err != nil || strings.Count(out, "admin_token.revoke") != 1 {
		t.Fatalf("audit of the revocations: %v\n%s", err, out)
	}
	if _, _, err := execute(noEnv, "admin-token", "revoke", "--data-dir", s.dir, "adm_not.a.token"); err == nil || strings.Contains(err.Error(), "not.a.token") {
		t.Fatalf("revoke of a malformed token: %v", err)
	}
	if _, _, err := execute(noEnv, "devices", "--data-dir", s.dir, "--admin-token-file", bob); err == nil ||
		!strings.Contains(err.Error(), "refused the admin token in "+bob) {
		t.Fatalf("a revoked token: %v", err)
	}
	if _, _, err := execute(noEnv, "admin-token", "revoke", "--data-dir", s.dir, "0123456789abcdef"); err == nil || !strings.Contains(err.Error(), "no admin token") {
		t.Fatalf("revoke of no token: %v", err)
	}

	// A token file anyone may read, or one holding something else, is
	// refused before anything is sent.
	loose := filepath.Join(t.TempDir(), "loose")
	if err := os.WriteFile(loose, []byte("adm_x.y\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := execute(noEnv, "devices", "--data-dir", s.dir, "--admin-token-file", loose); err == nil || !strings.Contains(err.Error(), "--admin-token-file") {
		t.Fatalf("a loose token file: %v", err)
	}
	other := filepath.Join(t.TempDir(), "other")
	if err := os.WriteFile(other, []byte("not a token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := execute(noEnv, "devices", "--data-dir", s.dir, "--admin-token-file", other); err == nil || !strings.Contains(err.Error(), "does not hold one named admin token") {
		t.Fatalf("a file without a token: %v", err)
	}
}
