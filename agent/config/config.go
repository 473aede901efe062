// Package config owns the agent's settings: their names in every source and
// the order the sources are consulted in. What each value may be is
// pkg/agentprefs's to say.
//
// Sources, first match wins, per setting:
//
//  1. command-line flags (--verifier, --ca-file, …)
//  2. CLEARANCE_* environment variables
//  3. the managed-preferences plist MDM delivers,
//     /Library/Managed Preferences/com.clearance.agent.plist
//  4. a local plist in the state dir, <state_dir>/com.clearance.agent.plist
//
// The plist keys and their domain are pkg/agentprefs's too: the verifier's
// `profile agent` command writes them by the same rules.
//
// What the files gave settings that ran can be kept (Record) and stand in
// for the files later (Inputs.Recorded): the agent runs them at a start
// where the files' settings would not run.
package config

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"time"

	"github.com/groob/plist"

	"github.com/clearance/clearance/pkg/agentprefs"
	"github.com/clearance/clearance/pkg/certpem"
	"github.com/clearance/clearance/pkg/cli"
)

// LocalPlistName is the local plist's file name inside the state dir.
const LocalPlistName = agentprefs.Domain + ".plist"

// Source names, as shown in errors and in `clearance-agent status`.
const (
	SourceFlag    = "flag"
	SourceEnv     = "environment"
	SourceDefault = "default"
	// SourceRecorded names a value from the last settings that ran
	// (Inputs.Recorded); where the files had it from follows in brackets.
	SourceRecorded = "the last settings that ran"
)

// DefaultStateDir is the state dir when none is configured.
func DefaultStateDir() string {
	if runtime.GOOS == "darwin" {
		return "/var/db/clearance"
	}
	return "/var/lib/clearance"
}

// Config is the agent's resolved configuration.
type Config struct {
	Verifier      string
	CAFile        string
	CAPEM         string
	CAFingerprint string
	EnrollSecret  string
	OsquerySocket string
	OsquerydPath  string
	StateDir      string
	// Interval, when set, replaces every policy's own interval.
	Interval time.Duration
	// RunBudget bounds one run of the policies (agentprefs.DefaultRunBudget
	// when unset).
	RunBudget time.Duration
	LogLevel  slog.Level
	// LogFormat is agentprefs.LogText or agentprefs.LogJSON.
	LogFormat string
	// PresenceListen is where proofs of presence are served (loopback), or
	// agentprefs.PresenceOff.
	PresenceListen string
	// PresenceBrowsers are the programs proofs are signed for (Team IDs on
	// macOS, executable paths on Linux); empty keeps the platform's default.
	PresenceBrowsers []string

	// Sources names where each setting (by plist key) came from.
	Sources map[string]string
	// Ignored names the keys of the plists this agent does not know, as
	// "path key": a profile made for a newer agent, say (see
	// agentprefs.ParsePlist).
	Ignored []string

	// files holds what the plists (or, in their place, a record) gave, by
	// plist key: what Record keeps.
	files map[string]RecordedValue
	// recordedAt is when the record these settings come from was made;
	// zero when they come from the files.
	recordedAt time.Time
}

// LogValue keeps the enroll secret out of logs however the config is logged.
func (c *Config) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("verifier", c.Verifier),
		slog.String("ca_file", c.CAFile),
		slog.Bool("ca_pem_set", c.CAPEM != ""),
		slog.String("ca_fingerprint", c.CAFingerprint),
		slog.Bool("enroll_secret_set", c.EnrollSecret != ""),
		slog.String("osquery_socket", c.OsquerySocket),
		slog.String("osqueryd", c.OsquerydPath),
		slog.String("state_dir", c.StateDir),
		slog.Duration("interval", c.Interval),
		slog.Duration("run_budget", c.RunBudget),
		slog.String("log_level", c.LogLevel.String()),
		slog.String("log_format", c.LogFormat),
	)
}

// setting describes one configuration value in every source: one line of
// the table below says all there is to say about it.
type setting struct {
	key  string // plist key
	flag string
	env  string
	help string
	// group is the heading the help lists the flag under; kind is the type
	// word it shows (host:port, path, duration…); def is the default the
	// help names, when there is one.
	group, kind, def string
	// set checks and stores a value given as a string.
	set func(c *Config, v string) error
	// local is false for settings the local plist may not hold.
	local bool
}

// Help groups, in the order the help shows them.
const (
	GroupVerifier = "Verifier"
	GroupOsquery  = "osquery"
	GroupPolicies = "Policies"
	GroupSignIn   = "Sign-in"
	GroupState    = "State"
	GroupLogging  = "Logging"
)

var groupOrder = []string{GroupVerifier, GroupOsquery, GroupPolicies, GroupSignIn, GroupState, GroupLogging}

var settings = []setting{
	{key: agentprefs.KeyVerifier, flag: "verifier", env: "CLEARANCE_VERIFIER", local: true, group: GroupVerifier, kind: "host:port",
		help: "the verifier's gRPC address", set: setVerifier},
	{key: agentprefs.KeyCAFile, flag: "ca-file", env: "CLEARANCE_CA_FILE", local: true, group: GroupVerifier, kind: "path",
		help: "PEM file of the verifier's root CA (its data dir's ca.pem)", set: setPath(func(c *Config) *string { return &c.CAFile })},
	{key: agentprefs.KeyCAPEM, flag: "ca-pem", env: "CLEARANCE_CA_PEM", local: true, group: GroupVerifier, kind: "PEM",
		help: "the verifier's root CA itself, as PEM text", set: setCAPEM},
	{key: agentprefs.KeyCAFingerprint, flag: "ca-fingerprint", env: "CLEARANCE_CA_FINGERPRINT", local: true, group: GroupVerifier, kind: "hex",
		help: "SHA-256 of the root CA certificate (DER); pins the root", set: setFingerprint},
	{key: agentprefs.KeyEnrollSecret, flag: "enroll-secret", env: "CLEARANCE_ENROLL_SECRET", local: true, group: GroupVerifier, kind: "secret",
		help: "enroll secret from 'clearance-verifier secret create'", set: setEnrollSecret},
	{key: agentprefs.KeyOsquerySocket, flag: "osquery-socket", env: "CLEARANCE_OSQUERY_SOCKET", local: true, group: GroupOsquery, kind: "path",
		help: "attach to the osqueryd whose extensions socket this is", set: setPath(func(c *Config) *string { return &c.OsquerySocket })},
	{key: agentprefs.KeyOsquerydPath, flag: "osqueryd", env: "CLEARANCE_OSQUERYD", local: true, group: GroupOsquery, kind: "path",
		help: "spawn this osqueryd binary as a child", set: setPath(func(c *Config) *string { return &c.OsquerydPath })},
	{key: agentprefs.KeyStateDir, flag: "state-dir", env: "CLEARANCE_STATE_DIR", local: false, group: GroupState, kind: "path",
		def:  DefaultStateDir(),
		help: "where the device key, certificate and cached policies live", set: setPath(func(c *Config) *string { return &c.StateDir })},
	{key: agentprefs.KeyInterval, flag: "interval", env: "CLEARANCE_INTERVAL", local: true, group: GroupPolicies, kind: "duration",
		help: "run every policy this often instead of at its own interval", set: setInterval},
	{key: agentprefs.KeyRunBudget, flag: "run-budget", env: "CLEARANCE_RUN_BUDGET", local: true, group: GroupPolicies, kind: "duration",
		def:  agentprefs.DefaultRunBudget.String(),
		help: "longest one run of the policies may take (" + agentprefs.MinRunBudget.String() + " to " + agentprefs.MaxRunBudget.String() + "); the policies it has not reached by then are reported as ERROR \"not run\"", set: setRunBudget},
	{key: agentprefs.KeyLogLevel, flag: "log-level", env: "CLEARANCE_LOG_LEVEL", local: true, group: GroupLogging, kind: "debug|info|warn|error",
		def:  "info",
		help: "how much to log", set: setLogLevel},
	{key: agentprefs.KeyLogFormat, flag: "log-format", env: "CLEARANCE_LOG_FORMAT", local: true, group: GroupLogging, kind: "text|json",
		def:  agentprefs.LogText,
		help: "text for people, json for log collectors", set: setLogFormat},
	{key: agentprefs.KeyPresenceListen, flag: "presence-listen", env: "CLEARANCE_PRESENCE_LISTEN", local: true, group: GroupSignIn, kind: "host:port",
		def:  agentprefs.DefaultPresenceListen,
		help: "loopback address where the Mac's browser gets this Mac's proof of presence at sign-in, or off", set: setPresenceListen},
	{key: agentprefs.KeyPresenceBrowsers, flag: "presence-browsers", env: "CLEARANCE_PRESENCE_BROWSERS", local: true, group: GroupSignIn, kind: "list",
		help: "programs proofs are signed for: Apple Team IDs on macOS (default: the major browsers), executable paths on Linux (default: no check)", set: setPresenceBrowsers},
}

// setFromFile checks and stores a value a plist gave (or a record of
// one): by the plists' contract, agentprefs.Check, which is stricter than
// set only in that the paths it names must be absolute (agentprefs.CheckAbsPath).
func (s setting) setFromFile(c *Config, v string) error {
	if err := agentprefs.Check(s.key, v); err != nil {
		return err
	}
	return s.set(c, v)
}

// EnvVars maps each plist key to its environment variable.
func EnvVars() map[string]string {
	out := make(map[string]string, len(settings))
	for _, s := range settings {
		out[s.key] = s.env
	}
	return out
}

// Footer says where settings come from besides flags; the help prints it
// under the flags.
const Footer = "Each setting can also come from the environment (CLEARANCE_ and the flag's name in upper case with '_' for '-', e.g. CLEARANCE_VERIFIER) from the managed-preferences plist MDM delivers (" + agentprefs.ManagedPlistPath + ", under the plist key each flag names), or from the local plist in the state dir (" + LocalPlistName + ", the same keys). A flag wins over the environment, the environment over the managed plist, the managed plist over the local one."

// Flags binds settings to a FlagSet and remembers which were given.
type Flags struct {
	fs     *cli.FlagSet
	values map[string]*string
	// only holds the flag names bound, nil when all are.
	only []string
	// ManagedPlist overrides agentprefs.ManagedPlistPath (tests, unusual deployments).
	ManagedPlist *string
}

// BindFlags registers every setting's flag on fs.
func BindFlags(fs *flag.FlagSet) *Flags { return Bind(cli.Wrap(fs)) }

// Bind registers the flags of the named settings (by flag name; every
// setting when none is named) and --managed-plist on fs, under their help
// groups. Load with the Flags' Inputs resolves only those settings, so a
// command is never refused for a setting it does not use.
func Bind(fs *cli.FlagSet, names ...string) *Flags {
	f := &Flags{fs: fs, values: make(map[string]*string), only: names}
	want := map[string]bool{}
	for _, n := range names {
		if indexOfFlag(n) < 0 {
			panic("config: no setting " + n)
		}
		want[n] = true
	}
	for _, g := range groups() {
		fs.Group(g)
		for _, s := range settings {
			if s.group != g || (len(names) > 0 && !want[s.flag]) {
				continue
			}
			f.values[s.flag] = fs.String(s.flag, "", s.help)
			note := "plist " + s.key
			if s.def != "" {
				note = "default " + s.def + "; " + note
			}
			fs.Describe(s.flag, s.kind, note)
		}
		if g == GroupState {
			f.ManagedPlist = fs.String("managed-plist", agentprefs.ManagedPlistPath, "the managed-preferences plist to read")
			fs.Describe("managed-plist", "path", "")
		}
	}
	return f
}

// groups is groupOrder, then any group a setting names that it lacks.
func groups() []string {
	named := make([]string, len(settings))
	for i, s := range settings {
		named[i] = s.group
	}
	return cli.GroupOrder(groupOrder, named)
}

func indexOfFlag(name string) int {
	for i, s := range settings {
		if s.flag == name {
			return i
		}
	}
	return -1
}

// Given returns the flags set on the command line, by flag name.
func (f *Flags) Given() map[string]string {
	out := make(map[string]string)
	f.fs.Visit(func(fl *flag.Flag) {
		if p, ok := f.values[fl.Name]; ok {
			out[fl.Name] = *p
		}
	})
	return out
}

// Inputs are what Load needs for the bound settings, from the parsed flags.
func (f *Flags) Inputs() Inputs {
	return Inputs{Flags: f.Given(), ManagedPlist: *f.ManagedPlist, Only: f.only}
}

// Inputs are the raw sources Load resolves.
type Inputs struct {
	// Flags holds flags given on the command line, by flag name.
	Flags map[string]string
	// Getenv reads the environment (default os.LookupEnv).
	Getenv func(string) (string, bool)
	// ManagedPlist is the managed-preferences plist path (default
	// agentprefs.ManagedPlistPath); a missing file is not an error.
	ManagedPlist string
	// Only names the settings to resolve, by flag name; nil resolves all.
	// The state dir is always resolved: the local plist lives in it.
	Only []string
	// Recorded, when set, stands in for both plists, which are not read:
	// the last settings that ran. Flags and the environment still win
	// over it.
	Recorded *Recorded
}

// Recorded is what the agent keeps of settings that ran, to run them
// again at a start where the files' settings would not (a profile
// misspelt, half pushed or removed): what the files (the managed and
// local plists) gave, each value as they gave it and read again by the
// same rules. Flags and the environment are not kept: those of the start
// win, as they always do. It holds the enroll secret: whoever stores it
// keeps it as they keep the device key.
type Recorded struct {
	// At is when the settings were recorded, as they started.
	At time.Time `json:"recorded_at"`
	// Settings are the values by plist key.
	Settings map[string]RecordedValue `json:"settings"`
}

// RecordedValue is one setting's value as a plist gave it, and where from
// ("/Library/Managed Preferences/com.clearance.agent.plist key CAPEM").
type RecordedValue struct {
	Value string `json:"value"`
	From  string `json:"from"`
}

// Record returns what to keep of c once it ran (see Recorded), made at
// at; settings that came from a record keep that record's time.
func (c *Config) Record(at time.Time) *Recorded {
	if !c.recordedAt.IsZero() {
		at = c.recordedAt
	}
	r := &Recorded{At: at.UTC(), Settings: make(map[string]RecordedValue, len(c.files))}
	for k, v := range c.files {
		r.Settings[k] = v
	}
	return r
}

// RecordedAt is when the record c comes from was made (Inputs.Recorded),
// zero when c comes from the files.
func (c *Config) RecordedAt() time.Time { return c.recordedAt }

// sources are in's environment and managed plist, defaults filled in.
func (in Inputs) sources() (getenv func(string) (string, bool), managedPath string) {
	getenv, managedPath = in.Getenv, in.ManagedPlist
	if getenv == nil {
		getenv = os.LookupEnv
	}
	if managedPath == "" {
		managedPath = agentprefs.ManagedPlistPath
	}
	return getenv, managedPath
}

// Load resolves the configuration from in.
func Load(in Inputs) (*Config, error) {
	getenv, managedPath := in.sources()
	var managed map[string]string
	var ignoredManaged []string
	if in.Recorded == nil {
		var err error
		if managed, ignoredManaged, err = readPlist(managedPath); err != nil {
			return nil, err
		}
	}

	// The state dir must be known before the local plist, which lives in it.
	// file is what a plist (or the record) gave, from where it said.
	type value struct {
		v, source string
		file      *RecordedValue
	}
	resolve := func(s setting, local map[string]string, localPath string) (value, bool) {
		if v, ok := in.Flags[s.flag]; ok {
			return value{v: v, source: SourceFlag + " --" + s.flag}, true
		}
		if v, ok := getenv(s.env); ok && v != "" {
			return value{v: v, source: SourceEnv + " " + s.env}, true
		}
		if in.Recorded != nil {
			if r, ok := in.Recorded.Settings[s.key]; ok {
				return value{v: r.Value, source: SourceRecorded + " (" + r.From + ")", file: &r}, true
			}
			return value{}, false
		}
		if v, ok := managed[s.key]; ok {
			src := managedPath + " key " + s.key
			return value{v: v, source: src, file: &RecordedValue{v, src}}, true
		}
		if v, ok := local[s.key]; ok {
			src := localPath + " key " + s.key
			return value{v: v, source: src, file: &RecordedValue{v, src}}, true
		}
		return value{}, false
	}

	c := &Config{LogLevel: slog.LevelInfo, LogFormat: agentprefs.LogText, PresenceListen: agentprefs.DefaultPresenceListen, RunBudget: agentprefs.DefaultRunBudget,
		Sources: make(map[string]string), files: make(map[string]RecordedValue)}
	if in.Recorded != nil {
		c.recordedAt = in.Recorded.At
	}
	used := func(s setting) bool {
		if in.Only == nil {
			return true
		}
		for _, n := range in.Only {
			if n == s.flag {
				return true
			}
		}
		return false
	}
	apply := func(s setting, v value) error {
		set := s.set
		if v.file != nil {
			set = s.setFromFile
		}
		if err := set(c, v.v); err != nil {
			return &SettingError{Key: s.key, Source: v.source, Err: err}
		}
		c.Sources[s.key] = v.source
		if v.file != nil {
			c.files[s.key] = *v.file
		}
		return nil
	}
	stateSetting := settings[indexOf(agentprefs.KeyStateDir)]
	if v, ok := resolve(stateSetting, nil, ""); ok {
		if err := apply(stateSetting, v); err != nil {
			return nil, err
		}
	} else {
		c.StateDir = DefaultStateDir()
		c.Sources[agentprefs.KeyStateDir] = SourceDefault
	}

	localPath := filepath.Join(c.StateDir, LocalPlistName)
	var local map[string]string
	var ignoredLocal []string
	if in.Recorded == nil {
		var err error
		if local, ignoredLocal, err = readPlist(localPath); err != nil {
			return nil, err
		}
	} else {
		// A record made by a later agent version (one downgraded since)
		// may hold keys this one does not know, as a profile may.
		for k := range in.Recorded.Settings {
			if _, known := lookupKey(k); !known {
				ignoredLocal = append(ignoredLocal, SourceRecorded+" "+k)
			}
		}
		sort.Strings(ignoredLocal)
	}
	c.Ignored = append(ignoredManaged, ignoredLocal...)
	for _, s := range settings {
		if _, ok := local[s.key]; ok && !s.local {
			return nil, fmt.Errorf("%s: key %s cannot be set in the local plist, which lives in the state dir itself", localPath, s.key)
		}
	}
	for _, s := range settings {
		if s.key == agentprefs.KeyStateDir || !used(s) {
			continue
		}
		if v, ok := resolve(s, local, localPath); ok {
			if err := apply(s, v); err != nil {
				return nil, err
			}
		}
	}
	if c.OsquerySocket != "" && c.OsquerydPath != "" {
		return nil, fmt.Errorf("%s (from %s) and %s (from %s) are both set: attach to a socket or spawn osqueryd, not both",
			agentprefs.KeyOsquerySocket, c.Sources[agentprefs.KeyOsquerySocket], agentprefs.KeyOsquerydPath, c.Sources[agentprefs.KeyOsquerydPath])
	}
	return c, nil
}

// StateDir resolves the state dir alone, from the same sources as Load,
// for a command that shows what the agent wrote there even when the rest
// of the settings do not read (status: the running agent keeps the
// settings it had). A managed plist that Load refuses (a misspelt key, a
// value of the wrong type) still gives the StateDir it holds as a string;
// one that is no plist at all gives none, and the default stands. source
// says where the path came from, as Config.Sources does.
func StateDir(in Inputs) (path, source string, err error) {
	getenv, managedPath := in.sources()
	s := settings[indexOf(agentprefs.KeyStateDir)]
	var v string
	set := s.set
	if f, ok := in.Flags[s.flag]; ok {
		v, source = f, SourceFlag+" --"+s.flag
	} else if e, ok := getenv(s.env); ok && e != "" {
		v, source = e, SourceEnv+" "+s.env
	} else if m, ok := plistString(managedPath, s.key); ok {
		v, source, set = m, managedPath+" key "+s.key, s.setFromFile
	} else {
		return DefaultStateDir(), SourceDefault, nil
	}
	var c Config
	if err := set(&c, v); err != nil {
		return "", "", &SettingError{Key: s.key, Source: source, Err: err}
	}
	return c.StateDir, source, nil
}

// plistString is key's string in the plist at path, read leniently: keys
// and values that readPlist would refuse elsewhere in the file do not
// hide it.
func plistString(path, key string) (string, bool) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return "", false
	}
	var doc map[string]any
	if err := plist.Unmarshal(raw, &doc); err != nil {
		return "", false
	}
	v, ok := doc[key].(string)
	return v, ok
}

// lookupKey finds the setting a plist key names.
func lookupKey(key string) (setting, bool) {
	for _, s := range settings {
		if s.key == key {
			return s, true
		}
	}
	return setting{}, false
}

func indexOf(key string) int {
	for i, s := range settings {
		if s.key == key {
			return i
		}
	}
	panic("config: no setting " + key)
}

// RequireVerifier checks what talking to the verifier needs.
func (c *Config) RequireVerifier() error {
	if c.Verifier == "" {
		return fmt.Errorf("no verifier address: set --verifier, CLEARANCE_VERIFIER or the %s plist key", agentprefs.KeyVerifier)
	}
	if c.CAFile == "" && c.CAPEM == "" {
		return fmt.Errorf("no verifier CA: set --ca-file, CLEARANCE_CA_FILE or the %s or %s plist key", agentprefs.KeyCAFile, agentprefs.KeyCAPEM)
	}
	return nil
}

// RequireOsquery checks that one way to reach osquery is configured.
func (c *Config) RequireOsquery() error {
	if c.OsquerySocket == "" && c.OsquerydPath == "" {
		return fmt.Errorf("no osquery: set --osquery-socket (attach) or --osqueryd (spawn), or the %s or %s plist key", agentprefs.KeyOsquerySocket, agentprefs.KeyOsquerydPath)
	}
	return nil
}

// SettingError is a setting refused: its plist key (one the agent knows),
// where its value came from, and why (which may quote the value).
type SettingError struct {
	Key, Source string
	Err         error
}

func (e *SettingError) Error() string { return fmt.Sprintf("%s from %s: %v", e.Key, e.Source, e.Err) }
func (e *SettingError) Unwrap() error { return e.Err }

// CAPool returns the verifier's root CA certificates from CAFile and CAPEM.
// When CAFingerprint is set, the certificate it names is the only one
// trusted, and one of them must be it.
func (c *Config) CAPool() (*x509.CertPool, []*x509.Certificate, error) {
	var certs []*x509.Certificate
	if c.CAFile != "" {
		raw, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, nil, &SettingError{Key: agentprefs.KeyCAFile, Source: c.Sources[agentprefs.KeyCAFile], Err: err}
		}
		cs, err := certpem.Parse(raw)
		if err != nil {
			return nil, nil, &SettingError{Key: agentprefs.KeyCAFile, Source: c.Sources[agentprefs.KeyCAFile], Err: fmt.Errorf("%s: %w", c.CAFile, err)}
		}
		certs = append(certs, cs...)
	}
	if c.CAPEM != "" {
		cs, err := certpem.Parse([]byte(c.CAPEM))
		if err != nil {
			return nil, nil, &SettingError{Key: agentprefs.KeyCAPEM, Source: c.Sources[agentprefs.KeyCAPEM], Err: err}
		}
		certs = append(certs, cs...)
	}
	if len(certs) == 0 {
		return nil, nil, errors.New("no verifier CA configured")
	}
	if c.CAFingerprint != "" {
		// The pin is the trust: a bundle, or CA material from a second
		// source (CAPEM from MDM, CAFile from a flag or the environment),
		// keeps no other root trusted beside it.
		var pinned *x509.Certificate
		for _, cert := range certs {
			sum := sha256.Sum256(cert.Raw)
			if hex.EncodeToString(sum[:]) == c.CAFingerprint {
				pinned = cert
				break
			}
		}
		if pinned == nil {
			return nil, nil, &SettingError{Key: agentprefs.KeyCAFingerprint, Source: c.Sources[agentprefs.KeyCAFingerprint], Err: errors.New("no configured CA certificate has this fingerprint")}
		}
		certs = []*x509.Certificate{pinned}
	}
	pool := x509.NewCertPool()
	for _, cert := range certs {
		pool.AddCert(cert)
	}
	return pool, certs, nil
}

// readPlist reads a settings plist into strings by key, and names the keys
// it does not know as "path key". A missing file is empty; anything else
// wrong with it is an error naming the file.
func readPlist(path string) (map[string]string, []string, error) {
	raw, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil, nil
	}
	if errors.Is(err, fs.ErrPermission) {
		// The managed preferences and the state dir are root's.
		return nil, nil, fmt.Errorf("reading %s: %w (run it as root: sudo)", path, err)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("reading %s: %w", path, err)
	}
	out, unknown, err := agentprefs.ParsePlist(raw)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	ignored := make([]string, len(unknown))
	for i, k := range unknown {
		ignored[i] = path + " " + k
	}
	return out, ignored, nil
}

func setVerifier(c *Config, v string) (err error) {
	c.Verifier, err = agentprefs.ParseVerifier(v)
	return err
}

func setPath(field func(*Config) *string) func(*Config, string) error {
	return func(c *Config, v string) error {
		if err := agentprefs.CheckPath(v); err != nil {
			return err
		}
		if !filepath.IsAbs(v) {
			abs, err := filepath.Abs(v)
			if err != nil {
				return fmt.Errorf("%q: %w", v, err)
			}
			v = abs
		}
		*field(c) = v
		return nil
	}
}

func setCAPEM(c *Config, v string) error {
	if err := agentprefs.CheckCAPEM(v); err != nil {
		return err
	}
	c.CAPEM = v
	return nil
}

func setFingerprint(c *Config, v string) (err error) {
	c.CAFingerprint, err = agentprefs.ParseFingerprint(v)
	return err
}

func setEnrollSecret(c *Config, v string) (err error) {
	c.EnrollSecret, err = agentprefs.ParseEnrollSecret(v)
	return err
}

func setInterval(c *Config, v string) (err error) {
	c.Interval, err = agentprefs.ParseInterval(v)
	return err
}

func setRunBudget(c *Config, v string) (err error) {
	c.RunBudget, err = agentprefs.ParseRunBudget(v)
	return err
}

func setLogLevel(c *Config, v string) (err error) {
	c.LogLevel, err = agentprefs.ParseLogLevel(v)
	return err
}

func setPresenceListen(c *Config, v string) (err error) {
	c.PresenceListen, err = agentprefs.ParsePresenceListen(v)
	return err
}

func setPresenceBrowsers(c *Config, v string) (err error) {
	c.PresenceBrowsers, err = agentprefs.ParsePresenceBrowsers(v)
	return err
}

func setLogFormat(c *Config, v string) (err error) {
	c.LogFormat, err = agentprefs.ParseLogFormat(v)
	return err
}

// Pinned names, by plist key, the settings of c that a flag or the
// environment gives, with where from ("flag --presence-listen"): the files
// cannot change them while the agent runs, a flag or the environment
// winning over them.
func Pinned(c *Config) map[string]string {
	out := map[string]string{}
	for k, src := range c.Sources {
		if strings.HasPrefix(src, SourceFlag+" ") || strings.HasPrefix(src, SourceEnv+" ") {
			out[k] = src
		}
	}
	return out
}

// values are the settings Changed compares, by plist key, each as one
// string.
func values(c *Config) [][2]string {
	return [][2]string{
		{agentprefs.KeyVerifier, c.Verifier},
		{agentprefs.KeyCAFile, c.CAFile},
		{agentprefs.KeyCAPEM, c.CAPEM},
		{agentprefs.KeyCAFingerprint, c.CAFingerprint},
		{agentprefs.KeyEnrollSecret, c.EnrollSecret},
		{agentprefs.KeyOsquerySocket, c.OsquerySocket},
		{agentprefs.KeyOsquerydPath, c.OsquerydPath},
		{agentprefs.KeyStateDir, c.StateDir},
		{agentprefs.KeyInterval, c.Interval.String()},
		{agentprefs.KeyRunBudget, c.RunBudget.String()},
		{agentprefs.KeyLogLevel, c.LogLevel.String()},
		{agentprefs.KeyLogFormat, c.LogFormat},
		{agentprefs.KeyPresenceListen, c.PresenceListen},
		{agentprefs.KeyPresenceBrowsers, strings.Join(c.PresenceBrowsers, "\x00")},
	}
}

// Changed names, by plist key, the settings a and b differ in (never
// their values: the enroll secret is one). A CA file is compared by its
// path; its content is read where it is used.
func Changed(a, b *Config) []string {
	return ChangedFrom(Fingerprints(a), b)
}

// Fingerprints returns each setting's value as a short SHA-256, by plist
// key: what a record of the settings in use keeps to compare with the
// files later, without their values (the enroll secret is one).
func Fingerprints(c *Config) map[string]string {
	out := make(map[string]string, 14)
	for _, kv := range values(c) {
		sum := sha256.Sum256([]byte(kv[1]))
		out[kv[0]] = hex.EncodeToString(sum[:8])
	}
	return out
}

// ChangedFrom names, by plist key in a fixed order, the settings of c
// whose value is not the one fp (from Fingerprints) was taken of.
func ChangedFrom(fp map[string]string, c *Config) []string {
	var out []string
	now := Fingerprints(c)
	for _, kv := range values(c) {
		if fp[kv[0]] != now[kv[0]] {
			out = append(out, kv[0])
		}
	}
	return out
}
