package ca

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"
)

// t0 is the fixed "now" of most tests: far enough from the real clock that a
// test passing by accident of the wall clock is unlikely.
var t0 = time.Date(2031, time.March, 14, 9, 26, 53, 0, time.UTC)

var testHosts = []string{"verifier.example.com", "localhost", "127.0.0.1", "::1"}

func clock(t time.Time) func() time.Time { return func() time.Time { return t } }

// newAuthority creates a PKI in a fresh temp dir at t0.
func newAuthority(t testing.TB) (*Authority, string) {
	t.Helper()
	dir := t.TempDir()
	a, err := LoadOrCreate(dir, Options{Hosts: testHosts, Now: clock(t0)})
	if err != nil {
		t.Fatalf("LoadOrCreate: %v", err)
	}
	return a, dir
}

var allFiles = []string{RootCertFile, RootKeyFile, DeviceCACertFile, DeviceCAKeyFile, TLSCertFile, TLSKeyFile}

// snapshot reads every file in dir, so a test can tell what a call changed.
func snapshot(t testing.TB, dir string) map[string][]byte {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	m := make(map[string][]byte)
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		m[e.Name()] = b
	}
	return m
}

func changedFiles(before, after map[string][]byte) []string {
	var changed []string
	for name, b := range after {
		if a, ok := before[name]; !ok || string(a) != string(b) {
			changed = append(changed, name)
		}
	}
	for name := range before {
		if _, ok := after[name]; !ok {
			changed = append(changed, name)
		}
	}
	slices.Sort(changed)
	return changed
}

// Test keys are generated once per run: RSA generation is slow, and nothing
// here depends on a key being fresh.
var testKeys = sync.OnceValue(func() map[string]crypto.Signer {
	m := map[string]crypto.Signer{}
	for name, c := range map[string]elliptic.Curve{
		"P-224": elliptic.P224(), "P-256": elliptic.P256(), "P-384": elliptic.P384(), "P-521": elliptic.P521(),
	} {
		k, err := ecdsa.GenerateKey(c, rand.Reader)
		if err != nil {
			panic(err)
		}
		m[name] = k
	}
	r, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	m["RSA"] = r
	_, e, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		panic(err)
	}
	m["Ed25519"] = e
	return m
})

func testKey(name string) crypto.Signer { return testKeys()[name] }

// csrDER builds a CSR for key. A nil template gets a plain subject.
func csrDER(t testing.TB, key crypto.Signer, template *x509.CertificateRequest) []byte {
	t.Helper()
	if template == nil {
		template = &x509.CertificateRequest{Subject: pkix.Name{CommonName: "device"}}
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, template, key)
	if err != nil {
		t.Fatalf("CreateCertificateRequest: %v", err)
	}
	return der
}

func mustParseCSR(t testing.TB, der []byte) *x509.CertificateRequest {
	t.Helper()
	csr, err := ParseCSR(der)
	if err != nil {
		t.Fatalf("ParseCSR: %v", err)
	}
	return csr
}
