package server_test

import (
	"net/http"
	"strings"
	"testing"

	agentv1 "github.com/clearance/clearance/proto/gen/clearance/agent/v1"
	"github.com/clearance/clearance/verifier/config"
)

// TestPresenceReplayWritesNothing: with the agent's proof, a request's ID
// is spent by the write that stores its challenge. A replay of the request
// is refused as one, from this browser or another, sets no cookie, sends
// nobody to the agent and writes nothing at all; the first sign-in still
// completes. Signed requests and unsigned ones alike.
func TestPresenceReplayWritesNothing(t *testing.T) {
	t.Parallel()
	for _, signed := range []bool{true, false} {
		name := "unsigned"
		if signed {
			name = "signed"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			e := startSSO(t, signed, func(c *config.Config) { c.BrowserBinding = config.BindingAgent })
			a, _ := e.device(t, agentv1.PolicyStatus_POLICY_STATUS_PASS, nil)
			c := e.jarBrowser(t)
			r := e.sp.NewRequest(testUser)
			challenge := e.toAgent(t, c, r)

			before := e.dump()
			for _, b := range []*http.Client{c, e.browser(nil)} {
				p := e.redirect(t, b, r)
				refusedWith(t, p, http.StatusBadRequest, "replayed_request")
				if p.location != "" || len(p.header.Values("Set-Cookie")) != 0 {
					t.Errorf("replay answered with Location %q, cookies %q", p.location, p.header.Values("Set-Cookie"))
				}
			}
			if after := e.dump(); after != before {
				t.Errorf("a replayed request changed the store:\n%s\n--- after ---\n%s", before, after)
			}

			// The sign-in the request started is untouched by its replays.
			e.allowed(t, e.back(t, c, e.statement(t, a.Key, a.DeviceID, challenge, e.clock.Now())), r)
			if ds := e.decisions(t); len(ds) != 1 || !ds[0].Allow || ds[0].RequestID != r.ID {
				t.Errorf("decisions %+v, want the one allowed sign-in", ds)
			}
		})
	}
}

// TestReplaysLoggedSampled: a signed request's URL and a spent proof's sit
// in browser histories and proxy logs, and whoever holds them can send
// them again as often as the rate limit lets them. Each replay is refused
// and counted, and logged at warn once per interval, not once each.
func TestReplaysLoggedSampled(t *testing.T) {
	t.Parallel()
	e := startSSO(t, true, func(c *config.Config) { c.BrowserBinding = config.BindingAgent })
	a, _ := e.device(t, agentv1.PolicyStatus_POLICY_STATUS_PASS, nil)
	c := e.jarBrowser(t)
	r := e.sp.NewRequest(testUser)
	challenge := e.toAgent(t, c, r)
	q := e.statement(t, a.Key, a.DeviceID, challenge, e.clock.Now())
	e.allowed(t, e.back(t, c, q), r)

	const n = 10
	for range n {
		refusedWith(t, e.redirect(t, e.browser(nil), r), http.StatusBadRequest, "replayed_request")
		refusedWith(t, e.back(t, e.browser(nil), q), http.StatusBadRequest, "presence_replayed")
	}
	logs := e.logs.String()
	for _, reason := range []string{"replayed_request", "presence_replayed"} {
		warned := 0
		for _, line := range strings.Split(logs, "\n") {
			if strings.Contains(line, "msg=sso_request_refused") && strings.Contains(line, "reason="+reason) && strings.Contains(line, "level=WARN") {
				warned++
			}
		}
		if warned != 1 {
			t.Errorf("%d warning lines for %d refusals with reason %s, want 1", warned, n, reason)
		}
	}
}
