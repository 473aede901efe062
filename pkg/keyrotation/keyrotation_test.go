package keyrotation

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"testing"
)

func key(t *testing.T, c elliptic.Curve) (*ecdsa.PrivateKey, []byte) {
	t.Helper()
	k, err := ecdsa.GenerateKey(c, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(k.Public())
	if err != nil {
		t.Fatal(err)
	}
	return k, der
}

func TestSignVerify(t *testing.T) {
	for _, c := range []elliptic.Curve{elliptic.P256(), elliptic.P384()} {
		t.Run(c.Params().Name, func(t *testing.T) {
			old, oldDER := key(t, c)
			_, otherDER := key(t, c)
			csr := []byte("the new key's CSR, exactly as sent\x00\xff")
			proof, err := Sign(old, csr)
			if err != nil {
				t.Fatal(err)
			}
			if err := Verify(oldDER, csr, proof); err != nil {
				t.Fatalf("Verify: %v", err)
			}
			// Another CSR, another key, a flipped bit, no proof, a huge one.
			flipped := append([]byte(nil), proof...)
			flipped[len(flipped)-1] ^= 1
			for name, tc := range map[string]struct{ key, csr, proof []byte }{
				"other csr":   {oldDER, append(csr, 0), proof},
				"other key":   {otherDER, csr, proof},
				"flipped bit": {oldDER, csr, flipped},
				"empty":       {oldDER, csr, nil},
				"oversized":   {oldDER, csr, make([]byte, MaxProofSize+1)},
			} {
				if err := Verify(tc.key, tc.csr, tc.proof); !errors.Is(err, ErrBadProof) {
					t.Errorf("%s: err %v, want ErrBadProof", name, err)
				}
			}
		})
	}
}

// A signature by the same key over the CSR without the context (as a
// posture report or another protocol might make) is no rotation proof.
func TestContextSeparates(t *testing.T) {
	k, der := key(t, elliptic.P256())
	csr := []byte("csr")
	sum := sha256.Sum256(csr)
	plain, err := ecdsa.SignASN1(rand.Reader, k, sum[:])
	if err != nil {
		t.Fatal(err)
	}
	if err := Verify(der, csr, plain); !errors.Is(err, ErrBadProof) {
		t.Fatalf("signature without context: err %v, want ErrBadProof", err)
	}
}

func TestBadKeys(t *testing.T) {
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	edDER, _ := x509.MarshalPKIXPublicKey(pub)
	for name, k := range map[string][]byte{"garbage": []byte("not a key"), "ed25519": edDER} {
		if err := Verify(k, []byte("csr"), []byte("sig")); !errors.Is(err, ErrKeyType) {
			t.Errorf("%s: err %v, want ErrKeyType", name, err)
		}
	}
}

func FuzzVerify(f *testing.F) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(k.Public())
	if err != nil {
		f.Fatal(err)
	}
	proof, _ := Sign(k, []byte("csr"))
	f.Add([]byte("csr"), proof)
	f.Add([]byte{}, []byte{0x30, 0x00})
	f.Fuzz(func(t *testing.T, csr, proof []byte) {
		_ = Verify(der, csr, proof) // never panics
	})
}
