package server_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha1"
	"crypto/tls"
	"encoding/hex"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/clearance/clearance/internal/protoagent"
	adminv1 "github.com/clearance/clearance/proto/gen/clearance/admin/v1"
	agentv1 "github.com/clearance/clearance/proto/gen/clearance/agent/v1"
	"github.com/clearance/clearance/verifier/ca"
	"github.com/clearance/clearance/verifier/config"
	"github.com/clearance/clearance/verifier/storage"
)

// browserCert issues and records a browser certificate for hardwareUUID,
// as the SCEP endpoint does, and returns it as a TLS client certificate
// with the row the agent would report for it.
func (e *ssoEnv) browserCert(t *testing.T, deviceID, hardwareUUID string) (*tls.Certificate, *agentv1.KeychainCertificate) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	c, err := e.srv.CA.IssueBrowserCert(&key.PublicKey, hardwareUUID, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha1.Sum(c.Raw)
	now := e.clock.Now()
	err = e.srv.Store.RecordBrowserCert(context.Background(), storage.BrowserCert{
		Cert: storage.Cert{Serial: ca.SerialHex(c), DeviceID: deviceID, Kind: storage.CertKindBrowser,
			NotBefore: c.NotBefore, NotAfter: c.NotAfter, DER: c.Raw},
		HardwareUUID: strings.ToUpper(hardwareUUID), SHA1: hex.EncodeToString(sum[:]),
	}, nil, storage.IssueLimit{}, now, storage.AuditEvent{At: now, Actor: "test", Action: "browsercert.issue"})
	if err != nil {
		t.Fatal(err)
	}
	chain := [][]byte{c.Raw, e.srv.CA.DeviceCA().Raw}
	return &tls.Certificate{Certificate: chain, PrivateKey: key},
		&agentv1.KeychainCertificate{Serial: ca.SerialHex(c), Sha1: hex.EncodeToString(sum[:]), Path: "/Users/ada/Library/Keychains/login.keychain-db", Issuer: e.srv.CA.DeviceCA().Subject.CommonName}
}

// vouchingAgent answers every CheckNow with a passing report listing *certs.
func vouchingAgent(a *protoagent.Agent, st *protoagent.Stream, certs *[]*agentv1.KeychainCertificate) {
	answerChecks(st, func(seq uint64, nonce []byte) *agentv1.SignedReport {
		r := a.Report(st.PolicySet, seq, time.Now(), nonce, agentv1.PolicyStatus_POLICY_STATUS_PASS)
		r.Certificates = *certs
		return protoagent.Sign(a.Key, r)
	})
}

// TestBrowserCertificateVouched: a browser certificate passes the sign-in
// gate only once the Mac's agent reports it in a user keychain; one for
// another Mac, and a revoked one, are refused with their own reasons, on
// record (Okta signs the requests: refusals of unsigned ones are only
// counted, TestUnsignedRefusalsCounted).
func TestBrowserCertificateVouched(t *testing.T) {
	t.Parallel()
	e := startSSO(t, true, func(c *config.Config) { c.RequireAgentVouchedCert = true })
	a, st := e.device(t, agentv1.PolicyStatus_POLICY_STATUS_PASS, nil)
	var reported []*agentv1.KeychainCertificate
	go vouchingAgent(a, st, &reported)
	uuid := a.Facts.GetHardwareUuid()
	cert, row := e.browserCert(t, a.DeviceID, uuid)
	c := e.browser(cert)

	// Not yet in the agent's report: the live check runs and still does not list it.
	held := e.sp.NewRequest(testUser)
	p := e.redirect(t, c, held)
	noResponse(t, p)
	p.has(t, "cert_not_vouched", "Check again")
	token := hiddenToken(t, p.body)
	if !strings.Contains(e.logs.String(), "cert_vouching=not_vouched") {
		t.Error("log does not say the certificate was not vouched for")
	}

	// The agent now sees it in the keychain: Check again completes.
	reported = []*agentv1.KeychainCertificate{row}
	e.allowed(t, e.post(t, c, "/saml/sso/retry", map[string][]string{"token": {token}}), held)
	r := e.sp.NewRequest(testUser)
	e.allowed(t, e.redirect(t, c, r), r)

	// A certificate minted for another Mac's UUID (a leaked challenge used
	// elsewhere): that Mac's agent never saw it, so it does not count.
	b, bst := e.device(t, agentv1.PolicyStatus_POLICY_STATUS_PASS, nil)
	var none []*agentv1.KeychainCertificate
	go vouchingAgent(b, bst, &none)
	minted, _ := e.browserCert(t, b.DeviceID, b.Facts.GetHardwareUuid())
	p = e.redirect(t, e.browser(minted), e.sp.NewRequest(testUser))
	noResponse(t, p)
	p.has(t, "cert_not_vouched")

	// One our CA signed but never recorded (no enrolled Mac has that UUID).
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	stray, err := e.srv.CA.IssueBrowserCert(&key.PublicKey, nextUUID(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	p = e.redirect(t, e.browser(&tls.Certificate{Certificate: [][]byte{stray.Raw, e.srv.CA.DeviceCA().Raw}, PrivateKey: key}), e.sp.NewRequest(testUser))
	noResponse(t, p)
	p.has(t, "unknown_client_cert")

	// Revoked: refused at once, whatever the agent reports.
	if err := e.srv.Store.RevokeBrowserCert(context.Background(), row.Serial, "lost", e.clock.Now(), storage.AuditEvent{At: e.clock.Now(), Actor: "test", Action: "browsercert.revoke"}); err != nil {
		t.Fatal(err)
	}
	p = e.redirect(t, c, e.sp.NewRequest(testUser))
	noResponse(t, p)
	p.has(t, "revoked_client_cert")
	if ds := e.decisions(t); ds[0].Reason != "revoked_client_cert" || ds[0].DeviceID != a.DeviceID {
		t.Errorf("the refusal is not logged under the device: %+v", ds[0])
	}
	for _, reason := range []string{"cert_not_vouched", "unknown_client_cert", "revoked_client_cert"} {
		if !strings.Contains(e.logs.String(), "reason="+reason) {
			t.Errorf("log lacks reason=%s", reason)
		}
	}
}

// TestBrowserCertificateGrace: a newer certificate for the same Mac takes
// nothing from the older one while it is only issued (anyone with the SCEP
// challenge can have one issued for the Mac's UUID); once the Mac's own
// agent reports it, the older one counts for the grace period only.
func TestBrowserCertificateGrace(t *testing.T) {
	t.Parallel()
	e := startSSO(t, false, nil)
	a, st := e.device(t, agentv1.PolicyStatus_POLICY_STATUS_PASS, nil)
	old, oldKC := e.browserCert(t, a.DeviceID, a.Facts.GetHardwareUuid())
	e.clock.Add(time.Minute)
	_, newKC := e.browserCert(t, a.DeviceID, a.Facts.GetHardwareUuid()) // newer; grace 1h
	report := func(seq uint64, kcs ...*agentv1.KeychainCertificate) {
		t.Helper()
		rep := a.Report(st.PolicySet, seq, e.clock.Now(), nil, agentv1.PolicyStatus_POLICY_STATUS_PASS)
		rep.Certificates = kcs
		if m, err := st.Exchange(protoagent.Sign(a.Key, rep)); err != nil || m.GetAck() == nil {
			t.Fatalf("report %d not acked: %v %v", seq, m, err)
		}
	}
	report(2, oldKC)
	r := e.sp.NewRequest(testUser)
	e.allowed(t, e.redirect(t, e.browser(old), r), r)

	// Only issued: two hours on, the old one still counts.
	e.clock.Add(2 * time.Hour)
	report(3, oldKC)
	r = e.sp.NewRequest(testUser)
	e.allowed(t, e.redirect(t, e.browser(old), r), r)

	// The agent reports the newer one: the older one counts an hour more.
	report(4, oldKC, newKC)
	r = e.sp.NewRequest(testUser)
	e.allowed(t, e.redirect(t, e.browser(old), r), r)
	e.clock.Add(61 * time.Minute)
	report(5, oldKC, newKC)
	p := e.redirect(t, e.browser(old), e.sp.NewRequest(testUser))
	noResponse(t, p)
	p.has(t, "revoked_client_cert")
}

// TestBrowserCertificateVouchingOff: the weaker mode lets a recorded browser
// certificate through without the agent's word, and says so.
func TestBrowserCertificateVouchingOff(t *testing.T) {
	t.Parallel()
	e := startSSO(t, false, func(c *config.Config) { c.RequireAgentVouchedCert = false })
	a, _ := e.device(t, agentv1.PolicyStatus_POLICY_STATUS_PASS, nil)
	cert, _ := e.browserCert(t, a.DeviceID, a.Facts.GetHardwareUuid())
	r := e.sp.NewRequest(testUser)
	p := e.redirect(t, e.browser(cert), r)
	e.allowed(t, p, r)
	p.has(t, "require-agent-vouched-cert is off")
	if !strings.Contains(e.logs.String(), "cert_vouching=off") {
		t.Error("log does not say vouching is off")
	}
}

// TestBrowserCertificateAdmin: the security team lists a Mac's browser
// certificates, sees which its agent vouches for, and revokes one.
func TestBrowserCertificateAdmin(t *testing.T) {
	t.Parallel()
	e := startSSO(t, false, nil)
	a, st := e.device(t, agentv1.PolicyStatus_POLICY_STATUS_PASS, nil)
	_, row := e.browserCert(t, a.DeviceID, a.Facts.GetHardwareUuid())

	list := func() *adminv1.BrowserCertificate {
		t.Helper()
		resp, err := e.admin.ListBrowserCertificates(e.ctx(), &adminv1.ListBrowserCertificatesRequest{DeviceId: a.DeviceID})
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.GetCertificates()) != 1 {
			t.Fatalf("%v", resp)
		}
		return resp.GetCertificates()[0]
	}
	if c := list(); c.GetSerial() != row.Serial || !c.GetActive() || c.GetVouched() || c.GetSha1() != row.Sha1 {
		t.Fatalf("before the agent reports it: %v", c)
	}
	r := a.Report(st.PolicySet, 2, time.Now(), nil, agentv1.PolicyStatus_POLICY_STATUS_PASS)
	r.Certificates = []*agentv1.KeychainCertificate{row}
	if m, err := st.Exchange(protoagent.Sign(a.Key, r)); err != nil || m.GetAck() == nil {
		t.Fatalf("%v %v", m, err)
	}
	if c := list(); !c.GetVouched() {
		t.Fatalf("after the agent reports it: %v", c)
	}
	resp, err := e.admin.RevokeBrowserCertificate(e.ctx(), &adminv1.RevokeBrowserCertificateRequest{Serial: row.Serial, Reason: "lost laptop"})
	if err != nil || resp.GetCertificate().GetActive() || resp.GetCertificate().GetRevokedReason() != "lost laptop" {
		t.Fatalf("%v %v", resp, err)
	}
	if c := list(); c.GetActive() {
		t.Fatalf("after revocation: %v", c)
	}
	_, err = e.admin.RevokeBrowserCertificate(e.ctx(), &adminv1.RevokeBrowserCertificateRequest{Serial: "abc123"})
	checkStatus(t, err, codes.NotFound, "no browser certificate")
	_, err = e.admin.RevokeBrowserCertificate(e.ctx(), &adminv1.RevokeBrowserCertificateRequest{})
	checkStatus(t, err, codes.InvalidArgument, "serial")
	_, err = e.admin.ListBrowserCertificates(e.ctx(), &adminv1.ListBrowserCertificatesRequest{DeviceId: "nope"})
	checkStatus(t, err, codes.NotFound, "nope")
}
