package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/clearance/clearance/verifier/storage"
	"github.com/clearance/clearance/verifier/storage/internal/sqlrow"
)

// UseRequestID records an AuthnRequest's issuer and ID, or returns
// ErrAlreadyExists if they are recorded already. The one writing connection
// (and BEGIN IMMEDIATE across processes) makes the insert the arbiter: of
// concurrent calls, only one inserts the row.
func (s *Store) UseRequestID(ctx context.Context, issuer, id string, expiresAt time.Time) error {
	if err := sqlrow.CheckRequestID(issuer, id); err != nil {
		return fmt.Errorf("recording request ID: %w", err)
	}
	var c sqlrow.TimeCodec
	exp := c.NS("expires at", expiresAt)
	if c.Err != nil {
		return fmt.Errorf("recording request ID: %w", c.Err)
	}
	// DO NOTHING applies to the primary key only, unlike INSERT OR IGNORE,
	// which would also swallow a CHECK failure.
	// Every sign-in writes one: committed with whatever else is waiting
	// (see groupcommit.go), so concurrent sign-ins share an fsync.
	err := s.reports.do(ctx, func(ctx context.Context, tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `INSERT INTO saml_request_ids (issuer, id, expires_at)
			VALUES (?, ?, ?) ON CONFLICT (issuer, id) DO NOTHING`, issuer, id, exp)
		if err != nil {
			return err
		}
		return oneRow(res, storage.ErrAlreadyExists)
	})
	if err != nil {
		return fmt.Errorf("recording request ID: %w", err)
	}
	return nil
}

// DeleteExpiredRequestIDs removes request IDs whose expiry is strictly
// before the given time.
func (s *Store) DeleteExpiredRequestIDs(ctx context.Context, before time.Time) (int, error) {
	n, err := s.deleteBefore(ctx, `DELETE FROM saml_request_ids WHERE expires_at < ?`, before)
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
	err = s.reports.do(ctx, func(ctx context.Context, tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `INSERT INTO pending_sign_ins (`+sqlrow.PendingSignInColumns+`)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (token_hash) DO NOTHING`, args...)
		if err != nil {
			return err
		}
		return oneRow(res, storage.ErrAlreadyExists)
	})
	if err != nil {
		return fmt.Errorf("creating pending sign-in: %w", err)
	}
	return nil
}

// GetPendingSignIn returns the pending sign-in with this token hash, expired
// or not, or ErrNotFound.
func (s *Store) GetPendingSignIn(ctx context.Context, tokenHash []byte) (storage.PendingSignIn, error) {
	p, err := sqlrow.ScanPendingSignIn(s.r.QueryRowContext(ctx,
		`SELECT `+sqlrow.PendingSignInColumns+` FROM pending_sign_ins WHERE token_hash = ?`,
		sqlrow.Blob(tokenHash)))
	if errors.Is(err, sql.ErrNoRows) {
		return storage.PendingSignIn{}, fmt.Errorf("pending sign-in: %w", storage.ErrNotFound)
	}
	if err != nil {
		return storage.PendingSignIn{}, fmt.Errorf("reading pending sign-in: %w", err)
	}
	return p, nil
}

// DeletePendingSignIn removes the pending sign-in; ErrNotFound if it is not
// there, so of concurrent deletes only one succeeds.
func (s *Store) DeletePendingSignIn(ctx context.Context, tokenHash []byte) error {
	res, err := s.w.ExecContext(ctx, `DELETE FROM pending_sign_ins WHERE token_hash = ?`,
		sqlrow.Blob(tokenHash))
	if err != nil {
		return fmt.Errorf("deleting pending sign-in: %w", err)
	}
	if err := oneRow(res, storage.ErrNotFound); err != nil {
		return fmt.Errorf("deleting pending sign-in: %w", err)
	}
	return nil
}

// DeleteExpiredPendingSignIns removes pending sign-ins whose expiry is
// strictly before the given time.
func (s *Store) DeleteExpiredPendingSignIns(ctx context.Context, before time.Time) (int, error) {
	n, err := s.deleteBefore(ctx, `DELETE FROM pending_sign_ins WHERE expires_at < ?`, before)
	if err != nil {
		return 0, fmt.Errorf("deleting expired pending sign-ins: %w", err)
	}
	return n, nil
}

// oneRow returns nil if res affected a row and none otherwise: the
// statement's key was taken (insert) or absent (delete).
func oneRow(res sql.Result, none error) error {
	n, err := res.RowsAffected()
	if err != nil {
		return err
	}
	if n == 0 {
		return none
	}
	return nil
}

// deleteBefore runs query, a DELETE with one time parameter, and returns
// how many rows it removed.
func (s *Store) deleteBefore(ctx context.Context, query string, before time.Time) (int, error) {
	var c sqlrow.TimeCodec
	b := c.NS("before", before)
	if c.Err != nil {
		return 0, c.Err
	}
	res, err := s.w.ExecContext(ctx, query, b)
	if err != nil {
		return 0, err
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, err
	}
	return int(n), nil
}
