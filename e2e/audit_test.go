package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestAuditLog reads the audit log of a real verifier both ways a security
// team would: a device revoked with grpcurl and an exemption granted with
// the CLI and a named admin token are listed by `clearance-verifier audit`
// and by AdminService/ListAuditEvents, each with its actor (the token's
// holder for the exemption), after the agent's enrollment and the CLI's
// enroll secret. A reason holding a terminal
// escape is shown escaped in the table and returned as typed by the API.
func TestAuditLog(t *testing.T) {
	t.Parallel()
	dataDir := t.TempDir()
	v := startVerifier(t, dataDir)
	env := []string{"VERIFIER=" + v.grpcAddr, "DATA=" + dataDir}
	a := enrollAgent(t, v.grpcAddr, v.rootPEM(), v.enrollSecret(), "0A1B2C3D-4E5F-4061-8172-8394A0D17000")
	env = append(env, "DEVICE="+a.DeviceID)

	token := filepath.Join(t.TempDir(), "sam.token")
	if err := os.WriteFile(token, []byte(lastLine(cli(t, "admin-token", "create", "--data-dir", dataDir, "--name", "sam@example.com", "--role", "admin"))+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cli(t, "exemption", "grant", "--data-dir", dataDir, "--admin-token-file", token, "--device", a.DeviceID[:8], "--for", "24h", "--reason", "replacement on order")
	if out, err := shell(t, `grpcurl -cacert "$DATA/ca.pem" -H "authorization: Bearer $(cat "$DATA/admin.token")" \
  -d "{\"device_id\": \"$DEVICE\", \"reason\": \"stolen \\u001b[2J from a car\"}" "$VERIFIER" clearance.admin.v1.AdminService/RevokeDevice`, env...); err != nil {
		t.Fatalf("RevokeDevice: %v\n%s", err, out)
	}

	// The CLI's table, newest first, every column in full.
	out, err := shell(t, `clearance-verifier audit --data-dir "$DATA" --wide`, env...)
	if err != nil {
		t.Fatalf("audit: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	want := [][]string{
		{"TIME", "ACTOR", "ACTION", "DEVICE", "DETAIL"},
		{"admin-api", "device.revoke", a.DeviceID, `stolen \x1b[2J from a car`},
		{"admin:sam@example.com", "exemption.grant", a.DeviceID, "replacement on order"},
		{"cli", "admin_token.create", "sam@example.com"},
		{"agent", "device.enroll", a.DeviceID},
		{"cli", "secret.create"},
		{"serve", "verifier.start", "enforcement ceiling enforce (set by default), policy set "},
	}
	if len(lines) != len(want) {
		t.Fatalf("audit: %d lines, want %d:\n%s", len(lines), len(want), out)
	}
	for i, words := range want {
		for _, w := range words {
			if !strings.Contains(lines[i], w) {
				t.Errorf("audit: line %d lacks %q: %q", i, w, lines[i])
			}
		}
	}
	if strings.Contains(out, "\x1b") {
		t.Errorf("audit: the table carries a raw escape:\n%q", out)
	}
	out, err = shell(t, `clearance-verifier audit --data-dir "$DATA" --device "${DEVICE:0:8}" --action exemption. --since 1h`, env...)
	if err != nil || strings.Count(strings.TrimSpace(out), "\n") != 1 || !strings.Contains(out, "exemption.grant") {
		t.Errorf("audit --device --action --since: %v\n%s", err, out)
	}

	// The admin API, as grpcurl shows it: the same events for the device.
	out, err = shell(t, `grpcurl -cacert "$DATA/ca.pem" -H "authorization: Bearer $(cat "$DATA/admin.token")" \
  -d "{\"device_id\": \"$DEVICE\"}" "$VERIFIER" clearance.admin.v1.AdminService/ListAuditEvents`, env...)
	if err != nil {
		t.Fatalf("ListAuditEvents: %v\n%s", err, out)
	}
	var resp struct {
		Events []struct{ ID, Actor, Action, DeviceID, Detail string }
	}
	if err := json.Unmarshal([]byte(out), &resp); err != nil {
		t.Fatalf("ListAuditEvents answered %v:\n%s", err, out)
	}
	type event struct{ actor, action string }
	wantEvents := []event{{"admin-api", "device.revoke"}, {"admin:sam@example.com", "exemption.grant"}, {"agent", "device.enroll"}}
	if len(resp.Events) != len(wantEvents) {
		t.Fatalf("ListAuditEvents: %d events, want %d:\n%s", len(resp.Events), len(wantEvents), out)
	}
	for i, e := range resp.Events {
		if (event{e.Actor, e.Action}) != wantEvents[i] || e.DeviceID != a.DeviceID || e.ID == "" {
			t.Errorf("ListAuditEvents event %d: %+v, want %v for %s", i, e, wantEvents[i], a.DeviceID)
		}
	}
	if d := resp.Events[0].Detail; d != "stolen \x1b[2J from a car" {
		t.Errorf("ListAuditEvents: the revocation's reason is %q, want it as typed", d)
	}

	// Filters the API refuses are said plainly.
	out, err = shell(t, `grpcurl -cacert "$DATA/ca.pem" -H "authorization: Bearer $(cat "$DATA/admin.token")" \
  -d '{"page_token": "bm90LWEtdG9rZW4"}' "$VERIFIER" clearance.admin.v1.AdminService/ListAuditEvents`, env...)
	if err == nil || !strings.Contains(out, "Code: InvalidArgument") || !strings.Contains(out, "page_token is not one this server returned") {
		t.Errorf("ListAuditEvents with a made-up token: %v\n%s", err, out)
	}
}
