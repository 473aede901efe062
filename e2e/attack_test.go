package e2e

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/clearance/clearance/internal/oktasim"
	"github.com/clearance/clearance/internal/osquerysim"
	"github.com/clearance/clearance/pkg/presence"
)

// TestPlantedCertificateAttack replays, against the real binaries, the
// attack that certificate binding cannot stop: a browser certificate minted
// on another machine with the SCEP challenge (it ships in every copy of the
// user-scope profile) and the Mac's hardware UUID, whose certificate is
// then put into a user's keychain on the compliant Mac, so that the Mac's
// own agent vouches for it. The attacker's browser presents it from a
// machine whose loopback has no agent.
//
// With the default agent binding the attacker gets no SAMLResponse: the
// verifier does not ask for the certificate, sends the browser to the agent
// on its own loopback (where nothing listens), and a proof the attacker
// signs with the certificate's key is refused as not the device's
// (presence_bad_signature, on the page and in both logs). The same test then
// restarts the verifier with --browser-binding certificate and shows that
// mode letting the same browser in: the weaker mode, documented as such.
func TestPlantedCertificateAttack(t *testing.T) {
	t.Parallel()
	scepclientBin(t)
	dir := t.TempDir()
	dataDir := filepath.Join(dir, "verifier")
	rnd := make([]byte, 12)
	if _, err := rand.Read(rnd); err != nil {
		t.Fatal(err)
	}
	challenge := "profile-scep-challenge-" + hex.EncodeToString(rnd)
	// Okta signs its requests, as it does in production: the refused proof
	// is then on record (an unsigned one would only be counted).
	oktaKey, oktaCert, oktaCertFile := oktaSigner(t, dir)
	ssoAddr, presenceAddr := freePort(t), freePort(t)
	_, presencePort, _ := net.SplitHostPort(presenceAddr)
	grpcAddr, httpAddr := freePort(t), freePort(t)
	start := func(binding string) *verifier {
		return startVerifierOn(t, dataDir, grpcAddr, httpAddr,
			"--sso-listen", ssoAddr, "--sso-public-url", e2eSSOPublic,
			"--okta-audience", e2eAudience, "--okta-acs-url", e2eACS, "--okta-request-cert", oktaCertFile,
			"--scep-challenge", challenge, "--agent-presence-port", presencePort, "--browser-binding", binding)
	}
	v := start("agent")
	secret := v.enrollSecret()

	// The compliant Mac, its agent serving proofs of presence.
	base, err := osquerysim.LoadFixture(compliantMac)
	if err != nil {
		t.Fatal(err)
	}
	uuid := base.Tables["system_info"][0]["uuid"]
	fixture, sock, osq := startStandIn(t, dir, compliantMac)
	startProc(t, "clearance-agent", agentRun(dir, grpcAddr, filepath.Join(dataDir, "ca.pem"), secret, sock,
		"--interval", "2s", "--presence-listen", presenceAddr)...)
	got := waitCompliant(t, v)
	deviceID := got.GetDevice().GetDeviceId()

	// 1. Elsewhere, the attacker gets a certificate for the Mac's UUID with
	// the profile's challenge, and plants it in alice's keychain on the Mac.
	mac := newSCEPMac(t, 2048, uuid, challenge)
	planted := mac.issued(v, ssoAddr, uuid)
	keychainFixture(t, osq, fixture, base, "alice", planted)
	waitFor(t, "the agent to report the planted certificate", func() bool {
		return browserCerts(t, v, deviceID)[serialHex(planted)].GetVouched()
	})
	attackerCert := mac.tlsCert(filepath.Join(dir, "agent"))

	// 2. The attacker's browser, on the attacker's machine, presenting the
	// certificate.
	sp, _ := oktaOrg(t, dataDir, oktaKey, oktaCert)
	jar, _ := cookiejar.New(nil)
	atk := newSSOBrowser(t, v, ssoAddr, attackerCert)
	atk.client.Jar = jar
	r := sp.NewRequest(e2eUser)
	u, err := sp.RedirectURL(r)
	if err != nil {
		t.Fatal(err)
	}
	p := atk.follow(u)
	loc := p.location
	if p.status != http.StatusSeeOther || strings.Contains(p.body, "SAMLResponse") {
		t.Fatalf("the verifier answered the attacker with %d:\n%s", p.status, p.body)
	}
	agentURL, err := url.Parse(loc)
	if err != nil || agentURL.Host != "127.0.0.1:"+presencePort {
		t.Fatalf("sent to %q, want the agent on the browser's own loopback", loc)
	}
	// The attacker's own loopback has no agent: what their browser finds
	// there. (This test runs on the Mac, where the real agent listens; a
	// port where nothing listens stands in for the attacker's machine.)
	closed := freePort(t)
	if _, err := http.Get("http://" + closed + agentURL.RequestURI()); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("the attacker's loopback: %v, want connection refused", err)
	}

	// 3. The attacker makes the proof themselves: with the key they hold,
	// the planted certificate's (RSA, as SCEP clients need), the signature is
	// not even of the device key's kind; with an ECDSA key of their own it
	// is well formed and still not the device's.
	challengeValue, _, err := presence.ParseAgentQuery(agentURL.RawQuery)
	if err != nil {
		t.Fatal(err)
	}
	origin, _ := presence.OriginOf(e2eSSOPublic + "/saml/presence")
	stmt, err := presence.Statement{Challenge: challengeValue, DeviceID: deviceID, Origin: origin, Time: time.Now().UTC().Truncate(time.Second)}.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	digest := sha256.Sum256(append([]byte(presence.Context), stmt...))
	rsaSig, err := rsa.SignPKCS1v15(rand.Reader, mac.key(), crypto.SHA256, digest[:])
	if err != nil {
		t.Fatal(err)
	}
	p = atk.follow(e2eSSOPublic + "/saml/presence?" + presence.RedirectQuery(stmt, rsaSig))
	if p.status != http.StatusBadRequest || strings.Contains(p.body, "SAMLResponse") || !strings.Contains(p.body, "presence_malformed") {
		t.Fatalf("the proof signed with the planted certificate's key got %d:\n%s", p.status, p.body)
	}
	own, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ecSig, err := presence.SignBytes(own, stmt)
	if err != nil {
		t.Fatal(err)
	}
	p = atk.follow(e2eSSOPublic + "/saml/presence?" + presence.RedirectQuery(stmt, ecSig))
	if p.status != http.StatusForbidden || strings.Contains(p.body, "SAMLResponse") || !strings.Contains(p.body, "presence_bad_signature") {
		t.Fatalf("the forged proof got %d:\n%s", p.status, p.body)
	}
	waitLog(t, v.logs, "the refusal", "msg=sso_decision", "allow=false", "reason=presence_bad_signature", "claimed_device_id="+deviceID)
	// On record as a claim, not among the Mac's decisions: the Mac's key
	// signed nothing.
	d := decisionFor(t, v, "", r.ID)
	if d.GetAllow() || d.GetReason() != "presence_bad_signature" || d.GetBinding() != "agent" || d.GetDeviceId() != "" || d.GetClaimedDeviceId() != deviceID {
		t.Errorf("decision log: %v", d)
	}
	// Who tried to pass for the Mac: listed by the start of its id.
	if out := cli(t, "decisions", "--data-dir", v.dataDir, "--claimed", deviceID[:8], "--wide"); !strings.Contains(out, "presence_bad_signature") || !strings.Contains(out, "(claimed "+deviceID) {
		t.Errorf("decisions --claimed:\n%s", out)
	}
	// Nothing in either log says the attacker got in.
	if strings.Contains(v.logs.String(), "allow=true") {
		t.Errorf("the verifier allowed a sign-in:\n%s", v.logs.String())
	}

	// 4. The same attack under --browser-binding certificate: the verifier
	// asks for the certificate, the Mac's agent vouches for it, and the
	// attacker gets a SAMLResponse. This is why certificate binding is the
	// weaker mode.
	v.stop()
	v = start("certificate")
	r = sp.NewRequest(e2eUser)
	u, _ = sp.RedirectURL(r)
	p = newSSOBrowser(t, v, ssoAddr, attackerCert).follow(u)
	if _, resp, _, err := oktasim.ParsePostForm([]byte(p.body)); err != nil || resp == "" {
		t.Fatalf("certificate binding: the planted certificate got %d, not the response this test documents:\n%s", p.status, p.body)
	}
	if d := decisionFor(t, v, deviceID, r.ID); !d.GetAllow() || d.GetBinding() != "certificate" {
		t.Errorf("certificate binding decision: %v", d)
	}
}
