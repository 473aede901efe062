package ca

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"time"
)

// The SCEP registration authority's files in the data dir.
//
//	scep-ra.pem, scep-ra.key   RSA 2048 RA, issued by the device CA (as long as the device CA)
//
// SCEP clients, macOS included, encrypt their request envelope to an RSA
// certificate from GetCACert; the device CA is ECDSA, so the SCEP endpoint
// decrypts requests and signs its replies with this RA identity instead.
const (
	RACertFile = "scep-ra.pem"
	RAKeyFile  = "scep-ra.key"
)

// RA key and certificate parameters.
const (
	RAKeyBits    = 2048
	RACommonName = "Clearance SCEP RA"
	// RARenewBefore: an RA certificate that expires sooner than this is
	// re-issued at load (for the same key).
	RARenewBefore = 30 * 24 * time.Hour
)

// RA is the SCEP registration authority: the RSA key requests are
// encrypted to and replies are signed with, and its certificate.
type RA struct {
	Cert *x509.Certificate
	Key  *rsa.PrivateKey
}

// LoadOrCreateRA loads the SCEP RA from the data dir the Authority was
// loaded from, creating the key and certificate on first use. The
// certificate is derived material, as tls.pem is: it is re-issued for the
// same key (rewriting only scep-ra.pem) when it is not issued by the current
// device CA, is not yet valid, or expires within RARenewBefore. The reason
// says why it wrote the certificate (ServerCertKept when it did not); the
// caller logs it. A key file that is not RSA of at least RAKeyBits, or is
// readable by others, is an error, as is a half pair.
func (a *Authority) LoadOrCreateRA() (*RA, ServerCertReason, error) {
	d := a.serverPair.dir
	p := d.pair(RACertFile, RAKeyFile)
	now := a.now()
	state, err := p.state()
	if err != nil {
		return nil, "", err
	}
	var key *rsa.PrivateKey
	reason := ServerCertCreated
	switch state {
	case pairPartial:
		return nil, "", partialError(string(d), p)
	case pairComplete:
		cert, _, k, err := p.load()
		if err != nil {
			return nil, "", err
		}
		rk, ok := k.(*rsa.PrivateKey)
		if !ok || rk.N.BitLen() < RAKeyBits {
			return nil, "", fmt.Errorf("%s is not an RSA key of at least %d bits", RAKeyFile, RAKeyBits)
		}
		key = rk
		reason = a.raCertReason(cert, now)
		if reason == ServerCertKept {
			return &RA{Cert: cert, Key: key}, ServerCertKept, nil
		}
	case pairAbsent:
		// Since Go 1.26 the reader is ignored and the system's secure source is used.
		if key, err = rsa.GenerateKey(rand.Reader, RAKeyBits); err != nil {
			return nil, "", fmt.Errorf("generating SCEP RA key: %w", err)
		}
	}
	cert, err := a.issueRACert(key, now)
	if err != nil {
		return nil, "", err
	}
	// Key before certificate (see createCAs); only a new key is written.
	var newKey crypto.Signer
	if state == pairAbsent {
		newKey = key
	}
	if err := p.write(cert.Raw, nil, newKey); err != nil {
		return nil, "", err
	}
	return &RA{Cert: cert, Key: key}, reason, nil
}

func (a *Authority) raCertReason(c *x509.Certificate, now time.Time) ServerCertReason {
	const usage = x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment
	switch {
	case c.CheckSignatureFrom(a.deviceCA) != nil || c.KeyUsage&usage != usage:
		return ServerCertNewIssuer
	case now.Before(c.NotBefore):
		return ServerCertNotYetValid
	case now.Add(RARenewBefore).After(c.NotAfter):
		return ServerCertExpiring
	}
	return ServerCertKept
}

func (a *Authority) issueRACert(key *rsa.PrivateKey, now time.Time) (*x509.Certificate, error) {
	serial, err := a.serial()
	if err != nil {
		return nil, fmt.Errorf("issuing SCEP RA certificate: %w", err)
	}
	notAfter := capTime(now.Add(DeviceCALifetime), a.deviceCA.NotAfter)
	if !notAfter.After(now) {
		return nil, errors.New("issuing SCEP RA certificate: device CA expired")
	}
	template := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: RACommonName},
		NotBefore:    now.Add(-Backdate),
		NotAfter:     notAfter,
		// keyEncipherment: clients encrypt to it (and pick it by this bit
		// among the GetCACert certificates); digitalSignature: it signs
		// CertRep replies. No EKU: it is neither a TLS client nor server.
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		BasicConstraintsValid: true,
	}
	c, err := createCert(template, a.deviceCA, key.Public(), a.deviceKey)
	if err != nil {
		return nil, fmt.Errorf("issuing SCEP RA certificate: %w", err)
	}
	return c, nil
}
