package server_test

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/clearance/clearance/internal/oktaorg"
	adminv1 "github.com/clearance/clearance/proto/gen/clearance/admin/v1"
	agentv1 "github.com/clearance/clearance/proto/gen/clearance/agent/v1"
	"github.com/clearance/clearance/verifier/config"
	"github.com/clearance/clearance/verifier/oktaapi"
	"github.com/clearance/clearance/verifier/reason"
	"github.com/clearance/clearance/verifier/server"
	"github.com/clearance/clearance/verifier/storage"
)

const safari = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15"

// userAgent sets the browser's User-Agent on every request.
type userAgent struct {
	base http.RoundTripper
	ua   string
}

func (u userAgent) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("User-Agent", u.ua)
	return u.base.RoundTrip(r)
}

func signInEvent(uuid, user string, published time.Time) oktaorg.Event {
	return oktaorg.Event{
		"uuid": uuid, "published": published.UTC().Format("2006-01-02T15:04:05.000Z"), "eventType": oktaapi.EventSessionStart,
		"actor":   map[string]any{"id": "00u1", "type": "User", "alternateId": user},
		"client":  map[string]any{"ipAddress": "127.0.0.1", "userAgent": map[string]any{"rawUserAgent": safari, "os": "Mac OS X", "browser": "SAFARI"}},
		"outcome": map[string]any{"result": "SUCCESS"},
	}
}

// startOktaSync starts a verifier that reads people from org's API with
// the token "ro-token" (which org must know): the users hourly, the System
// Log every 50 ms. edit, when given, changes the configuration further.
func startOktaSync(t *testing.T, org *oktaorg.Org, edit func(*config.Config)) *ssoEnv {
	t.Helper()
	tokenFile := filepath.Join(t.TempDir(), "okta.token")
	if err := os.WriteFile(tokenFile, []byte("ro-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return startSSO(t, true, func(c *config.Config) {
		c.OktaOrgURL, c.OktaAPITokenFile, c.OktaSyncInterval = org.URL(), tokenFile, time.Hour
		if edit != nil {
			edit(c)
		}
	}, server.WithOktaHTTP(org.Server.Client()), server.WithOktaPollInterval(50*time.Millisecond))
}

// TestOktaSignInCorrelation: with the Okta API configured, an Okta sign-in
// that followed a Clearance allow is matched to it, and a Mac sign-in with
// no allow raises the alert: a log line, the metric, and the admin call.
func TestOktaSignInCorrelation(t *testing.T) {
	t.Parallel()
	org := oktaorg.New()
	defer org.Close()
	org.AddToken("ro-token", oktaorg.Scopes(oktaapi.ScopeUsers, oktaapi.ScopeGroups, oktaapi.ScopeLogs, oktaapi.ScopeApps))
	org.PutUser(oktaorg.User{ID: "00u1", Login: testUser})
	e := startOktaSync(t, org, nil)

	// A sign-in Clearance allows, from Safari on the Mac.
	a, _ := e.device(t, agentv1.PolicyStatus_POLICY_STATUS_PASS, nil)
	c := e.browser(deviceCert(a))
	c.Transport = userAgent{base: c.Transport, ua: safari}
	r := e.sp.NewRequest(testUser)
	e.allowed(t, e.redirect(t, c, r), r)
	ds := e.decisions(t)
	if len(ds) != 1 || !ds[0].Allow || ds[0].UserAgent != safari || ds[0].ClientIP != "127.0.0.1" {
		t.Fatalf("decision %+v, want an allow with the browser's address and User-Agent", ds)
	}

	// Okta then logs that session, and one for a Mac that never came to
	// Clearance (a policy that forgot to require it).
	now := e.clock.Now()
	org.AddEvent(signInEvent("ev-ada", testUser, now.Add(2*time.Second)))
	org.AddEvent(signInEvent("ev-mallory", "mallory@example.com", now.Add(3*time.Second)))

	var got *adminv1.ListOktaSignInsResponse
	deadline := time.Now().Add(20 * time.Second)
	for {
		var err error
		got, err = e.admin.ListOktaSignIns(e.ctx(), &adminv1.ListOktaSignInsRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if len(got.SignIns) == 2 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if len(got.SignIns) != 2 {
		t.Fatalf("Okta sign-ins %v, want 2", got.SignIns)
	}
	alerts, err := e.admin.ListOktaSignIns(e.ctx(), &adminv1.ListOktaSignInsRequest{UnmatchedOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(alerts.SignIns) != 1 || alerts.SignIns[0].GetUsername() != "mallory@example.com" || alerts.SignIns[0].GetDecisionId() != 0 {
		t.Errorf("alerts %v, want mallory's sign-in only", alerts.SignIns)
	}
	after, err := e.admin.ListOktaSignIns(e.ctx(), &adminv1.ListOktaSignInsRequest{DecisionId: ds[0].ID})
	if err != nil {
		t.Fatal(err)
	}
	if len(after.SignIns) != 1 || after.SignIns[0].GetUuid() != "ev-ada" || after.SignIns[0].GetUnmatched() {
		t.Errorf("what Okta did after decision %d: %v, want ev-ada, matched", ds[0].ID, after.SignIns)
	}
	// The poller counts and logs a page's alerts after it stored the page.
	waitFor(t, "the alert counted and logged", func() bool {
		return counterValue(t, e.srv.Metrics.Registry, "clearance_okta_unmatched_signins_total") >= 1 &&
			strings.Contains(e.logs.String(), "okta_unmatched_signin")
	})
	if v := counterValue(t, e.srv.Metrics.Registry, "clearance_okta_unmatched_signins_total"); v != 1 {
		t.Errorf("clearance_okta_unmatched_signins_total = %v, want 1", v)
	}
	if !strings.Contains(e.logs.String(), "okta_unmatched_signin") || !strings.Contains(e.logs.String(), "mallory@example.com") {
		t.Error("no okta_unmatched_signin log line for mallory")
	}
	if strings.Contains(e.logs.String(), "ro-token") {
		t.Error("the log shows the API token")
	}

	// The admin API reports what the credential reads, and the sync ran.
	st, err := e.admin.OktaStatus(e.ctx(), &adminv1.OktaStatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, cp := range st.GetCapabilities() {
		if cp.GetState() != adminv1.OktaCapabilityState_OKTA_CAPABILITY_STATE_ON {
			t.Errorf("capability %s is %s", cp.GetName(), cp.GetState())
		}
	}
	if u, err := e.srv.Store.GetUserByName(e.ctx(), testUser); err != nil || u.ID != "00u1" {
		t.Errorf("synced user %+v %v, want %s", u, err, testUser)
	}
	if bad := org.Invalid(); len(bad) > 0 {
		t.Errorf("requests Okta's OpenAPI description refuses: %v", bad)
	}
}

func counterValue(t *testing.T, g prometheus.Gatherer, name string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

// TestOktaSyncGatesSignIn: with the Okta API configured, users arrive in
// the user store sign-in reads; a user Okta deactivates is denied at the
// next poll, and with --scim-users required a username Okta does not have
// is refused.
func TestOktaSyncGatesSignIn(t *testing.T) {
	t.Parallel()
	org := oktaorg.New()
	defer org.Close()
	org.AddToken("ro-token", oktaorg.Scopes(oktaapi.ScopeUsers, oktaapi.ScopeGroups, oktaapi.ScopeLogs))
	org.PutUser(oktaorg.User{ID: "00u1", Login: testUser})
	org.PutGroup("00g1", "Engineering")
	org.SetMember("00g1", "00u1", true)
	e := startOktaSync(t, org, func(c *config.Config) { c.SCIMUsers = config.SCIMRequired })
	waitUser := func(active bool) storage.User {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			u, err := e.srv.Store.GetUserByName(e.ctx(), testUser)
			if err == nil && u.Active == active {
				return u
			}
			if time.Now().After(deadline) {
				t.Fatalf("user %s never became active=%v: %+v %v", testUser, active, u, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	u := waitUser(true)
	if u.ID != "00u1" || u.Source != storage.SourceOktaAPI {
		t.Errorf("synced user %+v", u)
	}
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		// Groups follow the users in the same sync.
		gs, err := e.srv.Store.UserGroups(e.ctx(), u.ID)
		if err == nil && len(gs) == 1 && gs[0].DisplayName == "Engineering" && gs[0].Source == storage.SourceOktaAPI {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("synced groups %+v %v", gs, err)
		}
	}

	a, _ := e.device(t, agentv1.PolicyStatus_POLICY_STATUS_PASS, nil)
	c := e.browser(deviceCert(a))
	r := e.sp.NewRequest(testUser)
	e.allowed(t, e.redirect(t, c, r), r)

	org.SetUserStatus("00u1", "DEPROVISIONED")
	waitUser(false)
	p := e.redirect(t, c, e.sp.NewRequest(testUser))
	noResponse(t, p)
	stranger := e.redirect(t, c, e.sp.NewRequest("stranger@example.com"))
	noResponse(t, stranger)
	ds := e.decisions(t)
	if len(ds) != 3 || ds[0].Reason != string(reason.UserUnknown) || ds[1].Reason != string(reason.UserDeactivated) {
		var got []string
		for _, d := range ds {
			got = append(got, d.Reason)
		}
		t.Errorf("decisions %v, want user_not_provisioned, user_deactivated, allowed (newest first)", got)
	}
	es, err := e.srv.Store.ListAudit(e.ctx(), storage.AuditFilter{Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	if len(es) == 0 || es[0].Actor != oktaapi.SyncActor || es[0].Action != "user.deactivate" {
		t.Errorf("newest audit event %+v, want the sync's deactivation", es)
	}
}
