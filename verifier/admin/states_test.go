package admin

import (
	"testing"
	"time"

	"github.com/clearance/clearance/verifier/metrics"
)

func TestDeviceState(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	maxAge := 5 * time.Minute
	for _, tc := range []struct {
		name       string
		connected  bool
		lastReport time.Time
		compliant  bool
		want       string
	}{
		{"offline beats everything", false, now, true, metrics.DeviceOffline},
		{"never reported", true, time.Time{}, false, metrics.DeviceStale},
		{"old report", true, now.Add(-maxAge - time.Second), true, metrics.DeviceStale},
		{"exactly max age is fresh", true, now.Add(-maxAge), true, metrics.DeviceCompliant},
		{"fresh and failing", true, now, false, metrics.DeviceFailing},
		{"fresh and passing", true, now, true, metrics.DeviceCompliant},
	} {
		if got := DeviceState(tc.connected, tc.lastReport, tc.compliant, now, maxAge); got != tc.want {
			t.Errorf("%s: %s, want %s", tc.name, got, tc.want)
		}
	}
}
