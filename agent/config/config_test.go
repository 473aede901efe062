package config

import (
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/clearance/clearance/agent/internal/fakeverifier"
	"github.com/clearance/clearance/pkg/agentprefs"
)

const plistHead = `<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0"><dict>
`

func plistDoc(entries ...string) string {
	return plistHead + strings.Join(entries, "\n") + "\n</dict></plist>\n"
}

func str(k, v string) string { return "<key>" + k + "</key><string>" + v + "</string>" }

func write(t *testing.T, path, body string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
}

func env(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestPrecedence(t *testing.T) {
	t.Parallel()
	// Each source sets the verifier to its own name; the test removes
	// sources from the top one by one and checks who wins.
	tests := []struct {
		name                      string
		flag, env, managed, local bool
		want                      string
		wantSource                string
	}{
		{"flag beats all", true, true, true, true, "flag.example:1", "flag --verifier"},
		{"env beats plists", false, true, true, true, "env.example:2", "environment CLEARANCE_VERIFIER"},
		{"managed beats local", false, false, true, true, "managed.example:3", "managed.plist key VerifierAddress"},
		{"local alone", false, false, false, true, "local.example:4", "com.clearance.agent.plist key VerifierAddress"},
		{"none", false, false, false, false, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			stateDir := filepath.Join(dir, "state")
			managed := filepath.Join(dir, "managed.plist")
			in := Inputs{Flags: map[string]string{"state-dir": stateDir}, Getenv: env(nil), ManagedPlist: managed}
			if tt.flag {
				in.Flags["verifier"] = "flag.example:1"
			}
			if tt.env {
				in.Getenv = env(map[string]string{"CLEARANCE_VERIFIER": "env.example:2"})
			}
			if tt.managed {
				write(t, managed, plistDoc(str(agentprefs.KeyVerifier, "managed.example:3")))
			}
			if tt.local {
				write(t, filepath.Join(stateDir, LocalPlistName), plistDoc(str(agentprefs.KeyVerifier, "local.example:4")))
			}
			c, err := Load(in)
			if err != nil {
				t.Fatal(err)
			}
			if c.Verifier != tt.want {
				t.Errorf("Verifier = %q, want %q", c.Verifier, tt.want)
			}
			if !strings.HasSuffix(c.Sources[agentprefs.KeyVerifier], tt.wantSource) {
				t.Errorf("source = %q, want …%q", c.Sources[agentprefs.KeyVerifier], tt.wantSource)
			}
		})
	}
}

func TestPerKeyMerge(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	managed := filepath.Join(dir, "managed.plist")
	stateDir := filepath.Join(dir, "state")
	// The state dir comes from the managed plist, and the local plist is
	// then found inside it.
	write(t, managed, plistDoc(str(agentprefs.KeyStateDir, stateDir), str(agentprefs.KeyEnrollSecret, "from-mdm"), "<key>Interval</key><integer>90</integer>",
		str("PayloadUUID", "9F0C1E55-0000-4000-8000-000000000000")))
	write(t, filepath.Join(stateDir, LocalPlistName), plistDoc(str(agentprefs.KeyOsquerySocket, "/var/osquery/osquery.em"), str(agentprefs.KeyLogLevel, "debug")))
	c, err := Load(Inputs{Getenv: env(map[string]string{"CLEARANCE_VERIFIER": "v.example:443"}), ManagedPlist: managed})
	if err != nil {
		t.Fatal(err)
	}
	if c.StateDir != stateDir || c.EnrollSecret != "from-mdm" || c.Interval != 90*time.Second ||
		c.OsquerySocket != "/var/osquery/osquery.em" || c.Verifier != "v.example:443" || c.LogLevel.String() != "DEBUG" {
		t.Errorf("merged config = %+v", c)
	}
}

func TestDefaults(t *testing.T) {
	t.Parallel()
	c, err := Load(Inputs{Getenv: env(nil), ManagedPlist: filepath.Join(t.TempDir(), "absent.plist"), Flags: map[string]string{}})
	if err != nil {
		t.Fatal(err)
	}
	if c.StateDir != DefaultStateDir() || c.Sources[agentprefs.KeyStateDir] != SourceDefault {
		t.Errorf("state dir = %q from %q", c.StateDir, c.Sources[agentprefs.KeyStateDir])
	}
	if c.RunBudget != agentprefs.DefaultRunBudget {
		t.Errorf("run budget = %s, want the default %s", c.RunBudget, agentprefs.DefaultRunBudget)
	}
}

// TestRunBudget: the admin's run budget reaches the config from each
// source, a plist integer as seconds.
func TestRunBudget(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name    string
		flags   map[string]string
		env     map[string]string
		managed string
		want    time.Duration
	}{
		{name: "plist integer", managed: plistDoc("<key>RunBudget</key><integer>150</integer>"), want: 150 * time.Second},
		{name: "plist string", managed: plistDoc(str(agentprefs.KeyRunBudget, "90s")), want: 90 * time.Second},
		{name: "environment", env: map[string]string{"CLEARANCE_RUN_BUDGET": "3m"}, want: 3 * time.Minute},
		{name: "flag over plist", flags: map[string]string{"run-budget": "30s"}, managed: plistDoc(str(agentprefs.KeyRunBudget, "90s")), want: 30 * time.Second},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			managed := filepath.Join(dir, "managed.plist")
			flags := map[string]string{"state-dir": filepath.Join(dir, "state")}
			for k, v := range tt.flags {
				flags[k] = v
			}
			if tt.managed != "" {
				write(t, managed, tt.managed)
			}
			c, err := Load(Inputs{Flags: flags, Getenv: env(tt.env), ManagedPlist: managed})
			if err != nil {
				t.Fatal(err)
			}
			if c.RunBudget != tt.want {
				t.Errorf("run budget = %s, want %s", c.RunBudget, tt.want)
			}
		})
	}
}

func TestInvalid(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		flags   map[string]string
		env     map[string]string
		managed string
		local   string
		want    []string // every fragment must be in the error
	}{
		{name: "malformed plist", managed: plistHead + "<key>VerifierAddress</key><string>x",
			want: []string{"managed.plist", "not a valid plist"}},
		{name: "not a dictionary", managed: `<?xml version="1.0"?><plist version="1.0"><array/></plist>`,
			want: []string{"managed.plist", "top level must be a dictionary"}},
		{name: "unknown key", managed: plistDoc(str("VerifierAddres", "x:1")),
			want: []string{"managed.plist", `unknown key "VerifierAddres"`}},
		{name: "wrong type", local: plistDoc("<key>VerifierAddress</key><true/>"),
			want: []string{"com.clearance.agent.plist", "VerifierAddress", "must be a string, not a boolean"}},
		{name: "bad verifier from env", env: map[string]string{"CLEARANCE_VERIFIER": "no-port"},
			want: []string{"VerifierAddress", "environment CLEARANCE_VERIFIER", "not HOST:PORT"}},
		{name: "bad port from flag", flags: map[string]string{"verifier": "host:99999"},
			want: []string{"VerifierAddress", "flag --verifier", "port"}},
		{name: "bad interval", managed: plistDoc(str(agentprefs.KeyInterval, "soon")),
			want: []string{"Interval", "managed.plist key Interval", "not a duration"}},
		{name: "run budget too short", managed: plistDoc("<key>RunBudget</key><integer>5</integer>"),
			want: []string{"RunBudget", "managed.plist key RunBudget", "shorter than the minimum of 10s"}},
		{name: "run budget too long", env: map[string]string{"CLEARANCE_RUN_BUDGET": "5m"},
			want: []string{"RunBudget", "environment CLEARANCE_RUN_BUDGET", "longer than the maximum of 3m0s"}},
		{name: "run budget not a duration", flags: map[string]string{"run-budget": "300"},
			want: []string{"RunBudget", "flag --run-budget", "not a duration"}},
		{name: "bad fingerprint", flags: map[string]string{"ca-fingerprint": "abc"},
			want: []string{"CAFingerprint", "64 hex digits"}},
		{name: "bad inline CA", managed: plistDoc(str(agentprefs.KeyCAPEM, "not pem")),
			want: []string{"CAPEM", "no PEM certificate"}},
		{name: "bad log level", env: map[string]string{"CLEARANCE_LOG_LEVEL": "loud"},
			want: []string{"LogLevel", "loud"}},
		{name: "state dir in local plist", local: plistDoc(str(agentprefs.KeyStateDir, "/elsewhere")),
			want: []string{"StateDir", "local plist"}},
		{name: "attach and spawn", flags: map[string]string{"osquery-socket": "/a.em"}, env: map[string]string{"CLEARANCE_OSQUERYD": "/usr/local/bin/osqueryd"},
			want: []string{"OsquerySocket", "OsquerydPath", "not both"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			stateDir := filepath.Join(dir, "state")
			managed := filepath.Join(dir, "managed.plist")
			flags := map[string]string{"state-dir": stateDir}
			for k, v := range tt.flags {
				flags[k] = v
			}
			if tt.managed != "" {
				write(t, managed, tt.managed)
			}
			if tt.local != "" {
				write(t, filepath.Join(stateDir, LocalPlistName), tt.local)
			}
			_, err := Load(Inputs{Flags: flags, Getenv: env(tt.env), ManagedPlist: managed})
			if err == nil {
				t.Fatal("Load succeeded, want an error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestSecretNeverInErrorsOrLogs(t *testing.T) {
	t.Parallel()
	c := &Config{EnrollSecret: "hunter2-very-secret"}
	if strings.Contains(c.LogValue().String(), "hunter2") {
		t.Error("LogValue shows the enroll secret")
	}
}

// TestSettingsAreTheContract: the agent reads every key of the contract, in
// its order, and accepts a value from a plist exactly when agentprefs.Check
// does, so the verifier's profile (which checks with agentprefs) writes
// nothing the agent refuses. From a flag or the environment it accepts the
// same, and a relative path (StateDir, CAFile, OsquerySocket,
// OsquerydPath), taken against the working directory.
func TestSettingsAreTheContract(t *testing.T) {
	t.Parallel()
	var keys []string
	for _, s := range settings {
		keys = append(keys, s.key)
	}
	if got, want := strings.Join(keys, ","), strings.Join(agentprefs.Keys(), ","); got != want {
		t.Errorf("settings keys %s, agentprefs.Keys() %s", got, want)
	}
	values := []string{"", " ", "x", "host:443", ":443", "host:0", "host:65536", "[::1]:8443", "5m", "90s", "500ms", "0s", "-1m",
		"debug", "WARN", "loud", "/var/osquery/osquery.em", "relative/path", " secret ",
		strings.Repeat("ab", 32), strings.Repeat("AB:", 31) + "AB", strings.Repeat("a", 63), "-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n",
		string(fakeverifier.NewPKI(t).RootPEM())}
	for _, s := range settings {
		for _, v := range values {
			fileErr := s.setFromFile(&Config{}, v)
			flagErr := s.set(&Config{}, v)
			prefsErr := agentprefs.Check(s.key, v)
			if (fileErr == nil) != (prefsErr == nil) {
				t.Errorf("%s = %q from a plist: agent says %v, agentprefs says %v", s.key, v, fileErr, prefsErr)
			}
			pathKey := s.key == agentprefs.KeyStateDir || s.key == agentprefs.KeyCAFile ||
				s.key == agentprefs.KeyOsquerySocket || s.key == agentprefs.KeyOsquerydPath
			relPath := pathKey && v != "" && !filepath.IsAbs(v)
			if (flagErr == nil) != (prefsErr == nil || relPath) {
				t.Errorf("%s = %q from a flag: agent says %v, agentprefs says %v", s.key, v, flagErr, prefsErr)
			}
		}
	}
}

// TestLogFormat: --log-format comes from every source, and only text and
// json are accepted.
func TestLogFormat(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	managed := filepath.Join(dir, "managed.plist")
	write(t, managed, plistDoc(str(agentprefs.KeyLogFormat, "json")))
	for _, tc := range []struct {
		name    string
		in      Inputs
		want    string
		wantErr string
	}{
		{"default", Inputs{Getenv: env(nil), ManagedPlist: filepath.Join(dir, "absent.plist")}, "text", ""},
		{"plist", Inputs{Getenv: env(nil), ManagedPlist: managed}, "json", ""},
		{"env over plist", Inputs{Getenv: env(map[string]string{"CLEARANCE_LOG_FORMAT": "text"}), ManagedPlist: managed}, "text", ""},
		{"flag", Inputs{Flags: map[string]string{"log-format": "json"}, Getenv: env(nil), ManagedPlist: filepath.Join(dir, "absent.plist")}, "json", ""},
		{"bad", Inputs{Flags: map[string]string{"log-format": "yaml"}, Getenv: env(nil), ManagedPlist: managed}, "", `"yaml" is not text or json`},
	} {
		tc.in.Flags = withState(tc.in.Flags, filepath.Join(dir, "state"))
		c, err := Load(tc.in)
		switch {
		case tc.wantErr != "":
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%s: err = %v, want %q", tc.name, err, tc.wantErr)
			}
		case err != nil || c.LogFormat != tc.want:
			t.Errorf("%s: LogFormat %q, err %v; want %q", tc.name, c.LogFormat, err, tc.want)
		}
	}
}

func withState(flags map[string]string, dir string) map[string]string {
	out := map[string]string{"state-dir": dir}
	for k, v := range flags {
		out[k] = v
	}
	return out
}

// TestOnlyResolvesWhatIsUsed: a command that does not talk to the verifier
// is not refused for a bad verifier setting it never uses.
func TestOnlyResolvesWhatIsUsed(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	managed := filepath.Join(dir, "managed.plist")
	write(t, managed, plistDoc(str(agentprefs.KeyVerifier, "not-an-address"), str(agentprefs.KeyOsquerySocket, "/var/osquery/osquery.em")))
	in := Inputs{Flags: withState(nil, filepath.Join(dir, "state")), Getenv: env(nil), ManagedPlist: managed}
	if _, err := Load(in); err == nil || !strings.Contains(err.Error(), "not HOST:PORT") {
		t.Fatalf("everything: err = %v", err)
	}
	in.Only = []string{"osquery-socket", "osqueryd", "state-dir"}
	c, err := Load(in)
	if err != nil || c.OsquerySocket != "/var/osquery/osquery.em" || c.Verifier != "" {
		t.Errorf("only osquery: %+v, %v", c, err)
	}
}

// Changed names the settings two configurations differ in by plist key,
// and nothing for equal ones; never a value.
func TestChanged(t *testing.T) {
	a := &Config{Verifier: "v:8443", EnrollSecret: "hunter2", PresenceBrowsers: []string{"A"}, Sources: map[string]string{"x": "flag"}}
	b := *a
	b.Sources = map[string]string{"x": "managed plist"}
	if got := Changed(a, &b); len(got) != 0 {
		t.Errorf("equal settings from other sources: %v", got)
	}
	b.EnrollSecret, b.PresenceBrowsers = "hunter3", []string{"A", "B"}
	got := Changed(a, &b)
	if strings.Join(got, ",") != "EnrollSecret,PresenceBrowsers" {
		t.Errorf("Changed = %v", got)
	}
	if strings.Contains(strings.Join(got, ","), "hunter") {
		t.Error("Changed shows a value")
	}
}

// A key this agent does not know, in a profile made for a newer one, is
// ignored and named; a known key misspelt stops the agent, naming the key
// meant.
func TestUnknownKeys(t *testing.T) {
	dir := t.TempDir()
	managed := filepath.Join(dir, "managed.plist")
	write(t, managed, plistDoc(str(agentprefs.KeyStateDir, filepath.Join(dir, "state")), str(agentprefs.KeyVerifier, "v.example:443"), str("ReportProxy", "http://proxy:3128")))
	c, err := Load(Inputs{Getenv: env(nil), ManagedPlist: managed})
	if err != nil || c.Verifier != "v.example:443" || len(c.Ignored) != 1 || c.Ignored[0] != managed+" ReportProxy" {
		t.Fatalf("Load = %+v, %v", c, err)
	}
	write(t, managed, plistDoc(str(agentprefs.KeyStateDir, filepath.Join(dir, "state")), str("CAFingerprnt", "ab")))
	if _, err := Load(Inputs{Getenv: env(nil), ManagedPlist: managed}); err == nil || !strings.Contains(err.Error(), "did you mean CAFingerprint?") {
		t.Fatalf("a misspelt pin: %v", err)
	}
}

// StateDir finds the state dir when the settings as a whole do not read,
// so that status can show what the agent wrote there: a managed plist
// that Load refuses for a misspelt key still names it; one that is no
// plist at all names none.
func TestStateDirWhenTheSettingsDoNotRead(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	fromPlist := filepath.Join(dir, "from-plist")
	tests := []struct {
		name       string
		flags      map[string]string
		env        map[string]string
		managed    string
		want       string
		wantSource string
	}{
		{"a misspelt key", nil, nil, plistDoc(str(agentprefs.KeyStateDir, fromPlist), str("CAFingerprnt", "ab")),
			fromPlist, "managed.plist key StateDir"},
		{"a value of the wrong type", nil, nil, plistDoc(str(agentprefs.KeyStateDir, fromPlist), "<key>VerifierAddress</key><integer>1</integer>"),
			fromPlist, "managed.plist key StateDir"},
		{"not a plist", nil, nil, "garbage", DefaultStateDir(), SourceDefault},
		{"a flag over the plist", map[string]string{"state-dir": filepath.Join(dir, "flag")}, nil, "garbage",
			filepath.Join(dir, "flag"), "flag --state-dir"},
		{"the environment over the plist", nil, map[string]string{"CLEARANCE_STATE_DIR": filepath.Join(dir, "env")}, plistDoc(str(agentprefs.KeyStateDir, fromPlist)),
			filepath.Join(dir, "env"), "environment CLEARANCE_STATE_DIR"},
		{"no plist", nil, nil, "", DefaultStateDir(), SourceDefault},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			managed := filepath.Join(dir, strconv.Itoa(i), "managed.plist")
			if tt.managed != "" {
				write(t, managed, tt.managed)
			}
			got, source, err := StateDir(Inputs{Flags: tt.flags, Getenv: env(tt.env), ManagedPlist: managed})
			if err != nil || got != tt.want || !strings.HasSuffix(source, tt.wantSource) {
				t.Errorf("StateDir = %q (from %q), %v; want %q (from …%q)", got, source, err, tt.want, tt.wantSource)
			}
		})
	}
	// A state dir the agent would refuse is refused here too.
	managed := filepath.Join(dir, "bad", "managed.plist")
	write(t, managed, plistDoc(str(agentprefs.KeyStateDir, "")))
	if got, _, err := StateDir(Inputs{Getenv: env(nil), ManagedPlist: managed}); err == nil {
		t.Errorf("StateDir = %q for a path the agent refuses", got)
	}
}

// TestRelativeStateDirFromAPlist: a relative StateDir from a plist (or a
// record of one) is refused, by Load and by StateDir alike: launchd runs
// the agent in /, status and the uninstall script run wherever they are
// typed, and each would take it from a different place. One typed on a
// command line or in a shell's environment is taken against the working
// directory, as any path there is.
func TestRelativeStateDirFromAPlist(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for _, rel := range []string{"-clearance", "var/clearance", "./state"} {
		managed := filepath.Join(dir, "managed.plist")
		write(t, managed, plistDoc(str(agentprefs.KeyStateDir, rel)))
		want := []string{"StateDir from ", managed + " key StateDir", strconv.Quote(rel) + " is not an absolute path"}
		in := Inputs{Getenv: env(nil), ManagedPlist: managed}
		_, err := Load(in)
		_, _, serr := StateDir(in)
		in.Recorded = &Recorded{Settings: map[string]RecordedValue{agentprefs.KeyStateDir: {Value: rel, From: managed + " key StateDir"}}}
		_, rerr := Load(in)
		for what, err := range map[string]error{"Load": err, "StateDir": serr, "Load of a record": rerr} {
			for _, w := range want {
				if err == nil || !strings.Contains(err.Error(), w) {
					t.Errorf("%s with StateDir %q: %v, want an error with %q", what, rel, err, w)
				}
			}
		}
	}

	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	want := filepath.Join(wd, "state")
	absent := filepath.Join(dir, "absent.plist")
	for _, in := range []Inputs{
		{Flags: map[string]string{"state-dir": "state"}, Getenv: env(nil), ManagedPlist: absent},
		{Getenv: env(map[string]string{"CLEARANCE_STATE_DIR": "state"}), ManagedPlist: absent},
	} {
		c, err := Load(in)
		if err != nil || c.StateDir != want {
			t.Errorf("Load(%v): %v, %v; want state dir %s", in.Flags, c, err, want)
		}
		if got, _, err := StateDir(in); err != nil || got != want {
			t.Errorf("StateDir(%v) = %q, %v; want %s", in.Flags, got, err, want)
		}
	}
}

// Pinned names the settings a flag or the environment gives, which the
// files cannot change while the agent runs; those from the plists and the
// defaults are not.
func TestPinned(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	managed := filepath.Join(dir, "managed.plist")
	write(t, managed, plistDoc(str(agentprefs.KeyVerifier, "v.example:443"), str(agentprefs.KeyPresenceListen, "127.0.0.1:47471")))
	c, err := Load(Inputs{Flags: map[string]string{"presence-listen": "off", "state-dir": filepath.Join(dir, "state")},
		Getenv: env(map[string]string{"CLEARANCE_LOG_LEVEL": "debug"}), ManagedPlist: managed})
	if err != nil {
		t.Fatal(err)
	}
	got := Pinned(c)
	want := map[string]string{
		agentprefs.KeyPresenceListen: "flag --presence-listen",
		agentprefs.KeyLogLevel:       "environment CLEARANCE_LOG_LEVEL",
		agentprefs.KeyStateDir:       "flag --state-dir",
	}
	if len(got) != len(want) {
		t.Errorf("Pinned = %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("Pinned[%s] = %q, want %q", k, got[k], v)
		}
	}
}

// Record keeps what the files gave settings that ran, and only that: a
// record loaded in place of the files (a profile misspelt since) gives
// the same settings again, with the flags and environment of the start
// that loads it winning over it as they win over the files.
func TestRecordStandsInForTheFiles(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	stateDir := filepath.Join(dir, "state")
	managed := filepath.Join(dir, "managed.plist")
	ca := string(fakeverifier.NewPKI(t).RootPEM())
	write(t, managed, plistDoc(str(agentprefs.KeyVerifier, "v.example:443"), str(agentprefs.KeyCAPEM, ca),
		str(agentprefs.KeyEnrollSecret, "hunter2"), str(agentprefs.KeyStateDir, stateDir),
		"<key>RunBudget</key><integer>150</integer>"))
	write(t, filepath.Join(stateDir, LocalPlistName), plistDoc(str(agentprefs.KeyOsquerySocket, "/var/osquery/osquery.em")))
	flags := map[string]string{"presence-listen": "off"}
	ran, err := Load(Inputs{Flags: flags, Getenv: env(map[string]string{"CLEARANCE_LOG_LEVEL": "debug"}), ManagedPlist: managed})
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 3, 4, 12, 0, 0, 0, time.UTC)
	rec := ran.Record(at)
	var keys []string
	for k := range rec.Settings {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	// Not the flag's PresenceListen nor the environment's LogLevel.
	if got := strings.Join(keys, ","); got != "CAPEM,EnrollSecret,OsquerySocket,RunBudget,StateDir,VerifierAddress" {
		t.Errorf("recorded keys %s", got)
	}
	if v := rec.Settings[agentprefs.KeyRunBudget]; v.Value != "150s" || v.From != managed+" key RunBudget" {
		t.Errorf("recorded RunBudget %+v", v)
	}
	if v := rec.Settings[agentprefs.KeyOsquerySocket]; v.From != filepath.Join(stateDir, LocalPlistName)+" key OsquerySocket" {
		t.Errorf("recorded OsquerySocket %+v", v)
	}
	raw, err := json.Marshal(rec)
	if err != nil {
		t.Fatal(err)
	}

	// The profile is misspelt now; the record is read instead of it.
	write(t, managed, plistDoc(str("CAFingerprnt", "ab")))
	if _, err := Load(Inputs{Flags: flags, Getenv: env(nil), ManagedPlist: managed}); err == nil {
		t.Fatal("the misspelt profile loads")
	}
	var back Recorded
	if err := json.Unmarshal(raw, &back); err != nil {
		t.Fatal(err)
	}
	again, err := Load(Inputs{Flags: flags, Getenv: env(map[string]string{"CLEARANCE_LOG_LEVEL": "debug"}), ManagedPlist: managed, Recorded: &back})
	if err != nil {
		t.Fatal(err)
	}
	if changed := Changed(ran, again); len(changed) != 0 {
		t.Errorf("the record gives other settings: %v", changed)
	}
	if !again.RecordedAt().Equal(at) || !ran.RecordedAt().IsZero() {
		t.Errorf("RecordedAt %v, of the files' settings %v", again.RecordedAt(), ran.RecordedAt())
	}
	if got := again.Sources[agentprefs.KeyVerifier]; got != SourceRecorded+" ("+managed+" key VerifierAddress)" {
		t.Errorf("source %q", got)
	}
	if again.Record(at.Add(time.Hour)).At != at {
		t.Error("recording the recorded settings again changes their time")
	}
	// This start's flags win over the record.
	over, err := Load(Inputs{Flags: map[string]string{"verifier": "other.example:1"}, Getenv: env(nil), ManagedPlist: managed, Recorded: &back})
	if err != nil || over.Verifier != "other.example:1" || over.PresenceListen != agentprefs.DefaultPresenceListen {
		t.Errorf("a flag over the record: %+v, %v", over, err)
	}
	// A recorded value is read by the same rules as the files', and an
	// error names where it is from; a key this version does not know is
	// ignored, as in a profile.
	bad := Recorded{At: at, Settings: map[string]RecordedValue{
		agentprefs.KeyRunBudget: {Value: "1s", From: managed + " key RunBudget"},
		"ReportProxy":           {Value: "http://proxy:3128", From: managed + " key ReportProxy"},
	}}
	if _, err := Load(Inputs{Getenv: env(nil), ManagedPlist: managed, Recorded: &bad}); err == nil ||
		!strings.Contains(err.Error(), "RunBudget from "+SourceRecorded+" ("+managed+" key RunBudget)") {
		t.Errorf("a recorded value out of range: %v", err)
	}
	delete(bad.Settings, agentprefs.KeyRunBudget)
	if c, err := Load(Inputs{Getenv: env(nil), ManagedPlist: managed, Recorded: &bad}); err != nil || strings.Join(c.Ignored, ",") != SourceRecorded+" ReportProxy" {
		t.Errorf("an unknown recorded key: %v, %v", c, err)
	}
}
