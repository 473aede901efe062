package server_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"maps"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/clearance/clearance/internal/protoagent"
	"github.com/clearance/clearance/internal/rawh2"
	"github.com/clearance/clearance/internal/testkit/testpki"
	agentv1 "github.com/clearance/clearance/proto/gen/clearance/agent/v1"
	"github.com/clearance/clearance/verifier/config"
	"github.com/clearance/clearance/verifier/grpcconn"
	"github.com/clearance/clearance/verifier/metrics"
	"github.com/clearance/clearance/verifier/ratelimit"
	"github.com/clearance/clearance/verifier/signin"
)

// scrape reads /metrics as Prometheus does, with the data dir's scrape
// token.
func (h *harness) scrape(t *testing.T) string {
	t.Helper()
	tok, err := os.ReadFile(filepath.Join(h.cfg.DataDir, metrics.TokenFile))
	if err != nil {
		t.Fatal(err)
	}
	p := h.getMetrics(t, "Bearer "+strings.TrimSpace(string(tok)))
	if p.status != http.StatusOK {
		t.Fatalf("/metrics with the token: %d %s", p.status, p.body)
	}
	return p.body
}

func (h *harness) getMetrics(t *testing.T, auth string) page {
	t.Helper()
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(h.rootPEM)
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: "localhost"}}}
	req, _ := http.NewRequest(http.MethodGet, "https://"+h.srv.HTTPAddr.String()+"/metrics", nil)
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	return do(t, c, req)
}

// TestMetricsNeedTheScrapeToken: /metrics answers only the metrics token
// (not the admin token, not nothing); /healthz stays open; refusals are
// logged by sample.
func TestMetricsNeedTheScrapeToken(t *testing.T) {
	t.Parallel()
	h := start(t)
	st, err := os.Stat(filepath.Join(h.cfg.DataDir, metrics.TokenFile))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("metrics.token: %v %v; want 0600", st, err)
	}
	for name, auth := range map[string]string{"no token": "", "the admin token": "Bearer " + h.token, "a wrong one": "Bearer x"} {
		if p := h.getMetrics(t, auth); p.status != http.StatusUnauthorized || strings.Contains(p.body, "clearance_") {
			t.Errorf("%s: %d %q", name, p.status, p.body)
		}
	}
	if m := h.scrape(t); !strings.Contains(m, "clearance_store_writable") {
		t.Errorf("metrics with the token lack clearance_store_writable:\n%s", m)
	}
	h.logs.has(t, "metrics_unauthorized")
	if n := strings.Count(h.logs.String(), "metrics_unauthorized"); n != 1 {
		t.Errorf("%d refusal lines for 3 refusals, want 1", n)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(h.rootPEM)
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: "localhost"}}}
	resp, err := c.Get("https://" + h.srv.HTTPAddr.String() + "/healthz")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Errorf("/healthz: %v %v", resp, err)
	}
	if resp != nil {
		resp.Body.Close()
	}
}

// counters reads a counter vector from the registry /metrics serves, by
// its label pairs.
func counters(t *testing.T, h *harness, name string) map[string]float64 {
	t.Helper()
	return metricVector(t, h, name, false)
}

// selfSigned is a client certificate no CA of the verifier issued: what
// anyone can present.
func selfSigned(t *testing.T) *tls.Certificate {
	t.Helper()
	c := testpki.SelfSigned(t, testpki.CN("anyone"), testpki.Serial(7), testpki.ClientAuth(),
		testpki.Valid(time.Now().Add(-time.Hour), time.Now().Add(time.Hour))).TLS()
	return &c
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
		// One line at info for each reason (the others at debug), with
		// the sender's strings clipped: a flood of one reason does not
		// hide the first of another.
		if n := strings.Count(e.logs.String(), "msg=sso_unrecorded"); n != 2 {
			t.Errorf("%d sso_unrecorded lines, want 2:\n%s", n, e.logs.String())
		}
		e.logs.has(t, "reason=no_client_cert", "reason=untrusted_client_cert")
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

// from is a browser without a certificate whose connections come from src.
func (e *ssoEnv) from(src string) *http.Client {
	c := e.browser(nil)
	d := &net.Dialer{LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(netip.MustParseAddr(src), 0))}
	c.Transport.(*http.Transport).DialContext = d.DialContext
	return c
}

func (e *ssoEnv) fetch(t *testing.T, c *http.Client, path, xff string) page {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, e.url+path, nil)
	if xff != "" {
		req.Header.Set("X-Forwarded-For", xff)
	}
	return do(t, c, req)
}

// TestSignInRateLimited: one address over its rate gets 429, Retry-After
// and the page, on every path of the sign-in listener but /healthz; other
// addresses, and clients behind a trusted proxy each by the address the
// proxy names, are not held back by it.
func TestSignInRateLimited(t *testing.T) {
	t.Parallel()
	e := startSSO(t, true, func(c *config.Config) {
		c.SSORateLimit, c.SSORateBurst = 0.5, 3
		_, proxy, _ := net.ParseCIDR("127.0.0.3/32")
		c.TrustedProxies = []*net.IPNet{proxy}
	})
	a := e.from("127.0.0.2")
	for i := range 3 {
		if p := e.fetch(t, a, signin.PathMetadata, ""); p.status != http.StatusOK {
			t.Fatalf("request %d within the burst: %d", i+1, p.status)
		}
	}
	p := e.fetch(t, a, signin.PathMetadata, "")
	if p.status != http.StatusTooManyRequests || p.header.Get("Retry-After") != "2" || p.header.Get("Content-Security-Policy") == "" {
		t.Fatalf("over the limit: %d, Retry-After %q", p.status, p.header.Get("Retry-After"))
	}
	p.has(t, "rate_limited", "Too many sign-ins at once", "Wait a minute")
	// Every path, a sign-in too, before anything of it is read.
	r := e.sp.NewRequest(testUser)
	u, _ := e.sp.RedirectURL(r)
	if p := e.get(t, a, u); p.status != http.StatusTooManyRequests {
		t.Errorf("a sign-in over the limit: %d", p.status)
	}
	if p := e.fetch(t, a, "/scep?operation=GetCACaps", ""); p.status != http.StatusTooManyRequests {
		t.Errorf("SCEP over the limit: %d", p.status)
	}
	if p := e.fetch(t, a, "/healthz", ""); p.status != http.StatusOK {
		t.Errorf("/healthz: %d", p.status)
	}
	// The same request, from another address, is a sign-in as any other:
	// its ID was not spent by the refusal.
	dev, _ := e.device(t, agentv1.PolicyStatus_POLICY_STATUS_PASS, nil)
	e.allowed(t, e.redirect(t, e.browser(deviceCert(dev)), r), r)

	// Behind the proxy: each client by the address the proxy wrote.
	proxy := e.from("127.0.0.3")
	for i := range 4 {
		want := http.StatusOK
		if i == 3 {
			want = http.StatusTooManyRequests
		}
		if p := e.fetch(t, proxy, signin.PathMetadata, "6.6.6.6, 198.51.100.1"); p.status != want {
			t.Errorf("client behind the proxy, request %d: %d, want %d", i+1, p.status, want)
		}
	}
	if p := e.fetch(t, proxy, signin.PathMetadata, "198.51.100.1, 198.51.100.2"); p.status != http.StatusOK {
		t.Errorf("another client behind the proxy (the first's address written on the left): %d", p.status)
	}
	got := counters(t, e.harness, "clearance_sso_rate_limited_total")
	if got[`path="/saml/metadata"`] != 2 || got[`path="/saml/sso"`] != 1 || got[`path="/scep"`] != 1 {
		t.Errorf("clearance_sso_rate_limited_total %v", got)
	}
	e.logs.has(t, "msg=rate_limited", "client=127.0.0.2")
}

// TestGRPCFloodLeavesAgentsServed: a client with no certificate holding as
// many connections and Watch streams as it can, from one address, gets few
// of either; meanwhile an agent enrolls, connects (as a device connection)
// and reports, and the admin API answers.
func TestGRPCFloodLeavesAgentsServed(t *testing.T) {
	t.Parallel()
	h := startWith(t, func(c *config.Config) { c.GRPCUnauthPerSource = 4 })
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(h.rootPEM)
	d := &net.Dialer{LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(netip.MustParseAddr("127.0.0.5"), 0))}
	var flood []*rawh2.Conn
	for range 10 {
		c, err := rawh2.Dial(h.ctx(), d, h.addr, &tls.Config{RootCAs: roots, ServerName: "localhost"})
		if err != nil {
			continue
		}
		defer c.Close()
		for range 100 {
			_ = c.Open(rawh2.Watch, "localhost", nil)
		}
		flood = append(flood, c)
	}
	for _, c := range flood {
		c.WaitAnswered(h.ctx(), 100)
	}
	// The address keeps its 4 newest connections: the others were closed
	// as each newer one arrived, which their readers see a moment later.
	waitFor(t, "the evicted connections to end", func() bool {
		n := 0
		for _, c := range flood {
			if c.Counts().Closed {
				n++
			}
		}
		return n >= len(flood)-4
	})
	held := 0
	for _, c := range flood {
		if got := c.Counts(); !got.Closed {
			held += got.Accepted
		}
	}
	if held > grpcconn.MaxLongStreamsPerSource {
		t.Errorf("the flood holds %d Watch streams, want at most %d", held, grpcconn.MaxLongStreamsPerSource)
	}
	a := h.enrolled(h.secret())
	st := h.connect(a)
	if m, err := st.Exchange(protoagent.Sign(a.Key, a.Report(st.PolicySet, 1, time.Now(), nil, agentv1.PolicyStatus_POLICY_STATUS_PASS))); err != nil || m.GetAck().GetSeq() != 1 {
		t.Fatalf("report: %v %v", m, err)
	}
	// The enrollment's own connection ends a moment after its call.
	waitFor(t, "the agent's device connection and few others (clearance_grpc_connections)", func() bool {
		g := gauges(t, h, "clearance_grpc_connections")
		return g[`class="device"`] == 1 && g[`class="unauthenticated"`] <= 5
	})
	closed := counters(t, h, "clearance_grpc_connections_closed_total")
	if closed[`reason="evicted_per_source"`] < 6 {
		t.Errorf("clearance_grpc_connections_closed_total %v; want the flood's excess evicted", closed)
	}
}

// TestUnsignedStartsBounded: with unsigned requests allowed, the sign-ins
// that store a challenge for one are bounded from every address together
// (sso_unsigned_rate_limit, ten seconds' worth at once): beyond it the
// answer is 503 with Retry-After and the page, counted and stored nowhere
// (the refused request's ID is not spent: once the bucket refills, it
// starts). Okta's signed requests are not held to it.
func TestUnsignedStartsBounded(t *testing.T) {
	t.Parallel()
	agentBound := func(c *config.Config) {
		c.BrowserBinding = config.BindingAgent
		c.SSOUnsignedRateLimit = 0.3 // a burst of 3; the test's clock stands still
	}
	t.Run("unsigned", func(t *testing.T) {
		t.Parallel()
		e := startSSO(t, false, agentBound)
		for i, src := range []string{"127.0.0.2", "127.0.0.3", "127.0.0.4"} {
			if p := e.redirect(t, e.from(src), e.sp.NewRequest(testUser)); p.status != http.StatusSeeOther {
				t.Fatalf("sign-in %d within the bound: %d\n%s", i+1, p.status, p.body)
			}
		}
		r := e.sp.NewRequest(testUser)
		p := e.redirect(t, e.from("127.0.0.5"), r)
		noResponse(t, p)
		if p.status != http.StatusServiceUnavailable || p.header.Get("Retry-After") != "4" {
			t.Fatalf("over the bound from a new address: %d, Retry-After %q\n%s", p.status, p.header.Get("Retry-After"), p.body)
		}
		p.has(t, "busy", "Too many sign-ins at once", "r-")
		if got := counters(t, e.harness, "clearance_sso_unrecorded_total"); got[`reason="busy"`] != 1 {
			t.Errorf("clearance_sso_unrecorded_total %v; want busy 1", got)
		}
		e.busyBuckets(t, 1, 0, 0)
		e.logs.has(t, "msg=sso_unrecorded", "reason=busy", "bucket="+signin.BucketNoMac)
		if ds := e.decisions(t); len(ds) != 0 {
			t.Errorf("decision rows for unsigned starts: %+v", ds)
		}
		e.clock.Add(4 * time.Second)
		if p := e.redirect(t, e.from("127.0.0.5"), r); p.status != http.StatusSeeOther {
			t.Fatalf("the refused request once the bound allows it: %d (its ID was spent?)\n%s", p.status, p.body)
		}
	})
	// Behind a trusted proxy, the log names each refused browser by the
	// address the proxy gives, not only the proxy's.
	t.Run("behind a proxy", func(t *testing.T) {
		t.Parallel()
		e := startSSO(t, false, func(c *config.Config) {
			agentBound(c)
			_, proxy, _ := net.ParseCIDR("127.0.0.3/32")
			c.TrustedProxies = []*net.IPNet{proxy}
		})
		via := e.from("127.0.0.3")
		for i := range 4 {
			u, err := e.sp.RedirectURL(e.sp.NewRequest(testUser))
			if err != nil {
				t.Fatal(err)
			}
			p := e.fetch(t, via, strings.TrimPrefix(u, "https://localhost:8444"), fmt.Sprintf("198.18.0.%d", i+1))
			if want := map[bool]int{true: http.StatusServiceUnavailable, false: http.StatusSeeOther}[i == 3]; p.status != want {
				t.Fatalf("start %d through the proxy: %d, want %d", i+1, p.status, want)
			}
		}
		e.logs.has(t, "reason=busy", "client=198.18.0.4", "remote=127.0.0.3:")
	})
	// A browser that shows its Mac has a bucket of its own: a flood of
	// browsers that show none does not hold it back, and it is bounded too.
	t.Run("known Mac", func(t *testing.T) {
		t.Parallel()
		e := startSSO(t, false, agentBound)
		a, _ := e.device(t, agentv1.PolicyStatus_POLICY_STATUS_PASS, nil)
		mac := e.jarBrowser(t)
		// Its first sign-in shows nothing yet (one of the three for anyone);
		// its proof leaves the device hint.
		first := e.sp.NewRequest(testUser)
		e.allowed(t, e.ceremony(t, mac, a, first), first)
		for _, src := range []string{"127.0.0.2", "127.0.0.3"} {
			if p := e.redirect(t, e.from(src), e.sp.NewRequest(testUser)); p.status != http.StatusSeeOther {
				t.Fatalf("within the bound: %d", p.status)
			}
		}
		if p := e.redirect(t, e.from("127.0.0.4"), e.sp.NewRequest(testUser)); p.status != http.StatusServiceUnavailable {
			t.Fatalf("anyone over the bound: %d, want 503", p.status)
		}
		for i := range 3 {
			if p := e.redirect(t, mac, e.sp.NewRequest(testUser)); p.status != http.StatusSeeOther {
				t.Fatalf("the known Mac's sign-in %d while anyone's bound is spent: %d\n%s", i+1, p.status, p.body)
			}
		}
		p := e.redirect(t, mac, e.sp.NewRequest(testUser))
		noResponse(t, p)
		if p.status != http.StatusServiceUnavailable {
			t.Fatalf("the known Mac over its own bound: %d, want 503", p.status)
		}
		// Its own bucket holds 10; the three every Mac shares ran out. The
		// line naming it reaches info, though a browser showing no Mac was
		// refused busy first.
		e.busyBuckets(t, 1, 0, 1)
		e.logs.hasLine(t, "level=INFO", "msg=sso_unrecorded", "reason=busy", "bucket="+signin.BucketMacs)
	})
	// A device certificate shows the Mac: each unsigned sign-in it makes
	// stores its request ID and a decision, bounded as a known Mac's.
	t.Run("certificate", func(t *testing.T) {
		t.Parallel()
		e := startSSO(t, false, func(c *config.Config) { c.SSOUnsignedRateLimit = 0.3 })
		a, _ := e.device(t, agentv1.PolicyStatus_POLICY_STATUS_PASS, nil)
		c := e.browser(deviceCert(a))
		for range 3 {
			r := e.sp.NewRequest(testUser)
			e.allowed(t, e.redirect(t, c, r), r)
		}
		e.busy(t, e.redirect(t, c, e.sp.NewRequest(testUser)), 3)
	})
	// One Mac's certificate (or hint) spends its own bucket first: whoever
	// holds it cannot spend the one every Mac shares.
	t.Run("one Mac", func(t *testing.T) {
		t.Parallel()
		e := startSSO(t, false, func(c *config.Config) { c.SSOUnsignedRateLimit = 2 }) // 20 at once
		a, _ := e.device(t, agentv1.PolicyStatus_POLICY_STATUS_PASS, nil)
		b, _ := e.device(t, agentv1.PolicyStatus_POLICY_STATUS_PASS, nil)
		ca, cb := e.browser(deviceCert(a)), e.browser(deviceCert(b))
		for range ratelimit.UnsignedPerMacBurst {
			r := e.sp.NewRequest(testUser)
			e.allowed(t, e.redirect(t, ca, r), r)
		}
		// Refused by its own bucket, it spends nothing of the shared one
		// (20 at once, 10 of them left): 15 refusals later, another Mac
		// still signs in.
		for range 15 {
			e.busy(t, e.redirect(t, ca, e.sp.NewRequest(testUser)), ratelimit.UnsignedPerMacBurst)
		}
		e.logs.has(t, "the bound for one Mac", "bucket="+signin.BucketOneMac)
		e.busyBuckets(t, 0, 15, 0)
		r := e.sp.NewRequest(testUser)
		e.allowed(t, e.redirect(t, cb, r), r)
	})
	// A held sign-in pressed again ("Check again") writes a decision each
	// time: each press spends from the bound for known Macs.
	t.Run("check again", func(t *testing.T) {
		t.Parallel()
		e := startSSO(t, false, func(c *config.Config) { c.SSOUnsignedRateLimit = 0.3 })
		fail := agentv1.PolicyStatus_POLICY_STATUS_FAIL // the agent answers each live check at once
		a, _ := e.device(t, fail, &fail)
		c := e.browser(deviceCert(a))
		denied := e.redirect(t, c, e.sp.NewRequest(testUser)) // one of three
		if denied.status != http.StatusForbidden {
			t.Fatalf("a failing Mac's sign-in: %d", denied.status)
		}
		form := url.Values{"token": {retryToken(t, denied)}}
		for i := range 2 {
			if p := e.post(t, c, signin.PathRetry, form); p.status != http.StatusForbidden {
				t.Fatalf("Check again %d within the bound: %d\n%s", i+1, p.status, p.body)
			}
		}
		e.busy(t, e.post(t, c, signin.PathRetry, form), 3)
	})
	t.Run("signed", func(t *testing.T) {
		t.Parallel()
		e := startSSO(t, true, func(c *config.Config) {
			agentBound(c)
			c.AllowUnsignedRequests = true // answered only without Okta's certificate
		})
		for i := range 6 {
			if p := e.redirect(t, e.browser(nil), e.sp.NewRequest(testUser)); p.status != http.StatusSeeOther {
				t.Fatalf("signed sign-in %d: %d\n%s", i+1, p.status, p.body)
			}
		}
	})
}

// busyBuckets checks clearance_sso_unsigned_busy_total: how many unsigned
// sign-ins each bucket refused, and no bucket besides.
func (e *ssoEnv) busyBuckets(t *testing.T, noMac, oneMac, macs float64) {
	t.Helper()
	want := map[string]float64{
		`bucket="` + signin.BucketNoMac + `"`:  noMac,
		`bucket="` + signin.BucketOneMac + `"`: oneMac,
		`bucket="` + signin.BucketMacs + `"`:   macs,
	}
	if got := counters(t, e.harness, "clearance_sso_unsigned_busy_total"); !maps.Equal(got, want) {
		t.Errorf("clearance_sso_unsigned_busy_total %v; want %v", got, want)
	}
}

// busy checks that p is the answer beyond the bound on unsigned sign-ins
// (503, reason busy, no response) and that the decision log holds rows.
func (e *ssoEnv) busy(t *testing.T, p page, rows int) {
	t.Helper()
	noResponse(t, p)
	if p.status != http.StatusServiceUnavailable {
		t.Fatalf("over the bound: %d, want 503", p.status)
	}
	p.has(t, "busy")
	if ds := e.decisions(t); len(ds) != rows {
		t.Errorf("%d decision rows, want the %d within the bound", len(ds), rows)
	}
}
