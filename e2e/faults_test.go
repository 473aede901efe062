package e2e

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	_ "modernc.org/sqlite" // reads the verifier's database as an operator would

	"github.com/clearance/clearance/internal/protoagent"
	"github.com/clearance/clearance/internal/testkit"
	"github.com/clearance/clearance/internal/testkit/testpg"
	adminv1 "github.com/clearance/clearance/proto/gen/clearance/admin/v1"
	agentv1 "github.com/clearance/clearance/proto/gen/clearance/agent/v1"
)

// timeline logs a fault test's events with the time since it began, so a
// run's log reads as what happened when.
type timeline struct {
	t     *testing.T
	start time.Time
}

func newTimeline(t *testing.T) *timeline { return &timeline{t: t, start: time.Now()} }

func (tl *timeline) log(format string, a ...any) {
	tl.t.Helper()
	tl.t.Logf("t+%6.2fs  %s", time.Since(tl.start).Seconds(), fmt.Sprintf(format, a...))
}

// faultProxy forwards TCP connections to a target (the verifier's gRPC
// port) and injects faults a network does: it can drop everything flowing
// back from the target (acks lost on the way, the agent's side still
// sending), and reset every connection at once.
type faultProxy struct {
	ln     net.Listener
	target string
	// drop discards what the target sends.
	drop atomic.Bool

	mu    sync.Mutex
	conns []net.Conn
}

func startFaultProxy(t *testing.T, target string) *faultProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &faultProxy{ln: ln, target: target}
	go func() { // ends when the listener closes
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go p.serve(c)
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		p.reset()
	})
	return p
}

func (p *faultProxy) addr() string { return p.ln.Addr().String() }

func (p *faultProxy) serve(client net.Conn) {
	server, err := net.DialTimeout("tcp", p.target, 5*time.Second)
	if err != nil {
		client.Close()
		return
	}
	p.mu.Lock()
	p.conns = append(p.conns, client, server)
	p.mu.Unlock()
	done := func() { client.Close(); server.Close() }
	go func() { // agent → verifier: always through
		_, _ = io.Copy(server, client)
		done()
	}()
	buf := make([]byte, 32<<10)
	for { // verifier → agent: through unless dropped
		n, err := server.Read(buf)
		if n > 0 && !p.drop.Load() {
			if _, werr := client.Write(buf[:n]); werr != nil {
				break
			}
		}
		if err != nil {
			break
		}
	}
	done()
}

// reset ends every connection with a TCP reset, as a NAT or a Wi-Fi change
// does, and returns how many it cut.
func (p *faultProxy) reset() int {
	p.mu.Lock()
	conns := p.conns
	p.conns = nil
	p.mu.Unlock()
	for _, c := range conns {
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.SetLinger(0)
		}
		c.Close()
	}
	return len(conns) / 2
}

// addrs are a verifier's listeners, kept across a restart so agents find
// it again.
type addrs struct{ grpc, http, sso string }

func freeAddrs(t *testing.T) addrs { return addrs{freePort(t), freePort(t), freePort(t)} }

// startVerifierCmd starts clearance-verifier serve on dataDir at a, with
// Okta configured (so sign-ins can be tried) and extra flags, and waits
// until it serves. prefix, when set, is a command that runs the verifier
// (a mount namespace of its own); the test then reaches dataDir through
// /proc/PID/root.
func startVerifierCmd(t *testing.T, dataDir string, a addrs, prefix []string, extra ...string) *verifier {
	t.Helper()
	v := &verifier{t: t, dataDir: dataDir, grpcAddr: a.grpc, httpAddr: a.http, logs: &syncBuffer{}, exited: make(chan error, 1)}
	args := append([]string{filepath.Join(binDir, "clearance-verifier"), "serve", "--data-dir", dataDir, "--policies", policiesFile(t),
		"--grpc-listen", a.grpc, "--http-listen", a.http, "--public-url", "https://localhost:8443",
		"--sso-listen", a.sso, "--sso-public-url", e2eSSOPublic,
		"--okta-audience", e2eAudience, "--okta-acs-url", e2eACS, "--allow-unsigned-requests"}, extra...)
	args = append(append([]string(nil), prefix...), args...)
	v.cmd = exec.Command(args[0], args[1:]...)
	v.cmd.Stdout, v.cmd.Stderr = v.logs, v.logs
	if err := v.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if len(prefix) > 0 {
		v.dataDir = fmt.Sprintf("/proc/%d/root%s", v.cmd.Process.Pid, dataDir)
	}
	return v.started()
}

// kill ends the process with SIGKILL: no shutdown, no last commit.
func (v *verifier) kill() {
	v.t.Helper()
	if err := v.cmd.Process.Kill(); err != nil {
		v.t.Fatal(err)
	}
	<-v.exited
}

func (p *proc) kill() {
	p.t.Helper()
	if err := p.cmd.Process.Kill(); err != nil {
		p.t.Fatal(err)
	}
	<-p.exited
}

// healthz returns /healthz's status and body.
func (v *verifier) healthz(t *testing.T) (int, string) { t.Helper(); return v.getStatus(t, "/healthz") }

// getStatus fetches path from the HTTP listener, without credentials, and
// returns its status and body.
func (v *verifier) getStatus(t *testing.T, path string) (int, string) {
	t.Helper()
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(v.rootPEM())
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: "localhost"}}}
	resp, err := c.Get("https://" + v.httpAddr + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// metric is the value of one series in /metrics (0 when absent).
func (v *verifier) metric(t *testing.T, series string) float64 {
	t.Helper()
	sc := bufio.NewScanner(strings.NewReader(v.get(t, "/metrics")))
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), series+" "); ok {
			f, err := strconv.ParseFloat(rest, 64)
			if err != nil {
				t.Fatalf("metric %s: %v", series, err)
			}
			return f
		}
	}
	return 0
}

// device reads a device through the admin API.
func (v *verifier) device(t *testing.T, id string) *adminv1.GetDeviceResponse {
	t.Helper()
	admin, ctx := v.admin()
	got, err := admin.GetDevice(ctx, &adminv1.GetDeviceRequest{DeviceId: id})
	if err != nil {
		t.Fatalf("GetDevice %s: %v", id, err)
	}
	return got
}

// waitFor polls cond until it holds or within passes.
func waitUntil(t *testing.T, what string, within time.Duration, cond func() bool) {
	t.Helper()
	testkit.Eventually(t, within, what, cond)
}

// waitReporting waits until one of v's devices that match has reported,
// and returns its id.
func waitReporting(t *testing.T, v *verifier, what string, within time.Duration, match func(*adminv1.Device) bool) string {
	t.Helper()
	var id string
	waitUntil(t, what, within, func() bool {
		admin, ctx := v.admin()
		list, err := admin.ListDevices(ctx, &adminv1.ListDevicesRequest{})
		if err != nil {
			return false
		}
		for _, d := range list.GetDevices() {
			if match(d) && d.GetLastSeq() > 0 {
				id = d.GetDeviceId()
				return true
			}
		}
		return false
	})
	return id
}

// openSQLite opens the verifier's database read-only, as an operator
// inspecting it would, beside a running verifier or after it died.
func openSQLite(t *testing.T, dataDir string) *sql.DB {
	t.Helper()
	return openSQLiteFile(t, filepath.Join(dataDir, "clearance.db"), "?mode=ro&_pragma=busy_timeout(5000)")
}

// copySQLite copies the database and its WAL out of a data dir the test
// can reach only through /proc/PID/root (SQLite resolves that link, and
// with it the mount namespace, away) while nothing writes, and opens the
// copy.
func copySQLite(t *testing.T, dataDir string) *sql.DB {
	t.Helper()
	dir := t.TempDir()
	for _, f := range []string{"clearance.db", "clearance.db-wal"} {
		b, err := os.ReadFile(filepath.Join(dataDir, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return openSQLiteFile(t, filepath.Join(dir, "clearance.db"), "")
}

func openSQLiteFile(t *testing.T, path, params string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path+params)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// storedSeqs lists a device's stored report seqs, lowest first.
func storedSeqs(t *testing.T, db *sql.DB, deviceID string) []uint64 {
	t.Helper()
	rows, err := db.Query(`SELECT seq FROM reports WHERE device_id = ? ORDER BY seq`, deviceID)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []uint64
	for rows.Next() {
		var s int64
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		out = append(out, uint64(s))
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// contiguous reports whether seqs are first, first+1, …, with none missing.
func contiguous(seqs []uint64) bool {
	for i := 1; i < len(seqs); i++ {
		if seqs[i] != seqs[i-1]+1 {
			return false
		}
	}
	return true
}

// realAgent is clearance-agent and its osquery stand-in.
type realAgent struct {
	args []string
	env  []string
	proc *proc
}

// startRealAgent starts the osquery stand-in on a compliant Mac and the
// agent reporting every second to verifier (an address; through a proxy
// where the test says so), enrolling with secret; env is added to the
// agent's environment.
func startRealAgent(t *testing.T, dir, verifierAddr, caFile, secret string, env ...string) *realAgent {
	t.Helper()
	_, sock, _ := startStandIn(t, dir, compliantMac)
	a := &realAgent{env: env, args: agentRun(dir, verifierAddr, caFile, secret, sock, "--interval", "1s")}
	a.start(t)
	return a
}

func (a *realAgent) start(t *testing.T) {
	a.proc = startProcEnv(t, "clearance-agent", a.env, a.args...)
}

// theDevice returns the only device's id once it exists.
func theDevice(t *testing.T, v *verifier) string {
	t.Helper()
	return waitDevice(t, v, "the agent's first report", within, func(g *adminv1.GetDeviceResponse) bool {
		return g.GetDevice().GetLastSeq() > 0
	}).GetDevice().GetDeviceId()
}

// TestAgentSurvivesLostAcksResetAndKill puts a fault-injecting proxy
// between the real agent and the real verifier. Acks are lost while the
// verifier stores reports, then the connection resets: the agent resends
// what it has no ack for, the verifier acknowledges every resend (nothing
// refused, dropped or skipped) and fresh posture is stored within seconds.
// Then the agent is killed (SIGKILL) holding an unacknowledged report:
// restarted, it goes on without a refusal.
func TestAgentSurvivesLostAcksResetAndKill(t *testing.T) {
	t.Parallel()
	tl := newTimeline(t)
	dir := t.TempDir()
	dataDir := filepath.Join(dir, "verifier")
	v := startVerifierCmd(t, dataDir, freeAddrs(t), nil)
	secret := v.enrollSecret()
	proxy := startFaultProxy(t, v.grpcAddr)
	agent := startRealAgent(t, dir, proxy.addr(), filepath.Join(dataDir, "ca.pem"), secret)
	id := theDevice(t, v)
	seq := func() uint64 { return v.device(t, id).GetDevice().GetLastSeq() }
	tl.log("agent enrolled, reporting every second through the proxy; last seq %d", seq())

	// 1. Acks are lost on the way back, then the connection resets.
	proxy.drop.Store(true)
	base := seq()
	tl.log("proxy drops everything the verifier sends (acks included)")
	waitUntil(t, "reports stored while their acks are lost", within, func() bool { return seq() >= base+3 })
	tl.log("verifier stored seqs %d..%d; none of their acks reached the agent", base+1, seq())
	n := proxy.reset()
	proxy.drop.Store(false)
	resetAt := time.Now()
	tl.log("proxy reset %d connection(s) and forwards again", n)
	waitUntil(t, "fresh posture after the reset", 15*time.Second, func() bool {
		return v.device(t, id).GetLatestReport().GetReport().GetObservedAt().AsTime().After(resetAt)
	})
	fresh := v.device(t, id).GetLatestReport().GetReport()
	took := time.Since(resetAt)
	tl.log("fresh report seq %d stored %.1fs after the reset; %v resends acknowledged again",
		fresh.GetSeq(), took.Seconds(), v.metric(t, "clearance_reports_resent_total"))
	if took > 10*time.Second {
		t.Errorf("fresh posture took %s after the reset", took)
	}
	if v.metric(t, "clearance_reports_resent_total") < 1 {
		t.Error("the verifier acknowledged no resend: the agent did not resend what it had no ack for")
	}

	// 2. The agent is killed holding a report the verifier stored but never
	// acknowledged to it, and starts again.
	proxy.drop.Store(true)
	base = seq()
	waitUntil(t, "a report stored without its ack", within, func() bool { return seq() > base })
	unacked := seq()
	agent.proc.kill()
	tl.log("agent killed (SIGKILL) holding unacknowledged report seq %d", unacked)
	proxy.reset()
	proxy.drop.Store(false)
	restartedAt := time.Now()
	agent.start(t)
	waitUntil(t, "the restarted agent's report", within, func() bool { return seq() > unacked })
	tl.log("restarted agent's report seq %d stored %.1fs after its start", seq(), time.Since(restartedAt).Seconds())

	// Nothing was refused, dropped or skipped; the agent enrolled once.
	db := openSQLite(t, dataDir)
	seqs := storedSeqs(t, db, id)
	tl.log("stored seqs %d..%d (%d reports)", seqs[0], seqs[len(seqs)-1], len(seqs))
	if !contiguous(seqs) {
		t.Errorf("stored seqs have gaps (a report dropped or seq jumped): %v", seqs)
	}
	if strings.Contains(v.logs.String(), "report rejected") {
		t.Error("the verifier refused a report")
	}
	for _, bad := range []string{"refused", "seq raised"} {
		if strings.Contains(agent.proc.logs.String(), bad) {
			t.Errorf("the agent log says %q", bad)
		}
	}
	if e := v.device(t, id).GetDevice().GetEnrollments(); e != 1 {
		t.Errorf("%d enrollments, want 1", e)
	}
}

// TestClockSkewedAgent runs the real agent with its clock ten minutes slow,
// then fast (a test build's CLEARANCE_TEST_CLOCK_OFFSET, see agent/clock):
// it enrolls once (one certificate, one use of the secret), keeps
// reporting in the verifier's time, and both sides name the skew.
func TestClockSkewedAgent(t *testing.T) {
	t.Parallel()
	for _, skew := range []time.Duration{-10 * time.Minute, 10 * time.Minute} {
		t.Run(skew.String(), func(t *testing.T) {
			t.Parallel()
			tl := newTimeline(t)
			dir := t.TempDir()
			dataDir := filepath.Join(dir, "verifier")
			v := startVerifierCmd(t, dataDir, freeAddrs(t), nil)
			secret := v.enrollSecret()
			agent := startRealAgent(t, dir, v.grpcAddr, filepath.Join(dataDir, "ca.pem"), secret, "CLEARANCE_TEST_CLOCK_OFFSET="+skew.String())
			got := waitDevice(t, v, "a compliant report", within, func(g *adminv1.GetDeviceResponse) bool {
				return g.GetDevice().GetSummary().GetCompliant()
			})
			id := got.GetDevice().GetDeviceId()
			first := got.GetDevice().GetLastSeq()
			tl.log("agent with its clock %s off enrolled and reported seq %d", skew, first)
			waitUntil(t, "two more reports", within, func() bool { return v.device(t, id).GetDevice().GetLastSeq() >= first+2 })
			latest := v.device(t, id)
			lag := time.Since(latest.GetLatestReport().GetReport().GetObservedAt().AsTime())
			tl.log("report seq %d observed %s before the verifier received it", latest.GetDevice().GetLastSeq(), lag.Round(time.Millisecond))
			if lag.Abs() > 5*time.Second {
				t.Errorf("observed_at is %s from the verifier's time, want the agent to stamp in the verifier's time", lag)
			}

			// Enrolled once: one certificate, one use of the secret.
			if e := latest.GetDevice().GetEnrollments(); e != 1 {
				t.Errorf("%d enrollments, want 1", e)
			}
			admin, ctx := v.admin()
			secrets, err := admin.ListEnrollSecrets(ctx, &adminv1.ListEnrollSecretsRequest{})
			if err != nil || len(secrets.GetEnrollSecrets()) != 1 || secrets.GetEnrollSecrets()[0].GetUses() != 1 {
				t.Errorf("enroll secrets %v (%v), want one used once", secrets.GetEnrollSecrets(), err)
			}
			if n := strings.Count(agent.proc.logs.String(), "msg=enrolled"); n != 1 {
				t.Errorf("the agent enrolled %d times", n)
			}
			if n := v.metric(t, `clearance_enrollments_total{outcome="enrolled"}`); n != 1 {
				t.Errorf("clearance_enrollments_total{enrolled} = %v, want 1", n)
			}

			// Both sides name the skew: the agent as the verifier's offset
			// from its clock, the verifier as the agent's from its own.
			offset := logDuration(t, agent.proc.logs, "device clock differs", "offset")
			vskew := logDuration(t, v.logs, "agent clock differs", "skew")
			tl.log("agent log: verifier's clock is %s from mine; verifier log: agent's clock is %s from mine", offset, vskew)
			if (offset+skew).Abs() > 2*time.Second || (vskew-skew).Abs() > 2*time.Second {
				t.Errorf("logged offset %s and skew %s, want about %s and %s", offset, vskew, -skew, skew)
			}
		})
	}
}

// logDuration finds the first log line holding msg and returns its key=
// duration field.
func logDuration(t *testing.T, log *syncBuffer, msg, key string) time.Duration {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		for _, line := range strings.Split(log.String(), "\n") {
			if !strings.Contains(line, msg) {
				continue
			}
			for _, f := range strings.Fields(line) {
				if v, ok := strings.CutPrefix(f, key+"="); ok {
					d, err := time.ParseDuration(v)
					if err != nil {
						t.Fatalf("%s=%q in %q: %v", key, v, line, err)
					}
					return d
				}
			}
			t.Fatalf("no %s= in %q", key, line)
		}
		if time.Now().After(deadline) {
			t.Fatalf("no log line with %q", msg)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// steadyLoad enrolls n protoagent devices at v and has them report as
// steadyAgents until stop is closed.
func steadyLoad(t *testing.T, v *verifier, secret string, n int, stop <-chan struct{}) ([]*steadyAgent, *sync.WaitGroup) {
	t.Helper()
	var agents []*steadyAgent
	for i := range n {
		pa := enrollAgent(t, v.grpcAddr, v.rootPEM(), secret, fmt.Sprintf("5A1C0A7E-0000-4000-8000-0000000001%02d", i))
		agents = append(agents, &steadyAgent{a: pa, addr: v.grpcAddr})
	}
	return agents, runSteady(agents, stop)
}

// TestVerifierSIGKILLUnderLoad kills the verifier (SIGKILL) while agents
// report as fast as it acknowledges, on SQLite and on PostgreSQL: every
// acknowledged report is in the database afterwards (acks compared with
// rows), SQLite's integrity check passes, and the agents — the real one
// included — reconnect by themselves and go on with their seqs.
func TestVerifierSIGKILLUnderLoad(t *testing.T) {
	t.Parallel()
	for _, backend := range []string{"sqlite", "postgres"} {
		t.Run(backend, func(t *testing.T) {
			t.Parallel()
			tl := newTimeline(t)
			extra := []string{"--report-history", "10000"}
			var dsn string
			if backend == "postgres" {
				dsn, _ = testpg.NewDatabaseWithPassword(t)
				extra = append(extra, "--database", dsn)
			}
			dir := t.TempDir()
			dataDir := filepath.Join(dir, "verifier")
			a := freeAddrs(t)
			v := startVerifierCmd(t, dataDir, a, nil, extra...)
			admin, ctx := v.admin()
			sec, err := admin.CreateEnrollSecret(ctx, &adminv1.CreateEnrollSecretRequest{Description: "sigkill"})
			if err != nil {
				t.Fatal(err)
			}
			secret := sec.GetSecret()

			stop := make(chan struct{})
			load, wg := steadyLoad(t, v, secret, 4, stop)
			startRealAgent(t, dir, v.grpcAddr, filepath.Join(dataDir, "ca.pem"), secret)
			realID := waitReporting(t, v, "the real agent's first report", within, func(d *adminv1.Device) bool {
				return d.GetFacts().GetHardwareUuid() == "5A1C7E2B-9D4F-4B8A-A3E6-0C2D71F9B846"
			})
			waitUntil(t, "load, and the real agent's second report", within, func() bool {
				return ackCount(load) >= 40 && v.device(t, realID).GetDevice().GetLastSeq() >= 2
			})
			realSeq := v.device(t, realID).GetDevice().GetLastSeq()

			// 1. SIGKILL under load.
			v.kill()
			acked := ackCount(load)
			tl.log("verifier killed (SIGKILL) with %d reports acknowledged to the load agents; the real agent was at seq %d", acked, realSeq)
			if backend == "sqlite" {
				var res string
				db := openSQLite(t, dataDir)
				err := db.QueryRow(`PRAGMA integrity_check`).Scan(&res)
				db.Close()
				if err != nil || res != "ok" {
					t.Fatalf("integrity_check after SIGKILL: %q %v", res, err)
				}
				tl.log("SQLite integrity_check: ok")
			}

			// 2. Back on the same addresses: everyone reconnects by itself.
			v = startVerifierCmd(t, dataDir, a, nil, extra...)
			tl.log("verifier restarted")
			waitUntil(t, "the load agents reporting again", within, func() bool { return ackCount(load) >= acked+40 })
			tl.log("load agents reconnected: %d acks", ackCount(load))
			waitUntil(t, "the real agent reporting again", within+10*time.Second, func() bool {
				d := v.device(t, realID).GetDevice()
				return d.GetConnected() && d.GetLastSeq() > realSeq
			})
			d := v.device(t, realID).GetDevice()
			tl.log("real agent reconnected by itself: seq %d (was %d), %d enrollment(s)", d.GetLastSeq(), realSeq, d.GetEnrollments())
			if d.GetEnrollments() != 1 {
				t.Errorf("the real agent enrolled %d times", d.GetEnrollments())
			}

			// 3. Every acknowledged report is stored; so is every report sent
			// (each load agent resends until acknowledged).
			close(stop)
			done := make(chan struct{})
			go func() { wg.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(30 * time.Second):
				t.Fatal("load agents did not get their last reports acknowledged")
			}
			stored := func(deviceID string) []uint64 {
				if backend == "sqlite" {
					return storedSeqs(t, openSQLite(t, dataDir), deviceID)
				}
				return pgSeqs(t, dsn, deviceID)
			}
			total := 0
			for i, la := range load {
				seqs := stored(la.a.DeviceID)
				la.mu.Lock()
				for _, s := range la.acks {
					if !slices.Contains(seqs, s) {
						t.Errorf("load agent %d: report %d acknowledged but not stored", i, s)
					}
				}
				if uint64(len(seqs)) != la.seq || !contiguous(seqs) {
					t.Errorf("load agent %d sent 1..%d; stored %d reports, contiguous %v", i, la.seq, len(seqs), contiguous(seqs))
				}
				total += len(la.acks)
				la.mu.Unlock()
			}
			realSeqs := stored(realID)
			if !contiguous(realSeqs) || realSeqs[len(realSeqs)-1] <= realSeq {
				t.Errorf("the real agent's stored seqs %v: want them contiguous and past %d", realSeqs, realSeq)
			}
			tl.log("%d acks, every one stored; real agent's stored seqs %d..%d, contiguous %v", total, realSeqs[0], realSeqs[len(realSeqs)-1], contiguous(realSeqs))
		})
	}
}

// pgSeqs lists a device's stored report seqs in PostgreSQL.
func pgSeqs(t *testing.T, dsn, deviceID string) []uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	rows, err := c.Query(ctx, `SELECT seq FROM reports WHERE device_id = $1 ORDER BY seq`, deviceID)
	if err != nil {
		t.Fatal(err)
	}
	got, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		t.Fatal(err)
	}
	out := make([]uint64, len(got))
	for i, s := range got {
		out[i] = uint64(s)
	}
	return out
}

// smallDisk returns a command prefix that runs a program with a tmpfs of
// size bytes mounted on dir, in a mount namespace of its own, and says how:
// unprivileged where user namespaces are allowed (unshare -r), as root
// otherwise. The disk fills for real (ENOSPC), which an injected error
// would only imitate, and nothing is mounted where other processes see it.
func smallDisk(t *testing.T, dir string, size int) ([]string, string) {
	t.Helper()
	mount := fmt.Sprintf(`mount -t tmpfs -o size=%d,mode=0700 tmpfs "$0" && exec "$@"`, size)
	for _, c := range []struct {
		how    string
		prefix []string
	}{
		{"user and mount namespace (unprivileged)", []string{"unshare", "--user", "--map-root-user", "--mount", "sh", "-c", mount, dir}},
		{"mount namespace (root)", []string{"unshare", "--mount", "sh", "-c", mount, dir}},
	} {
		if err := exec.Command(c.prefix[0], append(c.prefix[1:], "true")...).Run(); err == nil {
			return c.prefix, c.how
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("cannot mount a tmpfs (no user namespaces, not root): the disk-full test needs one")
	}
	t.Skip("cannot mount a tmpfs here (no user namespaces, not root)")
	return nil, ""
}

// fill writes a file in dir until the disk is full.
func fill(t *testing.T, dir string) (string, int64) {
	t.Helper()
	path := filepath.Join(dir, "filler")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	var n int64
	for {
		w, err := f.Write(buf)
		n += int64(w)
		if err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("filling the disk: %v", err)
			}
			return path, n
		}
	}
}

// TestDiskFullRecovers runs the verifier (SQLite) on a small tmpfs and
// fills it: /healthz turns unhealthy, a report is not acknowledged (it was
// not stored), a sign-in fails closed saying why. Once space returns,
// without a restart, /healthz is healthy, the resent report is stored and
// acknowledged, and the acks match the rows.
func TestDiskFullRecovers(t *testing.T) {
	t.Parallel()
	tl := newTimeline(t)
	dataDir := filepath.Join(t.TempDir(), "verifier")
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		t.Fatal(err)
	}
	// Room for the database and its WAL as it grows to a checkpoint
	// (about 16.5 MB): the verifier runs on it until the filler comes.
	prefix, how := smallDisk(t, dataDir, 32<<20)
	a := freeAddrs(t)
	// The sign-in below is unsigned, as the test's Okta org builds it.
	v := startVerifierCmd(t, dataDir, a, prefix, "--allow-unsigned-requests")
	pid := v.cmd.Process.Pid
	tl.log("verifier's data dir on a 32 MiB tmpfs in a %s", how)

	admin, ctx := v.admin()
	sec, err := admin.CreateEnrollSecret(ctx, &adminv1.CreateEnrollSecretRequest{Description: "disk full"})
	if err != nil {
		t.Fatal(err)
	}
	pa, err := protoagent.New(v.grpcAddr, v.rootPEM(), "5A1C0A7E-0000-4000-8000-0000000D15C0")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pa.Enroll(ctx, sec.GetSecret()); err != nil {
		t.Fatal(err)
	}
	var acked []uint64
	report := func(sr *agentv1.SignedReport) error {
		st, err := pa.Connect(ctx)
		if err != nil {
			return err
		}
		defer st.Close()
		m, err := st.Exchange(sr)
		if err != nil {
			return err
		}
		if m.GetAck() == nil {
			return fmt.Errorf("got %v, want an ack", m)
		}
		acked = append(acked, m.GetAck().GetSeq())
		return nil
	}
	ps := func() *agentv1.PolicySet {
		st, err := pa.Connect(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		return st.PolicySet
	}()
	sign := func(seq uint64) *agentv1.SignedReport {
		return protoagent.Sign(pa.Key, pa.Report(ps, seq, time.Now(), nil, agentv1.PolicyStatus_POLICY_STATUS_PASS))
	}
	if err := report(sign(1)); err != nil {
		t.Fatal(err)
	}
	if code, _ := v.healthz(t); code != http.StatusOK {
		t.Fatalf("/healthz = %d before the disk filled", code)
	}

	// 1. The disk fills.
	filler, n := fill(t, v.dataDir)
	tl.log("disk full: %s filler written, the next write gets ENOSPC", byteSize(n))
	waitUntil(t, "/healthz to turn unhealthy", 10*time.Second, func() bool {
		code, _ := v.healthz(t)
		return code == http.StatusServiceUnavailable
	})
	code, body := v.healthz(t)
	tl.log("/healthz: %d %q", code, strings.TrimSpace(body))
	replicaLog(t, v.logs, "the log naming the failure", "store unhealthy", "full")
	if g := v.metric(t, "clearance_store_writable"); g != 0 {
		t.Errorf("clearance_store_writable = %v while full", g)
	}

	// A report is not acknowledged: it was not stored. The agent is told
	// to retry.
	pending := sign(2)
	for range 3 {
		err := report(pending)
		if status.Code(err) != codes.Unavailable {
			t.Fatalf("report while full: %v, want Unavailable and no ack", err)
		}
	}
	tl.log("report seq 2 refused three times with Unavailable, never acknowledged")

	// A sign-in fails closed and says why.
	sp, _ := oktaOrg(t, v.dataDir, nil, nil)
	browser := newSSOBrowser(t, v, a.sso, tls.Certificate{})
	signIn := sp.NewRequest(e2eUser)
	u, err := sp.RedirectURL(signIn)
	if err != nil {
		t.Fatal(err)
	}
	page := browser.follow(u)
	if page.status != http.StatusServiceUnavailable || !strings.Contains(page.body, "storage_unavailable") {
		t.Errorf("sign-in while full: %d, want 503 naming storage_unavailable:\n%s", page.status, page.body)
	}
	tl.log("sign-in refused: %d storage_unavailable", page.status)

	// 2. Space returns; nothing restarts.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	tl.log("filler removed")
	waitUntil(t, "/healthz to be healthy again", 10*time.Second, func() bool {
		code, _ := v.healthz(t)
		return code == http.StatusOK
	})
	tl.log("/healthz: 200 again")
	replicaLog(t, v.logs, "the log saying it recovered", "store healthy again")
	if err := report(pending); err != nil {
		t.Fatalf("the resent report after recovery: %v", err)
	}
	if err := report(sign(3)); err != nil {
		t.Fatalf("a new report after recovery: %v", err)
	}
	tl.log("reports 2 and 3 stored and acknowledged")
	if v.cmd.Process.Pid != pid || v.cmd.ProcessState != nil {
		t.Error("the verifier restarted")
	}
	db := copySQLite(t, v.dataDir)
	seqs := storedSeqs(t, db, pa.DeviceID)
	if !slices.Equal(seqs, acked) || !slices.Equal(acked, []uint64{1, 2, 3}) {
		t.Errorf("stored %v, acknowledged %v; want both 1, 2, 3", seqs, acked)
	}
	var res string
	if err := db.QueryRow(`PRAGMA integrity_check`).Scan(&res); err != nil || res != "ok" {
		t.Errorf("integrity_check after the disk was full: %q %v", res, err)
	}
}

func byteSize(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

// TestReenrollmentEndsStreamOnOtherReplica: two replicas on one PostgreSQL
// database. A device streams to replica A with its key; it enrolls again,
// with a new key, at replica B: A ends the old stream at once, saying why,
// and the new key's stream on A is not ended; revoked at B, the device's
// stream on A ends at once too.
func TestReenrollmentEndsStreamOnOtherReplica(t *testing.T) {
	t.Parallel()
	tl := newTimeline(t)
	dsn, _ := testpg.NewDatabaseWithPassword(t)
	vA, vB, _, _ := startReplicas(t, t.TempDir(), "--database", dsn)
	secret := lastLine(cli(t, "secret", "create", "--database", dsn))
	const uuid = "5A1C0A7E-0000-4000-8000-0000000E0E01"

	old := enrollAgent(t, vA.grpcAddr, vA.rootPEM(), secret, uuid)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := old.Connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if m, err := st.Exchange(protoagent.Sign(old.Key, old.Report(st.PolicySet, 1, time.Now(), nil, agentv1.PolicyStatus_POLICY_STATUS_PASS))); err != nil || m.GetAck().GetSeq() != 1 {
		t.Fatalf("first report: %v %v", m, err)
	}
	tl.log("device %s streams to A with its first key", old.DeviceID)

	ended := st.Ended()
	again, err := protoagent.New(vB.grpcAddr, vA.rootPEM(), uuid)
	if err != nil {
		t.Fatal(err)
	}
	enrolledAt := time.Now()
	// A new key is taken on the old key's word (a rotation); without it the
	// request would wait for approval.
	if _, err := again.EnrollRotating(ctx, secret, old.Key); err != nil {
		t.Fatal(err)
	}
	tl.log("the device enrolled again at B with a new key")
	select {
	case err := <-ended:
		tl.log("A ended the old key's stream %s later: %s %q", time.Since(enrolledAt).Round(time.Millisecond), status.Code(err), status.Convert(err).Message())
		if status.Code(err) != codes.PermissionDenied || !strings.Contains(status.Convert(err).Message(), "enrolled again") {
			t.Fatalf("the old stream ended with %v, want PermissionDenied saying the device enrolled again", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("A did not end the old key's stream")
	}

	// The new key streams to A and is not ended.
	again.Addr = vA.grpcAddr
	st2, err := again.Connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer st2.Close()
	for seq := uint64(1); seq <= 2; seq++ {
		if m, err := st2.Exchange(protoagent.Sign(again.Key, again.Report(st2.PolicySet, seq, time.Now(), nil, agentv1.PolicyStatus_POLICY_STATUS_PASS))); err != nil || m.GetAck().GetSeq() != seq {
			t.Fatalf("the new key's report %d at A: %v %v", seq, m, err)
		}
	}
	tl.log("the new key's stream on A reports seqs 1 and 2")
	replicaLog(t, vA.logs, "A saying why it ended the stream", "stream ended", "reason=key_replaced")

	// Revoked at B, the device's stream on A ends at once too, not at its
	// next report.
	ended = st2.Ended()
	admin, actx := vB.admin()
	revokedAt := time.Now()
	if _, err := admin.RevokeDevice(actx, &adminv1.RevokeDeviceRequest{DeviceId: again.DeviceID, Reason: "lost"}); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-ended:
		tl.log("A ended the revoked device's stream %s after B revoked it: %s %q", time.Since(revokedAt).Round(time.Millisecond), status.Code(err), status.Convert(err).Message())
		if status.Code(err) != codes.PermissionDenied || !strings.Contains(status.Convert(err).Message(), "revoked") {
			t.Fatalf("the stream ended with %v, want PermissionDenied saying the device was revoked", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("A did not end the revoked device's stream")
	}
	replicaLog(t, vA.logs, "A saying why it ended the stream", "stream ended", "reason=device_revoked")
}
