package server_test

import (
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clearance/clearance/internal/protoagent"
	agentv1 "github.com/clearance/clearance/proto/gen/clearance/agent/v1"
	"github.com/clearance/clearance/verifier/signin"
)

// mac is an agent whose results can be set per policy while it runs: its
// first report, and its answer to every live check, have these statuses
// (PASS for any policy not named).
type mac struct {
	mu       sync.Mutex
	statuses map[string]agentv1.PolicyStatus
}

func (m *mac) set(statuses map[string]agentv1.PolicyStatus) {
	m.mu.Lock()
	m.statuses = statuses
	m.mu.Unlock()
}

func (m *mac) report(a *protoagent.Agent, ps *agentv1.PolicySet, seq uint64, nonce []byte) *agentv1.SignedReport {
	m.mu.Lock()
	defer m.mu.Unlock()
	r := a.Report(ps, seq, time.Now(), nonce, agentv1.PolicyStatus_POLICY_STATUS_PASS)
	for _, res := range r.Results {
		if st, ok := m.statuses[res.PolicyId]; ok {
			res.Status = st
			if st == agentv1.PolicyStatus_POLICY_STATUS_ERROR {
				res.Message, res.Rows = "osquery unavailable: dial unix /var/osquery/osquery.em: connect: no such file or directory", 0
			}
		}
	}
	return protoagent.Sign(a.Key, r)
}

// start enrolls and connects the Mac and stores its first report.
func (m *mac) start(t *testing.T, e *ssoEnv) (*protoagent.Agent, *protoagent.Stream) {
	t.Helper()
	a := e.enrolled(e.secret())
	st := e.connect(a)
	if ack, err := st.Exchange(m.report(a, st.PolicySet, 1, nil)); err != nil || ack.GetAck() == nil {
		t.Fatalf("report not acked: %v %v", ack, err)
	}
	go answerChecks(st, func(seq uint64, nonce []byte) *agentv1.SignedReport { return m.report(a, st.PolicySet, seq, nonce) })
	return a, st
}

// The remediation page through the real flow: fixes for what fails, then
// after a partial fix what now passes above what still fails; a Mac whose
// checks couldn't run is told so once, with no policy's steps and no
// osquery words; and "Last checked" is always the last report's time.
func TestRemediationPages(t *testing.T) {
	t.Parallel()
	e := startSSO(t, false, nil)
	const (
		fail = agentv1.PolicyStatus_POLICY_STATUS_FAIL
		perr = agentv1.PolicyStatus_POLICY_STATUS_ERROR
	)
	m := &mac{statuses: map[string]agentv1.PolicyStatus{"filevault": fail, "firewall": fail}}
	a, _ := m.start(t, e)
	c := e.browser(deviceCert(a))
	r := e.sp.NewRequest(testUser)

	// 1. Two policies fail: both, with their steps.
	p := e.redirect(t, c, r)
	noResponse(t, p)
	p.has(t, "Fix these 2 items", "FileVault disk encryption is on", "Firewall is on", `<ol class="fix-steps">`, "<strong>Last checked:</strong>", `<time datetime="`)
	lacks(t, p, "Now passing", "disk_encryption", "global_state", "osquery", "Last checked:</strong> not yet")
	token := hiddenToken(t, p.body)

	// 2. The firewall is turned on: it now passes, above what still fails.
	m.set(map[string]agentv1.PolicyStatus{"filevault": fail})
	p = e.post(t, c, signin.PathRetry, url.Values{"token": {token}})
	noResponse(t, p)
	p.has(t, "Now passing", "Fix this item", "Good progress")
	if i, j := strings.Index(p.body, "Now passing"), strings.Index(p.body, "Fix this item"); i > j {
		t.Error("Now passing is below what still needs fixing")
	}
	passing := section(t, p.body, `class="passing"`)
	if !strings.Contains(passing, "Firewall is on") || strings.Contains(passing, "FileVault") {
		t.Errorf("Now passing section:\n%s", passing)
	}

	// 3. Still only FileVault: the firewall is still listed as passing
	// since this sign-in was first stopped.
	p = e.post(t, c, signin.PathRetry, url.Values{"token": {token}})
	if !strings.Contains(section(t, p.body, `class="passing"`), "Firewall is on") {
		t.Errorf("a second Check again forgot the fix:\n%s", p.body)
	}

	// 4. osquery goes down: every check is an ERROR. One item says the Mac
	// couldn't be checked, with no policy's steps (no Recovery for SIP).
	m.set(map[string]agentv1.PolicyStatus{"filevault": perr, "firewall": perr, "sip": perr, "gatekeeper": perr, "screen-lock": perr, "macos-version": perr})
	p = e.post(t, c, signin.PathRetry, url.Values{"token": {token}})
	noResponse(t, p)
	p.has(t, "Clearance couldn&#39;t check this Mac", "restart the Mac", "policy_error", "Check again", "<strong>Last checked:</strong>", `<time datetime="`)
	lacks(t, p, "How to fix it", "Recovery", "Fix th", "osquery", "Now passing")

	// 5. All fixed: the held sign-in completes.
	m.set(nil)
	e.allowed(t, e.post(t, c, signin.PathRetry, url.Values{"token": {token}}), r)

	// 6. A Mac whose agent went quiet: its stale report still says when it
	// last checked in, never "not yet".
	b, st := (&mac{}).start(t, e)
	st.Close()
	waitFor(t, "the second Mac's agent to be gone", func() bool { return !e.srv.Hub.Connected(b.DeviceID) })
	e.clock.Add(10 * time.Minute)
	p = e.redirect(t, e.browser(deviceCert(b)), e.sp.NewRequest(testUser))
	noResponse(t, p)
	p.has(t, "stale_posture", "Last checked:</strong> ")
	if !strings.Contains(p.body, "9 minutes ago") && !strings.Contains(p.body, "10 minutes ago") {
		t.Errorf("stale Mac's page doesn't say when it last checked:\n%s", p.body)
	}
	lacks(t, p, "Last checked:</strong> not yet")
}

// lacks fails if p contains any of subs.
func lacks(t *testing.T, p page, subs ...string) {
	t.Helper()
	for _, s := range subs {
		if strings.Contains(p.body, s) {
			t.Errorf("page (status %d) has %q:\n%s", p.status, s, p.body)
		}
	}
}

// section returns the <section> of body whose tag has attr, or "".
func section(t *testing.T, body, attr string) string {
	t.Helper()
	i := strings.Index(body, "<section "+attr)
	if i < 0 {
		return ""
	}
	j := strings.Index(body[i:], "</section>")
	if j < 0 {
		t.Fatalf("unclosed section in:\n%s", body)
	}
	return body[i : i+j]
}
