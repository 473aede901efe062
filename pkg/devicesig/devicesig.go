// Package devicesig signs and verifies messages with a device key (ECDSA
// P-256, or P-384) under a context string, the one rule behind the agent's
// signed reports, its proofs of presence and its key-rotation proofs. The
// context is hashed before the message, so a signature made for one purpose
// never verifies for another.
package devicesig

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"errors"
	"fmt"
	"hash"
)

// ErrKeyType is returned for a key that is not ECDSA P-256 or P-384.
var ErrKeyType = errors.New("unsupported device key type")

// Sign signs context followed by msg with signer; the signature is ASN.1
// DER, with SHA-256 for P-256 and SHA-384 for P-384.
func Sign(signer crypto.Signer, context string, msg []byte) ([]byte, error) {
	h, opts, err := hashFor(signer.Public())
	if err != nil {
		return nil, err
	}
	return signer.Sign(rand.Reader, digest(h, context, msg), opts)
}

// Verify reports whether sig is pub's signature over context followed by
// msg. The error is for a key of the wrong type only.
func Verify(pub crypto.PublicKey, context string, msg, sig []byte) (bool, error) {
	h, _, err := hashFor(pub)
	if err != nil {
		return false, err
	}
	return ecdsa.VerifyASN1(pub.(*ecdsa.PublicKey), digest(h, context, msg), sig), nil
}

func hashFor(pub crypto.PublicKey) (func() hash.Hash, crypto.Hash, error) {
	k, ok := pub.(*ecdsa.PublicKey)
	if !ok || k == nil {
		return nil, 0, fmt.Errorf("%w: %T", ErrKeyType, pub)
	}
	switch k.Curve {
	case elliptic.P256():
		return sha256.New, crypto.SHA256, nil
	case elliptic.P384():
		return sha512.New384, crypto.SHA384, nil
	default:
		name := "unknown curve"
		if k.Curve != nil {
			name = k.Curve.Params().Name
		}
		return nil, 0, fmt.Errorf("%w: ECDSA %s", ErrKeyType, name)
	}
}

func digest(h func() hash.Hash, context string, msg []byte) []byte {
	d := h()
	d.Write([]byte(context))
	d.Write(msg)
	return d.Sum(nil)
}
