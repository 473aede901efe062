package ca

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"io"
	"math/big"
	"net"
	"net/url"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// greedyCSR asks for everything a device must not get: a CA certificate,
// other names, server auth, another subject.
func greedyCSR() *x509.CertificateRequest {
	bc, _ := asn1.Marshal(struct {
		IsCA bool `asn1:"optional"`
	}{IsCA: true})
	return &x509.CertificateRequest{
		Subject:        pkix.Name{CommonName: "admin", Organization: []string{"Evil"}},
		DNSNames:       []string{"verifier.example.com"},
		EmailAddresses: []string{"root@example.com"},
		IPAddresses:    []net.IP{net.ParseIP("10.0.0.1")},
		URIs:           []*url.URL{{Scheme: "urn", Opaque: "clearance:device:someone-else"}},
		ExtraExtensions: []pkix.Extension{
			{Id: asn1.ObjectIdentifier{2, 5, 29, 19}, Critical: true, Value: bc},
			{Id: asn1.ObjectIdentifier{1, 2, 3, 4}, Value: []byte{5, 0}},
		},
	}
}

func TestIssueDeviceCert(t *testing.T) {
	t.Parallel()
	a, _ := newAuthority(t)
	tests := []struct {
		name         string
		key          string
		lifetime     time.Duration
		wantNotAfter time.Time
	}{
		{name: "P-256 default lifetime", key: "P-256", wantNotAfter: t0.Add(30 * 24 * time.Hour)},
		{name: "P-384 one day", key: "P-384", lifetime: 24 * time.Hour, wantNotAfter: t0.Add(24 * time.Hour)},
		{name: "capped at device CA", key: "P-256", lifetime: 100 * 365 * 24 * time.Hour, wantNotAfter: a.DeviceCA().NotAfter},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			key := testKey(tt.key)
			csr := mustParseCSR(t, csrDER(t, key, greedyCSR()))
			c, err := a.IssueDeviceCert(csr, "Mac-0042", tt.lifetime)
			if err != nil {
				t.Fatalf("IssueDeviceCert: %v", err)
			}

			id, err := a.VerifyDeviceCert(c, t0)
			if err != nil || id != "Mac-0042" {
				t.Fatalf("VerifyDeviceCert = %q, %v; want Mac-0042", id, err)
			}
			if !c.PublicKey.(interface{ Equal(crypto.PublicKey) bool }).Equal(key.Public()) {
				t.Error("certificate is not for the CSR's key")
			}
			if !bytes.Equal(c.RawIssuer, a.DeviceCA().RawSubject) || c.CheckSignatureFrom(a.DeviceCA()) != nil {
				t.Error("not issued by the device CA")
			}
			if c.SerialNumber.Sign() <= 0 || c.SerialNumber.BitLen() > 128 {
				t.Errorf("serial %s is not a positive 128-bit number", c.SerialNumber)
			}
			if got := c.Subject.String(); got != "CN=Mac-0042" {
				t.Errorf("subject %q, want CN=Mac-0042 only", got)
			}
			if len(c.URIs) != 1 || c.URIs[0].String() != "urn:clearance:device:Mac-0042" {
				t.Errorf("SAN URIs %v, want exactly urn:clearance:device:Mac-0042", c.URIs)
			}
			if len(c.DNSNames)+len(c.EmailAddresses)+len(c.IPAddresses) != 0 {
				t.Errorf("CSR's names leaked into the certificate: %v %v %v", c.DNSNames, c.EmailAddresses, c.IPAddresses)
			}
			if c.IsCA || !c.BasicConstraintsValid {
				t.Errorf("basic constraints valid=%v CA=%v, want a valid non-CA constraint", c.BasicConstraintsValid, c.IsCA)
			}
			if c.KeyUsage != x509.KeyUsageDigitalSignature {
				t.Errorf("key usage %v, want DigitalSignature only", c.KeyUsage)
			}
			if !slices.Equal(c.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}) || len(c.UnknownExtKeyUsage) != 0 {
				t.Errorf("ext key usage %v %v, want ClientAuth only", c.ExtKeyUsage, c.UnknownExtKeyUsage)
			}
			for _, ext := range c.Extensions {
				if ext.Id.Equal(asn1.ObjectIdentifier{1, 2, 3, 4}) {
					t.Error("CSR's extra extension copied into the certificate")
				}
			}
			if !c.NotBefore.Equal(t0.Add(-Backdate)) {
				t.Errorf("NotBefore %s, want Backdate before %s", c.NotBefore, t0)
			}
			if !c.NotAfter.Equal(tt.wantNotAfter) {
				t.Errorf("NotAfter %s, want %s", c.NotAfter, tt.wantNotAfter)
			}
		})
	}

	t.Run("serials differ", func(t *testing.T) {
		t.Parallel()
		csr := mustParseCSR(t, csrDER(t, testKey("P-256"), nil))
		seen := map[string]bool{}
		for range 20 {
			c, err := a.IssueDeviceCert(csr, "dev", 0)
			if err != nil {
				t.Fatal(err)
			}
			if seen[SerialHex(c)] {
				t.Fatalf("serial %s issued twice", SerialHex(c))
			}
			seen[SerialHex(c)] = true
		}
	})
}

func TestIssueDeviceCertRefuses(t *testing.T) {
	t.Parallel()
	a, _ := newAuthority(t)
	good := mustParseCSR(t, csrDER(t, testKey("P-256"), nil))
	rsaCSR, err := x509.ParseCertificateRequest(csrDER(t, testKey("RSA"), nil))
	if err != nil {
		t.Fatal(err)
	}
	sha1CSR, err := x509.ParseCertificateRequest(csrDER(t, testKey("P-256"), &x509.CertificateRequest{SignatureAlgorithm: x509.ECDSAWithSHA1}))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		csr      *x509.CertificateRequest
		id       string
		lifetime time.Duration
		wantErr  error
		wantMsg  string
	}{
		{name: "empty id", csr: good, id: "", wantMsg: "invalid device id"},
		{name: "id with space", csr: good, id: "a b", wantMsg: "invalid device id"},
		{name: "id with slash", csr: good, id: "a/b", wantMsg: "invalid device id"},
		{name: "id with colon", csr: good, id: "a:b", wantMsg: "invalid device id"},
		{name: "non-ASCII id", csr: good, id: "gerät", wantMsg: "invalid device id"},
		{name: "id too long", csr: good, id: strings.Repeat("a", 65), wantMsg: "invalid device id"},
		{name: "no CSR", csr: nil, id: "dev", wantMsg: "no CSR"},
		{name: "negative lifetime", csr: good, id: "dev", lifetime: -time.Hour, wantMsg: "negative lifetime"},
		{name: "RSA CSR that skipped ParseCSR", csr: rsaCSR, id: "dev", wantErr: ErrCSRKeyType},
		{name: "SHA-1 CSR that skipped ParseCSR", csr: sha1CSR, id: "dev", wantErr: ErrCSRSignature},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, err := a.IssueDeviceCert(tt.csr, tt.id, tt.lifetime)
			if err == nil {
				t.Fatalf("IssueDeviceCert issued %v", c.Subject)
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("error = %v, want %v", err, tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("error %q does not say %q", err, tt.wantMsg)
			}
		})
	}
	if _, err := a.IssueDeviceCert(good, strings.Repeat("a", 64), 0); err != nil {
		t.Errorf("64-character id refused: %v", err)
	}
}

func TestIssueDeviceCertAfterDeviceCAExpiry(t *testing.T) {
	t.Parallel()
	a, _ := newAuthority(t)
	a.now = clock(a.DeviceCA().NotAfter.Add(time.Second))
	_, err := a.IssueDeviceCert(mustParseCSR(t, csrDER(t, testKey("P-256"), nil)), "dev", 0)
	if err == nil || !strings.Contains(err.Error(), "device CA expired") {
		t.Errorf("error = %v, want device CA expired", err)
	}
}

// signWith issues a certificate from template with the given issuer and key,
// bypassing IssueDeviceCert, to build certificates it would never issue.
func signWith(t *testing.T, template, issuer *x509.Certificate, issuerKey crypto.Signer) *x509.Certificate {
	t.Helper()
	if template.SerialNumber == nil {
		template.SerialNumber = big.NewInt(7)
	}
	c, err := createCert(template, issuer, testKey("P-256").Public(), issuerKey)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestVerifyDeviceCert(t *testing.T) {
	t.Parallel()
	a, dir := newAuthority(t)
	foreign, _ := newAuthority(t)
	csr := mustParseCSR(t, csrDER(t, testKey("P-256"), nil))
	issue := func(a *Authority, id string) *x509.Certificate {
		c, err := a.IssueDeviceCert(csr, id, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	good := issue(a, "dev-1")
	rootKey, err := readKey(filepath.Join(dir, RootKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	clientTemplate := func(uris ...string) *x509.Certificate {
		tmpl := &x509.Certificate{
			Subject:     pkix.Name{CommonName: "dev-1"},
			NotBefore:   t0.Add(-time.Minute),
			NotAfter:    t0.Add(time.Hour),
			KeyUsage:    x509.KeyUsageDigitalSignature,
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		}
		for _, u := range uris {
			parsed, err := url.Parse(u)
			if err != nil {
				t.Fatal(err)
			}
			tmpl.URIs = append(tmpl.URIs, parsed)
		}
		return tmpl
	}
	fromDeviceCA := func(uris ...string) *x509.Certificate {
		return signWith(t, clientTemplate(uris...), a.DeviceCA(), a.deviceKey)
	}
	serverAuthOnly := clientTemplate(DeviceURI("dev-1"))
	serverAuthOnly.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}

	tests := []struct {
		name    string
		cert    *x509.Certificate
		now     time.Time
		wantID  string
		wantErr error
		wantMsg string
	}{
		{name: "valid", cert: good, now: t0, wantID: "dev-1"},
		{name: "valid near the end", cert: good, now: t0.Add(time.Hour), wantID: "dev-1"},
		{name: "valid within clock skew", cert: good, now: t0.Add(-Backdate + time.Second), wantID: "dev-1"},
		{name: "expired", cert: good, now: t0.Add(time.Hour + time.Second), wantErr: ErrCertExpired, wantMsg: "expired at 2031-03-14T10:26:53Z"},
		{name: "not yet valid", cert: good, now: t0.Add(-Backdate - time.Minute), wantErr: ErrCertNotYetValid, wantMsg: "valid from 2031-03-14T08:26:53Z"},
		{name: "foreign CA", cert: issue(foreign, "dev-1"), now: t0, wantErr: ErrCertUntrusted},
		{name: "issued by the root directly", cert: signWith(t, clientTemplate(DeviceURI("dev-1")), a.Root(), rootKey), now: t0, wantErr: ErrCertUntrusted},
		{name: "self-signed", cert: selfSigned(t, clientTemplate(DeviceURI("dev-1"))), now: t0, wantErr: ErrCertUntrusted},
		{name: "server auth only", cert: signWith(t, serverAuthOnly, a.DeviceCA(), a.deviceKey), now: t0, wantErr: ErrCertUntrusted},
		{name: "the verifier's own server cert", cert: a.ServerCertificate().Leaf, now: t0, wantErr: ErrCertUntrusted},
		{name: "nil", cert: nil, now: t0, wantErr: ErrCertUntrusted},
		{name: "no SAN", cert: fromDeviceCA(), now: t0, wantErr: ErrCertNoDeviceID, wantMsg: "got 0"},
		{name: "two SAN URIs", cert: fromDeviceCA(DeviceURI("a"), DeviceURI("b")), now: t0, wantErr: ErrCertNoDeviceID, wantMsg: "got 2"},
		{name: "other URN", cert: fromDeviceCA("urn:device:apple:uuid:1234"), now: t0, wantErr: ErrCertNoDeviceID},
		{name: "https URI", cert: fromDeviceCA("https://clearance.example/device/abc"), now: t0, wantErr: ErrCertNoDeviceID},
		{name: "empty id", cert: fromDeviceCA("urn:clearance:device:"), now: t0, wantErr: ErrCertNoDeviceID},
		{name: "id with query", cert: fromDeviceCA("urn:clearance:device:abc?x=1"), now: t0, wantErr: ErrCertNoDeviceID},
		{name: "id with fragment", cert: fromDeviceCA("urn:clearance:device:abc#x"), now: t0, wantErr: ErrCertNoDeviceID},
		{name: "id with colon", cert: fromDeviceCA("urn:clearance:device:abc:def"), now: t0, wantErr: ErrCertNoDeviceID},
		{name: "id too long", cert: fromDeviceCA(DeviceURI(strings.Repeat("x", 65))), now: t0, wantErr: ErrCertNoDeviceID},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			id, err := a.VerifyDeviceCert(tt.cert, tt.now)
			if tt.wantErr == nil {
				if err != nil || id != tt.wantID {
					t.Fatalf("VerifyDeviceCert = %q, %v; want %q", id, err, tt.wantID)
				}
				return
			}
			t.Logf("error: %v", err)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("VerifyDeviceCert error = %v, want %v", err, tt.wantErr)
			}
			for _, other := range []error{ErrCertExpired, ErrCertNotYetValid, ErrCertUntrusted, ErrCertNoDeviceID} {
				if other != tt.wantErr && errors.Is(err, other) {
					t.Errorf("error %v also matches %v", err, other)
				}
			}
			if id != "" {
				t.Errorf("returned id %q with an error", id)
			}
			if !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("error %q does not say %q", err, tt.wantMsg)
			}
		})
	}
}

func selfSigned(t *testing.T, template *x509.Certificate) *x509.Certificate {
	t.Helper()
	template.SerialNumber = big.NewInt(9)
	k := testKey("P-256")
	c, err := createCert(template, nil, k.Public(), k)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestDeviceURI(t *testing.T) {
	t.Parallel()
	if got := DeviceURI("abc-1"); got != "urn:clearance:device:abc-1" {
		t.Errorf("DeviceURI = %q", got)
	}
}

func TestSerial(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		rand io.Reader
		want string
	}{
		// An all-zero draw is not a valid serial; the next one is used.
		{name: "retries zero", rand: io.MultiReader(bytes.NewReader(make([]byte, 16)), bytes.NewReader(bytes.Repeat([]byte{0xff}, 16))), want: strings.Repeat("f", 32)},
		{name: "leading zero byte", rand: bytes.NewReader(append([]byte{0}, bytes.Repeat([]byte{1}, 15)...)), want: strings.Repeat("01", 15)[1:]},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			a := &Authority{rand: tt.rand}
			n, err := a.serial()
			if err != nil {
				t.Fatal(err)
			}
			if got := n.Text(16); got != tt.want {
				t.Errorf("serial %s, want %s", got, tt.want)
			}
		})
	}
	t.Run("short reader", func(t *testing.T) {
		t.Parallel()
		a := &Authority{rand: bytes.NewReader(make([]byte, 5))}
		if _, err := a.serial(); err == nil {
			t.Error("serial from a 5-byte reader succeeded")
		}
	})
	t.Run("Options.Rand is used", func(t *testing.T) {
		t.Parallel()
		_, err := LoadOrCreate(t.TempDir(), Options{Hosts: testHosts, Rand: rand.Reader})
		if err != nil {
			t.Fatal(err)
		}
		_, err = LoadOrCreate(t.TempDir(), Options{Hosts: testHosts, Rand: bytes.NewReader(nil)})
		if err == nil || !strings.Contains(err.Error(), "serial") {
			t.Errorf("LoadOrCreate with an empty Rand: %v, want a serial number error", err)
		}
	})
}

// A leaf whose chain verified is not verified again, but both validity
// periods still are, and nothing the device CA did not sign gets in.
func TestVerifiedChains(t *testing.T) {
	a, dir := newAuthority(t)
	foreign, _ := newAuthority(t)
	csr := mustParseCSR(t, csrDER(t, testKey("P-256"), nil))
	good, err := a.IssueDeviceCert(csr, "dev-1", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cached := func() int {
		a.chains.mu.Lock()
		defer a.chains.mu.Unlock()
		return len(a.chains.m)
	}
	for range 2 {
		if err := a.VerifyClientCert(good, t0); err != nil {
			t.Fatal(err)
		}
	}
	if n := cached(); n != 1 {
		t.Fatalf("%d chains remembered after one good leaf, want 1", n)
	}
	if err := a.VerifyClientCert(good, t0.Add(time.Hour+time.Second)); !errors.Is(err, ErrCertExpired) {
		t.Errorf("a remembered leaf past its end: %v, want ErrCertExpired", err)
	}

	// Refused chains are not remembered.
	rootKey, err := readKey(filepath.Join(dir, RootKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		Subject: pkix.Name{CommonName: "dev-1"}, URIs: []*url.URL{{Scheme: "urn", Opaque: "clearance:device:dev-1"}},
		NotBefore: t0.Add(-time.Minute), NotAfter: t0.Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	foreignLeaf, err := foreign.IssueDeviceCert(csr, "dev-1", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []*x509.Certificate{foreignLeaf, signWith(t, tmpl, a.Root(), rootKey), selfSigned(t, tmpl)} {
		for range 2 {
			if err := a.VerifyClientCert(c, t0); !errors.Is(err, ErrCertUntrusted) {
				t.Errorf("%s: %v, want ErrCertUntrusted", c.Issuer, err)
			}
		}
	}
	if n := cached(); n != 1 {
		t.Fatalf("%d chains remembered after refusals, want 1", n)
	}

	// A remembered leaf that outlives the device CA is refused once the
	// CA has expired.
	long := *tmpl
	long.NotAfter = a.DeviceCA().NotAfter.Add(time.Hour)
	outliving := signWith(t, &long, a.DeviceCA(), a.deviceKey)
	if err := a.VerifyClientCert(outliving, t0); err != nil {
		t.Fatal(err)
	}
	if err := a.VerifyClientCert(outliving, a.DeviceCA().NotAfter.Add(time.Minute)); !errors.Is(err, ErrCertUntrusted) {
		t.Errorf("a remembered leaf after its CA's end: %v, want ErrCertUntrusted", err)
	}

	// Bounded: full, it starts again.
	for i := range maxVerifiedChains {
		a.chains.add(sha256.Sum256([]byte(strconv.Itoa(i))))
	}
	if n := cached(); n > maxVerifiedChains {
		t.Fatalf("%d chains remembered, bound %d", n, maxVerifiedChains)
	}
}

// What the set remembers is what VerifyClientCert trusts without Verify, so
// the set is consulted, the device CA's validity period is checked on both
// sides, and a cleared set trusts only what verifies again.
func TestVerifiedChainsLookup(t *testing.T) {
	a, good, other := twoDeviceCAs(t)

	// A key in the set is taken as a verified chain: here one planted for
	// a leaf from another device CA, which Verify alone would refuse.
	if err := a.VerifyClientCert(other, t0); !errors.Is(err, ErrCertUntrusted) {
		t.Fatalf("foreign leaf: %v, want ErrCertUntrusted", err)
	}
	a.chains.add(sha256.Sum256(other.Raw))
	if err := a.VerifyClientCert(other, t0); err != nil {
		t.Fatalf("a remembered leaf was verified again: %v", err)
	}

	// The device CA's start, as well as its end, is checked for a
	// remembered leaf: one that claims to start before its CA is refused
	// before the CA starts, remembered or not.
	ca := a.DeviceCA()
	early := &x509.Certificate{
		Subject: pkix.Name{CommonName: "dev-2"}, URIs: []*url.URL{{Scheme: "urn", Opaque: "clearance:device:dev-2"}},
		NotBefore: ca.NotBefore.Add(-time.Hour), NotAfter: t0.Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	early = signWith(t, early, ca, a.deviceKey)
	if err := a.VerifyClientCert(early, t0); err != nil {
		t.Fatal(err)
	}
	if err := a.VerifyClientCert(early, ca.NotBefore.Add(-time.Minute)); !errors.Is(err, ErrCertUntrusted) {
		t.Errorf("a remembered leaf before its CA's start: %v, want ErrCertUntrusted", err)
	}
	if err := a.VerifyClientCert(early, ca.NotBefore); err != nil {
		t.Errorf("a remembered leaf at its CA's start: %v", err)
	}

	// Cleared, the set forgets the planted key, and the good leaf still
	// verifies and is remembered again.
	if err := a.VerifyClientCert(good, t0); err != nil {
		t.Fatal(err)
	}
	for i := range maxVerifiedChains {
		a.chains.add(sha256.Sum256([]byte(strconv.Itoa(i))))
	}
	if a.chains.has(sha256.Sum256(other.Raw)) || a.chains.has(sha256.Sum256(good.Raw)) {
		t.Fatal("a full set was not cleared")
	}
	if err := a.VerifyClientCert(other, t0); !errors.Is(err, ErrCertUntrusted) {
		t.Errorf("foreign leaf after the clear: %v, want ErrCertUntrusted", err)
	}
	if err := a.VerifyClientCert(good, t0); err != nil {
		t.Errorf("good leaf after the clear: %v", err)
	}
	if !a.chains.has(sha256.Sum256(good.Raw)) {
		t.Error("good leaf not remembered after the clear")
	}
}

// Concurrent callers (run with -race) get the same answers while the set
// fills and clears under them.
func TestVerifiedChainsConcurrent(t *testing.T) {
	a, good, other := twoDeviceCAs(t)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				if err := a.VerifyClientCert(good, t0); err != nil {
					t.Errorf("good leaf: %v", err)
					return
				}
				if err := a.VerifyClientCert(other, t0); !errors.Is(err, ErrCertUntrusted) {
					t.Errorf("foreign leaf: %v, want ErrCertUntrusted", err)
					return
				}
				if err := a.VerifyClientCert(good, t0.Add(2*time.Hour)); !errors.Is(err, ErrCertExpired) {
					t.Errorf("expired leaf: %v, want ErrCertExpired", err)
					return
				}
				for j := range 400 {
					a.chains.add(sha256.Sum256([]byte(strconv.Itoa(g<<24 | i<<12 | j))))
				}
			}
		}()
	}
	wg.Wait()
}

// twoDeviceCAs is an authority, a leaf its device CA issued and one another
// authority's issued for the same device.
func twoDeviceCAs(t *testing.T) (a *Authority, good, other *x509.Certificate) {
	t.Helper()
	a, _ = newAuthority(t)
	foreign, _ := newAuthority(t)
	csr := mustParseCSR(t, csrDER(t, testKey("P-256"), nil))
	var err error
	if good, err = a.IssueDeviceCert(csr, "dev-1", time.Hour); err != nil {
		t.Fatal(err)
	}
	if other, err = foreign.IssueDeviceCert(csr, "dev-1", time.Hour); err != nil {
		t.Fatal(err)
	}
	return a, good, other
}
