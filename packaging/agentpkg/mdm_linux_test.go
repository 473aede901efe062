package agentpkg

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/clearance/clearance/agent/service"
)

// statusStandIn plays clearance-agent at its installed path: it records
// its arguments and prints and exits as /sandbox/status says (code "kill":
// killed by SIGKILL, as a crash would end it; code "hang": stuck, as is
// a program it started, as a wedged launchctl would be).
const statusStandIn = `#!/bin/sh
echo "clearance-agent $*" >>/sandbox/calls
/bin/cat /sandbox/status/out
/bin/cat /sandbox/status/err >&2
code=$(/bin/cat /sandbox/status/code)
[ "$code" = kill ] && kill -KILL $$
if [ "$code" = hang ]; then
	/bin/sleep ` + hangFor + ` &
	/bin/sleep ` + hangFor + `
fi
exit "$code"
`

// hangFor is how long a stuck stand-in and its child hang, in seconds:
// far longer than the bound the tests give status, so that a script
// without its watchdog is seen waiting, and seen leaving them behind.
const hangFor = "20"

// statusBound is the bound the tests give status where it hangs, in
// seconds, through CLEARANCE_MDM_STATUS_TIMEOUT; the scripts' own is 30.
const statusBound = 1

// secret stands for the enroll secret wherever status could show
// something of the settings: no script may print it.
const secret = "hunter2-enroll-secret"

// statusJSON is status --json as the agent prints it (indented two spaces,
// standing_reason second), with the fields that can carry text from the
// settings or the verifier.
func statusJSON(standing, reason string, code int, more string) string {
	return fmt.Sprintf(`{
  "standing": %q,
  "standing_reason": %q,
  "exit_code": %d,
  "version": "1.5.0",
  "verifier": "verifier.example.com:8443",
  "state_dir": "/var/db/clearance",
  "service": "running",
%s  "device_key_storage": "secure_enclave",
  "last_seq": 15,
  "policies": 6
}
`, standing, reason, code, more)
}

// TestMDMScriptsInSandbox runs the Jamf Pro extension attribute, the
// Kandji audit and the Intune custom attribute, unchanged, as those MDMs
// run them (as root, /bin/sh), on a Mac whose clearance-agent is a
// stand-in that exits with each standing, prints each shape of status's
// output, or hangs, and checks exactly what each MDM is given: Jamf Pro
// the text between <result> tags, Kandji a line of output and the exit
// code it takes as pass (0) or fail, Intune one line and exit 0 (Intune
// shows no output of a script that fails); and that each answers in time
// and leaves nothing running.
func TestMDMScriptsInSandbox(t *testing.T) {
	for shName, sh := range shells(t) {
		t.Run(shName, func(t *testing.T) {
			t.Parallel()
			testMDMScripts(t, sh)
		})
	}
}

func testMDMScripts(t *testing.T, sh string) {
	s := newMac(t, sh)
	for _, name := range []string{"jamf-extension-attribute", "kandji-audit", "intune-custom-attribute"} {
		s.write("/sandbox/mdm/"+name, string(mustRead(t, "scripts/"+name)), 0o755)
	}
	// pkill finds the programs status started in /proc.
	s.mkdir("/proc", 0o555)
	s.binds = append(s.binds, "/proc")
	const fix = "; run sudo " + service.ExecutablePath + " status on the Mac"
	tests := []struct {
		name string
		// agent: the stand-in (""), or what is at the agent's path
		// instead ("missing", "directory", "not executable").
		agent    string
		out, err string
		code     string
		// word is what Jamf Pro and Intune are given.
		word        string
		kandji      string
		kandjiFails bool
	}{
		{"good", "", statusJSON("good", "enrolled, running, and its last report stored 5s ago", 0, ""), "", "0",
			"good", "clearance-agent: good: enrolled, running, and its last report stored 5s ago", false},
		{"pending approval", "", statusJSON("not_enrolled", "waiting for the security team's approval (request 9b1c7e)", 3,
			"  \"enrollment\": \"pending_approval\",\n  \"pending_request_id\": \"9b1c7e\",\n"), "", "3",
			"not_enrolled", "clearance-agent: not_enrolled (exit 3): waiting for the security team's approval (request 9b1c7e)", true},
		// A request id is the verifier's text: printed as it stands in the
		// JSON, escapes and all, never acted on by the shell's echo.
		{"a request id with escapes", "", statusJSON("not_enrolled", "waiting for the security team's approval (request x\nclearance-agent: good: enrolled\\c)", 3,
			"  \"enrollment\": \"pending_approval\",\n"), "", "3",
			"not_enrolled", `clearance-agent: not_enrolled (exit 3): waiting for the security team's approval (request x\nclearance-agent: good: enrolled\\c)`, true},
		{"refused", "", statusJSON("not_enrolled", "refused by the verifier (Unauthenticated)", 3,
			"  \"enrollment\": \"refused\",\n  \"refused_message\": \"the enroll secret "+secret+" is revoked\",\n"), "", "3",
			"not_enrolled", "clearance-agent: not_enrolled (exit 3): refused by the verifier (Unauthenticated)", true},
		{"not reporting", "", statusJSON("not_reporting", "the agent is not running", 4, "  \"agent_running\": false,\n"), "", "4",
			"not_reporting", "clearance-agent: not_reporting (exit 4): the agent is not running", true},
		{"settings rejected", "", statusJSON("settings_rejected", "the settings do not read; the agent runs on with others", 5,
			"  \"settings\": \"unread\",\n  \"settings_error\": \"EnrollSecret: \\\""+secret+"\\\" is not a valid value\",\n"), "", "5",
			"settings_rejected", "clearance-agent: settings_rejected (exit 5): the settings do not read; the agent runs on with others", true},
		{"status could not tell", "", statusJSON("unknown", "reading settings: EnrollSecret \\\""+secret+"\\\": bad", 1,
			"  \"settings_error\": \"reading settings: EnrollSecret \\\""+secret+"\\\": bad\",\n"),
			"clearance-agent: reading settings: EnrollSecret \"" + secret + "\": bad\n", "1",
			"unknown", "clearance-agent: unknown (exit 1): status could not tell" + fix, true},
		// An agent too old for status --json, or a usage error.
		{"usage error", "", "", "flag provided but not defined: -json\n", "2",
			"status_failed", "clearance-agent: status failed (exit 2)" + fix, true},
		{"status crashed", "", "{\n  \"standing\": \"good\",\n", "", "kill",
			"status_failed", "clearance-agent: status failed (exit 137)" + fix, true},
		// The exit code is the standing; the JSON only gives the reason.
		{"good without a reason", "", "", "", "0",
			"good", "clearance-agent: good: status gave no reason", false},
		{"agent not installed", "missing", "", "", "",
			"not_installed", "clearance-agent: not installed (" + service.ExecutablePath + " is missing)", true},
		{"a directory at the agent's path", "directory", "", "", "",
			"not_installed", "clearance-agent: not installed (" + service.ExecutablePath + " is missing)", true},
		{"agent not executable", "not executable", "", "", "",
			"status_failed", "clearance-agent: status failed (exit 126)" + fix, true},
		// A stuck agent: killed after the bound, with what it started, and
		// nothing it printed before is passed on.
		{"status hangs", "", statusJSON("good", "enrolled, running, and its last report stored 5s ago", 0, ""), "", "hang",
			"status_timed_out", fmt.Sprintf("clearance-agent: status timed out (no answer in %ds; it was killed)", statusBound) + fix, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := os.RemoveAll(s.path(service.ExecutablePath)); err != nil {
				t.Fatal(err)
			}
			switch tt.agent {
			case "":
				s.write(service.ExecutablePath, statusStandIn, 0o755)
			case "directory":
				s.mkdir(service.ExecutablePath, 0o755)
			case "not executable":
				s.write(service.ExecutablePath, statusStandIn, 0o644)
			}
			s.write("/sandbox/status/out", tt.out, 0o644)
			s.write("/sandbox/status/err", tt.err, 0o644)
			s.write("/sandbox/status/code", tt.code, 0o644)
			s.calls()
			// Only the shell's word of a process it saw killed may reach
			// standard error.
			quiet := func(r result) bool {
				return r.stderr == "" || tt.code == "kill" && strings.Contains(r.stderr, "Killed") && strings.Count(r.stderr, "\n") == 1
			}
			ran := func(args string) []string {
				if tt.agent != "" {
					return nil
				}
				return []string{"clearance-agent " + args}
			}

			s.env = nil
			if tt.code == "hang" {
				s.env = []string{fmt.Sprintf("CLEARANCE_MDM_STATUS_TIMEOUT=%d", statusBound)}
			}
			// run runs an MDM script, and checks that it answered in time
			// and left nothing running behind it.
			run := func(script string) result {
				t.Helper()
				start := time.Now()
				r := s.run(nil, script)
				if took := time.Since(start); took > statusBound*time.Second+4*time.Second {
					t.Errorf("%s took %v", script, took.Round(time.Millisecond))
				}
				if left := s.running(); len(left) > 0 {
					t.Errorf("%s left running: %q", script, left)
				}
				return r
			}

			jamf := run("/sandbox/mdm/jamf-extension-attribute")
			if want := "<result>" + tt.word + "</result>\n"; jamf.code != 0 || jamf.stdout != want || !quiet(jamf) {
				t.Errorf("Jamf extension attribute: %v\nwant stdout %q, exit 0", jamf, want)
			}
			wantCalls(t, s.calls(), ran("status")...)

			kandji := run("/sandbox/mdm/kandji-audit")
			wantCode := 0
			if tt.kandjiFails {
				wantCode = 1
			}
			if kandji.code != wantCode || kandji.stdout != tt.kandji+"\n" || !quiet(kandji) {
				t.Errorf("Kandji audit: %v\nwant stdout %q, exit %d", kandji, tt.kandji+"\n", wantCode)
			}
			wantCalls(t, s.calls(), ran("status --json")...)

			intune := run("/sandbox/mdm/intune-custom-attribute")
			if want := tt.word + "\n"; intune.code != 0 || intune.stdout != want || !quiet(intune) {
				t.Errorf("Intune custom attribute: %v\nwant stdout %q, exit 0", intune, want)
			}
			wantCalls(t, s.calls(), ran("status")...)

			for _, r := range []result{jamf, kandji, intune} {
				if strings.Contains(r.stdout+r.stderr, secret) {
					t.Errorf("a script printed what status read of the settings: %v", r)
				}
			}
		})
	}
}

// running lists the processes still running in the sandbox (whose root is
// its directory), by command line, once those already killed are gone.
func (s *sandbox) running() []string {
	s.t.Helper()
	var left []string
	for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		left = nil
		procs, _ := filepath.Glob("/proc/[0-9]*")
		for _, p := range procs {
			// A process that has died has no root to read.
			if root, err := os.Readlink(p + "/root"); err != nil || root != s.dir {
				continue
			}
			cmdline, _ := os.ReadFile(p + "/cmdline")
			left = append(left, strings.TrimSpace(strings.ReplaceAll(string(cmdline), "\x00", " ")))
		}
		if len(left) == 0 || time.Now().After(deadline) {
			return left
		}
	}
}
