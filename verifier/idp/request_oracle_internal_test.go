package idp

import (
	"bytes"
	"crypto/rsa"
	"crypto/x509"
	"encoding"
	"encoding/base64"
	"encoding/xml"
	"errors"
	"io"
	"net/url"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/beevik/etree"
	"github.com/clearance/clearance/verifier/reason"
	"github.com/crewjam/saml"
	dsig "github.com/russellhaering/goxmldsig"
)

// The request path as it was before checkXML carried the Subject rules:
// separate passes for the XML checks and the Subject, then xml.Unmarshal.
// It is the oracle the differential tests hold Validate and Reparse to: the
// same refusals, with the same reasons and details, and the same Request.

func oracleValidate(rec *Received, e Expect) (*Request, error) {
	if err := oracleCheckXML(rec.XML); err != nil {
		return nil, err
	}
	signedXML := rec.XML
	signed := false
	switch {
	case len(e.RequestCerts) == 0:
	case rec.Binding == BindingRedirect:
		if rec.Signature == nil {
			return nil, refuse(reason.MissingSignature, "request signing is required and the request carries no Signature")
		}
		if err := verifyRedirect(rec, e.RequestCerts, e.Now); err != nil {
			return nil, err
		}
		signed = true
	default:
		el, err := verifyEnveloped(rec.XML, e.RequestCerts, e.Now)
		if err != nil {
			return nil, err
		}
		doc := etree.NewDocument()
		doc.SetRoot(el)
		if signedXML, err = doc.WriteToBytes(); err != nil {
			return nil, refuse(reason.MalformedXML, "re-serializing the signed request: %v", err)
		}
		signed = true
	}

	if err := oracleCheckSubject(signedXML); err != nil {
		return nil, err
	}
	var ar saml.AuthnRequest
	if err := xml.Unmarshal(signedXML, &ar); err != nil {
		return nil, refuse(reason.MalformedXML, "not an AuthnRequest: %v", err)
	}
	req := &Request{AuthnRequest: ar, XML: signedXML, RelayState: rec.RelayState, Binding: rec.Binding, Signed: signed}
	if err := checkFields(req, e); err != nil {
		return nil, err
	}
	return req, nil
}

func oracleReparse(xmlBytes []byte, relayState string, e Expect) (*Request, error) {
	var ar saml.AuthnRequest
	if err := xml.Unmarshal(xmlBytes, &ar); err != nil {
		return nil, refuse(reason.MalformedXML, "held request: %v", err)
	}
	if err := oracleCheckSubject(xmlBytes); err != nil {
		return nil, err
	}
	req := &Request{AuthnRequest: ar, XML: xmlBytes, RelayState: relayState, Signed: len(e.RequestCerts) > 0}
	e.Now, e.MaxSkew = ar.IssueInstant, time.Hour
	return req, checkFields(req, e)
}

func oracleCheckXML(data []byte) error {
	d := xml.NewDecoder(bytes.NewReader(data))
	d.Strict = true
	for {
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return refuse(reason.MalformedXML, "%v", err)
		}
		switch t := tok.(type) {
		case xml.Directive:
			return refuse(reason.DTD, "document has a DTD or other directive (<!%.20s…>)", t)
		case xml.ProcInst:
			if t.Target != "xml" {
				return refuse(reason.MalformedXML, "processing instruction %.64q", t.Target)
			}
		}
	}
	if err := checkRoundTrip(data); err != nil {
		return refuse(reason.MalformedXML, "does not round-trip: %v", err)
	}
	return checkCharRefs(data)
}

func oracleCheckSubject(data []byte) error {
	d := xml.NewDecoder(bytes.NewReader(data))
	var (
		path     []xml.Name
		subjects int
		nameIDs  int
	)
	bad := func(format string, args ...any) error { return refuse(reason.BadSubject, format, args...) }
	for {
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return refuse(reason.MalformedXML, "%v", err)
		}
		inNameID := len(path) == 3 && path[2].Local == "NameID"
		switch t := tok.(type) {
		case xml.StartElement:
			switch {
			case inNameID:
				return bad("NameID holds an element <%s>; it must hold the username only", t.Name.Local)
			case len(path) == 1 && t.Name.Local == "Subject":
				if t.Name.Space != nsAssertion {
					return bad("Subject in namespace %.100q, want %s", t.Name.Space, nsAssertion)
				}
				if subjects++; subjects > 1 {
					return bad("more than one Subject")
				}
			case len(path) == 2 && path[1].Local == "Subject":
				if t.Name.Local != "NameID" || t.Name.Space != nsAssertion {
					return bad("Subject holds <%.100s> in %.100q; want one saml:NameID and nothing else", t.Name.Local, t.Name.Space)
				}
				if nameIDs++; nameIDs > 1 {
					return bad("more than one NameID")
				}
				if err := checkFormat("NameID", t.Attr); err != nil {
					return err
				}
			case len(path) == 1 && t.Name.Local == "NameIDPolicy":
				if err := checkFormat("NameIDPolicy", t.Attr); err != nil {
					return err
				}
			}
			path = append(path, t.Name)
		case xml.EndElement:
			path = path[:len(path)-1]
		case xml.Comment:
			if inNameID {
				return bad("NameID holds a comment; it must hold the username only")
			}
		case xml.ProcInst, xml.Directive:
			if inNameID {
				return bad("NameID holds markup; it must hold the username only")
			}
		}
	}
}

// oracleSeeds are requests of every shape the oracle tests start from:
// Okta's, signed and not, and hostile ones. Each is a document only; the
// modes below decide how it arrives.
func oracleSeeds(t testing.TB, key *rsa.PrivateKey, cert *x509.Certificate) [][]byte {
	sp := testSP(key, cert)
	r := sp.NewRequest("ada@example.com")
	okta := string(sp.RequestXML(r))
	form, err := sp.PostForm(r)
	if err != nil {
		t.Fatal(err)
	}
	signedPost, _ := base64.StdEncoding.DecodeString(form.Get("SAMLRequest"))

	instant := regexp.MustCompile(`IssueInstant="[^"]*"`)
	const saml2 = `xmlns:saml2="urn:oasis:names:tc:SAML:2.0:assertion"`
	root := `<saml2p:AuthnRequest xmlns:saml2p="urn:oasis:names:tc:SAML:2.0:protocol" AssertionConsumerServiceURL="` + tACS +
		`" Destination="` + tSSO + `" ID="id4242" IssueInstant="` + tNow.UTC().Format("2006-01-02T15:04:05.000Z") +
		`" ProtocolBinding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST" Version="2.0">`
	issuer := `<saml2:Issuer ` + saml2 + `>` + tAudience + `</saml2:Issuer>`
	policy := `<saml2p:NameIDPolicy Format="urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified"/>`
	doc := func(inner string) string { return root + issuer + inner + policy + `</saml2p:AuthnRequest>` }
	subject := func(nameID string) string {
		return `<saml2:Subject ` + saml2 + `><saml2:NameID>` + nameID + `</saml2:NameID></saml2:Subject>`
	}
	seeds := []string{
		okta,
		string(signedPost),
		doc(subject("ada@example.com")),
		// Duplicate elements, in and out of the Subject.
		doc(subject("ada@example.com") + subject("eve@example.com")),
		doc(`<saml2:Subject ` + saml2 + `><saml2:NameID>ada@example.com</saml2:NameID><saml2:NameID>eve@example.com</saml2:NameID></saml2:Subject>`),
		root + issuer + issuer + subject("ada@example.com") + policy + policy + `</saml2p:AuthnRequest>`,
		strings.Replace(okta, `Version="2.0"`, `Version="2.0" Version="2.0"`, 1),
		// Namespaces and prefixes.
		doc(`<x:Subject xmlns:x="urn:evil"><x:NameID>eve@example.com</x:NameID></x:Subject>`),
		doc(`<saml2:Subject ` + saml2 + `><x:NameID xmlns:x="urn:evil">eve@example.com</x:NameID></saml2:Subject>`),
		doc(`<Subject xmlns="urn:oasis:names:tc:SAML:2.0:assertion"><NameID>ada@example.com</NameID></Subject>`),
		doc(`<Subject><NameID>ada@example.com</NameID></Subject>`),
		doc(`<saml2:Subject ` + saml2 + `><saml2:NameID xmlns:x="urn:x" x:Format="urn:evil:fmt">ada@example.com</saml2:NameID></saml2:Subject>`),
		doc(`<saml2:Subject ` + saml2 + `><saml2:NameID Format="urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress">ada@example.com</saml2:NameID></saml2:Subject>`),
		strings.Replace(okta, "saml2p:", "p:", -1),
		strings.Replace(strings.Replace(okta, "saml2p:", "", -1), "xmlns:saml2p", "xmlns", 1),
		// Comments, CDATA, references, markup inside the name.
		doc(subject("eve@example.com<!-- -->.attacker.example")),
		doc(subject("<![CDATA[ada@example.com]]>")),
		doc(subject("ada<![CDATA[]]>@example.com")),
		doc(subject("ada&amp;&#x2E;lovelace&#64;example.com")),
		doc(subject("ada&#xD800;@example.com")),
		doc(subject("ada&#x85;@example.com")),
		doc(subject("ada&nbsp;@example.com")),
		doc(subject("ada<b>x</b>@example.com")),
		doc(subject("ada<?pi x?>@example.com")),
		doc(subject("ada<?xml version=\"1.0\"?>@example.com")),
		doc(`<!-- a comment --><saml2:Subject ` + saml2 + `><!-- x --><saml2:NameID>ada@example.com</saml2:NameID></saml2:Subject>`),
		// DTDs, entities, processing instructions.
		`<!DOCTYPE x [<!ENTITY a "b">]>` + okta[strings.Index(okta, "<saml2p"):],
		`<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]><r>&x;</r>`,
		`<?evil x?>` + okta[strings.Index(okta, "<saml2p"):],
		`<?xml version="1.0" encoding="ISO-8859-1"?>` + okta[strings.Index(okta, "<saml2p"):],
		// Malformed.
		"<samlp:AuthnRequest", "<hello/>", "", "</a>", "<a></b>", okta + "<extra/>", okta[:len(okta)/2],
		// Fields checkFields refuses.
		strings.Replace(okta, `ForceAuthn="false"`, `ForceAuthn="false" IsPassive="true"`, 1),
		strings.Replace(okta, `ForceAuthn="false"`, `ForceAuthn="maybe"`, 1),
		strings.Replace(okta, `IssueInstant="`, `IssueInstant="x`, 1),
		doc(subject("   ")),
		doc(""),
		// What xml.Unmarshal reads leniently: attributes by local name in
		// any namespace, the last winning; relaxed times; bools; text in
		// pieces.
		strings.Replace(okta, `ID="`, `xmlns:x="urn:x" x:ID="idother" ID="`, 1),
		strings.Replace(okta, `ID="`, `xmlns:x="urn:x" x:Destination="https://evil.example/sso" ID="`, 1),
		strings.Replace(okta, `Version="2.0"`, `Version="2.0" xmlns:Version="1.0"`, 1),
		strings.Replace(okta, `Version="2.0"`, `Version="2.0" undeclared:Version="2.0"`, 1),
		strings.Replace(okta, `ForceAuthn="false"`, `ForceAuthn=" 1 " IsPassive="" Consent="c" ProviderName="p" AttributeConsumingServiceIndex="0" AssertionConsumerServiceIndex="1"`, 1),
		strings.Replace(okta, `ForceAuthn="false"`, `ForceAuthn="TRUE" IsPassive="F"`, 1),
		instant.ReplaceAllString(okta, `IssueInstant="2026-12-01T12:00:00" IsPassive="0"`),
		instant.ReplaceAllString(okta, `IssueInstant="2026-12-01T13:01:00.123456789+01:00"`),
		instant.ReplaceAllString(okta, `IssueInstant="2026-12-01T11:59:00.999999-00:00"`),
		instant.ReplaceAllString(okta, `IssueInstant="2026-12-01T12:00:00.9999999Z"`),
		instant.ReplaceAllString(okta, `IssueInstant=""`),
		instant.ReplaceAllString(okta, `IssueInstant=" 2026-12-01T12:00:00Z"`),
		instant.ReplaceAllString(okta, `xmlns:x="urn:x" x:IssueInstant="2026-12-01T12:01:00Z" IssueInstant="2026-12-01T12:00:00Z"`),
		strings.Replace(okta, `Format="`, `AllowCreate="true" SPNameQualifier="q" x:Format="urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress" xmlns:x="urn:x" Format="`, 1),
		strings.Replace(okta, `Format="`, `AllowCreate="yes" Format="`, 1),
		strings.Replace(okta, `<saml2:Issuer `, `<saml2:Issuer Format="f" NameQualifier="n" SPNameQualifier="s" SPProvidedID="p" `, 1),
		strings.Replace(okta, tAudience, `https://www.okta.com/<!-- c -->saml2/<![CDATA[service-provider]]>/spunit`, 1),
		strings.Replace(okta, tAudience, `https://www.okta.com/saml2/<x>service-provider</x>/spunit`, 1),
		strings.Replace(okta, tAudience, "\n "+tAudience+" \n", 1),
		doc(`<saml2:Subject ` + saml2 + ` x="y"> <saml2:NameID SPProvidedID="p" NameQualifier="n" SPNameQualifier="s">ada@<![CDATA[example]]>.com</saml2:NameID> </saml2:Subject>`),
		doc(`<saml2:Subject ` + saml2 + `/>`),
		doc(`<saml2:Subject ` + saml2 + `><saml2:NameID/></saml2:Subject>`),
		doc(subject("ada@example.com") + `<saml2p:Extensions/>`),
		doc(subject("ada@example.com") + `<saml2p:Conditions/>`),
		doc(subject("ada@example.com") + `<saml2p:RequestedAuthnContext Comparison="exact"/>`),
		doc(subject("ada@example.com") + `<x:Issuer xmlns:x="urn:x">other</x:Issuer>`),
		strings.Replace(okta, `<saml2p:NameIDPolicy `, `text<!-- c --><?xml version="1.0"?><saml2p:NameIDPolicy `, 1),
		strings.Replace(okta, `<saml2p:NameIDPolicy `, `<saml2p:NameIDPolicy Format="urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified"/><saml2p:NameIDPolicy `, 1),
		strings.Replace(okta, `/>`, `>text<x/></saml2p:NameIDPolicy>`, 1),
		okta + `<saml2p:AuthnRequest xmlns:saml2p="urn:oasis:names:tc:SAML:2.0:protocol" ID="idsecond"/>`,
		okta + "\n<!-- after -->\n",
		strings.Replace(okta, "saml2p:AuthnRequest", "saml2p:LogoutRequest", -1),
		strings.Replace(okta, `xmlns:saml2p="urn:oasis:names:tc:SAML:2.0:protocol"`, `xmlns:saml2p="urn:x"`, 1),
		// Oversized: more than any decoder admits.
		doc(subject(strings.Repeat("a", MaxRequestXML))),
		doc(strings.Repeat(`<saml2:Extensions `+saml2+`/>`, 2000) + subject("ada@example.com")),
	}
	// The Subject's shapes again, signed, so that the signed POST path
	// reaches its own Subject check.
	for _, inner := range []string{
		subject("ada@example.com"),
		subject("ada@example.com") + subject("eve@example.com"),
		`<saml2:Subject ` + saml2 + `><saml2:NameID>ada@example.com</saml2:NameID><saml2:NameID>eve@example.com</saml2:NameID></saml2:Subject>`,
		`<x:Subject xmlns:x="urn:evil"><x:NameID>eve@example.com</x:NameID></x:Subject>`,
		`<saml2:Subject ` + saml2 + `><saml2:NameID Format="urn:evil:fmt">ada@example.com</saml2:NameID></saml2:Subject>`,
		subject("eve@example.com<!-- -->.attacker.example"),
		subject("ada<b>x</b>@example.com"),
		subject("ada&#x85;@example.com"),
		"",
	} {
		seeds = append(seeds, signEnveloped(t, key, cert, doc(inner)))
	}
	out := make([][]byte, len(seeds))
	for i, s := range seeds {
		out[i] = []byte(s)
	}
	return out
}

// signEnveloped signs a request as Okta does in the POST binding, the
// Signature right after the Issuer.
func signEnveloped(t testing.TB, key *rsa.PrivateKey, cert *x509.Certificate, request string) string {
	doc := etree.NewDocument()
	if err := doc.ReadFromString(request); err != nil {
		t.Fatal(err)
	}
	ctx, err := dsig.NewSigningContext(key, [][]byte{cert.Raw})
	if err != nil {
		t.Fatal(err)
	}
	ctx.Canonicalizer = dsig.MakeC14N10ExclusiveCanonicalizerWithPrefixList("")
	if err := ctx.SetSignatureMethod(dsig.RSASHA256SignatureMethod); err != nil {
		t.Fatal(err)
	}
	sig, err := ctx.ConstructSignature(doc.Root(), true)
	if err != nil {
		t.Fatal(err)
	}
	doc.Root().InsertChildAt(1, sig)
	out, err := doc.WriteToString()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// oracleModes: how a document arrives, and what is expected of it.
const (
	modeUnsignedPost = iota
	modeUnsignedRedirect
	modeSignedPost     // signatures required, POST: checked on the signed element
	modeSignedRedirect // signatures required, a query signature that verifies
	modeBadRedirect    // signatures required, a query signature that does not
	modeReparse        // a held request read again
	oracleModeCount
)

// oracleFixture holds a Redirect signature that verifies (over its own
// signed octets; Validate does not tie them to the XML, DecodeRedirect
// does), so that any document takes the signed Redirect path.
type oracleFixture struct {
	key       *rsa.PrivateKey
	cert      *x509.Certificate
	signed    []byte
	signature []byte
	sigAlg    string
}

func newOracleFixture(t testing.TB) oracleFixture {
	key, cert := testSigner(t)
	sp := testSP(key, cert)
	u, err := sp.RedirectURL(sp.NewRequest("ada@example.com"))
	if err != nil {
		t.Fatal(err)
	}
	_, q, _ := strings.Cut(u, "?")
	rec, err := DecodeRedirect(q)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Validate(rec, expect(cert)); err != nil {
		t.Fatalf("the fixture's request: %v", err)
	}
	return oracleFixture{key: key, cert: cert, signed: rec.SignedPart, signature: rec.Signature, sigAlg: rec.SigAlg}
}

// compare runs data through the new path and the oracle in one mode and
// fails on any difference.
func (f oracleFixture) compare(t *testing.T, data []byte, mode int) {
	t.Helper()
	e := expect(nil)
	rec := &Received{Binding: BindingPost, XML: data, RelayState: "rs"}
	switch mode {
	case modeUnsignedRedirect:
		rec.Binding = BindingRedirect
	case modeSignedPost:
		e.RequestCerts = []*x509.Certificate{f.cert}
	case modeSignedRedirect, modeBadRedirect:
		e.RequestCerts = []*x509.Certificate{f.cert}
		rec.Binding, rec.SigAlg, rec.SignedPart = BindingRedirect, f.sigAlg, f.signed
		rec.Signature = bytes.Clone(f.signature)
		if mode == modeBadRedirect {
			rec.Signature[len(rec.Signature)/2] ^= 1
		}
	}
	var got, want *Request
	var gotErr, wantErr error
	if mode == modeReparse {
		got, gotErr = Reparse(data, "rs", e)
		want, wantErr = oracleReparse(bytes.Clone(data), "rs", e)
	} else {
		wrec := *rec
		wrec.XML = bytes.Clone(data)
		got, gotErr = Validate(rec, e)
		want, wantErr = oracleValidate(&wrec, e)
	}
	if (gotErr == nil) != (wantErr == nil) || gotErr != nil && (reasonOf(gotErr) != reasonOf(wantErr) || gotErr.Error() != wantErr.Error()) {
		t.Fatalf("mode %d: got error %v, the oracle %v", mode, gotErr, wantErr)
	}
	if gotErr == nil && !reflect.DeepEqual(got, want) {
		t.Fatalf("mode %d: got %+v, the oracle %+v", mode, got, want)
	}
}

// TestValidateMatchesOracle: every seed, in every mode, is refused for the
// same reason or read as the same Request by Validate and the oracle; and
// the seeds reach both outcomes and every Subject rule's reason.
func TestValidateMatchesOracle(t *testing.T) {
	t.Parallel()
	f := newOracleFixture(t)
	reasons, signedPost := map[Reason]int{}, map[Reason]int{}
	read := map[bool]int{}
	for _, data := range oracleSeeds(t, f.key, f.cert) {
		for mode := range oracleModeCount {
			f.compare(t, data, mode)
		}
		var pass tokenPass
		if checkXML(data, &pass) == nil {
			_, ok := pass.read.result()
			read[ok]++
		}
		_, err := Validate(&Received{Binding: BindingRedirect, XML: data}, expect(nil))
		reasons[reasonOf(err)]++
		_, err = Validate(&Received{Binding: BindingPost, XML: data}, expect(f.cert))
		signedPost[reasonOf(err)]++
	}
	for _, r := range []Reason{"", reason.BadSubject, reason.MalformedXML, reason.DTD, reason.NoSubject} {
		if reasons[r] == 0 {
			t.Errorf("no seed comes out as %q: %v", r, reasons)
		}
	}
	for _, r := range []Reason{"", reason.BadSubject, reason.NoSubject} {
		if signedPost[r] == 0 {
			t.Errorf("no signed POST seed comes out as %q: %v", r, signedPost)
		}
	}
	// Of the documents checkXML passes, the reader reads some and leaves
	// some to xml.Unmarshal: both paths are held to the oracle.
	if read[true] < 10 || read[false] < 10 {
		t.Errorf("the reader read %d seeds and gave up on %d", read[true], read[false])
	}
}

// FuzzValidateMatchesOracle holds Validate and Reparse to the oracle on
// any document, in every mode.
func FuzzValidateMatchesOracle(f *testing.F) {
	fx := newOracleFixture(f)
	for _, s := range oracleSeeds(f, fx.key, fx.cert) {
		for mode := range oracleModeCount {
			f.Add(s, uint8(mode))
		}
	}
	// The query of a real Okta request, as a document: not XML at all.
	f.Add([]byte(url.QueryEscape("SAMLRequest=abc")), uint8(modeSignedRedirect))
	f.Fuzz(func(t *testing.T, data []byte, mode uint8) {
		if len(data) > 2*MaxRequestXML {
			return
		}
		fx.compare(t, data, int(mode)%oracleModeCount)
	})
}

// TestRequestReaderKnowsTheSchema pins the crewjam types requestReader
// fills in place of xml.Unmarshal: a field added, renamed or retagged by a
// crewjam upgrade must be taught to the reader (or the reader given up)
// before this passes again.
func TestRequestReaderKnowsTheSchema(t *testing.T) {
	var got []string
	for _, v := range []any{saml.AuthnRequest{}, saml.Issuer{}, saml.Subject{}, saml.NameID{}, saml.NameIDPolicy{}} {
		typ := reflect.TypeOf(v)
		for i := range typ.NumField() {
			f := typ.Field(i)
			got = append(got, strings.TrimSpace(typ.Name()+"."+f.Name+" "+f.Type.String()+" "+string(f.Tag)))
		}
	}
	want := []string{
		`AuthnRequest.XMLName xml.Name xml:"urn:oasis:names:tc:SAML:2.0:protocol AuthnRequest"`,
		`AuthnRequest.ID string xml:",attr"`,
		`AuthnRequest.Version string xml:",attr"`,
		`AuthnRequest.IssueInstant time.Time xml:",attr"`,
		`AuthnRequest.Destination string xml:",attr"`,
		`AuthnRequest.Consent string xml:",attr"`,
		`AuthnRequest.Issuer *saml.Issuer xml:"urn:oasis:names:tc:SAML:2.0:assertion Issuer"`,
		`AuthnRequest.Signature *etree.Element`,
		`AuthnRequest.Subject *saml.Subject`,
		`AuthnRequest.NameIDPolicy *saml.NameIDPolicy xml:"urn:oasis:names:tc:SAML:2.0:protocol NameIDPolicy"`,
		`AuthnRequest.Conditions *saml.Conditions`,
		`AuthnRequest.RequestedAuthnContext *saml.RequestedAuthnContext`,
		`AuthnRequest.ForceAuthn *bool xml:",attr"`,
		`AuthnRequest.IsPassive *bool xml:",attr"`,
		`AuthnRequest.AssertionConsumerServiceIndex string xml:",attr"`,
		`AuthnRequest.AssertionConsumerServiceURL string xml:",attr"`,
		`AuthnRequest.ProtocolBinding string xml:",attr"`,
		`AuthnRequest.AttributeConsumingServiceIndex string xml:",attr"`,
		`AuthnRequest.ProviderName string xml:",attr"`,
		`Issuer.XMLName xml.Name xml:"urn:oasis:names:tc:SAML:2.0:assertion Issuer"`,
		`Issuer.NameQualifier string xml:",attr"`,
		`Issuer.SPNameQualifier string xml:",attr"`,
		`Issuer.Format string xml:",attr"`,
		`Issuer.SPProvidedID string xml:",attr"`,
		`Issuer.Value string xml:",chardata"`,
		`Subject.XMLName xml.Name xml:"urn:oasis:names:tc:SAML:2.0:assertion Subject"`,
		`Subject.NameID *saml.NameID`,
		`Subject.SubjectConfirmations []saml.SubjectConfirmation xml:"SubjectConfirmation"`,
		`NameID.NameQualifier string xml:",attr"`,
		`NameID.SPNameQualifier string xml:",attr"`,
		`NameID.Format string xml:",attr"`,
		`NameID.SPProvidedID string xml:",attr"`,
		`NameID.Value string xml:",chardata"`,
		`NameIDPolicy.XMLName xml.Name xml:"urn:oasis:names:tc:SAML:2.0:protocol NameIDPolicy"`,
		`NameIDPolicy.Format *string xml:",attr"`,
		`NameIDPolicy.SPNameQualifier *string xml:",attr"`,
		`NameIDPolicy.AllowCreate *bool xml:",attr"`,
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("the crewjam types are now:\n%s", strings.Join(got, "\n"))
	}
	// The reader mirrors encoding/xml's own decoding of the inner types,
	// and crewjam's UnmarshalXML (RelaxedTime) of the root.
	for _, v := range []any{&saml.Issuer{}, &saml.Subject{}, &saml.NameID{}, &saml.NameIDPolicy{}} {
		_, custom := v.(xml.Unmarshaler)
		_, text := v.(encoding.TextUnmarshaler)
		if custom || text {
			t.Errorf("%T now decodes itself", v)
		}
	}
	if _, custom := any(&saml.AuthnRequest{}).(xml.Unmarshaler); !custom {
		t.Error("*saml.AuthnRequest no longer has its UnmarshalXML")
	}
}

// TestOktaRequestsAreRead: Okta's requests take the single pass; only
// other shapes are left to xml.Unmarshal.
func TestOktaRequestsAreRead(t *testing.T) {
	t.Parallel()
	sp := testSP(nil, nil)
	for _, user := range []string{"ada@example.com", "jane&doe@example.com", "ünïcødé"} {
		var pass tokenPass
		if err := checkXML(sp.RequestXML(sp.NewRequest(user)), &pass); err != nil {
			t.Fatal(err)
		}
		ar, ok := pass.read.result()
		if !ok || ar.Subject.NameID.Value != user || ar.Issuer.Value != tAudience {
			t.Errorf("%s: read %v, %+v", user, ok, ar)
		}
	}
	// A held request, as Validate keeps it, is read again in one pass
	// too: a signed POST's re-serialized element included.
	key, cert := testSigner(t)
	signed := testSP(key, cert)
	form, err := signed.PostForm(signed.NewRequest("ada@example.com"))
	if err != nil {
		t.Fatal(err)
	}
	rec, err := DecodePost(form.Get("SAMLRequest"), "")
	if err != nil {
		t.Fatal(err)
	}
	req, err := Validate(rec, expect(cert))
	if err != nil {
		t.Fatal(err)
	}
	for _, held := range [][]byte{req.XML, sp.RequestXML(sp.NewRequest("ada@example.com"))} {
		if ar, ok := readHeld(held); !ok || ar.Subject.NameID.Value != "ada@example.com" {
			t.Errorf("held request not read in one pass: %v %+v\n%s", ok, ar, held)
		}
	}
}
