package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/clearance/clearance/verifier/storage"
)

// TestUnknownUserNote: explain --user and devices --user say on stderr,
// as exemption grant does, when no user of that name is provisioned or
// has signed in: a typo would otherwise be answered quietly as for a
// stranger. A provisioned user (in other capitals too) and one known only
// from the decision log get no note.
func TestUnknownUserNote(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	good, _ := s.passingAndFailing(t)
	ctx, now := context.Background(), time.Now()
	if _, err := s.srv.Store.CreateUser(ctx, storage.User{ID: "u-jane", UserName: "jane@example.com", Active: true, CreatedAt: now, UpdatedAt: now},
		storage.AuditEvent{At: now, Actor: "scim:test", Action: "user.create"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.srv.Store.AppendDecision(ctx, storage.DecisionRecord{At: now, Username: "alice@example.com", DeviceID: good, Allow: true, Reason: "allowed", Source: "sso"}); err != nil {
		t.Fatal(err)
	}
	const note = "note: no user named nobody@nowhere is provisioned (SCIM or the Okta sync) or has signed in; check the spelling: "
	for _, tc := range []struct {
		name   string
		args   []string
		stderr string
	}{
		{"explain, unknown", []string{"explain", good[:8], "--user", "nobody@nowhere"}, note + "this is the decision for a stranger, whom every policy applies to\n"},
		{"explain --json, unknown", []string{"explain", good[:8], "--user", "nobody@nowhere", "--json"}, note + "this is the decision for a stranger, whom every policy applies to\n"},
		{"explain, provisioned", []string{"explain", good[:8], "--user", "Jane@Example.com"}, ""},
		{"explain, signed in", []string{"explain", good[:8], "--user", "alice@example.com"}, ""},
		{"explain, no user", []string{"explain", good[:8]}, ""},
		{"devices, unknown", []string{"devices", "--user", "nobody@nowhere"}, note + "no Mac is bound to that username or signed in from by it\nno devices match\n"},
		{"devices, provisioned", []string{"devices", "--user", "jane@example.com"}, "no devices match\n"},
		{"devices, signed in", []string{"devices", "--user", "alice@example.com"}, ""},
	} {
		out, stderr, err := execute(noEnv, append(append(tc.args[:1:1], "--data-dir", s.dir), tc.args[1:]...)...)
		if err != nil || stderr != tc.stderr {
			t.Errorf("%s: %v\nstderr %q\nwant   %q", tc.name, err, stderr, tc.stderr)
		}
		if strings.HasSuffix(tc.name, "--json, unknown") && json.Unmarshal([]byte(out), new(map[string]any)) != nil {
			t.Errorf("%s: stdout is not JSON:\n%s", tc.name, out)
		}
	}
}
