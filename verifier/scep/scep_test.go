package scep_test

import (
	"context"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"maps"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/clearance/clearance/internal/testkit"
	"github.com/clearance/clearance/verifier/ca"
	"github.com/clearance/clearance/verifier/scep"
	"github.com/clearance/clearance/verifier/storage"
)

// mac is one scepclient working dir: key.pem and csr.pem made by openssl
// (scepclient reuses an existing CSR, and cannot put a SAN URI or a
// challengePassword in one of its own), client.pem where it writes the
// certificate.
type mac struct {
	dir string
}

type csrSpec struct {
	bits      int
	cn        string
	san       string // the subjectAltName value for openssl, "" for none
	challenge string
}

func uuidSAN(uuid string) string { return "URI:" + ca.HardwareURIPrefix + uuid }

func newMac(t *testing.T, spec csrSpec) *mac {
	t.Helper()
	m := &mac{dir: t.TempDir()}
	openssl := testkit.RequireTool(t, "openssl")
	run := func(args ...string) {
		t.Helper()
		out, err := exec.Command(openssl, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("openssl %v: %v\n%s", args, err, out)
		}
	}
	// scepclient reads only PKCS#1 ("RSA PRIVATE KEY").
	run("genrsa", "-traditional", "-out", m.path("key.pem"), fmt.Sprint(spec.bits))
	cnf := "[req]\nprompt = no\ndistinguished_name = dn\n"
	if spec.challenge != "" {
		cnf += "attributes = attrs\n"
	}
	if spec.san != "" {
		cnf += "req_extensions = ext\n"
	}
	cnf += "[dn]\nCN = " + spec.cn + "\n"
	if spec.challenge != "" {
		cnf += "[attrs]\nchallengePassword = " + spec.challenge + "\n"
	}
	if spec.san != "" {
		cnf += "[ext]\nsubjectAltName = " + spec.san + "\n"
	}
	if err := os.WriteFile(m.path("req.cnf"), []byte(cnf), 0o600); err != nil {
		t.Fatal(err)
	}
	run("req", "-new", "-sha256", "-key", m.path("key.pem"), "-config", m.path("req.cnf"), "-out", m.path("csr.pem"))
	return m
}

func (m *mac) path(name string) string { return filepath.Join(m.dir, name) }

// enroll runs scepclient against the endpoint over HTTPS, trusting the
// test PKI's root (ca.pem) through SSL_CERT_FILE. -key-encipherment-selector
// makes it encrypt to the RA only: the device CA and root are ECDSA, and
// it would otherwise try (and fail) to encrypt to every certificate.
func (m *mac) enroll(t *testing.T, e *testEnv) (string, error) {
	t.Helper()
	// The pinned scepclient is the independent client, the proof that a
	// real one enrolls here: missing, it fails the test rather than skips.
	cmd := exec.Command(testkit.RequireTool(t, "scepclient"),
		"-server-url", e.url(),
		"-private-key", m.path("key.pem"),
		"-certificate", m.path("client.pem"),
		"-key-encipherment-selector",
	)
	cmd.Env = append(os.Environ(), "SSL_CERT_FILE="+filepath.Join(e.dir, ca.RootCertFile))
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func (m *mac) cert(t *testing.T) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(m.path("client.pem"))
	if err != nil {
		t.Fatalf("no certificate: %v", err)
	}
	block, _ := pem.Decode(b)
	if block == nil {
		t.Fatal("client.pem holds no PEM")
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func (m *mac) publicKey(t *testing.T) *rsa.PublicKey {
	t.Helper()
	b, err := os.ReadFile(m.path("key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(b)
	k, err := x509.ParsePKCS1PrivateKey(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return &k.PublicKey
}

// checkIssued asserts what the Mac and the SSO side will rely on.
func checkIssued(t *testing.T, e *testEnv, m *mac, uuid string) *x509.Certificate {
	t.Helper()
	c := m.cert(t)
	if len(c.URIs) != 1 || c.URIs[0].String() != ca.HardwareURIPrefix+uuid {
		t.Errorf("SAN URIs = %v, want [%s%s]", c.URIs, ca.HardwareURIPrefix, uuid)
	}
	if len(c.DNSNames)+len(c.EmailAddresses)+len(c.IPAddresses) != 0 {
		t.Errorf("other SANs: %v %v %v", c.DNSNames, c.EmailAddresses, c.IPAddresses)
	}
	if len(c.ExtKeyUsage) != 1 || c.ExtKeyUsage[0] != x509.ExtKeyUsageClientAuth {
		t.Errorf("EKU = %v, want client auth only", c.ExtKeyUsage)
	}
	if got, err := ca.HardwareUUIDFromCert(c); err != nil || got != uuid {
		t.Errorf("HardwareUUIDFromCert = %q, %v", got, err)
	}
	if !m.publicKey(t).Equal(c.PublicKey) {
		t.Error("certificate is not for the Mac's key")
	}
	// Random 128-bit serials: one of 64 bits or fewer happens once in 2^64.
	if c.SerialNumber.Sign() <= 0 || c.SerialNumber.BitLen() <= 64 || c.SerialNumber.BitLen() > 128 {
		t.Errorf("serial %s (%d bits) is not a random 128-bit serial", c.SerialNumber.Text(16), c.SerialNumber.BitLen())
	}
	inter := x509.NewCertPool()
	inter.AddCert(e.ca.DeviceCA())
	if _, err := c.Verify(x509.VerifyOptions{Roots: e.ca.RootPool(), Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("certificate does not chain to ca.pem for client auth: %v", err)
	}
	rec, err := e.store.GetBrowserCert(context.Background(), ca.SerialHex(c))
	if err != nil {
		t.Fatalf("GetBrowserCert: %v", err)
	}
	fp := sha1.Sum(c.Raw)
	switch {
	case rec.Kind != storage.CertKindBrowser, rec.DeviceID != e.devices[uuid].ID, rec.HardwareUUID != uuid,
		rec.SHA1 != hex.EncodeToString(fp[:]), string(rec.DER) != string(c.Raw), rec.RevokedAt(time.Now()):
		t.Errorf("recorded %+v, want the issued certificate for %s", rec, e.devices[uuid].ID)
	}
	return c
}

// TestSCEPClient enrolls and is refused with the independent micromdm
// scepclient (v2.3.0) over HTTPS.
func TestSCEPClient(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	csr := func(uuid, challenge string) csrSpec {
		return csrSpec{bits: 2048, cn: "Clearance browser", san: uuidSAN(uuid), challenge: challenge}
	}

	var serials []*big.Int
	t.Run("static challenge", func(t *testing.T) {
		m := newMac(t, csr(macA, staticChallenge))
		if out, err := m.enroll(t, e); err != nil {
			t.Fatalf("scepclient: %v\n%s", err, out)
		}
		serials = append(serials, checkIssued(t, e, m, macA).SerialNumber)
		if e.metrics.issuedCount() != 1 {
			t.Errorf("issued metric = %d, want 1", e.metrics.issuedCount())
		}
	})

	oneTime := e.newOneTimeChallenge(t, time.Now().Add(time.Hour))
	t.Run("one-time challenge", func(t *testing.T) {
		m := newMac(t, csr(macA, oneTime))
		if out, err := m.enroll(t, e); err != nil {
			t.Fatalf("scepclient: %v\n%s", err, out)
		}
		c := checkIssued(t, e, m, macA)
		serials = append(serials, c.SerialNumber)
		if e.challengeUsable(t, oneTime) {
			t.Error("one-time challenge still usable after the enrollment")
		}
		// Issuing takes nothing from the Mac's older certificate: anyone
		// with the challenge can have one issued for its UUID. Only the
		// Mac's agent reporting the newer one starts the grace period.
		certs, err := e.store.ListBrowserCerts(ctx, e.devices[macA].ID)
		if err != nil || len(certs) != 2 {
			t.Fatalf("ListBrowserCerts = %d, %v; want 2", len(certs), err)
		}
		for _, bc := range certs {
			if !bc.RevokeAfter.IsZero() {
				t.Errorf("certificate %s has RevokeAfter %v after an issuance; want none superseded", bc.Serial, bc.RevokeAfter)
			}
		}
	})
	if len(serials) == 2 && serials[0].Cmp(serials[1]) == 0 {
		t.Error("two certificates got the same serial")
	}

	t.Run("rate limit", func(t *testing.T) {
		for i := range rateLimit {
			m := newMac(t, csr(macRate, staticChallenge))
			if out, err := m.enroll(t, e); err != nil {
				t.Fatalf("enrollment %d within the limit: %v\n%s", i+1, err, out)
			}
		}
		refused(t, e, newMac(t, csr(macRate, staticChallenge)), "rate_limited")
	})

	for _, tc := range []struct {
		name   string
		spec   csrSpec
		reason string
	}{
		{"wrong challenge", csr(macA, "not-the-challenge-0123456789"), "bad_challenge"},
		{"no challenge", csr(macA, ""), "bad_challenge"},
		{"reused one-time challenge", csr(macA, oneTime), "bad_challenge"},
		{"missing SAN", csrSpec{bits: 2048, cn: "Clearance browser", challenge: staticChallenge}, "csr_san"},
		{"DNS SAN beside the URI", csrSpec{bits: 2048, cn: "x", san: uuidSAN(macA) + ",DNS:mac.example.com", challenge: staticChallenge}, "csr_san"},
		{"RSA 1024", csrSpec{bits: 1024, cn: "x", san: uuidSAN(macA), challenge: staticChallenge}, "csr_key"},
		{"unknown hardware UUID", csr(macUnknown, staticChallenge), "unknown_device"},
		{"revoked device", csr(macRevoked, staticChallenge), "device_revoked"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			refused(t, e, newMac(t, tc.spec), tc.reason)
		})
	}
}

// refused asserts a SCEP FAILURE (badRequest) that scepclient reads as
// such, no certificate, nothing recorded, and the reason in the metrics.
// countGate holds each rate-limit read until n have been made (or a few
// seconds have passed), so that n requests for one Mac all pass the read
// before any certificate is recorded.
type countGate struct {
	scep.Store
	n       int32
	seen    atomic.Int32
	arrived chan struct{}
}

func (g *countGate) CountBrowserCertsSince(ctx context.Context, deviceID string, since time.Time) (int, error) {
	n, err := g.Store.CountBrowserCertsSince(ctx, deviceID, since)
	if g.seen.Add(1) == g.n {
		close(g.arrived)
	}
	select {
	case <-g.arrived:
	case <-time.After(10 * time.Second):
	}
	return n, err
}

// Requests for one Mac that pass the rate limit's read together are
// counted again as each certificate is recorded, behind the device row's
// lock: no more than the limit are issued however many come at once, and
// the rest are refused as rate_limited with nothing stored.
func TestRateLimitHoldsForConcurrentRequests(t *testing.T) {
	const n = 6
	gate := &countGate{n: n, arrived: make(chan struct{})}
	e := newEnv(t, func(s scep.Store) scep.Store { gate.Store = s; return gate })
	macs := make([]*mac, n)
	for i := range macs {
		macs[i] = newMac(t, csrSpec{bits: 2048, cn: "Clearance browser", san: uuidSAN(macRate), challenge: staticChallenge})
	}
	outs, errs := make([]string, n), make([]error, n)
	var wg sync.WaitGroup
	for i, m := range macs {
		wg.Go(func() { outs[i], errs[i] = m.enroll(t, e) })
	}
	wg.Wait()
	issued := 0
	for i, err := range errs {
		switch {
		case err == nil:
			issued++
		case !strings.Contains(outs[i], "request failed, failInfo: badRequest"):
			t.Errorf("request %d: %v, want a certificate or a SCEP badRequest\n%s", i, err, outs[i])
		}
	}
	certs, err := e.store.ListBrowserCerts(context.Background(), e.devices[macRate].ID)
	if err != nil {
		t.Fatal(err)
	}
	if issued != rateLimit || len(certs) != rateLimit {
		t.Errorf("%d of %d concurrent requests got a certificate, %d are stored; want %d (the limit)", issued, n, len(certs), rateLimit)
	}
	e.metrics.mu.Lock()
	got := e.metrics.refused["rate_limited"]
	e.metrics.mu.Unlock()
	if got != n-rateLimit {
		t.Errorf("%d refused as rate_limited, want %d", got, n-rateLimit)
	}
}

func refused(t *testing.T, e *testEnv, m *mac, reason string) {
	t.Helper()
	before := e.certCounts(t)
	out, err := m.enroll(t, e)
	var exit *exec.ExitError
	if !errors.As(err, &exit) {
		t.Fatalf("scepclient: err = %v, want a failure exit\n%s", err, out)
	}
	if !strings.Contains(out, "request failed, failInfo: badRequest") {
		t.Errorf("scepclient output does not show a SCEP badRequest failure:\n%s", out)
	}
	if _, err := os.Stat(m.path("client.pem")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a certificate arrived: %v", err)
	}
	if after := e.certCounts(t); !maps.Equal(before, after) {
		t.Errorf("browser certificates changed: %v -> %v", before, after)
	}
	if got := e.metrics.lastRefusal(); got != reason {
		t.Errorf("refusal reason = %q, want %q", got, reason)
	}
}
