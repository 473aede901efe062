package admin

import (
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	agentv1 "github.com/clearance/clearance/proto/gen/clearance/agent/v1"
)

// The summary tells a required policy that failed its check from one whose
// check could not run (ERROR) and one with no result, and lists advisory
// ones apart.
func TestOutcomesSummaryTellsErrorFromFail(t *testing.T) {
	ps := &agentv1.PolicySet{Version: "v1", Policies: []*agentv1.Policy{
		{Id: "filevault", Required: true},
		{Id: "firewall", Required: true},
		{Id: "os-version", Required: true},
		{Id: "sip", Required: true},
		{Id: "screen-lock"},
	}}
	r := &agentv1.PostureReport{Results: []*agentv1.PolicyResult{
		{PolicyId: "filevault", Status: agentv1.PolicyStatus_POLICY_STATUS_FAIL},
		{PolicyId: "firewall", Status: agentv1.PolicyStatus_POLICY_STATUS_ERROR, Message: "no such table"},
		{PolicyId: "sip", Status: agentv1.PolicyStatus_POLICY_STATUS_PASS},
		{PolicyId: "screen-lock", Status: agentv1.PolicyStatus_POLICY_STATUS_ERROR},
	}}
	_, sum := Outcomes(ps, r)
	for name, got := range map[string][]string{
		"failing": sum.GetFailing(), "failing_error": sum.GetFailingError(), "failing_missing": sum.GetFailingMissing(),
		"advisory_failing": sum.GetAdvisoryFailing(),
	} {
		want := map[string][]string{
			"failing": {"filevault", "firewall", "os-version"}, "failing_error": {"firewall"}, "failing_missing": {"os-version"},
			"advisory_failing": {"screen-lock"},
		}[name]
		if !slices.Equal(got, want) {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}
	if sum.GetPass() != 1 || sum.GetFail() != 1 || sum.GetError() != 2 || sum.GetMissing() != 1 || sum.GetCompliant() {
		t.Errorf("summary %v", sum)
	}
}

// LocalUser: the account at the console, else the latest login, else none.
func TestLocalUser(t *testing.T) {
	at := func(h int) *timestamppb.Timestamp {
		return timestamppb.New(time.Date(2026, 3, 4, h, 0, 0, 0, time.UTC))
	}
	for _, tc := range []struct {
		accounts []*agentv1.LocalAccount
		want     string
	}{
		{nil, ""},
		{[]*agentv1.LocalAccount{{Name: "admin"}}, ""},
		{[]*agentv1.LocalAccount{{Name: "admin", LastLogin: at(9)}, {Name: "jdoe", LastLogin: at(11)}, {Name: "old", LastLogin: at(1)}}, "jdoe"},
		{[]*agentv1.LocalAccount{{Name: "admin", LastLogin: at(12)}, {Name: "jdoe", Console: true, LastLogin: at(11)}}, "jdoe"},
	} {
		if got := LocalUser(&agentv1.PostureReport{Accounts: tc.accounts}); got != tc.want {
			t.Errorf("%v: %q, want %q", tc.accounts, got, tc.want)
		}
	}
	if got := LocalUser(nil); got != "" {
		t.Errorf("no report: %q", got)
	}
}
