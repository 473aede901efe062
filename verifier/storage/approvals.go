package storage

import (
	"context"
	"strings"
	"time"
)

// PendingEnrollment is an enrollment request that waits for the security
// team: a re-enrollment of a known hardware UUID that did not prove the
// device's current key, or a new device the admission policy does not
// admit on its own. One request is kept per hardware UUID and candidate
// key; the agent's polls refresh it.
type PendingEnrollment struct {
	ID string
	// Facts as the request gave them; HardwareUUID is canonical.
	HardwareUUID string
	SerialNumber string
	Model        string
	OSName       string
	OSVersion    string
	Hostname     string
	Platform     string
	AgentVersion string
	// PublicKey is the candidate device key (PKIX DER).
	PublicKey []byte
	// SecretID is the enroll secret the latest request presented.
	SecretID string
	// DeviceID is the enrolled device whose key approval would replace,
	// "" for a new device (as the latest request found it).
	DeviceID string
	// Reason says why it waits (a word such as "unproven_key").
	Reason string
	// Source is the network address the latest request came from.
	Source string
	// RequestedAt is the first request, LastRequestAt the latest;
	// Requests counts them.
	RequestedAt   time.Time
	LastRequestAt time.Time
	Requests      int
	// RejectedAt is zero unless the security team rejected the request.
	RejectedAt time.Time
}

// Rejected reports whether the request was rejected.
func (p PendingEnrollment) Rejected() bool { return !p.RejectedAt.IsZero() }

// PendingLimits bound the requests that wait at once, so that whoever holds
// a secret cannot fill the store: PerDevice for one hardware UUID, Total in
// all. Rejected requests do not count. Zero: no limit.
type PendingLimits struct {
	PerDevice int
	Total     int
}

// Approval approves a pending request.
type Approval struct {
	RequestID string
	// NewDeviceID is the ID a new device gets; a known hardware UUID keeps
	// its own.
	NewDeviceID string
	At          time.Time
	// Audit is appended in the same transaction (DeviceID filled in).
	Audit AuditEvent
}

// KnownDevice is a serial number on the security team's list of managed
// Macs (imported from the MDM's export): under the "known" admission
// policy, a new device enrolls on its own only if its serial is listed.
type KnownDevice struct {
	// SerialNumber is canonical: upper case, no surrounding space.
	SerialNumber string
	// Name is the MDM's name for the device, for people ("" if none).
	Name string
	// Source names the import (the MDM, the file).
	Source     string
	ImportedAt time.Time
}

// ApprovalStore keeps enrollment requests waiting for approval and the
// list of known serial numbers.
type ApprovalStore interface {
	// RequestEnrollment records p as waiting, or refreshes the waiting
	// request of the same hardware UUID and public key (its facts,
	// secret, device, reason, source, LastRequestAt and Requests; its ID
	// and RequestedAt stay), and returns the stored request. audit is
	// appended only when a request is created. ErrRequestRejected, with
	// the stored request, if that request was rejected: nothing changes.
	// ErrTooManyPending if a new request would pass limits.
	RequestEnrollment(ctx context.Context, p PendingEnrollment, limits PendingLimits, audit AuditEvent) (PendingEnrollment, error)
	// GetPendingEnrollment returns a request, waiting or rejected, or
	// ErrNotFound.
	GetPendingEnrollment(ctx context.Context, id string) (PendingEnrollment, error)
	// ListPendingEnrollments returns up to limit waiting (not rejected)
	// requests with ID > afterID, ordered by ID.
	ListPendingEnrollments(ctx context.Context, afterID string, limit int) ([]PendingEnrollment, error)
	// ApproveEnrollment enrolls a waiting request's key: a known hardware
	// UUID gets the candidate key and facts (as a re-enrollment does:
	// Enrollments counts it, LastSeq restarts, the old certificate no
	// longer names the current key so CertSerial is cleared); a new one
	// becomes a device with no certificate yet. The device records the
	// request's secret, whose use is counted; the request is removed. The
	// agent then enrolls with its key and proves it (storage
	// EnrollDevice). ErrNotFound for an unknown request,
	// ErrRequestRejected for a rejected one, ErrSecretRevoked if its
	// secret was revoked since (an approval is no reason to honour a
	// leaked secret), ErrDeviceRevoked for a revoked hardware UUID. It
	// returns the device and whether it existed.
	ApproveEnrollment(ctx context.Context, a Approval) (Device, bool, error)
	// RejectEnrollment marks a request rejected (idempotent: the first
	// RejectedAt stays) and appends audit; ErrNotFound if unknown.
	RejectEnrollment(ctx context.Context, id string, at time.Time, audit AuditEvent) (PendingEnrollment, error)
	// ImportKnownDevices adds serial numbers to the known list, or updates
	// the name, source and import time of those already there, all in one
	// transaction with audit. It returns how many were new.
	ImportKnownDevices(ctx context.Context, ds []KnownDevice, audit AuditEvent) (added int, err error)
	// GetKnownDevice returns a known serial number (any case), or
	// ErrNotFound.
	GetKnownDevice(ctx context.Context, serial string) (KnownDevice, error)
}

// CanonicalSerial is a serial number as the known list keeps and compares
// it: upper case, without surrounding space.
func CanonicalSerial(s string) string { return strings.ToUpper(strings.TrimSpace(s)) }
