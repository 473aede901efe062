package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	adminv1 "github.com/clearance/clearance/proto/gen/clearance/admin/v1"
	agentv1 "github.com/clearance/clearance/proto/gen/clearance/agent/v1"
	"github.com/clearance/clearance/verifier/config"
	"github.com/clearance/clearance/verifier/datadir"
	"github.com/clearance/clearance/verifier/storage"
)

// TestExemptionCommands grants, lists and revokes exemptions through a
// running verifier, and with --direct in its database, and refuses grants
// it cannot honour.
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
	// The verifier checks the ids against its set in force: a mistyped one
	// is refused, naming it, and nothing is stored; --unchecked grants it
	// as written. So does --direct, asking the verifier.
	for _, direct := range [][]string{nil, {"--direct"}} {
		_, _, err = execute(noEnv, append([]string{"exemption", "grant", "--data-dir", s.dir, "--device", mac,
			"--policy", "firewal", "--for", "1h", "--reason", "typo at the server"}, direct...)...)
		if err == nil || !strings.Contains(err.Error(), `no policy "firewal" in the policy set in force`) {
			t.Fatalf("grant %v of an unknown policy, checked at the server: %v", direct, err)
		}
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
	// A verifier that cannot be asked refuses the grant, saying how to go
	// on: the verifier must be reached, or with --direct the policy ids
	// checked another way.
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
	if err == nil || !strings.Contains(err.Error(), "cannot reach the verifier at "+moved.GRPCAddress) {
		t.Fatalf("grant with no verifier to ask: %v", err)
	}
	_, _, err = execute(noEnv, "exemption", "grant", "--direct", "--data-dir", s.dir, "--device", mac,
		"--policy", "firewall", "--for", "1h", "--reason", "no server to ask")
	if err == nil || !strings.Contains(err.Error(), "the running verifier could not be asked") || !strings.Contains(err.Error(), "--unchecked") {
		t.Fatalf("grant --direct with no verifier to ask: %v", err)
	}
	// With the verifier stopped, --direct grants, lists and revokes in the
	// database, audited as cli.
	out, _, err = execute(noEnv, "exemption", "grant", "--direct", "--data-dir", s.dir, "--device", mac[:8], "--unchecked",
		"--policy", "firewall", "--for", "1h", "--reason", "verifier down")
	if err != nil {
		t.Fatalf("grant --direct with the verifier stopped: %v", err)
	}
	direct := lastLine(out)
	if list, _, err := execute(noEnv, "exemption", "list", "--direct", "--data-dir", s.dir, "--device", mac[:4]); err != nil ||
		!strings.Contains(list, direct+"  ") || !strings.Contains(list, " cli ") || !strings.Contains(list, "verifier down") {
		t.Fatalf("list --direct with the verifier stopped: %v\n%s", err, list)
	}
	if out, _, err := execute(noEnv, "exemption", "revoke", "--direct", "--data-dir", s.dir, direct); err != nil || out != "revoked "+direct+"\n" {
		t.Fatalf("revoke --direct: %v %q", err, out)
	}
	if err := datadir.Write(s.dir, rec); err != nil {
		t.Fatal(err)
	}
	// With --direct and a policy file, a mistyped id is refused, naming
	// it, and nothing is stored; ids it has are granted without the
	// warning. Without --direct, the file is not read: the verifier checks.
	policies, err := filepath.Abs("../../../examples/policies.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := execute(noEnv, "exemption", "grant", "--data-dir", s.dir, "--policies", policies, "--device", mac,
		"--policy", "filevault", "--for", "1h", "--reason", "file without --direct"); err == nil || !strings.Contains(err.Error(), "--policies is read only with --direct") {
		t.Fatalf("--policies without --direct: %v", err)
	}
	_, _, err = execute(noEnv, "exemption", "grant", "--direct", "--data-dir", s.dir, "--policies", policies, "--device", mac,
		"--policy", "firewall,filevalt", "--for", "1h", "--reason", "typo")
	if err == nil || !strings.Contains(err.Error(), `no policy "filevalt" in policy file `+policies+` (version "`) || !strings.Contains(err.Error(), "its policies: filevault, firewall") {
		t.Fatalf("grant of an unknown policy: %v", err)
	}
	// A file that cannot be read (a relative path from a config file shared
	// with serve, say) stops the grant and says how to choose.
	_, _, err = execute(noEnv, "exemption", "grant", "--direct", "--data-dir", s.dir, "--policies", "no/such/policies.yaml", "--device", mac,
		"--policy", "firewall", "--for", "1h", "--reason", "typo")
	if err == nil || !strings.Contains(err.Error(), "checking the --policy ids against the policies setting") || !strings.Contains(err.Error(), "--unchecked") {
		t.Fatalf("grant against a missing policy file: %v", err)
	}
	if list, _, _ := execute(noEnv, "exemption", "list", "--data-dir", s.dir, "--all"); strings.Contains(list, "typo") {
		t.Fatalf("a refused grant was stored:\n%s", list)
	}
	out, errOut, err = execute(noEnv, "exemption", "grant", "--direct", "--data-dir", s.dir, "--policies", policies, "--device", mac,
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

// TestExemptionCommandsNameWhoMadeThem: grants and revocations go through
// the admin API, so the audit log names the named token's holder, from
// this machine or another; a read token may list but not grant or revoke;
// the listing takes the start of a device id, follows every page, and
// prints the API's response with --json.
func TestExemptionCommandsNameWhoMadeThem(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := startServer(t)
	secret, _, err := execute(noEnv, "secret", "create", "--data-dir", s.dir)
	if err != nil {
		t.Fatal(err)
	}
	mac := s.enroll(t, lastLine(secret), "1A1B2C3D-4E5F-4061-8172-839405A6B7D1", agentv1.PolicyStatus_POLICY_STATUS_PASS).DeviceID
	tokenFile := func(name, role string) string {
		out, _, err := execute(noEnv, "admin-token", "create", "--data-dir", s.dir, "--name", name, "--role", role)
		if err != nil {
			t.Fatalf("create %s: %v", name, err)
		}
		p := filepath.Join(t.TempDir(), "token")
		if err := os.WriteFile(p, []byte(lastLine(out)+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	sam, reader := tokenFile("sam@example.com", "admin"), tokenFile("rita@example.com", "read")
	caFile := filepath.Join(s.dir, "ca.pem")

	out, _, err := execute(noEnv, "exemption", "grant", "--data-dir", s.dir, "--admin-token-file", sam,
		"--device", mac[:8], "--policy", "firewall", "--for", "1h", "--reason", "replacement on order")
	if err != nil {
		t.Fatalf("grant with a named token: %v", err)
	}
	first := lastLine(out)
	// From another machine: no data dir, the CA and the address given.
	out, _, err = execute(noEnv, "exemption", "grant", "--ca-file", caFile, "--verifier", s.addr, "--admin-token-file", sam,
		"--user", "ada@example.com", "--for", "1h", "--reason", "travelling")
	if err != nil {
		t.Fatalf("grant from another machine: %v", err)
	}
	second := lastLine(out)
	if out, _, err := execute(noEnv, "exemption", "revoke", "--ca-file", caFile, "--verifier", s.addr, "--admin-token-file", sam, second); err != nil || out != "revoked "+second+"\n" {
		t.Fatalf("revoke from another machine: %v %q", err, out)
	}
	// The data dir's admin.token is admin-api, as for every admin call.
	out, _, err = execute(noEnv, "exemption", "grant", "--data-dir", s.dir, "--device", mac, "--for", "1h", "--reason", "host's own token")
	if err != nil {
		t.Fatal(err)
	}
	third := lastLine(out)

	audit, _, err := execute(noEnv, "audit", "--data-dir", s.dir, "--action", "exemption.", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var events adminv1.ListAuditEventsResponse
	if err := protojson.Unmarshal([]byte(audit), &events); err != nil {
		t.Fatalf("audit --json: %v\n%s", err, audit)
	}
	var got []string
	for _, e := range events.GetEvents() {
		got = append(got, e.GetActor()+" "+e.GetAction())
	}
	want := []string{"admin-api exemption.grant", "admin:sam@example.com exemption.revoke", "admin:sam@example.com exemption.grant", "admin:sam@example.com exemption.grant"}
	if !slices.Equal(got, want) {
		t.Fatalf("audit actors %q, want %q", got, want)
	}

	// A read token lists, and is refused the changes, which change nothing.
	if list, _, err := execute(noEnv, "exemption", "list", "--data-dir", s.dir, "--admin-token-file", reader); err != nil || !strings.Contains(list, "admin:sam@example.com") {
		t.Fatalf("list with a read token: %v\n%s", err, list)
	}
	for _, args := range [][]string{
		{"grant", "--device", mac, "--for", "1h", "--reason", "not mine to give"},
		{"revoke", first},
	} {
		_, _, err := execute(noEnv, append([]string{"exemption", args[0], "--data-dir", s.dir, "--admin-token-file", reader}, args[1:]...)...)
		if err == nil || !strings.Contains(err.Error(), "rita@example.com") || !strings.Contains(err.Error(), "ask for a token with role admin") {
			t.Errorf("%s with a read token: %v", args[0], err)
		}
	}

	// The flags of one way are refused with the other.
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"grant", "--direct", "--admin-token-file", sam, "--device", mac, "--for", "1h", "--reason", "r"}, "--admin-token-file is for asking the running verifier"},
		{[]string{"list", "--direct", "--verifier", s.addr}, "--verifier is for asking the running verifier"},
		{[]string{"revoke", "--database", "postgres://localhost/clearance", first}, "--database is read only with --direct"},
	} {
		code, _, errOut := exitOf(noEnv, append([]string{"exemption", c.args[0], "--data-dir", s.dir}, c.args[1:]...)...)
		if code != 2 || !strings.Contains(errOut, c.want) {
			t.Errorf("%v: exit %d, %q; want 2 and %q", c.args, code, errOut, c.want)
		}
	}

	// More than a page: every exemption is listed, in the table and in
	// the JSON, none twice.
	store, err := openDatabase(ctx, &config.Config{DataDir: s.dir})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	for i := range 1005 {
		e := storage.Exemption{Username: fmt.Sprintf("user%d@example.com", i), Reason: "bulk", CreatedBy: "test", CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
		if _, err := store.CreateExemption(ctx, e, storage.AuditEvent{At: now, Actor: "test", Action: "exemption.grant"}); err != nil {
			t.Fatal(err)
		}
	}
	store.Close()
	list, _, err := execute(noEnv, "exemption", "list", "--data-dir", s.dir, "--json")
	if err != nil {
		t.Fatal(err)
	}
	var resp adminv1.ListExemptionsResponse
	if err := protojson.Unmarshal([]byte(list), &resp); err != nil {
		t.Fatalf("list --json: %v\n%s", err, list[:min(len(list), 500)])
	}
	ids := map[int64]bool{}
	for _, e := range resp.GetExemptions() {
		ids[e.GetId()] = true
	}
	// 1005 bulk, first and third (second is revoked).
	if len(resp.GetExemptions()) != 1007 || len(ids) != 1007 || resp.GetNextPageToken() != "" {
		t.Fatalf("list --json: %d exemptions, %d ids, token %q; want 1007", len(resp.GetExemptions()), len(ids), resp.GetNextPageToken())
	}
	if table, _, err := execute(noEnv, "exemption", "list", "--data-dir", s.dir); err != nil || strings.Count(table, "\n") != 1008 {
		t.Fatalf("list: %v, %d lines; want a header and 1007", err, strings.Count(table, "\n"))
	}

	// The start of the device's id lists its exemptions, as the whole id
	// does; one that names no device is an error, not an empty list.
	for _, direct := range [][]string{nil, {"--direct"}} {
		for _, dev := range []string{mac[:4], strings.ToUpper(mac[:8]), mac} {
			out, _, err := execute(noEnv, append([]string{"exemption", "list", "--data-dir", s.dir, "--device", dev, "--json"}, direct...)...)
			var l adminv1.ListExemptionsResponse
			if err != nil || protojson.Unmarshal([]byte(out), &l) != nil || len(l.GetExemptions()) != 2 {
				t.Fatalf("list %v --device %s: %v\n%s", direct, dev, err, out)
			}
			for _, e := range l.GetExemptions() {
				if e.GetDeviceId() != mac || (e.GetId() != mustID(t, first) && e.GetId() != mustID(t, third)) {
					t.Fatalf("list %v --device %s listed %v", direct, dev, e)
				}
			}
		}
		_, _, err := execute(noEnv, append([]string{"exemption", "list", "--data-dir", s.dir, "--device", "ffff"}, direct...)...)
		if err == nil || !strings.Contains(err.Error(), `no enrolled device's id is or starts with "ffff"`) {
			t.Errorf("list %v --device of no device: %v", direct, err)
		}
	}
}

func mustID(t *testing.T, s string) int64 {
	t.Helper()
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return n
}
