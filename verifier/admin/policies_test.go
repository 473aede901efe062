package admin_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	adminv1 "github.com/clearance/clearance/proto/gen/clearance/admin/v1"
	agentv1 "github.com/clearance/clearance/proto/gen/clearance/agent/v1"
	"github.com/clearance/clearance/verifier/access"
	"github.com/clearance/clearance/verifier/admin"
	"github.com/clearance/clearance/verifier/decision"
)

// snapshotPolicies is a set in force with its rollout settings and scopes.
type snapshotPolicies struct{ snap access.PolicySnapshot }

func (p snapshotPolicies) Current() *agentv1.PolicySet { return p.snap.Set }
func (p snapshotPolicies) Reload(record func(*agentv1.PolicySet, []string) error) (*agentv1.PolicySet, error) {
	if record != nil {
		if err := record(p.snap.Set, nil); err != nil {
			return nil, err
		}
	}
	return p.snap.Set, nil
}
func (p snapshotPolicies) Snapshot() access.PolicySnapshot { return p.snap }

// ListPolicies shows each policy's rollout as the policy file states it
// and the mode it takes under the ceiling, and the ceiling itself; an
// advisory policy says required false in JSON too.
func TestListPoliciesRollout(t *testing.T) {
	t.Parallel()
	src := snapshotPolicies{access.PolicySnapshot{
		Set: &agentv1.PolicySet{Version: "v1", Policies: []*agentv1.Policy{
			{Id: "firewall", Name: "Firewall is on", Required: true},
			{Id: "filevault", Name: "FileVault is on", Required: true, Critical: true},
			{Id: "screen-lock", Name: "Screen lock", Required: false},
		}},
		Rollout: map[string]decision.PolicyRollout{
			"firewall":    {Enforcement: decision.Enforce, Grace: 72 * time.Hour, AllowBypass: true},
			"screen-lock": {Enforcement: decision.Monitor},
		},
		Scopes: map[string]decision.Scope{"firewall": {Groups: []string{"engineering"}, Exclude: []string{"contractors"}}},
	}}
	for _, tt := range []struct {
		ceiling decision.Enforcement
		want    map[string]string // policy id: effective enforcement
	}{
		{decision.Enforce, map[string]string{"firewall": "enforce", "filevault": "enforce", "screen-lock": "monitor"}},
		{decision.Warn, map[string]string{"firewall": "warn", "filevault": "warn", "screen-lock": "monitor"}},
		{decision.Monitor, map[string]string{"firewall": "monitor", "filevault": "monitor", "screen-lock": "monitor"}},
	} {
		t.Run(string(tt.ceiling), func(t *testing.T) {
			t.Parallel()
			ceiling := tt.ceiling
			s := &admin.Server{Policies: src, Ceiling: func() decision.Enforcement { return ceiling }}
			resp, err := s.ListPolicies(context.Background(), &adminv1.ListPoliciesRequest{})
			if err != nil {
				t.Fatal(err)
			}
			if resp.GetEnforcementCeiling() != string(tt.ceiling) {
				t.Errorf("ceiling %q, want %q", resp.GetEnforcementCeiling(), tt.ceiling)
			}
			if len(resp.GetRollouts()) != 3 {
				t.Fatalf("%d rollouts, want one per policy", len(resp.GetRollouts()))
			}
			for i, r := range resp.GetRollouts() {
				if r.GetPolicyId() != resp.GetPolicySet().GetPolicies()[i].GetId() {
					t.Errorf("rollout %d is %s, not in the set's order", i, r.GetPolicyId())
				}
				if r.GetEffectiveEnforcement() != tt.want[r.GetPolicyId()] {
					t.Errorf("%s: effective %q, want %q", r.GetPolicyId(), r.GetEffectiveEnforcement(), tt.want[r.GetPolicyId()])
				}
			}
			fw, fv, sl := resp.GetRollouts()[0], resp.GetRollouts()[1], resp.GetRollouts()[2]
			if fw.GetEnforcement() != "enforce" || fw.GetGrace().AsDuration() != 72*time.Hour || !fw.GetAllowBypass() ||
				strings.Join(fw.GetGroups(), ",") != "engineering" || strings.Join(fw.GetExcludeGroups(), ",") != "contractors" || !fw.GetRequired() {
				t.Errorf("firewall %v", fw)
			}
			if fv.GetEnforcement() != "enforce" || fv.Grace != nil || !fv.GetCritical() || fv.GetAllowBypass() {
				t.Errorf("filevault %v", fv)
			}
			if sl.GetEnforcement() != "monitor" || sl.GetRequired() {
				t.Errorf("screen-lock %v", sl)
			}
			j, err := protojson.Marshal(sl)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(j), `"required":false`) {
				t.Errorf("an advisory policy's JSON does not say so: %s", j)
			}
		})
	}
}
