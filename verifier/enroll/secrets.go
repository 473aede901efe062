package enroll

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/clearance/clearance/verifier/storage"
)

// An enroll secret reads "<id>.<value>": the id (16 hex characters) finds the
// record without revealing anything, and the whole string is compared by its
// SHA-256 in constant time. Only the hash is stored.

// MaxSecretDescription bounds an enroll secret's description.
const MaxSecretDescription = 200

// ErrSecretInvalid means the presented secret is unknown or wrong. The two are
// deliberately indistinguishable to the caller.
var ErrSecretInvalid = errors.New("enroll secret is not valid")

// ErrSecretRevoked means the secret was valid but has been revoked.
var ErrSecretRevoked = errors.New("enroll secret has been revoked")

// CreateSecret makes and stores a new enroll secret and returns its record
// and the secret string, which is not kept anywhere.
func CreateSecret(ctx context.Context, store storage.SecretStore, description, actor string, now time.Time) (storage.EnrollSecret, string, error) {
	if len(description) > MaxSecretDescription {
		return storage.EnrollSecret{}, "", fmt.Errorf("description is %d characters; the limit is %d", len(description), MaxSecretDescription)
	}
	var idBytes [8]byte
	var value [32]byte
	if _, err := rand.Read(idBytes[:]); err != nil {
		return storage.EnrollSecret{}, "", err
	}
	if _, err := rand.Read(value[:]); err != nil {
		return storage.EnrollSecret{}, "", err
	}
	id := hex.EncodeToString(idBytes[:])
	secret := id + "." + base64.RawURLEncoding.EncodeToString(value[:])
	sum := sha256.Sum256([]byte(secret))
	rec := storage.EnrollSecret{ID: id, Description: description, Hash: sum[:], CreatedAt: now}
	err := store.CreateEnrollSecret(ctx, rec, storage.AuditEvent{
		At: now, Actor: actor, Action: "secret.create", Detail: "enroll secret " + id + " created",
	})
	if err != nil {
		return storage.EnrollSecret{}, "", fmt.Errorf("storing enroll secret: %w", err)
	}
	return rec, secret, nil
}

// CheckSecret returns the record of a presented secret if it is valid and not
// revoked.
func CheckSecret(ctx context.Context, store storage.SecretStore, presented string) (storage.EnrollSecret, error) {
	id, _, ok := strings.Cut(presented, ".")
	if !ok || len(id) != 16 || len(presented) > 128 {
		return storage.EnrollSecret{}, ErrSecretInvalid
	}
	rec, err := store.GetEnrollSecret(ctx, id)
	if errors.Is(err, storage.ErrNotFound) {
		return storage.EnrollSecret{}, ErrSecretInvalid
	}
	if err != nil {
		return storage.EnrollSecret{}, fmt.Errorf("looking up enroll secret: %w", err)
	}
	sum := sha256.Sum256([]byte(presented))
	if subtle.ConstantTimeCompare(sum[:], rec.Hash) != 1 {
		return storage.EnrollSecret{}, ErrSecretInvalid
	}
	if rec.Revoked() {
		return storage.EnrollSecret{}, ErrSecretRevoked
	}
	return rec, nil
}
