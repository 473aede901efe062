package stream_test

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/clearance/clearance/agent/clock"
	"github.com/clearance/clearance/agent/devicekey"
	"github.com/clearance/clearance/agent/enroll"
	"github.com/clearance/clearance/agent/internal/fakeverifier"
	"github.com/clearance/clearance/agent/osquery"
	"github.com/clearance/clearance/agent/state"
	"github.com/clearance/clearance/agent/stream"
	"github.com/clearance/clearance/internal/osquerysim"
	"github.com/clearance/clearance/internal/testkit"
	"github.com/clearance/clearance/pkg/atomicfile"
	agentv1 "github.com/clearance/clearance/proto/gen/clearance/agent/v1"
)

// querier answers from a table of SQL → rows; unknown SQL is osquery's error.
type querier struct {
	mu   sync.Mutex
	rows map[string][]map[string]string
}

func (q *querier) Query(_ context.Context, sql string) ([]map[string]string, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	rows, ok := q.rows[sql]
	if !ok {
		return nil, &osquery.QueryError{Code: 1, Message: "no such table: nope"}
	}
	return rows, nil
}

var facts = &agentv1.DeviceFacts{HardwareUuid: "5A1C7E2B-9D4F-4B8A-A3E6-0C2D71F9B846", Platform: "darwin"}

func newQuerier() *querier {
	return &querier{rows: map[string][]map[string]string{
		"SELECT 1 FROM pass": {{"x": "1"}},
		"SELECT 1 FROM fail": {},
	}}
}

var policySet = &agentv1.PolicySet{Version: "v1", Policies: []*agentv1.Policy{
	{Id: "passes", Query: "SELECT 1 FROM pass", Platforms: []string{"darwin"}},
	{Id: "fails", Query: "SELECT 1 FROM fail"},
	{Id: "errors", Query: "SELECT 1 FROM nope", Platforms: []string{"darwin", "linux"}},
	{Id: "linux-only", Query: "SELECT 1 FROM pass", Platforms: []string{"linux"}},
}}

type agent struct {
	client *stream.Client
	done   chan struct{}
	err    error
}

func (a *agent) stop(t *testing.T) {
	t.Helper()
	a.client.Interrupt(nil)
	select {
	case <-a.done:
		if a.err != nil {
			t.Errorf("Execute: %v", a.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("client did not stop")
	}
}

func startAgent(t *testing.T, v *fakeverifier.Verifier, dir string, mod func(*stream.Options)) *agent {
	t.Helper()
	sd, err := state.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	key, err := devicekey.Open(context.Background(), sd, devicekey.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ids := &enroll.Manager{
		Dir: sd, Signer: key, Verifier: v.Addr, Roots: v.PKI.Roots(), EnrollSecret: v.Secret,
		Facts: func(context.Context) (*agentv1.DeviceFacts, error) { return facts, nil },
	}
	o := stream.Options{
		Verifier: v.Addr, Roots: v.PKI.Roots(), Identity: ids, Signer: key, Dir: sd,
		Querier: newQuerier(), Platform: "darwin", Interval: time.Hour,
		MinBackoff: time.Millisecond, MaxBackoff: 10 * time.Millisecond,
		Clock: clock.New(time.Now, nil),
	}
	if mod != nil {
		mod(&o)
	}
	// Enrollment and the stream share one sense of the verifier's time.
	ids.Clock = o.Clock
	a := &agent{client: stream.New(o), done: make(chan struct{})}
	go func() {
		a.err = a.client.Execute()
		close(a.done)
	}()
	t.Cleanup(func() { a.stop(t) })
	return a
}

func nextReport(t *testing.T, v *fakeverifier.Verifier) fakeverifier.Received {
	t.Helper()
	select {
	case r := <-v.Reports:
		return r
	case <-time.After(10 * time.Second):
		t.Fatal("no report arrived")
		return fakeverifier.Received{}
	}
}

func nextSession(t *testing.T, v *fakeverifier.Verifier) *fakeverifier.Session {
	t.Helper()
	select {
	case s := <-v.Sessions:
		return s
	case <-time.After(10 * time.Second):
		t.Fatal("agent did not connect")
		return nil
	}
}

func statuses(r *agentv1.PostureReport) map[string]agentv1.PolicyStatus {
	out := map[string]agentv1.PolicyStatus{}
	for _, res := range r.GetResults() {
		out[res.GetPolicyId()] = res.GetStatus()
	}
	return out
}

func TestPolicySetThenReport(t *testing.T) {
	t.Parallel()
	v := fakeverifier.New(t)
	v.PolicySet = policySet
	startAgent(t, v, t.TempDir(), nil)

	s := nextSession(t, v)
	if s.Hello.GetAgentVersion() == "" {
		t.Error("Hello has no agent version")
	}
	got := nextReport(t, v)
	r := got.Report
	if r.GetSeq() != 1 || r.GetPolicySetVersion() != "v1" || r.GetDeviceId() != s.DeviceID || len(r.GetNonce()) != 0 {
		t.Errorf("first report = %s, policy_set_version %q, device %q; want seq 1, v1, %q, no nonce", got, r.GetPolicySetVersion(), r.GetDeviceId(), s.DeviceID)
	}
	want := map[string]agentv1.PolicyStatus{
		"passes": agentv1.PolicyStatus_POLICY_STATUS_PASS,
		"fails":  agentv1.PolicyStatus_POLICY_STATUS_FAIL,
		"errors": agentv1.PolicyStatus_POLICY_STATUS_ERROR,
	}
	gotStatus := statuses(r)
	if len(gotStatus) != len(want) {
		t.Errorf("results = %v, want %v (linux-only filtered out)", gotStatus, want)
	}
	for id, st := range want {
		if gotStatus[id] != st {
			t.Errorf("%s = %s, want %s", id, gotStatus[id], st)
		}
	}
	for _, res := range r.GetResults() {
		if res.GetPolicyId() == "errors" && res.GetMessage() != "no such table: nope" {
			t.Errorf("ERROR message = %q, want osquery's message", res.GetMessage())
		}
	}
}

func TestCheckNowEchoesNonce(t *testing.T) {
	t.Parallel()
	v := fakeverifier.New(t)
	v.PolicySet = policySet
	startAgent(t, v, t.TempDir(), nil)
	s := nextSession(t, v)
	first := nextReport(t, v)

	nonce := []byte("nonce-0123456789")
	s.Send(&agentv1.VerifierMessage{Message: &agentv1.VerifierMessage_CheckNow{CheckNow: &agentv1.CheckNow{
		Nonce: nonce, ExpiresAt: timestamppb.New(time.Now().Add(time.Minute)),
	}}})
	got := nextReport(t, v)
	if string(got.Report.GetNonce()) != string(nonce) {
		t.Errorf("report after CheckNow = %s, want nonce %x", got, nonce)
	}
	if got.Report.GetSeq() <= first.Report.GetSeq() {
		t.Errorf("seq %d not above %d", got.Report.GetSeq(), first.Report.GetSeq())
	}
	if len(got.Report.GetResults()) != 3 {
		t.Errorf("CheckNow report has %d results, want all 3", len(got.Report.GetResults()))
	}
}

func TestIntervalReports(t *testing.T) {
	t.Parallel()
	v := fakeverifier.New(t)
	v.PolicySet = policySet
	startAgent(t, v, t.TempDir(), func(o *stream.Options) { o.Interval = time.Millisecond })
	nextSession(t, v)
	var last uint64
	for range 3 {
		r := nextReport(t, v)
		if r.Report.GetSeq() <= last {
			t.Fatalf("seq %d after %d", r.Report.GetSeq(), last)
		}
		last = r.Report.GetSeq()
	}
}

// A verifier (or whatever speaks for it) pushing a 1 ms interval does not
// make the agent run, sign and send in a tight loop: pushed intervals are
// held to what the verifier's loader allows, and the agent says so once.
func TestPushedIntervalIsClamped(t *testing.T) {
	t.Parallel()
	v := fakeverifier.New(t)
	tiny := &agentv1.PolicySet{Version: "v1", Policies: []*agentv1.Policy{
		{Id: "passes", Query: "SELECT 1 FROM pass", Interval: durationpb.New(time.Millisecond)},
		{Id: "fails", Query: "SELECT 1 FROM fail", Interval: durationpb.New(time.Minute)},
	}}
	v.PolicySet = tiny
	var logs testkit.Buffer
	startAgent(t, v, t.TempDir(), func(o *stream.Options) {
		o.Interval = 0
		o.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	})
	s := nextSession(t, v)
	nextReport(t, v)
	// The same set again changes nothing and is not logged again.
	s.Send(&agentv1.VerifierMessage{Message: &agentv1.VerifierMessage_PolicySet{PolicySet: tiny}})
	n := 0
	deadline := time.After(1500 * time.Millisecond)
	for done := false; !done; {
		select {
		case <-v.Reports:
			n++
		case <-deadline:
			done = true
		}
	}
	if n > 0 {
		t.Errorf("%d more reports within 1.5 s of the first, with a pushed interval of 1 ms; want none before 10 s", n)
	}
	if got := strings.Count(logs.String(), "policy intervals outside the allowed range"); got != 1 {
		t.Errorf("clamping logged %d times, want once:\n%s", got, logs.String())
	}
	if !logs.HasLine("policy intervals outside the allowed range", "policies=[passes]", "min=10s") {
		t.Errorf("log does not name the clamped policy and the floor:\n%s", logs.String())
	}
}

func TestPolicySetChangeRunsAtOnce(t *testing.T) {
	t.Parallel()
	v := fakeverifier.New(t)
	v.PolicySet = policySet
	startAgent(t, v, t.TempDir(), nil)
	s := nextSession(t, v)
	nextReport(t, v)
	s.Send(&agentv1.VerifierMessage{Message: &agentv1.VerifierMessage_PolicySet{PolicySet: &agentv1.PolicySet{
		Version: "v2", Policies: []*agentv1.Policy{{Id: "passes", Query: "SELECT 1 FROM pass"}},
	}}})
	got := nextReport(t, v)
	if got.Report.GetPolicySetVersion() != "v2" || len(got.Report.GetResults()) != 1 {
		t.Errorf("after new policy set: %s version %q, want 1 result for v2", got, got.Report.GetPolicySetVersion())
	}
}

// unacked starts an agent whose verifier acks nothing, and returns once
// its first report arrived.
func unacked(t *testing.T) (*fakeverifier.Verifier, *fakeverifier.Session, fakeverifier.Received) {
	t.Helper()
	v := fakeverifier.New(t)
	v.PolicySet = policySet
	v.AutoAck = false
	startAgent(t, v, t.TempDir(), nil)
	s := nextSession(t, v)
	return v, s, nextReport(t, v)
}

func TestResendUnackedAfterReconnect(t *testing.T) {
	t.Parallel()
	v, s, first := unacked(t)

	// The verifier stored it but the ack never arrived.
	s.End(status.Error(codes.Unavailable, "restarting"))
	nextSession(t, v)
	resent := nextReport(t, v)
	if resent.Report.GetSeq() != first.Report.GetSeq() || !resent.Duplicate {
		t.Errorf("first report after reconnect = %s, want an exact resend of seq %d", resent, first.Report.GetSeq())
	}
	fresh := nextReport(t, v)
	if fresh.Report.GetSeq() <= first.Report.GetSeq() || fresh.Duplicate {
		t.Errorf("then %s, want a fresh report above seq %d", fresh, first.Report.GetSeq())
	}
}

func TestAckedNotResent(t *testing.T) {
	t.Parallel()
	v := fakeverifier.New(t)
	v.PolicySet = policySet
	a := startAgent(t, v, t.TempDir(), nil)
	s := nextSession(t, v)
	first := nextReport(t, v)
	waitAcked(t, a.client, first.Report.GetSeq())
	s.End(status.Error(codes.Unavailable, "restarting"))
	nextSession(t, v)
	got := nextReport(t, v)
	if got.Duplicate || got.Report.GetSeq() <= first.Report.GetSeq() {
		t.Errorf("after reconnect got %s; an acked report must not be resent", got)
	}
}

func waitAcked(t *testing.T, c *stream.Client, seq uint64) {
	t.Helper()
	testkit.Eventually(t, 10*time.Second, fmt.Sprintf("the ack of seq %d", seq), func() bool { return c.Stats().Acked >= seq })
}

func TestSeqMonotonicAcrossRestart(t *testing.T) {
	t.Parallel()
	v := fakeverifier.New(t)
	v.PolicySet = policySet
	dir := t.TempDir()
	var last uint64
	for run := range 3 {
		a := startAgent(t, v, dir, nil)
		nextSession(t, v)
		r := nextReport(t, v)
		if r.Report.GetSeq() <= last || r.Duplicate {
			t.Fatalf("run %d: report %s after seq %d", run, r, last)
		}
		last = r.Report.GetSeq()
		a.stop(t)
	}
	if _, enrolls, _ := v.Counts(); enrolls != 1 {
		t.Errorf("enrolled %d times, want once (identity kept in the state dir)", enrolls)
	}
}

func TestBackoffOnError(t *testing.T) {
	t.Parallel()
	v := fakeverifier.New(t)
	v.PolicySet = policySet
	v.RejectConnect = func(n int) error {
		if n <= 4 {
			return status.Error(codes.Unavailable, "busy")
		}
		return nil
	}
	var mu sync.Mutex
	var waits []time.Duration
	after := func(d time.Duration) <-chan time.Time {
		if d < time.Hour { // reconnect waits, not the policy schedule
			mu.Lock()
			waits = append(waits, d)
			mu.Unlock()
		}
		ch := make(chan time.Time, 1)
		if d < time.Hour {
			ch <- time.Now()
		}
		return ch
	}
	startAgent(t, v, t.TempDir(), func(o *stream.Options) {
		o.MinBackoff, o.MaxBackoff = time.Second, 4*time.Second
		o.After = after
		o.Jitter = func(n int64) int64 { return n - 1 } // the top of each range
	})
	nextSession(t, v)
	nextReport(t, v)
	mu.Lock()
	defer mu.Unlock()
	want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 4 * time.Second}
	if len(waits) < len(want) {
		t.Fatalf("waits = %v, want %v", waits, want)
	}
	for i, w := range want {
		if waits[i] != w {
			t.Errorf("wait %d = %s, want %s (capped exponential)", i, waits[i], w)
		}
	}
}

// firstReport starts an agent on a fresh state dir and returns once its
// first report arrived.
func firstReport(t *testing.T) (*fakeverifier.Verifier, string, *agent, fakeverifier.Received) {
	t.Helper()
	v := fakeverifier.New(t)
	v.PolicySet = policySet
	dir := t.TempDir()
	a := startAgent(t, v, dir, nil)
	nextSession(t, v)
	return v, dir, a, nextReport(t, v)
}

func TestRefusedReportIsDropped(t *testing.T) {
	t.Parallel()
	v, dir, a, r := firstReport(t)
	waitAcked(t, a.client, r.Report.GetSeq())
	a.stop(t)

	// The state dir forgets its seq (restored from an old backup): the
	// verifier refuses the repeat, and the agent must move past it.
	if err := atomicfile.Write(dir+"/"+state.SeqFile, []byte("0\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	startAgent(t, v, dir, nil)
	for {
		got := nextReport(t, v)
		if got.Report.GetSeq() > r.Report.GetSeq() {
			break
		}
	}
}

// TestReportListsKeychainCertificates: every report names the device CA's
// certificates that osquery finds in users' keychains, and stops naming
// one once it is gone.
func TestReportListsKeychainCertificates(t *testing.T) {
	t.Parallel()
	v := fakeverifier.New(t)
	v.PolicySet = policySet
	const login = "/Users/alice/Library/Keychains/login.keychain-db"
	browser := v.PKI.IssueBrowserCert(t, facts.GetHardwareUuid(), big.NewInt(0x0a1b2c3d), time.Now().Add(365*24*time.Hour))
	host := osquerysim.Fixture{Tables: map[string][]osquerysim.Row{"certificates": {
		osquerysim.CertificateRow(v.PKI.DeviceCA, "/Library/Keychains/System.keychain"),
		osquerysim.CertificateRow(browser, login),
	}}}
	sim, err := osquerysim.New(host, osquerysim.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sim.Close() })
	startAgent(t, v, t.TempDir(), func(o *stream.Options) { o.Querier = sim })

	s := nextSession(t, v)
	r := nextReport(t, v).Report
	sum := sha1.Sum(browser.Raw)
	want := &agentv1.KeychainCertificate{
		Serial: browser.SerialNumber.Text(16), Sha1: hex.EncodeToString(sum[:]), Path: login,
		NotValidAfter: timestamppb.New(browser.NotAfter), Issuer: "Test Device CA",
	}
	if len(r.GetCertificates()) != 1 || !proto.Equal(r.GetCertificates()[0], want) {
		t.Fatalf("certificates = %v, want [%v]", r.GetCertificates(), want)
	}

	// The user deletes it from the login keychain.
	host.Tables["certificates"] = host.Tables["certificates"][:1]
	if err := sim.SetState(host); err != nil {
		t.Fatal(err)
	}
	s.Send(&agentv1.VerifierMessage{Message: &agentv1.VerifierMessage_CheckNow{CheckNow: &agentv1.CheckNow{
		Nonce: []byte("nonce-0123456789"), ExpiresAt: timestamppb.New(time.Now().Add(time.Minute)),
	}}})
	if r := nextReport(t, v).Report; len(r.GetCertificates()) != 0 {
		t.Errorf("after removal certificates = %v, want none", r.GetCertificates())
	}
}

// TestCertificatesFailureStillReports: osquery refusing the certificates
// query (the default querier knows no such SQL) leaves the list empty and
// the report whole.
func TestCertificatesFailureStillReports(t *testing.T) {
	t.Parallel()
	v := fakeverifier.New(t)
	v.PolicySet = policySet
	startAgent(t, v, t.TempDir(), nil)
	nextSession(t, v)
	r := nextReport(t, v).Report
	if len(r.GetResults()) != 3 || len(r.GetCertificates()) != 0 {
		t.Errorf("report = %d results, %d certificates; want 3 and none", len(r.GetResults()), len(r.GetCertificates()))
	}
}

// The verifier's presence URL is taken from the session, kept across
// restarts, and an unusable one turns proofs of presence off.
func TestSessionSetsPresenceURL(t *testing.T) {
	t.Parallel()
	const u = "https://sso.example.com:8444/saml/presence"
	v := fakeverifier.New(t)
	v.PolicySet = policySet
	v.Session = &agentv1.Session{PresenceUrl: u}
	dir := t.TempDir()
	a := startAgent(t, v, dir, nil)
	nextSession(t, v)
	nextReport(t, v)
	if got := a.client.PresenceURL(); got != u {
		t.Fatalf("PresenceURL = %q, want %q", got, u)
	}
	a.stop(t)

	// A restarted agent knows the URL before it reaches the verifier.
	v.RejectConnect = func(int) error { return status.Error(codes.Unavailable, "down") }
	b := startAgent(t, v, dir, nil)
	if !testkit.Poll(5*time.Second, func() bool { return b.client.PresenceURL() == u }) {
		t.Fatalf("after restart PresenceURL = %q, want %q", b.client.PresenceURL(), u)
	}
	b.stop(t)

	// A verifier that names a URL with a query gets none.
	v.RejectConnect = nil
	v.Session = &agentv1.Session{PresenceUrl: u + "?next=https://evil.example"}
	c := startAgent(t, v, dir, nil)
	nextSession(t, v)
	if !testkit.Poll(5*time.Second, func() bool { return c.client.PresenceURL() == "" }) {
		t.Fatalf("PresenceURL = %q after an unusable one, want none", c.client.PresenceURL())
	}
}

func TestValidPresenceURL(t *testing.T) {
	t.Parallel()
	for _, u := range []string{"https://sso.example.com/saml/presence", "https://sso.example.com:8444/saml/presence", "https://[::1]:8444/saml/presence"} {
		if err := stream.ValidPresenceURL(u); err != nil {
			t.Errorf("%s: %v", u, err)
		}
	}
	for _, u := range []string{
		"", "http://sso.example.com/saml/presence", "https://sso.example.com", "https://sso.example.com/",
		"https://user@sso.example.com/saml/presence", "https://sso.example.com/saml/presence?x=1",
		"https://sso.example.com/saml/presence#f", "https:///saml/presence", "https://sso.example.com/saml/%70resence",
		"https://sso.example.com/saml/presence?", "//sso.example.com/saml/presence", "https://sso.example.com/saml/presence\n",
	} {
		if err := stream.ValidPresenceURL(u); err == nil {
			t.Errorf("%q accepted", u)
		}
	}
}

func checkNow(nonce string, ttl time.Duration) *agentv1.VerifierMessage {
	return &agentv1.VerifierMessage{Message: &agentv1.VerifierMessage_CheckNow{CheckNow: &agentv1.CheckNow{
		Nonce: []byte(nonce), ExpiresAt: timestamppb.New(time.Now().Add(ttl)), Ttl: durationpb.New(ttl),
	}}}
}

// reportsWithin collects what key says of each report that arrives within
// d (by default, its nonce).
func reportsWithin(v *fakeverifier.Verifier, d time.Duration, key func(*agentv1.PostureReport) string) []string {
	if key == nil {
		key = func(r *agentv1.PostureReport) string { return string(r.GetNonce()) }
	}
	var got []string
	deadline := time.After(d)
	for {
		select {
		case r := <-v.Reports:
			got = append(got, key(r.Report))
		case <-deadline:
			return got
		}
	}
}

// startBounded starts an agent whose runs asked for by the verifier are
// bounded to burst, then one every every, and returns it once its first
// report arrived.
func startBounded(t *testing.T, burst int, every time.Duration, logs io.Writer) (*fakeverifier.Verifier, *agent, *fakeverifier.Session) {
	t.Helper()
	v := fakeverifier.New(t)
	v.PolicySet = policySet
	a := startAgent(t, v, t.TempDir(), func(o *stream.Options) {
		o.CheckBurst, o.CheckEvery = burst, every
		if logs != nil {
			o.Logger = slog.New(slog.NewTextHandler(logs, nil))
		}
	})
	s := nextSession(t, v)
	nextReport(t, v)
	return v, a, s
}

// A verifier asking for checks faster than the bound (which only a
// compromised one would) does not make the Mac run its policies in a loop:
// past the burst, the latest request waits its turn and the ones it
// replaced are never run; the log says so once.
func TestCheckNowBounded(t *testing.T) {
	t.Parallel()
	var logs testkit.Buffer
	v, a, s := startBounded(t, 2, 400*time.Millisecond, &logs)

	for i := range 5 {
		s.Send(checkNow(fmt.Sprintf("nonce-%d", i), time.Minute))
	}
	got := reportsWithin(v, 1500*time.Millisecond, nil)
	if want := []string{"nonce-0", "nonce-1", "nonce-4"}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("reports answered %q, want %q (two at once, then the latest in its turn)", got, want)
	}
	st := a.client.Stats()
	if st.ChecksDeferred != 3 || st.ChecksDropped != 2 {
		t.Errorf("deferred %d, dropped %d; want 3 and 2", st.ChecksDeferred, st.ChecksDropped)
	}
	if n := strings.Count(logs.String(), "more often than the agent makes them"); n != 1 {
		t.Errorf("logged %d times, want once:\n%s", n, logs.String())
	}

	// Once the bucket has refilled, a check is answered at once again.
	time.Sleep(900 * time.Millisecond)
	s.Send(checkNow("later", time.Minute))
	if r := nextReport(t, v); string(r.Report.GetNonce()) != "later" {
		t.Errorf("after the bound refilled: report nonce %q, want later", r.Report.GetNonce())
	}
}

// A check that expires while it waits its turn is not answered: the
// verifier no longer accepts its nonce.
func TestCheckNowExpiredWhileWaiting(t *testing.T) {
	t.Parallel()
	v, a, s := startBounded(t, 1, time.Second, nil)
	s.Send(checkNow("first", time.Minute))
	// Longer than a run takes (its report's seq is fsynced), shorter
	// than the wait for the next token.
	s.Send(checkNow("short", 400*time.Millisecond))
	if got := reportsWithin(v, 2*time.Second, nil); fmt.Sprint(got) != "[first]" {
		t.Errorf("reports answered %q, want only first", got)
	}
	if st := a.client.Stats(); st.ChecksDeferred != 1 || st.ChecksDropped != 1 {
		t.Errorf("deferred %d, dropped %d; want 1 and 1", st.ChecksDeferred, st.ChecksDropped)
	}
}

// A changed policy set runs at once, but within the same bound on runs:
// a verifier alternating two sets cannot make the Mac run its policies in
// a loop either. The run owed reports the latest set, and a CheckNow
// asked for meanwhile rides on it.
func TestPolicySetChangesBounded(t *testing.T) {
	t.Parallel()
	v, a, s := startBounded(t, 2, 400*time.Millisecond, nil)
	set := func(version string) *agentv1.VerifierMessage {
		return &agentv1.VerifierMessage{Message: &agentv1.VerifierMessage_PolicySet{PolicySet: &agentv1.PolicySet{
			Version: version, Policies: []*agentv1.Policy{{Id: "passes", Query: "SELECT 1 FROM pass"}},
		}}}
	}
	for i := range 6 {
		s.Send(set(fmt.Sprintf("v%d", i)))
	}
	s.Send(checkNow("rides", time.Minute))
	got := reportsWithin(v, 1500*time.Millisecond, func(r *agentv1.PostureReport) string {
		return r.GetPolicySetVersion() + "/" + string(r.GetNonce())
	})
	if want := []string{"v0/", "v1/", "v5/rides"}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("reports %q, want %q (two at once, then one run for the latest set carrying the check)", got, want)
	}
	if st := a.client.Stats(); st.RunsDeferred != 1 || st.ChecksDeferred != 1 || st.ChecksDropped != 0 {
		t.Errorf("runs deferred %d, checks deferred %d, dropped %d; want 1, 1, 0", st.RunsDeferred, st.ChecksDeferred, st.ChecksDropped)
	}
}

// A CheckNow without a nonce or expiry, or whose nonce is longer than a
// report may carry, is refused unrun and costs no run. (Whether one has
// expired is the verifier's to say: a step of the Mac's clock must not
// refuse honest checks.)
func TestCheckNowUnusableRefused(t *testing.T) {
	t.Parallel()
	var logs testkit.Buffer
	v, a, s := startBounded(t, 1, time.Hour, &logs)
	for _, m := range []*agentv1.CheckNow{
		{Nonce: []byte("no-expiry")},
		{ExpiresAt: timestamppb.New(time.Now().Add(time.Minute))},
		{Nonce: make([]byte, 65), ExpiresAt: timestamppb.New(time.Now().Add(time.Minute))},
		nil,
	} {
		s.Send(&agentv1.VerifierMessage{Message: &agentv1.VerifierMessage_CheckNow{CheckNow: m}})
	}
	s.Send(checkNow("usable", time.Minute))
	if got := reportsWithin(v, time.Second, nil); fmt.Sprint(got) != "[usable]" {
		t.Errorf("reports answered %q, want only the usable check's (one run left in the budget)", got)
	}
	if st := a.client.Stats(); st.ChecksRefused != 4 {
		t.Errorf("refused %d, want 4", st.ChecksRefused)
	}
	if n := strings.Count(logs.String(), "check request refused"); n != 1 {
		t.Errorf("refusals logged %d times, want once:\n%s", n, logs.String())
	}
}

// The verifier's time moves with every Session, but when a policy is next
// due is the device's own clock: a verifier stepping its time forward does
// not make every policy due at once.
func TestSessionTimeStepsRunNothing(t *testing.T) {
	t.Parallel()
	v, _, s := startBounded(t, 10, time.Hour, nil)
	for i := range 50 {
		s.Send(&agentv1.VerifierMessage{Message: &agentv1.VerifierMessage_Session{Session: &agentv1.Session{
			VerifierTime: timestamppb.New(time.Now().Add(time.Duration(i+1) * 2 * time.Hour)),
		}}})
	}
	if got := reportsWithin(v, time.Second, nil); len(got) != 0 {
		t.Errorf("%d reports after the verifier's time stepped forward, want none (policies due in an hour)", len(got))
	}
}

// Unacknowledged reports are bounded by their bytes as well as their
// number: the oldest go first, the newest is always kept.
func TestPendingBoundedByBytes(t *testing.T) {
	t.Parallel()
	v := fakeverifier.New(t)
	v.PolicySet = policySet
	v.AutoAck = false
	startAgent(t, v, t.TempDir(), func(o *stream.Options) { o.MaxPendingBytes = 1 })
	s := nextSession(t, v)
	nextReport(t, v)
	s.Send(checkNow("one", time.Minute))
	s.Send(checkNow("two", time.Minute))
	last := nextReport(t, v)
	if got := nextReport(t, v); string(got.Report.GetNonce()) != "two" {
		t.Fatalf("second report nonce %q, want two", got.Report.GetNonce())
	} else {
		last = got
	}
	s.End(status.Error(codes.Unavailable, "restarting"))
	nextSession(t, v)
	resent := nextReport(t, v)
	if resent.Report.GetSeq() != last.Report.GetSeq() || !resent.Duplicate {
		t.Errorf("first report after reconnect = seq %d (duplicate %v), want only the newest, seq %d, resent",
			resent.Report.GetSeq(), resent.Duplicate, last.Report.GetSeq())
	}
	if fresh := nextReport(t, v); fresh.Duplicate {
		t.Errorf("then seq %d resent, want a fresh report: older unacknowledged reports are dropped", fresh.Report.GetSeq())
	}
}

// A verifier alternating two policy sets of different ids does not run
// them outside the bound on runs: a policy new to the agent rides on the
// run its set asks for, and is not due at once on its own.
func TestNewPolicyIDsWithinBound(t *testing.T) {
	t.Parallel()
	v, _, s := startBounded(t, 2, time.Hour, nil)
	for i := range 100 {
		s.Send(&agentv1.VerifierMessage{Message: &agentv1.VerifierMessage_PolicySet{PolicySet: &agentv1.PolicySet{
			Version: fmt.Sprint(i), Policies: []*agentv1.Policy{{Id: fmt.Sprintf("p%d", i%2), Query: "SELECT 1 FROM pass"}},
		}}})
	}
	if got := reportsWithin(v, 1500*time.Millisecond, nil); len(got) > 2 {
		t.Errorf("%d reports for 100 alternating policy sets, want the 2 the bound allows", len(got))
	}
}

// Runs on the schedule the policies' own intervals make are spaced by
// ScheduleGap, however a verifier staggers the intervals.
func TestScheduledRunsSpaced(t *testing.T) {
	t.Parallel()
	v := fakeverifier.New(t)
	v.PolicySet = &agentv1.PolicySet{Version: "staggered", Policies: []*agentv1.Policy{
		{Id: "a", Query: "SELECT 1 FROM pass", Interval: durationpb.New(10 * time.Second)},
		{Id: "b", Query: "SELECT 1 FROM pass", Interval: durationpb.New(11200 * time.Millisecond)},
	}}
	startAgent(t, v, t.TempDir(), func(o *stream.Options) {
		o.Interval, o.ScheduleGap = 0, time.Hour
		o.Jitter = func(int64) int64 { return 0 }
	})
	nextSession(t, v)
	nextReport(t, v)
	// Without the gap, a at 10 s and b at 11.2 s would be two runs.
	got := reportsWithin(v, 12*time.Second, func(r *agentv1.PostureReport) string {
		return fmt.Sprint(len(r.GetResults()))
	})
	if len(got) != 1 {
		t.Errorf("%d scheduled reports within 12 s, want 1 (the second waits for the gap)", len(got))
	}
}

// Whether a session was long enough for the reconnect backoff to start
// over is measured on the Mac's clock: a verifier stepping its time
// forward in every session, then ending it, does not keep the agent
// reconnecting (and making its first report) at the shortest backoff.
func TestBackoffNotResetByVerifierTime(t *testing.T) {
	t.Parallel()
	sessions := func(step bool) int {
		v := startReconnecting(t, nil)
		deadline := time.After(3 * time.Second)
		for n, k := 0, 1; ; k++ {
			var s *fakeverifier.Session
			select {
			case s = <-v.Sessions:
			case <-deadline:
				return n
			}
			n++
			nextReport(t, v) // the session's first report: every policy run
			if step {
				s.Send(&agentv1.VerifierMessage{Message: &agentv1.VerifierMessage_Session{Session: &agentv1.Session{
					VerifierTime: timestamppb.New(time.Now().Add(time.Duration(k) * time.Minute)),
				}}})
				time.Sleep(20 * time.Millisecond) // taken before the stream ends
			}
			s.End(status.Error(codes.Unavailable, "bye"))
		}
	}
	var honest int
	done := make(chan struct{})
	go func() { honest = sessions(false); close(done) }()
	stepped := sessions(true)
	<-done
	if stepped > honest+2 {
		t.Errorf("%d sessions in 3 s with the verifier stepping its time, %d without: the backoff started over", stepped, honest)
	}
}

// startReconnecting starts an agent, quiet, whose reconnect backoff runs
// from 100 ms to 10 s, and returns its verifier.
func startReconnecting(t *testing.T, mod func(*stream.Options)) *fakeverifier.Verifier {
	t.Helper()
	v := fakeverifier.New(t)
	v.PolicySet = policySet
	startAgent(t, v, t.TempDir(), func(o *stream.Options) {
		o.MinBackoff, o.MaxBackoff = 100*time.Millisecond, 10*time.Second
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
		if mod != nil {
			mod(o)
		}
	})
	return v
}

// TestRefusedReportKeepsTheBackoff: sessions that end in a row with the
// verifier refusing the agent's report (refused as stale, say, because the
// run outlasted the verifier's --max-report-skew) do not start the
// reconnect backoff over, however long each lasted, so the agent does not
// run the same policies again at once after every refusal; sessions that
// end otherwise after StableSession do.
func TestRefusedReportKeepsTheBackoff(t *testing.T) {
	t.Parallel()
	sessions := func(end error) int {
		v := startReconnecting(t, func(o *stream.Options) { o.StableSession = 50 * time.Millisecond })
		deadline := time.After(3 * time.Second)
		for n := 0; ; n++ {
			var s *fakeverifier.Session
			select {
			case s = <-v.Sessions:
			case <-deadline:
				return n
			}
			nextReport(t, v)
			time.Sleep(60 * time.Millisecond) // longer than StableSession
			s.End(end)
		}
	}
	var again int
	done := make(chan struct{})
	go func() { again = sessions(status.Error(codes.Unavailable, "bye")); close(done) }()
	refused := sessions(status.Error(codes.InvalidArgument, "report observed_at 2026-12-06T14:37:05Z is 18s old; the limit is 10s"))
	<-done
	// The bound, and a gap that holds on a loaded machine too, where the
	// sessions ending otherwise (each a connect, a handshake and a run)
	// slow down more than those that mostly wait out their backoff.
	if refused > 7 || again < refused+3 {
		t.Errorf("%d sessions in 3 s ending with a refused report, %d ending otherwise: the backoff started over after a refusal", refused, again)
	}
}

// A policy set the agent could not report on as the verifier accepts
// reports is refused, and the one before kept.
func TestUnreportablePolicySetRefused(t *testing.T) {
	t.Parallel()
	var logs testkit.Buffer
	v, _, s := startBounded(t, 10, time.Hour, &logs)
	many := make([]*agentv1.Policy, 1001)
	for i := range many {
		many[i] = &agentv1.Policy{Id: fmt.Sprintf("p%d", i), Query: "SELECT 1 FROM pass"}
	}
	for _, ps := range []*agentv1.PolicySet{
		{Version: "many", Policies: many},
		{Version: "bad-id", Policies: []*agentv1.Policy{{Id: "not an id\x1b[2J", Query: "SELECT 1 FROM pass"}}},
		{Version: "twice", Policies: []*agentv1.Policy{{Id: "p", Query: "SELECT 1 FROM pass"}, {Id: "p", Query: "SELECT 1 FROM fail"}}},
		{Version: strings.Repeat("v", 129), Policies: []*agentv1.Policy{{Id: "p", Query: "SELECT 1 FROM pass"}}},
	} {
		s.Send(&agentv1.VerifierMessage{Message: &agentv1.VerifierMessage_PolicySet{PolicySet: ps}})
	}
	s.Send(checkNow("after", time.Minute))
	r := nextReport(t, v)
	if string(r.Report.GetNonce()) != "after" || r.Report.GetPolicySetVersion() != "v1" || len(r.Report.GetResults()) != 3 {
		t.Errorf("report after the refused sets: nonce %q, version %q, %d results; want after, v1, 3",
			r.Report.GetNonce(), r.Report.GetPolicySetVersion(), len(r.Report.GetResults()))
	}
	if n := strings.Count(logs.String(), "policy set refused"); n != 1 {
		t.Errorf("refusals logged %d times, want once (sampled):\n%s", n, logs.String())
	}
	if strings.Contains(logs.String(), "\x1b") {
		t.Error("the log carries a terminal escape from the verifier")
	}
}

// A report larger than the verifier accepts is not sent (it would be
// refused at every connect); the agent says so.
func TestOversizedReportNotSent(t *testing.T) {
	t.Parallel()
	v := fakeverifier.New(t)
	ps := &agentv1.PolicySet{Version: "big"}
	for i := range 1000 {
		ps.Policies = append(ps.Policies, &agentv1.Policy{Id: fmt.Sprintf("p%063d", i), Query: "SELECT 1 FROM long_error"})
	}
	v.PolicySet = ps
	var logs testkit.Buffer
	startAgent(t, v, t.TempDir(), func(o *stream.Options) {
		o.Querier = longErrors{}
		o.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	})
	nextSession(t, v)
	if got := reportsWithin(v, time.Second, nil); len(got) != 0 {
		t.Errorf("%d reports sent, want none: each is over the verifier's limit", len(got))
	}
	if !logs.HasLine("report larger than the verifier accepts; not sent") {
		t.Errorf("no log line says why:\n%s", logs.String())
	}
}

// longErrors fails every query with a message of the most an ERROR result
// carries.
type longErrors struct{}

func (longErrors) Query(context.Context, string) ([]map[string]string, error) {
	return nil, &osquery.QueryError{Code: 1, Message: strings.Repeat("x", 4096)}
}

// Lines a verifier's messages cause are logged at most every 10 s per
// kind, however fast it sends them.
func TestVerifierMessagesLogSampled(t *testing.T) {
	t.Parallel()
	var logs testkit.Buffer
	v, _, s := startBounded(t, 10, time.Hour, &logs)
	for i := range 200 {
		s.Send(&agentv1.VerifierMessage{})
		s.Send(&agentv1.VerifierMessage{Message: &agentv1.VerifierMessage_Session{Session: &agentv1.Session{
			PresenceUrl: fmt.Sprintf("https://sso%d.example.com/presence", i%2),
		}}})
	}
	s.Send(checkNow("sync", time.Minute))
	nextReport(t, v)
	for _, line := range []string{"unexpected message from verifier", "presence url set"} {
		if n := strings.Count(logs.String(), line); n > 2 {
			t.Errorf("%q logged %d times for 200 messages, want at most 2", line, n)
		}
	}
}

// A stream's Session comes first and once: a second one, which would move
// the clock and rewrite the presence URL at the rate a verifier sends
// them, is ignored.
func TestSecondSessionIgnored(t *testing.T) {
	t.Parallel()
	v := fakeverifier.New(t)
	v.PolicySet = policySet
	clk := clock.New(time.Now, nil)
	a := startAgent(t, v, t.TempDir(), func(o *stream.Options) { o.Clock = clk })
	s := nextSession(t, v)
	nextReport(t, v)
	before := a.client.PresenceURL()
	for range 100 {
		s.Send(&agentv1.VerifierMessage{Message: &agentv1.VerifierMessage_Session{Session: &agentv1.Session{
			VerifierTime: timestamppb.New(time.Now().Add(time.Hour)), PresenceUrl: "https://elsewhere.example.com/presence",
		}}})
	}
	s.Send(checkNow("sync", time.Minute))
	nextReport(t, v)
	if off, _ := clk.Offset(); off.Abs() > time.Minute {
		t.Errorf("clock offset %s after later Sessions, want the first Session's (about 0)", off)
	}
	if got := a.client.PresenceURL(); got != before {
		t.Errorf("presence URL %q after later Sessions, want %q", got, before)
	}
}

// A verifier that taught a time far off, in which its own certificate is
// not valid, does not keep the agent from ever connecting again: the
// refused handshake makes the agent drop the offset and use the Mac's
// clock until the verifier is heard again.
func TestTimeStepDoesNotLockOut(t *testing.T) {
	t.Parallel()
	v := fakeverifier.New(t)
	v.PolicySet = policySet
	startAgent(t, v, t.TempDir(), func(o *stream.Options) {
		o.MinBackoff, o.MaxBackoff = 10*time.Millisecond, 100*time.Millisecond
	})
	s := nextSession(t, v)
	nextReport(t, v)
	v.SetClockOffset(50 * 365 * 24 * time.Hour)
	s.End(status.Error(codes.Unavailable, "restarting"))
	s = nextSession(t, v) // its Session teaches the time 50 years on
	nextReport(t, v)
	v.SetClockOffset(0)
	s.End(status.Error(codes.Unavailable, "restarting"))
	nextSession(t, v)
}

// A policy set is cached on disk with its first run, not as it arrives: a
// verifier sending sets faster than the bound on runs does not rewrite the
// file at that rate.
func TestPolicySetCachedWithItsRun(t *testing.T) {
	t.Parallel()
	v := fakeverifier.New(t)
	v.PolicySet = policySet
	dir := t.TempDir()
	startAgent(t, v, dir, func(o *stream.Options) { o.CheckBurst, o.CheckEvery = 1, time.Hour })
	s := nextSession(t, v)
	nextReport(t, v)
	for _, version := range []string{"v2", "v3", "v4"} {
		s.Send(&agentv1.VerifierMessage{Message: &agentv1.VerifierMessage_PolicySet{PolicySet: &agentv1.PolicySet{
			Version: version, Policies: []*agentv1.Policy{{Id: "passes", Query: "SELECT 1 FROM pass"}},
		}}})
	}
	if r := nextReport(t, v); r.Report.GetPolicySetVersion() != "v2" {
		t.Fatalf("report for version %q, want v2 (the one run the bound allows)", r.Report.GetPolicySetVersion())
	}
	time.Sleep(200 * time.Millisecond)
	sd, err := state.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	cached, err := sd.LoadPolicySet()
	if err != nil {
		t.Fatal(err)
	}
	if cached.GetVersion() != "v2" {
		t.Errorf("cached policy set %q, want v2: the sets waiting for a run are not written", cached.GetVersion())
	}
}

// The verifier's words in a stream's ending status reach the log clipped.
func TestVerifierErrorClippedInLog(t *testing.T) {
	t.Parallel()
	v := fakeverifier.New(t)
	v.PolicySet = policySet
	var logs testkit.Buffer
	startAgent(t, v, t.TempDir(), func(o *stream.Options) { o.Logger = slog.New(slog.NewTextHandler(&logs, nil)) })
	s := nextSession(t, v)
	nextReport(t, v)
	s.End(status.Error(codes.InvalidArgument, strings.Repeat("x", 1<<20)))
	nextSession(t, v)
	if n := len(logs.String()); n > 64<<10 {
		t.Errorf("log holds %d bytes after one stream ended with a 1 MiB message", n)
	}
}

// While osquery cannot say which platform it runs on, it is asked again at
// most every minute, not for every policy set.
func TestPlatformAskedAtMostEveryMinute(t *testing.T) {
	t.Parallel()
	v := fakeverifier.New(t)
	v.PolicySet = policySet
	q := &countingQuerier{inner: newQuerier()}
	startAgent(t, v, t.TempDir(), func(o *stream.Options) { o.Platform, o.Querier = "", q })
	s := nextSession(t, v)
	nextReport(t, v)
	for i := range 50 {
		s.Send(&agentv1.VerifierMessage{Message: &agentv1.VerifierMessage_PolicySet{PolicySet: &agentv1.PolicySet{
			Version: fmt.Sprint(i), Policies: []*agentv1.Policy{{Id: "passes", Query: "SELECT 1 FROM pass"}},
		}}})
	}
	s.Send(checkNow("sync", time.Minute))
	reportsWithin(v, 500*time.Millisecond, nil)
	if n := q.count("SELECT platform FROM os_version"); n > 1 {
		t.Errorf("osquery asked for the platform %d times for 50 policy sets, want once", n)
	}
}

// countingQuerier counts the queries it is asked, and asks inner.
type countingQuerier struct {
	inner interface {
		Query(context.Context, string) ([]map[string]string, error)
	}
	mu sync.Mutex
	n  map[string]int
}

func (q *countingQuerier) Query(ctx context.Context, sql string) ([]map[string]string, error) {
	q.mu.Lock()
	if q.n == nil {
		q.n = map[string]int{}
	}
	q.n[sql]++
	q.mu.Unlock()
	return q.inner.Query(ctx, sql)
}

func (q *countingQuerier) count(sql string) int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.n[sql]
}

// total is how many queries it was asked.
func (q *countingQuerier) total() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	n := 0
	for _, c := range q.n {
		n += c
	}
	return n
}

func slowSet(version string, n int) *agentv1.PolicySet {
	ps := &agentv1.PolicySet{Version: version}
	for i := range n {
		ps.Policies = append(ps.Policies, &agentv1.Policy{Id: fmt.Sprintf("p%d", i), Query: "SELECT 1 FROM pass"})
	}
	return ps
}

// startSlowAgent starts an agent whose set is n policies whose queries
// each take 100 ms, with its log discarded; q counts the queries begun.
func startSlowAgent(t *testing.T, n int) (v *fakeverifier.Verifier, a *agent, q *countingQuerier) {
	t.Helper()
	v = fakeverifier.New(t)
	v.PolicySet = slowSet("slow", n)
	q = &countingQuerier{inner: slowly(100 * time.Millisecond)}
	return v, startAgent(t, v, t.TempDir(), func(o *stream.Options) {
		o.Querier = q
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}), q
}

// TestCheckExpiredBehindARunNotRun: a CheckNow that arrives during a run
// and expires before that run ends is not run after it (its report would be
// refused, ending the stream); one that still has time when the run ends,
// or that comes while nothing runs, is answered.
func TestCheckExpiredBehindARunNotRun(t *testing.T) {
	t.Parallel()
	v, a, q := startSlowAgent(t, 16) // 16 queries of 100 ms: a 1.6 s run
	s := nextSession(t, v)
	// Into the session's first run: 1.5 s of it or more left.
	testkit.Eventually(t, 5*time.Second, "the first run to begin", func() bool { return q.count("SELECT 1 FROM pass") > 0 })
	s.Send(checkNow("expires", 800*time.Millisecond))
	s.Send(checkNow("in-time", time.Minute)) // replaces nothing: each waits its turn
	var nonces []string
	for len(nonces) < 2 {
		r := nextReport(t, v)
		nonces = append(nonces, string(r.Report.GetNonce()))
		if string(r.Report.GetNonce()) == "expires" {
			t.Fatal("a check that expired behind a run was run after it")
		}
	}
	if nonces[0] != "" || nonces[1] != "in-time" {
		t.Errorf("reports' nonces %q, want the first run's and then in-time's", nonces)
	}
	if st := a.client.Stats(); st.ChecksDropped != 1 {
		t.Errorf("dropped %d checks, want 1", st.ChecksDropped)
	}
	// Nothing runs now: a check is answered at once.
	s.Send(checkNow("idle", 3*time.Second))
	if r := nextReport(t, v); string(r.Report.GetNonce()) != "idle" {
		t.Errorf("report nonce %q, want idle", r.Report.GetNonce())
	}
}

// startSteppingAgent starts an agent whose queries each take perQuery and
// whose clock is the machine's plus what the test stores in step.
func startSteppingAgent(t *testing.T, v *fakeverifier.Verifier, perQuery time.Duration, mod func(*stream.Options)) (a *agent, step *atomic.Int64) {
	t.Helper()
	step = new(atomic.Int64)
	a = startAgent(t, v, t.TempDir(), func(o *stream.Options) {
		o.Querier = slowly(perQuery)
		o.Clock = clock.New(func() time.Time { return time.Now().Add(time.Duration(step.Load())) }, nil)
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
		if mod != nil {
			mod(o)
		}
	})
	return a, step
}

// TestOwedCheckAfterAClockStep: a CheckNow held back by the bound on runs
// is judged by its ttl from its arrival too, so a step of the Mac's clock
// while it waits does not drop it.
func TestOwedCheckAfterAClockStep(t *testing.T) {
	t.Parallel()
	v := fakeverifier.New(t)
	v.PolicySet = slowSet("slow", 1)
	a, step := startSteppingAgent(t, v, 50*time.Millisecond, func(o *stream.Options) {
		o.CheckBurst, o.CheckEvery = 1, time.Second
	})
	s := nextSession(t, v)
	nextReport(t, v)
	s.Send(checkNow("first", 3*time.Second)) // spends the one token
	if r := nextReport(t, v); string(r.Report.GetNonce()) != "first" {
		t.Fatalf("nonce %q, want first", r.Report.GetNonce())
	}
	s.Send(checkNow("owed", 3*time.Second)) // waits up to 1 s for a token
	time.Sleep(100 * time.Millisecond)
	step.Store(int64(30 * time.Second))
	select {
	case r := <-v.Reports:
		if string(r.Report.GetNonce()) != "owed" {
			t.Errorf("nonce %q, want owed", r.Report.GetNonce())
		}
	case <-time.After(3 * time.Second):
		t.Errorf("a check held back by the bound was not answered in its time; stats %+v", a.client.Stats())
	}
}

// TestCheckBehindARunAfterAClockStep: the time a waiting CheckNow has left
// is reckoned from its ttl on the monotonic clock, so neither the
// verifier's clock (here 2 s behind the time its Session gave) nor a step of
// the Mac's (the Clock the agent is given jumps 30 s ahead) makes an honest
// check look expired.
func TestCheckBehindARunAfterAClockStep(t *testing.T) {
	t.Parallel()
	v := fakeverifier.New(t)
	v.PolicySet = slowSet("slow", 14) // a 1.4 s run
	v.SetClockOffset(2 * time.Second) // the Session's time, 2 s ahead of the checks' clock
	a, step := startSteppingAgent(t, v, 100*time.Millisecond, nil)
	s := nextSession(t, v)
	time.Sleep(200 * time.Millisecond) // the Session taken; into the first run
	step.Store(int64(30 * time.Second))
	// About 2.8 s left at its turn, and a run takes 1.4 s.
	s.Send(checkNow("honest", 4*time.Second))
	deadline := time.After(4 * time.Second)
	for {
		select {
		case r := <-v.Reports:
			if string(r.Report.GetNonce()) == "honest" {
				return
			}
		case <-deadline:
			t.Fatalf("an honest check was not answered in its time; stats %+v", a.client.Stats())
		}
	}
}

// One run is bounded in time: the policies it does not reach are reported
// as ERROR "not run", so that a set of slow queries cannot hold the
// stream (its acks and live checks) for hours.
func TestRunBudget(t *testing.T) {
	t.Parallel()
	v := fakeverifier.New(t)
	v.PolicySet = slowSet("slow", 20)
	var logs testkit.Buffer
	startAgent(t, v, t.TempDir(), func(o *stream.Options) {
		o.Querier = slowly(50 * time.Millisecond)
		o.RunBudget = 300 * time.Millisecond
		o.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	})
	nextSession(t, v)
	start := time.Now()
	r := nextReport(t, v)
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("first report after %s; 20 queries of 50 ms with a 300 ms budget", took)
	}
	notRun := 0
	for _, res := range r.Report.GetResults() {
		if strings.HasPrefix(res.GetMessage(), "not run: this run's time budget") {
			notRun++
		}
	}
	if notRun == 0 || notRun == 20 {
		t.Errorf("%d of 20 policies not run, want some run and the rest reported not run", notRun)
	}
	if !logs.HasLine("a run's time budget was spent") {
		t.Errorf("the log does not say so:\n%s", logs.String())
	}
}

// A run stops when its stream ends: it must not keep the agent from
// reconnecting to a verifier that restarted.
func TestRunStopsWhenTheStreamEnds(t *testing.T) {
	t.Parallel()
	v := fakeverifier.New(t)
	v.PolicySet = slowSet("slow", 40)
	startAgent(t, v, t.TempDir(), func(o *stream.Options) {
		o.Querier = slowly(50 * time.Millisecond)
	})
	s := nextSession(t, v)
	nextReport(t, v) // 2 s of queries
	s.Send(checkNow("slow", time.Minute))
	time.Sleep(200 * time.Millisecond) // into the check's run
	// Messages during the run (an honest verifier's acks, a sign-in's
	// check) do not keep the agent from learning the stream ended.
	s.Send(&agentv1.VerifierMessage{Message: &agentv1.VerifierMessage_Ack{Ack: &agentv1.Ack{}}})
	s.Send(checkNow("another", time.Minute))
	ended := time.Now()
	s.End(status.Error(codes.Unavailable, "restarting"))
	nextSession(t, v)
	if took := time.Since(ended); took > time.Second {
		t.Errorf("reconnected %s after the stream ended; the run went on for a stream that was gone", took)
	}
}

// A session's first report runs the verifier's policy set, which follows
// its Session, not the cached one the verifier has since replaced.
func TestFirstReportRunsTheSessionsSet(t *testing.T) {
	t.Parallel()
	v, dir, a, _ := firstReport(t)
	a.stop(t)

	v.PolicySet = &agentv1.PolicySet{Version: "v2", Policies: []*agentv1.Policy{{Id: "passes", Query: "SELECT 1 FROM pass"}}}
	startAgent(t, v, dir, nil)
	nextSession(t, v)
	if r := nextReport(t, v); r.Report.GetPolicySetVersion() != "v2" {
		t.Errorf("first report after reconnecting ran %q, want the verifier's v2, not the cached set", r.Report.GetPolicySetVersion())
	}
}

// Reports made while a verifier taught a time far ahead are not resent
// once an honest verifier's Session says its time: resending comes after
// the Session, and a report dated that far ahead (which the verifier
// refuses, ending the stream before the reports behind it) is dropped.
func TestReportsDatedAheadNotResent(t *testing.T) {
	t.Parallel()
	v, s, _ := unacked(t)
	v.SetClockOffset(365 * 24 * time.Hour)
	s.End(status.Error(codes.Unavailable, "restarting"))
	s = nextSession(t, v) // a year ahead
	r := nextReport(t, v)
	for r.Duplicate { // the first session's report, resent
		r = nextReport(t, v)
	}
	if r.Report.GetObservedAt().AsTime().Before(time.Now().Add(300 * 24 * time.Hour)) {
		t.Fatalf("the report in the lying session is dated %s, want a year ahead", r.Report.GetObservedAt().AsTime())
	}
	v.SetClockOffset(0)
	s.End(status.Error(codes.Unavailable, "restarting"))
	nextSession(t, v)
	if r := nextReport(t, v); r.Duplicate || r.Report.GetObservedAt().AsTime().After(time.Now().Add(time.Hour)) {
		t.Errorf("first report after the honest Session: seq %d resent %v observed %s; want a fresh report in the verifier's time",
			r.Report.GetSeq(), r.Duplicate, r.Report.GetObservedAt().AsTime())
	}
}

// TestChecksTogetherShareARun: CheckNows that arrive during a run are
// answered by the next run of every policy, which began after they all
// arrived: the first of them by that run, the others with its results at
// once, each in a report of its own with its own nonce. Six sign-ins that
// come together take two runs, not six.
func TestChecksTogetherShareARun(t *testing.T) {
	t.Parallel()
	const policies, perQuery = 4, 100 * time.Millisecond
	v := fakeverifier.New(t)
	v.PolicySet = slowSet("slow", policies)
	q := &countingQuerier{inner: slowly(perQuery)}
	a := startAgent(t, v, t.TempDir(), func(o *stream.Options) {
		o.Querier = q
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	})
	s := nextSession(t, v)
	nextReport(t, v)
	before := q.total()

	s.Send(checkNow("a", time.Minute))
	time.Sleep(perQuery) // into a's run
	for _, n := range []string{"b", "c", "d", "e", "f"} {
		s.Send(checkNow(n, time.Minute))
	}
	got := map[string]*agentv1.PostureReport{}
	var order []string
	for len(order) < 6 {
		r := nextReport(t, v).Report
		order = append(order, string(r.GetNonce()))
		got[string(r.GetNonce())] = r
	}
	if want := []string{"a", "b", "c", "d", "e", "f"}; !slices.Equal(order, want) {
		t.Fatalf("reports' nonces %q, want %q", order, want)
	}
	// A run asks every policy's query and two listings.
	const perRun = policies + 2
	if ran := q.total() - before; ran != 2*perRun {
		t.Errorf("%d queries for six checks, want %d (two runs)", ran, 2*perRun)
	}
	if st := a.client.Stats(); st.ChecksShared != 4 {
		t.Errorf("%d checks answered with another's run, want 4", st.ChecksShared)
	}
	// b's run answers c to f: the same time, the same results, seqs of
	// their own.
	b := got["b"]
	if !b.GetObservedAt().AsTime().After(got["a"].GetObservedAt().AsTime()) {
		t.Error("b was answered by the run that was under way when it came")
	}
	seq := b.GetSeq()
	for _, n := range []string{"c", "d", "e", "f"} {
		r := got[n]
		if !r.GetObservedAt().AsTime().Equal(b.GetObservedAt().AsTime()) {
			t.Errorf("%s observed at %s, want b's run's %s", n, r.GetObservedAt().AsTime(), b.GetObservedAt().AsTime())
		}
		if len(r.GetResults()) != policies || !proto.Equal(&agentv1.PostureReport{Results: r.GetResults()}, &agentv1.PostureReport{Results: b.GetResults()}) {
			t.Errorf("%s's results are not b's run's", n)
		}
		if r.GetSeq() != seq+1 {
			t.Errorf("%s has seq %d, want %d", n, r.GetSeq(), seq+1)
		}
		seq = r.GetSeq()
	}

	// A check that comes while nothing runs gets a run of its own: the
	// last run began before it came.
	s.Send(checkNow("later", time.Minute))
	r := nextReport(t, v).Report
	if string(r.GetNonce()) != "later" || !r.GetObservedAt().AsTime().After(b.GetObservedAt().AsTime()) {
		t.Errorf("report %q observed at %s: want later's, from a run of its own", r.GetNonce(), r.GetObservedAt().AsTime())
	}
	if ran := q.total() - before; ran != 3*perRun {
		t.Errorf("%d queries after seven checks, want %d", ran, 3*perRun)
	}
}

// TestCheckLapsedDuringItsRun: a CheckNow whose own run outlasts its ttl
// is answered without its nonce: the verifier has given up on it and would
// refuse the report, ending the stream. The run's results are reported all
// the same, on the same stream.
func TestCheckLapsedDuringItsRun(t *testing.T) {
	t.Parallel()
	v, a, _ := startSlowAgent(t, 8) // 8 queries of 100 ms: a 0.8 s run
	s := nextSession(t, v)
	first := nextReport(t, v)
	s.Send(checkNow("late", 300*time.Millisecond)) // nothing runs: its run starts at once
	r := nextReport(t, v)
	if len(r.Report.GetNonce()) != 0 {
		t.Errorf("a check that lapsed during its run was answered with its nonce %q", r.Report.GetNonce())
	}
	if !r.Report.GetObservedAt().AsTime().After(first.Report.GetObservedAt().AsTime()) {
		t.Error("the lapsed check's run was not reported")
	}
	st := a.client.Stats()
	if st.ChecksDropped != 1 {
		t.Errorf("dropped %d checks, want 1", st.ChecksDropped)
	}
	// One with time enough is answered, on the same stream.
	s.Send(checkNow("in-time", time.Minute))
	if r := nextReport(t, v); string(r.Report.GetNonce()) != "in-time" {
		t.Errorf("report nonce %q, want in-time", r.Report.GetNonce())
	}
	if st := a.client.Stats(); st.Sessions != 1 {
		t.Errorf("%d sessions, want 1", st.Sessions)
	}
}

// fastAfter answers its first n queries after delay each, then at once.
type fastAfter struct {
	*querier
	n     int64
	count atomic.Int64
	delay time.Duration
}

func (q *fastAfter) Query(ctx context.Context, sql string) ([]map[string]string, error) {
	if q.count.Add(1) <= q.n {
		select {
		case <-time.After(q.delay):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return q.querier.Query(ctx, sql)
}

// TestBudgetCutRunAnswersNoCheck: a run whose budget was spent, even
// during its last query (which it stops, with an ERROR, having started
// every policy), does not answer the checks that waited behind it: they
// get a run of their own.
func TestBudgetCutRunAnswersNoCheck(t *testing.T) {
	t.Parallel()
	v := fakeverifier.New(t)
	v.PolicySet = slowSet("slow", 3)
	// A run is three queries and two listings. The first two runs' take
	// 120 ms each, so the 300 ms budget is spent during the third query;
	// the third run's are fast.
	q := &fastAfter{querier: newQuerier(), n: 10, delay: 120 * time.Millisecond}
	a := startAgent(t, v, t.TempDir(), func(o *stream.Options) {
		o.Querier = q
		o.RunBudget = 300 * time.Millisecond
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	})
	s := nextSession(t, v)
	s.Send(checkNow("c1", time.Minute)) // during the session's first run
	s.Send(checkNow("c2", time.Minute)) // so before c1's run began
	for {
		r := nextReport(t, v).Report
		if string(r.GetNonce()) != "c2" {
			continue
		}
		for _, res := range r.GetResults() {
			if res.GetStatus() != agentv1.PolicyStatus_POLICY_STATUS_PASS {
				t.Errorf("c2 answered with %s %s %q, from a run whose budget was spent", res.GetPolicyId(), res.GetStatus(), res.GetMessage())
			}
		}
		break
	}
	if st := a.client.Stats(); st.ChecksShared != 0 {
		t.Errorf("%d checks answered with another's run, want 0", st.ChecksShared)
	}
}

// ackedOnDisk is the last acknowledged seq the state dir records for
// status.
func ackedOnDisk(t *testing.T, dir string) uint64 {
	t.Helper()
	c, err := (&state.Dir{Path: dir}).LoadContact()
	if err != nil {
		t.Fatal(err)
	}
	if c == nil {
		return 0
	}
	return c.AckedSeq
}

// twoAckedReports has the agent send two reports, the second a moment
// after the first, and waits for both acks: the second comes within the
// bound on how often acks are written down.
func twoAckedReports(t *testing.T, a *agent, v *fakeverifier.Verifier) (first, second uint64) {
	t.Helper()
	s := nextSession(t, v)
	first = nextReport(t, v).Report.GetSeq()
	waitAcked(t, a.client, first)
	s.Send(checkNow("second", time.Minute))
	second = nextReport(t, v).Report.GetSeq()
	waitAcked(t, a.client, second)
	return first, second
}

// TestLastAckWrittenForStatus: acknowledgements are written down for
// status at a bounded rate, but the latest is not lost to it: it is
// written once the bound allows, while the agent runs on.
func TestLastAckWrittenForStatus(t *testing.T) {
	t.Parallel()
	v := fakeverifier.New(t)
	v.PolicySet = policySet
	dir := t.TempDir()
	a := startAgent(t, v, dir, func(o *stream.Options) {
		// Waits up to the 10 s bound on ack writes pass at once; the
		// schedule's (an hour) are left alone.
		o.After = func(d time.Duration) <-chan time.Time {
			if d <= 10*time.Second {
				d = min(d, 20*time.Millisecond)
			}
			return time.After(d)
		}
	})
	_, second := twoAckedReports(t, a, v)
	if !testkit.Poll(5*time.Second, func() bool { return ackedOnDisk(t, dir) == second }) {
		t.Errorf("the state dir records seq %d as the last stored, the verifier acknowledged %d", ackedOnDisk(t, dir), second)
	}
}

// TestLastAckWrittenAtShutdown: an agent that stops writes down the last
// acknowledgement it had, however soon after the one before.
func TestLastAckWrittenAtShutdown(t *testing.T) {
	t.Parallel()
	v := fakeverifier.New(t)
	v.PolicySet = policySet
	dir := t.TempDir()
	a := startAgent(t, v, dir, nil)
	first, second := twoAckedReports(t, a, v)
	if got := ackedOnDisk(t, dir); got != first {
		t.Fatalf("seq %d written at once after seq %d; the bound on ack writes is not kept", got, first)
	}
	a.stop(t)
	if got := ackedOnDisk(t, dir); got != second {
		t.Errorf("after the agent stopped the state dir records seq %d as the last stored, the verifier acknowledged %d", got, second)
	}
}

// TestReportDue: how old the last stored report may be from an agent that
// runs its policies as it should: the shortest interval the agent runs
// them at (the local setting over the policies', pushed ones clamped), a
// tenth of it, a run and the slack; nothing to say without a policy for
// the platform.
func TestReportDue(t *testing.T) {
	t.Parallel()
	ps := &agentv1.PolicySet{Policies: []*agentv1.Policy{
		{Id: "hourly", Interval: durationpb.New(time.Hour)},
		{Id: "minutely", Interval: durationpb.New(time.Minute)},
		{Id: "windows", Interval: durationpb.New(time.Second), Platforms: []string{"windows"}},
	}}
	budget := 2 * time.Minute
	for _, tt := range []struct {
		name     string
		ps       *agentv1.PolicySet
		local    time.Duration
		platform string
		want     time.Duration
	}{
		{"the shortest interval", ps, 0, "darwin", time.Minute + 6*time.Second + budget + stream.ReportSlack},
		{"the local Interval", ps, 5 * time.Minute, "darwin", 5*time.Minute + 30*time.Second + budget + stream.ReportSlack},
		{"a pushed interval clamped", ps, 0, "windows", 10*time.Second + time.Second + budget + stream.ReportSlack},
		{"no policy for the platform", &agentv1.PolicySet{Policies: ps.Policies[2:]}, 0, "darwin", 0},
		{"no policy set", nil, 0, "darwin", 0},
	} {
		if got := stream.ReportDue(tt.ps, tt.platform, tt.local, budget); got != tt.want {
			t.Errorf("%s: ReportDue = %s, want %s", tt.name, got, tt.want)
		}
	}
}

// TestReportsSaySettingsRejected: every report says whether the agent
// rejected the settings it was given, as it is when the report is filed:
// nothing while it runs on them; when (in the verifier's time, never after
// the report's observed_at) and why, bounded, once it rejects them; and
// nothing again once it takes settings that run.
func TestReportsSaySettingsRejected(t *testing.T) {
	t.Parallel()
	v := fakeverifier.New(t)
	v.PolicySet = policySet
	var (
		mu  sync.Mutex
		at  time.Time
		why string
	)
	set := func(t time.Time, w string) {
		mu.Lock()
		defer mu.Unlock()
		at, why = t, w
	}
	startAgent(t, v, t.TempDir(), func(o *stream.Options) {
		o.SettingsRejected = func() (time.Time, string) {
			mu.Lock()
			defer mu.Unlock()
			return at, why
		}
	})
	s := nextSession(t, v)
	check := func(n int) *agentv1.PostureReport {
		t.Helper()
		s.Send(checkNow(fmt.Sprintf("nonce-%d-0123456789", n), time.Minute))
		return nextReport(t, v).Report
	}
	if r := nextReport(t, v).Report; r.GetSettingsRejection() != nil {
		t.Errorf("a report of the settings given says %v", r.GetSettingsRejection())
	}
	// The verifier's clock an hour ahead of the Mac's: the report says
	// when in the verifier's time, as it says observed_at.
	v.SetClockOffset(time.Hour)
	s.End(status.Error(codes.Unavailable, "restarting"))
	s = nextSession(t, v)
	nextReport(t, v)

	rejected := time.Now().Add(-10 * time.Minute)
	set(rejected, "CAFingerprint from /Library/Managed Preferences/com.clearance.agent.plist key CAFingerprint: no configured CA certificate has this fingerprint\n\x1b[2J"+strings.Repeat("é", 200))
	r := check(1)
	sr := r.GetSettingsRejection()
	reason := sr.GetReason()
	switch {
	case sr == nil:
		t.Fatal("the report after the settings were rejected does not say so")
	case sr.GetAt().AsTime().Sub(rejected.Add(time.Hour)).Abs() > time.Second:
		t.Errorf("rejected at %v, want %v (the verifier's time)", sr.GetAt().AsTime(), rejected.Add(time.Hour))
	case !strings.HasPrefix(reason, "CAFingerprint from /Library/Managed Preferences/com.clearance.agent.plist key CAFingerprint: no configured CA certificate has this fingerprint\\n\\x1b[2Jéé"):
		t.Errorf("reason %q: want the error, escaped", reason)
	case len(reason) > 256 || !strings.HasSuffix(reason, "é…"):
		t.Errorf("reason %q is %d bytes: want it cut to 256 on a character's end", reason, len(reason))
	}

	// Rejected after the report's policies began: at is observed_at.
	set(time.Now().Add(time.Minute), "later")
	if r := check(2); !r.GetSettingsRejection().GetAt().AsTime().Equal(r.GetObservedAt().AsTime()) {
		t.Errorf("rejected at %v, after the report's observed_at %v", r.GetSettingsRejection().GetAt().AsTime(), r.GetObservedAt().AsTime())
	}

	// Dated by a Mac clock that was off then (a dead battery's 1969):
	// still a report the verifier takes.
	set(time.Unix(-3600, 0).Add(-time.Hour), "clock")
	if r := check(3); !r.GetSettingsRejection().GetAt().AsTime().Equal(r.GetObservedAt().AsTime()) {
		t.Errorf("rejected at %v by a clock that was off, report observed at %v", r.GetSettingsRejection().GetAt().AsTime(), r.GetObservedAt().AsTime())
	}

	set(time.Time{}, "")
	if r := check(4); r.GetSettingsRejection() != nil {
		t.Errorf("the report after settings that run says %v", r.GetSettingsRejection())
	}
}
