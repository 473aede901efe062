// Package idsecret makes and checks the verifier's bearer secrets that
// carry their own record id (enroll secrets, SCIM tokens). A secret reads
// "<prefix><id>.<value>": the id (16 hex characters) finds the stored
// record without revealing anything, the value is 32 random bytes, and the
// whole string is compared by its SHA-256 in constant time. Only the hash
// is stored.
package idsecret

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"strings"
)

// MaxLen bounds a presented secret: longer is no secret of ours.
const MaxLen = 128

// idLen is an id's length in hex characters.
const idLen = 16

// New makes a secret with prefix: its record id, the secret itself (shown
// once, kept nowhere) and the hash to store.
func New(prefix string) (id, secret string, hash []byte, err error) {
	var idBytes [idLen / 2]byte
	var value [32]byte
	if _, err := rand.Read(idBytes[:]); err != nil {
		return "", "", nil, err
	}
	if _, err := rand.Read(value[:]); err != nil {
		return "", "", nil, err
	}
	id = hex.EncodeToString(idBytes[:])
	secret = prefix + id + "." + base64.RawURLEncoding.EncodeToString(value[:])
	return id, secret, Hash(secret), nil
}

// Hash is what is stored of a secret.
func Hash(secret string) []byte {
	sum := sha256.Sum256([]byte(secret))
	return sum[:]
}

// ID returns the record id a presented secret names, or false when it is
// no secret of ours: without prefix, too long, or an id that is not 16
// lower-case hex characters. Such a string never reaches a lookup (a
// database may refuse its bytes as an error).
func ID(prefix, presented string) (string, bool) {
	rest, ok := strings.CutPrefix(presented, prefix)
	if !ok || len(presented) > MaxLen {
		return "", false
	}
	id, _, ok := strings.Cut(rest, ".")
	if !ok || len(id) != idLen || strings.Trim(id, "0123456789abcdef") != "" {
		return "", false
	}
	return id, true
}

// Matches reports, in constant time, whether presented is the secret whose
// stored hash is hash.
func Matches(presented string, hash []byte) bool {
	return subtle.ConstantTimeCompare(Hash(presented), hash) == 1
}
