package loadgen

import (
	"bytes"
	"compress/flate"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"database/sql"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"math"
	"math/big"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"
	_ "modernc.org/sqlite" // reads the size of the verifier's SQLite database

	"github.com/clearance/clearance/internal/rawh2"
	adminv1 "github.com/clearance/clearance/proto/gen/clearance/admin/v1"
	agentv1 "github.com/clearance/clearance/proto/gen/clearance/agent/v1"
	"github.com/clearance/clearance/verifier/grpcconn"
	"github.com/clearance/clearance/verifier/ratelimit"
)

// The hostile phase replays the attacks tried against a real verifier on
// loopback before it had limits, and measures what each now costs it,
// while real sign-ins, agent reports and an enrollment go on:
//
//	A (3/10 of the phase)  sign-in requests that name no Mac: unsigned,
//	    a 500-byte username and a 256-byte request ID of the sender's
//	    choosing, a certificate no CA of the verifier issued; half from one
//	    address, half through a proxy the verifier trusts, each with a new
//	    client address in X-Forwarded-For (a botnet). Before: a decision row
//	    each. Measured: decision rows, database growth.
//	B (2/10)  sign-in requests without a certificate, each of which
//	    stores a sign-in challenge (unsigned requests allowed): half from one
//	    address, half through the trusted proxy with a new client address
//	    each. Before: 320 rows a second from one address, and from many
//	    addresses as many as they sent. Measured: challenges stored, growth.
//	C (5/10)  health Watch streams, StreamConns connections of
//	    StreamsPerConn each, with no certificate or token (before: all
//	    accepted, +360 MB); calls held open with all but the last byte of
//	    the largest message such a connection may send (before: 512 KiB
//	    each, +436 MB), filling the unauthenticated connections; both
//	    floods again; and /metrics
//	    without its token. Meanwhile the real load: sign-ins with the
//	    agent's proof and with certificates, reports at the interval, and
//	    agents enrolling. Measured: the verifier's RSS, what the attacker
//	    holds, the real load's latencies and failures.
//
// Windows A and B carry no real load, so that what the database grows by
// is the attack's alone.

// Attackers' source addresses: loopback (Linux routes all of 127/8 on lo),
// apart from 127.0.0.1-16, which the simulated Macs and browsers use.
const (
	// HostileProxy is the proxy the verifier trusts in the hostile phase
	// (Start passes it as --trusted-proxies).
	HostileProxy    = "127.0.1.2"
	hostileDirect   = "127.0.1.1"
	hostileNoCert   = "127.0.1.3"
	hostileStreams  = "127.0.1.16" // and up, one per StreamSources
	hostileHeldBase = "127.0.2.1"  // and up, one per HeldSources
)

// RSSBound is the verifier's documented bound on what the hostile phase's
// gRPC flood may add to its RSS (docs/threat-model.md): every
// unauthenticated connection the defaults allow, held with its calls open,
// measured at about 30 MiB, plus the garbage of refusing 50,000 streams
// and of the sign-in floods running meanwhile.
const RSSBound = 64 << 20

// hostileUserPrefix starts every username the attacker writes.
const hostileUserPrefix = "zz-hostile-"

// HostileConfig sizes the hostile phase; zero fields take the defaults
// that replay the attacks as they were tried.
type HostileConfig struct {
	// Rate is the sign-in requests a second of each HTTP flood (default
	// 1000).
	Rate float64
	// The Watch flood: StreamConns connections (default 50) from
	// StreamSources addresses (5), StreamsPerConn streams each (1000).
	StreamConns, StreamsPerConn, StreamSources int
	// The held calls: HeldSources addresses (12), HeldConns connections
	// each (16), HeldCalls calls each (8).
	HeldSources, HeldConns, HeldCalls int
	// Enrolls is how many agents enroll during window C (5).
	Enrolls int
	// SigninRate is the real sign-ins a second in window C (10).
	SigninRate float64
}

func (h *HostileConfig) fill() {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	if h.Rate <= 0 {
		h.Rate = 1000
	}
	def(&h.StreamConns, 50)
	def(&h.StreamsPerConn, 1000)
	def(&h.StreamSources, 5)
	def(&h.HeldSources, 12)
	def(&h.HeldConns, 16)
	def(&h.HeldCalls, 8)
	def(&h.Enrolls, 5)
	if h.SigninRate <= 0 {
		h.SigninRate = 10
	}
}

// HTTPFlood is what one flood of sign-in requests got.
type HTTPFlood struct {
	Sent       int // requests answered
	Limited    int // 429: over the address's rate limit
	Refused    int // 403: a page saying the Mac is unknown; nothing stored
	Challenged int // 303 to the agent: a sign-in challenge stored
	Busy       int // 503: over the bound on unsigned sign-ins from every address
	Other      int // any other answer
	Failed     int // no answer (a connection error)
	Dropped    int // not sent: every worker was busy
	Seconds    float64
}

// Rate is the requests answered a second.
func (f HTTPFlood) Rate() float64 {
	if f.Seconds <= 0 {
		return 0
	}
	return float64(f.Sent) / f.Seconds
}

func (f *HTTPFlood) add(o HTTPFlood) {
	f.Sent += o.Sent
	f.Limited += o.Limited
	f.Refused += o.Refused
	f.Challenged += o.Challenged
	f.Busy += o.Busy
	f.Other += o.Other
	f.Failed += o.Failed
	f.Dropped += o.Dropped
	f.Seconds = max(f.Seconds, o.Seconds)
}

// StreamFlood is what the attacker got of the gRPC listener.
type StreamFlood struct {
	// Conns were opened; Closed of them by the verifier (or refused at
	// connect) by the end.
	Conns, Closed int
	// Watch streams asked for, answered with SERVING, refused (a status or
	// a reset).
	Watches, WatchesHeld, WatchesRefused int
	// Held calls asked for, refused, and held at the end (on connections
	// still open).
	Calls, CallsRefused, CallsHeld int
}

// Hostile is what the hostile phase measured. Byte and RSS figures are -1
// or 0 when unknown (no SQLite data dir, no pid).
type Hostile struct {
	Unidentified, UnidentifiedProxied HTTPFlood
	UnidentifiedRows                  int   // decision rows written in window A
	UnidentifiedDBBytes               int64 // what the database grew by in window A
	UnidentifiedSeconds               float64

	// Challenges came from one address, ChallengesProxied from a new
	// address each; ChallengeDBBytes is what the database grew by with both.
	Challenges, ChallengesProxied HTTPFlood
	ChallengeDBBytes              int64

	Streams         StreamFlood
	RSSBefore, RSS  uint64 // before the stream flood, and with it held
	FloodsC         HTTPFlood
	AttackerRowsC   int // decision rows in window C that are not the real sign-ins'
	Signins         Summary
	Reports         Summary
	Enrolled        int
	EnrollFailed    int
	MetricsProbes   int
	MetricsRefused  int
	SigninFailed    int
	SigninMacs      int // the Macs the real sign-ins came from
	ReportFailed    int
	CSeconds        float64
	UnidentifiedAll int // requests of window A answered, both floods
}

// hostile runs the phase for d.
func (r *run) hostile(ctx context.Context, d time.Duration) (*Hostile, error) {
	hc := r.cfg.Hostile
	hc.fill()
	out := &Hostile{}
	pad := func(n int) string {
		b := make([]byte, n)
		for i := range b {
			b[i] = "abcdefghijklmnopqrstuvwxyz0123456789"[mrand.IntN(36)]
		}
		return string(b)
	}
	// Each request: a new 256-byte ID and a 500-byte username. Deflate
	// writers are reused: a new one for each of a thousand requests a
	// second would make loadgen, not the verifier, the bottleneck.
	var deflaters sync.Pool
	request := func() (string, error) {
		req := r.sp.NewRequest(hostileUserPrefix + pad(500-len(hostileUserPrefix)))
		req.ID = "_" + pad(255)
		var buf bytes.Buffer
		w, _ := deflaters.Get().(*flate.Writer)
		if w == nil {
			var err error
			if w, err = flate.NewWriter(&buf, flate.BestSpeed); err != nil {
				return "", err
			}
		} else {
			w.Reset(&buf)
		}
		defer deflaters.Put(w)
		if _, err := w.Write(r.sp.RequestXML(req)); err != nil {
			return "", err
		}
		if err := w.Close(); err != nil {
			return "", err
		}
		// As Okta's HTTP-Redirect binding has it (oktasim.SP.RedirectURL).
		q := "SAMLRequest=" + url.QueryEscape(base64.StdEncoding.EncodeToString(buf.Bytes()))
		if req.RelayState != "" {
			q += "&RelayState=" + url.QueryEscape(req.RelayState)
		}
		return r.sp.Options().IdPSSOURL + "?" + q, nil
	}
	junk, err := selfSigned()
	if err != nil {
		return nil, err
	}
	direct, err := r.floodClient(hostileDirect, &junk)
	if err != nil {
		return nil, err
	}
	proxied, err := r.floodClient(HostileProxy, &junk)
	if err != nil {
		return nil, err
	}
	noCert, err := r.floodClient(hostileNoCert, nil)
	if err != nil {
		return nil, err
	}
	noCertProxied, err := r.floodClient(HostileProxy, nil)
	if err != nil {
		return nil, err
	}
	defer func() {
		for _, c := range []*http.Client{direct, proxied, noCert, noCertProxied} {
			c.CloseIdleConnections()
		}
	}()
	// The real load's browsers are made, and each has signed in once,
	// before the floods: a proof browser's first sign-in shows no Mac (its
	// device hint comes with it), and would spend the bucket the floods
	// empty.
	office, err := r.officeBrowsers(ctx, hc.SigninRate)
	defer func() {
		for _, b := range office {
			b.client.CloseIdleConnections()
		}
	}()
	if err != nil {
		return nil, err
	}
	var xffN atomic.Uint32
	// A new client address each request, from 198.18.0.0/15 (set aside for
	// benchmarks): 131,072 of them before they repeat.
	xff := func() string {
		n := xffN.Add(1) % (1 << 17)
		return netip.AddrFrom4([4]byte{198, 18 + byte(n>>16), byte(n >> 8), byte(n)}).String()
	}

	// A. Requests that name no Mac, the real load paused.
	a := d * 3 / 10
	size0, _ := dbSize(r.cfg.Target.DataDir)
	t0 := time.Now()
	floods := runFloods(ctx, a,
		func(ctx context.Context, d time.Duration) HTTPFlood {
			return r.httpFlood(ctx, d, hc.Rate/2, direct, request, nil)
		},
		func(ctx context.Context, d time.Duration) HTTPFlood {
			return r.httpFlood(ctx, d, hc.Rate/2, proxied, request, xff)
		})
	out.Unidentified, out.UnidentifiedProxied = floods[0], floods[1]
	out.UnidentifiedSeconds = time.Since(t0).Seconds()
	out.UnidentifiedAll = out.Unidentified.Sent + out.UnidentifiedProxied.Sent
	// The real load's first sign-ins, just before, are within the count's
	// margin: its rows are told apart by their user.
	total, sim, err := r.decisionRows(ctx, t0, time.Now())
	if err != nil {
		return nil, err
	}
	out.UnidentifiedRows = total - sim
	size1, ok := dbSize(r.cfg.Target.DataDir)
	out.UnidentifiedDBBytes = -1
	if ok {
		out.UnidentifiedDBBytes = size1 - size0
	}
	r.log.Info("hostile: unidentified flood", "answered", out.UnidentifiedAll, "attacker_rows", out.UnidentifiedRows, "real_load_rows", sim, "db_bytes", out.UnidentifiedDBBytes)

	// B. Requests without a certificate: each allowed one stores a
	// challenge. One address is held by its own limit; a new address each
	// only by the bound on unsigned sign-ins from every address, which
	// both share.
	b := d * 2 / 10
	size0, _ = dbSize(r.cfg.Target.DataDir)
	floods = runFloods(ctx, b,
		func(ctx context.Context, d time.Duration) HTTPFlood {
			return r.httpFlood(ctx, d, hc.Rate/2, noCert, request, nil)
		},
		func(ctx context.Context, d time.Duration) HTTPFlood {
			return r.httpFlood(ctx, d, hc.Rate/2, noCertProxied, request, xff)
		})
	out.Challenges, out.ChallengesProxied = floods[0], floods[1]
	size1, ok = dbSize(r.cfg.Target.DataDir)
	out.ChallengeDBBytes = -1
	if ok {
		out.ChallengeDBBytes = size1 - size0
	}
	r.log.Info("hostile: challenge flood", "answered", out.Challenges.Sent+out.ChallengesProxied.Sent,
		"challenges", out.Challenges.Challenged+out.ChallengesProxied.Challenged)

	// C. Everything at once, and the real load.
	c := d - a - b
	if r.cfg.Target.PID != 0 {
		out.RSSBefore, _ = RSS(r.cfg.Target.PID)
	}
	cStart := time.Now()
	sf, conns := r.streamFlood(ctx, hc)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	out.Streams = sf
	if r.cfg.Target.PID != 0 {
		out.RSS, _ = RSS(r.cfg.Target.PID)
	}
	// Counted as the flood is built; what it still holds at the end of
	// the phase is counted again below (hostile_stream_conns_closed,
	// hostile_calls_held).
	r.log.Info("hostile: stream flood built", "conns", sf.Conns, "closed_so_far", sf.Closed, "watches_held", sf.WatchesHeld, "calls_not_refused", sf.Calls-sf.CallsRefused, "rss_mib", float64(out.RSS)/(1<<20))
	c -= time.Since(cStart)
	if c < time.Second {
		c = time.Second
	}
	var wg sync.WaitGroup
	var floodsC []HTTPFlood
	wg.Add(1)
	go func() { // owned: waited for below
		defer wg.Done()
		floodsC = runFloods(ctx, c,
			func(ctx context.Context, d time.Duration) HTTPFlood {
				return r.httpFlood(ctx, d, hc.Rate/3, direct, request, nil)
			},
			func(ctx context.Context, d time.Duration) HTTPFlood {
				return r.httpFlood(ctx, d, hc.Rate/3, proxied, request, xff)
			},
			func(ctx context.Context, d time.Duration) HTTPFlood {
				return r.httpFlood(ctx, d, hc.Rate/3, noCert, request, nil)
			})
	}()
	tc := time.Now()
	r.realLoad(ctx, c, hc, office, out)
	wg.Wait()
	for _, f := range floodsC {
		out.FloodsC.add(f)
	}
	out.CSeconds = time.Since(tc).Seconds()
	total, sim, err = r.decisionRows(ctx, tc, time.Now())
	if err != nil {
		return nil, err
	}
	out.AttackerRowsC = total - sim
	if r.cfg.Target.PID != 0 {
		if rss, err := RSS(r.cfg.Target.PID); err == nil && rss > out.RSS {
			out.RSS = rss
		}
	}
	// What the stream flood still holds at the end.
	for _, c := range conns {
		if c.Counts().Closed {
			out.Streams.Closed++
		}
	}
	return out, nil
}

// runFloods runs each flood for d at once and returns what each got.
func runFloods(ctx context.Context, d time.Duration, floods ...func(context.Context, time.Duration) HTTPFlood) []HTTPFlood {
	out := make([]HTTPFlood, len(floods))
	var wg sync.WaitGroup
	for i, f := range floods {
		wg.Add(1)
		go func() { // owned: waited for below
			defer wg.Done()
			out[i] = f(ctx, d)
		}()
	}
	wg.Wait()
	return out
}

// floodWorkers bounds one flood's requests in flight.
const floodWorkers = 32

// floodClient is an attacker's HTTPS client from src, presenting cert
// whatever the server asks for (nil: none).
func (r *run) floodClient(src string, cert *tls.Certificate) (*http.Client, error) {
	u, err := url.Parse(r.cfg.Target.SSOURL)
	if err != nil {
		return nil, err
	}
	tc := &tls.Config{RootCAs: r.roots, ServerName: u.Hostname(), MinVersion: tls.VersionTLS12}
	if cert != nil {
		tc.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert, nil }
	}
	d := dialer(netip.MustParseAddr(src))
	return &http.Client{
		Transport: &http.Transport{
			TLSClientConfig: tc,
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				return d.DialContext(ctx, "tcp", r.cfg.Target.SSODial)
			},
			MaxIdleConnsPerHost: floodWorkers,
		},
		Timeout:       10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}, nil
}

// httpFlood sends sign-in requests at rate for d (open loop: a request
// that finds every worker busy is dropped and counted), each built by
// next, with a new X-Forwarded-For from xff when it is set.
func (r *run) httpFlood(ctx context.Context, d time.Duration, rate float64, c *http.Client, next func() (string, error), xff func() string) HTTPFlood {
	var (
		mu  sync.Mutex
		out HTTPFlood
	)
	jobs := make(chan struct{}, floodWorkers)
	elapsed := phaseFor(ctx, d, floodWorkers+1, func(ctx context.Context, i int) {
		if i == floodWorkers {
			pace(ctx, rate, func() bool { return offer(jobs, struct{}{}) }, func() {
				mu.Lock()
				out.Dropped++
				mu.Unlock()
			})
			return
		}
		var buf bytes.Buffer
		for {
			select {
			case <-ctx.Done():
				return
			case <-jobs:
			}
			u, err := next()
			if err != nil {
				r.fail("hostile_request")
				continue
			}
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
			if err != nil {
				r.fail("hostile_request")
				continue
			}
			if xff != nil {
				req.Header.Set("X-Forwarded-For", xff())
			}
			resp, err := c.Do(req)
			if err != nil {
				if ctx.Err() == nil {
					mu.Lock()
					out.Failed++
					mu.Unlock()
				}
				continue
			}
			buf.Reset()
			_, _ = io.Copy(&buf, resp.Body)
			resp.Body.Close()
			mu.Lock()
			out.Sent++
			switch resp.StatusCode {
			case http.StatusTooManyRequests:
				out.Limited++
			case http.StatusForbidden:
				out.Refused++
			case http.StatusSeeOther:
				out.Challenged++
			case http.StatusServiceUnavailable:
				out.Busy++
			default:
				out.Other++
				r.log.Debug("hostile request answered", "status", resp.StatusCode, "body", buf.String()[:min(buf.Len(), 300)])
			}
			mu.Unlock()
		}
	})
	out.Seconds = elapsed.Seconds()
	return out
}

// streamFlood opens the Watch flood and the held calls, waits until the
// verifier has answered what it answers, and returns the counts and the
// connections (the caller closes them).
func (r *run) streamFlood(ctx context.Context, hc HostileConfig) (StreamFlood, []*rawh2.Conn) {
	var (
		out   StreamFlood
		conns []*rawh2.Conn
	)
	tc := &tls.Config{RootCAs: r.roots, ServerName: "localhost", MinVersion: tls.VersionTLS12}
	dial := func(src netip.Addr) *rawh2.Conn {
		out.Conns++
		dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		c, err := rawh2.Dial(dctx, dialer(src), r.cfg.Target.GRPCAddr, tc)
		if err != nil {
			out.Closed++ // closed at once: over a limit
			return nil
		}
		conns = append(conns, c)
		return c
	}
	var watch []*rawh2.Conn
	base := netip.MustParseAddr(hostileStreams)
	for i := range hc.StreamConns {
		src := base
		for range i % hc.StreamSources {
			src = src.Next()
		}
		c := dial(src)
		if c == nil {
			continue
		}
		for range hc.StreamsPerConn {
			if c.Open(rawh2.Watch, "localhost", nil) != nil {
				break
			}
			out.Watches++
		}
		watch = append(watch, c)
	}
	type heldConn struct {
		c      *rawh2.Conn
		opened int
	}
	var held []heldConn
	src := netip.MustParseAddr(hostileHeldBase)
	for range hc.HeldSources {
		for range hc.HeldConns {
			c := dial(src)
			if c == nil {
				continue
			}
			h := heldConn{c: c}
			for range hc.HeldCalls {
				// Each call announces the largest message a connection without
				// a certificate may send, and holds it unfinished: the
				// verifier buffers all of it but a byte.
				if c.OpenPartial(agentv1.AgentService_Enroll_FullMethodName, "localhost", grpcconn.UnauthenticatedMaxMessage) != nil {
					break
				}
				h.opened++
			}
			out.Calls += h.opened
			held = append(held, h)
		}
		src = src.Next()
	}
	wctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	for _, c := range watch {
		c.WaitAnswered(wctx, hc.StreamsPerConn)
	}
	// Held calls are answered only to be refused, and a connection the
	// verifier closed is seen closed a moment later: wait until the
	// refusals and the connections closed stop changing.
	last := -1
	for range 50 {
		n := 0
		for _, h := range held {
			cs := h.c.Counts()
			n += cs.Refused
			if cs.Closed {
				n += 1 << 20
			}
		}
		for _, c := range watch {
			if c.Counts().Closed {
				n += 1 << 20
			}
		}
		if n == last {
			break
		}
		last = n
		select {
		case <-time.After(200 * time.Millisecond):
		case <-ctx.Done():
		}
	}
	for _, c := range watch {
		cs := c.Counts()
		out.WatchesRefused += cs.Refused
		if !cs.Closed {
			out.WatchesHeld += cs.Accepted
		}
	}
	for _, h := range held {
		cs := h.c.Counts()
		out.CallsRefused += cs.Refused
		if !cs.Closed {
			out.CallsHeld += h.opened - cs.Refused
		}
	}
	return out, conns
}

// officeBrowsers makes browsers for the real sign-ins of window C, one a
// Mac, alternately signing in with the agent's proof and with the
// certificate, and signs each in once. They are as many passing Macs as
// keep each Mac at half the unsigned sign-ins the verifier starts for one
// Mac (ratelimit.UnsignedPerMacRate) at rate sign-ins a second, or every
// passing Mac if there are fewer. An office's sign-ins come from many
// Macs, each a few times an hour; the sso phase's few browsers, at the
// whole rate, would spend their Macs' buckets within seconds. The
// browsers made are returned with any error, to be closed.
func (r *run) officeBrowsers(ctx context.Context, rate float64) ([]*browser, error) {
	want := int(math.Ceil(2 * rate / ratelimit.UnsignedPerMacRate))
	var bs []*browser
	for i, s := range r.agents {
		if len(bs) == want {
			break
		}
		if s.status != agentv1.PolicyStatus_POLICY_STATUS_PASS {
			continue
		}
		b, err := newBrowser(r.cfg.Target, r.roots, s, SourceFor(r.srcs, r.cfg.Agents+4*r.cfg.Signins+i), true, len(bs)%2 == 0)
		if err != nil {
			return bs, fmt.Errorf("the real load's browsers: %w", err)
		}
		bs = append(bs, b)
		if err := checkFirst(ctx, r.sp, b); err != nil {
			return bs, fmt.Errorf("the real load's first sign-in from %s: %w", s.a.DeviceID, err)
		}
	}
	if len(bs) == 0 {
		return nil, errors.New("the real load has no passing Mac to sign in from")
	}
	return bs, nil
}

// realLoad is what goes on meanwhile in window C: agents report at the
// interval, browsers sign in with the agent's proof and with certificates
// at SigninRate, agents enroll, and /metrics is asked without its token.
func (r *run) realLoad(ctx context.Context, d time.Duration, hc HostileConfig, bs []*browser, out *Hostile) {
	ackRec, signRec := &Recorder{}, &Recorder{}
	r.acks.Store(ackRec)
	defer r.acks.Store(nil)
	stop := background(ctx, r.reporting)
	out.SigninMacs = len(bs)
	signJobs := make(chan struct{}, len(bs))
	var signFailed atomic.Int64
	runCtx := ctx
	elapsed := phaseFor(ctx, d, len(bs)+2, func(ctx context.Context, i int) {
		switch {
		case i == len(bs):
			pace(ctx, hc.SigninRate, func() bool { return offer(signJobs, struct{}{}) }, func() { r.fail("signin_dropped") })
		case i == len(bs)+1:
			r.enrollsAndProbes(ctx, runCtx, d, hc.Enrolls, out)
		default:
			b := bs[i]
			var buf bytes.Buffer
			for {
				select {
				case <-ctx.Done():
					return
				case <-signJobs:
				}
				if _, failed := r.signInTimed(runCtx, b, &buf, signRec, "sign-in failed under attack"); failed {
					signFailed.Add(1)
				}
			}
		}
	})
	stop()
	out.Signins = signRec.Summary(elapsed)
	out.Reports = ackRec.Summary(elapsed)
	out.SigninFailed = int(signFailed.Load())
	r.errMu.Lock()
	out.ReportFailed = r.errs["report"]
	r.errMu.Unlock()
}

// enrollsAndProbes enrolls n agents early in the window (each begun while
// the floods run is finished, whatever its length), from the addresses
// real Macs use, and asks /metrics without its token after each.
func (r *run) enrollsAndProbes(window, ctx context.Context, d time.Duration, n int, out *Hostile) {
	gap := d / time.Duration(4*n)
	for i := range n {
		select {
		case <-window.Done():
			return
		case <-time.After(gap):
		}
		a, err := newSimAgent(r.cfg.Target, SourceFor(r.srcs, i), fmt.Sprintf("LGH%08d", i))
		if err == nil {
			ectx, cancel := context.WithTimeout(ctx, 30*time.Second)
			err = a.enroll(ectx, r.cfg.Target.GRPCAddr, r.cfg.EnrollSecret)
			cancel()
		}
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			out.EnrollFailed++
			r.log.Warn("enrollment failed under attack", "err", err)
			continue
		}
		out.Enrolled++
		if r.cfg.Target.HTTPAddr != "" {
			out.MetricsProbes++
			if r.metricsStatus(ctx) == http.StatusUnauthorized {
				out.MetricsRefused++
			}
		}
	}
}

// metricsStatus asks /metrics without the token and returns the status.
func (r *run) metricsStatus(ctx context.Context) int {
	c := &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: r.roots, ServerName: "localhost", MinVersion: tls.VersionTLS12}}}
	defer c.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+r.cfg.Target.HTTPAddr+"/metrics", nil)
	if err != nil {
		return 0
	}
	resp, err := c.Do(req)
	if err != nil {
		r.log.Warn("asking /metrics failed", "err", err)
		return 0
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode
}

// decisionRows counts the decision log's rows made in [since, until), and
// of them the simulated user's (the real sign-ins'), through the admin API.
func (r *run) decisionRows(ctx context.Context, since, until time.Time) (total, sim int, err error) {
	conn, err := r.cfg.Target.adminConn()
	if err != nil {
		return 0, 0, err
	}
	defer conn.Close()
	admin := adminv1.NewAdminServiceClient(conn)
	// A second's margin: stores may keep times coarser than Go's.
	q := &adminv1.ListDecisionsRequest{Since: timestamppb.New(since.Add(-time.Second)), Until: timestamppb.New(until.Add(time.Second)), PageSize: 1000}
	for {
		cctx, cancel := context.WithTimeout(r.cfg.Target.authorized(ctx), 30*time.Second)
		resp, err := admin.ListDecisions(cctx, q)
		cancel()
		if err != nil {
			return 0, 0, fmt.Errorf("counting decisions: %w", err)
		}
		for _, d := range resp.GetDecisions() {
			total++
			if d.GetUsername() == SimUser {
				sim++
			}
		}
		if resp.GetNextPageToken() == "" {
			return total, sim, nil
		}
		q.PageToken = resp.GetNextPageToken()
	}
}

// dbSize is the size of the SQLite database in dataDir as a reader sees it
// (the pages in use, the write-ahead log's included): what the data it
// holds takes, whatever the files' sizes.
func dbSize(dataDir string) (int64, bool) {
	if dataDir == "" {
		return 0, false
	}
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dataDir, "clearance.db")+"?mode=ro")
	if err != nil {
		return 0, false
	}
	defer db.Close()
	var pages, free, size int64
	for q, dst := range map[string]*int64{"PRAGMA page_count": &pages, "PRAGMA freelist_count": &free, "PRAGMA page_size": &size} {
		if err := db.QueryRow(q).Scan(dst); err != nil {
			return 0, false
		}
	}
	return (pages - free) * size, true
}

// selfSigned is a client certificate no CA of the verifier issued: what
// anyone can present.
func selfSigned() (tls.Certificate, error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "hostile"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour), ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: k}, nil
}

var errHostileAlone = errors.New(`the hostile phase runs alone ("--phases hostile"): it needs the verifier's limits on, which the other phases' ceilings would measure instead`)
