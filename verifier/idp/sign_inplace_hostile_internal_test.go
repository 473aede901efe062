package idp

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/beevik/etree"
	"github.com/crewjam/saml"
)

// TestSignatureInPlaceWithAttributes: TestSignatureInPlace with attributes
// (xsi:type="xs:string"), hostile text and Unicode.
func TestSignatureInPlaceWithAttributes(t *testing.T) {
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
	write := func(el *etree.Element) []byte {
		doc := etree.NewDocument()
		doc.SetRoot(el)
		b, err := doc.WriteToBytes()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	for _, user := range []string{"ada@example.com", `a&b<c>"d'e]]>`, "zoë😀", "a\tb\nc"} {
		a := &saml.Assertion{
			ID: "id-assertion", IssueInstant: now, Version: "2.0",
			Issuer:  saml.Issuer{Format: "urn:oasis:names:tc:SAML:2.0:nameid-format:entity", Value: s.MetadataURL},
			Subject: &saml.Subject{NameID: &saml.NameID{Format: NameIDUnspecified, Value: user}},
			Conditions: &saml.Conditions{NotBefore: now, NotOnOrAfter: now.Add(time.Minute),
				AudienceRestrictions: []saml.AudienceRestriction{{Audience: saml.Audience{Value: "https://okta.example.com/sp"}}}},
			AuthnStatements: []saml.AuthnStatement{{AuthnInstant: now, SessionIndex: "idx",
				AuthnContext: saml.AuthnContext{AuthnContextClassRef: &saml.AuthnContextClassRef{Value: AuthnContextX509}}}},
			AttributeStatements: []saml.AttributeStatement{{Attributes: []saml.Attribute{{Name: `n&<>"`, NameFormat: "urn:oasis:names:tc:SAML:2.0:attrname-format:basic",
				Values: []saml.AttributeValue{{Type: "xs:string", Value: user}}}}}},
		}
		signed, err := p.signing.SignEnveloped(a.Element())
		if err != nil {
			t.Fatal(err)
		}
		inPlace := write(afterIssuer(signed.Copy()))
		a.Signature = signed.ChildElements()[len(signed.ChildElements())-1]
		if rebuilt := write(a.Element()); !bytes.Equal(inPlace, rebuilt) {
			t.Errorf("%q: in place:\n%s\nrebuilt:\n%s", user, inPlace, rebuilt)
		}
	}
}
