package idp

import (
	"bytes"
	"encoding/xml"
	"errors"
	"io"
	"strings"
	"testing"

	xrv "github.com/mattermost/xml-roundtrip-validator"
)

// roundTripSeeds are documents whose tokens are, and are not, plain.
var roundTripSeeds = []string{
	`<samlp:AuthnRequest xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="id1" Version="2.0" IssueInstant="2026-12-03T10:00:00Z" Destination="https://v.example/saml/sso" AssertionConsumerServiceURL="https://org.okta.com/sso/saml2/0oa1" ProtocolBinding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST"><saml:Issuer>https://www.okta.com/saml2/service-provider/sp1</saml:Issuer><samlp:NameIDPolicy Format="urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified"/><saml:Subject><saml:NameID>jane&amp;doe@example.com</saml:NameID></saml:Subject></samlp:AuthnRequest>`,
	"<a b=\"\t\r\n&#xD;&lt;&quot;\">x&#xD;\r\n\u00e9\U0001F600</a>",
	`<a:b:c/>`, `<a xmlns:a="x" a:b="1" b="2" xmlns="y"/>`, `<:a/>`, `<a :b="1"/>`, `<xmlns:a/>`, `<a xml:lang="en"/>`,
	`<a xmlns:xml="u" xmlfoo:b="1"/>`, `<a b="1" b="2"/>`, `<a x:b="1" y:b="2"/>`, `<a _xmlns:b="1" xmlns:b="2"/>`,
	`<a xmlns:_xmlns="1" xmlns:b="2"/>`, `<a _:b="1" c:b="2"/>`, `<a xmlns="x"/>`, `<a:b xmlns="c"/>`, "<a>\x00</a>",
	"<a>&#xFFFE;</a>", `<!--c--><?xml version="1.0"?><!DOCTYPE a><a/>`, `</a>`, `<a></b>`, "<a b='\xff'/>",
	// The validator refuses these two, though each is made of plain names
	// and text: an empty CDATA section, and a namespace declaration between
	// two uses of its prefix.
	`<a><![CDATA[]]></a>`, `<a p:y="0" xmlns:p="v" p:x="1" q:z="2"/>`,
}

// FuzzPlainTokenRoundTrips holds the fast path to the validator it stands
// in for: every token it calls plain passes the validator's own check, so
// skipping the check for it refuses nothing the validator would have
// refused. And checkRoundTrip refuses exactly what the validator refuses.
func FuzzPlainTokenRoundTrips(f *testing.F) {
	for _, s := range roundTripSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 4<<10 {
			return
		}
		d := xml.NewDecoder(bytes.NewReader(data))
		d.Strict = false
		d.CharsetReader = func(_ string, input io.Reader) (io.Reader, error) { return input, nil }
		for {
			tok, err := d.RawToken()
			if err != nil {
				break
			}
			tok = xml.CopyToken(tok)
			if plainToken(tok) {
				if err := xrv.CheckToken(tok); err != nil {
					t.Fatalf("plainToken(%#v) but the validator refuses it: %v", tok, err)
				}
			}
		}
		ours, theirs := checkRoundTrip(data), xrv.Validate(bytes.NewReader(data))
		if (ours == nil) != (theirs == nil) {
			t.Fatalf("checkRoundTrip: %v; the validator: %v", ours, theirs)
		}
	})
}

// TestOktaRequestsArePlain: every token of an Okta-shaped request takes the
// fast path, so a sign-in allocates no encoder or decoder for it.
func TestOktaRequestsArePlain(t *testing.T) {
	d := xml.NewDecoder(strings.NewReader(roundTripSeeds[0]))
	d.Strict = false
	n := 0
	for {
		tok, err := d.RawToken()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if !plainToken(tok) {
			t.Errorf("not plain: %#v", tok)
		}
		n++
	}
	if n < 10 {
		t.Fatalf("only %d tokens read", n)
	}
}

// TestCheckRoundTripRefuses: what the validator refuses is refused.
func TestCheckRoundTripRefuses(t *testing.T) {
	for _, doc := range []string{`<a:b:c/>`, `<!-- a -- b -->`, `<a&b/>`, "<a>\x00</a>", `<a><![CDATA[]]></a>`, `<a p:y="0" xmlns:p="v" p:x="1" q:z="2"/>`} {
		if xrv.Validate(strings.NewReader(doc)) == nil {
			t.Fatalf("the validator accepts %q: pick another example", doc)
		}
		if err := checkRoundTrip([]byte(doc)); err == nil {
			t.Errorf("checkRoundTrip(%q) = nil, want a refusal", doc)
		}
	}
}
