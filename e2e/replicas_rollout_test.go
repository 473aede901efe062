package e2e

import (
	"context"
	"net/http"
	"net/url"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/clearance/clearance/internal/oktasim"
	"github.com/clearance/clearance/internal/protoagent"
	"github.com/clearance/clearance/internal/testkit/testpg"
	adminv1 "github.com/clearance/clearance/proto/gen/clearance/admin/v1"
	agentv1 "github.com/clearance/clearance/proto/gen/clearance/agent/v1"
)

var tokenField = regexp.MustCompile(`name="token" value="([^"]+)"`)

// shownField is the digest a Continue or Resolve later form posts.
var shownField = regexp.MustCompile(`name="shown" value="([^"]+)"`)

// TestReplicasRollout runs two replicas on one PostgreSQL database: a grace
// period started at A ends at the same time at B; a Resolve later offered
// at A and chosen at B is spent on both; an exemption granted with the CLI
// lets the Mac in at B, and revoked through A's admin API no longer does.
func TestReplicasRollout(t *testing.T) {
	t.Parallel()
	dsn, _ := testpg.NewDatabaseWithPassword(t)
	dir := t.TempDir()
	policies := filepath.Join(dir, "policies.yaml")
	// FileVault (critical) has a grace period; the firewall may be resolved later.
	rolloutPolicyFile(t, policies, "    grace: 72h\n", "    allow_bypass: true\n", true)
	// Reports stay fresh enough for the whole test: no live checks.
	vA, vB, ssoA, ssoB := startReplicas(t, dir, "--database", dsn, "--policies", policies, "--live-check-after", "4m")

	// FileVault and the firewall fail; everything else passes.
	pa := reportingMac(t, vA, dsn, "5A1C0A7E-0000-4000-8000-00000000A0C3", "filevault", "firewall")
	deviceID := pa.DeviceID

	sp, idpCertPEM := oktaOrg(t, vA.dataDir, nil, nil)
	atA, atB := oneBrowser(t, vA, vB, ssoA, ssoB)
	// signIn starts a sign-in at start and brings the Mac's proof back to
	// end, as a load balancer might.
	signIn := func(start, end *ssoBrowser) (oktasim.Request, ssoPage) {
		t.Helper()
		r := sp.NewRequest(e2eUser)
		u, err := sp.RedirectURL(r)
		if err != nil {
			t.Fatal(err)
		}
		return r, end.follow(agentProof(t, start, u, pa.Key, deviceID))
	}
	graceEnds := func(v *verifier) time.Time {
		t.Helper()
		admin, actx := v.admin()
		resp, err := admin.ExplainAccess(actx, &adminv1.ExplainAccessRequest{DeviceId: deviceID})
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range resp.GetFailing() {
			if f.GetPolicyId() == "filevault" {
				return f.GetGraceEnds().AsTime()
			}
		}
		t.Fatalf("no FileVault finding: %v", resp)
		return time.Time{}
	}

	// 1. At A: FileVault warns (grace), the firewall may be resolved later.
	r, p := signIn(atA, atA)
	if p.status != http.StatusForbidden || !strings.Contains(p.body, `action="/saml/sso/resolve-later"`) || !strings.Contains(p.body, "the item marked for then will stop you signing in") {
		t.Fatalf("A's page: %d\n%s", p.status, p.body)
	}
	// The grace began at A's decision; B reads the same start.
	if a, b := graceEnds(vA), graceEnds(vB); a.IsZero() || !a.Equal(b) || a.Before(time.Now().Add(71*time.Hour)) {
		t.Fatalf("grace ends at %v on A, %v on B", a, b)
	}

	// 2. Resolve later, pressed at B, completes A's held sign-in at Okta.
	m := tokenField.FindStringSubmatch(p.body)
	if m == nil {
		t.Fatal("no token on the page")
	}
	// The page's Resolve later form posts the digest of its items too.
	shown := shownField.FindStringSubmatch(p.body)
	if shown == nil {
		t.Fatal("no digest of the page's items on the page")
	}
	okAtOkta(t, sp, idpCertPEM, atB.post("/saml/sso/resolve-later", url.Values{"token": {m[1]}, "shown": {shown[1]}}), r.ID, r.RelayState)
	if d := decisionFor(t, vA, deviceID, r.ID); !d.GetAllow() || d.GetMode() != "bypassed" {
		t.Fatalf("decision %v", d)
	}

	// 3. Spent on both: neither replica offers it again.
	for name, at := range map[string]*ssoBrowser{"A": atA, "B": atB} {
		_, p := signIn(at, at)
		if p.status != http.StatusForbidden || strings.Contains(p.body, "resolve-later") {
			t.Errorf("%s offers Resolve later again: %d\n%s", name, p.status, p.body)
		}
	}

	// 4. An exemption the CLI writes to the shared database (--direct)
	// lets the Mac in at B; revoked at A, it no longer does.
	id := lastLine(cli(t, "exemption", "grant", "--direct", "--database", dsn, "--device", deviceID, "--for", "1h", "--reason", "replacement on order"))
	r, p = signIn(atB, atB)
	okAtOkta(t, sp, idpCertPEM, p, r.ID, r.RelayState)
	if d := decisionFor(t, vB, deviceID, r.ID); d.GetMode() != "exempt" {
		t.Fatalf("exempt decision %v", d)
	}
	admin, actx := vA.admin()
	n, err := strconv.ParseInt(id, 10, 64)
	if err != nil {
		t.Fatalf("exemption grant printed %q", id)
	}
	if _, err := admin.RevokeExemption(actx, &adminv1.RevokeExemptionRequest{Id: n}); err != nil {
		t.Fatal(err)
	}
	if _, p := signIn(atB, atB); p.status != http.StatusForbidden || strings.Contains(p.body, "SAMLResponse") {
		t.Fatalf("revoked exemption still lets the Mac in at B: %d", p.status)
	}
}

// TestGraceHeldOnlyWhileEnforced: two replicas on one PostgreSQL database;
// FileVault is enforced with a grace and the Mac fails it, so its grace
// starts. Moved to warn past the grace's length, and enforced with it
// again, the Mac gets a grace from then, not a block at once; the same
// when the grace is removed for a while and given back. A start no policy
// holds is forgotten at the reload, on the database both replicas read.
func TestGraceHeldOnlyWhileEnforced(t *testing.T) {
	t.Parallel()
	const grace = 3 * time.Second
	dsn, _ := testpg.NewDatabaseWithPassword(t)
	dir := t.TempDir()
	policies := filepath.Join(dir, "policies.yaml")
	withGrace := "    grace: " + grace.String() + "\n"
	rolloutPolicyFile(t, policies, withGrace, "", false)
	vA, vB, ssoA, ssoB := startReplicas(t, dir, "--database", dsn, "--policies", policies, "--live-check-after", "4m")
	pa := reportingMac(t, vA, dsn, "5A1C0A7E-0000-4000-8000-00000000A0C9", "filevault")
	sp, _ := oktaOrg(t, vA.dataDir, nil, nil)
	atA, _ := oneBrowser(t, vA, vB, ssoA, ssoB)
	signIn := func() ssoPage {
		t.Helper()
		u, err := sp.RedirectURL(sp.NewRequest(e2eUser))
		if err != nil {
			t.Fatal(err)
		}
		return atA.follow(agentProof(t, atA, u, pa.Key, pa.DeviceID))
	}
	reload := func(filevault string) {
		t.Helper()
		rolloutPolicyFile(t, policies, filevault, "", false)
		for _, v := range []*verifier{vA, vB} {
			admin, actx := v.admin()
			if _, err := admin.ReloadPolicies(actx, &adminv1.ReloadPoliciesRequest{}); err != nil {
				t.Fatal(err)
			}
		}
	}
	graced := func(step string) {
		t.Helper()
		p := signIn()
		if p.status != http.StatusForbidden || !strings.Contains(p.body, `action="/saml/sso/continue"`) {
			t.Fatalf("%s: HTTP %d without Continue; want the grace's warning\n%s", step, p.status, p.body)
		}
	}
	graced("enforced with a grace")
	for _, away := range []struct{ step, filevault string }{
		{"moved to warn", "    enforcement: warn\n" + withGrace},
		{"its grace removed", ""},
	} {
		reload(away.filevault)
		p := signIn()
		if p.status != http.StatusForbidden {
			t.Fatalf("%s: HTTP %d", away.step, p.status)
		}
		time.Sleep(grace + time.Second)
		reload(withGrace)
		graced(away.step + " past the grace's length, then enforced with it again")
	}
	replicaLog(t, vA.logs, "A saying it forgot the grace no policy held", "grace periods forgotten", "forgotten=1")
}

// reportingMac enrolls a Mac at v with a secret of the database dsn, and has
// it report the policies failing fail, every other passing, over a stream
// that stays open for the test.
func reportingMac(t *testing.T, v *verifier, dsn, hardwareUUID string, fail ...string) *protoagent.Agent {
	t.Helper()
	secret := lastLine(cli(t, "secret", "create", "--database", dsn, "--description", "replicas"))
	pa := enrollAgent(t, v.grpcAddr, v.rootPEM(), secret, hardwareUUID)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	st, err := pa.Connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	rep := pa.Report(st.PolicySet, 1, time.Now(), nil, agentv1.PolicyStatus_POLICY_STATUS_PASS)
	for _, res := range rep.GetResults() {
		if slices.Contains(fail, res.GetPolicyId()) {
			res.Status = agentv1.PolicyStatus_POLICY_STATUS_FAIL
		}
	}
	if m, err := st.Exchange(protoagent.Sign(pa.Key, rep)); err != nil || m.GetAck() == nil {
		t.Fatalf("report not acknowledged: %v, %v", m, err)
	}
	return pa
}
