package main

import (
	"crypto/x509"
	"encoding/json"
	"flag"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/clearance/clearance/agent/config"
	"github.com/clearance/clearance/agent/state"
	agentv1 "github.com/clearance/clearance/proto/gen/clearance/agent/v1"
)

// TestStatusStanding: status exits with the Mac's standing, which scripts
// and MDM extension attributes read, and says it last; --json prints the
// same facts, with the same code.
func TestStatusStanding(t *testing.T) {
	t.Parallel()
	const secretID = "3f2a8c1e4b5d6a7f"
	tests := []struct {
		name  string
		setup func(t *testing.T, sd *state.Dir, rec *runningRecord)
		// running: whether an agent holds the state dir.
		stopped bool
		code    int
		text    string // the standing row's text
		json    map[string]any
	}{
		{"good", nil, false, 0, `standing: +good: enrolled, running, and its last report stored 5s ago\n`,
			map[string]any{"standing": "good", "exit_code": 0.0, "enrollment": "enrolled", "agent_running": true, "settings": "in_use",
				"enroll_secret_id": secretID, "device_id": "dev-1", "last_report_seq": 15.0, "policy_set_version": "v1", "policies": 1.0}},
		{"not reporting", func(t *testing.T, sd *state.Dir, _ *runningRecord) {
			now := time.Now()
			if err := sd.SaveContact(state.Contact{Verifier: "verifier.example:8443", ConnectedAt: now.Add(-2 * time.Hour), AckedAt: now.Add(-time.Hour), AckedSeq: 15}); err != nil {
				t.Fatal(err)
			}
		}, false, 4, `standing: +NOT REPORTING \(exit 4\): the last report stored is 1h0m0s old; its policies' schedule has one stored every 4m6s at most\n`,
			map[string]any{"standing": "not_reporting", "exit_code": 4.0, "report_due_seconds": 246.0}},
		{"the agent not running", nil, true, 4, `standing: +NOT REPORTING \(exit 4\): the agent is not running\n`,
			map[string]any{"standing": "not_reporting", "agent_running": false}},
		{"refused", func(t *testing.T, sd *state.Dir, _ *runningRecord) {
			if err := sd.SaveRefusal(state.Refusal{Code: "Unauthenticated", Message: "the enroll secret has been used as many times as it may", At: time.Now(), RetryAt: time.Now().Add(30 * time.Minute)}); err != nil {
				t.Fatal(err)
			}
		}, false, 3, `standing: +NOT ENROLLED \(exit 3\): refused by the verifier \(Unauthenticated\)\n`,
			map[string]any{"standing": "not_enrolled", "enrollment": "refused", "refused_code": "Unauthenticated"}},
		{"settings rejected", func(t *testing.T, _ *state.Dir, rec *runningRecord) {
			rec.reject("CAFingerprint from …: no configured CA certificate has this fingerprint", "the new settings' CAFingerprint was refused", []string{"CAFingerprint"})
		}, false, 5, `standing: +SETTINGS REJECTED \(exit 5\): the agent rejected the new settings; it runs on with others\n`,
			map[string]any{"standing": "settings_rejected", "settings": "rejected", "settings_rejected_keys": []any{"CAFingerprint"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			stateDir, managed := filepath.Join(dir, "state"), filepath.Join(dir, "managed.plist")
			if err := os.WriteFile(managed, []byte(goodSettings), 0o600); err != nil {
				t.Fatal(err)
			}
			sd, release := reportingMac(t, stateDir, secretID)
			fs := flag.NewFlagSet("run", flag.ContinueOnError)
			flags := config.BindFlags(fs)
			if err := fs.Parse([]string{"--state-dir", stateDir, "--managed-plist", managed}); err != nil {
				t.Fatal(err)
			}
			running, err := loadConfig(flags)
			if err != nil {
				t.Fatal(err)
			}
			rec := startRecord(sd, running, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
			if tt.setup != nil {
				tt.setup(t, sd, rec)
			}
			if tt.stopped {
				release()
			}
			args := []string{"status", "--state-dir", stateDir, "--managed-plist", managed}
			code, stdout, stderr := runAgent(args...)
			if code != tt.code || stderr != "" {
				t.Errorf("exit code %d, stderr %q; want %d", code, stderr, tt.code)
			}
			for _, want := range []string{tt.text, `enroll secret: +` + secretID + ` \(the one this Mac enrolled with\)\n`} {
				if !regexp.MustCompile(want).MatchString(stdout) {
					t.Errorf("status lacks %q:\n%s", want, stdout)
				}
			}
			code, stdout, stderr = runAgent(append(args, "--json")...)
			if code != tt.code || stderr != "" {
				t.Errorf("--json: exit code %d, stderr %q; want %d", code, stderr, tt.code)
			}
			var got map[string]any
			if err := json.Unmarshal([]byte(stdout), &got); err != nil {
				t.Fatalf("--json: %v\n%s", err, stdout)
			}
			for k, want := range tt.json {
				if g, _ := json.Marshal(got[k]); string(g) != mustJSON(t, want) {
					t.Errorf("--json %s = %s, want %s\n%s", k, g, mustJSON(t, want), stdout)
				}
			}
			if got["exit_code"] != float64(tt.code) || got["version"] != "dev" || got["state_dir"] != sd.Path {
				t.Errorf("--json: %s", stdout)
			}
			// The Kandji audit (packaging/agentpkg/scripts/kandji-audit)
			// reads the reason from a line of its own, two spaces in,
			// never the object's last.
			if n := len(regexp.MustCompile(`(?m)^  "standing_reason": ".*",$`).FindAllString(stdout, -1)); n != 1 {
				t.Errorf("--json has %d standing_reason lines as the Kandji audit reads them, want 1:\n%s", n, stdout)
			}
		})
	}
}

// TestStatusJSONWhenItCannotTell: settings that do not read, with no agent
// ever run with the state dir, leave status nothing to say but the error
// (exit 1); --json says that much as JSON too.
func TestStatusJSONWhenItCannotTell(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	managed := filepath.Join(dir, "managed.plist")
	if err := os.WriteFile(managed, []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := runAgent("status", "--json", "--state-dir", filepath.Join(dir, "state"), "--managed-plist", managed)
	var got map[string]any
	if code != 1 || !strings.Contains(stderr, "not a valid plist") || json.Unmarshal([]byte(stdout), &got) != nil ||
		got["standing"] != "unknown" || got["exit_code"] != 1.0 || !strings.Contains(got["settings_error"].(string), "not a valid plist") {
		t.Errorf("exit code %d, stdout %s, stderr %q", code, stdout, stderr)
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// reportingMac leaves stateDir as an enrolled agent that reports leaves
// it (with secretID), a policy set of one policy every minute, a report
// stored 5 s ago, and holds its running lock until release or the test's
// end.
func reportingMac(t *testing.T, stateDir, secretID string) (*state.Dir, func()) {
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
	if err := sd.SaveIdentity(&state.Identity{DeviceID: "dev-1", Verifier: "verifier.example:8443", EnrolledAt: time.Now(), EnrollSecretID: secretID,
		Cert: cert, Chain: []*x509.Certificate{cert}}); err != nil {
		t.Fatal(err)
	}
	if _, err := sd.RaiseSeq(14); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	if err := sd.SaveContact(state.Contact{Verifier: "verifier.example:8443", ConnectedAt: now.Add(-time.Minute), AckedAt: now.Add(-5 * time.Second), AckedSeq: 15}); err != nil {
		t.Fatal(err)
	}
	if err := sd.SavePolicySet(&agentv1.PolicySet{Version: "v1", Policies: []*agentv1.Policy{{Id: "one", Interval: durationpb.New(time.Minute)}}}); err != nil {
		t.Fatal(err)
	}
	return sd, release
}
