package oktaapi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"time"
)

// State is whether the credential can read a capability.
type State string

// States of a capability.
const (
	StateOn    State = "on"    // read succeeded
	StateOff   State = "off"   // Okta refused it (403, or the scope is not granted)
	StateError State = "error" // something else failed: the credential, the network, Okta
)

// Capability is one thing the verifier reads from Okta.
type Capability struct {
	Name  string // users, groups, logs, apps
	State State
	// Scope is the OAuth scope a service app needs; Role the Okta admin
	// role (the API token's creator's, or the service app's) that allows it.
	Scope string
	Role  string
	// Used is what the verifier does with it.
	Used string
	// Detail is why it is off or in error (Okta's error, without secrets).
	Detail string
	// Unauthorized: Okta refused the credential itself (401, invalid_client).
	Unauthorized bool
}

// capabilities are probed in this order.
var capabilities = []struct {
	name, scope, role, used, path string
	query                         url.Values
}{
	{"users", ScopeUsers, "Read-only Administrator", "user sync", "/api/v1/users", url.Values{"limit": {"1"}}},
	{"groups", ScopeGroups, "Read-only Administrator", "group sync and group policies", "/api/v1/groups", url.Values{"limit": {"1"}}},
	{"logs", ScopeLogs, "Read-only Administrator (System Log)", "sign-in correlation", "/api/v1/logs", nil},
	{"apps", ScopeApps, "Read-only Administrator", "optional; nothing uses it yet", "/api/v1/apps", url.Values{"limit": {"1"}}},
}

// Status probes each capability with one small read. A service app asks
// for each scope on its own, so that one scope it was not granted does not
// hide the others.
func (c *Client) Status(ctx context.Context) []Capability {
	out := make([]Capability, 0, len(capabilities))
	for _, cp := range capabilities {
		cap := Capability{Name: cp.name, Scope: cp.scope, Role: cp.role, Used: cp.used}
		auth := c.Auth
		if s, ok := c.Auth.(Scoper); ok {
			auth = s.WithScopes(cp.scope)
		}
		probe := &Client{Org: c.Org, Auth: auth, HTTP: c.HTTP, Log: c.Log, Now: c.Now, Sleep: c.Sleep, Jitter: c.Jitter}
		q := cp.query
		if cp.name == "logs" {
			// A bounded query (until set) returns no polling link.
			now := c.now()
			q = url.Values{"limit": {"1"}, "since": {oktaTime(now.Add(-time.Hour))}, "until": {oktaTime(now)}}
		}
		_, err := probe.Get(ctx, c.URL(cp.path, q))
		cap.State, cap.Detail = classify(err)
		cap.Unauthorized = IsUnauthorized(err)
		out = append(out, cap)
	}
	return out
}

func classify(err error) (State, string) {
	if err == nil {
		return StateOn, ""
	}
	var e *Error
	if errors.As(err, &e) {
		switch {
		case e.Status == 403:
			return StateOff, e.Error()
		case e.OAuth == "invalid_scope":
			return StateOff, e.Error()
		}
	}
	return StateError, err.Error()
}

// WriteStatus prints caps as a table a person reads.
func WriteStatus(w io.Writer, org string, method string, caps []Capability) error {
	if _, err := fmt.Fprintf(w, "Okta org: %s\nCredential: %s\n\n", org, method); err != nil {
		return err
	}
	fmt.Fprintf(w, "%-8s %-6s %-17s %-38s %s\n", "READS", "STATE", "SCOPE", "ADMIN ROLE", "USED FOR")
	for _, c := range caps {
		fmt.Fprintf(w, "%-8s %-6s %-17s %-38s %s\n", c.Name, c.State, c.Scope, c.Role, c.Used)
	}
	var notes []Capability
	for _, c := range caps {
		if c.State != StateOn {
			notes = append(notes, c)
		}
	}
	if len(notes) > 0 {
		fmt.Fprintln(w)
	}
	refused := false
	for _, c := range notes {
		fmt.Fprintf(w, "%s: %s\n", c.Name, c.Detail)
		refused = refused || c.Unauthorized
	}
	if refused {
		fmt.Fprintln(w, "\nOkta refused the credential itself: a revoked token, one unused for 30 days (Okta expires it),\n"+
			"one from another org, or a service app whose public key or client ID does not match.")
	}
	_, err := fmt.Fprintln(w)
	return err
}
