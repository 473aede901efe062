package e2e

import (
	"bytes"
	"context"
	"crypto"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/clearance/clearance/internal/oktasim"
	"github.com/clearance/clearance/internal/protoagent"
	"github.com/clearance/clearance/internal/testkit"
	"github.com/clearance/clearance/internal/testkit/testpg"
	"github.com/clearance/clearance/pkg/presence"
	adminv1 "github.com/clearance/clearance/proto/gen/clearance/admin/v1"
	agentv1 "github.com/clearance/clearance/proto/gen/clearance/agent/v1"
)

// sharedFiles are what every replica must hold the same of: the CAs agents
// and browsers trust, the SAML signing identity Okta trusts, and the admin
// token. The TLS server certificate is each replica's own.
var sharedFiles = []string{"ca.pem", "ca.key", "device-ca.pem", "device-ca.key", "idp-cert.pem", "idp-key.pem", "admin.token"}

// sharedIfPresent are shared too when the data dir has them: the SCEP RA
// certificate Macs encrypt their requests to, which must decrypt at
// whichever replica the next request reaches.
var sharedIfPresent = []string{"scep-ra.pem", "scep-ra.key"}

// startReplicas starts two verifiers as an operator runs them behind a load
// balancer: A in dir/a, then B in dir/b from A's shared identity, each with
// its own SSO listener. flags name the database they share.
func startReplicas(t *testing.T, dir string, flags ...string) (vA, vB *verifier, ssoA, ssoB string) {
	t.Helper()
	dataA, dataB := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	ssoA, ssoB = freePort(t), freePort(t)
	vA = startSSOVerifier(t, dataA, ssoA, flags...)
	shareIdentity(t, dataA, dataB)
	vB = startSSOVerifier(t, dataB, ssoB, flags...)
	return vA, vB, ssoA, ssoB
}

// oneBrowser is one browser (one cookie jar) whose requests the load
// balancer sends to replica A (atA) or B (atB). Cookies are kept by host,
// not port: both replicas' loopback addresses are one site to the jar, as
// one name behind a load balancer is to a browser.
func oneBrowser(t *testing.T, vA, vB *verifier, ssoA, ssoB string) (atA, atB *ssoBrowser) {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	atA, atB = newSSOBrowser(t, vA, ssoA, tls.Certificate{}), newSSOBrowser(t, vB, ssoB, tls.Certificate{})
	atA.client.Jar, atB.client.Jar = jar, jar
	return atA, atB
}

// agentProof starts a sign-in at b with the URL Okta redirects to (u),
// which the verifier must send on to the agent, and plays the agent on the
// Mac with the device key: it signs the challenge for deviceID and returns
// the URL that brings the proof back to the verifier.
func agentProof(t *testing.T, b *ssoBrowser, u string, key crypto.Signer, deviceID string) string {
	t.Helper()
	p := b.follow(u)
	if p.status != http.StatusSeeOther {
		t.Fatalf("sign-in answered %d:\n%s", p.status, p.body)
	}
	agentURL, _ := url.Parse(p.location)
	challenge, ret, err := presence.ParseAgentQuery(agentURL.RawQuery)
	if err != nil || ret != e2eSSOPublic+"/saml/presence" {
		t.Fatalf("agent URL %q: %v", p.location, err)
	}
	origin, _ := presence.OriginOf(ret)
	stmt, sig, err := presence.Sign(key, presence.Statement{Challenge: challenge, DeviceID: deviceID, Origin: origin, Time: time.Now().UTC().Truncate(time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	return e2eSSOPublic + "/saml/presence?" + presence.RedirectQuery(stmt, sig)
}

// streamToA enrolls a made-up Mac with hardwareUUID at the replica
// enrollAt, has it stream to replica A and waits until replica B sees the
// stream (through the shared database) and its passing report.
func streamToA(t *testing.T, enrollAt, vA, vB *verifier, secret, hardwareUUID string) *replicaAgent {
	t.Helper()
	agent := &replicaAgent{t: t, a: enrollAgent(t, enrollAt.grpcAddr, vA.rootPEM(), secret, hardwareUUID)}
	agent.connect(vA.grpcAddr)
	waitDevice(t, vB, "B to see the stream on A", within, func(g *adminv1.GetDeviceResponse) bool {
		return g.GetDevice().GetConnected() && g.GetDevice().GetSummary().GetCompliant()
	})
	return agent
}

// shareIdentity copies the first replica's shared files into the second's
// data dir, as an operator does before starting it.
func shareIdentity(t *testing.T, from, to string) {
	t.Helper()
	if err := os.MkdirAll(to, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, f := range append(append([]string(nil), sharedFiles...), sharedIfPresent...) {
		b, err := os.ReadFile(filepath.Join(from, f))
		if errors.Is(err, os.ErrNotExist) && slices.Contains(sharedIfPresent, f) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(to, f), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// replicaAgent is a device built from the proto alone (protoagent) that
// streams to one replica at a time: it reports on connecting and answers
// every CheckNow with a passing report carrying its nonce.
type replicaAgent struct {
	t  *testing.T
	a  *protoagent.Agent
	mu sync.Mutex
	// seq is the last report sent; acked the seqs the verifier acknowledged;
	// answers the seqs sent in answer to a CheckNow.
	seq     uint64
	acked   []uint64
	answers []uint64
	st      *protoagent.Stream
	ended   chan error
}

// connect opens a stream to addr, sends a report and serves the stream
// until it ends (ended receives why).
func (r *replicaAgent) connect(addr string) {
	r.t.Helper()
	r.a.Addr = addr
	// The stream lives until the test closes it or the replica goes.
	st, err := r.a.Connect(context.Background())
	if err != nil {
		r.t.Fatalf("connecting to %s: %v", addr, err)
	}
	r.t.Cleanup(st.Close)
	r.mu.Lock()
	r.st, r.ended = st, make(chan error, 1)
	r.mu.Unlock()
	if err := r.send(st, nil); err != nil {
		r.t.Fatalf("first report to %s: %v", addr, err)
	}
	go r.serve(st, st.PolicySet, r.ended)
}

func (r *replicaAgent) send(st *protoagent.Stream, nonce []byte) error {
	r.mu.Lock()
	r.seq++
	seq := r.seq
	if nonce != nil {
		r.answers = append(r.answers, seq)
	}
	r.mu.Unlock()
	rep := r.a.Report(st.PolicySet, seq, time.Now(), nonce, agentv1.PolicyStatus_POLICY_STATUS_PASS)
	return st.Send(protoagent.Sign(r.a.Key, rep))
}

func (r *replicaAgent) serve(st *protoagent.Stream, ps *agentv1.PolicySet, ended chan<- error) {
	for {
		m, err := st.Client.Recv()
		if err != nil {
			ended <- err
			return
		}
		switch {
		case m.GetCheckNow() != nil:
			if err := r.send(st, m.GetCheckNow().GetNonce()); err != nil {
				ended <- err
				return
			}
		case m.GetAck() != nil:
			r.mu.Lock()
			r.acked = append(r.acked, m.GetAck().GetSeq())
			r.mu.Unlock()
		case m.GetPolicySet() != nil:
			st.PolicySet = m.GetPolicySet()
		}
	}
}

// answered is the seqs sent in answer to CheckNow so far.
func (r *replicaAgent) answered() []uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]uint64(nil), r.answers...)
}

// tlsCert is the device certificate, presented by the test's browser.
func (r *replicaAgent) tlsCert() tls.Certificate {
	return tls.Certificate{Certificate: append([][]byte{r.a.CertDER}, r.a.Chain...), PrivateKey: r.a.Key}
}

// TestReplicasShareSignIns runs two verifier processes on one PostgreSQL
// database with the same CA and SAML identity. An agent streams to replica
// A; a sign-in at replica B whose stored report is stale gets a live check
// that reaches the agent through A and is decided on the fresh report; a
// request ID answered at A is refused at B. Then A is killed (SIGKILL): the
// agent reconnects to B and sign-ins at B keep working.
func TestReplicasShareSignIns(t *testing.T) {
	t.Parallel()
	dsn, password := testpg.NewDatabaseWithPassword(t)
	// These sign-ins are bound by the agent's certificate (the replicas'
	// proof-of-presence ceremony has its own test).
	flags := []string{"--database", dsn, "--live-check-after", liveCheckAfter.String(), "--live-check-timeout", "5s", "--browser-binding", "certificate"}

	// 1. Two replicas: B starts from A's CA, IdP identity and admin token.
	vA, vB, ssoA, ssoB := startReplicas(t, t.TempDir(), flags...)
	// A test database lets every role connect, as a new one does: each
	// replica says so.
	replicaLog(t, vA.logs, "A's warning", "level=WARN", "any role on the database server may connect to this database")

	// 2. An enroll secret made with the CLI against the shared database (no
	// data dir needed); the agent enrolls at B and streams to A.
	secret := lastLine(cli(t, "secret", "create", "--database", dsn, "--description", "replicas"))
	agent := streamToA(t, vB, vA, vB, secret, "5A1C0A7E-0000-4000-8000-00000000A0B1")
	deviceID := agent.a.DeviceID

	// 3. Okta, as both replicas are the same IdP to it.
	sp, idpCertPEM := oktaOrg(t, vA.dataDir, nil, nil)
	atA := newSSOBrowser(t, vA, ssoA, agent.tlsCert())
	atB := newSSOBrowser(t, vB, ssoB, agent.tlsCert())
	redirect := func(r oktasim.Request) string {
		u, err := sp.RedirectURL(r)
		if err != nil {
			t.Fatal(err)
		}
		return u
	}

	// 4. A sign-in at A; the same request at B is a replay.
	first := sp.NewRequest(e2eUser)
	firstURL := redirect(first)
	okAtOkta(t, sp, idpCertPEM, atA.follow(firstURL), first.ID, first.RelayState)
	if p := atB.follow(firstURL); p.status != http.StatusBadRequest || !strings.Contains(p.body, "replayed_request") {
		t.Errorf("request %s replayed at B: status %d, want 400 replayed_request:\n%s", first.ID, p.status, p.body)
	}
	replicaLog(t, vB.logs, "B refusing the replay", "sso_request_refused", "reason=replayed_request")

	// 5. The stored report goes stale; a sign-in at B asks the agent, whose
	// stream is on A, and decides on its answer.
	waitStale(t, vB, deviceID)
	before := len(agent.answered())
	second := sp.NewRequest(e2eUser)
	okAtOkta(t, sp, idpCertPEM, atB.follow(redirect(second)), second.ID, second.RelayState)
	answers := agent.answered()
	if len(answers) != before+1 {
		t.Fatalf("the agent answered %d CheckNow during the sign-in at B, want 1", len(answers)-before)
	}
	d := decisionFor(t, vB, deviceID, second.ID)
	if d.GetLiveCheck() != "answered" || !d.GetAllow() || d.GetReportSeq() != answers[len(answers)-1] {
		t.Errorf("B's decision: allow=%v live_check=%q report_seq=%d; want allowed, answered, seq %d (the agent's answer through A)",
			d.GetAllow(), d.GetLiveCheck(), d.GetReportSeq(), answers[len(answers)-1])
	}
	if strings.Contains(vB.logs.String(), "agent connected") {
		t.Error("the agent connected to B; the check was meant to go through A")
	}

	// 6. A is killed. The agent's stream ends; it reconnects to B (this
	// test's agent is told to; see docs/deploy-verifier.md for the real
	// agent) and sign-ins at B keep working, with live checks on B.
	if err := vA.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-vA.exited
	select {
	case <-agent.ended:
	case <-time.After(10 * time.Second):
		t.Fatal("the agent's stream to the killed replica did not end")
	}
	agent.connect(vB.grpcAddr)
	replicaLog(t, vB.logs, "the agent on B", "agent connected", "device_id="+deviceID)
	// The report sent on reconnecting must be stored before its age is
	// measured: measured from the one before, it would look stale already,
	// and the sign-in would then find it fresh and ask nobody.
	agent.mu.Lock()
	sent := agent.seq
	agent.mu.Unlock()
	waitDevice(t, vB, "the reconnect report stored", within, func(g *adminv1.GetDeviceResponse) bool {
		return g.GetDevice().GetLastSeq() >= sent
	})
	waitStale(t, vB, deviceID)
	before = len(agent.answered())
	third := sp.NewRequest(e2eUser)
	okAtOkta(t, sp, idpCertPEM, atB.follow(redirect(third)), third.ID, third.RelayState)
	answers = agent.answered()
	d = decisionFor(t, vB, deviceID, third.ID)
	if len(answers) != before+1 || d.GetLiveCheck() != "answered" || d.GetReportSeq() != answers[len(answers)-1] {
		t.Errorf("after A died: %d answers, decision live_check=%q report_seq=%d", len(answers)-before, d.GetLiveCheck(), d.GetReportSeq())
	}

	// 7. Every report the agent got an ack for is stored.
	agent.mu.Lock()
	acked, last := append([]uint64(nil), agent.acked...), agent.seq
	agent.mu.Unlock()
	g := waitDevice(t, vB, "the last report stored", within, func(g *adminv1.GetDeviceResponse) bool {
		return g.GetDevice().GetLastSeq() == last
	})
	if len(acked) == 0 || acked[len(acked)-1] > g.GetDevice().GetLastSeq() {
		t.Errorf("acks %v; stored last seq %d", acked, g.GetDevice().GetLastSeq())
	}

	// 8. The database password never reaches a log.
	for name, log := range map[string]string{"A": vA.logs.String(), "B": vB.logs.String()} {
		if strings.Contains(log, password) {
			t.Errorf("replica %s's log shows the database password", name)
		}
		if !strings.Contains(log, "database=") || !strings.Contains(log, "postgres 127.0.0.1") {
			t.Errorf("replica %s's log does not say which database it uses", name)
		}
	}
}

// decisionFor returns the decision logged for requestID.
func decisionFor(t *testing.T, v *verifier, deviceID, requestID string) *adminv1.Decision {
	t.Helper()
	admin, ctx := v.admin()
	list, err := admin.ListDecisions(ctx, &adminv1.ListDecisionsRequest{DeviceId: deviceID})
	if err != nil {
		t.Fatalf("ListDecisions: %v", err)
	}
	for _, d := range list.GetDecisions() {
		if d.GetRequestId() == requestID {
			return d
		}
	}
	t.Fatalf("no decision for request %s in %v", requestID, list.GetDecisions())
	return nil
}

// replicaLog waits for a line of log holding every part.
func replicaLog(t *testing.T, log *syncBuffer, what string, parts ...string) {
	t.Helper()
	testkit.Eventually(t, 10*time.Second, fmt.Sprintf("a log line for %s with %q", what, parts), func() bool { return log.HasLine(parts...) })
}

// ownPostgres starts a PostgreSQL cluster of the test's own with
// scripts/postgres.sh (so restarting it disturbs no other test) and returns
// its DSN and a function that restarts it after down of downtime. It runs
// where the shared test server does (CI), and skips without one.
func ownPostgres(t *testing.T) (dsn string, restart func(down time.Duration)) {
	t.Helper()
	testpg.Require(t) // runs where the shared test server does
	env := append(os.Environ(), "CLEARANCE_PG_STATE="+filepath.Join(t.TempDir(), "pg.state"))
	script := func(args ...string) string {
		t.Helper()
		cmd := exec.Command("../scripts/postgres.sh", args...)
		cmd.Env = env
		var out, errOut bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errOut
		if err := cmd.Run(); err != nil {
			t.Fatalf("scripts/postgres.sh %s: %v\n%s", strings.Join(args, " "), err, errOut.String())
		}
		return out.String()
	}
	line := strings.TrimSpace(script("start"))
	t.Cleanup(func() { script("stop") })
	dsn, ok := strings.CutPrefix(line, testpg.DSNVar+"=")
	if !ok {
		t.Fatalf("scripts/postgres.sh start printed %q", line)
	}
	return dsn, func(down time.Duration) { script("restart", strconv.Itoa(int(down.Seconds()))) }
}

// steadyAgent reports every few tens of milliseconds, one report at a time:
// it sends the next only once the last is acknowledged, and when its stream
// breaks it reconnects and resends the unacknowledged one, byte for byte.
type steadyAgent struct {
	a    *protoagent.Agent
	addr string
	mu   sync.Mutex
	seq  uint64   // last seq built
	acks []uint64 // in the order received
	// connects counts streams opened; checks CheckNow answered.
	connects, checks int
}

// runSteady has agents stream until stop is closed; the group is done when
// each has its last report acknowledged.
func runSteady(agents []*steadyAgent, stop <-chan struct{}) *sync.WaitGroup {
	var wg sync.WaitGroup
	for _, a := range agents {
		wg.Go(func() { a.run(stop) })
	}
	return &wg
}

// ackCount is how many acknowledgements agents have had.
func ackCount(agents []*steadyAgent) int {
	n := 0
	for _, a := range agents {
		a.mu.Lock()
		n += len(a.acks)
		a.mu.Unlock()
	}
	return n
}

// run streams until stop is closed and the last report is acknowledged.
func (s *steadyAgent) run(stop <-chan struct{}) {
	var pending *agentv1.SignedReport
	var pendingSeq uint64
	var nonce []byte
	stopped := func() bool {
		select {
		case <-stop:
			return true
		default:
			return false
		}
	}
	for {
		if stopped() && pending == nil {
			return
		}
		s.a.Addr = s.addr
		st, err := s.a.Connect(context.Background())
		if err != nil {
			time.Sleep(200 * time.Millisecond)
			continue
		}
		s.mu.Lock()
		s.connects++
		s.mu.Unlock()
		for {
			if pending == nil {
				if stopped() {
					break
				}
				s.mu.Lock()
				s.seq++
				pendingSeq = s.seq
				if nonce != nil {
					s.checks++
				}
				s.mu.Unlock()
				pending = protoagent.Sign(s.a.Key, s.a.Report(st.PolicySet, pendingSeq, time.Now(), nonce, agentv1.PolicyStatus_POLICY_STATUS_PASS))
				nonce = nil
			}
			if err := st.Send(pending); err != nil {
				break
			}
			acked := false
			for !acked {
				m, err := st.Client.Recv()
				if err != nil {
					break
				}
				switch {
				case m.GetAck() != nil:
					s.mu.Lock()
					s.acks = append(s.acks, m.GetAck().GetSeq())
					s.mu.Unlock()
					acked = m.GetAck().GetSeq() == pendingSeq
				case m.GetCheckNow() != nil:
					nonce = m.GetCheckNow().GetNonce()
				}
			}
			if !acked {
				break
			}
			pending = nil
			time.Sleep(30 * time.Millisecond)
		}
		st.Close()
	}
}

// TestReplicasSurvivePostgresRestart restarts PostgreSQL under two
// replicas while agents stream to both: the replicas reconnect by
// themselves (pool and relay), the agents resend what was not
// acknowledged, every acknowledged report is stored, and a live check
// through the other replica works again afterwards.
func TestReplicasSurvivePostgresRestart(t *testing.T) {
	t.Parallel()
	dsn, restart := ownPostgres(t)
	vA, vB, _, _ := startReplicas(t, t.TempDir(), "--database", dsn, "--report-history", "10000")

	// 1. Four agents, two on each replica.
	secret := lastLine(cli(t, "secret", "create", "--database", dsn))
	var agents []*steadyAgent
	for i, v := range []*verifier{vA, vA, vB, vB} {
		pa := enrollAgent(t, v.grpcAddr, vA.rootPEM(), secret, fmt.Sprintf("5A1C0A7E-0000-4000-8000-0000000000%02d", i))
		agents = append(agents, &steadyAgent{a: pa, addr: v.grpcAddr})
	}
	stop := make(chan struct{})
	wg := runSteady(agents, stop)
	acked := func() int { return ackCount(agents) }
	waitFor(t, "reports acknowledged before the restart", func() bool { return acked() >= 20 })

	// 2. PostgreSQL goes away for two seconds while they stream.
	restart(2 * time.Second)
	atRestart := acked()
	waitFor(t, "reports acknowledged after the restart", func() bool { return acked() >= atRestart+40 })
	for name, v := range map[string]*verifier{"A": vA, "B": vB} {
		select {
		case err := <-v.exited:
			t.Fatalf("replica %s exited when PostgreSQL restarted: %v", name, err)
		default:
		}
		replicaLog(t, v.logs, "replica "+name+"'s relay reconnecting", "relay reconnected")
	}

	// 3. A live check from B for an agent streaming to A goes through the
	// relay again (its presence was re-recorded on reconnecting).
	admin, ctx := vB.admin()
	var check *adminv1.RequestCheckResponse
	deadline := time.Now().Add(20 * time.Second)
	for {
		var err error
		check, err = admin.RequestCheck(ctx, &adminv1.RequestCheckRequest{DeviceId: agents[0].a.DeviceID, Timeout: durationpb.New(5 * time.Second)})
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("RequestCheck at B for an agent on A after the restart: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if len(check.GetReport().GetReport().GetNonce()) == 0 {
		t.Errorf("RequestCheck answered with a report that carries no nonce: %v", check.GetReport().GetReport())
	}

	// 4. The agents stop once their last report is acknowledged; every
	// acknowledged report is stored, and nothing sent went missing.
	close(stop)
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("agents did not get their last reports acknowledged within 30s")
	}
	pctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(pctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	reconnected := 0
	for i, a := range agents {
		rows, err := conn.Query(pctx, `SELECT seq FROM reports WHERE device_id = $1 ORDER BY seq`, a.a.DeviceID)
		if err != nil {
			t.Fatal(err)
		}
		stored, err := pgx.CollectRows(rows, pgx.RowTo[int64])
		if err != nil {
			t.Fatal(err)
		}
		have := map[uint64]bool{}
		for _, s := range stored {
			have[uint64(s)] = true
		}
		a.mu.Lock()
		for _, s := range a.acks {
			if !have[s] {
				t.Errorf("agent %d: report %d was acknowledged but is not stored", i, s)
			}
		}
		if uint64(len(stored)) != a.seq {
			t.Errorf("agent %d sent reports 1..%d; %d are stored", i, a.seq, len(stored))
		}
		if a.connects > 1 {
			reconnected++
		}
		t.Logf("agent %d: %d reports, %d acks, %d streams", i, a.seq, len(a.acks), a.connects)
		a.mu.Unlock()
	}
	if reconnected == 0 {
		t.Error("no agent's stream broke: the restart was not under load")
	}
}

// TestReplicasPresence: a sign-in bound by the agent's proof of presence
// starts at replica A and completes at replica B (behind a load balancer
// the browser may land on either), with the agent streaming to A: the
// challenge, the browser's cookie and the live check all cross replicas
// through the shared database. The same proof cannot then complete it again
// at A.
func TestReplicasPresence(t *testing.T) {
	t.Parallel()
	dsn, _ := testpg.NewDatabaseWithPassword(t)
	vA, vB, ssoA, ssoB := startReplicas(t, t.TempDir(), "--database", dsn, "--live-check-after", liveCheckAfter.String(), "--live-check-timeout", "5s")

	secret := lastLine(cli(t, "secret", "create", "--database", dsn, "--description", "replicas"))
	agent := streamToA(t, vA, vA, vB, secret, "5A1C0A7E-0000-4000-8000-00000000A0B2")
	deviceID := agent.a.DeviceID
	waitStale(t, vB, deviceID) // so that B's decision asks the agent, through A

	// One browser (one cookie jar), whose requests the load balancer sends
	// first to A, then to B.
	sp, idpCertPEM := oktaOrg(t, vA.dataDir, nil, nil)
	atA, atB := oneBrowser(t, vA, vB, ssoA, ssoB)
	r := sp.NewRequest(e2eUser)
	u, err := sp.RedirectURL(r)
	if err != nil {
		t.Fatal(err)
	}
	back := agentProof(t, atA, u, agent.a.Key, deviceID)
	before := len(agent.answered())
	okAtOkta(t, sp, idpCertPEM, atB.follow(back), r.ID, r.RelayState)
	d := decisionFor(t, vB, deviceID, r.ID)
	if !d.GetAllow() || d.GetBinding() != "agent" || d.GetLiveCheck() != "answered" || len(agent.answered()) != before+1 {
		t.Errorf("B's decision: allow=%v binding=%q live_check=%q, %d answers; want allowed by the agent's proof with a live check through A",
			d.GetAllow(), d.GetBinding(), d.GetLiveCheck(), len(agent.answered())-before)
	}
	// The proof is spent on every replica.
	if p := atA.follow(back); p.status != http.StatusBadRequest || !strings.Contains(p.body, "presence_replayed") {
		t.Errorf("the same proof at A: %d\n%s", p.status, p.body)
	}
}
