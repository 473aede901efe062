package osquerysim_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"gopkg.in/yaml.v3"
)

// The shipped example policies, run through osquery-go's client against the
// simulator: every one passes on compliant-mac; on failing-mac exactly the
// FileVault and firewall ones fail. A policy that errors (a column osquery
// does not have on macOS, say) fails the test.
func TestExamplePolicies(t *testing.T) {
	path := filepath.Join("..", "..", "examples", "policies.yaml")
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		t.Skip("examples/policies.yaml not present")
	}
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Policies []struct {
			ID    string `yaml:"id"`
			Query string `yaml:"query"`
		} `yaml:"policies"`
	}
	if err := yaml.Unmarshal(data, &doc); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if len(doc.Policies) == 0 {
		t.Fatalf("%s defines no policies", path)
	}
	failOnFailing := map[string]bool{"filevault": true, "firewall": true}
	seen := map[string]bool{}
	for _, p := range doc.Policies {
		seen[p.ID] = true
	}
	for id := range failOnFailing {
		if !seen[id] {
			t.Fatalf("%s has no %q policy", path, id)
		}
	}

	for _, fixture := range []string{"compliant-mac", "failing-mac"} {
		t.Run(fixture, func(t *testing.T) {
			r := start(t, fixture)
			c := client(t, r.socket)
			for _, p := range doc.Policies {
				res, err := c.Query(p.Query)
				if err != nil {
					t.Fatalf("%s: %v", p.ID, err)
				}
				if res.Status.Code != 0 {
					t.Errorf("%s: ERROR %d %q", p.ID, res.Status.Code, res.Status.Message)
					continue
				}
				pass := len(res.Response) > 0
				wantPass := fixture == "compliant-mac" || !failOnFailing[p.ID]
				if pass != wantPass {
					t.Errorf("%s on %s: pass = %v, want %v (rows %v)", p.ID, fixture, pass, wantPass, res.Response)
				}
			}
		})
	}
}
