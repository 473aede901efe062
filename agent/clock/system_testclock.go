//go:build clearance_testclock

package clock

import (
	"fmt"
	"os"
	"time"
)

// TestOffsetVar names the environment variable that shifts the device's
// clock in test builds (go build -tags clearance_testclock), as a Go
// duration such as "10m" or "-10m". Release builds do not read it: what the
// agent signs can be shifted only by moving the machine's clock.
const TestOffsetVar = "CLEARANCE_TEST_CLOCK_OFFSET"

// System is the device's clock, shifted by TestOffsetVar. The end-to-end
// tests run the real agent binary this way, as if its Mac's clock were
// off, without changing the clock of the machine that runs them.
func System() func() time.Time {
	v := os.Getenv(TestOffsetVar)
	if v == "" {
		return time.Now
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		// A test that sets it wrong must fail, not run unshifted.
		panic(fmt.Sprintf("%s=%q: %v", TestOffsetVar, v, err))
	}
	return func() time.Time { return time.Now().Add(d) }
}

// TestMaxBackoffVar names the environment variable that caps the agent's
// reconnect and enrollment backoff in test builds, as a Go duration: the
// end-to-end tests see an approved agent report within one short backoff.
const TestMaxBackoffVar = "CLEARANCE_TEST_MAX_BACKOFF"

// MaxBackoff is TestMaxBackoffVar's value, 0 when unset (the default).
func MaxBackoff() time.Duration {
	v := os.Getenv(TestMaxBackoffVar)
	if v == "" {
		return 0
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		panic(fmt.Sprintf("%s=%q: not a positive duration", TestMaxBackoffVar, v))
	}
	return d
}
