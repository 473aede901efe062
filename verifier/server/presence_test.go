package server_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/metadata"

	"github.com/clearance/clearance/internal/oktasim"
	"github.com/clearance/clearance/internal/protoagent"
	"github.com/clearance/clearance/internal/testkit"
	"github.com/clearance/clearance/pkg/presence"
	adminv1 "github.com/clearance/clearance/proto/gen/clearance/admin/v1"
	agentv1 "github.com/clearance/clearance/proto/gen/clearance/agent/v1"
	"github.com/clearance/clearance/verifier/cluster"
	"github.com/clearance/clearance/verifier/config"
	"github.com/clearance/clearance/verifier/idp"
	"github.com/clearance/clearance/verifier/server"
	"github.com/clearance/clearance/verifier/signin"
	"github.com/clearance/clearance/verifier/storage"
)

// startAgentBinding starts a verifier that binds sign-ins by the agent's
// proof of presence.
func startAgentBinding(t *testing.T, edit func(*config.Config)) *ssoEnv {
	t.Helper()
	return startSSO(t, false, func(c *config.Config) {
		c.BrowserBinding = config.BindingAgent
		if edit != nil {
			edit(c)
		}
	})
}

// jarBrowser is a browser with a cookie jar and no certificate.
func (e *ssoEnv) jarBrowser(t *testing.T) *http.Client {
	t.Helper()
	c := e.browser(nil)
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	c.Jar = jar
	return c
}

// toAgent starts r's sign-in in browser c and returns the challenge the
// verifier sent it to the agent with.
func (e *ssoEnv) toAgent(t *testing.T, c *http.Client, r oktasim.Request) string {
	t.Helper()
	p := e.redirect(t, c, r)
	if p.status != http.StatusSeeOther {
		t.Fatalf("sign-in answered %d, want 303 to the agent:\n%s", p.status, p.body)
	}
	u, err := url.Parse(p.location)
	if err != nil || u.Scheme != "http" || u.Host != "127.0.0.1:47470" || u.Path != presence.AgentPath {
		t.Fatalf("sent to %q, want the agent on loopback", p.location)
	}
	challenge, ret, err := presence.ParseAgentQuery(u.RawQuery)
	if err != nil {
		t.Fatal(err)
	}
	if ret != e.cfg.PresenceURL() {
		t.Fatalf("return URL %q, want %q", ret, e.cfg.PresenceURL())
	}
	return challenge
}

// statement is what the agent on the Mac would sign.
func (e *ssoEnv) statement(t *testing.T, key crypto.Signer, deviceID, challenge string, at time.Time) string {
	t.Helper()
	origin, err := presence.OriginOf(e.cfg.PresenceURL())
	if err != nil {
		t.Fatal(err)
	}
	raw, sig, err := presence.Sign(key, presence.Statement{Challenge: challenge, DeviceID: deviceID, Origin: origin, Time: at.Truncate(time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	return presence.RedirectQuery(raw, sig)
}

// back is the browser following the agent's redirect back to the verifier.
func (e *ssoEnv) back(t *testing.T, c *http.Client, query string) page {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, e.url+signin.PathPresence+"?"+query, nil)
	return do(t, c, req)
}

// ceremony runs a whole sign-in with agent a's proof in browser c.
func (e *ssoEnv) ceremony(t *testing.T, c *http.Client, a *protoagent.Agent, r oktasim.Request) page {
	t.Helper()
	ch := e.toAgent(t, c, r)
	return e.back(t, c, e.statement(t, a.Key, a.DeviceID, ch, e.clock.Now()))
}

func refusedWith(t *testing.T, p page, status int, reason string) {
	t.Helper()
	noResponse(t, p)
	if p.status != status || !strings.Contains(p.body, reason) {
		t.Errorf("status %d, want %d with reason %s:\n%s", p.status, status, reason, p.body)
	}
}

// A compliant Mac's browser, without any certificate, signs in with its
// agent's proof; the response is Okta's to accept and says how the Mac was
// bound; the decision log records the binding.
func TestPresenceAllow(t *testing.T) {
	t.Parallel()
	e := startAgentBinding(t, nil)
	a, _ := e.device(t, agentv1.PolicyStatus_POLICY_STATUS_PASS, nil)
	c := e.jarBrowser(t)
	r := e.sp.NewRequest(testUser)
	p := e.ceremony(t, c, a, r)
	e.allowed(t, p, r)
	if !strings.Contains(p.body, "SAMLResponse") {
		t.Fatal("no response")
	}
	ds := e.decisions(t)
	if len(ds) != 1 || !ds[0].Allow || ds[0].Binding != "agent" || ds[0].DeviceID != a.DeviceID || ds[0].CertSerial != "" {
		t.Fatalf("decision log %+v", ds)
	}
	// The browser now carries a hint of its Mac, and its sign-in cookie
	// is host-only, secure, HTTP-only.
	u, _ := url.Parse(e.url)
	names := map[string]bool{}
	for _, ck := range c.Jar.Cookies(u) {
		names[ck.Name] = true
	}
	if !names["__Host-clearance-signin"] || !names["__Host-clearance-device"] {
		t.Errorf("cookies %v", names)
	}
	_, resp, _, _ := oktasim.ParsePostForm([]byte(p.body))
	if doc := decodeB64(t, resp); !strings.Contains(doc, idp.AuthnContextX509) {
		t.Errorf("assertion does not state the X509 context")
	}
	e.logs.lacks(t, "challenge=")
}

// Every way to complete a ceremony that is not the Mac's own browser with
// its own proof is refused with its own reason, and nothing is decided or
// consumed that the real ceremony still needs.
func TestPresenceAttacks(t *testing.T) {
	t.Parallel()
	// Okta signs: a refused proof of an unsigned sign-in is only counted
	// (TestUnsignedRefusalsCounted).
	e := startSSO(t, true, func(c *config.Config) { c.BrowserBinding = config.BindingAgent })
	a, _ := e.device(t, agentv1.PolicyStatus_POLICY_STATUS_PASS, nil)
	other, _ := e.device(t, agentv1.PolicyStatus_POLICY_STATUS_PASS, nil)
	now := e.clock.Now

	t.Run("another browser completes the redirect", func(t *testing.T) {
		victim, thief := e.jarBrowser(t), e.jarBrowser(t)
		r := e.sp.NewRequest(testUser)
		q := e.statement(t, a.Key, a.DeviceID, e.toAgent(t, victim, r), now())
		refusedWith(t, e.back(t, thief, q), http.StatusForbidden, "presence_other_browser")
		// The first presentation spent it: a statement that leaked on its
		// way is worth nothing afterwards, not even to the browser that
		// started the sign-in (which signs in again).
		refusedWith(t, e.back(t, victim, q), http.StatusBadRequest, "presence_replayed")
		refusedWith(t, e.back(t, e.browser(nil), q), http.StatusBadRequest, "presence_replayed")
		// With no cookie at all, on a fresh sign-in.
		q = e.statement(t, a.Key, a.DeviceID, e.toAgent(t, victim, e.sp.NewRequest(testUser)), now())
		refusedWith(t, e.back(t, e.browser(nil), q), http.StatusForbidden, "presence_other_browser")
	})
	t.Run("a relayed sign-in whose statement leaks back", func(t *testing.T) {
		// The attacker starts a sign-in elsewhere and gets the Mac's own
		// browser to open the agent URL; the Mac's browser lands on the
		// presence URL without the attacker's cookie and is refused. The
		// statement then leaks (browser history, a proxy log) to the
		// attacker, who holds the right cookie: it is spent.
		attacker, mac := e.jarBrowser(t), e.jarBrowser(t)
		q := e.statement(t, a.Key, a.DeviceID, e.toAgent(t, attacker, e.sp.NewRequest("mallory@example.com")), now())
		refusedWith(t, e.back(t, mac, q), http.StatusForbidden, "presence_other_browser")
		refusedWith(t, e.back(t, attacker, q), http.StatusBadRequest, "presence_replayed")
	})
	t.Run("replayed statement", func(t *testing.T) {
		c := e.jarBrowser(t)
		r := e.sp.NewRequest(testUser)
		q := e.statement(t, a.Key, a.DeviceID, e.toAgent(t, c, r), now())
		e.allowed(t, e.back(t, c, q), r)
		refusedWith(t, e.back(t, c, q), http.StatusBadRequest, "presence_replayed")
	})
	t.Run("statement for another sign-in", func(t *testing.T) {
		mine, theirs := e.jarBrowser(t), e.jarBrowser(t)
		e.toAgent(t, mine, e.sp.NewRequest(testUser))
		q := e.statement(t, a.Key, a.DeviceID, e.toAgent(t, theirs, e.sp.NewRequest("bob@example.com")), now())
		refusedWith(t, e.back(t, mine, q), http.StatusForbidden, "presence_other_browser")
		// A challenge no sign-in has.
		q = e.statement(t, a.Key, a.DeviceID, presence.NewChallenge(), now())
		refusedWith(t, e.back(t, mine, q), http.StatusBadRequest, "presence_unknown_sign_in")
	})
	t.Run("signed by another device's key", func(t *testing.T) {
		c := e.jarBrowser(t)
		r := e.sp.NewRequest(testUser)
		q := e.statement(t, other.Key, a.DeviceID, e.toAgent(t, c, r), now())
		refusedWith(t, e.back(t, c, q), http.StatusForbidden, "presence_bad_signature")
		// Spent: the same forged statement again is not a second row on
		// record.
		refusedWith(t, e.back(t, c, q), http.StatusBadRequest, "presence_replayed")
		// A key that is no device's at all.
		stranger, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		q = e.statement(t, stranger, a.DeviceID, e.toAgent(t, c, e.sp.NewRequest(testUser)), now())
		refusedWith(t, e.back(t, c, q), http.StatusForbidden, "presence_bad_signature")
		e.logs.has(t, "reason=presence_bad_signature", "claimed_device_id="+a.DeviceID)
	})
	t.Run("wrong origin", func(t *testing.T) {
		c := e.jarBrowser(t)
		ch := e.toAgent(t, c, e.sp.NewRequest(testUser))
		raw, sig, _ := presence.Sign(a.Key, presence.Statement{Challenge: ch, DeviceID: a.DeviceID, Origin: "https://evil.example", Time: now().Truncate(time.Second)})
		refusedWith(t, e.back(t, c, presence.RedirectQuery(raw, sig)), http.StatusBadRequest, "presence_wrong_origin")
	})
	t.Run("malformed", func(t *testing.T) {
		c := e.jarBrowser(t)
		e.toAgent(t, c, e.sp.NewRequest(testUser))
		for _, q := range []string{"", "statement=AAAA", "statement=!!&signature=AA", "statement=AA&signature=AA&x=1", strings.Repeat("a", 5000)} {
			refusedWith(t, e.back(t, c, q), http.StatusBadRequest, "presence_malformed")
		}
	})
	t.Run("unknown device", func(t *testing.T) {
		c := e.jarBrowser(t)
		q := e.statement(t, a.Key, "00000000-0000-4000-8000-000000000000", e.toAgent(t, c, e.sp.NewRequest(testUser)), now())
		refusedWith(t, e.back(t, c, q), http.StatusForbidden, "presence_unknown_device")
	})
	t.Run("statement time far off", func(t *testing.T) {
		c := e.jarBrowser(t)
		q := e.statement(t, a.Key, a.DeviceID, e.toAgent(t, c, e.sp.NewRequest(testUser)), now().Add(-time.Hour))
		refusedWith(t, e.back(t, c, q), http.StatusForbidden, "presence_clock_skew")
	})
	// None of these decided anything for the thief: only the one real
	// sign-in was allowed, and each forged proof is on record once: under
	// the Mac only when its key signed it, else as a claim.
	var allowed, forged int
	for _, d := range e.decisions(t) {
		switch {
		case d.Allow:
			allowed++
		case d.Reason == "presence_clock_skew" && d.DeviceID == a.DeviceID && d.ClaimedDeviceID == "":
			forged++
		case (d.Reason == "presence_bad_signature" || d.Reason == "presence_unknown_device") && d.DeviceID == "" && d.ClaimedDeviceID != "":
			forged++
		default:
			t.Errorf("unexpected decision %+v", d)
		}
	}
	if allowed != 1 || forged != 4 {
		t.Errorf("%d allowed, %d forged proofs on record; want 1 and 4", allowed, forged)
	}
}

// A challenge older than two minutes is refused; so is a proof for a
// revoked Mac, and the old key after the Mac enrolled again.
func TestPresenceExpiredRevokedReenrolled(t *testing.T) {
	t.Parallel()
	e := startAgentBinding(t, nil)
	a, st := e.device(t, agentv1.PolicyStatus_POLICY_STATUS_PASS, nil)

	c := e.jarBrowser(t)
	ch := e.toAgent(t, c, e.sp.NewRequest(testUser))
	e.clock.Add(signin.ChallengeTTL + time.Second)
	refusedWith(t, e.back(t, c, e.statement(t, a.Key, a.DeviceID, ch, e.clock.Now())), http.StatusBadRequest, "presence_expired")

	// Re-enrolled with a new key: the old key's proof no longer counts.
	st.Close()
	oldKey := a.Key
	a.Key, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	a.CertDER, a.Chain = nil, nil
	if _, err := a.EnrollRotating(e.ctx(), e.secret(), oldKey); err != nil {
		t.Fatal(err)
	}
	r := e.sp.NewRequest(testUser)
	q := e.statement(t, oldKey, a.DeviceID, e.toAgent(t, c, r), e.clock.Now())
	refusedWith(t, e.back(t, c, q), http.StatusForbidden, "presence_bad_signature")

	// Revoked: the proof is genuine, the decision denies.
	if _, err := e.admin.RevokeDevice(e.ctx(), revokeReq(a.DeviceID)); err != nil {
		t.Fatal(err)
	}
	p := e.ceremony(t, c, a, e.sp.NewRequest(testUser))
	noResponse(t, p)
	if p.status != http.StatusForbidden || !strings.Contains(p.body, "device_revoked") {
		t.Errorf("revoked Mac: status %d\n%s", p.status, p.body)
	}
}

// A denied sign-in bound by the agent is resumed with Check again from the
// same browser only.
func TestPresenceCheckAgain(t *testing.T) {
	t.Parallel()
	e := startAgentBinding(t, nil)
	live := agentv1.PolicyStatus_POLICY_STATUS_FAIL
	a, _ := e.device(t, agentv1.PolicyStatus_POLICY_STATUS_FAIL, &live)
	c := e.jarBrowser(t)
	r := e.sp.NewRequest(testUser)
	p := e.ceremony(t, c, a, r)
	noResponse(t, p)
	token := retryToken(t, p)

	refusedWith(t, e.post(t, e.jarBrowser(t), signin.PathRetry, url.Values{"token": {token}}), http.StatusForbidden, "retry_from_other_browser")
	live = agentv1.PolicyStatus_POLICY_STATUS_PASS
	e.allowed(t, e.post(t, c, signin.PathRetry, url.Values{"token": {token}}), r)
	ds := e.decisions(t)
	if len(ds) != 2 || !ds[0].Allow || ds[0].Source != "sso_retry" || ds[0].Binding != "agent" {
		t.Errorf("decisions %+v", ds)
	}
}

// A browser whose Mac proved itself before, and whose agent is no longer
// connected, gets Clearance's own page with a way to try again, instead of
// being sent to a loopback port where nothing listens.
func TestPresenceAgentNotRunning(t *testing.T) {
	t.Parallel()
	e := startAgentBinding(t, nil)
	a, st := e.device(t, agentv1.PolicyStatus_POLICY_STATUS_PASS, nil)
	c := e.jarBrowser(t)
	r := e.sp.NewRequest(testUser)
	e.allowed(t, e.ceremony(t, c, a, r), r)

	st.Close()
	waitFor(t, "the agent to be gone", func() bool { return !e.srv.Hub.Connected(a.DeviceID) })
	p := e.redirect(t, c, e.sp.NewRequest(testUser))
	if p.status != http.StatusOK || !strings.Contains(p.body, "Clearance isn&#39;t running on this Mac") || !strings.Contains(p.body, "agent_not_running") {
		t.Fatalf("status %d:\n%s", p.status, p.body)
	}
	if !strings.Contains(p.body, `href="http://127.0.0.1:47470/v1/presence?challenge=`) {
		t.Errorf("no Try again link to the agent:\n%s", p.body)
	}
	// A browser that never signed in here knows no Mac: it is sent on.
	if p := e.redirect(t, e.jarBrowser(t), e.sp.NewRequest(testUser)); p.status != http.StatusSeeOther {
		t.Errorf("first-time browser: status %d", p.status)
	}
	// A forged hint is no hint.
	f := e.jarBrowser(t)
	u, _ := url.Parse(e.url)
	f.Jar.SetCookies(u, []*http.Cookie{{Name: "__Host-clearance-device", Value: "v2." + a.DeviceID + ".9999999999.AAAAAAAAAAAAAAAAAAAAAA", Path: "/", Secure: true}})
	if p := e.redirect(t, f, e.sp.NewRequest(testUser)); p.status != http.StatusSeeOther {
		t.Errorf("forged hint: status %d", p.status)
	}
	if len(e.decisions(t)) != 1 {
		t.Errorf("asking the agent decided something: %+v", e.decisions(t))
	}
}

// Certificate binding asks no agent and serves no presence endpoint;
// either binding uses a certificate only when the agent is known to be
// absent.
func TestBindingModes(t *testing.T) {
	t.Parallel()
	t.Run("certificate", func(t *testing.T) {
		t.Parallel()
		e := startSSO(t, false, nil)
		a, _ := e.device(t, agentv1.PolicyStatus_POLICY_STATUS_PASS, nil)
		r := e.sp.NewRequest(testUser)
		e.allowed(t, e.redirect(t, e.browser(deviceCert(a)), r), r)
		if p := e.back(t, e.jarBrowser(t), e.statement(t, a.Key, a.DeviceID, presence.NewChallenge(), e.clock.Now())); p.status != http.StatusNotFound {
			t.Errorf("presence endpoint under certificate binding: %d", p.status)
		}
		if ds := e.decisions(t); ds[0].Binding != "certificate" {
			t.Errorf("binding %q", ds[0].Binding)
		}
	})
	t.Run("either", func(t *testing.T) {
		t.Parallel()
		e := startAgentBinding(t, func(c *config.Config) { c.BrowserBinding = config.BindingEither })
		a, st := e.device(t, agentv1.PolicyStatus_POLICY_STATUS_PASS, nil)
		// No certificate: the agent.
		c := e.jarBrowser(t)
		r := e.sp.NewRequest(testUser)
		e.allowed(t, e.ceremony(t, c, a, r), r)
		// A certificate naming a Mac whose agent is not connected: the
		// certificate.
		st.Close()
		waitFor(t, "the agent to be gone", func() bool { return !e.srv.Hub.Connected(a.DeviceID) })
		r = e.sp.NewRequest(testUser)
		e.allowed(t, e.redirect(t, e.browser(deviceCert(a)), r), r)
		ds := e.decisions(t)
		if len(ds) != 2 || ds[0].Binding != "certificate" || ds[1].Binding != "agent" {
			t.Errorf("decisions %+v", ds)
		}
	})
}

// startEither starts a verifier with --browser-binding either, for
// requests Okta signs (so that refused proofs are on record).
func startEither(t *testing.T) *ssoEnv {
	t.Helper()
	return startSSO(t, true, func(c *config.Config) { c.BrowserBinding = config.BindingEither })
}

// presentCert has browser c present cert from its next connection on.
func presentCert(c *http.Client, cert *tls.Certificate) {
	tr := c.Transport.(*http.Transport)
	tr.TLSClientConfig.Certificates = []tls.Certificate{*cert}
	tr.CloseIdleConnections()
}

// certJarBrowser is a browser presenting cert, with a cookie jar.
func (e *ssoEnv) certJarBrowser(t *testing.T, cert *tls.Certificate) *http.Client {
	t.Helper()
	c := e.browser(cert)
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	c.Jar = jar
	return c
}

// With --browser-binding either, a certificate never outranks the agent of
// the Mac it names: while that agent is connected, the sign-in is sent to
// it, whatever cookies the browser sends or leaves out, and only that
// Mac's proof completes it. Holding a copy of the certificate is not a way
// to choose the weaker binding.
func TestEitherCertificateWithAgent(t *testing.T) {
	t.Parallel()
	e := startEither(t)
	a, _ := e.device(t, agentv1.PolicyStatus_POLICY_STATUS_PASS, nil)
	other, _ := e.device(t, agentv1.PolicyStatus_POLICY_STATUS_PASS, nil)
	now := e.clock.Now
	// The signed-in rows so far, newest first.
	rows := func() []storage.DecisionRecord { return e.decisions(t) }

	t.Run("no cookies, agent connected: sent to the agent", func(t *testing.T) {
		// The browser that holds the certificate and sends no cookies
		// is sent to the loopback, not answered with a response.
		c := e.browser(deviceCert(a))
		p := e.redirect(t, c, e.sp.NewRequest(testUser))
		noResponse(t, p)
		if p.status != http.StatusSeeOther || !strings.HasPrefix(p.location, "http://127.0.0.1:47470"+presence.AgentPath+"?") {
			t.Fatalf("status %d to %q, want 303 to the agent:\n%s", p.status, p.location, p.body)
		}
		// The Mac's own proof completes it, bound by the agent.
		c = e.certJarBrowser(t, deviceCert(a))
		r := e.sp.NewRequest(testUser)
		e.allowed(t, e.ceremony(t, c, a, r), r)
		if ds := rows(); !ds[0].Allow || ds[0].Binding != "agent" || ds[0].DeviceID != a.DeviceID || ds[0].RequestID != r.ID {
			t.Errorf("decision %+v, want allowed for %s bound by the agent", ds[0], a.DeviceID)
		}
	})
	t.Run("proof from another Mac", func(t *testing.T) {
		// The loopback answers from whichever Mac the browser is on: the
		// certificate's copy on another enrolled Mac gets that Mac's proof,
		// which does not speak for the certificate's Mac.
		c := e.certJarBrowser(t, deviceCert(a))
		r := e.sp.NewRequest(testUser)
		q := e.statement(t, other.Key, other.DeviceID, e.toAgent(t, c, r), now())
		p := e.back(t, c, q)
		refusedWith(t, p, http.StatusForbidden, "presence_other_device")
		if !strings.Contains(p.body, "certificate belongs to another Mac") {
			t.Errorf("page does not say why:\n%s", p.body)
		}
		ds := rows()
		if ds[0].Allow || ds[0].Reason != "presence_other_device" || ds[0].DeviceID != a.DeviceID || ds[0].Binding != "agent" || ds[0].RequestID != r.ID {
			t.Errorf("decision %+v, want presence_other_device under %s", ds[0], a.DeviceID)
		}
		e.logs.hasLine(t, "reason=presence_other_device", "device_id="+a.DeviceID, other.DeviceID)
		// Spent: the right proof afterwards completes nothing.
		refusedWith(t, e.back(t, c, q), http.StatusBadRequest, "presence_replayed")
	})
	t.Run("hint naming another connected Mac", func(t *testing.T) {
		// The browser proved the other Mac before (a genuine hint for it,
		// whose agent is connected), and presents this Mac's certificate:
		// the proof asked for is this Mac's, and the other's is refused.
		c := e.certJarBrowser(t, nil)
		r := e.sp.NewRequest(testUser)
		e.allowed(t, e.ceremony(t, c, other, r), r)
		presentCert(c, deviceCert(a))
		r = e.sp.NewRequest(testUser)
		q := e.statement(t, other.Key, other.DeviceID, e.toAgent(t, c, r), now())
		refusedWith(t, e.back(t, c, q), http.StatusForbidden, "presence_other_device")
		r = e.sp.NewRequest(testUser)
		e.allowed(t, e.ceremony(t, c, a, r), r)
		if ds := rows(); ds[0].DeviceID != a.DeviceID || ds[0].Binding != "agent" {
			t.Errorf("decision %+v, want %s bound by the agent", ds[0], a.DeviceID)
		}
	})
	// Every response went out bound by the agent.
	for _, d := range rows() {
		if d.Binding != "agent" {
			t.Errorf("decision bound by %q: %+v", d.Binding, d)
		}
	}
}

// unreadableRelay is a relay to other replicas that cannot say where any
// agent is: its presence table is out of reach.
type unreadableRelay struct{ cluster.Relay }

func (unreadableRelay) Join(context.Context, string, string) error  { return nil }
func (unreadableRelay) Leave(context.Context, string, string) error { return nil }
func (unreadableRelay) PublishEnrolled(context.Context, cluster.Enrolled) error {
	return nil
}
func (unreadableRelay) PublishCheck(context.Context, cluster.Check) error { return nil }
func (unreadableRelay) Elsewhere(context.Context, string) (bool, error) {
	return false, errors.New("presence table unreachable")
}
func (unreadableRelay) Run(ctx context.Context, _ cluster.Handler) error {
	<-ctx.Done()
	return nil
}

// switchRelay is a relay to other replicas that knows no agent there until
// its presence table goes out of reach (down).
type switchRelay struct {
	unreadableRelay
	down atomic.Bool
}

func (r *switchRelay) Elsewhere(ctx context.Context, deviceID string) (bool, error) {
	if r.down.Load() {
		return r.unreadableRelay.Elsewhere(ctx, deviceID)
	}
	return false, nil
}

// A sign-in held under --browser-binding either while its Mac had no agent
// connected is not completed by its certificate alone once that can no
// longer be told (another replica's presence unreadable): Check again
// restarts it, and the agent is asked.
func TestEitherResumeAgentUnknown(t *testing.T) {
	t.Parallel()
	sr := &switchRelay{}
	e := startSSO(t, true, func(c *config.Config) { c.BrowserBinding = config.BindingEither }, server.WithHubRelay(sr))
	live := agentv1.PolicyStatus_POLICY_STATUS_PASS
	failing, st := e.device(t, agentv1.PolicyStatus_POLICY_STATUS_FAIL, &live)
	st.Close()
	waitFor(t, "the agent's stream to end here", func() bool { return !e.srv.Hub.Local(failing.DeviceID) })
	c := e.browser(deviceCert(failing))
	p := e.redirect(t, c, e.sp.NewRequest(testUser))
	noResponse(t, p)
	token := retryToken(t, p)
	sr.down.Store(true)
	p = e.post(t, c, signin.PathRetry, url.Values{"token": {token}})
	noResponse(t, p)
	if p.status != http.StatusOK || !strings.Contains(p.body, "sign_in_restarted_agent_running") {
		t.Fatalf("status %d:\n%s", p.status, p.body)
	}
}

// shutdownRelay reports, when it is stopped, whether any agent stream was
// still open on its replica, and counts the presence records removed.
type shutdownRelay struct {
	unreadableRelay
	streams func() int
	open    chan int
	leaves  atomic.Int32
}

func (r *shutdownRelay) Leave(context.Context, string, string) error {
	r.leaves.Add(1)
	return nil
}

func (r *shutdownRelay) Run(ctx context.Context, _ cluster.Handler) error {
	<-ctx.Done()
	r.open <- r.streams()
	return nil
}

// At shutdown the relay stops after the agent streams have ended, not
// before, and the streams it cuts keep their presence records: while a
// stream is open here, and until its agent has reconnected elsewhere,
// another replica must not read "no agent" for its Mac.
func TestRelayOutlivesAgentStreams(t *testing.T) {
	t.Parallel()
	r := &shutdownRelay{open: make(chan int, 1)}
	var st *protoagent.Stream
	t.Cleanup(func() { // runs after the server's own cleanup stopped it
		if st != nil {
			st.Close()
		}
		select {
		case n := <-r.open:
			if n != 0 {
				t.Errorf("the relay stopped with %d agent streams still open here", n)
			}
			if n := r.leaves.Load(); n != 0 {
				t.Errorf("%d presence records removed as the streams were cut", n)
			}
		default:
			t.Error("the relay was not stopped")
		}
	})
	h := startWithOptions(t, nil, server.WithHubRelay(r))
	r.streams = h.srv.Hub.Count
	// Open until after the server stops: its cut ends the stream.
	var err error
	ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+h.token)
	if st, err = h.enrolled(h.secret()).Connect(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the agent to connect", func() bool { return h.srv.Hub.Count() == 1 })
}

// With --browser-binding either, not knowing whether a certificate's Mac
// has its agent connected (another replica's presence unreadable) does not
// let the certificate decide alone: the sign-in goes to the agent.
func TestEitherCertificateAgentUnknown(t *testing.T) {
	t.Parallel()
	e := startSSO(t, true, func(c *config.Config) { c.BrowserBinding = config.BindingEither }, server.WithHubRelay(unreadableRelay{}))
	a, st := e.device(t, agentv1.PolicyStatus_POLICY_STATUS_PASS, nil)
	st.Close()
	waitFor(t, "the agent's stream to end here", func() bool { return !e.srv.Hub.Local(a.DeviceID) })
	p := e.redirect(t, e.browser(deviceCert(a)), e.sp.NewRequest(testUser))
	noResponse(t, p)
	if p.status != http.StatusSeeOther || !strings.HasPrefix(p.location, "http://127.0.0.1:47470"+presence.AgentPath+"?") {
		t.Fatalf("status %d to %q, want 303 to the agent:\n%s", p.status, p.location, p.body)
	}
}

// With --browser-binding either, a Mac whose agent is not connected signs
// in with its certificate, as before; a hint naming another Mac whose agent
// is connected does not send the sign-in there. A sign-in held that way is
// not completed by "Check again" once the agent has connected: the person
// starts over, and the agent proves the Mac.
func TestEitherCertificateAgentGone(t *testing.T) {
	t.Parallel()
	e := startEither(t)
	live := agentv1.PolicyStatus_POLICY_STATUS_PASS
	a, st := e.device(t, agentv1.PolicyStatus_POLICY_STATUS_PASS, nil)
	failing, fst := e.device(t, agentv1.PolicyStatus_POLICY_STATUS_FAIL, &live)
	other, _ := e.device(t, agentv1.PolicyStatus_POLICY_STATUS_PASS, nil)
	for _, s := range []*protoagent.Stream{st, fst} {
		s.Close()
	}
	waitFor(t, "the agents to be gone", func() bool {
		return !e.srv.Hub.Connected(a.DeviceID) && !e.srv.Hub.Connected(failing.DeviceID)
	})

	t.Run("no cookies", func(t *testing.T) {
		r := e.sp.NewRequest(testUser)
		e.allowed(t, e.redirect(t, e.browser(deviceCert(a)), r), r)
		if ds := e.decisions(t); ds[0].Binding != "certificate" || ds[0].DeviceID != a.DeviceID || ds[0].CertSerial == "" {
			t.Errorf("decision %+v, want %s bound by its certificate", ds[0], a.DeviceID)
		}
	})
	t.Run("hint naming another connected Mac", func(t *testing.T) {
		c := e.certJarBrowser(t, nil)
		r := e.sp.NewRequest(testUser)
		e.allowed(t, e.ceremony(t, c, other, r), r)
		presentCert(c, deviceCert(a))
		r = e.sp.NewRequest(testUser)
		e.allowed(t, e.redirect(t, c, r), r)
		if ds := e.decisions(t); ds[0].Binding != "certificate" || ds[0].DeviceID != a.DeviceID {
			t.Errorf("decision %+v, want %s bound by its certificate", ds[0], a.DeviceID)
		}
	})
	t.Run("check again after the agent connects", func(t *testing.T) {
		c := e.browser(deviceCert(failing))
		p := e.redirect(t, c, e.sp.NewRequest(testUser))
		noResponse(t, p)
		token := retryToken(t, p)
		e.connect(failing)
		waitFor(t, "the agent to connect", func() bool { return e.srv.Hub.Connected(failing.DeviceID) })
		p = e.post(t, c, signin.PathRetry, url.Values{"token": {token}})
		noResponse(t, p)
		if p.status != http.StatusOK || !strings.Contains(p.body, "sign_in_restarted_agent_running") {
			t.Fatalf("status %d:\n%s", p.status, p.body)
		}
		// The held sign-in is gone; a new one goes to the agent.
		refusedWith(t, e.post(t, c, signin.PathRetry, url.Values{"token": {token}}), http.StatusBadRequest, "sign_in_expired")
		if p := e.redirect(t, c, e.sp.NewRequest(testUser)); p.status != http.StatusSeeOther {
			t.Errorf("new sign-in: status %d, want 303 to the agent", p.status)
		}
	})
}

func retryToken(t *testing.T, p page) string {
	t.Helper()
	i := strings.Index(p.body, `name="token" value="`)
	if i < 0 {
		t.Fatalf("no Check again on the page:\n%s", p.body)
	}
	rest := p.body[i+len(`name="token" value="`):]
	return rest[:strings.IndexByte(rest, '"')]
}

func revokeReq(id string) *adminv1.RevokeDeviceRequest {
	return &adminv1.RevokeDeviceRequest{DeviceId: id, Reason: "stolen"}
}

func decodeB64(t *testing.T, s string) string {
	t.Helper()
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// waitFor polls cond for up to 10 seconds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testkit.Eventually(t, 10*time.Second, what, cond)
}

// has fails unless the log holds every one of subs.
func (b *logBuffer) has(t *testing.T, subs ...string) {
	t.Helper()
	s := b.String()
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			t.Errorf("log lacks %q", sub)
		}
	}
}

// hasLine fails unless one line of the log holds every one of subs.
func (b *logBuffer) hasLine(t *testing.T, subs ...string) {
	t.Helper()
lines:
	for line := range strings.Lines(b.String()) {
		for _, sub := range subs {
			if !strings.Contains(line, sub) {
				continue lines
			}
		}
		return
	}
	t.Errorf("no line of the log holds all of %q", subs)
}

// lacks fails if the log holds any of subs.
func (b *logBuffer) lacks(t *testing.T, subs ...string) {
	t.Helper()
	s := b.String()
	for _, sub := range subs {
		if strings.Contains(s, sub) {
			t.Errorf("log holds %q", sub)
		}
	}
}
