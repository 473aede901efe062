package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/clearance/clearance/agent/config"
	"github.com/clearance/clearance/agent/internal/fakeverifier"
	"github.com/clearance/clearance/agent/state"
	"github.com/clearance/clearance/internal/testkit"
	"github.com/clearance/clearance/pkg/agentprefs"
	"github.com/clearance/clearance/pkg/cli"
	agentv1 "github.com/clearance/clearance/proto/gen/clearance/agent/v1"
	kservice "github.com/kardianos/service"
)

// agentWithin bounds each wait on the in-process agent.
const agentWithin = 20 * time.Second

// runningAgent is `clearance-agent run` in this process, with signals of
// its own: the test's, not the process's.
type runningAgent struct {
	logs      *testkit.Buffer
	term, hup chan os.Signal
	done      chan error
	once      sync.Once
	err       error
}

func startAgent(t *testing.T, args ...string) *runningAgent {
	t.Helper()
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	flags := config.BindFlags(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	a := &runningAgent{logs: new(testkit.Buffer), term: make(chan os.Signal, 1), hup: make(chan os.Signal, 1), done: make(chan error, 1)}
	go func() { a.done <- agentLoop(flags, runSignals{term: a.term, hup: a.hup}, a.logs) }()
	t.Cleanup(func() { a.stop(t) })
	return a
}

// stop ends the agent as SIGTERM does, and returns how it ended.
func (a *runningAgent) stop(t *testing.T) error {
	t.Helper()
	a.once.Do(func() {
		a.term <- syscall.SIGTERM
		select {
		case a.err = <-a.done:
		case <-time.After(agentWithin):
			t.Fatalf("the agent did not stop; its log:\n%s", a.logs)
		}
	})
	return a.err
}

// nextReport waits for a report from the agent, after those received so
// far, and returns it.
func nextReport(t *testing.T, v *fakeverifier.Verifier, a *runningAgent) *agentv1.PostureReport {
	t.Helper()
	for {
		select {
		case r := <-v.Reports:
			if !r.Duplicate {
				return r.Report
			}
		case err := <-a.done:
			t.Fatalf("the agent ended: %v; its log:\n%s", err, a.logs)
		case <-time.After(agentWithin):
			t.Fatalf("no report; the agent's log:\n%s", a.logs)
		}
	}
}

// drain forgets the reports received so far.
func drain(v *fakeverifier.Verifier) {
	for {
		select {
		case <-v.Reports:
		default:
			return
		}
	}
}

// TestStartWithAProfileThatWouldNotRun: an agent that ran records the
// settings it ran with; started again (a reboot, an upgrade's postinstall)
// with a profile that does not read, would not run or is gone, it runs
// with those, says so at ERROR once, and status shows the profile
// rejected. A good profile after that is taken and recorded. With nothing
// recorded (a first start), a bad profile stops it with the error, as
// ever.
func TestStartWithAProfileThatWouldNotRun(t *testing.T) {
	t.Parallel()
	v, m := newMac(t)
	stateDir, managed, profile, setProfile := m.stateDir, m.managed, m.profile, m.setProfile
	args := []string{"--state-dir", stateDir, "--managed-plist", managed, "--presence-listen", "off"}
	statusArgs := []string{"status", "--state-dir", stateDir, "--managed-plist", managed}
	const misspelt = `unknown key "CAFingerprnt": did you mean CAFingerprint?`

	// 1. A first start with a bad profile: the error, exit 1, nothing
	// recorded.
	setProfile(profile("<key>CAFingerprnt</key><string>ab</string>"))
	if code, _, stderr := runAgent(append([]string{"run"}, args...)...); code != 1 || !strings.Contains(stderr, misspelt) {
		t.Fatalf("first start with a misspelt profile: exit %d, stderr %q; want 1 and the error", code, stderr)
	}
	if _, err := os.Stat(filepath.Join(stateDir, state.LastSettingsFile)); !os.IsNotExist(err) {
		t.Errorf("a start that did not run recorded settings: %v", err)
	}

	// 2. A good profile runs, and is recorded: 0600, holding what ran.
	// Its reports say no settings were rejected.
	setProfile(profile())
	a := startAgent(t, args...)
	if r := nextReport(t, v, a); r.GetSettingsRejection() != nil {
		t.Errorf("the report of a good profile says settings were rejected: %v", r.GetSettingsRejection())
	}
	if err := a.stop(t); err != nil {
		t.Fatalf("the agent ended with %v", err)
	}
	recorded := readRecord(t, stateDir)
	if got := recorded.Settings[agentprefs.KeyEnrollSecret].Value; got != v.Secret {
		t.Errorf("recorded enroll secret %q, want the profile's", got)
	}
	if got := recorded.Settings[agentprefs.KeyVerifier]; got.Value != v.Addr || got.From != managed+" key VerifierAddress" {
		t.Errorf("recorded verifier %+v", got)
	}
	if _, ok := recorded.Settings[agentprefs.KeyPresenceListen]; ok {
		t.Error("a flag's setting is recorded: the next start's flags say")
	}

	// 3. Started again with a profile that would not run, the agent runs
	// and reports with the recorded settings; its reports tell the
	// verifier that it rejected the profile, and why, as status does.
	// why is in status as it is; the log quotes it, why's end as it is.
	// The report says which setting, never a value (reportedWhy).
	bad := []struct{ name, profile, why, reported string }{
		{"a misspelt key", profile("<key>CAFingerprnt</key><string>ab</string>"), misspelt, "the new settings have an unknown key (did you mean CAFingerprint?)"},
		{"not a plist", "garbage", "not a valid plist", "the new settings do not read or would not run"},
		{"a pin no CA matches", profile("<key>CAFingerprint</key><string>" + strings.Repeat("ab", 32) + "</string>"), "no configured CA certificate has this fingerprint",
			"the new settings' CAFingerprint was refused (the new ones changed CAFingerprint)"},
		{"the profile removed", "", "no verifier address", "the new settings do not read or would not run"},
	}
	for _, tt := range bad {
		setProfile(tt.profile)
		drain(v)
		a := startAgent(t, args...)
		r := nextReport(t, v, a)
		switch sr := r.GetSettingsRejection(); {
		case sr == nil:
			t.Errorf("%s: the report does not say the settings were rejected", tt.name)
		case !strings.HasPrefix(sr.GetReason(), tt.reported) || strings.Contains(sr.GetReason(), v.Secret) || strings.Contains(sr.GetReason(), "CAFingerprnt"):
			t.Errorf("%s: the report says %q, want the reason %q (and never a value)", tt.name, sr.GetReason(), tt.reported)
		case sr.GetAt().AsTime().After(r.GetObservedAt().AsTime()) || time.Since(sr.GetAt().AsTime()) > agentWithin:
			t.Errorf("%s: rejected at %v, report observed at %v", tt.name, sr.GetAt().AsTime(), r.GetObservedAt().AsTime())
		}
		logs := a.logs.String()
		if n := strings.Count(logs, `level=ERROR msg="settings would not run; the agent runs with the last settings that ran"`); n != 1 ||
			!a.logs.HasLine("level=ERROR", "settings would not run", tt.why[strings.LastIndex(tt.why, `"`)+1:], "recorded_at=") {
			t.Errorf("%s: said %d times at ERROR, want once with %q; the log:\n%s", tt.name, n, tt.why, logs)
		}
		// Told again (SIGHUP), the same error is not said again.
		a.hup <- syscall.SIGHUP
		time.Sleep(200 * time.Millisecond)
		if strings.Contains(a.logs.String(), "new settings would not run") {
			t.Errorf("%s: the error said again on SIGHUP:\n%s", tt.name, a.logs)
		}
		if strings.Contains(a.logs.String(), v.Secret) {
			t.Errorf("%s: the log holds the enroll secret", tt.name)
		}
		code, stdout, _ := runAgent(statusArgs...)
		if code != standingSettingsRejected.code {
			t.Errorf("%s: status exits %d, want %d (settings rejected)", tt.name, code, standingSettingsRejected.code)
		}
		for _, want := range []string{
			`agent: +running since`,
			`NEW SETTINGS REJECTED: +at .*: .*` + regexp.QuoteMeta(tt.why) + `.*; the agent started with the last settings that ran \(recorded ` + regexp.QuoteMeta(recorded.At.Format(time.RFC3339)) + `\)`,
			`enrolled: +yes`,
		} {
			if !regexp.MustCompile(want).MatchString(stdout) {
				t.Errorf("%s: status lacks %q:\n%s", tt.name, want, stdout)
			}
		}
		if err := a.stop(t); err != nil {
			t.Errorf("%s: the agent ended with %v", tt.name, err)
		}
		// Runs with the record leave the record as it was.
		if again := readRecord(t, stateDir); !again.At.Equal(recorded.At) {
			t.Errorf("%s: the record was rewritten at %v", tt.name, again.At)
		}
	}

	// 4. A good profile after that is taken (here on SIGHUP) and recorded.
	setProfile("garbage")
	a = startAgent(t, args...)
	nextReport(t, v, a)
	drain(v)
	setProfile(profile("<key>RunBudget</key><integer>90</integer>"))
	a.hup <- syscall.SIGHUP
	testkit.Eventually(t, agentWithin, "the agent taking the good profile", func() bool {
		return a.logs.HasLine("settings changed; the agent starts again with them")
	})
	testkit.Eventually(t, agentWithin, "the good profile recorded", func() bool {
		raw, err := os.ReadFile(filepath.Join(stateDir, state.LastSettingsFile))
		return err == nil && strings.Contains(string(raw), `"RunBudget":{"value":"90s"`)
	})
	if r := nextReport(t, v, a); r.GetSettingsRejection() != nil {
		t.Errorf("the report after the good profile still says settings were rejected: %v", r.GetSettingsRejection())
	}
	if code, stdout, _ := runAgent(statusArgs...); code != 0 || !regexp.MustCompile(`settings: +in use as the files say`).MatchString(stdout) ||
		strings.Contains(stdout, "REJECTED") {
		t.Errorf("status after the good profile: exit %d\n%s", code, stdout)
	}
	if err := a.stop(t); err != nil {
		t.Errorf("the agent ended with %v", err)
	}
}

// mac is a Mac for the in-process agent: an osquery stand-in, a state dir
// and a managed plist, with a fake verifier to enroll with.
type mac struct {
	t                 *testing.T
	dir, socket       string
	stateDir, managed string
	caFile, addr      string
	secret            string
}

func newMac(t *testing.T) (*fakeverifier.Verifier, *mac) {
	t.Helper()
	v := fakeverifier.New(t)
	v.PolicySet = &agentv1.PolicySet{Version: "v1", Policies: []*agentv1.Policy{
		{Id: "one", Name: "One", Query: "SELECT 1", Required: true, Interval: durationpb.New(time.Minute)},
	}}
	dir, socket := startSim(t, "compliant-mac")
	return v, &mac{t: t, dir: dir, socket: socket, stateDir: filepath.Join(dir, "state"), managed: filepath.Join(dir, "managed.plist"),
		caFile: v.PKI.WriteRoot(t, dir), addr: v.Addr, secret: v.Secret}
}

// profile is the managed plist of a working profile, with extra entries.
func (m *mac) profile(extra ...string) string {
	return `<?xml version="1.0" encoding="UTF-8"?>
<plist version="1.0"><dict>
<key>VerifierAddress</key><string>` + m.addr + `</string>
<key>CAFile</key><string>` + m.caFile + `</string>
<key>EnrollSecret</key><string>` + m.secret + `</string>
<key>OsquerySocket</key><string>` + m.socket + `</string>
` + strings.Join(extra, "\n") + `
</dict></plist>
`
}

// setProfile puts body where the MDM puts the profile's settings; ""
// removes them.
func (m *mac) setProfile(body string) {
	m.t.Helper()
	os.Remove(m.managed)
	if body != "" {
		if err := os.WriteFile(m.managed, []byte(body), 0o600); err != nil {
			m.t.Fatal(err)
		}
	}
}

// TestStartWithSettingsThatDoNotStart: settings that read and pass the
// checks but fail to start a run (a browser list for another platform)
// give way at a start to the last settings that ran, as they do at a
// reload; with none recorded, they stop the agent.
func TestStartWithSettingsThatDoNotStart(t *testing.T) {
	t.Parallel()
	v, m := newMac(t)
	args := []string{"--state-dir", m.stateDir, "--managed-plist", m.managed}
	wrong := m.profile("<key>PresenceListen</key><string>127.0.0.1:1</string>", "<key>PresenceBrowsers</key><string>ABCDE12345</string>")
	const why = "browser Team IDs and Apple identifiers apply on macOS"

	m.setProfile(wrong)
	if code, _, stderr := runAgent(append([]string{"run"}, args...)...); code != 1 || !strings.Contains(stderr, why) {
		t.Fatalf("first start: exit %d, stderr %q; want 1 and the error", code, stderr)
	}
	m.setProfile(m.profile("<key>PresenceListen</key><string>off</string>"))
	a := startAgent(t, args...)
	nextReport(t, v, a)
	if err := a.stop(t); err != nil {
		t.Fatal(err)
	}

	m.setProfile(wrong)
	drain(v)
	a = startAgent(t, args...)
	if reason := nextReport(t, v, a).GetSettingsRejection().GetReason(); strings.Contains(reason, "ABCDE12345") ||
		!strings.HasSuffix(reason, " (the new ones changed PresenceListen, PresenceBrowsers); 'clearance-agent status' on the Mac says why") {
		t.Errorf("the report says %q, want the rejection and the keys it changed, without their values", reason)
	}
	if !a.logs.HasLine("level=ERROR", "settings would not start; the agent runs with the last settings that ran", why, "changed=\"[PresenceListen PresenceBrowsers]\"") {
		t.Errorf("the agent's log:\n%s", a.logs)
	}
	_, stdout, _ := runAgent("status", "--state-dir", m.stateDir, "--managed-plist", m.managed)
	if !regexp.MustCompile(`NEW SETTINGS REJECTED: +at .*: .*` + why + `.*; the agent started with the last settings that ran \(recorded .*\) \(the new ones changed PresenceListen, PresenceBrowsers\)`).MatchString(stdout) {
		t.Errorf("status:\n%s", stdout)
	}
	if err := a.stop(t); err != nil {
		t.Fatal(err)
	}
}

// readRecord reads the last settings that ran from stateDir, and checks
// the file is the agent's alone.
func readRecord(t *testing.T, stateDir string) config.Recorded {
	t.Helper()
	path := filepath.Join(stateDir, state.LastSettingsFile)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatalf("no record of the settings that ran: %v", err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("%s has mode %04o, want 0600: it holds the enroll secret", path, fi.Mode().Perm())
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var r config.Recorded
	if err := json.Unmarshal(raw, &r); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return r
}

// TestUninstallForgetsTheLastSettings: what uninstall removes of the state
// dir is the record of the last settings that ran, which holds the enroll
// secret; the device key stays.
func TestUninstallForgetsTheLastSettings(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	sd, err := state.Open(filepath.Join(dir, "state"))
	if err != nil {
		t.Fatal(err)
	}
	if err := sd.SaveLastSettings([]byte(`{"settings":{}}`)); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(sd.File(state.KeyFile), []byte("key"), 0o600); err != nil {
		t.Fatal(err)
	}
	in := config.Inputs{Flags: map[string]string{"state-dir": sd.Path}, ManagedPlist: filepath.Join(dir, "none.plist")}
	for range 2 { // again, with nothing left to remove
		if err := forgetLastSettings(in); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := os.Stat(sd.File(state.LastSettingsFile)); !os.IsNotExist(err) {
		t.Errorf("the last settings that ran are left: %v", err)
	}
	if _, err := os.Stat(sd.File(state.KeyFile)); err != nil {
		t.Errorf("the device key went too: %v", err)
	}
}

// goneService is a service whose launchd plist or init script is already
// gone: kardianos fails to uninstall it.
type goneService struct{ kservice.Service }

func (goneService) Uninstall() error {
	return &fs.PathError{Op: "remove", Path: "/etc/init.d/com.clearance.agent", Err: syscall.ENOENT}
}

// TestUninstallForgetsTheLastSettingsWhateverTheService: uninstall removes
// the record of the last settings that ran even when the service step
// fails (the service removed by hand already), and still says that it
// failed, exiting 1.
func TestUninstallForgetsTheLastSettingsWhateverTheService(t *testing.T) {
	dir := t.TempDir()
	sd, err := state.Open(filepath.Join(dir, "state"))
	if err != nil {
		t.Fatal(err)
	}
	if err := sd.SaveLastSettings([]byte(`{"settings":{"EnrollSecret":{"value":"hunter2"}}}`)); err != nil {
		t.Fatal(err)
	}
	// uninstall takes no flags: its state dir comes from the environment.
	t.Setenv("CLEARANCE_STATE_DIR", sd.Path)
	var stdout, stderr bytes.Buffer
	p := &cli.Program{Name: "clearance-agent", Stdout: &stdout, Stderr: &stderr, Commands: []*cli.Command{
		serviceCmd("uninstall", "remove the installed service", func() (kservice.Service, error) { return goneService{}, nil }, &stdout),
	}}
	code := p.Run(context.Background(), []string{"uninstall"})
	if code != 1 || !strings.Contains(stderr.String(), "remove /etc/init.d/com.clearance.agent: no such file or directory") || stdout.Len() != 0 {
		t.Errorf("exit %d\nstdout: %s\nstderr: %s\nwant exit 1 with the service's error", code, stdout.String(), stderr.String())
	}
	if _, err := os.Stat(sd.File(state.LastSettingsFile)); !os.IsNotExist(err) {
		t.Errorf("the last settings that ran, with the enroll secret, are left: %v", err)
	}
}
