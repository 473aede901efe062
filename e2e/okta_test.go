package e2e

import (
	"encoding/pem"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/clearance/clearance/internal/oktaorg"
	adminv1 "github.com/clearance/clearance/proto/gen/clearance/admin/v1"
)

// goUA is what the test's browser sends as its User-Agent.
const goUA = "Go-http-client/1.1"

func oktaSignInEvent(uuid, user string, published time.Time) oktaorg.Event {
	return oktaorg.Event{
		"uuid": uuid, "published": published.UTC().Format("2006-01-02T15:04:05.000Z"), "eventType": "user.session.start",
		"actor":   map[string]any{"id": "00u" + uuid, "type": "User", "alternateId": user},
		"client":  map[string]any{"ipAddress": "127.0.0.1", "userAgent": map[string]any{"rawUserAgent": goUA, "os": "Mac OS X", "browser": "UNKNOWN"}},
		"outcome": map[string]any{"result": "SUCCESS"},
	}
}

// waitSignIns waits until the verifier has stored n Okta sign-in events.
func waitSignIns(t *testing.T, v *verifier, n int) []*adminv1.OktaSignIn {
	t.Helper()
	admin, ctx := v.admin()
	deadline := time.Now().Add(30 * time.Second)
	for {
		got, err := admin.ListOktaSignIns(ctx, &adminv1.ListOktaSignInsRequest{})
		if err == nil && len(got.GetSignIns()) == n {
			return got.GetSignIns()
		}
		if time.Now().After(deadline) {
			t.Fatalf("Okta sign-ins: %v, %v; want %d", got.GetSignIns(), err, n)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestOktaSystemLogEndToEnd: the real verifier, reading a fake Okta org
// over TLS trusted through SSL_CERT_FILE, matches Okta's sign-in to the
// allow before it, alerts on a Mac sign-in Clearance never saw, and across
// restarts neither loses an event nor counts one twice.
func TestOktaSystemLogEndToEnd(t *testing.T) {
	org := oktaorg.New()
	defer org.Close()
	org.AddToken("e2e-read-only", oktaorg.Scopes("okta.users.read", "okta.groups.read", "okta.logs.read", "okta.apps.read"))
	// Ada exists in Okta only: no SCIM. The API sync brings her in, and
	// --scim-users required refuses whoever it has not.
	org.PutUser(oktaorg.User{ID: "00uada", Login: e2eUser})
	org.PutGroup("00geng", "Engineering")
	org.SetMember("00geng", "00uada", true)
	dir := t.TempDir()
	caFile := filepath.Join(dir, "okta-ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: org.Server.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	// The verifier trusts the org through the system roots, as in production.
	t.Setenv("SSL_CERT_FILE", caFile)
	tokenFile := filepath.Join(dir, "okta.token")
	if err := os.WriteFile(tokenFile, []byte("e2e-read-only\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	dataDir := filepath.Join(dir, "verifier")
	oktaKey, oktaCert, oktaCertFile := oktaSigner(t, dir)
	ssoAddr, presenceAddr := freePort(t), freePort(t)
	_, presencePort, _ := net.SplitHostPort(presenceAddr)
	start := func() *verifier {
		return startSSOVerifier(t, dataDir, ssoAddr, "--okta-request-cert", oktaCertFile, "--agent-presence-port", presencePort,
			"--okta-org-url", org.URL(), "--okta-api-token-file", tokenFile, "--scim-users", "required")
	}
	v := start()
	secret := v.enrollSecret()
	_, sock, _ := startStandIn(t, dir, compliantMac)
	agent := startProc(t, "clearance-agent", agentRun(dir, v.grpcAddr, filepath.Join(dataDir, "ca.pem"), secret, sock,
		"--interval", "1h", "--presence-listen", presenceAddr)...)
	waitCompliant(t, v)
	waitLog(t, agent.logs, "the agent learning the presence URL", "presence url set", e2eSSOPublic+"/saml/presence")

	// 1. Ada, synced from Okta's API, signs in through Clearance.
	waitOktaUser(t, v, true)
	sp, idpCertPEM := oktaOrg(t, dataDir, oktaKey, oktaCert)
	browser := newPresenceBrowser(t, v, ssoAddr)
	r := sp.NewRequest(e2eUser)
	u, err := sp.RedirectURL(r)
	if err != nil {
		t.Fatal(err)
	}
	okAtOkta(t, sp, idpCertPEM, browser.follow(u), r.ID, r.RelayState)

	// 2. Okta logs her session, and one for a Mac that never came to
	// Clearance. The verifier reads them at its next start (and every
	// minute while it runs).
	now := time.Now()
	org.AddEvent(oktaSignInEvent("ev-ada", e2eUser, now))
	org.AddEvent(oktaSignInEvent("ev-mallory", "mallory@example.com", now.Add(time.Second)))
	v.stop()
	v = start()
	got := waitSignIns(t, v, 2)
	for _, e := range got {
		switch e.GetUuid() {
		case "ev-ada":
			if e.GetUnmatched() || e.GetDecisionId() == 0 {
				t.Errorf("Ada's sign-in %v: want matched to her allow", e)
			}
		case "ev-mallory":
			if !e.GetUnmatched() {
				t.Errorf("Mallory's sign-in %v: want the alert", e)
			}
		}
	}
	waitLog(t, v.logs, "the alert", "okta_unmatched_signin", "mallory@example.com")
	if strings.Contains(v.logs.String(), "ev-ada") {
		t.Error("Ada's matched sign-in raised an alert")
	}

	// 3. Another restart: Okta now serves an event published earlier
	// than those read, and Mallory's again. Only the new one is stored
	// and alerted on.
	org.AddEvent(oktaSignInEvent("ev-late", "hank@example.com", now.Add(-time.Minute)))
	org.AddEvent(oktaSignInEvent("ev-mallory", "mallory@example.com", now.Add(time.Second)))
	v.stop()
	v = start()
	waitSignIns(t, v, 3)
	waitLog(t, v.logs, "the alert for the late event", "okta_unmatched_signin", "hank@example.com")
	time.Sleep(500 * time.Millisecond)
	if n := strings.Count(v.logs.String(), "okta_unmatched_signin"); n != 1 {
		t.Errorf("%d alerts after the restart, want 1 (Mallory's was counted before)", n)
	}
	admin, ctx := v.admin()
	alerts, err := admin.ListOktaSignIns(ctx, &adminv1.ListOktaSignInsRequest{UnmatchedOnly: true})
	if err != nil || len(alerts.GetSignIns()) != 2 {
		t.Errorf("alerts %v, %v; want Mallory's and Hank's", alerts.GetSignIns(), err)
	}
	st, err := admin.OktaStatus(ctx, &adminv1.OktaStatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range st.GetCapabilities() {
		if c.GetState() != adminv1.OktaCapabilityState_OKTA_CAPABILITY_STATE_ON {
			t.Errorf("OktaStatus %s: %s %s", c.GetName(), c.GetState(), c.GetDetail())
		}
	}

	// 4. Okta deactivates Ada. The sync at the next start reads it, and
	// her next sign-in is denied. Three restarts left one record of her.
	org.SetUserStatus("00uada", "DEPROVISIONED")
	v.stop()
	v = start()
	waitOktaUser(t, v, false)
	browser = newPresenceBrowser(t, v, ssoAddr)
	r = sp.NewRequest(e2eUser)
	if u, err = sp.RedirectURL(r); err != nil {
		t.Fatal(err)
	}
	denied(t, browser.follow(u), "user_deactivated", "Your account has been turned off")
	admin, ctx = v.admin()
	users, err := admin.ListUsers(ctx, &adminv1.ListUsersRequest{})
	if err != nil || len(users.GetUsers()) != 1 || users.GetUsers()[0].GetSource() != "okta_api" {
		t.Errorf("users %v, %v; want Ada once, from the API sync", users.GetUsers(), err)
	}
	if strings.Contains(v.logs.String(), "e2e-read-only") {
		t.Error("the verifier log shows the Okta API token")
	}
	if bad := org.Invalid(); len(bad) > 0 {
		t.Errorf("requests Okta's OpenAPI description refuses: %v", bad)
	}
}

// waitOktaUser waits until the verifier's user store has Ada, synced from
// Okta's API, active or not as asked.
func waitOktaUser(t *testing.T, v *verifier, active bool) {
	t.Helper()
	admin, ctx := v.admin()
	deadline := time.Now().Add(within)
	for {
		got, err := admin.GetUser(ctx, &adminv1.GetUserRequest{User: e2eUser})
		if err == nil && got.GetUser().GetActive() == active && got.GetUser().GetSource() == "okta_api" && len(got.GetGroups()) == 1 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("Ada never synced as active=%v: %v %v", active, got, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
