package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"go.step.sm/crypto/minica"

	"github.com/clearance/clearance/internal/browser"
	"github.com/clearance/clearance/internal/oktasim"
	"github.com/clearance/clearance/pkg/presence"
	adminv1 "github.com/clearance/clearance/proto/gen/clearance/admin/v1"
)

// The names the browser uses: the verifier's sign-in listener and Okta's
// ACS, both resolved to loopback inside the browser only.
const (
	ssoHost  = "sso.clearance.test"
	oktaHost = "okta.clearance.test"
	// chromiumExe is the executable Debian's /usr/bin/chromium wrapper
	// runs: the program the agent sees at the other end of the loopback.
	chromiumExe = "/usr/lib/chromium/chromium"
)

// okta is Okta's side for a real browser: an HTTPS ACS on loopback that
// checks every SAMLResponse posted to it as Okta would (gosaml2, xmlsec1)
// and shows a page saying whether it was accepted.
type oktaACS struct {
	sp       *oktasim.SP
	idpPEM   []byte
	url      string // the ACS URL, at oktaHost
	addr     string
	caPEM    []byte
	mu       sync.Mutex
	pending  map[string]bool // IDs of the requests Okta sent
	accepted []string        // InResponseTo of each accepted response
	refused  []error
}

// request makes an AuthnRequest and remembers it, as Okta does, so that
// only a response to a request it sent is accepted.
func (o *oktaACS) request() oktasim.Request {
	r := o.sp.NewRequest(e2eUser)
	o.mu.Lock()
	o.pending[r.ID] = true
	o.mu.Unlock()
	return r
}

var inResponseTo = regexp.MustCompile(`InResponseTo="([^"]{1,256})"`)

func startOktaACS(t *testing.T, addr string) *oktaACS {
	t.Helper()
	ca, err := minica.New(minica.WithName("Okta test CA"))
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ca.Sign(&x509.Certificate{DNSNames: []string{oktaHost}, PublicKey: key.Public(), ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(addr)
	o := &oktaACS{addr: addr, url: "https://" + oktaHost + ":" + port + "/sso/saml2/0oa1clearancebrowser", pending: map[string]bool{},
		caPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Root.Raw})}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{
		Handler: http.HandlerFunc(o.serve), ReadHeaderTimeout: 10 * time.Second,
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{leaf.Raw, ca.Intermediate.Raw}, PrivateKey: key}}},
	}
	go func() { _ = srv.ServeTLS(ln, "", "") }()
	t.Cleanup(func() { srv.Close() })
	return o
}

func (o *oktaACS) serve(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		http.NotFound(w, r)
		return
	}
	_ = r.ParseForm()
	resp := r.PostForm.Get("SAMLResponse")
	o.mu.Lock()
	defer o.mu.Unlock()
	// Which of Okta's requests it answers (read unverified, only to pick
	// the request; Validate then checks it is signed as answering it).
	var as *oktasim.Assertion
	doc, err := base64.StdEncoding.DecodeString(resp)
	if err == nil {
		m := inResponseTo.FindSubmatch(doc)
		switch {
		case m == nil || !o.pending[string(m[1])]:
			err = errors.New("the response answers no request Okta sent")
		default:
			as, err = o.sp.Validate(resp, string(m[1]))
		}
	}
	if err == nil {
		if xerr := oktasim.XMLSec1Verify(doc, o.idpPEM); xerr != nil && (!errors.Is(xerr, oktasim.ErrNoXMLSec1) || os.Getenv("CI") != "") {
			err = xerr
		}
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	if err != nil {
		o.refused = append(o.refused, err)
		w.WriteHeader(http.StatusForbidden)
		fmt.Fprintf(w, "<!doctype html><html lang=en><title>Refused</title><main><h1>Okta refused the response</h1></main></html>")
		return
	}
	o.accepted = append(o.accepted, as.InResponseTo)
	fmt.Fprintf(w, `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Signed in</title></head><body><main><h1>Okta accepted the sign-in</h1><p>%s is signed in.</p></main></body></html>`, as.NameID)
}

// sawAccepted reports whether Okta accepted a response to requestID.
func (o *oktaACS) sawAccepted(t *testing.T, requestID string) {
	t.Helper()
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, id := range o.accepted {
		if id == requestID {
			return
		}
	}
	t.Fatalf("Okta did not accept a response to %s (accepted %v, refused %v)", requestID, o.accepted, o.refused)
}

// TestBrowserSignIn signs in with Debian's Chromium, headless, through the
// real verifier and agent: no client certificate, the agent's browser check
// on (only Chromium's executable is allowed). A compliant Mac's browser gets
// a SAMLResponse Okta accepts; a failing Mac's gets the remediation page;
// after the fix, Check again completes the same sign-in. With the agent
// stopped, a browser that has signed in before gets Clearance's own page,
// with JavaScript on and off. Screenshots of each page are test artifacts,
// and axe-core checks each.
func TestBrowserSignIn(t *testing.T) {
	t.Parallel()
	m := startBrowserMac(t, t.TempDir(), compliantMac)
	v, okta, agent, opts := m.v, m.okta, m.agent, m.opts
	deviceID := waitCompliant(t, v).GetDevice().GetDeviceId()
	b := browser.New(t, opts)
	signIn := func(b *browser.Browser) (oktasim.Request, error) {
		t.Helper()
		r := okta.request()
		u, err := okta.sp.RedirectURL(r)
		if err != nil {
			t.Fatal(err)
		}
		return r, b.Navigate(u)
	}

	// 1. A compliant Mac: to the agent and back, then to Okta, which
	// accepts the response.
	r, err := signIn(b)
	if err != nil {
		t.Fatalf("sign-in: %v\nhops: %v", err, b.Hops())
	}
	okta.sawAccepted(t, r.ID)
	if !strings.Contains(b.Text(), "Okta accepted the sign-in") {
		t.Fatalf("the browser ends on %s:\n%s\nhops: %v", b.URL(), b.Text(), b.Hops())
	}
	wantHops(t, b.Hops(), "/saml/sso", "http://127.0.0.1:"+m.presencePort+"/v1/presence", "/saml/presence", "/sso/saml2/")
	b.Screenshot("signed-in")

	// 2. FileVault off: the remediation page, with what to fix.
	flipMac(t, m.osq, m.fixture, failingMac)
	waitStale(t, v, deviceID)
	held, err := signIn(b)
	if err != nil {
		t.Fatalf("sign-in: %v", err)
	}
	text := b.Text()
	for _, want := range []string{"Your Mac needs attention", "FileVault", "Check again"} {
		if !strings.Contains(text, want) {
			t.Errorf("remediation page lacks %q:\n%s", want, text)
		}
	}
	b.Screenshot("remediation")
	b.CheckAccessibility()

	// 3. Fixed: Check again completes the same sign-in at Okta.
	flipMac(t, m.osq, m.fixture, compliantMac)
	if err := b.Submit("form.action"); err != nil {
		t.Fatalf("Check again: %v\nhops: %v", err, b.Hops())
	}
	okta.sawAccepted(t, held.ID)
	b.Screenshot("check-again-signed-in")

	// 4. The same browser with JavaScript off: the ceremony needs none; the
	// response waits for the Continue button.
	nojs := browser.New(t, browser.Options{Trust: opts.Trust, Hosts: opts.Hosts, NoJavaScript: true})
	r, err = signIn(nojs)
	if err != nil {
		t.Fatalf("sign-in without JavaScript: %v", err)
	}
	nojs.Screenshot("continue-without-javascript")
	if err := nojs.Submit("#saml-post"); err != nil {
		t.Fatalf("Continue: %v", err)
	}
	okta.sawAccepted(t, r.ID)

	// 5. A program that is not the browser, asking exactly as the verifier
	// would send a browser, gets nothing from the agent.
	agentURL, err := presence.AgentURL(m.presenceAddr, presence.NewChallenge(), m.ssoPublic+"/saml/presence")
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get(agentURL)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden || resp.Header.Get("Location") != "" {
		t.Errorf("a non-browser client got %d from the agent:\n%s", resp.StatusCode, body)
	}
	waitLog(t, agent.logs, "the agent refusing the test program", "peer_not_browser")

	// 6. The agent stops: both browsers, which signed in before, get
	// Clearance's page instead of a connection error.
	agent.stop()
	waitDevice(t, v, "the agent gone", within, func(g *adminv1.GetDeviceResponse) bool { return !g.GetDevice().GetConnected() })
	for name, br := range map[string]*browser.Browser{"javascript": b, "no-javascript": nojs} {
		if _, err := signIn(br); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !strings.Contains(br.Text(), "Clearance isn't running on this Mac") || !strings.Contains(br.Text(), "Try again") {
			t.Errorf("%s: the page says:\n%s", name, br.Text())
		}
		br.Screenshot("agent-not-running-" + name)
		br.CheckAccessibility()
	}
	// Try again reaches the loopback, where nothing listens now: that is
	// the browser's own page, which the docs describe.
	if err := b.Click("a.button"); err == nil || !strings.Contains(err.Error(), "ERR_CONNECTION_REFUSED") {
		t.Errorf("Try again with no agent: %v", err)
	}
	b.Screenshot("try-again-no-agent")

	// 7. A first-ever sign-in with no agent: the browser's own error page.
	fresh := browser.New(t, opts)
	if _, err := signIn(fresh); err == nil || !strings.Contains(err.Error(), "ERR_CONNECTION_REFUSED") {
		t.Errorf("first sign-in with no agent: %v, on %s", err, fresh.URL())
	}
	fresh.Screenshot("first-sign-in-no-agent")
}

// wantHops fails unless the redirect chain visited each of parts in order.
func wantHops(t *testing.T, hops []browser.Hop, parts ...string) {
	t.Helper()
	i := 0
	for _, h := range hops {
		if i < len(parts) && strings.Contains(h.URL, parts[i]) {
			i++
		}
	}
	if i < len(parts) {
		t.Errorf("the browser's hops %v do not pass through %v in order", hops, parts)
	}
}

// browserMac is what a Chromium sign-in test runs against: Okta's
// stand-in, the verifier, and a Mac (the osquery stand-in, the real agent
// serving proofs of presence to Chromium only) whose agent has reported and
// knows where to send proofs.
type browserMac struct {
	v                          *verifier
	okta                       *oktaACS
	osq, agent                 *proc
	fixture                    string // the Mac's state, for flipMac
	ssoPublic                  string
	presenceAddr, presencePort string
	opts                       browser.Options // what a browser needs to reach the verifier and Okta
}

// startBrowserMac starts it all in dir, the Mac in the state of the fixture
// from; flags go to the verifier.
func startBrowserMac(t *testing.T, dir, from string, flags ...string) *browserMac {
	t.Helper()
	dataDir := filepath.Join(dir, "verifier")
	ssoAddr, presenceAddr, oktaAddr := freePort(t), freePort(t), freePort(t)
	_, ssoPort, _ := net.SplitHostPort(ssoAddr)
	_, presencePort, _ := net.SplitHostPort(presenceAddr)
	m := &browserMac{ssoPublic: "https://" + ssoHost + ":" + ssoPort, presenceAddr: presenceAddr, presencePort: presencePort,
		okta: startOktaACS(t, oktaAddr)}
	m.v = startBrowserVerifier(t, dataDir, ssoAddr, m.ssoPublic, m.okta.url, append([]string{"--agent-presence-port", presencePort,
		"--live-check-after", liveCheckAfter.String(), "--live-check-timeout", "5s"}, flags...)...)
	secret := m.v.enrollSecret()
	m.okta.sp, m.okta.idpPEM = oktaOrgAt(t, dataDir, m.ssoPublic, m.okta.url, nil, nil)

	var sock string
	m.fixture, sock, m.osq = startStandIn(t, dir, from)
	m.agent = startProc(t, "clearance-agent", agentRun(dir, m.v.grpcAddr, filepath.Join(dataDir, "ca.pem"), secret, sock,
		"--interval", "1h", "--presence-listen", presenceAddr, "--presence-browsers", chromiumExe)...)
	waitDevice(t, m.v, "a report", within, func(g *adminv1.GetDeviceResponse) bool {
		return g.GetDevice().GetConnected() && g.GetDevice().GetLastReportAt() != nil
	})
	waitLog(t, m.agent.logs, "the agent learning the presence URL", "presence url set", m.ssoPublic+"/saml/presence")
	m.opts = browser.Options{Trust: append(append([]byte{}, m.v.rootPEM()...), m.okta.caPEM...),
		Hosts: map[string]string{ssoHost: "127.0.0.1", oktaHost: "127.0.0.1"}}
	return m
}

// startBrowserVerifier starts a verifier whose sign-in listener browsers
// reach at ssoPublic, with Okta's ACS at acsURL.
func startBrowserVerifier(t *testing.T, dataDir, ssoAddr, ssoPublic, acsURL string, extra ...string) *verifier {
	t.Helper()
	return startVerifierArgs(t, dataDir, append([]string{
		"--sso-listen", ssoAddr, "--sso-public-url", ssoPublic,
		"--okta-audience", e2eAudience, "--okta-acs-url", acsURL, "--allow-unsigned-requests",
	}, extra...)...)
}
