package server_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"

	"crypto/tls"
	"crypto/x509"

	"github.com/clearance/clearance/internal/protoagent"
	"github.com/clearance/clearance/internal/testkit"
	"github.com/clearance/clearance/pkg/run"
	adminv1 "github.com/clearance/clearance/proto/gen/clearance/admin/v1"
	agentv1 "github.com/clearance/clearance/proto/gen/clearance/agent/v1"
	"github.com/clearance/clearance/verifier/admin"
	"github.com/clearance/clearance/verifier/config"
	"github.com/clearance/clearance/verifier/server"
	"github.com/clearance/clearance/verifier/storage/storagetest"
)

// clock is a settable clock shared by the server and the test.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// harness is an in-process verifier on loopback with a settable clock.
type harness struct {
	t       *testing.T
	srv     *server.Server
	clock   *clock
	cfg     *config.Config
	addr    string
	rootPEM []byte
	token   string
	admin   adminv1.AdminServiceClient
	logs    *logBuffer
}

// examplePolicies copies examples/policies.yaml to a file the test may rewrite.
func examplePolicies(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("../../examples/policies.yaml")
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "policies.yaml")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func start(t *testing.T) *harness { t.Helper(); return startWith(t, nil) }

// logBuffer collects the server's log for assertions.
type logBuffer struct{ testkit.Buffer }

// baseConfig is the verifier configuration every in-process test starts
// from: loopback listeners on free ports and the production defaults.
func baseConfig(dataDir, policies string) *config.Config {
	return &config.Config{
		DataDir: dataDir, GRPCListen: "127.0.0.1:0", HTTPListen: "127.0.0.1:0",
		PublicURL: "https://localhost:8443", Policies: policies,
		DeviceCertLifetime: 720 * time.Hour, MaxReportSkew: 5 * time.Minute, ReportHistory: 10,
		LiveCheckTimeout: 5 * time.Second,
		SSOListen:        "127.0.0.1:0", SSOPublicURL: "https://localhost:8444",
		IdPKeyBits: 2048, MaxPostureAge: 5 * time.Minute, LiveCheckAfter: 30 * time.Second,
		MaxRequestSkew: 3 * time.Minute, PendingSignInTTL: 10 * time.Minute, DecisionRetention: 24 * time.Hour,
		BrowserCertLifetime: 365 * 24 * time.Hour, BrowserCertGrace: time.Hour, SCEPRateLimit: 10,
		BrowserBinding: config.BindingAgent, AgentPresencePort: config.DefaultAgentPresencePort,
	}
}

// startWith starts a verifier whose config edit may change first.
func startWith(t *testing.T, edit func(*config.Config)) *harness {
	t.Helper()
	return startLogging(t, edit, slog.LevelInfo)
}

// startWithOptions is startWith with more server options.
func startWithOptions(t *testing.T, edit func(*config.Config), opts ...server.Option) *harness {
	return startLogging(t, edit, slog.LevelInfo, opts...)
}

// startLogging is startWith with the log at level and more server options.
func startLogging(t *testing.T, edit func(*config.Config), level slog.Level, opts ...server.Option) *harness {
	t.Helper()
	cfg := baseConfig(t.TempDir(), examplePolicies(t))
	if edit != nil {
		edit(cfg)
	}
	h := &harness{t: t, cfg: cfg, clock: &clock{t: time.Now().UTC()}, logs: &logBuffer{}}
	var out io.Writer = h.logs
	if testing.Verbose() {
		out = io.MultiWriter(h.logs, os.Stderr)
	}
	log := slog.New(slog.NewTextHandler(out, &slog.HandlerOptions{Level: level}))
	srv := runServer(t, cfg, log, append([]server.Option{server.WithClock(h.clock.Now)}, opts...)...)
	h.srv = srv
	h.addr = srv.GRPCAddr.String()
	h.rootPEM = srv.CA.RootPEM()
	tok, err := os.ReadFile(filepath.Join(cfg.DataDir, admin.TokenFile))
	if err != nil {
		t.Fatal(err)
	}
	h.token = string(tok[:len(tok)-1])
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(h.rootPEM)
	conn, err := grpc.NewClient(h.addr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: roots, ServerName: "localhost"})))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	h.admin = adminv1.NewAdminServiceClient(conn)
	return h
}

// runServer builds a verifier from cfg, runs its actors until the test or
// benchmark ends, and closes it then.
func runServer(tb testing.TB, cfg *config.Config, log *slog.Logger, opts ...server.Option) *server.Server {
	tb.Helper()
	srv, err := server.New(context.Background(), cfg, log, opts...)
	if err != nil {
		tb.Fatal(err)
	}
	var g run.Group
	g.Logger = log
	if err := srv.Actors(&g); err != nil {
		srv.Close()
		tb.Fatal(err)
	}
	stop := make(chan struct{})
	g.Add("test", func() error { <-stop; return nil }, func(error) {})
	done := make(chan error, 1)
	go func() { done <- g.Run() }()
	tb.Cleanup(func() {
		close(stop)
		if err := <-done; err != nil {
			tb.Errorf("server stopped with %v", err)
		}
		srv.Close()
	})
	return srv
}

// ctx returns a context carrying the admin token.
func (h *harness) ctx() context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	h.t.Cleanup(cancel)
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+h.token)
}

func (h *harness) secret() string {
	h.t.Helper()
	resp, err := h.admin.CreateEnrollSecret(h.ctx(), &adminv1.CreateEnrollSecretRequest{Description: "test"})
	if err != nil {
		h.t.Fatal(err)
	}
	return resp.GetSecret()
}

var uuidN int
var uuidMu sync.Mutex

func nextUUID() string {
	uuidMu.Lock()
	defer uuidMu.Unlock()
	uuidN++
	return fmt.Sprintf("00000000-0000-4000-8000-%012d", uuidN)
}

// enrolled returns a new enrolled device.
func (h *harness) enrolled(secret string) *protoagent.Agent {
	h.t.Helper()
	a, err := protoagent.New(h.addr, h.rootPEM, nextUUID())
	if err != nil {
		h.t.Fatal(err)
	}
	if _, err := a.Enroll(h.ctx(), secret); err != nil {
		h.t.Fatal(err)
	}
	return a
}

// connect opens a's stream, which is closed when the test ends.
func (h *harness) connect(a *protoagent.Agent) *protoagent.Stream {
	h.t.Helper()
	st, err := a.Connect(h.ctx())
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(st.Close)
	return st
}

// answerChecks answers every CheckNow on st with report(seq, nonce), seq
// counting on from the stream's first report, until the stream ends.
func answerChecks(st *protoagent.Stream, report func(seq uint64, nonce []byte) *agentv1.SignedReport) {
	st.AnswerChecks(1, report)
}

// streamEnd reads st until it ends, for up to 5 s, and returns the error
// it ended with.
func streamEnd(t *testing.T, st *protoagent.Stream, what string) error {
	t.Helper()
	select {
	case err := <-st.Ended():
		return err
	case <-time.After(5 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
		return nil
	}
}

// metricVector reads the vector name from the registry /metrics serves:
// each series' counter (or, with gauge, gauge) value by its label pairs.
func metricVector(t *testing.T, h *harness, name string, gauge bool) map[string]float64 {
	t.Helper()
	families, err := h.srv.Metrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName()+`="`+l.GetValue()+`"`)
			}
			v := m.GetCounter().GetValue()
			if gauge {
				v = m.GetGauge().GetValue()
			}
			out[strings.Join(labels, ",")] = v
		}
	}
	return out
}

// dump is every row of every table.
func (h *harness) dump() string {
	h.t.Helper()
	d, err := storagetest.Dump(context.Background(), h.srv.Store)
	if err != nil {
		h.t.Fatal(err)
	}
	return d
}
