package idp

import (
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"
)

// The response is written as text that is already in the form its
// signatures are computed over: exclusive XML canonicalization without
// comments (exc-c14n, the Transform every signature names), so that each
// digest is a SHA-256 of bytes written once, not of a tree built, copied
// and canonicalized again for each signature. What makes text canonical,
// and what this writer does throughout:
//
//   - no XML declaration, comments, processing instructions or whitespace
//     between elements;
//   - every element written as a start and an end tag, never <e/>;
//   - an element declares the namespaces its own name and attributes use,
//     unless an ancestor in the signed subtree declared the same one; the
//     subtree's apex declares all it uses (so an Assertion declares saml
//     whether or not it is signed inside a Response);
//   - namespace declarations first, by prefix, then attributes without a
//     namespace by name, then namespaced ones by namespace and name;
//   - text escapes &, <, > and CR; attribute values &, <, ", TAB, LF, CR.
//
// The document sent differs from the Response's canonical form only by the
// Response's own Signature (removed by the enveloped-signature transform)
// and one namespace declaration the canonical form drops: xmlns:xs on the
// Response, which binds the xs prefix that attribute values' xsi:type
// names (exc-c14n does not count a prefix in an attribute's value as used).
// TestResponseIsCanonical checks every digested text against goxmldsig's
// canonicalization of the document as an SP parses it.

const (
	nsSAML  = "urn:oasis:names:tc:SAML:2.0:assertion"
	nsSAMLP = "urn:oasis:names:tc:SAML:2.0:protocol"
	nsDS    = "http://www.w3.org/2000/09/xmldsig#"
	nsXSI   = "http://www.w3.org/2001/XMLSchema-instance"
	nsXS    = "http://www.w3.org/2001/XMLSchema"

	algExcC14N    = "http://www.w3.org/2001/10/xml-exc-c14n#"
	algEnveloped  = "http://www.w3.org/2000/09/xmldsig#enveloped-signature"
	algRSASHA256  = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
	algSHA256     = "http://www.w3.org/2001/04/xmlenc#sha256"
	formatEntity  = "urn:oasis:names:tc:SAML:2.0:nameid-format:entity"
	methodBearer  = "urn:oasis:names:tc:SAML:2.0:cm:bearer"
	statusSuccess = "urn:oasis:names:tc:SAML:2.0:status:Success"
	attrFormat    = "urn:oasis:names:tc:SAML:2.0:attrname-format:basic"

	// clockSkew and issueDelay are crewjam's MaxClockSkew and
	// MaxIssueDelay: the assertion is valid from three minutes before now
	// to 90 seconds after.
	clockSkew  = 180 * time.Second
	issueDelay = 90 * time.Second
)

// samlTime is how times are written: UTC, milliseconds at most.
func samlTime(t time.Time) string {
	return t.Round(time.Millisecond).UTC().Format("2006-01-02T15:04:05.999Z07:00")
}

// errNotXML: a value holds a character XML cannot carry.
var errNotXML = errors.New("a value holds a character XML 1.0 cannot carry")

// c14n writes canonical text. The first value that XML cannot carry (not
// UTF-8, or not an XML Char) is remembered in err and the text is unusable.
type c14n struct {
	b   []byte
	err error
}

// raw writes markup this file wrote itself.
func (w *c14n) raw(s string) { w.b = append(w.b, s...) }

// text writes character data.
func (w *c14n) text(s string) {
	w.escape(s, false)
}

// attr writes ` name="value"`.
func (w *c14n) attr(name, value string) {
	w.b = append(w.b, ' ')
	w.b = append(w.b, name...)
	w.b = append(w.b, '=', '"')
	w.escape(value, true)
	w.b = append(w.b, '"')
}

// escape writes s as exclusive canonicalization writes character data
// (or, inAttr, an attribute value), or fails on what XML cannot carry.
func (w *c14n) escape(s string, inAttr bool) {
	// Runs of bytes written as they are (most of a value, and all of the
	// base64 a response carries) are appended whole; a valid multi-byte
	// rune's bytes are its UTF-8 encoding, so they are kept as they are too.
	keep := &plain[0]
	if inAttr {
		keep = &plain[1]
	}
	done := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c >= utf8.RuneSelf {
			r, size := utf8.DecodeRuneInString(s[i:])
			if (r == utf8.RuneError && size == 1) || !xmlChar(r) {
				w.fail()
				return
			}
			i += size
			continue
		}
		if keep[c] {
			i++
			continue
		}
		var ref string
		switch c {
		case '&':
			ref = "&amp;"
		case '<':
			ref = "&lt;"
		case '>':
			ref = "&gt;"
		case '"':
			ref = "&quot;"
		case '\t':
			ref = "&#x9;"
		case '\n':
			ref = "&#xA;"
		case '\r':
			ref = "&#xD;"
		default: // a control character XML cannot carry
			w.fail()
			return
		}
		w.b = append(w.b, s[done:i]...)
		w.b = append(w.b, ref...)
		i++
		done = i
	}
	w.b = append(w.b, s[done:]...)
}

// plain says, for text (0) and attribute values (1), which ASCII bytes
// are written as they are: in text, all but & < > and CR; in an attribute
// value, all but & < " and the three whitespace controls (exclusive
// canonicalization's rules). Other controls are not XML characters.
var plain = func() (t [2][utf8.RuneSelf]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[0][c], t[1][c] = true, true
	}
	t[0]['\n'], t[0]['\t'] = true, true
	for _, c := range "&<>" {
		t[0][c] = false
	}
	for _, c := range "&<\"" {
		t[1][c] = false
	}
	return t
}()

// fail remembers that a value could not be written.
func (w *c14n) fail() {
	if w.err == nil {
		w.err = errNotXML
	}
}

// xmlChar is XML 1.0's Char production.
func xmlChar(r rune) bool {
	return r == 0x9 || r == 0xA || r == 0xD ||
		(r >= 0x20 && r <= 0xD7FF) || (r >= 0xE000 && r <= 0xFFFD) || (r >= 0x10000 && r <= 0x10FFFF)
}

// element writes a whole element with text content and no attributes.
func (w *c14n) element(name, text string) {
	w.raw("<" + name + ">")
	w.text(text)
	w.raw("</" + name + ">")
}

// algorithm writes an element that only names an algorithm.
func (w *c14n) algorithm(name, alg string) {
	w.raw("<" + name)
	w.attr("Algorithm", alg)
	w.raw("></" + name + ">")
}

// assertionFields is what one response says.
type assertionFields struct {
	responseID, assertionID, sessionIndex string
	issuer                                string // our metadata URL
	destination                           string // the ACS URL
	inResponseTo                          string // the request's ID
	audience                              string
	nameID, nameIDFormat                  string
	address                               string // the browser's IP
	authnContext                          string
	attributes                            []Attribute
	now                                   time.Time
}

// issuerElement is the Issuer; withNS declares saml on it (in a Response,
// whose own name is samlp's).
func (w *c14n) issuerElement(f *assertionFields, withNS bool) {
	w.raw("<saml:Issuer")
	if withNS {
		w.attr("xmlns:saml", nsSAML)
	}
	w.attr("Format", formatEntity)
	w.raw(">")
	w.text(f.issuer)
	w.raw("</saml:Issuer>")
}

// assertion writes the Assertion's canonical text in two parts: up to and
// including its Issuer (after which its Signature goes), and the rest.
func assertion(f *assertionFields) (head, tail []byte, err error) {
	var w c14n
	w.raw("<saml:Assertion")
	w.attr("xmlns:saml", nsSAML)
	w.attr("ID", f.assertionID)
	w.attr("IssueInstant", samlTime(f.now))
	w.attr("Version", "2.0")
	w.raw(">")
	w.issuerElement(f, false)
	head = w.b
	w = c14n{err: w.err}

	notOnOrAfter := samlTime(f.now.Add(issueDelay))
	w.raw("<saml:Subject><saml:NameID")
	w.attr("Format", f.nameIDFormat)
	w.attr("NameQualifier", f.issuer)
	w.attr("SPNameQualifier", f.audience)
	w.raw(">")
	w.text(f.nameID)
	w.raw("</saml:NameID><saml:SubjectConfirmation")
	w.attr("Method", methodBearer)
	w.raw("><saml:SubjectConfirmationData")
	if f.address != "" {
		w.attr("Address", f.address)
	}
	w.attr("InResponseTo", f.inResponseTo)
	w.attr("NotOnOrAfter", notOnOrAfter)
	w.attr("Recipient", f.destination)
	w.raw("></saml:SubjectConfirmationData></saml:SubjectConfirmation></saml:Subject>")

	w.raw("<saml:Conditions")
	w.attr("NotBefore", samlTime(f.now.Add(-clockSkew)))
	w.attr("NotOnOrAfter", notOnOrAfter)
	w.raw("><saml:AudienceRestriction>")
	w.element("saml:Audience", f.audience)
	w.raw("</saml:AudienceRestriction></saml:Conditions>")

	w.raw("<saml:AuthnStatement")
	w.attr("AuthnInstant", samlTime(f.now))
	w.attr("SessionIndex", f.sessionIndex)
	w.raw(">")
	if f.address != "" {
		w.raw("<saml:SubjectLocality")
		w.attr("Address", f.address)
		w.raw("></saml:SubjectLocality>")
	}
	w.raw("<saml:AuthnContext>")
	w.element("saml:AuthnContextClassRef", f.authnContext)
	w.raw("</saml:AuthnContext></saml:AuthnStatement>")

	// The schema asks for at least one Attribute in an AttributeStatement.
	if len(f.attributes) > 0 {
		w.raw("<saml:AttributeStatement>")
		for _, a := range f.attributes {
			w.raw("<saml:Attribute")
			w.attr("Name", a.Name)
			w.attr("NameFormat", attrFormat)
			w.raw("><saml:AttributeValue")
			w.attr("xmlns:xsi", nsXSI)
			w.attr("xsi:type", "xs:string")
			w.raw(">")
			w.text(a.Value)
			w.raw("</saml:AttributeValue></saml:Attribute>")
		}
		w.raw("</saml:AttributeStatement>")
	}
	w.raw("</saml:Assertion>")
	return head, w.b, w.err
}

// response writes the Response around assertion (its whole text, signed or
// not) in two parts, as assertion does; the document's start tag (docHead)
// also binds xs.
func response(f *assertionFields, assertionText []byte) (head, docHead, tail []byte, err error) {
	var w c14n
	start := func(withXS bool) {
		w.raw("<samlp:Response")
		w.attr("xmlns:samlp", nsSAMLP)
		if withXS {
			w.attr("xmlns:xs", nsXS)
		}
		w.attr("Destination", f.destination)
		w.attr("ID", f.responseID)
		w.attr("InResponseTo", f.inResponseTo)
		w.attr("IssueInstant", samlTime(f.now))
		w.attr("Version", "2.0")
		w.raw(">")
		w.issuerElement(f, true)
	}
	start(false)
	head = w.b
	w = c14n{err: w.err}
	start(true)
	docHead = w.b
	w = c14n{err: w.err}
	w.raw("<samlp:Status><samlp:StatusCode")
	w.attr("Value", statusSuccess)
	w.raw("></samlp:StatusCode></samlp:Status>")
	w.b = append(w.b, assertionText...)
	w.raw("</samlp:Response>")
	return head, docHead, w.b, w.err
}

// signature is the enveloped Signature over the element with ID id whose
// canonical text (its own Signature left out) is head+tail: RSA-SHA256 of
// the canonical SignedInfo, with our certificate.
func (p *IdP) signature(id string, head, tail []byte) ([]byte, error) {
	h := sha256.New()
	h.Write(head)
	h.Write(tail)
	digest := base64.StdEncoding.EncodeToString(h.Sum(nil))

	// SignedInfo is signed as its own apex (declaring ds) and sent inside
	// the Signature, which declares ds for it.
	signedInfo := func(withNS bool) []byte {
		var w c14n
		w.raw("<ds:SignedInfo")
		if withNS {
			w.attr("xmlns:ds", nsDS)
		}
		w.raw(">")
		w.algorithm("ds:CanonicalizationMethod", algExcC14N)
		w.algorithm("ds:SignatureMethod", algRSASHA256)
		w.raw("<ds:Reference")
		w.attr("URI", "#"+id)
		w.raw("><ds:Transforms>")
		w.algorithm("ds:Transform", algEnveloped)
		w.algorithm("ds:Transform", algExcC14N)
		w.raw("</ds:Transforms>")
		w.algorithm("ds:DigestMethod", algSHA256)
		w.element("ds:DigestValue", digest)
		w.raw("</ds:Reference></ds:SignedInfo>")
		return w.b
	}
	sum := sha256.Sum256(signedInfo(true))
	sig, err := p.id.Signer.Sign(rand.Reader, sum[:], crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("signing: %w", err)
	}
	var w c14n
	w.raw("<ds:Signature")
	w.attr("xmlns:ds", nsDS)
	w.raw(">")
	w.b = append(w.b, signedInfo(false)...)
	w.element("ds:SignatureValue", base64.StdEncoding.EncodeToString(sig))
	w.raw("<ds:KeyInfo><ds:X509Data>")
	w.element("ds:X509Certificate", p.certB64)
	w.raw("</ds:X509Data></ds:KeyInfo></ds:Signature>")
	return w.b, nil
}

// document writes the signed Response for f: the Assertion signed, the
// Response signed, or both, as Settings.Sign says.
func (p *IdP) document(f *assertionFields) ([]byte, error) {
	aHead, aTail, err := assertion(f)
	if err != nil {
		return nil, err
	}
	assertionText := concat(aHead, aTail)
	if p.s.Sign != SignResponse {
		sig, err := p.signature(f.assertionID, aHead, aTail)
		if err != nil {
			return nil, fmt.Errorf("assertion: %w", err)
		}
		assertionText = concat(aHead, sig, aTail)
	}
	rHead, docHead, rTail, err := response(f, assertionText)
	if err != nil {
		return nil, err
	}
	if p.s.Sign == SignAssertion {
		return concat(docHead, rTail), nil
	}
	sig, err := p.signature(f.responseID, rHead, rTail)
	if err != nil {
		return nil, fmt.Errorf("response: %w", err)
	}
	return concat(docHead, sig, rTail), nil
}

func concat(parts ...[]byte) []byte {
	n := 0
	for _, p := range parts {
		n += len(p)
	}
	out := make([]byte, 0, n)
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}
