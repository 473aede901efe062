// Package policy owns the policy file format: the YAML the security team
// writes, its validation (with file:line:col errors), and the content
// version that tells agents when their policy set changed. The verifier
// serves the policies it loads; `clearance-agent check --policies FILE`
// loads a file the same way, so a file is judged alike on both sides.
//
// A policy passes when its osquery query returns at least one row, as in
// Fleet. The loader fails closed: a file with any error, or with no policies
// at all, yields no Set.
package policy

import (
	"errors"
	"fmt"
	"time"

	"github.com/clearance/clearance/pkg/regularfile"
)

// Limits and defaults of the file format.
const (
	// MaxFileSize bounds a policy file; larger input is refused unread.
	MaxFileSize = 1 << 20
	// MaxPolicies bounds a set: what an agent runs and a report holds
	// results for (report.MaxResults). A larger set would be refused by
	// every agent, which would go on with the set it had.
	MaxPolicies = 1000
	// DefaultInterval is how often the agent runs a policy that sets none.
	DefaultInterval = 60 * time.Second
	// MinInterval and MaxInterval bound a policy's interval.
	MinInterval = 10 * time.Second
	MaxInterval = 24 * time.Hour

	// MaxGrace bounds a policy's grace period: a longer one is a standing
	// exception, which is what exemptions are for.
	MaxGrace = 90 * 24 * time.Hour

	maxNameChars      = 200
	maxQueryBytes     = 64 << 10
	maxResolutionSize = 4 << 10
	maxUserTextSize   = 2 << 10
)

// Policy is one posture check, with defaults applied.
type Policy struct {
	// ID is stable and unique within a set, e.g. "filevault".
	ID string
	// Name is the short human name.
	Name string
	// Description says what the policy checks and why, for the security
	// team: the admin API and logs show it, the remediation page never does.
	Description string
	// UserText says why the check matters, for the person at the Mac; the
	// remediation page shows it under the policy's name.
	UserText string
	// Query is osquery SQL; the policy passes when it returns a row.
	Query string
	// Platforms are osquery platform names; empty means all.
	Platforms []string
	// Resolution tells the user how to pass; shown on the remediation page,
	// where lines starting "1.", "2." … become numbered steps (see
	// docs/policies.md).
	Resolution string
	// Required policies count for access; a policy is required unless
	// its file says "required: false".
	Required bool
	// Critical policies are never bypassable; they are always required.
	Critical bool
	// Interval is how often the agent runs the query.
	Interval time.Duration

	// Enforcement is what a required policy that does not pass does to a
	// sign-in: EnforcementWarn (show it, with Continue), EnforcementMonitor
	// (only record it) or empty, which is enforce (block), the default; a
	// file's "enforcement: enforce" is kept as empty, so it gives the same
	// version as leaving the key out.
	Enforcement string
	// Grace, when set: from the first FAIL seen on a Mac, the policy warns
	// instead of blocking until this much time has passed. Zero: none.
	Grace time.Duration
	// AllowBypass offers "Resolve later" once per period on a sign-in it
	// blocks. Never allowed on a critical policy.
	AllowBypass bool
	// Groups, when set, limit whom the policy applies to: users in one of
	// these directory groups (by name, regardless of case). Empty: everyone.
	Groups []string
	// ExcludeGroups: the policy never applies to users in one of these.
	ExcludeGroups []string
}

// Enforcement modes (Policy.Enforcement).
const (
	EnforcementMonitor = "monitor"
	EnforcementWarn    = "warn"
	EnforcementEnforce = "enforce"
)

// EnforcementModes lists the modes, weakest first.
var EnforcementModes = []string{EnforcementMonitor, EnforcementWarn, EnforcementEnforce}

// Set is a validated, non-empty list of policies.
type Set struct {
	// Version is a content hash of the policies: the same policies give the
	// same version whatever the YAML formatting or comments.
	Version string
	// Policies are in file order.
	Policies []Policy
}

// Lookup returns the policy with the given id.
func (s *Set) Lookup(id string) (Policy, bool) {
	// Sets are small (tens of policies), so a scan beats keeping an index
	// in step with an exported slice.
	for _, p := range s.Policies {
		if p.ID == id {
			return p, true
		}
	}
	return Policy{}, false
}

// Load reads the policy file at path (at most MaxFileSize bytes) and parses
// it. Errors in the file are reported as Errors, prefixed with path.
func Load(path string) (*Set, error) {
	// A FIFO or a device in the file's place is refused, not waited on.
	data, err := regularfile.Read(path, MaxFileSize)
	switch {
	case errors.Is(err, regularfile.ErrTooLarge):
		return nil, tooLarge(path)
	case err != nil:
		return nil, fmt.Errorf("reading policies: %w", err)
	}
	return Parse(data, path)
}

// Parse validates a policy file's contents. filename prefixes every error.
// On any problem it returns nil and an Errors listing every problem found,
// each as "FILE:LINE:COL: message".
func Parse(data []byte, filename string) (*Set, error) {
	if len(data) > MaxFileSize {
		return nil, tooLarge(filename)
	}
	d := &decoder{file: filename}
	policies := d.decode(data)
	if d.failed() {
		return nil, d.errs.finish(d.dropped)
	}
	if len(policies) == 0 {
		// decode reports an empty list; this guards the fail-closed promise.
		return nil, Errors{{File: filename, Msg: "no policies defined"}}
	}
	if len(policies) > MaxPolicies {
		return nil, Errors{{File: filename, Msg: fmt.Sprintf("%d policies, more than the %d an agent runs (and a report holds results for)", len(policies), MaxPolicies)}}
	}
	return &Set{Version: version(policies), Policies: policies}, nil
}

func tooLarge(file string) error {
	return Errors{{File: file, Msg: fmt.Sprintf("file is larger than the limit of %d bytes (1 MiB)", MaxFileSize)}}
}
