package server_test

import (
	"fmt"
	"strings"
	"testing"
)

// TestCertificateExpiryWatched: the expiry of every certificate the
// verifier depends on is a metric, and one that ends within 30 days
// (Okta's request-signing certificate, here an hour away) is a warning
// in the log that says what happens then and what to do.
func TestCertificateExpiryWatched(t *testing.T) {
	t.Parallel()
	e := startSSO(t, true, nil)
	okta := readCert(t, e.cfg.OktaRequestCert)
	m := e.scrape(t)
	for _, cert := range []string{"okta_request", "saml_signing", "tls", "ca", "device_ca"} {
		if !strings.Contains(m, fmt.Sprintf(`clearance_certificate_expiry_timestamp_seconds{cert=%q}`, cert)) {
			t.Errorf("no expiry metric for %s", cert)
		}
	}
	if want := fmt.Sprintf(`clearance_certificate_expiry_timestamp_seconds{cert="okta_request"} %g`, float64(okta.NotAfter.Unix())); !strings.Contains(m, want) {
		t.Errorf("metrics lack %q", want)
	}
	if !e.logs.HasLine("certificate expires soon", "cert=okta_request", "bad_signature", "--okta-request-cert") {
		t.Errorf("no warning of Okta's certificate's end:\n%s", e.logs.String())
	}
	if e.logs.HasLine("certificate expires soon", "cert=ca") || e.logs.HasLine("certificate expires soon", "cert=saml_signing") {
		t.Errorf("a certificate years from its end was warned of:\n%s", e.logs.String())
	}
}
