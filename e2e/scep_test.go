package e2e

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/clearance/clearance/internal/oktasim"
	"github.com/clearance/clearance/internal/osquerysim"
	"github.com/clearance/clearance/internal/protoagent"
	"github.com/clearance/clearance/internal/testkit"
	adminv1 "github.com/clearance/clearance/proto/gen/clearance/admin/v1"
	agentv1 "github.com/clearance/clearance/proto/gen/clearance/agent/v1"
)

// hardwareURIPrefix is the SAN URI scheme a browser certificate names its
// Mac by, written out here as the user-scope profile and DESIGN.md say.
const hardwareURIPrefix = "urn:device:apple:uuid:"

// scepclientBin is micromdm's scepclient as `make tools` pins it in ./bin:
// an independent SCEP client. Missing, the test fails rather than skips.
func scepclientBin(t *testing.T) string {
	t.Helper()
	return testkit.RequireTool(t, "scepclient")
}

// scepMac is one enrollment as the Mac's SCEP client makes it: openssl
// writes key.pem (PKCS#1, which scepclient reads) and csr.pem beside it
// (scepclient reuses an existing csr.pem, and cannot itself put a SAN URI
// or a challengePassword in one); scepclient writes client.pem.
type scepMac struct {
	t   *testing.T
	dir string
}

func newSCEPMac(t *testing.T, bits int, uuid, challenge string) *scepMac {
	t.Helper()
	openssl := testkit.RequireTool(t, "openssl")
	m := &scepMac{t: t, dir: t.TempDir()}
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(openssl, args...).CombinedOutput(); err != nil {
			t.Fatalf("openssl %v: %v\n%s", args, err, out)
		}
	}
	run("genrsa", "-traditional", "-out", m.path("key.pem"), fmt.Sprint(bits))
	cnf := "[req]\nprompt = no\ndistinguished_name = dn\nattributes = attrs\nreq_extensions = ext\n" +
		"[dn]\nCN = Clearance browser\n" +
		"[attrs]\nchallengePassword = " + challenge + "\n" +
		"[ext]\nsubjectAltName = URI:" + hardwareURIPrefix + uuid + "\n"
	if err := os.WriteFile(m.path("req.cnf"), []byte(cnf), 0o600); err != nil {
		t.Fatal(err)
	}
	run("req", "-new", "-sha256", "-key", m.path("key.pem"), "-config", m.path("req.cnf"), "-out", m.path("csr.pem"))
	return m
}

func (m *scepMac) path(name string) string { return filepath.Join(m.dir, name) }

// enroll runs scepclient against the verifier's /scep over HTTPS, trusting
// ca.pem through SSL_CERT_FILE. -key-encipherment-selector makes it encrypt
// to the RSA RA certificate only (the device CA and root are ECDSA).
func (m *scepMac) enroll(v *verifier, ssoAddr string) (string, error) {
	m.t.Helper()
	cmd := exec.Command(scepclientBin(m.t),
		"-server-url", "https://"+ssoAddr+"/scep",
		"-private-key", m.path("key.pem"),
		"-certificate", m.path("client.pem"),
		"-key-encipherment-selector")
	cmd.Env = append(os.Environ(), "SSL_CERT_FILE="+filepath.Join(v.dataDir, "ca.pem"))
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// issued enrolls and checks what the Mac and the sign-in gate rely on: the
// SAN names the Mac, the EKU is client auth only, the key is the Mac's.
func (m *scepMac) issued(v *verifier, ssoAddr, uuid string) *x509.Certificate {
	t := m.t
	t.Helper()
	if out, err := m.enroll(v, ssoAddr); err != nil {
		t.Fatalf("scepclient: %v\n%s", err, out)
	}
	c, _ := readCert(t, m.path("client.pem")) // what scepclient wrote
	if len(c.URIs) != 1 || c.URIs[0].String() != hardwareURIPrefix+uuid {
		t.Errorf("SAN URIs %v, want [%s%s]", c.URIs, hardwareURIPrefix, uuid)
	}
	if len(c.DNSNames)+len(c.EmailAddresses)+len(c.IPAddresses) != 0 {
		t.Errorf("other SANs: %v %v %v", c.DNSNames, c.EmailAddresses, c.IPAddresses)
	}
	if len(c.ExtKeyUsage) != 1 || c.ExtKeyUsage[0] != x509.ExtKeyUsageClientAuth {
		t.Errorf("EKU %v, want client auth only", c.ExtKeyUsage)
	}
	if !m.key().Public().(*rsa.PublicKey).Equal(c.PublicKey) {
		t.Error("the certificate is not for the Mac's key")
	}
	return c
}

func (m *scepMac) key() *rsa.PrivateKey {
	m.t.Helper()
	b, err := os.ReadFile(m.path("key.pem"))
	if err != nil {
		m.t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		m.t.Fatal("key.pem holds no PEM block")
	}
	k, err := x509.ParsePKCS1PrivateKey(blk.Bytes)
	if err != nil {
		m.t.Fatal(err)
	}
	return k
}

// refused asserts a SCEP failure that scepclient reads as one, and no
// certificate.
func (m *scepMac) refused(v *verifier, ssoAddr string) {
	m.t.Helper()
	out, err := m.enroll(v, ssoAddr)
	var exit *exec.ExitError
	if !errors.As(err, &exit) {
		m.t.Fatalf("scepclient: err = %v, want a failure exit\n%s", err, out)
	}
	if !strings.Contains(out, "request failed, failInfo: badRequest") {
		m.t.Errorf("scepclient output shows no SCEP badRequest failure:\n%s", out)
	}
	if _, err := os.Stat(m.path("client.pem")); !errors.Is(err, os.ErrNotExist) {
		m.t.Errorf("a certificate arrived: %v", err)
	}
}

// tlsCert is the certificate and key as the Mac's keychain hands them to
// the browser, with the device CA (from the agent's chain) behind the leaf.
func (m *scepMac) tlsCert(agentStateDir string) tls.Certificate {
	m.t.Helper()
	leaf, err := os.ReadFile(m.path("client.pem"))
	if err != nil {
		m.t.Fatal(err)
	}
	chain, err := os.ReadFile(filepath.Join(agentStateDir, "chain.pem"))
	if err != nil {
		m.t.Fatal(err)
	}
	key, err := os.ReadFile(m.path("key.pem"))
	if err != nil {
		m.t.Fatal(err)
	}
	c, err := tls.X509KeyPair(append(append(leaf, '\n'), chain...), key)
	if err != nil {
		m.t.Fatalf("browser certificate and key: %v", err)
	}
	return c
}

func serialHex(c *x509.Certificate) string { return c.SerialNumber.Text(16) }

func sha1Hex(c *x509.Certificate) string {
	s := sha1.Sum(c.Raw)
	return hex.EncodeToString(s[:])
}

// browserCerts lists the device's browser certificates by serial.
func browserCerts(t *testing.T, v *verifier, deviceID string) map[string]*adminv1.BrowserCertificate {
	t.Helper()
	admin, ctx := v.admin()
	list, err := admin.ListBrowserCertificates(ctx, &adminv1.ListBrowserCertificatesRequest{DeviceId: deviceID})
	if err != nil {
		t.Fatalf("ListBrowserCertificates(%s): %v", deviceID, err)
	}
	m := map[string]*adminv1.BrowserCertificate{}
	for _, c := range list.GetCertificates() {
		m[c.GetSerial()] = c
	}
	return m
}

// keychainFixture writes the compliant Mac's fixture with certs added to
// user's login keychain, and waits until the stand-in has reloaded it.
func keychainFixture(t *testing.T, osq *proc, fixture string, base osquerysim.Fixture, user string, certs ...*x509.Certificate) {
	t.Helper()
	fx := osquerysim.Fixture{Description: base.Description, Tables: map[string][]osquerysim.Row{}}
	for name, rows := range base.Tables {
		fx.Tables[name] = append([]osquerysim.Row(nil), rows...)
	}
	for _, c := range certs {
		fx.Tables["certificates"] = append(fx.Tables["certificates"],
			osquerysim.CertificateRow(c, "/Users/"+user+"/Library/Keychains/login.keychain-db"))
	}
	b, err := json.Marshal(fx)
	if err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(t.TempDir(), "mac.json")
	if err := os.WriteFile(src, b, 0o600); err != nil {
		t.Fatal(err)
	}
	flipMac(t, osq, fixture, src)
}

// waitLog waits (the log is copied from a pipe) for a line of log holding
// every one of parts.
func waitLog(t *testing.T, log *syncBuffer, what string, parts ...string) {
	t.Helper()
	if !testkit.Poll(5*time.Second, func() bool { return log.HasLine(parts...) }) {
		t.Errorf("no log line for %s with %q", what, parts)
	}
}

// answerChecks answers every CheckNow on st with a passing report that
// lists no keychain certificate: a Mac whose agent has seen none.
func answerChecks(a *protoagent.Agent, st *protoagent.Stream, seq uint64) {
	st.AnswerChecks(seq, func(seq uint64, nonce []byte) *agentv1.SignedReport {
		return protoagent.Sign(a.Key, a.Report(st.PolicySet, seq, time.Now(), nonce, agentv1.PolicyStatus_POLICY_STATUS_PASS))
	})
}

// TestBrowserCertificateEndToEnd enrolls a Mac's browser certificate with
// micromdm's scepclient against the real verifier, and signs in to Okta
// with it: refused until the Mac's real agent has seen it in a user
// keychain (through the osquery stand-in), allowed by "Check again" once it
// has; a certificate minted for another Mac's UUID is refused, and so is
// the first one once revoked.
func TestBrowserCertificateEndToEnd(t *testing.T) {
	t.Parallel()
	scepclientBin(t)
	dir := t.TempDir()
	dataDir := filepath.Join(dir, "verifier")
	oktaKey, oktaCert, oktaCertFile := oktaSigner(t, dir)
	rnd := make([]byte, 12)
	if _, err := rand.Read(rnd); err != nil {
		t.Fatal(err)
	}
	challenge := "e2e-scep-challenge-" + hex.EncodeToString(rnd)
	ssoAddr := freePort(t)
	v := startSSOVerifier(t, dataDir, ssoAddr, "--okta-request-cert", oktaCertFile,
		"--live-check-after", liveCheckAfter.String(), "--live-check-timeout", "5s",
		"--scep-challenge", challenge, "--browser-binding", "certificate")
	secret := v.enrollSecret()

	// The Mac: the compliant fixture, whose system_info names its hardware
	// UUID, and alice logged in.
	base, err := osquerysim.LoadFixture(compliantMac)
	if err != nil {
		t.Fatal(err)
	}
	uuid := base.Tables["system_info"][0]["uuid"]
	const user = "alice"
	if uuid == "" {
		t.Fatal("the fixture names no hardware UUID")
	}
	fixture, sock, osq := startStandIn(t, dir, compliantMac)

	// The agent reports at start and then only when asked.
	stateDir := filepath.Join(dir, "agent") // where agentRun keeps the agent's state
	agent := startProc(t, "clearance-agent", agentRun(dir, v.grpcAddr, filepath.Join(dataDir, "ca.pem"), secret, sock,
		"--interval", "1h", "--presence-listen", "off")...)
	got := waitCompliant(t, v)
	deviceID := got.GetDevice().GetDeviceId()
	if h := got.GetDevice().GetFacts().GetHardwareUuid(); !strings.EqualFold(h, uuid) {
		t.Fatalf("the agent enrolled with hardware UUID %q, the fixture says %q", h, uuid)
	}

	// 1. The Mac enrolls its browser certificate with scepclient.
	mac := newSCEPMac(t, 2048, uuid, challenge)
	cert := mac.issued(v, ssoAddr, uuid)
	recorded := browserCerts(t, v, deviceID)
	switch rec := recorded[serialHex(cert)]; {
	case len(recorded) != 1 || rec == nil:
		t.Fatalf("recorded for %s: %v; want the one issued, serial %s", deviceID, recorded, serialHex(cert))
	case !strings.EqualFold(rec.GetHardwareUuid(), uuid) || rec.GetSha1() != sha1Hex(cert) || rec.GetDeviceId() != deviceID:
		t.Errorf("recorded %v; want hardware UUID %s, SHA-1 %s", rec, uuid, sha1Hex(cert))
	case !rec.GetActive() || rec.GetVouched() || rec.GetRevokeAfter() != nil:
		t.Errorf("recorded %v; want active, not yet vouched for, not revoked", rec)
	}
	waitLog(t, v.logs, "the issuance", `msg="browser certificate issued"`, "serial="+serialHex(cert))

	// Refused through the same client: a wrong challenge, an RSA-1024 key.
	newSCEPMac(t, 2048, uuid, "not-the-challenge-0123456789abcdef").refused(v, ssoAddr)
	newSCEPMac(t, 1024, uuid, challenge).refused(v, ssoAddr)
	if n := len(browserCerts(t, v, deviceID)); n != 1 {
		t.Errorf("%d browser certificates after the refusals, want 1", n)
	}
	waitLog(t, v.logs, "the wrong challenge", `msg="scep request refused"`, "reason=bad_challenge")
	waitLog(t, v.logs, "the RSA-1024 key", `msg="scep request refused"`, "reason=csr_key")

	// The browser presents the SCEP certificate at sign-in.
	sp, idpCertPEM := oktaOrg(t, dataDir, oktaKey, oktaCert)
	browser := newSSOBrowser(t, v, ssoAddr, mac.tlsCert(stateDir))
	signIn := func(b *ssoBrowser, r oktasim.Request) ssoPage {
		t.Helper()
		u, err := sp.RedirectURL(r)
		if err != nil {
			t.Fatal(err)
		}
		return b.follow(u)
	}
	refusedPage := func(p ssoPage, reason string) {
		t.Helper()
		if p.status != http.StatusForbidden {
			t.Fatalf("status %d, want 403 (%s):\n%s", p.status, reason, p.body)
		}
		if strings.Contains(p.body, "SAMLResponse") {
			t.Fatalf("the refusal page carries a SAMLResponse:\n%s", p.body)
		}
		if !strings.Contains(p.body, reason) {
			t.Errorf("the refusal page does not say %s:\n%s", reason, p.body)
		}
		waitLog(t, v.logs, "the refusal", "msg=sso_decision", "allow=false", "reason="+reason)
	}

	// 2. Before the agent has seen it in a keychain: refused.
	held := sp.NewRequest(e2eUser)
	p := signIn(browser, held)
	refusedPage(p, "cert_not_vouched")
	action, token := retryForm(t, p.body)
	if action != "/saml/sso/retry" {
		t.Errorf("Check again posts to %q, want /saml/sso/retry", action)
	}

	// 3. The certificate lands in alice's login keychain: "Check again"
	// asks the agent, whose report lists it, and the held sign-in completes.
	keychainFixture(t, osq, fixture, base, user, cert)
	resp := okAtOkta(t, sp, idpCertPEM, browser.post(action, url.Values{"token": {token}}), held.ID, held.RelayState)
	if rec := browserCerts(t, v, deviceID)[serialHex(cert)]; !rec.GetVouched() || !rec.GetActive() {
		t.Errorf("after the agent's report: %v; want vouched for and active", rec)
	}

	// 4. A certificate minted for another Mac's UUID (a leaked challenge
	// used elsewhere) is refused: that Mac's agent never reported it, even
	// once this Mac's agent has it in a keychain too.
	rootPEM := v.rootPEM()
	otherSecret := v.enrollSecret()
	other := enrollAgent(t, v.grpcAddr, rootPEM, otherSecret, "0D5E3C1A-7B2F-4E6D-9A8C-1F2E3D4C5B6A")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := other.Connect(ctx)
	if err != nil {
		t.Fatalf("connecting the other Mac: %v", err)
	}
	defer st.Close()
	if m, err := st.Exchange(protoagent.Sign(other.Key, other.Report(st.PolicySet, 1, time.Now(), nil, agentv1.PolicyStatus_POLICY_STATUS_PASS))); err != nil || m.GetAck() == nil {
		t.Fatalf("the other Mac's report: %v, %v", m, err)
	}
	go answerChecks(other, st, 1)
	otherMac := newSCEPMac(t, 2048, other.Facts.GetHardwareUuid(), challenge)
	minted := otherMac.issued(v, ssoAddr, other.Facts.GetHardwareUuid())
	if rec := browserCerts(t, v, other.DeviceID)[serialHex(minted)]; rec == nil {
		t.Fatalf("the other Mac's certificate %s is not recorded for it", serialHex(minted))
	}
	keychainFixture(t, osq, fixture, base, user, cert, minted)
	admin, actx := v.admin()
	rc, err := admin.RequestCheck(actx, &adminv1.RequestCheckRequest{DeviceId: deviceID, Timeout: durationpb.New(5 * time.Second)})
	if err != nil {
		t.Fatalf("RequestCheck: %v", err)
	}
	var listed bool
	for _, c := range rc.GetReport().GetReport().GetCertificates() {
		listed = listed || (c.GetSerial() == serialHex(minted) && c.GetSha1() == sha1Hex(minted))
	}
	if !listed {
		t.Errorf("this Mac's agent does not report the minted certificate: %v", rc.GetReport().GetReport().GetCertificates())
	}
	refusedPage(signIn(newSSOBrowser(t, v, ssoAddr, otherMac.tlsCert(stateDir)), sp.NewRequest(e2eUser)), "cert_not_vouched")

	// 5. The first certificate is revoked: refused at once.
	rv, err := admin.RevokeBrowserCertificate(actx, &adminv1.RevokeBrowserCertificateRequest{Serial: serialHex(cert), Reason: "lost laptop"})
	if err != nil {
		t.Fatalf("RevokeBrowserCertificate: %v", err)
	}
	if rv.GetCertificate().GetActive() || rv.GetCertificate().GetRevokeAfter() == nil {
		t.Errorf("revoked certificate: %v; want inactive with revoke_after set", rv.GetCertificate())
	}
	refusedPage(signIn(browser, sp.NewRequest(e2eUser)), "revoked_client_cert")

	// 6. No secret, token or SAML message reaches a log: read once both
	// programs have stopped and every line is in.
	st.Close() // the verifier's graceful stop waits for open streams
	agent.stop()
	adminToken := v.token()
	v.stop()
	secrets := map[string]string{
		"the SCEP challenge": challenge, "the enroll secret": secret, "the other enroll secret": otherSecret, "the admin token": adminToken,
		"the retry token": token, "a SAML response": resp,
		"SAML XML": "<saml", "a SAMLResponse field": "SAMLResponse",
	}
	for name, log := range map[string]string{"verifier": v.logs.String(), "agent": agent.logs.String()} {
		for what, s := range secrets {
			if strings.Contains(log, s) {
				t.Errorf("the %s log contains %s", name, what)
			}
		}
	}
}
