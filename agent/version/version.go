// Package version holds the agent's version, set at link time with
// -ldflags "-X github.com/clearance/clearance/agent/version.Version=v1.2.3".
package version

// Version is reported in Enroll facts, Hello and every posture report.
var Version = "dev"
