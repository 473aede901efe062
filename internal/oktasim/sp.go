// Package oktasim plays Okta's side of a "Factor only" SAML 2.0 identity
// provider integration, for tests only: it builds AuthnRequests the way Okta
// builds them (HTTP-Redirect and HTTP-POST bindings, optionally signed) and
// checks every SAMLResponse our IdP returns with implementations that share
// no code with the IdP's (gosaml2 and goxmldsig in process, xmlsec1 as a
// child process). Our IdP is built on crewjam/saml, so nothing here may
// import it outside of tests.
//
// No production code depends on this package.
package oktasim

import (
	"bytes"
	"compress/flate"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"math/big"
	"net/url"
	"strings"
	"time"

	"github.com/beevik/etree"
	dsig "github.com/russellhaering/goxmldsig"
)

// SAML and XML-DSig names used in what Okta sends and what we check.
const (
	NSProtocol  = "urn:oasis:names:tc:SAML:2.0:protocol"
	NSAssertion = "urn:oasis:names:tc:SAML:2.0:assertion"
	NSDSig      = "http://www.w3.org/2000/09/xmldsig#"

	BindingHTTPPost         = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST"
	NameIDFormatUnspecified = "urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified"
	BearerMethod            = "urn:oasis:names:tc:SAML:2.0:cm:bearer"

	// SigAlgRSASHA256 is the SigAlg Okta puts in a signed Redirect request.
	SigAlgRSASHA256 = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
)

// Okta writes IssueInstant in UTC with milliseconds (OpenSAML style).
const issueInstantLayout = "2006-01-02T15:04:05.000Z07:00"

// Options describe one Okta "SAML 2.0 IdP" configuration pointing at us.
type Options struct {
	EntityID  string // Okta's Audience URI, https://www.okta.com/saml2/service-provider/sp…
	ACSURL    string // Okta's ACS URL, https://{org}/sso/saml2/{idpId}
	IdPSSOURL string // our SSO endpoint; the requests' Destination
	IdPIssuer string // our entity ID (metadata URL); the expected Issuer of responses
	IdPCert   *x509.Certificate

	// SigningKey and SigningCert are Okta's request-signing credentials.
	// A nil SigningKey means requests go unsigned.
	SigningKey  *rsa.PrivateKey
	SigningCert *x509.Certificate

	Now func() time.Time // defaults to time.Now

	// Signatures is which signatures a response must carry: the IdP's
	// Response Signature Verification in Okta. The zero value,
	// RequireBoth, is stricter than any Okta setting.
	Signatures Signatures
}

// Signatures is which of a response's signatures are required. Whatever is
// required must be there and reference its own element; every signature
// that is there must verify, required or not.
type Signatures int

const (
	// RequireBoth: the Response and the Assertion both signed.
	RequireBoth Signatures = iota
	// RequireResponse: the Response signed (Okta's "Response"); the
	// signature covers the Assertion inside it.
	RequireResponse
	// RequireAssertion: the Assertion signed (Okta's "Assertion").
	RequireAssertion
	// RequireEither: the Response or the Assertion signed, or both
	// (Okta's "Either").
	RequireEither
)

// String is the setting's name in Okta.
func (s Signatures) String() string {
	switch s {
	case RequireResponse:
		return "Response"
	case RequireAssertion:
		return "Assertion"
	case RequireEither:
		return "Either"
	}
	return "both"
}

// SP is a simulated Okta org acting as the SAML service provider.
type SP struct {
	o Options
}

// New returns an SP for o.
func New(o Options) *SP {
	if o.Now == nil {
		o.Now = time.Now
	}
	return &SP{o: o}
}

// Options returns the options the SP was built with (Now filled in).
func (sp *SP) Options() Options { return sp.o }

// Request is one AuthnRequest. The zero values of the override fields mean
// "as Okta would send it"; tests set them to send something Okta would not.
type Request struct {
	ID           string
	Username     string // the Okta username, sent as Subject/NameID; empty omits Subject
	RelayState   string
	IssueInstant time.Time

	// Overrides for negative tests.
	Issuer      string // default Options.EntityID
	ACSURL      string // default Options.ACSURL
	Destination string // default Options.IdPSSOURL (the XML attribute only, not where it is sent)

	// RawXML, when set, is sent instead of the built AuthnRequest: verbatim
	// in the POST binding (no enveloped signature is added), deflated in the
	// Redirect binding (whose query is still signed unless SkipSign).
	RawXML []byte

	SkipSign     bool // send unsigned even when the SP has a signing key
	BadSignature bool // sign, then corrupt the signature value
}

// NewRequest returns a fresh request for username, as Okta starts a
// factor-only sign-in: a new ID, IssueInstant now, a random RelayState.
func (sp *SP) NewRequest(username string) Request {
	return Request{
		ID:           newRequestID(),
		Username:     username,
		RelayState:   randomToken(18),
		IssueInstant: sp.o.Now(),
	}
}

// newRequestID mimics Okta's request IDs: "id" and 24 decimal digits, as in
// published Okta AuthnRequests (e.g. id216400685678752324916391). The "id"
// prefix also keeps the value a valid xs:ID (it must not start with a digit).
func newRequestID() string {
	n, err := rand.Int(rand.Reader, new(big.Int).Exp(big.NewInt(10), big.NewInt(24), nil))
	if err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	return fmt.Sprintf("id%024d", n)
}

func randomToken(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

func (sp *SP) signing(r Request) bool {
	return sp.o.SigningKey != nil && !r.SkipSign
}

// RequestXML returns the unsigned AuthnRequest (or r.RawXML) as Okta
// serialises it:
//
//	<saml2p:AuthnRequest xmlns:saml2p=… AssertionConsumerServiceURL=… Destination=…
//	    ForceAuthn="false" ID=… IssueInstant=… ProtocolBinding=…HTTP-POST Version="2.0">
//	  <saml2:Issuer xmlns:saml2=…>{EntityID}</saml2:Issuer>
//	  <saml2:Subject xmlns:saml2=…><saml2:NameID>{username}</saml2:NameID></saml2:Subject>
//	  <saml2p:NameIDPolicy Format="…:1.1:nameid-format:unspecified"/>
//	</saml2p:AuthnRequest>
//
// Okta declares the saml2 namespace on each element that uses it and sends
// the NameID without a Format.
func (sp *SP) RequestXML(r Request) []byte {
	if r.RawXML != nil {
		return r.RawXML
	}
	b, err := toBytes(sp.requestElement(r))
	if err != nil {
		panic(err) // serialising a tree we built cannot fail
	}
	return b
}

func (sp *SP) requestElement(r Request) *etree.Element {
	issuer := or(r.Issuer, sp.o.EntityID)
	acs := or(r.ACSURL, sp.o.ACSURL)
	dest := or(r.Destination, sp.o.IdPSSOURL)
	instant := r.IssueInstant
	if instant.IsZero() {
		instant = sp.o.Now()
	}

	ar := etree.NewElement("saml2p:AuthnRequest")
	ar.CreateAttr("xmlns:saml2p", NSProtocol)
	ar.CreateAttr("AssertionConsumerServiceURL", acs)
	ar.CreateAttr("Destination", dest)
	ar.CreateAttr("ForceAuthn", "false")
	ar.CreateAttr("ID", r.ID)
	ar.CreateAttr("IssueInstant", instant.UTC().Format(issueInstantLayout))
	ar.CreateAttr("ProtocolBinding", BindingHTTPPost)
	ar.CreateAttr("Version", "2.0")

	iss := ar.CreateElement("saml2:Issuer")
	iss.CreateAttr("xmlns:saml2", NSAssertion)
	iss.SetText(issuer)

	if r.Username != "" {
		subj := ar.CreateElement("saml2:Subject")
		subj.CreateAttr("xmlns:saml2", NSAssertion)
		subj.CreateElement("saml2:NameID").SetText(r.Username)
	}

	ar.CreateElement("saml2p:NameIDPolicy").CreateAttr("Format", NameIDFormatUnspecified)
	return ar
}

func toBytes(root *etree.Element) ([]byte, error) {
	doc := etree.NewDocument()
	doc.CreateProcInst("xml", `version="1.0" encoding="UTF-8"`)
	doc.SetRoot(root)
	return doc.WriteToBytes()
}

// RedirectURL returns the URL Okta sends the browser to with the
// HTTP-Redirect binding: SAMLRequest is raw DEFLATE (RFC 1951), base64,
// URL-encoded. When signing, SigAlg and Signature follow, the signature
// being RSA-SHA256 over the exact octets
// "SAMLRequest=…&RelayState=…&SigAlg=…" as they appear in the query (SAML
// bindings §3.4.4.1; RelayState is left out when empty).
func (sp *SP) RedirectURL(r Request) (string, error) {
	var buf bytes.Buffer
	w, err := flate.NewWriter(&buf, flate.DefaultCompression)
	if err != nil {
		return "", err
	}
	if _, err := w.Write(sp.RequestXML(r)); err != nil {
		return "", fmt.Errorf("deflating AuthnRequest: %w", err)
	}
	if err := w.Close(); err != nil {
		return "", fmt.Errorf("deflating AuthnRequest: %w", err)
	}

	q := "SAMLRequest=" + url.QueryEscape(base64.StdEncoding.EncodeToString(buf.Bytes()))
	if r.RelayState != "" {
		q += "&RelayState=" + url.QueryEscape(r.RelayState)
	}
	if sp.signing(r) {
		q += "&SigAlg=" + url.QueryEscape(SigAlgRSASHA256)
		sum := sha256.Sum256([]byte(q))
		sig, err := rsa.SignPKCS1v15(rand.Reader, sp.o.SigningKey, crypto.SHA256, sum[:])
		if err != nil {
			return "", fmt.Errorf("signing redirect query: %w", err)
		}
		if r.BadSignature {
			sig[len(sig)/2] ^= 0x01
		}
		q += "&Signature=" + url.QueryEscape(base64.StdEncoding.EncodeToString(sig))
	}

	sep := "?"
	if strings.Contains(sp.o.IdPSSOURL, "?") {
		sep = "&"
	}
	return sp.o.IdPSSOURL + sep + q, nil
}

// PostForm returns the form fields Okta posts to IdPSSOURL with the
// HTTP-POST binding: SAMLRequest is the base64 of the XML (no deflate).
// When signing, the AuthnRequest carries an enveloped XML signature
// (RSA-SHA256, exclusive C14N, the certificate in KeyInfo) placed right
// after its Issuer, as the schema requires.
func (sp *SP) PostForm(r Request) (url.Values, error) {
	var xmlBytes []byte
	switch {
	case r.RawXML != nil:
		xmlBytes = r.RawXML
	case sp.signing(r):
		signed, err := sp.signEnveloped(sp.requestElement(r), r.BadSignature)
		if err != nil {
			return nil, err
		}
		if xmlBytes, err = toBytes(signed); err != nil {
			return nil, err
		}
	default:
		xmlBytes = sp.RequestXML(r)
	}
	v := url.Values{"SAMLRequest": {base64.StdEncoding.EncodeToString(xmlBytes)}}
	if r.RelayState != "" {
		v.Set("RelayState", r.RelayState)
	}
	return v, nil
}

func (sp *SP) signEnveloped(el *etree.Element, corrupt bool) (*etree.Element, error) {
	var certs [][]byte
	if sp.o.SigningCert != nil {
		certs = [][]byte{sp.o.SigningCert.Raw}
	}
	ctx, err := dsig.NewSigningContext(sp.o.SigningKey, certs)
	if err != nil {
		return nil, fmt.Errorf("signing AuthnRequest: %w", err)
	}
	ctx.Canonicalizer = dsig.MakeC14N10ExclusiveCanonicalizerWithPrefixList("")
	if err := ctx.SetSignatureMethod(dsig.RSASHA256SignatureMethod); err != nil {
		return nil, fmt.Errorf("signing AuthnRequest: %w", err)
	}
	sig, err := ctx.ConstructSignature(el, true)
	if err != nil {
		return nil, fmt.Errorf("signing AuthnRequest: %w", err)
	}
	// SAML wants the Signature right after Issuer (goxmldsig would append
	// it). Where it sits does not change what was signed: the
	// enveloped-signature transform removes it wherever it is.
	signed := el.Copy()
	signed.InsertChildAt(1, sig)

	if corrupt {
		sv := sig.FindElement("./SignatureValue")
		if sv == nil {
			return nil, errors.New("signing AuthnRequest: no SignatureValue to corrupt")
		}
		raw, err := base64.StdEncoding.DecodeString(sv.Text())
		if err != nil {
			return nil, err
		}
		raw[len(raw)/2] ^= 0x01
		sv.SetText(base64.StdEncoding.EncodeToString(raw))
	}
	return signed, nil
}

func or(v, def string) string {
	if v != "" {
		return v
	}
	return def
}
