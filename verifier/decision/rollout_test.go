package decision_test

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	agentv1 "github.com/clearance/clearance/proto/gen/clearance/agent/v1"
	"github.com/clearance/clearance/verifier/decision"
	"github.com/clearance/clearance/verifier/reason"
)

const grace = 72 * time.Hour

// The dimensions of one policy's rollout, each value named for failures.
var (
	modes    = []decision.Enforcement{"", decision.Monitor, decision.Warn, decision.Enforce}
	ceilings = []decision.Enforcement{"", decision.Monitor, decision.Warn, decision.Enforce}
	// graceStates: none (no grace), unstarted (grace, no FAIL seen before),
	// running, ended.
	graceStates = []string{"none", "unstarted", "running", "ended"}
	// bypassStates: off (not allowed), unused, recent (used within the
	// period), old (used before it).
	bypassStates = []string{"off", "unused", "recent", "old"}
	presses      = []string{"none", "continue", "resolve_later"}
	// exemptions: none, device, user, expired, revoked, other (another
	// policy), all (every policy, by device).
	exemptionStates = []string{"none", "device", "user", "expired", "revoked", "other", "all"}
	reports         = []string{"fresh", "stale", "missing"}
	results         = []agentv1.PolicyStatus{fail, perr, none, pass}
)

type combo struct {
	mode, ceiling    decision.Enforcement
	critical         bool
	grace, bypass    string
	press, exemption string
	report           string
	status           agentv1.PolicyStatus
	// wantStart: a grace period starts at this decision.
	wantStart bool
}

func (c combo) String() string {
	return fmt.Sprintf("mode=%q ceiling=%q critical=%v grace=%s bypass=%s press=%s exemption=%s report=%s status=%v",
		c.mode, c.ceiling, c.critical, c.grace, c.bypass, c.press, c.exemption, c.report, c.status)
}

// input builds the decision input for c: one required policy "p" and an
// advisory one that always passes.
func (c combo) input() decision.Input {
	in := decision.Input{
		Device:   device(),
		Policies: policySet("v1", pol{"p", true, c.critical}, pol{"q", false, false}),
		Username: "alice@example.com",
		Now:      now,
	}
	switch c.report {
	case "fresh":
		in.Report = report(now.Add(-time.Minute), "v1", res{"p", c.status}, res{"q", pass})
	case "stale":
		in.Report = report(now.Add(-time.Hour), "v1", res{"p", c.status}, res{"q", pass})
	}
	pr := decision.PolicyRollout{Enforcement: c.mode}
	ro := decision.Rollout{Ceiling: c.ceiling, Policies: map[string]decision.PolicyRollout{}}
	switch c.grace {
	case "unstarted":
		pr.Grace = grace
	case "running":
		pr.Grace = grace
		ro.GraceSince = map[string]time.Time{"p": now.Add(-24 * time.Hour)}
	case "ended":
		pr.Grace = grace
		ro.GraceSince = map[string]time.Time{"p": now.Add(-grace)}
	}
	switch c.bypass {
	case "unused":
		pr.AllowBypass = true
	case "recent":
		pr.AllowBypass = true
		ro.BypassUsed = map[string]time.Time{"p": now.Add(-decision.DefaultBypassPeriod + time.Second)}
	case "old":
		pr.AllowBypass = true
		ro.BypassUsed = map[string]time.Time{"p": now.Add(-decision.DefaultBypassPeriod)}
	}
	ro.Continue = c.press == "continue"
	if c.press == "resolve_later" {
		// Pressed on a page that offered to skip p.
		ro.ResolveLater, ro.ResolveLaterOffered = true, []string{"p"}
	}
	until := now.Add(time.Hour)
	switch c.exemption {
	case "device":
		ro.Exemptions = []decision.Exemption{{ID: 1, DeviceID: "dev-1", PolicyIDs: []string{"p"}, ExpiresAt: until}}
	case "user":
		ro.Exemptions = []decision.Exemption{{ID: 2, Username: "ALICE@example.com", PolicyIDs: []string{"p"}, ExpiresAt: until}}
	case "expired":
		ro.Exemptions = []decision.Exemption{{ID: 3, DeviceID: "dev-1", ExpiresAt: now}}
	case "revoked":
		ro.Exemptions = []decision.Exemption{{ID: 4, DeviceID: "dev-1", ExpiresAt: until, RevokedAt: now.Add(-time.Minute)}}
	case "other":
		ro.Exemptions = []decision.Exemption{{ID: 5, DeviceID: "dev-1", PolicyIDs: []string{"q"}, ExpiresAt: until}}
	case "all":
		ro.Exemptions = []decision.Exemption{{ID: 6, DeviceID: "dev-1", ExpiresAt: until}}
	}
	ro.Policies["p"] = pr
	in.Rollout = ro
	return pressedOnItsPage(in)
}

// pressedOnItsPage is in with Rollout.PageShown the digest of the page a
// sign-in decided as in, without a press, would show: a press on the page
// as it is when pressed.
func pressedOnItsPage(in decision.Input) decision.Input {
	if !in.Rollout.Continue && !in.Rollout.ResolveLater {
		return in
	}
	page := in
	page.Rollout.Continue, page.Rollout.ResolveLater = false, false
	d := decision.Decide(page)
	var items []decision.Finding
	for _, f := range d.Failing {
		if f.Waiver == decision.WaiverNone {
			items = append(items, f)
		}
	}
	in.Rollout.PageShown = decision.PageDigest(items)
	return in
}

// want is the oracle: what the rules in docs/policies.md say, written
// independently of applyRollout.
type want struct {
	allow           bool
	reason          decision.Reason
	mode            decision.Mode
	canContinue     bool
	canResolveLater bool
	blockFrom       time.Time
}

func (c combo) want() want {
	switch c.report {
	case "missing":
		return want{reason: reason.NoReport}
	case "stale":
		return want{reason: reason.StalePosture}
	}
	var policyReason decision.Reason
	switch c.status {
	case pass:
		return want{allow: true, reason: reason.Allowed, mode: decision.ModeEnforce}
	case fail:
		policyReason = reason.PolicyFailed
	case perr:
		policyReason = reason.PolicyError
	default:
		policyReason = reason.PolicyMissing
	}
	if c.exemption == "device" || c.exemption == "user" || c.exemption == "all" {
		return want{allow: true, reason: reason.Allowed, mode: decision.ModeExempt}
	}
	mode := c.mode
	if mode == "" {
		mode = decision.Enforce
	}
	var blockFrom time.Time
	if mode == decision.Enforce && c.status == fail {
		switch c.grace {
		case "unstarted":
			mode, blockFrom = decision.Warn, now.Add(grace)
		case "running":
			mode, blockFrom = decision.Warn, now.Add(-24*time.Hour+grace)
		}
	}
	rank := map[decision.Enforcement]int{decision.Monitor: 0, decision.Warn: 1, decision.Enforce: 2, "": 2}
	if rank[c.ceiling] < rank[mode] {
		mode = c.ceiling
	}
	if rank[c.ceiling] < 2 {
		blockFrom = time.Time{} // the ceiling never lets it block
	}
	switch mode {
	case decision.Monitor:
		return want{allow: true, reason: reason.Allowed, mode: decision.ModeMonitor}
	case decision.Warn:
		if c.press != "none" {
			return want{allow: true, reason: reason.Allowed, mode: decision.ModeWarned}
		}
		return want{reason: policyReason, mode: decision.ModeWarn, canContinue: true, blockFrom: blockFrom}
	}
	bypass := !c.critical && (c.bypass == "unused" || c.bypass == "old")
	switch {
	case bypass && c.press == "resolve_later":
		return want{allow: true, reason: reason.Allowed, mode: decision.ModeBypassed}
	case bypass:
		return want{reason: policyReason, mode: decision.ModeEnforce, canResolveLater: true}
	}
	return want{reason: policyReason, mode: decision.ModeEnforce}
}

// Every combination of mode, ceiling, criticality, grace state, bypass
// state, press, exemption, report freshness and result.
func TestRolloutEveryCombination(t *testing.T) {
	t.Parallel()
	n := 0
	for _, mode := range modes {
		for _, ceiling := range ceilings {
			for _, critical := range []bool{false, true} {
				for _, g := range graceStates {
					for _, b := range bypassStates {
						for _, p := range presses {
							for _, e := range exemptionStates {
								for _, r := range reports {
									for _, st := range results {
										c := combo{mode, ceiling, critical, g, b, p, e, r, st, false}
										checkCombo(t, c)
										n++
									}
								}
							}
						}
					}
				}
			}
		}
	}
	if t.Failed() {
		return
	}
	t.Logf("%d combinations", n)
}

func checkCombo(t *testing.T, c combo) {
	t.Helper()
	d := decision.Decide(c.input())
	w := c.want()
	got := want{d.Allow, d.Reason, d.Mode, d.CanContinue, d.CanResolveLater, d.BlockFrom}
	if got != w {
		t.Fatalf("%s:\n got %+v\nwant %+v", c, got, w)
	}
	// A critical policy is never bypassed, nor offered for it.
	for _, f := range d.Failing {
		if f.Critical && (f.Waiver == decision.WaiverBypassed || f.BypassOffered) {
			t.Fatalf("%s: critical policy bypassable: %+v", c, f)
		}
	}
	if c.critical && d.Mode == decision.ModeBypassed {
		t.Fatalf("%s: critical policy's sign-in bypassed", c)
	}
	if d.Allow && d.Mode != decision.ModeEnforce && d.WouldDeny == "" {
		t.Fatalf("%s: waived allow with no would-deny reason", c)
	}
	if slices.Contains(d.Bypassed(), "p") != (d.Mode == decision.ModeBypassed) {
		t.Fatalf("%s: Bypassed() = %v with mode %s", c, d.Bypassed(), d.Mode)
	}
	// The one policy says itself from when it blocks, as the page shows it.
	if !d.Allow && len(d.Failing) == 1 && !d.Failing[0].BlocksFrom.Equal(w.blockFrom) {
		t.Fatalf("%s: policy blocks from %v, want %v", c, d.Failing[0].BlocksFrom, w.blockFrom)
	}
}

// The named promises, each on its own so a failure says which.
func TestRolloutPromises(t *testing.T) {
	t.Parallel()
	failing := combo{mode: decision.Enforce, grace: "none", bypass: "unused", press: "resolve_later", exemption: "none", report: "fresh", status: fail}

	t.Run("critical never bypassed", func(t *testing.T) {
		c := failing
		c.critical = true
		if d := decision.Decide(c.input()); d.Allow || d.CanResolveLater {
			t.Fatalf("critical policy: allow %v, offered %v", d.Allow, d.CanResolveLater)
		}
	})
	t.Run("grace starts only where it holds a block back", func(t *testing.T) {
		for _, c := range []combo{
			{mode: decision.Warn, grace: "unstarted"},
			{mode: decision.Enforce, ceiling: decision.Warn, grace: "unstarted"},
			{mode: decision.Monitor, grace: "unstarted"},
			{mode: decision.Enforce, ceiling: decision.Monitor, grace: "unstarted"},
			{mode: decision.Enforce, grace: "unstarted", exemption: "device"},
			{mode: decision.Enforce, grace: "unstarted", wantStart: true},
			{mode: "", ceiling: decision.Enforce, grace: "unstarted", wantStart: true},
		} {
			c.bypass, c.report, c.status = "off", "fresh", fail
			if c.press == "" {
				c.press = "none"
			}
			if c.exemption == "" {
				c.exemption = "none"
			}
			d := decision.Decide(c.input())
			if len(d.Failing) != 1 || d.Failing[0].GraceStarted.IsZero() == c.wantStart {
				t.Errorf("%s: grace started %v, want started %v", c, d.Failing, c.wantStart)
			}
		}
	})
	t.Run("expired exemption counts for nothing", func(t *testing.T) {
		c := failing
		c.press, c.exemption = "none", "expired"
		d := decision.Decide(c.input())
		c.exemption = "none"
		if plain := decision.Decide(c.input()); d.Allow || d.Reason != plain.Reason || d.Mode != plain.Mode {
			t.Fatalf("expired exemption changed the decision: %v %s %s", d.Allow, d.Reason, d.Mode)
		}
	})
	t.Run("monitor never denies for a policy result", func(t *testing.T) {
		for _, st := range results {
			for _, critical := range []bool{false, true} {
				c := combo{mode: decision.Monitor, critical: critical, grace: "ended", bypass: "off", press: "none", exemption: "none", report: "fresh", status: st}
				if d := decision.Decide(c.input()); !d.Allow {
					t.Fatalf("%s: denied %s", c, d.Reason)
				}
				c.mode, c.ceiling = decision.Enforce, decision.Monitor
				if d := decision.Decide(c.input()); !d.Allow {
					t.Fatalf("%s: denied %s", c, d.Reason)
				}
			}
		}
	})
	t.Run("monitor records would deny", func(t *testing.T) {
		c := failing
		c.mode, c.press = decision.Monitor, "none"
		d := decision.Decide(c.input())
		if !d.Allow || d.Mode != decision.ModeMonitor || d.WouldDeny != reason.PolicyFailed || d.Failing[0].Waiver != decision.WaiverMonitor {
			t.Fatalf("monitor: %+v", d)
		}
	})
	t.Run("grace ends exactly at start plus grace", func(t *testing.T) {
		c := failing
		c.bypass, c.press, c.grace = "off", "none", "ended"
		if d := decision.Decide(c.input()); d.Mode != decision.ModeEnforce || d.CanContinue {
			t.Fatalf("ended grace still warns: %+v", d)
		}
	})
	t.Run("a press cannot spend a bypass while another policy blocks", func(t *testing.T) {
		in := failing.input()
		in.Policies = policySet("v1", pol{"p", true, false}, pol{"r", true, false})
		in.Report = report(now.Add(-time.Minute), "v1", res{"p", fail}, res{"r", fail})
		d := decision.Decide(in)
		if d.Allow || len(d.Bypassed()) != 0 || d.CanResolveLater {
			t.Fatalf("bypass spent or offered with r blocking: %+v", d)
		}
	})
	t.Run("a press waives only what its page offered", func(t *testing.T) {
		// The page offered to skip r; p was still in its grace, which has
		// ended since: the press waives nothing, spends nothing, and the
		// decision offers both now.
		in := failing.input()
		in.Policies = policySet("v1", pol{"p", true, false}, pol{"r", true, false})
		in.Report = report(now.Add(-time.Minute), "v1", res{"p", fail}, res{"r", fail})
		in.Rollout.Policies["p"] = decision.PolicyRollout{Grace: grace, AllowBypass: true}
		in.Rollout.Policies["r"] = decision.PolicyRollout{AllowBypass: true}
		in.Rollout.GraceSince = map[string]time.Time{"p": now.Add(-grace)}
		in.Rollout.ResolveLaterOffered = []string{"r"}
		d := decision.Decide(in)
		if d.Allow || len(d.Bypassed()) != 0 || !d.CanResolveLater || d.Mode != decision.ModeEnforce {
			t.Fatalf("p bypassed though the page did not offer it: %+v", d)
		}
		for _, f := range d.Failing {
			if f.Waiver != decision.WaiverNone || !f.BypassOffered {
				t.Fatalf("%s: waiver %q, offered %v; want blocking and offered now", f.PolicyID, f.Waiver, f.BypassOffered)
			}
		}
		// Offered both (the fresh page does): both are skipped.
		in.Rollout.ResolveLaterOffered = []string{"r", "p"}
		in = pressedOnItsPage(in)
		if d := decision.Decide(in); !d.Allow || !slices.Equal(d.Bypassed(), []string{"p", "r"}) {
			t.Fatalf("offered both: allow %v, bypassed %v", d.Allow, d.Bypassed())
		}
		// An offered policy that passes now is simply not waived.
		in.Report = report(now.Add(-time.Minute), "v1", res{"p", pass}, res{"r", fail})
		in.Rollout.ResolveLaterOffered = []string{"r", "p"}
		in = pressedOnItsPage(in)
		if d := decision.Decide(in); !d.Allow || !slices.Equal(d.Bypassed(), []string{"r"}) {
			t.Fatalf("p passes now: allow %v, bypassed %v", d.Allow, d.Bypassed())
		}
	})
	t.Run("a press passes over only the items its own page listed", func(t *testing.T) {
		// r warns; p is in its grace (warns, blocks later), both on the
		// page pressed. What the page said is its digest.
		in := failing.input()
		in.Policies = policySet("v1", pol{"p", true, false}, pol{"r", true, false})
		in.Report = report(now.Add(-time.Minute), "v1", res{"p", fail}, res{"r", fail})
		in.Rollout.Policies["p"] = decision.PolicyRollout{Grace: grace, AllowBypass: true}
		in.Rollout.Policies["r"] = decision.PolicyRollout{Enforcement: decision.Warn}
		in.Rollout.GraceSince = map[string]time.Time{"p": now.Add(-time.Hour)}
		in.Rollout.ResolveLater, in.Rollout.ResolveLaterOffered = false, nil
		shown := decision.Decide(in)
		if shown.Allow || !shown.CanContinue {
			t.Fatalf("the page: %+v", shown)
		}
		page := decision.PageDigest(shown.Failing)
		if len(page) != decision.PageDigestLen {
			t.Fatalf("digest %q is %d long, not %d", page, len(page), decision.PageDigestLen)
		}
		in.Rollout.Continue = true
		for _, tc := range []struct {
			name  string
			shown string
			edit  func(*decision.Input)
			allow bool
		}{
			{"the same page", page, nil, true},
			{"no digest (a forged form, or a page made before pages carried one)", "", nil, false},
			{"not a digest", "-", nil, false},
			// p's grace ended since: it blocks now, where the page said
			// from a date.
			{"a grace ended since", page, func(in *decision.Input) { in.Rollout.GraceSince["p"] = now.Add(-grace) }, false},
			// q, advisory on the page, is required and warns now: never
			// counted as seen.
			{"a warning that appeared since", page, func(in *decision.Input) {
				in.Policies = policySet("v1", pol{"p", true, false}, pol{"r", true, false}, pol{"q", true, false})
				in.Report = report(now.Add(-time.Minute), "v1", res{"p", fail}, res{"r", fail}, res{"q", fail})
				in.Rollout.Policies["q"] = decision.PolicyRollout{Enforcement: decision.Warn}
			}, false},
			// Another tab's page said Resolve later may skip p: not this one.
			{"a page of another state", decision.PageDigest([]decision.Finding{{PolicyID: "p", BypassOffered: true}, {PolicyID: "r", Enforcement: decision.Warn}}), nil, false},
		} {
			t.Run(tc.name, func(t *testing.T) {
				in := in
				in.Rollout.GraceSince = maps.Clone(in.Rollout.GraceSince)
				in.Rollout.Policies = maps.Clone(in.Rollout.Policies)
				if tc.edit != nil {
					tc.edit(&in)
				}
				in.Rollout.PageShown = tc.shown
				d := decision.Decide(in)
				if d.Allow != tc.allow {
					t.Fatalf("allow %v, want %v: %+v", d.Allow, tc.allow, d)
				}
				if !d.Allow {
					// Nothing waived: the person is shown what is true now.
					for _, f := range d.Failing {
						if f.Waiver != decision.WaiverNone {
							t.Errorf("%s waived %q by a press on another page", f.PolicyID, f.Waiver)
						}
					}
				}
			})
		}
	})
	t.Run("grace starts only when the person is told", func(t *testing.T) {
		c := failing
		c.bypass, c.press, c.grace = "off", "none", "unstarted"
		if d := decision.Decide(c.input()); d.Failing[0].GraceStarted.IsZero() {
			t.Fatalf("an enforced FAIL did not start its grace: %+v", d.Failing[0])
		}
		for _, quiet := range []combo{
			func() combo { c := c; c.ceiling = decision.Monitor; return c }(),
			func() combo { c := c; c.exemption = "device"; return c }(),
		} {
			if d := decision.Decide(quiet.input()); !d.Failing[0].GraceStarted.IsZero() {
				t.Errorf("%s: grace started while nobody was told: %+v", quiet, d.Failing[0])
			}
		}
	})
	t.Run("exemption for a user matches the username only", func(t *testing.T) {
		c := failing
		c.press, c.exemption = "none", "user"
		in := c.input()
		in.Username = "bob@example.com"
		if d := decision.Decide(in); d.Allow {
			t.Fatal("alice's exemption let bob in")
		}
		// Letter case is ignored for ASCII only: a look-alike login is
		// someone else.
		in.Username = "alice@example.com"
		if d := decision.Decide(in); !d.Allow {
			t.Fatalf("alice's exemption, her login in other case: %s", d.Reason)
		}
		kim := decision.Exemption{ID: 9, Username: "kim@example.com", ExpiresAt: now.Add(time.Hour)}
		if !kim.Covers("", "KIM@example.com", "p", now) || kim.Covers("", "\u212Aim@example.com", "p", now) {
			t.Fatal("kim's exemption: want her login in any ASCII case, never with a Kelvin sign for the k")
		}
	})
}

// For random sets of policies and rollout states, the invariants that
// must hold whatever the mix.
func TestRolloutProperty(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(7, 8))
	for i := range 20000 {
		s := randomScenario(r)
		in := s.in
		ro := decision.Rollout{Policies: map[string]decision.PolicyRollout{}, GraceSince: map[string]time.Time{}, BypassUsed: map[string]time.Time{}}
		ro.Ceiling = ceilings[r.IntN(len(ceilings))]
		for _, p := range in.Policies.GetPolicies() {
			pr := decision.PolicyRollout{Enforcement: modes[r.IntN(len(modes))], AllowBypass: r.IntN(2) == 0}
			if r.IntN(2) == 0 {
				pr.Grace = time.Duration(r.IntN(100)) * time.Hour
				if r.IntN(2) == 0 {
					ro.GraceSince[p.GetId()] = now.Add(-time.Duration(r.IntN(120)) * time.Hour)
				}
			}
			if r.IntN(3) == 0 {
				ro.BypassUsed[p.GetId()] = now.Add(-time.Duration(r.IntN(300)) * time.Hour)
			}
			ro.Policies[p.GetId()] = pr
			if r.IntN(6) == 0 {
				e := decision.Exemption{ID: int64(len(ro.Exemptions) + 1), DeviceID: "dev-1", PolicyIDs: []string{p.GetId()}, ExpiresAt: now.Add(time.Duration(r.IntN(3)-1) * time.Hour)}
				ro.Exemptions = append(ro.Exemptions, e)
			}
		}
		ro.Continue, ro.ResolveLater = r.IntN(3) == 0, r.IntN(3) == 0
		for _, p := range in.Policies.GetPolicies() {
			if r.IntN(4) != 0 {
				ro.ResolveLaterOffered = append(ro.ResolveLaterOffered, p.GetId())
			}
		}
		in.Rollout = ro
		if r.IntN(4) != 0 {
			// Pressed on the page as it is; else on another page.
			in = pressedOnItsPage(in)
		}
		ro = in.Rollout
		d := decision.Decide(in)
		plain := in
		plain.Rollout = decision.Rollout{}
		pd := decision.Decide(plain)

		// Rollout softens policy results only: every other reason stands.
		if !pd.Allow && !slices.Contains([]decision.Reason{reason.PolicyFailed, reason.PolicyError, reason.PolicyMissing}, pd.Reason) {
			if d.Allow || d.Reason != pd.Reason {
				t.Fatalf("case %d: rollout changed %s into %v %s", i, pd.Reason, d.Allow, d.Reason)
			}
			continue
		}
		if d.Allow {
			for _, f := range d.Failing {
				if f.Waiver == decision.WaiverNone {
					t.Fatalf("case %d: allowed with %s unwaived", i, f.PolicyID)
				}
			}
		}
		for _, f := range d.Failing {
			switch f.Waiver {
			case decision.WaiverBypassed:
				if f.Critical || !ro.ResolveLater || !ro.Policies[f.PolicyID].AllowBypass || !slices.Contains(ro.ResolveLaterOffered, f.PolicyID) {
					t.Fatalf("case %d: %+v bypassed", i, f)
				}
				if used, ok := ro.BypassUsed[f.PolicyID]; ok && now.Sub(used) < decision.DefaultBypassPeriod {
					t.Fatalf("case %d: %s bypassed twice within the period", i, f.PolicyID)
				}
			case decision.WaiverWarned:
				if !ro.Continue && !ro.ResolveLater {
					t.Fatalf("case %d: warned with no press", i)
				}
			case decision.WaiverExempt:
				if !now.Before(ro.Exemptions[slices.IndexFunc(ro.Exemptions, func(e decision.Exemption) bool { return e.ID == f.ExemptionID })].ExpiresAt) {
					t.Fatalf("case %d: expired exemption waived %s", i, f.PolicyID)
				}
			}
			if f.Critical && f.BypassOffered {
				t.Fatalf("case %d: bypass offered for critical %s", i, f.PolicyID)
			}
		}
		if ro.Ceiling == decision.Monitor && !d.Allow {
			t.Fatalf("case %d: monitor ceiling denied %s", i, d.Reason)
		}
		if d.Allow && !pd.Allow && d.WouldDeny != pd.Reason {
			t.Fatalf("case %d: would deny %q, plain decision %q", i, d.WouldDeny, pd.Reason)
		}
		if !d.Allow && d.CanContinue && d.CanResolveLater {
			t.Fatalf("case %d: both Continue and Resolve later", i)
		}
		// Each policy that blocks later says so, and only one that warns
		// now; the decision's BlockFrom is the first of them.
		var first time.Time
		for _, f := range d.Failing {
			if f.BlocksFrom.IsZero() {
				continue
			}
			if f.Enforcement != decision.Warn || f.Waiver != decision.WaiverNone || !f.BlocksFrom.Equal(f.GraceEnds) || !now.Before(f.BlocksFrom) {
				t.Fatalf("case %d: %+v blocks from %v", i, f, f.BlocksFrom)
			}
			if first.IsZero() || f.BlocksFrom.Before(first) {
				first = f.BlocksFrom
			}
		}
		if !first.Equal(d.BlockFrom) {
			t.Fatalf("case %d: BlockFrom %v, first policy's %v", i, d.BlockFrom, first)
		}
	}
}

// Every exemption that covers a failing policy is named, the first as its
// ExemptionID and the others after it, and the decision log keeps them
// all: revoking the first leaves the others, and the log says so. Those
// that do not cover it (expired, another policy) are not named.
func TestEveryCoveringExemptionNamed(t *testing.T) {
	c := combo{status: fail, report: "fresh", grace: "none", bypass: "off", press: "none", exemption: "none"}
	in := c.input()
	until := now.Add(time.Hour)
	in.Rollout.Exemptions = []decision.Exemption{
		{ID: 3, DeviceID: "dev-1", ExpiresAt: now},
		{ID: 5, DeviceID: "dev-1", PolicyIDs: []string{"p"}, ExpiresAt: until},
		{ID: 6, DeviceID: "dev-1", PolicyIDs: []string{"q"}, ExpiresAt: until},
		{ID: 8, Username: "alice@example.com", ExpiresAt: until},
		{ID: 9, DeviceID: "dev-1", ExpiresAt: until},
	}
	d := decision.Decide(in)
	if !d.Allow || len(d.Failing) != 1 {
		t.Fatalf("decision %+v, want let in by the exemptions", d)
	}
	f := d.Failing[0]
	if f.Waiver != decision.WaiverExempt || f.ExemptionID != 5 || !slices.Equal(f.OtherExemptionIDs, []int64{8, 9}) {
		t.Errorf("finding %+v, want exemption 5, then 8 and 9", f)
	}
	for _, r := range d.StoredResults() {
		if r.PolicyID == "p" && (r.ExemptionID != 5 || !slices.Equal(r.OtherExemptionIDs, []int64{8, 9})) {
			t.Errorf("stored %+v, want exemption 5, then 8 and 9", r)
		}
	}
}
