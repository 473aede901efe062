package idp

import (
	"strings"
	"testing"
	"unicode/utf8"
)

// escapeByRune is escape as it was first written, a rune at a time: the
// reference the faster one is checked against.
func escapeByRune(s string, inAttr bool) (string, bool) {
	var b []byte
	for i, r := range s {
		if r == utf8.RuneError {
			if _, size := utf8.DecodeRuneInString(s[i:]); size != 3 {
				return "", false
			}
		}
		// XML 1.0's Char production, written out again here so that this
		// reference does not lean on the code it checks.
		if !(r == 0x9 || r == 0xA || r == 0xD || (r >= 0x20 && r <= 0xD7FF) ||
			(r >= 0xE000 && r <= 0xFFFD) || (r >= 0x10000 && r <= 0x10FFFF)) {
			return "", false
		}
		switch {
		case r == '&':
			b = append(b, "&amp;"...)
		case r == '<':
			b = append(b, "&lt;"...)
		case r == '>' && !inAttr:
			b = append(b, "&gt;"...)
		case r == '"' && inAttr:
			b = append(b, "&quot;"...)
		case r == '\t' && inAttr:
			b = append(b, "&#x9;"...)
		case r == '\n' && inAttr:
			b = append(b, "&#xA;"...)
		case r == '\r':
			b = append(b, "&#xD;"...)
		default:
			b = utf8.AppendRune(b, r)
		}
	}
	return string(b), true
}

func checkEscape(t *testing.T, s string) {
	t.Helper()
	for _, inAttr := range []bool{false, true} {
		w := c14n{b: []byte("<")}
		w.escape(s, inAttr)
		want, ok := escapeByRune(s, inAttr)
		if ok != (w.err == nil) {
			t.Fatalf("escape(%q, attr %v): err %v, the reference says writable %v", s, inAttr, w.err, ok)
		}
		if ok && string(w.b) != "<"+want {
			t.Fatalf("escape(%q, attr %v) = %q, want %q", s, inAttr, w.b[1:], want)
		}
	}
}

func TestEscapeMatchesByRune(t *testing.T) {
	for _, s := range escapeSeeds() {
		checkEscape(t, s)
	}
	// Every byte alone, and between plain text.
	for c := 0; c < 256; c++ {
		checkEscape(t, string([]byte{byte(c)}))
		checkEscape(t, "ab"+string([]byte{byte(c)})+"cd")
	}
}

func escapeSeeds() []string {
	return []string{
		"", "plain", `a&b<c>"d'e]]>`, "\t\n\r", "x\r\ny", " lead ", "zoë.Ωμέγα+😀@例え.jp",
		"\uFFFD", "\xef\xbf\xbd", "\xef\xbf", "a\xc3", "\xc3\x28", "\xed\xa0\x80", "\xf4\x90\x80\x80",
		"\xc0\xaf", "\uFFFE", "\uFFFF", "\U0010FFFF", "\U0001FFFE", "\uE000\uD7FF", "\x7f", "\x00", "\x1f",
		strings.Repeat("QUJD", 300), strings.Repeat("&", 100),
	}
}

// FuzzEscape: the canonical text escape writes exactly what the rune-at-a-time
// reference writes, and refuses exactly what it refuses.
func FuzzEscape(f *testing.F) {
	for _, s := range escapeSeeds() {
		f.Add(s)
	}
	f.Fuzz(checkEscape)
}

// BenchmarkEscape writes what a response escapes most: a certificate's
// base64, then a value with text to escape.
func BenchmarkEscape(b *testing.B) {
	cert, value := strings.Repeat("MIIDdzCCAl+gAwIBAgIUc2VydmVy", 40), "Engineering & Ops <all>, \"staff\"\r\n"
	var w c14n
	b.ReportAllocs()
	for b.Loop() {
		w.b = w.b[:0]
		w.escape(cert, false)
		w.escape(value, true)
	}
}
