// Package ca owns the verifier's PKI: the root CA that agents and browsers
// trust, the device CA that issues device certificates, and the TLS server
// certificate the verifier's listeners present. It also owns the gate every
// enrollment CSR passes (ParseCSR) and the check every device certificate
// passes (VerifyDeviceCert).
//
// Everything lives in the data dir:
//
//	ca.pem, ca.key                 root CA (ECDSA P-384, ~10 years, path length 1)
//	device-ca.pem, device-ca.key   device CA, signed by the root (ECDSA P-256, ~5 years, path length 0)
//	tls.pem, tls.key               server leaf + device CA, issued by the device CA (~1 year)
//
// Keys are written 0600 and certificates 0644, each file atomically. The two
// CAs are created only on first start; once either exists, a missing file is
// an error rather than a reason to mint a new identity that enrolled agents
// do not trust. The TLS server certificate is derived material and is
// re-issued whenever it no longer fits.
package ca

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"
)

// File names inside the data dir. They are part of the public surface:
// operators back them up and docs name ca.pem.
const (
	RootCertFile     = "ca.pem"
	RootKeyFile      = "ca.key"
	DeviceCACertFile = "device-ca.pem"
	DeviceCAKeyFile  = "device-ca.key"
	TLSCertFile      = "tls.pem"
	TLSKeyFile       = "tls.key"
)

// Lifetimes of what LoadOrCreate issues.
const (
	RootLifetime       = 10 * 365 * 24 * time.Hour
	DeviceCALifetime   = 5 * 365 * 24 * time.Hour
	ServerCertLifetime = 365 * 24 * time.Hour
	// ServerCertRenewBefore: a server certificate that expires sooner than
	// this is re-issued at load, so a yearly restart is enough to keep it fresh.
	ServerCertRenewBefore = 30 * 24 * time.Hour
	// DefaultDeviceCertLifetime applies when IssueDeviceCert gets lifetime 0.
	DefaultDeviceCertLifetime = 30 * 24 * time.Hour
	// Backdate is how far NotBefore is set before the moment of issue, so a
	// peer whose clock runs behind does not reject a certificate issued a
	// moment ago: an agent checks the verifier's server certificate in its
	// own time before it has learnt the verifier's (the first handshake
	// after a start), and a browser on a Mac checks its SCEP certificate
	// in the Mac's time. An hour covers clocks that are minutes off, which
	// the agent then corrects; a certificate valid from before it existed
	// vouches for nothing more, since nothing could hold it earlier.
	Backdate = time.Hour
)

// Options configure LoadOrCreate.
type Options struct {
	// Hosts the TLS server certificate must cover (DNS names or IP
	// addresses, no ports), e.g. the host of --public-url plus "localhost",
	// "127.0.0.1", "::1". At least one is required.
	Hosts []string
	// Now is the clock; default time.Now.
	Now func() time.Time
	// Rand is the source of certificate serial numbers; default crypto/rand.
	// Since Go 1.26, key generation and signing always use the system's
	// secure source regardless of this reader.
	Rand io.Reader
}

// ServerCertReason says why LoadOrCreate wrote tls.pem.
type ServerCertReason string

// Reasons for (re)issuing the TLS server certificate.
const (
	ServerCertKept         ServerCertReason = ""               // the existing certificate still fits
	ServerCertCreated      ServerCertReason = "created"        // tls.pem and tls.key did not exist
	ServerCertHostsChanged ServerCertReason = "hosts_changed"  // Options.Hosts differ from the certificate's names
	ServerCertExpiring     ServerCertReason = "expiring"       // expired or expires within ServerCertRenewBefore
	ServerCertNotYetValid  ServerCertReason = "not_yet_valid"  // the clock is before its NotBefore
	ServerCertNewIssuer    ServerCertReason = "issuer_changed" // not issued by the current device CA
)

// Report says what LoadOrCreate wrote. The package logs nothing; the caller
// logs this.
type Report struct {
	// CreatedCA is true on first start, when a new root and device CA were written.
	CreatedCA bool
	// ServerCert is why tls.pem was written, or ServerCertKept.
	ServerCert ServerCertReason
}

// Authority is the loaded PKI. It does not change after LoadOrCreate and is
// safe for concurrent use. Certificates it returns are shared: do not modify them.
type Authority struct {
	now func() time.Time

	randMu sync.Mutex // Options.Rand need not be safe for concurrent use
	rand   io.Reader

	root       *x509.Certificate
	rootPEM    []byte
	rootPool   *x509.CertPool
	deviceCA   *x509.Certificate
	deviceKey  crypto.Signer
	devicePool *x509.CertPool
	chains     verifiedChains
	report     Report

	// The server certificate is re-issued in place while running, so it
	// and what is needed to re-issue it sit behind serverMu.
	serverMu   sync.RWMutex
	server     tls.Certificate
	serverPair pair
	hosts      hostSet
}

// LoadOrCreate loads the PKI from dataDir, creating it on first start and
// re-issuing the TLS server certificate when it no longer fits opts.Hosts or
// is about to expire. It refuses to start when a key file is readable by
// group or others, a certificate does not match its key, a CA has expired,
// or the dir is partially initialized.
func LoadOrCreate(dataDir string, opts Options) (*Authority, error) {
	hosts, err := parseHosts(opts.Hosts)
	if err != nil {
		return nil, err
	}
	a := &Authority{now: opts.Now, rand: opts.Rand}
	if a.now == nil {
		a.now = time.Now
	}
	if a.rand == nil {
		a.rand = rand.Reader
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, fmt.Errorf("creating data dir: %w", err)
	}
	d := dir(dataDir)
	now := a.now()

	// 1. The two CAs: both complete, or (first start) both absent.
	rootPair, devicePair := d.pair(RootCertFile, RootKeyFile), d.pair(DeviceCACertFile, DeviceCAKeyFile)
	rootState, err := rootPair.state()
	if err != nil {
		return nil, err
	}
	deviceState, err := devicePair.state()
	if err != nil {
		return nil, err
	}
	switch {
	case rootState == pairAbsent && deviceState == pairAbsent:
		if err := a.createCAs(rootPair, devicePair, now); err != nil {
			return nil, err
		}
		a.report.CreatedCA = true
	case rootState == pairComplete && deviceState == pairComplete:
		if err := a.loadCAs(rootPair, devicePair, now); err != nil {
			return nil, err
		}
	default:
		return nil, partialError(dataDir, rootPair, devicePair)
	}
	a.rootPEM = pemCert(a.root.Raw)
	a.rootPool = x509.NewCertPool()
	a.rootPool.AddCert(a.root)
	a.devicePool = x509.NewCertPool()
	a.devicePool.AddCert(a.deviceCA)

	// 2. The TLS server certificate: kept if it still fits, otherwise
	// re-issued for the same key so that only tls.pem is rewritten.
	a.serverPair, a.hosts = d.pair(TLSCertFile, TLSKeyFile), hosts
	reason, err := a.loadOrIssueServerCert(now)
	if err != nil {
		return nil, err
	}
	a.report.ServerCert = reason
	return a, nil
}

// Report says what LoadOrCreate wrote, for the caller to log.
func (a *Authority) Report() Report { return a.report }

// RootPEM is ca.pem: the certificate agents and browsers trust.
func (a *Authority) RootPEM() []byte { return bytes.Clone(a.rootPEM) }

// Root is the root CA certificate.
func (a *Authority) Root() *x509.Certificate { return a.root }

// DeviceCA is the issuing CA for device and server certificates.
func (a *Authority) DeviceCA() *x509.Certificate { return a.deviceCA }

// Chain is the issuing chain of a device certificate, DER, nearest first:
// device CA, then root. It is what EnrollResponse.ca_chain carries.
func (a *Authority) Chain() [][]byte {
	return [][]byte{bytes.Clone(a.deviceCA.Raw), bytes.Clone(a.root.Raw)}
}

// ServerCertificate is the TLS server certificate with its chain (leaf,
// device CA), for the gRPC and HTTP listeners.
func (a *Authority) ServerCertificate() tls.Certificate {
	a.serverMu.RLock()
	defer a.serverMu.RUnlock()
	return a.server
}

// GetServerCertificate is for tls.Config.GetCertificate: listeners that use
// it serve a re-issued certificate without a restart.
func (a *Authority) GetServerCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	c := a.ServerCertificate()
	return &c, nil
}

// RefreshServerCert checks the server certificate against the clock, as
// LoadOrCreate does at start, and re-issues it for the same key (rewriting
// tls.pem) when it is about to expire. A verifier that runs longer than the
// certificate's life calls this periodically so it never serves an expired
// certificate. It returns why it re-issued, or ServerCertKept.
func (a *Authority) RefreshServerCert() (ServerCertReason, error) {
	a.serverMu.Lock()
	defer a.serverMu.Unlock()
	return a.loadOrIssueServerCert(a.now())
}

// RootPool holds the root CA: what a client (or a test) verifies the server against.
func (a *Authority) RootPool() *x509.CertPool { return a.rootPool.Clone() }

// ClientCAs is the pool for tls.Config.ClientCAs on mTLS listeners. It holds
// the device CA itself rather than the root, so that agents that send only
// their leaf still verify, and so that only certificates from the device CA
// are accepted. Callers still run VerifyDeviceCert on the peer certificate to
// get the device id.
func (a *Authority) ClientCAs() *x509.CertPool { return a.devicePool.Clone() }

func (a *Authority) createCAs(rootPair, devicePair pair, now time.Time) error {
	rootKey, err := newKey(curveRoot)
	if err != nil {
		return err
	}
	serial, err := a.serial()
	if err != nil {
		return err
	}
	root, err := createCert(rootTemplate(serial, now), nil, rootKey.Public(), rootKey)
	if err != nil {
		return fmt.Errorf("creating root CA: %w", err)
	}
	deviceKey, err := newKey(curveDeviceCA)
	if err != nil {
		return err
	}
	if serial, err = a.serial(); err != nil {
		return err
	}
	deviceCA, err := createCert(deviceCATemplate(serial, now, root.NotAfter), root, deviceKey.Public(), rootKey)
	if err != nil {
		return fmt.Errorf("creating device CA: %w", err)
	}
	// Key before certificate in each pair: a crash in between leaves a
	// half pair, which the next start reports instead of guessing.
	if err := rootPair.write(root.Raw, nil, rootKey); err != nil {
		return err
	}
	if err := devicePair.write(deviceCA.Raw, nil, deviceKey); err != nil {
		return err
	}
	a.root, a.deviceCA, a.deviceKey = root, deviceCA, deviceKey
	return nil
}

func (a *Authority) loadCAs(rootPair, devicePair pair, now time.Time) error {
	root, extra, _, err := rootPair.load()
	if err != nil {
		return err
	}
	if len(extra) != 0 {
		return fmt.Errorf("%s holds %d certificates, want only the root", rootPair.certName, 1+len(extra))
	}
	if err := checkCA(root, rootPair.certName, now); err != nil {
		return err
	}
	if err := root.CheckSignatureFrom(root); err != nil {
		return fmt.Errorf("%s is not a self-signed root: %w", rootPair.certName, err)
	}
	deviceCA, extra, deviceKey, err := devicePair.load()
	if err != nil {
		return err
	}
	if len(extra) != 0 {
		return fmt.Errorf("%s holds %d certificates, want only the device CA", devicePair.certName, 1+len(extra))
	}
	if err := checkCA(deviceCA, devicePair.certName, now); err != nil {
		return err
	}
	if err := deviceCA.CheckSignatureFrom(root); err != nil {
		return fmt.Errorf("%s is not signed by %s: %w", devicePair.certName, rootPair.certName, err)
	}
	a.root, a.deviceCA, a.deviceKey = root, deviceCA, deviceKey
	return nil
}

// checkCA refuses a CA that cannot do its job: issuing certificates from an
// expired CA would only produce certificates every peer rejects.
func checkCA(c *x509.Certificate, name string, now time.Time) error {
	if !c.BasicConstraintsValid || !c.IsCA || c.KeyUsage&x509.KeyUsageCertSign == 0 {
		return fmt.Errorf("%s is not a CA certificate", name)
	}
	if now.After(c.NotAfter) {
		return fmt.Errorf("%s expired at %s; the PKI must be renewed", name, c.NotAfter.UTC().Format(time.RFC3339))
	}
	if now.Before(c.NotBefore) {
		return fmt.Errorf("%s is not valid until %s; check the system clock", name, c.NotBefore.UTC().Format(time.RFC3339))
	}
	return nil
}

// loadOrIssueServerCert loads tls.pem/tls.key, re-issuing the certificate
// if it no longer fits; callers other than LoadOrCreate hold serverMu.
func (a *Authority) loadOrIssueServerCert(now time.Time) (ServerCertReason, error) {
	p, hosts := a.serverPair, a.hosts
	state, err := p.state()
	if err != nil {
		return "", err
	}
	var key crypto.Signer
	reason := ServerCertCreated
	switch state {
	case pairPartial:
		return "", partialError(string(p.dir), p)
	case pairComplete:
		leaf, rest, k, err := p.load()
		if err != nil {
			return "", err
		}
		key = k
		reason = a.serverCertReason(leaf, rest, hosts, now)
		if reason == ServerCertKept {
			a.server = tlsCertificate(leaf, a.deviceCA, key)
			return ServerCertKept, nil
		}
	case pairAbsent:
		if key, err = newKey(curveServer); err != nil {
			return "", err
		}
	}
	leaf, err := a.issueServerCert(key.Public(), hosts, now)
	if err != nil {
		return "", err
	}
	var newKey crypto.Signer
	if state == pairAbsent {
		newKey = key
	}
	if err := p.write(leaf.Raw, [][]byte{a.deviceCA.Raw}, newKey); err != nil {
		return "", err
	}
	a.server = tlsCertificate(leaf, a.deviceCA, key)
	return reason, nil
}

func (a *Authority) serverCertReason(leaf *x509.Certificate, rest []*x509.Certificate, hosts hostSet, now time.Time) ServerCertReason {
	switch {
	case len(rest) != 1 || !rest[0].Equal(a.deviceCA) || leaf.CheckSignatureFrom(a.deviceCA) != nil:
		return ServerCertNewIssuer
	case !hosts.equal(hostsOf(leaf)):
		return ServerCertHostsChanged
	case now.Before(leaf.NotBefore):
		return ServerCertNotYetValid
	case now.Add(ServerCertRenewBefore).After(leaf.NotAfter):
		// Near the end of the device CA's life the cap keeps this true at
		// every start; re-issuing then is harmless.
		return ServerCertExpiring
	}
	return ServerCertKept
}

func tlsCertificate(leaf, deviceCA *x509.Certificate, key crypto.Signer) tls.Certificate {
	return tls.Certificate{
		Certificate: [][]byte{leaf.Raw, deviceCA.Raw},
		PrivateKey:  key,
		Leaf:        leaf,
	}
}

// partialError names every missing file of pairs that are not complete,
// and says what the operator can do about it.
func partialError(dataDir string, pairs ...pair) error {
	var missing, present []string
	for _, p := range pairs {
		for _, name := range []string{p.certName, p.keyName} {
			if p.exists(name) {
				present = append(present, name)
			} else {
				missing = append(missing, name)
			}
		}
	}
	return fmt.Errorf("%w: data dir %s has %v but is missing %v; restore the missing files from a backup, "+
		"or remove the PKI files to start over (every agent must then re-enroll)",
		ErrPartialInit, dataDir, present, missing)
}

// ErrPartialInit: some PKI files exist and others are missing.
var ErrPartialInit = errors.New("PKI partially initialized")

func pemCert(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}
