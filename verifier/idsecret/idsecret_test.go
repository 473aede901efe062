package idsecret

import (
	"strings"
	"testing"
)

func TestNewIDMatches(t *testing.T) {
	t.Parallel()
	id, secret, hash, err := New("scim_")
	if err != nil {
		t.Fatal(err)
	}
	got, ok := ID("scim_", secret)
	if !ok || got != id || len(id) != 16 || !strings.HasPrefix(secret, "scim_"+id+".") {
		t.Fatalf("New = %q, %q; ID = %q, %v", id, secret, got, ok)
	}
	if !Matches(secret, hash) {
		t.Error("the secret does not match its own hash")
	}
	if Matches(secret+"x", hash) || Matches(secret[:len(secret)-1], hash) {
		t.Error("a changed secret matches")
	}
	_, other, _, _ := New("scim_")
	if other == secret {
		t.Error("two secrets are the same")
	}
}

// TestIDRefuses: what is no secret of ours names no record, and never
// reaches a lookup.
func TestIDRefuses(t *testing.T) {
	t.Parallel()
	for _, s := range []string{
		"", ".", "0123456789abcdef", "0123456789abcdef", "0123456789ABCDEF.x", "0123456789abcde.x",
		"0123456789abcdef0.x", "\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00.x",
		"\xf0\xf1\xf2\xf3\xf4\xf5\xf6\xf7\xf8\xf9\xfa\xfb\xfc\xfd\xfe\xff.x",
		"0123456789abcdef." + strings.Repeat("a", MaxLen),
	} {
		if id, ok := ID("", s); ok {
			t.Errorf("ID(%q) = %q, true", s, id)
		}
	}
	if _, ok := ID("scim_", "0123456789abcdef.x"); ok {
		t.Error("a secret without its prefix was taken")
	}
}

func FuzzID(f *testing.F) {
	f.Add("scim_0123456789abcdef.value")
	f.Add("0123456789abcdef.x")
	f.Fuzz(func(t *testing.T, s string) {
		id, ok := ID("scim_", s)
		if !ok {
			return
		}
		if len(id) != 16 || strings.Trim(id, "0123456789abcdef") != "" || !strings.HasPrefix(s, "scim_"+id+".") || len(s) > MaxLen {
			t.Fatalf("ID(%q) = %q", s, id)
		}
	})
}
