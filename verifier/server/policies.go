package server

import (
	"sync"
	"sync/atomic"

	"github.com/clearance/clearance/pkg/policy"
	agentv1 "github.com/clearance/clearance/proto/gen/clearance/agent/v1"
	"github.com/clearance/clearance/verifier/access"
	"github.com/clearance/clearance/verifier/decision"
)

// policySource holds the policy set in force, converted once to the form
// agents receive, with its rollout settings and group scopes, and re-reads
// the file on demand. A bad file never replaces a good set.
type policySource struct {
	path string
	mu   sync.Mutex // serializes reloads
	// cur is the set in force with what goes with it, replaced whole by a
	// reload, so that a decision that takes it once judges one set.
	cur atomic.Pointer[access.PolicySnapshot]
	// loaded, when set, is called with each set a reload puts in force.
	loaded func(access.PolicySnapshot)
	// file is the set in force as the file gave it (under mu), for the
	// changes a reload records.
	file *policy.Set
}

func newPolicySource(path string) (*policySource, error) {
	p := &policySource{path: path}
	if _, err := p.Reload(nil); err != nil {
		return nil, err
	}
	return p, nil
}

// Snapshot returns the set in force, its rollout settings and its scopes,
// all of one reload.
func (p *policySource) Snapshot() access.PolicySnapshot { return *p.cur.Load() }

func (p *policySource) Current() *agentv1.PolicySet { return p.cur.Load().Set }

// Scopes returns the group scopes of the set in force.
func (p *policySource) Scopes() map[string]decision.Scope { return p.cur.Load().Scopes }

// Rollout returns the rollout settings of the policies in force, by id.
func (p *policySource) Rollout() map[string]decision.PolicyRollout { return p.cur.Load().Rollout }

// Reload reads the file again. When record is set it is given the new set,
// and how it differs from the set in force (policy.Changes), before it is
// put in force, and an error from it leaves the set in force as it was:
// what the audit log cannot record does not take effect.
func (p *policySource) Reload(record func(next *agentv1.PolicySet, changes []string) error) (*agentv1.PolicySet, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	set, err := policy.Load(p.path)
	if err != nil {
		return nil, err
	}
	snap := access.PolicySnapshot{Set: set.Proto(), Rollout: rolloutSettings(set)}
	for _, pol := range set.Policies {
		if len(pol.Groups) > 0 || len(pol.ExcludeGroups) > 0 {
			if snap.Scopes == nil {
				snap.Scopes = map[string]decision.Scope{}
			}
			snap.Scopes[pol.ID] = decision.Scope{Groups: pol.Groups, Exclude: pol.ExcludeGroups}
		}
	}
	if record != nil {
		if err := record(snap.Set, policy.Changes(p.file, set)); err != nil {
			return nil, err
		}
	}
	p.file = set
	p.cur.Store(&snap)
	if p.loaded != nil {
		p.loaded(snap)
	}
	return snap.Set, nil
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
