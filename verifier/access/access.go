// Package access gathers what a sign-in decision needs — the device, its
// latest verified report, the policies in force — asks the agent for a fresh
// report when the stored one is too old (a live check), and hands it all to
// the pure decision.Decide. The SAML IdP and the admin API's dry run both go
// through it, so they cannot disagree.
package access

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"google.golang.org/protobuf/proto"

	agentv1 "github.com/clearance/clearance/proto/gen/clearance/agent/v1"
	"github.com/clearance/clearance/verifier/decision"
	"github.com/clearance/clearance/verifier/hub"
	"github.com/clearance/clearance/verifier/ingest"
	"github.com/clearance/clearance/verifier/storage"
)

// Store is what the gate reads.
type Store interface {
	GetDevice(ctx context.Context, id string) (storage.Device, error)
	LatestReport(ctx context.Context, deviceID string) (storage.Report, error)
}

// Checker asks a connected agent for a fresh report; *hub.Hub implements it.
type Checker interface {
	Connected(deviceID string) bool
	CheckNow(ctx context.Context, deviceID string, ttl time.Duration) (*ingest.Accepted, error)
}

var _ Checker = (*hub.Hub)(nil)

// Policies returns the policy set in force.
type Policies interface {
	Current() *agentv1.PolicySet
}

// PolicySnapshot is a policy set with its rollout settings and group
// scopes, as one reload made them.
type PolicySnapshot struct {
	Set     *agentv1.PolicySet
	Rollout map[string]decision.PolicyRollout
	Scopes  map[string]decision.Scope
}

// Snapshotter is a Policies that gives a set, its rollout settings and its
// scopes at once (optional). A Gate whose Policies is one decides on one
// reload's: else a reload landing during a live check could have the
// decision judge the old set's queries and critical flags under the new
// set's scopes and modes.
type Snapshotter interface {
	Snapshot() PolicySnapshot
}

// LiveCheckRecorder counts live-check outcomes (metrics); optional.
type LiveCheckRecorder interface {
	LiveCheck(outcome string)
}

// Gate decides sign-ins.
type Gate struct {
	Store    Store
	Checker  Checker
	Policies Policies
	// MaxPostureAge, MaxClockSkew and LiveCheckAfter are decision.Input's
	// and decision.NeedsLiveCheck's (their defaults when zero).
	MaxPostureAge  time.Duration
	MaxClockSkew   time.Duration
	LiveCheckAfter time.Duration
	// LiveCheckTimeout bounds the wait for a fresh report (default 3s).
	LiveCheckTimeout time.Duration
	Metrics          LiveCheckRecorder
	Now              func() time.Time
	// Rollout gathers the rollout inputs (modes, grace, bypasses,
	// exemptions); nil enforces every policy.
	Rollout RolloutInputs
	// People, when set, is read for who signs in: SCIM users, their groups
	// and their Macs, judged by Rules. nil: only devices are judged.
	People People
	Rules  PeopleRules
	// Scopes, when set, gives the policies' group scopes.
	Scopes Scopes
}

// RolloutInputs gathers a sign-in's decision.Rollout; *rollout.Source
// implements it.
type RolloutInputs interface {
	Inputs(ctx context.Context, deviceID, username string, now time.Time) (decision.Rollout, error)
}

// DefaultLiveCheckTimeout is how long a sign-in waits for the agent.
const DefaultLiveCheckTimeout = 3 * time.Second

// Mode says whether a live check may or must be made.
type Mode int

const (
	// LiveIfStale asks for a fresh report when decision.NeedsLiveCheck says
	// so (a sign-in).
	LiveIfStale Mode = iota
	// LiveAlways asks whenever the agent could be asked ("Check again": the
	// user says they just fixed something).
	LiveAlways
	// StoredOnly never asks (a dry run that must not disturb the Mac).
	StoredOnly
)

func (g *Gate) now() time.Time {
	if g.Now != nil {
		return g.Now()
	}
	return time.Now()
}

// ErrStorage marks a failure to read the inputs: the caller fails closed and
// tells the user to try again, instead of showing a posture reason.
var ErrStorage = errors.New("reading sign-in inputs")

// Query is what a sign-in asks about.
type Query struct {
	// DeviceID is the enrolled device the certificate named.
	DeviceID string
	// Username is the Okta username (recorded only).
	Username string
	// BrowserCert is the browser certificate presented, when it is one.
	BrowserCert *decision.BrowserCert
	// Device, when set, is DeviceID's record as the caller just read it
	// (identifying the certificate needs it), so it is not read again.
	Device *storage.Device
	// Continue and ResolveLater: the person pressed that button on the
	// held sign-in (decision.Rollout's).
	Continue, ResolveLater bool
	// ResolveLaterOffered: the policies the pressed page offered to
	// resolve later (decision.Rollout's).
	ResolveLaterOffered []string
	// PageShown: the digest of the items on the pressed page
	// (decision.Rollout's).
	PageShown string
	// AsEnforced, when set, decides as if these policies were in enforce
	// mode whatever the ceiling, the others as they are (a forecast; nil:
	// as configured). Grace and bypass stay as the policy file says.
	AsEnforced *Enforced
	// AnyAge judges the latest stored report however old it is (a
	// forecast, which is about the policies, not about freshness).
	AnyAge bool
	// NoPerson decides for the device alone, as if People were nil: no
	// user checks, every policy applying (a forecast for a Mac whose
	// person is not known).
	NoPerson bool
}

// Enforced names the policies a forecast enforces.
type Enforced struct {
	// Policies by id; nil: every policy.
	Policies map[string]bool
	// LiftCeiling: the other policies take their own modes, as the policy
	// file states them, not lowered by the ceiling.
	LiftCeiling bool
}

// apply returns ro with the policies e names in enforce mode, whatever the
// ceiling, and every other policy in the mode it has now (its own, lowered
// by the ceiling), or in its own with LiftCeiling. The policy settings are copied, never changed in place:
// they are the snapshot every sign-in reads.
func (e *Enforced) apply(ro decision.Rollout, set *agentv1.PolicySet) decision.Rollout {
	policies := make(map[string]decision.PolicyRollout, len(set.GetPolicies()))
	for _, p := range set.GetPolicies() {
		id := p.GetId()
		pr := ro.Policies[id]
		switch {
		case e.Policies == nil || e.Policies[id]:
			pr.Enforcement = decision.Enforce
		case !e.LiftCeiling:
			pr.Enforcement = pr.Enforcement.Lower(ro.Ceiling)
		}
		policies[id] = pr
	}
	ro.Policies, ro.Ceiling = policies, ""
	return ro
}

// Decide decides for the enrolled device q.DeviceID (which the caller
// identified from a certificate). An unknown device is decided, not an
// error: reason.UnknownDevice. Errors are ErrStorage only.
func (g *Gate) Decide(ctx context.Context, q Query, mode Mode) (decision.Decision, error) {
	deviceID := q.DeviceID
	in := decision.Input{
		Username:      q.Username,
		MaxPostureAge: g.MaxPostureAge,
		MaxClockSkew:  g.MaxClockSkew,
		BrowserCert:   q.BrowserCert,
	}
	if q.AnyAge {
		in.MaxPostureAge = math.MaxInt64
	}
	snap, snapped := g.Policies.(Snapshotter)
	var settings map[string]decision.PolicyRollout
	if snapped {
		s := snap.Snapshot()
		in.Policies, settings = s.Set, s.Rollout
		if g.Scopes != nil {
			in.Scopes = s.Scopes
		}
	} else {
		in.Policies = g.Policies.Current()
		if g.Scopes != nil {
			in.Scopes = g.Scopes.Scopes()
		}
	}
	var dev storage.Device
	var err error
	if q.Device != nil && q.Device.ID == deviceID {
		dev = *q.Device
	} else {
		dev, err = g.Store.GetDevice(ctx, deviceID)
	}
	switch {
	case errors.Is(err, storage.ErrNotFound):
		in.Now = g.now()
		return decision.Decide(in), nil
	case err != nil:
		return decision.Decision{}, fmt.Errorf("%w: device: %w", ErrStorage, err)
	}
	in.Device = &dev
	var user storage.User
	if g.People != nil && !q.NoPerson {
		if in.Person, user, err = g.person(ctx, q.Username, &dev, len(in.Scopes) > 0); err != nil {
			return decision.Decision{}, err
		}
	}
	if err := g.loadReport(ctx, &in); err != nil {
		return decision.Decision{}, err
	}
	in.Rollout.Continue, in.Rollout.ResolveLater, in.Rollout.ResolveLaterOffered, in.Rollout.PageShown = q.Continue, q.ResolveLater, q.ResolveLaterOffered, q.PageShown
	in.Now = g.now()

	live := false
	switch mode {
	case LiveIfStale:
		live = decision.NeedsLiveCheck(in, g.LiveCheckAfter)
	case LiveAlways:
		live = !dev.Revoked() && in.Policies != nil
	}
	if live {
		in.LiveCheck = g.liveCheck(ctx, &in)
		in.Now = g.now()
	}
	g.bindByAccounts(in.Person, user, in.Report, dev.ID)
	// The rollout inputs (modes, grace, bypasses, exemptions) only soften
	// what fails: decision.Decide reads them for its failing findings and
	// for nothing else. A decision with none is final without them, and a
	// sign-in from a Mac that passes skips their three reads.
	d := decision.Decide(in)
	if g.Rollout == nil || len(d.Failing) == 0 {
		return d, nil
	}
	ro, err := g.Rollout.Inputs(ctx, deviceID, q.Username, in.Now)
	if err != nil {
		return decision.Decision{}, fmt.Errorf("%w: rollout: %w", ErrStorage, err)
	}
	ro.Continue, ro.ResolveLater, ro.ResolveLaterOffered, ro.PageShown = q.Continue, q.ResolveLater, q.ResolveLaterOffered, q.PageShown
	if snapped {
		ro.Policies = settings
	}
	if q.AsEnforced != nil {
		ro = q.AsEnforced.apply(ro, in.Policies)
	}
	in.Rollout = ro
	return decision.Decide(in), nil
}

// loadReport fills in's report from storage.
func (g *Gate) loadReport(ctx context.Context, in *decision.Input) error {
	r, err := g.Store.LatestReport(ctx, in.Device.ID)
	switch {
	case errors.Is(err, storage.ErrNotFound):
		return nil
	case err != nil:
		return fmt.Errorf("%w: latest report: %w", ErrStorage, err)
	}
	pr := new(agentv1.PostureReport)
	if err := proto.Unmarshal(r.Payload, pr); err != nil {
		// Stored reports were verified and parsed on the way in; one that
		// no longer parses is treated as absent (fail closed), not trusted.
		return nil
	}
	in.Report, in.ReportReceivedAt = pr, r.ReceivedAt
	return nil
}

// liveCheck asks the agent to report now and, if it answers in time, puts
// the fresh report into in.
func (g *Gate) liveCheck(ctx context.Context, in *decision.Input) decision.LiveCheck {
	if g.Checker == nil || !g.Checker.Connected(in.Device.ID) {
		g.count("offline")
		return decision.LiveCheckOffline
	}
	timeout := g.LiveCheckTimeout
	if timeout <= 0 {
		timeout = DefaultLiveCheckTimeout
	}
	a, err := g.Checker.CheckNow(ctx, in.Device.ID, timeout)
	switch {
	case errors.Is(err, hub.ErrNotConnected):
		g.count("offline")
		return decision.LiveCheckOffline
	case err != nil || a == nil || a.Report == nil:
		g.count("timeout")
		return decision.LiveCheckTimedOut
	}
	g.count("answered")
	in.Report, in.ReportReceivedAt = a.Report, a.Stored.ReceivedAt
	return decision.LiveCheckAnswered
}

func (g *Gate) count(outcome string) {
	if g.Metrics != nil {
		g.Metrics.LiveCheck(outcome)
	}
}

// Forecast is the admin API's dry run of a rollout: the decision a
// sign-in by username from dev gets now, and the one it would get with e's
// policies enforced, both from the latest stored report however old (no
// live check, nothing written). With no username, the device alone is
// decided: no user checks, every policy applying.
func (g *Gate) Forecast(ctx context.Context, dev storage.Device, username string, e Enforced) (now, enforced decision.Decision, err error) {
	q := Query{DeviceID: dev.ID, Username: username, Device: &dev, AnyAge: true, NoPerson: username == ""}
	if now, err = g.Decide(ctx, q, StoredOnly); err != nil {
		return now, enforced, err
	}
	q.AsEnforced = &e
	enforced, err = g.Decide(ctx, q, StoredOnly)
	return now, enforced, err
}

// Explain is the admin API's dry run: the decision a sign-in from deviceID
// would get now. Unlike Decide, an unknown device is an error wrapping
// storage.ErrNotFound, so the caller can say so.
func (g *Gate) Explain(ctx context.Context, deviceID, username string, liveCheck bool) (decision.Decision, error) {
	if _, err := g.Store.GetDevice(ctx, deviceID); err != nil {
		return decision.Decision{}, fmt.Errorf("device %s: %w", deviceID, err)
	}
	mode := StoredOnly
	if liveCheck {
		mode = LiveIfStale
	}
	return g.Decide(ctx, Query{DeviceID: deviceID, Username: username}, mode)
}
