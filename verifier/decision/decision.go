// Package decision owns the access decision made at sign-in: given what the
// verifier knows about a device (its record, its latest verified posture
// report, the policies in force and the clock), may the user in front of it
// sign in, and if not, why and what must they fix.
//
// Decide is a pure function: no I/O, no clock reads, no goroutines. Whoever
// calls it (the SAML IdP, the admin API's dry run) gathers the inputs, runs
// any live check first, and stores and logs the Decision it returns. That
// keeps every rule testable without a network and makes the decision log a
// faithful record of exactly what was decided from what.
//
// It fails closed: anything it cannot vouch for denies.
package decision

import (
	"bytes"
	"strconv"
	"strings"
	"time"

	"github.com/clearance/clearance/pkg/policy"
	agentv1 "github.com/clearance/clearance/proto/gen/clearance/agent/v1"
	"github.com/clearance/clearance/verifier/reason"
	"github.com/clearance/clearance/verifier/storage"
)

// Defaults for Input's zero fields.
const (
	// DefaultMaxPostureAge is how old the latest report may be
	// (max_posture_age).
	DefaultMaxPostureAge = 5 * time.Minute
	// DefaultMaxClockSkew is how far in the future a report's observed_at may
	// be. It equals ingest.DefaultMaxSkew so that a report ingest accepted is
	// not then refused here for the same clock; set both from one setting.
	DefaultMaxClockSkew = 5 * time.Minute
	// DefaultLiveCheckAfter is the age past which a live check is worth
	// asking for before deciding (live_check_after).
	DefaultLiveCheckAfter = 30 * time.Second
)

// Input is everything a decision depends on. The caller reads it from
// storage and the request; Decide reads nothing else.
type Input struct {
	// Device is the device the browser certificate maps to; nil when the
	// certificate names no enrolled device.
	Device *storage.Device
	// Report is the device's latest verified report (after any live check);
	// nil if it has none.
	Report *agentv1.PostureReport
	// ReportReceivedAt is when the verifier stored Report (storage.Report's
	// ReceivedAt). It caps how fresh the report can look: see Decide.
	// Zero when unknown.
	ReportReceivedAt time.Time
	// Policies is the policy set in force now. nil (not loaded) denies; an
	// empty set requires nothing.
	Policies *agentv1.PolicySet
	// Username is the Okta username from the AuthnRequest's Subject. It is
	// only recorded; access depends on the device, not on who is signing in.
	Username string
	// Now is the time of the decision.
	Now time.Time
	// MaxPostureAge bounds the report's age (default DefaultMaxPostureAge).
	MaxPostureAge time.Duration
	// MaxClockSkew bounds how far observed_at may be ahead of Now (default
	// DefaultMaxClockSkew).
	MaxClockSkew time.Duration
	// LiveCheck is what the caller's live check (CheckNow) did before
	// deciding. It only changes what a stale or absent report is told to
	// the user, and is recorded.
	LiveCheck LiveCheck
	// BrowserCert is the browser certificate the sign-in presented, when it
	// is one (nil for the agent's own certificate, which proves the device
	// key itself).
	BrowserCert *BrowserCert
	// Rollout softens enforcement: modes, grace, bypass and exemptions
	// (see Rollout). The zero value enforces every policy.
	Rollout Rollout
	// Person is the signing-in user as the directory knows them; nil when
	// people are not checked (no SCIM, binding off, no group policies).
	Person *Person
	// Scopes are the policies' group scopes, by policy id; a policy
	// without one applies to everyone.
	Scopes map[string]Scope
}

// BrowserCert is a browser certificate presented at sign-in.
type BrowserCert struct {
	Serial string // lowercase hex, as the verifier records serials
	SHA1   string // lowercase hex fingerprint
	// RequireVouched: the certificate counts only if the report lists it
	// among the certificates in the Mac's user keychains. When false (a
	// weaker mode the operator chose), it is recorded as not checked.
	RequireVouched bool
}

// Vouching is what the report said about the browser certificate.
type Vouching string

const (
	// VouchingNone: no browser certificate (the agent's own), or decided
	// before the report was looked at.
	VouchingNone Vouching = ""
	// Vouched: the Mac's agent reported the certificate in a user keychain.
	Vouched Vouching = "vouched"
	// NotVouched: it did not, and that is required.
	NotVouched Vouching = "not_vouched"
	// VouchingOff: not required; the certificate was not checked against the report.
	VouchingOff Vouching = "off"
)

// LiveCheck is the outcome of asking the agent to report now.
type LiveCheck int

const (
	// LiveCheckNone: no live check was made (the report was recent enough,
	// or the caller does not live-check).
	LiveCheckNone LiveCheck = iota
	// LiveCheckAnswered: the agent answered and Report is its answer.
	LiveCheckAnswered
	// LiveCheckTimedOut: the agent was asked but no report arrived in time;
	// the decision falls back to the latest stored report.
	LiveCheckTimedOut
	// LiveCheckOffline: the agent is not connected, so it could not be asked.
	LiveCheckOffline
)

// String is the value logged and stored for l.
func (l LiveCheck) String() string {
	switch l {
	case LiveCheckNone:
		return "none"
	case LiveCheckAnswered:
		return "answered"
	case LiveCheckTimedOut:
		return "timed_out"
	case LiveCheckOffline:
		return "agent_offline"
	}
	return "unknown_" + strconv.Itoa(int(l))
}

// Reason is the decision's outcome: a reason.Code from the decision group
// of that package. It is logged, stored in the decision log, used as a
// metric label and picks the page the user sees.
//
// When several reasons apply, the first in Precedence wins: the device's
// identity matters before its posture, and a posture can only be judged from
// a usable, fresh report. Decision.Failing still lists every failing policy
// whatever the reason.
type Reason = reason.Code

// Precedence lists every decision reason in precedence order (allowed last:
// it applies only when nothing else does).
var Precedence = []Reason{
	reason.UnknownDevice, reason.DeviceRevoked,
	reason.UserUnknown, reason.UserDeactivated, reason.UserNotBound,
	reason.NoPolicies, reason.NoReport,
	reason.DeviceMismatch, reason.ClockSkew, reason.StalePosture, reason.CertNotVouched,
	reason.PolicyFailed, reason.PolicyError, reason.PolicyMissing, reason.Allowed,
}

// Status is one policy's outcome in a decision, in the words people see.
type Status string

const (
	StatusPass  Status = "PASS"
	StatusFail  Status = "FAIL"
	StatusError Status = "ERROR"
	// StatusMissing: no result in the report, one with no valid status, or
	// one for another query under the policy's id.
	StatusMissing Status = "MISSING"
)

// Finding is one policy of the set in force, joined with its result.
type Finding struct {
	PolicyID    string
	Name        string
	Description string
	// UserText is the policy's words for the person at the Mac; the
	// remediation page shows it, never Description.
	UserText string
	Status   Status
	// Message is osquery's message for ERROR; empty otherwise.
	Message string
	// Resolution tells the user how to pass.
	Resolution string
	Required   bool
	// Critical policies are never bypassable: "Resolve later" is never
	// offered for them.
	Critical bool

	// Rollout, for a required policy that does not pass (see Rollout):
	// Enforcement is its effective mode, after grace and the ceiling.
	Enforcement Enforcement
	// GraceStarted and GraceEnds bound the policy's grace period on this
	// device; zero when it has none or the result is not FAIL.
	GraceStarted, GraceEnds time.Time
	// BlocksFrom is GraceEnds for a policy that warns only because its
	// grace period runs: from then it blocks. Zero when the policy blocks
	// now, or would not block then either (it is in warn or monitor, the
	// ceiling lowers it, or something waives it).
	BlocksFrom time.Time
	// Waiver says what let it through, if anything; ExemptionID names the
	// exemption for WaiverExempt.
	Waiver      Waiver
	ExemptionID int64
	// OtherExemptionIDs are the other exemptions that cover it too, in
	// the order Rollout.Exemptions lists them.
	OtherExemptionIDs []int64
	// BypassOffered: "Resolve later" is available for it now.
	BypassOffered bool
}

// Decision is the outcome of Decide: what the user sees and what is logged.
type Decision struct {
	Allow  bool
	Reason Reason
	// Failing lists every required policy that is not PASS, in policy-set
	// order, whatever policy Reason wins. Empty when the decision was made
	// before the policies were judged (device, policy set, report or
	// freshness reasons): those posture results are unknown, not failing.
	Failing []Finding
	// Advisory lists policies that are not required and not PASS. They never
	// deny; the remediation page may show them as recommendations.
	Advisory []Finding
	// Results has every policy of the set with its outcome, in set order,
	// for the decision log. nil when the policies were not judged.
	Results []Finding

	// Context for the record.
	DeviceID   string
	DeviceName string // the device's hostname, shown on the remediation page
	Username   string
	// PolicySetVersion is the set in force; ReportPolicySetVersion the one
	// the agent ran. They differ after a policy change until the agent
	// reports again; results are matched by policy id (see Decide).
	PolicySetVersion       string
	ReportPolicySetVersion string
	ReportSeq              uint64
	ObservedAt             time.Time
	// LastReportAt is when the device last reported, whatever the reason
	// (ObservedAt is zero for a decision made before the report was
	// judged): the latest report's observed_at, or the device record's
	// when no usable report was given. Zero for an unknown device or one
	// that never reported. The remediation page shows it as "Last checked".
	LastReportAt time.Time
	// PostureAge is how old the report counted as (see Decide); zero when
	// the decision was made before freshness was measured.
	PostureAge time.Duration
	LiveCheck  LiveCheck
	// CertVouching says whether the browser certificate was vouched for.
	CertVouching Vouching

	// Mode is the enforcement outcome (ModeEnforce unless rollout settings
	// changed what the policies alone would give). Empty when the decision
	// was made before the policies were judged.
	Mode Mode
	// WouldDeny is the policy reason an allow with waivers would otherwise
	// have denied with; empty otherwise.
	WouldDeny Reason
	// CanContinue: every policy blocking is in Warn; Continue completes.
	CanContinue bool
	// CanResolveLater: "Resolve later" would complete the sign-in.
	CanResolveLater bool
	// BlockFrom is the earliest end of a grace period that makes this
	// denial a warning: from then on it blocks. Zero when none.
	BlockFrom time.Time
	// BindingMismatch: the user is not bound to this Mac, which
	// --user-binding warn allows and records.
	BindingMismatch bool
}

// Bypassable reports whether d is a denial that a per-policy exception
// could lift: only required policies failed, and none of them is critical.
// Device, report and freshness denials are never bypassable. Whether
// "Resolve later" is offered now is CanResolveLater, which also needs the
// policies to allow it and the period since the last one to have passed.
func (d Decision) Bypassable() bool {
	switch d.Reason {
	case reason.PolicyFailed, reason.PolicyError, reason.PolicyMissing:
	default:
		return false
	}
	for _, f := range d.Failing {
		if f.Critical {
			return false
		}
	}
	return len(d.Failing) > 0
}

// Decide decides whether the device in in may be used to sign in.
//
// Rules, in precedence order (the first that applies is the Reason):
//
//  1. unknown device, 2. revoked device,
//     2a. the user: not provisioned (when required), deactivated, not bound
//     to this Mac (under --user-binding enforce),
//  3. no policy set loaded,
//  4. no usable report, 5. report about another device,
//  6. observed_at more than MaxClockSkew in the future,
//  7. report older than MaxPostureAge,
//  8. a browser certificate the report does not list (when required),
//  9. any required policy FAIL, 10. ERROR, 11. missing — counting only
//     the policies that block after Input.Rollout (see applyRollout).
//
// Freshness: a report's age is measured from its observed_at (when the
// agent ran the queries, which is what the posture describes), but never
// from later than ReportReceivedAt: a Mac whose clock runs ahead cannot make
// its report look newer than the moment the verifier received it. A report
// exactly MaxPostureAge old is still fresh (the same boundary ingest uses).
//
// Policies are matched to results by policy id and query, whatever policy
// set version the report names: after a policy change, unchanged policies
// keep their results, and a new required policy, or one whose query
// changed, has no result, so it is missing and denies until the agent runs
// it (NeedsLiveCheck asks for a live check when the versions differ, which
// a connected agent answers at once). A result from an agent that predates
// query digests counts by policy id alone, until that agent reports again
// (at most MaxPostureAge). Results for policies no longer in the set are
// ignored.
//
// A policy counts for access when it is required or critical (the policy
// loader refuses a critical policy that is not required, so this matches the
// admin view's summary for every loadable set).
func Decide(in Input) Decision {
	d := Decision{
		Username:               in.Username,
		PolicySetVersion:       in.Policies.GetVersion(),
		ReportPolicySetVersion: in.Report.GetPolicySetVersion(),
		ReportSeq:              in.Report.GetSeq(),
		LiveCheck:              in.LiveCheck,
	}
	if in.Device != nil {
		d.DeviceID, d.DeviceName = in.Device.ID, in.Device.Hostname
		d.LastReportAt = in.Device.LastReportAt
		if ts := in.Report.GetObservedAt(); ts.CheckValid() == nil && in.Report.GetDeviceId() == in.Device.ID && ts.AsTime().After(d.LastReportAt) {
			d.LastReportAt = ts.AsTime()
		}
	}

	// 1-2. Who is this device?
	switch {
	case in.Device == nil || in.Device.ID == "":
		return d.deny(reason.UnknownDevice)
	case in.Device.Revoked():
		return d.deny(reason.DeviceRevoked)
	}

	// 2a. Who is signing in: provisioned, active, bound to this Mac?
	if r := d.judgePerson(in.Person); r != "" {
		return d.deny(r)
	}

	// 3. Without the policies in force there is nothing to hold the device to.
	if in.Policies == nil {
		return d.deny(reason.NoPolicies)
	}

	// 4-7. Is there a report that describes this device now?
	ts := in.Report.GetObservedAt()
	if in.Report == nil || ts == nil || ts.CheckValid() != nil {
		return d.deny(reason.NoReport)
	}
	if in.Report.GetDeviceId() != in.Device.ID {
		return d.deny(reason.DeviceMismatch)
	}
	observed := ts.AsTime()
	d.ObservedAt = observed
	if observed.Sub(in.Now) > orDefault(in.MaxClockSkew, DefaultMaxClockSkew) {
		return d.deny(reason.ClockSkew)
	}
	d.PostureAge = in.Now.Sub(anchor(observed, in.ReportReceivedAt))
	if d.PostureAge > orDefault(in.MaxPostureAge, DefaultMaxPostureAge) {
		return d.deny(reason.StalePosture)
	}

	// 8. Is the browser's certificate one this Mac's agent has seen?
	if bc := in.BrowserCert; bc != nil {
		switch {
		case !bc.RequireVouched:
			d.CertVouching = VouchingOff
		case lists(in.Report, bc):
			d.CertVouching = Vouched
		default:
			d.CertVouching = NotVouched
			return d.deny(reason.CertNotVouched)
		}
	}

	// 9-11. Does it pass every policy that counts (of those that apply to
	// this person)?
	// The reason is the one the blocking policies give; rollout settings
	// (monitor, warn, grace, bypass, exemptions) decide which block.
	d.judge(scoped(in.Policies, in.Scopes, in.Person), in.Report)
	blocking := d.applyRollout(in)
	if r := policyReason(blocking); r != "" {
		return d.deny(r)
	}
	d.WouldDeny = policyReason(d.Failing)
	d.Allow, d.Reason = true, reason.Allowed
	return d
}

// NeedsLiveCheck reports whether the caller should ask the agent for a fresh
// report (CheckNow) before deciding: the device could be allowed at all, and
// its latest report is missing, older than after (default
// DefaultLiveCheckAfter), or was made for another policy set version. It
// applies the same freshness rule as Decide and, like it, reads no clock.
func NeedsLiveCheck(in Input, after time.Duration) bool {
	if in.Device == nil || in.Device.ID == "" || in.Device.Revoked() || in.Policies == nil {
		return false // nothing a fresh report could change
	}
	ts := in.Report.GetObservedAt()
	if in.Report == nil || ts == nil || ts.CheckValid() != nil {
		return true
	}
	if in.Report.GetPolicySetVersion() != in.Policies.GetVersion() {
		return true
	}
	if bc := in.BrowserCert; bc != nil && bc.RequireVouched && !lists(in.Report, bc) {
		return true // a certificate installed since the last report
	}
	return in.Now.Sub(anchor(ts.AsTime(), in.ReportReceivedAt)) > orDefault(after, DefaultLiveCheckAfter)
}

// lists reports whether r names bc among the Mac's keychain certificates,
// by serial and fingerprint both.
func lists(r *agentv1.PostureReport, bc *BrowserCert) bool {
	for _, c := range r.GetCertificates() {
		if c.GetSerial() == bc.Serial && c.GetSha1() == bc.SHA1 && bc.Serial != "" {
			return true
		}
	}
	return false
}

// anchor is the instant a report's age is counted from: observed_at, or the
// receive time if that is earlier (the device clock ran ahead).
func anchor(observed, received time.Time) time.Time {
	if !received.IsZero() && received.Before(observed) {
		return received
	}
	return observed
}

func orDefault(v, def time.Duration) time.Duration {
	if v <= 0 {
		return def
	}
	return v
}

// Judge joins the policies in force with a report's results: every policy
// of the set with its outcome, in set order. It is the one answer to "which
// policies does this report pass": Decide and the admin API's device views
// both use it. A policy counts (Finding.Required) when it is required or
// critical; a policy with no result, or with no valid status, is MISSING,
// which never passes, and so is a result whose query digest is not the
// policy's query's (a report from before the query changed; results
// without a digest, from agents that predate it, count by policy id).
// Results for policies not in the set are ignored.
func Judge(ps *agentv1.PolicySet, r *agentv1.PostureReport) []Finding {
	out := make([]Finding, 0, len(ps.GetPolicies()))
	Statuses(ps, r, nil, func(_ int, p *agentv1.Policy, st Status, res *agentv1.PolicyResult) {
		f := Finding{
			PolicyID:    p.GetId(),
			Name:        p.GetName(),
			Description: p.GetDescription(),
			UserText:    p.GetUserText(),
			Resolution:  p.GetResolution(),
			Required:    p.GetRequired() || p.GetCritical(),
			Critical:    p.GetCritical(),
			Status:      st,
		}
		if st == StatusError {
			f.Message = res.GetMessage()
		}
		out = append(out, f)
	})
	return out
}

// Statuses calls fn with each policy of the set, in set order, its status
// as Judge gives it, and the result it was judged by (nil for MISSING).
// digests, when not nil, holds the policies' query digests in set order
// (policy.QueryDigest of each), so that a caller judging many reports
// against one set computes them once.
func Statuses(ps *agentv1.PolicySet, r *agentv1.PostureReport, digests [][]byte, fn func(i int, p *agentv1.Policy, st Status, res *agentv1.PolicyResult)) {
	find := resultFinder(r.GetResults())
	for i, p := range ps.GetPolicies() {
		res := find(p.GetId())
		if d := res.GetQuerySha256(); len(d) > 0 {
			var want []byte
			if digests != nil {
				want = digests[i]
			} else {
				want = policy.QueryDigest(p.GetQuery())
			}
			if !bytes.Equal(d, want) {
				// A result for another query under this id (the report was
				// made before the query changed) says nothing about this one.
				res = nil
			}
		}
		st := StatusMissing
		switch res.GetStatus() {
		case agentv1.PolicyStatus_POLICY_STATUS_PASS:
			st = StatusPass
		case agentv1.PolicyStatus_POLICY_STATUS_FAIL:
			st = StatusFail
		case agentv1.PolicyStatus_POLICY_STATUS_ERROR:
			st = StatusError
		default:
			res = nil
		}
		fn(i, p, st, res)
	}
}

// Compliant reports whether fs (from Judge) has no policy that counts and
// does not pass.
func Compliant(fs []Finding) bool {
	for _, f := range fs {
		if f.Required && f.Status != StatusPass {
			return false
		}
	}
	return true
}

// judge fills d's findings from Judge.
func (d *Decision) judge(ps *agentv1.PolicySet, r *agentv1.PostureReport) {
	d.Results = Judge(ps, r)
	for _, f := range d.Results {
		switch {
		case f.Status == StatusPass:
		case f.Required:
			d.Failing = append(d.Failing, f)
		default:
			d.Advisory = append(d.Advisory, f)
		}
	}
}

// smallReport is the result count up to which results are found by a linear
// scan: typical sets have about ten policies, and scanning them is cheaper
// than building a map on every sign-in.
const smallReport = 16

// resultFinder returns a lookup of a report's result by policy id. Ingest
// refuses a report that names a policy twice; should one get here anyway, the
// first non-PASS result wins, so a PASS never hides a FAIL or ERROR.
func resultFinder(results []*agentv1.PolicyResult) func(id string) *agentv1.PolicyResult {
	if len(results) <= smallReport {
		return func(id string) *agentv1.PolicyResult {
			var found *agentv1.PolicyResult
			for _, res := range results {
				if res.GetPolicyId() != id {
					continue
				}
				if res.GetStatus() != agentv1.PolicyStatus_POLICY_STATUS_PASS {
					return res
				}
				found = res
			}
			return found
		}
	}
	byID := make(map[string]*agentv1.PolicyResult, len(results))
	for _, res := range results {
		if prev, ok := byID[res.GetPolicyId()]; ok && prev.GetStatus() != agentv1.PolicyStatus_POLICY_STATUS_PASS {
			continue
		}
		byID[res.GetPolicyId()] = res
	}
	return func(id string) *agentv1.PolicyResult { return byID[id] }
}

func (d Decision) deny(r Reason) Decision {
	d.Allow, d.Reason = false, r
	return d
}

// MaxStoredMessage bounds an osquery ERROR message kept in the decision log.
const MaxStoredMessage = 512

// StoredResults is d's policy results as the decision log keeps them, in
// policy-set order: each result's status, and for one that did not pass,
// its effective enforcement, what waived it (monitor, exempt, warned,
// bypassed) and its grace period's end. Every source of decisions (a
// sign-in, Cloudflare) records them alike, so the rollout reports read
// them all.
func (d Decision) StoredResults() []storage.DecisionResult {
	if len(d.Results) == 0 {
		return nil
	}
	out := make([]storage.DecisionResult, len(d.Results))
	for i, f := range d.Results {
		msg := f.Message
		if len(msg) > MaxStoredMessage {
			msg = strings.ToValidUTF8(msg[:MaxStoredMessage], "")
		}
		out[i] = storage.DecisionResult{PolicyID: f.PolicyID, Status: string(f.Status), Required: f.Required, Critical: f.Critical, Message: msg}
	}
	// Results and Failing hold the same policies; the rollout of those
	// that did not pass is on the failing ones.
	for _, f := range d.Failing {
		for i := range out {
			if out[i].PolicyID == f.PolicyID {
				out[i].Enforcement, out[i].Waiver, out[i].GraceEnds, out[i].ExemptionID = string(f.Enforcement), string(f.Waiver), f.GraceEnds, f.ExemptionID
				out[i].OtherExemptionIDs = f.OtherExemptionIDs
				break
			}
		}
	}
	return out
}
