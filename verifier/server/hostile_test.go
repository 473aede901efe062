package server_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net/http"
	"strings"
	"testing"
	"time"

	agentv1 "github.com/clearance/clearance/proto/gen/clearance/agent/v1"
)

// counters reads a counter vector from the registry /metrics serves, by
// its label pairs.
func counters(t *testing.T, h *harness, name string) map[string]float64 {
	t.Helper()
	families, err := h.srv.Metrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName()+`="`+l.GetValue()+`"`)
			}
			out[strings.Join(labels, ",")] = m.GetCounter().GetValue()
		}
	}
	return out
}

// selfSigned is a client certificate no CA of the verifier issued: what
// anyone can present.
func selfSigned(t *testing.T) *tls.Certificate {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "anyone"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: k}
}

// pushyBrowser presents cert whatever CAs the server names (a browser
// picks only a certificate the server's CA list admits; an attacker's
// client does not).
func (e *ssoEnv) pushyBrowser(cert *tls.Certificate) *http.Client {
	c := e.browser(nil)
	c.Transport.(*http.Transport).TLSClientConfig.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert, nil }
	return c
}

// TestUnsignedRefusalsCounted: with unsigned requests allowed, a sign-in
// that names no Mac — or whose proof of presence is refused — could have
// been sent by anyone, for any username and request ID: it is counted and
// logged by sample, and writes nothing (no decision row, not even its
// request ID). Okta's signed requests keep their rows.
func TestUnsignedRefusalsCounted(t *testing.T) {
	t.Parallel()
	t.Run("certificate binding", func(t *testing.T) {
		t.Parallel()
		e := startSSO(t, false, nil)
		hostileUser := strings.Repeat("m", 500) + "@example.com"
		r := e.sp.NewRequest(hostileUser)
		// The same request three times: its ID is not spent, so it is not
		// "replayed" either.
		for range 3 {
			p := e.redirect(t, e.browser(nil), r)
			noResponse(t, p)
			if p.status != http.StatusForbidden {
				t.Fatalf("status %d, want 403", p.status)
			}
			p.has(t, "no_client_cert", "r-")
		}
		p := e.redirect(t, e.pushyBrowser(selfSigned(t)), e.sp.NewRequest(testUser))
		p.has(t, "untrusted_client_cert")
		if ds := e.decisions(t); len(ds) != 0 {
			t.Errorf("%d decision rows for unsigned refusals, want none: %+v", len(ds), ds)
		}
		got := counters(t, e.harness, "clearance_sso_unrecorded_total")
		if got[`reason="no_client_cert"`] != 3 || got[`reason="untrusted_client_cert"`] != 1 {
			t.Errorf("clearance_sso_unrecorded_total %v; want no_client_cert 3, untrusted_client_cert 1", got)
		}
		// One line at info for the four (the others at debug), with the
		// sender's strings clipped.
		if n := strings.Count(e.logs.String(), "msg=sso_unrecorded"); n != 1 {
			t.Errorf("%d sso_unrecorded lines, want 1:\n%s", n, e.logs.String())
		}
		e.logs.lacks(t, hostileUser)

		// A Mac that is identified is decided and on record as ever.
		a, _ := e.device(t, agentv1.PolicyStatus_POLICY_STATUS_PASS, nil)
		ok := e.sp.NewRequest(testUser)
		e.allowed(t, e.redirect(t, e.browser(deviceCert(a)), ok), ok)
		if ds := e.decisions(t); len(ds) != 1 || !ds[0].Allow {
			t.Errorf("decisions %+v, want the one allowed sign-in", ds)
		}
	})
	t.Run("signed requests keep their rows", func(t *testing.T) {
		t.Parallel()
		e := startSSO(t, true, nil)
		r := e.sp.NewRequest(testUser)
		e.redirect(t, e.browser(nil), r).has(t, "no_client_cert")
		if ds := e.decisions(t); len(ds) != 1 || ds[0].Reason != "no_client_cert" || ds[0].RequestID != r.ID {
			t.Errorf("decisions %+v, want the refusal on record", ds)
		}
		// Its ID was spent: a replay is refused as one.
		refusedWith(t, e.redirect(t, e.browser(nil), r), http.StatusBadRequest, "replayed_request")
		if got := counters(t, e.harness, "clearance_sso_unrecorded_total"); len(got) != 0 {
			t.Errorf("signed refusals counted as unrecorded: %v", got)
		}
	})
	t.Run("refused proof of presence", func(t *testing.T) {
		t.Parallel()
		e := startAgentBinding(t, nil)
		a, _ := e.device(t, agentv1.PolicyStatus_POLICY_STATUS_PASS, nil)
		stranger, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		c := e.jarBrowser(t)
		q := e.statement(t, stranger, a.DeviceID, e.toAgent(t, c, e.sp.NewRequest(testUser)), e.clock.Now())
		p := e.back(t, c, q)
		refusedWith(t, p, http.StatusForbidden, "presence_bad_signature")
		p.has(t, "r-")
		q = e.statement(t, a.Key, a.DeviceID, e.toAgent(t, c, e.sp.NewRequest(testUser)), e.clock.Now().Add(-time.Hour))
		refusedWith(t, e.back(t, c, q), http.StatusForbidden, "presence_clock_skew")
		if ds := e.decisions(t); len(ds) != 0 {
			t.Errorf("%d decision rows for refused proofs of unsigned sign-ins, want none: %+v", len(ds), ds)
		}
		got := counters(t, e.harness, "clearance_sso_unrecorded_total")
		if got[`reason="presence_bad_signature"`] != 1 || got[`reason="presence_clock_skew"`] != 1 {
			t.Errorf("clearance_sso_unrecorded_total %v", got)
		}
		// A genuine proof still signs in, on record.
		r := e.sp.NewRequest(testUser)
		e.allowed(t, e.ceremony(t, c, a, r), r)
		if ds := e.decisions(t); len(ds) != 1 || !ds[0].Allow {
			t.Errorf("decisions %+v, want the one allowed sign-in", ds)
		}
	})
}
