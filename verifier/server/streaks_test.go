package server_test

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/clearance/clearance/internal/protoagent"
	adminv1 "github.com/clearance/clearance/proto/gen/clearance/admin/v1"
	agentv1 "github.com/clearance/clearance/proto/gen/clearance/agent/v1"
)

// TestSinceWhen: each policy's result on a Mac says since when it has held
// (the first report of the unbroken run that showed it), the summary since
// when the Mac has been failing or compliant, and ExplainAccess each
// policy's; reports that change nothing, and a new stream, keep the starts.
func TestSinceWhen(t *testing.T) {
	t.Parallel()
	e := startSSO(t, true, nil)
	const fail = agentv1.PolicyStatus_POLICY_STATUS_FAIL
	a := e.enrolled(e.secret())
	st := e.connect(a)
	seq := uint64(0)
	send := func(st *protoagent.Stream, statuses map[string]agentv1.PolicyStatus) time.Time {
		t.Helper()
		return sendStatuses(t, e, a, st, &seq, statuses)
	}
	get := func() *adminv1.GetDeviceResponse {
		t.Helper()
		r, err := e.admin.GetDevice(e.ctx(), &adminv1.GetDeviceRequest{DeviceId: a.DeviceID})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	since := func(r *adminv1.GetDeviceResponse, id string) time.Time {
		for _, o := range r.GetPolicies() {
			if o.GetPolicyId() == id && o.GetSince() != nil {
				return o.GetSince().AsTime()
			}
		}
		return time.Time{}
	}
	// waitSince waits until policy id's since is want.
	waitSince := func(id string, want time.Time) *adminv1.GetDeviceResponse {
		t.Helper()
		var r *adminv1.GetDeviceResponse
		waitFor(t, id+" since "+want.String(), func() bool { r = get(); return since(r, id).Equal(want) })
		return r
	}

	t1 := send(st, map[string]agentv1.PolicyStatus{"filevault": fail})
	r := waitSince("filevault", t1)
	if got := r.GetDevice().GetSummary().GetFailingSince(); got == nil || !got.AsTime().Equal(t1) || r.GetDevice().GetSummary().GetCompliantSince() != nil {
		t.Errorf("failing since %v, compliant since %v; want %v and none", got, r.GetDevice().GetSummary().GetCompliantSince(), t1)
	}
	if !since(r, "firewall").Equal(t1) {
		t.Errorf("firewall passes since %v, want %v", since(r, "firewall"), t1)
	}

	// The same results an hour later change nothing; the fix after them
	// starts filevault's PASS, and the Mac is compliant since then.
	e.clock.Add(time.Hour)
	send(st, map[string]agentv1.PolicyStatus{"filevault": fail})
	e.clock.Add(time.Hour)
	t3 := send(st, nil)
	r = waitSince("filevault", t3)
	if !since(r, "firewall").Equal(t1) {
		t.Errorf("firewall, unchanged, passes since %v, want %v", since(r, "firewall"), t1)
	}
	if got := r.GetDevice().GetSummary().GetCompliantSince(); got == nil || !got.AsTime().Equal(t3) || r.GetDevice().GetSummary().GetFailingSince() != nil {
		t.Errorf("compliant since %v, want %v", got, t3)
	}
	list, err := e.admin.ListDevices(e.ctx(), &adminv1.ListDevicesRequest{})
	if err != nil || len(list.GetDevices()) != 1 || !list.GetDevices()[0].GetSummary().GetCompliantSince().AsTime().Equal(t3) {
		t.Errorf("ListDevices: %v %v", list, err)
	}

	// A new stream: its first report, unchanged, keeps every start; then
	// the firewall fails.
	st.Close()
	st = e.connect(a)
	e.clock.Add(time.Hour)
	send(st, nil)
	e.clock.Add(time.Hour)
	t5 := send(st, map[string]agentv1.PolicyStatus{"firewall": fail})
	r = waitSince("firewall", t5)
	if !since(r, "filevault").Equal(t3) {
		t.Errorf("after reconnecting, filevault passes since %v, want %v", since(r, "filevault"), t3)
	}
	if got := r.GetDevice().GetSummary().GetFailingSince(); got == nil || !got.AsTime().Equal(t5) {
		t.Errorf("failing since %v, want %v", got, t5)
	}

	ex, err := e.admin.ExplainAccess(e.ctx(), &adminv1.ExplainAccessRequest{DeviceId: a.DeviceID})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range ex.GetResults() {
		want := t1
		switch f.GetPolicyId() {
		case "firewall":
			want = t5
		case "filevault":
			want = t3
		}
		if f.GetSince() == nil || !f.GetSince().AsTime().Equal(want) {
			t.Errorf("ExplainAccess: %s since %v, want %v", f.GetPolicyId(), f.GetSince(), want)
		}
	}
}

// TestSinceWhenOutOfCompliance: failing_since is when the Mac last went out
// of compliance, whichever required policies failed meanwhile (an ERROR
// that turns into a FAIL, one failure handing over to another), and
// compliant_since when it came back; a policy made required counts from
// the first report after the change, never from before it.
func TestSinceWhenOutOfCompliance(t *testing.T) {
	t.Parallel()
	e := startSSO(t, true, nil)
	const (
		fail = agentv1.PolicyStatus_POLICY_STATUS_FAIL
		perr = agentv1.PolicyStatus_POLICY_STATUS_ERROR
	)
	a := e.enrolled(e.secret())
	st := e.connect(a)
	seq := uint64(0)
	send := func(statuses map[string]agentv1.PolicyStatus) time.Time {
		t.Helper()
		e.clock.Add(24 * time.Hour)
		return sendStatuses(t, e, a, st, &seq, statuses)
	}
	summary := func() *adminv1.PostureSummary {
		t.Helper()
		r, err := e.admin.GetDevice(e.ctx(), &adminv1.GetDeviceRequest{DeviceId: a.DeviceID})
		if err != nil {
			t.Fatal(err)
		}
		return r.GetDevice().GetSummary()
	}
	waitSummary := func(what string, ok func(*adminv1.PostureSummary) bool) {
		t.Helper()
		waitFor(t, what, func() bool { return ok(summary()) })
	}
	is := func(ts interface{ AsTime() time.Time }, want time.Time) bool {
		return ts != nil && ts.AsTime().Equal(want)
	}

	t1 := send(map[string]agentv1.PolicyStatus{"firewall": perr, "filevault": fail})
	waitSummary("failing since t1", func(s *adminv1.PostureSummary) bool { return is(s.GetFailingSince(), t1) })
	// The ERROR turns into a FAIL, then filevault is fixed while the
	// firewall still fails: out of compliance without a break since t1.
	send(map[string]agentv1.PolicyStatus{"firewall": fail, "filevault": fail})
	t3 := send(map[string]agentv1.PolicyStatus{"firewall": fail})
	var got *adminv1.GetDeviceResponse
	waitFor(t, "filevault passing since t3", func() bool {
		r, err := e.admin.GetDevice(e.ctx(), &adminv1.GetDeviceRequest{DeviceId: a.DeviceID})
		got = r
		for _, o := range r.GetPolicies() {
			if o.GetPolicyId() == "filevault" {
				return err == nil && is(o.GetSince(), t3)
			}
		}
		return false
	})
	if s := got.GetDevice().GetSummary(); !is(s.GetFailingSince(), t1) {
		t.Errorf("failing since %v, want t1 %v: the Mac has been out of compliance without a break", s.GetFailingSince().AsTime(), t1)
	}
	t4 := send(nil)
	waitSummary("compliant since t4", func(s *adminv1.PostureSummary) bool { return is(s.GetCompliantSince(), t4) })

	// screen-lock, advisory, fails: still compliant since t4. Then it is
	// made required: out of compliance from the first report after that,
	// and not said before that report.
	send(map[string]agentv1.PolicyStatus{"screen-lock": fail})
	b, err := os.ReadFile(e.cfg.Policies)
	if err != nil {
		t.Fatal(err)
	}
	i := strings.Index(string(b), "- id: screen-lock\n")
	j := strings.Index(string(b)[max(i, 0):], "    required: false\n")
	if i < 0 || j < 0 {
		t.Fatal("no screen-lock policy with required: false in the policy file")
	}
	required := string(b)[:i+j] + "    required: true\n" + string(b)[i+j+len("    required: false\n"):]
	if required == string(b) {
		t.Fatal("no screen-lock policy in the policy file")
	}
	if err := os.WriteFile(e.cfg.Policies, []byte(required), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := e.admin.ReloadPolicies(e.ctx(), &adminv1.ReloadPoliciesRequest{}); err != nil {
		t.Fatal(err)
	}
	// The stream gets the new set, as an agent does.
	m, err := st.Client.Recv()
	if err != nil || m.GetPolicySet() == nil {
		t.Fatalf("after the reload: %v %v", m, err)
	}
	st.PolicySet = m.GetPolicySet()
	if s := summary(); s.GetCompliant() || s.GetFailingSince() != nil || s.GetCompliantSince() != nil {
		t.Errorf("right after screen-lock became required: compliant %v, failing since %v, compliant since %v; want failing, since not known yet",
			s.GetCompliant(), s.GetFailingSince(), s.GetCompliantSince())
	}
	t6 := send(map[string]agentv1.PolicyStatus{"screen-lock": fail})
	waitSummary("failing since the first report after the change", func(s *adminv1.PostureSummary) bool { return is(s.GetFailingSince(), t6) })
}

// sendStatuses sends a's next report (*seq, incremented) on st, observed a
// second before the verifier's now: every policy passing but those
// statuses names. It returns the report's observed_at once acked.
func sendStatuses(t *testing.T, e *ssoEnv, a *protoagent.Agent, st *protoagent.Stream, seq *uint64, statuses map[string]agentv1.PolicyStatus) time.Time {
	t.Helper()
	*seq++
	at := e.clock.Now().Add(-time.Second).Truncate(time.Millisecond)
	r := a.Report(st.PolicySet, *seq, at, nil, agentv1.PolicyStatus_POLICY_STATUS_PASS)
	for _, res := range r.Results {
		if s, ok := statuses[res.PolicyId]; ok {
			res.Status = s
		}
	}
	if ack, err := st.Exchange(protoagent.Sign(a.Key, r)); err != nil || ack.GetAck() == nil {
		t.Fatalf("report %d not acked: %v %v", *seq, ack, err)
	}
	return at
}
