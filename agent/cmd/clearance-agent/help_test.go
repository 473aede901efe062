package main

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func runAgent(args ...string) (code int, stdout, stderr string) {
	var out, errOut bytes.Buffer
	code = realMain(args, &out, &errOut)
	return code, out.String(), errOut.String()
}

// TestHelp: every command's help, however asked for, exits 0 on stdout,
// fits in 80 columns and is the golden file's (go test -update rewrites).
func TestHelp(t *testing.T) {
	t.Parallel()
	paths := [][]string{nil}
	for _, c := range program(nil, nil).Commands {
		paths = append(paths, []string{c.Name})
	}
	for _, path := range paths {
		name := "help"
		if len(path) > 0 {
			name = "help-" + path[0]
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ways := [][]string{append(append([]string(nil), path...), "-h"), append(append([]string(nil), path...), "--help"), append([]string{"help"}, path...)}
			var first string
			for i, args := range ways {
				code, stdout, stderr := runAgent(args...)
				if code != 0 || stderr != "" {
					t.Fatalf("%v: exit %d, stderr %q", args, code, stderr)
				}
				if i == 0 {
					first = stdout
				} else if stdout != first {
					t.Errorf("%v prints other help than %v", args, ways[0])
				}
			}
			for _, l := range strings.Split(first, "\n") {
				if n := len([]rune(l)); n > 80 {
					t.Errorf("line of %d characters: %q", n, l)
				}
			}
			golden := filepath.Join("testdata", name+".golden")
			if *update {
				if err := os.WriteFile(golden, []byte(first), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (go test -update writes it)", err)
			}
			if first != string(want) {
				t.Errorf("%s differs (go test -update rewrites it); got:\n%s", golden, first)
			}
		})
	}
}

// TestHelpKeepsTheSecretOffTheCommandLine: no example in the help puts
// the enroll secret on the command line, where ps shows it to every local
// user; run's shows the environment instead, as the README does.
func TestHelpKeepsTheSecretOffTheCommandLine(t *testing.T) {
	t.Parallel()
	for _, c := range program(nil, nil).Commands {
		_, stdout, _ := runAgent(c.Name, "-h")
		for _, l := range strings.Split(stdout, "\n") {
			if strings.Contains(l, "--enroll-secret ") && !strings.HasPrefix(strings.TrimSpace(l), "--enroll-secret secret") {
				t.Errorf("%s -h: %q", c.Name, l)
			}
		}
	}
	if _, stdout, _ := runAgent("run", "-h"); !strings.Contains(stdout, `CLEARANCE_ENROLL_SECRET="$SECRET" clearance-agent run`) {
		t.Errorf("run -h shows no example with the secret in the environment:\n%s", stdout)
	}
}

// TestCheckHelpShowsOnlyItsFlags: check does not talk to the verifier, so
// its help does not offer the verifier's settings.
func TestCheckHelpShowsOnlyItsFlags(t *testing.T) {
	t.Parallel()
	_, stdout, _ := runAgent("check", "-h")
	for _, w := range []string{"--osquery-socket path", "--policies path", "--state-dir path", "--log-format text|json", "plist OsquerySocket"} {
		if !strings.Contains(stdout, w) {
			t.Errorf("check -h lacks %q:\n%s", w, stdout)
		}
	}
	for _, w := range []string{"--verifier", "--enroll-secret", "--ca-file", "--interval"} {
		if strings.Contains(stdout, w) {
			t.Errorf("check -h shows %q:\n%s", w, stdout)
		}
	}
}

// TestUsageErrors: one line, a suggestion, where the help is, exit 2.
func TestUsageErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"chek"}, `clearance-agent: unknown command "chek"; did you mean check? (see 'clearance-agent -h')`},
		{[]string{"bogus"}, `clearance-agent: unknown command "bogus"; the commands are run, check, status, rotate-key, install, uninstall, start or stop (see 'clearance-agent -h')`},
		{[]string{"run", "--verifer", "v:1"}, "clearance-agent run: unknown flag --verifer; did you mean --verifier? (see 'clearance-agent run -h')"},
		{[]string{"check", "--verifier", "v:1"}, "clearance-agent check: unknown flag --verifier (see 'clearance-agent check -h')"},
		{[]string{"status", "extra"}, `clearance-agent status: unexpected argument "extra" (see 'clearance-agent status -h')`},
		{[]string{"install", "--force"}, "clearance-agent install: unknown flag --force (see 'clearance-agent install -h')"},
	} {
		code, stdout, stderr := runAgent(tc.args...)
		if code != 2 || stdout != "" || stderr != tc.want+"\n" {
			t.Errorf("%v: exit %d, stdout %q, stderr:\n%s\nwant exit 2 and:\n%s", tc.args, code, stdout, stderr, tc.want)
		}
	}
}

func TestVersion(t *testing.T) {
	t.Parallel()
	for _, arg := range []string{"version", "--version"} {
		code, stdout, stderr := runAgent(arg)
		if code != 0 || stderr != "" || !strings.HasPrefix(stdout, "clearance-agent dev\n  commit  ") || !strings.Contains(stdout, "  go      go1.") {
			t.Errorf("%s: exit %d, stdout %q, stderr %q", arg, code, stdout, stderr)
		}
	}
}

// TestLogFormatJSON: --log-format json makes every log line a JSON object.
func TestLogFormatJSON(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	newLogger(&buf, slog.LevelInfo, "json").Info("starting", "component", "main")
	var line map[string]any
	if err := json.Unmarshal(buf.Bytes(), &line); err != nil || line["msg"] != "starting" || line["component"] != "main" {
		t.Errorf("log line %q: %v", buf.String(), err)
	}
	code, _, stderr := runAgent("check", "--log-format", "xml", "--managed-plist", filepath.Join(t.TempDir(), "none.plist"))
	if code != 1 || !strings.Contains(stderr, `"xml" is not text or json`) {
		t.Errorf("exit %d, stderr %q", code, stderr)
	}
}
