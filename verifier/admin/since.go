package admin

import (
	"bytes"
	"context"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/clearance/clearance/pkg/policy"
	adminv1 "github.com/clearance/clearance/proto/gen/clearance/admin/v1"
	agentv1 "github.com/clearance/clearance/proto/gen/clearance/agent/v1"
	"github.com/clearance/clearance/verifier/decision"
	"github.com/clearance/clearance/verifier/storage"
)

// sinces says since when each policy in force has had its result on one
// Mac: the device's policy streaks, kept where their status and query
// digest are those of the policy in force.
type sinces struct {
	streaks map[string]storage.PolicyStreak
	digests map[string][]byte
	// observed is when the report judged was observed: a streak that began
	// after it belongs to a later run, not the one judged.
	observed time.Time
}

// querySums returns each policy's query digest by id.
func querySums(ps *agentv1.PolicySet) map[string][]byte {
	m := make(map[string][]byte, len(ps.GetPolicies()))
	for _, p := range ps.GetPolicies() {
		m[p.GetId()] = policy.QueryDigest(p.GetQuery())
	}
	return m
}

// sincesOf reads the device's streaks. One that cannot be read leaves
// every since unset: logged, never the call's failure.
func (s *Server) sincesOf(ctx context.Context, deviceID string, digests map[string][]byte, observed time.Time) sinces {
	st, err := s.Store.PolicyStreaks(ctx, deviceID)
	if err != nil {
		s.log().Warn("policy streaks not read; since is left out", "device_id", deviceID, "err", err)
	}
	return sinces{streaks: st, digests: digests, observed: observed}
}

// of returns since when the policy has had status st, or nil when that is
// not recorded.
func (ss sinces) of(policyID string, st decision.Status) *timestamppb.Timestamp {
	// The compliance streak has no digest (nor is it a policy's id), and
	// matches the empty one digests gives it.
	k, ok := ss.streaks[policyID]
	if !ok || k.Status != string(st) || !bytes.Equal(k.QuerySHA256, ss.digests[policyID]) {
		return nil
	}
	if !ss.observed.IsZero() && k.Since.After(ss.observed) {
		return nil
	}
	return timestamppb.New(k.Since)
}

// outcomeStatus is a PolicyOutcome's status as the decision names it.
func outcomeStatus(st agentv1.PolicyStatus) decision.Status {
	switch st {
	case agentv1.PolicyStatus_POLICY_STATUS_PASS:
		return decision.StatusPass
	case agentv1.PolicyStatus_POLICY_STATUS_FAIL:
		return decision.StatusFail
	case agentv1.PolicyStatus_POLICY_STATUS_ERROR:
		return decision.StatusError
	}
	return decision.StatusMissing
}

// fill sets each outcome's since and the summary's failing_since or
// compliant_since: the device's own run (storage.ComplianceStreak), when it
// says what the summary says.
func (ss sinces) fill(outcomes []*adminv1.PolicyOutcome, sum *adminv1.PostureSummary) {
	for _, o := range outcomes {
		o.Since = ss.of(o.GetPolicyId(), outcomeStatus(o.GetStatus()))
	}
	if sum == nil {
		return
	}
	st := decision.StatusFail
	if sum.GetCompliant() {
		st = decision.StatusPass
	}
	at := ss.of(storage.ComplianceStreak, st)
	if sum.GetCompliant() {
		sum.CompliantSince = at
	} else {
		sum.FailingSince = at
	}
}
