// Package storage owns the verifier's persistence contract: the records it
// keeps and the interfaces every backend implements. Backends live in
// subpackages (sqlite, postgres) and all pass storagetest.Run.
//
// Times are stored with nanosecond precision in UTC; a zero time.Time means
// "not set" (never revoked, never seen, ...).
package storage

import (
	"context"
	"errors"
	"time"
)

// Errors a backend returns; callers match them with errors.Is.
// RevokedWayBack ends what a revoked device's agent is told: the one way
// back for a Mac revoked by mistake, or recovered.
const RevokedWayBack = "to bring this Mac back, run 'clearance-agent rotate-key' on it (with the agent stopped) and have the security team approve its request"

var (
	// ErrNotFound: no such device, secret or report.
	ErrNotFound = errors.New("not found")
	// ErrSecretRevoked: the enroll secret was revoked before the enrollment committed.
	ErrSecretRevoked = errors.New("enroll secret revoked")
	// ErrSecretExpired: the enroll secret's ExpiresAt had passed at the
	// enrollment's time.
	ErrSecretExpired = errors.New("enroll secret expired")
	// ErrSecretExhausted: the enroll secret had been used MaxUses times.
	ErrSecretExhausted = errors.New("enroll secret used up")
	// ErrRequestRejected: the security team rejected this enrollment
	// request (this key for this hardware UUID).
	ErrRequestRejected = errors.New("enrollment request rejected")
	// ErrTooManyPending: a new enrollment request would pass the limits on
	// requests waiting for approval.
	ErrTooManyPending = errors.New("too many enrollment requests waiting for approval")
	// ErrRequestStale: the device an enrollment request was made against
	// enrolled or changed keys since; the request no longer says what
	// approving it would do.
	ErrRequestStale = errors.New("enrollment request is stale: the device enrolled or changed keys since")
	// ErrSerialEnrolled: a device (a revoked one included) already has the
	// serial number a new device was admitted on.
	ErrSerialEnrolled = errors.New("serial number already enrolled")
	// ErrReinstallNotExpected: an enrollment admitted by an expected
	// reinstall (Checked.Reinstall) found the expectation gone or past
	// when it committed.
	ErrReinstallNotExpected = errors.New("no reinstall expected for the device now")
	// ErrDeviceRevoked: the device is revoked; nothing more is accepted for it.
	ErrDeviceRevoked = errors.New("device revoked")
	// ErrSeqNotIncreasing: the report's seq is not greater than the last stored one.
	ErrSeqNotIncreasing = errors.New("report seq not greater than last accepted")
	// ErrReportStored: the report is, byte for byte, one already stored
	// under its seq for the device's current enrollment: a resend whose
	// acknowledgement was lost. Nothing changed; it may be acknowledged again.
	ErrReportStored = errors.New("report already stored")
	// ErrKeyReplaced: the key the report was verified with is no longer the
	// device's: the device enrolled again, with another key, since.
	ErrKeyReplaced = errors.New("device key replaced by a newer enrollment")
	// ErrNonceUnknown: the nonce was never issued.
	ErrNonceUnknown = errors.New("nonce unknown")
	// ErrNonceWrongDevice: the nonce was issued to another device.
	ErrNonceWrongDevice = errors.New("nonce issued to another device")
	// ErrNonceUsed: the nonce was already consumed by an earlier report.
	ErrNonceUsed = errors.New("nonce already used")
	// ErrNonceExpired: the nonce expired before the report arrived.
	ErrNonceExpired = errors.New("nonce expired")
	// ErrAlreadyExists: a record with that primary key exists.
	ErrAlreadyExists = errors.New("already exists")
	// ErrTooManyCerts: the device was issued as many certificates as its
	// IssueLimit allows in the window; the error is a *TooManyCertsError,
	// which says when another may be issued.
	ErrTooManyCerts = errors.New("device issued too many certificates recently")
)

// Store is everything the verifier persists.
type Store interface {
	DeviceStore
	SecretStore
	ApprovalStore
	ReportStore
	NonceStore
	AuditStore
	SAMLRequestStore
	SignInChallengeStore
	PendingSignInStore
	DecisionStore
	BrowserCertStore
	ServerKeyStore
	OktaLogStore
	RolloutStore
	PeopleStore
	AdminTokenStore
	PolicyStreakStore
	// Ping checks the backend is reachable.
	Ping(ctx context.Context) error
	// CheckWrite commits one small write (a single row, stamped at): a
	// health check learns from it whether the store can write at all (a
	// full disk, a read-only file or database), which Ping cannot tell.
	CheckWrite(ctx context.Context, at time.Time) error
	// Close releases the backend.
	Close() error
}

// DatabaseClock is an optional ability of a Store shared by replicas: the
// database server's own clock. Replicas agree on what has expired (request
// IDs, challenges, grace periods) only as far as their clocks agree; each
// compares its clock with the database's to say when they do not.
type DatabaseClock interface {
	// DatabaseTime is the database server's clock now.
	DatabaseTime(ctx context.Context) (time.Time, error)
}
