// Package stream is the agent's side of AgentService.Connect: it holds the
// session with the verifier, schedules policy runs, and signs and delivers
// posture reports.
//
// Delivery rules:
//   - every report carries a fresh seq that is durably recorded before the
//     report is sent, so no seq is ever reused, even across a crash;
//   - a signed report is never changed: unacknowledged reports are resent,
//     byte for byte, after a reconnect, in seq order (the verifier acks an
//     exact resend of any report it stored again), so lost acks lose
//     nothing;
//   - after every (re)connect the agent runs all policies and sends its
//     current state as soon as the verifier has said its time (Session),
//     stamped in that time (package clock);
//   - how a stream ended decides what comes next (package retry): a report
//     the verifier refused for good is dropped rather than resent forever,
//     a device the verifier refuses stops retrying soon and says why, and
//     reports too old for the verifier's freshness window are not resent
//     (the fresh report replaces them).
package stream

import (
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/clearance/clearance/agent/clock"
	"github.com/clearance/clearance/agent/conn"
	"github.com/clearance/clearance/agent/osquery"
	"github.com/clearance/clearance/agent/policy"
	"github.com/clearance/clearance/agent/retry"
	"github.com/clearance/clearance/agent/state"
	"github.com/clearance/clearance/agent/version"
	"github.com/clearance/clearance/pkg/agentprefs"
	"github.com/clearance/clearance/pkg/logsample"
	policyfile "github.com/clearance/clearance/pkg/policy"
	"github.com/clearance/clearance/pkg/presence"
	"github.com/clearance/clearance/pkg/printable"
	"github.com/clearance/clearance/pkg/report"
	agentv1 "github.com/clearance/clearance/proto/gen/clearance/agent/v1"
)

// Identity is what the stream needs from enrollment.
type Identity interface {
	// Ensure returns a usable identity, enrolling if needed.
	Ensure(ctx context.Context) (*state.Identity, error)
	// ClientCert is the mTLS certificate for the current identity.
	ClientCert() (*tls.Certificate, error)
	// Forget drops an identity the verifier does not recognize; it
	// reports whether a new enrollment will be attempted.
	Forget(reason string) bool
}

// streamEndWait bounds how long a stream whose send failed waits for the
// status that says why it ended.
const streamEndWait = 5 * time.Second

// Defaults.
const (
	DefaultInterval   = 60 * time.Second
	DefaultMinBackoff = time.Second
	DefaultMaxBackoff = 60 * time.Second
	DefaultMaxPending = 64
	// DefaultMaxPendingBytes bounds the unacknowledged reports' bytes as
	// well: a verifier that acknowledges nothing while its policy set
	// makes reports large cannot make the agent hold 64 of them.
	DefaultMaxPendingBytes = 16 << 20
	DefaultResendMaxAge    = 4 * time.Minute
	// DefaultCheckBurst and DefaultCheckEvery bound how often the agent
	// runs its policies because the verifier asked (a CheckNow, or a
	// changed policy set): ten at once (a person opening several apps
	// that each ask), then one every 2 s, within the 3 s the verifier
	// waits for a live check's answer by default, so that one asked for
	// past the burst is still answered in time. A verifier asking faster,
	// which only a compromised one would, cannot make the Mac run its
	// policies in a loop.
	DefaultCheckBurst = 10
	DefaultCheckEvery = 2 * time.Second
	// DefaultScheduleGap spaces runs on the schedule: policies whose
	// intervals a verifier staggered would otherwise each fall due on
	// their own, about one run a second.
	DefaultScheduleGap = 5 * time.Second
	// DefaultRunBudget bounds one run: the policies not reached by then
	// are reported as ERROR "not run". The bound on runs limits how often
	// a verifier has the Mac run its policies; this limits what one run
	// costs (a thousand queries that each take osquery's 30 s would
	// otherwise hold the stream for hours). The Mac's admin may set it
	// (agentprefs.KeyRunBudget); the verifier cannot.
	DefaultRunBudget = agentprefs.DefaultRunBudget
	// firstSetWait is how long a session's first report waits for the
	// verifier's policy set after its Session before running the cached
	// one: the verifier sends it next.
	firstSetWait = time.Second
	// DefaultStableSession is how long a session must last for the
	// reconnect backoff to start over.
	DefaultStableSession = 30 * time.Second
)

// Options configure a Client.
type Options struct {
	Verifier string
	Roots    *x509.CertPool
	Identity Identity
	Signer   crypto.Signer
	Dir      *state.Dir
	Querier  osquery.Querier
	// Platform filters policies. When empty, the platform osquery reports
	// is used (policy.HostPlatform), looked up when a policy set arrives.
	Platform string
	// Interval, when set, replaces every policy's interval.
	Interval time.Duration
	// MinBackoff and MaxBackoff bound reconnect waits.
	MinBackoff, MaxBackoff time.Duration
	// MaxPending bounds the unacknowledged reports kept for resending,
	// and MaxPendingBytes their signed bytes; the oldest go first.
	MaxPending      int
	MaxPendingBytes int
	// ResendMaxAge: older unacknowledged reports are not resent. Keep it
	// below the verifier's allowed skew (5 min by default).
	ResendMaxAge time.Duration
	// CheckBurst and CheckEvery bound the runs a verifier asks for, by
	// CheckNow or by a changed policy set: at most CheckBurst at once,
	// then one every CheckEvery. One asked for past the bound waits for
	// its turn (a later CheckNow replaces an earlier one), and a CheckNow
	// is dropped if it expires meanwhile.
	CheckBurst int
	CheckEvery time.Duration
	// RunBudget bounds the time one run takes; the policies it leaves out
	// are reported as ERROR "not run".
	RunBudget time.Duration
	// StableSession is how long a session must last for the reconnect
	// backoff to start over (but see backoffRestart).
	StableSession time.Duration
	// ScheduleGap is the least time between two runs on the schedule the
	// policies' own intervals make (not with Interval set).
	ScheduleGap time.Duration
	// SettingsRejected, when set, says whether the agent rejected the
	// settings it was given and runs on others: when, on the device's
	// clock (zero: it runs on those it was given), and why. Every report
	// says so (PostureReport.settings_rejection), as it is when the report
	// is filed. It is called from the stream's goroutine.
	SettingsRejected func() (at time.Time, why string)
	// StopWait is how long the agent waits before trying again after the
	// verifier refused in a way retrying cannot fix (retry.Stop).
	StopWait time.Duration
	// Clock is the verifier's time as the agent knows it: every Session
	// corrects it, and reports are stamped with it (default: the system
	// clock). After waits; Jitter returns a value in [0, n) (defaults:
	// time.After, math/rand/v2).
	Clock  *clock.Clock
	After  func(time.Duration) <-chan time.Time
	Jitter func(n int64) int64
	Logger *slog.Logger
}

// Client is the Connect actor.
type Client struct {
	o   Options
	log *slog.Logger

	// contact is the record status reads (noteContact).
	contactMu     sync.Mutex
	contact       state.Contact
	contactLoaded bool
	ackSaved      time.Time // when an acknowledgement was last written
	ackHeld       bool      // the latest acknowledgement is not written yet
	// ackFlush fires when a held acknowledgement may be written
	// (flushContact); nil when none is held. Owned by the Execute
	// goroutine.
	ackFlush <-chan time.Time

	ctx    context.Context
	cancel context.CancelFunc

	// Owned by the Execute goroutine.
	ps       *agentv1.PolicySet
	psSaved  *agentv1.PolicySet // the set last cached on disk
	policies []*agentv1.Policy
	results  map[string]*agentv1.PolicyResult
	due      map[string]time.Time
	pending  []pendingReport

	// certsFailing is whether the last keychain listing failed, so a
	// lasting failure is logged once.
	certsFailing bool
	// accountsFailing is the same for the local accounts listing.
	accountsFailing bool
	// checks bounds the runs the verifier asks for; checksPast samples the
	// log line for those past the bound.
	checks checkBudget
	// sampled keeps lines a verifier's messages cause to one every 10 s
	// per kind (logSampled).
	sampled logsample.Samples
	// lastScheduled is when the last run on the schedule began.
	lastScheduled time.Time
	// platformAsked is when osquery was last asked for the platform.
	platformAsked time.Time
	// lastFull is the session's last run of every policy, whose results
	// answer the checks that arrived before it began.
	lastFull fullRun

	statsMu sync.Mutex
	stats   Stats

	// presenceURL is the verifier's presence URL (a string), read by the
	// loopback presence endpoint from other goroutines.
	presenceURL atomic.Value
}

// fullRun is a run of every policy of a set: when it began, on the
// monotonic clock, and the report it made, less its nonce and seq.
type fullRun struct {
	began  time.Time
	ps     *agentv1.PolicySet
	report *agentv1.PostureReport
}

// answers says whether the run's results can answer a check that arrived
// at arr: the check arrived before the run began, so every result was
// gathered after the verifier asked, and the set it ran is still the one
// in force. (An arrival not recorded is answered by a run of its own.)
func (f *fullRun) answers(arr checkArrival, ps *agentv1.PolicySet) bool {
	return f.report != nil && ps != nil && f.ps == ps && !arr.local.IsZero() && arr.local.Before(f.began)
}

type pendingReport struct {
	seq        uint64
	deviceID   string // the identity it was made under
	observedAt time.Time
	nonceUntil time.Time // zero without a nonce
	signed     *agentv1.SignedReport
	sent       bool // sent during the current session
}

// Stats are counters for tests and status.
type Stats struct {
	Sessions    int
	ReportsSent int
	Acked       uint64 // highest acked seq
	// ChecksDeferred counts CheckNow that came past the bound on runs and
	// waited for their turn; ChecksDropped those never answered (replaced
	// by a later one, or expired while waiting for their turn, behind a
	// run, or during their own, whose results are then reported without
	// their nonce). RunsDeferred counts changed policy sets whose run waited its
	// turn.
	ChecksDeferred int
	ChecksDropped  int
	RunsDeferred   int
	// ChecksRefused counts CheckNow refused unrun (usableCheck).
	ChecksRefused int
	// ChecksShared counts CheckNow answered with the results of a run of
	// every policy that began after they arrived, with no run of their
	// own.
	ChecksShared int
	LastError    error
}

// New returns a Client.
func New(o Options) *Client {
	if o.MinBackoff <= 0 {
		o.MinBackoff = DefaultMinBackoff
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = DefaultMaxBackoff
	}
	if o.MaxPending <= 0 {
		o.MaxPending = DefaultMaxPending
	}
	if o.MaxPendingBytes <= 0 {
		o.MaxPendingBytes = DefaultMaxPendingBytes
	}
	if o.ResendMaxAge <= 0 {
		o.ResendMaxAge = DefaultResendMaxAge
	}
	if o.StopWait <= 0 {
		o.StopWait = retry.StopWait
	}
	if o.CheckBurst <= 0 {
		o.CheckBurst = DefaultCheckBurst
	}
	if o.CheckEvery <= 0 {
		o.CheckEvery = DefaultCheckEvery
	}
	if o.ScheduleGap <= 0 {
		o.ScheduleGap = DefaultScheduleGap
	}
	if o.RunBudget <= 0 {
		o.RunBudget = DefaultRunBudget
	}
	if o.StableSession <= 0 {
		o.StableSession = DefaultStableSession
	}
	if o.Clock == nil {
		o.Clock = clock.New(clock.System(), o.Logger)
	}
	if o.After == nil {
		o.After = time.After
	}
	if o.Jitter == nil {
		o.Jitter = func(n int64) int64 { return rand.Int64N(n) }
	}
	log := o.Logger
	if log == nil {
		log = slog.Default()
	}
	c := &Client{o: o, log: log.With("component", "stream"), results: map[string]*agentv1.PolicyResult{}, due: map[string]time.Time{}}
	c.checks = checkBudget{burst: o.CheckBurst, every: o.CheckEvery}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	return c
}

// Stats returns a snapshot of the counters.
func (c *Client) Stats() Stats {
	c.statsMu.Lock()
	defer c.statsMu.Unlock()
	return c.stats
}

func (c *Client) count(f func(*Stats)) {
	c.statsMu.Lock()
	defer c.statsMu.Unlock()
	f(&c.stats)
}

// Interrupt stops Execute.
func (c *Client) Interrupt(error) { c.cancel() }

// Execute keeps a session with the verifier until Interrupt, reconnecting
// with capped exponential backoff and jitter.
func (c *Client) Execute() error {
	ctx := c.ctx
	if u, err := c.o.Dir.LoadPresenceURL(); err != nil {
		c.log.Warn("saved presence URL unreadable", "err", err)
	} else if u != "" && ValidPresenceURL(u) == nil {
		c.presenceURL.Store(u)
	}
	if ps, err := c.o.Dir.LoadPolicySet(); err != nil {
		c.log.Warn("cached policy set unreadable", "err", err)
	} else if ps != nil {
		c.setPolicySet(ps)
		c.psSaved = ps
	}
	backoff := time.Duration(0)
	var restart backoffRestart
	for {
		// Measured on the device's clock: the verifier's time, which each
		// Session moves, would let a verifier make every session look
		// long and keep the backoff from growing.
		start := c.o.Clock.Local()
		action, err := c.connectOnce(ctx)
		if ctx.Err() != nil {
			return nil
		}
		c.count(func(s *Stats) { s.LastError = err })
		if timeRefused(err) && c.o.Clock.Forget() {
			c.log.Warn("the verifier's certificate is not valid in the verifier's time as learnt; using this Mac's clock until the verifier is heard again")
		}
		if restart.after(action, c.o.Clock.Local().Sub(start) >= c.o.StableSession) {
			backoff = 0
		}
		var wait time.Duration
		if action == retry.Stop {
			// Backing off faster would not help; an administrator's fix
			// (a secret, an unrevoked device) is picked up on the next try.
			wait, backoff = c.o.StopWait, 0
			c.log.Error("verifier refused; not retrying soon", "code", status.Code(err).String(), "err", errMessage(err), "retry_in", wait)
			c.recordRefusal(err, wait)
		} else {
			backoff = c.nextBackoff(backoff)
			wait = backoff/2 + time.Duration(c.o.Jitter(int64(backoff/2)+1))
			// The verifier said when to ask again (a rotation over the
			// device's limit on certificates): asking sooner is refused
			// the same way.
			wait = max(wait, retry.After(err))
			if action == retry.Pending {
				// Said plainly by the enrollment; this only says when
				// the agent asks again.
				c.log.Info("waiting for enrollment approval", "retry_in", wait)
			} else {
				c.log.Warn("not connected to verifier", "code", status.Code(err).String(), "err", errMessage(err), "action", action.String(), "retry_in", wait)
				msg := status.Code(err).String() + ": " + errMessage(err)
				c.noteContact(false, func(ct *state.Contact, at time.Time) { ct.FailedAt, ct.Failure = at, msg })
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-c.o.After(wait):
		}
	}
}

// backoffRestart says when the reconnect backoff starts over: after a
// session that lasted (stable), unless it ended with the verifier refusing
// a report (retry.Drop) and so did the one before. One refusal after
// sessions that went well reconnects at once, as any lasting session does;
// refusals in a row back off, however long each session lasted, so that a
// policy set whose run outlasts the verifier's --max-report-skew (every
// report refused as stale) is not run again at once after each refusal.
type backoffRestart struct{ refused int }

func (r *backoffRestart) after(action retry.Action, stable bool) bool {
	if action == retry.Drop {
		r.refused++
	} else {
		r.refused = 0
	}
	return stable && r.refused <= 1
}

func (c *Client) nextBackoff(cur time.Duration) time.Duration {
	if cur <= 0 {
		return c.o.MinBackoff
	}
	return min(cur*2, c.o.MaxBackoff)
}

// timeRefused is whether err is a TLS handshake that refused a
// certificate as expired or not yet valid. Through gRPC it is only text.
func timeRefused(err error) bool {
	if err == nil {
		return false
	}
	msg := err.Error()
	if s, ok := status.FromError(err); ok {
		msg = s.Message()
	}
	return strings.Contains(msg, "certificate has expired or is not yet valid")
}

// errMessage is err's message for a log line: a status's message (the
// verifier's words, with what the agent was doing), clipped at a length
// every message of the verifier's fits in, since a verifier chooses it.
func errMessage(err error) string {
	if s, ok := status.FromError(err); ok {
		return logsample.ClipMessage(s.Message())
	}
	if err == nil {
		return ""
	}
	return logsample.ClipMessage(err.Error())
}

// recordRefusal keeps the verifier's refusal in the state dir for
// `clearance-agent status`, which otherwise says only "enrolled: no".
func (c *Client) recordRefusal(err error, wait time.Duration) {
	if c.o.Dir == nil {
		return
	}
	at := c.o.Clock.Local().UTC()
	r := state.Refusal{Code: status.Code(err).String(), Message: errMessage(err), At: at, RetryAt: at.Add(wait), Verifier: c.o.Verifier}
	if err := c.o.Dir.SaveRefusal(r); err != nil {
		c.log.Warn("recording the verifier's refusal for status failed", "err", err)
	}
}

// contactEvery bounds how often acknowledgements are written down for
// status, to spare the disk: a run of live checks writes once, then the
// latest of them once the bound allows (flushContact).
const contactEvery = 10 * time.Second

// noteContact updates the contact record for status with edit, writing
// it unless it is an acknowledgement less than contactEvery after the
// last one written (the first of a run is always written). held is how
// long until an acknowledgement held back may be written, 0 when written.
func (c *Client) noteContact(ackOnly bool, edit func(*state.Contact, time.Time)) (held time.Duration) {
	if c.o.Dir == nil {
		return 0
	}
	c.contactMu.Lock()
	defer c.contactMu.Unlock()
	at := c.o.Clock.Local().UTC()
	if !c.contactLoaded {
		c.contactLoaded = true
		// What an earlier run knew, until this one knows better.
		if prev, err := c.o.Dir.LoadContact(); err == nil && prev != nil && prev.Verifier == c.o.Verifier {
			c.contact = *prev
		}
	}
	c.contact.Verifier = c.o.Verifier
	edit(&c.contact, at)
	if ackOnly {
		if since := at.Sub(c.ackSaved); !c.ackSaved.IsZero() && since < contactEvery {
			c.ackHeld = true
			// At most contactEvery: a clock set back must not hold it
			// for as long as it was set back.
			return min(contactEvery-since, contactEvery)
		}
		c.ackSaved = at
	}
	c.saveContactLocked()
	return 0
}

// saveContactLocked writes the contact record, with the latest
// acknowledgement; contactMu is held.
func (c *Client) saveContactLocked() {
	c.ackHeld = false
	if err := c.o.Dir.SaveContact(c.contact); err != nil {
		c.log.Warn("recording contact with the verifier for status failed", "err", err)
	}
}

// flushContact writes the acknowledgement noteContact held back, if
// any: when the bound allows (ackFlush), and when a session ends, so
// that status is not left a report or more behind, however the agent
// stops.
func (c *Client) flushContact() {
	c.ackFlush = nil
	if c.o.Dir == nil {
		return
	}
	c.contactMu.Lock()
	defer c.contactMu.Unlock()
	if !c.ackHeld {
		return
	}
	c.ackSaved = c.o.Clock.Local().UTC()
	c.saveContactLocked()
}

// clearRefusal forgets a recorded refusal once the verifier accepts the
// device again.
func (c *Client) clearRefusal() {
	if c.o.Dir == nil {
		return
	}
	if err := c.o.Dir.ClearRefusal(); err != nil {
		c.log.Warn("clearing the recorded refusal failed", "err", err)
	}
}

// now is the verifier's time as the agent knows it.
func (c *Client) now() time.Time { return c.o.Clock.Now() }

// connectOnce enrolls if needed and runs one session; the action says what
// the way it ended calls for.
func (c *Client) connectOnce(ctx context.Context) (retry.Action, error) {
	id, err := c.o.Identity.Ensure(ctx)
	if err != nil {
		action := retry.Of(retry.Enroll, err)
		if action != retry.Pending {
			c.log.Error("no device identity", "err", errMessage(err))
		}
		return action, err
	}
	err = c.session(ctx, id)
	action := retry.Of(retry.Connect, err)
	switch action {
	case retry.Reenroll:
		if !c.o.Identity.Forget(errMessage(err)) {
			action = retry.Stop
		}
	case retry.Stop:
		c.log.Error("verifier refused this device", "device_id", id.DeviceID, "code", status.Code(err).String(), "err", errMessage(err))
	}
	return action, err
}

// factsWait bounds how long a session's Hello waits for osquery's facts:
// without them it goes anyway.
const factsWait = 5 * time.Second

// facts are the device's facts now, for Hello, or nil when osquery cannot
// give them.
func (c *Client) facts(ctx context.Context) *agentv1.DeviceFacts {
	if c.o.Querier == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, factsWait)
	defer cancel()
	f, err := osquery.Facts(ctx, c.o.Querier)
	if err != nil {
		c.log.Debug("facts for the verifier's inventory not read", "err", err)
		return nil
	}
	f.AgentVersion = version.Version
	return f
}

// session runs one Connect stream.
func (c *Client) session(parent context.Context, id *state.Identity) (err error) {
	ctx, cancel := context.WithCancel(parent)
	defer cancel()
	facts := c.facts(ctx)
	cc, err := conn.Dial(c.o.Verifier, c.o.Roots, c.o.Identity.ClientCert, c.now)
	if err != nil {
		return err
	}
	defer cc.Close()
	stream, err := agentv1.NewAgentServiceClient(cc).Connect(ctx)
	if err != nil {
		return err
	}
	for i := range c.pending {
		c.pending[i].sent = false
	}
	c.lastFull = fullRun{}
	defer func() { c.afterSession(err) }()

	// 1. Hello.
	if err := stream.Send(&agentv1.AgentMessage{Message: &agentv1.AgentMessage_Hello{Hello: &agentv1.Hello{
		AgentVersion:     version.Version,
		PolicySetVersion: c.ps.GetVersion(),
		AgentTime:        timestamppb.New(c.o.Clock.Local()),
		Facts:            facts,
	}}}); err != nil {
		return recvStatus(stream, err)
	}
	c.count(func(s *Stats) { s.Sessions++ })

	// The reader reads ahead into an inbox (bounded by bytes) and a pump
	// hands the messages to this goroutine, which alone sends, then how
	// the stream ended, in that order; when a send fails, streamEnded
	// keeps taking them. Reading ahead lets the reader learn at once that
	// the stream ended while a run is busy, and stop the run: a long run
	// must not outlive the stream it reports on.
	msgs := make(chan *agentv1.VerifierMessage)
	recvErr := make(chan error, 1)
	runCtx, stopRuns := context.WithCancel(ctx)
	defer stopRuns()
	in := newInbox()
	stopInbox := context.AfterFunc(ctx, in.close)
	defer stopInbox()
	var wg sync.WaitGroup
	wg.Add(2)
	arrivals := newCheckArrivals()
	go func() { // owned: session waits for it below
		defer wg.Done()
		for {
			m, err := stream.Recv()
			if err != nil {
				stopRuns()
				in.finish(err)
				return
			}
			if check := m.GetCheckNow(); check != nil {
				// On the monotonic clock, whatever the Mac's wall
				// clock (and the Clock built on it) does meanwhile.
				arrivals.put(check, time.Now())
			}
			if !in.put(m) {
				return
			}
		}
	}()
	go func() { // owned: session waits for it below
		defer wg.Done()
		for {
			m, ok, err := in.get()
			if !ok {
				if err != nil {
					recvErr <- err
				}
				return
			}
			select {
			case msgs <- m:
			case <-ctx.Done():
				return
			}
		}
	}()
	defer wg.Wait()
	defer cancel()

	send := func(p *pendingReport) error {
		if err := stream.Send(&agentv1.AgentMessage{Message: &agentv1.AgentMessage_Report{Report: p.signed}}); err != nil {
			return err
		}
		p.sent = true
		c.count(func(s *Stats) { s.ReportsSent++ })
		return nil
	}

	// 2. Resend what was not acknowledged, oldest first, once the
	// verifier has spoken: its Session says its time, by which reports
	// too old or dated too far ahead (by a time a verifier taught before)
	// are no longer sent. Reports of another device id (an enrollment
	// since) are not either.
	resend := func() error {
		c.prunePending(id.DeviceID)
		for i := range c.pending {
			if err := send(&c.pending[i]); err != nil {
				return err
			}
		}
		c.log.Info("connected to verifier", "device_id", id.DeviceID, "resent", len(c.pending))
		c.noteContact(false, func(ct *state.Contact, at time.Time) { ct.ConnectedAt = at })
		c.clearRefusal()
		return nil
	}

	// 3. Report the current state as soon as the verifier has spoken (its
	// Session comes first and says its time, which the report is stamped
	// in): with the cached policy set, or with the verifier's once it
	// arrives.
	reportNow := false
	reported, heard, sessioned := false, false, false
	// After a Session, the first report waits a moment for the session's
	// own policy set before running the cached one.
	var firstWait <-chan time.Time
	// Runs asked for past the bound on runs (checkBudget) wait here for
	// their turn: the latest CheckNow, and a run for a changed policy
	// set. One run answers both, as it runs every policy.
	var owedCheck *agentv1.CheckNow
	var owedArrival checkArrival // owedCheck's
	owedRun := false
	var owedTimer <-chan time.Time
	owe := func(wait time.Duration) {
		if owedTimer == nil {
			owedTimer = c.o.After(wait)
		}
	}
	for {
		if reportNow {
			reportNow = false
			reported = true
			if err := c.runAndReport(runCtx, id, nil, c.policies, send); err != nil {
				return c.streamEnded(ctx, msgs, recvErr, err)
			}
		}
		var timer <-chan time.Time
		if reported {
			if next, ok := c.nextDue(); ok {
				// Runs on the schedule the verifier's intervals make
				// are at least ScheduleGap apart, however they fall.
				// (A local Interval runs every policy together.)
				if c.o.Interval <= 0 {
					next = later(next, c.lastScheduled.Add(c.o.ScheduleGap))
				}
				timer = c.o.After(max(next.Sub(c.o.Clock.Local()), 0))
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-recvErr:
			return err
		case <-c.ackFlush:
			c.flushContact()
		case <-timer:
			c.lastScheduled = c.o.Clock.Local()
			if err := c.runAndReport(runCtx, id, nil, c.duePolicies(), send); err != nil {
				return c.streamEnded(ctx, msgs, recvErr, err)
			}
		case <-owedTimer:
			owedTimer = nil
			// By its ttl from its arrival (the monotonic clock); a check
			// without one (an older verifier's), by its expiry.
			if owedCheck != nil && (owedArrival.lapsed(time.Now()) ||
				!owedArrival.known && !owedCheck.GetExpiresAt().AsTime().After(c.now())) {
				c.count(func(s *Stats) { s.ChecksDropped++ })
				c.log.Debug("deferred check expired before its turn")
				owedCheck = nil
			}
			if owedCheck == nil && !owedRun {
				continue
			}
			if wait := c.checks.take(c.o.Clock.Local()); wait > 0 {
				owe(wait)
				continue
			}
			check, owedRunWas := owedCheck, owedRun
			owedCheck, owedRun = nil, false
			if check != nil && !owedRunWas && c.lastFull.answers(owedArrival, c.ps) {
				// A run of every policy began since it came (the
				// schedule's, with a local Interval).
				if err := c.answerFromLastRun(id, askedCheck{msg: check, arrival: owedArrival}, send); err != nil {
					return c.streamEnded(ctx, msgs, recvErr, err)
				}
				continue
			}
			var asked *askedCheck
			if check != nil {
				asked = &askedCheck{msg: check, arrival: owedArrival}
			}
			if err := c.runAndReport(runCtx, id, asked, c.policies, send); err != nil {
				return c.streamEnded(ctx, msgs, recvErr, err)
			}
			reported = true
		case <-firstWait:
			firstWait = nil
			if !reported && c.ps != nil {
				reportNow = true
			}
		case m := <-msgs:
			if !heard {
				heard = true
				sess, isSession := m.GetMessage().(*agentv1.VerifierMessage_Session)
				if isSession {
					sessioned = true
					c.takeSession(sess.Session, c.o.Clock.Local())
				}
				if err := resend(); err != nil {
					return c.streamEnded(ctx, msgs, recvErr, err)
				}
				if isSession {
					if c.ps != nil {
						firstWait = c.o.After(firstSetWait)
					}
					continue
				}
				reportNow = c.ps != nil
			}
			switch m := m.GetMessage().(type) {
			case *agentv1.VerifierMessage_PolicySet:
				changed := !proto.Equal(m.PolicySet, c.ps)
				if changed {
					if err := policy.CheckSet(m.PolicySet); err != nil {
						c.logSampled(slog.LevelError, "policy_set_refused", "policy set refused; keeping the one before",
							"policy_set_version", printable.Line(logsample.Clip(m.PolicySet.GetVersion())), "err", err)
						continue
					}
					// Cached on disk when it first runs (runAndReport), so
					// that a verifier sending sets faster than the bound on
					// runs does not rewrite the file at that rate.
					c.setPolicySet(m.PolicySet)
					c.logSampled(slog.LevelInfo, "policy_set", "policy set received",
						"policy_set_version", printable.Line(logsample.Clip(m.PolicySet.GetVersion())), "policies", len(c.policies))
				}
				switch {
				case !reported || reportNow:
					// The session's first report, which backs off
					// with the reconnects.
					reportNow = true
				case !changed:
				case owedCheck != nil || owedRun:
					// The run owed already runs the new set.
					owedRun = true
				default:
					if wait := c.checks.take(c.o.Clock.Local()); wait > 0 {
						c.deferRun("policy_set", false, wait)
						owedRun = true
						owe(wait)
						continue
					}
					reportNow = true
				}
			case *agentv1.VerifierMessage_CheckNow:
				// Taken from arrivals first, whatever follows: every
				// CheckNow's arrival is forgotten once it is read.
				arrival := arrivals.take(m.CheckNow)
				if c.ps == nil {
					c.logSampled(slog.LevelWarn, "check_early", "check requested before any policy set arrived")
					continue
				}
				c.log.Debug("check requested")
				if arrival.lapsed(time.Now()) {
					// It waited behind a run past its time to live:
					// its report would be refused, ending the stream.
					c.count(func(s *Stats) { s.ChecksDropped++ })
					c.logSampled(slog.LevelWarn, "check_lapsed", "a live check expired while a run went on; not run (runs take longer than the verifier waits for a live check)")
					continue
				}
				if err := usableCheck(m.CheckNow); err != nil {
					c.count(func(s *Stats) { s.ChecksRefused++ })
					c.logSampled(slog.LevelWarn, "check_refused", "check request refused, not run", "err", err)
					continue
				}
				if owedCheck != nil || owedRun {
					c.deferRun("check", owedCheck != nil, 0)
					owedCheck, owedArrival = m.CheckNow, arrival
					continue
				}
				if wait := c.checks.take(c.o.Clock.Local()); wait > 0 {
					c.deferRun("check", false, wait)
					owedCheck, owedArrival = m.CheckNow, arrival
					owe(wait)
					continue
				}
				if c.lastFull.answers(arrival, c.ps) {
					// It waited behind a run of every policy that began
					// after it came: that run's results answer it now,
					// where a run of its own would answer it a run later
					// (checks that come together are answered by two
					// runs, not one each). Within the bound on runs all
					// the same: each answer is a signature and a report.
					if err := c.answerFromLastRun(id, askedCheck{msg: m.CheckNow, arrival: arrival}, send); err != nil {
						return c.streamEnded(ctx, msgs, recvErr, err)
					}
					continue
				}
				if err := c.runAndReport(runCtx, id, &askedCheck{msg: m.CheckNow, arrival: arrival}, c.policies, send); err != nil {
					return c.streamEnded(ctx, msgs, recvErr, err)
				}
				reported = true
			case *agentv1.VerifierMessage_Ack:
				c.ack(m.Ack.GetSeq())
			case *agentv1.VerifierMessage_Session:
				// A stream's Session comes first and once. More would
				// move the clock and rewrite the presence URL at the
				// rate a verifier sends them; they are ignored.
				if sessioned {
					c.logSampled(slog.LevelWarn, "session_again", "verifier sent a second Session on one stream; ignored")
					continue
				}
				sessioned = true
				c.takeSession(m.Session, c.o.Clock.Local())
			default:
				c.logSampled(slog.LevelWarn, "unexpected", "unexpected message from verifier", "type", fmt.Sprintf("%T", m))
			}
		}
	}
}

// deferRun counts a run asked for past the bound (what: a "check" or a
// changed "policy_set"), and a check it replaces, and says so in the log
// at most every 10 s.
func (c *Client) deferRun(what string, replaces bool, wait time.Duration) {
	c.count(func(s *Stats) {
		if what == "check" {
			s.ChecksDeferred++
		} else {
			s.RunsDeferred++
		}
		if replaces {
			s.ChecksDropped++
		}
	})
	attrs := []any{"asked", what, "burst", c.o.CheckBurst, "every", c.o.CheckEvery}
	if wait > 0 {
		attrs = append(attrs, "wait", wait.Round(time.Millisecond))
	}
	c.logSampled(slog.LevelWarn, "runs_past_bound", "verifier asks for runs more often than the agent makes them; the latest waits its turn", attrs...)
}

// usableCheck refuses a CheckNow whose answer the agent should not carry:
// without a nonce or with one longer than a report may hold, or without
// an expiry. Whether it has expired is the verifier's to say: the agent's
// sense of the verifier's time moves with the Mac's clock, and a step of
// that clock must not refuse honest checks.
func usableCheck(check *agentv1.CheckNow) error {
	n := len(check.GetNonce())
	switch {
	case n == 0:
		return errors.New("no nonce")
	case n > report.MaxNonceSize:
		return fmt.Errorf("nonce of %d bytes, more than %d", n, report.MaxNonceSize)
	case check.GetExpiresAt() == nil || !check.GetExpiresAt().IsValid():
		return errors.New("no valid expiry")
	}
	return nil
}

// logSampled logs at most one line every 10 s for key, one of a fixed
// set of kinds, saying how many were left out since the last: these are
// lines a verifier's messages cause, at whatever rate it sends them.
func (c *Client) logSampled(level slog.Level, key, msg string, attrs ...any) {
	ok, skipped := c.sampled.Take(key, 10*time.Second, c.o.Clock.Local())
	if !ok {
		return
	}
	if skipped > 0 {
		attrs = append(attrs, "not_logged", skipped)
	}
	c.log.Log(context.Background(), level, msg, attrs...)
}

// checkBudget is a token bucket: burst checks at once, then one every
// every.
type checkBudget struct {
	burst  int
	every  time.Duration
	tokens float64
	last   time.Time
	primed bool
}

// take spends a token if there is one and returns 0, or returns how long
// until there is one.
func (b *checkBudget) take(now time.Time) time.Duration {
	if !b.primed {
		b.primed, b.tokens, b.last = true, float64(b.burst), now
	}
	if d := now.Sub(b.last); d > 0 {
		b.tokens = min(float64(b.burst), b.tokens+float64(d)/float64(b.every))
		b.last = now
	}
	if b.tokens >= 1 {
		b.tokens--
		return 0
	}
	// Rounded up, so that waiting this long always makes a whole token.
	return max(time.Duration(math.Ceil((1-b.tokens)*float64(b.every))), 1)
}

// PresenceURL is the verifier's presence URL, the only one the agent signs
// proofs of presence for; "" until a verifier has named one.
func (c *Client) PresenceURL() string {
	u, _ := c.presenceURL.Load().(string)
	return u
}

// takeSession takes what the verifier says at the start of a stream, which
// arrived at the device's local time receivedAt.
func (c *Client) takeSession(s *agentv1.Session, receivedAt time.Time) {
	if vt := s.GetVerifierTime(); vt != nil && vt.IsValid() {
		c.o.Clock.Learn(vt.AsTime(), receivedAt)
	}
	u := s.GetPresenceUrl()
	if u != "" {
		if err := ValidPresenceURL(u); err != nil {
			c.logSampled(slog.LevelWarn, "presence_url_refused", "verifier named an unusable presence URL; proofs of presence stay off", "err", logsample.Clip(err.Error()))
			u = ""
		}
	}
	if u == c.PresenceURL() {
		return
	}
	c.presenceURL.Store(u)
	if err := c.o.Dir.SavePresenceURL(u); err != nil {
		c.log.Warn("saving presence URL failed", "err", err)
	}
	c.logSampled(slog.LevelInfo, "presence_url", "presence url set", "presence_url", u)
}

// ValidPresenceURL checks a presence URL the verifier names: one the agent
// may sign for (presence.OriginOf), so that the redirect the agent builds
// from it is exactly it.
func ValidPresenceURL(s string) error {
	_, err := presence.OriginOf(s)
	return err
}

// streamEnded turns a failed Send into the stream's real status, which
// comes once the messages before it are handed over.
// Those are taken here meanwhile: acks still count (the reports they name
// are stored), the rest no longer matters.
func (c *Client) streamEnded(ctx context.Context, msgs <-chan *agentv1.VerifierMessage, recvErr chan error, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	var se sendError
	if errors.As(err, &se) {
		// Sign/seq failures are local: end the session and retry later.
		return se.error
	}
	timeout := time.NewTimer(streamEndWait)
	defer timeout.Stop()
	for {
		select {
		case rerr := <-recvErr:
			return rerr
		case m := <-msgs:
			if a := m.GetAck(); a != nil {
				c.ack(a.GetSeq())
			}
		case <-timeout.C:
			return err
		}
	}
}

func recvStatus(stream agentv1.AgentService_ConnectClient, err error) error {
	if _, rerr := stream.Recv(); rerr != nil {
		return rerr
	}
	return err
}

// sendError marks local failures while building a report.
type sendError struct{ error }

// afterSession writes down the acknowledgement held back, if any, and
// applies what the way the stream ended says about the reports it
// carried.
func (c *Client) afterSession(err error) {
	c.flushContact()
	code := status.Code(err)
	if retry.Of(retry.Connect, err) != retry.Drop {
		return
	}
	// The verifier handles reports in order and ends the stream at the
	// first it refuses: the oldest unacknowledged report sent in this
	// session. Resending it would be refused again.
	for i, p := range c.pending {
		if !p.sent {
			continue
		}
		c.log.Warn("report refused by verifier, dropped", "seq", p.seq, "code", code.String(), "err", errMessage(err))
		c.pending = append(c.pending[:i], c.pending[i+1:]...)
		break
	}
	if code == codes.AlreadyExists {
		// The verifier accepted higher seqs than this state dir
		// remembers (restored or reset state): jump past them. Clock
		// milliseconds outgrow any count a device reaches by reporting.
		// The later of the device's clock and the verifier's time as
		// known, among those a seq may be: a verifier's time before 1970
		// would otherwise wrap to a seq above report.MaxSeq, which every
		// verifier refuses for good.
		floor := seqFloor(c.o.Clock.Local(), c.now())
		if seq, serr := c.o.Dir.RaiseSeq(floor); serr != nil {
			c.log.Error("raising seq failed", "err", serr)
		} else {
			c.log.Warn("seq raised after the verifier refused it as not increasing", "seq", seq)
		}
	}
}

// seqFloor is the largest of times' milliseconds that a seq may be
// (1 to report.MaxSeq), or 1.
func seqFloor(times ...time.Time) uint64 {
	floor := uint64(1)
	for _, t := range times {
		if ms := t.UnixMilli(); ms > 0 && uint64(ms) <= report.MaxSeq {
			floor = max(floor, uint64(ms))
		}
	}
	return floor
}

// platform is the platform policies are filtered for; once osquery has
// named it, the answer is kept.
func (c *Client) platform() string {
	if c.o.Platform != "" {
		return c.o.Platform
	}
	// While osquery cannot answer, it is asked again at most every
	// minute, not for every policy set a verifier sends.
	now := c.o.Clock.Local()
	if !c.platformAsked.IsZero() && now.Sub(c.platformAsked) < time.Minute {
		return policy.Platform()
	}
	c.platformAsked = now
	ctx, cancel := context.WithTimeout(c.ctx, 10*time.Second)
	defer cancel()
	p, ok := policy.HostPlatform(ctx, c.o.Querier)
	if ok {
		c.o.Platform = p
	} else {
		c.logSampled(slog.LevelWarn, "platform", "osquery did not say which platform it runs on; filtering policies for this build's", "platform", p)
	}
	return p
}

func (c *Client) setPolicySet(ps *agentv1.PolicySet) {
	c.ps = ps
	c.policies = policy.Filter(ps, c.platform())
	keep := make(map[string]bool, len(c.policies))
	// A policy new to the agent is run by the run a changed set asks for
	// (or by the session's first report), within the bound on runs; it is
	// not due at once on its own, which would let a verifier alternating
	// sets of different ids run them outside that bound.
	now := c.o.Clock.Local()
	for _, p := range c.policies {
		keep[p.GetId()] = true
		if _, ok := c.due[p.GetId()]; !ok {
			c.due[p.GetId()] = now.Add(c.interval(p))
		}
	}
	for id := range c.results {
		if !keep[id] {
			delete(c.results, id)
		}
	}
	for id := range c.due {
		if !keep[id] {
			delete(c.due, id)
		}
	}
	c.logClamped()
}

// interval is how often p runs: the local Interval setting when there is
// one, else the policy's own, held to what the verifier's loader allows
// (policyfile.MinInterval to MaxInterval). The agent does not take a
// shorter one on the verifier's word: a policy set pushed with a 1 ms
// interval would otherwise have every Mac run its queries, fsync its seq
// and sign a report in a tight loop.
func (c *Client) interval(p *agentv1.Policy) time.Duration { return PolicyInterval(p, c.o.Interval) }

// PolicyInterval is how often the agent runs p with the local Interval
// setting local (0 when unset): see Client.interval.
func PolicyInterval(p *agentv1.Policy, local time.Duration) time.Duration {
	if local > 0 {
		return local
	}
	d := p.GetInterval().AsDuration()
	if d <= 0 {
		return DefaultInterval
	}
	return min(max(d, policyfile.MinInterval), policyfile.MaxInterval)
}

// ReportSlack is what ReportDue allows beyond the schedule: the
// report's listings, an acknowledgement written down late (contactEvery),
// a reconnect's backoff.
const ReportSlack = time.Minute

// ReportDue bounds how old the last report the verifier stored may be
// while the agent runs policies (ps's for platform, with the local
// Interval setting and run budget) as it should: the shortest interval it
// runs them at, a tenth of it for the jitter, one run, and ReportSlack.
// It is 0 when no policy of ps applies: the agent then reports only when
// it connects or the verifier asks.
func ReportDue(ps *agentv1.PolicySet, platform string, local, runBudget time.Duration) time.Duration {
	var shortest time.Duration
	for _, p := range policy.Filter(ps, platform) {
		if iv := PolicyInterval(p, local); shortest == 0 || iv < shortest {
			shortest = iv
		}
	}
	if shortest == 0 {
		return 0
	}
	return shortest + shortest/10 + runBudget + ReportSlack
}

// logClamped says once per policy set which pushed intervals interval
// holds to the allowed range.
func (c *Client) logClamped() {
	if c.o.Interval > 0 {
		return
	}
	var ids []string
	for _, p := range c.policies {
		if d := p.GetInterval().AsDuration(); d > 0 && (d < policyfile.MinInterval || d > policyfile.MaxInterval) {
			ids = append(ids, p.GetId())
		}
	}
	if len(ids) > 0 {
		c.log.Warn("policy intervals outside the allowed range; using the nearest bound",
			"policy_set_version", c.ps.GetVersion(), "policies", ids, "min", policyfile.MinInterval, "max", policyfile.MaxInterval)
	}
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

func (c *Client) nextDue() (time.Time, bool) {
	var next time.Time
	for _, p := range c.policies {
		d := c.due[p.GetId()]
		if next.IsZero() || d.Before(next) {
			next = d
		}
	}
	return next, len(c.policies) > 0
}

// duePolicies are those due now, plus any due within a second, so policies
// on the same interval keep running (and reporting) together.
func (c *Client) duePolicies() []*agentv1.Policy {
	horizon := c.o.Clock.Local().Add(time.Second)
	var out []*agentv1.Policy
	for _, p := range c.policies {
		if !c.due[p.GetId()].After(horizon) {
			out = append(out, p)
		}
	}
	return out
}

// runAndReport runs policies, then signs and sends a report holding the
// latest result of every current policy.
func (c *Client) runAndReport(ctx context.Context, id *state.Identity, check *askedCheck, run []*agentv1.Policy, send func(*pendingReport) error) error {
	if c.ps != nil && c.ps != c.psSaved {
		if err := c.o.Dir.SavePolicySet(c.ps); err != nil {
			c.log.Warn("caching policy set failed", "err", err)
		}
		c.psSaved = c.ps
	}
	observed, began := c.now(), time.Now()
	budget, cancel := context.WithTimeout(ctx, c.o.RunBudget)
	defer cancel()
	spent := 0
	for _, p := range run {
		if budget.Err() != nil && ctx.Err() == nil {
			c.results[p.GetId()] = policy.NotRun(p, fmt.Sprintf("this run's time budget (%s) was spent", c.o.RunBudget))
			spent++
			continue
		}
		c.results[p.GetId()] = policy.Run(budget, c.o.Querier, p, c.now)
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	if spent > 0 {
		c.logSampled(slog.LevelWarn, "run_budget", "a run's time budget was spent; the policies left are reported as not run",
			"budget", c.o.RunBudget, "not_run", spent, "policies", len(run))
	}
	// One jitter per batch keeps a batch together; jitter spreads a fleet's
	// reports over time instead of having every Mac report at once.
	// Due times are kept on the device's own clock: the verifier's time
	// as the agent knows it moves with every Session, and a verifier
	// stepping it forward would make every policy due at once.
	done := c.o.Clock.Local()
	for _, p := range run {
		iv := c.interval(p)
		c.due[p.GetId()] = done.Add(iv + time.Duration(c.o.Jitter(int64(iv/10)+1)))
	}

	certs := c.keychainCertificates(ctx, id)
	if ctx.Err() != nil {
		return ctx.Err()
	}
	accounts := c.localAccounts(ctx)
	if ctx.Err() != nil {
		return ctx.Err()
	}

	r := &agentv1.PostureReport{
		DeviceId:         id.DeviceID,
		ObservedAt:       timestamppb.New(observed),
		PolicySetVersion: c.ps.GetVersion(),
		AgentVersion:     version.Version,
		Certificates:     certs,
		Accounts:         accounts,
	}
	for _, p := range c.policies {
		if res, ok := c.results[p.GetId()]; ok {
			r.Results = append(r.Results, res)
		}
	}
	// Within its budget only if the budget was not spent, not even by the
	// last policy's query (stopped with an ERROR, but not counted in spent).
	c.noteRun(began, len(run), spent == 0 && budget.Err() == nil, r)
	return c.file(id, r, check, send)
}

// noteRun keeps the report of a run that began at began and ran ran
// policies, all of them within its budget if whole, for the checks it may
// answer (fullRun): only a run of every policy, whole. Any other run's
// report is newer than the last full one, which then answers no check: an
// answer must not bring older results under a higher seq than a report
// already filed.
func (c *Client) noteRun(began time.Time, ran int, whole bool, r *agentv1.PostureReport) {
	if ran != len(c.policies) || !whole {
		c.lastFull = fullRun{}
		return
	}
	c.lastFull = fullRun{began: began, ps: c.ps, report: proto.CloneOf(r)}
}

// answerFromLastRun answers check with the results of the session's last
// run of every policy (lastFull.answers says when that may be): a report
// of its own, with the check's nonce and the next seq.
func (c *Client) answerFromLastRun(id *state.Identity, check askedCheck, send func(*pendingReport) error) error {
	c.count(func(s *Stats) { s.ChecksShared++ })
	c.log.Debug("check answered with the results of a run that began after it arrived")
	return c.file(id, proto.CloneOf(c.lastFull.report), &check, send)
}

// askedCheck is a CheckNow a report answers, and its arrival.
type askedCheck struct {
	msg     *agentv1.CheckNow
	arrival checkArrival
}

// file gives r the check's nonce (if any) and the next seq, signs it, and
// sends it, keeping it until it is acknowledged. A check that has lapsed
// by now (its run took longer than it had to live) gives it no nonce: the
// verifier has given up on the check (and one older than this agent would
// refuse the report, ending the stream); the results it brings are
// reported all the same.
func (c *Client) file(id *state.Identity, r *agentv1.PostureReport, check *askedCheck, send func(*pendingReport) error) error {
	observed := r.GetObservedAt().AsTime()
	var nonceUntil time.Time
	switch {
	case check == nil:
	case check.arrival.lapsed(time.Now()):
		c.count(func(s *Stats) { s.ChecksDropped++ })
		c.logSampled(slog.LevelWarn, "check_late", "a live check expired during the run that answers it; its results are reported without it (runs take longer than the verifier waits for a live check)")
	default:
		r.Nonce = check.msg.GetNonce()
		nonceUntil = check.msg.GetExpiresAt().AsTime()
	}
	// The seq is on disk before the report exists anywhere else.
	seq, err := c.o.Dir.NextSeq()
	if err != nil {
		return sendError{err}
	}
	if seq > report.MaxSeq {
		// Only a damaged or hand-edited seq file gets here; every report
		// would be refused.
		return sendError{retry.Permanent(fmt.Errorf("seq %d in %s is above %d, the most a verifier accepts: the state dir is damaged; remove it to enroll afresh",
			seq, c.o.Dir.File(state.SeqFile), uint64(report.MaxSeq)))}
	}
	r.Seq = seq
	r.SettingsRejection = c.settingsRejection(observed)
	signed, err := report.Sign(c.o.Signer, r)
	if err != nil {
		return sendError{err}
	}
	if n := len(signed.GetPayload()); n > report.MaxPayloadSize {
		// The verifier would refuse it, and resending it at every
		// connect would change nothing: the Mac's posture goes stale
		// (sign-ins fail closed) until the policy set shrinks.
		c.logSampled(slog.LevelError, "report_too_large", "report larger than the verifier accepts; not sent",
			"seq", seq, "bytes", n, "limit", report.MaxPayloadSize, "results", len(r.Results))
		return nil
	}
	c.pending = append(c.pending, pendingReport{seq: seq, deviceID: id.DeviceID, observedAt: observed, nonceUntil: nonceUntil, signed: signed})
	over := max(len(c.pending)-c.o.MaxPending, 0)
	for size := c.pendingBytes(); over < len(c.pending)-1 && size > c.o.MaxPendingBytes; over++ {
		size -= c.pending[over].size()
	}
	if over > 0 {
		c.log.Warn("too many unacknowledged reports, dropping the oldest", "dropped", over)
		c.pending = append(c.pending[:0], c.pending[over:]...)
	}
	c.log.Debug("report", "seq", seq, "results", len(r.Results), "certificates", len(r.Certificates), "check", len(r.GetNonce()) > 0)
	return send(&c.pending[len(c.pending)-1])
}

// settingsRejection is what a report observed at observed says of the
// settings (Options.SettingsRejected): nil when the agent runs on those it
// was given, else when it rejected them, in the verifier's time as the
// agent knows it, and why, bounded (report.SettingsReason): a word the
// verifier would refuse would cost the whole report. The wall clock is
// what dates it (a Mac sleeps, which its monotonic clock does not count);
// should the Mac's clock have stepped since, a time after observed or
// before 1970 is observed.
func (c *Client) settingsRejection(observed time.Time) *agentv1.SettingsRejection {
	if c.o.SettingsRejected == nil {
		return nil
	}
	at, why := c.o.SettingsRejected()
	if at.IsZero() {
		return nil
	}
	off, _ := c.o.Clock.Offset()
	if at = at.Add(off); at.After(observed) || !at.After(time.Unix(0, 0)) {
		at = observed
	}
	return &agentv1.SettingsRejection{At: timestamppb.New(at), Reason: report.SettingsReason(why)}
}

// keychainCertificates lists the device CA's certificates in users'
// keychains for a report. Failing to list them never holds a report back:
// the report then names none, and the verifier vouches for no browser
// certificate of this device until a later report does.
func (c *Client) keychainCertificates(ctx context.Context, id *state.Identity) []*agentv1.KeychainCertificate {
	keyID := id.DeviceCAKeyID()
	if len(keyID) == 0 {
		if !c.certsFailing {
			c.log.Warn("device CA certificate has no key id; reporting no keychain certificates")
		}
		c.certsFailing = true
		return nil
	}
	return listOrNone(ctx, c.log, &c.certsFailing, "keychain certificates", "certificates", func() ([]*agentv1.KeychainCertificate, error) {
		return osquery.KeychainCertificates(ctx, c.o.Querier, keyID)
	})
}

// localAccounts lists the Mac's local accounts for a report. Failing to
// list them never holds a report back: the report then names none, and the
// verifier binds no user to this Mac by its accounts until a later one does.
func (c *Client) localAccounts(ctx context.Context) []*agentv1.LocalAccount {
	return listOrNone(ctx, c.log, &c.accountsFailing, "local accounts", "accounts", func() ([]*agentv1.LocalAccount, error) {
		return osquery.LocalAccounts(ctx, c.o.Querier)
	})
}

// listOrNone runs one of a report's listings. A failure leaves the list
// empty; it is logged when it starts, not at every report (failing
// remembers), and so is the recovery. A shutdown (ctx done) is not a
// failure.
func listOrNone[T any](ctx context.Context, log *slog.Logger, failing *bool, what, countKey string, list func() ([]T, error)) []T {
	items, err := list()
	if err != nil {
		if ctx.Err() == nil {
			if !*failing {
				log.Warn("listing "+what+" failed; reporting none", "err", policy.Message(err))
			}
			*failing = true
		}
		return nil
	}
	if *failing {
		log.Info("listing "+what+" works again", countKey, len(items))
		*failing = false
	}
	return items
}

// prunePending drops the reports the verifier would refuse: dated more
// than ResendMaxAge from its time either way, with an expired nonce, or
// made under another device id than deviceID's.
func (c *Client) prunePending(deviceID string) {
	now := c.now()
	kept := c.pending[:0]
	dropped := 0
	for _, p := range c.pending {
		// Dated more than ResendMaxAge either way: the verifier refuses a
		// report that far from its time, and one refused ends the stream
		// before the reports behind it.
		if (now.Sub(p.observedAt)).Abs() > c.o.ResendMaxAge || (!p.nonceUntil.IsZero() && now.After(p.nonceUntil)) ||
			p.deviceID != deviceID {
			dropped++
			continue
		}
		kept = append(kept, p)
	}
	clear(c.pending[len(kept):])
	c.pending = kept
	if dropped > 0 {
		c.log.Info("unacknowledged reports not resent: too old, dated ahead of the verifier's time, or another device id's", "dropped", dropped)
	}
}

func (p *pendingReport) size() int { return len(p.signed.GetPayload()) + len(p.signed.GetSignature()) }

// pendingBytes is the signed bytes of the unacknowledged reports.
func (c *Client) pendingBytes() int {
	n := 0
	for i := range c.pending {
		n += c.pending[i].size()
	}
	return n
}

// ack forgets reports up to seq: the verifier stores and acks in order.
func (c *Client) ack(seq uint64) {
	kept := c.pending[:0]
	for _, p := range c.pending {
		if p.seq > seq {
			kept = append(kept, p)
		}
	}
	c.pending = kept
	c.count(func(s *Stats) { s.Acked = max(s.Acked, seq) })
	held := c.noteContact(true, func(ct *state.Contact, at time.Time) { ct.AckedAt, ct.AckedSeq = at, seq })
	if held > 0 && c.ackFlush == nil {
		c.ackFlush = c.o.After(held)
	}
}
