package profile

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"

	"github.com/smallstep/pkcs7"
)

// Sign wraps a profile in a CMS SignedData (attached content, DER), the form
// MDMs and Apple Configurator use for signed .mobileconfig files: macOS shows
// the signer as the profile's publisher and verifies the content before
// installing it.
//
// cert is the signer and key its private key (RSA of at least 2048 bits, or
// ECDSA P-256, P-384 or P-521); chain holds the signer's issuers, nearest
// first, and travels in the SignedData so a Mac can build the path to a root
// it trusts. The digest is SHA-256.
//
// The content is data unchanged, so what verifies is exactly what UserScope
// or Agent produced. The signed bytes are not deterministic: the signing time
// is a signed attribute, and ECDSA signatures are randomized.
func Sign(data []byte, cert *x509.Certificate, key crypto.Signer, chain []*x509.Certificate) ([]byte, error) {
	if err := checkSigner(data, cert, key, chain); err != nil {
		return nil, fmt.Errorf("signing profile: %w", err)
	}
	sd, err := pkcs7.NewSignedData(data)
	if err != nil {
		return nil, fmt.Errorf("signing profile: %w", err)
	}
	// The library's default is SHA-1; set the digest before adding the signer.
	sd.SetDigestAlgorithm(pkcs7.OIDDigestAlgorithmSHA256)
	if err := sd.AddSignerChain(cert, key, chain, pkcs7.SignerInfoConfig{}); err != nil {
		return nil, fmt.Errorf("signing profile: %w", err)
	}
	out, err := sd.Finish()
	if err != nil {
		return nil, fmt.Errorf("signing profile: %w", err)
	}
	return out, nil
}

func checkSigner(data []byte, cert *x509.Certificate, key crypto.Signer, chain []*x509.Certificate) error {
	if len(data) == 0 {
		return errors.New("nothing to sign")
	}
	if cert == nil || len(cert.Raw) == 0 {
		return errors.New("signing certificate is required")
	}
	if key == nil {
		return errors.New("signing key is required")
	}
	if err := checkSigningKey(key); err != nil {
		return err
	}
	pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(cert.PublicKey) {
		return fmt.Errorf("the signing key does not belong to the signing certificate %q", cert.Subject.CommonName)
	}
	child := cert
	for i, parent := range chain {
		if parent == nil {
			return fmt.Errorf("chain certificate %d is missing", i+1)
		}
		if err := child.CheckSignatureFrom(parent); err != nil {
			return fmt.Errorf("chain certificate %d (%q) did not issue %q: list the signer's issuers nearest first", i+1, parent.Subject.CommonName, child.Subject.CommonName)
		}
		child = parent
	}
	return nil
}

// checkSigningKey accepts the key types Apple's profile verification and the
// CMS library both handle.
func checkSigningKey(key crypto.Signer) error {
	switch pub := key.Public().(type) {
	case *rsa.PublicKey:
		if pub.N.BitLen() < 2048 {
			return fmt.Errorf("RSA signing key has %d bits; use at least 2048", pub.N.BitLen())
		}
	case *ecdsa.PublicKey:
		switch pub.Curve {
		case elliptic.P256(), elliptic.P384(), elliptic.P521():
		default:
			return fmt.Errorf("ECDSA signing key on curve %s is not supported: use P-256, P-384 or P-521", pub.Curve.Params().Name)
		}
	default:
		return fmt.Errorf("%T signing keys are not supported: use RSA or ECDSA", pub)
	}
	return nil
}

// ParseSigningKey reads a PEM private key for Sign: PKCS #8 ("PRIVATE KEY"),
// PKCS #1 ("RSA PRIVATE KEY") or SEC 1 ("EC PRIVATE KEY"). Encrypted PEM is
// refused with a hint, as is anything after the key's block.
func ParseSigningKey(data []byte) (crypto.Signer, error) {
	block, rest := pem.Decode(data)
	if block == nil {
		return nil, errors.New("no PEM private key found")
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return nil, errors.New("data after the private key's PEM block")
	}
	if _, ok := block.Headers["DEK-Info"]; ok {
		return nil, errors.New("the private key is encrypted; decrypt it first (openssl pkey -in key.pem -out plain.pem)")
	}
	var (
		key any
		err error
	)
	switch block.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(block.Bytes)
	case "ENCRYPTED PRIVATE KEY":
		return nil, errors.New("the private key is encrypted; decrypt it first (openssl pkey -in key.pem -out plain.pem)")
	default:
		return nil, fmt.Errorf("PEM block %q is not a private key", block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("parsing the private key: %w", err)
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("%T keys are not supported: use RSA or ECDSA", key)
	}
	if err := checkSigningKey(signer); err != nil {
		return nil, err
	}
	return signer, nil
}
