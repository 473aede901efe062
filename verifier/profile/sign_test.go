package profile_test

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clearance/clearance/internal/testkit"
	"github.com/clearance/clearance/internal/testkit/testpki"
	"github.com/clearance/clearance/verifier/profile"
)

// testSigner is a throwaway signing identity: a leaf and its issuers.
type testSigner struct {
	cert   *x509.Certificate
	key    crypto.Signer
	chain  []*x509.Certificate
	anchor *x509.Certificate // what the verifier trusts: the root, or the self-signed leaf
}

func leafTemplate(cn string) *x509.Certificate {
	return &x509.Certificate{
		SerialNumber: big.NewInt(1001),
		Subject:      pkix.Name{CommonName: cn, Organization: []string{"Example Corp"}},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
	}
}

// RSA key generation is the slow part; one key serves every test.
var rsaKey = sync.OnceValue(func() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k
})

// rsaSelfSigned is a self-signed RSA signer, as a small shop might use.
func rsaSelfSigned(t testing.TB) testSigner {
	key := rsaKey()
	c := testpki.Issue(t, leafTemplate("Example Corp profile signing (RSA)"), leafTemplate("Example Corp profile signing (RSA)"), key.Public(), key)
	return testSigner{cert: c, key: key, anchor: c}
}

// ecdsaWithChain is an ECDSA P-256 leaf issued by a P-384 root, carried in
// the chain, as an MDM vendor's signing certificate would be.
func ecdsaWithChain(t testing.TB) testSigner {
	rootKey, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	root := testpki.NewCA(t, testpki.CN("Example Corp signing root"), testpki.Serial(1), testpki.Key(rootKey),
		testpki.Valid(time.Now().Add(-time.Hour), time.Now().Add(48*time.Hour)))
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	leaf := testpki.Issue(t, leafTemplate("Example Corp profile signing (ECDSA)"), root.Cert, key.Public(), root.Key)
	return testSigner{cert: leaf, key: key, chain: []*x509.Certificate{root.Cert}, anchor: root.Cert}
}

func writePEMFile(t testing.TB, path string, certs ...*x509.Certificate) {
	t.Helper()
	var buf bytes.Buffer
	for _, c := range certs {
		pem.Encode(&buf, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// opensslVerify runs openssl cms -verify on a signed profile with anchor as
// the only trusted certificate, and returns the extracted content.
func opensslVerify(t *testing.T, signed []byte, anchor *x509.Certificate) ([]byte, error) {
	t.Helper()
	openssl := testkit.Tool(t, "openssl")
	dir := t.TempDir()
	in := filepath.Join(dir, "signed.mobileconfig")
	caFile := filepath.Join(dir, "anchor.pem")
	out := filepath.Join(dir, "content.plist")
	if err := os.WriteFile(in, signed, 0o600); err != nil {
		t.Fatal(err)
	}
	writePEMFile(t, caFile, anchor)
	cmd := exec.Command(openssl, "cms", "-verify", "-inform", "DER", "-binary",
		"-in", in, "-CAfile", caFile, "-out", out)
	if msg, err := cmd.CombinedOutput(); err != nil {
		return nil, &exec.ExitError{ProcessState: cmd.ProcessState, Stderr: msg}
	}
	return os.ReadFile(out)
}

func TestSignVerifiesWithOpenSSL(t *testing.T) {
	t.Parallel()
	unsigned, err := profile.UserScope(userOptions(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		signer func(testing.TB) testSigner
		sigAlg string // as openssl cms -cmsout -print names it
	}{
		{"rsa self-signed", rsaSelfSigned, "sha256WithRSAEncryption"},
		{"ecdsa with chain", ecdsaWithChain, "ecdsa-with-SHA256"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := tc.signer(t)
			signed, err := profile.Sign(unsigned, s.cert, s.key, s.chain)
			if err != nil {
				t.Fatal(err)
			}
			content, err := opensslVerify(t, signed, s.anchor)
			if err != nil {
				t.Fatalf("openssl cms -verify refused the signed profile: %v\n%s", err, err.(*exec.ExitError).Stderr)
			}
			if !bytes.Equal(content, unsigned) {
				t.Fatal("the signed profile's content is not the unsigned profile byte for byte")
			}

			// SHA-256, not the library's SHA-1 default, and the chain is carried.
			printed, err := exec.Command(testkit.Tool(t, "openssl"), "cms", "-cmsout", "-print", "-inform", "DER",
				"-in", writeTemp(t, signed)).CombinedOutput()
			if err != nil {
				t.Fatalf("openssl cms -cmsout -print: %v\n%s", err, printed)
			}
			for _, want := range []string{"algorithm: sha256", "algorithm: " + tc.sigAlg, s.cert.Subject.CommonName} {
				if !strings.Contains(string(printed), want) {
					t.Errorf("openssl's view of the SignedData lacks %q", want)
				}
			}
			for _, c := range s.chain {
				if !strings.Contains(string(printed), c.Subject.CommonName) {
					t.Errorf("chain certificate %q is not in the SignedData", c.Subject.CommonName)
				}
			}

			// One changed byte of the content: openssl refuses it.
			i := bytes.Index(signed, []byte("Example Corp</string>"))
			if i < 0 {
				t.Fatal("the signed profile does not carry its content attached")
			}
			tampered := bytes.Clone(signed)
			tampered[i] ^= 0x20 // "Example" → "example"
			if _, err := opensslVerify(t, tampered, s.anchor); err == nil {
				t.Error("openssl accepted a profile with a changed byte")
			}

			// Trusting another certificate: openssl refuses it too.
			other := rsaSelfSigned(t)
			if s.anchor.Equal(other.anchor) {
				other = ecdsaWithChain(t)
			}
			if _, err := opensslVerify(t, signed, other.anchor); err == nil {
				t.Error("openssl accepted the profile with an unrelated trust anchor")
			}
		})
	}
}

func writeTemp(t *testing.T, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "data")
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestSignErrors(t *testing.T) {
	t.Parallel()
	doc := []byte("<plist/>")
	rs := rsaSelfSigned(t)
	ec := ecdsaWithChain(t)
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	edCert := testpki.Issue(t, leafTemplate("ed25519"), leafTemplate("ed25519"), edKey.Public(), edKey)
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	smallCert := testpki.Issue(t, leafTemplate("small"), leafTemplate("small"), small.Public(), small)
	for _, tc := range []struct {
		name  string
		data  []byte
		cert  *x509.Certificate
		key   crypto.Signer
		chain []*x509.Certificate
		want  string
	}{
		{"no data", nil, rs.cert, rs.key, nil, "nothing to sign"},
		{"no cert", doc, nil, rs.key, nil, "signing certificate is required"},
		{"no key", doc, rs.cert, nil, nil, "signing key is required"},
		{"key of another cert", doc, rs.cert, ec.key, nil, "does not belong to the signing certificate"},
		{"ed25519", doc, edCert, edKey, nil, "not supported: use RSA or ECDSA"},
		{"small RSA", doc, smallCert, small, nil, "use at least 2048"},
		{"wrong chain", doc, ec.cert, ec.key, []*x509.Certificate{rs.cert}, "did not issue"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := profile.Sign(tc.data, tc.cert, tc.key, tc.chain)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "signing profile: ") {
				t.Errorf("error = %v, want one starting 'signing profile: ' and saying %q", err, tc.want)
			}
		})
	}
}

func TestParseSigningKey(t *testing.T) {
	t.Parallel()
	rk := rsaKey()
	ek, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pkcs8 := func(k any) []byte {
		der, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	}
	sec1, err := x509.MarshalECPrivateKey(ek)
	if err != nil {
		t.Fatal(err)
	}
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)

	for _, tc := range []struct {
		name string
		pem  []byte
		pub  crypto.PublicKey
		want string
	}{
		{"pkcs8 rsa", pkcs8(rk), rk.Public(), ""},
		{"pkcs1 rsa", pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rk)}), rk.Public(), ""},
		{"pkcs8 ecdsa", pkcs8(ek), ek.Public(), ""},
		{"sec1 ecdsa", pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: sec1}), ek.Public(), ""},
		{"ed25519", pkcs8(edKey), nil, "use RSA or ECDSA"},
		{"not PEM", []byte("not a key"), nil, "no PEM private key found"},
		{"a certificate", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: rsaSelfSigned(t).cert.Raw}), nil, `"CERTIFICATE" is not a private key`},
		{"encrypted pkcs8", pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: []byte{1}}), nil, "encrypted"},
		{"encrypted legacy", pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Headers: map[string]string{"Proc-Type": "4,ENCRYPTED", "DEK-Info": "AES-128-CBC,00"}, Bytes: []byte{1}}), nil, "encrypted"},
		{"corrupt", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{1, 2, 3}}), nil, "parsing the private key"},
		{"trailing data", append(pkcs8(ek), "junk"...), nil, "data after the private key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			k, err := profile.ParseSigningKey(tc.pem)
			if tc.want != "" {
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Errorf("error = %v, want one saying %q", err, tc.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !k.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(tc.pub) {
				t.Error("parsed key is not the key written")
			}
		})
	}
}
