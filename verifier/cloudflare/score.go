package cloudflare

import (
	"fmt"

	"github.com/clearance/clearance/verifier/decision"
)

// Default scores (the cloudflare-score-* settings).
const (
	// DefaultScoreCompliant: every policy that counts passes on fresh
	// posture, and nothing warns.
	DefaultScoreCompliant = 100
	// DefaultScoreWarning: allowed, with warnings: a policy that does not
	// count for access (advisory) does not pass. Policies in a warn
	// rollout mode belong here too.
	DefaultScoreWarning = 90
)

// Verdicts, as logged and counted; a denied device's verdict is its
// decision reason (unknown_device, device_revoked, stale_posture,
// policy_failed, …).
const (
	VerdictCompliant = "compliant"
	VerdictWarning   = "warning"
)

// Scores maps a sign-in decision to the 0-100 score Cloudflare's posture
// rules compare. Every denied decision scores 0: a device that could not
// sign in through Okta gets nothing from Cloudflare either.
type Scores struct {
	Compliant int
	// Warning is the score of an allowed device with warnings.
	Warning int
}

// DefaultScores are the scores with no settings.
var DefaultScores = Scores{Compliant: DefaultScoreCompliant, Warning: DefaultScoreWarning}

// Check refuses scores outside 1..100 and a warning that scores above
// compliance.
func (s Scores) Check() error {
	for _, v := range []struct {
		name  string
		score int
	}{{"compliant", s.Compliant}, {"warning", s.Warning}} {
		if v.score < 1 || v.score > 100 {
			return fmt.Errorf("the %s score %d is not between 1 and 100 (0 is for devices that are denied)", v.name, v.score)
		}
	}
	if s.Warning > s.Compliant {
		return fmt.Errorf("the warning score %d is above the compliant score %d", s.Warning, s.Compliant)
	}
	return nil
}

// For is d's score and verdict. It reads only d, which came from
// decision.Decide: the same answer a sign-in gets.
//
// Rollout settings score as warnings, never as compliance: a device that
// passes only because a policy is in monitor mode or exempt (WouldDeny),
// or that a sign-in would let through after Continue (a policy in warn
// mode or its grace period), is not compliant, and Cloudflare has no
// Continue to press. A posture rule of "score >= compliant" keeps such
// devices out; one of "score >= warning" lets them in during a rollout.
func (s Scores) For(d decision.Decision) (int, string) {
	switch {
	case !d.Allow && d.CanContinue:
		return s.Warning, VerdictWarning
	case !d.Allow:
		return 0, string(d.Reason)
	case d.WouldDeny != "" || len(d.Advisory) > 0:
		return s.Warning, VerdictWarning
	}
	return s.Compliant, VerdictCompliant
}
