package sqlstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/clearance/clearance/verifier/storage"
)

// secretColumns are the enroll_secrets table's columns in scanSecret's order.
const secretColumns = `id, description, hash, created_at, revoked_at, uses, expires_at, max_uses`

func scanSecret(sc scanner) (storage.EnrollSecret, error) {
	var (
		s                               storage.EnrollSecret
		createdAt, revokedAt, expiresAt int64
	)
	if err := sc.Scan(&s.ID, &s.Description, &s.Hash, &createdAt, &revokedAt, &s.Uses, &expiresAt, &s.MaxUses); err != nil {
		return storage.EnrollSecret{}, err
	}
	s.CreatedAt = fromNS(createdAt)
	s.RevokedAt = fromNS(revokedAt)
	s.ExpiresAt = fromNS(expiresAt)
	return s, nil
}

func getSecret(ctx context.Context, q conn, id string) (storage.EnrollSecret, error) {
	return one(ctx, q, scanSecret, "enroll secret", fmt.Sprintf("enroll secret %q", id),
		hotRead(`SELECT `+secretColumns+` FROM enroll_secrets WHERE id = $1`), id)
}

// useSecret counts one use of a secret by an enrollment at time at:
// ErrNotFound if unknown, ErrSecretRevoked if revoked, ErrSecretExpired if
// it expired by at, ErrSecretExhausted if used up. The conditional UPDATE
// is the check: a concurrent revocation or last use either commits first
// (and the UPDATE finds nothing) or waits for the enrollment.
func useSecret(ctx context.Context, q conn, id string, at int64) error {
	sec, used, err := updateSecret(ctx, q, "counting enroll secret use", `UPDATE enroll_secrets SET uses = uses + 1
		WHERE id = $1 AND revoked_at = 0 AND (expires_at = 0 OR expires_at > $2)
		AND (max_uses = 0 OR uses < max_uses)`, id, at)
	if used || err != nil {
		return err
	}
	switch {
	case sec.Revoked():
		return fmt.Errorf("enroll secret %q: %w", id, storage.ErrSecretRevoked)
	case sec.Expired(fromNS(at)):
		return fmt.Errorf("enroll secret %q: %w", id, storage.ErrSecretExpired)
	default:
		return fmt.Errorf("enroll secret %q: %w", id, storage.ErrSecretExhausted)
	}
}

// approvalUse counts one use of a secret by an approval: only revocation
// stops it. The security team's decision stands in for the secret's expiry
// and limit, which bound what the secret does on its own.
func approvalUse(ctx context.Context, q conn, id string) error {
	return unrevoked(ctx, q, "counting enroll secret use", `UPDATE enroll_secrets SET uses = uses + 1 WHERE id = $1 AND revoked_at = 0`, id)
}

// holdSecret checks a secret that an enrollment of the key a device already
// holds presents: only revocation stops it, and no use is spent (the key
// holder proves nothing new, and the secret's use was counted when the key
// was enrolled or approved). The no-op UPDATE takes the row as useSecret
// does, so a concurrent revocation is ordered before or after it.
func holdSecret(ctx context.Context, q conn, id string) error {
	return unrevoked(ctx, q, "checking enroll secret", `UPDATE enroll_secrets SET uses = uses WHERE id = $1 AND revoked_at = 0`, id)
}

// unrevoked runs query, a conditional UPDATE of the secret id ($1) that
// matches it only while it is unrevoked: ErrNotFound if it is unknown,
// ErrSecretRevoked if it matched nothing.
func unrevoked(ctx context.Context, q conn, doing, query, id string) error {
	_, used, err := updateSecret(ctx, q, doing, query, id)
	if used || err != nil {
		return err
	}
	return fmt.Errorf("enroll secret %q: %w", id, storage.ErrSecretRevoked)
}

// updateSecret runs query, a conditional UPDATE of the secret id ($1) that
// matches it only while it is usable, and reports whether it matched. When
// it did not, it returns the secret as it is, for the caller to say why,
// or ErrNotFound.
func updateSecret(ctx context.Context, q conn, doing, query, id string, args ...any) (storage.EnrollSecret, bool, error) {
	res, err := q.exec(ctx, query, append([]any{id}, args...)...)
	if err != nil {
		return storage.EnrollSecret{}, false, fmt.Errorf("%s: %w", doing, err)
	}
	if err := oneRow(res, errUnusable); !errors.Is(err, errUnusable) {
		return storage.EnrollSecret{}, err == nil, err
	}
	sec, err := getSecret(ctx, q, id)
	return sec, false, err
}

// errUnusable: the conditional UPDATE of a secret found no usable row.
var errUnusable = errors.New("enroll secret not usable")

// CreateEnrollSecret stores a new secret and its audit event.
func (s *Store) CreateEnrollSecret(ctx context.Context, secret storage.EnrollSecret, audit storage.AuditEvent) error {
	var c timeCodec
	createdAt := c.ns("created at", secret.CreatedAt)
	revokedAt := c.ns("revoked at", secret.RevokedAt)
	expiresAt := c.ns("expires at", secret.ExpiresAt)
	if c.err != nil {
		return fmt.Errorf("creating enroll secret: %w", c.err)
	}
	if secret.MaxUses < 0 || secret.Uses < 0 {
		return fmt.Errorf("creating enroll secret: negative uses (%d) or use limit (%d)", secret.Uses, secret.MaxUses)
	}
	err := s.insertAudited(ctx, audit, "enroll secret", secret.ID,
		`INSERT INTO enroll_secrets (`+secretColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
		secret.ID, secret.Description, blob(secret.Hash), createdAt, revokedAt, secret.Uses, expiresAt, secret.MaxUses)
	if err != nil {
		return fmt.Errorf("creating enroll secret: %w", err)
	}
	return nil
}

// GetEnrollSecret returns a secret by ID, or ErrNotFound.
func (s *Store) GetEnrollSecret(ctx context.Context, id string) (storage.EnrollSecret, error) {
	return getSecret(ctx, s.reader(), id)
}

// ListEnrollSecrets returns every secret, oldest first (ties by ID).
func (s *Store) ListEnrollSecrets(ctx context.Context) ([]storage.EnrollSecret, error) {
	secrets, err := list(ctx, s.reader(), scanSecret,
		`SELECT `+secretColumns+` FROM enroll_secrets ORDER BY created_at, id`)
	if err != nil {
		return nil, fmt.Errorf("listing enroll secrets: %w", err)
	}
	return secrets, nil
}

// RevokeEnrollSecret marks a secret revoked. A secret already revoked keeps
// its first revocation time; the audit event is appended either way.
func (s *Store) RevokeEnrollSecret(ctx context.Context, id string, at time.Time, audit storage.AuditEvent) (storage.EnrollSecret, error) {
	return revokeOnce(ctx, s, audit, "enroll secret", "enroll_secrets", id, at, getSecret)
}
