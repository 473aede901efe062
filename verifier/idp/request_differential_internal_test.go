package idp

// The one-pass AuthnRequest reader against the old path, on hostile input:
// targeted differential cases against the oracle, and a stronger
// differential that compares the reader with xml.Unmarshal directly (not
// only through checkFields with one fixed Expect, which hides any field
// difference in a request it refuses for another reason).

import (
	"bytes"
	"encoding/xml"
	"reflect"
	"strings"
	"testing"

	"github.com/crewjam/saml"
)

const (
	rvP    = `urn:oasis:names:tc:SAML:2.0:protocol`
	rvA    = `urn:oasis:names:tc:SAML:2.0:assertion`
	rvPOST = `urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST`
	rvUnsp = `urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified`
	rvMail = `urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress`
)

// rvRoot is an Okta-shaped root start tag with extra attributes.
func rvRoot(extra string) string {
	return `<p:AuthnRequest xmlns:p="` + rvP + `" AssertionConsumerServiceURL="` + tACS + `" Destination="` + tSSO +
		`" ID="id4242" IssueInstant="2026-12-01T12:00:00.000Z" ProtocolBinding="` + rvPOST + `" Version="2.0"` + extra + `>`
}

func rvIssuer() string { return `<a:Issuer xmlns:a="` + rvA + `">` + tAudience + `</a:Issuer>` }
func rvSubject(name string) string {
	return `<a:Subject xmlns:a="` + rvA + `"><a:NameID>` + name + `</a:NameID></a:Subject>`
}

func rvDoc(extra, inner string) string {
	return rvRoot(extra) + inner + `</p:AuthnRequest>`
}

// hostileSeeds: namespace tricks, attribute collisions, text split in
// pieces, order, empties, trailers, BOM, encodings, sizes.
func hostileSeeds() []string {
	std := rvIssuer() + rvSubject("ada@example.com")
	s := []string{
		// Default namespace redeclared, reset, and prefixes rebound.
		`<AuthnRequest xmlns="` + rvP + `" ID="id1" Version="2.0" IssueInstant="2026-12-01T12:00:00Z" Destination="` + tSSO + `"><Issuer xmlns="` + rvA + `">` + tAudience + `</Issuer><Subject xmlns="` + rvA + `"><NameID>ada@example.com</NameID></Subject><NameIDPolicy Format="` + rvUnsp + `"/></AuthnRequest>`,
		`<AuthnRequest xmlns="` + rvP + `" ID="id1" Version="2.0" IssueInstant="2026-12-01T12:00:00Z" Destination="` + tSSO + `"><Issuer>` + tAudience + `</Issuer>` + rvSubject("ada@example.com") + `</AuthnRequest>`,
		rvDoc(``, `<Issuer xmlns="">`+tAudience+`</Issuer>`+std),
		rvDoc(` xmlns="`+rvA+`"`, `<Issuer>`+tAudience+`</Issuer><Subject><NameID>ada@example.com</NameID></Subject>`),
		rvDoc(` xmlns="`+rvA+`"`, `<Issuer xmlns="">`+tAudience+`</Issuer><Subject><NameID xmlns="">eve</NameID></Subject>`),
		rvDoc(` xmlns:a="`+rvA+`"`, `<a:Issuer xmlns:a="urn:x">evil</a:Issuer>`+std),
		rvDoc(` xmlns:a="`+rvP+`"`, `<a:Subject><a:NameID>eve</a:NameID></a:Subject>`+std),
		rvDoc(``, rvIssuer()+`<a:Subject xmlns:a="`+rvA+`"><a:NameID xmlns:a="`+rvP+`">eve</a:NameID></a:Subject>`),
		rvDoc(``, rvIssuer()+`<a:Subject xmlns:a="`+rvA+`"><b:NameID xmlns:b="`+rvA+`">ada</b:NameID></a:Subject>`),
		rvDoc(``, std+`<p:NameIDPolicy xmlns:p="`+rvA+`" Format="urn:evil"/>`),
		rvDoc(``, std+`<a:NameIDPolicy xmlns:a="`+rvA+`"/>`),
		rvDoc(``, std+`<NameIDPolicy Format="`+rvMail+`"/>`),
		rvDoc(``, std+`<p:NameIDPolicy xmlns:p="`+rvP+`" Format="`+rvMail+`" AllowCreate=" true "/>`),
		rvDoc(``, `<p:Issuer>`+tAudience+`</p:Issuer>`+std),
		rvDoc(``, std+`<x:Issuer xmlns:x="urn:x">evil</x:Issuer>`),
		rvDoc(``, `<x:Subject xmlns:x="urn:x"><x:NameID>eve</x:NameID></x:Subject>`+std),
		rvDoc(``, rvIssuer()+`<p:Subject><p:NameID>eve</p:NameID></p:Subject>`),
		rvDoc(``, std+`<p:Extensions><a:Subject xmlns:a="`+rvA+`"><a:NameID>eve</a:NameID></a:Subject></p:Extensions>`),
		rvDoc(``, std+`<Signature>x</Signature>`),
		rvDoc(``, std+`<a:Conditions xmlns:a="`+rvA+`"/>`),
		// Attribute collisions: local names in other namespaces, xml:,
		// xmlns:, duplicates.
		rvDoc(` xmlns:x="urn:x" x:ID="idx"`, std),
		rvDoc(` xml:ID="idxml"`, std),
		rvDoc(` xmlns:ID="urn:idns"`, std),
		rvDoc(` xmlns:Destination="https://evil.example/sso"`, std),
		rvDoc(` xmlns:x="urn:x" x:AssertionConsumerServiceURL="https://evil.example/acs"`, std),
		rvDoc(` xmlns:x="urn:x" x:ProtocolBinding="urn:evil"`, std),
		rvDoc(` ID="id2"`, std),
		rvDoc(` IsPassive="true" xmlns:x="urn:x" x:IsPassive="false"`, std),
		rvDoc(` xmlns:x="urn:x" x:IsPassive="true"`, std),
		rvDoc(` ForceAuthn="true" ForceAuthn="false"`, std),
		rvDoc(` ForceAuthn=" "`, std),
		rvDoc(` IsPassive="&#x20;1&#x9;"`, std),
		rvDoc(` IssueInstant=""`, std),
		rvDoc(` xmlns:x="urn:x" x:IssueInstant="1999-01-01T00:00:00Z"`, std),
		rvDoc(` xmlns:x="urn:x" x:IssueInstant="bad"`, std),
		rvDoc(``, `<a:Issuer xmlns:a="`+rvA+`" Format="f" a:Format="g" xml:Format="h">`+tAudience+`</a:Issuer>`+rvSubject("ada")),
		rvDoc(``, rvIssuer()+`<a:Subject xmlns:a="`+rvA+`"><a:NameID Format="`+rvMail+`" Format="`+rvUnsp+`">ada</a:NameID></a:Subject>`),
		rvDoc(``, rvIssuer()+`<a:Subject xmlns:a="`+rvA+`"><a:NameID xmlns:Format="urn:evil">ada</a:NameID></a:Subject>`),
		rvDoc(``, rvIssuer()+`<a:Subject xmlns:a="`+rvA+`"><a:NameID xml:space="preserve"> ada </a:NameID></a:Subject>`),
		rvDoc(``, std+`<p:NameIDPolicy xmlns:Format="urn:evil"/>`),
		// Text split in pieces; references; whitespace.
		rvDoc(``, rvIssuer()+rvSubject("ada<![CDATA[@]]>example.com<![CDATA[]]>")),
		rvDoc(``, rvIssuer()+rvSubject("&#97;&#x64;a&#x40;example.com")),
		rvDoc(``, rvIssuer()+rvSubject("ada&#xA;@example.com")),
		rvDoc(``, rvIssuer()+rvSubject("ada\r\n@example.com")),
		rvDoc(``, rvIssuer()+rvSubject("\t ada@example.com \r\n")),
		rvDoc(``, rvIssuer()+rvSubject("&#xA0;ada@example.com")),
		rvDoc(``, rvIssuer()+rvSubject("ada@example.com&#x200B;")),
		rvDoc(``, `<a:Issuer xmlns:a="`+rvA+`">https://www.okta.com/<![CDATA[saml2/service-provider]]>/spunit<!-- c --></a:Issuer>`+rvSubject("ada")),
		rvDoc(``, `<a:Issuer xmlns:a="`+rvA+`">`+tAudience+`<?xml version="1.0"?></a:Issuer>`+rvSubject("ada")),
		rvDoc(``, `<a:Issuer xmlns:a="`+rvA+`">`+tAudience+`<a:Issuer>x</a:Issuer></a:Issuer>`+rvSubject("ada")),
		// Order, empties, self-closing, repeats.
		rvDoc(``, rvSubject("ada@example.com")+rvIssuer()),
		rvDoc(``, `<p:NameIDPolicy Format="`+rvMail+`"/>`+rvSubject("ada")+rvIssuer()),
		rvDoc(``, `<a:Issuer xmlns:a="`+rvA+`"/>`+rvSubject("ada")),
		rvDoc(``, rvIssuer()+`<a:Subject xmlns:a="`+rvA+`"><a:NameID/></a:Subject>`),
		rvDoc(``, rvIssuer()+`<a:Subject xmlns:a="`+rvA+`"></a:Subject>`),
		rvDoc(``, rvIssuer()+rvIssuer()+rvSubject("ada")),
		rvDoc(``, std+`<p:NameIDPolicy/><p:NameIDPolicy Format="urn:evil"/>`),
		rvDoc(``, std+`<p:NameIDPolicy></p:NameIDPolicy>`),
		rvDoc(``, std+` text <!-- c --> `),
		rvRoot(``)[:len(rvRoot(``))-1] + `/>`,
		// Before and after the root; BOM; declarations.
		"\ufeff" + rvDoc(``, std),
		`<?xml version="1.0" encoding="UTF-8"?>` + "\n" + rvDoc(``, std),
		`<?xml version="1.0" encoding="utf-16"?>` + rvDoc(``, std),
		`<?xml version="1.0" encoding="US-ASCII"?>` + rvDoc(``, std),
		`<?xml version="1.1"?>` + rvDoc(``, std),
		`<!-- x -->` + rvDoc(``, std) + `<!-- y -->`,
		rvDoc(``, std) + rvDoc(``, rvIssuer()+rvSubject("eve")),
		rvDoc(``, std) + `<x/>`,
		rvDoc(``, std) + `trailing`,
		rvDoc(``, std) + `</p:AuthnRequest>`,
		`<x/>` + rvDoc(``, std),
		// Sizes.
		rvDoc(``, rvIssuer()+rvSubject(strings.Repeat("a", 600))),
		rvDoc(` ProviderName="`+strings.Repeat("p", 15000)+`"`, std),
		rvDoc(strings.Repeat(` xmlns:x="urn:x"`, 1), std),
		rvDoc(``, std+strings.Repeat(`<p:Extensions>`, 200)+strings.Repeat(`</p:Extensions>`, 200)),
	}
	// Many attributes, over the round-trip fast path's 32.
	var many strings.Builder
	for i := range 40 {
		many.WriteString(` a` + strings.Repeat("x", i) + `="v"`)
	}
	s = append(s, rvDoc(many.String(), std))
	return s
}

// TestHostileValidateMatchesOracle runs the hostile seeds, unsigned and
// signed (enveloped, as Okta does), in every mode.
func TestHostileValidateMatchesOracle(t *testing.T) {
	f := newOracleFixture(t)
	seeds := hostileSeeds()
	for _, s := range seeds {
		for mode := range oracleModeCount {
			f.compare(t, []byte(s), mode)
		}
	}
	// Signed copies of those etree can parse, and their held form.
	signedCount := 0
	for _, s := range seeds {
		signed, ok := trySign(f, s)
		if !ok {
			continue
		}
		signedCount++
		for mode := range oracleModeCount {
			f.compare(t, []byte(signed), mode)
		}
		if req, err := Validate(&Received{Binding: BindingPost, XML: []byte(signed)}, expect(f.cert)); err == nil {
			f.compare(t, req.XML, modeReparse)
			compareReader(t, req.XML)
		}
	}
	t.Logf("%d seeds, %d signed", len(seeds), signedCount)
	for _, s := range seeds {
		compareReader(t, []byte(s))
	}
}

func trySign(f oracleFixture, s string) (out string, ok bool) {
	defer func() {
		if recover() != nil {
			ok = false
		}
	}()
	ft := &fatalTB{}
	out = signEnveloped(ft, f.key, f.cert, s)
	return out, !ft.failed
}

type fatalTB struct {
	testing.TB
	failed bool
}

func (f *fatalTB) Fatal(...any) { f.failed = true; panic("fatal") }
func (f *fatalTB) Helper()      {}

// compareReader: whenever the reader (on checkXML's pass) or readHeld
// answers, xml.Unmarshal on the same bytes must succeed with the same
// AuthnRequest, and the Subject rules must hold, whatever checkFields
// would say of it.
func compareReader(t *testing.T, data []byte) {
	t.Helper()
	var want saml.AuthnRequest
	uerr := xml.Unmarshal(bytes.Clone(data), &want)
	var pass tokenPass
	if checkXML(data, &pass) == nil {
		if got, ok := pass.read.result(); ok {
			if uerr != nil {
				t.Fatalf("reader read what xml.Unmarshal refuses (%v):\n%s", uerr, data)
			}
			if !reflect.DeepEqual(*got, want) {
				t.Fatalf("reader %+v\nUnmarshal %+v\n%s", *got, want, data)
			}
		}
	}
	if got, ok := readHeld(data); ok {
		if uerr != nil {
			t.Fatalf("readHeld read what xml.Unmarshal refuses (%v):\n%s", uerr, data)
		}
		if err := oracleCheckSubject(data); err != nil {
			t.Fatalf("readHeld read what checkSubject refuses (%v):\n%s", err, data)
		}
		if !reflect.DeepEqual(*got, want) {
			t.Fatalf("readHeld %+v\nUnmarshal %+v\n%s", *got, want, data)
		}
	}
}

// FuzzReaderMatchesUnmarshal holds the reader to xml.Unmarshal on every
// document, accepted or not.
func FuzzReaderMatchesUnmarshal(f *testing.F) {
	fx := newOracleFixture(f)
	for _, s := range oracleSeeds(f, fx.key, fx.cert) {
		f.Add(s)
	}
	for _, s := range hostileSeeds() {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 2*MaxRequestXML {
			return
		}
		compareReader(t, data)
	})
}

// Resource use on hostile input, new path against the oracle, with
// signatures required (what anyone on the internet can send: refused at
// the signature) and not.
func hostileRequests() map[string][]byte {
	std := rvIssuer() + rvSubject("ada@example.com")
	var many strings.Builder
	for i := range 1500 {
		many.WriteString(` x` + strings.Repeat("y", i%7) + `z` + string(rune('a'+i%26)) + `="v"`)
	}
	return map[string][]byte{
		"okta":       []byte(rvDoc(``, std)),
		"deep":       []byte(rvDoc(``, std+strings.Repeat(`<e>`, 2700)+strings.Repeat(`</e>`, 2700))),
		"deepSubj":   []byte(rvDoc(``, rvIssuer()+`<a:Subject xmlns:a="`+rvA+`"><a:NameID>x</a:NameID><a:NameID>`+strings.Repeat(`<e>`, 2000)+strings.Repeat(`</e>`, 2000)+`</a:NameID></a:Subject>`)),
		"manyAttrs":  []byte(rvDoc(many.String()[:15000], std)),
		"hugeText":   []byte(rvDoc(``, rvIssuer()+rvSubject(strings.Repeat("a", 15800)))),
		"hugeIssuer": []byte(rvDoc(``, `<a:Issuer xmlns:a="`+rvA+`">`+strings.Repeat("<![CDATA[a]]>", 1200)+`</a:Issuer>`+rvSubject("ada"))),
		"manyElems":  []byte(rvDoc(``, std+strings.Repeat(`<a/>`, 3900))),
	}
}

func BenchmarkHostileRequests(b *testing.B) {
	key, cert := testSigner(b)
	_ = key
	for name, data := range hostileRequests() {
		for _, signedReq := range []bool{false, true} {
			e := expect(nil)
			if signedReq {
				e = expect(cert)
			}
			for _, impl := range []string{"new", "old"} {
				b.Run(name+"/signed="+map[bool]string{false: "no", true: "req"}[signedReq]+"/"+impl, func(b *testing.B) {
					b.ReportAllocs()
					for b.Loop() {
						rec := &Received{Binding: BindingRedirect, XML: data}
						if impl == "new" {
							Validate(rec, e)
						} else {
							oracleValidate(rec, e)
						}
					}
				})
			}
		}
		for _, impl := range []string{"new", "old"} {
			b.Run(name+"/reparse/"+impl, func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					if impl == "new" {
						Reparse(data, "", expect(nil))
					} else {
						oracleReparse(data, "", expect(nil))
					}
				}
			})
		}
	}
}

// rvGen builds a document from fuzz bytes out of the pieces an attacker
// would combine: prefixes bound and rebound, default namespaces set and
// reset, attributes in every namespace and repeated, Issuer/Subject/NameID/
// NameIDPolicy in and out of order and repeated, text in pieces. The
// first byte picks how hostile: in the tame half each choice is Okta's
// (the first listed) seven times in eight, so that many documents pass
// checkFields and the whole Request is compared, not only the refusal.
type rvGen struct {
	b    []byte
	tame bool
}

func (g *rvGen) n(k int) int {
	if len(g.b) == 0 {
		return 0
	}
	c := int(g.b[0])
	g.b = g.b[1:]
	return c % k
}

func (g *rvGen) pick(s ...string) string {
	if g.tame && g.n(8) != 0 {
		return s[0]
	}
	return s[g.n(len(s))]
}

func (g *rvGen) count(tame, k int) int {
	if g.tame && g.n(8) != 0 {
		return tame
	}
	return g.n(k)
}

func (g *rvGen) nsDecl() string {
	return g.pick("", ` xmlns:a="`+rvA+`"`, ` xmlns:p="`+rvP+`"`, ` xmlns="`+rvA+`"`, ` xmlns="`+rvP+`"`, ` xmlns=""`,
		` xmlns:a="`+rvP+`"`, ` xmlns:p="`+rvA+`"`, ` xmlns:a="urn:x"`, ` xmlns:x="urn:x"`)
}

func (g *rvGen) text(base string) string {
	var s strings.Builder
	for range 1 + g.count(0, 3) {
		switch g.count(9, 10) {
		case 0:
			s.WriteString("<![CDATA[" + base + "]]>")
		case 1:
			s.WriteString("<!--c-->")
		case 2:
			s.WriteString(g.pick(" ", "\n", "\t", "&#x20;", "&#xA;", "&#160;"))
		case 3:
			s.WriteString(g.pick("&amp;", "&#64;", "&#x2E;", "&lt;", "&quot;"))
		case 4:
			s.WriteString("")
		case 5:
			s.WriteString(base[:len(base)/2] + "<![CDATA[" + base[len(base)/2:] + "]]>")
		case 6:
			s.WriteString(base[:len(base)/2] + "<!---->" + base[len(base)/2:])
		default:
			s.WriteString(base)
		}
	}
	return s.String()
}

func (g *rvGen) attrName(local string) string {
	return g.pick("", "x:", "a:", "p:", "xml:", "xmlns:") + local
}

func (g *rvGen) nameAttrs() string {
	var s strings.Builder
	for range g.count(0, 3) {
		s.WriteString(" " + g.attrName(g.pick("Format", "NameQualifier", "SPNameQualifier", "SPProvidedID", "Other")) + `="` +
			g.pick(rvUnsp, rvMail, "urn:evil", "", "q") + `"`)
	}
	return s.String()
}

func (g *rvGen) elem(pfx, local, attrs, content string) string {
	pfx = g.pick(pfx, "a:", "p:", "", "x:")
	return "<" + pfx + local + g.nsDecl() + attrs + ">" + content + "</" + pfx + local + ">"
}

func (g *rvGen) issuer() string { return g.elem("a:", "Issuer", g.nameAttrs(), g.text(tAudience)) }

func (g *rvGen) subject() string {
	var ids strings.Builder
	for range g.count(1, 3) {
		ids.WriteString(g.elem("a:", "NameID", g.nameAttrs(), g.text(g.pick("ada@example.com", "eve", ""))))
	}
	if g.count(1, 4) == 0 {
		ids.WriteString(g.text(" "))
	}
	return g.elem("a:", "Subject", "", ids.String())
}

func (g *rvGen) policy() string {
	var at strings.Builder
	for range g.count(1, 4) {
		at.WriteString(" " + g.attrName(g.pick("Format", "AllowCreate", "SPNameQualifier")) + `="` + g.pick(rvUnsp, rvMail, "true", " 0 ", "", "maybe") + `"`)
	}
	return g.elem("p:", "NameIDPolicy", at.String(), g.pick("", "t", "<e/>"))
}

func (g *rvGen) child() string {
	switch g.n(8) {
	case 0, 1:
		return g.issuer()
	case 2, 3:
		return g.subject()
	case 4:
		return g.policy()
	case 5:
		return g.elem("p:", g.pick("Extensions", "Conditions", "Signature", "RequestedAuthnContext", "Scoping"), "", "")
	default:
		return g.pick("<!--c-->", " ", "text", "<?xml version=\"1.0\"?>")
	}
}

func (g *rvGen) doc() string {
	g.tame = g.n(2) == 0
	var s strings.Builder
	s.WriteString(g.pick("", `<?xml version="1.0" encoding="UTF-8"?>`, "<!--c-->", "\ufeff", " \n"))
	root := g.pick("p:AuthnRequest", "AuthnRequest", "a:AuthnRequest")
	s.WriteString("<" + root + ` xmlns:p="` + rvP + `"` + g.pick(` xmlns:a="`+rvA+`"`, "", ` xmlns="`+rvP+`"`, ` xmlns="`+rvA+`" xmlns:a="`+rvA+`"`))
	attrs := []string{
		`ID="` + g.pick("id1", "1bad", "") + `"`,
		`Version="` + g.pick("2.0", "1.0") + `"`,
		`IssueInstant="` + g.pick("2026-12-01T12:00:00Z", "2026-12-01T12:00:00.000Z", "2026-12-01T13:00:00+01:00", "2026-12-01T12:00:00", "", "x") + `"`,
		`Destination="` + g.pick(tSSO, "https://evil.example/") + `"`,
		`AssertionConsumerServiceURL="` + g.pick(tACS, "", "https://evil.example/acs") + `"`,
		`ProtocolBinding="` + g.pick(rvPOST, "", "urn:evil") + `"`,
		`ForceAuthn="` + g.pick("false", "true", " 1 ", "", "maybe") + `"`,
		`IsPassive="` + g.pick("false", "true", "", "0") + `"`,
		`Consent="c"`, `ProviderName="pn"`, `AssertionConsumerServiceIndex="1"`, `AttributeConsumingServiceIndex="2"`,
	}
	for i, a := range attrs {
		switch g.count(0, 8) {
		case 0:
			if i < 8 {
				s.WriteString(" " + a)
			}
		case 1:
			s.WriteString(" " + g.attrName("") + a)
		case 2:
			s.WriteString(" " + a + " " + g.pick("x:", "xml:", "xmlns:", "") + a)
		case 3:
			s.WriteString(" " + a)
		}
	}
	if g.n(4) == 0 {
		s.WriteString(` xmlns:x="urn:x"`)
	}
	s.WriteString(">")
	if g.tame {
		s.WriteString(g.issuer() + g.subject())
		if g.n(2) == 0 {
			s.WriteString(g.policy())
		}
		for range g.count(0, 3) {
			s.WriteString(g.child())
		}
	} else {
		for range 1 + g.n(6) {
			s.WriteString(g.child())
		}
	}
	s.WriteString("</" + root + ">")
	s.WriteString(g.pick("", "<!--c-->", "\n", "<x/>", "</x>", "<p:AuthnRequest xmlns:p=\""+rvP+"\"/>"))
	return s.String()
}

// FuzzStructuredMatchesOracle: generated documents against the oracle in every
// mode, and the reader against xml.Unmarshal.
func FuzzStructuredMatchesOracle(f *testing.F) {
	fx := newOracleFixture(f)
	for i := range 64 {
		f.Add([]byte{byte(i), 3, 5, 7, byte(i * 7), 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, byte(i * 13)})
	}
	f.Fuzz(func(t *testing.T, seed []byte) {
		g := &rvGen{b: seed}
		data := []byte(g.doc())
		compareReader(t, data)
		for mode := range oracleModeCount {
			if mode != modeSignedPost {
				fx.compare(t, data, mode)
			}
		}
	})
}

// TestStructuredMatchesOracle sweeps the generator with pseudo-random bytes and
// counts how many documents were accepted, so the sweep is known to reach
// the reader's success path.
func TestStructuredMatchesOracle(t *testing.T) {
	fx := newOracleFixture(t)
	accepted, read := 0, 0
	state := uint64(1)
	for range 4000 {
		seed := make([]byte, 64)
		for i := range seed {
			state = state*6364136223846793005 + 1442695040888963407
			seed[i] = byte(state >> 56)
		}
		data := []byte((&rvGen{b: seed}).doc())
		compareReader(t, data)
		fx.compare(t, data, modeUnsignedRedirect)
		fx.compare(t, data, modeReparse)
		if _, err := Validate(&Received{Binding: BindingRedirect, XML: data}, expect(nil)); err == nil {
			accepted++
		}
		var pass tokenPass
		if checkXML(data, &pass) == nil {
			if _, ok := pass.read.result(); ok {
				read++
			}
		}
	}
	t.Logf("accepted %d, read by the reader %d, of 4000", accepted, read)
}

// TestSignedPostTampering: what an attacker holding one Okta-signed
// POST request can change without breaking its signature (what exclusive
// C14N leaves out: comments, unused namespace declarations, anything
// outside the signed root), and that Validate, like the oracle, reads only
// the signed element and never the one-pass reader's view of the outer
// document.
func TestSignedPostTampering(t *testing.T) {
	f := newOracleFixture(t)
	base := signEnveloped(t, f.key, f.cert, rvDoc(``, rvIssuer()+rvSubject("ada@example.com")+`<p:NameIDPolicy Format="`+rvUnsp+`"/>`))
	if _, err := Validate(&Received{Binding: BindingPost, XML: []byte(base)}, expect(f.cert)); err != nil {
		t.Fatalf("base: %v", err)
	}
	evilRoot := rvDoc(``, rvIssuer()+rvSubject("eve@example.com"))
	cases := map[string]string{
		"comment in NameID":       strings.Replace(base, "ada@example.com", "ada@<!---->example.com", 1),
		"comment splits NameID":   strings.Replace(base, "ada@example.com", "ada@example.com<!--x-->.attacker.example", 1),
		"second root after":       base + evilRoot,
		"second root before":      evilRoot + base,
		"unused default ns":       strings.Replace(base, "<a:NameID>", `<a:NameID xmlns="urn:evil">`, 1),
		"unused prefix on NameID": strings.Replace(base, "<a:NameID>", `<a:NameID xmlns:x="urn:x">`, 1),
		"comment before Subject":  strings.Replace(base, "<a:Subject", "<!--c--><a:Subject", 1),
		"trailing comment/text":   base + "<!--c-->\n",
		"leading comment":         "<!--c-->" + base,
		"redeclared a on Subject": strings.Replace(base, `<a:Subject xmlns:a="`+rvA+`">`, `<a:Subject xmlns:a="`+rvA+`" xmlns:b="`+rvA+`">`, 1),
	}
	for name, doc := range cases {
		f.compare(t, []byte(doc), modeSignedPost)
		req, err := Validate(&Received{Binding: BindingPost, XML: []byte(doc)}, expect(f.cert))
		if err == nil {
			if req.Username != "ada@example.com" {
				t.Errorf("%s: signed POST read username %q", name, req.Username)
			}
			f.compare(t, req.XML, modeReparse)
			compareReader(t, req.XML)
			t.Logf("%s: accepted, username %q", name, req.Username)
		} else {
			t.Logf("%s: refused: %v", name, err)
		}
	}
}
