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

// PolicyStreakStore reads each device's policy streaks, so that a reader
// can say "failing since" and "compliant since" beyond the reports the
// store keeps. They are written with the reports that change them
// (Report.Streaks), in the same transaction, so they follow the reports'
// order and are never lost or kept without their report.
type PolicyStreakStore interface {
	// PolicyStreaks returns the device's streaks by policy id (none for an
	// unknown device).
	PolicyStreaks(ctx context.Context, deviceID string) (map[string]PolicyStreak, error)
}
