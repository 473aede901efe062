package e2e

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/clearance/clearance/internal/oktasim"
	adminv1 "github.com/clearance/clearance/proto/gen/clearance/admin/v1"
)

// groupPolicy fails on every Mac, but applies only to Engineering.
const groupPolicy = `
  - id: engineering-only
    name: Engineering build tools check
    query: SELECT 1 WHERE 1 = 0
    resolution: Ask the platform team.
    groups: [Engineering]
`

// peopleRig is a verifier with Okta's SCIM client, the real agent on a
// compliant Mac, Ada and Bob provisioned and Bob in Engineering.
type peopleRig struct {
	v        *verifier
	okta     *oktaSCIM
	deviceID string
	ada, bob string
	signIn   func(user string) (oktasim.Request, ssoPage)
	okay     func(req oktasim.Request, p ssoPage)
}

func newPeopleRig(t *testing.T, flags ...string) *peopleRig {
	t.Helper()
	dir := t.TempDir()
	dataDir := filepath.Join(dir, "verifier")
	base, err := os.ReadFile(policiesFile(t))
	if err != nil {
		t.Fatal(err)
	}
	policies := filepath.Join(dir, "policies.yaml")
	if err := os.WriteFile(policies, append(base, groupPolicy...), 0o644); err != nil {
		t.Fatal(err)
	}
	oktaKey, oktaCert, oktaCertFile := oktaSigner(t, dir)
	ssoAddr, presenceAddr := freePort(t), freePort(t)
	_, presencePort, _ := net.SplitHostPort(presenceAddr)
	v := startSSOVerifier(t, dataDir, ssoAddr, append([]string{"--okta-request-cert", oktaCertFile, "--policies", policies,
		"--live-check-after", liveCheckAfter.String(), "--live-check-timeout", "5s",
		"--agent-presence-port", presencePort, "--sso-rate-exempt", "127.0.0.1"}, flags...)...)
	secret := v.enrollSecret()
	token := lastLine(cli(t, "scim", "token", "create", "--data-dir", dataDir))

	_, sock, _ := startStandIn(t, dir, compliantMac)
	agent := startProc(t, "clearance-agent", agentRun(dir, v.grpcAddr, filepath.Join(dataDir, "ca.pem"), secret, sock,
		"--interval", "1h", "--presence-listen", presenceAddr)...)
	got := waitDevice(t, v, "a report", within, func(g *adminv1.GetDeviceResponse) bool {
		return g.GetDevice().GetConnected() && g.GetDevice().GetLastSeq() > 0
	})
	waitLog(t, agent.logs, "the agent learning the presence URL", "presence url set", e2eSSOPublic+"/saml/presence")

	// Okta provisions Ada and Bob and pushes Engineering with Bob in it.
	okta := newOktaSCIM(t, v, ssoAddr, token)
	rig := &peopleRig{v: v, okta: okta, deviceID: got.GetDevice().GetDeviceId()}
	rig.ada = okta.provision(e2eUser, "Ada", "Lovelace")
	rig.bob = okta.provision("bob@example.com", "Bob", "Example")
	r := okta.want(okta.do("POST", "/Groups", `{"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "Engineering", "members": []}`), 201, "push group")
	okta.want(okta.do("PATCH", "/Groups/"+r.body["id"].(string), fmt.Sprintf(patchOp, fmt.Sprintf(
		`{"op": "add", "path": "members", "value": [{"value": %q, "display": "bob@example.com"}]}`, rig.bob))), 204, "add Bob")

	sp, idpCertPEM := oktaOrg(t, dataDir, oktaKey, oktaCert)
	browser := newPresenceBrowser(t, v, ssoAddr)
	var last time.Time
	rig.signIn = func(user string) (oktasim.Request, ssoPage) {
		t.Helper()
		// At a person's pace: the agent signs at most four proofs a
		// second and answers 429 beyond.
		time.Sleep(time.Until(last.Add(300 * time.Millisecond)))
		last = time.Now()
		req := sp.NewRequest(user)
		u, err := sp.RedirectURL(req)
		if err != nil {
			t.Fatal(err)
		}
		return req, browser.follow(u)
	}
	rig.okay = func(req oktasim.Request, p ssoPage) {
		t.Helper()
		// okAtOkta checks the NameID is e2eUser: Ada's sign-ins only.
		okAtOkta(t, sp, idpCertPEM, p, req.ID, req.RelayState)
	}
	return rig
}

func denied(t *testing.T, p ssoPage, reason, sentence string) {
	t.Helper()
	if p.status != http.StatusForbidden || !strings.Contains(p.body, reason) || !strings.Contains(p.body, sentence) {
		t.Fatalf("want a %s denial saying %q; got %d:\n%s", reason, sentence, p.status, p.body)
	}
}

// TestSCIMPeopleEndToEnd: with the real agent and Okta's SCIM client, a
// user Okta deactivates is denied at the next sign-in, a group-scoped
// policy fails only its group's members, and a user not bound to the Mac
// is let through under --user-binding warn with the mismatch logged; the
// audit log answers what changed for each of them.
func TestSCIMPeopleEndToEnd(t *testing.T) {
	t.Parallel()
	rig := newPeopleRig(t, "--user-binding", "warn")
	v, okta, ada, deviceID := rig.v, rig.okta, rig.ada, rig.deviceID

	// 1. Ada is not in Engineering: its failing policy does not hold her.
	// She is bound to no Mac: warn lets her in and logs it.
	req, p := rig.signIn(e2eUser)
	rig.okay(req, p)
	waitLog(t, v.logs, "the binding mismatch", "msg=sso_decision", "allow=true", "user="+e2eUser, "user_not_bound=true")

	// 2. Bob is in Engineering: the same Mac fails him on that policy.
	_, p = rig.signIn("bob@example.com")
	denied(t, p, "policy_failed", "Engineering build tools check")

	// 3. Okta deactivates Ada: her next sign-in is denied with its reason.
	okta.want(okta.do("PATCH", "/Users/"+ada, fmt.Sprintf(patchOp, `{"op": "replace", "value": {"active": false}}`)), 200, "deactivate")
	_, p = rig.signIn(e2eUser)
	denied(t, p, "user_deactivated", "Your account has been turned off")

	// 4. The decision log says so.
	admin, ctx := v.admin()
	list, err := admin.ListDecisions(ctx, &adminv1.ListDecisionsRequest{DeviceId: deviceID})
	if err != nil {
		t.Fatal(err)
	}
	var reasons []string
	for _, d := range list.GetDecisions() {
		reasons = append([]string{d.GetUsername() + ":" + d.GetReason()}, reasons...)
	}
	want := e2eUser + ":allowed bob@example.com:policy_failed " + e2eUser + ":user_deactivated"
	if strings.Join(reasons, " ") != want {
		t.Errorf("decisions = %v, want %s", reasons, want)
	}
	// Who signed in from a Mac that is not theirs: Ada, let in by warn,
	// and Bob, refused for a policy; not Ada's third, refused for her
	// account before her binding was judged.
	unbound, err := admin.ListDecisions(ctx, &adminv1.ListDecisionsRequest{UserNotBound: true})
	if err != nil {
		t.Fatal(err)
	}
	reasons = nil
	for _, d := range unbound.GetDecisions() {
		if d.GetUserNotBound() {
			reasons = append([]string{d.GetUsername() + ":" + d.GetReason()}, reasons...)
		}
	}
	if want := e2eUser + ":allowed bob@example.com:policy_failed"; strings.Join(reasons, " ") != want || len(unbound.GetDecisions()) != 2 {
		t.Errorf("ListDecisions user_not_bound = %v, want %s", reasons, want)
	}
	out := cli(t, "decisions", "--data-dir", v.dataDir, "--not-bound", "--wide")
	if !strings.Contains(out, "allowed (not bound)") || !strings.Contains(out, "policy_failed: engineering-only (not bound)") || strings.Contains(out, "user_deactivated") {
		t.Errorf("decisions --not-bound:\n%s", out)
	}

	// 5. Reactivated, she signs in again.
	okta.want(okta.do("PATCH", "/Users/"+ada, fmt.Sprintf(patchOp, `{"op": "replace", "value": {"active": true}}`)), 200, "reactivate")
	req, p = rig.signIn(e2eUser)
	rig.okay(req, p)

	// 6. What changed for Ada, and for Bob: the audit log by person, as
	// Okta's SCIM client left it, each row naming whom it is about.
	for _, tc := range []struct {
		user, name string
		want       []string
	}{
		{strings.ToUpper(e2eUser), e2eUser, []string{"user.reactivate", "user.deactivate", "user.create"}},
		{rig.bob, "bob@example.com", []string{"group.patch", "user.create"}},
	} {
		lines := strings.Split(strings.TrimSpace(cli(t, "audit", "--data-dir", v.dataDir, "--user", tc.user, "--wide")), "\n")
		var got []string
		for _, l := range lines[1:] {
			got = append(got, strings.Fields(l)[3])
			if !strings.Contains(l, "  "+tc.name+"  ") {
				t.Errorf("audit --user %s: row %q does not name %s", tc.user, l, tc.name)
			}
		}
		if strings.Join(got, " ") != strings.Join(tc.want, " ") || !strings.Contains(lines[0], "SUBJECT") {
			t.Errorf("audit --user %s:\n%s\nwant actions %v", tc.user, strings.Join(lines, "\n"), tc.want)
		}
	}
}

// TestUserBindingEnforce: under --user-binding enforce, a user signs in
// only from a Mac assigned to them; the admin API assigns and tells.
func TestUserBindingEnforce(t *testing.T) {
	t.Parallel()
	rig := newPeopleRig(t, "--user-binding", "enforce", "--scim-users", "required")
	admin, ctx := rig.v.admin()
	okta := rig.okta
	// The Mac is Bob's.
	if _, err := admin.AssignDevice(ctx, &adminv1.AssignDeviceRequest{DeviceId: rig.deviceID, User: "bob@example.com"}); err != nil {
		t.Fatal(err)
	}
	// 1. Ada, on Bob's Mac, is denied.
	_, p := rig.signIn(e2eUser)
	denied(t, p, "user_not_bound", "because it isn&#39;t assigned to you")
	// 2. A username Okta never provisioned is denied too.
	_, p = rig.signIn("mallory@example.com")
	denied(t, p, "user_not_provisioned", "set up for sign-in from Macs")
	// 3. Assigned to Ada as well, the Mac lets her in.
	if _, err := admin.AssignDevice(ctx, &adminv1.AssignDeviceRequest{DeviceId: rig.deviceID, User: rig.ada}); err != nil {
		t.Fatal(err)
	}
	req, p := rig.signIn(e2eUser)
	rig.okay(req, p)

	// 4. Alice, the Mac's console user, needs no assignment: the default
	// --user-binding-rule binds local account alice to alice@example.com.
	okta.provision("alice@example.com", "Alice", "Example")
	if _, p := rig.signIn("alice@example.com"); p.status != http.StatusOK || !strings.Contains(p.body, "SAMLResponse") {
		t.Fatalf("alice on her own Mac: %d\n%s", p.status, p.body)
	}

	// GetUser tells who Ada is: groups, Macs, last sign-in.
	u, err := admin.GetUser(ctx, &adminv1.GetUserRequest{User: e2eUser})
	if err != nil {
		t.Fatal(err)
	}
	if len(u.GetDevices()) != 1 || u.GetDevices()[0].GetDeviceId() != rig.deviceID || !u.GetLastSignInAllowed() || u.GetLastSignInAt() == nil {
		t.Errorf("GetUser(ada) = %v", u)
	}
	b, err := admin.GetUser(ctx, &adminv1.GetUserRequest{User: rig.bob})
	if err != nil || len(b.GetGroups()) != 1 || b.GetGroups()[0] != "Engineering" {
		t.Errorf("GetUser(bob) = %v, %v", b, err)
	}
	gs, err := admin.ListGroups(ctx, &adminv1.ListGroupsRequest{})
	if err != nil || gs.GetTotal() != 1 || gs.GetGroups()[0].GetMembers() != 1 {
		t.Errorf("ListGroups = %v, %v", gs, err)
	}
	us, err := admin.ListUsers(ctx, &adminv1.ListUsersRequest{PageSize: 1})
	if err != nil || us.GetTotal() != 3 || len(us.GetUsers()) != 1 || us.GetNextPageToken() == "" {
		t.Errorf("ListUsers = %v, %v", us, err)
	}
	// Unassigned again, she is denied again.
	if _, err := admin.UnassignDevice(ctx, &adminv1.UnassignDeviceRequest{DeviceId: rig.deviceID, User: rig.ada}); err != nil {
		t.Fatal(err)
	}
	_, p = rig.signIn(e2eUser)
	denied(t, p, "user_not_bound", "because it isn&#39;t assigned to you")
}
