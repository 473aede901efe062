// Package deviceid is the rule for a device's id and how its certificate
// names it: the verifier issues device certificates by it, and the agent
// checks the certificate it is issued against the id it is told.
package deviceid

import (
	"crypto/x509"
	"errors"
	"fmt"
	"regexp"
	"strings"
)

// URIPrefix names a device in a certificate's SAN URI.
const URIPrefix = "urn:clearance:device:"

// MaxLength bounds a device id.
const MaxLength = 64

// A device id is plain enough to go into a URN, a log line and a file name
// unescaped.
var pattern = regexp.MustCompile(`^[A-Za-z0-9-]{1,64}$`)

// ErrNoDeviceID: a certificate that names no device, or not as URI says.
var ErrNoDeviceID = errors.New("device certificate names no device")

// URI is the SAN URI that names id in its certificate.
func URI(id string) string { return URIPrefix + id }

// Check refuses an id that is not 1 to MaxLength letters, digits or
// hyphens.
func Check(id string) error {
	if !pattern.MatchString(id) {
		if len(id) > MaxLength {
			id = id[:MaxLength] + "…"
		}
		return fmt.Errorf("invalid device id %q: want 1 to %d letters, digits or hyphens", id, MaxLength)
	}
	return nil
}

// FromCert returns the device id in c's SAN URI. c must carry exactly one
// URI SAN, urn:clearance:device:<id>. It does not check who issued c.
func FromCert(c *x509.Certificate) (string, error) {
	if c == nil {
		return "", fmt.Errorf("%w: no certificate", ErrNoDeviceID)
	}
	if len(c.URIs) != 1 {
		return "", fmt.Errorf("%w: want exactly one SAN URI, got %d", ErrNoDeviceID, len(c.URIs))
	}
	s := c.URIs[0].String()
	id, ok := strings.CutPrefix(s, URIPrefix)
	if !ok {
		return "", fmt.Errorf("%w: SAN URI %q is not %s<id>", ErrNoDeviceID, s, URIPrefix)
	}
	// The id pattern also rules out anything a URI could append: a query,
	// a fragment, escapes.
	if err := Check(id); err != nil {
		return "", fmt.Errorf("%w: %w", ErrNoDeviceID, err)
	}
	return id, nil
}
