// Package browser owns the real-browser test kit: it drives Debian's Chromium
// (/usr/bin/chromium), headless, over the DevTools protocol with chromedp, so
// tests can see what a person sees at sign-in.
//
// What a test author needs:
//
//   - Debian's chromium and libnss3-tools (certutil) installed, and axe-core
//     in scripts/npm/node_modules for accessibility checks: scripts/deps.sh
//     and scripts/npm.sh install them, and `make test` runs both. Without
//     Chromium (or certutil, when a CA is trusted, or axe-core, for
//     CheckAccessibility) a test skips with a message saying so; when the CI
//     variable is set it fails instead. Nothing is downloaded at test time.
//   - New(t, Options{...}) starts one Chromium with a fresh profile and HOME,
//     stopped when the test ends. Options: NoJavaScript, Viewport (Desktop
//     1280×800, Phone 390×844), ColorScheme (Light, Dark), Trust (PEM CA
//     certificates the browser trusts, through an NSS database in its HOME:
//     real trust, so a wrong certificate still fails) and Hosts (names that
//     resolve to loopback addresses).
//   - Every other host name fails to resolve, so nothing leaves loopback,
//     whatever a page or Chromium's own services ask for.
//   - Navigate, Click and Submit wait until the page and any redirects,
//     auto-submitted forms and script navigations have settled, and return a
//     *NetError when Chromium shows its own error page (for example
//     ERR_CONNECTION_REFUSED after a redirect to a closed loopback port).
//     Hops lists each document request of the last one, across hosts.
//   - URL, Text, Title, Style, Cookies and Eval read the page; Screenshot
//     writes a full-page PNG under CLEARANCE_TEST_ARTIFACTS (default
//     test-artifacts/ at the repo root), named after the test.
//   - CheckAccessibility runs axe-core on the page and fails the test on
//     serious or critical violations, listing each with its elements.
package browser

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
	"github.com/clearance/clearance/internal/testkit"
)

// ExecPath is Debian's Chromium launcher.
const ExecPath = "/usr/bin/chromium"

// Viewport is the size of the page's window, in CSS pixels.
type Viewport struct {
	Width, Height int64
	// Mobile makes Chromium honour <meta name="viewport"> and behave as a
	// phone's browser does.
	Mobile bool
}

var (
	// Desktop is a laptop's window.
	Desktop = Viewport{Width: 1280, Height: 800}
	// Phone is a current iPhone's screen.
	Phone = Viewport{Width: 390, Height: 844, Mobile: true}
)

// ColorScheme is the prefers-color-scheme the page sees.
type ColorScheme string

const (
	Light ColorScheme = "light"
	Dark  ColorScheme = "dark"
)

// Options say how the browser is set up. The zero value is a desktop
// browser with JavaScript, in light mode, trusting no private CA.
type Options struct {
	// NoJavaScript turns scripts off, as for a person who browses without
	// them: <noscript> content shows. The kit's own reads still work.
	NoJavaScript bool
	// Viewport defaults to Desktop.
	Viewport Viewport
	// ColorScheme defaults to Light.
	ColorScheme ColorScheme
	// Trust holds PEM CA certificates the browser trusts for HTTPS, as a
	// Mac whose keychain trusts the verifier's CA.
	Trust []byte
	// Hosts maps host names to loopback IP addresses ("verifier.test" →
	// "127.0.0.1"). localhost and IP literals need no entry.
	Hosts map[string]string
	// Timeout bounds each action; default 30s.
	Timeout time.Duration
}

// Browser is one headless Chromium with one tab.
type Browser struct {
	t       testing.TB
	ctx     context.Context // the tab's
	timeout time.Duration
	output  *lockedBuffer // Chromium's stdout and stderr
	frame   cdp.FrameID   // the tab's main frame
	noJS    bool

	mu       sync.Mutex
	hops     []Hop
	byID     map[network.RequestID]int // request → its latest hop
	loading  bool
	activity time.Time // of the main frame's latest navigation event
}

// Hop is one document request of the main frame: a page, or a step of a
// redirect chain.
type Hop struct {
	Method string
	URL    string
	// Status is the HTTP status (a 3xx for a redirect), 0 when no response
	// came.
	Status int
	// Err is Chromium's error for a request that failed, such as
	// "net::ERR_CONNECTION_REFUSED".
	Err string
}

func (h Hop) String() string {
	s := h.Method + " " + h.URL
	if h.Status != 0 {
		s += fmt.Sprintf(" → %d", h.Status)
	}
	if h.Err != "" {
		s += " → " + h.Err
	}
	return s
}

// NetError is Chromium's own error page in place of the page asked for.
type NetError struct {
	URL  string // the request that failed, when known
	Code string // such as ERR_CONNECTION_REFUSED
}

func (e *NetError) Error() string {
	return fmt.Sprintf("chromium shows its error page %s for %s", e.Code, e.URL)
}

// New starts Chromium for the test and stops it when the test ends.
func New(t testing.TB, o Options) *Browser {
	t.Helper()
	if _, err := os.Stat(ExecPath); err != nil {
		testkit.Missing(t, "%s not found: scripts/deps.sh (make test runs it) installs Debian's chromium", ExecPath)
	}
	if o.Viewport == (Viewport{}) {
		o.Viewport = Desktop
	}
	if o.ColorScheme == "" {
		o.ColorScheme = Light
	}
	if o.Timeout == 0 {
		o.Timeout = 30 * time.Second
	}
	rules, err := hostRules(o.Hosts)
	if err != nil {
		t.Fatal(err)
	}

	// A HOME of its own: Chromium reads the NSS database of trusted CAs
	// from it, and nothing of the developer's own profile leaks in. Removed
	// after Chromium and its children have exited (cleanups run last
	// first, and the allocator's cancel waits for them).
	home, err := os.MkdirTemp("", "clearance-browser-home")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { removeAll(home) })
	if len(o.Trust) > 0 {
		if err := trust(t, home, o.Trust); err != nil {
			t.Fatal(err)
		}
	}

	out := &lockedBuffer{}
	env := []string{"HOME=" + home, "PATH=/usr/bin:/bin",
		"XDG_CONFIG_HOME=" + filepath.Join(home, ".config"), "XDG_CACHE_HOME=" + filepath.Join(home, ".cache")}
	if d := os.Getenv("TMPDIR"); d != "" {
		env = append(env, "TMPDIR="+d)
	}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(ExecPath),
		// The profile (--user-data-dir) is a fresh temporary directory
		// chromedp creates and removes.
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true), // tests run as root in CI
		chromedp.Flag("disable-gpu", true),
		// This machine's network is closed: without these Chromium keeps
		// trying Google's services.
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		// Some still try (the update client, Gaia's account list): no name
		// but loopback resolves, so nothing leaves the machine.
		chromedp.Flag("host-resolver-rules", rules),
		chromedp.Flag("no-proxy-server", true),
		// An error page stays as it is: Chromium would reload it after a
		// second, a request the test did not make.
		chromedp.Flag("disable-auto-reload", true),
		chromedp.Flag("lang", "en-US"),
		chromedp.Flag("hide-scrollbars", true),
		chromedp.Flag("mute-audio", true),
		chromedp.WindowSize(int(o.Viewport.Width), int(o.Viewport.Height)),
		// Only what the launcher needs: the test's environment (DSNs,
		// tokens) stays out of the browser.
		chromedp.NoInheritEnv,
		chromedp.Env(env...),
		chromedp.CombinedOutput(out),
	)
	ctx, cancelTab := chromedp.NewContext(allocCtx)
	b := &Browser{t: t, ctx: ctx, timeout: o.Timeout, output: out, noJS: o.NoJavaScript, byID: map[network.RequestID]int{}}
	t.Cleanup(func() {
		cancelTab()
		cancelAlloc()
		if t.Failed() {
			t.Logf("chromium output (end):\n%s", out.tail(4000))
		}
	})

	// The first action starts Chromium and binds it to its context, which
	// must be the tab's own (not one with a deadline): a start that hangs
	// is cut by cancelling the tab.
	started := make(chan error, 1)
	go func() { started <- chromedp.Do(ctx) }()
	select {
	case err = <-started:
	case <-time.After(o.Timeout):
		cancelTab()
		err = fmt.Errorf("not started after %v: %w", o.Timeout, <-started)
	}
	if err != nil {
		t.Fatalf("starting %s: %v\n%s", ExecPath, err, out.tail(4000))
	}
	start, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	tree, err := chromedp.Call(start, page.GetFrameTree, cdp.Empty{})
	if err != nil {
		t.Fatalf("reading the frame tree: %v", err)
	}
	b.frame = tree.FrameTree.Frame.ID
	if err := chromedp.Listen(ctx, b.event); err != nil {
		t.Fatal(err)
	}
	steps := []chromedp.Action[chromedp.Void]{
		chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			_, err := cdp.Call(ctx, tg, emulation.SetDeviceMetricsOverride, emulation.SetDeviceMetricsOverrideParams{
				Width: o.Viewport.Width, Height: o.Viewport.Height, DeviceScaleFactor: 1, Mobile: o.Viewport.Mobile,
			})
			return err
		}),
		chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			_, err := cdp.Call(ctx, tg, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{
				Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: string(o.ColorScheme)}},
			})
			return err
		}),
	}
	if o.NoJavaScript {
		steps = append(steps, setScripts(false))
	}
	if err := chromedp.Do(start, steps...); err != nil {
		t.Fatalf("setting up the tab: %v", err)
	}
	return b
}

func setScripts(on bool) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		_, err := cdp.Call(ctx, tg, emulation.SetScriptExecutionDisabled, emulation.SetScriptExecutionDisabledParams{Value: !on})
		return err
	})
}

// hostRules maps the given names to loopback addresses and every other name
// to "not found".
func hostRules(hosts map[string]string) (string, error) {
	var rules []string
	names := make([]string, 0, len(hosts))
	for name := range hosts {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		ip := net.ParseIP(hosts[name])
		if ip == nil || !ip.IsLoopback() {
			return "", fmt.Errorf("browser: Hosts[%q] = %q: only loopback addresses are allowed", name, hosts[name])
		}
		if strings.ContainsAny(name, ", ") {
			return "", fmt.Errorf("browser: Hosts: bad host name %q", name)
		}
		rules = append(rules, "MAP "+name+" "+ip.String())
	}
	// The rules apply to IP literals too: loopback's are left alone.
	rules = append(rules, "MAP * ~NOTFOUND", "EXCLUDE localhost", "EXCLUDE 127.0.0.1", "EXCLUDE ::1")
	return strings.Join(rules, ", "), nil
}

// event runs in chromedp's read loop: it only records.
func (b *Browser) event(ev any) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch ev := ev.(type) {
	case *network.EventRequestWillBeSent:
		if ev.Type != network.ResourceTypeDocument || ev.FrameID != b.frame {
			return
		}
		if i, ok := b.byID[ev.RequestID]; ok && ev.RedirectResponse != nil {
			b.hops[i].Status = int(ev.RedirectResponse.Status)
		}
		b.byID[ev.RequestID] = len(b.hops)
		b.hops = append(b.hops, Hop{Method: ev.Request.Method, URL: ev.Request.URL})
		b.activity = time.Now()
	case *network.EventResponseReceived:
		if i, ok := b.byID[ev.RequestID]; ok && ev.Type == network.ResourceTypeDocument {
			b.hops[i].Status = int(ev.Response.Status)
		}
	case *network.EventLoadingFailed:
		if i, ok := b.byID[ev.RequestID]; ok {
			b.hops[i].Err = ev.ErrorText
			b.activity = time.Now()
		}
	case *page.EventFrameRequestedNavigation:
		if ev.FrameID == b.frame {
			b.activity = time.Now()
		}
	case *page.EventFrameStartedLoading:
		if ev.FrameID == b.frame {
			b.loading, b.activity = true, time.Now()
		}
	case *page.EventFrameStoppedLoading:
		if ev.FrameID == b.frame {
			b.loading, b.activity = false, time.Now()
		}
	}
}

// quiet is how long the main frame must stay still before a page counts as
// settled: long enough for an auto-submitted form or a script's redirect to
// start.
const quiet = 400 * time.Millisecond

// settle waits until the main frame has stopped loading and nothing has
// happened to it for a while, then reports Chromium's error page if that
// is what shows.
func (b *Browser) settle(ctx context.Context) error {
	for {
		b.mu.Lock()
		still := !b.loading && time.Since(b.activity) >= quiet
		b.mu.Unlock()
		if still {
			state, err := chromedp.Run(ctx, chromedp.EvaluateAsDevTools[string](`document.readyState`))
			if err == nil && state == "complete" {
				return b.netError(ctx)
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for the page to settle: %w (document requests: %v)", ctx.Err(), b.Hops())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// netError returns a *NetError when the page is Chromium's error page.
func (b *Browser) netError(ctx context.Context) error {
	loc, err := chromedp.Run(ctx, chromedp.Location())
	if err != nil {
		return err
	}
	if !strings.HasPrefix(loc, "chrome-error://") {
		return nil
	}
	e := &NetError{}
	hops := b.Hops()
	for i := len(hops) - 1; i >= 0; i-- {
		if hops[i].Err != "" {
			e.URL, e.Code = hops[i].URL, strings.TrimPrefix(hops[i].Err, "net::")
			break
		}
	}
	if e.Code == "" {
		// The page itself names the error, as a person sees it.
		code, _ := chromedp.Run(ctx, chromedp.EvaluateAsDevTools[string](
			`(document.querySelector('.error-code') || {}).textContent || ''`))
		e.Code = strings.TrimSpace(code)
	}
	return e
}

func (b *Browser) action() (context.Context, context.CancelFunc) {
	return context.WithTimeout(b.ctx, b.timeout)
}

// begin starts a new list of hops and marks the moment an action may start
// a navigation.
func (b *Browser) begin() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.hops, b.byID, b.activity = nil, map[network.RequestID]int{}, time.Now()
}

// Navigate opens url and waits until the page has settled (redirects,
// auto-submitted forms and script navigations included). It returns a
// *NetError when Chromium shows its own error page.
func (b *Browser) Navigate(url string) error {
	ctx, cancel := b.action()
	defer cancel()
	b.begin()
	if err := chromedp.Do(ctx, chromedp.Navigate(url)); err != nil {
		var le *chromedp.LoadError
		if !errors.As(err, &le) { // a failed load shows the error page: settle reports it
			return fmt.Errorf("navigating to %s: %w", url, err)
		}
	}
	return b.settle(ctx)
}

// Click clicks the first element matching the CSS selector, as a mouse
// does, and waits for any navigation it starts to settle.
func (b *Browser) Click(selector string) error {
	ctx, cancel := b.action()
	defer cancel()
	b.begin()
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(selector), chromedp.NodeVisible)); err != nil {
		return fmt.Errorf("clicking %s: %w", selector, err)
	}
	return b.settle(ctx)
}

// Submit submits the form matching the CSS selector, or the form of the
// element matching it (a submit button is then the submitter), as pressing
// Enter or the button would: validation and submit handlers run, unlike
// form.submit(). It then waits for the navigation to settle.
func (b *Browser) Submit(selector string) error {
	ctx, cancel := b.action()
	defer cancel()
	b.begin()
	sel, _ := json.Marshal(selector)
	ok, err := chromedp.Run(ctx, chromedp.EvaluateAsDevTools[bool](fmt.Sprintf(`(() => {
		const el = document.querySelector(%s);
		if (!el) return false;
		const form = el instanceof HTMLFormElement ? el : el.form;
		if (!form) return false;
		const submitter = el !== form && (el.type === 'submit' || el.type === 'image') ? el : null;
		form.requestSubmit(submitter);
		return true;
	})()`, sel)))
	if err != nil {
		return fmt.Errorf("submitting %s: %w", selector, err)
	}
	if !ok {
		return fmt.Errorf("submitting %s: no such form or form element", selector)
	}
	return b.settle(ctx)
}

// WaitURL waits until the page's URL starts with prefix and the page has
// settled, for navigations that start late (a timer, a slow redirect).
func (b *Browser) WaitURL(prefix string) error {
	ctx, cancel := b.action()
	defer cancel()
	for {
		loc, err := chromedp.Run(ctx, chromedp.Location())
		if err == nil && strings.HasPrefix(loc, prefix) {
			return b.settle(ctx)
		}
		if err == nil {
			if err := b.netError(ctx); err != nil {
				return err
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for a URL starting with %s (now %s): %w", prefix, loc, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Hops lists the main frame's document requests since the last Navigate,
// Click or Submit, in order: each redirect's target follows the 3xx that
// sent the browser there.
func (b *Browser) Hops() []Hop {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.hops)
}

// NetError returns the *NetError of Chromium's error page, or nil when a
// real page shows.
func (b *Browser) NetError() *NetError {
	ctx, cancel := b.action()
	defer cancel()
	err := b.netError(ctx)
	var ne *NetError
	if errors.As(err, &ne) {
		return ne
	}
	if err != nil {
		b.t.Fatal(err)
	}
	return nil
}

// URL is the address of the page that shows.
func (b *Browser) URL() string {
	return Eval[string](b, `document.location.href`)
}

// Title is the page's title.
func (b *Browser) Title() string {
	return Eval[string](b, `document.title`)
}

// Text is the page's visible text, as a person reads it (innerText).
func (b *Browser) Text() string {
	return Eval[string](b, `document.body ? document.body.innerText : ''`)
}

// Style is the computed value of a CSS property of the first element
// matching the selector.
func (b *Browser) Style(selector, property string) string {
	sel, _ := json.Marshal(selector)
	prop, _ := json.Marshal(property)
	return Eval[string](b, fmt.Sprintf(`(() => {
		const el = document.querySelector(%s);
		if (!el) throw new Error('no element matches ' + %s);
		return getComputedStyle(el).getPropertyValue(%s);
	})()`, sel, sel, prop))
}

// Eval evaluates a JavaScript expression in the page and decodes its JSON
// value; it fails the test on an exception. It runs even when the page's
// own scripts are off.
func Eval[T any](b *Browser, expr string) T {
	b.t.Helper()
	ctx, cancel := b.action()
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.EvaluateAsDevTools[T](expr, chromedp.EvalAwaitPromise))
	if err != nil {
		b.t.Fatalf("evaluating %.80q: %v", expr, err)
	}
	return v
}

// Cookie is a cookie as the browser holds it.
type Cookie struct {
	Name, Value, Domain, Path string
	Secure, HTTPOnly          bool
	SameSite                  string // Strict, Lax, None, or "" when unset
	Session                   bool
	Expires                   time.Time // zero for a session cookie
}

// Cookies returns the cookies the browser would send to url.
func (b *Browser) Cookies(url string) []Cookie {
	b.t.Helper()
	ctx, cancel := b.action()
	defer cancel()
	res, err := chromedp.Call(ctx, network.GetCookies, network.GetCookiesParams{URLs: []string{url}})
	if err != nil {
		b.t.Fatalf("reading cookies for %s: %v", url, err)
	}
	out := make([]Cookie, 0, len(res.Cookies))
	for _, c := range res.Cookies {
		k := Cookie{Name: c.Name, Value: c.Value, Domain: c.Domain, Path: c.Path, Secure: c.Secure,
			HTTPOnly: c.HTTPOnly, SameSite: string(c.SameSite), Session: c.Session}
		if !c.Session && c.Expires > 0 {
			k.Expires = time.Unix(int64(c.Expires), 0)
		}
		out = append(out, k)
	}
	return out
}

// removeAll removes dir, retrying briefly: Chromium's helpers can still be
// writing in it for a moment after it exits.
func removeAll(dir string) {
	for i := 0; i < 50; i++ {
		if err := os.RemoveAll(dir); err == nil {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// lockedBuffer keeps the end of Chromium's output.
type lockedBuffer struct {
	mu sync.Mutex
	b  []byte
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.b = append(l.b, p...)
	if len(l.b) > 1<<20 {
		l.b = l.b[len(l.b)-1<<19:]
	}
	return len(p), nil
}

// tail is the end of the output, without the lines about D-Bus, which
// tests have none of and Chromium complains about at length.
func (l *lockedBuffer) tail(n int) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var keep []string
	for _, line := range strings.Split(string(l.b), "\n") {
		if !strings.Contains(line, "dbus/") {
			keep = append(keep, line)
		}
	}
	s := strings.Join(keep, "\n")
	if len(s) > n {
		s = s[len(s)-n:]
	}
	return s
}
