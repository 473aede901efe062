// Package testpki makes throwaway RSA signing identities for packaging
// tests: a root CA and a leaf shaped like a Developer ID Installer
// certificate, created in memory for each test run.
package testpki

import (
	"crypto/rsa"
	"crypto/x509"
	"testing"

	"github.com/clearance/clearance/internal/testkit/testpki"
)

// Identity is a signing key and its chain, leaf first.
type Identity struct {
	Key   *rsa.PrivateKey
	Chain []*x509.Certificate
}

// New returns a leaf identity issued by a new root CA.
func New(t testing.TB) *Identity {
	t.Helper()
	root := testpki.NewCA(t, testpki.CN("Clearance Test Root CA"), testpki.RSA())
	key := testpki.RSAKey(t)
	leaf := root.Issue(t, testpki.CN("Developer ID Installer: Clearance Test (TEST000000)"), testpki.Key(key),
		testpki.Template(func(c *x509.Certificate) { c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning} }))
	return &Identity{Key: key, Chain: []*x509.Certificate{leaf.Cert, root.Cert}}
}

// CertsPEM returns the chain as concatenated PEM certificates.
func (id *Identity) CertsPEM() []byte { return testpki.PEM(id.Chain...) }

// KeyPEM returns the private key as PKCS #8 PEM.
func (id *Identity) KeyPEM(t testing.TB) []byte {
	t.Helper()
	return (&testpki.Identity{Cert: id.Chain[0], Key: id.Key}).KeyPEM(t)
}
