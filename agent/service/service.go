// Package service installs and controls clearance-agent as a system service
// through kardianos/service: a launchd daemon on macOS, a systemd unit on
// Linux. The launchd plist is generated here with groob/plist, and the .pkg
// builder ships the very same plist (LaunchdPlist).
package service

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"runtime"

	"github.com/clearance/clearance/pkg/agentprefs"
	"github.com/clearance/clearance/pkg/atomicfile"

	"github.com/groob/plist"
	kservice "github.com/kardianos/service"
)

// Names shared with packaging.
const (
	// Label is agentprefs.Label: the verifier's login-item profile names it.
	Label = agentprefs.Label
	// ExecutablePath is the binary launchd runs as root. It lives in a
	// directory the package creates root-owned, not in /usr/local/bin,
	// which on Intel Macs with Homebrew belongs to the Homebrew user: who
	// can replace the binary there gets root at the agent's next start.
	// The package links /usr/local/bin/clearance-agent to it for people.
	ExecutablePath   = "/usr/local/clearance/bin/clearance-agent"
	LaunchdPlistPath = "/Library/LaunchDaemons/" + Label + ".plist"
	LogPath          = "/var/log/clearance-agent.log"
	// NewsyslogPath is the agent's entry for newsyslog, which rotates
	// LogPath on macOS (see NewsyslogConf).
	NewsyslogPath = "/etc/newsyslog.d/" + Label + ".conf"
)

// NewsyslogConf is the file at NewsyslogPath: newsyslog renames the log
// once it passes 1 MiB and keeps five archives (at most 6 MiB in all),
// uncompressed and without signalling anyone. The agent notices the new
// file within 30 s and writes to it (agent/logfile); what it writes
// meanwhile goes to the newest archive, which compressing would lose. New
// logs are root:admin 0640, as the agent makes the one launchd opened:
// administrators read them, other users do not.
func NewsyslogConf() []byte {
	return []byte(`# clearance-agent's log: rotated at 1 MiB, five archives kept. The agent
# moves to the new file by itself, so no signal is sent; the archives are
# not compressed, so that nothing written before it moves is lost.
# logfilename                  [owner:group]  mode  count  size(KiB)  when  flags
` + LogPath + `   root:admin     640   5      1024       *     N
`)
}

// InstallNewsyslog writes NewsyslogConf at NewsyslogPath on macOS, as the
// package does; elsewhere it does nothing.
func InstallNewsyslog() error {
	if runtime.GOOS != "darwin" {
		return nil
	}
	return atomicfile.Write(NewsyslogPath, NewsyslogConf(), 0o644)
}

// RemoveNewsyslog removes NewsyslogPath on macOS; elsewhere it does
// nothing.
func RemoveNewsyslog() error {
	if runtime.GOOS != "darwin" {
		return nil
	}
	if err := os.Remove(NewsyslogPath); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// Launchd is the launchd job definition for the agent.
type Launchd struct {
	Label             string   `plist:"Label"`
	ProgramArguments  []string `plist:"ProgramArguments"`
	RunAtLoad         bool     `plist:"RunAtLoad"`
	KeepAlive         bool     `plist:"KeepAlive"`
	StandardOutPath   string   `plist:"StandardOutPath"`
	StandardErrorPath string   `plist:"StandardErrorPath"`
	// ProcessType is Standard: the agent answers sign-in challenges on
	// loopback, and runs live checks, while a person waits at the browser.
	// Background would have launchd throttle its CPU and I/O then; its
	// steady cost is already bounded (the run budget, the policies'
	// intervals).
	ProcessType string `plist:"ProcessType"`
	// ThrottleInterval spaces out restarts of a crashing agent.
	ThrottleInterval int `plist:"ThrottleInterval"`
}

// LaunchdJob returns the agent's launchd job. RunAtLoad and KeepAlive are
// both set: launchd starts the agent at boot and restarts it whenever it
// exits.
func LaunchdJob() Launchd {
	return Launchd{
		Label:             Label,
		ProgramArguments:  []string{ExecutablePath, "run"},
		RunAtLoad:         true,
		KeepAlive:         true,
		StandardOutPath:   LogPath,
		StandardErrorPath: LogPath,
		ProcessType:       "Standard",
		ThrottleInterval:  10,
	}
}

// LaunchdPlist renders LaunchdJob as an XML plist, the file installed at
// LaunchdPlistPath.
func LaunchdPlist() ([]byte, error) {
	return plist.MarshalIndent(LaunchdJob(), "\t")
}

type program struct{}

func (program) Start(kservice.Service) error { return nil }
func (program) Stop(kservice.Service) error  { return nil }

// New returns the service handle used by install, uninstall, start, stop and
// status.
func New() (kservice.Service, error) {
	job := LaunchdJob()
	pl, err := LaunchdPlist()
	if err != nil {
		return nil, fmt.Errorf("rendering launchd plist: %w", err)
	}
	return kservice.New(program{}, &kservice.Config{
		Name:        Label,
		DisplayName: "Clearance agent",
		Description: "Reports this device's security posture to the Clearance verifier.",
		Executable:  ExecutablePath,
		Arguments:   job.ProgramArguments[1:],
		Option: kservice.KeyValue{
			// kardianos writes RunAtLoad false unless told; our own plist
			// replaces its template entirely, and these keep its other
			// code paths consistent with it.
			"RunAtLoad":     true,
			"KeepAlive":     true,
			"LaunchdConfig": string(pl),
			"Restart":       "always",
		},
	})
}

// Status is the service state in words.
func Status(s kservice.Service) string {
	st, err := s.Status()
	switch {
	case errors.Is(err, kservice.ErrNotInstalled):
		return "not installed"
	case err != nil:
		return "unknown (" + err.Error() + ")"
	case st == kservice.StatusRunning:
		return "running"
	case st == kservice.StatusStopped:
		return "stopped"
	default:
		return "unknown"
	}
}
