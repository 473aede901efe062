package profile

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"maps"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/groob/plist"

	"github.com/clearance/clearance/pkg/agentprefs"
)

// DefaultAgentIdentifier is the agent profile's PayloadIdentifier when none
// is given.
const DefaultAgentIdentifier = "com.clearance.agent.profile"

// AgentOptions are the inputs of the agent's device-scope profile.
type AgentOptions struct {
	// Organization is shown as the profile's publisher.
	Organization string
	// VerifierAddress is the verifier's gRPC HOST:PORT.
	VerifierAddress string
	// EnrollSecret is from `clearance-verifier secret create`. It appears
	// only in the managed preferences' EnrollSecret key.
	EnrollSecret string
	// CACert is the Clearance root CA; the profile carries it as PEM and pins
	// it by SHA-256 fingerprint.
	CACert *x509.Certificate
	// Interval, when set, overrides every policy's interval on the agent.
	// Whole seconds, at least one.
	Interval time.Duration
	// RunBudget, when set, bounds one run of the policies on the agent
	// (agentprefs.DefaultRunBudget otherwise). Whole seconds, within
	// agentprefs.MinRunBudget and MaxRunBudget.
	RunBudget time.Duration
	// OsquerySocket is the extensions socket of the osqueryd the agent
	// attaches to (agentprefs.KeyOsquerySocket); OsquerydPath, instead, an
	// osqueryd the agent runs itself (agentprefs.KeyOsquerydPath). One is
	// required: the agent runs no policy without osquery.
	OsquerySocket, OsquerydPath string
	// Identifier is the PayloadIdentifier (DefaultAgentIdentifier).
	Identifier string
}

func (o *AgentOptions) check() error {
	var errs []error
	if strings.TrimSpace(o.Organization) == "" {
		errs = append(errs, errors.New("organization is required (shown to users as the profile's publisher)"))
	}
	if o.VerifierAddress == "" {
		errs = append(errs, errors.New("verifier address is required (HOST:PORT of the verifier's gRPC listener)"))
	} else if _, err := agentprefs.ParseVerifier(o.VerifierAddress); err != nil {
		errs = append(errs, fmt.Errorf("verifier address %w", err))
	}
	if strings.TrimSpace(o.EnrollSecret) == "" {
		// The value itself never appears in an error.
		errs = append(errs, errors.New("enroll secret is required (clearance-verifier secret create)"))
	} else if o.EnrollSecret != strings.TrimSpace(o.EnrollSecret) {
		// The agent trims it; a copy-paste newline is a mistake worth naming.
		errs = append(errs, errors.New("enroll secret has leading or trailing white space"))
	}
	if err := checkCA(o.CACert); err != nil {
		errs = append(errs, err)
	}
	switch {
	case o.OsquerySocket == "" && o.OsquerydPath == "":
		errs = append(errs, errors.New("osquery: give the extensions socket of the osqueryd the agent attaches to, or an osqueryd it runs itself (the agent runs no policy without one)"))
	case o.OsquerySocket != "" && o.OsquerydPath != "":
		errs = append(errs, errors.New("osquery: give the socket of an osqueryd to attach to or an osqueryd to run, not both"))
	}
	// launchd starts the agent in /, so a relative path would name a file
	// under / on every Mac, not where it was written.
	for _, p := range []struct{ what, path string }{{"osquery socket", o.OsquerySocket}, {"osqueryd", o.OsquerydPath}} {
		if p.path != "" && !path.IsAbs(p.path) {
			errs = append(errs, fmt.Errorf("%s %q is not an absolute path (the agent runs from /)", p.what, p.path))
		}
	}
	// Zero leaves the key out; anything else must suit the agent, and be
	// whole seconds, the integer form the profile writes.
	if o.Interval < 0 {
		errs = append(errs, fmt.Errorf("interval %s is negative", o.Interval))
	} else if o.Interval != 0 {
		if err := agentprefs.CheckInterval(o.Interval); err != nil {
			errs = append(errs, fmt.Errorf("interval %w", err))
		} else if o.Interval%time.Second != 0 {
			errs = append(errs, fmt.Errorf("interval %s is not a whole number of seconds", o.Interval))
		}
	}
	if o.RunBudget != 0 {
		if err := agentprefs.CheckRunBudget(o.RunBudget); err != nil {
			errs = append(errs, fmt.Errorf("run budget %w", err))
		} else if o.RunBudget%time.Second != 0 {
			errs = append(errs, fmt.Errorf("run budget %s is not a whole number of seconds", o.RunBudget))
		}
	}
	if err := checkIdentifier(o.Identifier); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// MinFleetInterval is the shortest Interval `profile agent` writes without
// a warning: the agent takes down to agentprefs.MinInterval, for a Mac
// under test, but a profile runs every policy that often on every Mac it
// reaches.
const MinFleetInterval = 10 * time.Second

// DefaultOsquerySocket is where osquery's macOS package has osqueryd
// listen for extensions (its --extensions_socket default).
const DefaultOsquerySocket = "/var/osquery/osquery.em"

// Agent returns the agent's device-scope profile as an XML plist.
//
// The settings travel in a com.apple.ManagedClient.preferences payload
// (Forced, mcx_preference_settings): it is the managed-preferences payload in
// Apple's own profile reference, it is what Jamf's Application & Custom
// Settings produces, and any MDM that accepts a custom .mobileconfig (Kandji,
// Intune, Mosyle, Jamf) delivers it unchanged. macOS writes the settings to
// /Library/Managed Preferences/com.clearance.agent.plist, where the agent
// reads them.
func Agent(o AgentOptions) ([]byte, error) {
	if o.Identifier == "" {
		o.Identifier = DefaultAgentIdentifier
	}
	if err := o.check(); err != nil {
		return nil, fmt.Errorf("agent profile: %w", err)
	}
	caFP := fingerprint(o.CACert)

	settings := payload{
		agentprefs.KeyVerifier:      o.VerifierAddress,
		agentprefs.KeyCAPEM:         string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: o.CACert.Raw})),
		agentprefs.KeyCAFingerprint: caFP,
		agentprefs.KeyEnrollSecret:  o.EnrollSecret,
	}
	if o.OsquerySocket != "" {
		settings[agentprefs.KeyOsquerySocket] = o.OsquerySocket
	}
	if o.OsquerydPath != "" {
		settings[agentprefs.KeyOsquerydPath] = o.OsquerydPath
	}
	interval := ""
	if o.Interval > 0 {
		// An integer is the agent's documented form: seconds.
		settings[agentprefs.KeyInterval] = int64(o.Interval / time.Second)
		interval = strconv.FormatInt(int64(o.Interval/time.Second), 10)
	}
	salient := []string{agentprefs.Domain, o.VerifierAddress, caFP, interval, "osquery=" + o.OsquerySocket + "|" + o.OsquerydPath}
	// (The osquery settings are salient: a profile that changes them is
	// another profile.)
	if o.RunBudget > 0 {
		settings[agentprefs.KeyRunBudget] = int64(o.RunBudget / time.Second)
		// Only when set, so that a profile without one keeps its UUID.
		salient = append(salient, "RunBudget="+strconv.FormatInt(int64(o.RunBudget/time.Second), 10))
	}
	if err := checkAgentSettings(settings); err != nil {
		return nil, fmt.Errorf("agent profile: %w", err)
	}

	prefs := inner(o.Identifier+".preferences", TypeManagedPreferences, "Clearance agent settings", salient...)
	prefs["PayloadContent"] = payload{
		agentprefs.Domain: payload{
			"Forced": []payload{{"mcx_preference_settings": settings}},
		},
	}

	doc := profileDoc(o.Identifier, ScopeSystem, o.Organization,
		"Clearance agent",
		"Tells the Clearance agent which verifier to report to, how to trust it, and how to enroll.",
		[]payload{prefs})
	return encode(doc)
}

// checkAgentSettings reads the settings back as the agent will, from the
// plist macOS writes them to, and checks each with the agent's own rules:
// the options were checked already, so this only fails if the two drift,
// and then no profile is better than one that unconfigures every Mac.
func checkAgentSettings(settings payload) error {
	raw, err := plist.Marshal(settings)
	if err != nil {
		return fmt.Errorf("encoding settings: %w", err)
	}
	values, unknown, err := agentprefs.ParsePlist(raw)
	if err != nil {
		return fmt.Errorf("the agent would refuse its settings: %w", err)
	}
	if len(unknown) > 0 {
		return fmt.Errorf("the agent would ignore %s", strings.Join(unknown, ", "))
	}
	names := slices.Sorted(maps.Keys(values))
	for _, name := range names {
		if err := agentprefs.Check(name, values[name]); err != nil {
			return fmt.Errorf("the agent would refuse %s: %w", name, err)
		}
	}
	return nil
}
