package main

import (
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	adminv1 "github.com/clearance/clearance/proto/gen/clearance/admin/v1"
	agentv1 "github.com/clearance/clearance/proto/gen/clearance/agent/v1"
)

// The policies table says each policy's mode as a failing Mac meets it,
// and what the policy file asks for when the ceiling lowers it.
func TestRenderPolicies(t *testing.T) {
	t.Parallel()
	resp := &adminv1.ListPoliciesResponse{
		EnforcementCeiling: "warn",
		PolicySet: &agentv1.PolicySet{Policies: []*agentv1.Policy{
			{Id: "filevault", Name: "FileVault is on", Required: true, Critical: true},
			{Id: "firewall", Name: "Firewall is on", Required: true},
			{Id: "screen-lock", Name: "Screen locks within 5 minutes", Required: false},
		}},
		Rollouts: []*adminv1.PolicyRollout{
			{PolicyId: "filevault", Enforcement: "enforce", EffectiveEnforcement: "warn", AllowBypass: true},
			{PolicyId: "firewall", Enforcement: "warn", EffectiveEnforcement: "warn", Grace: durationpb.New(72 * time.Hour), AllowBypass: true,
				Groups: []string{"engineering", "design"}, ExcludeGroups: []string{"contractors"}},
			{PolicyId: "screen-lock", Enforcement: "monitor", EffectiveEnforcement: "monitor"},
		},
	}
	var b strings.Builder
	if err := renderPolicies(&b, resp, 100); err != nil {
		t.Fatal(err)
	}
	checkTable(t, "policies", b.String(), 100)
}
