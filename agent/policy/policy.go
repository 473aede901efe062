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
	"unicode/utf8"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/clearance/clearance/agent/osquery"
	policyfile "github.com/clearance/clearance/pkg/policy"
	"github.com/clearance/clearance/pkg/printable"
	"github.com/clearance/clearance/pkg/report"
	agentv1 "github.com/clearance/clearance/proto/gen/clearance/agent/v1"
)

// CheckSet refuses a policy set the agent could not report on as the
// verifier accepts reports: more policies than a report may hold results
// (report.MaxResults), a version longer than a report may carry, a policy
// id the verifier's loader would refuse, or one id twice. A verifier sending one (only a broken or compromised one
// would) would otherwise have the agent build, sign and send reports the
// verifier refuses, at every connect.
func CheckSet(ps *agentv1.PolicySet) error {
	if n := len(ps.GetPolicies()); n > report.MaxResults {
		return fmt.Errorf("%d policies, more than the %d a report may hold", n, report.MaxResults)
	}
	if n := len(ps.GetVersion()); n > report.MaxVersionSize {
		return fmt.Errorf("a version of %d bytes, more than the %d a report may carry", n, report.MaxVersionSize)
	}
	seen := make(map[string]bool, len(ps.GetPolicies()))
	for i, p := range ps.GetPolicies() {
		id := p.GetId()
		switch {
		case !policyfile.ValidID(id):
			return fmt.Errorf("policies[%d]: %q is not a valid policy id", i, printable.Line(clip(id)))
		case seen[id]:
			return fmt.Errorf("policies[%d]: id %q twice", i, id)
		}
		seen[id] = true
	}
	return nil
}

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

// MaxMessageSize bounds the message an ERROR result carries. osquery's own
// messages ("no such column: sid") are far shorter; a longer one is most
// likely a query made to carry data out in its error text (a json_extract
// path built from a table's rows), and the bound keeps that to a trickle.
const MaxMessageSize = 256

// Run runs one policy. now is the clock (default time.Now). A query that
// is not a single read-only statement (policyfile.CheckQuery) is never
// sent to osquery: the verifier's loader refuses such a policy, so one that
// arrives anyway came from something else speaking for the verifier.
func Run(ctx context.Context, q osquery.Querier, p *agentv1.Policy, now func() time.Time) *agentv1.PolicyResult {
	if now == nil {
		now = time.Now
	}
	res := &agentv1.PolicyResult{
		PolicyId:    p.GetId(),
		QuerySha256: policyfile.QueryDigest(p.GetQuery()),
	}
	if err := policyfile.CheckQuery(p.GetQuery()); err != nil {
		res.Status = agentv1.PolicyStatus_POLICY_STATUS_ERROR
		res.Message = clip("refused by the agent, not run: the query " + err.Error())
		res.Duration = durationpb.New(0)
		return res
	}
	start := now()
	rows, err := q.Query(ctx, p.GetQuery())
	res.Duration = durationpb.New(max(now().Sub(start), 0))
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

// NotRun is the ERROR result of a policy left out of a run, saying why.
func NotRun(p *agentv1.Policy, why string) *agentv1.PolicyResult {
	return &agentv1.PolicyResult{
		PolicyId:    p.GetId(),
		QuerySha256: policyfile.QueryDigest(p.GetQuery()),
		Status:      agentv1.PolicyStatus_POLICY_STATUS_ERROR,
		Message:     clip("not run: " + why),
		Duration:    durationpb.New(0),
	}
}

// Message is the text an ERROR result carries: osquery's own message when
// osquery refused the query, else why osquery could not be asked.
func Message(err error) string {
	var qe *osquery.QueryError
	var se *osquery.SocketError
	msg := err.Error()
	switch {
	case errors.As(err, &qe):
		msg = qe.Message
		if msg == "" {
			msg = fmt.Sprintf("osquery returned status %d", qe.Code)
		}
	case errors.As(err, &se):
		// The socket's path is a setting: the report says what is wrong
		// with it, the agent's log where.
		msg = osquery.ErrUnavailable.Error() + ": " + se.Brief()
	}
	return clip(msg)
}

// clip makes msg valid UTF-8 of at most MaxMessageSize bytes, cut on a
// character boundary and marked with "…" when cut.
func clip(msg string) string {
	msg = strings.ToValidUTF8(msg, "\uFFFD")
	if len(msg) <= MaxMessageSize {
		return msg
	}
	cut := MaxMessageSize - len("…")
	for cut > 0 && !utf8.RuneStart(msg[cut]) {
		cut--
	}
	return msg[:cut] + "…"
}

// StatusWord is PASS, FAIL or ERROR, the words people see.
func StatusWord(s agentv1.PolicyStatus) string {
	return strings.TrimPrefix(s.String(), "POLICY_STATUS_")
}
