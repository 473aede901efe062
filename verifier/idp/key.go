package idp

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"time"

	"go.step.sm/crypto/kms"
	"go.step.sm/crypto/kms/apiv1"
	_ "go.step.sm/crypto/kms/softkms" // file-backed KMS URIs

	"github.com/clearance/clearance/pkg/atomicfile"
	"github.com/clearance/clearance/pkg/certpem"
	"github.com/clearance/clearance/verifier/secretfile"
)

// File names in the data dir (public surface: docs and `okta setup` name them).
const (
	CertFile = "idp-cert.pem"
	KeyFile  = "idp-key.pem"
)

// certLifetime is the signing certificate's lifetime. Okta pins the
// certificate itself (it does not follow a chain or check expiry against a
// CA), so rotating it is a manual step in Okta; a long lifetime keeps that rare.
const certLifetime = 10 * 365 * 24 * time.Hour

// SigningIdentity is the IdP's SAML signing key and certificate.
type SigningIdentity struct {
	Signer  crypto.Signer
	Cert    *x509.Certificate
	CertPEM []byte
	// Created is true when this start created the key (first start).
	Created bool
}

// Fingerprint is the SHA-256 fingerprint of the certificate, colon-separated
// upper-case hex, as Okta and openssl show it.
func (id *SigningIdentity) Fingerprint() string { return Fingerprint(id.Cert) }

// Fingerprint formats c's SHA-256 fingerprint as AA:BB:….
func Fingerprint(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	h := strings.ToUpper(hex.EncodeToString(sum[:]))
	var b strings.Builder
	for i := 0; i < len(h); i += 2 {
		if i > 0 {
			b.WriteByte(':')
		}
		b.WriteString(h[i : i+2])
	}
	return b.String()
}

// LoadOrCreate returns the signing identity kept in dataDir: the key in
// idp-key.pem (0600) or, when kmsURI is set, the go.step.sm/crypto/kms key it
// names; and the self-signed certificate in idp-cert.pem, created for the key
// when missing. bits is the size of an RSA key created here (2048 or 3072).
func LoadOrCreate(ctx context.Context, dataDir string, bits int, kmsURI string, now time.Time) (*SigningIdentity, error) {
	certPath, keyPath := filepath.Join(dataDir, CertFile), filepath.Join(dataDir, KeyFile)
	id := &SigningIdentity{}
	var err error
	switch {
	case kmsURI != "":
		if id.Signer, err = kmsSigner(ctx, kmsURI); err != nil {
			return nil, err
		}
	case exists(keyPath):
		if id.Signer, err = readKey(keyPath); err != nil {
			return nil, fmt.Errorf("SAML signing key %s: %w", keyPath, err)
		}
	case exists(certPath):
		return nil, fmt.Errorf("%s exists but %s does not: restore the key, or move both away to create a new identity (and give Okta the new certificate)", certPath, keyPath)
	default:
		if bits == 0 {
			bits = 2048
		}
		if bits != 2048 && bits != 3072 {
			return nil, fmt.Errorf("SAML signing key size %d: want 2048 or 3072", bits)
		}
		k, err := rsa.GenerateKey(rand.Reader, bits)
		if err != nil {
			return nil, fmt.Errorf("creating SAML signing key: %w", err)
		}
		der, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			return nil, err
		}
		if err := atomicfile.Write(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
			return nil, fmt.Errorf("writing SAML signing key: %w", err)
		}
		id.Signer, id.Created = k, true
	}
	pub, ok := id.Signer.Public().(*rsa.PublicKey)
	if !ok || pub.N.BitLen() < 2048 {
		return nil, errors.New("the SAML signing key must be RSA of at least 2048 bits: Okta accepts only RSA IdP signing certificates")
	}

	if exists(certPath) {
		data, err := os.ReadFile(certPath)
		if err != nil {
			return nil, err
		}
		certs, err := certpem.Parse(data)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", certPath, err)
		}
		if !samePublicKey(certs[0].PublicKey, pub) {
			return nil, fmt.Errorf("%s is not the certificate of the SAML signing key: move it away to issue a new one (and give Okta the new certificate)", certPath)
		}
		id.Cert, id.CertPEM = certs[0], pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: certs[0].Raw})
		return id, nil
	}
	if id.Cert, err = selfSign(id.Signer, now); err != nil {
		return nil, err
	}
	id.CertPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: id.Cert.Raw})
	if err := atomicfile.Write(certPath, id.CertPEM, 0o644); err != nil {
		return nil, fmt.Errorf("writing SAML signing certificate: %w", err)
	}
	id.Created = true
	return id, nil
}

func selfSign(s crypto.Signer, now time.Time) (*x509.Certificate, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "Clearance SAML signing", Organization: []string{"Clearance"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(certLifetime),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, s.Public(), s)
	if err != nil {
		return nil, fmt.Errorf("creating SAML signing certificate: %w", err)
	}
	return x509.ParseCertificate(der)
}

func kmsSigner(ctx context.Context, uri string) (crypto.Signer, error) {
	typ, err := apiv1.TypeOf(uri)
	if err != nil {
		return nil, fmt.Errorf("--idp-signing-key: %w", err)
	}
	km, err := kms.New(ctx, apiv1.Options{Type: typ, URI: uri})
	if err != nil {
		return nil, fmt.Errorf("--idp-signing-key: opening %s KMS: %w", typ, err)
	}
	s, err := km.CreateSigner(&apiv1.CreateSignerRequest{SigningKey: uri})
	if err != nil {
		return nil, fmt.Errorf("--idp-signing-key: %w", err)
	}
	return s, nil
}

func samePublicKey(a any, b *rsa.PublicKey) bool {
	ra, ok := a.(*rsa.PublicKey)
	return ok && ra.Equal(b)
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

func readKey(path string) (crypto.Signer, error) {
	// Not through a link, ours, and 0600 (secretfile says why).
	data, err := secretfile.Read(path)
	if err != nil {
		return nil, err
	}
	block, rest := pem.Decode(data)
	if block == nil || len(bytes.TrimSpace(rest)) != 0 {
		return nil, errors.New("want exactly one PEM block")
	}
	var key any
	switch block.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("PEM block %q is not an RSA private key", block.Type)
	}
	if err != nil {
		return nil, err
	}
	k, ok := key.(*rsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%T: Okta accepts only RSA IdP signing keys", key)
	}
	return k, nil
}
