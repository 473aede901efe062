package policy

import (
	"regexp"
	"strings"
	"testing"
)

// idRule is ValidID's rule as a regular expression, as the format's
// documentation states it.
var idRule = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,63}$`)

func TestValidID(t *testing.T) {
	for _, id := range []string{
		"", "a", "0", "filevault", "os.min-version_14", "a.", "a-", "a_",
		".a", "-a", "_a", "A", "aB", "a b", "a\n", "\na", "é", "a\x00",
		strings.Repeat("a", 63), strings.Repeat("a", 64), strings.Repeat("a", 65),
		"a" + strings.Repeat("-", 63), "a" + strings.Repeat("-", 64),
	} {
		if got, want := ValidID(id), idRule.MatchString(id); got != want {
			t.Errorf("ValidID(%q) = %v, the rule says %v", id, got, want)
		}
	}
}

func FuzzValidID(f *testing.F) {
	for _, s := range []string{"filevault", "a.b-c_d", "-a", "A", strings.Repeat("z", 64), "\xff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, id string) {
		if got, want := ValidID(id), idRule.MatchString(id); got != want {
			t.Fatalf("ValidID(%q) = %v, the rule says %v", id, got, want)
		}
	})
}
