package enroll

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/clearance/clearance/verifier/idsecret"
	"github.com/clearance/clearance/verifier/storage"
)

// An enroll secret reads "<id>.<value>" (see idsecret).

// MaxSecretDescription bounds an enroll secret's description.
const MaxSecretDescription = 200

// ErrSecretInvalid means the presented secret is unknown or wrong. The two are
// deliberately indistinguishable to the caller.
var ErrSecretInvalid = errors.New("enroll secret is not valid")

// ErrSecretRevoked means the secret was valid but has been revoked.
var ErrSecretRevoked = errors.New("enroll secret has been revoked")

// ErrSecretExpired means the secret was valid but has expired.
var ErrSecretExpired = errors.New("enroll secret has expired")

// ErrSecretExhausted means the secret has made as many enrollments as it
// may.
var ErrSecretExhausted = errors.New("enroll secret has been used up")

// Bounds on a secret's scope.
const (
	// MaxSecretLifetime bounds --expires: a secret that outlives a year
	// is one nobody remembers to rotate.
	MaxSecretLifetime = 365 * 24 * time.Hour
	// MaxSecretUses bounds --max-uses.
	MaxSecretUses = 1_000_000
)

// SecretScope limits what a new secret may do; the zero value: no expiry,
// no use limit.
type SecretScope struct {
	// ExpiresIn, when positive, is how long from now the secret enrolls.
	ExpiresIn time.Duration
	// MaxUses, when positive, is how many enrollments it may make.
	MaxUses int
}

// Check reports what is wrong with the scope, in words for the person who
// asked for it.
func (sc SecretScope) Check() error {
	switch {
	case sc.ExpiresIn < 0:
		return fmt.Errorf("expiry %s is negative", sc.ExpiresIn)
	case sc.ExpiresIn > 0 && sc.ExpiresIn < time.Minute:
		return fmt.Errorf("expiry %s is less than a minute", sc.ExpiresIn)
	case sc.ExpiresIn > MaxSecretLifetime:
		return fmt.Errorf("expiry %s is more than %s", sc.ExpiresIn, MaxSecretLifetime)
	case sc.MaxUses < 0:
		return fmt.Errorf("use limit %d is negative", sc.MaxUses)
	case sc.MaxUses > MaxSecretUses:
		return fmt.Errorf("use limit %d is more than %d", sc.MaxUses, MaxSecretUses)
	}
	return nil
}

// CreateSecret makes and stores a new enroll secret and returns its record
// and the secret string, which is not kept anywhere.
func CreateSecret(ctx context.Context, store storage.SecretStore, description string, scope SecretScope, actor string, now time.Time) (storage.EnrollSecret, string, error) {
	if len(description) > MaxSecretDescription {
		return storage.EnrollSecret{}, "", fmt.Errorf("description is %d characters; the limit is %d", len(description), MaxSecretDescription)
	}
	if err := scope.Check(); err != nil {
		return storage.EnrollSecret{}, "", err
	}
	id, secret, hash, err := idsecret.New("")
	if err != nil {
		return storage.EnrollSecret{}, "", err
	}
	rec := storage.EnrollSecret{ID: id, Description: description, Hash: hash, CreatedAt: now, MaxUses: scope.MaxUses}
	detail := "enroll secret " + id + " created"
	if scope.ExpiresIn > 0 {
		rec.ExpiresAt = now.Add(scope.ExpiresIn)
		detail += ", expires " + rec.ExpiresAt.UTC().Format(time.RFC3339)
	}
	if scope.MaxUses > 0 {
		detail += fmt.Sprintf(", at most %d uses", scope.MaxUses)
	}
	err = store.CreateEnrollSecret(ctx, rec, storage.AuditEvent{At: now, Actor: actor, Action: "secret.create", Detail: detail})
	if err != nil {
		return storage.EnrollSecret{}, "", fmt.Errorf("storing enroll secret: %w", err)
	}
	return rec, secret, nil
}

// CheckSecret returns the record of a presented secret if it is valid at
// now: not revoked, not expired, not used up. Storage checks them again
// when the enrollment commits. A secret that is right but expired or used
// up is returned with ErrSecretExpired or ErrSecretExhausted: the holder of
// a device's current key may still re-enroll with it.
func CheckSecret(ctx context.Context, store storage.SecretStore, presented string, now time.Time) (storage.EnrollSecret, error) {
	id, ok := idsecret.ID("", presented)
	if !ok {
		return storage.EnrollSecret{}, ErrSecretInvalid
	}
	rec, err := store.GetEnrollSecret(ctx, id)
	if errors.Is(err, storage.ErrNotFound) {
		return storage.EnrollSecret{}, ErrSecretInvalid
	}
	if err != nil {
		return storage.EnrollSecret{}, fmt.Errorf("looking up enroll secret: %w", err)
	}
	if !idsecret.Matches(presented, rec.Hash) {
		return storage.EnrollSecret{}, ErrSecretInvalid
	}
	switch {
	case rec.Revoked():
		return storage.EnrollSecret{}, ErrSecretRevoked
	case rec.Expired(now):
		return rec, ErrSecretExpired
	case rec.Exhausted():
		return rec, ErrSecretExhausted
	}
	return rec, nil
}
