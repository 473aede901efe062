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
	// Key is the device key (PKIX DER) the signature was verified with.
	// SaveReport stores a report only while Key is the device's current
	// key, and keeps it, so that a report can be verified again after its
	// device enrolled once more with another key. Reports stored before
	// keys were kept have none.
	Key []byte
	// Streaks, when not nil, are the policies in force as this report
	// judged them, and the device's ComplianceStreak (each Since ignored):
	// SaveReport makes them the device's streaks in the report's
	// transaction. A streak whose status or query digest differs from the
	// stored one of its policy, or whose policy has none, starts at
	// ObservedAt; one that matches keeps its start; the streak of a policy
	// not in Streaks is forgotten. nil leaves the streaks as they are (the
	// report judged nothing otherwise than the one before). Not read back.
	Streaks []PolicyStreak
	// SettingsRejectedAt and SettingsRejected are what the report says of
	// its agent's settings (PostureReport.settings_rejection): when the
	// agent rejected the settings it was given, and why; zero and "" when
	// it runs on them. SaveReport makes them the device's, set or clear,
	// in the update it makes to the device anyway. Both or neither are
	// set, SettingsRejected at most MaxTextLen bytes of UTF-8 without NUL,
	// else ErrInvalid. Not read back.
	SettingsRejectedAt time.Time
	SettingsRejected   string
}

// ReportStore keeps reports: the latest per device plus bounded history.
type ReportStore interface {
	// SaveReport stores r in one transaction that:
	//   - fails with ErrNotFound / ErrDeviceRevoked if the device is unknown / revoked;
	//   - fails with ErrKeyReplaced unless r.Key is the device's current
	//     PublicKey (renewal keeps the key; re-enrollment replaces it), so a
	//     stream opened with the old key cannot report once it is replaced;
	//   - fails with ErrReportStored if the device's current enrollment
	//     already holds a report with r.Seq and exactly r.Payload (a resend
	//     whose ack was lost), else with ErrSeqNotIncreasing unless
	//     r.Seq > the device's LastSeq;
	//   - when nonce is non-empty, consumes it: ErrNonceUnknown,
	//     ErrNonceWrongDevice, ErrNonceUsed, or ErrNonceExpired (expires_at
	//     <= r.ReceivedAt) otherwise;
	//   - sets the device's LastSeq, LastReportAt (= ObservedAt), LastSeen
	//     (= ReceivedAt, never backwards), SettingsRejectedAt and
	//     SettingsRejected (= r's, set or clear);
	//   - deletes the device's oldest reports beyond keep (keep >= 1);
	//   - when r.Streaks is not nil, makes them the device's streaks (see
	//     Report.Streaks); ErrInvalid for streaks no store keeps (an empty,
	//     oversized or repeated policy id, an unknown status, more than
	//     MaxPolicyStreaks), and for a settings rejection no store keeps
	//     (see Report.SettingsRejectedAt).
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
