//go:build !clearance_testclock

package logfile

import "time"

// Followed is the log a Follower is made for, and how often it looks:
// path and Every. Test builds may name another (followed_testclock.go).
func Followed(path string) (string, time.Duration) { return path, Every }
