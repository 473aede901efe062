package storage

import (
	"context"
	"time"
)

// MaxPolicyStreaks bounds the streaks one update may set for a device: the
// policies in force (a policy set holds at most 1,000) and the device's
// ComplianceStreak.
const MaxPolicyStreaks = 1001

// PolicyStreak says since when one policy's result on one device has been
// what it is: the observation time of the first report in an unbroken run
// of reports that judged the policy the same way, for the same query.
type PolicyStreak struct {
	PolicyID string
	// Status is the result as the decision names it: "PASS", "FAIL",
	// "ERROR" or "MISSING" (no result for the query in force).
	Status string
	// QuerySHA256 is the SHA-256 of the policy's query the result was
	// judged for: a changed query starts a new streak.
	QuerySHA256 []byte
	// Since is when the report that began the run was observed.
	Since time.Time
}

// ComplianceStreak is the PolicyID of a device's own run: "PASS" while
// every required policy passes, "FAIL" while one does not. No policy has
// it ('*' starts no policy id).
const ComplianceStreak = "*compliance"

// StreakUpdate is what one report says of a device's runs.
type StreakUpdate struct {
	// ObservedAt is when the report was observed: the start of each run it
	// begins.
	ObservedAt time.Time
	// ReceivedAt is when the verifier stored the report. Updates apply in
	// its order: one stored before the update the device's streaks last
	// took (a replaced stream's, written late) changes nothing.
	ReceivedAt time.Time
	// Streaks are the policies in force as the report judged them (each
	// Since is ignored), and the device's ComplianceStreak.
	Streaks []PolicyStreak
}

// PolicyStreakStore keeps each device's policy streaks, so that a reader
// can say "failing since" and "compliant since" beyond the reports the
// store keeps.
type PolicyStreakStore interface {
	// PolicyStreaks returns the device's streaks by policy id (none for an
	// unknown device).
	PolicyStreaks(ctx context.Context, deviceID string) (map[string]PolicyStreak, error)
	// UpdatePolicyStreaks makes the device's streaks those of u, in one
	// transaction, unless an update of a report received after u's was
	// taken already: then it changes nothing. A streak whose status or
	// query digest differs from the stored one of its policy, or whose
	// policy has none, starts at u.ObservedAt; one that matches keeps its
	// start; the streak of a policy not in u is forgotten. It reports
	// whether a streak changed. ErrInvalid for an empty or oversized id, a
	// policy named twice, more than MaxPolicyStreaks entries or a zero
	// time.
	UpdatePolicyStreaks(ctx context.Context, deviceID string, u StreakUpdate) (bool, error)
}
