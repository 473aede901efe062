package e2e

import (
	"crypto/tls"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	adminv1 "github.com/clearance/clearance/proto/gen/clearance/admin/v1"
)

// TestSignInWritesSurviveSIGKILL: with SQLite, a sign-in's request ID and
// challenge are committed without an fsync, and only its decision's
// commit makes them durable. A crash of the verifier's process must lose
// neither: killed (SIGKILL) right after sending the browser to the agent,
// and started again, the verifier still refuses the request as a replay,
// and the agent's proof of the stored challenge completes the sign-in,
// once.
func TestSignInWritesSurviveSIGKILL(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	dataDir := filepath.Join(dir, "verifier")
	certFile, org := signedOrg(t, dir)
	a := freeAddrs(t)
	flags := []string{"--okta-request-cert", certFile, "--sso-rate-limit", "0"}
	v := startVerifierCmd(t, dataDir, a, nil, flags...)
	sp, idpCertPEM := org(v.dataDir)
	admin, ctx := v.admin()
	sec, err := admin.CreateEnrollSecret(ctx, &adminv1.CreateEnrollSecretRequest{Description: "crash"})
	if err != nil {
		t.Fatal(err)
	}
	agent := streamToA(t, v, v, v, sec.GetSecret(), "5A1C0A7E-0000-4000-8000-0000000C7A54")

	r := sp.NewRequest(e2eUser)
	u, err := sp.RedirectURL(r)
	if err != nil {
		t.Fatal(err)
	}
	cookie := randomCookie()
	p := sendStart(newSSOBrowser(t, v, a.sso, tls.Certificate{}), u, nil, cookie)
	if p.status != http.StatusSeeOther {
		t.Fatalf("start: %d, want 303 to the agent:\n%.400s", p.status, p.body)
	}
	challenge := challengeOf(t, p.loc)

	// 1. The process dies with only the lazy commits of the sign-in done.
	v.kill()
	select {
	case <-agent.ended:
	case <-time.After(10 * time.Second):
		t.Fatal("the agent's stream to the killed verifier did not end")
	}

	// 2. Started again: the request is still spent, the challenge still
	// stored.
	v = startVerifierCmd(t, dataDir, a, nil, flags...)
	agent.connect(v.grpcAddr)
	waitDevice(t, v, "the agent back", within, func(g *adminv1.GetDeviceResponse) bool {
		return g.GetDevice().GetConnected() && g.GetDevice().GetSummary().GetCompliant()
	})
	b := newSSOBrowser(t, v, a.sso, tls.Certificate{})
	if again := sendStart(b, u, nil, cookie); again.status != http.StatusBadRequest || !strings.Contains(again.body, "replayed_request") || again.loc != "" {
		t.Fatalf("the request after the crash: %d Location %q, want 400 replayed_request (its ID spent before the crash):\n%.400s", again.status, again.loc, again.body)
	}
	okAtOkta(t, sp, idpCertPEM, present(t, b, agent, challenge, cookie), r.ID, r.RelayState)
	if p := present(t, b, agent, challenge, cookie); p.status != http.StatusBadRequest || !strings.Contains(p.body, "presence_replayed") {
		t.Errorf("the proof again: %d, want 400 presence_replayed:\n%.400s", p.status, p.body)
	}
	if n := decisionsFor(t, v, agent.a.DeviceID, r.ID); n != 1 {
		t.Errorf("%d decisions for the request, want 1", n)
	}
}
