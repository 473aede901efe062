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

// TestAuditUser: audit --user answers "what changed for alice?" through
// the admin API: her changes, by her username in any case of A-Z or her
// id, each row naming her in the SUBJECT column (with her id where
// another person later had her username), --json naming every subject; a
// look-alike username is someone else; nothing found says why it may be.
func TestAuditUser(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	secret := s.newSecret(t)
	mac := s.enroll(t, secret, "0A1B2C3D-4E5F-4061-8172-839405A6B7F2", agentv1.PolicyStatus_POLICY_STATUS_PASS).DeviceID
	ctx, now := context.Background(), time.Now()
	// Each event at its own time, as the server's are.
	scim := func(action string) storage.AuditEvent {
		return storage.AuditEvent{At: time.Now(), Actor: "scim:test", Action: action}
	}
	for _, u := range []storage.User{
		{ID: "u-alice", UserName: "alice@example.com"}, {ID: "u-bob", UserName: "bob@example.com"},
		{ID: "u-fake", UserName: "\u0430lice@example.com"},
	} {
		u.Active, u.CreatedAt, u.UpdatedAt = true, now, now
		if _, err := s.srv.Store.CreateUser(ctx, u, scim("user.create")); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.srv.Store.CreateGroup(ctx, storage.Group{ID: "g-eng", DisplayName: "Eng", Members: []string{"u-alice", "u-bob"}, CreatedAt: now, UpdatedAt: now},
		scim("group.create")); err != nil {
		t.Fatal(err)
	}
	if out, _, err := execute(noEnv, "devices", "assign", "--data-dir", s.dir, mac[:8], "alice@example.com"); err != nil {
		t.Fatalf("assign: %v %q", err, out)
	}
	// Alice leaves; her username goes to someone else.
	if err := s.srv.Store.DeleteUser(ctx, "u-alice", 0, scim("user.delete")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.srv.Store.CreateUser(ctx, storage.User{ID: "u-alice2", UserName: "Alice@example.com", Active: true, CreatedAt: now, UpdatedAt: now}, scim("user.create")); err != nil {
		t.Fatal(err)
	}

	// rows are the table's rows, each as its action and subject cells.
	rows := func(args ...string) []string {
		t.Helper()
		out, stderr, err := execute(noEnv, append([]string{"audit", "--data-dir", s.dir, "--wide"}, args...)...)
		if err != nil || stderr != "" {
			t.Fatalf("audit %v: %v %q", args, err, stderr)
		}
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if !strings.Contains(lines[0], "  SUBJECT  ") {
			t.Fatalf("audit %v: no SUBJECT column:\n%s", args, out)
		}
		at := strings.Index(lines[0], "SUBJECT")
		end := strings.Index(lines[0], "DETAIL")
		var got []string
		for _, l := range lines[1:] {
			f := strings.Fields(l)
			got = append(got, f[3]+" "+strings.TrimSpace(l[at:min(end, len(l))]))
		}
		return got
	}
	alice := []string{
		"user.delete alice@example.com (id u-alice)",
		"device.assign alice@example.com (id u-alice)",
		"group.create alice@example.com (id u-alice) +1",
		"user.create alice@example.com (id u-alice)",
	}
	for _, tc := range []struct {
		user string
		want []string
	}{
		{"alice@example.com", append([]string{"user.create Alice@example.com (id u-alice2)"}, alice...)},
		{"ALICE@EXAMPLE.COM", append([]string{"user.create Alice@example.com (id u-alice2)"}, alice...)},
		// By id: one person, no one to tell her from.
		{"u-alice", []string{"user.delete alice@example.com", "device.assign alice@example.com",
			"group.create alice@example.com +1", "user.create alice@example.com"}},
		{"bob@example.com", []string{"group.create bob@example.com +1", "user.create bob@example.com"}},
		{"\u0430lice@example.com", []string{"user.create (not ASCII) \u0430lice@example.com"}},
	} {
		if got := rows("--user", tc.user); strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
			t.Errorf("audit --user %s:\n%s\nwant\n%s", tc.user, strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
		}
	}
	// Other filters still apply.
	if got := rows("--user", "alice@example.com", "--device", mac[:8]); len(got) != 1 || got[0] != "device.assign alice@example.com" {
		t.Errorf("audit --user --device: %q", got)
	}

	// --json names every subject, by id and username.
	out, _, err := execute(noEnv, "audit", "--data-dir", s.dir, "--user", "bob@example.com", "--action", "group.create", "--json")
	var listed struct {
		Events []struct {
			Action   string
			Subjects []struct{ UserID, Username string }
		}
	}
	if err != nil || json.Unmarshal([]byte(out), &listed) != nil || len(listed.Events) != 1 || len(listed.Events[0].Subjects) != 2 ||
		listed.Events[0].Subjects[0] != (struct{ UserID, Username string }{"u-bob", "bob@example.com"}) ||
		listed.Events[0].Subjects[1] != (struct{ UserID, Username string }{"u-alice", "alice@example.com"}) {
		t.Errorf("audit --user --json: %v %+v\n%s", err, listed, out)
	}

	// Nothing found: said, with what --user can and cannot find.
	out, stderr, err := execute(noEnv, "audit", "--data-dir", s.dir, "--user", "zed@example.com")
	if err != nil || out != "" || !strings.HasPrefix(stderr, "no audit events match\nhint: --user finds the events that name a person") {
		t.Errorf("audit --user nobody: %v %q %q", err, out, stderr)
	}
	// A bad filter is refused by the server, the message naming the flag's field.
	code, _, stderr := exitOf(noEnv, "audit", "--data-dir", s.dir, "--user", "alice\x1b[2J")
	if code == 0 || !strings.Contains(stderr, "user holds a control character") {
		t.Errorf("audit --user with ESC: exit %d %q", code, stderr)
	}
}
