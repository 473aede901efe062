package admin

import (
	"slices"
	"time"

	adminv1 "github.com/clearance/clearance/proto/gen/clearance/admin/v1"
)

// DeviceFilter is the fleet-health question ListDevices and the devices
// command answer alike: which Macs fail, are offline, or do not pass a
// policy. Revoked Macs, which sign in to nothing, are left out of any of
// these unless Revoked keeps them. The zero filter keeps every device.
type DeviceFilter struct {
	// Failing keeps devices that are not compliant (a required policy
	// that holds one of its people does not pass) or whose latest report
	// is missing or stale.
	Failing bool
	// ByFailingFor keeps devices out of compliance without a break for at
	// least FailingFor (PostureSummary.failing_since; 0: any whose start
	// is recorded).
	ByFailingFor bool
	FailingFor   time.Duration
	// Offline keeps devices whose agent holds no stream to this verifier.
	Offline bool
	// PolicyID keeps devices that do not pass the policy: failing it
	// (out of scope for their people too), its check erring, or no result.
	PolicyID string
	// Revoked keeps revoked devices in the filters above.
	Revoked bool
}

// Health reports whether f asks a fleet-health question at all.
func (f DeviceFilter) Health() bool {
	return f.Failing || f.ByFailingFor || f.Offline || f.PolicyID != ""
}

// Keep reports whether d answers f at now.
func (f DeviceFilter) Keep(d *adminv1.Device, now time.Time) bool {
	if !f.Health() {
		return true
	}
	s := d.GetSummary()
	switch {
	case !f.Revoked && d.GetStatus() == adminv1.DeviceStatus_DEVICE_STATUS_REVOKED:
		return false
	case f.Failing && s.GetCompliant() && d.GetState() != "stale":
		return false
	case f.ByFailingFor && (s.GetCompliant() || s.GetFailingSince() == nil || s.GetFailingSince().AsTime().After(now.Add(-f.FailingFor))):
		return false
	case f.Offline && d.GetConnected():
		return false
	case f.PolicyID != "" && !Fails(d, f.PolicyID):
		return false
	}
	return true
}

// Fails reports whether the device does not pass the policy: it fails it
// (for its people or out of their scope), its check errs, or the latest
// report has no result for it; advisory policies as well as required ones.
func Fails(d *adminv1.Device, policy string) bool {
	s := d.GetSummary()
	return slices.Contains(s.GetFailing(), policy) || slices.Contains(s.GetAdvisoryFailing(), policy) ||
		slices.Contains(s.GetFailingOutOfScope(), policy)
}
