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
)

// Errors a backend returns; callers match them with errors.Is.
var (
	// ErrNotFound: no such device, secret or report.
	ErrNotFound = errors.New("not found")
	// ErrSecretRevoked: the enroll secret was revoked before the enrollment committed.
	ErrSecretRevoked = errors.New("enroll secret revoked")
	// ErrDeviceRevoked: the device is revoked; nothing more is accepted for it.
	ErrDeviceRevoked = errors.New("device revoked")
	// ErrSeqNotIncreasing: the report's seq is not greater than the last stored one.
	ErrSeqNotIncreasing = errors.New("report seq not greater than last accepted")
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
)

// Store is everything the verifier persists.
type Store interface {
	DeviceStore
	SecretStore
	ReportStore
	NonceStore
	AuditStore
	SAMLRequestStore
	SignInChallengeStore
	PendingSignInStore
	DecisionStore
	BrowserCertStore
	ServerKeyStore
	// Ping checks the backend is reachable.
	Ping(ctx context.Context) error
	// Close releases the backend.
	Close() error
}
