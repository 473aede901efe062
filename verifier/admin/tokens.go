package admin

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/clearance/clearance/verifier/idsecret"
	"github.com/clearance/clearance/verifier/storage"
)

// A named admin token reads "adm_<id>.<value>" (see idsecret): one per
// person or system, with a role, so that the audit log names who made each
// change and one person's token is revoked without touching anyone else's.
// The data dir's admin.token stays, for the host's own commands.

// NamedTokenPrefix marks named admin tokens, so that one pasted in the
// wrong place is recognised (and secret scanners can find them).
const NamedTokenPrefix = "adm_"

// MaxTokenName bounds a named token's name.
const MaxTokenName = 100

// ErrBadToken: the presented token is unknown, wrong, revoked or expired;
// the cases are deliberately indistinguishable to the caller (the server
// log says which).
var ErrBadToken = errors.New("admin token is not valid")

// CheckTokenName refuses a name the audit log could not show plainly: it
// must be 1 to MaxTokenName characters of ASCII letters, digits and
// . _ @ + - (an e-mail address or a system's name), so that no two names
// look alike and none carries a control or invisible character.
func CheckTokenName(name string) error {
	if name == "" {
		return errors.New("the name is empty; give the person's e-mail address or the system's name")
	}
	if len(name) > MaxTokenName {
		return fmt.Errorf("the name is %d characters; the limit is %d", len(name), MaxTokenName)
	}
	for i, c := range name {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '@' || c == '+' || c == '-') {
			return fmt.Errorf("the name %+q has %+q at byte %d; use ASCII letters, digits and . _ @ + -", name, c, i)
		}
	}
	return nil
}

// CheckRole refuses a role other than storage.AdminRoleRead and
// storage.AdminRoleAdmin.
func CheckRole(role string) error {
	if role != storage.AdminRoleRead && role != storage.AdminRoleAdmin {
		return fmt.Errorf("role %q is neither %q (list and read, change nothing) nor %q (every admin call)", role, storage.AdminRoleRead, storage.AdminRoleAdmin)
	}
	return nil
}

// CreateNamedToken makes and stores a named token for name with role,
// expiring at expires (zero: never), and returns its record and the token,
// which is kept nowhere.
func CreateNamedToken(ctx context.Context, store storage.AdminTokenStore, name, role string, expires time.Time, actor string, now time.Time) (storage.AdminToken, string, error) {
	if err := CheckTokenName(name); err != nil {
		return storage.AdminToken{}, "", err
	}
	if err := CheckRole(role); err != nil {
		return storage.AdminToken{}, "", err
	}
	if !expires.IsZero() && !expires.After(now) {
		return storage.AdminToken{}, "", fmt.Errorf("the expiry %s is not in the future", expires.UTC().Format(time.RFC3339))
	}
	id, token, hash, err := idsecret.New(NamedTokenPrefix)
	if err != nil {
		return storage.AdminToken{}, "", err
	}
	rec := storage.AdminToken{ID: id, Name: name, Role: role, Hash: hash, CreatedAt: now, ExpiresAt: expires}
	detail := fmt.Sprintf("admin token %s created for %s, role %s", id, name, role)
	if !expires.IsZero() {
		detail += ", expires " + expires.UTC().Format(time.RFC3339)
	}
	err = store.CreateAdminToken(ctx, rec, storage.AuditEvent{At: now, Actor: actor, Action: "admin_token.create", Detail: detail})
	if errors.Is(err, storage.ErrAlreadyExists) {
		return storage.AdminToken{}, "", fmt.Errorf("%s already has an admin token that is not revoked (see 'admin-token list'; revoke it first to replace it)", name)
	}
	if err != nil {
		return storage.AdminToken{}, "", fmt.Errorf("storing admin token: %w", err)
	}
	return rec, token, nil
}

// tokenState says why a stored token does not work, or "" when it does.
func tokenState(rec storage.AdminToken, now time.Time) string {
	switch {
	case rec.Revoked():
		return "revoked"
	case rec.Expired(now):
		return "expired"
	}
	return ""
}

// CheckNamedToken returns the record of a presented named token if it is
// valid, not revoked and not expired at now; ErrBadToken (wrapped with why,
// for the log) otherwise, with the record when the token is a stored one
// that is revoked or expired (its holder's, not a guess). Other errors are
// storage failures.
func CheckNamedToken(ctx context.Context, store storage.AdminTokenStore, presented string, now time.Time) (storage.AdminToken, error) {
	id, ok := idsecret.ID(NamedTokenPrefix, presented)
	if !ok {
		return storage.AdminToken{}, fmt.Errorf("%w: not a named admin token", ErrBadToken)
	}
	rec, err := store.GetAdminToken(ctx, id)
	if errors.Is(err, storage.ErrNotFound) {
		return storage.AdminToken{}, fmt.Errorf("%w: no token %s", ErrBadToken, id)
	}
	if err != nil {
		return storage.AdminToken{}, err
	}
	if !idsecret.Matches(presented, rec.Hash) {
		// Anyone who saw an id (the audit log shows them) can send it: no
		// record, so it is logged with the other made-up tokens.
		return storage.AdminToken{}, fmt.Errorf("%w: token %s (%s) presented with a wrong value", ErrBadToken, id, rec.Name)
	}
	if st := tokenState(rec, now); st != "" {
		return rec, fmt.Errorf("%w: token %s (%s) is %s", ErrBadToken, id, rec.Name, st)
	}
	return rec, nil
}
