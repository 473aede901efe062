package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/clearance/clearance/verifier/storage"
)

// TestTableWidth: tables fit the terminal stdout is, else $COLUMNS (for
// output piped on), else 80; --wide lifts the limit.
func TestTableWidth(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		term    int // 0: stdout is not a terminal
		columns string
		wide    bool
		want    int
	}{
		{"terminal", 200, "", false, 200},
		{"terminal over COLUMNS", 200, "120", false, 200},
		{"COLUMNS when piped", 0, "120", false, 120},
		{"80 when piped", 0, "", false, 80},
		{"COLUMNS not a number", 0, "wide", false, 80},
		{"COLUMNS too narrow", 0, "10", false, 80},
		{"a very narrow terminal", 12, "", false, 40},
		{"a very wide terminal", 5000, "", false, 1000},
		{"wide", 200, "120", true, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			a := &app{getenv: envOf(map[string]string{"COLUMNS": tc.columns}), termWidth: func() int { return tc.term }}
			if got := a.tableWidth(tc.wide); got != tc.want {
				t.Errorf("tableWidth = %d, want %d", got, tc.want)
			}
		})
	}
}

// TestTablesUseTheTerminal: on a 200-column terminal the audit table's
// detail and the decisions table's reason are shown whole, where 80
// columns cut them; each line still fits.
func TestTablesUseTheTerminal(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	good, _ := s.passingAndFailing(t)
	ctx, now := context.Background(), time.Now()
	detail := "exemption 4 from filevault, firewall until 2026-03-11T12:00:00Z: replacement Mac on order"
	if err := s.srv.Store.AppendAudit(ctx, storage.AuditEvent{At: now, Actor: "admin:sam@example.com", Action: "exemption.grant", DeviceID: good, Detail: detail}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.srv.Store.AppendDecision(ctx, storage.DecisionRecord{At: now, Username: "bob@example.com", DeviceID: good, Reason: "policy_failed", Source: "sso",
		Results: []storage.DecisionResult{
			{PolicyID: "filevault", Status: "FAIL", Required: true},
			{PolicyID: "firewall", Status: "FAIL", Required: true, Enforcement: "monitor", Waiver: "monitor"},
			{PolicyID: "macos-version", Status: "FAIL", Required: true, Enforcement: "warn"},
		}}); err != nil {
		t.Fatal(err)
	}
	reason := "policy_failed: filevault,firewall (monitor),macos-version (warn)"
	run := func(term int, args ...string) string {
		t.Helper()
		var out, errOut bytes.Buffer
		a := &app{stdout: &out, stderr: &errOut, getenv: noEnv, now: time.Now, termWidth: func() int { return term }}
		if err := a.program().Execute(context.Background(), append(args, "--data-dir", s.dir)); err != nil {
			t.Fatalf("%v: %v\n%s", args, err, errOut.String())
		}
		return out.String()
	}
	for _, tc := range []struct {
		args []string
		text string
	}{
		{[]string{"audit", "--action", "exemption.grant"}, detail},
		{[]string{"decisions"}, reason},
	} {
		for _, term := range []int{200, 0} {
			out := run(term, tc.args...)
			if whole := strings.Contains(out, tc.text); whole != (term == 200) {
				t.Errorf("%v on a %d-column terminal: shown whole %v:\n%s", tc.args, term, whole, out)
			}
			limit := max(term, 80)
			for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
				if n := len([]rune(l)); n > limit {
					t.Errorf("%v on a %d-column terminal: a line of %d: %q", tc.args, term, n, l)
				}
			}
		}
	}
}
