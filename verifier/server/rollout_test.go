package server_test

import (
	"context"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/html"

	"github.com/clearance/clearance/internal/protoagent"
	agentv1 "github.com/clearance/clearance/proto/gen/clearance/agent/v1"
	"github.com/clearance/clearance/verifier/config"
	"github.com/clearance/clearance/verifier/decision"
	"github.com/clearance/clearance/verifier/ratelimit"
	"github.com/clearance/clearance/verifier/signin"
	"github.com/clearance/clearance/verifier/storage"
)

// rolloutPolicies writes a one-policy file whose firewall policy has the
// given rollout keys.
func rolloutPolicies(t *testing.T, keys string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "policies.yaml")
	src := "policies:\n  - id: firewall\n    name: Firewall is on\n    query: SELECT 1 FROM alf WHERE global_state >= 1\n    resolution: Turn on the firewall.\n" + keys
	if err := os.WriteFile(p, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func startRollout(t *testing.T, keys string, edit func(*config.Config)) *ssoEnv {
	t.Helper()
	policies := rolloutPolicies(t, keys)
	return startAgentBinding(t, func(c *config.Config) {
		c.Policies = policies
		if edit != nil {
			edit(c)
		}
	})
}

// failingMac is a device that fails its policy in every report, live
// checks included.
func failingMac(t *testing.T, e *ssoEnv) *protoagent.Agent {
	t.Helper()
	fail := agentv1.PolicyStatus_POLICY_STATUS_FAIL
	a, _ := e.device(t, fail, &fail)
	return a
}

// formAction reports whether p has a form posting to path.
func formAction(p page, path string) bool {
	return strings.Contains(p.body, `action="`+path+`"`)
}

func lastDecision(t *testing.T, e *ssoEnv) storage.DecisionRecord {
	t.Helper()
	ds := e.decisions(t)
	if len(ds) == 0 {
		t.Fatal("no decision recorded")
	}
	return ds[0]
}

// A warn policy shows the page with Continue; Continue from the same
// browser completes the sign-in once, and the log says the person saw it.
func TestRolloutWarnContinue(t *testing.T) {
	t.Parallel()
	e := startRollout(t, "    enforcement: warn\n", nil)
	a := failingMac(t, e)
	c := e.jarBrowser(t)
	r := e.sp.NewRequest(testUser)
	p := e.ceremony(t, c, a, r)
	noResponse(t, p)
	if p.status != http.StatusForbidden || !formAction(p, signin.PathContinue) || formAction(p, signin.PathResolveLater) {
		t.Fatalf("warn page: status %d, want Continue only:\n%s", p.status, p.body)
	}
	if d := lastDecision(t, e); d.Mode != "warn" || d.Allow {
		t.Fatalf("decision %+v, want mode warn", d)
	}
	token := retryToken(t, p)

	// Never a GET; never from another browser.
	if g := e.get(t, c, "https://localhost:8444"+signin.PathContinue+"?token="+token); g.status != http.StatusMethodNotAllowed {
		t.Errorf("GET continue answered %d", g.status)
	}
	refusedWith(t, e.post(t, e.jarBrowser(t), signin.PathContinue, url.Values{"token": {token}}), http.StatusForbidden, "retry_from_other_browser")

	e.allowed(t, e.post(t, c, signin.PathContinue, formValues(t, p, signin.PathContinue)), r)
	d := lastDecision(t, e)
	if !d.Allow || d.Mode != "warned" || d.Source != "sso_continue" || d.Results[0].Waiver != "warned" || d.Results[0].Enforcement != "warn" {
		t.Fatalf("decision %+v, want allowed, warned, from Continue", d)
	}
	// One use.
	refusedWith(t, e.post(t, c, signin.PathContinue, url.Values{"token": {token}}), http.StatusBadRequest, "sign_in_expired")
	ws, err := e.srv.Store.ListDecisions(context.Background(), storage.DecisionFilter{Modes: []string{"warn", "warned"}})
	if err != nil || len(ws) != 2 {
		t.Fatalf("warned filter: %d, %v", len(ws), err)
	}
}

// Continue cannot complete a sign-in an enforced policy blocks.
func TestRolloutContinueOnEnforced(t *testing.T) {
	t.Parallel()
	e := startRollout(t, "", nil)
	a := failingMac(t, e)
	c := e.jarBrowser(t)
	p := e.ceremony(t, c, a, e.sp.NewRequest(testUser))
	if formAction(p, signin.PathContinue) || formAction(p, signin.PathResolveLater) {
		t.Fatalf("enforced page offers a way around:\n%s", p.body)
	}
	for _, path := range []string{signin.PathContinue, signin.PathResolveLater} {
		q := e.post(t, c, path, url.Values{"token": {retryToken(t, p)}})
		noResponse(t, q)
		if q.status != http.StatusForbidden {
			t.Errorf("%s on an enforced policy answered %d", path, q.status)
		}
	}
}

// Resolve later works once per period, and never for a critical policy.
func TestRolloutResolveLater(t *testing.T) {
	t.Parallel()
	e := startRollout(t, "    allow_bypass: true\n", nil)
	a := failingMac(t, e)
	c := e.jarBrowser(t)
	r := e.sp.NewRequest(testUser)
	p := e.ceremony(t, c, a, r)
	if !formAction(p, signin.PathResolveLater) || formAction(p, signin.PathContinue) || !strings.Contains(p.body, "once every 7 days") {
		t.Fatalf("page offers no Resolve later:\n%s", p.body)
	}
	// Whose sign-in this is, before anyone spends this Mac's Resolve later
	// on it (a link can bring another person's sign-in to this browser).
	if !strings.Contains(p.body, "<strong>Signing in as:</strong> <bdi>"+testUser+"</bdi>") || !strings.Contains(p.body, "signs "+testUser+" in this once") {
		t.Errorf("the page does not say whose sign-in it is:\n%s", p.body)
	}
	e.allowed(t, e.post(t, c, signin.PathResolveLater, formValues(t, p, signin.PathResolveLater)), r)
	if d := lastDecision(t, e); !d.Allow || d.Mode != "bypassed" || d.Source != "sso_resolve_later" {
		t.Fatalf("decision %+v", d)
	}

	// The next sign-in within the period: no Resolve later, and a forged
	// press is refused.
	r2 := e.sp.NewRequest(testUser)
	p2 := e.ceremony(t, c, a, r2)
	if formAction(p2, signin.PathResolveLater) {
		t.Fatalf("Resolve later offered twice in the period:\n%s", p2.body)
	}
	q := e.post(t, c, signin.PathResolveLater, url.Values{"token": {retryToken(t, p2)}})
	noResponse(t, q)
	if q.status != http.StatusForbidden {
		t.Fatalf("second Resolve later answered %d", q.status)
	}
	// (After the period it is offered again: the decision's table test.)
	bs, err := e.srv.Store.Bypasses(context.Background(), a.DeviceID)
	if err != nil || len(bs) != 1 {
		t.Fatalf("bypasses %v, %v", bs, err)
	}
}

// A grace period: from the first FAIL the policy warns and the page says
// from when it blocks; after the grace it blocks; a PASS resets it.
func TestRolloutGrace(t *testing.T) {
	t.Parallel()
	e := startRollout(t, "    grace: 72h\n", nil)
	a := failingMac(t, e)
	c := e.jarBrowser(t)
	first := e.clock.Now()
	p := e.ceremony(t, c, a, e.sp.NewRequest(testUser))
	ends := first.Add(72 * time.Hour).UTC()
	if !formAction(p, signin.PathContinue) || !strings.Contains(p.body, `datetime="`+ends.Truncate(time.Second).Format(time.RFC3339)) && !strings.Contains(p.body, ends.Format("Monday 2 Jan, 15:04 UTC")) {
		t.Fatalf("grace page has no Continue or block date %v:\n%s", ends, p.body)
	}
	starts, err := e.srv.Store.GraceStarts(context.Background(), a.DeviceID)
	if err != nil || !starts["firewall"].Equal(first) {
		t.Fatalf("grace start %v, %v; want %v", starts, err, first)
	}

	// Another device whose grace began 73 hours ago is blocked.
	b := failingMac(t, e)
	if _, err := e.srv.Store.StartGrace(context.Background(), b.DeviceID, "firewall", first.Add(-73*time.Hour)); err != nil {
		t.Fatal(err)
	}
	pb := e.ceremony(t, e.jarBrowser(t), b, e.sp.NewRequest(testUser))
	if pb.status != http.StatusForbidden || formAction(pb, signin.PathContinue) || strings.Contains(pb.body, "marked for then") || !strings.Contains(pb.body, "Blocks sign-in now") {
		t.Fatalf("after the grace: status %d, page:\n%s", pb.status, pb.body)
	}

	// A PASS ends the grace.
	pass := agentv1.PolicyStatus_POLICY_STATUS_PASS
	ok, _ := e.device(t, pass, &pass)
	if _, err := e.srv.Store.StartGrace(context.Background(), ok.DeviceID, "firewall", first.Add(-time.Hour)); err != nil {
		t.Fatal(err)
	}
	r := e.sp.NewRequest(testUser)
	e.allowed(t, e.ceremony(t, e.jarBrowser(t), ok, r), r)
	if starts, _ := e.srv.Store.GraceStarts(context.Background(), ok.DeviceID); len(starts) != 0 {
		t.Fatalf("a PASS left the grace start %v", starts)
	}
}

// --enforcement monitor lets every policy through and records would-deny;
// an exemption lets its device through until it expires.
func TestRolloutMonitorAndExemption(t *testing.T) {
	t.Parallel()
	e := startRollout(t, "", func(c *config.Config) { c.Enforcement = "monitor" })
	a := failingMac(t, e)
	r := e.sp.NewRequest(testUser)
	e.allowed(t, e.ceremony(t, e.jarBrowser(t), a, r), r)
	if d := lastDecision(t, e); !d.Allow || d.Mode != "monitor" || d.Results[0].Waiver != "monitor" {
		t.Fatalf("monitor decision %+v", d)
	}
	e.logs.has(t, "would_deny=policy_failed")

	x := startRollout(t, "", nil)
	b := failingMac(t, x)
	if _, err := x.srv.Store.CreateExemption(context.Background(), storage.Exemption{
		DeviceID: b.DeviceID, PolicyIDs: []string{"firewall"}, Reason: "replacement on order", CreatedBy: "test",
		CreatedAt: x.clock.Now(), ExpiresAt: x.clock.Now().Add(time.Minute),
	}, storage.AuditEvent{At: x.clock.Now(), Actor: "test", Action: "exemption.grant"}); err != nil {
		t.Fatal(err)
	}
	r = x.sp.NewRequest(testUser)
	x.allowed(t, x.ceremony(t, x.jarBrowser(t), b, r), r)
	if d := lastDecision(t, x); d.Mode != "exempt" {
		t.Fatalf("exempt decision %+v", d)
	}
	// Expired: it counts for nothing.
	x.clock.Add(2 * time.Minute)
	p := x.ceremony(t, x.jarBrowser(t), b, x.sp.NewRequest(testUser))
	noResponse(t, p)
	if d := lastDecision(t, x); d.Allow || d.Mode != "enforce" {
		t.Fatalf("after expiry %+v", d)
	}
}

// Continue and Resolve later take only the held sign-in's token, by POST:
// hostile bodies are refused before anything is decided, and the metric
// counts each decision with its mode.
func TestRolloutHostilePresses(t *testing.T) {
	t.Parallel()
	e := startRollout(t, "    enforcement: warn\n", nil)
	c := e.jarBrowser(t)
	for _, path := range []string{signin.PathContinue, signin.PathResolveLater} {
		for name, form := range map[string]url.Values{
			"no token":    {},
			"short token": {"token": {"abc"}},
			"not base64":  {"token": {strings.Repeat("!", 43)}},
			"unknown":     {"token": {strings.Repeat("A", 43)}},
			"huge body":   {"token": {strings.Repeat("A", 64<<10)}},
			"two tokens":  {"token": {"a", "b"}},
		} {
			p := e.post(t, c, path, form)
			noResponse(t, p)
			if p.status != http.StatusBadRequest {
				t.Errorf("%s %s: %d", path, name, p.status)
			}
		}
	}
	if n := len(e.decisions(t)); n != 0 {
		t.Fatalf("hostile presses made %d decisions", n)
	}

	a := failingMac(t, e)
	e.ceremony(t, c, a, e.sp.NewRequest(testUser))
	mfs, err := e.srv.Metrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, mf := range mfs {
		if mf.GetName() != "clearance_sso_decisions_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["mode"] == "warn" && labels["result"] == "deny" && labels["reason"] == "policy_failed" {
				found = true
			}
		}
	}
	if !found {
		t.Fatal("clearance_sso_decisions_total has no deny with mode warn")
	}
}

// One Mac's held sign-ins are pressed again at most PressPerMacBurst
// times at once (signed requests too): each press writes a decision and
// has the agent run its policies. Over it, 429 and nothing written.
func TestPressesBoundedPerMac(t *testing.T) {
	t.Parallel()
	e := startRollout(t, "", nil)
	a := failingMac(t, e)
	c := e.jarBrowser(t)
	p := e.ceremony(t, c, a, e.sp.NewRequest(testUser))
	token := url.Values{"token": {retryToken(t, p)}}
	for i := range ratelimit.PressPerMacBurst {
		if p := e.post(t, c, signin.PathRetry, token); p.status != http.StatusForbidden {
			t.Fatalf("press %d = %d, want the remediation page again:\n%s", i+1, p.status, p.body)
		}
	}
	before := len(e.decisions(t))
	p = e.post(t, c, signin.PathRetry, token)
	if p.status != http.StatusTooManyRequests || !strings.Contains(p.body, "retry_too_often") || p.header.Get("Retry-After") == "" {
		t.Fatalf("press %d = %d (Retry-After %q), want 429 retry_too_often:\n%s", ratelimit.PressPerMacBurst+1, p.status, p.header.Get("Retry-After"), p.body)
	}
	if after := len(e.decisions(t)); after != before {
		t.Errorf("the refused press wrote %d decisions", after-before)
	}
	// Another Mac's presses are its own.
	b := failingMac(t, e)
	cb := e.jarBrowser(t)
	pb := e.ceremony(t, cb, b, e.sp.NewRequest(testUser))
	if pb := e.post(t, cb, signin.PathRetry, url.Values{"token": {retryToken(t, pb)}}); pb.status != http.StatusForbidden {
		t.Errorf("another Mac's press = %d:\n%s", pb.status, pb.body)
	}
}

// mixedPolicies is a policy file with a policy in each rollout state: a
// critical one in its grace, one in warn, one that allows Resolve later,
// and a critical one enforced.
const mixedPolicies = `policies:
  - id: filevault
    name: FileVault is on
    query: SELECT 1 FROM disk_encryption WHERE encrypted = 1
    resolution: Turn on FileVault.
    critical: true
    grace: 72h
  - id: firewall
    name: Firewall is on
    query: SELECT 1 FROM alf WHERE global_state >= 1
    resolution: Turn on the firewall.
    enforcement: warn
  - id: macos
    name: macOS is up to date
    query: SELECT 1 FROM os_version WHERE major >= 14
    resolution: Install the update.
    allow_bypass: true
  - id: sip
    name: System Integrity Protection is on
    query: SELECT 1 FROM sip_config WHERE enabled = 1
    resolution: Ask IT.
    critical: true
`

// mixedMac is a device whose policies report the given statuses (FAIL for
// those not listed), live checks included.
func mixedMac(t *testing.T, e *ssoEnv, statuses map[string]agentv1.PolicyStatus) *protoagent.Agent {
	t.Helper()
	a := e.enrolled(e.secret())
	st := e.connect(a)
	report := func(seq uint64, nonce []byte) *agentv1.SignedReport {
		r := a.Report(st.PolicySet, seq, time.Now(), nonce, agentv1.PolicyStatus_POLICY_STATUS_FAIL)
		for _, res := range r.Results {
			if s, ok := statuses[res.PolicyId]; ok {
				res.Status = s
			}
		}
		return protoagent.Sign(a.Key, r)
	}
	if m, err := st.Exchange(report(1, nil)); err != nil || m.GetAck() == nil {
		t.Fatalf("report not acked: %v %v", m, err)
	}
	go answerChecks(st, report)
	return a
}

// shownItem is one item to fix on a page, as a person reads it.
type shownItem struct{ name, badge, effect string }

// shownItems are the items under "Fix …" on p, in page order.
func shownItems(t *testing.T, p page) []shownItem {
	t.Helper()
	doc, err := html.Parse(strings.NewReader(p.body))
	if err != nil {
		t.Fatal(err)
	}
	var items []shownItem
	var text func(*html.Node) string
	text = func(n *html.Node) string {
		if n.Type == html.TextNode {
			return n.Data
		}
		var b strings.Builder
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			b.WriteString(text(c))
		}
		return b.String()
	}
	class := func(n *html.Node) string {
		for _, a := range n.Attr {
			if a.Key == "class" {
				return a.Val
			}
		}
		return ""
	}
	var walk func(*html.Node, func(*html.Node))
	walk = func(n *html.Node, f func(*html.Node)) {
		if n.Type == html.ElementNode {
			f(n)
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c, f)
		}
	}
	walk(doc, func(ul *html.Node) {
		if ul.Data != "ul" || class(ul) != "findings" {
			return
		}
		for li := ul.FirstChild; li != nil; li = li.NextSibling {
			if li.Type != html.ElementNode {
				continue
			}
			var it shownItem
			walk(li, func(n *html.Node) {
				switch c := class(n); {
				case n.Data == "h3":
					it.name = text(n)
				case strings.HasPrefix(c, "badge"):
					it.badge = text(n)
				case c == "effect":
					it.effect = text(n)
				}
			})
			items = append(items, it)
		}
	})
	return items
}

// A Mac failing policies in every rollout state: each item on the page says
// its own state, blocking now first; Resolve later is offered only when
// nothing it cannot skip blocks, and then is said of the items it skips,
// which are the ones it skips when pressed.
func TestRolloutMixedPage(t *testing.T) {
	t.Parallel()
	p := filepath.Join(t.TempDir(), "policies.yaml")
	if err := os.WriteFile(p, []byte(mixedPolicies), 0o600); err != nil {
		t.Fatal(err)
	}
	e := startAgentBinding(t, func(c *config.Config) { c.Policies = p })
	ends := e.clock.Now().Add(72 * time.Hour).UTC()
	later := "Blocks sign-in from " + ends.Format("Mon 2 Jan, 15:04 UTC")
	const skips = "If you can't fix this now, Resolve later skips it this once."
	fileVault := shownItem{"FileVault is on", later, "Until then it doesn't stop you signing in. From then it can't be skipped."}
	firewall := shownItem{"Firewall is on", "Warning: doesn't block", ""}

	// 1. Everything fails: SIP blocks and can't be skipped, so nothing is
	// offered, and the macOS item doesn't say it can be skipped.
	a := failingMac(t, e)
	got := e.ceremony(t, e.jarBrowser(t), a, e.sp.NewRequest(testUser))
	noResponse(t, got)
	want := []shownItem{
		{"macOS is up to date", "Blocks sign-in now", ""},
		{"System Integrity Protection is on", "Blocks sign-in now, cannot be skipped", ""},
		fileVault, firewall,
	}
	if items := shownItems(t, got); !slices.Equal(items, want) {
		t.Errorf("items:\n got %q\nwant %q", items, want)
	}
	if formAction(got, signin.PathResolveLater) || formAction(got, signin.PathContinue) || strings.Contains(got.body, "marked for then") {
		t.Errorf("a page SIP blocks offers a way around it, or a block date:\n%s", got.body)
	}

	// 2. SIP passes: Resolve later, said of the macOS item only; the
	// page's lines speak of what blocks now and of FileVault's date.
	c := e.jarBrowser(t)
	r := e.sp.NewRequest(testUser)
	b := mixedMac(t, e, map[string]agentv1.PolicyStatus{"sip": agentv1.PolicyStatus_POLICY_STATUS_PASS})
	got = e.ceremony(t, c, b, r)
	noResponse(t, got)
	want = []shownItem{{"macOS is up to date", "Blocks sign-in now", skips}, fileVault, firewall}
	if items := shownItems(t, got); !slices.Equal(items, want) {
		t.Errorf("items:\n got %q\nwant %q", items, want)
	}
	if !formAction(got, signin.PathResolveLater) || formAction(got, signin.PathContinue) {
		t.Fatalf("want Resolve later only:\n%s", got.body)
	}
	for _, line := range []string{
		"From " + ends.Format("Monday 2 Jan, 15:04 UTC") + ", the item marked for then will stop you signing in from this Mac.",
		"signs " + testUser + " in this once, skipping the items that block sign-in now; the others don&#39;t stop this sign-in.",
	} {
		if !strings.Contains(got.body, line) {
			t.Errorf("the page does not say %q:\n%s", line, got.body)
		}
	}
	if strings.Contains(got.body, "without the fixes") {
		t.Errorf("the page says Resolve later goes without every fix:\n%s", got.body)
	}

	// 3. Resolve later skips the macOS item, and only it: FileVault and
	// the firewall were let through as warnings.
	e.allowed(t, e.post(t, c, signin.PathResolveLater, formValues(t, got, signin.PathResolveLater)), r)
	d := lastDecision(t, e)
	waivers := map[string]string{}
	for _, res := range d.Results {
		waivers[res.PolicyID] = res.Waiver
	}
	if d.Mode != "bypassed" || waivers["macos"] != "bypassed" || waivers["filevault"] != "warned" || waivers["firewall"] != "warned" || waivers["sip"] != "" {
		t.Errorf("Resolve later: mode %s, waivers %v; want only macOS bypassed", d.Mode, waivers)
	}
}

// graceAndBypass is a policy file whose FileVault policy is in a grace of
// one minute and, like the firewall, allows Resolve later.
const graceAndBypass = `policies:
  - id: filevault
    name: FileVault is on
    query: SELECT 1 FROM disk_encryption WHERE encrypted = 1
    resolution: Turn on FileVault.
    grace: 1m
    allow_bypass: true
  - id: firewall
    name: Firewall is on
    query: SELECT 1 FROM alf WHERE global_state >= 1
    resolution: Turn on the firewall.
    allow_bypass: true
`

// Resolve later skips only what its page offered. FileVault's grace ends
// between the page (Resolve later for the firewall only) and the press:
// the press signs nobody in and spends no Resolve later; it answers as
// Check again would, with a page that now offers both, and the decision
// log says the press was denied and waived nothing. Pressed on that page,
// Resolve later skips both.
func TestRolloutResolveLaterAfterGraceEnded(t *testing.T) {
	t.Parallel()
	p := filepath.Join(t.TempDir(), "policies.yaml")
	if err := os.WriteFile(p, []byte(graceAndBypass), 0o600); err != nil {
		t.Fatal(err)
	}
	e := startAgentBinding(t, func(c *config.Config) { c.Policies = p })
	const skips = "If you can't fix this now, Resolve later skips it this once."
	a := failingMac(t, e)
	c := e.jarBrowser(t)
	r := e.sp.NewRequest(testUser)

	// 1. The page: the firewall blocks now and Resolve later skips it;
	// FileVault blocks from the end of its grace, and is not skipped.
	got := e.ceremony(t, c, a, r)
	noResponse(t, got)
	items := shownItems(t, got)
	if len(items) != 2 || items[0] != (shownItem{"Firewall is on", "Blocks sign-in now", skips}) ||
		items[1].name != "FileVault is on" || !strings.HasPrefix(items[1].badge, "Blocks sign-in from ") || strings.Contains(items[1].effect, "Resolve later") {
		t.Fatalf("items %q, want the firewall skipped and FileVault blocking later", items)
	}
	if !formAction(got, signin.PathResolveLater) {
		t.Fatalf("no Resolve later:\n%s", got.body)
	}
	form := formValues(t, got, signin.PathResolveLater)

	// 2. FileVault's grace ends; the press comes after.
	e.clock.Add(2 * time.Minute)
	got = e.post(t, c, signin.PathResolveLater, form)
	noResponse(t, got)
	both := []shownItem{{"FileVault is on", "Blocks sign-in now", skips}, {"Firewall is on", "Blocks sign-in now", skips}}
	if items := shownItems(t, got); got.status != http.StatusForbidden || !slices.Equal(items, both) || !formAction(got, signin.PathResolveLater) {
		t.Fatalf("press after the grace: status %d, items %q; want 403 offering both:\n%s", got.status, items, got.body)
	}
	if bs, err := e.srv.Store.Bypasses(context.Background(), a.DeviceID); err != nil || len(bs) != 0 {
		t.Fatalf("bypasses spent by a refused press: %v, %v", bs, err)
	}
	d := lastDecision(t, e)
	if d.Allow || d.Mode != "enforce" || d.Reason != "policy_failed" || d.Source != "sso_resolve_later" || d.RequestID != r.ID {
		t.Fatalf("decision %+v, want the press recorded as denied, mode enforce", d)
	}
	for _, res := range d.Results {
		if res.Waiver != "" || res.Enforcement != "enforce" {
			t.Errorf("%s: waiver %q, enforcement %q; want blocking, nothing waived", res.PolicyID, res.Waiver, res.Enforcement)
		}
	}

	// 3. Pressed on the page that offered both, it skips both, once.
	e.allowed(t, e.post(t, c, signin.PathResolveLater, formValues(t, got, signin.PathResolveLater)), r)
	d = lastDecision(t, e)
	if !d.Allow || d.Mode != "bypassed" || len(d.Results) != 2 || d.Results[0].Waiver != "bypassed" || d.Results[1].Waiver != "bypassed" {
		t.Fatalf("decision %+v, want both bypassed", d)
	}
	if bs, err := e.srv.Store.Bypasses(context.Background(), a.DeviceID); err != nil || len(bs) != 2 {
		t.Fatalf("bypasses %v, %v; want both", bs, err)
	}
}

// formValues are the hidden inputs of p's form posting to path, as a
// browser posts them.
func formValues(t *testing.T, p page, path string) url.Values {
	t.Helper()
	i := strings.Index(p.body, `action="`+path+`"`)
	if i < 0 {
		t.Fatalf("no form posting to %s:\n%s", path, p.body)
	}
	form := p.body[i:]
	form = form[:strings.Index(form, "</form>")]
	v := url.Values{}
	for _, m := range hiddenInput.FindAllStringSubmatch(form, -1) {
		v.Add(m[1], html.UnescapeString(m[2]))
	}
	return v
}

var hiddenInput = regexp.MustCompile(`<input type="hidden" name="([^"]+)" value="([^"]*)">`)

// A press passes over only what its own page listed. Two tabs show one
// held sign-in: the older page offers Resolve later for the firewall
// only (FileVault blocks from the end of its grace); its grace ends, and
// Check again in the newer tab offers both. Resolve later pressed on the
// older page skips nothing (it never said FileVault could be skipped): it
// answers with the page as it is now, nothing spent. Pressed on the
// newer page, it skips both.
func TestRolloutPressOnAnOlderTab(t *testing.T) {
	t.Parallel()
	p := filepath.Join(t.TempDir(), "policies.yaml")
	if err := os.WriteFile(p, []byte(graceAndBypass), 0o600); err != nil {
		t.Fatal(err)
	}
	e := startAgentBinding(t, func(c *config.Config) { c.Policies = p })
	a := failingMac(t, e)
	c := e.jarBrowser(t)
	r := e.sp.NewRequest(testUser)

	older := e.ceremony(t, c, a, r)
	noResponse(t, older)
	olderForm := formValues(t, older, signin.PathResolveLater)
	if len(olderForm.Get("shown")) != decision.PageDigestLen || olderForm.Get("token") == "" {
		t.Fatalf("Resolve later posts %v, want the token and the page's digest", olderForm)
	}
	e.clock.Add(2 * time.Minute)
	newer := e.post(t, c, signin.PathRetry, url.Values{"token": {retryToken(t, older)}})
	noResponse(t, newer)
	newerForm := formValues(t, newer, signin.PathResolveLater)
	if newerForm.Get("token") != olderForm.Get("token") || newerForm.Get("shown") == olderForm.Get("shown") {
		t.Fatalf("the newer tab's form %v, the older's %v: want one token, two pages", newerForm, olderForm)
	}

	// Without the digest (a forged form), a press passes over nothing either.
	bare := url.Values{"token": {olderForm.Get("token")}}
	if got := e.post(t, c, signin.PathResolveLater, bare); got.status != http.StatusForbidden || !formAction(got, signin.PathResolveLater) {
		t.Fatalf("a press without the page's digest: status %d:\n%s", got.status, got.body)
	}
	got := e.post(t, c, signin.PathResolveLater, olderForm)
	noResponse(t, got)
	if got.status != http.StatusForbidden || !formAction(got, signin.PathResolveLater) || formValues(t, got, signin.PathResolveLater).Get("shown") != newerForm.Get("shown") {
		t.Fatalf("the older page's press: status %d; want 403 and the page as it is now:\n%s", got.status, got.body)
	}
	if bs, err := e.srv.Store.Bypasses(context.Background(), a.DeviceID); err != nil || len(bs) != 0 {
		t.Fatalf("bypasses spent by the older page's press: %v, %v", bs, err)
	}
	if d := lastDecision(t, e); d.Allow || d.Source != "sso_resolve_later" {
		t.Fatalf("decision %+v, want the older page's press denied", d)
	}

	e.allowed(t, e.post(t, c, signin.PathResolveLater, newerForm), r)
	if d := lastDecision(t, e); !d.Allow || d.Mode != "bypassed" || len(d.Results) != 2 || d.Results[0].Waiver != "bypassed" || d.Results[1].Waiver != "bypassed" {
		t.Fatalf("decision %+v, want both bypassed", d)
	}
}

// Continue is offered while a policy's grace runs; pressed after the grace
// ended, it signs nobody in and answers with a page for what blocks now:
// Resolve later where the policy allows it (nothing spent), none where it
// does not.
func TestRolloutContinueAfterGraceEnded(t *testing.T) {
	t.Parallel()
	for _, bypass := range []bool{false, true} {
		keys := "    grace: 1m\n"
		if bypass {
			keys += "    allow_bypass: true\n"
		}
		e := startRollout(t, keys, nil)
		a := failingMac(t, e)
		c := e.jarBrowser(t)
		got := e.ceremony(t, c, a, e.sp.NewRequest(testUser))
		if !formAction(got, signin.PathContinue) || formAction(got, signin.PathResolveLater) {
			t.Fatalf("bypass %v: grace page without Continue only:\n%s", bypass, got.body)
		}
		e.clock.Add(2 * time.Minute)
		got = e.post(t, c, signin.PathContinue, formValues(t, got, signin.PathContinue))
		noResponse(t, got)
		if got.status != http.StatusForbidden || formAction(got, signin.PathContinue) || formAction(got, signin.PathResolveLater) != bypass {
			t.Fatalf("bypass %v: Continue after the grace: status %d, want 403 with Resolve later %v:\n%s", bypass, got.status, bypass, got.body)
		}
		if items := shownItems(t, got); len(items) != 1 || items[0].badge != "Blocks sign-in now" {
			t.Fatalf("bypass %v: items %q, want the firewall blocking now", bypass, items)
		}
		d := lastDecision(t, e)
		if d.Allow || d.Mode != "enforce" || d.Source != "sso_continue" || d.Results[0].Waiver != "" {
			t.Fatalf("bypass %v: decision %+v, want the press denied, nothing waived", bypass, d)
		}
		if bs, err := e.srv.Store.Bypasses(context.Background(), a.DeviceID); err != nil || len(bs) != 0 {
			t.Fatalf("bypass %v: bypasses %v, %v", bypass, bs, err)
		}
	}
}
