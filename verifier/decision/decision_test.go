package decision_test

import (
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/clearance/clearance/pkg/policy"
	agentv1 "github.com/clearance/clearance/proto/gen/clearance/agent/v1"
	"github.com/clearance/clearance/verifier/decision"
	"github.com/clearance/clearance/verifier/reason"
	"github.com/clearance/clearance/verifier/storage"
)

const (
	pass = agentv1.PolicyStatus_POLICY_STATUS_PASS
	fail = agentv1.PolicyStatus_POLICY_STATUS_FAIL
	perr = agentv1.PolicyStatus_POLICY_STATUS_ERROR
	// none marks "no result in the report" in test tables.
	none = agentv1.PolicyStatus(-1)
)

var now = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

// pol describes a policy of a test set: id, required, critical.
type pol struct {
	id       string
	required bool
	critical bool
}

func policySet(version string, ps ...pol) *agentv1.PolicySet {
	set := &agentv1.PolicySet{Version: version}
	for _, p := range ps {
		set.Policies = append(set.Policies, &agentv1.Policy{
			Id:          p.id,
			Name:        "Name of " + p.id,
			Description: "Checks " + p.id,
			UserText:    "Why " + p.id + " matters",
			Query:       "SELECT 1",
			Resolution:  "Fix " + p.id,
			Required:    p.required,
			Critical:    p.critical,
		})
	}
	return set
}

// stdSet: three required policies (one critical) and one advisory.
func stdSet() *agentv1.PolicySet {
	return policySet("v1",
		pol{"filevault", true, true},
		pol{"firewall", true, false},
		pol{"sip", true, false},
		pol{"screenlock", false, false},
	)
}

func device() *storage.Device {
	return &storage.Device{ID: "dev-1", Hostname: "alices-mac", HardwareUUID: "UUID-1"}
}

func revoked() *storage.Device {
	d := device()
	d.RevokedAt, d.RevokedReason = now.Add(-time.Hour), "stolen"
	return d
}

// res is one result: policy id and status (none = left out).
type res struct {
	id     string
	status agentv1.PolicyStatus
}

func report(observed time.Time, version string, rs ...res) *agentv1.PostureReport {
	r := &agentv1.PostureReport{
		DeviceId:         "dev-1",
		Seq:              7,
		ObservedAt:       timestamppb.New(observed),
		PolicySetVersion: version,
	}
	for _, x := range rs {
		if x.status == none {
			continue
		}
		pr := &agentv1.PolicyResult{PolicyId: x.id, Status: x.status}
		if x.status == perr {
			pr.Message = "no such table: " + x.id
		}
		r.Results = append(r.Results, pr)
	}
	return r
}

// statuses gives stdSet's policies these statuses, in order.
func statuses(fv, fw, sip, sl agentv1.PolicyStatus) []res {
	return []res{{"filevault", fv}, {"firewall", fw}, {"sip", sip}, {"screenlock", sl}}
}

func allPass() []res { return statuses(pass, pass, pass, pass) }

// base is a passing input; tests change one thing at a time.
func base() decision.Input {
	return decision.Input{
		Device:           device(),
		Report:           report(now.Add(-time.Minute), "v1", allPass()...),
		ReportReceivedAt: now.Add(-time.Minute),
		Policies:         stdSet(),
		Username:         "alice@example.com",
		Now:              now,
	}
}

// ids returns "id:STATUS" for each finding.
func ids(fs []decision.Finding) []string {
	var out []string
	for _, f := range fs {
		out = append(out, f.PolicyID+":"+string(f.Status))
	}
	return out
}

type ruleCase struct {
	name     string
	mod      func(*decision.Input)
	allow    bool
	reason   decision.Reason
	failing  []string
	advisory []string
}

func runCases(t *testing.T, cases []ruleCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			in := base()
			if tc.mod != nil {
				tc.mod(&in)
			}
			d := decision.Decide(in)
			if d.Allow != tc.allow || d.Reason != tc.reason {
				t.Fatalf("Decide = allow %v reason %q; want allow %v reason %q", d.Allow, d.Reason, tc.allow, tc.reason)
			}
			if got := ids(d.Failing); !slices.Equal(got, tc.failing) {
				t.Errorf("Failing = %v, want %v", got, tc.failing)
			}
			if got := ids(d.Advisory); !slices.Equal(got, tc.advisory) {
				t.Errorf("Advisory = %v, want %v", got, tc.advisory)
			}
			if d.Username != in.Username {
				t.Errorf("Username = %q, want %q recorded", d.Username, in.Username)
			}
		})
	}
}

// Each rule on its own, against an otherwise passing input.
func TestDecideRules(t *testing.T) {
	t.Parallel()
	runCases(t, []ruleCase{
		{name: "all pass", allow: true, reason: reason.Allowed},
		{name: "unknown device", mod: func(in *decision.Input) { in.Device = nil },
			reason: reason.UnknownDevice},
		{name: "device without id", mod: func(in *decision.Input) { in.Device = &storage.Device{} },
			reason: reason.UnknownDevice},
		{name: "revoked device", mod: func(in *decision.Input) { in.Device = revoked() },
			reason: reason.DeviceRevoked},
		{name: "no policy set", mod: func(in *decision.Input) { in.Policies = nil },
			reason: reason.NoPolicies},
		{name: "empty policy set requires nothing", mod: func(in *decision.Input) { in.Policies = &agentv1.PolicySet{Version: "v0"} },
			allow: true, reason: reason.Allowed},
		{name: "no report", mod: func(in *decision.Input) { in.Report = nil },
			reason: reason.NoReport},
		{name: "report without observed_at", mod: func(in *decision.Input) { in.Report.ObservedAt = nil },
			reason: reason.NoReport},
		{name: "report with invalid observed_at", mod: func(in *decision.Input) { in.Report.ObservedAt = &timestamppb.Timestamp{Nanos: -1} },
			reason: reason.NoReport},
		{name: "report about another device", mod: func(in *decision.Input) { in.Report.DeviceId = "dev-2" },
			reason: reason.DeviceMismatch},
		{name: "stale posture", mod: func(in *decision.Input) {
			in.Report.ObservedAt = timestamppb.New(now.Add(-6 * time.Minute))
			in.ReportReceivedAt = now.Add(-6 * time.Minute)
		}, reason: reason.StalePosture},
		{name: "observed far in the future", mod: func(in *decision.Input) {
			in.Report.ObservedAt = timestamppb.New(now.Add(10 * time.Minute))
			in.ReportReceivedAt = now
		}, reason: reason.ClockSkew},
		{name: "required FAIL", mod: func(in *decision.Input) { in.Report = report(now, "v1", statuses(pass, fail, pass, pass)...) },
			reason: reason.PolicyFailed, failing: []string{"firewall:FAIL"}},
		{name: "required ERROR", mod: func(in *decision.Input) { in.Report = report(now, "v1", statuses(pass, perr, pass, pass)...) },
			reason: reason.PolicyError, failing: []string{"firewall:ERROR"}},
		{name: "required missing", mod: func(in *decision.Input) { in.Report = report(now, "v1", statuses(pass, none, pass, pass)...) },
			reason: reason.PolicyMissing, failing: []string{"firewall:MISSING"}},
		{name: "required UNSPECIFIED status counts as missing", mod: func(in *decision.Input) {
			in.Report = report(now, "v1", statuses(pass, agentv1.PolicyStatus_POLICY_STATUS_UNSPECIFIED, pass, pass)...)
		}, reason: reason.PolicyMissing, failing: []string{"firewall:MISSING"}},
		{name: "required unknown status value counts as missing", mod: func(in *decision.Input) {
			in.Report = report(now, "v1", statuses(pass, agentv1.PolicyStatus(42), pass, pass)...)
		}, reason: reason.PolicyMissing, failing: []string{"firewall:MISSING"}},
		{name: "report with no results", mod: func(in *decision.Input) { in.Report = report(now, "v1") },
			reason: reason.PolicyMissing, failing: []string{"filevault:MISSING", "firewall:MISSING", "sip:MISSING"}, advisory: []string{"screenlock:MISSING"}},
		{name: "advisory FAIL does not deny", mod: func(in *decision.Input) { in.Report = report(now, "v1", statuses(pass, pass, pass, fail)...) },
			allow: true, reason: reason.Allowed, advisory: []string{"screenlock:FAIL"}},
		{name: "advisory ERROR does not deny", mod: func(in *decision.Input) { in.Report = report(now, "v1", statuses(pass, pass, pass, perr)...) },
			allow: true, reason: reason.Allowed, advisory: []string{"screenlock:ERROR"}},
		{name: "advisory missing does not deny", mod: func(in *decision.Input) { in.Report = report(now, "v1", statuses(pass, pass, pass, none)...) },
			allow: true, reason: reason.Allowed, advisory: []string{"screenlock:MISSING"}},
		{name: "critical without required still counts", mod: func(in *decision.Input) {
			in.Policies = policySet("v1", pol{"filevault", false, true})
			in.Report = report(now, "v1", res{"filevault", fail})
		}, reason: reason.PolicyFailed, failing: []string{"filevault:FAIL"}},
		{name: "results for policies not in the set are ignored", mod: func(in *decision.Input) {
			in.Report.Results = append(in.Report.Results, &agentv1.PolicyResult{PolicyId: "retired", Status: fail})
		}, allow: true, reason: reason.Allowed},
		{name: "duplicate result: FAIL is not hidden by a later PASS", mod: func(in *decision.Input) {
			in.Report.Results = append([]*agentv1.PolicyResult{{PolicyId: "sip", Status: fail}}, in.Report.Results...)
		}, reason: reason.PolicyFailed, failing: []string{"sip:FAIL"}},
		{name: "browser certificate the agent vouched for", mod: func(in *decision.Input) {
			in.BrowserCert = &decision.BrowserCert{Serial: "1f", SHA1: "aa", RequireVouched: true}
			in.Report.Certificates = []*agentv1.KeychainCertificate{{Serial: "2f", Sha1: "bb"}, {Serial: "1f", Sha1: "aa"}}
		}, allow: true, reason: reason.Allowed},
		{name: "browser certificate the agent did not report", mod: func(in *decision.Input) {
			in.BrowserCert = &decision.BrowserCert{Serial: "1f", SHA1: "aa", RequireVouched: true}
		}, reason: reason.CertNotVouched},
		{name: "same serial, other fingerprint is not vouched for", mod: func(in *decision.Input) {
			in.BrowserCert = &decision.BrowserCert{Serial: "1f", SHA1: "aa", RequireVouched: true}
			in.Report.Certificates = []*agentv1.KeychainCertificate{{Serial: "1f", Sha1: "ab"}}
		}, reason: reason.CertNotVouched},
		{name: "empty serial never matches", mod: func(in *decision.Input) {
			in.BrowserCert = &decision.BrowserCert{RequireVouched: true}
			in.Report.Certificates = []*agentv1.KeychainCertificate{{}}
		}, reason: reason.CertNotVouched},
		{name: "vouching off: allowed, not checked", mod: func(in *decision.Input) {
			in.BrowserCert = &decision.BrowserCert{Serial: "1f", SHA1: "aa"}
		}, allow: true, reason: reason.Allowed},
		{name: "duplicate result: later FAIL overrides PASS", mod: func(in *decision.Input) {
			in.Report.Results = append(in.Report.Results, &agentv1.PolicyResult{PolicyId: "sip", Status: fail})
		}, reason: reason.PolicyFailed, failing: []string{"sip:FAIL"}},
	})
}

// Reports too large for a linear scan are joined the same way, duplicates
// included.
func TestDecideLargeReport(t *testing.T) {
	t.Parallel()
	pad := func(in *decision.Input) {
		for i := range 20 {
			id := fmt.Sprintf("extra-%02d", i)
			in.Policies.Policies = append(in.Policies.Policies, &agentv1.Policy{Id: id, Required: true})
			in.Report.Results = append(in.Report.Results, &agentv1.PolicyResult{PolicyId: id, Status: pass})
		}
	}
	then := func(mods ...func(*decision.Input)) func(*decision.Input) {
		return func(in *decision.Input) {
			for _, m := range mods {
				m(in)
			}
		}
	}
	runCases(t, []ruleCase{
		{name: "all pass", mod: pad, allow: true, reason: reason.Allowed},
		{name: "FAIL, ERROR and missing", mod: then(pad, func(in *decision.Input) {
			in.Report.Results[0].Status = fail
			in.Report.Results[1].Status = perr
			in.Report.Results = slices.Delete(in.Report.Results, 2, 3)
		}), reason: reason.PolicyFailed, failing: []string{"filevault:FAIL", "firewall:ERROR", "sip:MISSING"}},
		{name: "duplicate: FAIL is not hidden by a later PASS", mod: then(pad, func(in *decision.Input) {
			in.Report.Results = append([]*agentv1.PolicyResult{{PolicyId: "sip", Status: fail}}, in.Report.Results...)
		}), reason: reason.PolicyFailed, failing: []string{"sip:FAIL"}},
		{name: "duplicate: later FAIL overrides PASS", mod: then(pad, func(in *decision.Input) {
			in.Report.Results = append(in.Report.Results, &agentv1.PolicyResult{PolicyId: "sip", Status: fail})
		}), reason: reason.PolicyFailed, failing: []string{"sip:FAIL"}},
	})
}

// Several rules at once: the precedence documented on Reason decides.
func TestDecidePrecedence(t *testing.T) {
	t.Parallel()
	stale := func(in *decision.Input) {
		in.Report.ObservedAt = timestamppb.New(now.Add(-time.Hour))
		in.ReportReceivedAt = now.Add(-time.Hour)
	}
	failing := func(in *decision.Input) {
		in.Report.Results = report(now, "v1", statuses(fail, perr, none, fail)...).Results
	}
	all := func(mods ...func(*decision.Input)) func(*decision.Input) {
		return func(in *decision.Input) {
			for _, m := range mods {
				m(in)
			}
		}
	}
	unknown := func(in *decision.Input) { in.Device = nil }
	rev := func(in *decision.Input) { in.Device = revoked() }
	noPolicies := func(in *decision.Input) { in.Policies = nil }
	noReport := func(in *decision.Input) { in.Report = nil }
	mismatch := func(in *decision.Input) { in.Report.DeviceId = "dev-2" }
	future := func(in *decision.Input) {
		in.Report.ObservedAt = timestamppb.New(now.Add(time.Hour))
		in.ReportReceivedAt = time.Time{}
	}
	unvouched := func(in *decision.Input) {
		in.BrowserCert = &decision.BrowserCert{Serial: "abc", SHA1: "def", RequireVouched: true}
	}
	runCases(t, []ruleCase{
		{name: "unknown beats everything", mod: all(stale, failing, noPolicies, unknown), reason: reason.UnknownDevice},
		{name: "revoked beats stale", mod: all(stale, rev), reason: reason.DeviceRevoked},
		{name: "revoked beats failing policies", mod: all(failing, rev), reason: reason.DeviceRevoked},
		{name: "revoked beats no policies and no report", mod: all(noReport, noPolicies, rev), reason: reason.DeviceRevoked},
		{name: "no policies beats no report", mod: all(noReport, noPolicies), reason: reason.NoPolicies},
		{name: "no report beats everything after it", mod: noReport, reason: reason.NoReport},
		{name: "mismatch beats stale and failing", mod: all(stale, failing, mismatch), reason: reason.DeviceMismatch},
		{name: "clock skew beats failing", mod: all(failing, future), reason: reason.ClockSkew},
		{name: "stale beats failing and lists nothing", mod: all(failing, stale), reason: reason.StalePosture},
		{name: "stale beats an unvouched certificate", mod: all(stale, unvouched), reason: reason.StalePosture},
		{name: "unvouched certificate beats failing and lists nothing", mod: all(failing, unvouched), reason: reason.CertNotVouched},
		{name: "FAIL beats ERROR and missing, all listed in set order", mod: failing, reason: reason.PolicyFailed,
			failing: []string{"filevault:FAIL", "firewall:ERROR", "sip:MISSING"}, advisory: []string{"screenlock:FAIL"}},
		{name: "ERROR beats missing", mod: func(in *decision.Input) {
			in.Report.Results = report(now, "v1", statuses(none, perr, pass, pass)...).Results
		}, reason: reason.PolicyError, failing: []string{"filevault:MISSING", "firewall:ERROR"}},
	})
	// The precedence list itself is what the docs promise.
	want := []decision.Reason{"unknown_device", "device_revoked",
		"user_not_provisioned", "user_deactivated", "user_not_bound", "no_policies", "no_report", "device_mismatch",
		"clock_skew", "stale_posture", "cert_not_vouched", "policy_failed", "policy_error", "policy_missing", "allowed"}
	if !slices.Equal(decision.Precedence, want) {
		t.Errorf("Precedence = %v, want %v (reasons are stored and must not change)", decision.Precedence, want)
	}
}

// Freshness boundaries, and which clock counts.
func TestDecideFreshness(t *testing.T) {
	t.Parallel()
	at := func(observed, received time.Duration) func(*decision.Input) {
		return func(in *decision.Input) {
			in.Report.ObservedAt = timestamppb.New(now.Add(observed))
			in.ReportReceivedAt = time.Time{}
			if received != 0 {
				in.ReportReceivedAt = now.Add(received)
			}
		}
	}
	withMax := func(max time.Duration, m func(*decision.Input)) func(*decision.Input) {
		return func(in *decision.Input) { m(in); in.MaxPostureAge = max }
	}
	const ns = time.Nanosecond
	runCases(t, []ruleCase{
		{name: "exactly MaxPostureAge old is fresh", mod: at(-5*time.Minute, 0), allow: true, reason: reason.Allowed},
		{name: "one ns past MaxPostureAge is stale", mod: at(-5*time.Minute-ns, 0), reason: reason.StalePosture},
		{name: "observed just now", mod: at(0, 0), allow: true, reason: reason.Allowed},
		{name: "custom MaxPostureAge boundary fresh", mod: withMax(time.Minute, at(-time.Minute, 0)), allow: true, reason: reason.Allowed},
		{name: "custom MaxPostureAge boundary stale", mod: withMax(time.Minute, at(-time.Minute-ns, 0)), reason: reason.StalePosture},
		{name: "negative MaxPostureAge means default", mod: withMax(-time.Second, at(-4*time.Minute, 0)), allow: true, reason: reason.Allowed},
		{name: "late delivery: observed_at counts, not received_at", mod: at(-6*time.Minute, -time.Second), reason: reason.StalePosture},
		{name: "device clock ahead: received_at caps freshness", mod: at(time.Minute, -6*time.Minute), reason: reason.StalePosture},
		{name: "device clock ahead within skew, received recently", mod: at(4*time.Minute, -time.Minute), allow: true, reason: reason.Allowed},
		{name: "observed exactly MaxClockSkew ahead is accepted", mod: at(5*time.Minute, 0), allow: true, reason: reason.Allowed},
		{name: "observed one ns beyond MaxClockSkew", mod: at(5*time.Minute+ns, 0), reason: reason.ClockSkew},
		{name: "custom MaxClockSkew", mod: func(in *decision.Input) {
			at(2*time.Minute, 0)(in)
			in.MaxClockSkew = time.Minute
		}, reason: reason.ClockSkew},
		{name: "received_at in the future does not make a report fresher", mod: at(-6*time.Minute, time.Hour), reason: reason.StalePosture},
	})
}

// A live check changes only what the user is told when the report is
// missing or stale; a timed-out check falls back to the latest report.
func TestDecideLiveCheck(t *testing.T) {
	t.Parallel()
	stale := func(lc decision.LiveCheck) func(*decision.Input) {
		return func(in *decision.Input) {
			in.Report.ObservedAt = timestamppb.New(now.Add(-10 * time.Minute))
			in.ReportReceivedAt = now.Add(-10 * time.Minute)
			in.LiveCheck = lc
		}
	}
	runCases(t, []ruleCase{
		{name: "answered and passing", mod: func(in *decision.Input) {
			in.Report.ObservedAt = timestamppb.New(now.Add(-time.Second))
			in.LiveCheck = decision.LiveCheckAnswered
		}, allow: true, reason: reason.Allowed},
		{name: "answered and failing", mod: func(in *decision.Input) {
			in.Report = report(now, "v1", statuses(fail, pass, pass, pass)...)
			in.LiveCheck = decision.LiveCheckAnswered
		}, reason: reason.PolicyFailed, failing: []string{"filevault:FAIL"}},
		{name: "timed out, latest report still fresh", mod: func(in *decision.Input) {
			in.Report.ObservedAt = timestamppb.New(now.Add(-4 * time.Minute))
			in.ReportReceivedAt = now.Add(-4 * time.Minute)
			in.LiveCheck = decision.LiveCheckTimedOut
		}, allow: true, reason: reason.Allowed},
		{name: "timed out, latest report stale", mod: stale(decision.LiveCheckTimedOut), reason: reason.StalePosture},
		{name: "agent offline, latest report stale", mod: stale(decision.LiveCheckOffline), reason: reason.StalePosture},
		{name: "no live check, latest report stale", mod: stale(decision.LiveCheckNone), reason: reason.StalePosture},
		{name: "timed out, no report at all", mod: func(in *decision.Input) {
			in.Report = nil
			in.LiveCheck = decision.LiveCheckTimedOut
		}, reason: reason.NoReport},
	})
}

// After a policy change, results are matched by policy id.
func TestDecidePolicySetVersion(t *testing.T) {
	t.Parallel()
	runCases(t, []ruleCase{
		{name: "older version, same policies, all pass", mod: func(in *decision.Input) { in.Report.PolicySetVersion = "v0" },
			allow: true, reason: reason.Allowed},
		{name: "new required policy has no result yet", mod: func(in *decision.Input) {
			in.Policies = policySet("v2", pol{"filevault", true, true}, pol{"firewall", true, false}, pol{"sip", true, false},
				pol{"screenlock", false, false}, pol{"gatekeeper", true, false})
			in.Report.PolicySetVersion = "v1"
		}, reason: reason.PolicyMissing, failing: []string{"gatekeeper:MISSING"}},
		{name: "new advisory policy has no result yet", mod: func(in *decision.Input) {
			in.Policies = policySet("v2", pol{"filevault", true, true}, pol{"gatekeeper", false, false})
		}, allow: true, reason: reason.Allowed, advisory: []string{"gatekeeper:MISSING"}},
		{name: "removed policy's FAIL is ignored", mod: func(in *decision.Input) {
			in.Policies = policySet("v2", pol{"filevault", true, true}, pol{"sip", true, false})
			in.Report = report(now, "v1", statuses(pass, fail, pass, fail)...)
		}, allow: true, reason: reason.Allowed},
		{name: "policy made required since the report", mod: func(in *decision.Input) {
			in.Policies = policySet("v2", pol{"filevault", true, true}, pol{"screenlock", true, false})
			in.Report = report(now, "v1", statuses(pass, pass, pass, fail)...)
		}, reason: reason.PolicyFailed, failing: []string{"screenlock:FAIL"}},
	})
	d := decision.Decide(func() decision.Input { in := base(); in.Report.PolicySetVersion = "v0"; return in }())
	if d.PolicySetVersion != "v1" || d.ReportPolicySetVersion != "v0" {
		t.Errorf("versions recorded = %q, %q; want v1, v0", d.PolicySetVersion, d.ReportPolicySetVersion)
	}
}

// A result names the query it is for: after a query changes under the
// same id, the old query's result is MISSING, the unchanged policies keep
// theirs, and a result without a digest (an older agent) counts by id.
func TestDecideQueryChanged(t *testing.T) {
	t.Parallel()
	stamp := func(r *agentv1.PostureReport, query string) *agentv1.PostureReport {
		for _, res := range r.Results {
			res.QuerySha256 = policy.QueryDigest(query)
		}
		return r
	}
	tightened := func() *agentv1.PolicySet {
		ps := stdSet()
		ps.Version = "v2"
		ps.Policies[1].Query = "SELECT 1 FROM alf WHERE global_state >= 2"
		return ps
	}
	runCases(t, []ruleCase{
		{name: "same queries, results stamped", mod: func(in *decision.Input) { stamp(in.Report, "SELECT 1") },
			allow: true, reason: reason.Allowed},
		{name: "firewall's query changed since the report", mod: func(in *decision.Input) {
			in.Policies = tightened()
			stamp(in.Report, "SELECT 1")
		}, reason: reason.PolicyMissing, failing: []string{"firewall:MISSING"}},
		{name: "the report is for the changed query", mod: func(in *decision.Input) {
			in.Policies = tightened()
			stamp(in.Report, "SELECT 1")
			in.Report.Results[1].QuerySha256 = policy.QueryDigest(in.Policies.Policies[1].Query)
			in.Report.PolicySetVersion = "v2"
		}, allow: true, reason: reason.Allowed},
		{name: "an older agent's results count by id", mod: func(in *decision.Input) { in.Policies = tightened() },
			allow: true, reason: reason.Allowed},
	})
}

// What the remediation page and the decision log are given.
func TestDecideFindings(t *testing.T) {
	t.Parallel()
	in := base()
	in.Report = report(now.Add(-90*time.Second), "v1", statuses(perr, fail, pass, fail)...)
	in.ReportReceivedAt = now.Add(-80 * time.Second)
	d := decision.Decide(in)

	want := []decision.Finding{
		{PolicyID: "filevault", Name: "Name of filevault", Description: "Checks filevault", UserText: "Why filevault matters",
			Status: decision.StatusError, Message: "no such table: filevault", Resolution: "Fix filevault", Required: true, Critical: true,
			Enforcement: decision.Enforce},
		{PolicyID: "firewall", Name: "Name of firewall", Description: "Checks firewall", UserText: "Why firewall matters",
			Status: decision.StatusFail, Resolution: "Fix firewall", Required: true, Enforcement: decision.Enforce},
	}
	if !reflect.DeepEqual(d.Failing, want) {
		t.Errorf("Failing =\n%+v\nwant\n%+v", d.Failing, want)
	}
	if got := ids(d.Results); !slices.Equal(got, []string{"filevault:ERROR", "firewall:FAIL", "sip:PASS", "screenlock:FAIL"}) {
		t.Errorf("Results = %v", got)
	}
	if d.DeviceID != "dev-1" || d.DeviceName != "alices-mac" || d.ReportSeq != 7 {
		t.Errorf("device/report context = %q %q %d", d.DeviceID, d.DeviceName, d.ReportSeq)
	}
	if !d.ObservedAt.Equal(now.Add(-90*time.Second)) || d.PostureAge != 90*time.Second {
		t.Errorf("ObservedAt %v PostureAge %v; want observed_at and its age", d.ObservedAt, d.PostureAge)
	}
	if d.Bypassable() {
		t.Error("a denial with a failing critical policy must not be bypassable")
	}
}

// LastReportAt is when the Mac last reported, for the page's "Last
// checked", whatever the reason: a stale or unusable report still says
// when the Mac was last heard from.
func TestLastReportAt(t *testing.T) {
	t.Parallel()
	stored := now.Add(-2 * time.Hour)
	for _, tc := range []struct {
		name string
		mod  func(*decision.Input)
		want time.Time
	}{
		{"fresh report", func(*decision.Input) {}, now.Add(-time.Minute)},
		{"stale report", func(in *decision.Input) { in.Report = report(now.Add(-time.Hour), "v1", allPass()...) }, now.Add(-time.Hour)},
		{"no report, device record", func(in *decision.Input) { in.Report, in.Device.LastReportAt = nil, stored }, stored},
		{"report without a time, device record", func(in *decision.Input) { in.Report.ObservedAt, in.Device.LastReportAt = nil, stored }, stored},
		{"live answer newer than the record", func(in *decision.Input) { in.Device.LastReportAt = stored }, now.Add(-time.Minute)},
		{"record newer than the report given", func(in *decision.Input) { in.Device.LastReportAt = now.Add(-time.Second) }, now.Add(-time.Second)},
		{"another device's report is not this Mac's", func(in *decision.Input) { in.Report.DeviceId, in.Device.LastReportAt = "dev-2", stored }, stored},
		{"revoked", func(in *decision.Input) { in.Device = revoked(); in.Device.LastReportAt = stored }, now.Add(-time.Minute)},
		{"never reported", func(in *decision.Input) { in.Report = nil }, time.Time{}},
		{"unknown device", func(in *decision.Input) { in.Device = nil }, time.Time{}},
	} {
		in := base()
		tc.mod(&in)
		if got := decision.Decide(in).LastReportAt; !got.Equal(tc.want) {
			t.Errorf("%s: LastReportAt %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestBypassable(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		mod  func(*decision.Input)
		want bool
	}{
		{"allowed", nil, false},
		{"only non-critical failing", func(in *decision.Input) { in.Report = report(now, "v1", statuses(pass, fail, perr, pass)...) }, true},
		{"critical failing", func(in *decision.Input) { in.Report = report(now, "v1", statuses(fail, pass, pass, pass)...) }, false},
		{"critical missing", func(in *decision.Input) { in.Report = report(now, "v1", statuses(none, fail, pass, pass)...) }, false},
		{"stale", func(in *decision.Input) {
			in.Report.ObservedAt = timestamppb.New(now.Add(-time.Hour))
			in.ReportReceivedAt = time.Time{}
		}, false},
		{"revoked", func(in *decision.Input) { in.Device = revoked() }, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			in := base()
			if tc.mod != nil {
				tc.mod(&in)
			}
			if got := decision.Decide(in).Bypassable(); got != tc.want {
				t.Errorf("Bypassable = %v, want %v", got, tc.want)
			}
		})
	}
}

// Nil and half-filled inputs deny without panicking.
func TestDecideNilInputs(t *testing.T) {
	t.Parallel()
	cases := map[string]decision.Input{
		"zero input":                  {},
		"device only":                 {Device: device()},
		"device and policies":         {Device: device(), Policies: stdSet()},
		"empty report":                {Device: device(), Policies: stdSet(), Report: &agentv1.PostureReport{}},
		"nil result and nil policy":   {Device: device(), Now: now, Policies: &agentv1.PolicySet{Policies: []*agentv1.Policy{nil}}, Report: &agentv1.PostureReport{DeviceId: "dev-1", ObservedAt: timestamppb.New(now), Results: []*agentv1.PolicyResult{nil}}},
		"report only":                 {Report: report(now, "v1")},
		"policies only":               {Policies: stdSet()},
		"zero now with fresh report":  {Device: device(), Policies: stdSet(), Report: report(now, "v1", allPass()...)},
		"revoked device, nil report":  {Device: revoked()},
		"empty set and empty results": {Device: device(), Now: now, Policies: &agentv1.PolicySet{}, Report: &agentv1.PostureReport{DeviceId: "dev-1", ObservedAt: timestamppb.New(now)}},
	}
	for name, in := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			d := decision.Decide(in)
			_ = d.LogAttrs()
			_ = decision.NeedsLiveCheck(in, 0)
			// A policy with no id and a nil result: the only case here that
			// may allow is a set that requires nothing.
			if d.Allow && name != "empty set and empty results" && name != "nil result and nil policy" {
				t.Errorf("allowed %s: %+v", name, d)
			}
			if d.Reason == "" {
				t.Errorf("reason not set: %+v", d)
			}
		})
	}
}

func TestNeedsLiveCheck(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name  string
		mod   func(*decision.Input)
		after time.Duration
		want  bool
	}{
		{"recent report", func(in *decision.Input) {
			in.Report.ObservedAt = timestamppb.New(now.Add(-10 * time.Second))
			in.ReportReceivedAt = now.Add(-9 * time.Second)
		}, 0, false},
		{"exactly live_check_after old", func(in *decision.Input) {
			in.Report.ObservedAt = timestamppb.New(now.Add(-30 * time.Second))
			in.ReportReceivedAt = time.Time{}
		}, 0, false},
		{"older than live_check_after", func(in *decision.Input) {
			in.Report.ObservedAt = timestamppb.New(now.Add(-31 * time.Second))
			in.ReportReceivedAt = time.Time{}
		}, 0, true},
		{"custom after", func(in *decision.Input) {
			in.Report.ObservedAt = timestamppb.New(now.Add(-11 * time.Second))
			in.ReportReceivedAt = time.Time{}
		}, 10 * time.Second, true},
		{"no report", func(in *decision.Input) { in.Report = nil }, 0, true},
		{"policy set changed", func(in *decision.Input) {
			in.Report.ObservedAt = timestamppb.New(now)
			in.Report.PolicySetVersion = "v0"
		}, 0, true},
		{"device clock ahead, received long ago", func(in *decision.Input) {
			in.Report.ObservedAt = timestamppb.New(now.Add(time.Minute))
			in.ReportReceivedAt = now.Add(-time.Minute)
		}, 0, true},
		{"unknown device", func(in *decision.Input) { in.Device = nil; in.Report = nil }, 0, false},
		{"revoked device", func(in *decision.Input) { in.Device = revoked(); in.Report = nil }, 0, false},
		{"no policy set", func(in *decision.Input) { in.Policies = nil; in.Report = nil }, 0, false},
		{"browser certificate not reported yet", func(in *decision.Input) {
			in.Report.ObservedAt, in.ReportReceivedAt = timestamppb.New(now), now
			in.BrowserCert = &decision.BrowserCert{Serial: "1f", SHA1: "aa", RequireVouched: true}
		}, 0, true},
		{"browser certificate reported", func(in *decision.Input) {
			in.Report.ObservedAt, in.ReportReceivedAt = timestamppb.New(now), now
			in.BrowserCert = &decision.BrowserCert{Serial: "1f", SHA1: "aa", RequireVouched: true}
			in.Report.Certificates = []*agentv1.KeychainCertificate{{Serial: "1f", Sha1: "aa"}}
		}, 0, false},
		{"vouching off", func(in *decision.Input) {
			in.Report.ObservedAt, in.ReportReceivedAt = timestamppb.New(now), now
			in.BrowserCert = &decision.BrowserCert{Serial: "1f", SHA1: "aa"}
		}, 0, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			in := base()
			tc.mod(&in)
			if got := decision.NeedsLiveCheck(in, tc.after); got != tc.want {
				t.Errorf("NeedsLiveCheck = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestLiveCheckString(t *testing.T) {
	t.Parallel()
	for lc, want := range map[decision.LiveCheck]string{
		decision.LiveCheckNone: "none", decision.LiveCheckAnswered: "answered",
		decision.LiveCheckTimedOut: "timed_out", decision.LiveCheckOffline: "agent_offline",
		decision.LiveCheck(9): "unknown_9",
	} {
		if got := lc.String(); got != want {
			t.Errorf("%d.String() = %q, want %q", int(lc), got, want)
		}
	}
}

func TestLogAttrs(t *testing.T) {
	t.Parallel()
	in := base()
	in.Report = report(now.Add(-2*time.Minute), "v0", statuses(fail, perr, pass, none)...)
	in.ReportReceivedAt = time.Time{}
	in.LiveCheck = decision.LiveCheckTimedOut
	d := decision.Decide(in)

	got := map[string]string{}
	for _, a := range d.LogAttrs() {
		if a.Key != strings.ToLower(a.Key) || strings.ContainsAny(a.Key, " -.") {
			t.Errorf("key %q is not snake_case", a.Key)
		}
		got[a.Key] = a.Value.String()
	}
	want := map[string]string{
		"allow": "false", "reason": "policy_failed", "user": "alice@example.com", "device_id": "dev-1",
		"policy_set_version": "v1", "report_policy_set_version": "v0", "report_seq": "7",
		"posture_age": "2m0s", "live_check": "timed_out",
		"failing": "filevault:FAIL,firewall:ERROR", "critical_failing": "1", "advisory": "screenlock:MISSING",
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
	if len(got) != len(want) {
		t.Errorf("attrs = %v, want exactly %v", got, want)
	}
	// osquery's message stays out of the one-line log.
	if s := fmt.Sprint(got); strings.Contains(s, "no such table") {
		t.Errorf("log line carries an osquery message: %s", s)
	}

	// An allowed decision logs no failing/advisory/version noise.
	got = map[string]string{}
	for _, a := range decision.Decide(base()).LogAttrs() {
		got[a.Key] = a.Value.String()
	}
	for _, k := range []string{"failing", "advisory", "report_policy_set_version", "live_check", "critical_failing"} {
		if _, ok := got[k]; ok {
			t.Errorf("allowed decision logs %s = %q", k, got[k])
		}
	}
}
