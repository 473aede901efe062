package ca

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/url"
	"time"
)

// Subject common names of the two CAs.
const (
	RootCommonName     = "Clearance Root CA"
	DeviceCACommonName = "Clearance Device CA"
)

var (
	curveRoot     = elliptic.P384()
	curveDeviceCA = elliptic.P256()
	curveServer   = elliptic.P256()
)

func newKey(c elliptic.Curve) (*ecdsa.PrivateKey, error) {
	// Since Go 1.26 the reader is ignored and the system's secure source is used.
	k, err := ecdsa.GenerateKey(c, rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generating %s key: %w", c.Params().Name, err)
	}
	return k, nil
}

// serial returns a random, positive, 128-bit serial number. 128 bits of
// randomness make serials unpredictable and collisions negligible without
// keeping a counter anywhere.
func (a *Authority) serial() (*big.Int, error) {
	a.randMu.Lock()
	defer a.randMu.Unlock()
	var b [16]byte
	for {
		if _, err := io.ReadFull(a.rand, b[:]); err != nil {
			return nil, fmt.Errorf("reading random serial number: %w", err)
		}
		if n := new(big.Int).SetBytes(b[:]); n.Sign() > 0 {
			return n, nil
		}
	}
}

// SerialHex is a certificate serial as storage keeps it: lowercase hex
// without leading zeros.
func SerialHex(c *x509.Certificate) string { return c.SerialNumber.Text(16) }

func rootTemplate(serial *big.Int, now time.Time) *x509.Certificate {
	return &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: RootCommonName},
		NotBefore:             now.Add(-Backdate),
		NotAfter:              now.Add(RootLifetime),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            1,
	}
}

func deviceCATemplate(serial *big.Int, now, rootNotAfter time.Time) *x509.Certificate {
	return &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: DeviceCACommonName},
		NotBefore:    now.Add(-Backdate),
		NotAfter:     capTime(now.Add(DeviceCALifetime), rootNotAfter),
		KeyUsage:     x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		// Go and most verifiers treat a CA's EKUs as a limit on what its
		// leaves may be used for: the device CA issues TLS certificates only.
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            0,
		MaxPathLenZero:        true,
	}
}

// createCert signs template with signer under parent (self-signed when
// parent is nil) and returns the parsed result.
func createCert(template, parent *x509.Certificate, pub crypto.PublicKey, signer crypto.Signer) (*x509.Certificate, error) {
	if parent == nil {
		parent = template
	}
	der, err := x509.CreateCertificate(rand.Reader, template, parent, pub, signer)
	if err != nil {
		return nil, err
	}
	return x509.ParseCertificate(der)
}

func capTime(t, limit time.Time) time.Time {
	if t.After(limit) {
		return limit
	}
	return t
}

func (a *Authority) issueServerCert(pub crypto.PublicKey, hosts hostSet, now time.Time) (*x509.Certificate, error) {
	serial, err := a.serial()
	if err != nil {
		return nil, err
	}
	template := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: hosts.commonName()},
		DNSNames:              hosts.dns,
		IPAddresses:           hosts.netIPs(),
		NotBefore:             now.Add(-Backdate),
		NotAfter:              capTime(now.Add(ServerCertLifetime), a.deviceCA.NotAfter),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	c, err := createCert(template, a.deviceCA, pub, a.deviceKey)
	if err != nil {
		return nil, fmt.Errorf("issuing TLS server certificate: %w", err)
	}
	return c, nil
}

// IssueDeviceCert issues a device certificate for the key in csr. Only the
// key comes from the CSR: the subject, names and extensions it asks for are
// ignored, and the certificate says exactly this: CN and SAN URI name
// deviceID, usable for TLS client authentication only, valid from Backdate
// ago (clock skew) until lifetime from now (DefaultDeviceCertLifetime when
// 0), but never beyond the device CA.
//
// csr should come from ParseCSR; its key and signature are checked again here
// so that no other path can get a certificate for an unchecked key.
func (a *Authority) IssueDeviceCert(csr *x509.CertificateRequest, deviceID string, lifetime time.Duration) (*x509.Certificate, error) {
	if err := checkDeviceID(deviceID); err != nil {
		return nil, fmt.Errorf("issuing device certificate: %w", err)
	}
	if csr == nil {
		return nil, errors.New("issuing device certificate: no CSR")
	}
	if err := checkCSR(csr); err != nil {
		return nil, fmt.Errorf("issuing device certificate: %w", err)
	}
	switch {
	case lifetime == 0:
		lifetime = DefaultDeviceCertLifetime
	case lifetime < 0:
		return nil, fmt.Errorf("issuing device certificate: negative lifetime %s", lifetime)
	}
	now := a.now()
	notAfter := capTime(now.Add(lifetime), a.deviceCA.NotAfter)
	if !notAfter.After(now) {
		return nil, fmt.Errorf("issuing device certificate: device CA expired at %s",
			a.deviceCA.NotAfter.UTC().Format(time.RFC3339))
	}
	serial, err := a.serial()
	if err != nil {
		return nil, fmt.Errorf("issuing device certificate: %w", err)
	}
	uri, err := url.Parse(DeviceURI(deviceID))
	if err != nil {
		return nil, fmt.Errorf("issuing device certificate: %w", err)
	}
	template := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: deviceID},
		URIs:                  []*url.URL{uri},
		NotBefore:             now.Add(-Backdate),
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
	}
	c, err := createCert(template, a.deviceCA, csr.PublicKey, a.deviceKey)
	if err != nil {
		return nil, fmt.Errorf("issuing device certificate: %w", err)
	}
	return c, nil
}
