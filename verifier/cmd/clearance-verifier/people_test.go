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

// TestPeople: `people` lists who Okta provisioned with their groups and
// how many Macs each uses, a group's members with --group, and one person
// with each Mac and how it is tied to them; bad input is refused with what
// is wrong.
func TestPeople(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	secret := s.newSecret(t)
	henrys := s.enrollWith(t, secret, "0A1B2C3D-4E5F-4061-8172-839405A6B7C1", agentv1.PolicyStatus_POLICY_STATUS_PASS, func(r *agentv1.PostureReport) {
		r.Accounts = []*agentv1.LocalAccount{{Name: "henry", Console: true}}
	}).DeviceID
	erins := s.enroll(t, secret, "0A1B2C3D-4E5F-4061-8172-839405A6B7C2", agentv1.PolicyStatus_POLICY_STATUS_PASS).DeviceID
	ctx, now := context.Background(), time.Now()
	for _, u := range []storage.User{
		{ID: "u-erin", UserName: "erin@example.com", DisplayName: "Erin Example", Active: true},
		{ID: "u-henry", UserName: "henry@example.com", DisplayName: "Henry Example", Active: true},
		{ID: "u-olga", UserName: "olga@example.com", Active: false},
		// A look-alike of henry's name, a Cyrillic н: marked wherever it
		// is shown, never read as his.
		{ID: "u-look", UserName: "\u043denry@example.com", Active: true},
	} {
		u.CreatedAt, u.UpdatedAt = now, now
		if _, err := s.srv.Store.CreateUser(ctx, u, storage.AuditEvent{At: now, Actor: "scim:test", Action: "user.create"}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.srv.Store.CreateGroup(ctx, storage.Group{ID: "g-eng", DisplayName: "Engineering", Members: []string{"u-henry", "u-erin"}, CreatedAt: now, UpdatedAt: now},
		storage.AuditEvent{At: now, Actor: "scim:test", Action: "group.create"}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := execute(noEnv, "devices", "assign", "--data-dir", s.dir, erins[:8], "erin@example.com"); err != nil {
		t.Fatal(err)
	}

	out, _, err := execute(noEnv, "people", "--data-dir", s.dir)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 5 || strings.Join(strings.Fields(lines[0]), " ") != "USERNAME NAME ACTIVE MACS GROUPS" ||
		strings.Join(strings.Fields(lines[2]), " ") != "henry@example.com Henry Example yes 1 Engineering" ||
		strings.Join(strings.Fields(lines[3]), " ") != "(not ASCII) \u043denry@example.com - yes 0 -" ||
		strings.Join(strings.Fields(lines[4]), " ") != "olga@example.com - no 0 -" {
		t.Fatalf("people:\n%s", out)
	}

	out, _, err = execute(noEnv, "people", "--data-dir", s.dir, "--group", "engineering", "--limit", "1", "--all")
	if err != nil || !strings.Contains(out, "erin@example.com") || !strings.Contains(out, "henry@example.com") || strings.Contains(out, "olga") {
		t.Fatalf("people --group engineering --all: %v\n%s", err, out)
	}
	out, errOut, err := execute(noEnv, "people", "--data-dir", s.dir, "--group", "Engineering", "--limit", "1")
	if err != nil || strings.Count(out, "@example.com") != 1 || !strings.Contains(errOut, "1 more people match (2 in all)") {
		t.Fatalf("people --group Engineering --limit 1: %v\n%s%s", err, out, errOut)
	}

	out, _, err = execute(noEnv, "people", "--data-dir", s.dir, "--wide", "Henry@Example.com")
	if err != nil || !strings.Contains(out, "groups:       Engineering") || !strings.Contains(out, henrys) ||
		!strings.Contains(out, "local account henry") || strings.Contains(out, erins) {
		t.Fatalf("people henry:\n%v\n%s", err, out)
	}
	out, _, err = execute(noEnv, "people", "--data-dir", s.dir, "u-look")
	if err != nil || !strings.Contains(out, "username:     (not ASCII) \u043denry@example.com\n") {
		t.Fatalf("people u-look:\n%v\n%s", err, out)
	}
	out, _, err = execute(noEnv, "people", "--data-dir", s.dir, "--json", "u-erin")
	var person struct {
		Devices []struct {
			DeviceID string   `json:"deviceId"`
			Sources  []string `json:"sources"`
		} `json:"devices"`
	}
	if err != nil || json.Unmarshal([]byte(out), &person) != nil || len(person.Devices) != 1 ||
		person.Devices[0].DeviceID != erins || strings.Join(person.Devices[0].Sources, ",") != "admin" {
		t.Fatalf("people --json erin: %v\n%s", err, out)
	}
	out, _, err = execute(noEnv, "people", "--data-dir", s.dir, "--json")
	var list struct {
		Users []struct {
			UserName string   `json:"userName"`
			Devices  int      `json:"devices"`
			Groups   []string `json:"groups"`
		} `json:"users"`
	}
	if err != nil || json.Unmarshal([]byte(out), &list) != nil || len(list.Users) != 4 || list.Users[1].Devices != 1 {
		t.Fatalf("people --json: %v\n%s", err, out)
	}

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--group", "Engineers"}, `no group "Engineers"`},
		{[]string{"nobody@example.com"}, `no user "nobody@example.com"`},
		{[]string{"a@example.com", "b@example.com"}, "at most one person"},
		{[]string{"--group", "Engineering", "henry@example.com"}, "--group lists people"},
		{[]string{"--group", " "}, "--group is empty"},
		{[]string{"--limit", "501"}, "--limit must be from 1 to 500"},
		{[]string{""}, "an empty USER names no one"},
	} {
		if _, _, err := execute(noEnv, append([]string{"people", "--data-dir", s.dir}, tc.args...)...); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("people %q: %v, want %q", tc.args, err, tc.want)
		}
	}
}

// A group whose name holds a comma reads as one group in a list of them.
func TestGroupCell(t *testing.T) {
	for name, want := range map[string]string{
		"Engineering": "Engineering",
		"Eng,Sales":   `"Eng,Sales"`,
		`Say "hi"`:    `"Say \"hi\""`,
		" Padded":     `" Padded"`,
	} {
		if got := groupCell(name); got != want {
			t.Errorf("groupCell(%q) = %s, want %s", name, got, want)
		}
	}
}
