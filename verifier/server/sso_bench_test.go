package server_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"

	"github.com/clearance/clearance/internal/oktasim"
	"github.com/clearance/clearance/internal/protoagent"
	"github.com/clearance/clearance/internal/testkit"
	"github.com/clearance/clearance/pkg/presence"
	adminv1 "github.com/clearance/clearance/proto/gen/clearance/admin/v1"
	agentv1 "github.com/clearance/clearance/proto/gen/clearance/agent/v1"
	"github.com/clearance/clearance/verifier/admin"
	"github.com/clearance/clearance/verifier/config"
	"github.com/clearance/clearance/verifier/server"
	"github.com/clearance/clearance/verifier/signin"
	"github.com/clearance/clearance/verifier/storage"
)

// browsersPerProc is how many browsers sign in at once per GOMAXPROCS. A
// sign-in waits for its decision's fsync, and on a disk whose fsync takes
// milliseconds one browser per CPU leaves the CPUs idle meanwhile: the
// rate measured is then the disk's latency, not what the verifier can
// serve. Four per CPU keep the CPUs busy and let the group commit share
// fsyncs, as many users signing in at once do; an IdP with nothing to wait
// for (the crewjam peer) only queues them, which shows in its p99, not its
// rate.
const browsersPerProc = 4

// BenchmarkSSO is one allowed sign-in through the real SSO listener: an
// Okta-signed Redirect-binding AuthnRequest, GET /saml/sso over HTTPS with
// the device's client certificate on a kept-alive loopback connection, and
// the auto-POST page with the signed response read to the end. Measured:
// the verifier's whole handler (decode, verify Okta's signature, replay
// slot, identify the certificate, decide from the stored report, record the
// decision, sign Response and Assertion, render) plus the client's HTTP and
// TLS work on the same cores. Not measured: building and signing the
// requests, which Okta does (they are made before timing), and TLS
// handshakes (one per browser, before timing). The report is fresh for the
// whole run (the server's clock stands still), so no live checks are made.
func BenchmarkSSO(b *testing.B) {
	benchSSO(b, agentv1.PolicyStatus_POLICY_STATUS_PASS, http.StatusOK, "SAMLResponse")
}

// BenchmarkSSODeny is BenchmarkSSO for a Mac failing its policies: the 403
// remediation page, with the sign-in held for "Check again".
func BenchmarkSSODeny(b *testing.B) {
	benchSSO(b, agentv1.PolicyStatus_POLICY_STATUS_FAIL, http.StatusForbidden, "policy_failed")
}

// BenchmarkSSOPresence is BenchmarkSSO bound by the agent's proof of
// presence instead of a certificate: GET /saml/sso (303 to the agent), the
// agent's statement signed with the device key (in process: on a Mac it is
// the agent's work, on this machine it shares the cores), GET /saml/presence
// with the browser's cookie (verify the statement, use the challenge), then
// the same decision and signed response.
func BenchmarkSSOPresence(b *testing.B) {
	benchSSOWith(b, agentv1.PolicyStatus_POLICY_STATUS_PASS, http.StatusOK, "SAMLResponse", true)
}

// BenchmarkSSOPeople is BenchmarkSSOPresence with the people checks on:
// the user provisioned over SCIM (--scim-users required), in a group a
// policy is scoped to, and assigned to the Mac under --user-binding
// enforce, so each sign-in also reads the user, their groups and the
// Mac's assignments.
func BenchmarkSSOPeople(b *testing.B) {
	benchSSOWith(b, agentv1.PolicyStatus_POLICY_STATUS_PASS, http.StatusOK, "SAMLResponse", true, true)
}

func benchSSO(b *testing.B, status agentv1.PolicyStatus, wantStatus int, want string) {
	benchSSOWith(b, status, wantStatus, want, false)
}

func benchSSOWith(b *testing.B, status agentv1.PolicyStatus, wantStatus int, want string, proof bool, people ...bool) {
	e := startSSOBench(b, len(people) > 0 && people[0])
	b.SetParallelism(browsersPerProc)
	n := browsersPerProc * runtime.GOMAXPROCS(0) // RunParallel's goroutine count
	browsers := make([]*benchBrowser, n)
	for i := range browsers {
		browsers[i] = e.browser(b, status, proof)
	}
	reqs, urls := e.requests(b, n+b.N)

	// One sign-in per browser opens its connection; the first response is
	// checked as Okta would check it, so the benchmark measures sign-ins
	// that work.
	asBrowser() // the warm-up dials each browser's connection
	var buf bytes.Buffer
	for i, c := range browsers {
		code, err := c.signIn(e, urls[i], &buf)
		if err != nil || code != wantStatus || !bytes.Contains(buf.Bytes(), []byte(want)) {
			b.Fatalf("warm-up sign-in: status %d (want %d), err %v:\n%.2000s", code, wantStatus, err, buf.String())
		}
		if i == 0 && wantStatus == http.StatusOK {
			_, resp, _, err := oktasim.ParsePostForm(buf.Bytes())
			if err != nil {
				b.Fatal(err)
			}
			if _, err := e.sp.Validate(resp, reqs[0].ID); err != nil {
				b.Fatalf("Okta refuses the response: %v", err)
			}
		}
	}
	b.ReportAllocs()
	latencies, cpu := timeSignIns(b, browsers, urls[n:], func(c *benchBrowser, u string, buf *bytes.Buffer) (int, error) { return c.signIn(e, u, buf) },
		wantStatus, want)
	// What was measured is what was meant: decisions from stored reports.
	ds, err := e.srv.Store.ListDecisions(context.Background(), storage.DecisionFilter{Limit: 1})
	wantBinding := map[bool]string{true: "agent", false: "certificate"}[proof]
	if err != nil || len(ds) != 1 || ds[0].Allow != (wantStatus == http.StatusOK) || ds[0].LiveCheck != "none" || ds[0].Binding != wantBinding {
		b.Fatalf("last decision %+v, %v; want allow=%v without a live check, bound by %s", ds, err, wantStatus == http.StatusOK, wantBinding)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "decisions/s")
	b.ReportMetric(ms(percentile(latencies, 0.50)), "p50-ms")
	b.ReportMetric(ms(percentile(latencies, 0.99)), "p99-ms")
	b.ReportMetric(float64(n), "browsers")
	// The process's CPU (verifier and browsers) per sign-in, and each
	// side's: on a shared machine, steadier than the rate.
	cpu.report(b)
}

// get fetches u with c, reading the whole page into buf.
func get(c *http.Client, u string, buf *bytes.Buffer) (int, error) {
	buf.Reset()
	resp, err := c.Get(u)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, err = io.Copy(buf, resp.Body)
	return resp.StatusCode, err
}

// percentile is the nearest-rank p-quantile of sorted ds.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted))*p+0.999999) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// ssoBench is a verifier configured for an Okta org that signs its
// requests, and that org. It mirrors startSSO (signed) for a *testing.B:
// the harness takes a *testing.T.
type ssoBench struct {
	now     func() time.Time
	srv     *server.Server
	sp      *oktasim.SP
	url     string // the real address of the SSO listener
	rootPEM []byte
	token   string
	admin   adminv1.AdminServiceClient
	// bindTo, when set, is the user every new browser's Mac is assigned to.
	bindTo string
}

func startSSOBench(b *testing.B, people bool, edit ...func(*config.Config)) *ssoBench {
	b.Helper()
	ctx := context.Background()
	dir := b.TempDir()
	pol, err := os.ReadFile("../../examples/policies.yaml")
	if err != nil {
		b.Fatal(err)
	}
	if people {
		pol = append(pol, "\n  - id: engineering-only\n    name: Engineering check\n    query: SELECT 1\n    groups: [Engineering]\n    exclude_groups: [Contractors]\n"...)
	}
	policies := filepath.Join(dir, "policies.yaml")
	oktaPEM := filepath.Join(dir, "okta.pem")
	oktaKey, oktaCert := rsaIdentity(b, "Okta request signing")
	if err := os.WriteFile(policies, pol, 0o600); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(oktaPEM, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: oktaCert.Raw}), 0o644); err != nil {
		b.Fatal(err)
	}
	cfg := baseConfig(filepath.Join(dir, "data"), policies)
	cfg.OktaAudience, cfg.OktaACSURLs, cfg.OktaRequestCert = testAudience, []string{testACS}, oktaPEM
	// A browser with a certificate uses it; one without proves its Mac
	// with the agent's statement: both bindings from one configuration.
	cfg.BrowserBinding = config.BindingEither
	if people {
		cfg.SCIMUsers, cfg.UserBinding, cfg.UserBindingRule = config.SCIMRequired, config.UserBindingEnforce, "email-local-part"
	}
	for _, f := range edit {
		f(cfg)
	}
	// The clock stands still: every report and request stays fresh however
	// long the run. Logs are formatted, as in production, then dropped.
	clk := &clock{t: time.Now().UTC()}
	srv := runBenchServer(b, cfg, server.WithClock(clk.Now))

	e := &ssoBench{now: clk.Now, srv: srv, url: "https://" + srv.SSOAddr.String(), rootPEM: srv.CA.RootPEM()}
	if people {
		at, audit := clk.Now(), storage.AuditEvent{At: clk.Now(), Actor: "bench", Action: "user.create"}
		u, err := srv.Store.CreateUser(ctx, storage.User{ID: "bench-user", UserName: testUser, Active: true, CreatedAt: at, UpdatedAt: at}, audit)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := srv.Store.CreateGroup(ctx, storage.Group{ID: "bench-group", DisplayName: "Engineering", Members: []string{u.ID},
			CreatedAt: at, UpdatedAt: at}, audit); err != nil {
			b.Fatal(err)
		}
		e.bindTo = u.ID
	}
	tok, err := os.ReadFile(filepath.Join(cfg.DataDir, admin.TokenFile))
	if err != nil {
		b.Fatal(err)
	}
	e.token = strings.TrimSpace(string(tok))
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(e.rootPEM)
	conn, err := grpc.NewClient(srv.GRPCAddr.String(), grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: roots, ServerName: "localhost"})))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { conn.Close() })
	e.admin = adminv1.NewAdminServiceClient(conn)

	idpCert := srv.IdP.CertPEM()
	blk, _ := pem.Decode(idpCert)
	cert, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		b.Fatal(err)
	}
	e.sp = oktasim.New(oktasim.Options{
		EntityID: testAudience, ACSURL: testACS,
		IdPSSOURL: cfg.SSOURL(), IdPIssuer: cfg.MetadataURL(), IdPCert: cert,
		SigningKey: oktaKey, SigningCert: oktaCert, Now: clk.Now,
	})
	return e
}

func (e *ssoBench) ctx(b *testing.B) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	b.Cleanup(cancel)
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+e.token)
}

// benchBrowser is one browser on one kept-alive connection: presenting
// its Mac's certificate, or (proof set) with a cookie jar and the Mac's
// agent to sign its proofs of presence.
type benchBrowser struct {
	client *http.Client
	proof  *protoagent.Agent
}

// signIn follows one sign-in to its page, read into buf.
func (c *benchBrowser) signIn(e *ssoBench, u string, buf *bytes.Buffer) (int, error) {
	if c.proof == nil {
		return get(c.client, u, buf)
	}
	resp, err := c.client.Get(u)
	if err != nil {
		return 0, err
	}
	// Read to the end, as a browser does, so that the connection is kept
	// for the next request: a body closed unread costs a TLS handshake.
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil {
		return 0, err
	}
	if resp.StatusCode != http.StatusSeeOther {
		return resp.StatusCode, fmt.Errorf("sign-in answered %d, not the redirect to the agent", resp.StatusCode)
	}
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil {
		return 0, err
	}
	challenge, ret, err := presence.ParseAgentQuery(loc.RawQuery)
	if err != nil {
		return 0, err
	}
	origin, err := presence.OriginOf(ret)
	if err != nil {
		return 0, err
	}
	raw, sig, err := presence.Sign(c.proof.Key, presence.Statement{Challenge: challenge, DeviceID: c.proof.DeviceID, Origin: origin, Time: e.now().Truncate(time.Second)})
	if err != nil {
		return 0, err
	}
	return get(c.client, e.url+signin.PathPresence+"?"+presence.RedirectQuery(raw, sig), buf)
}

// browser enrolls a Mac, stores a report at status over its stream (kept
// open, as a running agent's is) and returns a browser for it.
func (e *ssoBench) browser(b *testing.B, status agentv1.PolicyStatus, proof bool) *benchBrowser {
	b.Helper()
	sec, err := e.admin.CreateEnrollSecret(e.ctx(b), &adminv1.CreateEnrollSecretRequest{Description: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	a, err := protoagent.New(e.srv.GRPCAddr.String(), e.rootPEM, nextUUID())
	if err != nil {
		b.Fatal(err)
	}
	if _, err := a.Enroll(e.ctx(b), sec.GetSecret()); err != nil {
		b.Fatal(err)
	}
	// The stream of a Mac that proves itself lives as long as the
	// benchmark, however long that is: a browser whose Mac's agent is gone
	// gets the agent-missing page. A Mac that signs in with its
	// certificate has no agent running once it has reported: under
	// --browser-binding either, a certificate whose Mac's agent is
	// connected is sent to that agent instead.
	sctx, cancel := context.WithCancel(context.Background())
	b.Cleanup(cancel)
	st, err := a.Connect(sctx)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(st.Close)
	m, err := st.Exchange(protoagent.Sign(a.Key, a.Report(st.PolicySet, 1, time.Now(), nil, status)))
	if err != nil || m.GetAck() == nil {
		b.Fatalf("report not acked: %v %v", m, err)
	}
	if !proof {
		st.Close()
		testkit.Eventually(b, 10*time.Second, "the agent to be gone", func() bool { return !e.srv.Hub.Connected(a.DeviceID) })
	}
	if e.bindTo != "" {
		if _, err := e.admin.AssignDevice(e.ctx(b), &adminv1.AssignDeviceRequest{DeviceId: a.DeviceID, User: e.bindTo}); err != nil {
			b.Fatal(err)
		}
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(e.rootPEM)
	tc := &tls.Config{RootCAs: roots, ServerName: "localhost"}
	out := &benchBrowser{}
	var jar http.CookieJar
	if proof {
		out.proof = a
		jar, _ = cookiejar.New(nil)
	} else {
		tc.Certificates = []tls.Certificate{*deviceCert(a)}
	}
	tr := &http.Transport{TLSClientConfig: tc, MaxIdleConnsPerHost: 1}
	b.Cleanup(tr.CloseIdleConnections)
	out.client = &http.Client{
		Transport:     tr,
		Jar:           jar,
		Timeout:       30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return out
}

// requests builds n fresh Okta requests for testUser and their signed
// Redirect URLs at the listener's real address, on every CPU.
func (e *ssoBench) requests(b *testing.B, n int) ([]oktasim.Request, []string) {
	b.Helper()
	reqs, urls := make([]oktasim.Request, n), make([]string, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, runtime.GOMAXPROCS(0))
	for range runtime.GOMAXPROCS(0) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int(next.Add(1) - 1); i < n; i = int(next.Add(1) - 1) {
				reqs[i] = e.sp.NewRequest(testUser)
				u, err := e.sp.RedirectURL(reqs[i])
				if err != nil {
					errs <- fmt.Errorf("request %d: %w", i, err)
					return
				}
				urls[i] = e.url + strings.TrimPrefix(u, "https://localhost:8444")
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	if !strings.HasPrefix(urls[0], e.url+signin.PathSSO+"?") {
		b.Fatalf("request URL %.100s is not at the listener", urls[0])
	}
	return reqs, urls
}

// runBenchServer builds a verifier from cfg, runs its actors until the
// benchmark ends, and closes it then; logs are formatted, as in
// production, and dropped.
// Its goroutines, and every one they start, are labelled as the identity
// provider's.
func runBenchServer(b *testing.B, cfg *config.Config, opts ...server.Option) *server.Server {
	b.Helper()
	var srv *server.Server
	onSide(sideIdP, func() { srv = runServer(b, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), opts...) })
	return srv
}
