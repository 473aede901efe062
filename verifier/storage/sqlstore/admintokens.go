package sqlstore

import (
	"context"
	"fmt"
	"time"

	"github.com/clearance/clearance/verifier/storage"
)

// --- named admin tokens ---

const adminTokenColumns = `id, name, role, hash, created_at, expires_at, revoked_at`

func scanAdminToken(sc scanner) (storage.AdminToken, error) {
	var (
		t                               storage.AdminToken
		createdAt, expiresAt, revokedAt int64
	)
	if err := sc.Scan(&t.ID, &t.Name, &t.Role, &t.Hash, &createdAt, &expiresAt, &revokedAt); err != nil {
		return storage.AdminToken{}, err
	}
	t.CreatedAt, t.ExpiresAt, t.RevokedAt = fromNS(createdAt), fromNS(expiresAt), fromNS(revokedAt)
	return t, nil
}

func getAdminToken(ctx context.Context, q conn, id string) (storage.AdminToken, error) {
	if !storable(id) {
		return storage.AdminToken{}, fmt.Errorf("admin token %q: %w", id, storage.ErrNotFound)
	}
	return one(ctx, q, scanAdminToken, "admin token", fmt.Sprintf("admin token %q", id),
		`SELECT `+adminTokenColumns+` FROM admin_tokens WHERE id = $1`, id)
}

// CreateAdminToken stores a new token and its audit event.
func (s *Store) CreateAdminToken(ctx context.Context, t storage.AdminToken, audit storage.AuditEvent) error {
	var c timeCodec
	createdAt, expiresAt, revokedAt := c.ns("created at", t.CreatedAt), c.ns("expires at", t.ExpiresAt), c.ns("revoked at", t.RevokedAt)
	if c.err != nil {
		return fmt.Errorf("creating admin token: %w: %v", storage.ErrInvalid, c.err)
	}
	if err := checkTexts(true, textField{"token id", t.ID}, textField{"token name", t.Name}); err != nil {
		return fmt.Errorf("creating admin token: %w: %v", storage.ErrInvalid, err)
	}
	if len(t.Name) > storage.MaxNameLen {
		return fmt.Errorf("creating admin token: %w: the name is %d bytes; the limit is %d", storage.ErrInvalid, len(t.Name), storage.MaxNameLen)
	}
	if t.Role != storage.AdminRoleRead && t.Role != storage.AdminRoleAdmin {
		return fmt.Errorf("creating admin token: %w: role %q is neither %q nor %q", storage.ErrInvalid, t.Role, storage.AdminRoleRead, storage.AdminRoleAdmin)
	}
	if len(t.Hash) == 0 {
		return fmt.Errorf("creating admin token: %w: no hash", storage.ErrInvalid)
	}
	err := s.insertAudited(ctx, audit, "admin token", t.ID+" or name "+t.Name,
		`INSERT INTO admin_tokens (`+adminTokenColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7)`,
		t.ID, t.Name, t.Role, blob(t.Hash), createdAt, expiresAt, revokedAt)
	if err != nil {
		return fmt.Errorf("creating admin token: %w", err)
	}
	return nil
}

// GetAdminToken returns a token by ID, or ErrNotFound.
func (s *Store) GetAdminToken(ctx context.Context, id string) (storage.AdminToken, error) {
	return getAdminToken(ctx, s.reader(), id)
}

// ListAdminTokens returns every token, oldest first (ties by ID).
func (s *Store) ListAdminTokens(ctx context.Context) ([]storage.AdminToken, error) {
	ts, err := list(ctx, s.reader(), scanAdminToken, `SELECT `+adminTokenColumns+` FROM admin_tokens ORDER BY created_at, id`)
	if err != nil {
		return nil, fmt.Errorf("listing admin tokens: %w", err)
	}
	return ts, nil
}

// RevokeAdminToken marks a token revoked; one already revoked keeps its
// first revocation time.
func (s *Store) RevokeAdminToken(ctx context.Context, id string, at time.Time, audit storage.AuditEvent) (storage.AdminToken, error) {
	if !storable(id) {
		return storage.AdminToken{}, fmt.Errorf("revoking admin token: admin token %q: %w", id, storage.ErrNotFound)
	}
	return revokeOnce(ctx, s, audit, "admin token", "admin_tokens", id, at, getAdminToken)
}
