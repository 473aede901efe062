package rollout

import (
	"fmt"
	"strings"
	"testing"
)

// CheckPolicies names every unknown id, in the set's own words, and lists a
// bounded number of the set's policies.
func TestCheckPolicies(t *testing.T) {
	set := []string{"filevault", "firewall"}
	where := SetDescription("the policy set in force", "v7")
	if err := (Grant{PolicyIDs: []string{"firewall"}}).CheckPolicies(set, where); err != nil {
		t.Errorf("a known id: %v", err)
	}
	if err := (Grant{}).CheckPolicies(nil, where); err != nil {
		t.Errorf("every policy, no set: %v", err)
	}
	for _, c := range []struct {
		ids  []string
		set  []string
		want string
	}{
		{[]string{"firewall", "filevalt"}, set, `no policy "filevalt" in the policy set in force (version "v7"); its policies: filevault, firewall`},
		{[]string{"a", "b"}, set, `no policies "a", "b" in`},
		{[]string{"a"}, nil, "; it has no policies"},
	} {
		err := (Grant{PolicyIDs: c.ids}).CheckPolicies(c.set, where)
		if !IsGrantError(err) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v in %v: %v, want %q", c.ids, c.set, err, c.want)
		}
	}
	var many []string
	for i := range shownPolicies + 5 {
		many = append(many, fmt.Sprintf("p%02d", i))
	}
	err := (Grant{PolicyIDs: []string{"x"}}).CheckPolicies(many, where)
	if err == nil || !strings.HasSuffix(err.Error(), fmt.Sprintf("p%02d and 5 more", shownPolicies-1)) {
		t.Errorf("a long set: %v", err)
	}
	if got := SetDescription("the policy set in force", ""); got != "the policy set in force" {
		t.Errorf("no version: %q", got)
	}
	if got := SetDescription("f", strings.Repeat("v", 100)+"\n"); strings.ContainsRune(got, '\n') || len(got) > 90 {
		t.Errorf("a long version: %q", got)
	}
}
