package idp

import (
	"encoding/xml"
	"strconv"
	"strings"
	"time"

	"github.com/crewjam/saml"
)

const nsProtocol = "urn:oasis:names:tc:SAML:2.0:protocol"

// requestReader builds, from checkXML's token pass, the saml.AuthnRequest
// that xml.Unmarshal would build from the same bytes, so that a request
// is not tokenized again to be read. It knows only the shape Okta sends: an
// AuthnRequest holding at most one each of saml:Issuer (text), saml:Subject
// (at most one saml:NameID, text) and samlp:NameIDPolicy, and nothing else
// but comments and text where xml.Unmarshal ignores them. Anything else
// (another element, a second root, an attribute value xml.Unmarshal would
// refuse) gives up, and the request is read by xml.Unmarshal as before:
// this reader decides nothing, it only saves a pass where it is sure.
//
// What it mirrors of xml.Unmarshal into these crewjam types: an attribute
// fills the field of its local name whatever its namespace (the fields'
// tags name none), the last one winning; IssueInstant goes through
// saml.RelaxedTime; a *bool takes strconv.ParseBool of the trimmed value,
// false when empty; an element's text is all its character data (CDATA
// included, comments left out) joined; XMLName is the element's name,
// but the root's (see start).
// TestRequestReaderKnowsTheSchema fails if crewjam's types grow a field.
type requestReader struct {
	ar     saml.AuthnRequest
	depth  int     // elements open
	in     element // the element whose content is being read
	text   []byte
	done   bool // the root element has ended
	gaveUp bool
}

type element int

const (
	inRoot element = iota
	inIssuer
	inSubject
	inNameID
	inPolicy
)

var (
	nameAuthnRequest = xml.Name{Space: nsProtocol, Local: "AuthnRequest"}
	nameIssuer       = xml.Name{Space: nsAssertion, Local: "Issuer"}
	nameSubject      = xml.Name{Space: nsAssertion, Local: "Subject"}
	nameNameID       = xml.Name{Space: nsAssertion, Local: "NameID"}
	nameNameIDPolicy = xml.Name{Space: nsProtocol, Local: "NameIDPolicy"}
)

// result is the request read, or false when the reader gave up.
func (r *requestReader) result() (*saml.AuthnRequest, bool) {
	return &r.ar, r.done && !r.gaveUp
}

// step reads the next token of a strict decoder's Token stream.
func (r *requestReader) step(tok xml.Token) {
	if r.gaveUp {
		return
	}
	switch t := tok.(type) {
	case xml.StartElement:
		r.start(t)
	case xml.EndElement:
		r.depth--
		switch {
		case r.depth == 0:
			r.done = true
		case r.in == inIssuer:
			r.ar.Issuer.Value = string(r.text)
			r.in = inRoot
		case r.in == inNameID:
			r.ar.Subject.NameID.Value = string(r.text)
			r.in = inSubject
		case r.depth == 1:
			r.in = inRoot
		}
		r.text = r.text[:0]
	case xml.CharData:
		if r.in == inIssuer || r.in == inNameID {
			r.text = append(r.text, t...)
		}
	}
}

func (r *requestReader) start(t xml.StartElement) {
	ar := &r.ar
	ok := false
	switch {
	case r.done:
		// A second root: xml.Unmarshal stops at the first.
	case r.depth == 0:
		// XMLName stays empty: crewjam decodes the root through a struct
		// embedding *AuthnRequest, and encoding/xml then checks the name
		// but sets it on no field.
		if ok = t.Name == nameAuthnRequest; ok {
			ok = r.rootAttrs(t.Attr)
		}
	case r.depth == 1 && t.Name == nameIssuer && ar.Issuer == nil:
		ar.Issuer = &saml.Issuer{XMLName: t.Name}
		ar.Issuer.NameQualifier, ar.Issuer.SPNameQualifier, ar.Issuer.Format, ar.Issuer.SPProvidedID = nameAttrs(t.Attr)
		r.in, ok = inIssuer, true
	case r.depth == 1 && t.Name == nameSubject && ar.Subject == nil:
		ar.Subject = &saml.Subject{XMLName: t.Name}
		r.in, ok = inSubject, true // saml.Subject has no attributes
	case r.depth == 1 && t.Name == nameNameIDPolicy && ar.NameIDPolicy == nil:
		ar.NameIDPolicy = &saml.NameIDPolicy{XMLName: t.Name}
		r.in, ok = inPolicy, r.policyAttrs(t.Attr)
	case r.depth == 2 && r.in == inSubject && t.Name == nameNameID && ar.Subject.NameID == nil:
		id := &saml.NameID{}
		id.NameQualifier, id.SPNameQualifier, id.Format, id.SPProvidedID = nameAttrs(t.Attr)
		ar.Subject.NameID = id
		r.in, ok = inNameID, true
	}
	if !ok {
		r.gaveUp = true
		return
	}
	r.depth++
	r.text = r.text[:0]
}

func (r *requestReader) rootAttrs(attrs []xml.Attr) bool {
	ar := &r.ar
	for _, a := range attrs {
		switch a.Name.Local {
		case "ID":
			ar.ID = a.Value
		case "Version":
			ar.Version = a.Value
		case "IssueInstant":
			var t saml.RelaxedTime
			if t.UnmarshalText([]byte(a.Value)) != nil {
				return false
			}
			ar.IssueInstant = time.Time(t)
		case "Destination":
			ar.Destination = a.Value
		case "Consent":
			ar.Consent = a.Value
		case "ForceAuthn":
			b, ok := xmlBool(a.Value)
			if !ok {
				return false
			}
			ar.ForceAuthn = &b
		case "IsPassive":
			b, ok := xmlBool(a.Value)
			if !ok {
				return false
			}
			ar.IsPassive = &b
		case "AssertionConsumerServiceIndex":
			ar.AssertionConsumerServiceIndex = a.Value
		case "AssertionConsumerServiceURL":
			ar.AssertionConsumerServiceURL = a.Value
		case "ProtocolBinding":
			ar.ProtocolBinding = a.Value
		case "AttributeConsumingServiceIndex":
			ar.AttributeConsumingServiceIndex = a.Value
		case "ProviderName":
			ar.ProviderName = a.Value
		}
	}
	return true
}

func (r *requestReader) policyAttrs(attrs []xml.Attr) bool {
	p := r.ar.NameIDPolicy
	for _, a := range attrs {
		switch a.Name.Local {
		case "Format":
			v := a.Value
			p.Format = &v
		case "SPNameQualifier":
			v := a.Value
			p.SPNameQualifier = &v
		case "AllowCreate":
			b, ok := xmlBool(a.Value)
			if !ok {
				return false
			}
			p.AllowCreate = &b
		}
	}
	return true
}

// nameAttrs reads the attributes saml.Issuer and saml.NameID share.
func nameAttrs(attrs []xml.Attr) (nameQualifier, spNameQualifier, format, spProvidedID string) {
	for _, a := range attrs {
		switch a.Name.Local {
		case "NameQualifier":
			nameQualifier = a.Value
		case "SPNameQualifier":
			spNameQualifier = a.Value
		case "Format":
			format = a.Value
		case "SPProvidedID":
			spProvidedID = a.Value
		}
	}
	return
}

// xmlBool reads a bool attribute as encoding/xml does.
func xmlBool(s string) (bool, bool) {
	if s == "" {
		return false, true
	}
	b, err := strconv.ParseBool(strings.TrimSpace(s))
	return b, err == nil
}
