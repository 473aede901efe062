package agentapi

import (
	"context"
	"crypto/x509"
	"errors"
	"sync"
	"time"

	"github.com/clearance/clearance/verifier/ca"
	"github.com/clearance/clearance/verifier/storage"
)

// CurrentCertTTL is how long CurrentCerts trusts what it read of a device.
// A revocation or a new certificate reaches the connection classes within
// it; every call still checks the database itself (Authenticate), so it
// changes only a new connection's terms, never what its calls may do.
const CurrentCertTTL = 10 * time.Second

// maxCurrentCerts bounds the devices CurrentCerts remembers (about 150
// bytes each); past it, everything remembered is forgotten at once.
const maxCurrentCerts = 100_000

// CurrentCerts tells, at the gRPC handshake, whether a client certificate is
// the current certificate of an enrolled device that is not revoked: only
// those connections are served on device terms (grpcconn). A certificate
// that merely chains to the device CA (revoked device, unknown device, an
// older certificate) is served like any connection without one. Answers
// are kept for CurrentCertTTL, so a fleet reconnecting does not read every
// device for every handshake; a certificate that outlives the one
// remembered (a renewal) is looked up again at once.
type CurrentCerts struct {
	CA      CertVerifier
	Devices storage.DeviceStore
	Now     func() time.Time

	mu    sync.Mutex
	cache map[string]currentCert
}

type currentCert struct {
	serial   string    // "" when the device is unknown or revoked
	notAfter time.Time // the current certificate's
	at       time.Time
}

// refreshAfter is the least time between two reads of one device for
// certificates it does not hold as current: presenting an old certificate
// over and over costs a read a second at most.
const refreshAfter = time.Second

// Device reports the device a leaf certificate names when it is that
// device's current certificate (grpcconn.Options.Device).
func (cc *CurrentCerts) Device(leaf *x509.Certificate) (string, bool) {
	now := cc.Now()
	id, err := cc.CA.VerifyDeviceCert(leaf, now)
	if err != nil {
		return "", false
	}
	serial := ca.SerialHex(leaf)
	cc.mu.Lock()
	e, ok := cc.cache[id]
	cc.mu.Unlock()
	age := now.Sub(e.at)
	// A certificate that outlives the remembered one was issued after it
	// (a renewal): looked up at once. An older one waits refreshAfter.
	newer := leaf.NotAfter.After(e.notAfter)
	if ok && age >= 0 && age < CurrentCertTTL && (e.serial == serial || (age < refreshAfter && !newer)) {
		return id, e.serial == serial
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	dev, err := cc.Devices.GetDevice(ctx, id)
	switch {
	case err == nil && !dev.Revoked():
		e = currentCert{serial: dev.CertSerial, notAfter: dev.CertNotAfter, at: now}
	case err == nil || errors.Is(err, storage.ErrNotFound):
		e = currentCert{at: now}
	default:
		// The database cannot say: not a device connection, and nothing
		// remembered (its calls would fail now anyway).
		return id, false
	}
	cc.mu.Lock()
	if cc.cache == nil || len(cc.cache) >= maxCurrentCerts {
		cc.cache = map[string]currentCert{}
	}
	cc.cache[id] = e
	cc.mu.Unlock()
	return id, e.serial == serial
}
