package idp

import (
	"bytes"
	"compress/flate"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"errors"
	"math/big"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/clearance/clearance/internal/oktasim"
	"github.com/clearance/clearance/internal/testkit/testpki"
	"github.com/clearance/clearance/verifier/reason"
)

const (
	tAudience = "https://www.okta.com/saml2/service-provider/spunit"
	tACS      = "https://example.okta.com/sso/saml2/0oaunit"
	tSSO      = "https://clearance.example.com/saml/sso"
)

var tNow = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)

func testSigner(t testing.TB) (*rsa.PrivateKey, *x509.Certificate) {
	t.Helper()
	k := testpki.RSAKey(t)
	return k, testpki.SelfSigned(t, testpki.CN("okta"), testpki.Key(k), testpki.Valid(tNow.Add(-time.Hour), tNow.Add(24*time.Hour))).Cert
}

func testSP(key *rsa.PrivateKey, cert *x509.Certificate) *oktasim.SP {
	return oktasim.New(oktasim.Options{EntityID: tAudience, ACSURL: tACS, IdPSSOURL: tSSO,
		SigningKey: key, SigningCert: cert, Now: func() time.Time { return tNow }})
}

func expect(cert *x509.Certificate) Expect {
	e := Expect{Audience: tAudience, ACSURLs: []string{tACS}, Destination: tSSO, MaxSkew: 3 * time.Minute, Now: tNow}
	if cert != nil {
		e.RequestCerts = []*x509.Certificate{cert}
	}
	return e
}

func rawQuery(t *testing.T, u string) string {
	t.Helper()
	_, q, _ := strings.Cut(u, "?")
	return q
}

func reasonOf(err error) Reason {
	var re *RequestError
	if errors.As(err, &re) {
		return re.Reason
	}
	return ""
}

func deflateB64(b []byte) string {
	var buf bytes.Buffer
	w, _ := flate.NewWriter(&buf, flate.BestCompression)
	w.Write(b)
	w.Close()
	return base64.StdEncoding.EncodeToString(buf.Bytes())
}

func TestValidateOktaRequests(t *testing.T) {
	t.Parallel()
	key, cert := testSigner(t)
	for _, signed := range []bool{false, true} {
		var sp *oktasim.SP
		var c *x509.Certificate
		if signed {
			sp, c = testSP(key, cert), cert
		} else {
			sp = testSP(nil, nil)
		}
		r := sp.NewRequest("ada@example.com")
		u, err := sp.RedirectURL(r)
		if err != nil {
			t.Fatal(err)
		}
		rec, err := DecodeRedirect(rawQuery(t, u))
		if err != nil {
			t.Fatal(err)
		}
		req, err := Validate(rec, expect(c))
		if err != nil {
			t.Fatalf("signed=%v: %v", signed, err)
		}
		if req.Username != "ada@example.com" || req.AuthnRequest.ID != r.ID || req.RelayState != r.RelayState || req.Signed != signed {
			t.Errorf("request %+v", req)
		}
		if req.NameIDFormat != NameIDUnspecified {
			t.Errorf("format %q", req.NameIDFormat)
		}
		form, err := sp.PostForm(r)
		if err != nil {
			t.Fatal(err)
		}
		rec, err = DecodePost(form.Get("SAMLRequest"), form.Get("RelayState"))
		if err != nil {
			t.Fatal(err)
		}
		preq, err := Validate(rec, expect(c))
		if err != nil {
			t.Fatalf("POST signed=%v: %v", signed, err)
		}
		// A held sign-in is re-read from what was validated.
		held, err := Reparse(preq.XML, preq.RelayState, expect(c))
		if err != nil || held.Username != "ada@example.com" || held.AuthnRequest.ID != r.ID {
			t.Fatalf("POST signed=%v: held request %+v: %v", signed, held, err)
		}
		// It is as signed as it was on arrival: what decides whether a
		// refusal of it is worth a decision-log row.
		if held.Signed != signed {
			t.Errorf("POST signed=%v: held request Signed=%v", signed, held.Signed)
		}
	}
}

// TestRedirectSignatureOverReceivedOctets: the signature covers the octets
// as sent; an encoding the signer did not use must not verify by accident,
// and the signature must not verify over re-encoded values.
func TestRedirectSignatureOverReceivedOctets(t *testing.T) {
	t.Parallel()
	key, cert := testSigner(t)
	sp := testSP(key, cert)
	r := sp.NewRequest("ada@example.com")
	r.RelayState = "a b+c/d=" // characters whose encodings differ between encoders
	u, _ := sp.RedirectURL(r)
	q := rawQuery(t, u)
	rec, err := DecodeRedirect(q)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Validate(rec, expect(cert)); err != nil {
		t.Fatal(err)
	}
	// Re-encode RelayState differently (%20 for +): same value, other octets.
	alt := strings.Replace(q, "RelayState=a+b", "RelayState=a%20b", 1)
	if alt == q {
		t.Fatal("test did not change the encoding")
	}
	rec, err = DecodeRedirect(alt)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Validate(rec, expect(cert)); reasonOf(err) != reason.BadSignature {
		t.Fatalf("re-encoded query: %v", err)
	}
	// Parameters in another order are still found; the signed part keeps
	// the binding's order.
	parts := strings.Split(q, "&")
	rev := strings.Join([]string{parts[3], parts[2], parts[1], parts[0]}, "&")
	rec, err = DecodeRedirect(rev)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Validate(rec, expect(cert)); err != nil {
		t.Fatalf("reordered: %v", err)
	}
}

func TestDecodeRefusals(t *testing.T) {
	t.Parallel()
	sp := testSP(nil, nil)
	good, _ := sp.RedirectURL(sp.NewRequest("ada@example.com"))
	gq := rawQuery(t, good)
	cases := []struct {
		name  string
		query string
		want  Reason
	}{
		{"empty", "", reason.BadBinding},
		{"no SAMLRequest", "RelayState=x", reason.BadBinding},
		{"duplicate", gq + "&SAMLRequest=abc", reason.BadBinding},
		{"oversized query", "SAMLRequest=" + strings.Repeat("A", MaxQuery), reason.Oversized},
		{"oversized param", "SAMLRequest=" + strings.Repeat("A", MaxEncodedRequest+4), reason.Oversized},
		{"bad escape", "SAMLRequest=%zz", reason.BadEncoding},
		{"not base64", "SAMLRequest=" + url.QueryEscape("!!!"), reason.BadEncoding},
		{"not deflate", "SAMLRequest=" + url.QueryEscape(base64.StdEncoding.EncodeToString([]byte("<xml/>"))), reason.NotDeflate},
		{"inflates too far", "SAMLRequest=" + url.QueryEscape(deflateB64(bytes.Repeat([]byte{' '}, MaxRequestXML+1))), reason.Oversized},
		{"sig without alg", gq + "&Signature=AAAA", reason.BadSignature},
		{"sig not base64", gq + "&SigAlg=x&Signature=%21", reason.BadSignature},
		{"relay too long", gq + "&RelayState=" + strings.Repeat("r", MaxRelayState+1), reason.BadBinding},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := DecodeRedirect(tc.query)
			if tc.name == "relay too long" {
				// The good query already has a RelayState: a duplicate.
				tc.want = reason.BadBinding
			}
			if reasonOf(err) != tc.want {
				t.Fatalf("got %v, want %s", err, tc.want)
			}
		})
	}
	if _, err := DecodePost("", ""); reasonOf(err) != reason.BadBinding {
		t.Error(err)
	}
	if _, err := DecodePost("AAAA", strings.Repeat("r", MaxRelayState+1)); reasonOf(err) != reason.Oversized {
		t.Error(err)
	}
	if _, err := DecodePost(strings.Repeat("A", MaxPostBody), ""); reasonOf(err) != reason.Oversized {
		t.Error(err)
	}
}

func TestValidateRefusals(t *testing.T) {
	t.Parallel()
	key, cert := testSigner(t)
	sp := testSP(nil, nil)
	xmlOf := func(f func(*oktasim.Request)) []byte {
		r := sp.NewRequest("ada@example.com")
		if f != nil {
			f(&r)
		}
		return sp.RequestXML(r)
	}
	base := string(xmlOf(nil))
	cases := []struct {
		name string
		xml  []byte
		cert *x509.Certificate
		want Reason
	}{
		{"malformed", []byte("<samlp:AuthnRequest"), nil, reason.MalformedXML},
		{"not SAML", []byte("<hello/>"), nil, reason.MalformedXML},
		{"doctype", []byte(`<!DOCTYPE x [<!ENTITY a "b">]>` + base[strings.Index(base, "<saml2p"):]), nil, reason.DTD},
		{"external entity", []byte(`<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]><r>&x;</r>`), nil, reason.DTD},
		{"processing instruction", []byte(`<?evil x?>` + base[strings.Index(base, "<saml2p"):]), nil, reason.MalformedXML},
		{"wrong version", []byte(strings.Replace(base, `Version="2.0"`, `Version="1.1"`, 1)), nil, reason.WrongVersion},
		{"bad id", []byte(strings.Replace(base, `ID="id`, `ID="1id`, 1)), nil, reason.BadID},
		{"wrong issuer", xmlOf(func(r *oktasim.Request) { r.Issuer = "https://evil.example" }), nil, reason.WrongIssuer},
		{"wrong acs", xmlOf(func(r *oktasim.Request) { r.ACSURL = "https://evil.example/acs" }), nil, reason.WrongACS},
		{"wrong destination", xmlOf(func(r *oktasim.Request) { r.Destination = "https://evil.example/sso" }), nil, reason.WrongDestination},
		{"stale", xmlOf(func(r *oktasim.Request) { r.IssueInstant = tNow.Add(-4 * time.Minute) }), nil, reason.StaleRequest},
		{"future", xmlOf(func(r *oktasim.Request) { r.IssueInstant = tNow.Add(4 * time.Minute) }), nil, reason.FutureRequest},
		{"no subject", xmlOf(func(r *oktasim.Request) { r.Username = "" }), nil, reason.NoSubject},
		{"passive", []byte(strings.Replace(base, `ForceAuthn="false"`, `ForceAuthn="false" IsPassive="true"`, 1)), nil, reason.Passive},
		{"artifact binding", []byte(strings.Replace(base, "bindings:HTTP-POST", "bindings:HTTP-Artifact", 1)), nil, reason.WrongBinding},
		{"unsigned when required", xmlOf(nil), cert, reason.MissingSignature},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Validate(&Received{Binding: BindingPost, XML: tc.xml}, expect(tc.cert))
			if reasonOf(err) != tc.want {
				t.Fatalf("got %v, want %s", err, tc.want)
			}
		})
	}

	// Signature wrapping: a signed request with an unsigned copy of the
	// root wrapped around it must not be read as the outer request.
	signed := testSP(key, cert)
	r := signed.NewRequest("ada@example.com")
	form, _ := signed.PostForm(r)
	inner, _ := base64.StdEncoding.DecodeString(form.Get("SAMLRequest"))
	evil := strings.Replace(string(inner), "ada@example.com", "mallory@example.com", 1)
	if _, err := Validate(&Received{Binding: BindingPost, XML: []byte(evil)}, expect(cert)); reasonOf(err) != reason.BadSignature {
		t.Fatalf("tampered signed POST: %v", err)
	}
	// SHA-1 in a POST signature: refused like on Redirect, before the
	// signature is even checked.
	for _, swap := range [][2]string{
		{"http://www.w3.org/2001/04/xmldsig-more#rsa-sha256", "http://www.w3.org/2000/09/xmldsig#rsa-sha1"},
		{"http://www.w3.org/2001/04/xmlenc#sha256", "http://www.w3.org/2000/09/xmldsig#sha1"},
	} {
		weak := strings.Replace(string(inner), swap[0], swap[1], 1)
		if weak == string(inner) {
			t.Fatalf("%s not in the signed request", swap[0])
		}
		if _, err := Validate(&Received{Binding: BindingPost, XML: []byte(weak)}, expect(cert)); reasonOf(err) != reason.UnsupportedSigAlg {
			t.Fatalf("%s: %v", swap[1], err)
		}
	}
	// Unsupported SigAlg on Redirect.
	u, _ := signed.RedirectURL(r)
	q := strings.Replace(rawQuery(t, u), url.QueryEscape("http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"), url.QueryEscape("http://www.w3.org/2000/09/xmldsig#rsa-sha1"), 1)
	rec, err := DecodeRedirect(q)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Validate(rec, expect(cert)); reasonOf(err) != reason.UnsupportedSigAlg {
		t.Fatalf("sha1: %v", err)
	}
	// Signed by another key.
	otherKey, _ := testSigner(t)
	u, _ = testSP(otherKey, cert).RedirectURL(r)
	rec, _ = DecodeRedirect(rawQuery(t, u))
	if _, err := Validate(rec, expect(cert)); reasonOf(err) != reason.BadSignature {
		t.Fatalf("other key: %v", err)
	}
}

func TestReparse(t *testing.T) {
	t.Parallel()
	sp := testSP(nil, nil)
	r := sp.NewRequest("ada@example.com")
	x := sp.RequestXML(r)
	e := expect(nil)
	e.Now = tNow.Add(30 * time.Minute) // long after: held requests are old by design
	req, err := Reparse(x, "rs", e)
	if err != nil || req.Username != "ada@example.com" || req.RelayState != "rs" {
		t.Fatalf("%+v %v", req, err)
	}
	if _, err := Reparse([]byte("<x"), "", e); reasonOf(err) != reason.MalformedXML {
		t.Fatal(err)
	}
}

func FuzzDecodeRedirect(f *testing.F) {
	sp := testSP(nil, nil)
	u, _ := sp.RedirectURL(sp.NewRequest("ada@example.com"))
	_, q, _ := strings.Cut(u, "?")
	f.Add(q)
	f.Add("SAMLRequest=" + url.QueryEscape(deflateB64([]byte(`<!DOCTYPE a [<!ENTITY b "c">]><a>&b;</a>`))))
	f.Add("SAMLRequest=%zz&RelayState=&SigAlg=&Signature=")
	e := expect(nil)
	f.Fuzz(func(t *testing.T, q string) {
		rec, err := DecodeRedirect(q)
		if err != nil {
			if reasonOf(err) == "" {
				t.Fatalf("error without a reason: %v", err)
			}
			return
		}
		if len(rec.XML) > MaxRequestXML {
			t.Fatalf("XML of %d bytes passed", len(rec.XML))
		}
		if _, err := Validate(rec, e); err != nil && reasonOf(err) == "" {
			t.Fatalf("error without a reason: %v", err)
		}
	})
}

func FuzzValidate(f *testing.F) {
	key, cert := testSigner(f)
	sp := testSP(key, cert)
	r := sp.NewRequest("ada@example.com")
	f.Add(sp.RequestXML(r), false)
	form, _ := sp.PostForm(r)
	signed, _ := base64.StdEncoding.DecodeString(form.Get("SAMLRequest"))
	f.Add(signed, true)
	f.Add([]byte(`<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]><r>&x;</r>`), false)
	// A Format in another namespace, and an unknown one in the policy: both
	// once decided the format the response asserted.
	for _, swap := range [][2]string{
		{"<saml2:NameID>", `<saml2:NameID xmlns:x="urn:x" x:Format="urn:evil:fmt">`},
		{`Format="` + NameIDUnspecified + `"`, `Format="urn:evil:fmt"`},
	} {
		x := sp.RequestXML(r)
		if y := strings.Replace(string(x), swap[0], swap[1], 1); y != string(x) {
			f.Add([]byte(y), false)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte, requireSig bool) {
		e := expect(nil)
		if requireSig {
			e.RequestCerts = []*x509.Certificate{cert}
		}
		req, err := Validate(&Received{Binding: BindingPost, XML: data}, e)
		if err != nil {
			if reasonOf(err) == "" {
				t.Fatalf("error without a reason: %v", err)
			}
			return
		}
		// Whatever passes names the configured parties and a user.
		if req.AuthnRequest.Issuer.Value != tAudience || req.AuthnRequest.Destination != tSSO || req.Username == "" {
			t.Fatalf("accepted %+v", req.AuthnRequest)
		}
		if req.NameIDFormat != "" && !slices.Contains(nameIDFormats, req.NameIDFormat) {
			t.Fatalf("accepted NameID Format %q", req.NameIDFormat)
		}
		if requireSig && !req.Signed {
			t.Fatal("unsigned request passed when signatures are required")
		}
	})
}

// The Subject is held to one shape, signed or not: whatever else the XML
// says, the response asserts exactly the one NameID the request named, or
// nothing.
func TestSubjectShape(t *testing.T) {
	t.Parallel()
	key, cert := testSigner(t)
	const saml2 = `xmlns:saml2="urn:oasis:names:tc:SAML:2.0:assertion"`
	withPolicy := func(subject, policy string) []byte {
		return []byte(`<saml2p:AuthnRequest xmlns:saml2p="urn:oasis:names:tc:SAML:2.0:protocol" AssertionConsumerServiceURL="` + tACS +
			`" Destination="` + tSSO + `" ID="id4242" IssueInstant="` + tNow.UTC().Format("2006-01-02T15:04:05.000Z") +
			`" ProtocolBinding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST" Version="2.0">` +
			`<saml2:Issuer ` + saml2 + `>` + tAudience + `</saml2:Issuer>` + subject + policy + `</saml2p:AuthnRequest>`)
	}
	request := func(subject string) []byte {
		return withPolicy(subject, `<saml2p:NameIDPolicy Format="urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified"/>`)
	}
	nameID := func(v string) string {
		return `<saml2:Subject ` + saml2 + `><saml2:NameID>` + v + `</saml2:NameID></saml2:Subject>`
	}
	good := request(nameID("ada@example.com"))
	for name, tc := range map[string]struct {
		xml  []byte
		want Reason
	}{
		"two Subjects, the last another user": {request(nameID("ada@example.com") + nameID("eve@example.com")), reason.BadSubject},
		"two NameIDs":                         {request(`<saml2:Subject ` + saml2 + `><saml2:NameID>ada@example.com</saml2:NameID><saml2:NameID>eve@example.com</saml2:NameID></saml2:Subject>`), reason.BadSubject},
		"NameID in a foreign namespace":       {request(`<saml2:Subject ` + saml2 + `><x:NameID xmlns:x="urn:evil">eve@example.com</x:NameID></saml2:Subject>`), reason.BadSubject},
		"Subject in a foreign namespace":      {request(`<x:Subject xmlns:x="urn:evil"><x:NameID>eve@example.com</x:NameID></x:Subject>`), reason.BadSubject},
		"a comment merged into the name":      {request(nameID("eve@example.com<!-- -->.attacker.example")), reason.BadSubject},
		"an element inside the NameID":        {request(nameID("ada<b>x</b>@example.com")), reason.BadSubject},
		"a BaseID instead of a NameID":        {request(`<saml2:Subject ` + saml2 + `><saml2:BaseID>ada</saml2:BaseID></saml2:Subject>`), reason.BadSubject},
		"an unknown Format":                   {request(`<saml2:Subject ` + saml2 + `><saml2:NameID Format="urn:evil:format">ada@example.com</saml2:NameID></saml2:Subject>`), reason.BadSubject},
		"a namespaced Format on the NameID":   {request(`<saml2:Subject ` + saml2 + `><saml2:NameID xmlns:x="urn:x" x:Format="urn:evil:fmt">ada@example.com</saml2:NameID></saml2:Subject>`), reason.BadSubject},
		"a namespaced known Format":           {request(`<saml2:Subject ` + saml2 + `><saml2:NameID xmlns:x="urn:x" x:Format="` + NameIDUnspecified + `">ada@example.com</saml2:NameID></saml2:Subject>`), reason.BadSubject},
		"a known Format and a namespaced one": {request(`<saml2:Subject ` + saml2 + `><saml2:NameID xmlns:x="urn:x" Format="` + NameIDUnspecified + `" x:Format="urn:evil:fmt">ada@example.com</saml2:NameID></saml2:Subject>`), reason.BadSubject},
		"an unknown NameIDPolicy Format":      {withPolicy(nameID("ada@example.com"), `<saml2p:NameIDPolicy Format="urn:evil:fmt"/>`), reason.BadSubject},
		"a namespaced NameIDPolicy Format":    {withPolicy(nameID("ada@example.com"), `<saml2p:NameIDPolicy xmlns:x="urn:x" x:Format="urn:evil:fmt"/>`), reason.BadSubject},
		"an overlong name":                    {request(nameID(strings.Repeat("a", MaxUsernameLength+1))), reason.BadSubject},
		"a control character":                 {request(nameID("ada&#x85;@example.com")), reason.BadSubject},
		"a reference to a surrogate":          {request(nameID("ada&#xD800;@example.com")), reason.MalformedXML},
		"a decimal reference to a surrogate":  {request(nameID("ada&#57343;@example.com")), reason.MalformedXML},
		"a reference to U+FFFE":               {request(nameID("ada&#xFFFE;@example.com")), reason.MalformedXML},
		"a reference past Unicode":            {request(nameID("ada&#x100000000;@example.com")), reason.MalformedXML},
		"no Subject":                          {request(""), reason.NoSubject},
		"an empty NameID":                     {request(nameID("  ")), reason.NoSubject},
	} {
		for _, signed := range []bool{false, true} {
			var sp *oktasim.SP
			var c *x509.Certificate
			if signed {
				sp, c = testSP(key, cert), cert
			} else {
				sp = testSP(nil, nil)
			}
			r := sp.NewRequest("")
			r.RawXML = tc.xml
			u, err := sp.RedirectURL(r)
			if err != nil {
				t.Fatal(err)
			}
			rec, err := DecodeRedirect(rawQuery(t, u))
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			if _, err := Validate(rec, expect(c)); reasonOf(err) != tc.want {
				t.Errorf("%s (signed=%v): %v, want %s", name, signed, err, tc.want)
			}
		}
	}
	// The same shape is accepted.
	r := testSP(nil, nil).NewRequest("")
	r.RawXML = good
	u, _ := testSP(nil, nil).RedirectURL(r)
	rec, _ := DecodeRedirect(rawQuery(t, u))
	if req, err := Validate(rec, expect(nil)); err != nil || req.Username != "ada@example.com" {
		t.Fatalf("the good request: %+v, %v", req, err)
	}
	// References to characters XML has are read as those characters.
	r = testSP(nil, nil).NewRequest("")
	r.RawXML = request(nameID("ada&#x2E;lovelace&#64;example.com"))
	u, _ = testSP(nil, nil).RedirectURL(r)
	rec, _ = DecodeRedirect(rawQuery(t, u))
	if req, err := Validate(rec, expect(nil)); err != nil || req.Username != "ada.lovelace@example.com" {
		t.Fatalf("character references: %+v, %v", req, err)
	}
	// A NameID without a Format takes a known one from the policy, or none.
	const email = "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress"
	for policy, want := range map[string]string{
		`<saml2p:NameIDPolicy Format="` + email + `"/>`: email,
		`<saml2p:NameIDPolicy AllowCreate="true"/>`:     "",
		``: "",
	} {
		r := testSP(nil, nil).NewRequest("")
		r.RawXML = withPolicy(nameID("ada@example.com"), policy)
		u, _ := testSP(nil, nil).RedirectURL(r)
		rec, _ := DecodeRedirect(rawQuery(t, u))
		if req, err := Validate(rec, expect(nil)); err != nil || req.NameIDFormat != want {
			t.Errorf("policy %s: %+v, %v; want format %q", policy, req, err, want)
		}
	}
}

// signerValid is an Okta signing key with a certificate valid from nb to na.
func signerValid(t *testing.T, nb, na time.Time) (*rsa.PrivateKey, *x509.Certificate) {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "okta"}, NotBefore: nb, NotAfter: na}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return k, c
}

// TestRequestCertValidity: both bindings refuse a signature by a
// certificate outside its validity, and with two certificates configured (a
// rotation) each verifies what it signed, a POST without KeyInfo included.
func TestRequestCertValidity(t *testing.T) {
	t.Parallel()
	key, cert := testSigner(t)
	otherKey, other := testSigner(t)
	oldKey, expired := signerValid(t, tNow.Add(-48*time.Hour), tNow.Add(-time.Minute))
	futureKey, future := signerValid(t, tNow.Add(time.Minute), tNow.Add(48*time.Hour))
	withCerts := func(cs ...*x509.Certificate) Expect {
		e := expect(nil)
		e.RequestCerts = cs
		return e
	}
	keyInfo := regexp.MustCompile(`(?s)<ds:KeyInfo>.*</ds:KeyInfo>`)
	receive := func(k *rsa.PrivateKey, c *x509.Certificate, binding string) *Received {
		sp := testSP(k, c)
		r := sp.NewRequest("ada@example.com")
		switch binding {
		case "redirect":
			u, _ := sp.RedirectURL(r)
			rec, err := DecodeRedirect(rawQuery(t, u))
			if err != nil {
				t.Fatal(err)
			}
			return rec
		case "post without KeyInfo":
			form, _ := sp.PostForm(r)
			x, _ := base64.StdEncoding.DecodeString(form.Get("SAMLRequest"))
			stripped := keyInfo.ReplaceAll(x, nil)
			if bytes.Equal(stripped, x) {
				t.Fatal("no KeyInfo in the signed request")
			}
			return &Received{Binding: BindingPost, XML: stripped}
		}
		form, _ := sp.PostForm(r)
		x, _ := base64.StdEncoding.DecodeString(form.Get("SAMLRequest"))
		return &Received{Binding: BindingPost, XML: x}
	}
	for _, tc := range []struct {
		name   string
		key    *rsa.PrivateKey
		cert   *x509.Certificate
		expect Expect
		want   Reason // "" accepts
	}{
		{"expired certificate", oldKey, expired, withCerts(expired), reason.BadSignature},
		{"expired certificate beside a valid one", oldKey, expired, withCerts(expired, cert), reason.BadSignature},
		{"valid certificate beside an expired one", key, cert, withCerts(expired, cert), ""},
		{"certificate not yet valid", futureKey, future, withCerts(future), reason.BadSignature},
		{"rotation, the second signs", key, cert, withCerts(other, cert), ""},
		{"rotation, the first signs", otherKey, other, withCerts(other, cert), ""},
		{"rotation, neither signs", oldKey, expired, withCerts(other, cert), reason.BadSignature},
	} {
		for _, binding := range []string{"redirect", "post", "post without KeyInfo"} {
			_, err := Validate(receive(tc.key, tc.cert, binding), tc.expect)
			if reasonOf(err) != tc.want || (tc.want == "" && err != nil) {
				t.Errorf("%s, %s: %v, want %q", tc.name, binding, err, tc.want)
			}
		}
	}
}
