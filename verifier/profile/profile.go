// Package profile owns the configuration profiles (.mobileconfig) a Mac admin
// hands to their MDM: the user-scope profile that enrolls the browser's device
// certificate through SCEP, and the device-scope profile that carries the
// agent's managed preferences.
//
// Output is deterministic: payload UUIDs are derived from the inputs, and the
// plist encoder sorts dictionary keys, so the same options always give the
// same bytes. An MDM that re-uploads an unchanged profile then sees no change,
// and a reviewer can diff two generated files meaningfully.
//
// Sign wraps either profile in a CMS SignedData, as MDMs sign the profiles
// they deliver; the signed content is the unsigned profile byte for byte.
package profile

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/groob/plist"
)

// Payload types used in the generated profiles.
const (
	TypeConfiguration      = "Configuration"
	TypeRoot               = "com.apple.security.root"
	TypeSCEP               = "com.apple.security.scep"
	TypeIdentityPreference = "com.apple.security.identitypreference"
	TypeChrome             = "com.google.Chrome"
	TypeManagedPreferences = "com.apple.ManagedClient.preferences"
)

// Profile scopes (PayloadScope). macOS honours PayloadScope when a profile is
// installed by hand; an MDM decides the channel itself, so the admin must also
// assign the profile to the matching channel (user vs. device) in the MDM.
const (
	ScopeUser   = "User"
	ScopeSystem = "System"
)

// payload is one plist dictionary. Maps are fine here: the encoder writes
// dictionary keys in sorted order, so the output does not depend on map order.
type payload = map[string]any

// profileDoc builds the top-level Configuration dictionary.
func profileDoc(identifier, scope, org, display, description string, content []payload) payload {
	parts := []string{identifier, TypeConfiguration, scope, org}
	for _, p := range content {
		parts = append(parts, p["PayloadUUID"].(string))
	}
	return payload{
		"PayloadContent":      content,
		"PayloadDescription":  description,
		"PayloadDisplayName":  display,
		"PayloadIdentifier":   identifier,
		"PayloadOrganization": org,
		"PayloadScope":        scope,
		"PayloadType":         TypeConfiguration,
		"PayloadUUID":         derivedUUID(parts...),
		"PayloadVersion":      1,
	}
}

// inner builds an inner payload's bookkeeping keys. salient lists the
// non-secret inputs that make this payload what it is; secrets are never
// among them, because a UUID derived from a low-entropy challenge would let
// anyone holding the profile's metadata test guesses offline.
func inner(identifier, typ, display string, salient ...string) payload {
	return payload{
		"PayloadDisplayName": display,
		"PayloadIdentifier":  identifier,
		"PayloadType":        typ,
		"PayloadUUID":        derivedUUID(append([]string{identifier, typ}, salient...)...),
		"PayloadVersion":     1,
	}
}

// derivedUUID hashes its parts (length-prefixed, so "ab"+"c" and "a"+"bc"
// differ) and formats 16 bytes of the digest as an upper-case UUID with the
// version-5 and RFC 4122 variant bits set, the form MDMs and macOS expect.
func derivedUUID(parts ...string) string {
	h := sha256.New()
	var n [8]byte
	for _, p := range parts {
		binary.BigEndian.PutUint64(n[:], uint64(len(p)))
		h.Write(n[:])
		h.Write([]byte(p))
	}
	b := h.Sum(nil)[:16]
	b[6] = b[6]&0x0f | 0x50
	b[8] = b[8]&0x3f | 0x80
	return strings.ToUpper(fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16]))
}

// encode writes a profile as an XML plist, the form MDMs accept for upload.
func encode(doc payload) ([]byte, error) {
	out, err := plist.MarshalIndent(doc, "\t")
	if err != nil {
		return nil, fmt.Errorf("encoding profile: %w", err)
	}
	return out, nil
}

// fingerprint is the SHA-256 of the certificate's DER in lower-case hex, the
// form the agent's CAFingerprint setting takes.
func fingerprint(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	return hex.EncodeToString(sum[:])
}

// checkIdentifier accepts reverse-DNS style identifiers: MDMs key profiles on
// PayloadIdentifier, and spaces or slashes there break some of them.
func checkIdentifier(id string) error {
	if id == "" {
		return errors.New("identifier is empty")
	}
	for _, r := range id {
		ok := r == '.' || r == '-' || r == '_' ||
			(r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') || (r >= '0' && r <= '9')
		if !ok {
			return fmt.Errorf("identifier %q: use only letters, digits, '.', '-' and '_' (reverse-DNS, such as com.example.clearance)", id)
		}
	}
	if strings.HasPrefix(id, ".") || strings.HasSuffix(id, ".") || strings.Contains(id, "..") {
		return fmt.Errorf("identifier %q has an empty dot-separated part", id)
	}
	return nil
}

// checkCA rejects a missing or non-CA certificate: a leaf certificate in the
// root payload would install but never anchor anything.
func checkCA(c *x509.Certificate) error {
	if c == nil || len(c.Raw) == 0 {
		return errors.New("CA certificate is required (the Clearance root CA, DIR/ca.pem)")
	}
	if !c.IsCA {
		return fmt.Errorf("CA certificate %q is not a CA certificate (basicConstraints CA:TRUE missing)", c.Subject.CommonName)
	}
	return nil
}

// checkHTTPURL requires an absolute http or https URL with a host.
func checkHTTPURL(name, raw string, httpsOnly bool) (*url.URL, error) {
	if raw == "" {
		return nil, fmt.Errorf("%s is required", name)
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("%s %q is not a URL: %w", name, raw, err)
	}
	switch {
	case u.Scheme == "https":
	case u.Scheme == "http" && !httpsOnly:
	case httpsOnly:
		return nil, fmt.Errorf("%s %q must be an https:// URL", name, raw)
	default:
		return nil, fmt.Errorf("%s %q must be an http:// or https:// URL", name, raw)
	}
	if u.Hostname() == "" {
		return nil, fmt.Errorf("%s %q has no host", name, raw)
	}
	if u.User != nil {
		return nil, fmt.Errorf("%s must not carry credentials", name)
	}
	return u, nil
}
