package ca

import (
	"crypto"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"time"
)

// HardwareURIPrefix names a Mac by hardware UUID in a browser certificate's
// SAN URI: urn:device:apple:uuid:<HardwareUUID>, as the user-scope profile
// asks macOS to request it.
const HardwareURIPrefix = "urn:device:apple:uuid:"

// ErrCertNoHardwareUUID: the certificate names no hardware UUID.
var ErrCertNoHardwareUUID = errors.New("certificate names no hardware UUID")

var hardwareUUIDPattern = regexp.MustCompile(`^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$`)

// HardwareUUIDFromCert returns the hardware UUID in c's single SAN URI,
// upper-cased (as macOS reports it).
func HardwareUUIDFromCert(c *x509.Certificate) (string, error) {
	if c == nil || len(c.URIs) != 1 {
		return "", fmt.Errorf("%w: want exactly one SAN URI", ErrCertNoHardwareUUID)
	}
	s := c.URIs[0].String()
	u, ok := strings.CutPrefix(s, HardwareURIPrefix)
	if !ok || !hardwareUUIDPattern.MatchString(u) {
		return "", fmt.Errorf("%w: SAN URI %.100q is not %s<UUID>", ErrCertNoHardwareUUID, s, HardwareURIPrefix)
	}
	return strings.ToUpper(u), nil
}

// IsBrowserCert reports whether c's SAN names a hardware UUID (a browser
// certificate) rather than a device id (an agent certificate).
func IsBrowserCert(c *x509.Certificate) bool {
	return c != nil && len(c.URIs) == 1 && strings.HasPrefix(c.URIs[0].String(), HardwareURIPrefix)
}

// IssueBrowserCert issues the browser's device certificate for pub: SAN URI
// urn:device:apple:uuid:<hardwareUUID>, TLS client authentication only,
// valid from a minute ago for lifetime, never beyond the device CA. The
// caller has checked the request (SCEP challenge, key type) and records the
// certificate with kind "browser".
func (a *Authority) IssueBrowserCert(pub crypto.PublicKey, hardwareUUID string, lifetime time.Duration) (*x509.Certificate, error) {
	if !hardwareUUIDPattern.MatchString(hardwareUUID) {
		return nil, fmt.Errorf("issuing browser certificate: %q is not a hardware UUID", hardwareUUID)
	}
	if lifetime <= 0 {
		return nil, errors.New("issuing browser certificate: lifetime must be positive")
	}
	now := a.now()
	notAfter := capTime(now.Add(lifetime), a.deviceCA.NotAfter)
	if !notAfter.After(now) {
		return nil, errors.New("issuing browser certificate: device CA expired")
	}
	serial, err := a.serial()
	if err != nil {
		return nil, fmt.Errorf("issuing browser certificate: %w", err)
	}
	uri, err := url.Parse(HardwareURIPrefix + strings.ToUpper(hardwareUUID))
	if err != nil {
		return nil, err
	}
	template := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: strings.ToUpper(hardwareUUID)},
		URIs:                  []*url.URL{uri},
		NotBefore:             now.Add(-Backdate),
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
	}
	c, err := createCert(template, a.deviceCA, pub, a.deviceKey)
	if err != nil {
		return nil, fmt.Errorf("issuing browser certificate: %w", err)
	}
	return c, nil
}
