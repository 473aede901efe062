package server_test

import (
	"bytes"
	"compress/flate"
	"context"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clearance/clearance/internal/oktasim"
	"github.com/clearance/clearance/internal/protoagent"
	"github.com/clearance/clearance/internal/testkit"
	"github.com/clearance/clearance/internal/testkit/testpki"
	agentv1 "github.com/clearance/clearance/proto/gen/clearance/agent/v1"
	"github.com/clearance/clearance/verifier/config"
	"github.com/clearance/clearance/verifier/idp"
	"github.com/clearance/clearance/verifier/server"
	"github.com/clearance/clearance/verifier/signin"
	"github.com/clearance/clearance/verifier/storage"
)

const (
	testAudience = "https://www.okta.com/saml2/service-provider/spclearancetest0001"
	testACS      = "https://example.okta.com/sso/saml2/0oa1clearancetest"
	testUser     = "ada.lovelace@example.com"
)

// ssoEnv is a verifier with Okta configured, the simulated Okta org that
// talks to it, and helpers for a browser with a certificate.
type ssoEnv struct {
	*harness
	sp  *oktasim.SP
	url string // the real address of the SSO listener
}

// startSSO starts a verifier configured for Okta; signed makes Okta sign
// its requests (and the verifier require it). edit may change more.
func startSSO(t *testing.T, signed bool, edit func(*config.Config), opts ...server.Option) *ssoEnv {
	t.Helper()
	var oktaKey *rsa.PrivateKey
	var oktaCert *x509.Certificate
	h := startWithOptions(t, func(c *config.Config) {
		c.OktaAudience, c.OktaACSURLs = testAudience, []string{testACS}
		// These tests bind sign-ins by the browser certificate; the agent's
		// proof of presence has its own (presence_test.go).
		c.BrowserBinding = config.BindingCertificate
		if signed {
			oktaKey, oktaCert = rsaIdentity(t, "Okta request signing")
			p := filepath.Join(t.TempDir(), "okta.pem")
			if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: oktaCert.Raw}), 0o644); err != nil {
				t.Fatal(err)
			}
			c.OktaRequestCert = p
		} else {
			// Unsigned requests are refused unless this unsafe setting
			// says otherwise (TestUnsignedRefusedByDefault).
			c.AllowUnsignedRequests = true
		}
		if edit != nil {
			edit(c)
		}
	}, opts...)
	idpCert := readCert(t, filepath.Join(h.cfg.DataDir, idp.CertFile))
	sp := oktasim.New(oktasim.Options{
		EntityID: testAudience, ACSURL: testACS,
		IdPSSOURL: h.cfg.SSOURL(), IdPIssuer: h.cfg.MetadataURL(), IdPCert: idpCert,
		SigningKey: oktaKey, SigningCert: oktaCert, Now: h.clock.Now,
	})
	return &ssoEnv{harness: h, sp: sp, url: "https://" + h.srv.SSOAddr.String()}
}

func rsaIdentity(t testing.TB, cn string) (*rsa.PrivateKey, *x509.Certificate) {
	t.Helper()
	k := testpki.RSAKey(t)
	return k, testpki.SelfSigned(t, testpki.CN(cn), testpki.Serial(1), testpki.Key(k), testpki.Valid(time.Now().Add(-time.Hour), time.Now().Add(time.Hour))).Cert
}

func readCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := pem.Decode(data)
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// deviceCert is the TLS client certificate of an enrolled agent.
func deviceCert(a *protoagent.Agent) *tls.Certificate {
	return &tls.Certificate{Certificate: append([][]byte{a.CertDER}, a.Chain...), PrivateKey: a.Key}
}

// browser is an HTTPS client presenting cert (nil: none), trusting our CA.
func (e *ssoEnv) browser(cert *tls.Certificate) *http.Client {
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(e.rootPEM)
	tc := &tls.Config{RootCAs: roots, ServerName: "localhost"}
	if cert != nil {
		tc.Certificates = []tls.Certificate{*cert}
	}
	return &http.Client{
		Transport: &http.Transport{TLSClientConfig: tc},
		Timeout:   15 * time.Second,
		// The verifier never redirects; a redirect would be a bug to see.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// page is an HTTP answer.
type page struct {
	status   int
	body     string
	location string
	header   http.Header
}

func (p page) has(t *testing.T, subs ...string) {
	t.Helper()
	for _, s := range subs {
		if !strings.Contains(p.body, s) {
			t.Errorf("page (status %d) lacks %q:\n%s", p.status, s, p.body)
		}
	}
}

func do(t *testing.T, c *http.Client, req *http.Request) page {
	t.Helper()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return page{status: resp.StatusCode, body: string(b), location: resp.Header.Get("Location"), header: resp.Header}
}

// redirect sends r with the Redirect binding, as the browser follows Okta's redirect.
func (e *ssoEnv) redirect(t *testing.T, c *http.Client, r oktasim.Request) page {
	t.Helper()
	u, err := e.sp.RedirectURL(r)
	if err != nil {
		t.Fatal(err)
	}
	return e.get(t, c, u)
}

// get fetches an SSO URL as Okta built it, at the listener's real address.
func (e *ssoEnv) get(t *testing.T, c *http.Client, oktaURL string) page {
	t.Helper()
	u := e.url + strings.TrimPrefix(oktaURL, "https://localhost:8444")
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	return do(t, c, req)
}

func (e *ssoEnv) post(t *testing.T, c *http.Client, path string, form url.Values) page {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, e.url+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return do(t, c, req)
}

// compliant enrolls a device, connects it and stores a report at status;
// the returned channel closes when its stream ends. The agent answers every
// CheckNow with the status *live says at that moment.
func (e *ssoEnv) device(t *testing.T, status agentv1.PolicyStatus, live *agentv1.PolicyStatus) (*protoagent.Agent, *protoagent.Stream) {
	t.Helper()
	a := e.enrolled(e.secret())
	st := e.connect(a)
	m, err := st.Exchange(protoagent.Sign(a.Key, a.Report(st.PolicySet, 1, time.Now(), nil, status)))
	if err != nil || m.GetAck() == nil {
		t.Fatalf("report not acked: %v %v", m, err)
	}
	if live != nil {
		go answerChecks(st, func(seq uint64, nonce []byte) *agentv1.SignedReport {
			return protoagent.Sign(a.Key, a.Report(st.PolicySet, seq, time.Now(), nonce, *live))
		})
	}
	return a, st
}

// allowed asserts that p is the auto-POST to Okta and that an independent
// SAML SP accepts the response for request id; it returns the assertion.
func (e *ssoEnv) allowed(t *testing.T, p page, r oktasim.Request) *oktasim.Assertion {
	t.Helper()
	if p.status != http.StatusOK {
		t.Fatalf("status %d, want 200:\n%s", p.status, p.body)
	}
	action, resp, relay, err := oktasim.ParsePostForm([]byte(p.body))
	if err != nil {
		t.Fatalf("no SAML form: %v\n%s", err, p.body)
	}
	if action != testACS || relay != r.RelayState {
		t.Errorf("form posts to %q with RelayState %q; want %q, %q", action, relay, testACS, r.RelayState)
	}
	as, err := e.sp.Validate(resp, r.ID)
	if err != nil {
		t.Fatalf("the SP refuses the response: %v", err)
	}
	if as.NameID != testUser && as.NameID != r.Username {
		t.Errorf("NameID %q, want %q", as.NameID, r.Username)
	}
	xmlDoc, _ := base64.StdEncoding.DecodeString(resp)
	// The assertion says how the Mac authenticated, and addresses carry no port.
	if !(bytes.Contains(xmlDoc, []byte(idp.AuthnContextTLSClient)) || bytes.Contains(xmlDoc, []byte(idp.AuthnContextX509))) || bytes.Contains(xmlDoc, []byte("127.0.0.1:")) {
		t.Errorf("authn context or address wrong in:\n%s", xmlDoc)
	}
	if err := oktasim.XMLSec1Verify(xmlDoc, e.srv.IdP.CertPEM()); err != nil {
		if testkit.CI() || !strings.Contains(err.Error(), "not found") {
			t.Errorf("xmlsec1: %v", err)
		}
	}
	return as
}

// noResponse asserts p carries no SAML response.
func noResponse(t *testing.T, p page) {
	t.Helper()
	if strings.Contains(p.body, "SAMLResponse") {
		t.Fatalf("a refused sign-in carries a SAMLResponse:\n%s", p.body)
	}
}

func (e *ssoEnv) decisions(t *testing.T) []storage.DecisionRecord {
	t.Helper()
	ds, err := e.srv.Store.ListDecisions(context.Background(), storage.DecisionFilter{})
	if err != nil {
		t.Fatal(err)
	}
	return ds
}

// TestSSOAllow: requests built as Okta builds them — Redirect and POST,
// signed and unsigned — get a response that an independent SP implementation
// (gosaml2, plus xmlsec1) accepts, with the username as NameID.
func TestSSOAllow(t *testing.T) {
	t.Parallel()
	for _, signed := range []bool{false, true} {
		t.Run(fmt.Sprintf("signed=%v", signed), func(t *testing.T) {
			t.Parallel()
			e := startSSO(t, signed, nil)
			a, _ := e.device(t, agentv1.PolicyStatus_POLICY_STATUS_PASS, nil)
			c := e.browser(deviceCert(a))

			r := e.sp.NewRequest(testUser)
			as := e.allowed(t, e.redirect(t, c, r), r)
			if as.NameIDFormat != "urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified" {
				t.Errorf("NameID format %q", as.NameIDFormat)
			}
			if as.SessionIndex == "" || as.AuthnInstant.IsZero() || as.Audience != testAudience || as.Recipient != testACS {
				t.Errorf("assertion %+v", as)
			}

			r2 := e.sp.NewRequest(testUser)
			form, err := e.sp.PostForm(r2)
			if err != nil {
				t.Fatal(err)
			}
			e.allowed(t, e.post(t, c, signin.PathSSO, form), r2)

			ds := e.decisions(t)
			if len(ds) != 2 || !ds[0].Allow || ds[0].Username != testUser || ds[0].DeviceID != a.DeviceID || ds[0].RequestID != r2.ID || ds[0].Reason != "allowed" {
				t.Fatalf("decision log %+v", ds)
			}
			if len(ds[0].Results) == 0 || ds[0].CertSerial == "" {
				t.Errorf("decision log lacks results or serial: %+v", ds[0])
			}
		})
	}
}

// TestSSOCopiesAnsweredOnce: copies of one signed request sent at once get
// one response between them; the others are refused as replays, and the
// log holds one decision that allowed. A request refused for its
// certificate spends its ID all the same.
func TestSSOCopiesAnsweredOnce(t *testing.T) {
	t.Parallel()
	e := startSSO(t, true, nil)
	a, _ := e.device(t, agentv1.PolicyStatus_POLICY_STATUS_PASS, nil)
	good := e.browser(deviceCert(a))
	r := e.sp.NewRequest(testUser)
	const copies = 8
	pages := make([]page, copies)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range copies {
		wg.Go(func() {
			<-start
			pages[i] = e.redirect(t, e.browser(deviceCert(a)), r)
		})
	}
	close(start)
	wg.Wait()
	answered := 0
	for _, p := range pages {
		if strings.Contains(p.body, "SAMLResponse") {
			answered++
			e.allowed(t, p, r)
			continue
		}
		p.has(t, "replayed_request")
	}
	if answered != 1 {
		t.Fatalf("%d of %d copies answered, want 1", answered, copies)
	}
	allowed := 0
	for _, d := range e.decisions(t) {
		if d.RequestID == r.ID && d.Allow {
			allowed++
		}
	}
	if allowed != 1 {
		t.Errorf("%d decisions allowed request %s, want 1", allowed, r.ID)
	}

	// Refused for its certificate (none): the ID is spent all the same.
	r2 := e.sp.NewRequest(testUser)
	p := e.redirect(t, e.browser(nil), r2)
	noResponse(t, p)
	p.has(t, "no_client_cert")
	p = e.redirect(t, good, r2)
	noResponse(t, p)
	p.has(t, "replayed_request")
}

// TestSSOResponseTamperedRejected: the SP refuses a response changed after signing.
func TestSSOResponseTamperedRejected(t *testing.T) {
	t.Parallel()
	e := startSSO(t, false, nil)
	a, _ := e.device(t, agentv1.PolicyStatus_POLICY_STATUS_PASS, nil)
	r := e.sp.NewRequest(testUser)
	p := e.redirect(t, e.browser(deviceCert(a)), r)
	_, resp, _, err := oktasim.ParsePostForm([]byte(p.body))
	if err != nil {
		t.Fatal(err)
	}
	doc, _ := base64.StdEncoding.DecodeString(resp)
	tampered := bytes.Replace(doc, []byte(testUser), []byte("mallory@example.com"), -1)
	if bytes.Equal(doc, tampered) {
		t.Fatal("username not found in response")
	}
	if _, err := e.sp.Validate(base64.StdEncoding.EncodeToString(tampered), r.ID); err == nil {
		t.Fatal("tampered response accepted")
	}
	if _, err := e.sp.Validate(resp, "id-another-request"); err == nil {
		t.Fatal("response accepted for another request")
	}
}

func deflate(b []byte) string {
	var buf bytes.Buffer
	w, _ := flate.NewWriter(&buf, flate.BestCompression)
	w.Write(b)
	w.Close()
	return base64.StdEncoding.EncodeToString(buf.Bytes())
}

// TestSSORefusals: every bad request gets no SAMLResponse, a page naming
// its reason, and a log line with it.
func TestSSORefusals(t *testing.T) {
	t.Parallel()
	e := startSSO(t, true, func(c *config.Config) {
		c.ClientCertHeader = "X-Client-Cert"
		_, n, _ := netParseCIDR("192.0.2.0/24")
		c.TrustedProxies = append(c.TrustedProxies, n)
	})
	a, _ := e.device(t, agentv1.PolicyStatus_POLICY_STATUS_PASS, nil)
	good := e.browser(deviceCert(a))

	// A certificate from a CA of the attacker's own.
	other := testpki.SelfSigned(t, testpki.CN(a.DeviceID), testpki.URIs("urn:clearance:device:"+a.DeviceID), testpki.ClientAuth()).TLS()
	// The handshake names the device CA, so a well-behaved client would not
	// offer this certificate; an attacker's client sends it anyway.
	untrusted := e.browser(nil)
	untrusted.Transport.(*http.Transport).TLSClientConfig.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
		return &other, nil
	}

	// A revoked device.
	rev, _ := e.device(t, agentv1.PolicyStatus_POLICY_STATUS_PASS, nil)
	revoked := e.browser(deviceCert(rev))
	if _, err := e.srv.Store.RevokeDevice(context.Background(), rev.DeviceID, "stolen", time.Now(), storage.AuditEvent{Actor: "test", Action: "device.revoke"}); err != nil {
		t.Fatal(err)
	}

	billion := []byte(`<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>` +
		`<samlp:AuthnRequest xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" ID="id1" Version="2.0">&lol2;</samlp:AuthnRequest>`)
	replayed := e.sp.NewRequest(testUser)
	e.allowed(t, e.redirect(t, good, replayed), replayed)

	mod := func(f func(*oktasim.Request)) oktasim.Request {
		r := e.sp.NewRequest(testUser)
		f(&r)
		return r
	}
	cases := []struct {
		name   string
		reason string
		send   func(t *testing.T) page
	}{
		{"wrong issuer", "wrong_issuer", func(t *testing.T) page {
			return e.redirect(t, good, mod(func(r *oktasim.Request) { r.Issuer = "https://www.okta.com/saml2/service-provider/spother" }))
		}},
		{"wrong ACS", "wrong_acs", func(t *testing.T) page {
			return e.redirect(t, good, mod(func(r *oktasim.Request) { r.ACSURL = "https://evil.example/sso/saml2/0oa1" }))
		}},
		{"wrong destination", "wrong_destination", func(t *testing.T) page {
			return e.redirect(t, good, mod(func(r *oktasim.Request) { r.Destination = "https://other.example/saml/sso" }))
		}},
		{"stale", "stale_request", func(t *testing.T) page {
			return e.redirect(t, good, mod(func(r *oktasim.Request) { r.IssueInstant = e.clock.Now().Add(-10 * time.Minute) }))
		}},
		{"future", "future_request", func(t *testing.T) page {
			return e.redirect(t, good, mod(func(r *oktasim.Request) { r.IssueInstant = e.clock.Now().Add(10 * time.Minute) }))
		}},
		{"replayed", "replayed_request", func(t *testing.T) page { return e.redirect(t, good, replayed) }},
		{"bad signature", "bad_signature", func(t *testing.T) page {
			return e.redirect(t, good, mod(func(r *oktasim.Request) { r.BadSignature = true }))
		}},
		{"missing signature", "missing_signature", func(t *testing.T) page {
			return e.redirect(t, good, mod(func(r *oktasim.Request) { r.SkipSign = true }))
		}},
		{"bad POST signature", "bad_signature", func(t *testing.T) page {
			f, _ := e.sp.PostForm(mod(func(r *oktasim.Request) { r.BadSignature = true }))
			return e.post(t, good, signin.PathSSO, f)
		}},
		{"unsigned POST", "missing_signature", func(t *testing.T) page {
			f, _ := e.sp.PostForm(mod(func(r *oktasim.Request) { r.SkipSign = true }))
			return e.post(t, good, signin.PathSSO, f)
		}},
		{"oversized", "oversized_request", func(t *testing.T) page {
			return e.get(t, good, e.cfg.SSOURL()+"?SAMLRequest="+strings.Repeat("A", idp.MaxQuery))
		}},
		{"zip bomb", "oversized_request", func(t *testing.T) page {
			return e.get(t, good, e.cfg.SSOURL()+"?SAMLRequest="+url.QueryEscape(deflate(bytes.Repeat([]byte("<a>"), idp.MaxRequestXML))))
		}},
		{"not deflate", "not_deflate", func(t *testing.T) page {
			return e.get(t, good, e.cfg.SSOURL()+"?SAMLRequest="+url.QueryEscape(base64.StdEncoding.EncodeToString([]byte("<samlp:AuthnRequest/>"))))
		}},
		{"not base64", "bad_encoding", func(t *testing.T) page {
			return e.get(t, good, e.cfg.SSOURL()+"?SAMLRequest=%%%%")
		}},
		{"malformed XML", "malformed_xml", func(t *testing.T) page {
			return e.get(t, good, e.cfg.SSOURL()+"?SAMLRequest="+url.QueryEscape(deflate([]byte("<samlp:AuthnRequest ID='x'"))))
		}},
		{"entity expansion", "dtd_forbidden", func(t *testing.T) page {
			return e.get(t, good, e.cfg.SSOURL()+"?SAMLRequest="+url.QueryEscape(deflate(billion)))
		}},
		{"entity expansion POST", "dtd_forbidden", func(t *testing.T) page {
			return e.post(t, good, signin.PathSSO, url.Values{"SAMLRequest": {base64.StdEncoding.EncodeToString(billion)}})
		}},
		{"no client certificate", "no_client_cert", func(t *testing.T) page {
			return e.redirect(t, e.browser(nil), e.sp.NewRequest(testUser))
		}},
		{"untrusted CA", "untrusted_client_cert", func(t *testing.T) page {
			return e.redirect(t, untrusted, e.sp.NewRequest(testUser))
		}},
		{"revoked device", "device_revoked", func(t *testing.T) page {
			return e.redirect(t, revoked, e.sp.NewRequest(testUser))
		}},
		{"spoofed proxy header", "spoofed_client_cert_header", func(t *testing.T) page {
			u, _ := e.sp.RedirectURL(e.sp.NewRequest(testUser))
			req, _ := http.NewRequest(http.MethodGet, e.url+strings.TrimPrefix(u, "https://localhost:8444"), nil)
			req.Header.Set("X-Client-Cert", url.QueryEscape(string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: a.CertDER}))))
			return do(t, e.browser(nil), req)
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := tc.send(t)
			noResponse(t, p)
			if p.status < 400 {
				t.Errorf("status %d", p.status)
			}
			p.has(t, tc.reason)
			if !strings.Contains(e.logs.String(), "reason="+tc.reason) {
				t.Errorf("log has no reason=%s", tc.reason)
			}
		})
	}
	if strings.Contains(e.logs.String(), "SAMLResponse") || strings.Contains(e.logs.String(), "<samlp") {
		t.Error("the log quotes SAML messages")
	}
}

// TestSSODenyThenCheckAgain: a failing Mac gets the remediation page naming
// what to fix; once fixed, "Check again" completes the same sign-in.
func TestSSODenyThenCheckAgain(t *testing.T) {
	t.Parallel()
	e := startSSO(t, false, nil)
	live := agentv1.PolicyStatus_POLICY_STATUS_FAIL
	a, _ := e.device(t, agentv1.PolicyStatus_POLICY_STATUS_FAIL, &live)
	c := e.browser(deviceCert(a))

	r := e.sp.NewRequest(testUser)
	p := e.redirect(t, c, r)
	noResponse(t, p)
	if p.status != http.StatusForbidden {
		t.Fatalf("status %d", p.status)
	}
	p.has(t, "FileVault", "policy_failed", "Check again", "test-mac")
	token := hiddenToken(t, p.body)

	// Still failing: the page again, same token.
	p = e.post(t, c, signin.PathRetry, url.Values{"token": {token}})
	noResponse(t, p)
	p.has(t, "FileVault")

	// From another browser certificate: refused.
	other, _ := e.device(t, agentv1.PolicyStatus_POLICY_STATUS_PASS, nil)
	p = e.post(t, e.browser(deviceCert(other)), signin.PathRetry, url.Values{"token": {token}})
	noResponse(t, p)
	p.has(t, "retry_from_other_certificate")

	// Fixed: the live check sees it and the original request completes.
	live = agentv1.PolicyStatus_POLICY_STATUS_PASS
	e.allowed(t, e.post(t, c, signin.PathRetry, url.Values{"token": {token}}), r)

	// Once only.
	p = e.post(t, c, signin.PathRetry, url.Values{"token": {token}})
	noResponse(t, p)
	p.has(t, "sign_in_expired")
	p = e.post(t, c, signin.PathRetry, url.Values{"token": {"garbage"}})
	noResponse(t, p)
	p.has(t, "bad_retry_token")

	ds := e.decisions(t)
	var got []string
	for i := len(ds) - 1; i >= 0; i-- {
		if ds[i].DeviceID == a.DeviceID {
			got = append(got, fmt.Sprintf("%s:%v:%s:%s", ds[i].Source, ds[i].Allow, ds[i].Reason, ds[i].LiveCheck))
		}
	}
	want := []string{"sso:false:policy_failed:none", "sso_retry:false:policy_failed:answered", "sso_retry:true:allowed:answered"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("decision log %v, want %v", got, want)
	}
}

// TestSSOLiveCheck: an old report gets a live check before deciding; an
// offline agent with an old report is told apart from a failing one.
func TestSSOLiveCheck(t *testing.T) {
	t.Parallel()
	e := startSSO(t, false, nil)
	live := agentv1.PolicyStatus_POLICY_STATUS_PASS
	a, _ := e.device(t, agentv1.PolicyStatus_POLICY_STATUS_FAIL, &live)
	c := e.browser(deviceCert(a))

	// The stored report is failing but 40s old: the agent is asked, answers passing.
	e.clock.Add(40 * time.Second)
	r := e.sp.NewRequest(testUser)
	e.allowed(t, e.redirect(t, c, r), r)
	if ds := e.decisions(t); ds[0].LiveCheck != "answered" {
		t.Errorf("live check %q", ds[0].LiveCheck)
	}

	// Offline and stale: the offline page.
	b, st := e.device(t, agentv1.PolicyStatus_POLICY_STATUS_PASS, nil)
	st.Close()
	testkit.Poll(5*time.Second, func() bool { return !e.srv.Hub.Connected(b.DeviceID) })
	e.clock.Add(10 * time.Minute)
	p := e.redirect(t, e.browser(deviceCert(b)), e.sp.NewRequest(testUser))
	noResponse(t, p)
	p.has(t, "stale_posture", "Check again")
	if ds := e.decisions(t); ds[0].LiveCheck != "agent_offline" || ds[0].Reason != "stale_posture" {
		t.Errorf("decision %+v", ds[0])
	}
}

// TestSSONotConfigured: without Okta's settings nothing is signed.
func TestSSONotConfigured(t *testing.T) {
	t.Parallel()
	h := start(t)
	e := &ssoEnv{harness: h, url: "https://" + h.srv.SSOAddr.String()}
	req, _ := http.NewRequest(http.MethodGet, e.url+"/saml/sso?SAMLRequest=x", nil)
	p := do(t, e.browser(nil), req)
	noResponse(t, p)
	p.has(t, "okta_not_configured")
	req, _ = http.NewRequest(http.MethodGet, e.url+signin.PathMetadata, nil)
	p = do(t, e.browser(nil), req)
	p.has(t, h.cfg.MetadataURL(), h.cfg.SSOURL(), "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect")
	req, _ = http.NewRequest(http.MethodGet, e.url+signin.PathCert, nil)
	p = do(t, e.browser(nil), req)
	p.has(t, "BEGIN CERTIFICATE")
}

func hiddenToken(t *testing.T, body string) string {
	t.Helper()
	i := strings.Index(body, `name="token"`)
	if i < 0 {
		t.Fatalf("no token in page:\n%s", body)
	}
	rest := body[i:]
	j := strings.Index(rest, `value="`)
	rest = rest[j+len(`value="`):]
	return rest[:strings.Index(rest, `"`)]
}

var netParseCIDR = net.ParseCIDR

// An org with a custom domain: Okta may name the identity provider's ACS URL
// on either domain, and the response goes to the one the request named.
// Okta's request-signing certificate is being rotated: a request signed
// with either of the two certificates in the file counts.
func TestOktaCustomDomainAndRotation(t *testing.T) {
	t.Parallel()
	const customACS = "https://login.example.com/sso/saml2/0oa1clearancetest"
	nextKey, nextCert := rsaIdentity(t, "Okta request signing (next)")
	e := startSSO(t, true, func(c *config.Config) {
		c.OktaACSURLs = []string{testACS, customACS}
		cur, err := os.ReadFile(c.OktaRequestCert)
		if err != nil {
			t.Fatal(err)
		}
		both := append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: nextCert.Raw}), cur...)
		p := filepath.Join(t.TempDir(), "okta-both.pem")
		if err := os.WriteFile(p, both, 0o644); err != nil {
			t.Fatal(err)
		}
		c.OktaRequestCert = p
	})
	a, _ := e.device(t, agentv1.PolicyStatus_POLICY_STATUS_PASS, nil)
	c := e.browser(deviceCert(a))

	// The org's domain, signed with the current certificate.
	r := e.sp.NewRequest(testUser)
	e.allowed(t, e.redirect(t, c, r), r)

	// The custom domain, signed with the next certificate.
	idpCert := readCert(t, filepath.Join(e.cfg.DataDir, idp.CertFile))
	custom := oktasim.New(oktasim.Options{
		EntityID: testAudience, ACSURL: customACS,
		IdPSSOURL: e.cfg.SSOURL(), IdPIssuer: e.cfg.MetadataURL(), IdPCert: idpCert,
		SigningKey: nextKey, SigningCert: nextCert, Now: e.clock.Now,
	})
	r = custom.NewRequest(testUser)
	u, err := custom.RedirectURL(r)
	if err != nil {
		t.Fatal(err)
	}
	p := e.get(t, c, u)
	action, resp, _, err := oktasim.ParsePostForm([]byte(p.body))
	if err != nil || action != customACS {
		t.Fatalf("custom domain: posts to %q (%v), want %q:\n%s", action, err, customACS, p.body)
	}
	if _, err := custom.Validate(resp, r.ID); err != nil {
		t.Fatalf("the custom domain's ACS refuses the response: %v", err)
	}

	// A domain nobody configured is refused, and the log says what to set.
	r = e.sp.NewRequest(testUser)
	r.ACSURL = "https://other.example.com/sso/saml2/0oa1clearancetest"
	p = e.redirect(t, c, r)
	noResponse(t, p)
	if p.status != http.StatusBadRequest || !strings.Contains(p.body, "wrong_acs") {
		t.Errorf("unknown ACS: %d\n%s", p.status, p.body)
	}
	e.logs.has(t, "Redirect Domain to Org URL")
}

// Without Okta's request-signing certificate, sign-ins are refused unless
// unsigned requests are explicitly allowed, which the verifier then warns
// about at start, on every metrics scrape, and in a gauge.
func TestUnsignedRefusedByDefault(t *testing.T) {
	t.Parallel()
	e := startSSO(t, false, func(c *config.Config) { c.AllowUnsignedRequests = false })
	a, _ := e.device(t, agentv1.PolicyStatus_POLICY_STATUS_PASS, nil)
	p := e.redirect(t, e.browser(deviceCert(a)), e.sp.NewRequest(testUser))
	noResponse(t, p)
	if p.status != http.StatusServiceUnavailable || !strings.Contains(p.body, "okta_request_cert_missing") {
		t.Fatalf("unsigned request: %d\n%s", p.status, p.body)
	}
	e.logs.has(t, "okta_request_cert is not set")

	allowed := startSSO(t, false, nil)
	allowed.logs.has(t, "UNSIGNED AUTHNREQUESTS ARE ANSWERED")
	if m := allowed.scrape(t); !strings.Contains(m, "clearance_sso_unsigned_requests_allowed 1") {
		t.Errorf("metrics lack the unsigned-requests gauge at 1")
	}
}

// A first pilot's troubles: Check again on a sign-in held past Okta's
// patience starts it over at Okta instead of answering the old request; a
// request without a Subject names the Okta setting to check; with
// --debug-saml, a refused request is logged as decoded XML, without
// RelayState.
func TestOktaFirstTry(t *testing.T) {
	t.Parallel()
	e := startSSO(t, false, func(c *config.Config) { c.DebugSAML, c.MaxHeldRequestAge = true, 5*time.Minute })
	live := agentv1.PolicyStatus_POLICY_STATUS_FAIL
	a, _ := e.device(t, agentv1.PolicyStatus_POLICY_STATUS_FAIL, &live)
	c := e.browser(deviceCert(a))

	r := e.sp.NewRequest(testUser)
	token := hiddenToken(t, e.redirect(t, c, r).body)
	live = agentv1.PolicyStatus_POLICY_STATUS_PASS
	e.clock.Add(5*time.Minute + time.Second)
	p := e.post(t, c, signin.PathRetry, url.Values{"token": {token}})
	noResponse(t, p)
	p.has(t, "sign_in_restarted", "This sign-in took too long", `href="https://example.okta.com/"`, "Sign in again")
	// The held sign-in is gone: pressing again is not a second chance.
	p = e.post(t, c, signin.PathRetry, url.Values{"token": {token}})
	p.has(t, "sign_in_expired")

	// No Subject: the page and the log say what to check in Okta.
	r = e.sp.NewRequest("")
	p = e.redirect(t, c, r)
	noResponse(t, p)
	p.has(t, "missing_subject", "IdP Usage: Factor only")
	e.logs.has(t, "reason=missing_subject", "idpuser.subjectNameId", "msg=sso_request_refused_xml", r.ID)
	if strings.Contains(e.logs.String(), r.RelayState) {
		t.Error("the log holds the RelayState")
	}
}
