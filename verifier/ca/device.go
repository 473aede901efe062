package ca

import (
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/clearance/clearance/pkg/deviceid"
)

// MaxDeviceIDLength bounds a device id (deviceid.MaxLength).
const MaxDeviceIDLength = deviceid.MaxLength

// Errors VerifyDeviceCert and DeviceIDFromCert return, wrapped with detail;
// match with errors.Is.
var (
	ErrCertExpired     = errors.New("device certificate expired")
	ErrCertNotYetValid = errors.New("device certificate not yet valid")
	ErrCertUntrusted   = errors.New("device certificate not trusted")
	ErrCertNoDeviceID  = deviceid.ErrNoDeviceID
)

// DeviceURI is the SAN URI that names deviceID in its certificate.
func DeviceURI(deviceID string) string { return deviceid.URI(deviceID) }

func checkDeviceID(id string) error { return deviceid.Check(id) }

// DeviceIDFromCert returns the device id in c's SAN URI (deviceid.FromCert).
// It does not check who issued c: VerifyDeviceCert does.
func DeviceIDFromCert(c *x509.Certificate) (string, error) { return deviceid.FromCert(c) }

// VerifyDeviceCert checks that leaf is a device certificate from this
// verifier's device CA, usable for TLS client authentication at now, and
// returns the device id it names. It does not know about revocation: the
// caller checks the device's record.
//
// The validity period is checked before the chain, so that an expired
// certificate is reported as ErrCertExpired (which an agent can fix by
// re-enrolling) rather than as a generic chain failure.
func (a *Authority) VerifyDeviceCert(leaf *x509.Certificate, now time.Time) (string, error) {
	if err := a.VerifyClientCert(leaf, now); err != nil {
		return "", err
	}
	return DeviceIDFromCert(leaf)
}

// VerifyClientCert checks that leaf was issued by this verifier's current
// device CA for TLS client authentication and is valid at now, whatever it
// names: agent certificates and browser certificates alike. Revocation is
// the caller's: it checks its records.
//
// The validity period is checked before the chain, so that an expired
// certificate is reported as ErrCertExpired (which an agent can fix by
// re-enrolling) rather than as a generic chain failure.
func (a *Authority) VerifyClientCert(leaf *x509.Certificate, now time.Time) error {
	if leaf == nil {
		return fmt.Errorf("%w: no certificate", ErrCertUntrusted)
	}
	// 1. Validity period.
	if now.After(leaf.NotAfter) {
		return fmt.Errorf("%w: expired at %s (now %s)", ErrCertExpired,
			leaf.NotAfter.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	if now.Before(leaf.NotBefore) {
		return fmt.Errorf("%w: valid from %s (now %s)", ErrCertNotYetValid,
			leaf.NotBefore.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	// 2. Chain: leaf ← device CA, with the ClientAuth EKU. The device CA is
	// the only anchor: it was checked against the root when it was loaded
	// (and the root issues nothing else a client could present), so the
	// root's P-384 signature is not verified again on every request. The
	// device CA's own validity period is still checked here, every time.
	// A leaf whose chain verified before is not verified again: nothing
	// Verify checks changes with time but the two validity periods.
	key := sha256.Sum256(leaf.Raw)
	if !now.Before(a.deviceCA.NotBefore) && !now.After(a.deviceCA.NotAfter) && a.chains.has(key) {
		return nil
	}
	chains, err := leaf.Verify(x509.VerifyOptions{
		Roots:       a.devicePool,
		CurrentTime: now,
		KeyUsages:   []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	if err != nil {
		return fmt.Errorf("%w: %w", ErrCertUntrusted, err)
	}
	if !issuedByDeviceCA(chains, a.deviceCA) {
		return fmt.Errorf("%w: issued by %q, not by the current device CA", ErrCertUntrusted, leaf.Issuer.String())
	}
	a.chains.add(key)
	return nil
}

// maxVerifiedChains bounds verifiedChains: more devices than that sign in
// between two clears only means more chains verified again.
const maxVerifiedChains = 1 << 16

// verifiedChains is the set of leaves (by the SHA-256 of their DER) whose
// chain to the device CA verified: a browser's kept-alive connection
// presents the same certificate with every request, and its ECDSA check is
// a third of a certificate-bound sign-in's work beyond the RSA signatures.
// Only certificates the device CA signed get in, so no client can fill it
// with its own; it is cleared when full all the same.
type verifiedChains struct {
	mu sync.Mutex
	m  map[[sha256.Size]byte]struct{}
}

func (v *verifiedChains) has(key [sha256.Size]byte) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	_, ok := v.m[key]
	return ok
}

func (v *verifiedChains) add(key [sha256.Size]byte) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.m == nil || len(v.m) >= maxVerifiedChains {
		v.m = make(map[[sha256.Size]byte]struct{})
	}
	v.m[key] = struct{}{}
}

func issuedByDeviceCA(chains [][]*x509.Certificate, deviceCA *x509.Certificate) bool {
	for _, chain := range chains {
		if len(chain) == 2 && chain[1].Equal(deviceCA) {
			return true
		}
	}
	return false
}
