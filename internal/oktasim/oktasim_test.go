package oktasim_test

import (
	"bytes"
	"compress/flate"
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/beevik/etree"
	"github.com/crewjam/saml"
	dsig "github.com/russellhaering/goxmldsig"

	"github.com/clearance/clearance/internal/oktasim"
	"github.com/clearance/clearance/internal/testkit"
	"github.com/clearance/clearance/internal/testkit/testpki"
)

const (
	oktaEntityID = "https://www.okta.com/saml2/service-provider/spabcdefghijklmnopqr"
	oktaACS      = "https://example.okta.com/sso/saml2/0oa1234abcdEFGH5678"
	idpBase      = "https://clearance.example.com:8443"
	idpSSO       = idpBase + "/saml/sso"
	idpMetadata  = idpBase + "/saml/metadata"
	username     = "alice@example.com"
)

// keyPair is a throwaway RSA-2048 key with a self-signed certificate.
type keyPair struct {
	key  *rsa.PrivateKey
	cert *x509.Certificate
}

func (k keyPair) certPEM() []byte {
	return testpki.PEM(k.cert)
}

var (
	keysOnce sync.Once
	keys     [3]keyPair // 0: our IdP, 1: another IdP, 2: Okta's request signing
)

func testKeys(t *testing.T) [3]keyPair {
	t.Helper()
	keysOnce.Do(func() {
		for i, cn := range []string{"clearance idp", "impostor idp", "okta sp"} {
			id := testpki.SelfSigned(t, testpki.CN(cn), testpki.Serial(int64(i+1)), testpki.RSA())
			keys[i] = keyPair{id.Key.(*rsa.PrivateKey), id.Cert}
		}
	})
	return keys
}

func mustURL(s string) url.URL {
	u, err := url.Parse(s)
	if err != nil {
		panic(err)
	}
	return *u
}

// spProvider tells crewjam about Okta as our SP.
type spProvider struct{}

func (spProvider) GetServiceProvider(_ *http.Request, id string) (*saml.EntityDescriptor, error) {
	if id != oktaEntityID {
		return nil, os.ErrNotExist
	}
	return &saml.EntityDescriptor{
		EntityID: oktaEntityID,
		SPSSODescriptors: []saml.SPSSODescriptor{{
			SSODescriptor: saml.SSODescriptor{
				RoleDescriptor: saml.RoleDescriptor{ProtocolSupportEnumeration: "urn:oasis:names:tc:SAML:2.0:protocol"},
				NameIDFormats:  []saml.NameIDFormat{saml.NameIDFormat(oktasim.NameIDFormatUnspecified)},
			},
			AssertionConsumerServices: []saml.IndexedEndpoint{{Binding: saml.HTTPPostBinding, Location: oktaACS, Index: 0}},
		}},
	}, nil
}

// sessionFor answers every request with a signed-in user.
type sessionFor string

func (s sessionFor) GetSession(_ http.ResponseWriter, _ *http.Request, _ *saml.IdpAuthnRequest) *saml.Session {
	return &saml.Session{ID: "sess1", Index: "idx1", CreateTime: time.Now(), NameID: string(s), NameIDFormat: oktasim.NameIDFormatUnspecified}
}

func newIdP(kp keyPair, sso string) *saml.IdentityProvider {
	return &saml.IdentityProvider{
		Key:                     kp.key,
		Certificate:             kp.cert,
		MetadataURL:             mustURL(idpMetadata),
		SSOURL:                  mustURL(sso),
		ServiceProviderProvider: spProvider{},
		SessionProvider:         sessionFor(username),
		SignatureMethod:         dsig.RSASHA256SignatureMethod,
	}
}

func newSP(t *testing.T, now time.Time, mod func(*oktasim.Options)) *oktasim.SP {
	k := testKeys(t)
	o := oktasim.Options{
		EntityID:  oktaEntityID,
		ACSURL:    oktaACS,
		IdPSSOURL: idpSSO,
		IdPIssuer: idpMetadata,
		IdPCert:   k[0].cert,
		Now:       func() time.Time { return now },
	}
	if mod != nil {
		mod(&o)
	}
	return oktasim.New(o)
}

func signing(o *oktasim.Options) {
	k := keys
	o.SigningKey, o.SigningCert = k[2].key, k[2].cert
}

// respond runs crewjam's IdP on an HTTP request and returns the raw
// SAMLResponse XML, as our IdP would build it.
func respond(t *testing.T, idp *saml.IdentityProvider, hr *http.Request, now time.Time, nameID string) (*saml.IdpAuthnRequest, []byte) {
	t.Helper()
	req, err := saml.NewIdpAuthnRequest(idp, hr)
	if err != nil {
		t.Fatalf("NewIdpAuthnRequest: %v", err)
	}
	req.Now = now
	if err := req.Validate(); err != nil {
		t.Fatalf("crewjam rejected the AuthnRequest: %v", err)
	}
	sess := &saml.Session{ID: "sess1", Index: "idx1", CreateTime: now, NameID: nameID, NameIDFormat: oktasim.NameIDFormatUnspecified}
	if err := (saml.DefaultAssertionMaker{}).MakeAssertion(req, sess); err != nil {
		t.Fatalf("MakeAssertion: %v", err)
	}
	if err := req.MakeResponse(); err != nil {
		t.Fatalf("MakeResponse: %v", err)
	}
	doc := etree.NewDocument()
	doc.SetRoot(req.ResponseEl)
	b, err := doc.WriteToBytes()
	if err != nil {
		t.Fatal(err)
	}
	return req, b
}

func redirectRequest(t *testing.T, sp *oktasim.SP, r oktasim.Request) *http.Request {
	t.Helper()
	u, err := sp.RedirectURL(r)
	if err != nil {
		t.Fatalf("RedirectURL: %v", err)
	}
	return httptest.NewRequest(http.MethodGet, u, nil)
}

func postRequest(t *testing.T, sp *oktasim.SP, r oktasim.Request) *http.Request {
	t.Helper()
	v, err := sp.PostForm(r)
	if err != nil {
		t.Fatalf("PostForm: %v", err)
	}
	hr := httptest.NewRequest(http.MethodPost, idpSSO, strings.NewReader(v.Encode()))
	hr.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return hr
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

func TestRequestXMLShape(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 5, 20, 10, 17, 46, 623_000_000, time.UTC)
	sp := newSP(t, now, nil)
	r := sp.NewRequest(username)
	if !strings.HasPrefix(r.ID, "id") || len(r.ID) != 26 || r.RelayState == "" || !r.IssueInstant.Equal(now) {
		t.Fatalf("NewRequest = %+v", r)
	}
	got := string(sp.RequestXML(r))
	want := `<?xml version="1.0" encoding="UTF-8"?>` +
		`<saml2p:AuthnRequest xmlns:saml2p="urn:oasis:names:tc:SAML:2.0:protocol"` +
		` AssertionConsumerServiceURL="` + oktaACS + `" Destination="` + idpSSO + `" ForceAuthn="false"` +
		` ID="` + r.ID + `" IssueInstant="2026-05-20T10:17:46.623Z"` +
		` ProtocolBinding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST" Version="2.0">` +
		`<saml2:Issuer xmlns:saml2="urn:oasis:names:tc:SAML:2.0:assertion">` + oktaEntityID + `</saml2:Issuer>` +
		`<saml2:Subject xmlns:saml2="urn:oasis:names:tc:SAML:2.0:assertion"><saml2:NameID>` + username + `</saml2:NameID></saml2:Subject>` +
		`<saml2p:NameIDPolicy Format="urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified"/>` +
		`</saml2p:AuthnRequest>`
	if got != want {
		t.Errorf("RequestXML:\n got %s\nwant %s", got, want)
	}
}

// TestCrewjamParsesRequests: the IdP library reads what we send, with
// either binding, signed or not, exactly as Okta means it.
func TestCrewjamParsesRequests(t *testing.T) {
	t.Parallel()
	k := testKeys(t)
	now := time.Now()
	for _, tc := range []struct {
		name  string
		post  bool
		signs bool
	}{
		{"redirect", false, false},
		{"redirect signed", false, true},
		{"post", true, false},
		{"post signed", true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var mod func(*oktasim.Options)
			if tc.signs {
				mod = signing
			}
			sp := newSP(t, now, mod)
			r := sp.NewRequest(username)
			var hr *http.Request
			if tc.post {
				hr = postRequest(t, sp, r)
			} else {
				hr = redirectRequest(t, sp, r)
			}
			req, err := saml.NewIdpAuthnRequest(newIdP(k[0], idpSSO), hr)
			if err != nil {
				t.Fatal(err)
			}
			req.Now = now
			if err := req.Validate(); err != nil {
				t.Fatalf("Validate: %v", err)
			}
			ar := req.Request
			if ar.ID != r.ID || ar.Issuer.Value != oktaEntityID || ar.AssertionConsumerServiceURL != oktaACS ||
				ar.Destination != idpSSO || ar.ProtocolBinding != saml.HTTPPostBinding || req.RelayState != r.RelayState {
				t.Errorf("crewjam read %+v, relay %q", ar, req.RelayState)
			}
			if ar.Subject == nil || ar.Subject.NameID == nil || ar.Subject.NameID.Value != username {
				t.Errorf("Subject = %+v", ar.Subject)
			}
			if ar.NameIDPolicy == nil || ar.NameIDPolicy.Format == nil || *ar.NameIDPolicy.Format != oktasim.NameIDFormatUnspecified {
				t.Errorf("NameIDPolicy = %+v", ar.NameIDPolicy)
			}
			if req.ACSEndpoint.Location != oktaACS {
				t.Errorf("ACS = %s", req.ACSEndpoint.Location)
			}
			if tc.post && tc.signs && ar.Signature == nil {
				t.Error("signed POST request carries no Signature")
			}
		})
	}
}

// TestRedirectSignature: the query signature verifies over the octets as
// they appear in the URL, and a corrupted one does not.
func TestRedirectSignature(t *testing.T) {
	t.Parallel()
	k := testKeys(t)
	sp := newSP(t, time.Now(), signing)
	for _, bad := range []bool{false, true} {
		r := sp.NewRequest(username)
		r.BadSignature = bad
		u, err := sp.RedirectURL(r)
		if err != nil {
			t.Fatal(err)
		}
		pu, err := url.Parse(u)
		if err != nil {
			t.Fatal(err)
		}
		raw := pu.RawQuery
		i := strings.Index(raw, "&Signature=")
		if i < 0 {
			t.Fatalf("no Signature in %s", raw)
		}
		signed := raw[:i]
		if !strings.HasPrefix(signed, "SAMLRequest=") || !strings.Contains(signed, "&RelayState=") ||
			!strings.HasSuffix(signed, "&SigAlg="+url.QueryEscape(oktasim.SigAlgRSASHA256)) {
			t.Fatalf("signed octets in wrong order: %s", signed)
		}
		sig, err := base64.StdEncoding.DecodeString(pu.Query().Get("Signature"))
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256([]byte(signed))
		err = rsa.VerifyPKCS1v15(&k[2].key.PublicKey, crypto.SHA256, sum[:], sig)
		if bad != (err != nil) {
			t.Errorf("BadSignature=%v: verify err = %v", bad, err)
		}

		// The SAMLRequest is raw DEFLATE of exactly RequestXML.
		z, err := base64.StdEncoding.DecodeString(pu.Query().Get("SAMLRequest"))
		if err != nil {
			t.Fatal(err)
		}
		xml, err := io.ReadAll(flate.NewReader(bytes.NewReader(z)))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(xml, sp.RequestXML(r)) {
			t.Errorf("inflated request differs from RequestXML")
		}
	}

	// Unsigned requests carry neither SigAlg nor Signature.
	r := sp.NewRequest(username)
	r.SkipSign = true
	u, _ := sp.RedirectURL(r)
	if strings.Contains(u, "SigAlg=") || strings.Contains(u, "Signature=") {
		t.Errorf("SkipSign URL is signed: %s", u)
	}
}

// TestPostSignature: the enveloped signature on a POSTed request verifies
// with goxmldsig against Okta's certificate, sits after Issuer, and fails
// when corrupted.
func TestPostSignature(t *testing.T) {
	t.Parallel()
	k := testKeys(t)
	sp := newSP(t, time.Now(), signing)
	for _, bad := range []bool{false, true} {
		r := sp.NewRequest(username)
		r.BadSignature = bad
		v, err := sp.PostForm(r)
		if err != nil {
			t.Fatal(err)
		}
		if v.Get("RelayState") != r.RelayState {
			t.Errorf("RelayState = %q", v.Get("RelayState"))
		}
		raw, err := base64.StdEncoding.DecodeString(v.Get("SAMLRequest"))
		if err != nil {
			t.Fatal(err)
		}
		doc := etree.NewDocument()
		if err := doc.ReadFromBytes(raw); err != nil {
			t.Fatal(err)
		}
		kids := doc.Root().ChildElements()
		if len(kids) < 2 || kids[0].Tag != "Issuer" || kids[1].Tag != "Signature" {
			t.Errorf("Signature is not right after Issuer")
		}
		vc := dsig.NewDefaultValidationContext(&dsig.MemoryX509CertificateStore{Roots: []*x509.Certificate{k[2].cert}})
		_, err = vc.Validate(doc.Root())
		if bad != (err != nil) {
			t.Errorf("BadSignature=%v: validate err = %v", bad, err)
		}
	}
}

func TestValidate(t *testing.T) {
	t.Parallel()
	k := testKeys(t)
	now := time.Now()

	tamper := func(b []byte) []byte {
		return bytes.Replace(b, []byte(">"+username+"<"), []byte(">mallory@example.com<"), 1)
	}
	// gosaml2 accepts an unsigned Assertion inside a signed Response (the
	// envelope covers it); Okta's setup, and we, want both signed.
	unsignedAssertion := func(b []byte) []byte {
		return resignResponse(t, b, k[0], func(a *etree.Element) { a.RemoveChild(a.SelectElement("Signature")) })
	}
	badAssertionSig := func(b []byte) []byte { return resignResponse(t, b, k[0], corruptSignature) }

	for _, tc := range []struct {
		name    string
		idpKey  int
		signReq bool
		spMod   func(*oktasim.Options) // the checking SP's configuration
		spNow   time.Time
		reqID   string // default: the request's ID
		mangle  func([]byte) []byte
		wantErr error
	}{
		{name: "good"},
		{name: "good, signed request", signReq: true},
		{name: "tampered NameID", mangle: tamper, wantErr: oktasim.ErrSignature},
		{name: "wrong audience", spMod: func(o *oktasim.Options) { o.EntityID = "https://www.okta.com/saml2/service-provider/spother" }, wantErr: oktasim.ErrAudience},
		{name: "wrong InResponseTo", reqID: "id000000000000000000000000", wantErr: oktasim.ErrInResponseTo},
		{name: "expired", spNow: now.Add(10 * time.Minute), wantErr: oktasim.ErrExpired},
		{name: "not yet valid", spNow: now.Add(-10 * time.Minute), wantErr: oktasim.ErrNotYetValid},
		{name: "signed by another key", idpKey: 1, wantErr: oktasim.ErrSignature},
		{name: "wrong issuer", spMod: func(o *oktasim.Options) { o.IdPIssuer = "https://other.example.com/saml/metadata" }, wantErr: oktasim.ErrIssuer},
		{name: "wrong ACS", spMod: func(o *oktasim.Options) { o.ACSURL = "https://example.okta.com/sso/saml2/0oaOTHER" }, wantErr: oktasim.ErrDestination},
		{name: "assertion unsigned", mangle: unsignedAssertion, wantErr: oktasim.ErrNotSigned},
		{name: "bad assertion signature under a good response signature", mangle: badAssertionSig, wantErr: oktasim.ErrSignature},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			// The request always comes from the real Okta SP; the SP that
			// checks the response may be configured differently.
			var reqMod func(*oktasim.Options)
			if tc.signReq {
				reqMod = signing
			}
			issuing := newSP(t, now, reqMod)
			r := issuing.NewRequest(username)
			_, xml := respond(t, newIdP(k[tc.idpKey], idpSSO), redirectRequest(t, issuing, r), now, username)
			if tc.mangle != nil {
				xml = tc.mangle(xml)
			}
			spNow := now
			if !tc.spNow.IsZero() {
				spNow = tc.spNow
			}
			checking := newSP(t, spNow, tc.spMod)
			reqID := r.ID
			if tc.reqID != "" {
				reqID = tc.reqID
			}
			a, err := checking.Validate(b64(xml), reqID)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("Validate err = %v, want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Validate: %v", err)
			}
			if a.NameID != username || a.NameIDFormat != oktasim.NameIDFormatUnspecified || a.InResponseTo != r.ID ||
				a.Recipient != oktaACS || a.Audience != oktaEntityID || a.Issuer != idpMetadata || a.SessionIndex != "idx1" {
				t.Errorf("assertion = %+v", a)
			}
			if !a.NotBefore.After(now.Add(-time.Minute)) || !a.NotOnOrAfter.After(now) || a.AuthnInstant.IsZero() {
				t.Errorf("times = %v %v %v", a.NotBefore, a.NotOnOrAfter, a.AuthnInstant)
			}
		})
	}
}

// TestEndToEnd: a browser follows Okta's redirect to a running crewjam IdP,
// gets the auto-submitting form, and Okta accepts what it posts.
func TestEndToEnd(t *testing.T) {
	t.Parallel()
	k := testKeys(t)
	var idp *saml.IdentityProvider
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { idp.ServeSSO(w, r) }))
	defer srv.Close()
	idp = newIdP(k[0], srv.URL+"/saml/sso")

	sp := oktasim.New(oktasim.Options{
		EntityID: oktaEntityID, ACSURL: oktaACS, IdPSSOURL: srv.URL + "/saml/sso",
		IdPIssuer: idpMetadata, IdPCert: k[0].cert,
		SigningKey: k[2].key, SigningCert: k[2].cert,
	})
	r := sp.NewRequest(username)
	u, err := sp.RedirectURL(r)
	if err != nil {
		t.Fatal(err)
	}
	res, err := srv.Client().Get(u)
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("GET SSO: %s: %s", res.Status, page)
	}
	action, resp, relay, err := oktasim.ParsePostForm(page)
	if err != nil {
		t.Fatalf("ParsePostForm: %v\n%s", err, page)
	}
	if action != oktaACS || relay != r.RelayState {
		t.Errorf("form posts to %q with RelayState %q", action, relay)
	}
	a, err := sp.Validate(resp, r.ID)
	if err != nil {
		t.Fatalf("Validate: %v", err)
	}
	if a.NameID != username {
		t.Errorf("NameID = %q", a.NameID)
	}
}

func TestParsePostForm(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, page string
		ok         bool
	}{
		{"good", `<html><body><form method="POST" action="https://a/acs"><input type="hidden" name="SAMLResponse" value="PD94"><input type="hidden" name="RelayState" value="rs"></form></body></html>`, true},
		{"get form", `<form method="get" action="https://a/acs"><input name="SAMLResponse" value="x"></form>`, false},
		{"no response", `<form method="post" action="https://a/acs"><input name="RelayState" value="x"></form>`, false},
		{"no form", `<p>denied</p>`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			action, resp, relay, err := oktasim.ParsePostForm([]byte(tc.page))
			if tc.ok != (err == nil) {
				t.Fatalf("err = %v", err)
			}
			if tc.ok && (action != "https://a/acs" || resp != "PD94" || relay != "rs") {
				t.Errorf("got %q %q %q", action, resp, relay)
			}
		})
	}
}

func TestXMLSec1Verify(t *testing.T) {
	t.Parallel()
	testkit.Tool(t, "xmlsec1")
	k := testKeys(t)
	now := time.Now()
	sp := newSP(t, now, nil)
	r := sp.NewRequest(username)
	_, good := respond(t, newIdP(k[0], idpSSO), redirectRequest(t, sp, r), now, username)
	_, other := respond(t, newIdP(k[1], idpSSO), redirectRequest(t, sp, r), now, username)

	// Tamper only the Assertion's NameID: the Response digest breaks too.
	tampered := bytes.Replace(good, []byte(">"+username+"<"), []byte(">mallory@example.com<"), 1)
	// A broken Assertion signature under a valid Response signature must
	// fail on its own: xmlsec1 checks the two separately.
	badAssertionSig := resignResponse(t, good, k[0], corruptSignature)
	badResponseSig := func() []byte {
		doc := mustParse(t, good)
		corruptSignature(doc.Root())
		b, err := doc.WriteToBytes()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}()
	// Only the Response signed: refused before xmlsec1 runs, since there is
	// no Assertion signature to check.
	onlyResponse := resignResponse(t, good, k[0], func(a *etree.Element) { a.RemoveChild(a.SelectElement("Signature")) })

	for _, tc := range []struct {
		name  string
		xml   []byte
		cert  []byte
		ok    bool
		stage string // which signature xmlsec1 must reject
	}{
		{"good", good, k[0].certPEM(), true, ""},
		{"tampered NameID", tampered, k[0].certPEM(), false, ""},
		{"bad Assertion signature", badAssertionSig, k[0].certPEM(), false, "Assertion signature"},
		{"bad Response signature", badResponseSig, k[0].certPEM(), false, "Response signature"},
		{"signed by another key", other, k[0].certPEM(), false, ""},
		{"checked against another cert", good, k[1].certPEM(), false, ""},
		{"good after re-signing the Response", resignResponse(t, good, k[0], nil), k[0].certPEM(), true, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := oktasim.XMLSec1Verify(tc.xml, tc.cert)
			if tc.ok != (err == nil) {
				t.Fatalf("XMLSec1Verify err = %v, want ok=%v", err, tc.ok)
			}
			if err != nil && !errors.Is(err, oktasim.ErrSignature) {
				t.Errorf("err = %v, want ErrSignature", err)
			}
			if tc.stage != "" && !strings.Contains(err.Error(), tc.stage) {
				t.Errorf("err = %v, want it to name the %s", err, tc.stage)
			}
		})
	}
	if err := oktasim.XMLSec1Verify(onlyResponse, k[0].certPEM()); !errors.Is(err, oktasim.ErrNotSigned) {
		t.Errorf("unsigned Assertion: err = %v, want ErrNotSigned", err)
	}
}

func mustParse(t *testing.T, b []byte) *etree.Document {
	t.Helper()
	doc := etree.NewDocument()
	if err := doc.ReadFromBytes(b); err != nil {
		t.Fatal(err)
	}
	return doc
}

// corruptSignature flips a bit in the SignatureValue of el's Signature.
func corruptSignature(el *etree.Element) {
	sv := el.SelectElement("Signature").SelectElement("SignatureValue")
	raw, err := base64.StdEncoding.DecodeString(sv.Text())
	if err != nil {
		panic(err)
	}
	raw[10] ^= 0x01
	sv.SetText(base64.StdEncoding.EncodeToString(raw))
}

// resignResponse applies mutate to the Assertion, then replaces the
// Response signature with a fresh, valid one by kp: what a holder of the
// IdP key could produce, to test the Assertion signature on its own.
func resignResponse(t *testing.T, b []byte, kp keyPair, mutate func(assertion *etree.Element)) []byte {
	t.Helper()
	doc := mustParse(t, b)
	root := doc.Root()
	if mutate != nil {
		mutate(root.SelectElement("Assertion"))
	}
	old := root.SelectElement("Signature")
	at := old.Index()
	root.RemoveChild(old)
	ctx, err := dsig.NewSigningContext(kp.key, [][]byte{kp.cert.Raw})
	if err != nil {
		t.Fatal(err)
	}
	ctx.Canonicalizer = dsig.MakeC14N10ExclusiveCanonicalizerWithPrefixList("")
	if err := ctx.SetSignatureMethod(dsig.RSASHA256SignatureMethod); err != nil {
		t.Fatal(err)
	}
	sig, err := ctx.ConstructSignature(root, true)
	if err != nil {
		t.Fatal(err)
	}
	root.InsertChildAt(at, sig)
	out, err := doc.WriteToBytes()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestSignatureModes: each of Okta's Response Signature Verification
// settings accepts a response exactly when its required signature is there,
// references its own element and verifies, and every other signature there
// verifies too; gosaml2 and xmlsec1 agree. RequireBoth, the default, is
// stricter than any of Okta's.
func TestSignatureModes(t *testing.T) {
	t.Parallel()
	k := testKeys(t)
	now := time.Now()
	sp := newSP(t, now, nil)
	r := sp.NewRequest(username)
	_, both := respond(t, newIdP(k[0], idpSSO), redirectRequest(t, sp, r), now, username)
	removeSig := func(el *etree.Element) { el.RemoveChild(el.SelectElement("Signature")) }
	withoutResponseSig := func(b []byte) []byte {
		doc := mustParse(t, b)
		removeSig(doc.Root())
		out, err := doc.WriteToBytes()
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	onlyResponse := resignResponse(t, both, k[0], removeSig)
	onlyAssertion := withoutResponseSig(both)
	neither := withoutResponseSig(onlyResponse)
	badAssertion := resignResponse(t, both, k[0], corruptSignature)
	onlyBadAssertion := withoutResponseSig(badAssertion)
	// An unsigned Response may not carry what Okta checks on it wrongly
	// (here, another request's ID) just because the Assertion is signed.
	otherRequest := bytes.Replace(onlyAssertion, []byte(`InResponseTo="`+r.ID+`"`), []byte(`InResponseTo="id-other"`), 1)
	if bytes.Equal(otherRequest, onlyAssertion) {
		t.Fatal("Response InResponseTo not found")
	}

	docs := []struct {
		name string
		xml  []byte
	}{
		{"both", both}, {"only Response", onlyResponse}, {"only Assertion", onlyAssertion}, {"neither", neither},
		{"bad Assertion signature under a good Response one", badAssertion}, {"only a bad Assertion signature", onlyBadAssertion},
		{"only Assertion, Response for another request", otherRequest},
	}
	accept := map[oktasim.Signatures][]string{
		oktasim.RequireBoth:      {"both"},
		oktasim.RequireResponse:  {"both", "only Response"},
		oktasim.RequireAssertion: {"both", "only Assertion"},
		oktasim.RequireEither:    {"both", "only Response", "only Assertion"},
	}
	for need, ok := range accept {
		checking := newSP(t, now, func(o *oktasim.Options) { o.Signatures = need })
		for _, d := range docs {
			t.Run(need.String()+"/"+d.name, func(t *testing.T) {
				t.Parallel()
				want := slices.Contains(ok, d.name)
				_, err := checking.Validate(b64(d.xml), r.ID)
				if want != (err == nil) {
					t.Errorf("Validate err = %v, want ok=%v", err, want)
				}
				if !want && err != nil && !errors.Is(err, oktasim.ErrNotSigned) && !errors.Is(err, oktasim.ErrSignature) && !errors.Is(err, oktasim.ErrInResponseTo) {
					t.Errorf("Validate err = %v, want a signature or InResponseTo error", err)
				}
				if d.name == "only Assertion, Response for another request" {
					return // xmlsec1 checks signatures only
				}
				testkit.Tool(t, "xmlsec1")
				err = oktasim.XMLSec1VerifySigned(d.xml, k[0].certPEM(), need)
				if want != (err == nil) {
					t.Errorf("XMLSec1VerifySigned err = %v, want ok=%v", err, want)
				}
			})
		}
	}
}
