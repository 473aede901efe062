// Package idp is the SAML 2.0 protocol of the identity provider Okta calls
// as a "Factor only" IdP, and nothing else: decoding and checking
// AuthnRequests (bindings, size limits, signatures, issuer, ACS,
// destination, clock), the signing identity, metadata, and signed
// responses. The sign-in flow around it (which Mac, which decision, which
// page) is verifier/signin's. Responses are built with crewjam/saml's
// types and signed with goxmldsig (RSA-SHA256; Response and Assertion both
// signed unless Settings.Sign says one); everything crewjam does not check
// about requests is checked here. It imports nothing from the verifier
// but the reason codes its refusals carry.
package idp

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"time"

	"github.com/crewjam/saml"
	dsig "github.com/russellhaering/goxmldsig"
)

// NameIDUnspecified is SAML 1.1's unspecified NameID format, which Okta's
// factor-only requests use.
const NameIDUnspecified = "urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified"

// Authentication contexts stated in assertions: how the browser was bound
// to the device.
const (
	// AuthnContextTLSClient: a client certificate over TLS (certificate
	// binding).
	AuthnContextTLSClient = "urn:oasis:names:tc:SAML:2.0:ac:classes:TLSClient"
	// AuthnContextX509: a digital signature by a key certified by the
	// device CA (the agent's proof of presence).
	AuthnContextX509 = "urn:oasis:names:tc:SAML:2.0:ac:classes:X509"
)

// clientIP is r's peer address without the port.
func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return ""
	}
	return host
}

// DefaultMaxRequestSkew bounds an AuthnRequest's IssueInstant either way
// unless configured.
const DefaultMaxRequestSkew = 3 * time.Minute

// RequestSkewLimit is the largest MaxRequestSkew a verifier may be set to:
// a request ID is remembered until no verifier, however set, could accept
// its IssueInstant again.
const RequestSkewLimit = 30 * time.Minute

// What a response carries signatures on (Settings.Sign). Okta's "Response
// Signature Verification" says which one it checks: Response, Assertion, or
// Either; both signed satisfies all three.
const (
	SignBoth      = "both"
	SignResponse  = "response"
	SignAssertion = "assertion"
)

// Settings are the IdP's own URLs and what it knows of Okta.
type Settings struct {
	MetadataURL string // our entity ID (Okta's "IdP Issuer URI")
	SSOURL      string // where Okta sends browsers; the requests' Destination
	Audience    string // Okta's SP entity ID; empty until configured
	// ACSURLs are Okta's ACS URLs: the first is the org's, others the same
	// identity provider's on other domains Okta may build it from.
	ACSURLs []string
	// RequestCerts are Okta's request-signing certificates (the current one,
	// and the next during a rotation); when set, requests must be signed.
	RequestCerts []*x509.Certificate
	// AllowUnsigned answers requests whose signature cannot be checked
	// (no RequestCerts); without it and without RequestCerts, every request
	// is refused.
	AllowUnsigned bool
	// MaxRequestSkew bounds an AuthnRequest's IssueInstant either way.
	MaxRequestSkew time.Duration
	// Sign says what responses sign: SignBoth (when empty), SignResponse
	// or SignAssertion.
	Sign string
}

// IdP signs responses for one Okta org.
type IdP struct {
	s     Settings
	id    *SigningIdentity
	saml  *saml.IdentityProvider
	sp    *saml.EntityDescriptor
	mdXML []byte
	// certB64 is the signing certificate as every Signature's KeyInfo
	// carries it.
	certB64 string
	// issuer is the Issuer of responses, as crewjam writes the assertion's.
	issuer string
}

// New builds the IdP from its signing identity and settings.
func New(id *SigningIdentity, s Settings) (*IdP, error) {
	md, err := url.Parse(s.MetadataURL)
	if err != nil {
		return nil, fmt.Errorf("metadata URL: %w", err)
	}
	sso, err := url.Parse(s.SSOURL)
	if err != nil {
		return nil, fmt.Errorf("SSO URL: %w", err)
	}
	if s.MaxRequestSkew <= 0 {
		s.MaxRequestSkew = DefaultMaxRequestSkew
	}
	switch s.Sign {
	case "":
		s.Sign = SignBoth
	case SignBoth, SignResponse, SignAssertion:
	default:
		return nil, fmt.Errorf("sign %q: want %s, %s or %s", s.Sign, SignBoth, SignResponse, SignAssertion)
	}
	p := &IdP{s: s, id: id}
	if _, ok := id.Signer.Public().(*rsa.PublicKey); !ok {
		return nil, fmt.Errorf("signing key is %T, want RSA", id.Signer.Public())
	}
	p.certB64 = base64.StdEncoding.EncodeToString(id.Cert.Raw)
	p.issuer = md.String()
	p.saml = &saml.IdentityProvider{
		Signer:      id.Signer,
		Certificate: id.Cert,
		MetadataURL: *md,
		SSOURL:      *sso,
		// crewjam's default is RSA-SHA1.
		SignatureMethod: dsig.RSASHA256SignatureMethod,
	}
	acs := make([]saml.IndexedEndpoint, len(s.ACSURLs))
	for i, u := range s.ACSURLs {
		acs[i] = saml.IndexedEndpoint{Binding: saml.HTTPPostBinding, Location: u, Index: i}
	}
	p.sp = &saml.EntityDescriptor{
		EntityID:         s.Audience,
		SPSSODescriptors: []saml.SPSSODescriptor{{AssertionConsumerServices: acs}},
	}
	if p.mdXML, err = p.buildMetadata(); err != nil {
		return nil, err
	}
	return p, nil
}

// Configured reports whether Okta's settings are known; until they are,
// every request is refused.
func (p *IdP) Configured() bool { return p.s.Audience != "" && len(p.s.ACSURLs) > 0 }

// SignaturesCheckable reports whether requests can be answered as far as
// their signature goes: Okta's certificate is known, or unsigned requests
// are allowed.
func (p *IdP) SignaturesCheckable() bool { return len(p.s.RequestCerts) > 0 || p.s.AllowUnsigned }

// Expect is what requests must say, at now.
func (p *IdP) Expect(now time.Time) Expect {
	return Expect{
		Audience: p.s.Audience, ACSURLs: p.s.ACSURLs, Destination: p.s.SSOURL,
		RequestCerts: p.s.RequestCerts, MaxSkew: p.s.MaxRequestSkew, Now: now,
	}
}

// Settings returns the IdP's settings.
func (p *IdP) Settings() Settings { return p.s }

// CertPEM is the signing certificate, PEM.
func (p *IdP) CertPEM() []byte { return bytes.Clone(p.id.CertPEM) }

// Metadata is the IdP metadata document.
func (p *IdP) Metadata() []byte { return bytes.Clone(p.mdXML) }

func (p *IdP) buildMetadata() ([]byte, error) {
	ed := p.saml.Metadata()
	// The metadata is for people and tools setting Okta up: no validUntil
	// that would make a saved copy look expired, no encryption key (we
	// decrypt nothing), and the NameID format Okta uses.
	ed.ValidUntil = time.Time{}
	ed.CacheDuration = 0
	d := &ed.IDPSSODescriptors[0]
	keep := d.KeyDescriptors[:0]
	for _, k := range d.KeyDescriptors {
		if k.Use == "signing" {
			keep = append(keep, k)
		}
	}
	d.KeyDescriptors = keep
	d.NameIDFormats = []saml.NameIDFormat{NameIDUnspecified}
	if len(p.s.RequestCerts) > 0 {
		yes := true
		d.WantAuthnRequestsSigned = &yes
	}
	out, err := xml.MarshalIndent(ed, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("metadata: %w", err)
	}
	// The encoder writes a zero validUntil out as the year 1, which reads
	// as expired since then: leave the attribute out.
	out = bytes.Replace(out, []byte(` validUntil="0001-01-01T00:00:00Z"`), nil, 1)
	return append([]byte(xml.Header), out...), nil
}

// Attribute is an extra assertion attribute (the assertion hook).
type Attribute struct{ Name, Value string }

// Assert is what a response asserts beyond the request's subject.
type Assert struct {
	// AuthnContext is the class stated in the AuthnStatement
	// (AuthnContextTLSClient when empty).
	AuthnContext string
	Attributes   []Attribute
}

// Respond builds the signed SAMLResponse (base64, for the POST binding) for
// req: NameID = the Okta username as sent, in its format; a bearer
// SubjectConfirmation with Recipient and InResponseTo; Conditions with
// Okta's audience; an AuthnStatement with AuthnInstant and SessionIndex.
// The Assertion and the Response are signed with RSA-SHA256, or only the
// one Settings.Sign names.
func (p *IdP) Respond(r *http.Request, req *Request, as Assert, now time.Time) (string, error) {
	// Signed text with a control character (a CR above all, which an SP's
	// parser turns into a line feed before it checks the digest) would
	// make a response no SP accepts: refused here, plainly.
	if !validUsername(req.Username) {
		return "", errors.New("the NameID holds control characters or invalid UTF-8")
	}
	for _, a := range as.Attributes {
		if !validUsername(a.Name) || !validUsername(a.Value) {
			return "", fmt.Errorf("attribute %q holds control characters or invalid UTF-8", a.Name)
		}
	}
	format := req.NameIDFormat
	if format == "" {
		format = NameIDUnspecified
	}
	// Nothing but the device binding is claimed: not a password, and the
	// browser's own address, not a proxy's.
	class := as.AuthnContext
	if class == "" {
		class = AuthnContextTLSClient
	}
	// A request held for "Check again" may be minutes old; the assertion is
	// valid from now, never from the request's IssueInstant.
	doc, err := p.document(&assertionFields{
		responseID: randomID(), assertionID: randomID(), sessionIndex: randomID(),
		issuer:       p.issuer,
		destination:  p.acsFor(req).Location,
		inResponseTo: req.AuthnRequest.ID,
		audience:     p.s.Audience,
		nameID:       req.Username, nameIDFormat: format,
		address:      clientIP(r),
		authnContext: class,
		attributes:   as.Attributes,
		now:          now,
	})
	if err != nil {
		return "", fmt.Errorf("writing response: %w", err)
	}
	return base64.StdEncoding.EncodeToString(doc), nil
}

// ACSURL is where the response to req goes: the ACS URL it named (one of
// the configured ones: Validate checked), else the first.
func (p *IdP) ACSURL(req *Request) string { return p.acsFor(req).Location }

func (p *IdP) acsFor(req *Request) *saml.IndexedEndpoint {
	acs := p.sp.SPSSODescriptors[0].AssertionConsumerServices
	for i := range acs {
		if acs[i].Location == req.AuthnRequest.AssertionConsumerServiceURL {
			return &acs[i]
		}
	}
	return &acs[0]
}

func randomID() string {
	b := make([]byte, 20)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	return "id-" + hex.EncodeToString(b)
}
