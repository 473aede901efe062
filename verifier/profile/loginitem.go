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
}

// LoginItem returns the device-scope profile that makes the agent's daemon
// a managed login item, as an XML plist.
//
// From macOS 13 a launch daemon is a background item that a person at the
// Mac with an administrator's password may switch off in System Settings
// (Login Items, "Allow in the Background"). One rule of type Label, the
// daemon's launchd label, allows it, marks it as managed by the
// organization and takes the switch away; it matches no other item. macOS accepts this payload only from an MDM whose
// enrollment the user approved (or an automated device enrollment), never
// from a profile installed by hand, so it travels in a profile of its own:
// the agent's settings never depend on it.
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
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("login-item profile: %w", err)
	}
	item := inner(o.Identifier+".servicemanagement", TypeServiceManagement, "Clearance agent in the background", agentprefs.Label)
	item["Rules"] = []payload{{
		"Comment":   "clearance-agent, the daemon that checks this Mac before sign-in",
		"RuleType":  "Label",
		"RuleValue": agentprefs.Label,
	}}
	doc := profileDoc(o.Identifier, ScopeSystem, o.Organization,
		"Clearance agent: keep running",
		"Keeps the Clearance agent allowed in the background, so this Mac can be checked when you sign in.",
		[]payload{item})
	return encode(doc)
}
