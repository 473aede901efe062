package storage

import (
	"context"
	"time"
)

// MaxExemptionPolicies bounds the policies one exemption names.
const MaxExemptionPolicies = 100

// Exemption is one the security team granted: it waives some policies (or
// all) for a device or a user until ExpiresAt.
type Exemption struct {
	// ID is assigned by CreateExemption: positive, never reused.
	ID int64
	// DeviceID or Username (exactly one is set) says whom it covers.
	// Usernames match as user names compare (SameUserName): in any case
	// of their ASCII letters, every other code point exactly, so a
	// look-alike is never covered.
	DeviceID string
	Username string
	// PolicyIDs are the policies it waives; empty waives every policy.
	PolicyIDs []string
	// Reason says why, for the audit log and whoever reads the list.
	Reason    string
	CreatedBy string
	CreatedAt time.Time
	// ExpiresAt is when it stops counting (exactly then, not after).
	ExpiresAt time.Time
	// RevokedAt is zero unless it was revoked early; RevokedBy says who.
	RevokedAt time.Time
	RevokedBy string
}

// Active reports whether e counts at now.
func (e Exemption) Active(now time.Time) bool {
	return e.RevokedAt.IsZero() && now.Before(e.ExpiresAt)
}

// ExemptionFilter selects exemptions. Zero fields do not filter.
type ExemptionFilter struct {
	DeviceID string
	Username string // matched as SameUserName compares: ASCII case only
	// ActiveAt, when set, keeps only exemptions active then.
	ActiveAt time.Time
	// BeforeID, when positive, keeps only exemptions whose ID is below it:
	// the paging cursor, the ID of the last one a page returned (IDs only
	// grow, so a grant between pages never repeats or hides a row).
	BeforeID int64
	// Limit caps the result (<= 0: DefaultDecisionLimit; at most
	// MaxDecisionLimit).
	Limit int
}

// RolloutStore keeps what softens enforcement across sign-ins and
// replicas: grace periods, one-time bypasses ("Resolve later") and
// exemptions.
type RolloutStore interface {
	// StartGrace records at as when the device first failed the policy,
	// unless a start is recorded already, and returns the recorded start:
	// of concurrent first calls, every one returns the same.
	StartGrace(ctx context.Context, deviceID, policyID string, at time.Time) (time.Time, error)
	// EndGrace forgets the device's grace start for the policy (it passed);
	// none recorded is not an error.
	EndGrace(ctx context.Context, deviceID, policyID string) error
	// GraceStarts returns the device's grace starts by policy id.
	GraceStarts(ctx context.Context, deviceID string) (map[string]time.Time, error)
	// ForgetGraces forgets every device's grace start of each policy not
	// in keep (all of them when keep is empty), and returns how many it
	// forgot.
	ForgetGraces(ctx context.Context, keep []string) (int, error)

	// UseBypass records that username resolved the policy later on the
	// device at at, unless a use after notBefore is recorded: then it
	// changes nothing and returns ErrAlreadyExists. Of concurrent calls,
	// one succeeds.
	UseBypass(ctx context.Context, deviceID, policyID, username string, at, notBefore time.Time) error
	// Bypasses returns when the device last resolved each policy later.
	Bypasses(ctx context.Context, deviceID string) (map[string]time.Time, error)

	// CreateExemption stores e (its ID and RevokedAt ignored) and appends
	// audit, its Detail prefixed with "exemption ID: ", in one transaction;
	// it returns the new ID.
	CreateExemption(ctx context.Context, e Exemption, audit AuditEvent) (int64, error)
	// GetExemption returns the exemption with this ID, or ErrNotFound.
	GetExemption(ctx context.Context, id int64) (Exemption, error)
	// ListExemptions returns the matching exemptions, newest first.
	ListExemptions(ctx context.Context, f ExemptionFilter) ([]Exemption, error)
	// ExemptionsFor returns the exemptions active at now that cover the
	// device or the user (either may be empty).
	ExemptionsFor(ctx context.Context, deviceID, username string, now time.Time) ([]Exemption, error)
	// RevokeExemption ends the exemption at at and appends audit, in one
	// transaction; ErrNotFound if there is none, ErrAlreadyExists if it was
	// revoked already (then nothing is appended).
	RevokeExemption(ctx context.Context, id int64, at time.Time, by string, audit AuditEvent) error
}
