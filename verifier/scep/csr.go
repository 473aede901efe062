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

// Reason is why a SCEP request was refused: a log field and metric label
// whose values never change once released.
type Reason string

// Reasons a SCEP request is refused.
const (
	RefuseBadChallenge           Reason = "bad_challenge"
	RefuseBadCSR                 Reason = "bad_csr"
	RefuseBadEnvelope            Reason = "bad_envelope"
	RefuseBadSignature           Reason = "bad_signature"
	RefuseBadTime                Reason = "bad_time"
	RefuseChallengeUsed          Reason = "challenge_used"
	RefuseCSRKey                 Reason = "csr_key"
	RefuseCSRSan                 Reason = "csr_san"
	RefuseCSRSignature           Reason = "csr_signature"
	RefuseCSRSubject             Reason = "csr_subject"
	RefuseDeviceRevoked          Reason = "device_revoked"
	RefuseMalformedMessage       Reason = "malformed_message"
	RefuseOversized              Reason = "oversized"
	RefuseRateLimited            Reason = "rate_limited"
	RefuseRenewalNotSupported    Reason = "renewal_not_supported"
	RefuseSignerKeyNotRSA        Reason = "signer_key_not_rsa"
	RefuseUnknownDevice          Reason = "unknown_device"
	RefuseUnknownOperation       Reason = "unknown_operation"
	RefuseUnsupportedEncryption  Reason = "unsupported_encryption"
	RefuseUnsupportedMessageType Reason = "unsupported_message_type"
)

// CSRError says which rule a CSR broke; Reason is a static snake_case
// word for logs and metrics.
type CSRError struct {
	Reason Reason
	Detail string
}

func (e *CSRError) Error() string { return "CSR refused: " + e.Detail }

func csrError(reason Reason, format string, args ...any) error {
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
		return "", csrError(RefuseBadCSR, "no CSR")
	}
	for _, check := range csrChecks {
		if err := check(csr); err != nil {
			return "", err
		}
	}
	// The same rule the SSO side applies to the issued certificate.
	uuid, err := ca.HardwareUUIDFromCert(&x509.Certificate{URIs: csr.URIs})
	if err != nil {
		return "", csrError(RefuseCSRSan, "%v", err)
	}
	return uuid, nil
}

func checkKey(csr *x509.CertificateRequest) error {
	switch k := csr.PublicKey.(type) {
	case *rsa.PublicKey:
		if n := k.N.BitLen(); n < MinRSABits || n > MaxRSABits {
			return csrError(RefuseCSRKey, "RSA %d bits, want %d to %d", n, MinRSABits, MaxRSABits)
		}
		return nil
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() {
			return csrError(RefuseCSRKey, "ECDSA %s, want P-256", k.Curve.Params().Name)
		}
		return nil
	default:
		return csrError(RefuseCSRKey, "%s key, want RSA or ECDSA P-256", csr.PublicKeyAlgorithm)
	}
}

func checkSignature(csr *x509.CertificateRequest) error {
	if err := csr.CheckSignature(); err != nil {
		return csrError(RefuseCSRSignature, "%v", err)
	}
	return nil
}

func checkSubject(csr *x509.CertificateRequest) error {
	if n := utf8.RuneCountInString(csr.Subject.CommonName); n > MaxCommonName {
		return csrError(RefuseCSRSubject, "common name of %d characters, limit %d", n, MaxCommonName)
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
			return csrError(RefuseCSRSan, "more than one subjectAltName extension")
		}
		san = ext.Value
	}
	if san == nil {
		return csrError(RefuseCSRSan, "no subjectAltName, want the URI %s<UUID>", ca.HardwareURIPrefix)
	}
	var seq asn1.RawValue
	if rest, err := asn1.Unmarshal(san, &seq); err != nil || len(rest) != 0 ||
		seq.Class != asn1.ClassUniversal || seq.Tag != asn1.TagSequence || !seq.IsCompound {
		return csrError(RefuseCSRSan, "malformed subjectAltName")
	}
	var names, uris int
	for rest := seq.Bytes; len(rest) > 0; names++ {
		var n asn1.RawValue
		var err error
		if rest, err = asn1.Unmarshal(rest, &n); err != nil {
			return csrError(RefuseCSRSan, "malformed subjectAltName")
		}
		if n.Class == asn1.ClassContextSpecific && n.Tag == 6 { // uniformResourceIdentifier
			uris++
		}
	}
	if names != 1 || uris != 1 {
		return csrError(RefuseCSRSan, "subjectAltName has %d names (%d URIs), want exactly the URI %s<UUID>", names, uris, ca.HardwareURIPrefix)
	}
	return nil
}
