package web

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"flag"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/html"

	"github.com/clearance/clearance/verifier/decision"
	"github.com/clearance/clearance/verifier/reason"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

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

var fileVault = Finding{
	Name:        "FileVault is on",
	Description: "FileVault encrypts everything on this Mac's disk, so a lost Mac doesn't expose your work.",
	Resolution:  "Open System Settings.\nChoose Privacy & Security, then scroll to FileVault.\nChoose Turn On and follow the steps.\n\nEncryption continues in the background; you can keep working.",
	Status:      "FAIL",
	Critical:    true,
}

var firewall = Finding{
	Name:        "Firewall is on",
	Description: "The firewall blocks unwanted connections to this Mac.",
	Resolution:  "Open System Settings > Network > Firewall and turn it on.",
	Status:      "ERROR",
	Message:     "no such table: alf",
}

var screenLock = Finding{
	Name:        "Screen locks after 5 minutes",
	Description: "A locked screen keeps others out when you step away.",
	Resolution:  "Open System Settings > Lock Screen and set \"Require password after screen saver begins\" to 5 minutes or less.",
	Status:      "FAIL",
}

// pages is one of every page, as the golden files record them.
func pages() []struct {
	name   string
	render func(*Renderer, http.ResponseWriter)
} {
	denied := func(d Denied) func(*Renderer, http.ResponseWriter) {
		return func(r *Renderer, w http.ResponseWriter) { r.Denied(w, http.StatusForbidden, d) }
	}
	return []struct {
		name   string
		render func(*Renderer, http.ResponseWriter)
	}{
		{"denied_policy", denied(Denied{
			Kind: KindPolicy, Reason: "policy_failed",
			Message:    "This Mac doesn't meet your organization's security requirements. Fix the items below, then choose Check again.",
			DeviceName: "Alex's MacBook Pro", LastChecked: checked, Now: now,
			Failing:     []Finding{fileVault, firewall},
			Advisory:    []Finding{screenLock},
			RetryAction: "/saml/sso/retry", RetryToken: "tok-123", SupportID: "D-7QK2-93XF",
		})},
		{"denied_no_cert", denied(Denied{
			Kind: KindNoCert, Reason: "no_certificate", Now: now, SupportID: "D-NOCERT",
		})},
		{"denied_unknown_device", denied(Denied{
			Kind: KindUnknownDevice, Reason: "unknown_device",
			Message: "This Mac isn't set up for secure sign-in. Ask your IT team to set it up.",
			Now:     now, SupportID: "D-UNKNOWN",
		})},
		{"denied_offline", denied(Denied{
			Kind: KindOffline, Reason: "stale_posture",
			Message:    "This Mac's security check service isn't connected. Make sure the Mac is connected to the internet, wait a minute, then choose Check again. If it keeps happening, contact your IT team.",
			DeviceName: "studio-mac-07", LastChecked: now.Add(-26 * time.Hour), Now: now,
			RetryAction: "/saml/sso/retry", RetryToken: "tok-456", SupportID: "D-OFFLINE",
		})},
		{"denied_offline_never", denied(Denied{
			Kind: KindOffline, Reason: "no_report",
			DeviceName: "studio-mac-08", Now: now, SupportID: "D-NEVER",
		})},
		{"denied_revoked", denied(Denied{
			Kind: KindRevoked, Reason: "device_revoked",
			Message:    "This Mac is no longer allowed to sign in. Contact your IT team.",
			DeviceName: "old-mac", LastChecked: checked, Now: now, SupportID: "D-REVOKED",
		})},
		{"denied_generic", denied(Denied{
			Kind: KindGeneric, Reason: "clock_skew",
			Message:    "This Mac's clock is set ahead. In System Settings, turn on setting the date and time automatically, then choose Check again.",
			DeviceName: "fast-clock", LastChecked: now.Add(20 * time.Minute), Now: now,
			RetryAction: "/saml/sso/retry", RetryToken: "tok-789", SupportID: "D-SKEW",
		})},
		{"refused", func(r *Renderer, w http.ResponseWriter) {
			r.Refused(w, http.StatusBadRequest, Refused{
				Reason: reason.StaleRequest, SupportID: "R-42",
			})
		}},
		{"post", func(r *Renderer, w http.ResponseWriter) {
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

func TestGolden(t *testing.T) {
	r := newRenderer(t)
	for _, p := range pages() {
		t.Run(p.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			p.render(r, rec)
			got := rec.Body.Bytes()
			golden := filepath.Join("testdata", p.name+".html")
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("page differs from %s (run with -update if the change is intended)\n%s", golden, got)
			}
		})
	}
}

func TestHeaders(t *testing.T) {
	t.Parallel()
	r := newRenderer(t)
	wantStatus := map[string]int{"refused": http.StatusBadRequest, "post": http.StatusOK}
	for _, p := range pages() {
		rec := httptest.NewRecorder()
		p.render(r, rec)
		res := rec.Result()
		status := http.StatusForbidden
		if s, ok := wantStatus[p.name]; ok {
			status = s
		}
		if res.StatusCode != status {
			t.Errorf("%s: status %d, want %d", p.name, res.StatusCode, status)
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
			"denied_policy": "'self'", "denied_offline": "'self'", "denied_generic": "'self'",
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
	r := newRenderer(t)
	for _, p := range pages() {
		rec := httptest.NewRecorder()
		p.render(r, rec)
		csp := parseCSP(t, rec.Header().Get("Content-Security-Policy"))
		doc := parse(t, rec.Body.String())
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
	r := newRenderer(t)
	const acs = "https://example.okta.com/sso/saml2/0oa1abcd2EFGH3ijk4l5"
	for _, p := range pages() {
		rec := httptest.NewRecorder()
		p.render(r, rec)
		body := rec.Body.String()
		if strings.Contains(strings.ReplaceAll(body, acs, ""), "http") {
			t.Errorf("%s: page mentions a URL other than the ACS URL", p.name)
		}
		walk(parse(t, body), func(n *html.Node) {
			switch n.Data {
			case "link", "img", "iframe", "object", "embed", "base":
				t.Errorf("%s: has a <%s> element", p.name, n.Data)
			}
			for _, a := range n.Attr {
				switch a.Key {
				case "src", "href", "srcset", "poster", "formaction":
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
	r := newRenderer(t)
	for _, p := range pages() {
		rec := httptest.NewRecorder()
		p.render(r, rec)
		doc := parse(t, rec.Body.String())
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
		Name: script, Description: attrX, Resolution: script + "\n" + attrX, Status: "ERROR",
		Message: quote + script, Critical: true,
	}
	rec := httptest.NewRecorder()
	r.Denied(rec, http.StatusForbidden, Denied{
		Kind: KindPolicy, Reason: attrX, Message: script, DeviceName: quote + attrX,
		LastChecked: checked, Now: now,
		Failing: []Finding{hostile}, Advisory: []Finding{hostile},
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

func TestResolutionLines(t *testing.T) {
	t.Parallel()
	r := newRenderer(t)
	rec := httptest.NewRecorder()
	r.Denied(rec, http.StatusForbidden, Denied{Kind: KindPolicy, Failing: []Finding{{
		Name: "FileVault", Status: "FAIL",
		Resolution: "Step one.\r\nStep <two>.\n\n\n  Afterwards: wait.  \n",
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
	ps := findAll(fix, "p")
	if len(ps) != 2 {
		t.Fatalf("%d paragraphs, want 2", len(ps))
	}
	if got := text(ps[0]); got != "Step one.Step <two>." {
		t.Errorf("first paragraph text %q", got)
	}
	if n := len(findAll(ps[0], "br")); n != 1 {
		t.Errorf("first paragraph has %d line breaks, want 1", n)
	}
	if got := text(ps[1]); got != "Afterwards: wait." {
		t.Errorf("second paragraph text %q", got)
	}
}

func TestFindings(t *testing.T) {
	t.Parallel()
	r := newRenderer(t)
	rec := httptest.NewRecorder()
	r.Denied(rec, http.StatusForbidden, Denied{
		Kind:     KindPolicy,
		Failing:  []Finding{fileVault, firewall, {Name: "OS is up to date", Status: "MISSING"}},
		Advisory: []Finding{screenLock},
	})
	doc := parse(t, rec.Body.String())
	var items []*html.Node
	for _, ul := range findAll(doc, "ul") {
		items = append(items, findAll(ul, "li")...)
	}
	if len(items) != 4 {
		t.Fatalf("%d findings shown, want 4", len(items))
	}
	for i, want := range []struct{ class, badge, status string }{
		{"critical", "Required, cannot be skipped", "Not met on this Mac"},
		{"", "Required", "Couldn't be checked on this Mac"},
		{"", "Required", "Not checked on this Mac yet"},
		{"", "Recommended", "Not met on this Mac"},
	} {
		li := items[i]
		if attr(li, "class") != want.class {
			t.Errorf("finding %d: class %q, want %q", i, attr(li, "class"), want.class)
		}
		if !strings.Contains(text(li), want.badge) || !strings.Contains(text(li), want.status) {
			t.Errorf("finding %d: %q lacks %q or %q", i, text(li), want.badge, want.status)
		}
	}
	if !strings.Contains(text(items[1]), "Details: no such table: alf") {
		t.Error("ERROR finding does not show osquery's message")
	}
	if strings.Contains(text(items[0]), "cannot be skipped") == strings.Contains(text(items[1]), "cannot be skipped") {
		t.Error("critical and non-critical findings look the same")
	}
	if !strings.Contains(rec.Body.String(), "Fix these 3 items") {
		t.Error("heading does not count the failing items")
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
	if !strings.Contains(rec.Body.String(), "<strong>Last checked:</strong> never") {
		t.Error("a Mac never checked is not said to be")
	}
}

func TestKinds(t *testing.T) {
	t.Parallel()
	r := newRenderer(t)
	titles := map[string]Kind{}
	for _, k := range []Kind{KindPolicy, KindNoCert, KindUnknownDevice, KindOffline, KindRevoked, KindGeneric, "no_such_kind"} {
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
		reason.PolicyError:    KindPolicy,
		reason.PolicyMissing:  KindPolicy,
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
	fs := Findings([]decision.Finding{{Name: "n", Status: decision.StatusError, Message: "m", Resolution: "r", Critical: true}})
	if len(fs) != 1 || fs[0] != (Finding{Name: "n", Status: "ERROR", Message: "m", Resolution: "r", Critical: true}) {
		t.Errorf("Findings = %+v", fs)
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
