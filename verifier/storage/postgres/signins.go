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

// UseRequestID records an AuthnRequest's issuer and ID, or returns
// ErrAlreadyExists if they are recorded already. The primary key is the
// arbiter between replicas: a concurrent insert of the same pair waits for
// the first to commit and then inserts nothing.
func (s *Store) UseRequestID(ctx context.Context, issuer, id string, expiresAt time.Time) error {
	if err := sqlrow.CheckRequestID(issuer, id); err != nil {
		return fmt.Errorf("recording request ID: %w", err)
	}
	var c sqlrow.TimeCodec
	exp := c.NS("expires at", expiresAt)
	if c.Err != nil {
		return fmt.Errorf("recording request ID: %w", c.Err)
	}
	tag, err := s.pool.Exec(ctx, `INSERT INTO saml_request_ids (issuer, id, expires_at)
		VALUES ($1, $2, $3) ON CONFLICT (issuer, id) DO NOTHING`, issuer, id, exp)
	if err != nil {
		return fmt.Errorf("recording request ID: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("recording request ID: %w", storage.ErrAlreadyExists)
	}
	return nil
}

// DeleteExpiredRequestIDs removes request IDs whose expiry is strictly
// before the given time.
func (s *Store) DeleteExpiredRequestIDs(ctx context.Context, before time.Time) (int, error) {
	n, err := s.deleteBefore(ctx, `DELETE FROM saml_request_ids WHERE expires_at < $1`, before)
	if err != nil {
		return 0, fmt.Errorf("deleting expired request IDs: %w", err)
	}
	return n, nil
}

// CreatePendingSignIn stores p; ErrAlreadyExists if its token hash is taken.
func (s *Store) CreatePendingSignIn(ctx context.Context, p storage.PendingSignIn) error {
	args, err := sqlrow.PendingSignInArgs(p)
	if err != nil {
		return fmt.Errorf("creating pending sign-in: %w", err)
	}
	tag, err := s.pool.Exec(ctx, `INSERT INTO pending_sign_ins (`+sqlrow.PendingSignInColumns+`)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (token_hash) DO NOTHING`, args...)
	if err != nil {
		return fmt.Errorf("creating pending sign-in: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("creating pending sign-in: %w", storage.ErrAlreadyExists)
	}
	return nil
}

// GetPendingSignIn returns the pending sign-in with this token hash, expired
// or not, or ErrNotFound.
func (s *Store) GetPendingSignIn(ctx context.Context, tokenHash []byte) (storage.PendingSignIn, error) {
	p, err := sqlrow.ScanPendingSignIn(s.pool.QueryRow(ctx,
		`SELECT `+sqlrow.PendingSignInColumns+` FROM pending_sign_ins WHERE token_hash = $1`,
		sqlrow.Blob(tokenHash)))
	if errors.Is(err, pgx.ErrNoRows) {
		return storage.PendingSignIn{}, fmt.Errorf("pending sign-in: %w", storage.ErrNotFound)
	}
	if err != nil {
		return storage.PendingSignIn{}, fmt.Errorf("reading pending sign-in: %w", err)
	}
	return p, nil
}

// DeletePendingSignIn removes the pending sign-in; ErrNotFound if it is not
// there. A concurrent delete of the same row waits for the first to commit
// and then finds nothing, so only one succeeds.
func (s *Store) DeletePendingSignIn(ctx context.Context, tokenHash []byte) error {
	tag, err := s.pool.Exec(ctx, `DELETE FROM pending_sign_ins WHERE token_hash = $1`,
		sqlrow.Blob(tokenHash))
	if err != nil {
		return fmt.Errorf("deleting pending sign-in: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("deleting pending sign-in: %w", storage.ErrNotFound)
	}
	return nil
}

// DeleteExpiredPendingSignIns removes pending sign-ins whose expiry is
// strictly before the given time.
func (s *Store) DeleteExpiredPendingSignIns(ctx context.Context, before time.Time) (int, error) {
	n, err := s.deleteBefore(ctx, `DELETE FROM pending_sign_ins WHERE expires_at < $1`, before)
	if err != nil {
		return 0, fmt.Errorf("deleting expired pending sign-ins: %w", err)
	}
	return n, nil
}

// deleteBefore runs query, a DELETE with one time parameter, and returns
// how many rows it removed.
func (s *Store) deleteBefore(ctx context.Context, query string, before time.Time) (int, error) {
	var c sqlrow.TimeCodec
	b := c.NS("before", before)
	if c.Err != nil {
		return 0, c.Err
	}
	tag, err := s.pool.Exec(ctx, query, b)
	if err != nil {
		return 0, err
	}
	return int(tag.RowsAffected()), nil
}
