package profile

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// AgentDomain is the agent's preference domain; macOS writes the managed
// preferences to /Library/Managed Preferences/<AgentDomain>.plist. It must
// equal the agent's config.Domain (a test checks it; this package cannot
// import the agent's).
const AgentDomain = "com.clearance.agent"

// DefaultAgentIdentifier is the agent profile's PayloadIdentifier when none
// is given.
const DefaultAgentIdentifier = "com.clearance.agent.profile"

// The agent's plist keys (agent/config Key*) this profile writes. Only keys
// the agent knows may appear: it refuses a managed plist with unknown keys.
const (
	agentKeyVerifier      = "VerifierAddress"
	agentKeyCAPEM         = "CAPEM"
	agentKeyCAFingerprint = "CAFingerprint"
	agentKeyEnrollSecret  = "EnrollSecret"
	agentKeyInterval      = "Interval"
)

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
	// Identifier is the PayloadIdentifier (DefaultAgentIdentifier).
	Identifier string
}

func (o *AgentOptions) check() error {
	var errs []error
	if strings.TrimSpace(o.Organization) == "" {
		errs = append(errs, errors.New("organization is required (shown to users as the profile's publisher)"))
	}
	if err := checkHostPort("verifier address", o.VerifierAddress); err != nil {
		errs = append(errs, err)
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
	case o.Interval < 0:
		errs = append(errs, fmt.Errorf("interval %s is negative", o.Interval))
	case o.Interval > 0 && o.Interval < time.Second:
		errs = append(errs, fmt.Errorf("interval %s is shorter than the agent's minimum of 1s", o.Interval))
	case o.Interval%time.Second != 0:
		errs = append(errs, fmt.Errorf("interval %s is not a whole number of seconds", o.Interval))
	}
	if err := checkIdentifier(o.Identifier); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

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
		agentKeyVerifier:      o.VerifierAddress,
		agentKeyCAPEM:         string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: o.CACert.Raw})),
		agentKeyCAFingerprint: caFP,
		agentKeyEnrollSecret:  o.EnrollSecret,
	}
	interval := ""
	if o.Interval > 0 {
		// An integer is the agent's documented form: seconds.
		settings[agentKeyInterval] = int64(o.Interval / time.Second)
		interval = strconv.FormatInt(int64(o.Interval/time.Second), 10)
	}

	prefs := inner(o.Identifier+".preferences", TypeManagedPreferences, "Clearance agent settings",
		AgentDomain, o.VerifierAddress, caFP, interval)
	prefs["PayloadContent"] = payload{
		AgentDomain: payload{
			"Forced": []payload{{"mcx_preference_settings": settings}},
		},
	}

	doc := profileDoc(o.Identifier, ScopeSystem, o.Organization,
		"Clearance agent",
		"Tells the Clearance agent which verifier to report to, how to trust it, and how to enroll.",
		[]payload{prefs})
	return encode(doc)
}
