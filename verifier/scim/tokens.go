package scim

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/clearance/clearance/verifier/idsecret"
	"github.com/clearance/clearance/verifier/storage"
)

// A SCIM token reads "scim_<id>.<value>" (see idsecret). Several tokens may
// be valid at once, so a rotation needs no downtime.

// tokenPrefix marks SCIM tokens, so that one pasted in the wrong place is
// recognised (and secret scanners can find them).
const tokenPrefix = "scim_"

// MaxTokenDescription bounds a token's description.
const MaxTokenDescription = 200

// ErrBadToken: the presented token is missing, unknown, wrong or revoked;
// the cases are deliberately indistinguishable to the caller.
var ErrBadToken = errors.New("scim token is not valid")

// CreateToken makes and stores a new SCIM token and returns its record and
// the token, which is kept nowhere.
func CreateToken(ctx context.Context, store storage.PeopleStore, description, actor string, now time.Time) (storage.SCIMToken, string, error) {
	if len(description) > MaxTokenDescription {
		return storage.SCIMToken{}, "", fmt.Errorf("description is %d characters; the limit is %d", len(description), MaxTokenDescription)
	}
	id, token, hash, err := idsecret.New(tokenPrefix)
	if err != nil {
		return storage.SCIMToken{}, "", err
	}
	rec := storage.SCIMToken{ID: id, Description: description, Hash: hash, CreatedAt: now}
	err = store.CreateSCIMToken(ctx, rec, storage.AuditEvent{At: now, Actor: actor, Action: "scim_token.create",
		Detail: "scim token " + rec.ID + " created"})
	if err != nil {
		return storage.SCIMToken{}, "", fmt.Errorf("storing scim token: %w", err)
	}
	return rec, token, nil
}

// CheckToken returns the record of a presented token if it is valid and
// not revoked; ErrBadToken otherwise. Other errors are storage failures.
func CheckToken(ctx context.Context, store storage.PeopleStore, presented string) (storage.SCIMToken, error) {
	id, ok := idsecret.ID(tokenPrefix, presented)
	if !ok {
		return storage.SCIMToken{}, ErrBadToken
	}
	rec, err := store.GetSCIMToken(ctx, id)
	if errors.Is(err, storage.ErrNotFound) {
		return storage.SCIMToken{}, ErrBadToken
	}
	if err != nil {
		return storage.SCIMToken{}, err
	}
	if !idsecret.Matches(presented, rec.Hash) || rec.Revoked() {
		return storage.SCIMToken{}, ErrBadToken
	}
	return rec, nil
}
