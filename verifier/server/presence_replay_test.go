package server_test

import (
	"net/http"
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
