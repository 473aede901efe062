// Package loadgen owns clearance-loadgen's load: simulated agents (each its
// own P-256 key, device certificate and mTLS Connect stream, spread over
// loopback source addresses), browsers signing in through the verifier's
// SAML IdP with those agents' certificates, and live checks through the
// admin API, against one verifier on this machine; and what it measures.
//
// A run is: ramp-up (enroll and connect every agent with a bounded pool),
// then timed phases, one after another, so each figure is measured alone:
//
//	ingest  every agent (up to IngestConcurrency) sends its next report as
//	        soon as the last is acked: the verifier's report ceiling.
//	sso     Signins browsers of passing Macs sign in back to back, then as
//	        many of failing Macs, while agents report every ReportInterval.
//	steady  agents report every ReportInterval, sign-ins arrive at SigninRate
//	        (default half the sso phase's rate), and live checks
//	        (AdminService.RequestCheck: CheckNow, the agent's fresh report,
//	        verified and stored) at CheckRate; verifier RSS is read at its end.
package loadgen

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	cryptorand "crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/clearance/clearance/internal/cpustat"
	"github.com/clearance/clearance/internal/oktasim"
	"github.com/clearance/clearance/internal/protoagent"
	adminv1 "github.com/clearance/clearance/proto/gen/clearance/admin/v1"
	agentv1 "github.com/clearance/clearance/proto/gen/clearance/agent/v1"
)

// Config is one run.
type Config struct {
	Target       *Target
	EnrollSecret string // made through the admin API when empty

	Agents         int           // simulated Macs
	FailingShare   float64       // share of agents whose reports fail every policy
	SourceAddrs    int           // loopback source addresses, 1 to 16
	RampWorkers    int           // agents enrolled and connected at once
	RampTimeout    time.Duration // bound on ramp-up
	ReportInterval time.Duration // between one agent's reports (sso and steady)

	Duration          time.Duration // all phases together, split evenly
	Phases            []string      // of "ingest", "sso", "steady"
	IngestConcurrency int           // agents sending back to back in the ingest phase
	// AgentClient is how each agent holds its Connect stream: ClientLean
	// (the default) or ClientGRPC. Enrollment always uses grpc-go.
	AgentClient string
	Signins     int           // concurrent browsers per kind (allowed, denied)
	SigninRate  float64       // sign-ins/s in the steady phase; 0: half the sso rate
	CheckRate   float64       // live checks/s in the steady phase
	Hostile     HostileConfig // the hostile phase's attacks
	// Connected, when set, is called once every agent is connected and
	// before the first phase (an in-process verifier's profile of what
	// holding the agents costs is taken there).
	Connected func()

	Log *slog.Logger
	Now func() time.Time
}

// Phases a run can have, in the order they run. "hostile" runs alone.
var allPhases = []string{"ingest", "sso", "steady", "hostile"}

// Result is what a run measured.
type Result struct {
	Agents, Connected, Failed int    // asked for, connected at the end, failed to start
	AgentClient               string // how the agents held their streams (Config.AgentClient)
	Ramp                      time.Duration

	Ingest        Summary // ingest phase: ack latency, acked reports
	SteadyIngest  Summary // steady phase: ack latency at ReportInterval
	Allow, Deny   Summary // sso phase, back to back (browser certificates)
	AllowAgent    Summary // sso phase, back to back, with the agent's proof of presence
	SigninsAtRate Summary // steady phase, at SigninRate
	SigninRate    float64
	Check         Summary // steady phase: RequestCheck round trips
	Errors        map[string]int

	// Verifier RSS before ramp-up, with every agent connected (before the
	// phases), and at the end of the steady phase.
	RSSBase, RSSConnected, RSS uint64

	// Cores the verifier and loadgen kept busy, on average, per phase:
	// both share this machine's CPUs.
	CPU map[string]CPUShare

	// Hostile is the hostile phase's, when it ran.
	Hostile *Hostile
}

// CPUShare is the average number of cores each process used in a phase,
// and the machine's (Machine; MachineOK false where the kernel does not
// say): cores idle, idle with a disk write waited for, and given by the
// hypervisor to other guests, the phase having only what was left.
type CPUShare struct {
	Verifier, Loadgen float64
	Machine           cpustat.Cores
	MachineOK         bool
}

// RSSPerAgent is the verifier's growth per connected agent from ramp-up
// alone: what holding a Mac costs, before load grows the heap.
func (r *Result) RSSPerAgent() float64 {
	n := r.Agents - r.Failed
	if n <= 0 || r.RSSConnected < r.RSSBase {
		return 0
	}
	return float64(r.RSSConnected-r.RSSBase) / float64(n)
}

type run struct {
	cfg   Config
	roots *x509.CertPool
	srcs  []netip.Addr
	log   *slog.Logger

	agents  []*simAgent // connected at the end of ramp-up
	up      atomic.Int64
	acks    atomic.Pointer[Recorder] // where Acks go now
	recvWG  sync.WaitGroup
	errMu   sync.Mutex
	errs    map[string]int
	sp      *oktasim.SP
	allowBs []*browser
	denyBs  []*browser
	proofBs []*browser // passing Macs' browsers that sign in with the agent's proof
}

func (r *run) fail(kind string) {
	r.errMu.Lock()
	r.errs[kind]++
	r.errMu.Unlock()
}

// Run runs cfg to the end of its last phase (or until ctx ends) and
// returns what it measured. It closes every connection it opened.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if err := cfg.fill(); err != nil {
		return nil, err
	}
	r := &run{cfg: cfg, log: cfg.Log, errs: map[string]int{}}
	var err error
	if r.srcs, err = SourceAddrs(cfg.SourceAddrs); err != nil {
		return nil, err
	}
	r.roots = x509.NewCertPool()
	if !r.roots.AppendCertsFromPEM(cfg.Target.RootPEM) {
		return nil, errors.New("no certificate in the verifier's CA PEM")
	}
	res := &Result{Agents: cfg.Agents, AgentClient: cfg.AgentClient, CPU: map[string]CPUShare{}}
	if cfg.Target.PID != 0 {
		res.RSSBase, _ = RSS(cfg.Target.PID)
	}
	if cfg.EnrollSecret == "" {
		if cfg.EnrollSecret, err = cfg.Target.EnrollSecret(ctx); err != nil {
			return nil, err
		}
	}
	r.cfg.EnrollSecret = cfg.EnrollSecret
	defer r.closeAll()

	// 1. Ramp-up.
	t0 := time.Now()
	if err := r.ramp(ctx, cfg.EnrollSecret); err != nil {
		return nil, err
	}
	res.Ramp = time.Since(t0)
	res.Failed = cfg.Agents - len(r.agents)
	r.log.Info("agents connected", "connected", len(r.agents), "failed", res.Failed, "ramp_seconds", res.Ramp.Seconds())
	if len(r.agents) == 0 {
		return nil, fmt.Errorf("no agent connected; errors: %v", r.errs)
	}
	if err := r.browsers(ctx); err != nil {
		return nil, err
	}
	if cfg.Target.PID != 0 {
		time.Sleep(time.Second) // let ramp-up's garbage be collected
		res.RSSConnected, _ = RSS(cfg.Target.PID)
	}
	if cfg.Connected != nil {
		cfg.Connected()
	}

	// 2. Phases.
	each := cfg.Duration / time.Duration(len(cfg.Phases))
	for _, ph := range cfg.Phases {
		if ctx.Err() != nil {
			break
		}
		if ph == "ingest" {
			r.signAhead(ctx, each)
		}
		r.log.Info("phase", "name", ph, "seconds", each.Seconds())
		cpu := r.cpuMeter(cfg.Target.PID)
		switch ph {
		case "ingest":
			res.Ingest = r.ingest(ctx, each)
		case "sso":
			res.Allow, res.AllowAgent, res.Deny = r.sso(ctx, each)
		case "steady":
			res.SigninRate = cfg.SigninRate
			if res.SigninRate == 0 {
				res.SigninRate = res.Allow.Rate() / 2
			}
			res.SteadyIngest, res.SigninsAtRate, res.Check = r.steady(ctx, each, res.SigninRate)
			if cfg.Target.PID != 0 {
				res.RSS, _ = RSS(cfg.Target.PID)
			}
		case "hostile":
			h, err := r.hostile(ctx, each)
			if err != nil {
				return nil, err
			}
			res.Hostile = h
		}
		res.CPU[ph] = cpu()
	}
	res.Connected = int(r.up.Load())
	if res.RSS == 0 && cfg.Target.PID != 0 {
		res.RSS, _ = RSS(cfg.Target.PID)
	}
	r.errMu.Lock()
	res.Errors = r.errs
	r.errMu.Unlock()
	return res, ctx.Err()
}

func (c *Config) fill() error {
	switch {
	case c.Target == nil:
		return errors.New("no target verifier")
	case c.Agents < 1:
		return errors.New("at least one agent")
	case c.Duration <= 0:
		return errors.New("a duration is required: the run is bounded")
	}
	for _, a := range []string{c.Target.GRPCAddr, c.Target.SSODial} {
		if a == "" {
			continue
		}
		if err := requireLoopback(a); err != nil {
			return err
		}
	}
	if len(c.Phases) == 0 {
		c.Phases = []string{"ingest", "sso", "steady"}
	}
	for _, p := range c.Phases {
		if !contains(allPhases, p) {
			return fmt.Errorf("phase %q: want ingest, sso, steady or hostile", p)
		}
	}
	if contains(c.Phases, "hostile") && len(c.Phases) > 1 {
		return errHostileAlone
	}
	if contains(c.Phases, "hostile") && (c.Signins == 0 || c.Target.SSODial == "") {
		return errors.New("the hostile phase needs the SSO listener and at least one browser of each kind (--signins)")
	}
	if c.Signins > 0 && c.Target.SSODial == "" {
		return errors.New("sign-ins need the SSO listener's address")
	}
	if c.SourceAddrs == 0 {
		c.SourceAddrs = MaxSourceAddrs
	}
	if c.RampWorkers <= 0 {
		c.RampWorkers = 32
	}
	if c.RampTimeout <= 0 {
		c.RampTimeout = 10 * time.Minute
	}
	if c.ReportInterval <= 0 {
		c.ReportInterval = 30 * time.Second
	}
	if c.IngestConcurrency <= 0 {
		c.IngestConcurrency = 1000
	}
	switch c.AgentClient {
	case "":
		c.AgentClient = ClientLean
	case ClientLean, ClientGRPC:
	default:
		return fmt.Errorf("agent client %q: want %s or %s", c.AgentClient, ClientLean, ClientGRPC)
	}
	if c.Log == nil {
		c.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return nil
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// ramp enrolls and connects every agent, RampWorkers at a time.
func (r *run) ramp(ctx context.Context, secret string) error {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.RampTimeout)
	defer cancel()
	jobs := make(chan int)
	var (
		mu sync.Mutex
		wg sync.WaitGroup
	)
	for range min(r.cfg.RampWorkers, r.cfg.Agents) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				s, err := r.start(ctx, i, secret)
				if err != nil {
					r.fail("start")
					r.log.Debug("agent failed to start", "agent", i, "err", err)
					continue
				}
				mu.Lock()
				r.agents = append(r.agents, s)
				mu.Unlock()
			}
		}()
	}
	for i := range r.cfg.Agents {
		if ctx.Err() != nil {
			break
		}
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	return nil
}

func (r *run) start(ctx context.Context, i int, secret string) (*simAgent, error) {
	s, err := newSimAgent(r.cfg.Target, SourceFor(r.srcs, i), fmt.Sprintf("LG%09d", i))
	if err != nil {
		return nil, err
	}
	s.client = r.cfg.AgentClient
	if failing(i, r.cfg.FailingShare) {
		s.status = agentv1.PolicyStatus_POLICY_STATUS_FAIL
	}
	if err := s.enroll(ctx, r.cfg.Target.GRPCAddr, secret); err != nil {
		return nil, err
	}
	if err := s.connect(ctx, r.cfg.Target.GRPCAddr); err != nil {
		return nil, err
	}
	r.up.Add(1)
	r.recvWG.Add(1)
	go s.receive(&r.acks, func() { r.up.Add(-1); r.recvWG.Done() }) // ended by closeAll
	return s, nil
}

// newSimAgent is a new, not yet enrolled Mac with serial, passing its
// policies, whose connections come from src.
func newSimAgent(t *Target, src netip.Addr, serial string) (*simAgent, error) {
	a, err := protoagent.New(t.GRPCAddr, t.RootPEM, newUUID())
	if err != nil {
		return nil, err
	}
	a.Facts.SerialNumber = serial
	a.Facts.Hostname = "loadgen-mac-" + strings.ToLower(serial)
	a.Facts.AgentVersion = "loadgen"
	return &simAgent{a: a, src: src, status: agentv1.PolicyStatus_POLICY_STATUS_PASS,
		sent: map[uint64]time.Time{}}, nil
}

// failing says whether agent i reports failing policies: an even spread
// of share of the agents (i*share crosses a whole number).
func failing(i int, share float64) bool {
	return int(float64(i+1)*share) > int(float64(i)*share)
}

func (r *run) closeAll() {
	for _, s := range r.agents {
		s.close()
	}
	r.recvWG.Wait()
	for _, b := range append(append(r.allowBs, r.denyBs...), r.proofBs...) {
		b.client.CloseIdleConnections()
	}
}

// browsers makes Signins browsers with passing agents' certificates and as
// many with failing agents', and checks each one's first sign-in.
func (r *run) browsers(ctx context.Context) error {
	if r.cfg.Signins == 0 || (!contains(r.cfg.Phases, "sso") && !contains(r.cfg.Phases, "steady") && !contains(r.cfg.Phases, "hostile")) {
		return nil
	}
	var pass, fail []*simAgent
	for _, s := range r.agents {
		if s.status == agentv1.PolicyStatus_POLICY_STATUS_PASS {
			pass = append(pass, s)
		} else {
			fail = append(fail, s)
		}
	}
	for i := range 2 * r.cfg.Signins {
		allow := i%2 == 0
		from := pass
		if !allow {
			from = fail
		}
		if len(from) == 0 {
			return errNoBrowsers
		}
		s := from[(i/2)%len(from)]
		b, err := newBrowser(r.cfg.Target, r.roots, s, SourceFor(r.srcs, r.cfg.Agents+i), allow, false)
		if err != nil {
			return err
		}
		if allow {
			r.allowBs = append(r.allowBs, b)
			pb, err := newBrowser(r.cfg.Target, r.roots, s, SourceFor(r.srcs, r.cfg.Agents+2*r.cfg.Signins+i), allow, true)
			if err != nil {
				return err
			}
			r.proofBs = append(r.proofBs, pb)
		} else {
			r.denyBs = append(r.denyBs, b)
		}
	}
	var err error
	if r.sp, err = okta(ctx, r.cfg.Target, r.allowBs[0]); err != nil {
		return err
	}
	for _, b := range append(append(r.allowBs, r.denyBs...), r.proofBs...) {
		if err := checkFirst(ctx, r.sp, b); err != nil {
			return fmt.Errorf("first sign-in: %w", err)
		}
	}
	return nil
}

// cpuMeter starts measuring CPU use; the returned func says how many cores
// the verifier (when pid is known) and this process used since.
func (r *run) cpuMeter(pid int) func() CPUShare {
	t0 := time.Now()
	machine := cpustat.Start()
	self0, _ := CPUTime(0)
	var v0 time.Duration
	if pid != 0 {
		v0, _ = CPUTime(pid)
	}
	return func() CPUShare {
		wall := time.Since(t0).Seconds()
		self1, _ := CPUTime(0)
		out := CPUShare{Loadgen: (self1 - self0).Seconds() / wall}
		out.Machine, out.MachineOK = machine.Cores()
		if pid != 0 {
			v1, _ := CPUTime(pid)
			out.Verifier = (v1 - v0).Seconds() / wall
		}
		return out
	}
}

// phaseFor runs work on n goroutines until d has passed (or ctx ends) and
// returns how long it ran. Each work(ctx, i) must return when ctx is done.
func phaseFor(ctx context.Context, d time.Duration, n int, work func(ctx context.Context, i int)) time.Duration {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	t0 := time.Now()
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			work(ctx, i)
		}()
	}
	<-ctx.Done()
	elapsed := time.Since(t0)
	wg.Wait()
	return elapsed
}

// signAheadShare is the share of the raw verify ceiling the ingest
// phase's reports are signed ahead for; beyond it agents sign as they go.
const signAheadShare = 0.5

// signAheadMax bounds the phase that is signed ahead: reports must reach
// the verifier within its report skew (5 minutes by default).
const signAheadMax = 2 * time.Minute

// signAhead signs, before the ingest phase of length d, the reports its
// agents are expected to send: up to signAheadShare of what this machine's
// cores verify in d (timed here), spread over the agents. Real agents sign
// on their own Macs; loadgen's cores are the verifier's too.
func (r *run) signAhead(ctx context.Context, d time.Duration) {
	n := min(r.cfg.IngestConcurrency, len(r.agents))
	if n == 0 || d > signAheadMax {
		return
	}
	perSec := float64(runtime.NumCPU()) / verifyTime().Seconds()
	k := int(math.Ceil(signAheadShare * perSec * d.Seconds() / float64(n)))
	t0 := time.Now()
	jobs := make(chan *simAgent)
	var wg sync.WaitGroup
	for range runtime.NumCPU() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for s := range jobs {
				s.signAhead(k)
			}
		}()
	}
	for _, s := range r.agents[:n] {
		if ctx.Err() != nil {
			break
		}
		jobs <- s
	}
	close(jobs)
	wg.Wait()
	r.log.Info("reports signed ahead", "per_agent", k, "agents", n, "seconds", time.Since(t0).Seconds())
}

// verifyTime is how long one ECDSA P-256 verify takes on one core here.
func verifyTime() time.Duration {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), cryptorand.Reader)
	digest := sha256.Sum256([]byte("clearance loadgen"))
	sig, _ := ecdsa.SignASN1(cryptorand.Reader, key, digest[:])
	const rounds = 64
	t0 := time.Now()
	for range rounds {
		ecdsa.VerifyASN1(&key.PublicKey, digest[:], sig)
	}
	return time.Since(t0) / rounds
}

// ingest: agents send back to back, each waiting for its Ack. Each next
// report is sent from the goroutine that read the last one's Ack: one
// goroutine's wake-up less per report on cores the verifier shares.
// Reports signed ahead and not sent are dropped at its end, so that later
// phases send fresh ones.
func (r *run) ingest(ctx context.Context, d time.Duration) Summary {
	rec := &Recorder{}
	r.acks.Store(rec)
	defer r.acks.Store(nil)
	n := min(r.cfg.IngestConcurrency, len(r.agents))
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	t0 := time.Now()
	for _, s := range r.agents[:n] {
		next := func() {
			if ctx.Err() != nil || !s.up.Load() {
				return
			}
			if err := s.send(nil); err != nil {
				r.fail("report")
			}
		}
		s.onAck.Store(&next)
		go next()
	}
	<-ctx.Done()
	elapsed := time.Since(t0)
	for _, s := range r.agents[:n] {
		s.onAck.Store(nil)
		s.dropAhead()
	}
	return rec.Summary(elapsed)
}

// reporting sends every agent's report once per ReportInterval, spread
// evenly over the interval, from a few senders, until ctx ends.
func (r *run) reporting(ctx context.Context) {
	const senders = 4
	jobs := make(chan *simAgent, senders)
	var wg sync.WaitGroup
	for range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for s := range jobs {
				if s.up.Load() && s.send(nil) != nil {
					r.fail("report")
				}
			}
		}()
	}
	defer func() { close(jobs); wg.Wait() }()
	gap := r.cfg.ReportInterval / time.Duration(len(r.agents))
	next := time.Now()
	for i := 0; ; i = (i + 1) % len(r.agents) {
		next = next.Add(gap)
		if d := time.Until(next); d > 0 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(d):
			}
		} else if ctx.Err() != nil {
			return
		}
		select {
		case jobs <- r.agents[i]:
		case <-ctx.Done():
			return
		}
	}
}

// background runs fn until the returned stop is called.
func background(ctx context.Context, fn func(context.Context)) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); fn(ctx) }()
	return func() { cancel(); <-done }
}

// sso: Signins browsers of passing Macs sign in back to back with their
// certificates for a third of d, then as many without, then as many of
// failing Macs (with certificates), while agents report. Every Mac's agent
// is connected, so under --browser-binding either each sign-in is bound by
// the agent's proof; the first third also presents and has checked a
// certificate.
func (r *run) sso(ctx context.Context, d time.Duration) (allow, allowAgent, deny Summary) {
	stop := background(ctx, r.reporting)
	defer stop()
	allow = r.backToBack(ctx, d/3, r.allowBs)
	allowAgent = r.backToBack(ctx, d/3, r.proofBs)
	deny = r.backToBack(ctx, d/3, r.denyBs)
	return allow, allowAgent, deny
}

func (r *run) backToBack(ctx context.Context, d time.Duration, bs []*browser) Summary {
	if len(bs) == 0 || ctx.Err() != nil {
		return Summary{}
	}
	rec := &Recorder{}
	runCtx := ctx
	elapsed := phaseFor(ctx, d, len(bs), func(ctx context.Context, i int) {
		b := bs[i]
		var buf bytes.Buffer
		for ctx.Err() == nil {
			if built, _ := r.signInTimed(runCtx, b, &buf, rec, "sign-in failed"); !built {
				return
			}
		}
	})
	return rec.Summary(elapsed)
}

// steady: reports at ReportInterval, sign-ins at rate, live checks at
// CheckRate.
// signInTimed makes one sign-in through b and adds its time to rec;
// building Okta's request is Okta's part and is not timed. It says whether
// the request could be built and whether the sign-in failed while the run
// was still on; both failures are counted (r.fail) and the second logged
// at debug as logMsg.
func (r *run) signInTimed(runCtx context.Context, b *browser, buf *bytes.Buffer, rec *Recorder, logMsg string) (built, failed bool) {
	u, err := r.sp.RedirectURL(r.sp.NewRequest(SimUser))
	if err != nil {
		r.fail("okta_request")
		return false, false
	}
	t0 := time.Now()
	if err := b.signIn(runCtx, u, buf); err != nil {
		if runCtx.Err() != nil {
			return true, false
		}
		r.fail("signin")
		r.log.Debug(logMsg, "err", err)
		return true, true
	}
	rec.Add(time.Since(t0))
	return true, false
}

func (r *run) steady(ctx context.Context, d time.Duration, rate float64) (acks, signins, checks Summary) {
	ackRec, signRec, checkRec := &Recorder{}, &Recorder{}, &Recorder{}
	r.acks.Store(ackRec)
	defer r.acks.Store(nil)
	stop := background(ctx, r.reporting)
	defer stop()

	// Arrivals are open loop: more workers than browsers, so that a slow
	// sign-in delays the next one less than it would back to back (each
	// browser's transport keeps a few connections).
	var bs []*browser
	for range steadyWorkersPerBrowser {
		bs = append(append(bs, r.allowBs...), r.denyBs...)
	}
	conn, err := r.cfg.Target.adminConn()
	if err != nil {
		r.fail("admin_conn")
	} else {
		defer conn.Close()
	}
	const checkers = 16
	workers := len(bs) + checkers
	signJobs := make(chan struct{}, len(bs)+1)
	checkJobs := make(chan *simAgent, checkers)
	var pacers sync.WaitGroup
	runCtx := ctx
	elapsed := phaseFor(ctx, d, workers, func(ctx context.Context, i int) {
		if i == 0 {
			// The pacers are owned by worker 0 and end with the phase.
			pacers.Add(2)
			go func() {
				defer pacers.Done()
				pace(ctx, rate, func() bool { return offer(signJobs, struct{}{}) }, func() { r.fail("signin_dropped") })
			}()
			go func() {
				defer pacers.Done()
				pace(ctx, r.cfg.CheckRate, func() bool {
					s := r.agents[rand.IntN(len(r.agents))]
					return !s.up.Load() || offer(checkJobs, s)
				}, func() { r.fail("check_dropped") })
			}()
			defer pacers.Wait()
		}
		if i < len(bs) {
			b := bs[i]
			var buf bytes.Buffer
			for {
				select {
				case <-ctx.Done():
					return
				case <-signJobs:
				}
				r.signInTimed(runCtx, b, &buf, signRec, "sign-in failed")
			}
		}
		if conn == nil {
			return
		}
		admin := adminv1.NewAdminServiceClient(conn)
		for {
			var s *simAgent
			select {
			case <-ctx.Done():
				return
			case s = <-checkJobs:
			}
			// A check in flight when the phase ends is finished, not cut off.
			cctx, cancel := context.WithTimeout(r.cfg.Target.authorized(runCtx), 5*time.Second)
			t0 := time.Now()
			resp, err := admin.RequestCheck(cctx, &adminv1.RequestCheckRequest{DeviceId: s.a.DeviceID, Timeout: durationpb.New(4 * time.Second)})
			cancel()
			if err != nil || resp.GetReport() == nil {
				if ctx.Err() == nil {
					r.fail("check")
					r.log.Debug("live check failed", "device_id", s.a.DeviceID, "err", err)
				}
				continue
			}
			checkRec.Add(time.Since(t0))
		}
	})
	return ackRec.Summary(elapsed), signRec.Summary(elapsed), checkRec.Summary(elapsed)
}

// steadyWorkersPerBrowser is how many sign-ins one browser may have in
// flight in the steady phase.
const steadyWorkersPerBrowser = 4

// offer hands v to a worker if one is free.
func offer[T any](ch chan T, v T) bool {
	select {
	case ch <- v:
		return true
	default:
		return false
	}
}

// pace calls fire rate times a second until ctx ends, and dropped when
// fire could not hand the work on (every worker busy).
func pace(ctx context.Context, rate float64, fire func() bool, dropped func()) {
	if rate <= 0 {
		return
	}
	gap := time.Duration(float64(time.Second) / rate)
	next := time.Now()
	for {
		next = next.Add(gap)
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Until(next)):
		}
		if !fire() {
			dropped()
		}
	}
}
