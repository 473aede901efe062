package idp

import (
	"bytes"
	"compress/flate"
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/base64"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/beevik/etree"
	"github.com/clearance/clearance/verifier/reason"
	"github.com/crewjam/saml"
	dsig "github.com/russellhaering/goxmldsig"
)

// Size limits, applied before anything is decoded, inflated or parsed. An
// Okta AuthnRequest is about 1 KiB; these leave ample room and no more.
const (
	// MaxQuery bounds the raw query string of a Redirect-binding request.
	MaxQuery = 32 << 10
	// MaxEncodedRequest bounds the SAMLRequest parameter as sent.
	MaxEncodedRequest = 24 << 10
	// MaxRequestXML bounds the AuthnRequest XML after base64 and inflating.
	// Okta's are 1-2 KiB unsigned and about 4 KiB with an enveloped
	// signature; a denied request is held for "Check again", so this also
	// bounds what one request can make the verifier store.
	MaxRequestXML = 16 << 10
	// MaxRelayState bounds RelayState (SAML bindings §3.4.3 says 80 bytes;
	// Okta's are longer, so allow a generous but fixed size).
	MaxRelayState = 4 << 10
	// MaxPostBody bounds a POST-binding request body.
	MaxPostBody = 96 << 10
	// MaxIDLength bounds the request ID (it is stored in the replay cache).
	MaxIDLength = 256
	// MaxUsernameLength bounds the Subject's NameID (Okta usernames are at
	// most 100 characters).
	MaxUsernameLength = 512
)

// Reason names why a request was refused: a reason.Code from the request
// group of that package (logged, counted, and picking the page's words).
type Reason = reason.Code

// RequestError is a refused AuthnRequest: Reason for logs, metrics and the
// page; Detail for the log only (it may quote the request, never secrets).
type RequestError struct {
	Reason Reason
	Detail string
}

func (e *RequestError) Error() string { return string(e.Reason) + ": " + e.Detail }

// MaxDetail bounds a RequestError's Detail. Details quote the request (an
// XML parser's error names the bad token, a field its value), and a
// request is whatever its sender wrote: unbounded, a refusal's log line
// was as large as the request.
const MaxDetail = 512

func refuse(r Reason, format string, args ...any) *RequestError {
	d := fmt.Sprintf(format, args...)
	if len(d) > MaxDetail {
		d = strings.ToValidUTF8(d[:MaxDetail], "") + "…"
	}
	return &RequestError{Reason: r, Detail: d}
}

// Binding is how a request arrived.
type Binding string

const (
	BindingRedirect Binding = "redirect"
	BindingPost     Binding = "post"
)

// Received is an AuthnRequest as it arrived, decoded but not yet trusted.
type Received struct {
	Binding    Binding
	XML        []byte // the AuthnRequest XML (inflated for Redirect)
	RelayState string
	// Redirect binding signature, when present: the algorithm, the
	// signature bytes and the exact octets that were signed.
	SigAlg     string
	Signature  []byte
	SignedPart []byte
}

// DecodeRedirect decodes the HTTP-Redirect binding from the raw query
// string exactly as received. The signed octets are cut from the raw query,
// never re-encoded: re-encoding can differ from what Okta signed.
func DecodeRedirect(rawQuery string) (*Received, error) {
	if len(rawQuery) > MaxQuery {
		return nil, refuse(reason.Oversized, "query is %d bytes, limit %d", len(rawQuery), MaxQuery)
	}
	raw := map[string]string{}
	for _, part := range strings.Split(rawQuery, "&") {
		if part == "" {
			continue
		}
		k, _, _ := strings.Cut(part, "=")
		switch k {
		case "SAMLRequest", "RelayState", "SigAlg", "Signature":
		default:
			continue // other parameters are ignored, as the binding allows
		}
		if _, dup := raw[k]; dup {
			return nil, refuse(reason.BadBinding, "parameter %s appears twice", k)
		}
		raw[k] = part
	}
	enc, ok := raw["SAMLRequest"]
	if !ok {
		return nil, refuse(reason.BadBinding, "no SAMLRequest parameter")
	}
	value := func(k string) (string, error) {
		p, ok := raw[k]
		if !ok {
			return "", nil
		}
		_, v, _ := strings.Cut(p, "=")
		s, err := url.QueryUnescape(v)
		if err != nil {
			return "", refuse(reason.BadEncoding, "%s is not URL-encoded: %v", k, err)
		}
		return s, nil
	}
	samlReq, err := value("SAMLRequest")
	if err != nil {
		return nil, err
	}
	if len(samlReq) > MaxEncodedRequest {
		return nil, refuse(reason.Oversized, "SAMLRequest is %d bytes, limit %d", len(samlReq), MaxEncodedRequest)
	}
	deflated, err := base64.StdEncoding.DecodeString(samlReq)
	if err != nil {
		return nil, refuse(reason.BadEncoding, "SAMLRequest is not base64: %v", err)
	}
	xmlBytes, err := inflate(deflated)
	if err != nil {
		return nil, err
	}
	rec := &Received{Binding: BindingRedirect, XML: xmlBytes}
	if rec.RelayState, err = value("RelayState"); err != nil {
		return nil, err
	}
	if len(rec.RelayState) > MaxRelayState {
		return nil, refuse(reason.Oversized, "RelayState is %d bytes, limit %d", len(rec.RelayState), MaxRelayState)
	}
	if rec.SigAlg, err = value("SigAlg"); err != nil {
		return nil, err
	}
	sig, err := value("Signature")
	if err != nil {
		return nil, err
	}
	if (rec.SigAlg == "") != (sig == "") {
		return nil, refuse(reason.BadSignature, "SigAlg and Signature must come together")
	}
	if sig != "" {
		if rec.Signature, err = base64.StdEncoding.DecodeString(sig); err != nil {
			return nil, refuse(reason.BadSignature, "Signature is not base64: %v", err)
		}
		// SAML bindings §3.4.4.1: SAMLRequest=…&RelayState=…&SigAlg=…, in
		// that order, RelayState only if present, as the octets arrived.
		signed := enc
		if rs, ok := raw["RelayState"]; ok {
			signed += "&" + rs
		}
		signed += "&" + raw["SigAlg"]
		rec.SignedPart = []byte(signed)
	}
	return rec, nil
}

// inflaters keeps DEFLATE readers for reuse: each holds a 32 KiB window,
// which was the largest allocation of a sign-in.
var inflaters sync.Pool

// inflate undoes the Redirect binding's raw DEFLATE, bounded.
func inflate(deflated []byte) ([]byte, error) {
	src := bytes.NewReader(deflated)
	r, _ := inflaters.Get().(io.ReadCloser)
	if r == nil {
		r = flate.NewReader(src)
	} else if err := r.(flate.Resetter).Reset(src, nil); err != nil {
		r = flate.NewReader(src)
	}
	defer func() {
		r.Close()
		inflaters.Put(r)
	}()
	out, err := io.ReadAll(io.LimitReader(r, MaxRequestXML+1))
	if err != nil {
		return nil, refuse(reason.NotDeflate, "SAMLRequest is not DEFLATE-compressed: %v", err)
	}
	if len(out) > MaxRequestXML {
		return nil, refuse(reason.Oversized, "SAMLRequest inflates past %d bytes", MaxRequestXML)
	}
	return out, nil
}

// DecodePost decodes the HTTP-POST binding's form values (the body already
// bounded by the caller).
func DecodePost(samlRequest, relayState string) (*Received, error) {
	if samlRequest == "" {
		return nil, refuse(reason.BadBinding, "no SAMLRequest field")
	}
	if len(samlRequest) > 4*MaxRequestXML/3+4 {
		return nil, refuse(reason.Oversized, "SAMLRequest is %d bytes", len(samlRequest))
	}
	if len(relayState) > MaxRelayState {
		return nil, refuse(reason.Oversized, "RelayState is %d bytes, limit %d", len(relayState), MaxRelayState)
	}
	// Some senders wrap base64 across lines.
	xmlBytes, err := base64.StdEncoding.DecodeString(strings.Join(strings.Fields(samlRequest), ""))
	if err != nil {
		return nil, refuse(reason.BadEncoding, "SAMLRequest is not base64: %v", err)
	}
	if len(xmlBytes) > MaxRequestXML {
		return nil, refuse(reason.Oversized, "SAMLRequest is %d bytes, limit %d", len(xmlBytes), MaxRequestXML)
	}
	return &Received{Binding: BindingPost, XML: xmlBytes, RelayState: relayState}, nil
}

// checkXML refuses documents that are not plain SAML: DTDs (entity
// expansion, external entities), processing instructions, anything that does
// not survive an encoding/xml round trip unchanged (the mattermost
// round-trip validator; such documents parse differently in different XML
// libraries, which signature-wrapping attacks exploit).
//
// When p is not nil, the same tokens (the same decoder settings
// checkSubject and xml.Unmarshal use) are also held to the Subject rules
// and read into an AuthnRequest, so that bytes which are both checked and
// read are tokenized once. The first Subject rule broken is left in
// p.shape.err, for the caller to return where checkSubject's refusal would
// have come; nothing read counts unless checkXML returns nil.
func checkXML(data []byte, p *tokenPass) error {
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
		if p != nil {
			if p.shape.err == nil {
				p.shape.err = p.shape.step(tok)
			}
			p.read.step(tok)
		}
	}
	if err := checkRoundTrip(data); err != nil {
		return refuse(reason.MalformedXML, "does not round-trip: %v", err)
	}
	return checkCharRefs(data)
}

// checkCharRefs refuses a character reference to what is not an XML Char.
// encoding/xml reads one to a surrogate (&#xD800;) as U+FFFD where an XML
// parser refuses the document, so the name read would be one the sender
// never wrote. A reference-like text in a comment or CDATA section is
// refused too: Okta writes neither.
func checkCharRefs(data []byte) error {
	for rest := data; ; {
		i := bytes.Index(rest, []byte("&#"))
		if i < 0 {
			return nil
		}
		rest = rest[i+2:]
		end := bytes.IndexByte(rest, ';')
		if end < 0 {
			return refuse(reason.MalformedXML, "unterminated character reference")
		}
		digits, base := rest[:end], 10
		if len(digits) > 0 && digits[0] == 'x' {
			digits, base = digits[1:], 16
		}
		n, err := strconv.ParseUint(string(digits), base, 32)
		if err != nil || n > utf8.MaxRune || !xmlChar(rune(n)) {
			return refuse(reason.MalformedXML, "character reference &#%.12s; is not an XML character", rest[:end])
		}
		rest = rest[end+1:]
	}
}

// SAML namespaces the Subject check names.
const (
	nsAssertion = "urn:oasis:names:tc:SAML:2.0:assertion"
)

// NameID formats a request may name: the unspecified one Okta's
// factor-only requests carry, and email. A response asserts the NameID in
// the format the request named, so an unknown one is refused rather than
// repeated.
var nameIDFormats = []string{
	NameIDUnspecified,
	"urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress",
}

// checkSubject holds the request's Subject to one shape, on the tokens
// themselves, because encoding/xml reads leniently what the response then
// asserts: the AuthnRequest has exactly one Subject, in the assertion
// namespace, holding exactly one NameID and nothing else; the NameID holds
// text only (a comment or an element inside it would be dropped and its
// text pieces merged into another name) in a known Format, as is the
// NameIDPolicy's Format. A missing Subject is left to checkFields
// (missing_subject).
func checkSubject(data []byte) error {
	d := xml.NewDecoder(bytes.NewReader(data))
	var shape subjectShape
	for {
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return refuse(reason.MalformedXML, "%v", err)
		}
		if err := shape.step(tok); err != nil {
			return err
		}
	}
}

// tokenPass is what rides on checkXML's token pass.
type tokenPass struct {
	shape subjectShape
	read  requestReader
}

// subjectShape is checkSubject's state between tokens, so that its rules
// can also ride on checkXML's pass over the same bytes.
type subjectShape struct {
	path     []xml.Name
	subjects int
	nameIDs  int
	err      error // the first rule broken, when carried by checkXML
}

// step applies the Subject rules to the next token of a strict decoder's
// Token stream. After it returns an error, the state is not meaningful.
func (s *subjectShape) step(tok xml.Token) error {
	bad := func(format string, args ...any) error { return refuse(reason.BadSubject, format, args...) }
	path := s.path
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
			if s.subjects++; s.subjects > 1 {
				return bad("more than one Subject")
			}
		case len(path) == 2 && path[1].Local == "Subject":
			if t.Name.Local != "NameID" || t.Name.Space != nsAssertion {
				return bad("Subject holds <%.100s> in %.100q; want one saml:NameID and nothing else", t.Name.Local, t.Name.Space)
			}
			if s.nameIDs++; s.nameIDs > 1 {
				return bad("more than one NameID")
			}
			if err := checkFormat("NameID", t.Attr); err != nil {
				return err
			}
		case len(path) == 1 && t.Name.Local == "NameIDPolicy":
			// Without a NameID Format, the response asserts the policy's.
			if err := checkFormat("NameIDPolicy", t.Attr); err != nil {
				return err
			}
		}
		s.path = append(path, t.Name)
	case xml.EndElement:
		s.path = path[:len(path)-1]
	case xml.Comment:
		if inNameID {
			return bad("NameID holds a comment; it must hold the username only")
		}
	case xml.ProcInst, xml.Directive:
		if inNameID {
			return bad("NameID holds markup; it must hold the username only")
		}
	}
	return nil
}

// checkFormat holds an element's Format attributes to the known formats.
// encoding/xml fills the Format field from an attribute of that local name
// in any namespace (x:Format), so a namespaced one is refused outright
// rather than left to decide the format the response asserts.
func checkFormat(elem string, attrs []xml.Attr) error {
	for _, a := range attrs {
		switch {
		case a.Name.Local != "Format":
		case a.Name.Space != "":
			return refuse(reason.BadSubject, "%s has a Format attribute in namespace %.100q; Format has no namespace", elem, a.Name.Space)
		case !slices.Contains(nameIDFormats, a.Value):
			return refuse(reason.BadSubject, "%s Format %.200q is not one this identity provider asserts (%v)", elem, a.Value, nameIDFormats)
		}
	}
	return nil
}

// validUsername checks the NameID's text: no control characters, since it
// is logged, stored and asserted as it is.
func validUsername(s string) bool {
	for _, r := range s {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return false
		}
	}
	return utf8.ValidString(s)
}

// Expect is what a request must say to be answered.
type Expect struct {
	Audience string // Issuer
	// ACSURLs are the Assertion Consumer Service URLs a request may name
	// (Okta's, one per domain it may build it from); the first is used when
	// a request names none.
	ACSURLs     []string
	Destination string // our SSO URL
	// RequestCerts, when set, verify request signatures, which are then
	// required: a signature by any of them counts (Okta's current and next
	// certificate, during a rotation).
	RequestCerts []*x509.Certificate
	MaxSkew      time.Duration
	Now          time.Time
}

// Request is an AuthnRequest that passed every check.
type Request struct {
	AuthnRequest saml.AuthnRequest
	XML          []byte
	RelayState   string
	Binding      Binding
	Signed       bool
	// Username is the Subject's NameID (the Okta username) and
	// NameIDFormat its format (empty when Okta sent none).
	Username     string
	NameIDFormat string
}

// Validate checks rec against e and returns the trusted request. It does not
// consult the replay cache (the caller does, after this, so that only
// requests that passed every other check take a slot in it).
func Validate(rec *Received, e Expect) (*Request, error) {
	var pass tokenPass
	if err := checkXML(rec.XML, &pass); err != nil {
		return nil, err
	}
	shape := &pass.shape
	signedXML := rec.XML
	signed, reserialized := false, false
	switch {
	case len(e.RequestCerts) == 0:
		// No Okta certificate configured: signatures cannot be checked and
		// are not required; the request is still held to everything else.
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
		// Parse only what the signature covers, never the outer document:
		// that defeats signature wrapping.
		doc := etree.NewDocument()
		doc.SetRoot(el)
		if signedXML, err = doc.WriteToBytes(); err != nil {
			return nil, refuse(reason.MalformedXML, "re-serializing the signed request: %v", err)
		}
		signed, reserialized = true, true
		// Other bytes than checkXML's pass saw: their Subject is checked
		// and they are read on their own tokens.
		shape.err = checkSubject(signedXML)
	}

	// Refused only now, after the signature, as a separate pass refused it.
	if shape.err != nil {
		return nil, shape.err
	}
	var ar saml.AuthnRequest
	if read, ok := pass.read.result(); ok && !reserialized {
		ar = *read
	} else if err := xml.Unmarshal(signedXML, &ar); err != nil {
		return nil, refuse(reason.MalformedXML, "not an AuthnRequest: %v", err)
	}
	// XML is what was parsed: for a signed POST, the signed element only, so
	// a held sign-in is re-read from exactly what the signature covered.
	req := &Request{AuthnRequest: ar, XML: signedXML, RelayState: rec.RelayState, Binding: rec.Binding, Signed: signed}
	if err := checkFields(req, e); err != nil {
		return nil, err
	}
	return req, nil
}

// checkFields applies the field rules (shared with Reparse).
func checkFields(req *Request, e Expect) error {
	ar := &req.AuthnRequest
	if ar.Version != "2.0" {
		return refuse(reason.WrongVersion, "Version %.64q, want 2.0", ar.Version)
	}
	if ar.ID == "" || len(ar.ID) > MaxIDLength || !isNCName(ar.ID) {
		return refuse(reason.BadID, "ID %.80q is not an xs:ID of at most %d characters", ar.ID, MaxIDLength)
	}
	if ar.Issuer == nil || ar.Issuer.Value != e.Audience {
		got := ""
		if ar.Issuer != nil {
			got = ar.Issuer.Value
		}
		return refuse(reason.WrongIssuer, "Issuer %.128q, want the configured Okta audience %q", got, e.Audience)
	}
	if ar.AssertionConsumerServiceURL != "" && !slices.Contains(e.ACSURLs, ar.AssertionConsumerServiceURL) {
		return refuse(reason.WrongACS, "AssertionConsumerServiceURL %.128q, want one of %q (if Okta builds it from a custom domain, set the identity provider's Redirect Domain to Org URL, or add this URL to okta_acs_url)", ar.AssertionConsumerServiceURL, e.ACSURLs)
	}
	if ar.AssertionConsumerServiceURL == "" && ar.AssertionConsumerServiceIndex != "" {
		return refuse(reason.WrongACS, "AssertionConsumerServiceIndex %.20q is not supported; Okta sends the URL", ar.AssertionConsumerServiceIndex)
	}
	if ar.ProtocolBinding != "" && ar.ProtocolBinding != saml.HTTPPostBinding {
		return refuse(reason.WrongBinding, "ProtocolBinding %.64q: responses go by HTTP-POST only", ar.ProtocolBinding)
	}
	if ar.Destination != e.Destination {
		return refuse(reason.WrongDestination, "Destination %.128q, want %q", ar.Destination, e.Destination)
	}
	if ar.IsPassive != nil && *ar.IsPassive {
		// A passive request must not show a page; a posture gate that cannot
		// show a page can only deny, so say so rather than guess.
		return refuse(reason.Passive, "IsPassive requests are not supported")
	}
	skew := e.MaxSkew
	switch {
	case ar.IssueInstant.IsZero():
		return refuse(reason.StaleRequest, "no IssueInstant")
	case e.Now.Sub(ar.IssueInstant) > skew:
		return refuse(reason.StaleRequest, "issued at %s, more than %s ago", ar.IssueInstant.UTC().Format(time.RFC3339), skew)
	case ar.IssueInstant.Sub(e.Now) > skew:
		return refuse(reason.FutureRequest, "issued at %s, more than %s ahead of this clock", ar.IssueInstant.UTC().Format(time.RFC3339), skew)
	}
	if ar.Subject == nil || ar.Subject.NameID == nil || strings.TrimSpace(ar.Subject.NameID.Value) == "" {
		return refuse(reason.NoSubject, "no Subject NameID: Okta's factor-only requests name the user there; in Okta, check the identity provider's IdP Usage is Factor only and IdP username is idpuser.subjectNameId")
	}
	req.Username = strings.TrimSpace(ar.Subject.NameID.Value)
	if len(req.Username) > MaxUsernameLength {
		return refuse(reason.BadSubject, "Subject NameID is %d bytes, limit %d", len(req.Username), MaxUsernameLength)
	}
	if !validUsername(req.Username) {
		return refuse(reason.BadSubject, "Subject NameID holds control characters or invalid UTF-8")
	}
	req.NameIDFormat = ar.Subject.NameID.Format
	if req.NameIDFormat == "" && ar.NameIDPolicy != nil && ar.NameIDPolicy.Format != nil {
		req.NameIDFormat = *ar.NameIDPolicy.Format
	}
	// checkSubject saw the attributes; this is what the response asserts.
	if req.NameIDFormat != "" && !slices.Contains(nameIDFormats, req.NameIDFormat) {
		return refuse(reason.BadSubject, "NameID Format %.200q is not one this identity provider asserts (%v)", req.NameIDFormat, nameIDFormats)
	}
	return nil
}

// Reparse parses a request that Validate accepted earlier (held for "Check
// again"): the same checks except the clock, because the request is old by
// design, and the signature, which was verified on arrival.
func Reparse(xmlBytes []byte, relayState string, e Expect) (*Request, error) {
	var ar saml.AuthnRequest
	if read, ok := readHeld(xmlBytes); ok {
		ar = *read
	} else {
		if err := xml.Unmarshal(xmlBytes, &ar); err != nil {
			return nil, refuse(reason.MalformedXML, "held request: %v", err)
		}
		if err := checkSubject(xmlBytes); err != nil {
			return nil, err
		}
	}
	// Signed as it was on arrival: with RequestCerts set, Validate accepted
	// only signed requests, and without them none is signed. (A request held
	// across a restart that changed the setting is taken as the setting
	// says now.)
	req := &Request{AuthnRequest: ar, XML: xmlBytes, RelayState: relayState, Signed: len(e.RequestCerts) > 0}
	e.Now, e.MaxSkew = ar.IssueInstant, time.Hour
	return req, checkFields(req, e)
}

// readHeld reads a held request in one token pass, the Subject rules and
// requestReader together (the decoder settings of checkSubject and
// xml.Unmarshal). It answers only for a document that tokenizes to its
// end, keeps every Subject rule and has the shape the reader knows, where
// the separate passes would both have succeeded with the same result;
// for anything else Reparse takes those passes, which decide the refusal.
func readHeld(data []byte) (*saml.AuthnRequest, bool) {
	d := xml.NewDecoder(bytes.NewReader(data))
	var p tokenPass
	for {
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			return p.read.result()
		}
		if err != nil {
			return nil, false
		}
		if p.shape.step(tok) != nil {
			return nil, false
		}
		if p.read.step(tok); p.read.gaveUp {
			return nil, false
		}
	}
}

// isNCName is a conservative xs:ID check: a letter or '_' first, then
// letters, digits, '-', '_', '.'.
func isNCName(s string) bool {
	for i, c := range s {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c == '_':
		case i > 0 && (c >= '0' && c <= '9' || c == '-' || c == '.'):
		default:
			return false
		}
	}
	return s != ""
}

// Signature algorithms accepted on requests. SHA-1 is refused: Okta can sign
// with SHA-256, and a gate should not accept a weaker hash than it needs to.
var sigAlgs = map[string]crypto.Hash{
	dsig.RSASHA256SignatureMethod: crypto.SHA256,
	dsig.RSASHA512SignatureMethod: crypto.SHA512,
}

// verifyRedirect checks a Redirect signature over the query octets as
// received, with each configured certificate valid at now (as goxmldsig does
// for POST): an expired Okta certificate verifies nothing on either binding.
func verifyRedirect(rec *Received, certs []*x509.Certificate, now time.Time) error {
	h, ok := sigAlgs[rec.SigAlg]
	if !ok {
		return refuse(reason.UnsupportedSigAlg, "SigAlg %.100q; use RSA-SHA256 (Okta: Request Signature Algorithm SHA-256)", rec.SigAlg)
	}
	var digest []byte
	switch h {
	case crypto.SHA256:
		d := sha256.Sum256(rec.SignedPart)
		digest = d[:]
	case crypto.SHA512:
		d := sha512.Sum512(rec.SignedPart)
		digest = d[:]
	}
	var outside []string
	for _, c := range certs {
		if now.Before(c.NotBefore) || now.After(c.NotAfter) {
			outside = append(outside, fmt.Sprintf("valid %s to %s", c.NotBefore.UTC().Format(time.RFC3339), c.NotAfter.UTC().Format(time.RFC3339)))
			continue
		}
		if pub, ok := c.PublicKey.(*rsa.PublicKey); ok && rsa.VerifyPKCS1v15(pub, h, digest, rec.Signature) == nil {
			return nil
		}
	}
	if len(outside) == len(certs) {
		return refuse(reason.BadSignature, "no configured Okta certificate is valid at %s (%s)", now.UTC().Format(time.RFC3339), strings.Join(outside, "; "))
	}
	return refuse(reason.BadSignature, "Signature does not verify with the configured Okta certificate (%d configured, %d valid now)", len(certs), len(certs)-len(outside))
}

// Digest algorithms accepted in a POST request's signature.
const (
	digestSHA256 = "http://www.w3.org/2001/04/xmlenc#sha256"
	digestSHA512 = "http://www.w3.org/2001/04/xmlenc#sha512"
)

func verifyEnveloped(data []byte, certs []*x509.Certificate, now time.Time) (*etree.Element, error) {
	doc := etree.NewDocument()
	if err := doc.ReadFromBytes(data); err != nil {
		return nil, refuse(reason.MalformedXML, "%v", err)
	}
	root := doc.Root()
	if root == nil {
		return nil, refuse(reason.MalformedXML, "empty document")
	}
	var sigs []*etree.Element
	for _, c := range root.ChildElements() {
		if c.Tag == "Signature" && c.NamespaceURI() == dsig.Namespace {
			sigs = append(sigs, c)
		}
	}
	switch len(sigs) {
	case 0:
		return nil, refuse(reason.MissingSignature, "request signing is required and the request has no enveloped Signature")
	case 1:
	default:
		return nil, refuse(reason.BadSignature, "%d Signature elements; want one", len(sigs))
	}
	// goxmldsig accepts SHA-1; the Redirect binding here does not, and
	// neither does this one.
	if m := sigs[0].FindElement("./SignedInfo/SignatureMethod"); m == nil {
		return nil, refuse(reason.BadSignature, "Signature has no SignatureMethod")
	} else if _, ok := sigAlgs[m.SelectAttrValue("Algorithm", "")]; !ok {
		return nil, refuse(reason.UnsupportedSigAlg, "SignatureMethod %.100q; use RSA-SHA256", m.SelectAttrValue("Algorithm", ""))
	}
	refs := sigs[0].FindElements("./SignedInfo/Reference")
	if len(refs) != 1 {
		return nil, refuse(reason.BadSignature, "%d signed References; want one, to the request", len(refs))
	}
	switch d := refs[0].FindElement("./DigestMethod"); {
	case d == nil:
		return nil, refuse(reason.BadSignature, "Reference has no DigestMethod")
	case d.SelectAttrValue("Algorithm", "") != digestSHA256 && d.SelectAttrValue("Algorithm", "") != digestSHA512:
		return nil, refuse(reason.UnsupportedSigAlg, "DigestMethod %.100q; use SHA-256", d.SelectAttrValue("Algorithm", ""))
	}
	// One certificate at a time: given several, goxmldsig wants the
	// signer's certificate in KeyInfo, which a request may leave out (given
	// one, it uses that one). Two are configured during Okta's rotation.
	var errs []string
	for _, c := range certs {
		vc := dsig.NewDefaultValidationContext(&dsig.MemoryX509CertificateStore{Roots: []*x509.Certificate{c}})
		vc.Clock = dsig.NewFakeClockAt(now)
		el, err := vc.Validate(root)
		if err == nil {
			return el, nil
		}
		if msg := err.Error(); !slices.Contains(errs, msg) {
			errs = append(errs, msg)
		}
	}
	return nil, refuse(reason.BadSignature, "enveloped signature: %s", strings.Join(errs, "; "))
}
