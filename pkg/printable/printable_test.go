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

func TestMixedScripts(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		s       string
		scripts string
		mixed   bool
	}{
		{"robin@example.com", "Latin", false},
		{"r0bin.o'neil+1@example.com", "Latin", false},
		{"", "", false},
		{"1234-_.@", "", false},
		{"jos\u00e9@example.com", "Latin", false},          // é is Latin
		{"jose\u0301@example.com", "Latin", false},         // a combining accent is Inherited
		{"\u0430lice@example.com", "Cyrillic Latin", true}, // a Cyrillic а
		{"\u0456van@example.com", "Cyrillic Latin", true},  // a Cyrillic і
		{"r\u03bfbin@example.com", "Greek Latin", true},    // a Greek ο
		{"alice@ex\u0430mple.com", "Cyrillic Latin", true}, // in the domain
		{"\u0438\u0432\u0430\u043d@\u043f\u0440\u0438\u043c\u0435\u0440.\u0440\u0444", "Cyrillic", false},
		// A name in its script at a Latin domain: each word is one script.
		{"\u0438\u0432\u0430\u043d@example.com", "Cyrillic Latin", false},
		{"\u0438\u0432\u0430\u043d@\u043f\u0440\u0438\u043c\u0435\u0440.com", "Cyrillic Latin", false},
		{"\u5c71\u7530\u3072\u308d\u3057\u30bf\u30ed\u30a6@example.jp", "Han Hiragana Katakana Latin", false},
		{"\u738b\u5c0f\u660e\u3105@example.cn", "Bopomofo Han Latin", false},
		{"\uae40\ubbfc\uc900\u91d1@example.kr", "Han Hangul Latin", false},
		{"\uae40\u3072@example.kr", "Hangul Hiragana Latin", true},
		// Latin beside Han or Hangul in one word.
		{"a\u4e28ice@example.com", "Han Latin", true},
		{"a\u3163ice@example.com", "Hangul Latin", true},
		{"\xff\xfe@example.com", "Latin", false},
	} {
		if got := strings.Join(Scripts(c.s), " "); got != c.scripts {
			t.Errorf("Scripts(%q) = %q, want %q", c.s, got, c.scripts)
		}
		if got := MixedScripts(c.s); got != c.mixed {
			t.Errorf("MixedScripts(%q) = %v, want %v", c.s, got, c.mixed)
		}
	}
}

// TestDeceptive: what can pass for another identifier is found, and a name
// written in its own script, or with its own accents, is not.
func TestDeceptive(t *testing.T) {
	t.Parallel()
	for s, want := range map[string]bool{
		// Looks like ASCII, is not.
		"\u0430\u0440\u0440\u04cf\u0435@\u0435\u0445\u0430\u0441.\u0441\u043e": true, // Cyrillic аррӏе
		"\ua4ee\ua4e1\ua4f2\ua4da\ua4f0@example.com":                           true, // Lisu ALICE
		"al\u2170ce@example.com":                                               true, // a Roman numeral one
		"\u217cisa@example.com":                                                true,
		"\u0251lice@example.com":                                               true, // Latin alpha
		"al\u0131ce@example.com":                                               true, // dotless i
		"a\u01c0ice@example.com":                                               true, // a click letter
		"\u237alice@example.com":                                               true, // APL alpha
		"alice@example\u2024com":                                               true, // one-dot leader
		"mary\u2010jane@example.com":                                           true, // hyphen
		"r\U0001d428bin@example.com":                                           true, // mathematical bold
		// Compatibility and decomposed forms.
		"\uff52obin@example.com":  true, // fullwidth
		"alice\ufe6bexample.com":  true, // small commercial at
		"robin\uff11@example.com": true,
		"jose\u0301@example.com":  true, // e and a combining accent
		// Marks no composed letter has, on ASCII letters.
		"ali\u0307ce@example.com": true, // i and a dot above draw as i
		"j\u0307ohn@example.com":  true,
		"ali\u0358ce@example.com": true,
		"alice@example\u3002com":  true, // an ideographic full stop
		"alice@example\u00b7com":  true, // a middle dot
		// Phonetic notation.
		"robin@example.c\u1d0f\u1d0d": true, // small capitals o and m
		"\u026aris@example.com":       true, // small capital i
		"alice@\ua731ite.example":     true,
		"\u1d1aobin@example.com":      true, // turned r
		"r\uab4fbin@example.com":      true,
		// Mixed in one word.
		"\u0430lice@example.com": true,
		"a\u4e28ice@example.com": true,
		"r\u3147bin@example.com": true,
		// Names in their own scripts, accents and all.
		"robin@example.com":                  false,
		"jos\u00e9@example.com":              false,
		"\u0131\u015f\u0131k@example.com.tr": false, // Turkish
		"\u0438\u0432\u0430\u043d@\u043f\u0440\u0438\u043c\u0435\u0440.\u0440\u0444": false,
		"\u0438\u0432\u0430\u043d@example.com":                                       false,
		"\u0395\u03bb\u03ad\u03bd\u03b7@example.gr":                                  false,
		"\u30b9\u30fc\u30b6\u30f3@example.jp":                                        false, // a long-vowel mark
		"\u5c71\u7530\u3072\u308d\u3057@example.jp":                                  false,
		"\u738b\u5c0f\u660e@example.cn":                                              false,
		"\u0259li@example.az":                                                        false, // Azerbaijani schwa
		"\u0253\u0101ba@example.com":                                                 false, // Hausa
		"k\u0254fi@example.com":                                                      false, // Akan
		"\u0257an\u0257ali@example.com":                                              false,
	} {
		if got := Deceptive(s); got != want {
			t.Errorf("Deceptive(%q) = %v, want %v", s, got, want)
		}
	}
}

func TestASCII(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"robin@example.com":      "robin@example.com",
		"\u0430lice@example.com": `\u0430lice@example.com`,
		"r\U0001d428bin@x":       `r\U0001d428bin@x`,
		" robin\x1b@x\u202e ":    `\x20robin\x1b@x\u202e\x20`,
		"a\xffb":                 `a\xffb`,
		`back\slash`:             `back\slash`,
	} {
		if got := ASCII(in); got != want {
			t.Errorf("ASCII(%q) = %q, want %q", in, got, want)
		}
	}
}

func FuzzScripts(f *testing.F) {
	for _, s := range []string{"robin@example.com", "\u0430lice@example.com", "\u5c71\u7530\u3072@x", "\xff", " a "} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		scripts := Scripts(s)
		if MixedScripts(s) && len(scripts) < 2 {
			t.Fatalf("%q is mixed with scripts %v", s, scripts)
		}
		if MixedScripts(s) && !Deceptive(s) {
			t.Fatalf("%q is mixed but not deceptive", s)
		}
		out := ASCII(s)
		for i := 0; i < len(out); i++ {
			if out[i] < 0x20 || out[i] >= 0x7f {
				t.Fatalf("ASCII(%q) = %q holds byte %#x", s, out, out[i])
			}
		}
		if strings.HasPrefix(out, " ") || strings.HasSuffix(out, " ") {
			t.Fatalf("ASCII(%q) = %q begins or ends with a space", s, out)
		}
	})
}
