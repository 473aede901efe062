package certpem_test

import (
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/pem"
	"strings"
	"testing"

	"github.com/clearance/clearance/internal/testkit/testpki"
	"github.com/clearance/clearance/pkg/certpem"
)

func TestParse(t *testing.T) {
	t.Parallel()
	c := testpki.SelfSigned(t, testpki.CN("t"))
	cert := string(c.CertPEM())
	keyDER, _ := x509.MarshalECPrivateKey(c.Key.(*ecdsa.PrivateKey))
	keyPEM := string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}))

	certs, err := certpem.Parse([]byte(cert + "\n" + cert))
	if err != nil || len(certs) != 2 {
		t.Fatalf("two certificates: %d, %v", len(certs), err)
	}
	for name, tc := range map[string]struct{ in, want string }{
		"empty":         {"", "no PEM certificate"},
		"garbage":       {"hello", "no PEM certificate"},
		"key":           {keyPEM, `unexpected PEM block "EC PRIVATE KEY"`},
		"trailing junk": {cert + "junk", "not PEM"},
		"bad DER":       {"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", "certificate 1"},
	} {
		if _, err := certpem.Parse([]byte(tc.in)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want %q", name, err, tc.want)
		}
	}
}
