package web

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/clearance/clearance/internal/browser"
)

// browserPages are the pages a person meets most, as the browser test shows
// them: a Mac failing policies, one that couldn't be checked, one part-way
// fixed, one failing and partly unchecked, one offline, one in warn, one
// that may resolve later, one failing policies in every rollout state
// (blocking now, blocking after its grace, only warning); the agent not
// running; a refused request; and the page that carries the response to
// Okta (as it shows without JavaScript, with its Continue button).
var browserPages = []string{
	"denied_policy", "denied_unchecked", "denied_partial", "denied_mixed", "denied_offline",
	"agent_missing", "refused", "post", "denied_warn", "denied_resolve_later", "denied_lookalike", "denied_rollout",
}

// TestBrowserPages renders each page in Debian's Chromium at a laptop's
// width and a phone's, light and dark, writes a screenshot of each to the
// test artifacts, and fails on serious or critical axe-core findings, on a
// page wider than the phone's screen, or on words meant for the security
// team.
func TestBrowserPages(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Chromium")
	}
	r := newRenderer(t)
	byName := map[string]pageCase{}
	for _, p := range pages() {
		byName[p.name] = p
	}
	mux := http.NewServeMux()
	for _, name := range browserPages {
		p, ok := byName[name]
		if !ok {
			t.Fatalf("no page %q", name)
		}
		mux.HandleFunc("GET /"+name, func(w http.ResponseWriter, _ *http.Request) { p.render(r, w) })
	}
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)

	for _, tc := range []struct {
		name   string
		view   browser.Viewport
		scheme browser.ColorScheme
	}{
		{"desktop-light", browser.Desktop, browser.Light},
		{"desktop-dark", browser.Desktop, browser.Dark},
		{"phone-light", browser.Phone, browser.Light},
		{"phone-dark", browser.Phone, browser.Dark},
	} {
		// One at a time: each runs its own Chromium.
		t.Run(tc.name, func(t *testing.T) {
			// Only the post page has a script, which would send the browser
			// on to Okta at once; without scripts it waits at its button,
			// as a person without JavaScript sees it.
			b := browser.New(t, browser.Options{Viewport: tc.view, ColorScheme: tc.scheme, NoJavaScript: true})
			for _, name := range browserPages {
				if err := b.Navigate(srv.URL + "/" + name); err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				b.Screenshot(name)
				b.CheckAccessibility()
				if wide := browser.Eval[bool](b, `document.documentElement.scrollWidth > window.innerWidth`); wide {
					t.Errorf("%s: the page is wider than the window and scrolls sideways", name)
				}
				text := b.Text()
				for _, jargon := range []string{"osquery", "SELECT", "disk_encryption", "global_state", "Passes when"} {
					if strings.Contains(text, jargon) {
						t.Errorf("%s: the page says %q", name, jargon)
					}
				}
				switch name {
				case "denied_policy":
					if n := browser.Eval[int](b, `document.querySelectorAll('.fix ol.fix-steps > li').length`); n < 6 {
						t.Errorf("%s: %d numbered steps, want FileVault's and the firewall's", name, n)
					}
				case "denied_unchecked":
					if n := browser.Eval[int](b, `document.querySelectorAll('.findings li, .fix').length`); n != 0 || !strings.Contains(text, "restart the Mac") {
						t.Errorf("%s: %d fixes listed; the page says:\n%s", name, n, text)
					}
				case "denied_warn":
					if !strings.Contains(text, "From Saturday 5 Dec, 09:00 UTC") || !strings.Contains(text, "Continue") {
						t.Errorf("%s: no block date or Continue:\n%s", name, text)
					}
				case "denied_resolve_later":
					if !strings.Contains(text, "Resolve later") || !strings.Contains(text, "once every 7 days") ||
						!strings.Contains(text, "Signing in as: robin@example.com") || !strings.Contains(text, "signs robin@example.com in this once") {
						t.Errorf("%s: no Resolve later:\n%s", name, text)
					}
				case "denied_rollout":
					// Each item says its own state, blocking now first; only
					// the one Resolve later skips says so.
					blocking, later, warn := strings.Index(text, "macOS is 14.6 or later\nBlocks sign-in now"),
						strings.Index(text, "FileVault disk encryption is on\nBlocks sign-in from Thu 10 Dec, 01:48 UTC"),
						strings.Index(text, "Firewall is on\nWarning: doesn't block")
					if blocking < 0 || later < blocking || warn < later {
						t.Errorf("%s: items not marked blocking now, later, warning, in that order:\n%s", name, text)
					}
					if n := browser.Eval[int](b, `[...document.querySelectorAll('.findings .effect')].filter(e => e.textContent.includes('Resolve later')).length`); n != 1 ||
						!strings.Contains(text, "From Thursday 10 Dec, 01:48 UTC, the item marked for then will stop you signing in") ||
						!strings.Contains(text, "skipping the items that block sign-in now; the others don't stop this sign-in") {
						t.Errorf("%s: %d items skippable, want the macOS version's; or the page's lines are wrong:\n%s", name, n, text)
					}
				case "denied_lookalike":
					if !strings.Contains(text, "Look closely: It mixes Cyrillic and Latin letters") || !strings.Contains(text, `Spelled out: r\u043ebin@example.com`) {
						t.Errorf("%s: the look-alike username is not marked:\n%s", name, text)
					}
				case "denied_partial":
					if !strings.Contains(text, "Now passing") || strings.Index(text, "Now passing") > strings.Index(text, "Fix this item") {
						t.Errorf("%s: Now passing is not above the fix:\n%s", name, text)
					}
				}
			}
		})
	}
}
