package scep

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/asn1"
	"fmt"
	"unicode/utf8"

	"github.com/clearance/clearance/verifier/ca"
)

// CSR limits.
const (
	MinRSABits = 2048
	// MaxRSABits bounds the work a CSR can ask of the verifier.
	MaxRSABits = 8192
	// MaxCommonName is X.520's ub-common-name.
	MaxCommonName = 64
)

// CSRError says which rule a CSR broke; Reason is a static snake_case
// word for logs and metrics.
type CSRError struct {
	Reason string
	Detail string
}

func (e *CSRError) Error() string { return "CSR refused: " + e.Detail }

func csrError(reason, format string, args ...any) error {
	return &CSRError{Reason: reason, Detail: fmt.Sprintf(format, args...)}
}

// csrChecks run in order: the key before its signature, so that an unwanted
// key is reported as such.
var csrChecks = []func(*x509.CertificateRequest) error{
	checkKey,
	checkSignature,
	checkSubject,
	checkNames,
}

// CheckCSR applies the browser certificate rules to a SCEP CSR and returns
// the hardware UUID it names (upper case): an RSA key of MinRSABits to
// MaxRSABits or an ECDSA P-256 key, a valid self-signature, a subject
// common name of at most MaxCommonName characters, and a subjectAltName
// of exactly one name, the URI urn:device:apple:uuid:<UUID>.
func CheckCSR(csr *x509.CertificateRequest) (string, error) {
	if csr == nil {
		return "", csrError("bad_csr", "no CSR")
	}
	for _, check := range csrChecks {
		if err := check(csr); err != nil {
			return "", err
		}
	}
	// The same rule the SSO side applies to the issued certificate.
	uuid, err := ca.HardwareUUIDFromCert(&x509.Certificate{URIs: csr.URIs})
	if err != nil {
		return "", csrError("csr_san", "%v", err)
	}
	return uuid, nil
}

func checkKey(csr *x509.CertificateRequest) error {
	switch k := csr.PublicKey.(type) {
	case *rsa.PublicKey:
		if n := k.N.BitLen(); n < MinRSABits || n > MaxRSABits {
			return csrError("csr_key", "RSA %d bits, want %d to %d", n, MinRSABits, MaxRSABits)
		}
		return nil
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() {
			return csrError("csr_key", "ECDSA %s, want P-256", k.Curve.Params().Name)
		}
		return nil
	default:
		return csrError("csr_key", "%s key, want RSA or ECDSA P-256", csr.PublicKeyAlgorithm)
	}
}

func checkSignature(csr *x509.CertificateRequest) error {
	if err := csr.CheckSignature(); err != nil {
		return csrError("csr_signature", "%v", err)
	}
	return nil
}

func checkSubject(csr *x509.CertificateRequest) error {
	if n := utf8.RuneCountInString(csr.Subject.CommonName); n > MaxCommonName {
		return csrError("csr_subject", "common name of %d characters, limit %d", n, MaxCommonName)
	}
	return nil
}

var oidSubjectAltName = asn1.ObjectIdentifier{2, 5, 29, 17}

// checkNames counts the subjectAltName's GeneralNames from the raw
// extension: crypto/x509 drops the kinds it does not parse (otherName,
// directoryName, ...), and those must not pass unseen either.
func checkNames(csr *x509.CertificateRequest) error {
	var san []byte
	for _, ext := range csr.Extensions {
		if !ext.Id.Equal(oidSubjectAltName) {
			continue
		}
		if san != nil {
			return csrError("csr_san", "more than one subjectAltName extension")
		}
		san = ext.Value
	}
	if san == nil {
		return csrError("csr_san", "no subjectAltName, want the URI %s<UUID>", ca.HardwareURIPrefix)
	}
	var seq asn1.RawValue
	if rest, err := asn1.Unmarshal(san, &seq); err != nil || len(rest) != 0 ||
		seq.Class != asn1.ClassUniversal || seq.Tag != asn1.TagSequence || !seq.IsCompound {
		return csrError("csr_san", "malformed subjectAltName")
	}
	var names, uris int
	for rest := seq.Bytes; len(rest) > 0; names++ {
		var n asn1.RawValue
		var err error
		if rest, err = asn1.Unmarshal(rest, &n); err != nil {
			return csrError("csr_san", "malformed subjectAltName")
		}
		if n.Class == asn1.ClassContextSpecific && n.Tag == 6 { // uniformResourceIdentifier
			uris++
		}
	}
	if names != 1 || uris != 1 {
		return csrError("csr_san", "subjectAltName has %d names (%d URIs), want exactly the URI %s<UUID>", names, uris, ca.HardwareURIPrefix)
	}
	return nil
}
