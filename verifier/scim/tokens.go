package scim

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

// A SCIM token reads "scim_<id>.<value>": the id (16 hex characters) finds
// the record without revealing anything, and the whole string is compared
// by its SHA-256 in constant time. Only the hash is stored; several tokens
// may be valid at once, so a rotation needs no downtime.

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
	var id [8]byte
	var value [32]byte
	if _, err := rand.Read(id[:]); err != nil {
		return storage.SCIMToken{}, "", err
	}
	if _, err := rand.Read(value[:]); err != nil {
		return storage.SCIMToken{}, "", err
	}
	rec := storage.SCIMToken{ID: hex.EncodeToString(id[:]), Description: description, CreatedAt: now}
	token := tokenPrefix + rec.ID + "." + base64.RawURLEncoding.EncodeToString(value[:])
	sum := sha256.Sum256([]byte(token))
	rec.Hash = sum[:]
	err := store.CreateSCIMToken(ctx, rec, storage.AuditEvent{At: now, Actor: actor, Action: "scim_token.create",
		Detail: "scim token " + rec.ID + " created"})
	if err != nil {
		return storage.SCIMToken{}, "", fmt.Errorf("storing scim token: %w", err)
	}
	return rec, token, nil
}

// CheckToken returns the record of a presented token if it is valid and
// not revoked; ErrBadToken otherwise. Other errors are storage failures.
func CheckToken(ctx context.Context, store storage.PeopleStore, presented string) (storage.SCIMToken, error) {
	rest, ok := strings.CutPrefix(presented, tokenPrefix)
	if !ok || len(presented) > 128 {
		return storage.SCIMToken{}, ErrBadToken
	}
	id, _, ok := strings.Cut(rest, ".")
	if !ok || len(id) != 16 || strings.Trim(id, "0123456789abcdef") != "" {
		// Ids are hex: anything else is no token, and never reaches the
		// database (PostgreSQL refuses bytes that are not UTF-8 as an error).
		return storage.SCIMToken{}, ErrBadToken
	}
	rec, err := store.GetSCIMToken(ctx, id)
	if errors.Is(err, storage.ErrNotFound) {
		return storage.SCIMToken{}, ErrBadToken
	}
	if err != nil {
		return storage.SCIMToken{}, err
	}
	sum := sha256.Sum256([]byte(presented))
	if subtle.ConstantTimeCompare(sum[:], rec.Hash) != 1 || rec.Revoked() {
		return storage.SCIMToken{}, ErrBadToken
	}
	return rec, nil
}
