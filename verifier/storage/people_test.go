package storage

import (
	"strings"
	"testing"
)

func TestUserNameKey(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ name, key string }{
		{"Kate@Example.COM", "kate@example.com"},
		{"kate@example.com", "kate@example.com"},
		{"\u212Aate@example.com", "\u212Aate@example.com"}, // Kelvin sign: not a K
		{"\u017Fam", "\u017Fam"},                           // long s: not an s
		{"\u0130DA", "\u0130da"},                           // dotted capital I: not an I
		{"\u0131an", "\u0131an"},                           // dotless i: not an i
		{"REN\u00c9", "ren\u00c9"},                         // É keeps its case
		{"Rene\u0301", "rene\u0301"},                       // decomposed é is not é
		{"\uff2Bim", "\uff2Bim"},                           // fullwidth Ｋ keeps its case
		{"", ""},
	} {
		if got := UserNameKey(c.name); got != c.key {
			t.Errorf("UserNameKey(%+q) = %+q, want %+q", c.name, got, c.key)
		}
	}
}

// TestSameUserName: SameUserName is equality of keys, and the ASCII fold
// is finer than the Unicode one it replaced (names it makes the same were
// the same before), which is why migrating the stored keys cannot make two
// stored users collide.
func TestSameUserName(t *testing.T) {
	t.Parallel()
	names := []string{"kate", "KATE", "Kate", "\u212Aate", "\u212AATE", "sam", "SAM", "\u017Fam", "\u017FAM",
		"ida", "IDA", "\u0130da", "\u0131da", "ren\u00e9", "REN\u00c9", "REN\u00e9", "rene\u0301", "RENE\u0301",
		"\uff4Bate", "\uff2Bate", "\uff2BATE", "", "k", "K", "\u212A", "a@b", "A@B", "\xff", "\xffA", "\xffa"}
	for _, a := range names {
		for _, b := range names {
			same := SameUserName(a, b)
			if same != (UserNameKey(a) == UserNameKey(b)) {
				t.Errorf("SameUserName(%+q, %+q) = %v, but the keys are %+q and %+q", a, b, same, UserNameKey(a), UserNameKey(b))
			}
			if same && strings.ToLower(a) != strings.ToLower(b) {
				t.Errorf("SameUserName(%+q, %+q), but strings.ToLower tells them apart", a, b)
			}
			if (a == "kate") && same != (b == "kate" || b == "KATE" || b == "Kate") {
				t.Errorf("SameUserName(%+q, %+q) = %v", a, b, same)
			}
		}
	}
}
