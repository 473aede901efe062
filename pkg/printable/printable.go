// Package printable owns the rule for which characters of outside text may
// reach a person's screen as they are: on the verifier, what an agent
// reports about its Mac and what a browser or Okta sends; on the agent, what
// the verifier pushes (policy names and resolutions, the device id) and what
// osquery answers. Terminal controls (C0, DEL, C1: a lone U+009B is an
// escape sequence to many terminals), bidirectional controls that reorder
// what is shown, and invisible format characters are escaped, so a person
// reads what was sent rather than what it was crafted to look like.
package printable

import (
	"fmt"
	"slices"
	"strings"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"
)

// Bidi reports the bidirectional embeddings, overrides, isolates and marks
// that reorder the text around them.
func Bidi(r rune) bool {
	return r >= '\u202A' && r <= '\u202E' || r >= '\u2066' && r <= '\u2069' || r == '\u200E' || r == '\u200F' || r == '\u061C'
}

// Hidden reports a rune that must not reach a screen as it is: a control
// character (C0, DEL, C1), a format character (bidirectional controls,
// zero-width spaces and joiners, the byte-order mark, tag characters), or
// Unicode's line and paragraph separators.
func Hidden(r rune) bool {
	return unicode.IsControl(r) || unicode.Is(unicode.Cf, r) || Bidi(r) || r == '\u2028' || r == '\u2029'
}

// Invisible reports a rune drawn as nothing, or as blank space that is
// not a space: what Hidden reports, the other default-ignorable code
// points (variation selectors, the combining grapheme joiner, the Hangul
// and Khmer fillers, the halfwidth Hangul filler) and the braille pattern
// blank. An identifier holding one can look like another that does not;
// in other text (an emoji's variation selector) they are harmless.
func Invisible(r rune) bool {
	return Hidden(r) || unicode.Is(unicode.Variation_Selector, r) || unicode.Is(unicode.Other_Default_Ignorable_Code_Point, r) ||
		r == '\u2800'
}

// Line returns s with every hidden rune written as a Go-style escape (\n,
// \x1b, \u009b, \u202e) and every byte that is not UTF-8 as \xNN: one line,
// nothing a terminal acts on, and what was sent still readable.
func Line(s string) string { return escape(s, Hidden) }

// Identifier is Line for an identifier (a username): every Invisible rune,
// every space but ASCII's, and an ASCII space that begins or ends it are
// written as escapes too, so that it cannot pass for another by them.
func Identifier(s string) string {
	s = escape(s, func(r rune) bool { return Invisible(r) || unicode.IsSpace(r) && r != ' ' })
	if t := strings.TrimLeft(s, " "); len(t) < len(s) {
		s = strings.Repeat(`\x20`, len(s)-len(t)) + t
	}
	if t := strings.TrimRight(s, " "); len(t) < len(s) {
		s = t + strings.Repeat(`\x20`, len(s)-len(t))
	}
	return s
}

// Scripts returns the writing systems of s's characters (Unicode's Script
// property: "Cyrillic", "Han", "Latin"), sorted, leaving out Common and
// Inherited (digits, punctuation, combining marks), which every script
// uses.
func Scripts(s string) []string {
	var seen []string
	for _, r := range s {
		name := script(r)
		if name == "" || slices.Contains(seen, name) {
			continue
		}
		seen = append(seen, name)
	}
	slices.Sort(seen)
	return seen
}

func script(r rune) string {
	switch {
	case r < 0x80:
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' {
			return "Latin"
		}
		return ""
	case r == utf8.RuneError, unicode.Is(unicode.Common, r), unicode.Is(unicode.Inherited, r):
		return ""
	}
	for name, table := range unicode.Scripts {
		if name != "Common" && name != "Inherited" && unicode.Is(table, r) {
			return name
		}
	}
	return ""
}

// asianWithLatin are the sets of scripts a single language writes beside
// Latin: Japanese, Chinese and Korean.
var asianWithLatin = [][]string{
	{"Han", "Hiragana", "Katakana", "Latin"},
	{"Bopomofo", "Han", "Latin"},
	{"Han", "Hangul", "Latin"},
}

// MixedScripts reports whether s's letters come from more than one script
// where no one language writes them together: not Unicode's "highly
// restrictive" level (UTS #39, section 5.2), which allows one script, or
// Latin beside the scripts of Japanese, Chinese or Korean. An identifier
// that mixes them (a Cyrillic "а" among Latin letters) can pass for one
// that does not.
func MixedScripts(s string) bool {
	scripts := Scripts(s)
	if len(scripts) < 2 {
		return false
	}
	for _, set := range asianWithLatin {
		if !slices.ContainsFunc(scripts, func(name string) bool { return !slices.Contains(set, name) }) {
			return false
		}
	}
	return true
}

// Deceptive reports an identifier that can pass for another one: its
// letters mix scripts (MixedScripts), are all of another script's letters
// that look like Latin ones (LooksLatin), or it holds a styled form of a
// letter or digit (a mathematical bold "𝐨", a fullwidth "ｏ") that reads as
// the plain one.
func Deceptive(s string) bool {
	for _, r := range s {
		if r >= 0x80 && (unicode.IsLetter(r) || unicode.IsDigit(r)) && unicode.Is(unicode.Common, r) ||
			r >= '\uFF00' && r <= '\uFFEF' {
			return true
		}
	}
	return MixedScripts(s) || LooksLatin(s)
}

// latinLookalikes are the Cyrillic, Greek and Armenian letters drawn like
// a Latin letter in common fonts (after Unicode's confusables, UTS #39).
var latinLookalikes = map[rune]bool{}

func init() {
	for _, r := range "" +
		// Cyrillic: а е о р с у х ѕ і ј ԁ һ ӏ ԛ ԝ ү ѵ, and capitals.
		"\u0430\u0435\u043e\u0440\u0441\u0443\u0445\u0455\u0456\u0458\u0501\u04bb\u04cf\u051b\u051d\u04af\u0475" +
		"\u0410\u0412\u0415\u041a\u041c\u041d\u041e\u0420\u0421\u0422\u0425\u0406\u0408\u0405\u04c0\u051a\u051c\u04ae" +
		// Greek: ο α ν ι κ ρ υ χ γ, and capitals.
		"\u03bf\u03b1\u03bd\u03b9\u03ba\u03c1\u03c5\u03c7\u03b3" +
		"\u0391\u0392\u0395\u0396\u0397\u0399\u039a\u039c\u039d\u039f\u03a1\u03a4\u03a5\u03a7" +
		// Armenian: օ ս հ ո ց գ զ.
		"\u0585\u057d\u0570\u0578\u0581\u0563\u0566" {
		latinLookalikes[r] = true
	}
}

// LooksLatin reports a string whose letters are all of one script other
// than Latin and each drawn like a Latin letter (Unicode's "whole-script
// confusable"): "\u0430\u0440\u0440\u04cf\u0435" reads as "apple", though
// no letter of it is Latin. A name in that script (a Cyrillic "иван") has
// letters no Latin one looks like.
func LooksLatin(s string) bool {
	scripts := Scripts(s)
	if len(scripts) != 1 || scripts[0] == "Latin" {
		return false
	}
	for _, r := range s {
		if unicode.IsLetter(r) && script(r) != "" && !latinLookalikes[r] {
			return false
		}
	}
	return true
}

// ASCII is Identifier with every rune outside ASCII written as an escape
// too (\u0430 for a Cyrillic "а"): how an identifier is spelled, so that
// letters from two scripts that look alike read differently.
func ASCII(s string) string {
	return Identifier(escape(s, func(r rune) bool { return r >= 0x80 }))
}

func escape(s string, hidden func(rune) bool) string {
	i := strings.IndexFunc(s, func(r rune) bool { return r == utf8.RuneError || hidden(r) })
	if i < 0 {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 16)
	b.WriteString(s[:i])
	for s = s[i:]; s != ""; {
		r, n := utf8.DecodeRuneInString(s)
		switch {
		case r == utf8.RuneError && n <= 1:
			fmt.Fprintf(&b, `\x%02x`, s[0])
		case r == '\t':
			b.WriteString(`\t`)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r < 0x80 && hidden(r):
			fmt.Fprintf(&b, `\x%02x`, r)
		case r <= 0xFFFF && hidden(r):
			fmt.Fprintf(&b, `\u%04x`, r)
		case hidden(r):
			fmt.Fprintf(&b, `\U%08x`, r)
		default:
			b.WriteString(s[:n])
		}
		s = s[n:]
	}
	return b.String()
}

// JSON returns the JSON text b with every hidden rune outside ASCII written
// as a \uXXXX escape (a surrogate pair above U+FFFF), and DEL as \u007f.
// Such runes can only occur inside JSON strings, so the result is the same
// JSON value; encoders already escape C0 controls. b must be valid UTF-8, as
// every JSON encoder's output is.
func JSON(b []byte) []byte {
	i := 0
	for i < len(b) && b[i] < 0x7f {
		i++
	}
	if i == len(b) {
		return b
	}
	out := make([]byte, 0, len(b)+32)
	out = append(out, b[:i]...)
	for b = b[i:]; len(b) > 0; {
		r, n := utf8.DecodeRune(b)
		switch {
		case r < 0x7f || !Hidden(r): // ASCII controls here are JSON's own whitespace
			out = append(out, b[:n]...)
		case r > 0xFFFF:
			hi, lo := utf16.EncodeRune(r)
			out = fmt.Appendf(out, `\u%04x\u%04x`, hi, lo)
		default:
			out = fmt.Appendf(out, `\u%04x`, r)
		}
		b = b[n:]
	}
	return out
}
