package profile

import (
	"errors"
	"fmt"
	"strings"

	"github.com/clearance/clearance/pkg/agentprefs"
)

// TypeServiceManagement is the managed login items payload (macOS 13 and
// later): launchd items its rules match are allowed in the background, and
// the person at the Mac cannot switch them off in System Settings.
const TypeServiceManagement = "com.apple.servicemanagement"

// DefaultLoginItemIdentifier is the login-item profile's PayloadIdentifier
// when none is given.
const DefaultLoginItemIdentifier = "com.clearance.agent.login-item"

// LoginItemOptions are the inputs of the login-item profile.
type LoginItemOptions struct {
	// Organization is shown as the profile's publisher.
	Organization string
	// Identifier is the PayloadIdentifier (DefaultLoginItemIdentifier).
	Identifier string
	// OsqueryLabel is the launchd label of the daemon that runs the
	// osqueryd the agent checks the Mac through (DefaultOsqueryLabel for
	// osquery's own package, OrbitLabel for Fleet's orbit): it gets a rule
	// of its own, since with it switched off every policy is ERROR and
	// every sign-in from the Mac is denied. Empty: no rule for it (an
	// agent that runs osqueryd itself, --osqueryd).
	OsqueryLabel string
}

// DefaultOsqueryLabel is the launchd label of osquery's own macOS
// package's daemon (io.osquery.agent.plist, which osqueryctl start
// installs in /Library/LaunchDaemons).
const DefaultOsqueryLabel = "io.osquery.agent"

// OrbitLabel is the launchd label of Fleet's orbit, which runs osqueryd
// for a Mac enrolled in Fleet.
const OrbitLabel = "com.fleetdm.orbit"

// LoginItem returns the device-scope profile that makes the agent's daemon
// a managed login item, as an XML plist.
//
// From macOS 13 a launch daemon is a background item that a person at the
// Mac with an administrator's password may switch off in System Settings
// (Login Items, "Allow in the Background"). One rule of type Label, the
// daemon's launchd label, allows it, marks it as managed by the
// organization and takes the switch away; it matches no other item. A
// second rule does the same for osqueryd's daemon when o.OsqueryLabel
// names it. macOS accepts this payload only from an MDM whose enrollment
// the user approved (or an automated device enrollment), never from a
// profile installed by hand, so it travels in a profile of its own: the
// agent's settings never depend on it.
func LoginItem(o LoginItemOptions) ([]byte, error) {
	if o.Identifier == "" {
		o.Identifier = DefaultLoginItemIdentifier
	}
	var errs []error
	if strings.TrimSpace(o.Organization) == "" {
		errs = append(errs, errors.New("organization is required (shown to users as the profile's publisher)"))
	}
	if err := checkIdentifier(o.Identifier); err != nil {
		errs = append(errs, err)
	}
	if o.OsqueryLabel != "" {
		if err := checkIdentifier(o.OsqueryLabel); err != nil {
			errs = append(errs, fmt.Errorf("osquery's label: %w", err))
		} else if o.OsqueryLabel == agentprefs.Label {
			errs = append(errs, fmt.Errorf("osquery's label %q is the agent's own", o.OsqueryLabel))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("login-item profile: %w", err)
	}
	item := inner(o.Identifier+".servicemanagement", TypeServiceManagement, "Clearance agent in the background", agentprefs.Label)
	item["Rules"] = []payload{{
		"Comment":   "clearance-agent, the daemon that checks this Mac before sign-in",
		"RuleType":  "Label",
		"RuleValue": agentprefs.Label,
	}}
	if o.OsqueryLabel != "" {
		item["Rules"] = append(item["Rules"].([]payload), payload{
			"Comment":   "osqueryd, which clearance-agent checks this Mac through",
			"RuleType":  "Label",
			"RuleValue": o.OsqueryLabel,
		})
	}
	doc := profileDoc(o.Identifier, ScopeSystem, o.Organization,
		"Clearance agent: keep running",
		"Keeps the Clearance agent allowed in the background, so this Mac can be checked when you sign in.",
		[]payload{item})
	return encode(doc)
}
