// Package config owns clearance-verifier's settings and where they come from.
// Each setting has a flag, a CLEARANCE_* environment variable and a key in the
// YAML file given with --config; the first of those that is set wins, in that
// order, then the default.
package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Config is the verifier's configuration.
type Config struct {
	DataDir            string
	GRPCListen         string
	HTTPListen         string
	PublicURL          string
	Policies           string
	DeviceCertLifetime time.Duration
	MaxReportSkew      time.Duration
	ReportHistory      int
	LiveCheckTimeout   time.Duration
	LogLevel           string
	LogFormat          string
}

// PublicHost is the host name of PublicURL.
func (c *Config) PublicHost() string {
	u, err := url.Parse(c.PublicURL)
	if err != nil {
		return ""
	}
	return u.Hostname()
}

type setting struct {
	name  string // flag name; the YAML key is the same with '_' for '-'
	def   string
	usage string
	set   func(c *Config, v string) error
}

func (s setting) key() string { return strings.ReplaceAll(s.name, "-", "_") }
func (s setting) env() string { return "CLEARANCE_" + strings.ToUpper(s.key()) }

func str(dst func(*Config) *string) func(*Config, string) error {
	return func(c *Config, v string) error { *dst(c) = v; return nil }
}

func dur(dst func(*Config) *time.Duration, min, max time.Duration) func(*Config, string) error {
	return func(c *Config, v string) error {
		d, err := time.ParseDuration(v)
		if err != nil {
			return fmt.Errorf("%q is not a duration (e.g. 30s, 5m, 720h)", v)
		}
		if d < min || d > max {
			return fmt.Errorf("%s is outside the allowed range %s to %s", d, min, max)
		}
		*dst(c) = d
		return nil
	}
}

func listenAddr(dst func(*Config) *string) func(*Config, string) error {
	return func(c *Config, v string) error {
		if _, _, err := net.SplitHostPort(v); err != nil {
			return fmt.Errorf("%q is not HOST:PORT (e.g. :8443 or 127.0.0.1:8443)", v)
		}
		*dst(c) = v
		return nil
	}
}

func oneOf(dst func(*Config) *string, allowed ...string) func(*Config, string) error {
	return func(c *Config, v string) error {
		for _, a := range allowed {
			if v == a {
				*dst(c) = v
				return nil
			}
		}
		return fmt.Errorf("%q is not one of %s", v, strings.Join(allowed, ", "))
	}
}

var settings = []setting{
	{"data-dir", "", "directory for the CA, keys, admin token and database (created on first start)", str(func(c *Config) *string { return &c.DataDir })},
	{"grpc-listen", ":8443", "address for gRPC (agents, admin API, health, reflection); TLS, client certs requested", listenAddr(func(c *Config) *string { return &c.GRPCListen })},
	{"http-listen", ":8080", "address for HTTPS /healthz and /metrics; TLS, no client certs", listenAddr(func(c *Config) *string { return &c.HTTPListen })},
	{"public-url", "https://localhost:8443", "URL agents and browsers use to reach this verifier; its host is in the TLS certificate", func(c *Config, v string) error {
		u, err := url.Parse(v)
		if err != nil || u.Scheme != "https" || u.Hostname() == "" {
			return fmt.Errorf("%q is not an https:// URL with a host", v)
		}
		c.PublicURL = v
		return nil
	}},
	{"policies", "", "policy YAML file (see examples/policies.yaml); reloaded on SIGHUP", str(func(c *Config) *string { return &c.Policies })},
	{"device-cert-lifetime", "720h", "lifetime of device certificates", dur(func(c *Config) *time.Duration { return &c.DeviceCertLifetime }, time.Hour, 365*24*time.Hour)},
	{"max-report-skew", "5m", "how far a report's observed_at may be from the verifier's clock", dur(func(c *Config) *time.Duration { return &c.MaxReportSkew }, 10*time.Second, 24*time.Hour)},
	{"report-history", "100", "reports kept per device (the latest always is)", func(c *Config, v string) error {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 100000 {
			return fmt.Errorf("%q is not a whole number from 1 to 100000", v)
		}
		c.ReportHistory = n
		return nil
	}},
	{"live-check-timeout", "10s", "default wait for a fresh report after CheckNow", dur(func(c *Config) *time.Duration { return &c.LiveCheckTimeout }, 100*time.Millisecond, time.Minute)},
	{"log-level", "info", "debug, info, warn or error", oneOf(func(c *Config) *string { return &c.LogLevel }, "debug", "info", "warn", "error")},
	{"log-format", "text", "text or json", oneOf(func(c *Config) *string { return &c.LogFormat }, "text", "json")},
}

// maxFileSize bounds the config file.
const maxFileSize = 1 << 20

// Load parses args (without the program and subcommand names) and the
// environment, reading the YAML file named by --config if given.
func Load(fs *flag.FlagSet, args []string, getenv func(string) string) (*Config, error) {
	flagVals := make(map[string]*string, len(settings))
	for _, s := range settings {
		flagVals[s.name] = fs.String(s.name, s.def, s.usage+" (env "+s.env()+")")
	}
	configFile := fs.String("config", getenv("CLEARANCE_CONFIG"), "YAML config file with the same keys as the flags, '_' for '-' (env CLEARANCE_CONFIG)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	explicit := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { explicit[f.Name] = true })

	var file map[string]fileValue
	if *configFile != "" {
		var err error
		if file, err = readFile(*configFile); err != nil {
			return nil, err
		}
	}

	c := &Config{}
	var errs []error
	for _, s := range settings {
		v, from := s.def, "default"
		if fv, ok := file[s.key()]; ok {
			v, from = fv.value, fmt.Sprintf("%s:%d: %s", *configFile, fv.line, s.key())
		}
		if ev := getenv(s.env()); ev != "" {
			v, from = ev, s.env()
		}
		if explicit[s.name] {
			v, from = *flagVals[s.name], "--"+s.name
		}
		if v == "" && s.def == "" {
			continue
		}
		if err := s.set(c, v); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", from, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if c.DataDir == "" {
		return nil, errors.New("--data-dir is required (or CLEARANCE_DATA_DIR, or data_dir in the config file)")
	}
	return c, nil
}

type fileValue struct {
	value string
	line  int
}

func readFile(path string) (map[string]fileValue, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("config file: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("config file %s: %w", path, err)
	}
	if len(data) > maxFileSize {
		return nil, fmt.Errorf("config file %s is larger than %d bytes", path, maxFileSize)
	}
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, fmt.Errorf("config file %s: %w", path, err)
	}
	out := map[string]fileValue{}
	if len(root.Content) == 0 {
		return out, nil
	}
	top := root.Content[0]
	if top.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("%s:%d: the config file must be a mapping of key: value", path, top.Line)
	}
	known := map[string]bool{}
	for _, s := range settings {
		known[s.key()] = true
	}
	var errs []error
	for i := 0; i+1 < len(top.Content); i += 2 {
		k, v := top.Content[i], top.Content[i+1]
		switch {
		case !known[k.Value]:
			errs = append(errs, fmt.Errorf("%s:%d: unknown key %q (known: %s)", path, k.Line, k.Value, knownKeys()))
		case v.Kind != yaml.ScalarNode || v.Alias != nil:
			errs = append(errs, fmt.Errorf("%s:%d: %s must be a single value", path, v.Line, k.Value))
		case out[k.Value].line != 0:
			errs = append(errs, fmt.Errorf("%s:%d: %s is set twice (first on line %d)", path, k.Line, k.Value, out[k.Value].line))
		default:
			out[k.Value] = fileValue{value: v.Value, line: v.Line}
		}
	}
	return out, errors.Join(errs...)
}

func knownKeys() string {
	keys := make([]string, 0, len(settings))
	for _, s := range settings {
		keys = append(keys, s.key())
	}
	sort.Strings(keys)
	return strings.Join(keys, ", ")
}
