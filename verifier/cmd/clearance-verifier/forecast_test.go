package main

import (
	"context"
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"time"

	agentv1 "github.com/clearance/clearance/proto/gen/clearance/agent/v1"
	"github.com/clearance/clearance/verifier/storage"
)

// TestPoliciesForecast: under --enforcement monitor every sign-in from a
// failing Mac is let in now; the forecast lists it as blocked if enforced,
// by which policies, leaves the passing Mac out unless asked, counts both,
// and refuses a policy id not in force before asking.
func TestPoliciesForecast(t *testing.T) {
	t.Parallel()
	s := startServer(t, "--enforcement", "monitor")
	out, _, err := execute(noEnv, "secret", "create", "--data-dir", s.dir)
	if err != nil {
		t.Fatal(err)
	}
	secret := lastLine(out)
	failing := s.enroll(t, secret, "0A1B2C3D-4E5F-4061-8172-839405A6B7D1", agentv1.PolicyStatus_POLICY_STATUS_FAIL)
	passing := s.enroll(t, secret, "0A1B2C3D-4E5F-4061-8172-839405A6B7D2", agentv1.PolicyStatus_POLICY_STATUS_PASS)

	// The list names the set in force, so a reload can be checked.
	_, errOut, err := execute(noEnv, "policies", "--data-dir", s.dir)
	if err != nil || !regexp.MustCompile(`(?m)^policy set [0-9a-f]{8,}$`).MatchString(errOut) || !strings.Contains(errOut, "enforcement ceiling: monitor") {
		t.Fatalf("policies: %v\n%s", err, errOut)
	}

	out, errOut, err = execute(noEnv, "policies", "forecast", "--data-dir", s.dir, "--wide")
	if err != nil {
		t.Fatal(err, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "DEVICE") || !strings.Contains(lines[1], failing.DeviceID) ||
		!strings.Contains(lines[1], "let in (monitor)") || !strings.Contains(lines[1], "blocked") ||
		!strings.Contains(lines[1], "filevault,firewall,sip,gatekeeper,macos-version") || strings.Contains(out, passing.DeviceID) {
		t.Fatalf("forecast of every policy:\n%s", out)
	}
	if want := "If every policy were enforced, they would stop 1 of 2 sign-ins (1 of 2 Macs): 1 at once (0 offered Resolve later), 0 when a grace period ends; 0 of the 1 are blocked now already"; !strings.Contains(errOut, want) {
		t.Errorf("summary %q, want it to start %q", errOut, want)
	}

	out, errOut, err = execute(noEnv, "policies", "forecast", "--data-dir", s.dir, "--wide", "--every", "--policy", "firewall")
	if err != nil {
		t.Fatal(err, errOut)
	}
	// The other policies stay as the ceiling has them: monitored; the
	// passing Mac, listed with --every, is stopped by nothing.
	lines = strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !strings.Contains(out, passing.DeviceID) || !strings.Contains(out, "blocked      firewall\n") {
		t.Fatalf("forecast of the firewall, every sign-in:\n%s", out)
	}
	if !strings.Contains(errOut, "If firewall were enforced, it would stop 1 of 2 sign-ins") {
		t.Errorf("summary %q", errOut)
	}

	out, _, err = execute(noEnv, "policies", "forecast", "--data-dir", s.dir, "--json", "--policy", "sip,firewall")
	if err != nil {
		t.Fatal(err)
	}
	var resp struct {
		PolicyIDs []string `json:"policyIds"`
		Devices   []struct {
			DeviceID string `json:"deviceId"`
			Enforced struct {
				Allow    bool     `json:"allow"`
				Blocking []string `json:"blockingPolicyIds"`
			} `json:"enforced"`
		} `json:"devices"`
	}
	if err := json.Unmarshal([]byte(out), &resp); err != nil {
		t.Fatal(err, out)
	}
	if strings.Join(resp.PolicyIDs, ",") != "sip,firewall" || len(resp.Devices) != 2 {
		t.Fatalf("JSON: %s", out)
	}
	for _, d := range resp.Devices {
		if blocked := d.DeviceID == failing.DeviceID; d.Enforced.Allow == blocked ||
			blocked && strings.Join(d.Enforced.Blocking, ",") != "firewall,sip" {
			t.Errorf("JSON device %+v", d)
		}
	}

	// With the ceiling lifted too, the other policies enforce as the file
	// says: the failing Mac is blocked by every one, firewall included.
	out, errOut, err = execute(noEnv, "policies", "forecast", "--data-dir", s.dir, "--wide", "--policy", "firewall", "--no-ceiling")
	if err != nil || !strings.Contains(out, "filevault,firewall,sip,gatekeeper,macos-version") || !strings.Contains(out, "none known") ||
		!strings.Contains(errOut, "2 Macs with no known person") {
		t.Fatalf("--no-ceiling: %v\n%s%s", err, out, errOut)
	}
	if _, _, err := execute(noEnv, "policies", "forecast", "--data-dir", s.dir, "--policy", ""); err == nil || !strings.Contains(err.Error(), "empty id") {
		t.Errorf("an empty --policy: %v", err)
	}

	_, _, err = execute(noEnv, "policies", "forecast", "--data-dir", s.dir, "--policy", "firewal")
	if err == nil || !strings.Contains(err.Error(), `"firewal" is not a policy in force`) || !strings.Contains(err.Error(), "did you mean firewall?") {
		t.Errorf("a mistyped policy: %v", err)
	}
}

// TestForecastPerson: a Mac is forecast for the person its local account
// is (shown local:), not for a visitor who signed in last; a username the
// directory does not hold is no one's.
func TestForecastPerson(t *testing.T) {
	t.Parallel()
	s := startServer(t, "--enforcement", "monitor")
	secret := s.newSecret(t)
	alices := s.enrollWith(t, secret, "0A1B2C3D-4E5F-4061-8172-839405A6B7D3", agentv1.PolicyStatus_POLICY_STATUS_FAIL, func(r *agentv1.PostureReport) {
		r.Accounts = []*agentv1.LocalAccount{{Name: "alice", Console: true}}
	}).DeviceID
	strangers := s.enroll(t, secret, "0A1B2C3D-4E5F-4061-8172-839405A6B7D4", agentv1.PolicyStatus_POLICY_STATUS_FAIL).DeviceID
	now := time.Now()
	ctx := context.Background()
	for _, name := range []string{"alice", "bob"} {
		if _, err := s.srv.Store.CreateUser(ctx, storage.User{ID: "u-" + name, UserName: name + "@example.com", Active: true, CreatedAt: now, UpdatedAt: now},
			storage.AuditEvent{At: now, Actor: "scim:test", Action: "user.create"}); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range []storage.DecisionRecord{
		{Username: "alice@example.com", DeviceID: alices},
		{Username: "bob@example.com", DeviceID: alices},
		{Username: "zed@example.com", DeviceID: strangers},
	} {
		d.At, d.Allow, d.Reason, d.Source = now, true, "allowed", "sso"
		if _, err := s.srv.Store.AppendDecision(ctx, d); err != nil {
			t.Fatal(err)
		}
	}
	out, errOut, err := execute(noEnv, "policies", "forecast", "--data-dir", s.dir, "--wide")
	if err != nil {
		t.Fatal(err, errOut)
	}
	rows := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(out), "\n")[1:] {
		rows[strings.Fields(l)[0]] = l
	}
	if !strings.Contains(rows[alices], "local:alice@example.com") || strings.Contains(out, "bob@") {
		t.Errorf("alice's Mac, bob signed in last:\n%s", out)
	}
	if !strings.Contains(rows[strangers], "none known") || strings.Contains(out, "zed@") || !strings.Contains(errOut, "1 Macs with no known person") {
		t.Errorf("a Mac only zed, whom the directory does not hold, signed in on:\n%s%s", out, errOut)
	}
}
