package storage

import (
	"context"
	"time"
)

// MaxPolicyStreaks bounds the streaks one update may set for a device: the
// policies in force, which a policy file keeps far below it.
const MaxPolicyStreaks = 1000

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

// PolicyStreakStore keeps each device's policy streaks, so that a reader
// can say "failing since" and "compliant since" beyond the reports the
// store keeps.
type PolicyStreakStore interface {
	// PolicyStreaks returns the device's streaks by policy id (none for an
	// unknown device).
	PolicyStreaks(ctx context.Context, deviceID string) (map[string]PolicyStreak, error)
	// UpdatePolicyStreaks makes the device's streaks those of now, the
	// policies in force as a report observed at at judged them (each
	// entry's Since is ignored), in one transaction: an entry whose status
	// or query digest differs from the stored streak of its policy, or
	// whose policy has none, starts one at at; one that matches keeps its
	// start; the streak of a policy not in now is forgotten. It reports
	// whether anything changed. ErrInvalid for an empty or oversized id, a
	// policy named twice, more than MaxPolicyStreaks entries or a zero at.
	UpdatePolicyStreaks(ctx context.Context, deviceID string, at time.Time, now []PolicyStreak) (bool, error)
}
