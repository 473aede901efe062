package idp_test

import (
	"context"
	"encoding/base64"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/beevik/etree"
	"github.com/crewjam/saml"

	"github.com/clearance/clearance/internal/oktasim"
	"github.com/clearance/clearance/internal/testkit"
	"github.com/clearance/clearance/verifier/idp"
)

const (
	hMD  = "https://v.example.com/saml/metadata"
	hSSO = "https://v.example.com/saml/sso"
	hAud = "https://www.okta.com/saml2/service-provider/spabc"
	hACS = "https://example.okta.com/sso/saml2/0oa1"
)

// newHostileIdP is a signing identity and an IdP that signs as mode.
func newHostileIdP(t *testing.T, now time.Time, mode string) (*idp.SigningIdentity, *idp.IdP) {
	t.Helper()
	id, err := idp.LoadOrCreate(context.Background(), t.TempDir(), 2048, "", now)
	if err != nil {
		t.Fatal(err)
	}
	p, err := idp.New(id, idp.Settings{MetadataURL: hMD, SSOURL: hSSO, Audience: hAud, ACSURLs: []string{hACS}, Sign: mode})
	if err != nil {
		t.Fatal(err)
	}
	return id, p
}

// xsBound reports whether every xsi:type="xs:..." value has xs in scope.
func xsBound(el *etree.Element, scope map[string]bool) bool {
	s := map[string]bool{}
	for k := range scope {
		s[k] = true
	}
	for _, a := range el.Attr {
		if a.Space == "xmlns" {
			s[a.Key] = true
		}
	}
	if v := el.SelectAttrValue("xsi:type", ""); strings.Contains(v, ":") && !s[strings.SplitN(v, ":", 2)[0]] {
		return false
	}
	for _, c := range el.ChildElements() {
		if !xsBound(c, s) {
			return false
		}
	}
	return true
}

// TestSignModesHostileText: responses in each --sign mode, for usernames
// and attributes with XML's special characters, Unicode and great length,
// verify under gosaml2 (as Okta set to each verification it accepts) and
// xmlsec1, with the xs prefix in scope for every xsi:type.
func TestSignModesHostileText(t *testing.T) {
	now := time.Now()
	id, err := idp.LoadOrCreate(context.Background(), t.TempDir(), 2048, "", now)
	if err != nil {
		t.Fatal(err)
	}
	users := map[string]string{
		"plain":   "alice@example.com",
		"special": `a&b<c>"d'e]]>@example.com`,
		"unicode": "zoë.Ωμέγα+😀@例え.jp",
		"long":    strings.Repeat("x", 20000) + "@example.com",
	}
	attrSets := map[string][]idp.Attribute{"none": nil, "hostile": {{Name: `n&<>"'`, Value: `v&<>"'\]]>`}, {Name: "u", Value: "Ωμέγα😀"}}}
	modes := map[string][]oktasim.Signatures{
		idp.SignBoth:      {oktasim.RequireBoth, oktasim.RequireResponse, oktasim.RequireAssertion, oktasim.RequireEither},
		idp.SignResponse:  {oktasim.RequireResponse, oktasim.RequireEither},
		idp.SignAssertion: {oktasim.RequireAssertion, oktasim.RequireEither},
	}
	for mode, needs := range modes {
		p, err := idp.New(id, idp.Settings{MetadataURL: hMD, SSOURL: hSSO, Audience: hAud, ACSURLs: []string{hACS}, Sign: mode})
		if err != nil {
			t.Fatal(err)
		}
		for uname, user := range users {
			for an, attrs := range attrSets {
				withAttrs := attrs != nil
				name := mode + "/" + uname
				name += "/" + an
				t.Run(name, func(t *testing.T) {
					req := &idp.Request{Username: user, RelayState: "rs"}
					req.AuthnRequest = saml.AuthnRequest{ID: "id-req1", AssertionConsumerServiceURL: hACS, Issuer: &saml.Issuer{Value: hAud}}
					as := idp.Assert{}
					if withAttrs {
						as.Attributes = attrs
					}
					hr := httptest.NewRequest("GET", hSSO, nil)
					b64, err := p.Respond(hr, req, as, now)
					if err != nil {
						t.Fatal(err)
					}
					raw, _ := base64.StdEncoding.DecodeString(b64)
					doc := etree.NewDocument()
					if err := doc.ReadFromBytes(raw); err != nil {
						t.Fatal(err)
					}
					if !xsBound(doc.Root(), nil) {
						t.Errorf("xs prefix unbound")
					}
					for _, need := range needs {
						sp := oktasim.New(oktasim.Options{EntityID: hAud, ACSURL: hACS, IdPSSOURL: hSSO, IdPIssuer: hMD, IdPCert: id.Cert, Now: func() time.Time { return now }, Signatures: need})
						a, err := sp.Validate(b64, "id-req1")
						if err != nil {
							t.Errorf("gosaml2 %s: %v", need, err)
						} else {
							if a.NameID != user {
								t.Errorf("gosaml2 %s: NameID %q want %q", need, a.NameID, user)
							}
							if withAttrs {
								for _, at := range attrs {
									if got := a.Attributes[at.Name]; len(got) != 1 || got[0] != at.Value {
										t.Errorf("gosaml2 %s: attr %q = %q want %q", need, at.Name, got, at.Value)
									}
								}
							}
						}
						if need != needs[0] {
							continue // xmlsec1 checks the signatures, once a mode
						}
						if err := oktasim.XMLSec1VerifySigned(raw, id.CertPEM, need); err != nil && (testkit.CI() || !strings.Contains(err.Error(), "not found")) {
							t.Errorf("xmlsec1 %s: %v", need, err)
						}
					}
				})
			}
		}
	}
}

// TestConcurrentRespond: one signing context shared by many sign-ins
// (run with -race); every response verifies.
func TestConcurrentRespond(t *testing.T) {
	now := time.Now()
	id, p := newHostileIdP(t, now, idp.SignBoth)
	sp := oktasim.New(oktasim.Options{EntityID: hAud, ACSURL: hACS, IdPSSOURL: hSSO, IdPIssuer: hMD, IdPCert: id.Cert, Now: func() time.Time { return now }})
	errs := make(chan error, 16)
	for i := 0; i < 16; i++ {
		go func() {
			req := &idp.Request{Username: "u@example.com"}
			req.AuthnRequest = saml.AuthnRequest{ID: "id-req1", AssertionConsumerServiceURL: hACS, Issuer: &saml.Issuer{Value: hAud}}
			b64, err := p.Respond(httptest.NewRequest("GET", hSSO, nil), req, idp.Assert{Attributes: []idp.Attribute{{Name: "d", Value: "x"}}}, now)
			if err == nil {
				_, err = sp.Validate(b64, "id-req1")
			}
			errs <- err
		}()
	}
	for i := 0; i < 16; i++ {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}

// TestRespondRefusesControlCharacters: a CR in signed text is written raw,
// turned into a line feed by the SP's parser, and the signature no longer
// verifies; Respond refuses control characters in the NameID and in
// attributes instead of making a response no SP accepts.
func TestRespondRefusesControlCharacters(t *testing.T) {
	now := time.Now()
	_, p := newHostileIdP(t, now, idp.SignBoth)
	for _, tc := range []struct {
		user  string
		attrs []idp.Attribute
	}{
		{"a@example.com", []idp.Attribute{{Name: "d", Value: "a\rb"}}},
		{"a@example.com", []idp.Attribute{{Name: "d\x00", Value: "x"}}},
		{"a\r@example.com", nil},
		{"a\xff@example.com", nil},
	} {
		req := &idp.Request{Username: tc.user}
		req.AuthnRequest = saml.AuthnRequest{ID: "id-req1", AssertionConsumerServiceURL: hACS, Issuer: &saml.Issuer{Value: hAud}}
		if _, err := p.Respond(httptest.NewRequest("GET", hSSO, nil), req, idp.Assert{Attributes: tc.attrs}, now); err == nil {
			t.Errorf("Respond(%q, %q) signed a response", tc.user, tc.attrs)
		}
	}
}

// TestOktasimRefusesWrapping: signature-wrapping variants of a genuine "both"
// response are refused under every Response Signature Verification.
func TestOktasimRefusesWrapping(t *testing.T) {
	now := time.Now()
	id, p := newHostileIdP(t, now, idp.SignBoth)
	req := &idp.Request{Username: "alice@example.com"}
	req.AuthnRequest = saml.AuthnRequest{ID: "id-req1", AssertionConsumerServiceURL: hACS, Issuer: &saml.Issuer{Value: hAud}}
	b64, err := p.Respond(httptest.NewRequest("GET", hSSO, nil), req, idp.Assert{}, now)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := base64.StdEncoding.DecodeString(b64)
	variant := func(f func(root, assertion *etree.Element)) string {
		doc := etree.NewDocument()
		if err := doc.ReadFromBytes(raw); err != nil {
			t.Fatal(err)
		}
		root := doc.Root()
		f(root, root.SelectElement("Assertion"))
		b, err := doc.WriteToBytes()
		if err != nil {
			t.Fatal(err)
		}
		return base64.StdEncoding.EncodeToString(b)
	}
	variants := map[string]string{
		"assertion sig points at response, response sig removed": variant(func(r, a *etree.Element) {
			r.RemoveChild(r.SelectElement("Signature"))
			a.SelectElement("Signature").FindElement(".//Reference").CreateAttr("URI", "#"+r.SelectAttrValue("ID", ""))
		}),
		"assertion sig moved to response": variant(func(r, a *etree.Element) {
			r.RemoveChild(r.SelectElement("Signature"))
			s := a.SelectElement("Signature")
			a.RemoveChild(s)
			r.InsertChildAt(1, s)
		}),
		"signed assertion hidden, evil assertion in place": variant(func(r, a *etree.Element) {
			r.RemoveChild(r.SelectElement("Signature"))
			evil := a.Copy()
			evil.RemoveChild(evil.SelectElement("Signature"))
			evil.FindElement(".//NameID").SetText("mallory@example.com")
			ext := r.CreateElement("samlp:Extensions")
			r.RemoveChild(a)
			ext.AddChild(a)
			r.AddChild(evil)
		}),
		"second signature on assertion": variant(func(r, a *etree.Element) {
			r.RemoveChild(r.SelectElement("Signature"))
			a.AddChild(a.SelectElement("Signature").Copy())
		}),
		"evil NameID, response sig removed": variant(func(r, a *etree.Element) {
			r.RemoveChild(r.SelectElement("Signature"))
			a.FindElement(".//NameID").SetText("mallory@example.com")
		}),
	}
	for _, need := range []oktasim.Signatures{oktasim.RequireBoth, oktasim.RequireResponse, oktasim.RequireAssertion, oktasim.RequireEither} {
		sp := oktasim.New(oktasim.Options{EntityID: hAud, ACSURL: hACS, IdPSSOURL: hSSO, IdPIssuer: hMD, IdPCert: id.Cert, Now: func() time.Time { return now }, Signatures: need})
		if _, err := sp.Validate(b64, "id-req1"); err != nil {
			t.Fatalf("%s: genuine refused: %v", need, err)
		}
		for name, v := range variants {
			if a, err := sp.Validate(v, "id-req1"); err == nil {
				t.Errorf("%s: %s accepted, NameID %q", need, name, a.NameID)
			}
		}
	}
}
