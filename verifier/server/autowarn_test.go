package server_test

import (
	"testing"

	"github.com/clearance/clearance/verifier/config"
)

// TestAutoApprovalWarned: a verifier that enrolls any machine with a secret
// says so at start, with what to use instead; one under known does not.
func TestAutoApprovalWarned(t *testing.T) {
	t.Parallel()
	h := start(t)
	h.logs.has(t, "enroll_approval is auto", "in production use known")
	k := startWith(t, func(c *config.Config) { c.EnrollApproval = config.EnrollKnown })
	if k.logs.HasLine("enroll_approval is auto") {
		t.Error("a verifier under known warned of auto")
	}
}
