package admin

import (
	"context"
	"time"

	adminv1 "github.com/clearance/clearance/proto/gen/clearance/admin/v1"
	"github.com/clearance/clearance/verifier/decision"
	"github.com/clearance/clearance/verifier/metrics"
	"github.com/clearance/clearance/verifier/storage"
)

// statePage is how many devices CountDevices reads at a time.
const statePage = 500

// DeviceState says which of the metrics.Device* states a device is in:
// offline before stale before failing or compliant.
func DeviceState(connected bool, lastReport time.Time, compliant bool, now time.Time, maxAge time.Duration) string {
	switch {
	case !connected:
		return metrics.DeviceOffline
	case lastReport.IsZero() || now.Sub(lastReport) > maxAge:
		return metrics.DeviceStale
	case !compliant:
		return metrics.DeviceFailing
	}
	return metrics.DeviceCompliant
}

// DeviceCounts are the enrolled, unrevoked devices by state
// (metrics.DeviceStates), and how many of them said their agent rejected
// the settings it was given.
type DeviceCounts struct {
	States           map[string]int
	SettingsRejected int
}

// CountDevices counts the enrolled, unrevoked devices by state, judging
// each fresh report against the policies in force, as ListDevices does
// (a policy scoped to groups none of a Mac's people are in left out), and
// those whose settings were rejected, a fact of the device read with it.
// Reports are read only for devices that are connected and fresh.
func (s *Server) CountDevices(ctx context.Context, maxAge time.Duration) (DeviceCounts, error) {
	counts := DeviceCounts{States: map[string]int{}}
	now := s.now()
	snap := s.snapshot()
	dir := &directory{s: s}
	after := ""
	for {
		devs, err := s.Store.ListDevices(ctx, after, statePage)
		if err != nil {
			return DeviceCounts{}, err
		}
		for _, d := range devs {
			if d.Revoked() {
				continue
			}
			if !d.SettingsRejectedAt.IsZero() {
				counts.SettingsRejected++
			}
			counts.States[s.state(d, now, maxAge, func() bool {
				latest, err := s.latest(ctx, d.ID)
				if err != nil {
					return false
				}
				_, sum := Outcomes(snap.Set, latest.GetReport())
				// A Mac whose people cannot be read now is held to
				// every policy, as one whose people are not known:
				// scopeOut changes nothing unless it read them all.
				_, _ = s.scopeOut(ctx, d.ID, latest.GetReport(), sum, snap.Scopes, dir)
				return sum.GetCompliant()
			})]++
		}
		if len(devs) < statePage {
			return counts, nil
		}
		after = devs[len(devs)-1].ID
	}
}

// deviceState is Device.state: revoked, else stale (its sign-ins are
// refused for the report's age, wherever its agent is connected; the
// metric counts such a device offline when it is not connected here),
// else DeviceState.
func (s *Server) deviceState(d storage.Device, sum *adminv1.PostureSummary) string {
	now, maxAge := s.now(), s.maxPostureAge()
	switch {
	case d.Revoked():
		return "revoked"
	case d.LastReportAt.IsZero() || now.Sub(d.LastReportAt) > maxAge:
		return metrics.DeviceStale
	}
	return DeviceState(s.Hub.Connected(d.ID), d.LastReportAt, sum.GetCompliant(), now, maxAge)
}

// maxPostureAge is MaxPostureAge, or the default when unset.
func (s *Server) maxPostureAge() time.Duration {
	if s.MaxPostureAge > 0 {
		return s.MaxPostureAge
	}
	return decision.DefaultMaxPostureAge
}

// state reads the report (through compliant) only when it matters.
func (s *Server) state(d storage.Device, now time.Time, maxAge time.Duration, compliant func() bool) string {
	connected := s.Hub.Connected(d.ID)
	if !connected || d.LastReportAt.IsZero() || now.Sub(d.LastReportAt) > maxAge {
		return DeviceState(connected, d.LastReportAt, false, now, maxAge)
	}
	return DeviceState(true, d.LastReportAt, compliant(), now, maxAge)
}
