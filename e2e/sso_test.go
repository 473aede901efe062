package e2e

import (
	"context"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/html"

	"github.com/clearance/clearance/internal/oktasim"
	"github.com/clearance/clearance/internal/testkit/testpki"
	adminv1 "github.com/clearance/clearance/proto/gen/clearance/admin/v1"
	agentv1 "github.com/clearance/clearance/proto/gen/clearance/agent/v1"
)

// The Okta org the verifier is configured for in these tests.
const (
	e2eAudience = "https://www.okta.com/saml2/service-provider/spclearancee2e0001"
	e2eACS      = "https://example.okta.com/sso/saml2/0oa1clearancee2e"
	e2eUser     = "ada.lovelace@example.com"
	// e2eSSOPublic is where browsers are told the SSO listener is. It is not
	// where the test connects (a free loopback port): the Destination Okta
	// writes into its requests is this URL, as in a real deployment behind DNS.
	e2eSSOPublic = "https://sso.clearance.test"
	// liveCheckAfter is small so that a sign-in right after the Mac changes
	// asks the agent instead of trusting the stored report.
	liveCheckAfter = time.Second
)

// startSSOVerifier starts clearance-verifier serve with the sign-in listener
// on ssoAddr, Okta configured, and extra flags; it waits for SERVING.
func startSSOVerifier(t *testing.T, dataDir, ssoAddr string, extra ...string) *verifier {
	t.Helper()
	v := &verifier{t: t, dataDir: dataDir, grpcAddr: freePort(t), httpAddr: freePort(t), logs: &syncBuffer{}, exited: make(chan error, 1)}
	args := append([]string{"serve", "--data-dir", dataDir, "--policies", policiesFile(t),
		"--grpc-listen", v.grpcAddr, "--http-listen", v.httpAddr, "--public-url", "https://localhost:8443",
		"--sso-listen", ssoAddr, "--sso-public-url", e2eSSOPublic,
		"--okta-audience", e2eAudience, "--okta-acs-url", e2eACS}, extra...)
	if !slices.Contains(extra, "--okta-request-cert") {
		// This test's Okta does not sign its requests.
		args = append(args, "--allow-unsigned-requests")
	}
	v.cmd = exec.Command(filepath.Join(binDir, "clearance-verifier"), args...)
	return v.run()
}

// oktaSigner is Okta's request-signing key and a self-signed certificate
// for it, as Okta shows it for download; the certificate is written to a
// PEM file for --okta-request-cert.
func oktaSigner(t *testing.T, dir string) (*rsa.PrivateKey, *x509.Certificate, string) {
	t.Helper()
	k := testpki.RSAKey(t)
	c := testpki.SelfSigned(t, testpki.CN("example.okta.com request signing"), testpki.Serial(1), testpki.Key(k),
		testpki.Valid(time.Now().Add(-time.Hour), time.Now().Add(time.Hour))).Cert
	p := filepath.Join(dir, "okta-request-signing.pem")
	if err := os.WriteFile(p, testpki.PEM(c), 0o644); err != nil {
		t.Fatal(err)
	}
	return k, c, p
}

// ssoBrowser is a browser with a client certificate that reaches the SSO
// listener at its loopback address while asking for the public name.
type ssoBrowser struct {
	t      *testing.T
	client *http.Client
	addr   string // the SSO listener's real address
	// public: requests go to the public name, which the transport maps to
	// addr (so cookies are kept for the name the verifier serves).
	public bool
}

func newSSOBrowser(t *testing.T, v *verifier, addr string, cert tls.Certificate) *ssoBrowser {
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(v.rootPEM())
	host, _ := url.Parse(e2eSSOPublic)
	tc := &tls.Config{RootCAs: roots, ServerName: host.Hostname(), Certificates: []tls.Certificate{cert}}
	return &ssoBrowser{t: t, addr: addr, client: &http.Client{
		Transport: &http.Transport{TLSClientConfig: tc},
		Timeout:   20 * time.Second,
		// The verifier never redirects; a redirect would be a bug to see.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

// newPresenceBrowser is a browser without a certificate, with a cookie
// jar, that follows redirects wherever they go — to the agent on loopback
// and back — as a browser does, reaching the public SSO name at the
// listener's loopback address.
func newPresenceBrowser(t *testing.T, v *verifier, addr string) *ssoBrowser {
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(v.rootPEM())
	pub, _ := url.Parse(e2eSSOPublic)
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	var d net.Dialer
	tr := &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: roots},
		DialContext: func(ctx context.Context, network, a string) (net.Conn, error) {
			if host, _, _ := net.SplitHostPort(a); host == pub.Hostname() {
				a = addr // what DNS would resolve the public name to
			}
			return d.DialContext(ctx, network, a)
		},
	}
	return &ssoBrowser{t: t, addr: addr, public: true, client: &http.Client{Transport: tr, Jar: jar, Timeout: 20 * time.Second}}
}

// ssoPage is what the browser got.
type ssoPage struct {
	status   int
	body     string
	location string // a redirect's Location
}

func (b *ssoBrowser) do(req *http.Request) ssoPage {
	b.t.Helper()
	resp, err := b.client.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		b.t.Fatal(err)
	}
	return ssoPage{status: resp.StatusCode, body: string(body), location: resp.Header.Get("Location")}
}

// follow opens a URL Okta redirected the browser to, at the listener's
// real address (what DNS would resolve the public name to).
func (b *ssoBrowser) follow(oktaURL string) ssoPage {
	b.t.Helper()
	rest, ok := strings.CutPrefix(oktaURL, e2eSSOPublic)
	if !ok {
		b.t.Fatalf("Okta redirects to %s, not to the configured SSO URL", oktaURL)
	}
	req, err := http.NewRequest(http.MethodGet, b.base()+rest, nil)
	if err != nil {
		b.t.Fatal(err)
	}
	return b.do(req)
}

// base is where the browser sends requests for the SSO listener.
func (b *ssoBrowser) base() string {
	if b.public {
		return e2eSSOPublic
	}
	return "https://" + b.addr
}

func (b *ssoBrowser) post(path string, form url.Values) ssoPage {
	b.t.Helper()
	req, err := http.NewRequest(http.MethodPost, b.base()+path, strings.NewReader(form.Encode()))
	if err != nil {
		b.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return b.do(req)
}

// okAtOkta asserts that p is the auto-POST to Okta's ACS for r and that
// Okta (gosaml2, then xmlsec1) accepts the response as answering requestID;
// it returns the base64 SAMLResponse.
func okAtOkta(t *testing.T, sp *oktasim.SP, idpCertPEM []byte, p ssoPage, requestID, relayState string) string {
	t.Helper()
	if p.status != http.StatusOK {
		t.Fatalf("status %d, want 200:\n%s", p.status, p.body)
	}
	action, resp, relay, err := oktasim.ParsePostForm([]byte(p.body))
	if err != nil {
		t.Fatalf("no SAML form: %v\n%s", err, p.body)
	}
	if action != e2eACS || relay != relayState {
		t.Errorf("form posts to %q with RelayState %q; want %q, %q", action, relay, e2eACS, relayState)
	}
	as, err := sp.Validate(resp, requestID)
	if err != nil {
		t.Fatalf("Okta refuses the response: %v", err)
	}
	if as.NameID != e2eUser || as.InResponseTo != requestID {
		t.Errorf("assertion for %q in response to %q; want %q, %q", as.NameID, as.InResponseTo, e2eUser, requestID)
	}
	doc, err := base64.StdEncoding.DecodeString(resp)
	if err != nil {
		t.Fatal(err)
	}
	switch err := oktasim.XMLSec1Verify(doc, idpCertPEM); {
	case errors.Is(err, oktasim.ErrNoXMLSec1) && os.Getenv("CI") != "true":
		t.Logf("not checked with xmlsec1: %v", err)
	case err != nil:
		t.Errorf("xmlsec1: %v", err)
	}
	return resp
}

// retryForm finds the remediation page's "Check again" form and returns its
// action and hidden token.
func retryForm(t *testing.T, body string) (action, token string) {
	t.Helper()
	doc, err := html.Parse(strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	var walk func(n *html.Node, form *html.Node)
	walk = func(n *html.Node, form *html.Node) {
		if n.Type == html.ElementNode && n.Data == "form" {
			form = n
		}
		if n.Type == html.ElementNode && n.Data == "input" && form != nil &&
			htmlAttr(n, "type") == "hidden" && htmlAttr(n, "name") == "token" {
			action, token = htmlAttr(form, "action"), htmlAttr(n, "value")
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c, form)
		}
	}
	walk(doc, nil)
	if token == "" {
		t.Fatalf("no form with a hidden token input:\n%s", body)
	}
	return action, token
}

func htmlAttr(n *html.Node, key string) string {
	for _, a := range n.Attr {
		if a.Key == key {
			return a.Val
		}
	}
	return ""
}

// fixtureReloads counts the stand-in's reloads of its fixture file.
func fixtureReloads(p *proc) int { return strings.Count(p.logs.String(), "fixture reloaded") }

// flipMac rewrites the stand-in's fixture and waits until it has read it.
func flipMac(t *testing.T, osq *proc, fixture, from string) {
	t.Helper()
	before := fixtureReloads(osq)
	copyFile(t, from, fixture)
	deadline := time.Now().Add(10 * time.Second)
	for fixtureReloads(osq) == before {
		if time.Now().After(deadline) {
			t.Fatalf("osquery-sim did not reload %s within 10s", fixture)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitStale waits until the device's latest report is older than the live
// check threshold, so the next sign-in asks the agent.
func waitStale(t *testing.T, v *verifier, deviceID string) {
	t.Helper()
	admin, ctx := v.admin()
	got, err := admin.GetDevice(ctx, &adminv1.GetDeviceRequest{DeviceId: deviceID})
	if err != nil {
		t.Fatal(err)
	}
	at := got.GetDevice().GetLastReportAt().AsTime()
	for time.Since(at) <= liveCheckAfter+100*time.Millisecond {
		time.Sleep(time.Until(at.Add(liveCheckAfter + 150*time.Millisecond)))
	}
}

// TestSignInEndToEnd signs in to Okta from a Mac with the real binaries: the
// verifier with Okta configured and signed requests, the osquery stand-in,
// and the enrolled agent, whose loopback endpoint gives the browser (no
// certificate, a cookie jar) the Mac's proof of presence. A passing Mac gets
// a response Okta accepts; after FileVault is turned off the next sign-in
// gets the remediation page; once it is back on, "Check again" completes
// that same sign-in; the decision log shows all three, bound by the agent.
func TestSignInEndToEnd(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	dataDir := filepath.Join(dir, "verifier")
	oktaKey, oktaCert, oktaCertFile := oktaSigner(t, dir)
	ssoAddr, presenceAddr := freePort(t), freePort(t)
	_, presencePort, _ := net.SplitHostPort(presenceAddr)
	v := startSSOVerifier(t, dataDir, ssoAddr, "--okta-request-cert", oktaCertFile,
		"--live-check-after", liveCheckAfter.String(), "--live-check-timeout", "5s",
		"--agent-presence-port", presencePort)
	secret := v.enrollSecret()

	fixture, sock, osq := startStandIn(t, dir, compliantMac)

	// The agent reports when it starts and then only when asked: every
	// later report in this test comes from a live check.
	agent := startProc(t, "clearance-agent", agentRun(dir, v.grpcAddr, filepath.Join(dataDir, "ca.pem"), secret, sock,
		"--interval", "1h", "--presence-listen", presenceAddr)...)
	got := waitCompliant(t, v)
	deviceID := got.GetDevice().GetDeviceId()
	waitLog(t, agent.logs, "the agent learning the presence URL", "presence url set", e2eSSOPublic+"/saml/presence")

	sp, idpCertPEM := oktaOrg(t, dataDir, oktaKey, oktaCert)
	browser := newPresenceBrowser(t, v, ssoAddr)
	signIn := func(r oktasim.Request) ssoPage {
		t.Helper()
		u, err := sp.RedirectURL(r)
		if err != nil {
			t.Fatal(err)
		}
		if q, _ := url.Parse(u); q.Query().Get("Signature") == "" || q.Query().Get("SigAlg") != oktasim.SigAlgRSASHA256 {
			t.Fatalf("the request is not signed: %s", u)
		}
		return browser.follow(u)
	}

	// 1. A passing Mac signs in.
	first := sp.NewRequest(e2eUser)
	resp1 := okAtOkta(t, sp, idpCertPEM, signIn(first), first.ID, first.RelayState)

	// 2. FileVault goes off; the next sign-in asks the agent and is refused.
	flipMac(t, osq, fixture, failingMac)
	waitStale(t, v, deviceID)
	held := sp.NewRequest(e2eUser)
	p := signIn(held)
	if p.status != http.StatusForbidden {
		t.Fatalf("failing Mac: status %d, want 403:\n%s", p.status, p.body)
	}
	if strings.Contains(p.body, "SAMLResponse") {
		t.Fatalf("the remediation page carries a SAMLResponse:\n%s", p.body)
	}
	for _, want := range []string{"FileVault", "Check again", "policy_failed"} {
		if !strings.Contains(p.body, want) {
			t.Errorf("remediation page lacks %q:\n%s", want, p.body)
		}
	}
	action, token := retryForm(t, p.body)
	if action != "/saml/sso/retry" {
		t.Errorf("Check again posts to %q, want /saml/sso/retry", action)
	}

	// 3. FileVault is back on: "Check again" completes the held sign-in.
	flipMac(t, osq, fixture, compliantMac)
	resp3 := okAtOkta(t, sp, idpCertPEM, browser.post(action, url.Values{"token": {token}}), held.ID, held.RelayState)

	// 4. The decision log, through the admin API, tells the story.
	admin, ctx := v.admin()
	list, err := admin.ListDecisions(ctx, &adminv1.ListDecisionsRequest{DeviceId: deviceID})
	if err != nil {
		t.Fatalf("ListDecisions: %v", err)
	}
	ds := list.GetDecisions()
	if len(ds) != 3 {
		t.Fatalf("%d decisions for %s, want 3: %v", len(ds), deviceID, ds)
	}
	ds = []*adminv1.Decision{ds[2], ds[1], ds[0]} // oldest first
	want := []struct {
		allow      bool
		reason     string
		source     string
		requestID  string
		liveChecks []string
	}{
		// The first sign-in may come within liveCheckAfter of the agent's
		// start-up report, and then it needs no live check.
		{true, "allowed", "sso", first.ID, []string{"none", "answered"}},
		{false, "policy_failed", "sso", held.ID, []string{"answered"}},
		{true, "allowed", "sso_retry", held.ID, []string{"answered"}},
	}
	for i, w := range want {
		d := ds[i]
		if d.GetAllow() != w.allow || d.GetReason() != w.reason || d.GetSource() != w.source ||
			d.GetRequestId() != w.requestID || d.GetUsername() != e2eUser || d.GetBinding() != "agent" || d.GetCertSerial() != "" {
			t.Errorf("decision %d: allow=%v reason=%q source=%q request=%q user=%q binding=%q serial=%q; want allow=%v reason=%q source=%q request=%q user=%q binding=agent, no serial",
				i+1, d.GetAllow(), d.GetReason(), d.GetSource(), d.GetRequestId(), d.GetUsername(), d.GetBinding(), d.GetCertSerial(),
				w.allow, w.reason, w.source, w.requestID, e2eUser)
		}
		if !slices.Contains(w.liveChecks, d.GetLiveCheck()) {
			t.Errorf("decision %d: live check %q, want one of %v", i+1, d.GetLiveCheck(), w.liveChecks)
		}
		st := map[string]adminv1.PolicyStatus{}
		for _, r := range d.GetResults() {
			st[r.GetPolicyId()] = r.GetStatus()
		}
		wantFV := adminv1.PolicyStatus_POLICY_STATUS_PASS
		if !w.allow {
			wantFV = adminv1.PolicyStatus_POLICY_STATUS_FAIL
		}
		if st["filevault"] != wantFV {
			t.Errorf("decision %d: filevault %s, want %s (results %v)", i+1, st["filevault"], wantFV, d.GetResults())
		}
	}
	if ds[2].GetReportSeq() <= ds[1].GetReportSeq() {
		t.Errorf("Check again decided from report %d, not a fresher one than %d", ds[2].GetReportSeq(), ds[1].GetReportSeq())
	}

	// The device's state agrees: the live checks stored the passing report.
	if g := waitDevice(t, v, "the device", within, func(*adminv1.GetDeviceResponse) bool { return true }); statuses(g)["filevault"] != agentv1.PolicyStatus_POLICY_STATUS_PASS {
		t.Errorf("device's filevault after Check again: %s", statuses(g)["filevault"])
	}

	// No secret, token or SAML message reaches a log.
	secrets := map[string]string{
		"the enroll secret": secret, "the admin token": v.token(), "the retry token": token,
		"a SAML response": resp1, "another SAML response": resp3,
		"SAML XML": "<saml", "a SAMLResponse field": "SAMLResponse",
		"a presence challenge": "challenge=", "a presence statement": "statement=",
	}
	pub, _ := url.Parse(e2eSSOPublic)
	for _, c := range browser.client.Jar.Cookies(pub) {
		secrets["the "+c.Name+" cookie"] = c.Value
	}
	for name, log := range map[string]string{"verifier": v.logs.String(), "agent": agent.logs.String()} {
		for what, s := range secrets {
			if strings.Contains(log, s) {
				t.Errorf("the %s log contains %s", name, what)
			}
		}
	}
}

// oktaOrg is the simulated Okta org that signs in through the verifier
// whose data dir is dataDir; oktaKey signs its requests (nil: unsigned).
// It returns the org and the IdP's signing certificate (PEM) it trusts.
func oktaOrg(t *testing.T, dataDir string, oktaKey *rsa.PrivateKey, oktaCert *x509.Certificate) (*oktasim.SP, []byte) {
	t.Helper()
	return oktaOrgAt(t, dataDir, e2eSSOPublic, e2eACS, oktaKey, oktaCert)
}

// oktaOrgAt is oktaOrg with its own ACS URL, for a verifier whose SSO URL
// is at ssoPublic.
func oktaOrgAt(t *testing.T, dataDir, ssoPublic, acsURL string, oktaKey *rsa.PrivateKey, oktaCert *x509.Certificate) (*oktasim.SP, []byte) {
	t.Helper()
	idpCert, idpCertPEM := readCert(t, filepath.Join(dataDir, "idp-cert.pem"))
	return oktasim.New(oktasim.Options{
		EntityID: e2eAudience, ACSURL: acsURL,
		IdPSSOURL: ssoPublic + "/saml/sso", IdPIssuer: ssoPublic + "/saml/metadata", IdPCert: idpCert,
		SigningKey: oktaKey, SigningCert: oktaCert,
	}), idpCertPEM
}

// readCert reads the certificate in the first PEM block of a file, and the
// file.
func readCert(t *testing.T, path string) (*x509.Certificate, []byte) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(raw)
	if blk == nil {
		t.Fatalf("%s holds no PEM block", path)
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return c, raw
}

// TestUnsignedRequestRefused: a verifier not told Okta's request-signing
// certificate refuses every sign-in, since whoever builds an unsigned request
// names the user it asserts; --allow-unsigned-requests is the explicit,
// logged way out.
func TestUnsignedRequestRefused(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ssoAddr := freePort(t)
	v := startVerifierArgs(t, filepath.Join(dir, "verifier"), "--sso-listen", ssoAddr, "--sso-public-url", e2eSSOPublic,
		"--okta-audience", e2eAudience, "--okta-acs-url", e2eACS)
	sp, _ := oktaOrg(t, filepath.Join(dir, "verifier"), nil, nil)
	u, err := sp.RedirectURL(sp.NewRequest(e2eUser))
	if err != nil {
		t.Fatal(err)
	}
	p := newPresenceBrowser(t, v, ssoAddr).follow(u)
	if p.status != http.StatusServiceUnavailable || strings.Contains(p.body, "SAMLResponse") || !strings.Contains(p.body, "okta_request_cert_missing") {
		t.Fatalf("an unsigned request got %d:\n%s", p.status, p.body)
	}
	waitLog(t, v.logs, "the start-up warning", "okta_request_cert is not set")
	waitLog(t, v.logs, "the refusal", "msg=sso_request_refused", "reason=okta_request_cert_missing")
}

// TestSignInFromRevokedMacsBrowser: a Mac signs in once, so its browser
// keeps the device hint; the Mac is revoked ("laptop reported stolen") and
// its agent's stream ends. The next sign-in from that browser is told the
// Mac was removed, not that Clearance is not running, and the security
// team finds the attempt in the decision log: device_revoked under the
// Mac, named by the browser's hint.
func TestSignInFromRevokedMacsBrowser(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	dataDir := filepath.Join(dir, "verifier")
	oktaKey, oktaCert, oktaCertFile := oktaSigner(t, dir)
	ssoAddr, presenceAddr := freePort(t), freePort(t)
	_, presencePort, _ := net.SplitHostPort(presenceAddr)
	v := startSSOVerifier(t, dataDir, ssoAddr, "--okta-request-cert", oktaCertFile, "--agent-presence-port", presencePort)
	_, sock, _ := startStandIn(t, dir, compliantMac)
	agent := startProc(t, "clearance-agent", agentRun(dir, v.grpcAddr, filepath.Join(dataDir, "ca.pem"), v.enrollSecret(), sock,
		"--interval", "1h", "--presence-listen", presenceAddr)...)
	deviceID := waitCompliant(t, v).GetDevice().GetDeviceId()
	waitLog(t, agent.logs, "the agent learning the presence URL", "presence url set", e2eSSOPublic+"/saml/presence")

	sp, idpCertPEM := oktaOrg(t, dataDir, oktaKey, oktaCert)
	browser := newPresenceBrowser(t, v, ssoAddr)
	signIn := func(r oktasim.Request) ssoPage {
		t.Helper()
		u, err := sp.RedirectURL(r)
		if err != nil {
			t.Fatal(err)
		}
		return browser.follow(u)
	}
	first := sp.NewRequest(e2eUser)
	okAtOkta(t, sp, idpCertPEM, signIn(first), first.ID, first.RelayState)

	admin, ctx := v.admin()
	if _, err := admin.RevokeDevice(ctx, &adminv1.RevokeDeviceRequest{DeviceId: deviceID, Reason: "laptop reported stolen"}); err != nil {
		t.Fatalf("RevokeDevice: %v", err)
	}
	waitDevice(t, v, "the revoked Mac's agent to be cut off", within, func(g *adminv1.GetDeviceResponse) bool { return !g.GetDevice().GetConnected() })

	again := sp.NewRequest(e2eUser)
	p := signIn(again)
	if p.status != http.StatusForbidden || !strings.Contains(p.body, "device_revoked") || !strings.Contains(p.body, "no longer allowed to sign in") {
		t.Fatalf("the revoked Mac's browser got %d, want 403 device_revoked:\n%s", p.status, p.body)
	}
	if strings.Contains(p.body, "agent_not_running") || strings.Contains(p.body, "SAMLResponse") {
		t.Fatalf("the revoked Mac's browser got the wrong page:\n%s", p.body)
	}

	d := decisionFor(t, v, deviceID, again.ID)
	if d.GetAllow() || d.GetReason() != "device_revoked" || d.GetBinding() != "hint" || d.GetUsername() != e2eUser {
		t.Errorf("decision log: %v", d)
	}
	out := cli(t, "decisions", "--data-dir", dataDir, "--device", deviceID, "--wide")
	if !strings.Contains(out, "device_revoked (by device hint)") || !strings.Contains(out, deviceID) {
		t.Errorf("clearance-verifier decisions does not list the attempt:\n%s", out)
	}
}

// TestHeldSignInEndsWithItsKey: a failing Mac's sign-in is held, proven by
// the Mac's key; the Mac is then set up again (an expected reinstall: a new
// key, the same hardware UUID and serial) and passes. "Check again" with
// the held sign-in's token does not complete it from the new key's
// posture: the held sign-in was proven by the key that is gone, and the
// browser must start again.
func TestHeldSignInEndsWithItsKey(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	dataDir := filepath.Join(dir, "verifier")
	oktaKey, oktaCert, oktaCertFile := oktaSigner(t, dir)
	ssoAddr, presenceAddr, presenceAddr2 := freePort(t), freePort(t), freePort(t)
	_, presencePort, _ := net.SplitHostPort(presenceAddr)
	// "Check again" asks the Mac for a fresh check, so its posture at the
	// press decides.
	v := startSSOVerifier(t, dataDir, ssoAddr, "--okta-request-cert", oktaCertFile, "--agent-presence-port", presencePort,
		"--live-check-after", liveCheckAfter.String(), "--live-check-timeout", "5s")
	secret := v.enrollSecret()
	fixture, sock, osq := startStandIn(t, dir, failingMac)
	first := startProc(t, "clearance-agent", agentRun(dir, v.grpcAddr, filepath.Join(dataDir, "ca.pem"), secret, sock,
		"--interval", "1h", "--presence-listen", presenceAddr)...)
	got := waitDevice(t, v, "the failing Mac's report", within, func(g *adminv1.GetDeviceResponse) bool {
		return g.GetDevice().GetConnected() && g.GetDevice().GetLastReportAt() != nil
	})
	deviceID, oldKey := got.GetDevice().GetDeviceId(), got.GetDevice().GetKeyFingerprint()
	waitLog(t, first.logs, "the agent learning the presence URL", "presence url set", e2eSSOPublic+"/saml/presence")

	sp, _ := oktaOrg(t, dataDir, oktaKey, oktaCert)
	browser := newPresenceBrowser(t, v, ssoAddr)
	held := sp.NewRequest(e2eUser)
	u, err := sp.RedirectURL(held)
	if err != nil {
		t.Fatal(err)
	}
	p := browser.follow(u)
	if p.status != http.StatusForbidden {
		t.Fatalf("the failing Mac's sign-in: %d, want 403\n%s", p.status, p.body)
	}
	_, token := retryForm(t, p.body)

	admin, ctx := v.admin()
	if _, err := admin.ExpectReinstall(ctx, &adminv1.ExpectReinstallRequest{DeviceId: deviceID}); err != nil {
		t.Fatalf("ExpectReinstall: %v", err)
	}
	first.stop()
	again := filepath.Join(dir, "set-up-again")
	if err := os.MkdirAll(again, 0o700); err != nil {
		t.Fatal(err)
	}
	startProc(t, "clearance-agent", agentRun(again, v.grpcAddr, filepath.Join(dataDir, "ca.pem"), secret, sock,
		"--interval", "1h", "--presence-listen", presenceAddr2)...)
	waitDevice(t, v, "the new key's enrollment", within, func(g *adminv1.GetDeviceResponse) bool {
		return g.GetDevice().GetConnected() && g.GetDevice().GetKeyFingerprint() != oldKey
	})
	flipMac(t, osq, fixture, compliantMac)

	r := browser.post("/saml/sso/retry", url.Values{"token": {token}})
	if r.status != http.StatusBadRequest || strings.Contains(r.body, "SAMLResponse") {
		t.Fatalf("Check again after the key changed: %d, want 400 and no response\n%s", r.status, r.body)
	}
}
