package signin

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/clearance/clearance/verifier/storage"
)

func TestStorableText(t *testing.T) {
	t.Parallel()
	for _, in := range []string{
		"Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7)",
		"nul\x00inside",
		"bad \xff\xfe utf-8",
		strings.Repeat("é", storage.MaxTextLen), // cut inside a rune
		strings.Repeat("x", 1<<20),
	} {
		got := storableText(in)
		if len(got) > storage.MaxTextLen || !utf8.ValidString(got) || strings.ContainsRune(got, 0) {
			t.Errorf("storableText(%.20q) = %.20q (%d bytes): not storable", in, got, len(got))
		}
	}
	if got := storableText("plain"); got != "plain" {
		t.Errorf("storableText changed a plain value: %q", got)
	}
}

func FuzzStorableText(f *testing.F) {
	f.Add("Mozilla/5.0")
	f.Add("\x00\xff")
	f.Fuzz(func(t *testing.T, s string) {
		got := storableText(s)
		if len(got) > storage.MaxTextLen || !utf8.ValidString(got) || strings.ContainsRune(got, 0) {
			t.Fatalf("not storable: %q", got)
		}
	})
}
