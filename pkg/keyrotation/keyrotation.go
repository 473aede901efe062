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
	"crypto/x509"
	"errors"
	"fmt"

	"github.com/clearance/clearance/pkg/devicesig"
)

// Context is prefixed to the new key's CSR before hashing.
const Context = "clearance key rotation v1\n"

// MaxProofSize bounds a proof: an ECDSA P-384 signature is at most 104 bytes.
const MaxProofSize = 256

// Errors from Verify; match with errors.Is.
var (
	ErrBadProof = errors.New("key rotation proof does not verify with the device's current key")
	ErrKeyType  = devicesig.ErrKeyType
)

// Sign returns current's proof for the new key's CSR (DER, exactly as sent).
func Sign(current crypto.Signer, csrDER []byte) ([]byte, error) {
	sig, err := devicesig.Sign(current, Context, csrDER)
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
	if ok, err := devicesig.Verify(pub, Context, csrDER, proof); err != nil {
		return err
	} else if !ok {
		return ErrBadProof
	}
	return nil
}
