package access

import (
	"testing"

	"github.com/clearance/clearance/verifier/storage"
)

func TestBinds(t *testing.T) {
	t.Parallel()
	u := storage.User{UserName: "Jane.Doe@example.com", Email: "jdoe@corp.example.com"}
	cases := []struct {
		rule, account string
		want          bool
	}{
		{DefaultBindingRule, "jane.doe", true},
		{DefaultBindingRule, "JDOE", true},
		{"", "jdoe", true},
		{DefaultBindingRule, "jane", false},
		{DefaultBindingRule, "", false},
		{"{local}@example.com", "jane.doe", true},
		{"{local}@corp.example.com", "jdoe", true},
		{"{local}@example.com", "jdoe", false},
		{"{local}@example.com", "jane.doe@example.com", false},
	}
	for _, c := range cases {
		if got := Binds(c.rule, c.account, u); got != c.want {
			t.Errorf("Binds(%q, %q) = %v, want %v", c.rule, c.account, got, c.want)
		}
	}
}

// A username Okta never provisioned is still bound by the rule, through
// the username alone: binding works without SCIM.
func TestBindsUnprovisioned(t *testing.T) {
	t.Parallel()
	if !Binds(DefaultBindingRule, "jdoe", storage.User{UserName: "jdoe@example.com"}) {
		t.Error("the username alone does not bind")
	}
}
