package policy_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"testing"

	"github.com/clearance/clearance/agent/policy"
	agentv1 "github.com/clearance/clearance/proto/gen/clearance/agent/v1"
)

type querier func(sql string) ([]map[string]string, error)

func (q querier) Query(_ context.Context, sql string) ([]map[string]string, error) { return q(sql) }

// Every result names the query it is for, whatever its status, so that a
// verifier never judges a changed query by it.
func TestRunStampsTheQuery(t *testing.T) {
	t.Parallel()
	const sql = "SELECT 1 FROM alf WHERE global_state >= 1"
	want := sha256.Sum256([]byte(sql))
	for name, q := range map[string]querier{
		"pass":  func(string) ([]map[string]string, error) { return []map[string]string{{"1": "1"}}, nil },
		"fail":  func(string) ([]map[string]string, error) { return nil, nil },
		"error": func(string) ([]map[string]string, error) { return nil, errors.New("no such table: alf") },
	} {
		res := policy.Run(t.Context(), q, &agentv1.Policy{Id: "firewall", Query: sql}, nil)
		if !bytes.Equal(res.GetQuerySha256(), want[:]) {
			t.Errorf("%s: query_sha256 = %x, want %x", name, res.GetQuerySha256(), want)
		}
		if res.GetPolicyId() != "firewall" || res.GetStatus() == agentv1.PolicyStatus_POLICY_STATUS_UNSPECIFIED {
			t.Errorf("%s: result = %v", name, res)
		}
	}
}
