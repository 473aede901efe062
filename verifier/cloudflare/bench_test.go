package cloudflare_test

import (
	"context"
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"testing"
	"time"
)

// BenchmarkAccessTokenVerify is the whole check of one Access application
// token, keys cached: parse, RS256 signature, claims.
func BenchmarkAccessTokenVerify(b *testing.B) {
	a := newAccess(b)
	clock := time.Now()
	v := newVerifier(b, a, &clock)
	tok, err := a.ServiceToken(clock).Sign()
	if err != nil {
		b.Fatal(err)
	}
	if _, err := v.Verify(context.Background(), tok); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.Verify(context.Background(), tok); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRSA2048Verify is the raw RS256 signature check a token costs
// at least.
func BenchmarkRSA2048Verify(b *testing.B) {
	a := newAccess(b)
	k := a.Current().Priv
	h := sha256.Sum256([]byte("header.claims"))
	sig, err := rsa.SignPKCS1v15(nil, k, crypto.SHA256, h[:])
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if err := rsa.VerifyPKCS1v15(&k.PublicKey, crypto.SHA256, h[:], sig); err != nil {
			b.Fatal(err)
		}
	}
}
