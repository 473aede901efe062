package idp

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"unicode/utf8"

	xrv "github.com/mattermost/xml-roundtrip-validator"
)

// checkRoundTrip refuses a document any of whose tokens does not survive an
// encoding/xml round trip unchanged: such documents parse differently in
// different XML libraries, which signature-wrapping attacks exploit. The
// test is the mattermost round-trip validator's, token by token, over the
// same token stream it reads (non-strict, raw names).
//
// The validator encodes and decodes every token afresh, allocating an
// encoder's and a decoder's buffers each time: most of a sign-in's
// allocations. Tokens made only of what encoding/xml writes and reads back
// exactly (plain ASCII names, text of XML characters) are known to pass it
// (FuzzPlainTokenRoundTrips) and skip it; anything else still takes it.
func checkRoundTrip(data []byte) error {
	d := xml.NewDecoder(bytes.NewReader(data))
	d.Strict = false
	d.CharsetReader = func(_ string, input io.Reader) (io.Reader, error) { return input, nil }
	for {
		offset := d.InputOffset()
		tok, err := d.RawToken()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if plainToken(tok) {
			continue
		}
		if err := xrv.CheckToken(tok); err != nil {
			return fmt.Errorf("in the token at byte %d: %w", offset, err)
		}
	}
}

// plainToken says whether tok is made only of what encoding/xml's encoder
// writes and its decoder reads back as it was: an element (start or end)
// whose prefixes and names are plain ASCII names, with no more than one
// attribute of each name and no prefixed attribute but namespace
// declarations, and attribute values and text (not empty) that are all XML
// characters. Comments, processing instructions and directives are never
// plain.
func plainToken(tok xml.Token) bool {
	switch t := tok.(type) {
	case xml.CharData:
		// Empty text (an empty CDATA section) encodes to nothing, which
		// the validator refuses.
		return len(t) > 0 && xmlChars(t)
	case xml.EndElement:
		return plainName(t.Name)
	case xml.StartElement:
		if !plainName(t.Name) || len(t.Attr) > maxPlainAttrs {
			return false
		}
		for i, a := range t.Attr {
			// A prefixed attribute other than a namespace declaration is
			// not plain: the validator's comparison pairs declarations with
			// the prefixes after them, and refuses some such orders.
			if a.Name.Space != "" && a.Name.Space != "xmlns" || !plainName(a.Name) || !xmlChars([]byte(a.Value)) {
				return false
			}
			for _, b := range t.Attr[:i] {
				if b.Name == a.Name {
					return false
				}
			}
		}
		return true
	}
	return false
}

// maxPlainAttrs bounds the attributes of a plain element, so that the
// duplicate check stays small; an AuthnRequest has about ten.
const maxPlainAttrs = 32

// plainName: an optional prefix and a local name, each an ASCII name that
// does not start with "xml" in any case (encoding/xml's encoder renames
// such prefixes), except the prefix "xmlns" on an attribute, which
// declares a namespace.
func plainName(n xml.Name) bool {
	if !asciiName(n.Local) {
		return false
	}
	return n.Space == "" || n.Space == "xmlns" || asciiName(n.Space) && !xmlReserved(n.Space)
}

func asciiName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', c == '_':
		case i > 0 && ('0' <= c && c <= '9' || c == '-' || c == '.'):
		default:
			return false
		}
	}
	return true
}

func xmlReserved(s string) bool {
	return len(s) >= 3 && (s[0]|0x20) == 'x' && (s[1]|0x20) == 'm' && (s[2]|0x20) == 'l'
}

// xmlChars says whether b is UTF-8 of XML characters only (the Char
// production): what the encoder escapes and the decoder unescapes exactly.
func xmlChars(b []byte) bool {
	for len(b) > 0 {
		c := b[0]
		if c < utf8.RuneSelf {
			if c < 0x20 && c != '\t' && c != '\n' && c != '\r' {
				return false
			}
			b = b[1:]
			continue
		}
		r, n := utf8.DecodeRune(b)
		if r == utf8.RuneError && n == 1 || !xmlChar(r) {
			return false
		}
		b = b[n:]
	}
	return true
}
