package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/clearance/clearance/internal/browser"
	"github.com/clearance/clearance/internal/oktasim"
	adminv1 "github.com/clearance/clearance/proto/gen/clearance/admin/v1"
)

// rolloutPolicyFile writes examples/policies.yaml with extra keys for the
// FileVault and firewall policies (the two a failing Mac fails), and with
// FileVault's criticality as given.
func rolloutPolicyFile(t *testing.T, path, filevault, firewall string, fvCritical bool) {
	t.Helper()
	src, err := os.ReadFile(policiesFile(t))
	if err != nil {
		t.Fatal(err)
	}
	s := string(src)
	const fvTail = "    required: true\n    critical: true\n    interval: 5m\n"
	const fwTail = "    required: true\n    interval: 60s\n\n  - id: sip\n"
	if strings.Count(s, fvTail) != 1 || strings.Count(s, fwTail) != 1 {
		t.Fatal("examples/policies.yaml changed shape: update rolloutPolicyFile")
	}
	fv := fvTail
	if !fvCritical {
		fv = strings.Replace(fvTail, "critical: true", "critical: false", 1)
	}
	s = strings.Replace(s, fvTail, fv+filevault, 1)
	s = strings.Replace(s, fwTail, "    required: true\n    interval: 60s\n"+firewall+"\n  - id: sip\n", 1)
	if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestBrowserRollout rolls policies out in Chromium, end to end through the
// real verifier and agent and Okta's stand-in: a warn policy shows its page
// and Continue completes the sign-in; Resolve later works once and is not
// offered again within its period; a running grace period says from when
// it blocks; after it ends, the page blocks. Every response Okta gets is
// checked by an independent SAML SP and xmlsec1; screenshots are test
// artifacts and axe-core checks each page.
func TestBrowserRollout(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	policies := filepath.Join(dir, "policies.yaml")
	rolloutPolicyFile(t, policies, "    enforcement: warn\n", "    enforcement: warn\n", true)
	m := startBrowserMac(t, dir, failingMac, "--policies", policies)
	v, okta := m.v, m.okta
	b := browser.New(t, m.opts)
	signIn := func() oktasim.Request {
		t.Helper()
		r := okta.request()
		u, err := okta.sp.RedirectURL(r)
		if err != nil {
			t.Fatal(err)
		}
		if err := b.Navigate(u); err != nil {
			t.Fatalf("sign-in: %v\nhops: %v", err, b.Hops())
		}
		return r
	}
	page := func(name string, want, lacks []string) {
		t.Helper()
		text := b.Text()
		for _, w := range want {
			if !strings.Contains(text, w) {
				t.Errorf("%s: the page lacks %q:\n%s", name, w, text)
			}
		}
		for _, l := range lacks {
			if strings.Contains(text, l) {
				t.Errorf("%s: the page says %q:\n%s", name, l, text)
			}
		}
		b.Screenshot(name)
		b.CheckAccessibility()
	}
	reload := func(filevault, firewall string, fvCritical bool) {
		t.Helper()
		rolloutPolicyFile(t, policies, filevault, firewall, fvCritical)
		admin, ctx := v.admin()
		if _, err := admin.ReloadPolicies(ctx, &adminv1.ReloadPoliciesRequest{}); err != nil {
			t.Fatal(err)
		}
	}
	modes := func(want ...string) {
		t.Helper()
		admin, ctx := v.admin()
		resp, err := admin.ListDecisions(ctx, &adminv1.ListDecisionsRequest{PageSize: int32(len(want))})
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, d := range resp.GetDecisions() {
			got = append(got, d.GetMode())
		}
		if strings.Join(got, ",") != strings.Join(want, ",") {
			t.Errorf("latest decisions' modes %v, want %v (newest first)", got, want)
		}
	}

	// 1. Both failing policies warn: the page offers Continue, which
	// completes this sign-in at Okta.
	r := signIn()
	page("warn", []string{"You can continue signing in this time", "FileVault", "Warning: doesn't block", "Continue", "Check again"}, []string{"Resolve later", "marked for then", "Blocks sign-in"})
	if err := b.Submit(`form[action="/saml/sso/continue"]`); err != nil {
		t.Fatalf("Continue: %v\nhops: %v", err, b.Hops())
	}
	okta.sawAccepted(t, r.ID)
	b.Screenshot("warn-continued")
	modes("warned", "warn")

	// 2. FileVault monitored and the firewall resolvable later: Resolve
	// later completes the sign-in once; the next sign-in in the period
	// does not offer it.
	reload("    enforcement: monitor\n", "    allow_bypass: true\n", false)
	r = signIn()
	page("resolve-later", []string{"Resolve later", "once every 7 days", "Firewall", "Recommended"}, []string{"You can continue signing in this time"})
	if err := b.Submit(`form[action="/saml/sso/resolve-later"]`); err != nil {
		t.Fatalf("Resolve later: %v\nhops: %v", err, b.Hops())
	}
	okta.sawAccepted(t, r.ID)
	modes("bypassed", "enforce")
	signIn()
	page("resolve-later-used", []string{"Firewall", "Check again"}, []string{"Resolve later"})
	if n := browser.Eval[int](b, `document.querySelectorAll('form[action="/saml/sso/resolve-later"]').length`); n != 0 {
		t.Errorf("Resolve later offered twice within its period")
	}
	modes("enforce")

	// 3. A grace period: from the first FAIL the policies warn, and the page
	// and each item say from when they block.
	const grace = 20 * time.Second
	reload("    grace: 20s\n", "    grace: 20s\n", true)
	first := time.Now()
	r = signIn()
	page("grace", []string{"You can continue signing in this time", "marked for then will stop you signing in from this Mac", "Blocks sign-in from", "Continue"}, []string{"Blocks sign-in now"})
	when := browser.Eval[string](b, `document.querySelector('.block-from time').getAttribute('datetime')`)
	ends, err := time.Parse(time.RFC3339, when)
	if err != nil || ends.Before(first.Add(grace-2*time.Second)) || ends.After(time.Now().Add(grace+time.Second)) {
		t.Fatalf("block date %q (%v), want about %v", when, err, first.Add(grace))
	}
	if err := b.Submit(`form[action="/saml/sso/continue"]`); err != nil {
		t.Fatalf("Continue in grace: %v", err)
	}
	okta.sawAccepted(t, r.ID)

	// 4. The grace ends: the same Mac is blocked, with no way around.
	time.Sleep(time.Until(ends.Add(time.Second)))
	signIn()
	page("grace-ended", []string{"Your Mac needs attention", "FileVault", "Blocks sign-in now", "Check again"}, []string{"Continue", "Resolve later", "marked for then", "Blocks sign-in from"})
	modes("enforce")
}
