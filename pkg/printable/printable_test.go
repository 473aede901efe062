package printable

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"
)

// hostile is what a malicious agent reported as its host name: CSI and OSC
// as single C1 characters, a right-to-left override, and an ESC sequence.
const hostile = "evil\u009b31m\u009d0;PWNED-TITLE\u009c\u202eTXEN\u202c\u001b[2J"

func TestLine(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, want string }{
		{"alices-macbook-pro", "alices-macbook-pro"},
		{"Jane’s MacBook Pro ✓ ünï 日本", "Jane’s MacBook Pro ✓ ünï 日本"},
		{hostile, `evil\u009b31m\u009d0;PWNED-TITLE\u009c\u202eTXEN\u202c\x1b[2J`},
		{"SER\u009b1;31mRED", `SER\u009b1;31mRED`},
		{"a\tb\nc\rd\x7f", `a\tb\nc\rd\x7f`},
		{"zero\u200bwidth\u200djoin\ufeffbom\u2060wj", `zero\u200bwidth\u200djoin\ufeffbom\u2060wj`},
		{"iso\u2066late\u2069 mark\u200f\u061c", `iso\u2066late\u2069 mark\u200f\u061c`},
		{"line\u2028para\u2029", `line\u2028para\u2029`},
		{"tag\U000E0041", `tag\U000e0041`},
		{"bad\xffutf8\xc3", `bad\xffutf8\xc3`},
		{"", ""},
	} {
		if got := Line(tc.in); got != tc.want {
			t.Errorf("Line(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestJSON(t *testing.T) {
	t.Parallel()
	in, err := json.MarshalIndent(map[string]any{"hostname": hostile, "serial": "SER\u009b1;31mRED", "ok": "日本 ✓", "astral": "x\U000E0041"}, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	out := JSON(in)
	checkJSON(t, in, out)
	for _, raw := range []string{"\u009b", "\u009d", "\u009c", "\u202e", "\u202c", "\x1b", "\U000E0041"} {
		if strings.Contains(string(out), raw) {
			t.Errorf("output carries %q raw:\n%s", raw, out)
		}
	}
	for _, esc := range []string{`\u009b`, `\u202e`, `\udb40\udc41`} {
		if !strings.Contains(string(out), esc) {
			t.Errorf("output lacks %s:\n%s", esc, out)
		}
	}
	if !strings.Contains(string(out), "日本 ✓") {
		t.Errorf("printable text was escaped:\n%s", out)
	}
}

// checkJSON asserts that out is valid JSON with the value of in and no raw
// hidden rune outside ASCII.
func checkJSON(t *testing.T, in, out []byte) {
	t.Helper()
	var a, b any
	if err := json.Unmarshal(in, &a); err != nil {
		return
	}
	if err := json.Unmarshal(out, &b); err != nil {
		t.Fatalf("escaped JSON does not parse: %v\n%s", err, out)
	}
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	if string(x) != string(y) {
		t.Fatalf("escaping changed the value: %s != %s", x, y)
	}
	for _, r := range string(out) {
		if r >= 0x7f && Hidden(r) {
			t.Fatalf("raw %U left in %q", r, out)
		}
	}
}

func FuzzJSON(f *testing.F) {
	f.Add([]byte(`{"hostname":"` + hostile + `"}`))
	f.Add([]byte("[\"\u2028\",\n\t\"\U000E0041\", 1]"))
	f.Fuzz(func(t *testing.T, in []byte) {
		if !utf8.Valid(in) {
			return
		}
		checkJSON(t, in, JSON(in))
	})
}

func FuzzLine(f *testing.F) {
	f.Add(hostile)
	f.Add("bad\xffutf8\u2028")
	f.Fuzz(func(t *testing.T, s string) {
		out := Line(s)
		if !utf8.ValidString(out) {
			t.Fatalf("Line(%q) is not UTF-8", s)
		}
		for _, r := range out {
			if Hidden(r) {
				t.Fatalf("Line(%q) = %q keeps %U", s, out, r)
			}
		}
	})
}

// Identifier escapes what draws as nothing, where Line leaves what is
// harmless outside an identifier (an emoji's variation selector).
func TestIdentifierEscapesInvisible(t *testing.T) {
	for _, r := range []rune{0x034F, 0xFE0F, 0x3164, 0x2800, 0x115F, 0x17B4, 0xFFA0, 0x180B, 0xE0100, 0x200B, 0x202E} {
		s := "robin" + string(r) + "@example.com"
		if got := Identifier(s); got == s || !strings.Contains(got, `\`) {
			t.Errorf("Identifier(%+q) = %q, not escaped", s, got)
		}
	}
	for in, want := range map[string]string{
		"alice@example.com\u00a0": `alice@example.com\u00a0`,
		"alice\u3000@example.com": `alice\u3000@example.com`,
		" alice@example.com ":     `\x20alice@example.com\x20`,
		"Alice Smith":             "Alice Smith",
	} {
		if got := Identifier(in); got != want {
			t.Errorf("Identifier(%+q) = %q, want %q", in, got, want)
		}
	}
	if heart := "\u2764\ufe0f"; Line(heart) != heart {
		t.Errorf("Line escapes an emoji's variation selector: %q", Line(heart))
	}
}
