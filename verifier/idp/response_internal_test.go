package idp

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/xml"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/beevik/etree"
	dsig "github.com/russellhaering/goxmldsig"
)

// TestResponseIsCanonical: what each signature's digest is computed over is,
// byte for byte, goxmldsig's exclusive canonicalization of that element as
// an SP parses it from the document sent (its own Signature left out), for
// every --sign mode and for hostile text in every value a request or the
// assertion hook controls; and New refuses an unknown --sign.
func TestResponseIsCanonical(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 12, 3, 5, 0, 0, 123456789, time.UTC)
	id, err := LoadOrCreate(context.Background(), t.TempDir(), 2048, "", now)
	if err != nil {
		t.Fatal(err)
	}
	base := Settings{MetadataURL: "https://v.example.com/saml/metadata?a=1&b=<2>", SSOURL: "https://v.example.com/saml/sso",
		Audience: `https://www.okta.com/saml2/service-provider/sp"abc'&`, ACSURLs: []string{"https://example.okta.com/sso/saml2/0oa1?x=1&y=2"}}
	bad := base
	bad.Sign = "neither"
	if _, err := New(id, bad); err == nil {
		t.Error("New accepted sign \"neither\"")
	}
	c14n := dsig.MakeC14N10ExclusiveCanonicalizerWithPrefixList("")
	// canonical is el's canonical text with its own Signature left out.
	canonical := func(el *etree.Element) []byte {
		el = el.Copy()
		for _, c := range el.ChildElements() {
			if c.Tag == "Signature" && c.Space == "ds" {
				el.RemoveChild(c)
			}
		}
		b, err := c14n.Canonicalize(el)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	cases := []struct {
		name, user, reqID, format string
		attrs                     []Attribute
	}{
		{name: "plain", user: "ada@example.com", reqID: "id-req1"},
		{name: "special", user: `a&b<c>"d'e]]>@example.com`, reqID: "id-\t\n\r&<>\"'", format: "urn:x?a=1&b=\"2\"",
			attrs: []Attribute{{Name: `n&<>"'`, Value: `v&<>"'\]]>`}, {Name: "u", Value: "Ωμέγα😀"}}},
		{name: "long", user: strings.Repeat("x", 20000) + "@example.com", reqID: strings.Repeat("i", 1000),
			attrs: []Attribute{{Name: "groups", Value: strings.Repeat("g,", 5000)}}},
	}
	for _, mode := range []string{SignBoth, SignResponse, SignAssertion} {
		s := base
		s.Sign = mode
		p, err := New(id, s)
		if err != nil {
			t.Fatal(err)
		}
		for _, tc := range cases {
			t.Run(mode+"/"+tc.name, func(t *testing.T) {
				f := &assertionFields{responseID: "id-r", assertionID: "id-a", sessionIndex: "id-s", issuer: p.issuer,
					destination: s.ACSURLs[0], inResponseTo: tc.reqID, audience: s.Audience, nameID: tc.user,
					nameIDFormat: tc.format, address: "2001:db8::1", authnContext: AuthnContextX509, attributes: tc.attrs, now: now}
				if f.nameIDFormat == "" {
					f.nameIDFormat = NameIDUnspecified
				}
				aHead, aTail, err := assertion(f)
				if err != nil {
					t.Fatal(err)
				}
				doc, err := p.document(f)
				if err != nil {
					t.Fatal(err)
				}
				parsed := etree.NewDocument()
				if err := parsed.ReadFromBytes(doc); err != nil {
					t.Fatal(err)
				}
				root := parsed.Root()
				a := root.FindElement("./Assertion")
				if a == nil {
					t.Fatal("no Assertion")
				}
				if got, want := canonical(a), append(bytes.Clone(aHead), aTail...); !bytes.Equal(got, want) {
					t.Errorf("Assertion's canonical form:\n%s\ndigested:\n%s", got, want)
				}
				// The Response's digest covers the Assertion as sent.
				assertionText := canonical(a)
				if sig := a.FindElement("./Signature"); sig != nil {
					withSig, err := c14n.Canonicalize(a.Copy())
					if err != nil {
						t.Fatal(err)
					}
					assertionText = withSig
				}
				rHead, _, rTail, err := response(f, assertionText)
				if err != nil {
					t.Fatal(err)
				}
				if got, want := canonical(root), append(bytes.Clone(rHead), rTail...); !bytes.Equal(got, want) {
					t.Errorf("Response's canonical form:\n%s\ndigested:\n%s", got, want)
				}
				sigs := len(root.FindElements("./Signature")) + len(a.FindElements("./Signature"))
				if want := map[string]int{SignBoth: 2, SignResponse: 1, SignAssertion: 1}[mode]; sigs != want {
					t.Errorf("%d signatures, want %d", sigs, want)
				}
				if got := a.FindElement("./Subject/NameID").Text(); got != tc.user {
					t.Errorf("NameID %q, want %q", got, tc.user)
				}
			})
		}
	}
}

// TestRespondRefusesWhatXMLCannotCarry: a value XML 1.0 cannot carry is
// refused, not written.
func TestRespondRefusesWhatXMLCannotCarry(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 12, 3, 5, 0, 0, 0, time.UTC)
	p := plainIdP(t, now)
	for _, v := range []string{"\x00", "a\x01b", "\uFFFE", "\uFFFF", "\xff", "a\xc3"} {
		for _, f := range []assertionFields{{nameID: v}, {inResponseTo: v}, {attributes: []Attribute{{Name: "n", Value: v}}}, {attributes: []Attribute{{Name: v, Value: "v"}}}} {
			f.now = now
			if _, err := p.document(&f); err == nil {
				t.Errorf("%+q in %+v: written", v, f)
			}
		}
	}
	// Through Respond, a request ID with a NUL (which a parsed request
	// cannot hold, but a caller might pass) is refused too.
	req := &Request{Username: "ada@example.com"}
	req.AuthnRequest.ID = "id-\x00"
	if b64, err := p.Respond(httptest.NewRequest("GET", "/", nil), req, Assert{}, now); err == nil {
		raw, _ := base64.StdEncoding.DecodeString(b64)
		t.Errorf("written: %q", raw)
	}
}

// TestResponseTimesAreUTC: SAML times are UTC with no zone offset (SAML
// core 1.3.3), to the millisecond at most, whatever zone the clock passed to
// Respond is in; each says the instant it should.
func TestResponseTimesAreUTC(t *testing.T) {
	t.Parallel()
	zone := time.FixedZone("UTC+1", 3600)
	p := plainIdP(t, time.Now())
	for _, now := range []time.Time{
		time.Date(2026, 12, 3, 6, 0, 0, 123_456_789, zone),
		time.Date(2026, 12, 3, 6, 59, 59, 999_600_000, zone), // rounds up into the next second and hour
	} {
		req := &Request{Username: "ada@example.com"}
		req.AuthnRequest.ID = "id-req1"
		b64, err := p.Respond(httptest.NewRequest("GET", "/", nil), req, Assert{}, now)
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := base64.StdEncoding.DecodeString(b64)
		doc := etree.NewDocument()
		if err := doc.ReadFromBytes(raw); err != nil {
			t.Fatal(err)
		}
		at := now.Round(time.Millisecond)
		want := map[string]time.Time{
			"./IssueInstant": at, "./Assertion/IssueInstant": at, "./Assertion/AuthnStatement/AuthnInstant": at,
			"./Assertion/Conditions/NotBefore":                                             at.Add(-clockSkew),
			"./Assertion/Conditions/NotOnOrAfter":                                          at.Add(issueDelay),
			"./Assertion/Subject/SubjectConfirmation/SubjectConfirmationData/NotOnOrAfter": at.Add(issueDelay),
		}
		form := regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,3})?Z$`)
		for path, w := range want {
			el := doc.Root()
			if dir, _ := filepath.Split(path); dir != "./" {
				el = doc.Root().FindElement(strings.TrimSuffix(dir, "/"))
			}
			v := el.SelectAttrValue(filepath.Base(path), "")
			if !form.MatchString(v) {
				t.Errorf("%s = %q: not UTC to the millisecond", path, v)
				continue
			}
			if got, err := time.Parse(time.RFC3339Nano, v); err != nil || !got.Equal(w) {
				t.Errorf("%s = %q, want %s", path, v, w.UTC().Format(time.RFC3339Nano))
			}
		}
	}
}

// plainIdP signs both Response and Assertion for a plain Okta org.
func plainIdP(t *testing.T, now time.Time) *IdP {
	t.Helper()
	id, err := LoadOrCreate(context.Background(), t.TempDir(), 2048, "", now)
	if err != nil {
		t.Fatal(err)
	}
	p, err := New(id, Settings{MetadataURL: "https://v.example.com/saml/metadata", SSOURL: "https://v.example.com/saml/sso",
		Audience: "https://www.okta.com/sp", ACSURLs: []string{"https://example.okta.com/acs"}})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestMetadataHasNoExpiry: the metadata document says neither when it
// expires nor how long to cache it, so a saved copy never looks stale,
// and offers only the signing key.
func TestMetadataHasNoExpiry(t *testing.T) {
	t.Parallel()
	md := plainIdP(t, time.Now()).Metadata()
	var ed struct {
		XMLName xml.Name
		Attrs   []xml.Attr `xml:",any,attr"`
		IDP     struct {
			Keys []struct {
				Use string `xml:"use,attr"`
			} `xml:"KeyDescriptor"`
		} `xml:"IDPSSODescriptor"`
	}
	if err := xml.Unmarshal(md, &ed); err != nil {
		t.Fatal(err)
	}
	if ed.XMLName.Local != "EntityDescriptor" {
		t.Fatalf("root element %v", ed.XMLName)
	}
	for _, a := range ed.Attrs {
		if a.Name.Local == "validUntil" || a.Name.Local == "cacheDuration" {
			t.Errorf("metadata has %s=%q", a.Name.Local, a.Value)
		}
	}
	if len(ed.IDP.Keys) != 1 || ed.IDP.Keys[0].Use != "signing" {
		t.Errorf("metadata keys: %+v", ed.IDP.Keys)
	}
}
