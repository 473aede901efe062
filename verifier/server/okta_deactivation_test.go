package server_test

import (
	"strings"
	"testing"
	"time"

	"github.com/clearance/clearance/internal/oktaorg"
	agentv1 "github.com/clearance/clearance/proto/gen/clearance/agent/v1"
	"github.com/clearance/clearance/verifier/config"
	"github.com/clearance/clearance/verifier/oktaapi"
)

// TestOktaDeactivationLandsWithUnstorableFields: Okta deactivates a synced user
// and, in the same profile, holds a first name longer than the store keeps
// (a hostile or unusual org). The sync skips the whole record, so the
// deactivation never lands and sign-in still allows her.
func TestOktaDeactivationLandsWithUnstorableFields(t *testing.T) {
	org := oktaorg.New()
	defer org.Close()
	org.AddToken("ro-token", oktaorg.Scopes(oktaapi.ScopeUsers, oktaapi.ScopeGroups, oktaapi.ScopeLogs))
	org.PutUser(oktaorg.User{ID: "00u1", Login: testUser})
	e := startOktaSync(t, org, func(c *config.Config) { c.SCIMUsers = config.SCIMRequired })
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if u, err := e.srv.Store.GetUserByName(e.ctx(), testUser); err == nil && u.Active {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("never synced")
		}
	}
	org.PutUser(oktaorg.User{ID: "00u1", Login: testUser, FirstName: strings.Repeat("A", 600), Status: "DEPROVISIONED"})
	n := len(org.Requests())
	for len(org.Requests()) < n+6 { // several incremental reads
		time.Sleep(50 * time.Millisecond)
	}
	a, _ := e.device(t, agentv1.PolicyStatus_POLICY_STATUS_PASS, nil)
	c := e.browser(deviceCert(a))
	r := e.sp.NewRequest(testUser)
	e.redirect(t, c, r)
	ds := e.decisions(t)
	if len(ds) == 0 || ds[0].Allow {
		t.Errorf("sign-in allowed (%s) for a user Okta deactivated, after %d more Okta requests", ds[0].Reason, len(org.Requests())-n)
	}
}
