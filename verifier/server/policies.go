package server

import (
	"sync"
	"sync/atomic"

	"github.com/clearance/clearance/pkg/policy"
	agentv1 "github.com/clearance/clearance/proto/gen/clearance/agent/v1"
	"github.com/clearance/clearance/verifier/decision"
)

// policySource holds the policy set in force, converted once to the form
// agents receive, and re-reads the file on demand. A bad file never replaces
// a good set.
type policySource struct {
	path string
	mu   sync.Mutex // serializes reloads
	cur  atomic.Pointer[agentv1.PolicySet]
	// rollout holds the rollout settings of cur's policies, by id: agents
	// do not need them, so they stay out of the PolicySet.
	rollout atomic.Pointer[map[string]decision.PolicyRollout]
	// scopes are the set's group scopes, by policy id (nil: none).
	scopes atomic.Pointer[map[string]decision.Scope]
}

func newPolicySource(path string) (*policySource, error) {
	p := &policySource{path: path}
	if _, err := p.Reload(); err != nil {
		return nil, err
	}
	return p, nil
}

func (p *policySource) Current() *agentv1.PolicySet { return p.cur.Load() }

// Scopes returns the group scopes of the set in force.
func (p *policySource) Scopes() map[string]decision.Scope {
	if m := p.scopes.Load(); m != nil {
		return *m
	}
	return nil
}

func (p *policySource) Reload() (*agentv1.PolicySet, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	set, err := policy.Load(p.path)
	if err != nil {
		return nil, err
	}
	ps := set.Proto()
	ro := rolloutSettings(set)
	p.rollout.Store(&ro)
	scopes := map[string]decision.Scope{}
	for _, pol := range set.Policies {
		if len(pol.Groups) > 0 || len(pol.ExcludeGroups) > 0 {
			scopes[pol.ID] = decision.Scope{Groups: pol.Groups, Exclude: pol.ExcludeGroups}
		}
	}
	// Scopes first: a sign-in that reads the new set finds its scopes.
	p.scopes.Store(&scopes)
	p.cur.Store(ps)
	return ps, nil
}

// Rollout returns the rollout settings of the policies in force, by id.
// A reload may land between reading these and Current: the decision
// matches them by policy id, so a policy briefly without settings is
// enforced.
func (p *policySource) Rollout() map[string]decision.PolicyRollout {
	if m := p.rollout.Load(); m != nil {
		return *m
	}
	return nil
}

func rolloutSettings(set *policy.Set) map[string]decision.PolicyRollout {
	m := make(map[string]decision.PolicyRollout, len(set.Policies))
	for _, pol := range set.Policies {
		if pol.Enforcement == "" && pol.Grace == 0 && !pol.AllowBypass {
			continue
		}
		m[pol.ID] = decision.PolicyRollout{Enforcement: decision.Enforcement(pol.Enforcement), Grace: pol.Grace, AllowBypass: pol.AllowBypass}
	}
	return m
}
