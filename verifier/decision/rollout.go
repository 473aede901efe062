package decision

import (
	"crypto/sha256"
	"encoding/base64"
	"slices"
	"time"

	"github.com/clearance/clearance/verifier/reason"
	"github.com/clearance/clearance/verifier/storage"
)

// Enforcement is how a policy that does not pass acts on a sign-in.
type Enforcement string

const (
	// Monitor never blocks: the decision records that it would have denied.
	Monitor Enforcement = "monitor"
	// Warn shows the remediation page with Continue, which completes the
	// sign-in once the person has seen it.
	Warn Enforcement = "warn"
	// Enforce blocks. The empty value means Enforce too.
	Enforce Enforcement = "enforce"
)

// Valid reports whether e is one of the three modes (or empty: enforce).
func (e Enforcement) Valid() bool {
	switch e {
	case "", Monitor, Warn, Enforce:
		return true
	}
	return false
}

func (e Enforcement) rank() int {
	switch e {
	case Monitor:
		return 0
	case Warn:
		return 1
	}
	return 2
}

// Lower returns the weaker of e and ceiling: a global setting lowers every
// policy at once, never raises one. Empty values are Enforce.
func (e Enforcement) Lower(ceiling Enforcement) Enforcement {
	if ceiling.rank() < e.rank() {
		e = ceiling
	}
	if e == "" {
		return Enforce
	}
	return e
}

// DefaultBypassPeriod is how long after a "Resolve later" the same policy
// can be resolved later again on the same Mac (bypass_period).
const DefaultBypassPeriod = 7 * 24 * time.Hour

// PolicyRollout is one policy's rollout settings, from the policy file.
type PolicyRollout struct {
	// Enforcement is the policy's mode ("" is Enforce).
	Enforcement Enforcement
	// Grace, when positive: from the first FAIL seen on a device, an
	// enforced policy acts as Warn until Grace has passed.
	Grace time.Duration
	// AllowBypass lets the person choose "Resolve later" once per
	// BypassPeriod. Critical policies never allow it, whatever this says.
	AllowBypass bool
}

// Exemption is one the security team granted: for a device or a user, for
// some policies or all, until a time.
type Exemption struct {
	ID       int64
	DeviceID string // the device it covers, or empty
	Username string // the Okta user it covers, or empty
	// PolicyIDs are the policies it covers; empty covers every policy.
	PolicyIDs []string
	ExpiresAt time.Time
	RevokedAt time.Time // zero: not revoked
}

// Active reports whether e counts at now: not revoked, not expired (it
// ends at ExpiresAt exactly).
func (e Exemption) Active(now time.Time) bool {
	return e.RevokedAt.IsZero() && now.Before(e.ExpiresAt)
}

// Covers reports whether e, active at now, waives policyID for a sign-in by
// username on deviceID. An exemption naming neither a device nor a user
// covers nothing.
func (e Exemption) Covers(deviceID, username, policyID string, now time.Time) bool {
	if !e.Active(now) {
		return false
	}
	switch {
	case e.DeviceID != "" && e.DeviceID == deviceID:
	case e.Username != "" && username != "" && storage.SameUserName(e.Username, username):
	default:
		return false
	}
	if len(e.PolicyIDs) == 0 {
		return true
	}
	for _, id := range e.PolicyIDs {
		if id == policyID {
			return true
		}
	}
	return false
}

// Rollout is what softens enforcement for one sign-in: the policies'
// settings, the global ceiling, and the stored state of this device (grace
// starts, past bypasses, exemptions) and of this sign-in (Continue or
// Resolve later pressed). The zero value enforces every policy.
type Rollout struct {
	// Policies holds each policy's settings by id; a policy not listed is
	// enforced with no grace and no bypass.
	Policies map[string]PolicyRollout
	// Ceiling lowers every policy to at most this mode ("": no lowering).
	Ceiling Enforcement
	// GraceSince is, by policy id, when this device's grace began (its
	// first FAIL seen); a policy not listed starts its grace at Now.
	GraceSince map[string]time.Time
	// BypassUsed is, by policy id, when this device last resolved the
	// policy later.
	BypassUsed map[string]time.Time
	// BypassPeriod is how often one policy may be resolved later
	// (DefaultBypassPeriod when zero).
	BypassPeriod time.Duration
	// Exemptions that might cover this sign-in; expired and revoked ones
	// count for nothing.
	Exemptions []Exemption
	// Continue: the person pressed Continue on this held sign-in, having
	// seen the warnings.
	Continue bool
	// ResolveLater: the person pressed "Resolve later" on this held
	// sign-in. It also acknowledges the warnings on the same page.
	ResolveLater bool
	// ResolveLaterOffered holds the ids of the policies that the page the
	// person pressed Resolve later on offered to skip. The press waives
	// only those: if another policy would need it now (its grace ended
	// since, or it was moved to enforce), the sign-in stays held and the
	// person is shown what is true now, with no bypass spent.
	ResolveLaterOffered []string
	// PageShown is the PageDigest of the items on the page the person
	// pressed Continue or Resolve later on. The press waives nothing unless
	// the items in the way now are exactly those, each as the page said it
	// acts: a warning that appeared since, a grace that ended, a Resolve
	// later spent in another tab, or a page another tab showed since is
	// shown first, never counted as seen. A press without it (a forged
	// form, or a page made before pages carried it) passes over nothing:
	// the person is shown the page again, with it.
	PageShown string
}

// Waiver says why a policy that does not pass did not block.
type Waiver string

const (
	WaiverNone Waiver = ""
	// WaiverMonitor: the policy is in monitor mode (a "would deny").
	WaiverMonitor Waiver = "monitor"
	// WaiverWarned: the person saw the warning and chose Continue.
	WaiverWarned Waiver = "warned"
	// WaiverBypassed: the person chose "Resolve later".
	WaiverBypassed Waiver = "bypassed"
	// WaiverExempt: an exemption covers the device or user.
	WaiverExempt Waiver = "exempt"
)

// Mode is the decision's enforcement outcome, for the decision log and the
// clearance_sso_decisions_total metric's mode label.
type Mode string

const (
	// ModeEnforce: the decision is what the policies alone give.
	ModeEnforce Mode = "enforce"
	// ModeMonitor: allowed, but would have been denied (monitor mode).
	ModeMonitor Mode = "monitor"
	// ModeWarn: not allowed yet; the page offers Continue.
	ModeWarn Mode = "warn"
	// ModeWarned: allowed after Continue.
	ModeWarned Mode = "warned"
	// ModeBypassed: allowed after "Resolve later".
	ModeBypassed Mode = "bypassed"
	// ModeExempt: allowed because exemptions cover what failed.
	ModeExempt Mode = "exempt"
)

// Modes lists every Mode.
var Modes = []Mode{ModeEnforce, ModeMonitor, ModeWarn, ModeWarned, ModeBypassed, ModeExempt}

// bypassPeriod returns the period with its default.
func (r Rollout) bypassPeriod() time.Duration {
	return orDefault(r.BypassPeriod, DefaultBypassPeriod)
}

// BypassAvailable reports whether "Resolve later" may waive the policy f on
// this device at now: the policy allows it, is not critical, and was not
// resolved later within the period.
func (r Rollout) BypassAvailable(f Finding, now time.Time) bool {
	if f.Critical || !r.Policies[f.PolicyID].AllowBypass {
		return false
	}
	last, ok := r.BypassUsed[f.PolicyID]
	return !ok || last.IsZero() || now.Sub(last) >= r.bypassPeriod()
}

// applyRollout decides, for each failing finding, its effective
// enforcement and whether something waives it, and fills d's rollout
// fields. It returns the failing findings that still block.
//
// Order: an exemption waives first (the security team decided, even for a
// critical policy); then the policy's mode, softened to Warn while a grace
// period runs (FAIL only: ERROR and MISSING stay as they are, since they
// tell nothing about the Mac), then lowered by the ceiling. Monitor waives.
// Warn waits for Continue; Enforce blocks unless "Resolve later" is
// available and chosen. Continue and Resolve later waive only when they
// would let the sign-in through: a press cannot spend a bypass on a
// sign-in that another policy still blocks, nor on a policy that the page
// pressed did not offer to skip (Rollout.ResolveLaterOffered).
func (d *Decision) applyRollout(in Input) []Finding {
	ro, now := in.Rollout, in.Now
	hard := false
	// byGrace marks the findings that warn only because their grace runs:
	// they, and only they, block from a known date.
	byGrace := make([]bool, len(d.Failing))
	for i := range d.Failing {
		f := &d.Failing[i]
		// Every exemption that covers it is named: revoking the first
		// leaves the others, and the log says so.
		for _, e := range ro.Exemptions {
			if !e.Covers(d.DeviceID, in.Username, f.PolicyID, now) {
				continue
			}
			if f.Waiver == WaiverNone {
				f.Waiver, f.ExemptionID = WaiverExempt, e.ID
			} else {
				f.OtherExemptionIDs = append(f.OtherExemptionIDs, e.ID)
			}
		}
		pr := ro.Policies[f.PolicyID]
		mode := pr.Enforcement.Lower(Enforce)
		if pr.Grace > 0 && f.Status == StatusFail {
			start, ok := ro.GraceSince[f.PolicyID]
			if !ok || start.IsZero() || start.After(now) {
				// A grace period starts when it first holds a block
				// back: not while an exemption or monitor mode lets
				// the sign-in through without a word, nor while warn
				// (the policy's or the ceiling's) offers Continue
				// anyway. Else a policy in warn for longer than its
				// grace would block every Mac that failed it the
				// moment it is enforced, with no grace at all.
				start = time.Time{}
				if f.Waiver == WaiverNone && mode.Lower(ro.Ceiling) == Enforce {
					start = now
				}
			}
			if !start.IsZero() {
				f.GraceStarted, f.GraceEnds = start, start.Add(pr.Grace)
				if mode == Enforce && now.Before(f.GraceEnds) {
					mode, byGrace[i] = Warn, ro.Ceiling.Lower(Enforce) == Enforce
				}
			}
		}
		f.Enforcement = mode.Lower(ro.Ceiling)
		if f.Waiver != WaiverNone {
			continue
		}
		switch f.Enforcement {
		case Monitor:
			f.Waiver = WaiverMonitor
		case Enforce:
			f.BypassOffered = ro.BypassAvailable(*f, now)
			if !f.BypassOffered {
				hard = true
			}
		}
	}

	var warns, offers int
	for i := range d.Failing {
		f := &d.Failing[i]
		if f.Waiver != WaiverNone {
			continue
		}
		if f.Enforcement == Warn {
			warns++
		} else {
			offers++
		}
	}
	if !hard {
		switch {
		case (ro.Continue || ro.ResolveLater) && ro.PageShown != d.unwaivedDigest(byGrace):
			// The page pressed showed other items than those in the way
			// now: the person is shown these first.
		case offers == 0 && (ro.Continue || ro.ResolveLater):
			d.waive(Warn, WaiverWarned)
		case offers > 0 && ro.ResolveLater && d.offered(ro.ResolveLaterOffered):
			d.waive(Warn, WaiverWarned)
			d.waive(Enforce, WaiverBypassed)
		}
	}

	var blocking []Finding
	for i := range d.Failing {
		f := &d.Failing[i]
		if f.Waiver != WaiverNone {
			continue
		}
		if byGrace[i] {
			f.BlocksFrom = f.GraceEnds
			if d.BlockFrom.IsZero() || f.BlocksFrom.Before(d.BlockFrom) {
				d.BlockFrom = f.BlocksFrom
			}
		}
		blocking = append(blocking, *f)
	}
	d.Mode = ModeEnforce
	if len(blocking) > 0 && !hard {
		if offers == 0 {
			d.Mode, d.CanContinue = ModeWarn, true
		} else {
			d.CanResolveLater = true
		}
	}
	if len(blocking) == 0 {
		d.Mode = d.waivedMode()
	}
	return blocking
}

// offered reports whether every finding that Resolve later would waive
// (unwaived, enforced) is among the policy ids the page offered it for.
func (d *Decision) offered(ids []string) bool {
	for _, f := range d.Failing {
		if f.Waiver == WaiverNone && f.Enforcement == Enforce && !slices.Contains(ids, f.PolicyID) {
			return false
		}
	}
	return true
}

// PageDigest names the items a remediation page lists (Decision.Failing
// less what is waived), each with how it acts on the sign-in: blocks now
// (and whether Resolve later may skip it), blocks from a date, or warns.
// The page posts it with Continue and Resolve later, and
// Rollout.PageShown brings it back.
func PageDigest(items []Finding) string {
	keys := make([]string, 0, len(items))
	for _, f := range items {
		state := "now"
		switch {
		case !f.BlocksFrom.IsZero():
			state = "later"
		case f.Enforcement == Warn || f.Enforcement == Monitor:
			state = "warn"
		}
		if f.BypassOffered {
			state += "+skip"
		}
		keys = append(keys, f.PolicyID+"\x00"+state+"\x00")
	}
	slices.Sort(keys)
	h := sha256.New()
	for _, k := range keys {
		h.Write([]byte(k))
	}
	return base64.RawURLEncoding.EncodeToString(h.Sum(nil)[:15])
}

// PageDigestLen is the length of every PageDigest.
const PageDigestLen = 20

// unwaivedDigest is the PageDigest of the failing findings nothing
// waives, as a page of this decision would list them; byGrace marks
// those that block from their grace period's end (applyRollout's).
func (d *Decision) unwaivedDigest(byGrace []bool) string {
	var items []Finding
	for i, f := range d.Failing {
		if f.Waiver != WaiverNone {
			continue
		}
		if byGrace[i] {
			f.BlocksFrom = f.GraceEnds
		}
		items = append(items, f)
	}
	return PageDigest(items)
}

// waive sets waiver w on every unwaived failing finding enforced as e.
func (d *Decision) waive(e Enforcement, w Waiver) {
	for i := range d.Failing {
		f := &d.Failing[i]
		if f.Waiver == WaiverNone && f.Enforcement == e {
			f.Waiver = w
		}
	}
}

// waivedMode names an allow that waivers made: the strongest act wins
// (a bypass over a Continue over an exemption over monitoring), so a
// filter on the decision log finds each act of the person.
func (d *Decision) waivedMode() Mode {
	rank := map[Waiver]int{WaiverMonitor: 1, WaiverExempt: 2, WaiverWarned: 3, WaiverBypassed: 4}
	modes := map[Waiver]Mode{WaiverMonitor: ModeMonitor, WaiverExempt: ModeExempt, WaiverWarned: ModeWarned, WaiverBypassed: ModeBypassed}
	best := WaiverNone
	for _, f := range d.Failing {
		if rank[f.Waiver] > rank[best] {
			best = f.Waiver
		}
	}
	if best == WaiverNone {
		return ModeEnforce
	}
	return modes[best]
}

// Bypassed returns the ids of the policies this decision resolved later:
// the caller records each use.
func (d Decision) Bypassed() []string {
	var out []string
	for _, f := range d.Failing {
		if f.Waiver == WaiverBypassed {
			out = append(out, f.PolicyID)
		}
	}
	return out
}

// policyReason is the reason a set of failing findings gives: any FAIL,
// then any ERROR, then MISSING; "" when there are none.
func policyReason(fs []Finding) Reason {
	var errs, missing bool
	for _, f := range fs {
		switch f.Status {
		case StatusFail:
			return reason.PolicyFailed
		case StatusError:
			errs = true
		default:
			missing = true
		}
	}
	switch {
	case errs:
		return reason.PolicyError
	case missing:
		return reason.PolicyMissing
	}
	return ""
}
