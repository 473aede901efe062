package decision_test

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	agentv1 "github.com/clearance/clearance/proto/gen/clearance/agent/v1"
	"github.com/clearance/clearance/verifier/admin"
	"github.com/clearance/clearance/verifier/decision"
	"github.com/clearance/clearance/verifier/reason"
	"github.com/clearance/clearance/verifier/storage"
)

// randomStatus includes the two ways a result can be missing: left out, or
// present with no valid status.
func randomStatus(r *rand.Rand) agentv1.PolicyStatus {
	return []agentv1.PolicyStatus{pass, pass, pass, fail, perr, none, agentv1.PolicyStatus_POLICY_STATUS_UNSPECIFIED}[r.IntN(7)]
}

type scenario struct {
	in decision.Input
	// what the scenario was built to be, judged independently of Decide
	deviceOK, reportUsable, fresh bool
	vouchedOK                     bool
	personOK                      bool
	requiredAllPass               bool
	requiredNotPass, advisoryNot  []string
}

func randomScenario(r *rand.Rand) scenario {
	var s scenario
	in := decision.Input{Now: now, Username: "u@example.com"}

	switch r.IntN(6) {
	case 0:
	case 1:
		in.Device = revoked()
	default:
		in.Device = device()
		s.deviceOK = true
	}

	// Up to 24 policies: both sides of the small-report linear scan.
	n := r.IntN(25)
	var ps []pol
	for i := range n {
		p := pol{id: fmt.Sprintf("p%02d", i), required: r.IntN(3) > 0}
		// The loader makes critical imply required; the engine treats a
		// critical policy as required even when a set says otherwise.
		p.critical = r.IntN(4) == 0 && (p.required || r.IntN(8) == 0)
		ps = append(ps, p)
	}
	if r.IntN(20) > 0 {
		in.Policies = policySet("v1", ps...)
	} else {
		s.deviceOK = false // no policy set is as bad as no device
	}

	var results []res
	s.requiredAllPass = true
	for _, p := range ps {
		st := randomStatus(r)
		results = append(results, res{p.id, st})
		if st != pass {
			if p.required || p.critical {
				s.requiredAllPass = false
				s.requiredNotPass = append(s.requiredNotPass, p.id)
			} else {
				s.advisoryNot = append(s.advisoryNot, p.id)
			}
		}
	}
	// Results arrive in any order and may name retired policies.
	r.Shuffle(len(results), func(i, j int) { results[i], results[j] = results[j], results[i] })
	if r.IntN(4) == 0 {
		results = append(results, res{"retired", fail})
	}

	observed := now.Add(time.Duration(r.Int64N(int64(14*time.Minute))) - 8*time.Minute)
	if r.IntN(4) == 0 {
		// Pick the boundaries on purpose: they are where mistakes live.
		observed = now.Add([]time.Duration{-5 * time.Minute, -5*time.Minute - 1, 5 * time.Minute, 5*time.Minute + 1}[r.IntN(4)])
	}
	if r.IntN(12) > 0 {
		in.Report = report(observed, []string{"v1", "v0"}[r.IntN(2)], results...)
		s.reportUsable = true
		if r.IntN(15) == 0 {
			in.Report.DeviceId = "dev-2"
			s.reportUsable = false
		}
	}
	if r.IntN(3) > 0 {
		in.ReportReceivedAt = observed.Add(time.Duration(r.Int64N(int64(4*time.Minute))) - time.Minute)
	}
	in.LiveCheck = decision.LiveCheck(r.IntN(4))

	// A browser certificate (or the agent's own), listed by the agent or not.
	s.vouchedOK = true
	if r.IntN(3) == 0 {
		in.BrowserCert = &decision.BrowserCert{Serial: "1f", SHA1: "aa", RequireVouched: r.IntN(2) == 0}
		listed := in.Report != nil && r.IntN(2) == 0
		if listed {
			in.Report.Certificates = []*agentv1.KeychainCertificate{{Serial: "1f", Sha1: "aa"}}
		}
		s.vouchedOK = !in.BrowserCert.RequireVouched || listed
	}

	// Who signs in: unchecked, or a user known or not, active or not,
	// bound to this Mac or not, under each binding mode.
	s.personOK = true
	if r.IntN(3) == 0 {
		p := &decision.Person{RequireProvisioned: r.IntN(2) == 0, Known: r.IntN(4) > 0, Active: r.IntN(4) > 0,
			Binding:   []decision.UserBinding{decision.BindingOff, decision.BindingWarn, decision.BindingEnforce}[r.IntN(3)],
			BoundHere: r.IntN(2) == 0}
		if !p.Known {
			p.Active = false
		}
		in.Person = p
		s.personOK = (p.Known || !p.RequireProvisioned) && (p.Active || !p.Known && !p.RequireProvisioned) &&
			(p.BoundHere || p.Binding != decision.BindingEnforce)
	}

	anchor := observed
	if !in.ReportReceivedAt.IsZero() && in.ReportReceivedAt.Before(anchor) {
		anchor = in.ReportReceivedAt
	}
	s.fresh = observed.Sub(now) <= 5*time.Minute && now.Sub(anchor) <= 5*time.Minute
	s.in = in
	return s
}

// For random inputs, Allow is true exactly when the device is known and not
// revoked, a usable report is fresh, and every required policy is PASS; and
// a denial by policy lists every required policy that is not PASS, in order.
func TestDecideProperty(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(1, 2))
	reasons := map[decision.Reason]int{}
	for i := range 20000 {
		s := randomScenario(r)
		d := decision.Decide(s.in)
		checkRolloutOnlySoftensFailures(t, s.in, d)
		reasons[d.Reason]++
		want := s.deviceOK && s.personOK && s.reportUsable && s.fresh && s.vouchedOK && s.requiredAllPass
		if d.Allow != want {
			t.Fatalf("case %d: Allow = %v (%s), want %v; scenario %+v", i, d.Allow, d.Reason, want, s)
		}
		if d.Allow != (d.Reason == reason.Allowed) {
			t.Fatalf("case %d: Allow %v with reason %s", i, d.Allow, d.Reason)
		}
		if !slices.Contains(decision.Precedence, d.Reason) {
			t.Fatalf("case %d: undocumented reason %q", i, d.Reason)
		}
		if s.deviceOK && s.personOK && s.reportUsable && s.fresh && s.vouchedOK {
			var got, adv []string
			for _, f := range d.Failing {
				got = append(got, f.PolicyID)
			}
			for _, f := range d.Advisory {
				adv = append(adv, f.PolicyID)
			}
			if !slices.Equal(got, s.requiredNotPass) || !slices.Equal(adv, s.advisoryNot) {
				t.Fatalf("case %d: Failing %v Advisory %v; want %v and %v", i, got, adv, s.requiredNotPass, s.advisoryNot)
			}
		} else if len(d.Failing) > 0 {
			t.Fatalf("case %d: %s denial lists policies %v judged from an unusable report", i, d.Reason, ids(d.Failing))
		}
	}
	// The generator must reach every reason, or the property proves little.
	for _, reason := range decision.Precedence {
		if reasons[reason] == 0 {
			t.Errorf("no random case produced %q", reason)
		}
	}
}

// The engine and the admin view's summary agree on what compliant means for
// any set the policy loader accepts (critical implies required).
func TestDecideAgreesWithAdminOutcomes(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(3, 4))
	for i := range 5000 {
		s := randomScenario(r)
		in := s.in
		in.Device, in.ReportReceivedAt, in.BrowserCert, in.Person = device(), time.Time{}, nil, nil // posture only
		if in.Policies == nil || in.Report == nil {
			continue
		}
		for _, p := range in.Policies.Policies {
			p.Critical = p.Critical && p.Required
		}
		in.Report.DeviceId = "dev-1"
		in.Report.ObservedAt = timestamppb.New(now)
		d := decision.Decide(in)
		_, sum := admin.Outcomes(in.Policies, in.Report)
		if d.Allow != sum.GetCompliant() {
			t.Fatalf("case %d: Decide allow %v (%s, %v) but admin compliant %v", i, d.Allow, d.Reason, ids(d.Failing), sum.GetCompliant())
		}
		var missing uint32
		for _, f := range d.Failing {
			if f.Status == decision.StatusMissing {
				missing++
			}
		}
		if missing != sum.GetMissing() {
			t.Fatalf("case %d: %d missing, admin counts %d", i, missing, sum.GetMissing())
		}
	}
	// No report at all: neither calls the device compliant.
	if _, sum := admin.Outcomes(stdSet(), nil); sum.GetCompliant() {
		t.Error("admin calls a device without a report compliant")
	}
}

// FuzzDecide: each byte of spec is one policy (bit 0 required, bit 1
// critical, bits 2-4 its status); the offsets place observed_at and
// received_at around now. Whatever the input, Decide must not panic and its
// decision must be consistent with its own findings.
func FuzzDecide(f *testing.F) {
	f.Add([]byte{0x05, 0x09, 0x0d, 0x04}, int64(-time.Minute), int64(-time.Minute), uint8(0))
	f.Add([]byte{0x03, 0x11, 0x1f}, int64(-5*time.Minute), int64(0), uint8(1))
	f.Add([]byte{}, int64(6*time.Minute), int64(1), uint8(2))
	f.Fuzz(func(t *testing.T, spec []byte, observedOff, receivedOff int64, flags uint8) {
		if len(spec) > 64 {
			spec = spec[:64]
		}
		var ps []pol
		var results []res
		for i, b := range spec {
			id := fmt.Sprintf("p%d", i%40) // repeats exercise duplicate ids
			ps = append(ps, pol{id: id, required: b&1 != 0, critical: b&2 != 0})
			results = append(results, res{id, agentv1.PolicyStatus(int32(b>>2&7) - 1)})
		}
		in := decision.Input{
			Device:        device(),
			Policies:      policySet("v1", ps...),
			Report:        report(now.Add(time.Duration(observedOff)), "v1", results...),
			Now:           now,
			MaxPostureAge: time.Duration(flags>>4) * time.Minute,
			LiveCheck:     decision.LiveCheck(flags & 3),
		}
		if receivedOff != 0 {
			in.ReportReceivedAt = now.Add(time.Duration(receivedOff))
		}
		if flags&4 != 0 {
			in.Device = &storage.Device{ID: "dev-1", RevokedAt: now}
		}
		if flags&8 != 0 {
			in.Report.ObservedAt = &timestamppb.Timestamp{Seconds: observedOff}
		}
		d := decision.Decide(in)
		_ = d.LogAttrs()
		_ = decision.NeedsLiveCheck(in, time.Duration(receivedOff))
		checkRolloutOnlySoftensFailures(t, in, d)

		if d.Allow != (d.Reason == reason.Allowed) {
			t.Fatalf("Allow %v reason %q", d.Allow, d.Reason)
		}
		maxAge := in.MaxPostureAge
		if maxAge <= 0 {
			maxAge = decision.DefaultMaxPostureAge
		}
		if d.Allow && (len(d.Failing) > 0 || flags&4 != 0 || d.PostureAge > maxAge) {
			t.Fatalf("allowed with failing %v, flags %b, age %v", ids(d.Failing), flags, d.PostureAge)
		}
		for _, f := range d.Results {
			if f.Required && f.Status != decision.StatusPass && d.Allow {
				t.Fatalf("allowed with required %s %s", f.PolicyID, f.Status)
			}
		}
		for _, f := range d.Failing {
			if !f.Required || f.Status == decision.StatusPass {
				t.Fatalf("Failing holds %+v", f)
			}
		}
		for _, f := range d.Advisory {
			if f.Required || f.Status == decision.StatusPass {
				t.Fatalf("Advisory holds %+v", f)
			}
		}
	})
}

// tenPolicies is a realistic set: the macOS checks examples/policies.yaml
// ships and a few more, most required.
func tenPolicies() (*agentv1.PolicySet, []res) {
	set := policySet("4f2a9c1e",
		pol{"filevault", true, true}, pol{"firewall", true, false}, pol{"sip", true, true},
		pol{"gatekeeper", true, false}, pol{"screen-lock", true, false}, pol{"os-version-floor", true, false},
		pol{"auto-updates", false, false}, pol{"remote-login-off", true, false}, pol{"edr-running", true, true},
		pol{"guest-account-off", false, false})
	var rs []res
	for _, p := range set.Policies {
		rs = append(rs, res{p.Id, pass})
	}
	return set, rs
}

func BenchmarkDecide(b *testing.B) {
	set, rs := tenPolicies()
	passing := decision.Input{
		Device: device(), Policies: set, Username: "alice@example.com", Now: now,
		Report:           report(now.Add(-20*time.Second), set.Version, rs...),
		ReportReceivedAt: now.Add(-19 * time.Second),
	}
	failing := passing
	failing.Report = report(now.Add(-20*time.Second), set.Version, rs...)
	failing.Report.Results[0].Status = fail
	failing.Report.Results[4].Status = perr
	failing.Report.Results[4].Message = "no such table: screensaver"
	failing.Report.Results[6].Status = fail

	for _, bc := range []struct {
		name string
		in   decision.Input
	}{{"allow", passing}, {"deny", failing}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_ = decision.Decide(bc.in)
			}
		})
	}
}

// checkRolloutOnlySoftensFailures: a decision with no failing finding is
// the same whatever the rollout inputs, which access.Gate relies on to read
// the stored ones (grace, bypasses, exemptions) only when something fails.
// in's rollout is replaced by one that softens everything it can.
func checkRolloutOnlySoftensFailures(t *testing.T, in decision.Input, d decision.Decision) {
	t.Helper()
	soft := in
	soft.Rollout = decision.Rollout{
		Policies: map[string]decision.PolicyRollout{}, Ceiling: decision.Monitor,
		GraceSince: map[string]time.Time{}, BypassUsed: map[string]time.Time{},
		Exemptions: []decision.Exemption{{ID: 1, DeviceID: "dev-1", ExpiresAt: now.Add(time.Hour)}},
		Continue:   true, ResolveLater: true,
	}
	if in.Policies != nil {
		for _, p := range in.Policies.GetPolicies() {
			soft.Rollout.Policies[p.GetId()] = decision.PolicyRollout{Enforcement: decision.Warn, Grace: time.Hour, AllowBypass: true}
			soft.Rollout.GraceSince[p.GetId()] = now.Add(-time.Minute)
			soft.Rollout.ResolveLaterOffered = append(soft.Rollout.ResolveLaterOffered, p.GetId())
		}
	}
	got := decision.Decide(soft)
	// Which findings fail never depends on the rollout: the gate decides
	// without it first, and reads it only if something fails.
	if !slices.Equal(ids(got.Failing), ids(d.Failing)) {
		t.Fatalf("failing findings changed with the rollout inputs: %s, want %s", ids(got.Failing), ids(d.Failing))
	}
	if len(d.Failing) == 0 && !reflect.DeepEqual(got, d) {
		t.Fatalf("a decision with nothing failing changed with the rollout inputs:\n%+v\nwant\n%+v", got, d)
	}
}
