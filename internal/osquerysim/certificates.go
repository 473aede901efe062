package osquerysim

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/hex"
	"fmt"
	"math/big"
	"strconv"
	"strings"
)

// CertificateRow renders c as the row osqueryd's macOS certificates table
// yields for it when it is found in the keychain file at path (osquery's
// genCertificate, which reads the DER through OpenSSL):
//
//   - serial: BN_bn2hex, upper-case hex of whole bytes ("0A1B", "-01" for a
//     negative serial), so a leading zero nibble stays;
//   - sha1, subject_key_id, authority_key_id: lower-case hex without
//     separators, "" when the extension is absent;
//   - not_valid_before, not_valid_after: Unix seconds;
//   - subject, issuer: X509_NAME_oneline ("/O=Clearance/CN=…");
//     subject2, issuer2: X509_NAME_print_ex with XN_FLAG_ONELINE
//     ("O = Clearance, CN = …");
//   - key_usage: the key usage bits in OpenSSL's order, without the
//     extended key usages.
//
// Names are rendered for the attribute types and characters certificates
// in practice use; exotic escapes may differ from OpenSSL's in detail.
func CertificateRow(c *x509.Certificate, path string) Row {
	sum := sha1.Sum(c.Raw)
	return Row{
		"common_name":       firstCommonName(c.Subject),
		"subject":           nameOneline(c.Subject),
		"subject2":          namePrintOneline(c.Subject),
		"issuer":            nameOneline(c.Issuer),
		"issuer2":           namePrintOneline(c.Issuer),
		"ca":                boolInt(isCA(c)),
		"self_signed":       boolInt(isSelfIssued(c)),
		"not_valid_before":  strconv.FormatInt(c.NotBefore.Unix(), 10),
		"not_valid_after":   strconv.FormatInt(c.NotAfter.Unix(), 10),
		"signing_algorithm": signingAlgorithm(c.SignatureAlgorithm),
		"key_algorithm":     keyAlgorithm(c.PublicKey),
		"key_strength":      keyStrength(c.PublicKey),
		"key_usage":         keyUsage(c.KeyUsage),
		"subject_key_id":    hex.EncodeToString(c.SubjectKeyId),
		"authority_key_id":  hex.EncodeToString(c.AuthorityKeyId),
		"sha1":              hex.EncodeToString(sum[:]),
		"path":              path,
		"serial":            bnHex(c.SerialNumber),
	}
}

// bnHex is OpenSSL's BN_bn2hex.
func bnHex(n *big.Int) string {
	if n == nil || n.Sign() == 0 {
		return "0"
	}
	s := strings.ToUpper(hex.EncodeToString(new(big.Int).Abs(n).Bytes()))
	if n.Sign() < 0 {
		s = "-" + s
	}
	return s
}

func boolInt(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

// isCA approximates X509_check_ca: basic constraints decide when present;
// otherwise a certSign key usage, or a self-issued v1 certificate.
func isCA(c *x509.Certificate) bool {
	if c.BasicConstraintsValid {
		return c.IsCA
	}
	if c.KeyUsage&x509.KeyUsageCertSign != 0 {
		return true
	}
	return c.Version == 1 && isSelfIssued(c)
}

// isSelfIssued approximates X509_check_issued(c, c) == X509_V_OK: issuer and
// subject names match, key ids (when both present) match, and a key usage,
// when present, allows certificate signing. The signature is not checked.
func isSelfIssued(c *x509.Certificate) bool {
	if !bytes.Equal(c.RawIssuer, c.RawSubject) {
		return false
	}
	if len(c.AuthorityKeyId) > 0 && len(c.SubjectKeyId) > 0 && !bytes.Equal(c.AuthorityKeyId, c.SubjectKeyId) {
		return false
	}
	return c.KeyUsage == 0 || c.KeyUsage&x509.KeyUsageCertSign != 0
}

// OpenSSL's long names, as osquery reports them.
func signingAlgorithm(a x509.SignatureAlgorithm) string {
	switch a {
	case x509.SHA1WithRSA:
		return "sha1WithRSAEncryption"
	case x509.SHA256WithRSA:
		return "sha256WithRSAEncryption"
	case x509.SHA384WithRSA:
		return "sha384WithRSAEncryption"
	case x509.SHA512WithRSA:
		return "sha512WithRSAEncryption"
	case x509.SHA256WithRSAPSS, x509.SHA384WithRSAPSS, x509.SHA512WithRSAPSS:
		return "rsassaPss"
	case x509.ECDSAWithSHA1:
		return "ecdsa-with-SHA1"
	case x509.ECDSAWithSHA256:
		return "ecdsa-with-SHA256"
	case x509.ECDSAWithSHA384:
		return "ecdsa-with-SHA384"
	case x509.ECDSAWithSHA512:
		return "ecdsa-with-SHA512"
	case x509.PureEd25519:
		return "ED25519"
	}
	return ""
}

func keyAlgorithm(pub any) string {
	switch pub.(type) {
	case *rsa.PublicKey:
		return "rsaEncryption"
	case *ecdsa.PublicKey:
		return "id-ecPublicKey"
	case ed25519.PublicKey:
		return "ED25519"
	}
	return ""
}

// keyStrength is the RSA modulus size in bits (EVP_PKEY_size × 8), or the
// curve's OpenSSL name; "" for other keys.
func keyStrength(pub any) string {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		return strconv.Itoa(k.Size() * 8)
	case *ecdsa.PublicKey:
		switch k.Curve.Params().Name {
		case "P-256":
			return "prime256v1"
		case "P-384":
			return "secp384r1"
		case "P-521":
			return "secp521r1"
		}
	}
	return ""
}

// keyUsage lists the bits in the order of osquery's kKeyUsageFlagList,
// which is ordered by OpenSSL's KU_* flag values.
func keyUsage(ku x509.KeyUsage) string {
	var out []string
	for _, u := range []struct {
		bit  x509.KeyUsage
		name string
	}{
		{x509.KeyUsageEncipherOnly, "Encipher Only"},
		{x509.KeyUsageCRLSign, "CRL Sign"},
		{x509.KeyUsageCertSign, "Key Cert Sign"},
		{x509.KeyUsageKeyAgreement, "Key Agreement"},
		{x509.KeyUsageDataEncipherment, "Data Encipherment"},
		{x509.KeyUsageKeyEncipherment, "Key Encipherment"},
		{x509.KeyUsageContentCommitment, "Non Repudiation"},
		{x509.KeyUsageDigitalSignature, "Digital Signature"},
		{x509.KeyUsageDecipherOnly, "Decipher Only"},
	} {
		if ku&u.bit != 0 {
			out = append(out, u.name)
		}
	}
	return strings.Join(out, ", ")
}

// OpenSSL's short names for the attribute types names carry.
var attrShortNames = map[string]string{
	"2.5.4.3":                    "CN",
	"2.5.4.4":                    "SN",
	"2.5.4.5":                    "serialNumber",
	"2.5.4.6":                    "C",
	"2.5.4.7":                    "L",
	"2.5.4.8":                    "ST",
	"2.5.4.9":                    "street",
	"2.5.4.10":                   "O",
	"2.5.4.11":                   "OU",
	"2.5.4.12":                   "title",
	"2.5.4.17":                   "postalCode",
	"2.5.4.42":                   "GN",
	"1.2.840.113549.1.9.1":       "emailAddress",
	"0.9.2342.19200300.100.1.1":  "UID",
	"0.9.2342.19200300.100.1.25": "DC",
}

func attrName(t asn1.ObjectIdentifier) string {
	if n, ok := attrShortNames[t.String()]; ok {
		return n
	}
	return t.String()
}

func attrValue(v any) string {
	if s, ok := v.(string); ok {
		return s
	}
	return fmt.Sprint(v)
}

// firstCommonName is the first CN in the name, as osquery's
// X509_NAME_get_index_by_NID(…, -1) picks it.
func firstCommonName(n pkix.Name) string {
	for _, a := range n.Names {
		if a.Type.Equal(asn1.ObjectIdentifier{2, 5, 4, 3}) {
			return attrValue(a.Value)
		}
	}
	return ""
}

// nameOneline is X509_NAME_oneline: "/type=value" for each attribute in
// order, bytes outside printable ASCII as \xHH.
func nameOneline(n pkix.Name) string {
	var b strings.Builder
	for _, a := range n.Names {
		b.WriteByte('/')
		b.WriteString(attrName(a.Type))
		b.WriteByte('=')
		for _, c := range []byte(attrValue(a.Value)) {
			if c < 0x20 || c > 0x7e {
				fmt.Fprintf(&b, "\\x%02X", c)
				continue
			}
			b.WriteByte(c)
		}
	}
	return b.String()
}

// namePrintOneline is X509_NAME_print_ex(…, XN_FLAG_ONELINE): "type = value"
// joined by ", ". A value holding an RFC 2253 special character is quoted
// rather than escaped (ASN1_STRFLGS_ESC_QUOTE); control and non-ASCII bytes
// become \HH, and a backslash is doubled.
func namePrintOneline(n pkix.Name) string {
	parts := make([]string, 0, len(n.Names))
	for _, a := range n.Names {
		parts = append(parts, attrName(a.Type)+" = "+printValue(attrValue(a.Value)))
	}
	return strings.Join(parts, ", ")
}

func printValue(s string) string {
	var b strings.Builder
	quote := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case strings.IndexByte(`,+"<>;`, c) >= 0,
			i == 0 && (c == '#' || c == ' '),
			i == len(s)-1 && c == ' ':
			quote = true
			b.WriteByte(c)
		case c < 0x20 || c > 0x7e:
			fmt.Fprintf(&b, "\\%02X", c)
		case c == '\\':
			b.WriteString(`\\`)
		default:
			b.WriteByte(c)
		}
	}
	if quote {
		return `"` + b.String() + `"`
	}
	return b.String()
}
