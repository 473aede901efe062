// Package certpem reads PEM-encoded certificates: CA files, chains, and the
// CA PEM an MDM profile carries.
package certpem

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
)

// Parse returns every certificate in data, in order. Any block that is not a
// CERTIFICATE is an error, as are trailing bytes that are not PEM and data
// with no certificate at all: a key or garbage where a certificate belongs is
// a mistake worth naming.
func Parse(data []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("unexpected PEM block %q where a certificate was expected", block.Type)
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("certificate %d: %w", len(certs)+1, err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, errors.New("no PEM certificate found")
	}
	if len(bytes.TrimSpace(data)) != 0 {
		return nil, errors.New("data after the last certificate is not PEM")
	}
	return certs, nil
}
