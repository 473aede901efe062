package policy

import (
	"slices"
	"strings"
	"testing"
)

func TestGroups(t *testing.T) {
	const base = "policies:\n  - id: sip\n    name: SIP\n    query: SELECT 1\n"
	set, err := Parse([]byte(base+"    groups: [Engineering, \" Ops \"]\n    exclude_groups: [Contractors]\n"), "p.yaml")
	if err != nil {
		t.Fatal(err)
	}
	p := set.Policies[0]
	if !slices.Equal(p.Groups, []string{"Engineering", "Ops"}) || !slices.Equal(p.ExcludeGroups, []string{"Contractors"}) {
		t.Errorf("groups %q exclude %q", p.Groups, p.ExcludeGroups)
	}
	plain, err := Parse([]byte(base), "p.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if plain.Version == set.Version {
		t.Error("adding groups kept the version")
	}
	for in, want := range map[string]string{
		"    groups: Engineering\n":                                       `"groups" must be a list`,
		"    groups: [Eng, eng]\n":                                        "duplicate group",
		"    groups: [\"\"]\n":                                            "empty group name",
		"    groups: [[a]]\n":                                             "must be a group name",
		"    groups: [Eng]\n    exclude_groups: [ENG]\n":                  "in both groups and exclude_groups",
		"    groups: [" + strings.Repeat("g,", maxGroups) + "g]\n":        "the limit is",
		"    groups: [" + strings.Repeat("x", maxGroupNameSize+1) + "]\n": "longer than",
	} {
		_, err := Parse([]byte(base+in), "p.yaml")
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: err = %v, want %q", in, err, want)
		}
	}
}

// GroupKey folds capitals into their own lower case only: a sign that
// lowers to a letter, or a lower-case look-alike, is another group.
func TestGroupKey(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		a, b string
		same bool
	}{
		{"Staff", "staff", true},
		{"KIOSK-EXEMPT", "kiosk-exempt", true},
		{"Ärzte", "ärzte", true},
		{"ΣΟΦΙΑ", "σοφια", true},
		{"\u212Aiosk-Exempt", "Kiosk-Exempt", false}, // Kelvin sign
		{"\u212Bngstrom", "Ångstrom", false},         // Angstrom sign
		{"Contractor\u017f", "Contractors", false},   // long s
		{"ΠΩΛΗΣΕΙΣ", "Πωλησεις", true},               // final sigma
		{"STRA\u1E9EE", "straße", true},              // capital sharp s
		{"\u01C5emal", "\u01C6emal", true},           // title-case digraph
		{"\u00B5-team", "\u03BC-team", false},        // micro sign, mu
		{"\u2126mega", "\u03A9mega", false},          // ohm sign, omega
		{"\u03D0eta", "\u03B2eta", false},            // beta symbol
		{"\u0130stanbul", "istanbul", false},         // capital I with dot
	} {
		if got := GroupKey(tc.a) == GroupKey(tc.b); got != tc.same {
			t.Errorf("GroupKey(%q) == GroupKey(%q): %v, want %v", tc.a, tc.b, got, tc.same)
		}
	}
}
