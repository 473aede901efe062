package web

import (
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/html"

	"github.com/clearance/clearance/pkg/policy"
	"github.com/clearance/clearance/verifier/decision"
	"github.com/clearance/clearance/verifier/reason"
)

var (
	now     = time.Date(2025, 3, 14, 9, 41, 5, 0, time.UTC)
	checked = now.Add(-3*time.Minute - 20*time.Second)
)

func newRenderer(t *testing.T) *Renderer {
	t.Helper()
	r, err := New()
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return r
}

// The hand-written findings of the unit tests.
var fileVault = Finding{
	Name:       "FileVault is on",
	UserText:   "FileVault keeps the files on this Mac unreadable to anyone who doesn't know your password.",
	Resolution: "1. Open System Settings.\n2. Choose Privacy & Security, then scroll\n   to FileVault.\n3. Choose Turn On and follow the steps.\n\nEncryption continues in the background; you can keep working.",
	Status:     "FAIL",
	Critical:   true,
}

var firewall = Finding{
	Name:       "Firewall is on",
	UserText:   "The firewall blocks unwanted connections to this Mac.",
	Resolution: "Open System Settings > Network > Firewall and turn it on.",
	Status:     "ERROR",
}

var screenLock = Finding{
	Name:       "Screen locks after 5 minutes",
	UserText:   "A locked screen keeps others out when you step away.",
	Resolution: "Open System Settings > Lock Screen and set \"Require password after screen saver begins\" to 5 minutes or less.",
	Status:     "FAIL",
}

// examples are the shipped example policies: the golden pages and the
// browser test show the words a person at a Mac would read.
var examples = sync.OnceValue(func() *policy.Set {
	set, err := policy.Load(filepath.Join("..", "..", "examples", "policies.yaml"))
	if err != nil {
		panic(err)
	}
	return set
})

// example is the example policy id as a finding with status.
func example(id, status string) Finding {
	p, ok := examples().Lookup(id)
	if !ok {
		panic("no example policy " + id)
	}
	return Finding{Name: p.Name, UserText: p.UserText, Resolution: p.Resolution, Status: status, Critical: p.Critical}
}

// The states a rollout gives a finding, as the decision fills them in.
func inGrace(f Finding, ends time.Time) Finding {
	f.Enforcement, f.BlocksFrom = decision.Warn, ends
	return f
}

func warning(f Finding) Finding {
	f.Enforcement = decision.Warn
	return f
}

func skippable(f Finding) Finding {
	f.Enforcement, f.ResolveLater = decision.Enforce, true
	return f
}

// examplesAt is every required example policy at status, and the optional
// ones as advisory.
func examplesAt(status string) (required, advisory []Finding) {
	for _, p := range examples().Policies {
		if p.Required {
			required = append(required, example(p.ID, status))
		} else {
			advisory = append(advisory, example(p.ID, status))
		}
	}
	return required, advisory
}

// The Check again form of every golden page that has one: the same on each,
// so that it is pinned once (testdata/parts/check-again.html).
const (
	retryPath  = "/saml/sso/retry"
	retryToken = "tok-123"
)

// renderedPage is a page of pages() as the renderer wrote it.
type renderedPage struct {
	pageCase
	rec *httptest.ResponseRecorder
}

// renderPages renders every page of pages().
func renderPages(t *testing.T) []renderedPage {
	t.Helper()
	r := newRenderer(t)
	var out []renderedPage
	for _, p := range pages() {
		rec := httptest.NewRecorder()
		p.render(r, rec)
		out = append(out, renderedPage{p, rec})
	}
	return out
}

// pageCase is one page as a test renders it.
type pageCase struct {
	name   string
	status int
	render func(*Renderer, http.ResponseWriter)
}

// pages is one of every page, as the golden files record them and the
// browser test shows them. Each shows its own Mac, check time and
// policies, so that the goldens pin each once (and "ago" in its forms).
func pages() []pageCase {
	denied := func(name string, d Denied) pageCase {
		return pageCase{name, http.StatusForbidden, func(r *Renderer, w http.ResponseWriter) { r.Denied(w, http.StatusForbidden, d) }}
	}
	allErrors, advisoryErrors := examplesAt("ERROR")
	return []pageCase{
		denied("denied_policy", Denied{
			Reason: reason.PolicyFailed, DeviceName: "Alex's MacBook Pro", Username: "alex@example.com", LastChecked: checked, Now: now,
			Failing:     []Finding{example("filevault", "FAIL"), example("firewall", "FAIL")},
			Advisory:    []Finding{example("screen-lock", "FAIL")},
			RetryAction: retryPath, RetryToken: retryToken, SupportID: "1042",
		}),
		denied("denied_mixed", Denied{
			Reason: reason.PolicyFailed, DeviceName: "Sam's MacBook Air", LastChecked: now.Add(-2 * time.Hour), Now: now,
			Failing:     []Finding{example("macos-version", "FAIL"), example("firewall", "ERROR"), example("gatekeeper", "MISSING")},
			Advisory:    []Finding{example("screen-lock", "ERROR")},
			RetryAction: retryPath, RetryToken: retryToken, SupportID: "1043",
		}),
		denied("denied_unchecked", Denied{
			Reason: reason.PolicyError, LiveCheck: decision.LiveCheckAnswered,
			DeviceName: "Priya's iMac", LastChecked: now.Add(-20 * time.Second), Now: now,
			Failing: allErrors, Advisory: advisoryErrors,
			RetryAction: retryPath, RetryToken: retryToken, SupportID: "1044",
		}),
		denied("denied_partial", Denied{
			Reason: reason.PolicyFailed, LiveCheck: decision.LiveCheckAnswered,
			DeviceName: "Jordan's Mac mini", LastChecked: now.Add(-5 * time.Second), Now: now,
			NowPassing:  []string{"FileVault disk encryption is on", "Firewall is on"},
			Failing:     []Finding{example("sip", "FAIL")},
			RetryAction: retryPath, RetryToken: retryToken, SupportID: "1045",
		}),
		denied("denied_warn", Denied{
			Reason: reason.PolicyFailed, DeviceName: "Lee's MacBook Pro", LastChecked: now.Add(-time.Minute), Now: now,
			Failing:     []Finding{inGrace(example("gatekeeper", "FAIL"), time.Date(2026, 12, 5, 9, 0, 0, 0, time.UTC))},
			RetryAction: retryPath, RetryToken: retryToken, SupportID: "1046",
			ContinueAction: "/saml/sso/continue", PageShown: "Xq3p0yK9dF2mWv8sLb1A",
		}),
		// The Mac of a rollout under way: the macOS version blocks now but
		// may be resolved later, FileVault (critical) blocks once its grace
		// ends, the firewall only warns, the screen lock is recommended.
		denied("denied_rollout", Denied{
			Reason: reason.PolicyFailed, DeviceName: "Bob's MacBook Pro", Username: "bob@example.com", LastChecked: now.Add(-2 * time.Minute), Now: now,
			Failing: []Finding{
				inGrace(example("filevault", "FAIL"), time.Date(2026, 12, 10, 1, 48, 0, 0, time.UTC)),
				warning(example("firewall", "FAIL")),
				skippable(example("macos-version", "FAIL")),
			},
			Advisory:    []Finding{example("screen-lock", "FAIL")},
			RetryAction: retryPath, RetryToken: retryToken, SupportID: "1049",
			ResolveLaterAction: "/saml/sso/resolve-later", ResolveLaterPeriod: 7 * 24 * time.Hour,
			PageShown: "G0dGvXh1M3n6QyfZ2cUq",
		}),
		denied("denied_resolve_later", Denied{
			Reason: reason.PolicyFailed, DeviceName: "Robin's MacBook Air", Username: "robin@example.com", LastChecked: now.Add(-3 * 24 * time.Hour), Now: now,
			Failing:     []Finding{skippable(screenLock)},
			RetryAction: retryPath, RetryToken: retryToken, SupportID: "1047",
			ResolveLaterAction: "/saml/sso/resolve-later", ResolveLaterPeriod: 7 * 24 * time.Hour,
		}),
		denied("denied_lookalike", Denied{
			Reason: reason.PolicyFailed, DeviceName: "Robin's MacBook Air", Username: "r\u043ebin@example.com", LastChecked: now.Add(-time.Hour), Now: now,
			Failing:     []Finding{skippable(screenLock)},
			RetryAction: retryPath, RetryToken: retryToken, SupportID: "1048",
			ResolveLaterAction: "/saml/sso/resolve-later", ResolveLaterPeriod: 7 * 24 * time.Hour,
		}),
		denied("denied_no_cert", Denied{
			Kind: KindNoCert, Reason: "no_certificate", Now: now, SupportID: "D-NOCERT",
		}),
		denied("denied_unknown_device", Denied{
			Kind: KindUnknownDevice, Reason: "unknown_device",
			Message: "This Mac isn't set up for secure sign-in. Ask your IT team to set it up.",
			Now:     now, SupportID: "D-UNKNOWN",
		}),
		denied("denied_offline", Denied{
			Reason: reason.StalePosture, LiveCheck: decision.LiveCheckOffline,
			DeviceName: "studio-mac-07", LastChecked: now.Add(-26 * time.Hour), Now: now,
			RetryAction: retryPath, RetryToken: retryToken, SupportID: "D-OFFLINE",
		}),
		denied("denied_offline_never", Denied{
			Kind: KindOffline, Reason: "no_report",
			DeviceName: "studio-mac-08", Now: now, SupportID: "D-NEVER",
		}),
		denied("denied_revoked", Denied{
			Kind: KindRevoked, Reason: "device_revoked",
			Message:    "This Mac is no longer allowed to sign in. Contact your IT team.",
			DeviceName: "old-mac", LastChecked: checked, Now: now, SupportID: "D-REVOKED",
		}),
		denied("denied_generic", Denied{
			Kind: KindGeneric, Reason: "clock_skew",
			Message:    "This Mac's clock is set ahead. In System Settings, turn on setting the date and time automatically, then choose Check again.",
			DeviceName: "fast-clock", LastChecked: now.Add(20 * time.Minute), Now: now,
			RetryAction: retryPath, RetryToken: retryToken, SupportID: "D-SKEW",
		}),
		{"agent_missing", http.StatusOK, func(r *Renderer, w http.ResponseWriter) {
			r.AgentMissing(w, http.StatusOK, AgentMissing{
				TryAgainURL: "http://127.0.0.1:47470/v1/presence?challenge=abc", SupportID: "r-5f2c9a01d3e4", Now: now,
			})
		}},
		{"refused", http.StatusBadRequest, func(r *Renderer, w http.ResponseWriter) {
			r.Refused(w, http.StatusBadRequest, Refused{
				Reason: reason.StaleRequest, SupportID: "R-42",
			})
		}},
		{"post", http.StatusOK, func(r *Renderer, w http.ResponseWriter) {
			if err := r.Post(w, Post{
				ACSURL:       "https://example.okta.com/sso/saml2/0oa1abcd2EFGH3ijk4l5",
				SAMLResponse: "PHNhbWxwOlJlc3BvbnNlIC8+",
				RelayState:   "okta-relay-state+/=",
			}); err != nil {
				panic(err)
			}
		}},
	}
}

func TestHeaders(t *testing.T) {
	t.Parallel()
	for _, p := range renderPages(t) {
		res := p.rec.Result()
		if res.StatusCode != p.status {
			t.Errorf("%s: status %d, want %d", p.name, res.StatusCode, p.status)
		}
		for k, v := range map[string]string{
			"Content-Type":           "text/html; charset=utf-8",
			"X-Content-Type-Options": "nosniff",
			"Referrer-Policy":        "no-referrer",
			"Cache-Control":          "no-store",
			"X-Frame-Options":        "DENY",
		} {
			if got := res.Header.Get(k); got != v {
				t.Errorf("%s: %s = %q, want %q", p.name, k, got, v)
			}
		}
		csp := parseCSP(t, res.Header.Get("Content-Security-Policy"))
		for k, v := range map[string]string{
			"default-src":     "'none'",
			"img-src":         "'none'",
			"base-uri":        "'none'",
			"frame-ancestors": "'none'",
		} {
			if csp[k] != v {
				t.Errorf("%s: CSP %s = %q, want %q", p.name, k, csp[k], v)
			}
		}
		if !strings.HasPrefix(csp["style-src"], "'sha256-") || strings.Contains(csp["style-src"], " ") {
			t.Errorf("%s: CSP style-src = %q, want one hash", p.name, csp["style-src"])
		}
		wantAction := map[string]string{
			"denied_policy": "'self'", "denied_mixed": "'self'", "denied_unchecked": "'self'", "denied_partial": "'self'",
			"denied_offline": "'self'", "denied_generic": "'self'", "denied_warn": "'self'", "denied_rollout": "'self'", "denied_resolve_later": "'self'", "denied_lookalike": "'self'",
			"post": "https:",
		}[p.name]
		if wantAction == "" {
			wantAction = "'none'"
		}
		if csp["form-action"] != wantAction {
			t.Errorf("%s: CSP form-action = %q, want %q", p.name, csp["form-action"], wantAction)
		}
		_, hasScript := csp["script-src"]
		if hasScript != (p.name == "post") {
			t.Errorf("%s: CSP script-src = %q; only the post page may run a script", p.name, csp["script-src"])
		}
	}
}

// TestCSPHashesMatchInline checks that the hashes in the CSP are those of
// the exact bytes inlined in each page, so that browsers run the script and
// apply the stylesheet.
func TestCSPHashesMatchInline(t *testing.T) {
	t.Parallel()
	for _, p := range renderPages(t) {
		csp := parseCSP(t, p.rec.Header().Get("Content-Security-Policy"))
		doc := parse(t, p.rec.Body.String())
		for _, el := range []string{"style", "script"} {
			nodes := findAll(doc, el)
			if el == "script" && p.name != "post" {
				if len(nodes) != 0 {
					t.Errorf("%s: has %d <script> elements, want none", p.name, len(nodes))
				}
				continue
			}
			if len(nodes) != 1 {
				t.Fatalf("%s: %d <%s> elements, want 1", p.name, len(nodes), el)
			}
			sum := sha256.Sum256([]byte(text(nodes[0])))
			want := "'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"
			if got := csp[el+"-src"]; got != want {
				t.Errorf("%s: CSP %s-src = %q, want %q (hash of the inline bytes)", p.name, el, got, want)
			}
		}
	}
}

func TestNoExternalResources(t *testing.T) {
	t.Parallel()
	const acs = "https://example.okta.com/sso/saml2/0oa1abcd2EFGH3ijk4l5"
	for _, p := range renderPages(t) {
		body := p.rec.Body.String()
		const tryAgain = "http://127.0.0.1:47470/v1/presence?challenge=abc"
		if strings.Contains(strings.NewReplacer(acs, "", tryAgain, "").Replace(body), "http") {
			t.Errorf("%s: page mentions a URL other than the ACS URL or the agent's", p.name)
		}
		walk(parse(t, body), func(n *html.Node) {
			switch n.Data {
			case "link", "img", "iframe", "object", "embed", "base":
				t.Errorf("%s: has a <%s> element", p.name, n.Data)
			}
			for _, a := range n.Attr {
				switch a.Key {
				case "href":
					if a.Val != tryAgain {
						t.Errorf("%s: <%s href=%q> links somewhere but the agent", p.name, n.Data, a.Val)
					}
				case "src", "srcset", "poster", "formaction":
					t.Errorf("%s: <%s %s=%q> loads or links something", p.name, n.Data, a.Key, a.Val)
				case "action":
					if a.Val != acs && !strings.HasPrefix(a.Val, "/saml/") {
						t.Errorf("%s: form action %q", p.name, a.Val)
					}
				case "style":
					t.Errorf("%s: inline style attribute (blocked by the CSP)", p.name)
				}
				if strings.HasPrefix(a.Key, "on") {
					t.Errorf("%s: event handler attribute %s (blocked by the CSP)", p.name, a.Key)
				}
			}
		})
	}
}

// TestAccessible checks the structure assistive technology relies on.
func TestAccessible(t *testing.T) {
	t.Parallel()
	for _, p := range renderPages(t) {
		doc := parse(t, p.rec.Body.String())
		if h := findAll(doc, "html"); len(h) != 1 || attr(h[0], "lang") != "en" {
			t.Errorf("%s: <html> has no lang=en", p.name)
		}
		if n := len(findAll(doc, "h1")); n != 1 {
			t.Errorf("%s: %d <h1>, want 1", p.name, n)
		}
		if n := len(findAll(doc, "main")); n != 1 {
			t.Errorf("%s: %d <main>, want 1", p.name, n)
		}
		if ts := findAll(doc, "title"); len(ts) != 1 || strings.TrimSpace(text(ts[0])) == "" {
			t.Errorf("%s: no <title>", p.name)
		}
		var viewport, live bool
		walk(doc, func(n *html.Node) {
			if n.Data == "meta" && attr(n, "name") == "viewport" {
				viewport = true
			}
			if role := attr(n, "role"); role == "alert" || role == "status" {
				live = true
			}
		})
		if !viewport || !live {
			t.Errorf("%s: viewport meta %v, role=alert/status %v", p.name, viewport, live)
		}
		for _, b := range findAll(doc, "button") {
			if attr(b, "type") != "submit" || strings.TrimSpace(text(b)) == "" {
				t.Errorf("%s: button without type=submit or text", p.name)
			}
		}
		for _, svg := range findAll(doc, "svg") {
			if attr(svg, "aria-hidden") != "true" {
				t.Errorf("%s: decorative <svg> not aria-hidden", p.name)
			}
		}
	}
}

func TestEscapesHostileStrings(t *testing.T) {
	t.Parallel()
	r := newRenderer(t)
	const (
		script = `<script>alert(1)</script>`
		attrX  = `"><img src=x onerror=alert(1)>`
		quote  = `' onmouseover='alert(1)`
	)
	hostile := Finding{
		Name: script, UserText: attrX + "\n1. " + script, Resolution: script + "\n" + attrX + "\n1. " + quote + "\n   - " + script,
		Status: "FAIL", Critical: true,
	}
	unchecked := hostile
	unchecked.Status = "ERROR"
	rec := httptest.NewRecorder()
	r.Denied(rec, http.StatusForbidden, Denied{
		Kind: KindPolicy, Reason: attrX, Message: script, DeviceName: quote + attrX, Username: script + attrX,
		LastChecked: checked, Now: now,
		Failing: []Finding{hostile, unchecked}, Advisory: []Finding{hostile}, NowPassing: []string{script, attrX},
		RetryAction: "/saml/sso/retry?x=" + quote, RetryToken: attrX + quote, SupportID: script,
	})
	checkInert(t, "denied", rec.Body.String(), 0)
	if !strings.Contains(rec.Body.String(), "&lt;script&gt;alert(1)&lt;/script&gt;") {
		t.Error("hostile text is not shown escaped")
	}
	doc := parse(t, rec.Body.String())
	for _, in := range findAll(doc, "input") {
		if attr(in, "name") == "token" && attr(in, "value") != attrX+quote {
			t.Errorf("token round-trips as %q", attr(in, "value"))
		}
	}

	rec = httptest.NewRecorder()
	r.Refused(rec, http.StatusBadRequest, Refused{Reason: attrX, Title: script, Message: quote + script, SupportID: attrX})
	checkInert(t, "refused", rec.Body.String(), 0)

	rec = httptest.NewRecorder()
	samlResponse, relay := attrX+script, quote+attrX
	if err := r.Post(rec, Post{ACSURL: "https://sp.example/acs?a=1&b=\"><script>", SAMLResponse: samlResponse, RelayState: relay}); err != nil {
		t.Fatalf("Post: %v", err)
	}
	checkInert(t, "post", rec.Body.String(), 1)
	doc = parse(t, rec.Body.String())
	got := map[string]string{}
	for _, in := range findAll(doc, "input") {
		got[attr(in, "name")] = attr(in, "value")
	}
	if got["SAMLResponse"] != samlResponse || got["RelayState"] != relay {
		t.Errorf("form values = %q, want SAMLResponse %q and RelayState %q", got, samlResponse, relay)
	}
}

// A username that would reorder the text around it is shown with its
// controls written out, on the page's line and in Resolve later's hint:
// it cannot be made to read as another's.
func TestUsernameCannotPassForAnother(t *testing.T) {
	t.Parallel()
	r := newRenderer(t)
	const spoof = "\u202emoc.elpmaxe@nibor\u202c"
	rec := httptest.NewRecorder()
	r.Denied(rec, http.StatusForbidden, Denied{
		Reason: reason.PolicyFailed, DeviceName: "Robin's MacBook Air", Username: spoof, Now: now,
		Failing: []Finding{screenLock}, RetryAction: retryPath, RetryToken: retryToken,
		ResolveLaterAction: "/saml/sso/resolve-later", ResolveLaterPeriod: 7 * 24 * time.Hour,
	})
	body := rec.Body.String()
	if strings.ContainsAny(body, "\u202e\u202c") {
		t.Error("the page holds the username's bidirectional controls as they are")
	}
	for _, want := range []string{`<bdi>\u202emoc.elpmaxe@nibor\u202c</bdi>`, `signs \u202emoc.elpmaxe@nibor\u202c in this once`} {
		if !strings.Contains(body, want) {
			t.Errorf("the page does not show %q", want)
		}
	}
	// A username that draws as another's is marked, and spelled out.
	for username, want := range map[string]string{
		"r\u043ebin@example.com":     `It mixes Cyrillic and Latin letters, which can look the same. Spelled out: <code>r\u043ebin@example.com</code>`,
		"r\U0001d428bin@example.com": `Some of its characters only look like plain letters or punctuation. Spelled out: <code>r\U0001d428bin@example.com</code>`,
		"\u0430\u03bfb@example.com":  `It mixes Cyrillic, Greek and Latin letters`,
		"\u0430\u0440\u0440\u04cf\u0435@\u0435\u0445\u0430\u0441.\u0441\u043e":       `Some of its characters only look like plain letters or punctuation. Spelled out: <code>\u0430\u0440\u0440\u04cf\u0435@\u0435\u0445\u0430\u0441.\u0441\u043e</code>`,
		"\u0438\u0432\u0430\u043d@\u043f\u0440\u0438\u043c\u0435\u0440.\u0440\u0444": "",
		"\uff52obin@example.com":        `It has characters that read as plain ones but are not: a wide, styled, small capital or decomposed letter, a mark, or punctuation. Spelled out: <code>\uff52obin@example.com</code>`,
		"robin@example.c\u1d0f\u1d0d":   `It has characters that read as plain ones but are not: a wide, styled, small capital or decomposed letter, a mark, or punctuation. Spelled out: <code>robin@example.c\u1d0f\u1d0d</code>`,
		"robin@example.com":             "",
		"\u738b\u5c0f\u660e@example.cn": "",
	} {
		rec := httptest.NewRecorder()
		r.Denied(rec, http.StatusForbidden, Denied{Reason: reason.PolicyFailed, Username: username, Now: now})
		body := rec.Body.String()
		if want == "" {
			if strings.Contains(body, "Look closely") {
				t.Errorf("%q is marked as a look-alike", username)
			}
		} else if !strings.Contains(body, want) {
			t.Errorf("%q: the page does not say %q", username, want)
		}
	}
	// A character drawn as nothing is written out too.
	rec = httptest.NewRecorder()
	r.Denied(rec, http.StatusForbidden, Denied{Reason: reason.PolicyFailed, Username: "robin\u034f@example.com", Now: now})
	if body := rec.Body.String(); !strings.Contains(body, `<bdi>robin\u034f@example.com</bdi>`) {
		t.Error("the page shows a combining grapheme joiner in the username as it is")
	}
}

// checkInert fails if the page has any script but its own scripts, any
// injected element or any event handler.
func checkInert(t *testing.T, name, body string, scripts int) {
	t.Helper()
	doc := parse(t, body)
	if n := len(findAll(doc, "script")); n != scripts {
		t.Errorf("%s: %d <script> elements, want %d", name, n, scripts)
	}
	if n := len(findAll(doc, "img")); n != 0 {
		t.Errorf("%s: injected <img>", name)
	}
	walk(doc, func(n *html.Node) {
		for _, a := range n.Attr {
			if strings.HasPrefix(a.Key, "on") {
				t.Errorf("%s: injected attribute %s=%q on <%s>", name, a.Key, a.Val, n.Data)
			}
		}
	})
}

func TestPostRefusesUnsafeACS(t *testing.T) {
	t.Parallel()
	r := newRenderer(t)
	for _, acs := range []string{
		"javascript:alert(1)",
		"JavaScript:alert(document.cookie)",
		" javascript:alert(1)",
		"data:text/html,<script>alert(1)</script>",
		"http://example.okta.com/sso/saml2/x",
		"//evil.example/acs",
		"/relative/acs",
		"https://",
		"https:///path",
		"https://user:pass@example.okta.com/acs",
		"https://example.okta.com/acs\\@evil.example",
		"",
	} {
		rec := httptest.NewRecorder()
		err := r.Post(rec, Post{ACSURL: acs, SAMLResponse: "U0VDUkVUQVNTRVJUSU9O", RelayState: "relay"})
		if !errors.Is(err, ErrUnsafeACSURL) {
			t.Errorf("Post(%q) = %v, want ErrUnsafeACSURL", acs, err)
		}
		body := rec.Body.String()
		if rec.Code != http.StatusInternalServerError {
			t.Errorf("Post(%q): status %d, want 500", acs, rec.Code)
		}
		if strings.Contains(body, "U0VDUkVUQVNTRVJUSU9O") || strings.Contains(body, "<form") || strings.Contains(body, "<script") {
			t.Errorf("Post(%q): refusal page carries the response or a form:\n%s", acs, body)
		}
		if !strings.Contains(body, "invalid_acs_url") {
			t.Errorf("Post(%q): refusal page lacks its reason", acs)
		}
		if csp := parseCSP(t, rec.Header().Get("Content-Security-Policy")); csp["form-action"] != "'none'" {
			t.Errorf("Post(%q): CSP form-action %q", acs, csp["form-action"])
		}
	}
}

func TestPostForm(t *testing.T) {
	t.Parallel()
	r := newRenderer(t)
	const acs = "https://example.okta.com/sso/saml2/0oa1?x=1&y=2"
	for _, relay := range []string{"", "state"} {
		rec := httptest.NewRecorder()
		if err := r.Post(rec, Post{ACSURL: acs, SAMLResponse: "PHNhbWw+", RelayState: relay}); err != nil {
			t.Fatal(err)
		}
		doc := parse(t, rec.Body.String())
		forms := findAll(doc, "form")
		if len(forms) != 1 {
			t.Fatalf("%d forms, want 1", len(forms))
		}
		f := forms[0]
		if attr(f, "method") != "post" || attr(f, "action") != acs || attr(f, "id") != "saml-post" {
			t.Errorf("form method=%q action=%q id=%q", attr(f, "method"), attr(f, "action"), attr(f, "id"))
		}
		names := map[string]string{}
		for _, in := range findAll(f, "input") {
			if attr(in, "type") != "hidden" {
				t.Errorf("input %q is not hidden", attr(in, "name"))
			}
			names[attr(in, "name")] = attr(in, "value")
		}
		if names["SAMLResponse"] != "PHNhbWw+" {
			t.Errorf("SAMLResponse = %q", names["SAMLResponse"])
		}
		if v, ok := names["RelayState"]; ok != (relay != "") || v != relay {
			t.Errorf("RelayState = %q (present %v), want %q", v, ok, relay)
		}
		if b := findAll(f, "button"); len(b) != 1 || strings.TrimSpace(text(b[0])) != "Continue" {
			t.Error("no Continue button in the form")
		}
		// The script submits the form, and is the embedded one.
		if s := findAll(doc, "script"); len(s) != 1 || text(s[0]) != autosubmitJS || !strings.Contains(autosubmitJS, `getElementById("saml-post").submit()`) {
			t.Error("auto-submit script missing or not the embedded one")
		}
		csp := parseCSP(t, rec.Header().Get("Content-Security-Policy"))
		if csp["form-action"] != "https:" {
			t.Errorf("CSP form-action %q does not allow the ACS origin and its redirects", csp["form-action"])
		}
	}
}

func TestRetryButton(t *testing.T) {
	t.Parallel()
	r := newRenderer(t)
	for _, tc := range []struct {
		action     string
		button     bool
		formAction string
	}{
		{"/saml/sso/retry", true, "'self'"},
		{"/saml/sso/retry?session=a%20b", true, "'self'"},
		{"https://sso.example.com/saml/sso/retry", true, "https://sso.example.com"},
		{"https://sso.example.com:8443/retry", true, "https://sso.example.com:8443"},
		{"", false, "'none'"},
		{"javascript:alert(1)", false, "'none'"},
		{"http://sso.example.com/retry", false, "'none'"},
		{"//evil.example/retry", false, "'none'"},
		{"/\\evil.example/retry", false, "'none'"},
		{"retry", false, "'none'"},
	} {
		rec := httptest.NewRecorder()
		r.Denied(rec, http.StatusForbidden, Denied{Kind: KindOffline, RetryAction: tc.action, RetryToken: "t0k"})
		doc := parse(t, rec.Body.String())
		forms := findAll(doc, "form")
		if got := len(forms) == 1; got != tc.button {
			t.Errorf("action %q: button shown %v, want %v", tc.action, got, tc.button)
		}
		body := rec.Body.String()
		if tc.button {
			f := forms[0]
			if attr(f, "method") != "post" || attr(f, "action") != tc.action {
				t.Errorf("action %q: form method=%q action=%q", tc.action, attr(f, "method"), attr(f, "action"))
			}
			in := findAll(f, "input")
			if len(in) != 1 || attr(in[0], "name") != "token" || attr(in[0], "type") != "hidden" || attr(in[0], "value") != "t0k" {
				t.Errorf("action %q: token input wrong", tc.action)
			}
			if !strings.Contains(body, "Check again") || !strings.Contains(body, "continues signing you in if everything passes") {
				t.Errorf("action %q: button or its explanation missing", tc.action)
			}
		} else if strings.Contains(body, "Check again") {
			t.Errorf("action %q: page points at a Check again button it doesn't have", tc.action)
		}
		if csp := parseCSP(t, rec.Header().Get("Content-Security-Policy")); csp["form-action"] != tc.formAction {
			t.Errorf("action %q: CSP form-action %q, want %q", tc.action, csp["form-action"], tc.formAction)
		}
	}
}

// A resolution's numbered steps are a real ordered list, their wrapped
// lines joined; the text around them stays paragraphs.
func TestResolutionSteps(t *testing.T) {
	t.Parallel()
	r := newRenderer(t)
	rec := httptest.NewRecorder()
	r.Denied(rec, http.StatusForbidden, Denied{Kind: KindPolicy, Failing: []Finding{{
		Name: "FileVault", Status: "FAIL",
		Resolution: "Before you start:\r\nsave your work.\n1. Open <System Settings>.\n2. Choose your recovery key. If unsure, ask your IT\n   team which one.\n\n3. Turn it on:\n   - on a laptop, plug it in\n   - then wait\n\nAfterwards: wait.  \n",
	}}})
	doc := parse(t, rec.Body.String())
	var fix *html.Node
	walk(doc, func(n *html.Node) {
		if n.Data == "div" && attr(n, "class") == "fix" {
			fix = n
		}
	})
	if fix == nil {
		t.Fatal("no resolution block")
	}
	var got []string
	for c := fix.FirstChild; c != nil; c = c.NextSibling {
		if c.Type != html.ElementNode || c.Data == "h4" {
			continue
		}
		switch c.Data {
		case "p":
			got = append(got, "p: "+text(c))
		case "ol":
			for li := c.FirstChild; li != nil; li = li.NextSibling {
				if li.Type == html.ElementNode {
					got = append(got, "li: "+text(li))
				}
			}
		default:
			got = append(got, c.Data)
		}
	}
	want := []string{
		"p: Before you start: save your work.",
		"li: Open <System Settings>.",
		"li: Choose your recovery key. If unsure, ask your IT team which one.",
		"li: Turn it on:on a laptop, plug it inthen wait",
		"p: Afterwards: wait.",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("resolution renders as\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if n := len(findAll(fix, "ol")); n != 1 {
		t.Errorf("%d ordered lists, want the 3 steps in one", n)
	}
	if n := len(findAll(fix, "br")); n != 0 {
		t.Errorf("%d line breaks: wrapped lines should join", n)
	}
	if !strings.Contains(rec.Body.String(), "Open &lt;System Settings&gt;.") {
		t.Error("step text is not escaped")
	}
}

// Only what a person can fix is listed with its fix; checks that could not
// run are named once, and a policy's description and osquery's messages
// never reach the page.
func TestFindings(t *testing.T) {
	t.Parallel()
	r := newRenderer(t)
	rec := httptest.NewRecorder()
	errored := firewall
	missing := Finding{Name: "OS is up to date", Status: "MISSING", Resolution: "Install every update."}
	advisoryError := Finding{Name: "Bluetooth sharing is off", Status: "ERROR", Resolution: "Turn it off."}
	r.Denied(rec, http.StatusForbidden, Denied{
		Kind:     KindPolicy,
		Failing:  []Finding{fileVault, errored, missing, {Name: "Passing one", Status: "PASS"}},
		Advisory: []Finding{screenLock, advisoryError},
	})
	doc := parse(t, rec.Body.String())
	var items []*html.Node
	for _, ul := range findAll(doc, "ul") {
		if strings.HasPrefix(attr(ul, "class"), "findings") {
			for li := ul.FirstChild; li != nil; li = li.NextSibling {
				if li.Type == html.ElementNode {
					items = append(items, li)
				}
			}
		}
	}
	if len(items) != 2 {
		t.Fatalf("%d findings shown, want FileVault and the screen lock", len(items))
	}
	for i, want := range []struct{ class, badge, status, about string }{
		{"critical", "Blocks sign-in now, cannot be skipped", "Not met on this Mac", "unreadable to anyone"},
		{"", "Recommended", "Not met on this Mac", "keeps others out"},
	} {
		li := items[i]
		if attr(li, "class") != want.class {
			t.Errorf("finding %d: class %q, want %q", i, attr(li, "class"), want.class)
		}
		for _, w := range []string{want.badge, want.status, want.about} {
			if !strings.Contains(text(li), w) {
				t.Errorf("finding %d: %q lacks %q", i, text(li), w)
			}
		}
	}
	body := rec.Body.String()
	if !strings.Contains(body, "Fix this item") {
		t.Error("heading does not count the one item to fix")
	}
	var unchecked *html.Node
	walk(doc, func(n *html.Node) {
		if attr(n, "class") == "unchecked" {
			unchecked = n
		}
	})
	if unchecked == nil {
		t.Fatal("no note of the checks that couldn't run")
	}
	if got := text(findAll(unchecked, "ul")[0]); !strings.Contains(got, "Firewall is on") || !strings.Contains(got, "OS is up to date") || strings.Contains(got, "Bluetooth") {
		t.Errorf("couldn't be checked: %q", got)
	}
	for _, never := range []string{firewall.Resolution, missing.Resolution, advisoryError.Resolution, "Passing one", "Details"} {
		if strings.Contains(body, never) {
			t.Errorf("page shows %q", never)
		}
	}
}

// When nothing fails and some checks couldn't run, the page is one item
// that says so, whatever the reason the caller passed.
func TestUnchecked(t *testing.T) {
	t.Parallel()
	r := newRenderer(t)
	sip := example("sip", "ERROR")
	for name, d := range map[string]Denied{
		"policy_error":   {Reason: reason.PolicyError, Failing: []Finding{firewall, sip}},
		"policy_missing": {Reason: reason.PolicyMissing, Failing: []Finding{{Name: "New check", Status: "MISSING"}}},
		"kind policy":    {Kind: KindPolicy, Reason: reason.PolicyFailed, Failing: []Finding{firewall, sip}, Advisory: []Finding{screenLock}},
	} {
		d.RetryAction, d.RetryToken = "/saml/sso/retry", "t"
		rec := httptest.NewRecorder()
		r.Denied(rec, http.StatusForbidden, d)
		doc := parse(t, rec.Body.String())
		if h := text(findAll(doc, "h1")[0]); h != "Clearance couldn't check this Mac" {
			t.Errorf("%s: heading %q", name, h)
		}
		body := text(findAll(doc, "main")[0])
		for _, never := range []string{"Fix th", "How to fix it", "Recovery", "Firewall", "Recommended"} {
			if strings.Contains(body, never) {
				t.Errorf("%s: page says %q:\n%s", name, never, body)
			}
		}
		for _, want := range []string{"restart the Mac", "choose Check again", "contact your IT team"} {
			if !strings.Contains(body, want) {
				t.Errorf("%s: page lacks %q:\n%s", name, want, body)
			}
		}
	}
}

// After a partial fix the page says what now passes, above what still
// needs fixing.
func TestNowPassing(t *testing.T) {
	t.Parallel()
	r := newRenderer(t)
	rec := httptest.NewRecorder()
	r.Denied(rec, http.StatusForbidden, Denied{
		Reason: reason.PolicyFailed, NowPassing: []string{"Firewall is on"}, Failing: []Finding{fileVault},
	})
	body := rec.Body.String()
	passing, fix := strings.Index(body, "Now passing"), strings.Index(body, "Fix this item")
	if passing < 0 || fix < 0 || passing > fix {
		t.Fatalf("Now passing at %d, the fix at %d:\n%s", passing, fix, body)
	}
	doc := parse(t, body)
	var section *html.Node
	walk(doc, func(n *html.Node) {
		if attr(n, "class") == "passing" {
			section = n
		}
	})
	if section == nil || strings.TrimSpace(text(findAll(section, "ul")[0])) != "Firewall is on" {
		t.Errorf("Now passing section wrong:\n%s", body)
	}
	if !strings.Contains(body, msgPartialFix) {
		t.Error("main line doesn't acknowledge the fix")
	}
	rec = httptest.NewRecorder()
	r.Denied(rec, http.StatusForbidden, Denied{Reason: reason.PolicyFailed, Failing: []Finding{fileVault}})
	if strings.Contains(rec.Body.String(), "Now passing") || strings.Contains(rec.Body.String(), msgPartialFix) {
		t.Error("a first denial says something now passes")
	}
}

// The shipped examples read as a person at a Mac should read them: no
// osquery tables, columns or versions, and every resolution with steps.
func TestExamplesArePlain(t *testing.T) {
	t.Parallel()
	jargon := []string{"osquery", "SELECT", "_", "table", "column", "row", "query", "policy"}
	for _, p := range examples().Policies {
		for field, s := range map[string]string{"user_text": p.UserText, "resolution": p.Resolution} {
			if s == "" {
				t.Errorf("%s: no %s", p.ID, field)
			}
			for _, w := range jargon {
				if strings.Contains(s, w) {
					t.Errorf("%s: %s mentions %q", p.ID, field, w)
				}
			}
		}
		bs := parseText(p.Resolution)
		ordered := false
		for _, b := range bs {
			ordered = ordered || b.Ordered && len(b.Items) > 1
			for _, it := range b.Items {
				if strings.Contains(it.Text, "  ") {
					t.Errorf("%s: step %q keeps a wrapped line's indentation", p.ID, it.Text)
				}
			}
		}
		if !ordered {
			t.Errorf("%s: resolution has no numbered steps: %+v", p.ID, bs)
		}
	}
}

func TestLastChecked(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		at, now time.Time
		want    string
	}{
		{now.Add(-10 * time.Second), now, "less than a minute ago"},
		{now.Add(-time.Minute), now, "1 minute ago"},
		{now.Add(-3*time.Minute - 59*time.Second), now, "3 minutes ago"},
		{now.Add(-time.Hour), now, "1 hour ago"},
		{now.Add(-47 * time.Hour), now, "47 hours ago"},
		{now.Add(-72 * time.Hour), now, "3 days ago"},
		{now.Add(time.Minute), now, ""},
		{now, time.Time{}, ""},
	} {
		if got := ago(tc.at, tc.now); got != tc.want {
			t.Errorf("ago(%v, %v) = %q, want %q", tc.at, tc.now, got, tc.want)
		}
	}

	r := newRenderer(t)
	rec := httptest.NewRecorder()
	r.Denied(rec, http.StatusForbidden, Denied{Kind: KindOffline, DeviceName: "mac", LastChecked: checked.In(time.FixedZone("PST", -8*3600)), Now: now})
	if want := `3 minutes ago (<time datetime="2025-03-14T09:37:45Z">14 Mar 2025, 09:37 UTC</time>)`; !strings.Contains(rec.Body.String(), want) {
		t.Errorf("page lacks %q", want)
	}
	rec = httptest.NewRecorder()
	r.Denied(rec, http.StatusForbidden, Denied{Kind: KindOffline, DeviceName: "mac", Now: now})
	if !strings.Contains(rec.Body.String(), "<strong>Last checked:</strong> not yet") {
		t.Error("a Mac never checked is not said to be")
	}
}

func TestKinds(t *testing.T) {
	t.Parallel()
	r := newRenderer(t)
	titles := map[string]Kind{}
	for _, k := range []Kind{KindPolicy, KindUnchecked, KindNoCert, KindUnknownDevice, KindOffline, KindRevoked, KindGeneric, "no_such_kind"} {
		rec := httptest.NewRecorder()
		r.Denied(rec, http.StatusForbidden, Denied{Kind: k})
		doc := parse(t, rec.Body.String())
		title := text(findAll(doc, "title")[0])
		lead := ""
		walk(doc, func(n *html.Node) {
			if attr(n, "role") == "alert" {
				lead = strings.TrimSpace(text(n))
			}
		})
		if lead == "" {
			t.Errorf("kind %q: no main message", k)
		}
		if k == "no_such_kind" {
			if titles[title] != KindGeneric {
				t.Errorf("unknown kind shows %q, not the generic page", title)
			}
			continue
		}
		if prev, dup := titles[title]; dup {
			t.Errorf("kinds %q and %q share the title %q", prev, k, title)
		}
		titles[title] = k
	}

	for code, want := range map[reason.Code]Kind{
		reason.PolicyFailed:   KindPolicy,
		reason.PolicyError:    KindUnchecked,
		reason.PolicyMissing:  KindUnchecked,
		reason.UnknownDevice:  KindUnknownDevice,
		reason.DeviceRevoked:  KindRevoked,
		reason.NoReport:       KindOffline,
		reason.StalePosture:   KindOffline,
		reason.ClockSkew:      KindGeneric,
		reason.NoPolicies:     KindGeneric,
		reason.DeviceMismatch: KindGeneric,
	} {
		if got := KindFor(code, decision.LiveCheckNone); got != want {
			t.Errorf("KindFor(%q) = %q, want %q", code, got, want)
		}
	}
	if got := KindFor(reason.ClockSkew, decision.LiveCheckOffline); got != KindOffline {
		t.Errorf("KindFor(clock_skew, offline) = %q, want the offline page", got)
	}
	fs := Findings([]decision.Finding{{Name: "n", Description: "d", UserText: "u", Status: decision.StatusError, Message: "m", Resolution: "r", Critical: true}})
	if len(fs) != 1 || fs[0] != (Finding{Name: "n", UserText: "u", Status: "ERROR", Resolution: "r", Critical: true}) {
		t.Errorf("Findings = %+v (the description and osquery's message stay behind)", fs)
	}
	// How the decision found each acts on the sign-in comes along.
	ends := now.Add(72 * time.Hour)
	fs = Findings([]decision.Finding{
		{Name: "grace", Status: decision.StatusFail, Enforcement: decision.Warn, GraceStarted: now, GraceEnds: ends, BlocksFrom: ends},
		{Name: "bypass", Status: decision.StatusFail, Enforcement: decision.Enforce, BypassOffered: true},
	})
	if len(fs) != 2 || fs[0].Enforcement != decision.Warn || !fs[0].BlocksFrom.Equal(ends) || fs[0].ResolveLater ||
		fs[1].Enforcement != decision.Enforce || !fs[1].BlocksFrom.IsZero() || !fs[1].ResolveLater {
		t.Errorf("Findings = %+v, want each one's enforcement, block time and Resolve later", fs)
	}
}

func parseCSP(t *testing.T, h string) map[string]string {
	t.Helper()
	if h == "" {
		t.Fatal("no Content-Security-Policy")
	}
	m := map[string]string{}
	for _, d := range strings.Split(h, ";") {
		name, value, _ := strings.Cut(strings.TrimSpace(d), " ")
		if _, dup := m[name]; dup {
			t.Errorf("CSP names %s twice", name)
		}
		m[name] = value
	}
	return m
}

func parse(t *testing.T, s string) *html.Node {
	t.Helper()
	doc, err := html.Parse(strings.NewReader(s))
	if err != nil {
		t.Fatal(err)
	}
	return doc
}

func walk(n *html.Node, f func(*html.Node)) {
	if n.Type == html.ElementNode {
		f(n)
	}
	for c := n.FirstChild; c != nil; c = c.NextSibling {
		walk(c, f)
	}
}

func findAll(n *html.Node, tag string) []*html.Node {
	var out []*html.Node
	walk(n, func(n *html.Node) {
		if n.Data == tag {
			out = append(out, n)
		}
	})
	return out
}

func attr(n *html.Node, key string) string {
	for _, a := range n.Attr {
		if a.Key == key {
			return a.Val
		}
	}
	return ""
}

func text(n *html.Node) string {
	var b strings.Builder
	var rec func(*html.Node)
	rec = func(n *html.Node) {
		if n.Type == html.TextNode {
			b.WriteString(n.Data)
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			rec(c)
		}
	}
	rec(n)
	return b.String()
}

func TestNotes(t *testing.T) {
	t.Parallel()
	r, err := New()
	if err != nil {
		t.Fatal(err)
	}
	note := "checked the <weaker> way"
	rec := httptest.NewRecorder()
	r.Denied(rec, 403, Denied{Kind: KindPolicy, Notes: []string{note}})
	if !strings.Contains(rec.Body.String(), "checked the &lt;weaker&gt; way") {
		t.Errorf("denied page lacks the note:\n%s", rec.Body.String())
	}
	rec = httptest.NewRecorder()
	if err := r.Post(rec, Post{ACSURL: "https://example.okta.com/sso/saml2/0oa1", SAMLResponse: "x", Notes: []string{note}}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(rec.Body.String(), "checked the &lt;weaker&gt; way") {
		t.Errorf("post page lacks the note:\n%s", rec.Body.String())
	}
}

// Every decision reason has its own plain-English line: no reason codes,
// enum names or protocol words; a failed live check changes the words for a
// Mac that could not be reached.
func TestMessagesArePlain(t *testing.T) {
	t.Parallel()
	jargon := []string{"_", "posture", "osquery", "SAML", "nonce", "report", "policy", "POLICY", "PASS", "FAIL", "ERROR", "device id", "cert"}
	seen := map[string]reason.Code{}
	for _, code := range decision.Precedence {
		for _, live := range []decision.LiveCheck{decision.LiveCheckNone, decision.LiveCheckAnswered, decision.LiveCheckTimedOut, decision.LiveCheckOffline} {
			m := Message(code, live)
			if m == "" {
				t.Errorf("%s (%s): no message", code, live)
			}
			for _, w := range jargon {
				if strings.Contains(m, w) {
					t.Errorf("%s (%s): message %q contains %q", code, live, m, w)
				}
			}
			if live == decision.LiveCheckNone {
				if prev, dup := seen[m]; dup && code != reason.DeviceMismatch && prev != reason.DeviceMismatch {
					t.Errorf("%s and %s share the message %q", prev, code, m)
				}
				seen[m] = code
			}
		}
	}
	if Message(reason.StalePosture, decision.LiveCheckOffline) == Message(reason.StalePosture, decision.LiveCheckNone) {
		t.Error("a stale Mac whose agent is offline is told the same as one that was not asked")
	}
}
