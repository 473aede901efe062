//go:build clearance_testclock

package logfile

import (
	"fmt"
	"os"
	"time"
)

// TestPathVar and TestEveryVar name the environment variables that, in
// test builds (go build -tags clearance_testclock), make the agent follow
// another log file, looked at as often as the duration says: the
// end-to-end tests rotate the real agent's log without touching
// /var/log. Release builds do not read them.
const (
	TestPathVar  = "CLEARANCE_TEST_LOG_FILE"
	TestEveryVar = "CLEARANCE_TEST_LOG_EVERY"
)

// Followed is TestPathVar's path and TestEveryVar's interval, path and
// Every when they are unset.
func Followed(path string) (string, time.Duration) {
	every := Every
	if v := os.Getenv(TestEveryVar); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			panic(fmt.Sprintf("%s=%q: not a positive duration", TestEveryVar, v))
		}
		every = d
	}
	if v := os.Getenv(TestPathVar); v != "" {
		path = v
	}
	return path, every
}
