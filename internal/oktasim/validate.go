package oktasim

import (
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"time"

	"github.com/beevik/etree"
	saml2 "github.com/russellhaering/gosaml2"
	"github.com/russellhaering/gosaml2/types"
	dsig "github.com/russellhaering/goxmldsig"
)

// Errors Validate returns, each wrapped with detail. Test with errors.Is.
var (
	ErrConfig              = errors.New("oktasim: SP misconfigured")
	ErrMalformed           = errors.New("oktasim: malformed SAMLResponse")
	ErrNotSigned           = errors.New("oktasim: a required signature is missing (Options.Signatures; both by default)")
	ErrSignature           = errors.New("oktasim: signature rejected")
	ErrStatus              = errors.New("oktasim: status is not Success")
	ErrIssuer              = errors.New("oktasim: wrong Issuer")
	ErrDestination         = errors.New("oktasim: wrong Destination")
	ErrRecipient           = errors.New("oktasim: wrong SubjectConfirmationData Recipient")
	ErrSubjectConfirmation = errors.New("oktasim: SubjectConfirmation is not bearer")
	ErrInResponseTo        = errors.New("oktasim: wrong InResponseTo")
	ErrAudience            = errors.New("oktasim: Okta is not the audience")
	ErrExpired             = errors.New("oktasim: expired")
	ErrNotYetValid         = errors.New("oktasim: not yet valid")
	ErrRejected            = errors.New("oktasim: rejected by gosaml2")
)

// Assertion is what Okta takes from a valid response.
type Assertion struct {
	NameID       string
	NameIDFormat string
	SessionIndex string
	InResponseTo string // from SubjectConfirmationData
	Recipient    string
	Audience     string
	Issuer       string
	NotBefore    time.Time // Conditions
	NotOnOrAfter time.Time // Conditions
	AuthnInstant time.Time
	Attributes   map[string][]string
}

// Validate checks a base64 SAMLResponse as Okta would for the request with
// ID requestID, and returns its assertion.
//
// gosaml2 checks the signatures against Options.IdPCert (only that
// certificate is trusted, and it must be valid at Now), Version, Status,
// Issuer of Response and Assertion, Destination (when present), bearer
// subject confirmation with Recipient = ACSURL and its NotOnOrAfter, and
// reports the Conditions window and Audience as warnings. On top of that,
// Validate insists on what gosaml2 leaves optional or unchecked: exactly one
// unencrypted Assertion directly under the Response; the Response and the
// Assertion signed as Options.Signatures requires (both by default), each
// Signature there referencing its own element's ID; no
// comments, processing instructions or DTDs; Destination present; Response
// and SubjectConfirmationData InResponseTo = requestID; an
// AudienceRestriction naming EntityID; Now in [NotBefore, NotOnOrAfter);
// SubjectConfirmationData NotOnOrAfter strictly after Now; a non-empty
// NameID.
func (sp *SP) Validate(samlResponseB64 string, requestID string) (*Assertion, error) {
	switch {
	case sp.o.IdPCert == nil:
		return nil, fmt.Errorf("%w: no IdPCert", ErrConfig)
	case sp.o.IdPIssuer == "" || sp.o.EntityID == "" || sp.o.ACSURL == "":
		return nil, fmt.Errorf("%w: IdPIssuer, EntityID and ACSURL are all required", ErrConfig)
	case requestID == "":
		return nil, fmt.Errorf("%w: Okta's factor flow is SP-initiated; a request ID is required", ErrConfig)
	}
	now := sp.o.Now()

	// 1. Shape, before trusting any library with the document.
	raw, err := base64.StdEncoding.DecodeString(samlResponseB64)
	if err != nil {
		return nil, fmt.Errorf("%w: base64: %w", ErrMalformed, err)
	}
	doc := etree.NewDocument()
	if err := doc.ReadFromBytes(raw); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	nameIDFormat, err := checkShape(doc, sp.o.Signatures)
	if err != nil {
		return nil, err
	}

	// 2. gosaml2: signatures, issuer, destination, recipient, status.
	gs := &saml2.SAMLServiceProvider{
		IdentityProviderIssuer:      sp.o.IdPIssuer,
		AssertionConsumerServiceURL: sp.o.ACSURL,
		AudienceURI:                 sp.o.EntityID,
		IDPCertificateStore:         &dsig.MemoryX509CertificateStore{Roots: []*x509.Certificate{sp.o.IdPCert}},
		SkipSignatureValidation:     false,
		Clock:                       dsig.NewFakeClockAt(now),
	}
	resp, err := gs.ValidateEncodedResponse(samlResponseB64)
	if err != nil {
		return nil, classify(err)
	}
	// gosaml2 verified every signature there; checkShape made sure the
	// required ones are there. Its two paths say which it took.
	if len(resp.Assertions) != 1 {
		return nil, fmt.Errorf("%w: %d verified assertions", ErrMalformed, len(resp.Assertions))
	}
	a := &resp.Assertions[0]
	switch {
	case requires(sp.o.Signatures, true) && !resp.SignatureValidated:
		return nil, fmt.Errorf("%w: gosaml2 did not verify the Response signature", ErrNotSigned)
	case !resp.SignatureValidated && !a.SignatureValidated:
		// An unsigned Response: only a verified Assertion counts.
		return nil, fmt.Errorf("%w: gosaml2 verified neither the Response nor the Assertion", ErrNotSigned)
	}
	warn, err := gs.VerifyAssertionConditions(a)
	if err != nil {
		return nil, classify(err)
	}

	// 3. What gosaml2 leaves to the caller.
	if resp.Destination == "" {
		return nil, fmt.Errorf("%w: Response has no Destination", ErrDestination)
	}
	if resp.InResponseTo != requestID {
		return nil, fmt.Errorf("%w: Response says %q, request was %q", ErrInResponseTo, resp.InResponseTo, requestID)
	}
	if a.Subject == nil || a.Subject.NameID == nil || a.Subject.NameID.Value == "" {
		return nil, fmt.Errorf("%w: no NameID", ErrMalformed)
	}
	sc := a.Subject.SubjectConfirmation
	if sc == nil || sc.Method != BearerMethod || sc.SubjectConfirmationData == nil {
		return nil, fmt.Errorf("%w", ErrSubjectConfirmation)
	}
	scd := sc.SubjectConfirmationData
	if scd.Recipient != sp.o.ACSURL {
		return nil, fmt.Errorf("%w: %q, want %q", ErrRecipient, scd.Recipient, sp.o.ACSURL)
	}
	if scd.InResponseTo != requestID {
		return nil, fmt.Errorf("%w: SubjectConfirmationData says %q, request was %q", ErrInResponseTo, scd.InResponseTo, requestID)
	}
	scdNotOnOrAfter, err := time.Parse(time.RFC3339, scd.NotOnOrAfter)
	if err != nil {
		return nil, fmt.Errorf("%w: SubjectConfirmationData NotOnOrAfter: %w", ErrMalformed, err)
	}
	if !now.Before(scdNotOnOrAfter) {
		return nil, fmt.Errorf("%w: SubjectConfirmationData NotOnOrAfter %s, now %s", ErrExpired, scd.NotOnOrAfter, now.UTC().Format(time.RFC3339))
	}

	c := a.Conditions // VerifyAssertionConditions made sure it has both bounds
	notBefore, _ := time.Parse(time.RFC3339, c.NotBefore)
	notOnOrAfter, _ := time.Parse(time.RFC3339, c.NotOnOrAfter)
	if now.Before(notBefore) {
		return nil, fmt.Errorf("%w: NotBefore %s, now %s", ErrNotYetValid, c.NotBefore, now.UTC().Format(time.RFC3339))
	}
	if !now.Before(notOnOrAfter) || warn.InvalidTime {
		return nil, fmt.Errorf("%w: Conditions NotOnOrAfter %s, now %s", ErrExpired, c.NotOnOrAfter, now.UTC().Format(time.RFC3339))
	}
	if len(c.AudienceRestrictions) == 0 {
		return nil, fmt.Errorf("%w: no AudienceRestriction", ErrAudience)
	}
	if warn.NotInAudience {
		return nil, fmt.Errorf("%w: want %q", ErrAudience, sp.o.EntityID)
	}

	out := &Assertion{
		NameID:       a.Subject.NameID.Value,
		NameIDFormat: nameIDFormat,
		InResponseTo: scd.InResponseTo,
		Recipient:    scd.Recipient,
		Audience:     sp.o.EntityID,
		Issuer:       a.Issuer.Value,
		NotBefore:    notBefore,
		NotOnOrAfter: notOnOrAfter,
		Attributes:   attributes(a),
	}
	if s := a.AuthnStatement; s != nil {
		out.SessionIndex = s.SessionIndex
		if s.AuthnInstant != nil {
			out.AuthnInstant = *s.AuthnInstant
		}
	}
	return out, nil
}

func attributes(a *types.Assertion) map[string][]string {
	m := map[string][]string{}
	if a.AttributeStatement == nil {
		return m
	}
	for _, at := range a.AttributeStatement.Attributes {
		for _, v := range at.Values {
			m[at.Name] = append(m[at.Name], v.Value)
		}
	}
	return m
}

// classify maps gosaml2's errors onto ours, keeping its message.
func classify(err error) error {
	var iv saml2.ErrInvalidValue
	if errors.As(err, &iv) {
		kind := ErrRejected
		switch iv.Key {
		case saml2.IssuerTag:
			kind = ErrIssuer
		case saml2.DestinationAttr:
			kind = ErrDestination
		case saml2.RecipientAttr:
			kind = ErrRecipient
		case saml2.NotOnOrAfterAttr:
			kind = ErrExpired
		case saml2.StatusCodeTag:
			kind = ErrStatus
		case saml2.SubjectConfirmationTag:
			kind = ErrSubjectConfirmation
		}
		return fmt.Errorf("%w: %w", kind, err)
	}
	var me saml2.ErrMissingElement
	var pe saml2.ErrParsing
	if errors.As(err, &me) || errors.As(err, &pe) {
		return fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	// Everything else ValidateEncodedResponse returns comes from signature
	// verification (goxmldsig) or from reading the signed XML.
	return fmt.Errorf("%w: %w", ErrSignature, err)
}

// checkShape enforces the document structure Okta expects and that gosaml2
// tolerates more loosely; it returns the NameID Format, which gosaml2 does
// not expose. Reading it from the raw tree is safe once the shape is fixed:
// a single Assertion, both signatures referencing their own element, and no
// comments to hide text from canonicalisation.
func checkShape(doc *etree.Document, need Signatures) (nameIDFormat string, err error) {
	for _, t := range doc.Child {
		switch t := t.(type) {
		case *etree.Directive:
			return "", fmt.Errorf("%w: DTD or directive", ErrMalformed)
		case *etree.Comment:
			return "", fmt.Errorf("%w: comment", ErrMalformed)
		case *etree.ProcInst:
			if t.Target != "xml" {
				return "", fmt.Errorf("%w: processing instruction %q", ErrMalformed, t.Target)
			}
		}
	}
	root := doc.Root()
	if root == nil || root.Tag != "Response" || root.NamespaceURI() != NSProtocol {
		return "", fmt.Errorf("%w: root is not samlp:Response", ErrMalformed)
	}
	var assertions, encrypted int
	var bad error
	walk(root, func(e *etree.Element) {
		for _, t := range e.Child {
			switch t.(type) {
			case *etree.Comment, *etree.ProcInst, *etree.Directive:
				bad = fmt.Errorf("%w: comment or processing instruction inside <%s>", ErrMalformed, e.Tag)
			}
		}
		if e.NamespaceURI() == NSAssertion {
			switch e.Tag {
			case "Assertion":
				assertions++
			case "EncryptedAssertion":
				encrypted++
			}
		}
	})
	if bad != nil {
		return "", bad
	}
	if encrypted > 0 {
		return "", fmt.Errorf("%w: EncryptedAssertion (our IdP does not encrypt)", ErrMalformed)
	}
	if assertions != 1 {
		return "", fmt.Errorf("%w: %d Assertion elements, want exactly 1", ErrMalformed, assertions)
	}
	assertion := child(root, NSAssertion, "Assertion")
	if assertion == nil {
		return "", fmt.Errorf("%w: Assertion is not a child of Response", ErrMalformed)
	}
	if err := checkSignatures(root, assertion, need); err != nil {
		return "", err
	}
	if subj := child(assertion, NSAssertion, "Subject"); subj != nil {
		if nid := child(subj, NSAssertion, "NameID"); nid != nil {
			nameIDFormat = nid.SelectAttrValue("Format", "")
		}
	}
	return nameIDFormat, nil
}

// requires reports whether need requires the Response's signature
// (response) or the Assertion's (!response).
func requires(need Signatures, response bool) bool {
	switch need {
	case RequireBoth:
		return true
	case RequireResponse:
		return response
	case RequireAssertion:
		return !response
	}
	return false
}

// checkSignatures checks that the signatures need requires are there and
// that each one there (required or not) references its own element;
// RequireEither needs at least one.
func checkSignatures(response, assertion *etree.Element, need Signatures) error {
	rs, as := hasSignature(response), hasSignature(assertion)
	if rs || requires(need, true) {
		if err := selfSigned(response); err != nil {
			return fmt.Errorf("%w: Response: %w", ErrNotSigned, err)
		}
	}
	if as || requires(need, false) {
		if err := selfSigned(assertion); err != nil {
			return fmt.Errorf("%w: Assertion: %w", ErrNotSigned, err)
		}
	}
	if !rs && !as {
		return fmt.Errorf("%w: neither the Response nor the Assertion is signed", ErrNotSigned)
	}
	return nil
}

// hasSignature reports whether el has a ds:Signature child.
func hasSignature(el *etree.Element) bool {
	for _, c := range el.ChildElements() {
		if c.Tag == "Signature" && c.NamespaceURI() == NSDSig {
			return true
		}
	}
	return false
}

// selfSigned reports whether el has exactly one ds:Signature child whose one
// Reference points at el's own ID.
func selfSigned(el *etree.Element) error {
	id := el.SelectAttrValue("ID", "")
	if id == "" {
		return errors.New("no ID")
	}
	var sigs []*etree.Element
	for _, c := range el.ChildElements() {
		if c.Tag == "Signature" && c.NamespaceURI() == NSDSig {
			sigs = append(sigs, c)
		}
	}
	if len(sigs) != 1 {
		return fmt.Errorf("%d Signature children, want 1", len(sigs))
	}
	si := child(sigs[0], NSDSig, "SignedInfo")
	if si == nil {
		return errors.New("Signature has no SignedInfo")
	}
	var refs []string
	for _, c := range si.ChildElements() {
		if c.Tag == "Reference" && c.NamespaceURI() == NSDSig {
			refs = append(refs, c.SelectAttrValue("URI", ""))
		}
	}
	if len(refs) != 1 || refs[0] != "#"+id {
		return fmt.Errorf("Signature references %q, want [\"#%s\"]", refs, id)
	}
	return nil
}

func child(el *etree.Element, ns, tag string) *etree.Element {
	for _, c := range el.ChildElements() {
		if c.Tag == tag && c.NamespaceURI() == ns {
			return c
		}
	}
	return nil
}

func walk(el *etree.Element, fn func(*etree.Element)) {
	fn(el)
	for _, c := range el.ChildElements() {
		walk(c, fn)
	}
}
