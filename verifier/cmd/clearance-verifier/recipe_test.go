package main

import (
	"context"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/clearance/clearance/verifier/storage"
)

// TestCountByPolicyRecipe runs operations.md's "counted by policy" recipe
// as written (its decisions command here, its jq filter through jq) and
// checks its counts: a policy in monitor is counted on every sign-in it
// failed, the denied and the warned ones too, not only those let in by
// monitor mode; a sign-in older than the week is not.
func TestCountByPolicyRecipe(t *testing.T) {
	t.Parallel()
	jq, err := exec.LookPath("jq")
	if err != nil {
		t.Skip("jq is not installed here")
	}
	doc, err := os.ReadFile("../../../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	_, after, ok := strings.Cut(string(doc), "\n# Counted by policy:")
	if !ok {
		t.Fatal(`operations.md lost its "Counted by policy" recipe`)
	}
	var recipe string
	for _, l := range strings.Split(after, "\n")[1:] {
		if strings.HasPrefix(l, "#") {
			continue
		}
		recipe += l
		if !strings.HasSuffix(l, `\`) {
			break
		}
		recipe = strings.TrimSuffix(recipe, `\`)
	}
	command, filter, ok := strings.Cut(recipe, "| jq -r '")
	filter, rest, ok2 := strings.Cut(filter, "'")
	args := strings.Fields(command)
	if !ok || !ok2 || strings.TrimSpace(rest) != "| sort | uniq -c" || len(args) < 2 || args[0] != "clearance-verifier" {
		t.Fatalf("the recipe is not a decisions command, a jq filter and sort | uniq -c: %q", recipe)
	}

	s := startServer(t)
	good, bad := s.passingAndFailing(t)
	now := time.Now()
	fail := func(id, enforcement, waiver string) storage.DecisionResult {
		return storage.DecisionResult{PolicyID: id, Status: "FAIL", Required: true, Enforcement: enforcement, Waiver: waiver}
	}
	for _, d := range []storage.DecisionRecord{
		// Let in by monitor mode.
		{At: now.Add(-time.Hour), Username: "alice@example.com", DeviceID: bad, Allow: true, Reason: "allowed", Mode: "monitor", Source: "sso",
			Results: []storage.DecisionResult{fail("firewall", "monitor", "monitor"), fail("sip", "monitor", "monitor")}},
		// Denied for FileVault: the firewall failed in monitor too.
		{At: now.Add(-2 * time.Hour), Username: "bob@example.com", DeviceID: bad, Reason: "policy_failed", Source: "sso",
			Results: []storage.DecisionResult{fail("filevault", "enforce", ""), fail("firewall", "monitor", "monitor")}},
		// Warned for Gatekeeper, the firewall in monitor.
		{At: now.Add(-3 * time.Hour), Username: "bob@example.com", DeviceID: bad, Reason: "policy_failed", Mode: "warn", Source: "sso",
			Results: []storage.DecisionResult{fail("gatekeeper", "warn", ""), fail("firewall", "monitor", "monitor")}},
		{At: now.Add(-4 * time.Hour), Username: "carol@example.com", DeviceID: good, Allow: true, Reason: "allowed", Source: "sso"},
		// Before the week.
		{At: now.Add(-8 * 24 * time.Hour), Username: "bob@example.com", DeviceID: bad, Allow: true, Reason: "allowed", Mode: "monitor", Source: "sso",
			Results: []storage.DecisionResult{fail("firewall", "monitor", "monitor")}},
	} {
		if _, err := s.srv.Store.AppendDecision(context.Background(), d); err != nil {
			t.Fatal(err)
		}
	}

	args = args[1:]
	for i, a := range args {
		if a == "/var/lib/clearance" {
			args[i] = s.dir
		}
	}
	out, stderr, err := execute(noEnv, args...)
	if err != nil {
		t.Fatalf("%v: %v\n%s", args, err, stderr)
	}
	cmd := exec.Command(jq, "-r", filter)
	cmd.Stdin = strings.NewReader(out)
	ids, err := cmd.Output()
	if err != nil {
		t.Fatalf("jq -r %q: %v", filter, err)
	}
	count := map[string]int{}
	for _, id := range strings.Fields(string(ids)) {
		count[id]++
	}
	want := map[string]int{"firewall": 3, "sip": 1}
	if len(count) != len(want) || count["firewall"] != want["firewall"] || count["sip"] != want["sip"] {
		keys := make([]string, 0, len(count))
		for k := range count {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		t.Errorf("the recipe counts %v (policies %v), want %v", count, keys, want)
	}
}
