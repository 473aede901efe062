package rollout_test

import (
	"testing"
	"time"

	"github.com/clearance/clearance/verifier/rollout"
)

// A username in any one script is granted; one that can pass for another
// or holds what is drawn as nothing is refused, whatever surrounds it.
func TestGrantUsernames(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	grant := func(user string) error {
		return rollout.Grant{Username: user, ExpiresAt: now.Add(time.Hour), Reason: "r"}.Check(now)
	}
	for _, ok := range []string{"alice@example.com", " alice@example.com\t", "józef@example.com", "张伟@example.com", "алиса@пример.рф", "Ada Lovelace",
		"müller@beispiel.de", "ñandú@example.es", "zoë@example.com", "अनिल@उदाहरण.भारत",
		// Marks after vowel signs and other marks, as these scripts write
		// them; the apostrophes written as letters.
		"सिंह", "हिंदी", "ਸਿੰਘ", "สมศักดิ์", "กิ่ง", "มิ่งขวัญ", "Вʼячеслав", "Марʼяна"} {
		if err := grant(ok); err != nil {
			t.Errorf("%q refused: %v", ok, err)
		}
	}
	for _, bad := range []string{"\u0430lice@example.com", "alice@example.com\u034f", "alice\u200b@example.com", "alice\u00a0@example.com",
		"alice\u3164@example.com", "alice\u2800@example.com", "alice\u202e@example.com", "alice\x1b@example.com", "  ",
		// What a second look found: a mark on what precedes it, modifier
		// letters drawn as punctuation, one look-alike letter among ASCII.
		"\u0323alice@example.com", "alice@example.\u0323com", "bob\u02cdsmith@example.com", "\u0237ohn@example.com",
		"józef@ѕрасех.com", "józef@ex\u0251mple.com",
		// An apostrophe letter not between two letters, a mark after one.
		"\u02bcbob@example.com", "bob\u02bc@example.com", "bob\u02bc\u0301x@example.com"} {
		if err := grant(bad); err == nil || !rollout.IsGrantError(err) {
			t.Errorf("%q: %v, want a refusal", bad, err)
		}
	}
}

// Listings and the audit log show a username so that it reads as no other:
// quoted when it holds a space or a comma, marked when it is not ASCII
// (first, where a narrow table does not cut the mark off).
func TestShownUsername(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"alice@example.com":                    "alice@example.com",
		"alice@example.com, policies firewall": `"alice@example.com, policies firewall"`,
		"józef@example.com":                    "(not ASCII) józef@example.com",
		"\u0430lice@example.com":               "(not ASCII) \u0430lice@example.com",
		"alice@example.com\u034f":              `(not ASCII) alice@example.com\u034f`,
		`bob" (not ASCII`:                      `"bob\" (not ASCII"`,
		`"bob"`:                                `"\"bob\""`,
	} {
		if got := rollout.ShownUsername(in); got != want {
			t.Errorf("ShownUsername(%q) = %q, want %q", in, got, want)
		}
	}
}
