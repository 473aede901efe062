package idp

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/beevik/etree"
	dsig "github.com/russellhaering/goxmldsig"

	"github.com/clearance/clearance/internal/oktasim"
	"github.com/clearance/clearance/internal/testkit"
)

// FuzzResponse: for any values a request, the assertion hook or the
// connection supplies (NameID, its Format, the request ID, an attribute's
// name and value, the client address), in every --sign mode, the response
// is refused exactly when a value holds what XML 1.0 cannot carry, and
// otherwise (and for what XML can carry of refused values): it parses; its element and attribute structure is what it is
// for plain values; each DigestValue is the SHA-256 of goxmldsig's exclusive
// canonicalization of its element as parsed, and each signature verifies;
// every value reads back as given; gosaml2 (oktasim, as Okta) accepts it; and
// xmlsec1, when installed, verifies each signature.
func FuzzResponse(f *testing.F) {
	now := time.Date(2026, 12, 3, 5, 0, 0, 999_600_000, time.UTC)
	id, err := LoadOrCreate(context.Background(), f.TempDir(), 2048, "", now)
	if err != nil {
		f.Fatal(err)
	}
	const (
		md  = "https://v.example.com/saml/metadata"
		aud = "https://www.okta.com/saml2/service-provider/spabc"
		acs = "https://example.okta.com/sso/saml2/0oa1"
	)
	modes := []string{SignBoth, SignResponse, SignAssertion}
	idps := make([]*IdP, len(modes))
	for i, mode := range modes {
		if idps[i], err = New(id, Settings{MetadataURL: md, SSOURL: "https://v.example.com/saml/sso", Audience: aud, ACSURLs: []string{acs}, Sign: mode}); err != nil {
			f.Fatal(err)
		}
	}
	for _, s := range []struct {
		user, reqID, format, name, value, addr string
	}{
		{"ada@example.com", "id-req1", NameIDUnspecified, "clearance_device_id", "0F1E2D3C-4B5A-6978-8796-A5B4C3D2E1F0", "192.0.2.1"},
		{`a&b<c>"d'e]]>@example.com`, "id-\t\n\r&<>\"'", "urn:x?a=1&b=\"2\"", `n&<>"'`, `v&<>"'\]]>`, "2001:db8::1"},
		{" \t\r\n lead and trail \r\n\t ", "\r\n", "\r", "\r\n", "a\r\nb\rc\nd\te", "fe80::1%en0"},
		{"zoë.Ωμέγα+😀@例え.jp", "_\U0010FFFD\uFFFD\uFEFF", "\u0085\u2028\u2029", "\U0001FFFE\uFDD0", "\uE000\uD7FF", ""},
		{"x\uFFFEy", "id-1", NameIDUnspecified, "n", "v", ""},
		{"ada@example.com", "id-\x00", NameIDUnspecified, "n", "v", ""},
		{"ada@example.com", "id-1", NameIDUnspecified, "n", "a\xc3", ""},
		{"ada@example.com", "id-1", NameIDUnspecified, "", "", "127.0.0.1"},
		{strings.Repeat("x", 600) + "@example.com", strings.Repeat("i", 300), NameIDUnspecified, "groups", strings.Repeat("g,", 2000), "192.0.2.1"},
	} {
		for m := range modes {
			f.Add(uint8(m), s.user, s.reqID, s.format, s.name, s.value, s.addr)
		}
	}
	c14n := dsig.MakeC14N10ExclusiveCanonicalizerWithPrefixList("")
	certs := &dsig.MemoryX509CertificateStore{Roots: []*x509.Certificate{id.Cert}}

	f.Fuzz(func(t *testing.T, mode uint8, user, reqID, format, name, value, addr string) {
		p := idps[int(mode)%len(idps)]
		var attrs []Attribute
		if name != "" || value != "" {
			attrs = []Attribute{{Name: name, Value: value}}
		}
		fields := func(user, reqID, format, name, value, addr string) *assertionFields {
			fl := &assertionFields{responseID: "id-r", assertionID: "id-a", sessionIndex: "id-s", issuer: p.issuer,
				destination: acs, inResponseTo: reqID, audience: aud, nameID: user, nameIDFormat: format,
				address: addr, authnContext: AuthnContextX509, now: now}
			if attrs != nil {
				fl.attributes = []Attribute{{Name: name, Value: value}}
			}
			return fl
		}
		doc, err := p.document(fields(user, reqID, format, name, value, addr))
		carriable := xmlText(user) && xmlText(reqID) && xmlText(format) && xmlText(name) && xmlText(value) && xmlText(addr)
		switch {
		case err != nil && carriable:
			t.Fatalf("refused values XML can carry: %v", err)
		case err != nil && !errors.Is(err, errNotXML):
			t.Fatalf("refused for another reason: %v", err)
		case err == nil && !carriable:
			t.Fatalf("wrote values XML cannot carry: %q", doc)
		case err != nil:
			// Refused, rightly; what XML can carry of the same values
			// goes on to be checked, so that no input is spent.
			user, reqID, format, name, value, addr = carry(user), carry(reqID), carry(format), carry(name), carry(value), carry(addr)
			if doc, err = p.document(fields(user, reqID, format, name, value, addr)); err != nil {
				t.Fatalf("refused values XML can carry: %v", err)
			}
		}

		parsed := etree.NewDocument()
		if err := parsed.ReadFromBytes(doc); err != nil {
			t.Fatalf("does not parse: %v\n%s", err, doc)
		}
		// The same document with every value replaced by a plain one of the
		// same presence has the same elements and attributes.
		x := func(s string) string {
			if s == "" {
				return ""
			}
			return "x"
		}
		plainDoc, err := p.document(fields(x(user), x(reqID), x(format), x(name), x(value), x(addr)))
		if err != nil {
			t.Fatal(err)
		}
		plain := etree.NewDocument()
		if err := plain.ReadFromBytes(plainDoc); err != nil {
			t.Fatal(err)
		}
		if got, want := shape(parsed.Root()), shape(plain.Root()); got != want {
			t.Fatalf("structure:\n%s\nwant:\n%s", got, want)
		}

		root := parsed.Root()
		a := root.SelectElement("Assertion")
		// Each digest is over goxmldsig's canonical form of its element as
		// parsed, and each signature verifies.
		signed := 0
		for _, el := range []*etree.Element{root, a} {
			sig := el.SelectElement("Signature")
			if sig == nil {
				continue
			}
			signed++
			bare := el.Copy()
			bare.RemoveChild(bare.SelectElement("Signature"))
			canon, err := c14n.Canonicalize(bare)
			if err != nil {
				t.Fatal(err)
			}
			sum := sha256.Sum256(canon)
			if got := sig.FindElement("./SignedInfo/Reference/DigestValue").Text(); got != base64.StdEncoding.EncodeToString(sum[:]) {
				t.Fatalf("%s: DigestValue is not over its canonical form:\n%s", el.Tag, canon)
			}
			vc := dsig.NewDefaultValidationContext(certs)
			vc.Clock = dsig.NewFakeClockAt(now)
			if _, err := vc.Validate(el.Copy()); err != nil {
				t.Fatalf("%s: goxmldsig: %v", el.Tag, err)
			}
		}
		if want := map[string]int{SignBoth: 2, SignResponse: 1, SignAssertion: 1}[p.s.Sign]; signed != want {
			t.Fatalf("%d signatures, want %d", signed, want)
		}

		// Every value reads back as given.
		read := map[string]string{
			"NameID":                               a.FindElement("./Subject/NameID").Text(),
			"NameID Format":                        a.FindElement("./Subject/NameID").SelectAttrValue("Format", "\x00none"),
			"Response InResponseTo":                root.SelectAttrValue("InResponseTo", "\x00none"),
			"SubjectConfirmationData InResponseTo": a.FindElement("./Subject/SubjectConfirmation/SubjectConfirmationData").SelectAttrValue("InResponseTo", "\x00none"),
			"SubjectConfirmationData Address":      a.FindElement("./Subject/SubjectConfirmation/SubjectConfirmationData").SelectAttrValue("Address", ""),
			"Audience":                             a.FindElement("./Conditions/AudienceRestriction/Audience").Text(),
			"Recipient":                            a.FindElement("./Subject/SubjectConfirmation/SubjectConfirmationData").SelectAttrValue("Recipient", ""),
		}
		want := map[string]string{
			"NameID": user, "NameID Format": format, "Response InResponseTo": reqID,
			"SubjectConfirmationData InResponseTo": reqID, "SubjectConfirmationData Address": addr,
			"Audience": aud, "Recipient": acs,
		}
		if loc := a.FindElement("./AuthnStatement/SubjectLocality"); loc != nil || addr != "" {
			read["SubjectLocality Address"] = loc.SelectAttrValue("Address", "")
			want["SubjectLocality Address"] = addr
		}
		if attrs != nil {
			at := a.FindElement("./AttributeStatement/Attribute")
			read["Attribute Name"] = at.SelectAttrValue("Name", "\x00none")
			read["AttributeValue"] = at.SelectElement("AttributeValue").Text()
			want["Attribute Name"], want["AttributeValue"] = name, value
		}
		for k, w := range want {
			if read[k] != w {
				t.Errorf("%s reads %+q, want %+q", k, read[k], w)
			}
		}

		// Okta, simulated by gosaml2, takes the same values from it. It needs
		// a request ID and a NameID, as Okta's requests always have.
		if reqID == "" || user == "" {
			return
		}
		need := map[string]oktasim.Signatures{SignBoth: oktasim.RequireBoth, SignResponse: oktasim.RequireResponse, SignAssertion: oktasim.RequireAssertion}[p.s.Sign]
		sp := oktasim.New(oktasim.Options{EntityID: aud, ACSURL: acs, IdPSSOURL: p.s.SSOURL, IdPIssuer: md, IdPCert: id.Cert,
			Now: func() time.Time { return now }, Signatures: need})
		// gosaml2 reads the verified elements from etree's plain
		// serialization of them, which writes a CR raw, so it reads a line
		// end as a parser does: CR LF and CR as LF. (Respond refuses a CR
		// in the NameID and attributes; a request ID is an NCName.)
		got, err := sp.Validate(base64.StdEncoding.EncodeToString(doc), lineEnds(reqID))
		if err != nil {
			t.Fatalf("gosaml2: %v", err)
		}
		if got.NameID != lineEnds(user) || got.InResponseTo != lineEnds(reqID) || got.NameIDFormat != format {
			t.Errorf("gosaml2 reads NameID %+q, InResponseTo %+q, Format %+q", got.NameID, got.InResponseTo, got.NameIDFormat)
		}
		if attrs != nil {
			if v := got.Attributes[lineEnds(name)]; len(v) != 1 || v[0] != lineEnds(value) {
				t.Errorf("gosaml2 reads attribute %+q = %+q, want %+q", name, v, value)
			}
		}
		if err := oktasim.XMLSec1VerifySigned(doc, id.CertPEM, need); err != nil && (testkit.CI() || !errors.Is(err, oktasim.ErrNoXMLSec1)) {
			t.Errorf("xmlsec1: %v", err)
		}
	})
}

// lineEnds is s with XML's end-of-line handling: CR LF and CR become LF.
func lineEnds(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "\r\n", "\n"), "\r", "\n")
}

// carry is s without what XML cannot carry: bytes that are not UTF-8 and
// runes that are not Chars.
func carry(s string) string {
	return strings.Map(func(r rune) rune {
		if xmlText(string(r)) {
			return r
		}
		return -1
	}, strings.ToValidUTF8(s, ""))
}

// xmlText reports whether XML 1.0 can carry s: UTF-8 of Chars only.
func xmlText(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	// XML 1.0's Char production, written out again here rather than
	// taken from the code under test.
	for _, r := range s {
		switch {
		case r == '\t', r == '\n', r == '\r':
		case r < 0x20, r >= 0xD800 && r <= 0xDFFF, r == 0xFFFE, r == 0xFFFF:
			return false
		}
	}
	return true
}

// shape is el's elements, each with its attributes' names, in document
// order.
func shape(el *etree.Element) string {
	var b bytes.Buffer
	var walk func(el *etree.Element, depth int)
	walk = func(el *etree.Element, depth int) {
		b.WriteString(strings.Repeat(" ", depth) + el.FullTag())
		for _, a := range el.Attr {
			b.WriteString(" " + a.FullKey())
		}
		b.WriteByte('\n')
		for _, c := range el.ChildElements() {
			walk(c, depth+1)
		}
	}
	walk(el, 0)
	return b.String()
}
