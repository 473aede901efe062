package server_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/clearance/clearance/internal/protoagent"
	agentv1 "github.com/clearance/clearance/proto/gen/clearance/agent/v1"
	"github.com/clearance/clearance/verifier/config"
	"github.com/clearance/clearance/verifier/signin"
)

// TestHeldOnlyUnderTheKeyThatProvedIt: a failing Mac's sign-in, proven by
// its key, waits on a live check the old key's agent never answers; the
// Mac changes keys meanwhile, and only then is the sign-in denied. It is
// not held under the key that is gone (or, held before the change, is
// forgotten with it): Check again from that browser does not complete it
// from the new key's passing posture.
func TestHeldOnlyUnderTheKeyThatProvedIt(t *testing.T) {
	t.Parallel()
	e := startAgentBinding(t, func(c *config.Config) {
		c.LiveCheckAfter = time.Second
		c.LiveCheckTimeout = 3 * time.Second
	})
	secret := e.secret()
	a, _ := e.device(t, agentv1.PolicyStatus_POLICY_STATUS_FAIL, nil) // does not answer CheckNow
	e.clock.Add(2 * time.Minute)                                      // stale enough for a live check

	c := e.jarBrowser(t)
	r := e.sp.NewRequest(testUser)
	ch := e.toAgent(t, c, r)
	q := e.statement(t, a.Key, a.DeviceID, ch, e.clock.Now())
	done := make(chan page, 1)
	go func() { done <- e.back(t, c, q) }()
	time.Sleep(500 * time.Millisecond) // most likely while the live check waits

	again, err := protoagent.New(e.addr, e.rootPEM, a.Facts.GetHardwareUuid())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := again.EnrollRotating(e.ctx(), secret, a.Key); err != nil {
		t.Fatal(err)
	}
	p := <-done
	if p.status != http.StatusForbidden {
		t.Fatalf("the failing Mac's sign-in: %d, want 403\n%s", p.status, p.body)
	}
	if !strings.Contains(p.body, `name="token"`) {
		return // not held: nothing to press
	}
	token := retryToken(t, p)

	nst := e.connect(again)
	defer nst.Close()
	if m, err := nst.Exchange(protoagent.Sign(again.Key, again.Report(nst.PolicySet, 1, e.clock.Now(), nil, agentv1.PolicyStatus_POLICY_STATUS_PASS))); err != nil || m.GetAck() == nil {
		t.Fatalf("the new key's report: %v %v", m, err)
	}
	go answerChecks(nst, func(seq uint64, nonce []byte) *agentv1.SignedReport {
		return protoagent.Sign(again.Key, again.Report(nst.PolicySet, seq, e.clock.Now(), nonce, agentv1.PolicyStatus_POLICY_STATUS_PASS))
	})
	res := e.post(t, c, signin.PathRetry, url.Values{"token": {token}})
	if res.status == http.StatusOK || strings.Contains(res.body, "SAMLResponse") {
		t.Fatalf("Check again after the key changed: %d, a sign-in the replaced key proved completed\n%s", res.status, res.body)
	}
}
