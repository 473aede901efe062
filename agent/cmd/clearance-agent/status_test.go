package main

import (
	"crypto/x509"
	"errors"
	"flag"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/clearance/clearance/agent/config"
	"github.com/clearance/clearance/agent/devicekey"
	"github.com/clearance/clearance/agent/state"
	"github.com/clearance/clearance/internal/testkit"
	"github.com/clearance/clearance/pkg/run"
)

const goodSettings = `<?xml version="1.0" encoding="UTF-8"?>
<plist version="1.0"><dict>
<key>VerifierAddress</key><string>verifier.example:8443</string>
<key>OsquerySocket</key><string>/var/osquery/osquery.em</string>
</dict></plist>
`

// TestStatusWhenTheSettingsDoNotRead: settings that no longer read (a
// profile with a misspelt key, a file that is no plist) leave the running
// agent on the settings it had, and status still shows what the agent
// wrote in its state dir, with why the new settings were rejected; it exits
// 1, the settings being unusable. With no agent ever run there, the error
// is all there is to say.
func TestStatusWhenTheSettingsDoNotRead(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, settings, why string
	}{
		{"a misspelt key", strings.Replace(goodSettings, "<dict>", "<dict>\n<key>CAFingerprnt</key><string>ab</string>", 1),
			`unknown key "CAFingerprnt": did you mean CAFingerprint?`},
		{"not a plist", "garbage", "not a valid plist: EOF"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			stateDir, managed := filepath.Join(dir, "state"), filepath.Join(dir, "managed.plist")
			args := []string{"--state-dir", stateDir, "--managed-plist", managed}
			if err := os.WriteFile(managed, []byte(tt.settings), 0o600); err != nil {
				t.Fatal(err)
			}
			code, stdout, stderr := runAgent(append([]string{"status"}, args...)...)
			if code != 1 || stdout != "" || !strings.Contains(stderr, tt.why) {
				t.Errorf("no agent ever ran: exit code %d, stdout %q, stderr %q; want 1 and the error only", code, stdout, stderr)
			}

			// An agent runs with good settings, and is told (SIGHUP) of
			// the new ones.
			if err := os.WriteFile(managed, []byte(goodSettings), 0o600); err != nil {
				t.Fatal(err)
			}
			sd := agentRan(t, stateDir)
			fs := flag.NewFlagSet("run", flag.ContinueOnError)
			flags := config.BindFlags(fs)
			if err := fs.Parse(args); err != nil {
				t.Fatal(err)
			}
			running, err := loadConfig(flags)
			if err != nil {
				t.Fatal(err)
			}
			log := slog.New(slog.NewTextHandler(io.Discard, nil))
			rec := startRecord(sd, running, nil, log)
			if err := os.WriteFile(managed, []byte(tt.settings), 0o600); err != nil {
				t.Fatal(err)
			}
			watchOnce(t, flags, running, log, rec)

			code, stdout, stderr = runAgent(append([]string{"status"}, args...)...)
			if code != standingSettingsRejected.code || stderr != "" {
				t.Errorf("exit code %d, stderr %q; want %d, the rows saying why", code, stderr, standingSettingsRejected.code)
			}
			for _, want := range []string{
				`verifier: +verifier.example:8443 \(enrolled with; the settings do not read\)`,
				`state dir: +` + regexp.QuoteMeta(stateDir),
				`agent: +running since .*, process \d+`,
				`settings: +the files' settings do not read: .*` + regexp.QuoteMeta(tt.why),
				`NEW SETTINGS REJECTED: +at .*: .*` + regexp.QuoteMeta(tt.why) + `.*; the agent runs on with the settings it had\n`,
				`enrolled: +yes`,
				`last seq: +15`,
				`last report stored: +.*, seq 15`,
				`connected: +.* to verifier.example:8443`,
				`osquery: +unknown: the settings do not read`,
				`run budget: +unknown: the settings do not read`,
				`standing: +SETTINGS REJECTED \(exit 5\): the settings do not read; the agent runs on with others\n`,
			} {
				if !regexp.MustCompile(want).MatchString(stdout) {
					t.Errorf("status lacks %q:\n%s", want, stdout)
				}
			}
		})
	}
}

// agentRan leaves stateDir as an enrolled agent that reports leaves it,
// and holds its running lock until the test ends.
func agentRan(t *testing.T, stateDir string) *state.Dir {
	t.Helper()
	sd, err := state.Open(stateDir)
	if err != nil {
		t.Fatal(err)
	}
	release, err := sd.LockRunning()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(release)
	cert := selfSigned(t)
	if err := sd.SaveIdentity(&state.Identity{DeviceID: "dev-1", Verifier: "verifier.example:8443", EnrolledAt: time.Now(), Cert: cert, Chain: []*x509.Certificate{cert}}); err != nil {
		t.Fatal(err)
	}
	if _, err := sd.RaiseSeq(14); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	if err := sd.SaveContact(state.Contact{Verifier: "verifier.example:8443", ConnectedAt: now.Add(-time.Minute), AckedAt: now, AckedSeq: 15}); err != nil {
		t.Fatal(err)
	}
	return sd
}

// watchOnce runs the agent's settings watcher until it has read the
// settings once, as on SIGHUP, and recorded them as rejected.
func watchOnce(t *testing.T, flags *config.Flags, running *config.Config, log *slog.Logger, rec *runningRecord) {
	t.Helper()
	hup := make(chan os.Signal, 1)
	hup <- syscall.SIGHUP
	var next *config.Config
	var g run.Group
	g.Logger = log
	settingsWatch(&g, flags, running, nil, &next, hup, log, rec)
	g.Add("test", func() error {
		if !testkit.Poll(10*time.Second, func() bool {
			r, err := rec.dir.LoadRunning()
			return err == nil && r != nil && !r.RejectedAt.IsZero()
		}) {
			return errors.New("the new settings were not recorded as rejected")
		}
		return nil
	}, func(error) {})
	if err := g.Run(); err != nil {
		t.Fatal(err)
	}
}

// TestStatusRefusedOrPending: a Mac is refused or waits for approval, not
// both: when the state dir holds both records (as an agent that did not
// clear the wait on a rejection left it), status says the later.
func TestStatusRefusedOrPending(t *testing.T) {
	t.Parallel()
	asked := time.Date(2026, 3, 4, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name      string
		refusedAt time.Time
		want      []string
		not       []string
	}{
		{"rejected after the wait", asked.Add(time.Second),
			[]string{`REFUSED: +by the verifier at 2026-03-04T12:00:01Z \(PermissionDenied\): .*was rejected by the security team`, `enrolled: +no\n`},
			[]string{`PENDING APPROVAL`, `pending approval`}},
		{"waiting after a refusal", asked.Add(-time.Hour),
			[]string{`enrollment: +PENDING APPROVAL by the security team \(request req-1, manual`, `enrolled: +no \(pending approval\)`},
			[]string{`REFUSED`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			stateDir := filepath.Join(dir, "state")
			sd, err := state.Open(stateDir)
			if err != nil {
				t.Fatal(err)
			}
			if err := sd.SavePending(state.Pending{RequestID: "req-1", Reason: "manual", RequestedAt: asked.Add(-time.Hour), LastAsked: asked}); err != nil {
				t.Fatal(err)
			}
			if err := sd.SaveRefusal(state.Refusal{Code: "PermissionDenied", Message: "enrolling: enrollment request req-1 was rejected by the security team; this key cannot enroll",
				At: tt.refusedAt, RetryAt: tt.refusedAt.Add(30 * time.Minute)}); err != nil {
				t.Fatal(err)
			}
			code, stdout, stderr := runAgent("status", "--state-dir", stateDir, "--managed-plist", filepath.Join(dir, "none.plist"))
			if code != standingNotEnrolled.code {
				t.Fatalf("exit code %d, stderr %q; want %d, not enrolled", code, stderr, standingNotEnrolled.code)
			}
			for _, want := range tt.want {
				if !regexp.MustCompile(want).MatchString(stdout) {
					t.Errorf("status lacks %q:\n%s", want, stdout)
				}
			}
			for _, not := range tt.not {
				if strings.Contains(stdout, not) {
					t.Errorf("status says %q:\n%s", not, stdout)
				}
			}
		})
	}
}

// TestStatusOfAnAgentStartedWithAFlag: a key the agent's command line
// sets is not one the files changed and the agent will take: status says
// the flag sets it.
func TestStatusOfAnAgentStartedWithAFlag(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	stateDir, managed := filepath.Join(dir, "state"), filepath.Join(dir, "managed.plist")
	if err := os.WriteFile(managed, []byte(goodSettings), 0o600); err != nil {
		t.Fatal(err)
	}
	sd := agentRan(t, stateDir)
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	flags := config.BindFlags(fs)
	if err := fs.Parse([]string{"--state-dir", stateDir, "--managed-plist", managed, "--presence-listen", "off"}); err != nil {
		t.Fatal(err)
	}
	running, err := loadConfig(flags)
	if err != nil {
		t.Fatal(err)
	}
	startRecord(sd, running, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))

	_, stdout, stderr := runAgent("status", "--state-dir", stateDir, "--managed-plist", managed)
	if !regexp.MustCompile(`settings: +in use as the files say; the agent's flag --presence-listen sets PresenceListen, over the files\n`).MatchString(stdout) ||
		strings.Contains(stdout, "changed PresenceListen") {
		t.Errorf("status of an agent started with --presence-listen:\n%s%s", stdout, stderr)
	}
}

// After rotate-key the device key is a file of another name: status names
// the file key.uri records, which exists, and rotate-key says only what
// it made.
func TestStatusNamesTheRotatedKeyFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	stateDir := filepath.Join(dir, "state")
	sd, err := state.Open(stateDir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := devicekey.Open(t.Context(), sd, devicekey.Options{Logger: slog.New(slog.DiscardHandler)}); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := runAgent("rotate-key", "--state-dir", stateDir, "--managed-plist", filepath.Join(dir, "none.plist"))
	if code != 0 || !strings.HasPrefix(stdout, "new device key ") || stderr != "" {
		t.Fatalf("rotate-key: exit %d, stdout %q, stderr %q; want 0, the new key, nothing on stderr", code, stdout, stderr)
	}
	_, uri, err := devicekey.Describe(sd)
	if err != nil {
		t.Fatal(err)
	}
	path := strings.TrimPrefix(uri, "softkms:path=")
	if _, err := os.Stat(path); err != nil || filepath.Base(path) == state.KeyFile {
		t.Fatalf("the rotated key is %q (%v); want an existing file other than %s", path, err, state.KeyFile)
	}
	_, stdout, _ = runAgent("status", "--state-dir", stateDir, "--managed-plist", filepath.Join(dir, "none.plist"))
	if !strings.Contains(stdout, "key file "+path+";") {
		t.Errorf("status does not name %s:\n%s", path, stdout)
	}
}
