package loadgen

import (
	"context"
	"math"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/clearance/clearance/verifier/grpcconn"
	"github.com/clearance/clearance/verifier/ratelimit"
)

// verifierBinary builds clearance-verifier for the test, as the e2e tests
// do, so the test never depends on a `make build` left lying around.
func verifierBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "clearance-verifier")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/clearance/clearance/verifier/cmd/clearance-verifier")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building clearance-verifier: %v\n%s", err, out)
	}
	return bin
}

// TestRunAgainstVerifier runs every phase against the real verifier binary
// with 20 agents, once with each agent client (loadgen's own HTTP/2 frames
// and grpc-go's), and checks what a user of the numbers relies on: every
// agent connected and stayed connected, reports were acked, sign-ins from
// passing Macs were allowed and from failing ones denied (checkFirst has
// Okta validate a response), live checks came back, and the verifier's
// RSS was read.
func TestRunAgainstVerifier(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the verifier")
	}
	bin := verifierBinary(t)
	for _, client := range []string{ClientLean, ClientGRPC} {
		t.Run(client, func(t *testing.T) { runAgainstVerifier(t, bin, client) })
	}
}

func runAgainstVerifier(t *testing.T, bin, client string) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	p, err := Start(ctx, StartOptions{Binary: bin, Policies: "../../examples/policies.yaml", LiveCheckAfter: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := p.Stop(); err != nil {
			t.Errorf("verifier stopped with %v", err)
		}
	}()
	res, err := Run(ctx, Config{
		Target: &p.Target, Agents: 20, FailingShare: 0.25, SourceAddrs: 4,
		ReportInterval: 500 * time.Millisecond, Duration: 3 * time.Second,
		Signins: 2, CheckRate: 10, AgentClient: client,
	})
	if err != nil {
		t.Fatalf("run: %v\nverifier log: %s", err, p.LogTail())
	}
	if res.AgentClient != client {
		t.Errorf("result says the %q client, want %q", res.AgentClient, client)
	}
	if res.Connected != 20 || res.Failed != 0 {
		t.Errorf("%d agents connected at the end, %d failed to start; want 20 and 0", res.Connected, res.Failed)
	}
	for name, s := range map[string]Summary{
		"ingest": res.Ingest, "steady acks": res.SteadyIngest, "allowed sign-ins": res.Allow, "allowed sign-ins with the agent's proof": res.AllowAgent,
		"denied sign-ins": res.Deny, "sign-ins at rate": res.SigninsAtRate, "live checks": res.Check,
	} {
		if s.Count == 0 || s.P50 <= 0 || s.P99 < s.P50 {
			t.Errorf("%s: %+v; want some, with 0 < p50 <= p99", name, s)
		}
	}
	for _, kind := range []string{"start", "report", "signin", "check", "okta_request"} {
		if n := res.Errors[kind]; n > 0 {
			t.Errorf("%d %s errors", n, kind)
		}
	}
	if res.RSSBase == 0 || res.RSSConnected == 0 || res.RSS == 0 {
		t.Errorf("verifier RSS %d/%d/%d; want all read", res.RSSBase, res.RSSConnected, res.RSS)
	}
}

// TestHostile is the hostile phase, short, against the real verifier
// binary with its limits at their defaults: the attacks tried before the
// limits existed, each checked by what a user of the verifier would notice
// (rows, bytes, memory, requests refused) — never by how long anything
// took. Unsigned sign-ins naming no Mac, from one address and from a new
// address each, leave no decision rows and no database growth; one address
// without a certificate stores no more challenges than its rate allows,
// and a new address each no more than the bound on unsigned sign-ins from
// every address;
// Watch streams and calls held open without their message are bounded per
// address and per connection, and the RSS they add stays under RSSBound;
// /metrics refuses a scrape without its token; and meanwhile real sign-ins
// (with the agent's proof and with certificates), reports and enrollments
// all succeed.
func TestHostile(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the verifier")
	}
	bin := verifierBinary(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	p, err := Start(ctx, StartOptions{Binary: bin, Policies: "../../examples/policies.yaml", LiveCheckAfter: time.Minute, Hostile: true})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := p.Stop(); err != nil {
			t.Errorf("verifier stopped with %v", err)
		}
	}()
	hc := HostileConfig{Rate: 400, StreamConns: 4, StreamsPerConn: 250, StreamSources: 2,
		HeldSources: 2, HeldConns: 20, HeldCalls: 8, Enrolls: 2, SigninRate: 4}
	res, err := Run(ctx, Config{
		Target: &p.Target, Agents: 6, FailingShare: 0.5, SourceAddrs: 4, ReportInterval: 500 * time.Millisecond,
		Duration: 6 * time.Second, Phases: []string{"hostile"}, Signins: 1, Hostile: hc,
	})
	if err != nil {
		t.Fatalf("run: %v\nverifier log: %s", err, p.LogTail())
	}
	h := res.Hostile
	var kv strings.Builder
	res.WriteKV(&kv)
	t.Logf("figures:\n%s", kv.String())

	// A. Unidentified, unsigned: counted, not stored.
	if h.Unidentified.Sent == 0 || h.UnidentifiedProxied.Sent == 0 {
		t.Fatalf("the unidentified floods got no answers: %+v %+v", h.Unidentified, h.UnidentifiedProxied)
	}
	if h.UnidentifiedRows != 0 {
		t.Errorf("%d decision rows from %d unidentified requests, want none", h.UnidentifiedRows, h.UnidentifiedAll)
	}
	if per := h.UnidentifiedDBBytesPer10k(); per < 0 || per >= 1<<20 {
		t.Errorf("the database grew %d bytes for %d unidentified requests (%d per 10,000), want under 1 MiB per 10,000", h.UnidentifiedDBBytes, h.UnidentifiedAll, per)
	}
	// The limiter answers 429 once an address has sent more than its burst
	// and what its rate refilled; on a busy machine the flood may not get
	// that far, and then every request is a 403.
	if beyond := h.Unidentified.Sent > limiterAllows(h.Unidentified.Seconds); beyond && h.Unidentified.Limited == 0 ||
		h.Unidentified.Refused+h.Unidentified.Limited != h.Unidentified.Sent {
		t.Errorf("one address: %+v; want 403s, and 429s beyond %d", h.Unidentified, limiterAllows(h.Unidentified.Seconds))
	}
	if h.UnidentifiedProxied.Limited != 0 || h.UnidentifiedProxied.Refused != h.UnidentifiedProxied.Sent {
		t.Errorf("a new address each: %+v; want every one refused (403), none limited", h.UnidentifiedProxied)
	}

	// B. One address without a certificate: challenges bounded by its rate.
	maxChallenges := limiterAllows(h.Challenges.Seconds)
	if h.Challenges.Challenged == 0 || h.Challenges.Challenged > maxChallenges || h.Challenges.Sent > maxChallenges && h.Challenges.Limited == 0 {
		t.Errorf("challenge flood: %+v; want at most %d challenges, the rest limited", h.Challenges, maxChallenges)
	}
	// A new address each: never held by an address's limit, but with the
	// one address, by the bound on unsigned sign-ins from every address.
	cp := h.ChallengesProxied
	all, allowed := h.Challenges.Challenged+cp.Challenged, unsignedAllows(max(h.Challenges.Seconds, cp.Seconds))
	if cp.Challenged == 0 || cp.Limited != 0 || all > allowed || cp.Sent-cp.Busy > allowed && cp.Busy == 0 || cp.Challenged+cp.Busy != cp.Sent {
		t.Errorf("challenge flood from a new address each: %+v (and %d from one address); want at most %d challenges in all, the rest busy (503)",
			cp, h.Challenges.Challenged, allowed)
	}

	// C. The gRPC flood holds little.
	if max := grpcconn.MaxLongStreamsPerSource * hc.StreamSources; h.Streams.WatchesHeld > max || h.Streams.Watches != hc.StreamConns*hc.StreamsPerConn {
		t.Errorf("Watch streams: %+v; want at most %d held", h.Streams, max)
	}
	if max := hc.HeldSources * grpcconn.DefaultUnauthenticatedPerSource * grpcconn.DefaultUnauthenticatedStreams; h.Streams.CallsHeld > max || h.Streams.CallsHeld == 0 {
		t.Errorf("held calls: %+v; want some, at most %d (%d addresses × %d connections × %d calls)", h.Streams, max,
			hc.HeldSources, grpcconn.DefaultUnauthenticatedPerSource, grpcconn.DefaultUnauthenticatedStreams)
	}
	if h.RSS == 0 || h.RSSGrowth() > RSSBound {
		t.Errorf("verifier RSS %d before, %d with the flood: +%d, want under %d", h.RSSBefore, h.RSS, h.RSSGrowth(), RSSBound)
	}
	if h.MetricsProbes == 0 || h.MetricsRefused != h.MetricsProbes {
		t.Errorf("/metrics without its token: %d of %d refused", h.MetricsRefused, h.MetricsProbes)
	}
	if h.AttackerRowsC != 0 {
		t.Errorf("%d decision rows from the attacks of window C", h.AttackerRowsC)
	}

	// Meanwhile, the real load works, its sign-ins spread over Macs as an
	// office's are: at most half of each Mac's bucket of unsigned
	// sign-ins, or every passing Mac. The window is too short to spend a
	// bucket (its burst covers it); a longer run's would be spent within
	// seconds by the whole rate on one Mac.
	passing := 0
	for i := range 6 {
		if !failing(i, 0.5) {
			passing++
		}
	}
	if want := min(passing, int(math.Ceil(2*hc.SigninRate/ratelimit.UnsignedPerMacRate))); h.SigninMacs != want {
		t.Errorf("real sign-ins from %d Macs; want %d", h.SigninMacs, want)
	}
	if h.Signins.Count == 0 || h.SigninFailed != 0 || h.Reports.Count == 0 || h.ReportFailed != 0 {
		t.Errorf("real load: %d sign-ins (%d failed), %d reports (%d failed)", h.Signins.Count, h.SigninFailed, h.Reports.Count, h.ReportFailed)
	}
	// Enrollments are spread over the phase: a loaded machine may end it
	// before the last one starts, never with one failed.
	if h.Enrolled == 0 || h.Enrolled > hc.Enrolls || h.EnrollFailed != 0 {
		t.Errorf("%d enrolled, %d failed; want 1 to %d and none failed", h.Enrolled, h.EnrollFailed, hc.Enrolls)
	}
	for _, kind := range []string{"start", "report", "signin", "okta_request", "hostile_request"} {
		if n := res.Errors[kind]; n > 0 {
			t.Errorf("%d %s errors", n, kind)
		}
	}
}

// limiterAllows is how many requests one address may make in seconds under
// the sign-in listener's default limit: its burst and what the rate refills,
// with a request's worth of slack for the clock.
func limiterAllows(seconds float64) int {
	return ratelimit.DefaultBurst + int(ratelimit.DefaultRate*seconds) + 2
}

// unsignedAllows is the most sso-unsigned-rate-limit at its default lets
// start, from every address together, in seconds.
func unsignedAllows(seconds float64) int {
	return ratelimit.UnsignedBurst(ratelimit.DefaultUnsignedRate) + int(ratelimit.DefaultUnsignedRate*seconds) + 2
}
