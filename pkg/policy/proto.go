package policy

import (
	"google.golang.org/protobuf/types/known/durationpb"

	agentv1 "github.com/clearance/clearance/proto/gen/clearance/agent/v1"
)

// Proto returns the set as agents receive it. The verifier pushes it over
// the Connect stream; `clearance-agent check --policies FILE` runs it
// directly, so both see the same policies and the same Version.
func (s *Set) Proto() *agentv1.PolicySet {
	out := &agentv1.PolicySet{Version: s.Version}
	for _, p := range s.Policies {
		out.Policies = append(out.Policies, &agentv1.Policy{
			Id: p.ID, Name: p.Name, Description: p.Description, UserText: p.UserText, Query: p.Query,
			Platforms: p.Platforms, Resolution: p.Resolution, Required: p.Required,
			Critical: p.Critical, Interval: durationpb.New(p.Interval),
		})
	}
	return out
}
