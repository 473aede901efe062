// Package policy runs posture policies through osquery and turns each into a
// PASS, FAIL or ERROR result. A policy passes when its query returns at least
// one row; a query that cannot run is an ERROR carrying osquery's message,
// never a PASS.
package policy

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/clearance/clearance/agent/osquery"
	policyfile "github.com/clearance/clearance/pkg/policy"
	"github.com/clearance/clearance/pkg/report"
	agentv1 "github.com/clearance/clearance/proto/gen/clearance/agent/v1"
)

// Platform is the platform this binary was built for, as osquery names it.
func Platform() string { return runtime.GOOS }

// HostPlatform asks osquery which platform it observes (os_version.platform)
// and names it the way policies do: "darwin", "windows", or "linux" for any
// Linux distribution. Policies describe the host osquery sees, which is not
// always the one the agent binary was built for. If osquery cannot answer,
// it returns Platform() and false.
func HostPlatform(ctx context.Context, q osquery.Querier) (string, bool) {
	rows, err := q.Query(ctx, "SELECT platform FROM os_version")
	if err != nil || len(rows) == 0 || rows[0]["platform"] == "" {
		return Platform(), false
	}
	switch p := rows[0]["platform"]; p {
	case "darwin", "windows":
		return p, true
	default:
		return "linux", true
	}
}

// Applies reports whether p runs on platform (no platforms means all).
func Applies(p *agentv1.Policy, platform string) bool {
	ps := p.GetPlatforms()
	return len(ps) == 0 || slices.Contains(ps, platform)
}

// Filter returns the policies of ps that apply to platform, in order.
func Filter(ps *agentv1.PolicySet, platform string) []*agentv1.Policy {
	var out []*agentv1.Policy
	for _, p := range ps.GetPolicies() {
		if Applies(p, platform) {
			out = append(out, p)
		}
	}
	return out
}

// Run runs one policy. now is the clock (default time.Now).
func Run(ctx context.Context, q osquery.Querier, p *agentv1.Policy, now func() time.Time) *agentv1.PolicyResult {
	if now == nil {
		now = time.Now
	}
	start := now()
	rows, err := q.Query(ctx, p.GetQuery())
	res := &agentv1.PolicyResult{
		PolicyId:    p.GetId(),
		Duration:    durationpb.New(max(now().Sub(start), 0)),
		QuerySha256: policyfile.QueryDigest(p.GetQuery()),
	}
	switch {
	case err != nil:
		res.Status = agentv1.PolicyStatus_POLICY_STATUS_ERROR
		res.Message = Message(err)
	case len(rows) > 0:
		res.Status = agentv1.PolicyStatus_POLICY_STATUS_PASS
		res.Rows = uint32(min(len(rows), int(^uint32(0))))
	default:
		res.Status = agentv1.PolicyStatus_POLICY_STATUS_FAIL
	}
	return res
}

// Message is the text an ERROR result carries: osquery's own message when
// osquery refused the query, else why osquery could not be asked.
func Message(err error) string {
	var qe *osquery.QueryError
	msg := err.Error()
	if errors.As(err, &qe) {
		msg = qe.Message
		if msg == "" {
			msg = fmt.Sprintf("osquery returned status %d", qe.Code)
		}
	}
	msg = strings.ToValidUTF8(msg, "\uFFFD")
	if len(msg) > report.MaxMessageSize {
		msg = strings.ToValidUTF8(msg[:report.MaxMessageSize-len("…")], "") + "…"
	}
	return msg
}

// StatusWord is PASS, FAIL or ERROR, the words people see.
func StatusWord(s agentv1.PolicyStatus) string {
	return strings.TrimPrefix(s.String(), "POLICY_STATUS_")
}
