package web

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/html"

	"github.com/clearance/clearance/verifier/decision"
	"github.com/clearance/clearance/verifier/reason"
)

// shownItem is one item to fix as a person reads it.
type shownItem struct {
	name, class, badge, effect string
	// blocksAt is the datetime of the badge's <time>, if it has one.
	blocksAt string
}

// shownItems renders d and returns the items under "Fix …", in page
// order, and the page's root.
func shownItems(t *testing.T, d Denied) ([]shownItem, *html.Node) {
	t.Helper()
	rec := httptest.NewRecorder()
	newRenderer(t).Denied(rec, http.StatusForbidden, d)
	doc := parse(t, rec.Body.String())
	var items []shownItem
	walk(doc, func(ul *html.Node) {
		if ul.Data != "ul" || attr(ul, "class") != "findings" {
			return
		}
		for li := ul.FirstChild; li != nil; li = li.NextSibling {
			if li.Type != html.ElementNode {
				continue
			}
			it := shownItem{name: text(findAll(li, "h3")[0]), class: attr(li, "class")}
			walk(li, func(n *html.Node) {
				switch {
				case strings.HasPrefix(attr(n, "class"), "badge"):
					it.badge = text(n)
					if ts := findAll(n, "time"); len(ts) == 1 {
						it.blocksAt = attr(ts[0], "datetime")
					}
				case attr(n, "class") == "effect":
					it.effect = text(n)
				}
			})
			items = append(items, it)
		}
	})
	return items, doc
}

// byClass is the text of the first element of class c, or "".
func byClass(doc *html.Node, c string) string {
	var out string
	walk(doc, func(n *html.Node) {
		if out == "" && attr(n, "class") == c {
			out = text(n)
		}
	})
	return out
}

// Each item says how it acts on this sign-in, in words, from what the
// decision found.
func TestFindingStates(t *testing.T) {
	t.Parallel()
	ends := time.Date(2026, 12, 10, 1, 48, 0, 0, time.UTC)
	for _, tc := range []struct {
		name string
		f    Finding
		// resolveLater: the page offers Resolve later.
		resolveLater bool
		want         shownItem
	}{
		{"enforced", Finding{Enforcement: decision.Enforce}, false,
			shownItem{badge: "Blocks sign-in now"}},
		{"no enforcement given", Finding{}, false,
			shownItem{badge: "Blocks sign-in now"}},
		{"critical", Finding{Enforcement: decision.Enforce, Critical: true}, false,
			shownItem{class: "critical", badge: "Blocks sign-in now, cannot be skipped"}},
		{"resolve later offered", Finding{Enforcement: decision.Enforce, ResolveLater: true}, true,
			shownItem{badge: "Blocks sign-in now", effect: "If you can't fix this now, Resolve later skips it this once."}},
		{"bypass offered but no Resolve later on the page", Finding{Enforcement: decision.Enforce, ResolveLater: true}, false,
			shownItem{badge: "Blocks sign-in now"}},
		{"in grace", Finding{Enforcement: decision.Warn, BlocksFrom: ends}, false,
			shownItem{badge: "Blocks sign-in from Thu 10 Dec, 01:48 UTC", blocksAt: "2026-12-10T01:48:00Z",
				effect: "Until then it doesn't stop you signing in."}},
		{"critical in grace", Finding{Enforcement: decision.Warn, BlocksFrom: ends, Critical: true}, true,
			shownItem{badge: "Blocks sign-in from Thu 10 Dec, 01:48 UTC", blocksAt: "2026-12-10T01:48:00Z",
				effect: "Until then it doesn't stop you signing in. From then it can't be skipped."}},
		{"warn", Finding{Enforcement: decision.Warn}, false,
			shownItem{class: "warning", badge: "Warning: doesn't block"}},
		{"critical in warn", Finding{Enforcement: decision.Warn, Critical: true}, false,
			shownItem{class: "warning", badge: "Warning: doesn't block"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := tc.f
			f.Name, f.Status, f.Resolution = "Firewall is on", "FAIL", "Turn it on."
			d := Denied{Reason: reason.PolicyFailed, Failing: []Finding{f}, RetryAction: retryPath, RetryToken: retryToken}
			if tc.resolveLater {
				d.ResolveLaterAction = "/saml/sso/resolve-later"
			}
			items, _ := shownItems(t, d)
			tc.want.name = "Firewall is on"
			if len(items) != 1 || items[0] != tc.want {
				t.Errorf("shown %+v, want %+v", items, tc.want)
			}
		})
	}
}

// A page lists what blocks now first, then what blocks later (soonest
// first), then warnings; the page's own lines speak of the items they are
// true of.
func TestRolloutPage(t *testing.T) {
	t.Parallel()
	first := time.Date(2026, 12, 10, 1, 48, 0, 0, time.UTC)
	second := first.Add(48 * time.Hour)
	item := func(name string, e decision.Enforcement, from time.Time, skip bool) Finding {
		return Finding{Name: name, Status: "FAIL", Resolution: "Fix it.", Enforcement: e, BlocksFrom: from, ResolveLater: skip}
	}
	warnA := item("Warn A", decision.Warn, time.Time{}, false)
	graceLate := item("Grace late", decision.Warn, second, false)
	graceSoon := item("Grace soon", decision.Warn, first, false)
	graceSame := item("Grace same", decision.Warn, first, false)
	bypass := item("Bypass", decision.Enforce, time.Time{}, true)

	names := func(items []shownItem) string {
		var out []string
		for _, it := range items {
			out = append(out, it.name)
		}
		return strings.Join(out, ", ")
	}

	t.Run("order and Resolve later", func(t *testing.T) {
		t.Parallel()
		items, doc := shownItems(t, Denied{
			Reason: reason.PolicyFailed, Username: "bob@example.com",
			Failing:     []Finding{warnA, graceLate, bypass, graceSoon},
			RetryAction: retryPath, RetryToken: retryToken,
			ResolveLaterAction: "/saml/sso/resolve-later", ResolveLaterPeriod: 7 * 24 * time.Hour,
		})
		if got, want := names(items), "Bypass, Grace soon, Grace late, Warn A"; got != want {
			t.Errorf("order %q, want %q", got, want)
		}
		if got, want := byClass(doc, "block-from"), "From Thursday 10 Dec, 01:48 UTC, the first of the items marked with a date will stop you signing in from this Mac."; got != want {
			t.Errorf("block date line %q, want %q", got, want)
		}
		page := text(doc)
		for _, want := range []string{
			"If you can't fix the ones that block sign-in now right away, you can choose Resolve later once.",
			"Resolve later signs bob@example.com in this once, skipping the items that block sign-in now; the others don't stop this sign-in. This Mac can choose it once every 7 days for each item it skips.",
		} {
			if !strings.Contains(page, want) {
				t.Errorf("the page does not say %q:\n%s", want, page)
			}
		}
		for _, it := range items {
			if skips := strings.Contains(it.effect, "Resolve later"); skips != (it.name == "Bypass") {
				t.Errorf("%s: %q", it.name, it.effect)
			}
		}
		if strings.Contains(page, "without the fixes") {
			t.Error("the page says Resolve later signs in without the fixes, and it skips only some")
		}
	})
	t.Run("Continue with items in grace at one time", func(t *testing.T) {
		t.Parallel()
		items, doc := shownItems(t, Denied{
			Reason:      reason.PolicyFailed,
			Failing:     []Finding{warnA, graceSame, graceSoon},
			RetryAction: retryPath, RetryToken: retryToken, ContinueAction: "/saml/sso/continue",
		})
		if got, want := names(items), "Grace same, Grace soon, Warn A"; got != want {
			t.Errorf("order %q, want %q", got, want)
		}
		if got, want := byClass(doc, "block-from"), "From Thursday 10 Dec, 01:48 UTC, the items marked for then will stop you signing in from this Mac."; got != want {
			t.Errorf("block date line %q, want %q", got, want)
		}
	})
	t.Run("no item in grace, no block date", func(t *testing.T) {
		t.Parallel()
		_, doc := shownItems(t, Denied{
			Reason:      reason.PolicyFailed,
			Failing:     []Finding{warnA},
			RetryAction: retryPath, RetryToken: retryToken, ContinueAction: "/saml/sso/continue",
		})
		if got := byClass(doc, "block-from"); got != "" {
			t.Errorf("block date line %q on a page with nothing in grace", got)
		}
	})
	t.Run("everything blocks now: Resolve later skips the fixes", func(t *testing.T) {
		t.Parallel()
		_, doc := shownItems(t, Denied{
			Reason: reason.PolicyFailed, Username: "bob@example.com",
			Failing:     []Finding{bypass},
			RetryAction: retryPath, RetryToken: retryToken,
			ResolveLaterAction: "/saml/sso/resolve-later", ResolveLaterPeriod: 7 * 24 * time.Hour,
		})
		if want := "Resolve later signs bob@example.com in this once, without the fixes. This Mac can choose it once every 7 days for each item."; !strings.Contains(text(doc), want) {
			t.Errorf("the page does not say %q:\n%s", want, text(doc))
		}
	})
}
