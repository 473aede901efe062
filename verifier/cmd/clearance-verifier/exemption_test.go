package main

import (
	"net"
	"path/filepath"
	"strings"
	"testing"

	agentv1 "github.com/clearance/clearance/proto/gen/clearance/agent/v1"
	"github.com/clearance/clearance/verifier/datadir"
)

// TestExemptionCommands grants, lists and revokes exemptions beside a
// running verifier, and refuses grants it cannot honour.
func TestExemptionCommands(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	secret, _, err := execute(noEnv, "secret", "create", "--data-dir", s.dir)
	if err != nil {
		t.Fatal(err)
	}
	mac := s.enroll(t, lastLine(secret), "0A1B2C3D-4E5F-4061-8172-839405A6B7D0", agentv1.PolicyStatus_POLICY_STATUS_PASS).DeviceID
	// A device no enrolled one is, or whose id none starts with, would be
	// exempt from nothing: refused, and nothing stored.
	for _, dev := range []string{"3f2a-dev", "ffffffff", mac + "0"} {
		_, _, err := execute(noEnv, "exemption", "grant", "--data-dir", s.dir, "--device", dev, "--for", "1h", "--reason", "unknown device")
		if err == nil || !strings.Contains(err.Error(), "no enrolled device's id is or starts with") {
			t.Fatalf("grant for device %q: %v", dev, err)
		}
	}
	// The start of an id, as the tables show it, names the device whole.
	out, errOut, err := execute(noEnv, "exemption", "grant", "--data-dir", s.dir, "--device", strings.ToUpper(mac[:8]), "--policy", "firewall,sip",
		"--for", "72h", "--reason", "replacement Mac arrives next week")
	if err != nil {
		t.Fatalf("grant: %v\n%s", err, errOut)
	}
	id := lastLine(out)
	if id != "1" || !strings.Contains(errOut, "device "+mac+", policies firewall,sip") {
		t.Fatalf("grant printed %q, %q", out, errOut)
	}
	// Without the policy file the ids are checked against the running
	// verifier's set: a mistyped one is refused, naming it, and nothing is
	// stored; --unchecked grants it as written.
	_, _, err = execute(noEnv, "exemption", "grant", "--data-dir", s.dir, "--device", mac,
		"--policy", "firewal", "--for", "1h", "--reason", "typo at the server")
	if err == nil || !strings.Contains(err.Error(), `no policy "firewal" in the policy set in force at `) {
		t.Fatalf("grant of an unknown policy, checked at the server: %v", err)
	}
	if list, _, _ := execute(noEnv, "exemption", "list", "--data-dir", s.dir, "--all"); strings.Contains(list, "typo") {
		t.Fatalf("a refused grant was stored:\n%s", list)
	}
	out, errOut, err = execute(noEnv, "exemption", "grant", "--data-dir", s.dir, "--device", mac, "--unchecked",
		"--policy", "next-quarters-policy", "--for", "1h", "--reason", "ahead of the policy")
	if err != nil || !strings.Contains(errOut, "policies next-quarters-policy") {
		t.Fatalf("grant --unchecked: %v %q", err, errOut)
	}
	if _, _, err := execute(noEnv, "exemption", "revoke", "--data-dir", s.dir, lastLine(out)); err != nil {
		t.Fatal(err)
	}
	// A verifier that cannot be asked refuses the grant, saying how to go on.
	rec, err := datadir.Read(s.dir)
	if err != nil {
		t.Fatal(err)
	}
	gone, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gone.Close()
	moved := rec
	moved.GRPCAddress = gone.Addr().String()
	if err := datadir.Write(s.dir, moved); err != nil {
		t.Fatal(err)
	}
	_, _, err = execute(noEnv, "exemption", "grant", "--data-dir", s.dir, "--device", mac,
		"--policy", "firewall", "--for", "1h", "--reason", "no server to ask")
	if err == nil || !strings.Contains(err.Error(), "the running verifier could not be asked") || !strings.Contains(err.Error(), "--unchecked") {
		t.Fatalf("grant with no verifier to ask: %v", err)
	}
	if err := datadir.Write(s.dir, rec); err != nil {
		t.Fatal(err)
	}
	// With it, a mistyped id is refused, naming it, and nothing is stored;
	// ids it has are granted without the warning.
	policies, err := filepath.Abs("../../../examples/policies.yaml")
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = execute(noEnv, "exemption", "grant", "--data-dir", s.dir, "--policies", policies, "--device", mac,
		"--policy", "firewall,filevalt", "--for", "1h", "--reason", "typo")
	if err == nil || !strings.Contains(err.Error(), `no policy "filevalt" in policy file `+policies+` (version "`) || !strings.Contains(err.Error(), "its policies: filevault, firewall") {
		t.Fatalf("grant of an unknown policy: %v", err)
	}
	// A file that cannot be read (a relative path from a config file shared
	// with serve, say) stops the grant and says how to choose.
	_, _, err = execute(noEnv, "exemption", "grant", "--data-dir", s.dir, "--policies", "no/such/policies.yaml", "--device", mac,
		"--policy", "firewall", "--for", "1h", "--reason", "typo")
	if err == nil || !strings.Contains(err.Error(), "checking the --policy ids against the policies setting") || !strings.Contains(err.Error(), "--unchecked") {
		t.Fatalf("grant against a missing policy file: %v", err)
	}
	if list, _, _ := execute(noEnv, "exemption", "list", "--data-dir", s.dir, "--all"); strings.Contains(list, "typo") {
		t.Fatalf("a refused grant was stored:\n%s", list)
	}
	out, errOut, err = execute(noEnv, "exemption", "grant", "--data-dir", s.dir, "--policies", policies, "--device", mac,
		"--policy", "filevault", "--for", "1h", "--reason", "checked")
	if err != nil || strings.Contains(errOut, "not checked") {
		t.Fatalf("grant of a known policy with --policies: %v %q", err, errOut)
	}
	if _, _, err := execute(noEnv, "exemption", "revoke", "--data-dir", s.dir, lastLine(out)); err != nil {
		t.Fatal(err)
	}
	// --policy repeated adds up, as the comma-separated list does.
	// White space around the username is not kept; a name nobody has is
	// granted with a word that it may be mistyped.
	out, errOut, err = execute(noEnv, "exemption", "grant", "--data-dir", s.dir, "--user", "ada@example.com ", "--policy", "firewall",
		"--policy", "sip,gatekeeper", "--for", "1h", "--reason", "travelling")
	if err != nil || !strings.Contains(errOut, "policies firewall,sip,gatekeeper") || !strings.Contains(errOut, "user ada@example.com,") ||
		!strings.Contains(errOut, "note: no user named ada@example.com is provisioned (SCIM or the Okta sync) or has signed in; check the spelling") {
		t.Fatalf("grant with --policy repeated: %v %q %q", err, out, errOut)
	}
	if out, _, err := execute(noEnv, "exemption", "revoke", "--data-dir", s.dir, lastLine(out)); err != nil {
		t.Fatalf("revoke: %v %q", err, out)
	}
	// An empty --policy, which once meant every policy, says how to ask for that.
	if _, _, err := execute(noEnv, "exemption", "grant", "--data-dir", s.dir, "--device", "d", "--for", "1h", "--reason", "r", "--policy", " "); err == nil || !strings.Contains(err.Error(), "leave it out to exempt from every policy") {
		t.Fatalf("empty --policy: %v", err)
	}
	if _, _, err := execute(noEnv, "exemption", "grant", "--data-dir", s.dir, "--user", "Ada@example.com", "--until", "2099-01-01T00:00:00Z", "--reason", "x"); err == nil {
		t.Fatal("an exemption a century long was granted")
	}
	for _, args := range [][]string{
		{"--device", "d", "--for", "1h"},                                 // no reason
		{"--device", "d", "--user", "u", "--for", "1h", "--reason", "r"}, // both
		{"--for", "1h", "--reason", "r"},                                 // neither
		{"--device", "d", "--reason", "r"},                               // no expiry
		{"--device", "d", "--for", "1h", "--until", "2030-01-01T00:00:00Z", "--reason", "r"},
		{"--device", "d", "--until", "next week", "--reason", "r"},
		{"--device", "d", "--for", "1h", "--reason", "r", "--policy", "a,,b"},
		{"--device", "d", "--for", "1h", "--reason", "r", "--policy", ""},
	} {
		if _, _, err := execute(noEnv, append([]string{"exemption", "grant", "--data-dir", s.dir}, args...)...); err == nil {
			t.Errorf("grant %v accepted", args)
		}
	}
	list, _, err := execute(noEnv, "exemption", "list", "--data-dir", s.dir)
	if err != nil || !strings.Contains(list, "device "+mac) || !strings.Contains(list, "replacement Mac arrives next week") {
		t.Fatalf("list: %v\n%s", err, list)
	}
	if out, _, err := execute(noEnv, "exemption", "revoke", "--data-dir", s.dir, id); err != nil || out != "revoked 1\n" {
		t.Fatalf("revoke: %v %q", err, out)
	}
	if _, _, err := execute(noEnv, "exemption", "revoke", "--data-dir", s.dir, id); err == nil || !strings.Contains(err.Error(), "already revoked") {
		t.Fatalf("second revoke: %v", err)
	}
	if _, _, err := execute(noEnv, "exemption", "revoke", "--data-dir", s.dir, "99"); err == nil {
		t.Fatal("revoking an unknown exemption succeeded")
	}
	if list, stderr, _ := execute(noEnv, "exemption", "list", "--data-dir", s.dir); list != "" || !strings.Contains(stderr, "no exemptions") {
		t.Fatalf("a revoked exemption is listed as in force: %q", list)
	}
	if all, _, _ := execute(noEnv, "exemption", "list", "--data-dir", s.dir, "--all"); !strings.Contains(all, "revoked ") {
		t.Fatalf("--all does not show the revoked exemption:\n%s", all)
	}
}
