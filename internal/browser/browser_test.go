package browser

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"

	"go.step.sm/crypto/minica"

	"github.com/clearance/clearance/internal/localport"
)

// site is a small HTTPS site on loopback, served for both localhost and
// 127.0.0.1 under a throwaway CA, with a plain-HTTP "agent" on another
// loopback port, and a port where nothing listens.
type site struct {
	caPEM  []byte
	https  *httptest.Server
	agent  *httptest.Server
	closed string // 127.0.0.1:port, nothing listening

	mu       sync.Mutex
	cookieIn string // the ceremony cookie /back received
}

// local is the site's URL by name, crossing sites (localhost) from its
// 127.0.0.1 URL.
func (s *site) local(path string) string {
	return strings.Replace(s.https.URL, "127.0.0.1", "localhost", 1) + path
}

const pageHTML = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>%s</title>
<style>
:root { color-scheme: light dark; }
body { background: #ffffff; color: #111111; font: 16px sans-serif; margin: 2em; }
@media (prefers-color-scheme: dark) { body { background: #111111; color: #eeeeee; } }
</style></head>
<body><main>%s</main></body></html>`

func newSite(t *testing.T) *site {
	t.Helper()
	ca, err := minica.New(minica.WithName("Clearance browser kit test"))
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ca.Sign(&x509.Certificate{
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		PublicKey: key.Public(), ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	if err != nil {
		t.Fatal(err)
	}
	s := &site{caPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Root.Raw})}

	s.closed = refusedPort(t)

	mux := http.NewServeMux()
	write := func(w http.ResponseWriter, title, body string) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, pageHTML, title, body)
	}
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		write(w, "Kit home", `<h1>Hello from `+r.Host+`</h1>
<p id="js">Scripts did not run.</p>
<noscript><p id="noscript">Scripts are off.</p></noscript>
<script>document.getElementById('js').textContent = 'Scripts ran.';</script>`)
	})
	// The sign-in ceremony's shape: a __Host- cookie, a redirect to a
	// plain-HTTP agent on another loopback port, back to HTTPS on another
	// host name, and a form that posts itself.
	mux.HandleFunc("GET /start", func(w http.ResponseWriter, r *http.Request) {
		http.SetCookie(w, &http.Cookie{Name: "__Host-ceremony", Value: "c1", Path: "/", Secure: true, HttpOnly: true, SameSite: http.SameSiteLaxMode})
		http.Redirect(w, r, s.agent.URL+"/sign", http.StatusSeeOther)
	})
	mux.HandleFunc("GET /back", func(w http.ResponseWriter, r *http.Request) {
		if c, err := r.Cookie("__Host-ceremony"); err == nil {
			s.mu.Lock()
			s.cookieIn = c.Value
			s.mu.Unlock()
		}
		write(w, "Signing in", `<form method="post" action="/acs"><input type="hidden" name="SAMLResponse" value="r1">
<noscript><button type="submit">Continue</button></noscript></form>
<script>document.forms[0].submit();</script>`)
	})
	mux.HandleFunc("POST /acs", func(w http.ResponseWriter, r *http.Request) {
		write(w, "Signed in", `<h1>Signed in with `+r.PostFormValue("SAMLResponse")+`</h1><a id="again" href="/form">Again</a>`)
	})
	mux.HandleFunc("GET /form", func(w http.ResponseWriter, r *http.Request) {
		write(w, "Check again", `<h1>Your Mac needs attention</h1>
<form method="post" action="/checked"><label for="who">Name</label> <input id="who" name="who" required value="ada">
<button id="check" type="submit" name="action" value="check">Check again</button></form>`)
	})
	mux.HandleFunc("POST /checked", func(w http.ResponseWriter, r *http.Request) {
		write(w, "Checked", `<h1>Checked `+r.PostFormValue("who")+` `+r.PostFormValue("action")+`</h1>`)
	})
	mux.HandleFunc("GET /to-closed", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "http://"+s.closed+"/sign", http.StatusSeeOther)
	})
	mux.HandleFunc("GET /bad", func(w http.ResponseWriter, r *http.Request) {
		// An image without a text alternative: axe's image-alt, critical.
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprint(w, `<!doctype html><html><head><title>Bad</title></head><body>
<img src="/missing.png" width="10" height="10"><p style="color:#bbb;background:#fff">faint</p></body></html>`)
	})
	mux.HandleFunc("GET /good", func(w http.ResponseWriter, r *http.Request) {
		write(w, "Good", `<h1>Your Mac is ready</h1><p>You can sign in.</p><img src="/missing.png" alt="A green tick" width="10" height="10">`)
	})

	s.https = httptest.NewUnstartedServer(mux)
	s.https.TLS = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{leaf.Raw, ca.Intermediate.Raw}, PrivateKey: key}}}
	s.https.Config.ErrorLog = quietLog() // Chromium's refused handshakes in the untrusted test
	s.https.StartTLS()
	t.Cleanup(s.https.Close)

	s.agent = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, s.local("/back"), http.StatusSeeOther)
	}))
	t.Cleanup(s.agent.Close)
	return s
}

func quietLog() *log.Logger { return log.New(io.Discard, "", 0) }

// pngSize reads a PNG's width and height from its header.
func pngSize(t *testing.T, path string) (int, int) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) < 24 || !bytes.HasPrefix(b, []byte("\x89PNG\r\n\x1a\n")) {
		t.Fatalf("%s is not a PNG", path)
	}
	return int(binary.BigEndian.Uint32(b[16:20])), int(binary.BigEndian.Uint32(b[20:24]))
}

func TestPageAndScreenshot(t *testing.T) {
	t.Parallel()
	s := newSite(t)
	for _, tc := range []struct {
		name     string
		viewport Viewport
	}{{"desktop", Desktop}, {"phone", Phone}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := New(t, Options{Trust: s.caPEM, Viewport: tc.viewport})
			if err := b.Navigate(s.local("/")); err != nil {
				t.Fatal(err)
			}
			if got := b.Text(); !strings.Contains(got, "Hello from localhost:") {
				t.Errorf("page text = %q", got)
			}
			if got, want := b.Title(), "Kit home"; got != want {
				t.Errorf("title = %q, want %q", got, want)
			}
			path := b.Screenshot("home")
			dir, err := ArtifactsDir()
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(path, dir) || !strings.HasSuffix(path, "/TestPageAndScreenshot/"+tc.name+"/home.png") {
				t.Errorf("screenshot at %s, want %s/TestPageAndScreenshot/%s/home.png", path, dir, tc.name)
			}
			if w, h := pngSize(t, path); w != int(tc.viewport.Width) || h < int(tc.viewport.Height) {
				t.Errorf("screenshot is %dx%d, want %d wide and at least %d high", w, h, tc.viewport.Width, tc.viewport.Height)
			}
		})
	}
}

func TestJavaScriptOff(t *testing.T) {
	t.Parallel()
	s := newSite(t)
	on := New(t, Options{Trust: s.caPEM})
	if err := on.Navigate(s.local("/")); err != nil {
		t.Fatal(err)
	}
	if got := on.Text(); !strings.Contains(got, "Scripts ran.") || strings.Contains(got, "Scripts are off.") {
		t.Errorf("with JavaScript, the page says %q", got)
	}

	off := New(t, Options{Trust: s.caPEM, NoJavaScript: true})
	// Both host names: a navigation to another site moves the page to
	// another renderer, which must keep scripts off.
	for _, u := range []string{s.local("/"), s.https.URL + "/"} {
		if err := off.Navigate(u); err != nil {
			t.Fatal(err)
		}
		if got := off.Text(); !strings.Contains(got, "Scripts are off.") || !strings.Contains(got, "Scripts did not run.") {
			t.Errorf("without JavaScript, %s says %q", u, got)
		}
	}
	// A form works without scripts, through a real click.
	if err := off.Navigate(s.local("/form")); err != nil {
		t.Fatal(err)
	}
	off.CheckAccessibility() // axe runs with the page's scripts off
	if err := off.Click("#check"); err != nil {
		t.Fatal(err)
	}
	if got := off.Text(); !strings.Contains(got, "Checked ada check") {
		t.Errorf("after clicking Check again: %q", got)
	}
}

func TestColorScheme(t *testing.T) {
	t.Parallel()
	s := newSite(t)
	want := map[ColorScheme]string{Light: "rgb(255, 255, 255)", Dark: "rgb(17, 17, 17)"}
	for _, scheme := range []ColorScheme{Light, Dark} {
		t.Run(string(scheme), func(t *testing.T) {
			t.Parallel()
			b := New(t, Options{Trust: s.caPEM, ColorScheme: scheme, Viewport: Phone})
			if err := b.Navigate(s.local("/")); err != nil {
				t.Fatal(err)
			}
			if got := b.Style("body", "background-color"); got != want[scheme] {
				t.Errorf("body background in %s mode = %q, want %q", scheme, got, want[scheme])
			}
			b.Screenshot("home")
		})
	}
}

// TestCeremonyRedirects follows the sign-in ceremony's shape across hosts
// and schemes: HTTPS sets a __Host- cookie and redirects to a plain-HTTP
// loopback port, which redirects back to HTTPS on another host name, whose
// page posts a form by script.
func TestCeremonyRedirects(t *testing.T) {
	t.Parallel()
	s := newSite(t)
	b := New(t, Options{Trust: s.caPEM})
	if err := b.Navigate(s.https.URL + "/start"); err != nil {
		t.Fatal(err)
	}
	if got := b.Text(); !strings.Contains(got, "Signed in with r1") {
		t.Fatalf("after the ceremony the page says %q (hops %v)", got, b.Hops())
	}
	if got, want := b.URL(), s.local("/acs"); got != want {
		t.Errorf("URL = %s, want %s", got, want)
	}
	var got []string
	for _, h := range b.Hops() {
		got = append(got, h.String())
	}
	want := []string{
		"GET " + s.https.URL + "/start → 303",
		"GET " + s.agent.URL + "/sign → 303",
		"GET " + s.local("/back") + " → 200",
		"POST " + s.local("/acs") + " → 200",
	}
	if !slices.Equal(got, want) {
		t.Errorf("hops:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	// The cookie was set on 127.0.0.1 and the ceremony came back on
	// localhost: a different host, so it was not sent there.
	s.mu.Lock()
	in := s.cookieIn
	s.mu.Unlock()
	if in != "" {
		t.Errorf("/back on localhost received the 127.0.0.1 cookie %q", in)
	}
	cookies := b.Cookies(s.https.URL + "/")
	i := slices.IndexFunc(cookies, func(c Cookie) bool { return c.Name == "__Host-ceremony" })
	if i < 0 {
		t.Fatalf("no __Host-ceremony cookie for %s: %+v", s.https.URL, cookies)
	}
	if c := cookies[i]; c.Value != "c1" || !c.Secure || !c.HTTPOnly || c.SameSite != "Lax" || !c.Session || c.Path != "/" {
		t.Errorf("cookie = %+v", c)
	}

	// Clicking a link and submitting a form by its button.
	if err := b.Click("#again"); err != nil {
		t.Fatal(err)
	}
	if err := b.Submit("#check"); err != nil {
		t.Fatal(err)
	}
	if got := b.Text(); !strings.Contains(got, "Checked ada check") {
		t.Errorf("after submitting: %q", got)
	}
	if err := b.Submit("#nothing"); err == nil {
		t.Error("submitting a missing form succeeded")
	}
}

func TestNetErrors(t *testing.T) {
	t.Parallel()
	s := newSite(t)
	b := New(t, Options{Trust: s.caPEM})
	err := b.Navigate(s.https.URL + "/to-closed")
	var ne *NetError
	if !errors.As(err, &ne) {
		t.Fatalf("a redirect to a closed port: err = %v, want a *NetError", err)
	}
	if want := "http://" + s.closed + "/sign"; ne.Code != "ERR_CONNECTION_REFUSED" || ne.URL != want {
		t.Errorf("NetError = %+v, want ERR_CONNECTION_REFUSED for %s", ne, want)
	}
	if got := b.NetError(); got == nil || got.Code != "ERR_CONNECTION_REFUSED" {
		t.Errorf("NetError() = %v", got)
	}
	b.Screenshot("refused")
	if hops := b.Hops(); len(hops) != 2 || hops[0].Status != 303 || hops[1].Err != "net::ERR_CONNECTION_REFUSED" {
		t.Errorf("hops = %v", hops)
	}

	// Names other than localhost never resolve: nothing leaves loopback.
	err = b.Navigate("https://example.com/")
	if !errors.As(err, &ne) || ne.Code != "ERR_NAME_NOT_RESOLVED" {
		t.Errorf("example.com: err = %v, want ERR_NAME_NOT_RESOLVED", err)
	}
	// ...unless mapped to loopback.
	mapped := New(t, Options{Trust: s.caPEM, Hosts: map[string]string{"verifier.test": "127.0.0.1"}})
	_, port, _ := net.SplitHostPort(s.https.Listener.Addr().String())
	err = mapped.Navigate("https://verifier.test:" + port + "/")
	// The server's certificate does not name verifier.test: trust is real.
	if !errors.As(err, &ne) || ne.Code != "ERR_CERT_COMMON_NAME_INVALID" {
		t.Errorf("verifier.test: err = %v, want ERR_CERT_COMMON_NAME_INVALID", err)
	}

	// Without the CA, the site is not trusted.
	untrusting := New(t, Options{})
	err = untrusting.Navigate(s.local("/"))
	if !errors.As(err, &ne) || ne.Code != "ERR_CERT_AUTHORITY_INVALID" {
		t.Errorf("without the CA: err = %v, want ERR_CERT_AUTHORITY_INVALID", err)
	}
}

// recorder stands in for the test, to see what CheckAccessibility reports.
type recorder struct {
	testing.TB
	errors []string
}

func (r *recorder) Helper() {}

func (r *recorder) Errorf(format string, args ...any) {
	r.errors = append(r.errors, fmt.Sprintf(format, args...))
}

func (r *recorder) Logf(string, ...any) {}

func (r *recorder) Skipf(format string, args ...any) {
	r.errors = append(r.errors, "skip: "+fmt.Sprintf(format, args...))
}

func (r *recorder) Fatalf(format string, args ...any) {
	r.errors = append(r.errors, "fatal: "+fmt.Sprintf(format, args...))
}

func TestAccessibility(t *testing.T) {
	t.Parallel()
	s := newSite(t)
	b := New(t, Options{Trust: s.caPEM})
	if err := b.Navigate(s.local("/bad")); err != nil {
		t.Fatal(err)
	}
	vs := b.Accessibility()
	i := slices.IndexFunc(vs, func(v Violation) bool { return v.ID == "image-alt" })
	if i < 0 {
		t.Fatalf("axe-core found no image-alt violation: %v", vs)
	}
	if v := vs[i]; v.Impact != "critical" || len(v.Nodes) != 1 || !strings.Contains(v.Nodes[0].HTML, "/missing.png") {
		t.Errorf("image-alt = %+v", v)
	}

	rec := &recorder{TB: t}
	b.t = rec
	b.CheckAccessibility()
	b.t = t
	report := strings.Join(rec.errors, "\n")
	for _, want := range []string{"critical image-alt", "/missing.png", "serious color-contrast", "https://dequeuniversity.com/"} {
		if !strings.Contains(report, want) {
			t.Errorf("CheckAccessibility's report lacks %q:\n%s", want, report)
		}
	}

	if err := b.Navigate(s.local("/good")); err != nil {
		t.Fatal(err)
	}
	if vs := b.CheckAccessibility(); len(vs) != 0 {
		t.Logf("violations on the good page: %v", vs)
	}
}

func TestHostRules(t *testing.T) {
	t.Parallel()
	got, err := hostRules(map[string]string{"b.test": "127.0.0.2", "a.test": "::1"})
	if want := "MAP a.test ::1, MAP b.test 127.0.0.2, MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1, EXCLUDE ::1"; err != nil || got != want {
		t.Errorf("hostRules = %q, %v; want %q", got, err, want)
	}
	for _, hosts := range []map[string]string{
		{"a.test": "10.0.0.1"}, {"a.test": "example.com"}, {"a.test, MAP *": "127.0.0.1"},
	} {
		if _, err := hostRules(hosts); err == nil {
			t.Errorf("hostRules(%v) accepted", hosts)
		}
	}
}

func TestArtifactPath(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ test, name, want string }{
		{"TestSignIn", "remediation", "/a/TestSignIn/remediation.png"},
		{"TestSignIn/phone_dark", "", "/a/TestSignIn/phone_dark/page.png"},
		{"TestX/../../etc", "../passwd", "/a/TestX/etc/passwd.png"},
		{"TestX/a b#c", "x/y", "/a/TestX/a_b_c/x_y.png"},
	} {
		if got := artifactPath("/a", tc.test, tc.name, ".png"); got != tc.want {
			t.Errorf("artifactPath(%q, %q) = %s, want %s", tc.test, tc.name, got, tc.want)
		}
	}
}

// refusedPort returns a loopback address that refuses connections until
// the test ends (localport.Refused).
func refusedPort(t *testing.T) string {
	t.Helper()
	addr, closeFn, err := localport.Refused()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = closeFn() })
	return addr
}
