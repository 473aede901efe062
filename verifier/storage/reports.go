package storage

import (
	"context"
	"time"
)

// Report is a verified posture report exactly as the agent signed it.
type Report struct {
	DeviceID   string
	Seq        uint64
	ObservedAt time.Time
	ReceivedAt time.Time
	// Payload is the serialized PostureReport; Signature the device's
	// signature over it. Kept verbatim so the report can be re-verified.
	Payload   []byte
	Signature []byte
}

// ReportStore keeps reports: the latest per device plus bounded history.
type ReportStore interface {
	// SaveReport stores r in one transaction that:
	//   - fails with ErrNotFound / ErrDeviceRevoked if the device is unknown / revoked;
	//   - fails with ErrSeqNotIncreasing unless r.Seq > the device's LastSeq;
	//   - when nonce is non-empty, consumes it: ErrNonceUnknown,
	//     ErrNonceWrongDevice, ErrNonceUsed, or ErrNonceExpired (expires_at
	//     <= r.ReceivedAt) otherwise;
	//   - sets the device's LastSeq, LastReportAt (= ObservedAt) and LastSeen
	//     (= ReceivedAt, never backwards);
	//   - deletes the device's oldest reports beyond keep (keep >= 1).
	// On any error nothing is changed. It returns only after the commit is durable.
	SaveReport(ctx context.Context, r Report, nonce []byte, keep int) error
	// LatestReport returns the device's newest report: the highest seq of its
	// latest enrollment that has reports (re-enrollment restarts seq), or
	// ErrNotFound.
	LatestReport(ctx context.Context, deviceID string) (Report, error)
	// ListReports returns up to limit of the device's reports, newest first
	// in the same order as LatestReport.
	ListReports(ctx context.Context, deviceID string, limit int) ([]Report, error)
}

// NonceStore keeps the nonces sent in CheckNow. They are consumed by SaveReport.
type NonceStore interface {
	// CreateNonce records a nonce issued to a device; ErrAlreadyExists on a duplicate.
	CreateNonce(ctx context.Context, deviceID string, nonce []byte, expiresAt time.Time) error
	// DeleteExpiredNonces removes nonces that expired before the given time
	// and returns how many.
	DeleteExpiredNonces(ctx context.Context, before time.Time) (int, error)
}
