// Package keyrotation signs and verifies the proof that carries a device
// from one key to the next: the device's current key signs the exact bytes
// of the certificate request for its new key, so the verifier re-enrolls
// the device with the new key on the old key's word, without the security
// team's approval. Both sides use it.
//
// The signature is ECDSA (ASN.1 DER) over H(Context || CSR DER), where H is
// SHA-256 for P-256 keys and SHA-384 for P-384 keys. Context keeps it apart
// from every other thing the device key signs (posture reports, presence
// statements, CSRs, TLS handshakes).
package keyrotation

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"errors"
	"fmt"
	"hash"
)

// Context is prefixed to the new key's CSR before hashing.
const Context = "clearance key rotation v1\n"

// MaxProofSize bounds a proof: an ECDSA P-384 signature is at most 104 bytes.
const MaxProofSize = 256

// Errors from Verify; match with errors.Is.
var (
	ErrBadProof = errors.New("key rotation proof does not verify with the device's current key")
	ErrKeyType  = errors.New("unsupported device key type")
)

// Sign returns current's proof for the new key's CSR (DER, exactly as sent).
func Sign(current crypto.Signer, csrDER []byte) ([]byte, error) {
	h, opt, err := hashFor(current.Public())
	if err != nil {
		return nil, err
	}
	sig, err := current.Sign(rand.Reader, digest(h, csrDER), opt)
	if err != nil {
		return nil, fmt.Errorf("signing key rotation proof: %w", err)
	}
	return sig, nil
}

// Verify checks proof over csrDER against currentPKIX, the device's
// enrolled key (PKIX DER).
func Verify(currentPKIX, csrDER, proof []byte) error {
	if len(proof) == 0 || len(proof) > MaxProofSize {
		return fmt.Errorf("%w: %d bytes", ErrBadProof, len(proof))
	}
	pub, err := x509.ParsePKIXPublicKey(currentPKIX)
	if err != nil {
		return fmt.Errorf("%w: enrolled key unreadable: %v", ErrKeyType, err)
	}
	h, _, err := hashFor(pub)
	if err != nil {
		return err
	}
	if !ecdsa.VerifyASN1(pub.(*ecdsa.PublicKey), digest(h, csrDER), proof) {
		return ErrBadProof
	}
	return nil
}

func hashFor(pub crypto.PublicKey) (func() hash.Hash, crypto.Hash, error) {
	k, ok := pub.(*ecdsa.PublicKey)
	if !ok {
		return nil, 0, fmt.Errorf("%w: %T", ErrKeyType, pub)
	}
	switch k.Curve {
	case elliptic.P256():
		return sha256.New, crypto.SHA256, nil
	case elliptic.P384():
		return sha512.New384, crypto.SHA384, nil
	default:
		return nil, 0, fmt.Errorf("%w: ECDSA %s", ErrKeyType, k.Curve.Params().Name)
	}
}

func digest(h func() hash.Hash, csrDER []byte) []byte {
	d := h()
	d.Write([]byte(Context))
	d.Write(csrDER)
	return d.Sum(nil)
}
