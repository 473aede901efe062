package storage

import (
	"strings"
	"testing"
)

func TestCanonicalSerial(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, want string }{
		{"C02XK1ABJGH5", "C02XK1ABJGH5"},
		{"c02xk1abjgh5", "C02XK1ABJGH5"},
		{"C02xK1aBjGh5", "C02XK1ABJGH5"},
		{"", ""},
		{" C02XK1ABJGH5", ""},
		{"C02XK1ABJGH5 ", ""},
		{"C02X K1ABJGH5", ""},
		{"C02XK1ABJGH5\u00a0", ""}, // no-break space
		{"C02XK1ABJGH5\t", ""},     // tab
		{"C02XK\u0131ABJGH5", ""},  // dotless ı, which ToUpper makes I
		{"C02XK\u0130ABJGH5", ""},  // dotted İ
		{"C02XK\u017fABJGH5", ""},  // long ſ, which ToUpper makes S
		{"C02XK\uff21BJGH5", ""},   // fullwidth Ａ
		{"C02XK\u212aBJGH5", ""},   // Kelvin sign, which ToLower makes k
		{"C02-XK1", ""},            // punctuation
		{"C02XK1\x00", ""},         // NUL
		{"\xff\xfe", ""},           // not UTF-8
		{strings.Repeat("A", MaxCanonicalSerial), strings.Repeat("A", MaxCanonicalSerial)},
		{strings.Repeat("A", MaxCanonicalSerial+1), ""},
	} {
		if got := CanonicalSerial(tc.in); got != tc.want {
			t.Errorf("CanonicalSerial(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// FuzzCanonicalSerial: whatever the agent reports, the canonical form is
// empty or upper-case ASCII letters and digits, stable, and the same for
// every case spelling of the same ASCII serial.
func FuzzCanonicalSerial(f *testing.F) {
	for _, s := range []string{"C02XK1ABJGH5", "c02xk1abjgh5", " C02X ", "C02XK\u0131", "\xff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c := CanonicalSerial(s)
		if c == "" {
			return
		}
		if len(c) > MaxCanonicalSerial || len(c) != len(s) {
			t.Fatalf("CanonicalSerial(%q) = %q: length", s, c)
		}
		for i := 0; i < len(c); i++ {
			if b := c[i]; !('A' <= b && b <= 'Z' || '0' <= b && b <= '9') {
				t.Fatalf("CanonicalSerial(%q) = %q: byte %q", s, c, b)
			}
		}
		if CanonicalSerial(c) != c || CanonicalSerial(strings.ToLower(c)) != c {
			t.Fatalf("CanonicalSerial(%q) = %q is not stable", s, c)
		}
	})
}
