package storage

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"time"
)

// PendingEnrollment is an enrollment request that waits for the security
// team: a re-enrollment of a known hardware UUID that did not prove the
// device's current key, or a new device the admission policy does not
// admit on its own. One request is kept per hardware UUID and candidate
// key; the agent's polls refresh it while they ask for what it shows.
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
	// "" for a new device, and DeviceKey that device's key (PKIX DER, nil
	// for a new device): the state the request was made against. Storage
	// keeps them current: a waiting request whose device enrolled or
	// changed keys since is removed, and an approval commits only if they
	// still hold (else ErrRequestStale).
	DeviceID  string
	DeviceKey []byte
	// DeviceRevokedAt is when that device was revoked, zero if it was not:
	// part of the state the request was made against. Approving a revoked
	// device's request reinstates it (with the request's key, never the
	// revoked one), and only from the revocation the request was made
	// against: one that ended or began since makes the request stale.
	DeviceRevokedAt time.Time
	// Reason says why it waits (a word such as "unproven_key").
	Reason string
	// Source is the network address the request came from, and
	// SourceNet what the per-source limit counts it under (the address
	// for IPv4, its /64 for IPv6).
	Source    string
	SourceNet string
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
// a secret cannot fill the store: PerDevice for one hardware UUID,
// PerSource for one SourceNet, Total in all. Rejected requests do not
// count. A new request over a limit evicts the waiting request that limit
// counts with the oldest LastRequestAt (for PerDevice, one from the same
// SourceNet first), so a genuine agent that keeps asking is always
// recorded, and a flood pushes out its own requests before anyone else's.
// MaxAge removes waiting requests not asked again for that long. Rejected
// bounds the rejected requests kept: recording a rejection removes the
// oldest rejected requests (by RejectedAt, then ID) beyond it, so that
// rejecting floods again and again cannot grow the store without bound;
// the key of a rejection removed so is decided afresh when it asks again,
// as if never rejected. Zero: no limit.
type PendingLimits struct {
	PerDevice int
	PerSource int
	Total     int
	MaxAge    time.Duration
	Rejected  int
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
	// ClaimReason is the reason a request that claims an enrolled device's
	// serial number waits with. A new device's request on such a serial is
	// approved only if it has that reason, so that whoever approves it was
	// shown the claim; otherwise the approval is refused with
	// ErrSerialEnrolled, and the request filed anew under NewRequestID
	// with that reason.
	ClaimReason  string
	NewRequestID string
}

// KnownDevice is a serial number on the security team's list of managed
// Macs (imported from the MDM's export): under the "known" admission
// policy, a new device enrolls on its own only if its serial is listed.
type KnownDevice struct {
	// SerialNumber is upper case, no surrounding space; only those that
	// are canonical (CanonicalSerial) can match a device.
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
	// request of the same hardware UUID and public key when p asks for
	// exactly what it shows (the same facts, secret, device, reason and
	// source: only its LastRequestAt and Requests move; its ID and
	// RequestedAt stay), and returns the stored request. A request that p
	// changes in any of those is removed and p filed anew, under p.ID,
	// unaudited: an approval of the id the approver read must enroll
	// exactly what they read, never a serial, secret, hostname, model or
	// other fact they did not see, a claim on an enrolled serial they
	// were not shown, nor an ask from another address. audit is
	// appended only when a request is created, and not when it evicted a
	// request of its own SourceNet (a flood churning through its places). ErrRequestRejected, with
	// the stored request, if that request was rejected: nothing changes.
	// ErrKeyReplaced if p.DeviceID, p.DeviceKey and p.DeviceRevokedAt are
	// not the device that holds the hardware UUID now: the request was
	// decided on a state that is gone. ErrDeviceRevoked if the device is
	// revoked and p.PublicKey is its key: the revoked key never asks. Waiting requests older than limits.MaxAge are
	// removed first; a new request over a limit evicts another (see
	// PendingLimits), and ErrTooManyPending only if none can be evicted.
	RequestEnrollment(ctx context.Context, p PendingEnrollment, limits PendingLimits, audit AuditEvent) (PendingEnrollment, error)
	// FindEnrollmentRequest returns the request, waiting or rejected, of
	// a hardware UUID and public key, or ErrNotFound.
	FindEnrollmentRequest(ctx context.Context, hardwareUUID string, key []byte) (PendingEnrollment, error)
	// GetPendingEnrollment returns a request, waiting or rejected, or
	// ErrNotFound.
	GetPendingEnrollment(ctx context.Context, id string) (PendingEnrollment, error)
	// ListPendingEnrollments returns up to limit waiting (not rejected)
	// requests with ID > afterID, ordered by ID.
	ListPendingEnrollments(ctx context.Context, afterID string, limit int) ([]PendingEnrollment, error)
	// ApproveEnrollment enrolls a waiting request's key: a known hardware
	// UUID gets the candidate key and facts but keeps its serial number
	// (as a re-enrollment does: Enrollments counts it, LastSeq restarts,
	// the old certificate no longer names the current key so CertSerial
	// is cleared); a new one
	// becomes a device with no certificate yet. A revoked device's request
	// (DeviceRevokedAt set) reinstates it: the same device, its revocation
	// cleared, and its browser certificates that still counted stop
	// counting from the time it was revoked, so that nothing issued before
	// the revocation speaks for it again. The device records the
	// request's secret, whose use is counted; the request is removed, and
	// so are the other requests waiting for that hardware UUID, which
	// were made against the key it replaced, and the sign-ins held for a
	// known device (PendingSignIn), proven by that key. The agent then enrolls with
	// its key (EnrollDevice: the same key, no further use). ErrNotFound
	// for an unknown request, ErrRequestRejected for a rejected one,
	// ErrSecretRevoked if its secret was revoked since (an approval is
	// no reason to honour a leaked secret), ErrDeviceRevoked if the
	// request's key is a revoked device's own. ErrRequestStale if the
	// hardware UUID's device is no longer the one the request was made
	// against (a new device enrolled, the device changed keys, was revoked,
	// or was reinstated): the request is removed, with audit, and nothing
	// else changes. It returns the
	// device and whether it existed. ErrSerialEnrolled if a new device's
	// request claims a serial a device has, and lacks a.ClaimReason (see
	// Approval): the request, given that reason, stays.
	ApproveEnrollment(ctx context.Context, a Approval) (Device, bool, error)
	// RejectEnrollment marks a request rejected (idempotent: the first
	// RejectedAt stays) and appends audit; ErrNotFound if unknown. The
	// oldest rejected requests beyond limits.Rejected are removed in the
	// same transaction.
	RejectEnrollment(ctx context.Context, id string, at time.Time, limits PendingLimits, audit AuditEvent) (PendingEnrollment, error)
	// RejectEnrollmentKey rejects every waiting request of one candidate
	// key: the key whose fingerprint (KeyFingerprint) starts with prefix,
	// 1 to 64 hex digits in any case (else an error). Its requests for the
	// first maxMacs hardware UUIDs it waits for (in order; zero: all) are
	// marked rejected in one transaction, each as RejectEnrollment marks
	// one (the same key asking again for that hardware UUID is refused),
	// with an audit event of its own: audit, its DeviceID filled in as
	// RejectEnrollment does and its Detail led by the request's id and
	// hardware UUID. They are returned ordered by ID; the key's requests
	// for other hardware UUIDs wait on, for another call. A request filed
	// anew (another serial, secret or reason: another id) after prefix was
	// read is still the key's, and rejected. ErrAmbiguousKey (an
	// *AmbiguousKeyError) if waiting requests of several keys match,
	// ErrNotFound if none does (a rejected request no longer waits, so
	// rejecting a key again finds nothing); either way nothing changes.
	// The oldest rejected requests beyond limits.Rejected are removed in
	// the same transaction.
	RejectEnrollmentKey(ctx context.Context, prefix string, maxMacs int, at time.Time, limits PendingLimits, audit AuditEvent) ([]PendingEnrollment, error)
	// RejectEnrollmentSource rejects every waiting request whose Source
	// lies in network (SourceIn), as RejectEnrollmentKey rejects a key's:
	// those of the first maxMacs hardware UUIDs they wait for (in order;
	// zero: all) in one transaction, each with an audit event of its own
	// led by the request's id and hardware UUID, returned ordered by ID;
	// the oldest rejected requests beyond limits.Rejected are removed.
	// ErrNotFound if none waits, and then nothing changes; an error for
	// an invalid network.
	RejectEnrollmentSource(ctx context.Context, network netip.Prefix, maxMacs int, at time.Time, limits PendingLimits, audit AuditEvent) ([]PendingEnrollment, error)
	// DeleteExpiredEnrollmentRequests removes waiting (not rejected)
	// requests last asked strictly before before, and returns how many.
	DeleteExpiredEnrollmentRequests(ctx context.Context, before time.Time) (int, error)
	// ImportKnownDevices adds serial numbers to the known list, or updates
	// the name, source and import time of those already there, all in one
	// transaction with audit. It returns how many were new.
	ImportKnownDevices(ctx context.Context, ds []KnownDevice, audit AuditEvent) (added int, err error)
	// GetKnownDevice returns a known serial number (any case), or
	// ErrNotFound; a serial without a canonical form matches nothing.
	GetKnownDevice(ctx context.Context, serial string) (KnownDevice, error)
	// GetDeviceBySerial returns a device whose serial number is serial's
	// canonical form, an unrevoked one first (revoked ones count: a
	// revoked Mac's serial admits no other device by itself), or
	// ErrNotFound (always, for a serial without one).
	GetDeviceBySerial(ctx context.Context, serial string) (Device, error)
	// SerialHolders returns, for each of serials that devices have, those
	// devices: the ones whose serial number is the serial's canonical form,
	// as GetDeviceBySerial finds them (revoked ones included), at most
	// perSerial of them (unrevoked first, then by ID), and how many there
	// are. It is keyed by canonical serial; a serial without a canonical
	// form matches nothing. It reads all of them in one query for up to
	// 500 serials.
	SerialHolders(ctx context.Context, serials []string, perSerial int) (map[string]SerialHolders, error)
}

// SerialHolders are the devices enrolled on one serial number.
type SerialHolders struct {
	// Devices are the first of them: unrevoked ones first, then by ID.
	Devices []Device
	// Total counts them all.
	Total int
}

// KeyFingerprint is a key's SHA-256 (PKIX DER) in lowercase hex, the
// fingerprint the admin API shows a candidate key and a device key by.
func KeyFingerprint(pkix []byte) string {
	sum := sha256.Sum256(pkix)
	return hex.EncodeToString(sum[:])
}

// ErrAmbiguousKey: a key fingerprint prefix matches waiting requests of
// more than one key (RejectEnrollmentKey); the error is an
// *AmbiguousKeyError.
var ErrAmbiguousKey = errors.New("key fingerprint prefix matches several keys")

// AmbiguousKeyError says how many keys a fingerprint prefix matched.
type AmbiguousKeyError struct {
	Prefix string
	Keys   int
}

func (e *AmbiguousKeyError) Error() string {
	return fmt.Sprintf("waiting requests of %d keys have fingerprints starting with %s", e.Keys, e.Prefix)
}

// Is makes errors.Is(err, ErrAmbiguousKey) hold.
func (e *AmbiguousKeyError) Is(target error) bool { return target == ErrAmbiguousKey }

// SourceIn reports whether a request's Source, an IP address, lies in
// network: compared without its zone, an IPv4-mapped IPv6 address as the
// IPv4 address it is. A source that is no IP address is in no network.
func SourceIn(source string, network netip.Prefix) bool {
	a, err := netip.ParseAddr(source)
	if err != nil {
		return false
	}
	return network.Contains(a.WithZone("").Unmap())
}

// MaxCanonicalSerial bounds a canonical serial number.
const MaxCanonicalSerial = 64

// StoredSerial is a serial number as a device row keeps it: canonical when
// it has a canonical form, else as given.
func StoredSerial(serial string) string {
	if c := CanonicalSerial(serial); c != "" {
		return c
	}
	return serial
}

// CanonicalSerial is a serial number as enrolled devices and the known list
// are compared: ASCII letters upper-cased. Apple serial numbers are letters
// and digits only, so anything else (space, punctuation, any non-ASCII
// character, among them the look-alikes that Unicode case mapping turns
// into ASCII letters, such as the dotless ı) has no canonical form: ""
// is returned, and such a serial matches nothing.
func CanonicalSerial(s string) string {
	if s == "" || len(s) > MaxCanonicalSerial {
		return ""
	}
	b := []byte(s)
	for i, c := range b {
		switch {
		case 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case 'a' <= c && c <= 'z':
			b[i] = c - 'a' + 'A'
		default:
			return ""
		}
	}
	return string(b)
}
