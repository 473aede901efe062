package server_test

import (
	"context"
	"crypto/x509"
	"os"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/clearance/clearance/internal/protoagent"
	"github.com/clearance/clearance/internal/testkit"
	adminv1 "github.com/clearance/clearance/proto/gen/clearance/admin/v1"
	agentv1 "github.com/clearance/clearance/proto/gen/clearance/agent/v1"
	"github.com/clearance/clearance/verifier/enroll"
	"github.com/clearance/clearance/verifier/storage"
)

// answer runs an agent loop on st: every CheckNow gets a report with its nonce.
func answer(a *protoagent.Agent, st *protoagent.Stream, first uint64, status agentv1.PolicyStatus, msgs chan<- *agentv1.VerifierMessage) {
	seq := first
	for {
		m, err := st.Client.Recv()
		if err != nil {
			close(msgs)
			return
		}
		msgs <- m
		if cn := m.GetCheckNow(); cn != nil {
			seq++
			_ = st.Send(protoagent.Sign(a.Key, a.Report(st.PolicySet, seq, time.Now(), cn.GetNonce(), status)))
		}
	}
}

func TestRequestCheck(t *testing.T) {
	t.Parallel()
	h := start(t)
	a := h.enrolled(h.secret())

	// Offline: a clear FailedPrecondition.
	_, err := h.admin.RequestCheck(h.ctx(), &adminv1.RequestCheckRequest{DeviceId: a.DeviceID})
	checkStatus(t, err, codes.FailedPrecondition, "is not connected")
	_, err = h.admin.RequestCheck(h.ctx(), &adminv1.RequestCheckRequest{DeviceId: "nope"})
	checkStatus(t, err, codes.NotFound, `no enrolled device's id is or starts with "nope"`)
	_, err = h.admin.RequestCheck(h.ctx(), &adminv1.RequestCheckRequest{DeviceId: a.DeviceID, Timeout: durationpb.New(time.Hour)})
	checkStatus(t, err, codes.InvalidArgument, "timeout")

	st := h.connect(a)
	msgs := make(chan *agentv1.VerifierMessage, 16)
	go answer(a, st, 0, agentv1.PolicyStatus_POLICY_STATUS_FAIL, msgs)

	resp, err := h.admin.RequestCheck(h.ctx(), &adminv1.RequestCheckRequest{DeviceId: a.DeviceID})
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetReport().GetReport().GetSeq() != 1 || len(resp.GetReport().GetReport().GetNonce()) == 0 {
		t.Fatalf("report: %v", resp.GetReport())
	}
	if len(resp.GetPolicies()) == 0 || resp.GetPolicies()[0].GetStatus() != agentv1.PolicyStatus_POLICY_STATUS_FAIL {
		t.Fatalf("policies: %v", resp.GetPolicies())
	}
	// The answer was stored: GetDevice shows it.
	got, err := h.admin.GetDevice(h.ctx(), &adminv1.GetDeviceRequest{DeviceId: a.DeviceID})
	if err != nil || got.GetDevice().GetLastSeq() != 1 || got.GetDevice().GetSummary().GetCompliant() || !got.GetDevice().GetConnected() {
		t.Fatalf("GetDevice: %v %v", got, err)
	}
}

func TestRequestCheckSilentAgentTimesOut(t *testing.T) {
	t.Parallel()
	h := start(t)
	a := h.enrolled(h.secret())
	h.connect(a) // connected, and silent
	_, err := h.admin.RequestCheck(h.ctx(), &adminv1.RequestCheckRequest{DeviceId: a.DeviceID, Timeout: durationpb.New(200 * time.Millisecond)})
	checkStatus(t, err, codes.DeadlineExceeded, "did not send a fresh report within 200ms")
}

func TestReenrollKeepsIDAndHistory(t *testing.T) {
	t.Parallel()
	h := start(t)
	secret := h.secret()
	a := h.enrolled(secret)
	st, err := a.Connect(h.ctx())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Exchange(protoagent.Sign(a.Key, a.Report(st.PolicySet, 9, h.clock.Now(), nil, pass))); err != nil {
		t.Fatal(err)
	}
	st.Close()

	// Same hardware, new key, proven by the old one (a key rotation).
	again, err := protoagent.New(h.addr, h.rootPEM, a.Facts.GetHardwareUuid())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := again.EnrollRotating(h.ctx(), secret, a.Key); err != nil {
		t.Fatal(err)
	}
	if again.DeviceID != a.DeviceID {
		t.Fatalf("re-enrollment got a new id %s, want %s", again.DeviceID, a.DeviceID)
	}
	got, err := h.admin.GetDevice(h.ctx(), &adminv1.GetDeviceRequest{DeviceId: a.DeviceID})
	if err != nil {
		t.Fatal(err)
	}
	if got.GetDevice().GetEnrollments() != 2 || got.GetLatestReport().GetReport().GetSeq() != 9 {
		t.Fatalf("after re-enroll: %v", got)
	}
	// The old key's certificate no longer works; the new one starts its seq over.
	_, err = a.Connect(h.ctx())
	checkStatus(t, err, codes.PermissionDenied, "no longer uses")
	st, err = again.Connect(h.ctx())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if m, err := st.Exchange(protoagent.Sign(again.Key, again.Report(st.PolicySet, 1, h.clock.Now(), nil, pass))); err != nil || m.GetAck().GetSeq() != 1 {
		t.Fatalf("report after re-enroll: %v %v", m, err)
	}
	// The re-enrollment is in the audit log.
	events, err := h.srv.Store.ListAudit(context.Background(), storage.AuditFilter{DeviceID: a.DeviceID, Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	var actions []string
	for _, e := range events {
		actions = append(actions, e.Action)
	}
	if !strings.Contains(strings.Join(actions, ","), "device.reenroll") {
		t.Fatalf("audit: %v", actions)
	}
}

// TestReenrollEndsOldKeyStream: a stream opened with the old key ends the
// moment the device enrolls again, with a status that says why; a report
// it had queued is refused, not stored, even with a seq at the top; the new
// key's stream reports from seq 1 and is not ended by the re-enrollment.
func TestReenrollEndsOldKeyStream(t *testing.T) {
	t.Parallel()
	h := start(t)
	secret := h.secret()
	a := h.enrolled(secret)
	old := h.connect(a)
	if m, err := old.Exchange(protoagent.Sign(a.Key, a.Report(old.PolicySet, 1, h.clock.Now(), nil, pass))); err != nil || m.GetAck().GetSeq() != 1 {
		t.Fatalf("first report: %v %v", m, err)
	}

	again, err := protoagent.New(h.addr, h.rootPEM, a.Facts.GetHardwareUuid())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := again.EnrollRotating(h.ctx(), secret, a.Key); err != nil {
		t.Fatal(err)
	}
	checkStatus(t, streamEnd(t, old, "the re-enrollment ending the old key's stream"), codes.PermissionDenied, "enrolled again with another key")
	// Whatever the old stream still sends is not stored.
	_ = old.Send(protoagent.Sign(a.Key, a.Report(old.PolicySet, 1<<53, h.clock.Now(), nil, pass)))

	st := h.connect(again)
	if m, err := st.Exchange(protoagent.Sign(again.Key, again.Report(st.PolicySet, 1, h.clock.Now(), nil, pass))); err != nil || m.GetAck().GetSeq() != 1 {
		t.Fatalf("the new key's first report: %v %v", m, err)
	}
	// A second re-enrollment with the same key (the agent retried) leaves
	// its stream alone.
	if _, err := again.Enroll(h.ctx(), secret); err != nil {
		t.Fatal(err)
	}
	if m, err := st.Exchange(protoagent.Sign(again.Key, again.Report(st.PolicySet, 2, h.clock.Now(), nil, pass))); err != nil || m.GetAck().GetSeq() != 2 {
		t.Fatalf("the new key's stream after enrolling the same key again: %v %v", m, err)
	}
	got, err := h.admin.GetDevice(h.ctx(), &adminv1.GetDeviceRequest{DeviceId: a.DeviceID})
	if err != nil || got.GetDevice().GetLastSeq() != 2 {
		t.Fatalf("device after re-enrollment: %v %v; want last seq 2", got.GetDevice(), err)
	}
	if !strings.Contains(h.logs.String(), "reason=key_replaced") {
		t.Errorf("the log does not say why the old stream ended:\n%s", h.logs.String())
	}
}

func TestRevokeEndsLiveStream(t *testing.T) {
	t.Parallel()
	h := start(t)
	a := h.enrolled(h.secret())
	st := h.connect(a)
	if _, err := h.admin.RevokeDevice(h.ctx(), &adminv1.RevokeDeviceRequest{DeviceId: a.DeviceID, Reason: "stolen"}); err != nil {
		t.Fatal(err)
	}
	_, err := st.Client.Recv()
	checkStatus(t, err, codes.PermissionDenied, "was revoked")
	// The replica that revoked it says why it ended the stream, as the
	// others do (operations.md).
	h.logs.hasLine(t, "stream ended", "reason=device_revoked", a.DeviceID)
	got, err := h.admin.GetDevice(h.ctx(), &adminv1.GetDeviceRequest{DeviceId: a.DeviceID})
	if err != nil || got.GetDevice().GetStatus() != adminv1.DeviceStatus_DEVICE_STATUS_REVOKED || got.GetDevice().GetRevokedReason() != "stolen" {
		t.Fatalf("after revoke: %v %v", got, err)
	}
}

func TestListDevicesPages(t *testing.T) {
	t.Parallel()
	h := start(t)
	secret := h.secret()
	want := map[string]bool{}
	for range 5 {
		want[h.enrolled(secret).DeviceID] = true
	}
	seen := map[string]bool{}
	tok := ""
	pages := 0
	for {
		resp, err := h.admin.ListDevices(h.ctx(), &adminv1.ListDevicesRequest{PageSize: 2, PageToken: tok})
		if err != nil {
			t.Fatal(err)
		}
		pages++
		for _, d := range resp.GetDevices() {
			if seen[d.GetDeviceId()] {
				t.Fatalf("device %s on two pages", d.GetDeviceId())
			}
			seen[d.GetDeviceId()] = true
			if d.GetSummary().GetCompliant() || d.GetSummary().GetMissing() == 0 {
				t.Fatalf("a device without reports must not be compliant: %v", d.GetSummary())
			}
		}
		if tok = resp.GetNextPageToken(); tok == "" {
			break
		}
	}
	if pages != 3 || len(seen) != len(want) {
		t.Fatalf("pages=%d seen=%d", pages, len(seen))
	}
	_, err := h.admin.ListDevices(h.ctx(), &adminv1.ListDevicesRequest{PageToken: "!!"})
	checkStatus(t, err, codes.InvalidArgument, "page_token")
}

func TestReloadPushesPolicySet(t *testing.T) {
	t.Parallel()
	h := start(t)
	a := h.enrolled(h.secret())
	st := h.connect(a)
	old := st.PolicySet.GetVersion()
	orig, err := os.ReadFile(h.cfg.Policies)
	if err != nil {
		t.Fatal(err)
	}

	// A broken file is refused with its line, and the old set stays.
	if err := os.WriteFile(h.cfg.Policies, []byte("policies:\n  - id: x\n    nmae: y\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = h.admin.ReloadPolicies(h.ctx(), &adminv1.ReloadPoliciesRequest{})
	checkStatus(t, err, codes.FailedPrecondition, `policies.yaml:3:5`)
	cur, err := h.admin.ListPolicies(h.ctx(), &adminv1.ListPoliciesRequest{})
	if err != nil || cur.GetPolicySet().GetVersion() != old {
		t.Fatalf("policy set changed after a bad reload: %v %v", cur, err)
	}

	// A good change reaches the connected agent as a new PolicySet.
	changed := strings.Replace(string(orig), "name: Firewall is on", "name: Application firewall is on", 1)
	if changed == string(orig) {
		t.Fatal("example policies changed; update this test")
	}
	if err := os.WriteFile(h.cfg.Policies, []byte(changed), 0o600); err != nil {
		t.Fatal(err)
	}
	resp, err := h.admin.ReloadPolicies(h.ctx(), &adminv1.ReloadPoliciesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetAgentsNotified() != 1 || resp.GetPolicySet().GetVersion() == old {
		t.Fatalf("reload: %v", resp)
	}
	m, err := st.Client.Recv()
	if err != nil || m.GetPolicySet().GetVersion() != resp.GetPolicySet().GetVersion() {
		t.Fatalf("agent got %v %v", m, err)
	}
}

// TestChangedQueryNotJudgedByOldResult: a query tightened under the same
// id is not judged by the result of the query it replaced, while the Mac
// has not reported under the new set (its agent not connected); the
// policies that did not change keep their results.
func TestChangedQueryNotJudgedByOldResult(t *testing.T) {
	t.Parallel()
	h := start(t)
	a := h.enrolled(h.secret())
	st := h.connect(a)
	if m, err := st.Exchange(protoagent.Sign(a.Key, a.Report(st.PolicySet, 1, h.clock.Now(), nil, pass))); err != nil || m.GetAck().GetSeq() != 1 {
		t.Fatalf("report: %v %v", m, err)
	}
	st.Close()
	explain := func() *adminv1.ExplainAccessResponse {
		t.Helper()
		resp, err := h.admin.ExplainAccess(h.ctx(), &adminv1.ExplainAccessRequest{DeviceId: a.DeviceID})
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	if resp := explain(); !resp.GetAllow() {
		t.Fatalf("before the change: %v", resp)
	}

	orig, err := os.ReadFile(h.cfg.Policies)
	if err != nil {
		t.Fatal(err)
	}
	changed := strings.Replace(string(orig), "query: SELECT 1 FROM alf WHERE global_state >= 1", "query: SELECT 1 FROM alf WHERE global_state >= 2", 1)
	if changed == string(orig) {
		t.Fatal("example policies changed; update this test")
	}
	if err := os.WriteFile(h.cfg.Policies, []byte(changed), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := h.admin.ReloadPolicies(h.ctx(), &adminv1.ReloadPoliciesRequest{}); err != nil {
		t.Fatal(err)
	}
	resp := explain()
	if resp.GetAllow() || resp.GetReason() != "policy_missing" {
		t.Fatalf("after the firewall's query changed: allow %v, reason %q; want policy_missing", resp.GetAllow(), resp.GetReason())
	}
	for _, f := range resp.GetResults() {
		want := adminv1.PolicyStatus_POLICY_STATUS_PASS
		if f.GetPolicyId() == "firewall" {
			want = adminv1.PolicyStatus_POLICY_STATUS_MISSING
		}
		if f.GetStatus() != want {
			t.Errorf("%s: %s, want %s", f.GetPolicyId(), f.GetStatus(), want)
		}
	}
}

func TestRenew(t *testing.T) {
	t.Parallel()
	h := start(t)
	a := h.enrolled(h.secret())
	conn, err := a.Dial()
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := agentv1.NewAgentServiceClient(conn)
	csr, _ := protoagent.CSR(a.Key)
	resp, err := client.Renew(h.ctx(), &agentv1.RenewRequest{Csr: csr})
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(resp.GetCertificate())
	if err != nil || cert.SerialNumber.Text(16) == "" {
		t.Fatal(err)
	}
	got, _ := h.admin.GetDevice(h.ctx(), &adminv1.GetDeviceRequest{DeviceId: a.DeviceID})
	if got.GetDevice().GetCertSerial() != cert.SerialNumber.Text(16) {
		t.Fatalf("device cert serial %s, want %s", got.GetDevice().GetCertSerial(), cert.SerialNumber.Text(16))
	}
	// Renewal cannot swap keys.
	other, _ := protoagent.New(h.addr, h.rootPEM, nextUUID())
	csr, _ = protoagent.CSR(other.Key)
	_, err = client.Renew(h.ctx(), &agentv1.RenewRequest{Csr: csr})
	checkStatus(t, err, codes.PermissionDenied, "enrolled key")
	// And needs a device certificate.
	_, err = func() (*agentv1.RenewResponse, error) {
		c, _ := other.Dial()
		defer c.Close()
		return agentv1.NewAgentServiceClient(c).Renew(h.ctx(), &agentv1.RenewRequest{Csr: csr})
	}()
	checkStatus(t, err, codes.Unauthenticated, "device certificate is required")
}

func TestCreateEnrollSecretRejectsLongDescription(t *testing.T) {
	t.Parallel()
	h := start(t)
	before := h.dump()
	_, err := h.admin.CreateEnrollSecret(h.ctx(), &adminv1.CreateEnrollSecretRequest{Description: strings.Repeat("x", 201)})
	checkStatus(t, err, codes.InvalidArgument, "the limit is 200")
	if h.dump() != before {
		t.Fatal("database changed")
	}
}

// TestCreateScepChallenge: the admin API hands out one-time SCEP
// challenges, stored as hashes, with bounded lifetimes.
func TestCreateScepChallenge(t *testing.T) {
	t.Parallel()
	h := start(t)
	resp, err := h.admin.CreateScepChallenge(h.ctx(), &adminv1.CreateScepChallengeRequest{Ttl: durationpb.New(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.GetChallenge()) < 32 || resp.GetExpiresAt().AsTime().Sub(h.clock.Now()) != time.Hour {
		t.Fatalf("%v", resp)
	}
	ok, err := h.srv.Store.SCEPChallengeUsable(context.Background(), enroll.ChallengeHash(resp.GetChallenge()), h.clock.Now())
	if err != nil || !ok {
		t.Fatalf("challenge not usable: %v %v", ok, err)
	}
	if strings.Contains(h.dump(), resp.GetChallenge()) || strings.Contains(h.logs.String(), resp.GetChallenge()) {
		t.Error("the challenge is stored or logged in the clear")
	}
	for _, ttl := range []time.Duration{time.Second, 1000 * time.Hour, -time.Hour} {
		_, err := h.admin.CreateScepChallenge(h.ctx(), &adminv1.CreateScepChallengeRequest{Ttl: durationpb.New(ttl)})
		checkStatus(t, err, codes.InvalidArgument, "ttl")
	}
}

// TestAgentClockSkewLogged: the verifier names how far an agent's own
// clock (Hello.agent_time) is from its own, and an absurd or missing
// agent_time changes nothing else: the stream goes on.
func TestAgentClockSkewLogged(t *testing.T) {
	t.Parallel()
	h := start(t)
	a := h.enrolled(h.secret())
	for _, tc := range []struct {
		name      string
		agentTime *timestamppb.Timestamp
		want      string
	}{
		{"ten minutes slow", timestamppb.New(h.clock.Now().Add(-10 * time.Minute)), "skew=-10m0s"},
		{"far future", timestamppb.New(time.Date(9999, 12, 31, 0, 0, 0, 0, time.UTC)), "skew=2562047h47m16.854775807s"}, // saturated, not wrapped,
		{"invalid", &timestamppb.Timestamp{Seconds: -1 << 62}, ""},
		{"none", nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conn, err := a.Dial()
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			ctx, cancel := context.WithCancel(h.ctx())
			defer cancel()
			st, err := agentv1.NewAgentServiceClient(conn).Connect(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if err := st.Send(&agentv1.AgentMessage{Message: &agentv1.AgentMessage_Hello{Hello: &agentv1.Hello{AgentVersion: "test", AgentTime: tc.agentTime}}}); err != nil {
				t.Fatal(err)
			}
			m, err := st.Recv()
			if err != nil || m.GetSession() == nil {
				t.Fatalf("first message %v, %v; want the Session", m, err)
			}
			if d := m.GetSession().GetVerifierTime().AsTime().Sub(h.clock.Now()); d != 0 {
				t.Errorf("Session.verifier_time is %s from the verifier's clock", d)
			}
			if tc.want != "" {
				if !testkit.Poll(5*time.Second, func() bool { return strings.Contains(h.logs.String(), tc.want) }) {
					t.Fatalf("log lacks %q:\n%s", tc.want, h.logs.String())
				}
			}
		})
	}
}
