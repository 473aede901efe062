// Package testpki builds throwaway certificate authorities and certificates
// for tests, in memory and fresh for each run: roots, intermediates, server
// and client leaves with their SANs, and the bad ones tests refuse
// (expired, not yet valid, from a CA nobody trusts). Keys are ECDSA P-256
// unless a test supplies its own, such as RSAKey for SAML.
package testpki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/url"
	"testing"
	"time"
)

// Identity is a certificate, its private key and the certificates that
// issued it, nearest first and ending with the root (empty when
// self-signed).
type Identity struct {
	Cert  *x509.Certificate
	Key   crypto.Signer
	Chain []*x509.Certificate
}

// CA is an Identity that issues others.
type CA struct{ Identity }

// Option shapes a certificate before it is issued.
type Option func(*spec)

type spec struct {
	tmpl *x509.Certificate
	key  crypto.Signer
	rsa  bool // make a new RSA key rather than a P-256 one
}

// CN sets the subject's common name.
func CN(name string) Option { return func(s *spec) { s.tmpl.Subject.CommonName = name } }

// DNS adds DNS names to the subject alternative names.
func DNS(names ...string) Option {
	return func(s *spec) { s.tmpl.DNSNames = append(s.tmpl.DNSNames, names...) }
}

// IPs adds IP addresses to the subject alternative names.
func IPs(ips ...net.IP) Option {
	return func(s *spec) { s.tmpl.IPAddresses = append(s.tmpl.IPAddresses, ips...) }
}

// URIs adds URIs to the subject alternative names; each must parse.
func URIs(uris ...string) Option {
	return func(s *spec) {
		for _, raw := range uris {
			u, err := url.Parse(raw)
			if err != nil {
				panic("testpki: " + err.Error())
			}
			s.tmpl.URIs = append(s.tmpl.URIs, u)
		}
	}
}

// ServerAuth marks the certificate for TLS servers.
func ServerAuth() Option { return extKeyUsage(x509.ExtKeyUsageServerAuth) }

// ClientAuth marks the certificate for TLS clients.
func ClientAuth() Option { return extKeyUsage(x509.ExtKeyUsageClientAuth) }

func extKeyUsage(u x509.ExtKeyUsage) Option {
	return func(s *spec) { s.tmpl.ExtKeyUsage = append(s.tmpl.ExtKeyUsage, u) }
}

// Serial sets the serial number (by default a random one).
func Serial(n int64) Option {
	return func(s *spec) { s.tmpl.SerialNumber = big.NewInt(n) }
}

// Valid sets the validity period (by default from an hour ago to a day
// from now).
func Valid(notBefore, notAfter time.Time) Option {
	return func(s *spec) { s.tmpl.NotBefore, s.tmpl.NotAfter = notBefore, notAfter }
}

// Expired makes a certificate whose validity ended an hour ago.
func Expired() Option {
	return Valid(time.Now().Add(-48*time.Hour), time.Now().Add(-time.Hour))
}

// NotYetValid makes a certificate whose validity starts in an hour.
func NotYetValid() Option {
	return Valid(time.Now().Add(time.Hour), time.Now().Add(48*time.Hour))
}

// Key certifies key instead of a new P-256 key.
func Key(key crypto.Signer) Option { return func(s *spec) { s.key = key } }

// RSA certifies a new 2048-bit RSA key instead of a P-256 key.
func RSA() Option { return func(s *spec) { s.rsa = true } }

// MacBrowser shapes what the verifier's SCEP endpoint issues to a Mac's
// browser: an RSA key (macOS makes one), the hardware UUID as CN and as a
// SAN URI, client authentication with key encipherment.
func MacBrowser(hardwareUUID string) Option {
	return func(s *spec) {
		for _, o := range []Option{RSA(), CN(hardwareUUID), URIs("urn:device:apple:uuid:" + hardwareUUID), ClientAuth()} {
			o(s)
		}
		s.tmpl.KeyUsage |= x509.KeyUsageKeyEncipherment
		s.tmpl.BasicConstraintsValid = true
	}
}

// Template edits the template directly, for fields no other option sets.
func Template(edit func(*x509.Certificate)) Option { return func(s *spec) { edit(s.tmpl) } }

// NewCA returns a self-signed root CA named "Clearance Test Root CA"
// unless CN says otherwise.
func NewCA(t testing.TB, opts ...Option) *CA {
	t.Helper()
	s := newSpec(true, "Clearance Test Root CA", opts)
	key := s.signer(t)
	return &CA{Identity{Cert: Issue(t, s.tmpl, s.tmpl, key.Public(), key), Key: key}}
}

// NewIntermediate returns a CA that ca issued.
func (ca *CA) NewIntermediate(t testing.TB, opts ...Option) *CA {
	t.Helper()
	return &CA{*ca.issue(t, newSpec(true, "Clearance Test Intermediate CA", opts))}
}

// Issue returns a leaf certificate that ca issued, for digital signatures;
// ServerAuth and ClientAuth say what for.
func (ca *CA) Issue(t testing.TB, opts ...Option) *Identity {
	t.Helper()
	return ca.issue(t, newSpec(false, "Clearance Test Leaf", opts))
}

func (ca *CA) issue(t testing.TB, s *spec) *Identity {
	t.Helper()
	key := s.signer(t)
	c := Issue(t, s.tmpl, ca.Cert, key.Public(), ca.Key)
	return &Identity{Cert: c, Key: key, Chain: append([]*x509.Certificate{ca.Cert}, ca.Chain...)}
}

// SelfSigned returns a self-signed leaf certificate: what anyone can make,
// and what SAML peers sign with.
func SelfSigned(t testing.TB, opts ...Option) *Identity {
	t.Helper()
	s := newSpec(false, "Clearance Test Self-Signed", opts)
	key := s.signer(t)
	return &Identity{Cert: Issue(t, s.tmpl, s.tmpl, key.Public(), key), Key: key}
}

// Issue creates the certificate tmpl describes for pub, signed by signer as
// parent (tmpl itself for a self-signed one), and parses it.
func Issue(t testing.TB, tmpl, parent *x509.Certificate, pub crypto.PublicKey, signer crypto.Signer) *x509.Certificate {
	t.Helper()
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, signer)
	if err != nil {
		t.Fatalf("creating certificate %q: %v", tmpl.Subject.CommonName, err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("parsing certificate %q: %v", tmpl.Subject.CommonName, err)
	}
	return c
}

func newSpec(isCA bool, cn string, opts []Option) *spec {
	now := time.Now()
	tmpl := &x509.Certificate{
		Subject:   pkix.Name{CommonName: cn},
		NotBefore: now.Add(-time.Hour),
		NotAfter:  now.Add(24 * time.Hour),
		KeyUsage:  x509.KeyUsageDigitalSignature,
	}
	if isCA {
		tmpl.IsCA, tmpl.BasicConstraintsValid = true, true
		tmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageCRLSign
	}
	s := &spec{tmpl: tmpl}
	for _, o := range opts {
		o(s)
	}
	if tmpl.SerialNumber == nil {
		tmpl.SerialNumber = randomSerial()
	}
	return s
}

func (s *spec) signer(t testing.TB) crypto.Signer {
	t.Helper()
	switch {
	case s.key != nil:
	case s.rsa:
		s.key = RSAKey(t)
	default:
		s.key = ECKey(t)
	}
	return s.key
}

func randomSerial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		panic("testpki: reading randomness: " + err.Error())
	}
	return n.Add(n, big.NewInt(1)) // serials are positive
}

// ECKey returns a new ECDSA P-256 key.
func ECKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// RSAKey returns a new 2048-bit RSA key: what Okta and SCEP clients need.
// Generating one takes a while; share it where tests allow.
func RSAKey(t testing.TB) *rsa.PrivateKey {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TLS is the certificate as a TLS peer presents it: the leaf and its
// intermediates, without the root the other side already trusts.
func (c *Identity) TLS() tls.Certificate {
	chain := [][]byte{c.Cert.Raw}
	for i := 0; i+1 < len(c.Chain); i++ {
		chain = append(chain, c.Chain[i].Raw)
	}
	return tls.Certificate{Certificate: chain, PrivateKey: c.Key, Leaf: c.Cert}
}

// Pool is a pool holding only this certificate: a trust anchor.
func (c *Identity) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(c.Cert)
	return p
}

// CertPEM is the certificate as PEM.
func (c *Identity) CertPEM() []byte { return PEM(c.Cert) }

// KeyPEM is the private key as PKCS #8 PEM.
func (c *Identity) KeyPEM(t testing.TB) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(c.Key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

// PEM encodes certs as concatenated PEM CERTIFICATE blocks.
func PEM(certs ...*x509.Certificate) []byte {
	var out []byte
	for _, c := range certs {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return out
}
