package main

import (
	"bytes"
	"context"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/clearance/clearance/pkg/cli"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// execute runs the command with getenv as its environment and returns what
// it printed and its error, unprinted.
func execute(getenv func(string) string, args ...string) (stdout, stderr string, err error) {
	var out, errOut bytes.Buffer
	a := &app{stdout: &out, stderr: &errOut, getenv: getenv, now: time.Now}
	err = a.program().Execute(context.Background(), args)
	return out.String(), errOut.String(), err
}

// exitOf runs the command as main would: the exit code and what it printed.
func exitOf(getenv func(string) string, args ...string) (code int, stdout, stderr string) {
	var out, errOut bytes.Buffer
	a := &app{stdout: &out, stderr: &errOut, getenv: getenv, now: time.Now}
	code = a.program().Run(context.Background(), args)
	return code, out.String(), errOut.String()
}

// helpPaths are every command and group, as help addresses them.
func helpPaths() [][]string {
	var out [][]string
	var walk func(path []string, cmds []*cli.Command)
	walk = func(path []string, cmds []*cli.Command) {
		for _, c := range cmds {
			p := append(append([]string(nil), path...), c.Name)
			out = append(out, p)
			walk(p, c.Commands)
		}
	}
	a := &app{getenv: noEnv, now: time.Now}
	walk(nil, a.program().Commands)
	return out
}

func goldenName(path []string) string {
	if len(path) == 0 {
		return filepath.Join("testdata", "help.golden")
	}
	return filepath.Join("testdata", "help-"+strings.Join(path, "-")+".golden")
}

func checkGolden(t *testing.T, file, got string) {
	t.Helper()
	if *update {
		if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(file, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(file)
	if err != nil {
		t.Fatalf("%v (go test -update writes it)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs (go test -update rewrites it); got:\n%s", file, got)
	}
}

// TestHelp: every command's help, however asked for, exits 0, prints the
// same text to stdout and nothing to stderr, fits in 80 columns, and is
// the golden file's.
func TestHelp(t *testing.T) {
	t.Parallel()
	for _, path := range append([][]string{nil}, helpPaths()...) {
		t.Run(strings.Join(append([]string{"help"}, path...), " "), func(t *testing.T) {
			t.Parallel()
			var first string
			ways := [][]string{
				append(append([]string(nil), path...), "-h"),
				append(append([]string(nil), path...), "--help"),
				append([]string{"help"}, path...),
			}
			if len(path) > 0 {
				ways = append(ways, append(append([]string(nil), path...), "help"))
			}
			for i, args := range ways {
				code, stdout, stderr := exitOf(noEnv, args...)
				if code != 0 || stderr != "" {
					t.Fatalf("%v: exit %d, stderr %q", args, code, stderr)
				}
				if i == 0 {
					first = stdout
				} else if stdout != first {
					t.Errorf("%v prints other help than %v:\n%s", args, ways[0], stdout)
				}
			}
			for _, line := range strings.Split(first, "\n") {
				if n := len([]rune(line)); n > 80 {
					t.Errorf("line of %d characters: %q", n, line)
				}
			}
			checkGolden(t, goldenName(path), first)
		})
	}
}

// TestHelpShowsOnlyWhatApplies: a command's help lists its own flags, not
// serve's.
func TestHelpShowsOnlyWhatApplies(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args    []string
		want    []string
		notWant []string
	}{
		{[]string{"serve"}, []string{"Listeners:", "Okta:", "Sign-in:", "Browser certificates:", "Storage:", "Logging:",
			"--max-posture-age duration", "(default 5m)", "--grpc-listen host:port", "--require-agent-vouched-cert honour", "--live-check-timeout duration", "(default 3s)"}, nil},
		{[]string{"profile", "user-scope"}, []string{"--sso-public-url URL", "--challenge", "--out path"}, []string{"--grpc-listen", "--okta-audience", "--log-level"}},
		{[]string{"profile", "agent"}, []string{"--verifier host:port", "--enroll-secret secret", "--interval duration"}, []string{"--sso-listen", "--public-url"}},
		{[]string{"profile", "login-item"}, []string{"--organization string", "--out path", "--sign-cert path"}, []string{"--data-dir", "--config", "--enroll-secret"}},
		{[]string{"secret", "create"}, []string{"--data-dir path", "--database URL", "--description", "--config path"}, []string{"--grpc-listen", "--policies"}},
		{[]string{"scep", "challenge"}, []string{"--ttl duration", "(default 24h)"}, []string{"--policies"}},
		{[]string{"okta", "setup"}, []string{"--okta-audience URI", "--terraform"}, []string{"--policies", "--scep-challenge"}},
		{[]string{"devices"}, []string{"--failing", "--offline", "--policy id", "--json", "--verifier host:port"}, []string{"--policies", "--database"}},
		{[]string{"decisions"}, []string{"--user username", "--denied", "--limit int", "(default 20)"}, []string{"--policies"}},
		{[]string{"audit"}, []string{"--device id", "--actor actor", "--action action", "--since time", "--limit int", "(default 20)", "--json", "--verifier host:port"}, []string{"--policies", "--database"}},
	} {
		_, stdout, _ := exitOf(noEnv, append(tc.args, "-h")...)
		// Wrapped descriptions read as one line.
		stdout = strings.Join(strings.Fields(stdout), " ")
		for _, w := range tc.want {
			if !strings.Contains(stdout, w) {
				t.Errorf("%v -h lacks %q:\n%s", tc.args, w, stdout)
			}
		}
		for _, w := range tc.notWant {
			if strings.Contains(stdout, w) {
				t.Errorf("%v -h shows %q, which does not apply:\n%s", tc.args, w, stdout)
			}
		}
	}
}

// TestUsageErrors: a mistake in the command line is one line on stderr
// with a suggestion and where the help is, and exit code 2.
func TestUsageErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"serve", "--polices", "p.yaml"}, "clearance-verifier serve: unknown flag --polices; did you mean --policies? (see 'clearance-verifier serve -h')"},
		{[]string{"serv"}, `clearance-verifier: unknown command "serv"; did you mean serve? (see 'clearance-verifier -h')`},
		{[]string{"frobnicate"}, `clearance-verifier: unknown command "frobnicate"; the commands are serve, devices, decisions, policies, explain, audit, people, secret, exemption, scim, admin-token, scep, profile, okta, cloudflare, backup or restore (see 'clearance-verifier -h')`},
		{[]string{"--verison"}, "clearance-verifier: unknown flag --verison; did you mean --version? (see 'clearance-verifier -h')"},
		{[]string{"secret"}, "clearance-verifier secret: secret needs a command: create, list or revoke (see 'clearance-verifier secret -h')"},
		{[]string{"secret", "craete"}, `clearance-verifier secret: unknown command "craete"; did you mean create? (see 'clearance-verifier secret -h')`},
		{[]string{"secret", "create", "--descripton", "x"}, "clearance-verifier secret create: unknown flag --descripton; did you mean --description? (see 'clearance-verifier secret create -h')"},
		{[]string{"secret", "revoke"}, "clearance-verifier secret revoke: needs exactly 1 argument: the secret's ID (see 'secret list') (got 0) (see 'clearance-verifier secret revoke -h')"},
		{[]string{"secret", "list", "extra"}, `clearance-verifier secret list: unexpected argument "extra" (see 'clearance-verifier secret list -h')`},
		{[]string{"scep", "challenge", "--ttl", "soon"}, `clearance-verifier scep challenge: invalid value "soon" for --ttl: give a duration such as 90s, 30m, 24h or 7d (see 'clearance-verifier scep challenge -h')`},
		{[]string{"scep", "challenge", "--ttl"}, "clearance-verifier scep challenge: --ttl needs a value (see 'clearance-verifier scep challenge -h')"},
		{[]string{"profile", "user-scope", "--grpc-listen", ":1"}, "clearance-verifier profile user-scope: unknown flag --grpc-listen (see 'clearance-verifier profile user-scope -h')"},
		{[]string{"profile", "agent", "--data-dir", "x", "--verifier", "v.example.com:8443"}, "clearance-verifier profile agent: --organization is required (shown to users in System Settings as the profile's publisher) (see 'clearance-verifier profile agent -h')"},
		{[]string{"profile", "login-item", "--organization", " "}, "clearance-verifier profile login-item: --organization is required (shown to users in System Settings as the profile's publisher) (see 'clearance-verifier profile login-item -h')"},
		{[]string{"profile", "user-scope", "--data-dir", "x"}, "clearance-verifier profile user-scope: --organization is required (shown to users in System Settings as the profile's publisher) (see 'clearance-verifier profile user-scope -h')"},
		{[]string{"serve"}, "clearance-verifier serve: --data-dir is required (or CLEARANCE_DATA_DIR, or data_dir in the config file) (see 'clearance-verifier serve -h')"},
		{[]string{"explain", "--data-dir", "x"}, "clearance-verifier explain: needs exactly 1 argument: the device's id, or the start of it (see 'devices') (got 0) (see 'clearance-verifier explain -h')"},
		{[]string{"decisions", "--data-dir", "x", "--limit", "0"}, "clearance-verifier decisions: --limit must be from 1 to 1000 (see 'clearance-verifier decisions -h')"},
		{[]string{"decisions", "--data-dir", "x", "--reference", "r-b225c3f14b9d"}, `clearance-verifier decisions: invalid value "r-b225c3f14b9d" for --reference: r-b225c3f14b9d is a request refused before any decision was made, so it is not in the decision log: search the verifier's log for ref=r-b225c3f14b9d (sso_request_refused, or sso_unrecorded with --log-level debug) (see 'clearance-verifier decisions -h')`},
		{[]string{"decisions", "--data-dir", "x", "--reference", "-3"}, `clearance-verifier decisions: invalid value "-3" for --reference: give the number the page showed as its Reference (see 'clearance-verifier decisions -h')`},
		{[]string{"devices", "--data-dir", "x", "--failing-for", "3 days"}, `clearance-verifier devices: invalid value "3 days" for --failing-for: give a duration such as 90s, 30m, 24h or 7d (see 'clearance-verifier devices -h')`},
		{[]string{"decisions", "--data-dir", "x", "--mode", "foo"}, `clearance-verifier decisions: --mode "foo" is not a mode: give one or more of enforce, monitor, warn, warned, bypassed, exempt, comma-separated (see 'clearance-verifier decisions -h')`},
		{[]string{"decisions", "--data-dir", "x", "--mode", "monitor,wraned"}, `clearance-verifier decisions: --mode "wraned" is not a mode (did you mean warned?): give one or more of enforce, monitor, warn, warned, bypassed, exempt, comma-separated (see 'clearance-verifier decisions -h')`},
		{[]string{"decisions", "--data-dir", "x", "--origin", "saml"}, `clearance-verifier decisions: --origin "saml": give okta or cloudflare (see 'clearance-verifier decisions -h')`},
		{[]string{"audit", "--data-dir", "x", "--limit", "1001"}, "clearance-verifier audit: --limit must be from 1 to 1000 (see 'clearance-verifier audit -h')"},
		{[]string{"audit", "--data-dir", "x", "--since", "yesterday"}, `clearance-verifier audit: --since "yesterday": give a time back from now (90m, 24h, 7d), a date (2026-01-02) or an RFC 3339 time (2026-01-02T15:04:05Z) (see 'clearance-verifier audit -h')`},
		{[]string{"audit", "--data-dir", "x", "--since", "-24h"}, `clearance-verifier audit: --since "-24h": give a time back from now without a sign (24h) (see 'clearance-verifier audit -h')`},
	} {
		code, stdout, stderr := exitOf(noEnv, tc.args...)
		if code != 2 || stdout != "" || stderr != tc.want+"\n" {
			t.Errorf("%v: exit %d, stdout %q, stderr:\n%s\nwant exit 2 and:\n%s", tc.args, code, stdout, stderr, tc.want)
		}
	}
}

// TestNoCommand prints the help to stderr and exits 2.
func TestNoCommand(t *testing.T) {
	t.Parallel()
	code, stdout, stderr := exitOf(noEnv)
	if code != 2 || stdout != "" || !strings.Contains(stderr, "Commands:") || !strings.HasSuffix(stderr, "clearance-verifier: no command given (see 'clearance-verifier -h')\n") {
		t.Errorf("exit %d, stdout %q, stderr:\n%s", code, stdout, stderr)
	}
}

// TestFailureExitCode: a command that fails says why on one line and exits 1.
func TestFailureExitCode(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	code, _, stderr := exitOf(noEnv, "secret", "list", "--data-dir", dir)
	if code != 1 || !strings.HasPrefix(stderr, "clearance-verifier secret list: "+dir+" is not a clearance-verifier data dir") || strings.Count(stderr, "\n") != 1 {
		t.Errorf("exit %d, stderr %q", code, stderr)
	}
}

// TestVersion: `version` and --version print the version, the commit and
// the Go version, and exit 0.
func TestVersion(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{"version"}, {"--version"}} {
		code, stdout, stderr := exitOf(noEnv, args...)
		if code != 0 || stderr != "" {
			t.Fatalf("%v: exit %d, stderr %q", args, code, stderr)
		}
		for _, w := range []string{"clearance-verifier dev\n", "  commit  ", "  go      go1."} {
			if !strings.Contains(stdout, w) {
				t.Errorf("%v: output lacks %q:\n%s", args, w, stdout)
			}
		}
	}
}

// TestBuiltVersion: the binary make build makes knows its version and commit.
func TestBuiltVersion(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := filepath.Join(t.TempDir(), "clearance-verifier")
	build := exec.Command("go", "build", "-ldflags", "-X main.version=9.8.7 -X github.com/clearance/clearance/pkg/cli.commit=0123abc", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	out, err := exec.Command(bin, "--version").Output()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(out), "clearance-verifier 9.8.7\n  commit  0123abc") {
		t.Errorf("version:\n%s", out)
	}
}
