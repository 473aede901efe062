package testpki_test

import (
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/clearance/clearance/internal/testkit/testpki"
)

// TestChains: what a TLS peer or a device would check of each kind of
// certificate: the good ones verify to their root, the bad ones do not.
func TestChains(t *testing.T) {
	t.Parallel()
	root := testpki.NewCA(t)
	inter := root.NewIntermediate(t, testpki.CN("Device CA"))
	server := inter.Issue(t, testpki.CN("verifier"), testpki.ServerAuth(),
		testpki.DNS("localhost"), testpki.IPs(net.IPv6loopback, net.IPv4(127, 0, 0, 1)))
	client := inter.Issue(t, testpki.ClientAuth(), testpki.URIs("urn:device:apple:uuid:0A1B"), testpki.Serial(7))
	expired := inter.Issue(t, testpki.ClientAuth(), testpki.Expired())
	early := inter.Issue(t, testpki.ClientAuth(), testpki.NotYetValid())
	stranger := testpki.NewCA(t).Issue(t, testpki.ClientAuth())

	intermediates := x509.NewCertPool()
	intermediates.AddCert(inter.Cert)
	verify := func(c *testpki.Identity, usage x509.ExtKeyUsage, dns string) error {
		_, err := c.Cert.Verify(x509.VerifyOptions{Roots: root.Pool(), Intermediates: intermediates,
			KeyUsages: []x509.ExtKeyUsage{usage}, DNSName: dns})
		return err
	}
	for name, tc := range map[string]struct {
		c       *testpki.Identity
		usage   x509.ExtKeyUsage
		dns     string
		wantErr string
	}{
		"server":        {server, x509.ExtKeyUsageServerAuth, "localhost", ""},
		"server by IP":  {server, x509.ExtKeyUsageServerAuth, "127.0.0.1", ""},
		"wrong name":    {server, x509.ExtKeyUsageServerAuth, "example.com", "valid for"},
		"client":        {client, x509.ExtKeyUsageClientAuth, "", ""},
		"client as srv": {client, x509.ExtKeyUsageServerAuth, "", "incompatible key usage"},
		"expired":       {expired, x509.ExtKeyUsageClientAuth, "", "expired"},
		"not yet valid": {early, x509.ExtKeyUsageClientAuth, "", "not yet valid"},
		"wrong CA":      {stranger, x509.ExtKeyUsageClientAuth, "", "unknown authority"},
	} {
		err := verify(tc.c, tc.usage, tc.dns)
		if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
			t.Errorf("%s: %v, want %q", name, err, tc.wantErr)
		}
	}
	if got := client.Cert.SerialNumber.Int64(); got != 7 {
		t.Errorf("serial %d, want 7", got)
	}
	if len(client.Chain) != 2 || client.Chain[0] != inter.Cert || client.Chain[1] != root.Cert {
		t.Errorf("chain %v, want the intermediate then the root", client.Chain)
	}
	// A TLS peer sends the leaf and intermediate, not the root.
	if got := server.TLS(); len(got.Certificate) != 2 || got.Leaf != server.Cert {
		t.Errorf("TLS chain has %d certificates", len(got.Certificate))
	}
	if _, err := tls.X509KeyPair(server.CertPEM(), server.KeyPEM(t)); err != nil {
		t.Errorf("PEM pair: %v", err)
	}
}

func TestSelfSigned(t *testing.T) {
	t.Parallel()
	key := testpki.RSAKey(t)
	when := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	c := testpki.SelfSigned(t, testpki.CN("okta"), testpki.Key(key), testpki.Valid(when, when.Add(time.Hour)))
	if c.Key != key || c.Cert.Subject.CommonName != "okta" || !c.Cert.NotBefore.Equal(when) || len(c.Chain) != 0 {
		t.Errorf("got %+v", c.Cert)
	}
	if err := c.Cert.CheckSignature(c.Cert.SignatureAlgorithm, c.Cert.RawTBSCertificate, c.Cert.Signature); err != nil {
		t.Errorf("self signature: %v", err)
	}
	browser := testpki.NewCA(t).Issue(t, testpki.MacBrowser("0A1B"))
	if _, ok := browser.Key.(*rsa.PrivateKey); !ok || browser.Cert.URIs[0].String() != "urn:device:apple:uuid:0A1B" ||
		browser.Cert.KeyUsage != x509.KeyUsageDigitalSignature|x509.KeyUsageKeyEncipherment {
		t.Errorf("Mac browser certificate: %T key, %v, key usage %b", browser.Key, browser.Cert.URIs, browser.Cert.KeyUsage)
	}
	if got := c.TLS(); len(got.Certificate) != 1 {
		t.Errorf("TLS chain has %d certificates, want the leaf alone", len(got.Certificate))
	}
}
