package storage

import (
	"context"
	"time"
)

// Roles of an admin token: what its holder may do with the admin API.
const (
	// AdminRoleRead may list and read (devices, people, decisions, the
	// audit log, explanations) and change nothing.
	AdminRoleRead = "read"
	// AdminRoleAdmin may make every admin call, as the data dir's
	// admin.token does.
	AdminRoleAdmin = "admin"
)

// AdminToken is a named admin API bearer token's record: one per person
// or system, so that the audit log names who made each change and a token
// can be revoked without touching anyone else's. Only Hash, the SHA-256
// of the token, is stored.
type AdminToken struct {
	ID string
	// Name is who holds it (a person's e-mail, a system's name); its
	// changes are audited as "admin:"+Name. No two unrevoked tokens share
	// a name.
	Name string
	// Role is AdminRoleRead or AdminRoleAdmin.
	Role      string
	Hash      []byte
	CreatedAt time.Time
	// ExpiresAt is when the token stops working; zero: never.
	ExpiresAt time.Time
	RevokedAt time.Time
}

// Revoked reports whether the token is revoked.
func (t AdminToken) Revoked() bool { return !t.RevokedAt.IsZero() }

// Expired reports whether the token has expired at now.
func (t AdminToken) Expired(now time.Time) bool {
	return !t.ExpiresAt.IsZero() && !now.Before(t.ExpiresAt)
}

// AdminTokenStore keeps named admin tokens. Each change appends its audit
// event in the same transaction.
type AdminTokenStore interface {
	// CreateAdminToken stores a new token; ErrAlreadyExists on a duplicate
	// ID or when an unrevoked token has the same name, ErrInvalid when a
	// field is empty, oversized or not UTF-8, or the role is unknown.
	CreateAdminToken(ctx context.Context, t AdminToken, audit AuditEvent) error
	// GetAdminToken returns a token by ID, or ErrNotFound.
	GetAdminToken(ctx context.Context, id string) (AdminToken, error)
	// ListAdminTokens returns every token, oldest first (ties by ID).
	ListAdminTokens(ctx context.Context) ([]AdminToken, error)
	// RevokeAdminToken marks a token revoked (idempotent: the first
	// revocation's time stays), or ErrNotFound.
	RevokeAdminToken(ctx context.Context, id string, at time.Time, audit AuditEvent) (AdminToken, error)
}
