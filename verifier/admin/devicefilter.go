package admin

import (
	"slices"
	"time"

	adminv1 "github.com/clearance/clearance/proto/gen/clearance/admin/v1"
	"github.com/clearance/clearance/verifier/storage"
)

// DeviceFilter is what ListDevices is asked, as the devices command asks
// it: which Macs by name (serial number, host name, who uses them), and
// the fleet-health question: which fail, are offline, or do not pass a
// policy. Revoked Macs, which sign in to nothing, are left out of the
// health filters unless Revoked keeps them; the names keep them. The
// zero filter keeps every device.
type DeviceFilter struct {
	// SerialNumber keeps the devices with this serial number, in any
	// ASCII case; HostName those whose host name is it or starts with it,
	// in any ASCII case. Both are facts of the stored device (Names), so
	// they are checked before its posture is read.
	SerialNumber, HostName string
	// User keeps the Macs this person (a user id or username) uses, as
	// GetUser lists them; ListDevices reads them once (macsOf).
	User string
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
	// SettingsRejected keeps devices whose latest report said their agent
	// rejected the settings it was given: a fact of the stored device
	// (Names), checked before its posture is read.
	SettingsRejected bool
	// Revoked keeps revoked devices in the filters above.
	Revoked bool
}

// Health reports whether f asks a fleet-health question at all.
func (f DeviceFilter) Health() bool {
	return f.Failing || f.ByFailingFor || f.Offline || f.PolicyID != "" || f.SettingsRejected
}

// Names reports whether the stored device d has f's serial number and
// host name, and, with SettingsRejected, settings rejected. ASCII case
// alone is folded: a Unicode fold would make a look-alike (a Kelvin sign
// for a K) the name it imitates.
func (f DeviceFilter) Names(d storage.Device) bool {
	if f.SerialNumber != "" && !equalFoldASCII(d.SerialNumber, f.SerialNumber) {
		return false
	}
	if f.SettingsRejected && d.SettingsRejectedAt.IsZero() {
		return false
	}
	return f.HostName == "" || len(d.Hostname) >= len(f.HostName) && equalFoldASCII(d.Hostname[:len(f.HostName)], f.HostName)
}

// equalFoldASCII reports whether a and b are the same with A–Z and a–z
// alike, every other byte as it is.
func equalFoldASCII(a, b string) bool {
	return len(a) == len(b) && storage.HostnameKey(a) == storage.HostnameKey(b)
}

// Keep reports whether d answers f's fleet-health filters at now.
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
