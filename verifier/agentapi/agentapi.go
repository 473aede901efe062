// Package agentapi serves clearance.agent.v1.AgentService: enrollment,
// renewal and the Connect stream through which agents receive policies and
// CheckNow requests and deliver signed posture reports.
package agentapi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/clearance/clearance/pkg/logsample"
	agentv1 "github.com/clearance/clearance/proto/gen/clearance/agent/v1"
	"github.com/clearance/clearance/verifier/enroll"
	"github.com/clearance/clearance/verifier/grpclite"
	"github.com/clearance/clearance/verifier/hub"
	"github.com/clearance/clearance/verifier/ingest"
	"github.com/clearance/clearance/verifier/metrics"
	"github.com/clearance/clearance/verifier/ratelimit"
	"github.com/clearance/clearance/verifier/storage"
)

// Policies gives the policy set in force.
type Policies interface {
	Current() *agentv1.PolicySet
}

// Server implements AgentService.
type Server struct {
	agentv1.UnimplementedAgentServiceServer

	Store    storage.Store
	CA       CertVerifier
	Enroller *enroll.Service
	Ingest   *ingest.Verifier
	Hub      *hub.Hub
	Policies Policies
	Metrics  *metrics.Metrics
	Logger   *slog.Logger
	Now      func() time.Time
	// PresenceURL is the sign-in listener's /saml/presence URL, the only
	// one agents sign proofs of presence for; sent to every agent.
	PresenceURL string
	// BrowserCertGrace is how long a Mac's older browser certificates keep
	// counting once its agent reports a newer one (browser-cert-grace).
	BrowserCertGrace time.Duration
	// HelloTimeout bounds the wait for a Connect stream's Hello; zero is
	// DefaultHelloTimeout.
	HelloTimeout time.Duration

	// refusedLog samples the log lines of refused enrollments, which
	// anyone who can reach the port can cause: one sample per outcome
	// label (a fixed set), so that a flood of one kind does not hide
	// another.
	refusedLog        logsample.Samples
	connectRefusedLog sampledLog
	lapsedLog         sampledLog
	// setDigests holds the policy set in force's query digests (digestsOf).
	setDigests atomic.Pointer[setDigests]
	// deep runs the streams' deep work (see Connect).
	deep workers
	// factChanges bounds, per device on this replica, how often its
	// agent's facts are written (updateFacts).
	factChanges     *ratelimit.Keyed
	factChangesOnce sync.Once
}

// refusedLogEvery is how often a refused enrollment is logged at warn; the
// others are logged at debug and counted in the next warn line (and all in
// clearance_enrollments_total).
const refusedLogEvery = 10 * time.Second

var _ agentv1.AgentServiceServer = (*Server)(nil)

func (s *Server) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

func (s *Server) log() *slog.Logger {
	l := s.Logger
	if l == nil {
		l = slog.Default()
	}
	return l.With("component", "agentapi")
}

// NotableSkew is how far an agent's clock may be from the verifier's before
// the verifier logs it. Agents correct for any offset (they work in the
// verifier's time, see Session.verifier_time), so this is only news for
// whoever runs the Macs' clocks.
const NotableSkew = 2 * time.Second

// clockSkew logs and counts how far an agent's own clock (sent in Hello or
// EnrollRequest) is from the verifier's.
func (s *Server) clockSkew(agentTime *timestamppb.Timestamp, log *slog.Logger) {
	if agentTime == nil || agentTime.CheckValid() != nil {
		return
	}
	skew := agentTime.AsTime().Sub(s.now())
	s.Metrics.AgentClockSkew(skew)
	if skew.Abs() >= NotableSkew {
		// Positive: the agent's clock is ahead.
		log.Warn("agent clock differs from the verifier's; the agent corrects for it", "skew", skew.Round(time.Millisecond).String())
	}
}

// Enroll implements AgentService.Enroll.
func (s *Server) Enroll(ctx context.Context, req *agentv1.EnrollRequest) (*agentv1.EnrollResponse, error) {
	resp, outcome, err := s.Enroller.Enroll(ctx, req)
	s.Metrics.Enrollment(outcome)
	if outcome == enroll.OutcomeCurrentCert {
		s.limitReached("re-enrollment", outcome, resp.GetDeviceId())
	}
	if err != nil {
		// Everything here is the sender's choice: each value clipped, and
		// a flood logged as a line every refusedLogEvery with a count.
		attrs := []any{"reason", outcome, "hardware_uuid", logsample.Clip(req.GetFacts().GetHardwareUuid()),
			"err", logsample.Clip(status.Convert(err).Message())}
		if ok, skipped := s.refusedLog.Take(outcome, refusedLogEvery, s.now()); ok {
			s.log().Warn("enrollment refused", append(attrs, "others_not_logged", skipped)...)
		} else {
			s.log().Debug("enrollment refused", attrs...)
		}
		return nil, err
	}
	// Only an enrolled device's clock is worth a line.
	s.clockSkew(req.GetAgentTime(), s.log().With("device_id", resp.GetDeviceId()))
	if outcome == enroll.OutcomeReenrolled {
		s.endReplacedStreams(ctx, resp.GetDeviceId())
	}
	return resp, nil
}

// endReplacedStreams ends the device's streams that hold a key other than
// its current one, here and on other replicas. The current key is read
// back rather than taken from the request: should another enrollment have
// committed meanwhile, its key is the one that stays. Storage refuses the
// old key's reports either way; this only ends its streams at once.
func (s *Server) endReplacedStreams(ctx context.Context, deviceID string) {
	dev, err := s.Store.GetDevice(ctx, deviceID)
	if err != nil {
		s.log().Warn("re-enrolled device unreadable; its old streams end at their next report", "device_id", deviceID, "err", err)
		return
	}
	s.Hub.Reenrolled(deviceID, dev.PublicKey)
}

// Renew implements AgentService.Renew.
func (s *Server) Renew(ctx context.Context, req *agentv1.RenewRequest) (*agentv1.RenewResponse, error) {
	dev, err := Authenticate(ctx, s.CA, s.Store, s.now())
	if err != nil {
		return nil, err
	}
	resp, outcome, err := s.Enroller.Renew(ctx, dev, req)
	s.Metrics.Renewal(outcome)
	switch {
	case outcome == enroll.OutcomeCurrentCert:
		s.limitReached("renewal", outcome, dev.ID)
	case err != nil:
		attrs := []any{"reason", outcome, "device_id", dev.ID, "err", logsample.Clip(status.Convert(err).Message())}
		if ok, skipped := s.refusedLog.Take("renew_"+outcome, refusedLogEvery, s.now()); ok {
			s.log().Warn("renewal refused", append(attrs, "others_not_logged", skipped)...)
		} else {
			s.log().Debug("renewal refused", attrs...)
		}
	}
	return resp, err
}

// limitReached logs, sampled, a renewal or re-enrollment answered with the
// device's current certificate because it was issued as many as it may be
// lately: a genuine agent does not get there, so it says that a device
// asks too often.
func (s *Server) limitReached(what, outcome, deviceID string) {
	attrs := []any{"request", what, "device_id", deviceID}
	if ok, skipped := s.refusedLog.Take(what+"_"+outcome, refusedLogEvery, s.now()); ok {
		s.log().Warn("device certificate limit reached; answered with its current certificate", append(attrs, "others_not_logged", skipped)...)
	} else {
		s.log().Debug("device certificate limit reached; answered with its current certificate", attrs...)
	}
}

// Connect implements AgentService.Connect.
//
// Thousands of streams wait at once, each on its handler's goroutine (see
// serve), so what each keeps on its stack counts. A goroutine's
// stack grows to what its deepest call needed and shrinks only at a
// garbage collection, by half, and only while its waiting frames use less
// than a quarter of it. So the deep work (opening the stream: the device
// lookup, the certificate check; and each report: unmarshalling, the
// signature check, the store) runs on the pool's workers (s.deep), shared
// by all streams, and the goroutine that waits only ever needs what waiting
// takes: it stays at 4 KiB, where a reader that did a report's work itself
// was at 8 or 16 KiB and a handler that opened the stream at 8. Keep those
// waits shallow: a wait whose frames pass the stack's size less its guard
// makes it grow, and it stays grown.
func (s *Server) Connect(stream agentv1.AgentService_ConnectServer) error {
	c := &agentStream{s: s, stream: stream, out: sender{stream: stream}}
	if err := s.deep.do(c.open); err != nil {
		return err
	}
	defer c.close()
	return c.serve()
}

// agentStream is one agent's open Connect stream. It holds no context of
// its own: the stream's ends when the handler returns, which is what ends
// the reader.
type agentStream struct {
	s      *Server
	stream agentv1.AgentService_ConnectServer
	// The device's id and key (PKIX DER): all its reports need of the
	// device record, whose other fields (its facts) each stream would
	// otherwise hold for days.
	deviceID string
	key      []byte
	sess     *hub.Session
	// unregister removes sess from the hub.
	unregister func()
	out        sender
	// streak is the digest of the judged results of the stream's latest
	// report whose policy streaks are stored; 0 until one is (streaks).
	streak uint64
}

// log is the stream's logger, made for each line: a logger with the
// device's attribute held by every stream costs more than the few lines a
// stream writes.
func (c *agentStream) log() *slog.Logger { return c.s.log().With("device_id", c.deviceID) }

// open authenticates the stream, reads its Hello, registers it with the
// hub and sends the session and the policy set.
func (c *agentStream) open() error {
	s, stream := c.s, c.stream

	// 1. Who: the device certificate.
	dev, err := Authenticate(stream.Context(), s.CA, s.Store, s.now())
	if err != nil {
		// Any client can call Connect without a certificate, as often as
		// it likes: sampled.
		s.connectRefusedLog.log(s.log(), s.now(), "connect refused", "err", status.Convert(err).Message())
		return err
	}
	c.deviceID, c.key = dev.ID, dev.PublicKey

	// 2. Hello must come first, and soon: a stream that waits for it is
	// not yet the device's session, so nothing the hub does reaches it.
	ss := serverStream(stream)
	late := time.AfterFunc(s.helloTimeout(), func() { grpclite.Interrupt(ss) })
	first, err := stream.Recv()
	if !late.Stop() {
		return status.Errorf(codes.DeadlineExceeded, "no Hello within %s of opening the stream", s.helloTimeout())
	}
	if err != nil {
		return err
	}
	hello := first.GetHello()
	if hello == nil {
		return status.Errorf(codes.InvalidArgument, "the first message on Connect must be Hello, got %s", messageName(first))
	}

	// 3. Still enrolled, not revoked, and with the key it authenticated
	// with: a revocation or re-enrollment committed while the stream
	// waited for its Hello found no session to end, and a stream of the
	// old key must not replace the new key's.
	if err := c.current(); err != nil {
		return err
	}

	// 4. Register, then send the session and the policy set: a reload
	// between the two at worst sends the same set twice.
	c.sess, c.unregister = s.Hub.Register(dev.ID, dev.PublicKey)
	// From here the hub's news reaches the stream wherever it waits, the
	// sends below included (an agent that returns no window).
	c.sess.Notify(c.news(ss))
	// A revocation or re-enrollment committed between the read above and
	// the registration ended no session either; one committed after this
	// second read ends the one registered.
	if err := c.current(); err != nil {
		c.close()
		return err
	}
	log := c.log()
	log.Info("agent connected", "agent_version", hello.GetAgentVersion(), "policy_set_version", hello.GetPolicySetVersion())
	s.clockSkew(hello.GetAgentTime(), log)
	s.updateFacts(stream.Context(), dev, hello.GetFacts(), log)
	session := &agentv1.Session{PresenceUrl: s.PresenceURL, VerifierTime: timestamppb.New(s.now())}
	if err := stream.Send(&agentv1.VerifierMessage{Message: &agentv1.VerifierMessage_Session{Session: session}}); err != nil {
		err = c.orEnded(err)
		c.close()
		return err
	}
	if ps := s.Policies.Current(); ps != nil {
		if err := stream.Send(&agentv1.VerifierMessage{Message: &agentv1.VerifierMessage_PolicySet{PolicySet: ps}}); err != nil {
			err = c.orEnded(err)
			c.close()
			return err
		}
	}
	return nil
}

// current checks the stream's device is enrolled, not revoked, and still
// holds the key the stream authenticated with.
func (c *agentStream) current() error {
	s := c.s
	_, err := currentDevice(c.stream.Context(), s.Store, c.deviceID, c.key)
	if err != nil {
		s.connectRefusedLog.log(s.log(), s.now(), "connect refused", "device_id", c.deviceID, "err", status.Convert(err).Message())
	}
	return err
}

// close ends a registered stream: no more sends, out of the hub.
func (c *agentStream) close() {
	c.out.close()
	c.log().Info("agent disconnected")
	c.unregister()
}

// serve runs the stream: it verifies and stores each report the agent
// sends and acks it, sends what the hub queues (CheckNow, policy sets), and
// ends the stream when the hub drops the session. On a grpclite stream (the
// device connections' server) that is one goroutine, the handler's: the
// hub wakes its Recv when it has news (grpclite.Wake). Elsewhere a reader
// goroutine receives while the handler waits on the hub (serveWithReader).
func (c *agentStream) serve() error {
	if !grpclite.Wakeable(serverStream(c.stream)) {
		return c.serveWithReader()
	}
	for {
		// The handler waits in Recv for days: its frame here stays small
		// (see Connect), with the hub's news handled in a call of its own.
		if err := c.hubNews(); err != errNoNews {
			return c.orEnded(err)
		}
		m, err := c.stream.Recv()
		if errors.Is(err, grpclite.ErrWoken) {
			continue
		}
		if err != nil {
			return c.orEnded(recvEnded(c.stream, err))
		}
		if err := c.s.deep.do(func() error { return c.report(m) }); err != nil {
			return c.orEnded(err)
		}
	}
}

// news is what the hub calls when it has news for the stream: a message
// wakes a Recv waiting for the agent's next message; the session's end
// interrupts whatever the stream waits for (a message the agent half sent,
// window for a send it does not read), so that the handler returns the
// session's status at once.
func (c *agentStream) news(ss grpc.ServerStream) func() {
	return func() {
		select {
		case <-c.sess.Done():
			grpclite.Interrupt(ss)
		default:
			grpclite.Wake(ss)
		}
	}
}

// orEnded is the status the stream ends with after err: the session's, if
// the hub dropped it (err is then what that did to a Recv or a send).
//
//go:noinline
func (c *agentStream) orEnded(err error) error {
	select {
	case <-c.sess.Done():
		if e := sessionEnded(c.sess, c.log()); e != nil {
			return e
		}
	default:
	}
	return err
}

// errNoNews: the hub has nothing for the stream.
var errNoNews = errors.New("no news")

// hubNews sends what the hub queued for the stream, and returns the
// stream's status if the hub dropped it, or errNoNews.
//
//go:noinline
func (c *agentStream) hubNews() error {
	for {
		select {
		case <-c.sess.Done():
			return sessionEnded(c.sess, c.log())
		case m := <-c.sess.Out():
			// A policy set is marshalled in the send: deep too.
			if err := c.s.deep.do(func() error { return c.out.send(m) }); err != nil {
				return err
			}
		default:
			return errNoNews
		}
	}
}

// serverStream is the transport's stream under the generated one.
func serverStream(st agentv1.AgentService_ConnectServer) grpc.ServerStream {
	if g, ok := st.(*grpc.GenericServerStream[agentv1.AgentMessage, agentv1.VerifierMessage]); ok {
		return g.ServerStream
	}
	return st
}

// recvEnded is the status a stream ends with when its Recv failed: none
// when the agent went away.
func recvEnded(st agentv1.AgentService_ConnectServer, err error) error {
	if st.Context().Err() != nil || status.Code(err) == codes.Canceled {
		return nil
	}
	return err
}

// serveWithReader runs the stream on two goroutines, for a transport whose
// Recv nothing can wake: a reader verifies and stores each report and sends
// its ack itself; this goroutine sends what the hub queues and ends the
// stream when the hub drops the session. A gRPC stream takes one Send at a
// time, so the two share out. Returning ends the stream, which also
// unblocks the reader's Recv; out is closed first, so that the reader sends
// nothing more once it has.
func (c *agentStream) serveWithReader() error {
	readDone := make(chan error, 1)
	go func() { readDone <- c.read() }()
	for {
		select {
		case err := <-readDone:
			return err
		case <-c.sess.Done():
			return sessionEnded(c.sess, c.log())
		case m := <-c.sess.Out():
			// A policy set is marshalled in the send: deep too.
			if err := c.s.deep.do(func() error { return c.out.send(m) }); err != nil {
				return err
			}
		}
	}
}

// sender serialises a stream's Sends between its handler and its reader.
// An ack goes out from the reader at once, without a hand-off to the
// handler's goroutine: one wake-up less per report.
type sender struct {
	mu     sync.Mutex
	stream agentv1.AgentService_ConnectServer
	ended  atomic.Bool
}

// DefaultHelloTimeout bounds the wait for a Connect stream's Hello (on the
// device connections' server, which can interrupt it). An agent sends it at
// once.
const DefaultHelloTimeout = 30 * time.Second

func (s *Server) helloTimeout() time.Duration {
	if s.HelloTimeout > 0 {
		return s.HelloTimeout
	}
	return DefaultHelloTimeout
}

// errStreamEnded is what a send gets once the handler has returned; the
// reader's next Recv fails too, with the stream's own status.
var errStreamEnded = status.Error(codes.Canceled, "stream ended")

func (o *sender) send(m *agentv1.VerifierMessage) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.ended.Load() {
		return errStreamEnded
	}
	return o.stream.Send(m)
}

// close is called as the handler returns; later sends are refused. It does
// not wait for a send in progress (an agent that does not read blocks
// one): returning ends the stream, which is what ends that send.
func (o *sender) close() { o.ended.Store(true) }

// sessionEnded is the status a stream ends with when the hub dropped its
// session.
func sessionEnded(sess *hub.Session, log *slog.Logger) error {
	switch err := sess.Err(); {
	case errors.Is(err, hub.ErrReplaced):
		return status.Error(codes.Aborted, err.Error())
	case errors.Is(err, hub.ErrKeyReplaced):
		// Refused like the old key's next report would be: the agent
		// holding it must stop, not reconnect.
		log.Warn("stream ended", "reason", "key_replaced")
		return status.Error(codes.PermissionDenied, err.Error())
	case errors.Is(err, hub.ErrRevoked):
		log.Warn("stream ended", "reason", "device_revoked")
		return status.Error(codes.PermissionDenied, err.Error())
	case err != nil:
		return err
	}
	return nil
}

// read receives reports until the stream ends; report handles each, on a
// worker (see Connect).
func (c *agentStream) read() error {
	for {
		m, err := c.stream.Recv()
		if err != nil {
			return recvEnded(c.stream, err)
		}
		if err := c.s.deep.do(func() error { return c.report(m) }); err != nil {
			return err
		}
	}
}

// report verifies and stores one report, and acks it once it is stored.
func (c *agentStream) report(m *agentv1.AgentMessage) error {
	s, dev := c.s, storage.Device{ID: c.deviceID, PublicKey: c.key}
	sr := m.GetReport()
	if sr == nil {
		return status.Errorf(codes.InvalidArgument, "expected a report, got %s", messageName(m))
	}
	start := time.Now()
	ctx := c.stream.Context()
	// The set in force when the report came judges its streaks, which are
	// stored with it.
	streaks, streaksDone := c.streaks(s.Policies.Current())
	acc, err := s.Ingest.AcceptWith(ctx, dev, sr, streaks)
	streaksDone(err == nil && !acc.Duplicate)
	if err != nil {
		var rej *ingest.Rejection
		if !errors.As(err, &rej) {
			rej = &ingest.Rejection{Reason: "internal", Code: codes.Internal, Msg: "report not stored", Cause: err}
		}
		s.Metrics.ReportRejected(string(rej.Reason))
		s.log().Warn("report rejected", "device_id", dev.ID, "reason", string(rej.Reason), "msg", rej.Msg, "cause", rej.Cause)
		return rej
	}
	if acc.Duplicate {
		s.Metrics.ReportResent()
		s.log().Debug("resent report acknowledged again", "device_id", dev.ID, "seq", acc.Stored.Seq)
	} else {
		s.Metrics.ReportAccepted(time.Since(start))
		if acc.Lapsed {
			s.Metrics.CheckAnswerLapsed()
			// Sampled: a device may put one expired nonce on every report.
			s.lapsedLog.logAt(s.log(), slog.LevelInfo, time.Now(), "live check answered after it expired; stored as a report", "device_id", dev.ID, "seq", acc.Stored.Seq)
		}
		s.Hub.Delivered(acc)
	}
	ack := &agentv1.VerifierMessage{Message: &agentv1.VerifierMessage_Ack{Ack: &agentv1.Ack{Seq: acc.Stored.Seq}}}
	if err := c.out.send(ack); err != nil {
		return err
	}
	if !acc.Duplicate {
		s.vouch(ctx, dev, acc.Report)
	}
	return nil
}

// vouch starts the grace period of a Mac's older browser certificates once
// its own agent reports a newer one in a keychain: only then, so that
// certificates minted for the Mac's UUID elsewhere (a leaked SCEP challenge)
// never cut off the ones the Mac really holds. A failure is logged: the
// older certificates simply keep counting until the next report.
func (s *Server) vouch(ctx context.Context, dev storage.Device, r *agentv1.PostureReport) {
	var newest *storage.BrowserCert
	for _, kc := range r.GetCertificates() {
		bc, err := s.Store.GetBrowserCert(ctx, kc.GetSerial())
		if err != nil || bc.DeviceID != dev.ID || bc.SHA1 != kc.GetSha1() || bc.RevokedAt(s.now()) {
			continue
		}
		if newest == nil || bc.NotBefore.After(newest.NotBefore) || (bc.NotBefore.Equal(newest.NotBefore) && bc.Serial > newest.Serial) {
			newest = &bc
		}
	}
	if newest == nil {
		return
	}
	now := s.now()
	n, err := s.Store.SupersedeBrowserCerts(ctx, newest.Serial, now, s.BrowserCertGrace, storage.AuditEvent{
		At: now, Actor: "agent", Action: "browser_cert.supersede", DeviceID: dev.ID,
		Detail: fmt.Sprintf("the agent reported certificate %s; older ones count for %s more", newest.Serial, s.BrowserCertGrace),
	})
	switch {
	case err != nil:
		s.log().Warn("superseding older browser certificates failed", "device_id", dev.ID, "cert_serial", newest.Serial, "err", err)
	case n > 0:
		s.log().Info("older browser certificates superseded", "device_id", dev.ID, "cert_serial", newest.Serial, "count", n, "grace", s.BrowserCertGrace)
	}
}

func messageName(m *agentv1.AgentMessage) string {
	switch m.GetMessage().(type) {
	case *agentv1.AgentMessage_Hello:
		return "Hello"
	case *agentv1.AgentMessage_Report:
		return "SignedReport"
	case nil:
		return "an empty message"
	default:
		return fmt.Sprintf("%T", m.GetMessage())
	}
}

// updateFacts brings the inventory's facts of dev to what its agent says
// now (an upgraded agent, a new macOS, a renamed Mac), writing only when
// one changed. Facts that do not check, or that name another hardware
// UUID or serial number than the enrolled ones, change nothing and are
// logged; a failed write too: the stream goes on either way.
func (s *Server) updateFacts(ctx context.Context, dev storage.Device, f *agentv1.DeviceFacts, log *slog.Logger) {
	if f == nil {
		return
	}
	if err := enroll.CheckFacts(f); err != nil {
		log.Warn("device facts ignored", "err", err)
		return
	}
	if !strings.EqualFold(f.GetHardwareUuid(), dev.HardwareUUID) || storage.CanonicalSerial(f.GetSerialNumber()) != storage.CanonicalSerial(dev.SerialNumber) {
		log.Warn("device facts ignored: not the enrolled hardware UUID and serial number", "hardware_uuid", logsample.Clip(f.GetHardwareUuid()), "serial_number", logsample.Clip(f.GetSerialNumber()))
		return
	}
	next := dev
	next.Model, next.OSName, next.OSVersion, next.Hostname, next.AgentVersion = f.GetModel(), f.GetOsName(), f.GetOsVersion(), f.GetHostname(), f.GetAgentVersion()
	var changes []string
	for _, c := range []struct{ name, was, now string }{
		{"hostname", dev.Hostname, next.Hostname}, {"model", dev.Model, next.Model}, {"os_name", dev.OSName, next.OSName},
		{"os_version", dev.OSVersion, next.OSVersion}, {"agent_version", dev.AgentVersion, next.AgentVersion},
	} {
		if c.was != c.now {
			changes = append(changes, fmt.Sprintf("%s %q → %q", c.name, c.was, c.now))
		}
	}
	if len(changes) == 0 {
		return
	}
	// A genuine Mac changes its facts at an upgrade or a rename; a device
	// that reconnects to change them again and again is not written for.
	s.factChangesOnce.Do(func() {
		s.factChanges = ratelimit.NewKeyed(ratelimit.Options{Rate: factChangeRate, Burst: factChangeBurst, Now: s.now})
	})
	if ok, _ := s.factChanges.Allow(dev.ID); !ok {
		log.Warn("device facts not updated: they changed too often", "per_hour", int(factChangeRate*3600))
		return
	}
	at := s.now()
	audit := storage.AuditEvent{At: at, Actor: "agent", Action: "device.facts", DeviceID: dev.ID, Detail: strings.Join(changes, "; ")}
	if err := s.Store.UpdateDeviceFacts(ctx, next, audit); err != nil {
		log.Warn("device facts not updated", "err", err)
		return
	}
	log.Info("device facts updated", "os_version", next.OSVersion, "agent_version", next.AgentVersion, "hostname_changed", next.Hostname != dev.Hostname)
}

// A device's facts are written at most factChangeBurst times at once,
// then once every ten minutes (per replica).
const (
	factChangeRate  = 1.0 / 600
	factChangeBurst = 3
)
