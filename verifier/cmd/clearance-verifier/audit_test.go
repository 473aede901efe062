package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	agentv1 "github.com/clearance/clearance/proto/gen/clearance/agent/v1"
	"github.com/clearance/clearance/verifier/storage"
)

// TestAuditInputMistakes: audit --device takes the start of an id as
// decisions --device does, and one no Mac has is an error; an --actor that
// matches nothing but is a person's name without "admin:", or an actor in
// other capitals, gets a hint on stderr naming how actors are written.
func TestAuditInputMistakes(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	secret := s.newSecret(t)
	mac := s.enroll(t, secret, "0A1B2C3D-4E5F-4061-8172-839405A6B7F1", agentv1.PolicyStatus_POLICY_STATUS_PASS).DeviceID
	if err := s.srv.Store.AppendAudit(context.Background(), storage.AuditEvent{
		At: time.Now(), Actor: "admin:sam@example.com", Action: "device.revoke", DeviceID: mac, Detail: "stolen",
	}); err != nil {
		t.Fatal(err)
	}

	t.Run("device", func(t *testing.T) {
		for _, dev := range []string{mac[:8], strings.ToUpper(mac[:6]), mac} {
			out, _, err := execute(noEnv, "audit", "--data-dir", s.dir, "--device", dev, "--action", "device.enroll")
			if err != nil || !strings.Contains(out, mac[:8]) {
				t.Errorf("audit --device %s: %v\n%s", dev, err, out)
			}
		}
		for dev, want := range map[string]string{
			"zzz":                                  `no device id starts with "zzz"`,
			"ffffffff-0000-4000-8000-000000000000": `no device has the id "ffffffff-0000-4000-8000-000000000000"`,
		} {
			code, out, stderr := exitOf(noEnv, "audit", "--data-dir", s.dir, "--device", dev)
			if code != 1 || out != "" || !strings.Contains(stderr, want) {
				t.Errorf("audit --device %s: exit %d %q %q", dev, code, out, stderr)
			}
		}
	})

	t.Run("actor", func(t *testing.T) {
		for _, tc := range []struct {
			actor, hint string
		}{
			{"sam@example.com", "hint: the audit log has events of --actor admin:sam@example.com (actors are matched exactly, capitals included)\n"},
			{"SAM@example.com", "hint: the audit log has events of --actor admin:sam@example.com (actors are matched exactly, capitals included)\n"},
			{"admin:SAM@example.com", "hint: the audit log has events of --actor admin:sam@example.com (actors are matched exactly, capitals included)\n"},
			{"CLI", "hint: the audit log has events of --actor cli (actors are matched exactly, capitals included)\n"},
			{"jane@example.com", "hint: actors are written admin:<token name> for a named admin token, e.g. admin:jane@example.com; the others are admin-api, cli, agent, scep, okta-api-sync, sighup, serve and scim:<token id>\n"},
			// Written as actors are, and simply absent: nothing to hint.
			{"admin:jane@example.com", ""},
			{"scep", ""},
		} {
			out, stderr, err := execute(noEnv, "audit", "--data-dir", s.dir, "--actor", tc.actor)
			if want := "no audit events match\n" + tc.hint; err != nil || out != "" || stderr != want {
				t.Errorf("audit --actor %s: %v %q\nstderr %q\nwant   %q", tc.actor, err, out, stderr, want)
			}
		}
		// With --json the hint is on stderr, and stdout stays JSON.
		out, stderr, err := execute(noEnv, "audit", "--data-dir", s.dir, "--actor", "sam@example.com", "--json")
		var v map[string]any
		if err != nil || json.Unmarshal([]byte(out), &v) != nil || !strings.Contains(stderr, "--actor admin:sam@example.com") {
			t.Errorf("audit --actor --json: %v %q %q", err, out, stderr)
		}
		if out, stderr, err := execute(noEnv, "audit", "--data-dir", s.dir, "--actor", "admin:sam@example.com"); err != nil || !strings.Contains(out, "device.revoke") || stderr != "" {
			t.Errorf("audit --actor admin:sam@example.com: %v %q %q", err, out, stderr)
		}
	})
}
