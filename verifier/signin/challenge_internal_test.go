package signin

import (
	"bytes"
	"encoding/base64"
	"strings"
	"testing"

	"github.com/clearance/clearance/pkg/presence"
)

// TestChallengesCarryTheirMAC: a challenge this verifier issues is the
// agent's usual 32 opaque bytes and passes issued; one with any byte
// changed, made under another key, random, or malformed does not, so it
// is refused before the store is asked.
func TestChallengesCarryTheirMAC(t *testing.T) {
	p := &Presence{HintKey: bytes.Repeat([]byte{7}, 32)}
	other := &Presence{HintKey: bytes.Repeat([]byte{8}, 32)}
	c := p.newChallenge()
	if err := presence.CheckChallenge(c); err != nil {
		t.Fatalf("issued challenge is not one agents take: %v", err)
	}
	if !p.issued(c) {
		t.Fatal("an issued challenge is not recognised")
	}
	if c2 := p.newChallenge(); c2 == c {
		t.Fatal("two challenges alike")
	}
	if other.issued(c) {
		t.Error("a challenge is recognised under another key")
	}
	raw, _ := base64.RawURLEncoding.DecodeString(c)
	for i := range raw {
		b := bytes.Clone(raw)
		b[i] ^= 0x01
		if p.issued(base64.RawURLEncoding.EncodeToString(b)) {
			t.Errorf("a challenge with byte %d changed is recognised", i)
		}
	}
	// The last character carries two spare bits: the three other
	// spellings of the same bytes are not this challenge.
	last := strings.IndexByte(alphabet, c[len(c)-1])
	var spellings []string
	for i := 1; i < 4; i++ {
		spellings = append(spellings, c[:len(c)-1]+string(alphabet[last^i]))
	}
	for _, bad := range append(spellings, presence.NewChallenge(), "", "!!", c[:len(c)-1], c+"A", c[:20]+"\n"+c[20:], c+"\r\n", base64.StdEncoding.EncodeToString(raw)) {
		if p.issued(bad) {
			t.Errorf("issued(%q) = true", bad)
		}
	}
}

// FuzzIssued: any text is either refused or a challenge this key made.
func FuzzIssued(f *testing.F) {
	p := &Presence{HintKey: bytes.Repeat([]byte{7}, 32)}
	f.Add(p.newChallenge())
	f.Add(presence.NewChallenge())
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		if !p.issued(s) {
			return
		}
		raw, err := base64.RawURLEncoding.DecodeString(s)
		if err != nil || len(raw) != presence.ChallengeSize || base64.RawURLEncoding.EncodeToString(raw) != s {
			t.Fatalf("issued(%q): %d bytes, %v, not in its one spelling", s, len(raw), err)
		}
	})
}

const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
