package decision

import (
	"github.com/clearance/clearance/pkg/policy"
	agentv1 "github.com/clearance/clearance/proto/gen/clearance/agent/v1"
	"github.com/clearance/clearance/verifier/reason"
)

// Person is who is signing in, as the directory (SCIM) knows them, and
// what the verifier requires of them. The caller reads it; Decide only
// judges it.
type Person struct {
	// RequireProvisioned: the username must be a user Okta provisioned
	// and active (--scim-users required).
	RequireProvisioned bool
	// Known: the username is a provisioned user; Active: not deactivated.
	Known, Active bool
	// Groups are the user's group names (empty when not Known).
	Groups []string
	// Binding is --user-binding; BoundHere says whether the user is bound
	// to the device signing in.
	Binding   UserBinding
	BoundHere bool
}

// UserBinding is how strictly a sign-in's user must be bound to its Mac.
type UserBinding string

const (
	BindingOff     UserBinding = "off"
	BindingWarn    UserBinding = "warn"
	BindingEnforce UserBinding = "enforce"
)

// Scope says whom a policy applies to, by group name (compared regardless
// of case). A policy without a scope applies to everyone.
type Scope struct {
	// Groups: when set, the policy applies only to members of one of them.
	Groups []string
	// Exclude: the policy never applies to members of one of them.
	Exclude []string
}

// judgePerson returns the reason to deny for who is signing in, or "".
// It also records a binding mismatch allowed under warn.
func (d *Decision) judgePerson(p *Person) Reason {
	if p == nil {
		return ""
	}
	switch {
	case p.RequireProvisioned && !p.Known:
		return reason.UserUnknown
	case p.RequireProvisioned && !p.Active, p.Known && !p.Active:
		return reason.UserDeactivated
	}
	if p.BoundHere || p.Binding == BindingOff || p.Binding == "" {
		return ""
	}
	if p.Binding == BindingEnforce {
		return reason.UserNotBound
	}
	d.BindingMismatch = true
	return ""
}

// Applies reports whether a policy scoped by sc holds the person to it. When
// the person's groups are not known, every policy applies: a scope can only
// narrow who is held to a policy for users the directory vouches for.
func Applies(sc Scope, p *Person) bool {
	if len(sc.Groups) == 0 && len(sc.Exclude) == 0 {
		return true
	}
	if p == nil || !p.Known {
		return true
	}
	in := func(names []string) bool {
		for _, n := range names {
			for _, g := range p.Groups {
				if policy.GroupKey(n) == policy.GroupKey(g) {
					return true
				}
			}
		}
		return false
	}
	if in(sc.Exclude) {
		return false
	}
	return len(sc.Groups) == 0 || in(sc.Groups)
}

// scoped is ps without the policies that do not apply to p; ps itself when
// all do.
func scoped(ps *agentv1.PolicySet, scopes map[string]Scope, p *Person) *agentv1.PolicySet {
	if len(scopes) == 0 || ps == nil {
		return ps
	}
	var kept []*agentv1.Policy
	dropped := false
	for _, pol := range ps.GetPolicies() {
		if Applies(scopes[pol.GetId()], p) {
			kept = append(kept, pol)
		} else {
			dropped = true
		}
	}
	if !dropped {
		return ps
	}
	return &agentv1.PolicySet{Version: ps.GetVersion(), Policies: kept}
}
