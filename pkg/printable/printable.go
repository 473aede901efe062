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

	"github.com/mtibben/confusables"
	"golang.org/x/text/unicode/norm"
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

// cjk are the sets of scripts one word of Japanese, Chinese or Korean
// writes together.
var cjk = [][]string{
	{"Han", "Hiragana", "Katakana"},
	{"Bopomofo", "Han"},
	{"Han", "Hangul"},
}

// MixedScripts reports whether one word of s (a part between '@' and '.':
// an address's local part, each label of its domain) holds letters of more
// than one script where no language writes them together: Unicode's
// "highly restrictive" level (UTS #39, section 5.2), one word at a time, so
// that a Cyrillic name at a Latin domain is not mixed, and Latin beside
// the scripts of Japanese, Chinese or Korean in one word is. An identifier
// that mixes them (a Cyrillic "а" among Latin letters) can pass for one
// that does not.
func MixedScripts(s string) bool {
	for _, word := range strings.FieldsFunc(s, func(r rune) bool { return r == '@' || r == '.' }) {
		scripts := Scripts(word)
		if len(scripts) < 2 {
			continue
		}
		if !slices.ContainsFunc(cjk, func(set []string) bool {
			return !slices.ContainsFunc(scripts, func(name string) bool { return !slices.Contains(set, name) })
		}) {
			return true
		}
	}
	return false
}

// Deceptive reports an identifier that can pass for another one: one
// that is not ASCII but whose every character looks like ASCII (Unicode's
// confusable skeleton, UTS #39: "аррӏе" in Cyrillic letters, "alⅰce" with
// a Roman numeral, "r𝐨bin" in mathematical bold); one that holds a
// compatibility form (fullwidth "ｒ", a one-dot leader for '.', a small
// '@') or is not in composed form (an "e" and a combining accent where
// "é" is one character), which read as the plain form; one whose words
// mix scripts (MixedScripts); one with a mark on an ASCII letter that no
// composed letter has ("i" with a dot above draws as "i"), or punctuation
// or a symbol outside ASCII (an ideographic full stop for '.'); or one
// with a letter of phonetic notation (Phonetic, small capital: "cᴏm"),
// which no language writes words in and which reads as the letter it is
// drawn from.
func Deceptive(s string) bool {
	if isASCII(s) {
		return false
	}
	if norm.NFKC.String(s) != s || isASCII(confusables.Skeleton(s)) || MixedScripts(s) {
		return true
	}
	prev := rune(0)
	for _, r := range s {
		if r >= utf8.RuneSelf && (unicode.IsPunct(r) || unicode.IsSymbol(r) || unicode.Is(Phonetic, r)) ||
			unicode.Is(unicode.Mn, r) && prev < utf8.RuneSelf && unicode.IsLetter(prev) {
			return true
		}
		prev = r
	}
	return false
}

// Phonetic are the letters of phonetic notation that no language writes
// words in and that read as another letter: the small capitals (ᴏ, ɪ, ʀ,
// ꜱ), the blocks of phonetic extensions (turned, barred and hooked
// letters, ᴚ, ᵻ), and Latin Extended-E, -F and -G. The letters of
// Unicode's IPA Extensions that languages do write (Azerbaijani ə,
// Hausa ɓ and ɗ, the ɛ and ɔ of West Africa) are not among them.
var Phonetic = &unicode.RangeTable{
	R16: []unicode.Range16{
		{Lo: 0x0262, Hi: 0x0262, Stride: 1}, // ɢ
		{Lo: 0x026a, Hi: 0x026a, Stride: 1}, // ɪ
		{Lo: 0x0274, Hi: 0x0274, Stride: 1}, // ɴ
		{Lo: 0x0276, Hi: 0x0276, Stride: 1}, // ɶ
		{Lo: 0x0280, Hi: 0x0281, Stride: 1}, // ʀ ʁ
		{Lo: 0x028f, Hi: 0x028f, Stride: 1}, // ʏ
		{Lo: 0x0299, Hi: 0x0299, Stride: 1}, // ʙ
		{Lo: 0x029b, Hi: 0x029c, Stride: 1}, // ʛ ʜ
		{Lo: 0x029f, Hi: 0x029f, Stride: 1}, // ʟ
		{Lo: 0x1d00, Hi: 0x1dbf, Stride: 1}, // Phonetic Extensions and its Supplement
		{Lo: 0xa730, Hi: 0xa731, Stride: 1}, // ꜰ ꜱ
		{Lo: 0xa7ae, Hi: 0xa7af, Stride: 1}, // ɪ ꞯ
		{Lo: 0xab30, Hi: 0xab6f, Stride: 1}, // Latin Extended-E
	},
	R32: []unicode.Range32{
		{Lo: 0x10780, Hi: 0x107bf, Stride: 1}, // Latin Extended-F
		{Lo: 0x1df00, Hi: 0x1dfff, Stride: 1}, // Latin Extended-G
	},
}

// LooksASCII reports a string that is not ASCII but whose every character
// looks like ASCII: its confusable skeleton is ASCII.
func LooksASCII(s string) bool { return !isASCII(s) && isASCII(confusables.Skeleton(s)) }

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
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
