package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/clearance/clearance/verifier/storage"
	"github.com/clearance/clearance/verifier/storage/internal/sqlrow"
)

func getSecret(ctx context.Context, q querier, id string) (storage.EnrollSecret, error) {
	s, err := sqlrow.ScanSecret(q.QueryRow(ctx,
		`SELECT `+sqlrow.SecretColumns+` FROM enroll_secrets WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return storage.EnrollSecret{}, fmt.Errorf("enroll secret %q: %w", id, storage.ErrNotFound)
	}
	if err != nil {
		return storage.EnrollSecret{}, fmt.Errorf("reading enroll secret: %w", err)
	}
	return s, nil
}

// useSecret counts one use of a secret inside an enrollment: ErrNotFound if
// unknown, ErrSecretRevoked if revoked.
func useSecret(ctx context.Context, tx pgx.Tx, id string) error {
	res, err := tx.Exec(ctx,
		`UPDATE enroll_secrets SET uses = uses + 1 WHERE id = $1 AND revoked_at = 0`, id)
	if err != nil {
		return fmt.Errorf("counting enroll secret use: %w", err)
	}
	if res.RowsAffected() == 1 {
		return nil
	}
	if _, err := getSecret(ctx, tx, id); err != nil {
		return err
	}
	return fmt.Errorf("enroll secret %q: %w", id, storage.ErrSecretRevoked)
}

// CreateEnrollSecret stores a new secret and its audit event.
func (s *Store) CreateEnrollSecret(ctx context.Context, secret storage.EnrollSecret, audit storage.AuditEvent) error {
	var c sqlrow.TimeCodec
	createdAt := c.NS("created at", secret.CreatedAt)
	revokedAt := c.NS("revoked at", secret.RevokedAt)
	if c.Err != nil {
		return fmt.Errorf("creating enroll secret: %w", c.Err)
	}
	err := s.write(ctx, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO enroll_secrets (`+sqlrow.SecretColumns+`)
			VALUES ($1, $2, $3, $4, $5, $6)`,
			secret.ID, secret.Description, sqlrow.Blob(secret.Hash), createdAt, revokedAt, secret.Uses)
		if isDuplicate(err, "") {
			return fmt.Errorf("enroll secret %q: %w", secret.ID, storage.ErrAlreadyExists)
		}
		if err != nil {
			return fmt.Errorf("inserting enroll secret: %w", err)
		}
		return insertAudit(ctx, tx, audit)
	})
	if err != nil {
		return fmt.Errorf("creating enroll secret: %w", err)
	}
	return nil
}

// GetEnrollSecret returns a secret by ID, or ErrNotFound.
func (s *Store) GetEnrollSecret(ctx context.Context, id string) (storage.EnrollSecret, error) {
	return getSecret(ctx, s.pool, id)
}

// ListEnrollSecrets returns every secret, oldest first (ties by ID).
func (s *Store) ListEnrollSecrets(ctx context.Context) ([]storage.EnrollSecret, error) {
	rows, err := s.pool.Query(ctx,
		`SELECT `+sqlrow.SecretColumns+` FROM enroll_secrets ORDER BY created_at, id`)
	if err != nil {
		return nil, fmt.Errorf("listing enroll secrets: %w", err)
	}
	defer rows.Close()
	secrets := []storage.EnrollSecret{}
	for rows.Next() {
		sec, err := sqlrow.ScanSecret(rows)
		if err != nil {
			return nil, fmt.Errorf("listing enroll secrets: %w", err)
		}
		secrets = append(secrets, sec)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing enroll secrets: %w", err)
	}
	return secrets, nil
}

// RevokeEnrollSecret marks a secret revoked. A secret already revoked keeps
// its first revocation time; the audit event is appended either way.
func (s *Store) RevokeEnrollSecret(ctx context.Context, id string, at time.Time, audit storage.AuditEvent) (storage.EnrollSecret, error) {
	// A zero time is how "not revoked" is stored.
	if at.IsZero() {
		return storage.EnrollSecret{}, errors.New("revoking enroll secret: zero revocation time")
	}
	var c sqlrow.TimeCodec
	revokedAt := c.NS("revocation time", at)
	if c.Err != nil {
		return storage.EnrollSecret{}, fmt.Errorf("revoking enroll secret: %w", c.Err)
	}
	var out storage.EnrollSecret
	err := s.write(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx,
			`UPDATE enroll_secrets SET revoked_at = $1 WHERE id = $2 AND revoked_at = 0`,
			revokedAt, id); err != nil {
			return fmt.Errorf("updating enroll secret: %w", err)
		}
		var err error
		if out, err = getSecret(ctx, tx, id); err != nil {
			return err
		}
		return insertAudit(ctx, tx, audit)
	})
	if err != nil {
		return storage.EnrollSecret{}, fmt.Errorf("revoking enroll secret: %w", err)
	}
	return out, nil
}
