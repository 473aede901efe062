package presence_test

import (
	"bufio"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clearance/clearance/agent/presence"
	"github.com/clearance/clearance/internal/testkit"
	pp "github.com/clearance/clearance/pkg/presence"
)

const (
	presenceURL = "https://sso.example.com/saml/presence"
	deviceID    = "6F1C2B0A-5D3E-4C7B-9A8F-0E1D2C3B4A59"
)

var now = time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)

type agent struct {
	srv  *presence.Server
	key  *ecdsa.PrivateKey
	base string // http://127.0.0.1:port
	logs *testkit.Buffer
}

func (a *agent) url(challenge string) string {
	u, err := pp.AgentURL(a.srv.Addr().String(), challenge, presenceURL)
	if err != nil {
		panic(err)
	}
	return u
}

func start(t *testing.T, mod func(*presence.Options)) *agent {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	logs := &testkit.Buffer{}
	o := presence.Options{
		Listen:      "127.0.0.1:0",
		PresenceURL: func() string { return presenceURL },
		Device:      func() (string, crypto.Signer) { return deviceID, key },
		Now:         func() time.Time { return now.Add(123 * time.Millisecond) },
		Logger:      slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	if mod != nil {
		mod(&o)
	}
	srv, err := presence.New(o)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Execute() }()
	t.Cleanup(func() {
		srv.Interrupt(nil)
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Execute: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("server did not stop")
		}
	})
	return &agent{srv: srv, key: key, base: "http://" + srv.Addr().String(), logs: logs}
}

// client never follows redirects (they point at sso.example.com) and never
// uses a proxy: nothing leaves loopback.
var client = &http.Client{
	Transport:     &http.Transport{Proxy: nil},
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	Timeout:       20 * time.Second,
}

type response struct {
	status int
	header http.Header
	body   string
}

func do(t *testing.T, req *http.Request) response {
	t.Helper()
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{resp.StatusCode, resp.Header, string(b)}
}

func get(t *testing.T, u string) response {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	return do(t, req)
}

// checkSigned asserts what the verifier would see: a 303 to exactly the
// known URL whose statement verifies with the device key.
func checkSigned(t *testing.T, a *agent, r response, challenge string) {
	t.Helper()
	if r.status != http.StatusSeeOther {
		t.Fatalf("status %d, want 303; body: %s", r.status, r.body)
	}
	loc := r.header.Get("Location")
	rawQuery, ok := strings.CutPrefix(loc, presenceURL+"?")
	if !ok {
		t.Fatalf("Location %q is not the presence URL with a query", loc)
	}
	st, sig, err := pp.ParseRedirectQuery(rawQuery)
	if err != nil {
		t.Fatal(err)
	}
	s, err := pp.Verify(a.key.Public(), st, sig)
	if err != nil {
		t.Fatal(err)
	}
	want := pp.Statement{Challenge: challenge, DeviceID: deviceID, Origin: "https://sso.example.com", Time: now}
	if s != want {
		t.Fatalf("statement %+v, want %+v", s, want)
	}
	checkHeaders(t, r.header)
}

func checkHeaders(t *testing.T, h http.Header) {
	t.Helper()
	for k, v := range map[string]string{
		"Cache-Control":          "no-store",
		"Referrer-Policy":        "no-referrer",
		"X-Content-Type-Options": "nosniff",
	} {
		if got := h.Get(k); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	csp := h.Get("Content-Security-Policy")
	for _, d := range []string{"default-src 'none'", "frame-ancestors 'none'", "form-action 'none'", "base-uri 'none'"} {
		if !strings.Contains(csp, d) {
			t.Errorf("Content-Security-Policy %q lacks %q", csp, d)
		}
	}
}

func TestSignsForTheKnownURL(t *testing.T) {
	t.Parallel()
	a := start(t, nil)
	c := pp.NewChallenge()
	checkSigned(t, a, get(t, a.url(c)), c)
	if logs := a.logs.String(); !strings.Contains(logs, "presence statement signed") || strings.Contains(logs, c) {
		t.Fatalf("logs do not record the statement, or record the challenge:\n%s", logs)
	}

	// HEAD is answered like GET.
	c = pp.NewChallenge()
	req, _ := http.NewRequest(http.MethodHead, a.url(c), nil)
	checkSigned(t, a, do(t, req), c)

	// By name, as localhost:port.
	c = pp.NewChallenge()
	req, _ = http.NewRequest(http.MethodGet, a.url(c), nil)
	req.Host = fmt.Sprintf("localhost:%d", a.srv.Addr().Port())
	checkSigned(t, a, do(t, req), c)

	// A browser's top-level navigation, with Fetch Metadata.
	c = pp.NewChallenge()
	req, _ = http.NewRequest(http.MethodGet, a.url(c), nil)
	req.Header.Set("Sec-Fetch-Mode", "navigate")
	req.Header.Set("Sec-Fetch-Dest", "document")
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	checkSigned(t, a, do(t, req), c)
}

func TestRefusals(t *testing.T) {
	t.Parallel()
	c := pp.NewChallenge()
	ret := func(u string) string { return "challenge=" + c + "&return=" + url.QueryEscape(u) }
	good := ret(presenceURL)
	tests := []struct {
		name   string
		method string
		query  string // raw query after /v1/presence?
		path   string // instead of /v1/presence
		host   string
		header map[string]string
		opts   func(*presence.Options)
		status int
		reason string
	}{
		{name: "other host", query: ret("https://evil.example.com/saml/presence"), status: 403, reason: "return_mismatch"},
		{name: "look-alike host", query: ret("https://sso.example.com.evil.example/saml/presence"), status: 403, reason: "return_mismatch"},
		{name: "upper-case host", query: ret("https://SSO.example.com/saml/presence"), status: 403, reason: "return_mismatch"},
		{name: "other scheme", query: ret("http://sso.example.com/saml/presence"), status: 403, reason: "return_mismatch"},
		{name: "other port", query: ret("https://sso.example.com:8443/saml/presence"), status: 403, reason: "return_mismatch"},
		{name: "explicit default port", query: ret("https://sso.example.com:443/saml/presence"), status: 403, reason: "return_mismatch"},
		{name: "other path", query: ret("https://sso.example.com/saml/presence2"), status: 403, reason: "return_mismatch"},
		{name: "trailing slash", query: ret("https://sso.example.com/saml/presence/"), status: 403, reason: "return_mismatch"},
		{name: "path prefix", query: ret("https://sso.example.com/saml"), status: 403, reason: "return_mismatch"},
		{name: "userinfo", query: ret("https://evil.example@sso.example.com/saml/presence"), status: 403, reason: "return_mismatch"},
		{name: "query in return", query: ret(presenceURL + "?next=https://evil.example"), status: 403, reason: "return_mismatch"},
		{name: "fragment in return", query: ret(presenceURL + "#x"), status: 403, reason: "return_mismatch"},
		{name: "double percent-encoding", query: "challenge=" + c + "&return=https%3A%2F%2Fsso.example.com%252Fsaml%252Fpresence", status: 403, reason: "return_mismatch"},
		{name: "percent-encoded path", query: ret("https://sso.example.com/saml%2Fpresence"), status: 403, reason: "return_mismatch"},
		{name: "encoded NUL", query: good + "%00", status: 403, reason: "return_mismatch"},
		{name: "plus for space", query: good + "+", status: 403, reason: "return_mismatch"},
		{name: "second return", query: good + "&return=" + url.QueryEscape(presenceURL), status: 400, reason: "bad_query"},
		{name: "second return elsewhere", query: good + "&return=" + url.QueryEscape("https://evil.example/saml/presence"), status: 400, reason: "bad_query"},
		{name: "second challenge", query: good + "&challenge=" + c, status: 400, reason: "bad_query"},
		{name: "extra parameter", query: good + "&next=x", status: 400, reason: "bad_query"},
		{name: "semicolon", query: "challenge=" + c + ";return=" + url.QueryEscape(presenceURL), status: 400, reason: "bad_query"},
		{name: "no query", query: "", status: 400, reason: "bad_query"},
		{name: "missing challenge", query: "return=" + url.QueryEscape(presenceURL), status: 400, reason: "bad_query"},
		{name: "missing return", query: "challenge=" + c, status: 400, reason: "bad_query"},
		{name: "short challenge", query: "challenge=" + c[:42] + "&return=" + url.QueryEscape(presenceURL), status: 400, reason: "bad_query"},
		{name: "padded challenge", query: "challenge=" + c + "%3D&return=" + url.QueryEscape(presenceURL), status: 400, reason: "bad_query"},
		{name: "not enrolled", query: good, opts: func(o *presence.Options) {
			o.Device = func() (string, crypto.Signer) { return "", nil }
		}, status: 503, reason: "not_enrolled"},
		{name: "device id but no key", query: good, opts: func(o *presence.Options) {
			o.Device = func() (string, crypto.Signer) { return deviceID, nil }
		}, status: 503, reason: "not_enrolled"},
		{name: "presence URL not known yet", query: good, opts: func(o *presence.Options) {
			o.PresenceURL = func() string { return "" }
		}, status: 503, reason: "presence_url_unknown"},
		{name: "configured presence URL unusable", query: ret("http://sso.example.com/saml/presence"), opts: func(o *presence.Options) {
			o.PresenceURL = func() string { return "http://sso.example.com/saml/presence" }
		}, status: 503, reason: "presence_url_invalid"},
		{name: "POST", method: http.MethodPost, query: good, status: 405, reason: "bad_method"},
		{name: "PUT", method: http.MethodPut, query: good, status: 405, reason: "bad_method"},
		{name: "DELETE", method: http.MethodDelete, query: good, status: 405, reason: "bad_method"},
		{name: "OPTIONS", method: http.MethodOptions, query: good, status: 405, reason: "bad_method"},
		{name: "other path", path: "/v1/presence/", query: good, status: 404, reason: "not_found"},
		{name: "escaped path", path: "/v1/%70resence", query: good, status: 404, reason: "not_found"},
		{name: "root", path: "/", query: good, status: 404, reason: "not_found"},
		{name: "other Host", host: "evil.example.com", query: good, status: 403, reason: "bad_host"},
		{name: "rebound Host with our port", host: "evil.example.com:PORT", query: good, status: 403, reason: "bad_host"},
		{name: "our IP, other port", host: "127.0.0.1:1", query: good, status: 403, reason: "bad_host"},
		{name: "Host without port", host: "127.0.0.1", query: good, status: 403, reason: "bad_host"},
		{name: "other loopback IP", host: "127.0.0.2:PORT", query: good, status: 403, reason: "bad_host"},
		{name: "fetch", query: good, header: map[string]string{"Sec-Fetch-Mode": "cors", "Sec-Fetch-Dest": "empty"}, status: 403, reason: "not_navigation"},
		{name: "image", query: good, header: map[string]string{"Sec-Fetch-Mode": "no-cors", "Sec-Fetch-Dest": "image"}, status: 403, reason: "not_navigation"},
		{name: "frame", query: good, header: map[string]string{"Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "iframe"}, status: 403, reason: "not_navigation"},
		{name: "peer not a browser", query: good, opts: func(o *presence.Options) {
			o.Peer = fakePeer{err: fmt.Errorf("%w: /usr/bin/curl", presence.ErrNotBrowser)}
		}, status: 403, reason: "peer_not_browser"},
		{name: "peer unknown", query: good, opts: func(o *presence.Options) {
			o.Peer = fakePeer{err: errors.New("no process found")}
		}, status: 403, reason: "peer_unknown"},
		{name: "key fails", query: good, opts: func(o *presence.Options) {
			o.Device = func() (string, crypto.Signer) { return deviceID, failingSigner{} }
		}, status: 500, reason: "sign_failed"},
		{name: "device id unusable", query: good, opts: func(o *presence.Options) {
			k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			o.Device = func() (string, crypto.Signer) { return "dev/1", k }
		}, status: 500, reason: "sign_failed"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			a := start(t, tc.opts)
			port := fmt.Sprint(a.srv.Addr().Port())
			path := pp.AgentPath
			if tc.path != "" {
				path = tc.path
			}
			method := tc.method
			if method == "" {
				method = http.MethodGet
			}
			u := a.base + path
			if tc.query != "" {
				u += "?" + tc.query
			}
			req, err := http.NewRequest(method, u, nil)
			if err != nil {
				t.Fatal(err)
			}
			if tc.host != "" {
				req.Host = strings.ReplaceAll(tc.host, "PORT", port)
			}
			for k, v := range tc.header {
				req.Header.Set(k, v)
			}
			r := do(t, req)
			checkRefused(t, a, r, tc.status, tc.reason, c)
			if logs := a.logs.String(); strings.Contains(logs, "presence statement signed") {
				t.Fatalf("refused, yet logged a signature:\n%s", logs)
			}
			if tc.status == 405 && r.header.Get("Allow") != "GET, HEAD" {
				t.Errorf("Allow = %q", r.header.Get("Allow"))
			}
		})
	}
}

// checkRefused asserts what the person and the log see: the status, a page
// in words, no signature, and a reason key without the challenge.
func checkRefused(t *testing.T, a *agent, r response, status int, reason, challenge string) {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d; body: %s", r.status, status, r.body)
	}
	if loc := r.header.Get("Location"); loc != "" {
		t.Fatalf("a refusal carries Location %q", loc)
	}
	if strings.Contains(r.body, "signature") || strings.Contains(r.body, "statement=") {
		t.Fatalf("a refusal page mentions a signature:\n%s", r.body)
	}
	if !strings.Contains(r.body, "This Mac was not confirmed") || !strings.Contains(r.header.Get("Content-Type"), "text/html") {
		t.Fatalf("refusal page is not the plain page:\n%s", r.body)
	}
	checkHeaders(t, r.header)
	logs := a.logs.String()
	if !strings.Contains(logs, "reason="+reason) {
		t.Fatalf("log lacks reason=%s:\n%s", reason, logs)
	}
	if strings.Contains(logs, challenge) {
		t.Fatalf("log holds the challenge:\n%s", logs)
	}
}

type fakePeer struct {
	peer presence.Peer
	err  error
}

func (f fakePeer) CheckPeer(context.Context, netip.AddrPort, netip.AddrPort) (presence.Peer, error) {
	return f.peer, f.err
}

type failingSigner struct{}

func (failingSigner) Public() crypto.PublicKey {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	return k.Public()
}

func (failingSigner) Sign(io.Reader, []byte, crypto.SignerOpts) ([]byte, error) {
	return nil, errors.New("the Secure Enclave is locked")
}

// recordingPeer remembers the addresses it was asked about.
type recordingPeer struct {
	mu             sync.Mutex
	server, client netip.AddrPort
}

func (p *recordingPeer) CheckPeer(_ context.Context, server, client netip.AddrPort) (presence.Peer, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.server, p.client = server, client
	return presence.Peer{PIDs: []int{1}, Program: "/usr/bin/browser"}, nil
}

func TestPeerCheckSeesTheConnection(t *testing.T) {
	t.Parallel()
	peer := &recordingPeer{}
	a := start(t, func(o *presence.Options) { o.Peer = peer })
	// Dial ourselves so the client's port is known.
	conn, err := net.Dial("tcp", a.srv.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c := pp.NewChallenge()
	u, _ := url.Parse(a.url(c))
	fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", u.RequestURI(), u.Host)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("status %d", resp.StatusCode)
	}
	peer.mu.Lock()
	defer peer.mu.Unlock()
	if peer.server != a.srv.Addr() || peer.client.String() != conn.LocalAddr().String() {
		t.Fatalf("peer check asked about %s -> %s, want %s -> %s", peer.client, peer.server, conn.LocalAddr(), a.srv.Addr())
	}
	if !strings.Contains(a.logs.String(), "peer=\"pid 1: /usr/bin/browser\"") {
		t.Fatalf("log does not name the peer:\n%s", a.logs.String())
	}
}

func TestRawRequestTargets(t *testing.T) {
	t.Parallel()
	a := start(t, nil)
	c := pp.NewChallenge()
	u, _ := url.Parse(a.url(c))
	for name, target := range map[string]string{
		"absolute form": u.String(),
		"double slash":  "/" + u.RequestURI(),
		"fragment":      u.Path + "#x?" + u.RawQuery,
	} {
		conn, err := net.Dial("tcp", a.srv.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", target, u.Host)
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		conn.Close()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusSeeOther {
			t.Errorf("%s: request target %q was signed for", name, target)
		}
	}
}

func TestRateLimit(t *testing.T) {
	t.Parallel()
	a := start(t, func(o *presence.Options) { o.MaxPerSecond = 2 })
	for i := range 2 {
		c := pp.NewChallenge()
		if r := get(t, a.url(c)); r.status != http.StatusSeeOther {
			t.Fatalf("request %d: status %d", i, r.status)
		}
	}
	c := pp.NewChallenge()
	r := get(t, a.url(c))
	checkRefused(t, a, r, http.StatusTooManyRequests, "rate_limited", c)
	if r.header.Get("Retry-After") == "" {
		t.Error("no Retry-After")
	}
}

func TestRateRefills(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	clock := now
	a := start(t, func(o *presence.Options) {
		o.MaxPerSecond = 1
		o.Now = func() time.Time { mu.Lock(); defer mu.Unlock(); return clock }
	})
	if r := get(t, a.url(pp.NewChallenge())); r.status != http.StatusSeeOther {
		t.Fatalf("status %d", r.status)
	}
	if r := get(t, a.url(pp.NewChallenge())); r.status != http.StatusTooManyRequests {
		t.Fatalf("status %d, want 429", r.status)
	}
	mu.Lock()
	clock = clock.Add(time.Second)
	mu.Unlock()
	if r := get(t, a.url(pp.NewChallenge())); r.status != http.StatusSeeOther {
		t.Fatalf("after a second: status %d", r.status)
	}
}

func TestListenOnlyOnLoopback(t *testing.T) {
	t.Parallel()
	opts := func(listen string) presence.Options {
		return presence.Options{
			Listen:      listen,
			PresenceURL: func() string { return presenceURL },
			Device:      func() (string, crypto.Signer) { return "", nil },
			Logger:      slog.New(slog.DiscardHandler),
		}
	}
	for _, listen := range []string{
		"0.0.0.0:0", ":0", ":47470", "192.0.2.1:0", "[::]:0", "[::ffff:127.0.0.1]:0",
		"localhost:0", "example.com:47470", "127.0.0.1", "127.0.0.1:http", "[fe80::1%lo]:0", "[::1%lo]:0",
	} {
		if s, err := presence.New(opts(listen)); err == nil {
			s.Interrupt(nil)
			t.Errorf("New accepted listen address %q", listen)
		} else if !strings.Contains(err.Error(), "loopback") {
			t.Errorf("New(%q): %v does not say why", listen, err)
		}
	}
	// Other loopback addresses are fine.
	s, err := presence.New(opts("127.0.0.1:0"))
	if err != nil {
		t.Fatal(err)
	}
	s.Interrupt(nil)
	if err := s.Execute(); err != nil {
		t.Fatalf("Execute after Interrupt: %v", err)
	}
	if _, err := presence.New(presence.Options{Listen: "127.0.0.1:0"}); err == nil {
		t.Error("New accepted options without PresenceURL and Device")
	}
}

func TestBrowserCheckConfig(t *testing.T) {
	t.Parallel()
	if _, err := presence.NewBrowserCheck(presence.Browsers{Executables: []string{"relative/browser"}}); err == nil {
		t.Error("a relative executable path was accepted")
	}
	if _, err := presence.NewBrowserCheck(presence.Browsers{Executables: []string{"/usr/bin/../bin/browser"}}); err == nil {
		t.Error("an unclean executable path was accepted")
	}
}

// FuzzServeHTTP sends arbitrary request targets and Host headers straight
// to the handler: a 303 must always go to the known URL, and only for a
// request with exactly the known return URL.
func FuzzServeHTTP(f *testing.F) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	srv, err := presence.New(presence.Options{
		Listen:      "127.0.0.1:0",
		PresenceURL: func() string { return presenceURL },
		Device:      func() (string, crypto.Signer) { return deviceID, key },
		Logger:      slog.New(slog.DiscardHandler),
		// The limiter is not what is fuzzed.
		MaxPerSecond: 1 << 30,
	})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { srv.Interrupt(nil) })
	host := srv.Addr().String()
	good, _ := pp.AgentURL(host, strings.Repeat("A", 43), presenceURL)
	u, _ := url.Parse(good)
	f.Add(u.RequestURI(), host)
	f.Add(u.RequestURI()+"&return=x", host)
	f.Add("/v1/presence?challenge=AAAA&return=https%3A%2F%2Fevil", "localhost:1")
	f.Fuzz(func(t *testing.T, target, hostHeader string) {
		req, err := http.ReadRequest(bufio.NewReader(strings.NewReader("GET " + target + " HTTP/1.1\r\nHost: " + hostHeader + "\r\n\r\n")))
		if err != nil {
			return
		}
		req.RemoteAddr = "127.0.0.1:1"
		w := httptest.NewRecorder()
		srv.ServeHTTP(w, req)
		if w.Code != http.StatusSeeOther {
			return
		}
		rawQuery, ok := strings.CutPrefix(w.Header().Get("Location"), presenceURL+"?")
		if !ok {
			t.Fatalf("303 to %q", w.Header().Get("Location"))
		}
		if _, _, err := pp.ParseRedirectQuery(rawQuery); err != nil {
			t.Fatal(err)
		}
		_, ret, err := pp.ParseAgentQuery(req.URL.RawQuery)
		if err != nil || ret != presenceURL {
			t.Fatalf("signed for target %q", target)
		}
	})
}

// The refusal page's inline style is allowed by its hash, and nothing
// else: a browser applying the CSP shows the page as written.
func TestRefusalPageStyleMatchesCSP(t *testing.T) {
	t.Parallel()
	a := start(t, nil)
	r := get(t, a.base+"/")
	_, rest, ok := strings.Cut(r.body, "<style>")
	style, _, ok2 := strings.Cut(rest, "</style>")
	if !ok || !ok2 {
		t.Fatalf("no style element:\n%s", r.body)
	}
	sum := sha256.Sum256([]byte(style))
	want := "style-src 'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"
	if csp := r.header.Get("Content-Security-Policy"); !strings.Contains(csp, want) {
		t.Fatalf("CSP %q does not allow the page's style (%s)", csp, want)
	}
	if strings.Contains(r.body, "<script") {
		t.Fatal("the refusal page has a script")
	}
}
