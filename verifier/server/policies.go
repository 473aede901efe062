package server

import (
	"sync"
	"sync/atomic"

	"github.com/clearance/clearance/pkg/policy"
	agentv1 "github.com/clearance/clearance/proto/gen/clearance/agent/v1"
)

// policySource holds the policy set in force, converted once to the form
// agents receive, and re-reads the file on demand. A bad file never replaces
// a good set.
type policySource struct {
	path string
	mu   sync.Mutex // serializes reloads
	cur  atomic.Pointer[agentv1.PolicySet]
}

func newPolicySource(path string) (*policySource, error) {
	p := &policySource{path: path}
	if _, err := p.Reload(); err != nil {
		return nil, err
	}
	return p, nil
}

func (p *policySource) Current() *agentv1.PolicySet { return p.cur.Load() }

func (p *policySource) Reload() (*agentv1.PolicySet, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	set, err := policy.Load(p.path)
	if err != nil {
		return nil, err
	}
	ps := set.Proto()
	p.cur.Store(ps)
	return ps, nil
}
