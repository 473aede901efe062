package ca

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
)

// MaxCSRSize bounds an enrollment CSR. A P-384 CSR with a subject is a few
// hundred bytes; the bound keeps the parser's work small for anyone who can
// reach the enrollment endpoint, which includes people without a secret.
const MaxCSRSize = 8 << 10

// Errors ParseCSR returns, wrapped with a detail for a person; match with
// errors.Is.
var (
	ErrCSRTooLarge  = errors.New("CSR too large")
	ErrCSRMalformed = errors.New("CSR malformed")
	ErrCSRKeyType   = errors.New("CSR key type not accepted")
	ErrCSRCurve     = errors.New("CSR key curve not accepted")
	ErrCSRSignature = errors.New("CSR signature invalid")
)

// ParseCSR is the gate every enrollment and renewal CSR passes: DER
// PKCS#10, at most MaxCSRSize bytes, nothing after it, an ECDSA P-256 or
// P-384 key, signed by that key with ECDSA and SHA-2. The size is checked
// before anything is parsed.
func ParseCSR(der []byte) (*x509.CertificateRequest, error) {
	if len(der) > MaxCSRSize {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrCSRTooLarge, len(der), MaxCSRSize)
	}
	if len(der) == 0 {
		return nil, fmt.Errorf("%w: empty", ErrCSRMalformed)
	}
	// PEM where DER was expected is the likely mistake: say so rather than
	// report an ASN.1 error. (The parser itself rejects trailing data.)
	if bytes.HasPrefix(der, []byte("-----BEGIN")) {
		return nil, fmt.Errorf("%w: got PEM, want DER", ErrCSRMalformed)
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		if curve, ok := unsupportedCurve(der); ok {
			return nil, fmt.Errorf("%w: ECDSA %s, want P-256 or P-384", ErrCSRCurve, curve)
		}
		return nil, fmt.Errorf("%w: not a DER PKCS#10 certificate request: %w", ErrCSRMalformed, err)
	}
	if err := checkCSR(csr); err != nil {
		return nil, err
	}
	return csr, nil
}

// csrChecks run in order; the key is judged before its signature, so a CSR
// for an unwanted key type is reported as such even if it is also badly signed.
var csrChecks = []func(*x509.CertificateRequest) error{
	checkCSRKey,
	checkCSRSignature,
}

func checkCSR(csr *x509.CertificateRequest) error {
	for _, check := range csrChecks {
		if err := check(csr); err != nil {
			return err
		}
	}
	return nil
}

func checkCSRKey(csr *x509.CertificateRequest) error {
	switch k := csr.PublicKey.(type) {
	case *ecdsa.PublicKey:
		// Device keys live in the Secure Enclave, which does P-256; P-384 is
		// accepted for software keys. Report signing supports exactly these.
		if k.Curve != elliptic.P256() && k.Curve != elliptic.P384() {
			return fmt.Errorf("%w: ECDSA %s, want P-256 or P-384", ErrCSRCurve, curveName(k.Curve))
		}
		return nil
	case *rsa.PublicKey:
		return fmt.Errorf("%w: RSA, want ECDSA P-256 or P-384", ErrCSRKeyType)
	case ed25519.PublicKey:
		return fmt.Errorf("%w: Ed25519, want ECDSA P-256 or P-384", ErrCSRKeyType)
	case nil:
		return fmt.Errorf("%w: unknown key algorithm, want ECDSA P-256 or P-384", ErrCSRKeyType)
	default:
		return fmt.Errorf("%w: %s (%T), want ECDSA P-256 or P-384", ErrCSRKeyType, csr.PublicKeyAlgorithm, k)
	}
}

var (
	oidECPublicKey = asn1.ObjectIdentifier{1, 2, 840, 10045, 2, 1}
	// Curves crypto/x509 cannot parse, named so the error says which one a
	// client used; other unknown curves are named by OID.
	otherCurves = map[string]string{
		"1.3.132.0.10":          "secp256k1",
		"1.3.36.3.3.2.8.1.1.7":  "brainpoolP256r1",
		"1.3.36.3.3.2.8.1.1.11": "brainpoolP384r1",
		"1.3.36.3.3.2.8.1.1.13": "brainpoolP512r1",
	}
	// The named curves crypto/x509 parses; a CSR on one of these that fails
	// to parse is malformed for some other reason.
	x509Curves = map[string]bool{
		"1.3.132.0.33": true, "1.2.840.10045.3.1.7": true, "1.3.132.0.34": true, "1.3.132.0.35": true,
	}
)

// unsupportedCurve tells a CSR that crypto/x509 rejected only because its
// ECDSA key is on a curve it does not know (secp256k1, Brainpool) from one
// that is malformed, so that the client hears which curve to change.
func unsupportedCurve(der []byte) (string, bool) {
	var req struct {
		TBS struct {
			Version int
			Subject asn1.RawValue
			SPKI    struct {
				Algorithm pkix.AlgorithmIdentifier
				Key       asn1.BitString
			}
			Attributes asn1.RawValue `asn1:"optional,tag:0"`
		}
		Algorithm pkix.AlgorithmIdentifier
		Signature asn1.BitString
	}
	if rest, err := asn1.Unmarshal(der, &req); err != nil || len(rest) != 0 {
		return "", false
	}
	alg := req.TBS.SPKI.Algorithm
	if !alg.Algorithm.Equal(oidECPublicKey) {
		return "", false
	}
	var curve asn1.ObjectIdentifier
	if rest, err := asn1.Unmarshal(alg.Parameters.FullBytes, &curve); err != nil || len(rest) != 0 {
		return "", false
	}
	if x509Curves[curve.String()] {
		return "", false
	}
	if name, ok := otherCurves[curve.String()]; ok {
		return name, true
	}
	return "curve " + curve.String(), true
}

func curveName(c elliptic.Curve) string {
	if c == nil || c.Params() == nil || c.Params().Name == "" {
		return "unnamed curve"
	}
	return c.Params().Name
}

func checkCSRSignature(csr *x509.CertificateRequest) error {
	switch csr.SignatureAlgorithm {
	case x509.ECDSAWithSHA256, x509.ECDSAWithSHA384, x509.ECDSAWithSHA512:
	default:
		// crypto/x509 still accepts SHA-1 on CSRs; we have no client that
		// needs it.
		return fmt.Errorf("%w: signature algorithm %s, want ECDSA with SHA-256, SHA-384 or SHA-512",
			ErrCSRSignature, csr.SignatureAlgorithm)
	}
	if err := csr.CheckSignature(); err != nil {
		return fmt.Errorf("%w: %w", ErrCSRSignature, err)
	}
	return nil
}

// CSRPublicKeyDER is the CSR's public key as PKIX DER: what storage keeps as
// the device key that signs posture reports.
func CSRPublicKeyDER(csr *x509.CertificateRequest) []byte {
	return bytes.Clone(csr.RawSubjectPublicKeyInfo)
}
