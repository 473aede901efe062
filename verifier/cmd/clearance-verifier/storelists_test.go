package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	adminv1 "github.com/clearance/clearance/proto/gen/clearance/admin/v1"
)

// TestListingsPrintJSON: the listings of enroll secrets, admin tokens and
// SCIM tokens, and whoami, print --json a script can read: the admin
// API's message where there is one, else an array of objects with the
// documented fields, never a value or hash.
func TestListingsPrintJSON(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	run := func(args ...string) string {
		t.Helper()
		out, errOut, err := execute(noEnv, args...)
		if err != nil {
			t.Fatalf("%v: %v\n%s", args, err, errOut)
		}
		return out
	}
	// An empty listing is an empty array, not a message on stderr.
	if out := run("scim", "token", "list", "--data-dir", s.dir, "--json"); strings.TrimSpace(out) != "[]" {
		t.Fatalf("scim token list --json with none: %q", out)
	}
	secret := lastLine(run("secret", "create", "--data-dir", s.dir, "--description", "Jamf", "--max-uses", "5"))
	scimToken := lastLine(run("scim", "token", "create", "--data-dir", s.dir, "--description", "Okta \x1b[2J prod"))
	run("scim", "token", "create", "--data-dir", s.dir, "--description", "spare")
	adminToken := lastLine(run("admin-token", "create", "--data-dir", s.dir, "--name", "jane@example.com", "--role", "read", "--expires", "24h"))

	var secrets adminv1.ListEnrollSecretsResponse
	out := run("secret", "list", "--data-dir", s.dir, "--json")
	if err := protojson.Unmarshal([]byte(out), &secrets); err != nil || len(secrets.GetEnrollSecrets()) != 1 ||
		secrets.GetEnrollSecrets()[0].GetDescription() != "Jamf" || secrets.GetEnrollSecrets()[0].GetMaxUses() != 5 || strings.Contains(out, secret) {
		t.Fatalf("secret list --json: %v\n%s", err, out)
	}

	var scims []map[string]any
	out = run("scim", "token", "list", "--data-dir", s.dir, "--json")
	if err := json.Unmarshal([]byte(out), &scims); err != nil || len(scims) != 2 {
		t.Fatalf("scim token list --json: %v\n%s", err, out)
	}
	if strings.Contains(out, "\x1b") || strings.Contains(out, strings.TrimPrefix(scimToken, "scim_")) {
		t.Fatalf("scim token list --json carries a raw escape or the token:\n%s", out)
	}
	run("scim", "token", "revoke", "--data-dir", s.dir, scims[0]["id"].(string))
	out = run("scim", "token", "list", "--data-dir", s.dir, "--json")
	if err := json.Unmarshal([]byte(out), &scims); err != nil {
		t.Fatal(err)
	}
	states := map[string]bool{}
	for _, tok := range scims {
		for _, k := range []string{"id", "description", "state", "created_at", "revoked_at"} {
			if _, ok := tok[k]; !ok {
				t.Fatalf("scim token list --json lacks %q: %v", k, tok)
			}
		}
		states[tok["state"].(string)] = true
		if (tok["state"] == "revoked") != (tok["revoked_at"] != nil) {
			t.Fatalf("scim token list --json: state and revoked_at disagree: %v", tok)
		}
	}
	if !states["active"] || !states["revoked"] {
		t.Fatalf("scim token list --json states %v", states)
	}

	var tokens []map[string]any
	out = run("admin-token", "list", "--data-dir", s.dir, "--json")
	if err := json.Unmarshal([]byte(out), &tokens); err != nil || len(tokens) != 1 {
		t.Fatalf("admin-token list --json: %v\n%s", err, out)
	}
	tok := tokens[0]
	if tok["name"] != "jane@example.com" || tok["role"] != "read" || tok["state"] != "active" || tok["revoked_at"] != nil ||
		strings.Contains(out, adminToken[strings.Index(adminToken, ".")+1:]) {
		t.Fatalf("admin-token list --json: %v", tok)
	}
	if exp, err := time.Parse(time.RFC3339, tok["expires_at"].(string)); err != nil || time.Until(exp) < 23*time.Hour {
		t.Fatalf("admin-token list --json expires_at %v: %v", tok["expires_at"], err)
	}

	file := filepath.Join(t.TempDir(), "jane.token")
	if err := os.WriteFile(file, []byte(adminToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var who adminv1.WhoAmIResponse
	out = run("admin-token", "whoami", "--data-dir", s.dir, "--admin-token-file", file, "--json")
	if err := protojson.Unmarshal([]byte(out), &who); err != nil || who.GetActor() != "admin:jane@example.com" || who.GetRole() != "read" || who.GetTokenId() != tok["id"] {
		t.Fatalf("whoami --json: %v\n%s", err, out)
	}
}
