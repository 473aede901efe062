// Package rollout owns the state that softens enforcement while policies
// roll out: it gathers a sign-in's rollout inputs for the pure decision
// (the policies' modes, grace and bypass settings, the global ceiling, this
// device's grace starts and past bypasses, the exemptions that cover the
// device or user) and keeps what a decision learned (a grace period
// started or ended, a bypass spent). The rules themselves are decision's.
package rollout

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/clearance/clearance/verifier/decision"
	"github.com/clearance/clearance/verifier/storage"
)

// Store is what rollout reads and writes; storage.Store implements it.
type Store interface {
	GraceStarts(ctx context.Context, deviceID string) (map[string]time.Time, error)
	StartGrace(ctx context.Context, deviceID, policyID string, at time.Time) (time.Time, error)
	EndGrace(ctx context.Context, deviceID, policyID string) error
	ForgetGraces(ctx context.Context, keep []string) (int, error)
	Bypasses(ctx context.Context, deviceID string) (map[string]time.Time, error)
	UseBypass(ctx context.Context, deviceID, policyID, username string, at, notBefore time.Time) error
	ExemptionsFor(ctx context.Context, deviceID, username string, now time.Time) ([]storage.Exemption, error)
}

var _ Store = storage.Store(nil)

// Settings gives each policy's rollout settings, by policy id, for the set
// in force.
type Settings interface {
	Rollout() map[string]decision.PolicyRollout
}

// Source gathers and keeps rollout state.
type Source struct {
	Store    Store
	Settings Settings
	// Ceiling lowers every policy (the --enforcement setting) until
	// SetCeiling replaces it.
	Ceiling decision.Enforcement
	// Period is how often one policy may be resolved later on one Mac
	// (decision.DefaultBypassPeriod when zero).
	Period time.Duration

	// ceiling, once set, is the ceiling in force: every sign-in reads it,
	// and a reload of the settings file replaces it.
	ceiling atomic.Pointer[decision.Enforcement]
}

// CurrentCeiling is the ceiling in force: the last SetCeiling's, else
// Ceiling; never "" (no ceiling is enforce, which lowers nothing).
func (s *Source) CurrentCeiling() decision.Enforcement {
	c := s.Ceiling
	if p := s.ceiling.Load(); p != nil {
		c = *p
	}
	if c == "" {
		return decision.Enforce
	}
	return c
}

// SetCeiling puts c in force for every decision from now on and returns
// the ceiling it replaced.
func (s *Source) SetCeiling(c decision.Enforcement) decision.Enforcement {
	was := s.Ceiling
	if p := s.ceiling.Swap(&c); p != nil {
		was = *p
	}
	if was == "" {
		return decision.Enforce
	}
	return was
}

// ForgetIdleGraces forgets every grace start that holds no block back
// under settings: of a policy without a grace, or whose enforcement is
// not enforce (warn, monitor), or that is no longer in the set. The
// ceiling (--enforcement) is left out: it is one replica's setting, and a
// replica started with a lower one must not end the graces the others
// keep. Such a start would otherwise keep running unseen, and
// a policy enforced with a grace again (moved back from warn, or given its
// grace back) would block every Mac it covers at once. Run at start and
// after every reload; it returns how many it forgot.
func (s *Source) ForgetIdleGraces(ctx context.Context, settings map[string]decision.PolicyRollout) (int, error) {
	var keep []string
	for id, pr := range settings {
		if pr.Grace > 0 && pr.Enforcement.Lower(decision.Enforce) == decision.Enforce {
			keep = append(keep, id)
		}
	}
	n, err := s.Store.ForgetGraces(ctx, keep)
	if err != nil {
		return 0, fmt.Errorf("forgetting grace periods no policy holds: %w", err)
	}
	return n, nil
}

// BypassPeriod is the period with its default.
func (s *Source) BypassPeriod() time.Duration {
	if s.Period <= 0 {
		return decision.DefaultBypassPeriod
	}
	return s.Period
}

// Inputs returns the rollout inputs of a sign-in by username on deviceID
// at now. Continue, ResolveLater, ResolveLaterOffered and PageShown are
// the caller's.
func (s *Source) Inputs(ctx context.Context, deviceID, username string, now time.Time) (decision.Rollout, error) {
	ro := decision.Rollout{Ceiling: s.CurrentCeiling(), BypassPeriod: s.BypassPeriod()}
	if s.Settings != nil {
		ro.Policies = s.Settings.Rollout()
	}
	var err error
	if ro.GraceSince, err = s.Store.GraceStarts(ctx, deviceID); err != nil {
		return decision.Rollout{}, err
	}
	if ro.BypassUsed, err = s.Store.Bypasses(ctx, deviceID); err != nil {
		return decision.Rollout{}, err
	}
	es, err := s.Store.ExemptionsFor(ctx, deviceID, username, now)
	if err != nil {
		return decision.Rollout{}, err
	}
	for _, e := range es {
		ro.Exemptions = append(ro.Exemptions, Exemption(e))
	}
	return ro, nil
}

// Exemption converts a stored exemption to the decision's form.
func Exemption(e storage.Exemption) decision.Exemption {
	return decision.Exemption{ID: e.ID, DeviceID: e.DeviceID, Username: e.Username, PolicyIDs: e.PolicyIDs,
		ExpiresAt: e.ExpiresAt, RevokedAt: e.RevokedAt}
}

// Record keeps the grace state a decision saw: a FAIL of a policy with a
// grace period starts the device's grace (if not started), a PASS ends
// it. A decision made before policies were judged records nothing. It
// reads the device's grace starts first and writes only what changes:
// Cloudflare asks about every Mac every few minutes, and a Mac whose
// state is as recorded costs a read.
func (s *Source) Record(ctx context.Context, d decision.Decision) error {
	if d.DeviceID == "" || d.Results == nil {
		return nil
	}
	settings := map[string]decision.PolicyRollout{}
	if s.Settings != nil {
		settings = s.Settings.Rollout()
	}
	var start []decision.Finding
	for _, f := range d.Failing {
		if !f.GraceStarted.IsZero() {
			start = append(start, f)
		}
	}
	var end []string
	for _, f := range d.Results {
		if f.Status == decision.StatusPass && settings[f.PolicyID].Grace > 0 {
			end = append(end, f.PolicyID)
		}
	}
	if len(start) == 0 && len(end) == 0 {
		return nil
	}
	stored, err := s.Store.GraceStarts(ctx, d.DeviceID)
	if err != nil {
		return fmt.Errorf("recording grace: %w", err)
	}
	var errs []error
	for _, f := range start {
		if _, ok := stored[f.PolicyID]; ok {
			continue
		}
		if _, err := s.Store.StartGrace(ctx, d.DeviceID, f.PolicyID, f.GraceStarted); err != nil {
			errs = append(errs, err)
		}
	}
	for _, id := range end {
		if _, ok := stored[id]; !ok {
			continue
		}
		if err := s.Store.EndGrace(ctx, d.DeviceID, id); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("recording grace: %w", err)
	}
	return nil
}

// ErrBypassSpent: a policy this decision resolved later was resolved later
// on the device meanwhile (another tab, another replica). The sign-in
// must not complete on it.
var ErrBypassSpent = errors.New("resolve later already used for this period")

// SpendBypass records every policy d resolved later. Each is spent once
// per period across replicas; if one was spent meanwhile it returns
// ErrBypassSpent (the others spent stay spent: each press counts).
func (s *Source) SpendBypass(ctx context.Context, d decision.Decision, username string, now time.Time) error {
	for _, id := range d.Bypassed() {
		err := s.Store.UseBypass(ctx, d.DeviceID, id, username, now, now.Add(-s.BypassPeriod()))
		switch {
		case errors.Is(err, storage.ErrAlreadyExists):
			return fmt.Errorf("%s: %w", id, ErrBypassSpent)
		case err != nil:
			return err
		}
	}
	return nil
}
