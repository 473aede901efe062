package ca

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/clearance/clearance/internal/testkit/testpki"
)

var csrErrors = []error{ErrCSRTooLarge, ErrCSRMalformed, ErrCSRKeyType, ErrCSRCurve, ErrCSRSignature}

// assembleCSR builds a CSR from its parts, to make ones no library would.
func assembleCSR(t testing.TB, tbs []byte, alg asn1.ObjectIdentifier, sig []byte) []byte {
	t.Helper()
	der, err := asn1.Marshal(struct {
		TBS asn1.RawValue
		Alg pkix.AlgorithmIdentifier
		Sig asn1.BitString
	}{
		TBS: asn1.RawValue{FullBytes: tbs},
		Alg: pkix.AlgorithmIdentifier{Algorithm: alg},
		Sig: asn1.BitString{Bytes: sig, BitLength: 8 * len(sig)},
	})
	if err != nil {
		t.Fatal(err)
	}
	return der
}

var oidECDSAWithSHA256 = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 2}

// signTBS signs tbs with key as ECDSA with SHA-256 and assembles the CSR.
func signTBS(t testing.TB, tbs []byte, key crypto.Signer) []byte {
	t.Helper()
	h := sha256.Sum256(tbs)
	sig, err := ecdsa.SignASN1(rand.Reader, key.(*ecdsa.PrivateKey), h[:])
	if err != nil {
		t.Fatal(err)
	}
	return assembleCSR(t, tbs, oidECDSAWithSHA256, sig)
}

// csrWithDNSNames is a valid P-256 CSR padded with names to at most size
// bytes, and within 100 bytes of it.
func csrWithDNSNames(t testing.TB, size int) []byte {
	t.Helper()
	var names []string
	for {
		names = append(names, fmt.Sprintf("%s%06d.example", strings.Repeat("a", 50), len(names)))
		der := csrDER(t, testKey("P-256"), &x509.CertificateRequest{DNSNames: names})
		if len(der) > size-100 {
			if len(der) > size {
				t.Fatalf("padded CSR is %d bytes, want at most %d", len(der), size)
			}
			return der
		}
	}
}

// ecTBS is a CSR body for an EC key with the given curve OID and point.
func ecTBS(t testing.TB, subject []byte, curve asn1.ObjectIdentifier, point []byte) []byte {
	t.Helper()
	params, err := asn1.Marshal(curve)
	if err != nil {
		t.Fatal(err)
	}
	tbs, err := asn1.Marshal(struct {
		Version int
		Subject asn1.RawValue
		SPKI    struct {
			Algorithm pkix.AlgorithmIdentifier
			Key       asn1.BitString
		}
		Attributes asn1.RawValue
	}{
		Subject: asn1.RawValue{FullBytes: subject},
		SPKI: struct {
			Algorithm pkix.AlgorithmIdentifier
			Key       asn1.BitString
		}{
			Algorithm: pkix.AlgorithmIdentifier{Algorithm: asn1.ObjectIdentifier{1, 2, 840, 10045, 2, 1}, Parameters: asn1.RawValue{FullBytes: params}},
			Key:       asn1.BitString{Bytes: point, BitLength: 8 * len(point)},
		},
		Attributes: asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true},
	})
	if err != nil {
		t.Fatal(err)
	}
	return tbs
}

type csrCase struct {
	name    string
	der     []byte
	wantErr error  // nil: accepted
	wantMsg string // in the error message
}

func csrCases(t testing.TB) []csrCase {
	p256 := csrDER(t, testKey("P-256"), nil)
	parsed, err := x509.ParseCertificateRequest(p256)
	if err != nil {
		t.Fatal(err)
	}
	tbs := parsed.RawTBSCertificateRequest

	flipped := bytes.Clone(p256)
	flipped[len(flipped)-1] ^= 0x01

	// The id-ecPublicKey OID turned into an unknown one of the same length.
	ecPublicKeyOID := []byte{0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01}
	unknownAlgTBS := bytes.Replace(tbs, ecPublicKeyOID, []byte{0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x09}, 1)

	selfCert := testpki.SelfSigned(t, testpki.Key(testKey("P-256"))).Cert.Raw
	point := testKey("P-256").Public().(*ecdsa.PublicKey)
	pointBytes, err := point.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	p256OID := asn1.ObjectIdentifier{1, 2, 840, 10045, 3, 1, 7}
	// Built by hand, the same as a library would: the control for the cases below.
	handMade := signTBS(t, ecTBS(t, parsed.RawSubject, p256OID, pointBytes), testKey("P-256"))
	offCurve := bytes.Clone(pointBytes)
	offCurve[len(offCurve)-1] ^= 0x01

	garbage := make([]byte, 300)
	if _, err := rand.Read(garbage); err != nil {
		t.Fatal(err)
	}

	return []csrCase{
		{name: "P-256", der: p256},
		{name: "P-384", der: csrDER(t, testKey("P-384"), nil)},
		{name: "P-256 SHA-384", der: csrDER(t, testKey("P-256"), &x509.CertificateRequest{SignatureAlgorithm: x509.ECDSAWithSHA384})},
		{name: "P-256 near the size limit", der: csrWithDNSNames(t, MaxCSRSize)},

		{name: "over the size limit", der: csrWithDNSNames(t, MaxCSRSize+300), wantErr: ErrCSRTooLarge, wantMsg: "limit 8192"},
		// Garbage over the limit is reported as too large: nothing was parsed.
		{name: "garbage over the size limit", der: make([]byte, MaxCSRSize+1), wantErr: ErrCSRTooLarge, wantMsg: "8193 bytes"},

		{name: "empty", der: nil, wantErr: ErrCSRMalformed, wantMsg: "empty"},
		{name: "garbage", der: garbage, wantErr: ErrCSRMalformed},
		{name: "garbage at the size limit", der: make([]byte, MaxCSRSize), wantErr: ErrCSRMalformed},
		{name: "truncated", der: p256[:len(p256)/2], wantErr: ErrCSRMalformed},
		{name: "one byte short", der: p256[:len(p256)-1], wantErr: ErrCSRMalformed},
		{name: "trailing data", der: append(bytes.Clone(p256), 0), wantErr: ErrCSRMalformed, wantMsg: "trailing data"},
		{name: "PEM", der: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: p256}), wantErr: ErrCSRMalformed, wantMsg: "got PEM, want DER"},
		{name: "a certificate", der: selfCert, wantErr: ErrCSRMalformed},

		{name: "RSA", der: csrDER(t, testKey("RSA"), nil), wantErr: ErrCSRKeyType, wantMsg: "RSA"},
		{name: "Ed25519", der: csrDER(t, testKey("Ed25519"), nil), wantErr: ErrCSRKeyType, wantMsg: "Ed25519"},
		{name: "unknown key algorithm", der: signTBS(t, unknownAlgTBS, testKey("P-256")), wantErr: ErrCSRKeyType, wantMsg: "unknown key algorithm"},

		{name: "P-256 built by hand", der: handMade},
		{name: "P-256 point off the curve", der: signTBS(t, ecTBS(t, parsed.RawSubject, p256OID, offCurve), testKey("P-256")), wantErr: ErrCSRMalformed},
		{name: "secp256k1", der: signTBS(t, ecTBS(t, parsed.RawSubject, asn1.ObjectIdentifier{1, 3, 132, 0, 10}, pointBytes), testKey("P-256")), wantErr: ErrCSRCurve, wantMsg: "ECDSA secp256k1"},
		{name: "unknown curve", der: signTBS(t, ecTBS(t, parsed.RawSubject, asn1.ObjectIdentifier{1, 2, 3, 4}, pointBytes), testKey("P-256")), wantErr: ErrCSRCurve, wantMsg: "ECDSA curve 1.2.3.4"},
		{name: "P-224", der: csrDER(t, testKey("P-224"), nil), wantErr: ErrCSRCurve, wantMsg: "ECDSA P-224"},
		{name: "P-521", der: csrDER(t, testKey("P-521"), nil), wantErr: ErrCSRCurve, wantMsg: "ECDSA P-521"},

		{name: "signature bit flipped", der: flipped, wantErr: ErrCSRSignature},
		{name: "signed by another key", der: signTBS(t, tbs, testKey("P-384")), wantErr: ErrCSRSignature, wantMsg: "verification"},
		{name: "signature empty", der: assembleCSR(t, tbs, oidECDSAWithSHA256, nil), wantErr: ErrCSRSignature},
		{name: "SHA-1", der: csrDER(t, testKey("P-256"), &x509.CertificateRequest{SignatureAlgorithm: x509.ECDSAWithSHA1}), wantErr: ErrCSRSignature, wantMsg: "ECDSA-SHA1"},
	}
}

func TestParseCSR(t *testing.T) {
	t.Parallel()
	for _, tt := range csrCases(t) {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			csr, err := ParseCSR(tt.der)
			t.Logf("%d bytes: %v", len(tt.der), err)
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("ParseCSR: %v", err)
				}
				pub, err := x509.ParsePKIXPublicKey(CSRPublicKeyDER(csr))
				if err != nil {
					t.Fatalf("CSRPublicKeyDER does not parse: %v", err)
				}
				if !pub.(*ecdsa.PublicKey).Equal(csr.PublicKey) {
					t.Error("CSRPublicKeyDER is not the CSR's key")
				}
				return
			}
			if csr != nil {
				t.Error("rejected CSR returned")
			}
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("ParseCSR error = %v, want %v", err, tt.wantErr)
			}
			for _, other := range csrErrors {
				if other != tt.wantErr && errors.Is(err, other) {
					t.Errorf("error %v also matches %v", err, other)
				}
			}
			if !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("error %q does not say %q", err, tt.wantMsg)
			}
		})
	}
}

// FuzzParseCSR: ParseCSR never panics, rejects only with one of its
// sentinels, and whatever it accepts is an ECDSA P-256/P-384 CSR whose
// self-signature verifies and which the device CA can issue for.
func FuzzParseCSR(f *testing.F) {
	for _, c := range csrCases(f) {
		f.Add(c.der)
	}
	a, _ := newAuthority(f)
	f.Fuzz(func(t *testing.T, der []byte) {
		csr, err := ParseCSR(der)
		if err != nil {
			if csr != nil {
				t.Fatal("rejected CSR returned")
			}
			n := 0
			for _, sentinel := range csrErrors {
				if errors.Is(err, sentinel) {
					n++
				}
			}
			if n != 1 {
				t.Fatalf("error %q matches %d sentinels, want exactly one", err, n)
			}
			return
		}
		if len(der) > MaxCSRSize {
			t.Fatalf("accepted %d bytes", len(der))
		}
		pub, ok := csr.PublicKey.(*ecdsa.PublicKey)
		if !ok || (pub.Curve != elliptic.P256() && pub.Curve != elliptic.P384()) {
			t.Fatalf("accepted a %T key", csr.PublicKey)
		}
		if err := csr.CheckSignature(); err != nil {
			t.Fatalf("accepted a CSR whose signature does not verify: %v", err)
		}
		if !bytes.Equal(csr.Raw, der) {
			t.Fatal("accepted CSR is not exactly the input")
		}
		cert, err := a.IssueDeviceCert(csr, "fuzz", 0)
		if err != nil {
			t.Fatalf("accepted CSR cannot be issued: %v", err)
		}
		if !pub.Equal(cert.PublicKey) {
			t.Fatal("issued certificate is not for the CSR's key")
		}
	})
}
