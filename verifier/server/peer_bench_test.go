package server_test

import (
	"bytes"
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"log"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/crewjam/saml"
	dsig "github.com/russellhaering/goxmldsig"

	"github.com/clearance/clearance/internal/cpustat"
	"github.com/clearance/clearance/internal/oktasim"
	agentv1 "github.com/clearance/clearance/proto/gen/clearance/agent/v1"
	"github.com/clearance/clearance/verifier/config"
	"github.com/clearance/clearance/verifier/idp"
)

// benchRounds is how many times BenchmarkSSOBesidePeer alternates the
// verifier and the peer, so that both see the same moments of a busy
// machine; the table takes the median round.
const benchRounds = 5

// BenchmarkSSOBesidePeer measures the verifier's sign-in beside a peer: a
// plain crewjam/saml identity provider, the library Fleet's SAML is built
// on, configured as Fleet configures it (RSA-2048, RSA-SHA256, Response and
// Assertion both signed) with a session provider that answers at once. The
// same browsers (Go HTTP clients on kept-alive loopback TLS connections)
// bring both the same kind of Okta-signed Redirect-binding request, in
// alternating rounds on the same cores:
//
//	clearance-agent        every check on: Okta's signature, the replay
//	                       record, the agent's proof of presence (its
//	                       statement signed in process), the device, its
//	                       stored posture, a durable decision row, two
//	                       signatures
//	clearance-certificate  the same, the device named by a client certificate
//	crewjam                decode the request (its signature unchecked:
//	                       crewjam cannot check one), two signatures
//	clearance-assertion    clearance-agent on a verifier with --sign
//	                       assertion: one signature, checked as Okta set
//	                       to verify the Assertion would check it
//
// Each round reports sign-ins/s, p50/p99 and the process's CPU per sign-in
// (verifier and browsers together: they share the process), beside the CPU
// and rate of the two RSA signatures every response needs (two-rsa-signs)
// and of the one that --sign assertion needs (one-rsa-sign).
func BenchmarkSSOBesidePeer(b *testing.B) {
	e := startSSOBench(b, false)
	one := startSSOBench(b, false, func(c *config.Config) { c.Sign = idp.SignAssertion })
	peer := startCrewjamPeer(b, e)
	oneOpts := one.sp.Options()
	oneOpts.Signatures = oktasim.RequireAssertion
	oneSP := oktasim.New(oneOpts)
	n := browsersPerProc * runtime.GOMAXPROCS(0)
	agent, cert, crew, oneAgent := make([]*benchBrowser, n), make([]*benchBrowser, n), make([]*benchBrowser, n), make([]*benchBrowser, n)
	for i := range n {
		agent[i] = e.browser(b, agentv1.PolicyStatus_POLICY_STATUS_PASS, true)
		cert[i] = e.browser(b, agentv1.PolicyStatus_POLICY_STATUS_PASS, false)
		crew[i] = &benchBrowser{client: peer.client}
		oneAgent[i] = one.browser(b, agentv1.PolicyStatus_POLICY_STATUS_PASS, true)
	}
	signKey, _ := rsaIdentity(b, "two signatures")
	// signs measures k RSA-2048 PKCS#1 v1.5 SHA-256 signatures a sign-in,
	// on every CPU, CPU measured as the sign-ins' is.
	signs := func(k int) func(b *testing.B) {
		return func(b *testing.B) {
			digest := sha256.Sum256([]byte("response"))
			cpu0 := cpuTime()
			machine := cpustat.Start()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					for range k {
						if _, err := rsa.SignPKCS1v15(nil, signKey, crypto.SHA256, digest[:]); err != nil {
							b.Error(err)
							return
						}
					}
				}
			})
			b.StopTimer()
			b.ReportMetric(ms(cpuTime()-cpu0)/float64(b.N), "cpu-ms/op")
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "signins/s")
			if c, ok := machine.Cores(); ok {
				b.ReportMetric(c.Steal, "steal-cores")
			}
		}
	}
	type row struct {
		name string
		run  func(b *testing.B, check bool)
	}
	rows := []row{
		{"clearance-agent", func(b *testing.B, check bool) {
			defer e.commitsPerOp(b, len(agent))()
			driveSignIns(b, agent, e.url, func(c *benchBrowser, u string, buf *bytes.Buffer) (int, error) { return c.signIn(e, u, buf) },
				e.requests, check, func(resp, id string) error { _, err := e.sp.Validate(resp, id); return err })
		}},
		{"clearance-certificate", func(b *testing.B, check bool) {
			defer e.commitsPerOp(b, len(cert))()
			driveSignIns(b, cert, e.url, func(c *benchBrowser, u string, buf *bytes.Buffer) (int, error) { return c.signIn(e, u, buf) },
				e.requests, false, nil)
		}},
		{"clearance-assertion", func(b *testing.B, check bool) {
			defer one.commitsPerOp(b, len(oneAgent))()
			driveSignIns(b, oneAgent, one.url, func(c *benchBrowser, u string, buf *bytes.Buffer) (int, error) { return c.signIn(one, u, buf) },
				one.requests, check, func(resp, id string) error { _, err := oneSP.Validate(resp, id); return err })
		}},
		{"crewjam", func(b *testing.B, check bool) {
			driveSignIns(b, crew, peer.url, func(c *benchBrowser, u string, buf *bytes.Buffer) (int, error) { return get(c.client, u, buf) },
				e.requests, check, func(resp, id string) error { _, err := peer.sp.Validate(resp, id); return err })
		}},
	}
	// A round that is not counted first: the first sign-ins of a process
	// pay for its heap, caches and connections growing, and would count
	// against whichever row ran first. Its rows are named apart, so
	// that the table (scripts/bench.sh) and make profile leave them out.
	for _, r := range rows {
		b.Run("warm-up-"+r.name, func(b *testing.B) { r.run(b, true) })
	}
	for round := range benchRounds {
		// The floors: the two signatures both IdPs pay, and the one that
		// --sign assertion pays.
		b.Run("two-rsa-signs", signs(2))
		b.Run("one-rsa-sign", signs(1))
		// Every other round in reverse, so that a machine that speeds up
		// or slows down within a round favours no row.
		for i := range rows {
			r := rows[i]
			if round%2 == 1 {
				r = rows[len(rows)-1-i]
			}
			b.Run(r.name, func(b *testing.B) { r.run(b, false) })
		}
	}
}

// driveSignIns runs b.N sign-ins from browsers at once, each with a fresh
// request made by requests (before timing) and moved to base, and reports
// their rate, latency and CPU. With check, the first response is checked
// as Okta would check it, so that what is measured is sign-ins that work.
func driveSignIns(b *testing.B, browsers []*benchBrowser, base string,
	signIn func(*benchBrowser, string, *bytes.Buffer) (int, error),
	requests func(*testing.B, int) ([]oktasim.Request, []string),
	check bool, validate func(resp, id string) error) {
	asBrowser() // the warm-up dials each browser's connection
	n := len(browsers)
	reqs, urls := requests(b, n+b.N)
	for i := range urls {
		urls[i] = base + urls[i][strings.Index(urls[i], "/saml/sso"):]
	}
	var buf bytes.Buffer
	for i, c := range browsers {
		code, err := signIn(c, urls[i], &buf)
		if err != nil || code != http.StatusOK || !bytes.Contains(buf.Bytes(), []byte("SAMLResponse")) {
			b.Fatalf("warm-up sign-in: status %d, err %v:\n%.2000s", code, err, buf.String())
		}
		if i == 0 && check {
			_, resp, _, err := oktasim.ParsePostForm(buf.Bytes())
			if err == nil {
				err = validate(resp, reqs[0].ID)
			}
			if err != nil {
				b.Fatalf("Okta refuses the response: %v", err)
			}
		}
	}
	latencies, cpu := timeSignIns(b, browsers, urls[n:], signIn, http.StatusOK, "SAMLResponse")
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "signins/s")
	b.ReportMetric(ms(percentile(latencies, 0.50)), "p50-ms")
	b.ReportMetric(ms(percentile(latencies, 0.99)), "p99-ms")
	cpu.report(b)
}

// cpuUse is the CPU a run of sign-ins used: the process's, and the part
// of it on each side when a profile could be taken to split it.
type cpuUse struct {
	total time.Duration
	sides map[string]time.Duration // nil: not split
	// machine is the cores left idle, idle waiting for a disk write, and
	// given by the hypervisor to other guests meanwhile (machineOK false
	// where the kernel does not say).
	machine   cpustat.Cores
	machineOK bool
}

// report reports the CPU per sign-in: the process's (cpu-ms/op), and the
// identity provider's outside its RSA signatures (idp-cpu-ms/op), in them,
// the browsers' and the runtime's own (the background garbage collector,
// made by both).
func (c cpuUse) report(b *testing.B) {
	b.ReportMetric(ms(c.total)/float64(b.N), "cpu-ms/op")
	if c.machineOK {
		b.ReportMetric(c.machine.Steal, "steal-cores")
		b.ReportMetric(c.machine.Idle+c.machine.IOWait, "idle-cores")
		b.ReportMetric(c.machine.IOWait, "iowait-cores")
	}
	if c.sides == nil {
		return
	}
	b.ReportMetric(ms(c.sides[sideIdP])/float64(b.N), "idp-cpu-ms/op")
	b.ReportMetric(ms(c.sides[sideIdPSigning])/float64(b.N), "idp-sign-cpu-ms/op")
	b.ReportMetric(ms(c.sides[sideBrowser])/float64(b.N), "browser-cpu-ms/op")
	b.ReportMetric(ms(c.sides[""])/float64(b.N), "runtime-cpu-ms/op")
}

// timeSignIns runs b.N sign-ins, one for each of urls, from browsers at
// once, each expected to answer wantStatus with want in the page. It
// returns their latencies, sorted, and the CPU the process used meanwhile.
// The browsers' goroutines, and those they start, are labelled as theirs.
func timeSignIns(b *testing.B, browsers []*benchBrowser, urls []string,
	signIn func(*benchBrowser, string, *bytes.Buffer) (int, error), wantStatus int, want string) ([]time.Duration, cpuUse) {
	n := len(browsers)
	var (
		next, who atomic.Int64
		mu        sync.Mutex
		latencies = make([]time.Duration, 0, b.N)
	)
	// The requests were built (and signed) after the testing package's
	// own collection: their garbage is collected now, not in the timed
	// sign-ins of whichever row comes next.
	runtime.GC()
	prof := startSideProfile()
	cpu0 := cpuTime()
	machine := cpustat.Start()
	// One goroutine a browser: RunParallel starts parallelism×GOMAXPROCS,
	// and the testing package sets parallelism back to 1 before every run
	// of every benchmark, sub-benchmarks included.
	b.SetParallelism(max(1, n/runtime.GOMAXPROCS(0)))
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		asBrowser()
		c := browsers[int(who.Add(1)-1)%n]
		var buf bytes.Buffer
		mine := make([]time.Duration, 0, b.N/n+1)
		defer func() {
			mu.Lock()
			latencies = append(latencies, mine...)
			mu.Unlock()
		}()
		for pb.Next() {
			u := urls[next.Add(1)-1]
			t0 := time.Now()
			code, err := signIn(c, u, &buf)
			mine = append(mine, time.Since(t0))
			if err != nil || code != wantStatus || !bytes.Contains(buf.Bytes(), []byte(want)) {
				b.Errorf("sign-in: status %d (want %d), err %v:\n%.2000s", code, wantStatus, err, buf.String())
				return
			}
		}
	})
	b.StopTimer()
	cpu := cpuUse{total: cpuTime() - cpu0}
	cpu.machine, cpu.machineOK = machine.Cores()
	if prof != nil {
		sides, err := prof.stop()
		if err != nil {
			b.Fatal(err)
		}
		cpu.sides = sides
	}
	slices.Sort(latencies)
	return latencies, cpu
}

// cpuTime is the CPU this process has used, user and system.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// crewjamPeer is the peer identity provider on a loopback TLS listener, a
// client for it, and an Okta that trusts it.
type crewjamPeer struct {
	url    string
	client *http.Client
	sp     *oktasim.SP
}

// spProvider knows one service provider: Okta, posting to its ACS.
type spProvider struct{ md *saml.EntityDescriptor }

func (p spProvider) GetServiceProvider(_ *http.Request, id string) (*saml.EntityDescriptor, error) {
	if id != p.md.EntityID {
		return nil, os.ErrNotExist
	}
	return p.md, nil
}

// atOnce is a session provider that answers at once, as a signed-in user's
// session would.
type atOnce struct{}

func (atOnce) GetSession(http.ResponseWriter, *http.Request, *saml.IdpAuthnRequest) *saml.Session {
	return &saml.Session{ID: "bench", NameID: testUser, NameIDFormat: string(saml.EmailAddressNameIDFormat), UserEmail: testUser}
}

func startCrewjamPeer(b *testing.B, e *ssoBench) *crewjamPeer {
	b.Helper()
	key, cert := rsaIdentity(b, "crewjam peer")
	// The peer's idea of now is the verifier's, which stands still for the
	// run, so requests made at its start stay fresh for crewjam too.
	prevNow := saml.TimeNow
	saml.TimeNow = e.now
	b.Cleanup(func() { saml.TimeNow = prevNow })
	ssoURL, err := url.Parse(e.sp.Options().IdPSSOURL)
	if err != nil {
		b.Fatal(err)
	}
	metadataURL, _ := url.Parse("https://peer.invalid/metadata")
	idp := &saml.IdentityProvider{
		Key: key, Certificate: cert,
		Logger:      log.New(discard{}, "", 0),
		MetadataURL: *metadataURL, SSOURL: *ssoURL,
		SignatureMethod: dsig.RSASHA256SignatureMethod,
		SessionProvider: atOnce{},
		ServiceProviderProvider: spProvider{md: &saml.EntityDescriptor{
			EntityID: testAudience,
			SPSSODescriptors: []saml.SPSSODescriptor{{
				AssertionConsumerServices: []saml.IndexedEndpoint{{Binding: saml.HTTPPostBinding, Location: testACS, Index: 1}},
			}},
		}},
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(idp.ServeSSO))
	srv.EnableHTTP2 = false // as the verifier's browsers speak: HTTP/1.1 on one kept-alive connection
	onSide(sideIdP, srv.StartTLS)
	b.Cleanup(srv.Close)
	tr := srv.Client().Transport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = runtime.GOMAXPROCS(0) * browsersPerProc
	b.Cleanup(tr.CloseIdleConnections)
	opts := e.sp.Options()
	opts.IdPIssuer, opts.IdPCert = metadataURL.String(), cert
	return &crewjamPeer{
		url:    srv.URL,
		client: &http.Client{Transport: tr, Timeout: 30 * time.Second},
		sp:     oktasim.New(opts),
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// commitsPerOp reports, when the returned func runs, the transactions the
// store's group commit made per sign-in since commitsPerOp was called
// (commits/op), how many of them were lazy (lazy-commits/op), and the
// fsyncs of its log (fsyncs/op): b.N sign-ins and one warm-up sign-in for
// each of the row's browsers. A store without a group commit reports
// nothing.
func (e *ssoBench) commitsPerOp(b *testing.B, browsers int) func() {
	c, ok := e.srv.Store.(interface {
		Commits() (all, lazy int64)
		Syncs() int64
	})
	if !ok {
		return func() {}
	}
	all0, lazy0 := c.Commits()
	syncs0 := c.Syncs()
	return func() {
		all, lazy := c.Commits()
		n := float64(b.N + browsers)
		b.ReportMetric(float64(all-all0)/n, "commits/op")
		b.ReportMetric(float64(lazy-lazy0)/n, "lazy-commits/op")
		b.ReportMetric(float64(c.Syncs()-syncs0)/n, "fsyncs/op")
	}
}
