package storage

import (
	"context"
	"time"
)

// EnrollSecret is an enroll secret's record. The secret itself is never
// stored: only Hash, its SHA-256.
type EnrollSecret struct {
	ID          string
	Description string
	Hash        []byte
	CreatedAt   time.Time
	RevokedAt   time.Time
	// Uses counts the enrollments made with it (re-enrollments and
	// approvals included).
	Uses int
	// ExpiresAt is zero for a secret that does not expire; from then on it
	// enrolls nothing.
	ExpiresAt time.Time
	// MaxUses is 0 for no limit; a secret with Uses == MaxUses enrolls
	// nothing more.
	MaxUses int
}

// Revoked reports whether the secret is revoked.
func (s EnrollSecret) Revoked() bool { return !s.RevokedAt.IsZero() }

// Expired reports whether the secret has expired at t.
func (s EnrollSecret) Expired(t time.Time) bool {
	return !s.ExpiresAt.IsZero() && !t.Before(s.ExpiresAt)
}

// Exhausted reports whether the secret has been used as often as allowed.
func (s EnrollSecret) Exhausted() bool { return s.MaxUses > 0 && s.Uses >= s.MaxUses }

// SecretStore keeps enroll secrets.
type SecretStore interface {
	// CreateEnrollSecret stores a new secret; ErrAlreadyExists on a duplicate ID.
	CreateEnrollSecret(ctx context.Context, s EnrollSecret, audit AuditEvent) error
	// GetEnrollSecret returns a secret by ID, or ErrNotFound.
	GetEnrollSecret(ctx context.Context, id string) (EnrollSecret, error)
	// ListEnrollSecrets returns every secret, oldest first.
	ListEnrollSecrets(ctx context.Context) ([]EnrollSecret, error)
	// RevokeEnrollSecret marks a secret revoked (idempotent), or ErrNotFound.
	RevokeEnrollSecret(ctx context.Context, id string, at time.Time, audit AuditEvent) (EnrollSecret, error)
}
