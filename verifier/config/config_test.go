package config

import (
	"bytes"
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/clearance/clearance/pkg/cli"
	"github.com/clearance/clearance/verifier/storage"
)

func load(t *testing.T, args []string, env map[string]string) (*Config, error) {
	t.Helper()
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return Load(fs, args, func(k string) string { return env[k] })
}

func writeFile(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "verifier.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestPrecedence(t *testing.T) {
	t.Parallel()
	file := writeFile(t, "data_dir: /from/file\ngrpc_listen: 127.0.0.1:1001\nhttp_listen: 127.0.0.1:2001\nreport_history: 7\n")
	env := map[string]string{"CLEARANCE_GRPC_LISTEN": "127.0.0.1:1002", "CLEARANCE_HTTP_LISTEN": "127.0.0.1:2002"}
	c, err := load(t, []string{"--config", file, "--grpc-listen", "127.0.0.1:1003"}, env)
	if err != nil {
		t.Fatal(err)
	}
	if c.GRPCListen != "127.0.0.1:1003" {
		t.Errorf("flag should win: %s", c.GRPCListen)
	}
	if c.HTTPListen != "127.0.0.1:2002" {
		t.Errorf("env should beat file: %s", c.HTTPListen)
	}
	if c.DataDir != "/from/file" || c.ReportHistory != 7 {
		t.Errorf("file values lost: %+v", c)
	}
	if c.MaxReportSkew != 5*time.Minute || c.DeviceCertLifetime != 720*time.Hour {
		t.Errorf("defaults lost: %+v", c)
	}
}

func TestErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		args []string
		env  map[string]string
		file string
		want string
	}{
		{"no data dir", nil, nil, "", "--data-dir is required"},
		{"bad duration flag", []string{"--data-dir=x", "--max-report-skew=soon"}, nil, "", `--max-report-skew: "soon" is not a duration`},
		{"duration out of range", []string{"--data-dir=x", "--max-report-skew=1s"}, nil, "", "outside the allowed range"},
		{"bad env", []string{"--data-dir=x"}, map[string]string{"CLEARANCE_GRPC_LISTEN": "8443"}, "", `CLEARANCE_GRPC_LISTEN: "8443" is not HOST:PORT`},
		{"http public url", []string{"--data-dir=x", "--public-url=http://x"}, nil, "", "not an https:// URL"},
		{"unknown file key", []string{"--data-dir=x"}, nil, "data_dir: x\ngrpc_lisen: :1\n", `:2: unknown key "grpc_lisen"`},
		{"file value line", []string{"--data-dir=x"}, nil, "\nreport_history: lots\n", `verifier.yaml:2: report_history: "lots" is not a whole number`},
		{"file not mapping", []string{"--data-dir=x"}, nil, "- a\n", "must be a mapping"},
		{"file nested value", []string{"--data-dir=x"}, nil, "policies: [a, b]\n", "policies must be a single value"},
		{"duplicate key", []string{"--data-dir=x"}, nil, "log_level: info\nlog_level: debug\n", "set twice"},
		{"bad yaml", []string{"--data-dir=x"}, nil, "a: [\n", "config file"},
		{"bad log level", []string{"--data-dir=x", "--log-level=loud"}, nil, "", `"loud" is not one of debug, info, warn, error`},
		{"stray argument", []string{"--data-dir=x", "extra"}, nil, "", `unexpected argument "extra"`},
		{"okta token and app", []string{"--data-dir=x", "--okta-org-url=https://o.okta.com", "--okta-api-token-file=t", "--okta-client-id=c", "--okta-private-key-file=k"}, nil, "", "not both"},
		{"okta app without key", []string{"--data-dir=x", "--okta-org-url=https://o.okta.com", "--okta-client-id=c"}, nil, "", "go together"},
		{"okta credential without org", []string{"--data-dir=x", "--okta-api-token-file=t"}, nil, "", "needs --okta-org-url"},
		{"okta http org", []string{"--data-dir=x", "--okta-org-url=http://o.okta.com"}, nil, "", "not an https:// URL"},
		{"okta bad event type", []string{"--data-dir=x", "--okta-alert-events=user.session.start,<script>"}, nil, "", "is not an Okta event type"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			args := tc.args
			if tc.file != "" {
				args = append([]string{"--config", writeFile(t, tc.file)}, args...)
			}
			_, err := load(t, args, tc.env)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestOversizedFile(t *testing.T) {
	t.Parallel()
	p := writeFile(t, "data_dir: x\n"+strings.Repeat("#", maxFileSize))
	if _, err := load(t, []string{"--config", p}, nil); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("err = %v", err)
	}
}

func FuzzConfigFile(f *testing.F) {
	f.Add("data_dir: x\nreport_history: 5\n")
	f.Add("a: &x [*x]\n")
	f.Add("- 1\n")
	f.Fuzz(func(t *testing.T, body string) {
		p := filepath.Join(t.TempDir(), "c.yaml")
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		_, _ = readFile(p)
	})
}

func TestSignInSettings(t *testing.T) {
	t.Parallel()
	c, err := load(t, []string{"--data-dir", "/d", "--public-url", "https://clearance.example.com:8443", "--sso-listen", ":9444"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.SSOURL() != "https://clearance.example.com:9444/saml/sso" || c.MetadataURL() != "https://clearance.example.com:9444/saml/metadata" {
		t.Errorf("derived URLs %s %s", c.SSOURL(), c.MetadataURL())
	}
	if c.LiveCheckTimeout != 3*time.Second || c.MaxPostureAge != 5*time.Minute || c.LiveCheckAfter != 30*time.Second || c.IdPKeyBits != 2048 || c.OktaConfigured() {
		t.Errorf("defaults %+v", c)
	}
	c, err = load(t, []string{"--data-dir", "/d", "--okta-audience", "https://www.okta.com/saml2/service-provider/spx",
		"--okta-acs-url", "https://x.okta.com/sso/saml2/0oa1", "--client-cert-header", "X-Client-Cert",
		"--trusted-proxies", "10.0.0.0/8, 192.0.2.7", "--sso-public-url", "https://sso.example.com"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !c.OktaConfigured() || len(c.TrustedProxies) != 2 || c.TrustedProxies[1].String() != "192.0.2.7/32" || c.SSOURL() != "https://sso.example.com/saml/sso" {
		t.Errorf("%+v", c)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--okta-audience", "https://www.okta.com/saml2/service-provider/spx"}, "set both"},
		{[]string{"--okta-request-cert", "/x.pem"}, "needs --okta-audience"},
		// serve needs the AUD tag with the team (only cloudflare setup may
		// go without it).
		{[]string{"--cloudflare-team", "acme"}, "set both --cloudflare-team"},
		{[]string{"--cloudflare-aud", "aud-tag-1"}, "set both --cloudflare-team"},
		{[]string{"--client-cert-header", "X-Cert"}, "needs --trusted-proxies"},
		{[]string{"--sso-rate-limit", "-1"}, "from 0 to"},
		{[]string{"--sso-rate-limit", "NaN"}, "from 0 to"},
		{[]string{"--sso-rate-burst", "0"}, "from 1 to"},
		{[]string{"--sso-rate-exempt", "office"}, "not an IP address"},
		{[]string{"--grpc-max-streams", "1"}, "from 2 to"},
		{[]string{"--grpc-unauthenticated-idle", "0s"}, "outside the allowed range"},
		{[]string{"--trusted-proxies", "not-an-ip"}, "not an IP address"},
		{[]string{"--client-cert-header", "X Cert"}, "not a header name"},
		{[]string{"--okta-acs-url", "http://x.okta.com/sso"}, "https://"},
		{[]string{"--idp-key-bits", "1024"}, "2048 or 3072"},
		{[]string{"--live-check-after", "10m"}, "shorter than --max-posture-age"},
		{[]string{"--okta-audience", "not a uri", "--okta-acs-url", "https://x.okta.com/a"}, "absolute URI"},
	} {
		_, err := load(t, append([]string{"--data-dir", "/d"}, tc.args...), nil)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want %q", tc.args, err, tc.want)
		}
	}
}

// TestLimits: the limits' defaults are their packages' defaults; a
// trusted proxy may be named for the client address alone; 0 turns the
// rate limit off.
func TestLimits(t *testing.T) {
	t.Parallel()
	c, err := load(t, []string{"--data-dir", "/d"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.SSORateLimit != 10 || c.SSORateBurst != 100 || len(c.SSORateExempt) != 0 || c.GRPCMaxStreams != 32 ||
		c.GRPCUnauthConns != 128 || c.GRPCUnauthPerSource != 16 || c.GRPCUnauthStreams != 4 ||
		c.GRPCUnauthIdle != 30*time.Second || c.GRPCUnauthMaxAge != 10*time.Minute {
		t.Errorf("defaults %+v", c)
	}
	c, err = load(t, []string{"--data-dir", "/d", "--trusted-proxies", "10.0.0.1", "--sso-rate-limit", "2.5",
		"--sso-rate-exempt", "198.51.100.0/24"}, map[string]string{"CLEARANCE_SSO_RATE_BURST": "40"})
	if err != nil {
		t.Fatal(err)
	}
	if len(c.TrustedProxies) != 1 || c.SSORateLimit != 2.5 || c.SSORateBurst != 40 || c.SSORateExempt[0].String() != "198.51.100.0/24" {
		t.Errorf("%+v", c)
	}
	if c, err = load(t, []string{"--data-dir", "/d", "--sso-rate-limit", "0"}, nil); err != nil || c.SSORateLimit != 0 {
		t.Errorf("0: %v %v", c, err)
	}
}

// TestBindSubset: a command that binds some settings offers only their
// flags, reads a config file written for serve without complaint, ignores
// the environment of settings it does not use, and keeps their defaults.
func TestBindSubset(t *testing.T) {
	t.Parallel()
	file := writeFile(t, "data_dir: /from/file\ngrpc_listen: 127.0.0.1:1\npolicies: /etc/p.yaml\n")
	fs := cli.Wrap(flag.NewFlagSet("secret create", flag.ContinueOnError))
	b := Bind(fs, "data-dir", "database")
	if fs.Lookup("grpc-listen") != nil || fs.Lookup("data-dir") == nil || fs.Lookup("config") == nil {
		t.Fatal("wrong flags bound")
	}
	if err := fs.Parse([]string{"--config", file}); err != nil {
		t.Fatal(err)
	}
	c, err := b.Resolve(func(k string) string {
		return map[string]string{"CLEARANCE_LOG_LEVEL": "loud", "CLEARANCE_DATABASE": "postgres://h/db"}[k]
	})
	if err != nil {
		t.Fatal(err)
	}
	if c.DataDir != "/from/file" || c.Database != "postgres://h/db" || c.GRPCListen != ":8443" || c.Policies != "" || c.LogLevel != "info" {
		t.Errorf("config: %+v", c)
	}
}

// TestBoolSetting: a bool setting works as a bare flag and with =false.
func TestBoolSetting(t *testing.T) {
	t.Parallel()
	for args, want := range map[string]bool{"": true, "--require-agent-vouched-cert": true, "--require-agent-vouched-cert=false": false} {
		a := []string{"--data-dir", "x"}
		if args != "" {
			a = append(a, args)
		}
		c, err := load(t, a, nil)
		if err != nil || c.RequireAgentVouchedCert != want {
			t.Errorf("%q: %v %v", args, c, err)
		}
	}
}

var update = flag.Bool("update", false, "rewrite docs/settings.md")

// docs/settings.md is the settings table as the code has it: defaults,
// names and types cannot drift from what serve uses.
func TestReference(t *testing.T) {
	var b bytes.Buffer
	if err := WriteReference(&b); err != nil {
		t.Fatal(err)
	}
	const path = "../../docs/settings.md"
	if *update {
		if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, b.Bytes()) {
		t.Errorf("docs/settings.md is not what the settings table says; run go test ./verifier/config -run TestReference -update")
	}
}

// Every row of the generated tables has as many cells as its header: an
// unescaped | in a cell (a type such as monitor|warn|enforce) makes Markdown
// split it, and the default and description land in the wrong columns.
func TestReferenceRowsFitHeader(t *testing.T) {
	var b bytes.Buffer
	if err := WriteReference(&b); err != nil {
		t.Fatal(err)
	}
	header := -1
	for i, line := range strings.Split(b.String(), "\n") {
		if !strings.HasPrefix(line, "|") {
			header = -1
			continue
		}
		n := tableCells(line)
		if header < 0 {
			header = n
			continue
		}
		if n != header {
			t.Errorf("line %d has %d cells, its header %d: %s", i+1, n, header, line)
		}
	}
}

// tableCells counts a Markdown table row's cells: its pipes not escaped
// with a backslash, less the outer one.
func tableCells(row string) int {
	n := 0
	for i := 0; i < len(row); i++ {
		switch row[i] {
		case '\\':
			i++
		case '|':
			n++
		}
	}
	return n - 1
}

// The posture endpoint is on only with both the team and the AUD tag: a
// configuration with the team alone (which only cloudflare setup resolves)
// never serves it without an audience to check.
// TestAuditRetention: 400 days unless set; from 30 days to 10 years, so
// that a typo cannot empty the audit log at the next sweep.
func TestAuditRetention(t *testing.T) {
	t.Parallel()
	c, err := load(t, []string{"--data-dir", "/d"}, nil)
	if err != nil || c.AuditRetention != 400*24*time.Hour {
		t.Fatalf("default audit retention %v, %v; want 9600h", c.AuditRetention, err)
	}
	c, err = load(t, []string{"--data-dir", "/d"}, map[string]string{"CLEARANCE_AUDIT_RETENTION": "720h"})
	if err != nil || c.AuditRetention != 30*24*time.Hour {
		t.Errorf("CLEARANCE_AUDIT_RETENTION=720h: %v, %v", c.AuditRetention, err)
	}
	for _, v := range []string{"719h", "24h", "0s", "87601h"} {
		if _, err := load(t, []string{"--data-dir", "/d", "--audit-retention", v}, nil); err == nil || !strings.Contains(err.Error(), "outside the allowed range") {
			t.Errorf("--audit-retention %s: %v, want it refused", v, err)
		}
	}
}

func TestCloudflareConfiguredNeedsBoth(t *testing.T) {
	for _, c := range []Config{{CloudflareTeam: "https://acme.cloudflareaccess.com"}, {CloudflareAUD: "aud"}, {}} {
		if c.CloudflareConfigured() {
			t.Errorf("%q %q: configured", c.CloudflareTeam, c.CloudflareAUD)
		}
	}
	if c := (Config{CloudflareTeam: "https://acme.cloudflareaccess.com", CloudflareAUD: "aud"}); !c.CloudflareConfigured() {
		t.Error("team and AUD: not configured")
	}
}

// A password holding '/', '?' or '#' not percent-encoded ends the URL's
// host early; the label shows neither it nor what follows.
func TestDatabaseLabelPasswordPastHost(t *testing.T) {
	for dsn, want := range map[string]string{
		"": "sqlite",
		"postgres://u:pw@db.internal:5432/clearance?sslmode=require":     "postgres db.internal:5432/clearance",
		"postgres://clearance:/S3cret+q@db.internal:5432/clearance":      "postgres",
		"postgres://clearance:S3c?ret@db.internal/clearance":             "postgres",
		"postgres://clearance:S3c#ret@db.internal/clearance":             "postgres",
		"postgres://clearance:S3cr@tHost/T41lPart@127.0.0.1:1/clearance": "postgres",
		"postgres://clearance:S3cr@t?hunter2@127.0.0.1:1/db":             "postgres",
		"postgres://clearance:S3cr@t#T41l@127.0.0.1/db":                  "postgres",
		"postgres://clearance:S3cr@t@127.0.0.1/db":                       "postgres",
	} {
		if got := DatabaseLabel(dsn); got != want {
			t.Errorf("DatabaseLabel(%q) = %q, want %q", dsn, got, want)
		}
		if past := want == "postgres"; storage.PasswordPastHost(dsn) != past {
			t.Errorf("PasswordPastHost(%q) = %v", dsn, !past)
		}
	}
}

// TestExampleSettingsFile: the production starting point in examples/
// loads, and says what its comments say.
func TestExampleSettingsFile(t *testing.T) {
	t.Parallel()
	c, err := load(t, []string{"--config", "../../examples/verifier.yaml"}, nil)
	if err != nil {
		t.Fatalf("examples/verifier.yaml: %v", err)
	}
	if c.EnrollApproval != "known" || c.Enforcement != "monitor" || c.DataDir != "/var/lib/clearance" || c.Policies != "/etc/clearance/policies.yaml" {
		t.Errorf("examples/verifier.yaml loads as %+v", c)
	}
}

// TestResolveAgain is what serve does on SIGHUP: the same flags and
// environment resolved again with the settings file as it is now, compared
// with the settings in force.
func TestResolveAgain(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name          string
		args          []string
		env           map[string]string
		before, after string
		enforcement   string // in force after the second Resolve
		changed       []string
		outranked     []Outranked
		broken        bool
	}{
		{name: "enforcement removed from the file", before: "enforcement: monitor\n", after: "",
			enforcement: "enforce", changed: []string{"enforcement"}},
		{name: "enforcement lowered in the file", before: "", after: "enforcement: monitor\n",
			enforcement: "monitor", changed: []string{"enforcement"}},
		{name: "flag outranks the file", args: []string{"--enforcement", "monitor"}, before: "enforcement: monitor\n", after: "enforcement: enforce\n",
			enforcement: "monitor", outranked: []Outranked{{Key: "enforcement", By: "--enforcement"}}},
		{name: "environment outranks the file", env: map[string]string{"CLEARANCE_ENFORCEMENT": "warn"}, before: "", after: "enforcement: enforce\n",
			enforcement: "warn", outranked: []Outranked{{Key: "enforcement", By: "CLEARANCE_ENFORCEMENT"}}},
		{name: "other settings and a secret", before: "scep_challenge: old-secret-0123456789\n", after: "scep_challenge: new-secret-0123456789\nreport_history: 9\n",
			enforcement: "enforce", changed: []string{"report_history", "scep_challenge"}},
		{name: "unchanged", before: "enforcement: warn\nreport_history: 9\n", after: "report_history: 9\nenforcement: warn\n",
			enforcement: "warn"},
		{name: "no longer parses", before: "enforcement: warn\n", after: "enforcement: [warn\n", broken: true},
		{name: "a value no longer valid", before: "enforcement: warn\n", after: "enforcement: off\n", broken: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			file := writeFile(t, "data_dir: /d\n"+tt.before)
			fs := cli.Wrap(flag.NewFlagSet("serve", flag.ContinueOnError))
			b := Bind(fs)
			if err := fs.Parse(append([]string{"--config", file}, tt.args...)); err != nil {
				t.Fatal(err)
			}
			getenv := func(k string) string { return tt.env[k] }
			c, err := b.Resolve(getenv)
			if err != nil {
				t.Fatal(err)
			}
			if c.SettingsFile() != file {
				t.Errorf("SettingsFile = %q, want %q", c.SettingsFile(), file)
			}
			if err := os.WriteFile(file, []byte("data_dir: /d\n"+tt.after), 0o600); err != nil {
				t.Fatal(err)
			}
			next, err := b.Resolve(getenv)
			if tt.broken {
				if err == nil || !strings.Contains(err.Error(), file) {
					t.Fatalf("Resolve = %v, want an error naming %s", err, file)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if next.Enforcement != tt.enforcement {
				t.Errorf("enforcement %q, want %q", next.Enforcement, tt.enforcement)
			}
			changed, outranked := c.Compare(next)
			if strings.Join(changed, ",") != strings.Join(tt.changed, ",") {
				t.Errorf("changed %v, want %v", changed, tt.changed)
			}
			if len(outranked) != len(tt.outranked) || (len(outranked) > 0 && outranked[0] != tt.outranked[0]) {
				t.Errorf("outranked %v, want %v", outranked, tt.outranked)
			}
		})
	}
}

func TestSetBy(t *testing.T) {
	t.Parallel()
	file := writeFile(t, "data_dir: /d\nenforcement: warn\nreport_history: 3\n")
	c, err := load(t, []string{"--config", file, "--report-history", "4"}, map[string]string{"CLEARANCE_DATA_DIR": "/e"})
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{"enforcement": "settings file", "report-history": "--report-history",
		"data-dir": "CLEARANCE_DATA_DIR", "max-report-skew": "default"} {
		if got := c.SetBy(name); got != want {
			t.Errorf("SetBy(%s) = %q, want %q", name, got, want)
		}
	}
}
