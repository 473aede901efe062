//go:build !clearance_testclock

package clock

import "time"

// System is the device's clock.
func System() func() time.Time { return time.Now }

// MaxBackoff is 0: release builds back off as far as the stream's default.
func MaxBackoff() time.Duration { return 0 }
