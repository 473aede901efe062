package e2e

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/groob/plist"

	"github.com/clearance/clearance/pkg/agentprefs"
	adminv1 "github.com/clearance/clearance/proto/gen/clearance/admin/v1"
)

// TestAgentProfileEnrolls generates the agent's device-scope profile with
// `clearance-verifier profile agent`, places
// its managed preferences where macOS would, and starts the real agent with
// nothing else: the profile names osquery's socket too; it must enroll and
// report compliant.
func TestAgentProfileEnrolls(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	dataDir := filepath.Join(dir, "verifier")
	v := startVerifier(t, dataDir)
	secret := v.enrollSecret()
	// The profile comes from the CLI a Mac admin runs.
	out := filepath.Join(dir, "agent.mobileconfig")
	sock := filepath.Join(dir, "osq.sock")
	cli(t, "profile", "agent", "--data-dir", dataDir, "--verifier", v.grpcAddr, "--enroll-secret", secret,
		"--organization", "Example Corp", "--interval", interval.String(), "--osquery-socket", sock, "--out", out)
	if st, _ := os.Stat(out); st.Mode().Perm() != 0o600 {
		t.Errorf("profile with the enroll secret has mode %v, want 0600", st.Mode().Perm())
	}
	managedPath := managedPrefs(t, out, dir)

	startProc(t, "osquery-sim", "--socket", sock, "--fixture", "compliant-mac")
	// Everything else, osquery's socket included, from the profile.
	startProc(t, "clearance-agent", "run", "--managed-plist", managedPath,
		"--state-dir", filepath.Join(dir, "agent"), "--presence-listen", "off")
	waitDevice(t, v, "a compliant report from the profile-configured agent", within, func(g *adminv1.GetDeviceResponse) bool {
		return g.GetDevice().GetSummary().GetCompliant()
	})
}

// managedPrefs writes what macOS writes to /Library/Managed
// Preferences/com.clearance.agent.plist from the agent profile at profile
// (the profile's mcx_preference_settings for the com.clearance.agent
// domain) into dir, and returns its path.
func managedPrefs(t *testing.T, profile, dir string) string {
	t.Helper()
	raw, err := os.ReadFile(profile)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		PayloadContent []struct {
			PayloadContent map[string]struct {
				Forced []struct {
					Settings map[string]any `plist:"mcx_preference_settings"`
				}
			}
		}
	}
	if err := plist.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.PayloadContent) != 1 || len(doc.PayloadContent[0].PayloadContent[agentprefs.Domain].Forced) != 1 {
		t.Fatalf("unexpected profile shape:\n%s", raw)
	}
	settings := doc.PayloadContent[0].PayloadContent[agentprefs.Domain].Forced[0].Settings
	managed, err := plist.MarshalIndent(settings, "\t")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, agentprefs.Domain+".plist")
	if err := os.WriteFile(path, managed, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestAgentTakesANewProfile: a Mac whose profile carried a wrong enroll
// secret is refused; once the MDM replaces the profile with one carrying
// the right secret, the running agent (told by SIGHUP here, else within
// 30 s) starts again with it and enrolls, with no restart by anyone.
func TestAgentTakesANewProfile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	dataDir := filepath.Join(dir, "verifier")
	v := startVerifierOn(t, dataDir, freePort(t), freePort(t), offSSO...)
	secret := v.enrollSecret()
	sock := filepath.Join(dir, "osq.sock")
	profileWith := func(secret string) string {
		out := filepath.Join(dir, "agent.mobileconfig")
		os.Remove(out)
		cli(t, "profile", "agent", "--data-dir", dataDir, "--verifier", v.grpcAddr, "--enroll-secret", secret,
			"--organization", "Example Corp", "--osquery-socket", sock, "--unchecked-secret", "--out", out)
		return managedPrefs(t, out, dir)
	}
	managedPath := profileWith("not-the-secret")
	startProc(t, "osquery-sim", "--socket", sock, "--fixture", "compliant-mac")
	agent := startProc(t, "clearance-agent", "run", "--managed-plist", managedPath,
		"--state-dir", filepath.Join(dir, "agent"), "--presence-listen", "off")
	waitLog(t, agent.logs, "the agent refused", "verifier refused; not retrying soon", "enroll secret is not valid")

	profileWith(secret)
	if err := agent.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitLog(t, agent.logs, "the agent taking the new profile", "settings changed; the agent starts again with them", "EnrollSecret")
	waitDevice(t, v, "a report from the agent with the new profile", within, func(g *adminv1.GetDeviceResponse) bool {
		return g.GetDevice().GetConnected() && g.GetDevice().GetLastSeq() > 0
	})
	// status says what the running agent uses, from the state dir.
	status := func() (string, int) {
		t.Helper()
		return agentStatus(t, nil, "--managed-plist", managedPath, "--state-dir", filepath.Join(dir, "agent"))
	}
	// The agent's --presence-listen is its own: status, not given it,
	// does not count it as a change of the files'.
	if out, code := status(); code != 0 || !regexp.MustCompile(`agent: +running since .*, process \d+`).MatchString(out) ||
		!regexp.MustCompile(`settings: +in use as the files say; the agent's flag --presence-listen sets PresenceListen, over the files\n`).MatchString(out) {
		t.Errorf("status of the agent running the new profile: exit %d\n%s", code, out)
	}
	// A profile whose pin matches no CA it carries (half pushed, say)
	// would not run: the agent says so and keeps running with its own.
	raw, err := os.ReadFile(managedPath)
	if err != nil {
		t.Fatal(err)
	}
	bad := regexp.MustCompile(`(<key>CAFingerprint</key>\s*<string>)[0-9a-f]{64}`).ReplaceAllString(string(raw), "${1}"+strings.Repeat("ab", 32))
	if bad == string(raw) {
		t.Fatal("no CAFingerprint in the managed preferences")
	}
	if err := os.WriteFile(managedPath, []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := agent.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitLog(t, agent.logs, "the agent refusing settings that would not run", "new settings would not run; the agent keeps running with those it has")
	select {
	case err := <-agent.exited:
		t.Fatalf("the agent stopped on settings that would not run: %v", err)
	case <-time.After(time.Second):
	}
	// status tells the Mac admin that the profile was not taken, and why.
	if out, code := status(); code != 5 || !regexp.MustCompile(`NEW SETTINGS REJECTED: +at .*; the agent runs on with the settings it had \(the new ones changed CAFingerprint\)`).MatchString(out) {
		t.Errorf("status after settings that would not run: exit %d\n%s", code, out)
	} else if strings.Contains(out, secret) {
		t.Error("status shows the enroll secret")
	}
	if strings.Contains(agent.logs.String(), secret) {
		t.Error("the agent logged the enroll secret")
	}
	raw2, err := os.ReadFile(filepath.Join(dir, "agent", "running.json"))
	if err != nil || strings.Contains(string(raw2), secret) {
		t.Errorf("the running record: %v, or it holds the enroll secret:\n%s", err, raw2)
	}
}

// TestAgentKeepsRunningSettingsThatRan: new settings that the watcher's
// checks pass but that fail to start a run (a state dir others may write)
// give way to the settings that ran: the agent says so and goes on
// reporting, and does not try them again until they change.
func TestAgentKeepsRunningSettingsThatRan(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	dataDir := filepath.Join(dir, "verifier")
	v := startVerifierOn(t, dataDir, freePort(t), freePort(t), offSSO...)
	sock := filepath.Join(dir, "osq.sock")
	out := filepath.Join(dir, "agent.mobileconfig")
	cli(t, "profile", "agent", "--data-dir", dataDir, "--verifier", v.grpcAddr, "--enroll-secret", v.enrollSecret(),
		"--organization", "Example Corp", "--osquery-socket", sock, "--interval", "2s", "--out", out)
	managedPath := managedPrefs(t, out, dir)
	withStateDir := func(stateDir string) {
		t.Helper()
		raw, err := os.ReadFile(managedPath)
		if err != nil {
			t.Fatal(err)
		}
		s := regexp.MustCompile(`\s*<key>StateDir</key>\s*<string>[^<]*</string>`).ReplaceAllString(string(raw), "")
		s = strings.Replace(s, "<dict>", "<dict>\n\t<key>StateDir</key>\n\t<string>"+stateDir+"</string>", 1)
		if err := os.WriteFile(managedPath, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	withStateDir(filepath.Join(dir, "agent"))
	startProc(t, "osquery-sim", "--socket", sock, "--fixture", "compliant-mac")
	agent := startProc(t, "clearance-agent", "run", "--managed-plist", managedPath, "--presence-listen", "off")
	first := waitDevice(t, v, "a report", within, func(g *adminv1.GetDeviceResponse) bool { return g.GetDevice().GetLastSeq() > 0 })

	open := filepath.Join(dir, "open")
	if err := os.Mkdir(open, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(open, 0o777); err != nil {
		t.Fatal(err)
	}
	withStateDir(open)
	if err := agent.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitLog(t, agent.logs, "the agent going back to the settings that ran", "new settings would not start; the agent runs again with those that ran")
	waitDevice(t, v, "reports after the settings that did not start", within, func(g *adminv1.GetDeviceResponse) bool {
		return g.GetDevice().GetConnected() && g.GetDevice().GetLastSeq() > first.GetDevice().GetLastSeq()+1
	})
	// Once what failed them is fixed, SIGHUP tries them again: they start.
	// A burst of SIGHUPs across the restart does not end the agent.
	if err := os.Chmod(open, 0o700); err != nil {
		t.Fatal(err)
	}
	for range 5 {
		if err := agent.cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "the agent starting again with the fixed settings", func() bool {
		return strings.Count(agent.logs.String(), "settings changed; the agent starts again with them") >= 2
	})
	select {
	case err := <-agent.exited:
		t.Fatalf("the agent ended on SIGHUPs across a restart: %v", err)
	case <-time.After(2 * time.Second):
	}
	if n := strings.Count(agent.logs.String(), "new settings would not start"); n != 1 {
		t.Errorf("the settings were refused %d times, want once", n)
	}
	if _, err := os.Stat(filepath.Join(open, "device.key")); err != nil {
		t.Errorf("the agent does not run from the new state dir: %v", err)
	}
}

// TestAgentRestartsOnTheLastSettingsThatRan: the real agent, run by a
// profile, is stopped (a reboot, the package's postinstall on upgrade) and
// started again after the profile went bad (a misspelt key): it runs and
// reports with the last settings that ran, says so once at ERROR, status
// exits 5 with the rejection, and the verifier lists the Mac among those
// that did not take their settings, with why. A good profile is taken
// again on SIGHUP, and the verifier's list is empty again. A Mac whose agent never ran stops on the bad profile, as ever.
func TestAgentRestartsOnTheLastSettingsThatRan(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	dataDir := filepath.Join(dir, "verifier")
	v := startVerifierOn(t, dataDir, freePort(t), freePort(t), offSSO...)
	secret := v.enrollSecret()
	sock := filepath.Join(dir, "osq.sock")
	out := filepath.Join(dir, "agent.mobileconfig")
	cli(t, "profile", "agent", "--data-dir", dataDir, "--verifier", v.grpcAddr, "--enroll-secret", secret,
		"--organization", "Example Corp", "--osquery-socket", sock, "--interval", interval.String(), "--out", out)
	managedPath := managedPrefs(t, out, dir)
	good, err := os.ReadFile(managedPath)
	if err != nil {
		t.Fatal(err)
	}
	misspelt := strings.Replace(string(good), "<dict>", "<dict>\n\t<key>CAFingerprnt</key>\n\t<string>ab</string>", 1)
	stateDir := filepath.Join(dir, "agent")
	args := []string{"run", "--managed-plist", managedPath, "--state-dir", stateDir, "--presence-listen", "off"}
	startProc(t, "osquery-sim", "--socket", sock, "--fixture", "compliant-mac")

	agent := startProc(t, "clearance-agent", args...)
	first := waitDevice(t, v, "a report from the agent with the profile", within, func(g *adminv1.GetDeviceResponse) bool {
		return g.GetDevice().GetLastSeq() > 0
	})
	agent.stop()
	if fi, err := os.Stat(filepath.Join(stateDir, "last-settings.json")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("the last settings that ran: %v, %v; want a 0600 file", fi, err)
	}

	if err := os.WriteFile(managedPath, []byte(misspelt), 0o644); err != nil {
		t.Fatal(err)
	}
	agent = startProc(t, "clearance-agent", args...)
	waitLog(t, agent.logs, "the agent running the last settings that ran",
		"level=ERROR", "settings would not run; the agent runs with the last settings that ran", "did you mean CAFingerprint?")
	waitDevice(t, v, "reports from the agent on the last settings that ran", within, func(g *adminv1.GetDeviceResponse) bool {
		return g.GetDevice().GetConnected() && g.GetDevice().GetLastSeq() > first.GetDevice().GetLastSeq()
	})
	st, code := agentStatus(t, nil, "--managed-plist", managedPath, "--state-dir", stateDir)
	if code != 5 || !regexp.MustCompile(`NEW SETTINGS REJECTED: +at .*did you mean CAFingerprint\?.*; the agent started with the last settings that ran \(recorded `).MatchString(st) {
		t.Errorf("status of the agent on the last settings that ran: exit %d\n%s", code, st)
	}
	if strings.Contains(agent.logs.String(), secret) || strings.Contains(st, secret) {
		t.Error("the enroll secret is in the log or status")
	}
	// The verifier is told by the agent's reports: the security team
	// lists the Macs that did not take their profile, with why, and
	// without running status on each.
	// Which key, never a value from the settings (a misspelt key may be
	// anything an admin typed).
	const why = `the new settings have an unknown key (did you mean CAFingerprint?)`
	got := waitDevice(t, v, "the verifier told of the rejected profile", within, func(g *adminv1.GetDeviceResponse) bool {
		return strings.Contains(g.GetDevice().GetSettingsRejection().GetReason(), why)
	})
	id := got.GetDevice().GetDeviceId()
	if r := got.GetDevice().GetSettingsRejection().GetReason(); strings.Contains(r, secret) || strings.Contains(r, "CAFingerprnt") {
		t.Errorf("the verifier was told a value from the settings: %q", r)
	}
	if out := cli(t, "devices", "--data-dir", dataDir, "--settings-rejected", "--wide"); !strings.Contains(out, id) || !strings.Contains(out, why) {
		t.Errorf("devices --settings-rejected:\n%s", out)
	}

	// The profile fixed: taken on SIGHUP, and the Mac in good standing.
	if err := os.WriteFile(managedPath, good, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := agent.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "status in good standing with the fixed profile", func() bool {
		_, code := agentStatus(t, nil, "--managed-plist", managedPath, "--state-dir", stateDir)
		return code == 0
	})
	// Its next report clears it on the verifier.
	waitDevice(t, v, "the verifier told the profile is taken", within, func(g *adminv1.GetDeviceResponse) bool {
		return g.GetDevice().GetSettingsRejection() == nil
	})
	if out := cli(t, "devices", "--data-dir", dataDir, "--settings-rejected"); out != "" {
		t.Errorf("devices --settings-rejected after the fix:\n%s", out)
	}
	if n := strings.Count(agent.logs.String(), "level=ERROR"); n != 1 {
		t.Errorf("%d lines at ERROR, want the one:\n%s", n, agent.logs)
	}

	// A Mac whose agent never ran: the misspelt profile stops it.
	if err := os.WriteFile(managedPath, []byte(misspelt), 0o644); err != nil {
		t.Fatal(err)
	}
	fresh := startProc(t, "clearance-agent", "run", "--managed-plist", managedPath, "--state-dir", filepath.Join(dir, "fresh"), "--presence-listen", "off")
	select {
	case err := <-fresh.exited:
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 1 || !strings.Contains(fresh.logs.String(), `unknown key "CAFingerprnt": did you mean CAFingerprint?`) {
			t.Errorf("first start with a misspelt profile: %v\n%s", err, fresh.logs)
		}
	case <-time.After(within):
		t.Error("the agent with a misspelt profile and nothing recorded runs")
	}
}
