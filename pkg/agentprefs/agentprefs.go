// Package agentprefs owns the agent's managed-preferences contract: the
// preference domain, the name of every key, the plist types each key may
// hold, and which values the agent accepts. The agent reads these keys (from
// the plist MDM delivers, a local plist, flags and the environment); the
// verifier's `profile agent` writes them. Both check values with the
// functions here, so a profile the agent would refuse is refused before it
// reaches a Mac.
package agentprefs

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"path"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/clearance/clearance/pkg/certpem"
	"github.com/clearance/clearance/pkg/presence"
)

// Domain is the agent's preference domain; the plist files are named after it.
const Domain = "com.clearance.agent"

// ManagedPlistPath is where macOS writes the managed preferences an MDM
// profile carries for Domain.
const ManagedPlistPath = "/Library/Managed Preferences/" + Domain + ".plist"

// The keys. Renaming one silently unconfigures every managed Mac.
const (
	KeyVerifier      = "VerifierAddress" // string HOST:PORT
	KeyCAFile        = "CAFile"          // string, path to the verifier's root CA (PEM)
	KeyCAPEM         = "CAPEM"           // string, the root CA itself (PEM)
	KeyCAFingerprint = "CAFingerprint"   // string, SHA-256 hex of the root cert DER
	KeyEnrollSecret  = "EnrollSecret"    // string
	KeyOsquerySocket = "OsquerySocket"   // string, attach to this extensions socket
	KeyOsquerydPath  = "OsquerydPath"    // string, spawn this osqueryd
	KeyStateDir      = "StateDir"        // string
	KeyInterval      = "Interval"        // integer seconds, or a duration string such as "5m"
	KeyRunBudget     = "RunBudget"       // integer seconds, or a duration string such as "5m"
	KeyLogLevel      = "LogLevel"        // string debug|info|warn|error
	KeyLogFormat     = "LogFormat"       // string text|json
	// KeyPresenceListen is where the agent serves proofs of presence: a
	// loopback IP:PORT, or "off".
	KeyPresenceListen = "PresenceListen"
	// KeyPresenceBrowsers lists the programs the agent signs proofs for,
	// comma-separated: Apple Team IDs on macOS (replacing the built-in
	// list of browser vendors), executable paths on Linux.
	KeyPresenceBrowsers = "PresenceBrowsers"
)

// MinInterval is the shortest Interval the agent accepts.
const MinInterval = time.Second

// RunBudget bounds: how long one run of the policies may take before the
// policies it has not reached are reported as ERROR "not run".
// DefaultRunBudget is the agent's when the key is unset. MinRunBudget keeps
// a slip of the pen (1s for 1m) from failing every policy a run reaches
// late. MaxRunBudget keeps a run's report within what verifiers accept: a
// report is dated when its run begins, and its certificate and account
// listings may take a minute more after the run, so a longer run would
// send reports older than the agent resends (4 minutes) and near the
// verifier's default --max-report-skew and --max-posture-age (5 minutes),
// refused as stale at every connect.
const (
	DefaultRunBudget = 2 * time.Minute
	MinRunBudget     = 10 * time.Second
	MaxRunBudget     = 3 * time.Minute
)

// key is one key's contract.
type key struct {
	name string
	// seconds keys may also hold a plist integer, read as seconds.
	seconds bool
	// check validates the value's text form (a plist string, a flag, an
	// environment variable).
	check func(string) error
}

// keys are in the order the agent documents them.
var keys = []key{
	{name: KeyVerifier, check: discard(ParseVerifier)},
	{name: KeyCAFile, check: CheckAbsPath},
	{name: KeyCAPEM, check: CheckCAPEM},
	{name: KeyCAFingerprint, check: discard(ParseFingerprint)},
	{name: KeyEnrollSecret, check: discard(ParseEnrollSecret)},
	{name: KeyOsquerySocket, check: CheckAbsPath},
	{name: KeyOsquerydPath, check: CheckAbsPath},
	{name: KeyStateDir, check: CheckAbsPath},
	{name: KeyInterval, seconds: true, check: discard(ParseInterval)},
	{name: KeyRunBudget, seconds: true, check: discard(ParseRunBudget)},
	{name: KeyLogLevel, check: discard(ParseLogLevel)},
	{name: KeyLogFormat, check: discard(ParseLogFormat)},
	{name: KeyPresenceListen, check: discard(ParsePresenceListen)},
	{name: KeyPresenceBrowsers, check: discard(ParsePresenceBrowsers)},
}

func discard[T any](parse func(string) (T, error)) func(string) error {
	return func(v string) error {
		_, err := parse(v)
		return err
	}
}

// Keys returns every key the agent understands, in a fixed order.
func Keys() []string {
	out := make([]string, len(keys))
	for i, k := range keys {
		out[i] = k.name
	}
	return out
}

func lookup(name string) (key, bool) {
	for _, k := range keys {
		if k.name == name {
			return k, true
		}
	}
	return key{}, false
}

// Check reports whether the agent accepts value, in its text form, for the
// named key. Errors name neither the key nor, for the enroll secret, the value.
func Check(name, value string) error {
	k, ok := lookup(name)
	if !ok {
		return unknownKey(name)
	}
	return k.check(value)
}

func unknownKey(name string) error { return &UnknownKeyError{Name: name} }

// UnknownKeyError is a key the agent does not know. Name is the file's
// (anything an admin typed); Meant, when set, is the known key it looks
// like a misspelling of.
type UnknownKeyError struct{ Name, Meant string }

func (e *UnknownKeyError) Error() string {
	if e.Meant != "" {
		return fmt.Sprintf("unknown key %q: did you mean %s? (known keys: %s)", e.Name, e.Meant, strings.Join(Keys(), ", "))
	}
	return fmt.Sprintf("unknown key %q (known keys: %s)", e.Name, strings.Join(Keys(), ", "))
}

// ParseVerifier checks a verifier address, HOST:PORT.
func ParseVerifier(v string) (string, error) {
	host, port, err := net.SplitHostPort(v)
	if err != nil {
		return "", fmt.Errorf("%q is not HOST:PORT", v)
	}
	if host == "" {
		return "", fmt.Errorf("%q has no host", v)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return "", fmt.Errorf("%q: port %q is not a number between 1 and 65535", v, port)
	}
	return v, nil
}

// CheckPath checks a file or socket path. The agent makes a relative path
// absolute against its working directory.
func CheckPath(v string) error {
	if v == "" {
		return errors.New("is empty")
	}
	return nil
}

// CheckAbsPath checks a path from a plist (StateDir, CAFile,
// OsquerySocket, OsquerydPath): a path, and an absolute one. launchd runs
// the agent in /, while status and the uninstall script run wherever they
// are typed: a relative one would name a different file for each, and is
// almost certainly a mistake. (The agent takes a relative path from a
// flag or the environment, typed in a shell, against its working
// directory.)
func CheckAbsPath(v string) error {
	if err := CheckPath(v); err != nil {
		return err
	}
	if !path.IsAbs(v) {
		return fmt.Errorf("%q is not an absolute path (launchd runs the agent in /)", v)
	}
	return nil
}

// CheckCAPEM checks inline PEM: one or more certificates and nothing else.
func CheckCAPEM(v string) error {
	_, err := certpem.Parse([]byte(v))
	return err
}

// ParseFingerprint checks a SHA-256 certificate fingerprint and returns it
// as 64 lower-case hex digits. Colons and upper case are accepted, as
// certificate viewers show them.
func ParseFingerprint(v string) (string, error) {
	norm := strings.ToLower(strings.ReplaceAll(strings.TrimSpace(v), ":", ""))
	if b, err := hex.DecodeString(norm); err != nil || len(b) != sha256.Size {
		return "", errors.New("must be 64 hex digits (SHA-256 of the CA certificate, colons allowed)")
	}
	return norm, nil
}

// ParseEnrollSecret returns the secret without surrounding white space.
func ParseEnrollSecret(v string) (string, error) {
	// The value itself never appears in an error.
	v = strings.TrimSpace(v)
	if v == "" {
		return "", errors.New("is empty")
	}
	return v, nil
}

// ParseInterval reads a duration such as "5m" (a plist integer reaches it as
// "300s") and checks it against MinInterval.
func ParseInterval(v string) (time.Duration, error) {
	return parseDuration(v, CheckInterval)
}

// parseDuration reads a duration such as "5m" and checks it with check.
func parseDuration(v string, check func(time.Duration) error) (time.Duration, error) {
	d, err := time.ParseDuration(v)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration such as \"90s\" or \"5m\"", v)
	}
	if err := check(d); err != nil {
		return 0, err
	}
	return d, nil
}

// CheckInterval checks an interval's bounds.
func CheckInterval(d time.Duration) error {
	if d < MinInterval {
		return fmt.Errorf("%s is shorter than the minimum of %s", d, MinInterval)
	}
	return nil
}

// ParseRunBudget reads a duration such as "5m" (a plist integer reaches it
// as "300s") and checks it against MinRunBudget and MaxRunBudget.
func ParseRunBudget(v string) (time.Duration, error) {
	return parseDuration(v, CheckRunBudget)
}

// CheckRunBudget checks a run budget's bounds.
func CheckRunBudget(d time.Duration) error {
	if d < MinRunBudget {
		return fmt.Errorf("%s is shorter than the minimum of %s", d, MinRunBudget)
	}
	if d > MaxRunBudget {
		return fmt.Errorf("%s is longer than the maximum of %s", d, MaxRunBudget)
	}
	return nil
}

// ParseLogLevel reads debug, info, warn or error (as log/slog spells them).
func ParseLogLevel(v string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(v)); err != nil {
		return 0, fmt.Errorf("%q is not one of debug, info, warn, error", v)
	}
	return l, nil
}

// Log formats (KeyLogFormat).
const (
	LogText = "text"
	LogJSON = "json"
)

// ParseLogFormat reads text (for people) or json (for log collectors).
func ParseLogFormat(v string) (string, error) {
	if v != LogText && v != LogJSON {
		return "", fmt.Errorf("%q is not text or json", v)
	}
	return v, nil
}

// PresenceOff turns the agent's proof-of-presence endpoint off
// (KeyPresenceListen), for sites that bind sign-ins by certificate only.
const PresenceOff = "off"

// DefaultPresenceListen is where the agent serves proofs of presence; the
// verifier's --agent-presence-port must name the same port.
const DefaultPresenceListen = presence.DefaultAgentAddr

// ParsePresenceListen reads a loopback IP address and port, or "off". A
// listener anywhere but loopback would let other machines ask this Mac's
// key to sign.
func ParsePresenceListen(v string) (string, error) {
	if v == PresenceOff {
		return v, nil
	}
	ap, err := netip.ParseAddrPort(v)
	if err != nil || !ap.Addr().IsLoopback() || ap.Addr().Zone() != "" || ap.Addr().Is4In6() || ap.Port() == 0 {
		return "", fmt.Errorf("%q is not a loopback IP address and port (e.g. %s), or %s", v, DefaultPresenceListen, PresenceOff)
	}
	return ap.String(), nil
}

// teamID is an Apple Developer Team ID.
var teamID = regexp.MustCompile(`^[A-Z0-9]{10}$`)

// ParsePresenceBrowsers reads a comma-separated list of Apple Team IDs (ten
// upper-case letters and digits) or absolute executable paths.
func ParsePresenceBrowsers(v string) ([]string, error) {
	var out []string
	for _, e := range strings.Split(v, ",") {
		e = strings.TrimSpace(e)
		switch {
		case e == "":
			continue
		case teamID.MatchString(e):
		case strings.HasPrefix(e, "/") && path.Clean(e) == e:
		default:
			return nil, fmt.Errorf("%q is neither an Apple Team ID (10 letters and digits) nor an absolute executable path", e)
		}
		out = append(out, e)
	}
	if len(out) == 0 {
		return nil, errors.New("lists no browser")
	}
	return out, nil
}
