package signin

import (
	"crypto/x509"
	"encoding/pem"
	"net/url"
	"strings"
	"testing"

	"github.com/clearance/clearance/internal/testkit/testpki"
)

func testCert(t testing.TB) *x509.Certificate {
	t.Helper()
	return testpki.SelfSigned(t, testpki.CN("browser"), testpki.Serial(7)).Cert
}

func TestParseCertHeader(t *testing.T) {
	t.Parallel()
	cert := testCert(t)
	p := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}))
	for name, v := range map[string]string{
		"query escaped":   url.QueryEscape(p),
		"path escaped":    url.PathEscape(p),
		"one line":        strings.ReplaceAll(p, "\n", " "),
		"plus for spaces": strings.ReplaceAll(url.QueryEscape(p), "%0A", "+"),
	} {
		c, err := ParseCertHeader(v)
		if err != nil || !c.Equal(cert) {
			t.Errorf("%s: %v", name, err)
		}
	}
	for name, v := range map[string]string{
		"empty":     "",
		"oversized": strings.Repeat("A", MaxCertHeader+1),
		"not pem":   "hello",
		"two":       url.QueryEscape(p + p),
		"key":       url.QueryEscape(strings.ReplaceAll(p, "CERTIFICATE", "PRIVATE KEY")),
		"garbage":   url.QueryEscape("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"),
		"bad esc":   "%zz",
		"trailing":  url.QueryEscape(p + "junk"),
	} {
		if _, err := ParseCertHeader(v); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func FuzzParseCertHeader(f *testing.F) {
	cert := testCert(f)
	p := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}))
	f.Add(url.QueryEscape(p))
	f.Add(strings.ReplaceAll(p, "\n", " "))
	f.Add("%")
	f.Fuzz(func(t *testing.T, v string) {
		c, err := ParseCertHeader(v)
		if err == nil && c == nil {
			t.Fatal("nil certificate without error")
		}
	})
}
