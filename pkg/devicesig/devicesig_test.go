package devicesig

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"testing"
)

func TestSignVerify(t *testing.T) {
	for _, curve := range []elliptic.Curve{elliptic.P256(), elliptic.P384()} {
		k, err := ecdsa.GenerateKey(curve, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		sig, err := Sign(k, "purpose a\n", []byte("message"))
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range []struct {
			name, context, msg string
			want               bool
		}{
			{"as signed", "purpose a\n", "message", true},
			{"another purpose", "purpose b\n", "message", false},
			// Context and message are hashed as one string: what keeps
			// purposes apart is that no context is a prefix of another
			// (TestContextsPrefixFree).
			{"context moved into the message", "", "purpose a\nmessage", true},
			{"another message", "purpose a\n", "messagf", false},
		} {
			ok, err := Verify(&k.PublicKey, c.context, []byte(c.msg), sig)
			if err != nil || ok != c.want {
				t.Errorf("%s %s: %v, %v; want %v", curve.Params().Name, c.name, ok, err, c.want)
			}
		}
	}
}

func TestKeyTypes(t *testing.T) {
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 1024)
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	p224, _ := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	for name, k := range map[string]crypto.Signer{"rsa": rsaKey, "ed25519": edKey, "p-224": p224} {
		if _, err := Sign(k, "c", []byte("m")); !errors.Is(err, ErrKeyType) {
			t.Errorf("Sign with %s: %v, want ErrKeyType", name, err)
		}
		if _, err := Verify(k.Public(), "c", []byte("m"), []byte("sig")); !errors.Is(err, ErrKeyType) {
			t.Errorf("Verify with %s: %v, want ErrKeyType", name, err)
		}
	}
	if _, err := Verify(nil, "c", []byte("m"), nil); !errors.Is(err, ErrKeyType) {
		t.Errorf("Verify with no key: %v", err)
	}
	if _, err := Verify((*ecdsa.PublicKey)(nil), "c", []byte("m"), nil); !errors.Is(err, ErrKeyType) {
		t.Errorf("Verify with a typed nil key: %v", err)
	}
}
