package idp

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/beevik/etree"
	"github.com/crewjam/saml"
)

// TestSignatureInPlace: moving an enveloped signature into place after the
// Assertion's Issuer (afterIssuer) gives, byte for byte, the Assertion
// crewjam gets by building it again around the signature; and New refuses
// an unknown --sign.
func TestSignatureInPlace(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 12, 3, 5, 0, 0, 0, time.UTC)
	id, err := LoadOrCreate(context.Background(), t.TempDir(), 2048, "", now)
	if err != nil {
		t.Fatal(err)
	}
	s := Settings{MetadataURL: "https://v.example.com/saml/metadata", SSOURL: "https://v.example.com/saml/sso"}
	p, err := New(id, s)
	if err != nil {
		t.Fatal(err)
	}
	bad := s
	bad.Sign = "neither"
	if _, err := New(id, bad); err == nil {
		t.Error("New accepted sign \"neither\"")
	}
	write := func(el *etree.Element) []byte {
		doc := etree.NewDocument()
		doc.SetRoot(el)
		b, err := doc.WriteToBytes()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}

	a := &saml.Assertion{
		ID: "id-assertion", IssueInstant: now, Version: "2.0",
		Issuer:  saml.Issuer{Format: "urn:oasis:names:tc:SAML:2.0:nameid-format:entity", Value: s.MetadataURL},
		Subject: &saml.Subject{NameID: &saml.NameID{Format: NameIDUnspecified, Value: "ada@example.com"}},
		Conditions: &saml.Conditions{NotBefore: now, NotOnOrAfter: now.Add(time.Minute),
			AudienceRestrictions: []saml.AudienceRestriction{{Audience: saml.Audience{Value: "https://okta.example.com/sp"}}}},
		AuthnStatements: []saml.AuthnStatement{{AuthnInstant: now, SessionIndex: "idx",
			AuthnContext: saml.AuthnContext{AuthnContextClassRef: &saml.AuthnContextClassRef{Value: AuthnContextX509}}}},
	}
	signed, err := p.signing.SignEnveloped(a.Element())
	if err != nil {
		t.Fatal(err)
	}
	inPlace := write(afterIssuer(signed.Copy()))
	a.Signature = signed.ChildElements()[len(signed.ChildElements())-1]
	assertionEl := a.Element()
	if rebuilt := write(assertionEl); !bytes.Equal(inPlace, rebuilt) {
		t.Errorf("Assertion signed in place:\n%s\nbuilt again:\n%s", inPlace, rebuilt)
	}

	// The Response is built again around its signature, as crewjam does:
	// moved into place, it would lose the root's xmlns:xs, which the
	// canonical signed copy drops and xsi:type="xs:string" values name.
	r := &saml.Response{
		Destination: "https://okta.example.com/acs", ID: "id-response", InResponseTo: "id-request", IssueInstant: now, Version: "2.0",
		Issuer: &saml.Issuer{Format: "urn:oasis:names:tc:SAML:2.0:nameid-format:entity", Value: s.MetadataURL},
		Status: saml.Status{StatusCode: saml.StatusCode{Value: saml.StatusSuccess}},
	}
	if root := r.Element(); root.SelectAttr("xmlns:xs") == nil {
		t.Error("crewjam's Response no longer declares xmlns:xs: see IdP.sign")
	}
}
