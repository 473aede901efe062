// Package hub keeps track of the agents connected to this verifier: one
// session per device, a way to send it messages (policy sets, CheckNow), and
// live checks that wait for the fresh report a CheckNow asked for. With a
// cluster.Relay, a live check also reaches an agent whose stream is on
// another replica sharing the database, and a re-enrollment ends the
// streams of the replaced key wherever they are.
package hub

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	agentv1 "github.com/clearance/clearance/proto/gen/clearance/agent/v1"
	"github.com/clearance/clearance/verifier/cluster"
	"github.com/clearance/clearance/verifier/ingest"
	"github.com/clearance/clearance/verifier/storage"
)

// Errors from Send and CheckNow.
var (
	ErrNotConnected = errors.New("agent is not connected")
	ErrBusy         = errors.New("agent is not reading its stream")
	ErrReplaced     = errors.New("a newer connection from the same device replaced this one")
	// ErrKeyReplaced ends a stream whose device enrolled again with another
	// key: the stream's certificate is for a key the device no longer holds.
	ErrKeyReplaced = errors.New("the device enrolled again with another key; this stream's key is no longer the device's")
	// ErrRevoked ends a stream whose device was revoked on another
	// replica.
	ErrRevoked = errors.New("the device was revoked")
)

// revokedError is ErrRevoked naming the device, for the replica that
// revoked it.
type revokedError string

func (e revokedError) Error() string        { return fmt.Sprintf("device %s was revoked", string(e)) }
func (e revokedError) Is(target error) bool { return target == ErrRevoked }

// sendBuffer bounds what may queue for one agent; an agent that stops reading
// gets ErrBusy rather than unbounded memory.
const sendBuffer = 32

// relayTimeout bounds a presence write or signal made where no caller's
// context applies (a stream starting or ending, a report stored).
const relayTimeout = 2 * time.Second

// A failed presence record of a starting stream is tried again after
// joinRetryFirst, then at doubling intervals up to joinRetryMax, until it
// is written or the stream has ended: until then other replicas may take
// its Mac for having no agent.
const (
	joinRetryFirst = 50 * time.Millisecond
	joinRetryMax   = 2 * time.Second
)

// answerLookback is how many of a device's newest reports are searched for
// the one that answered a check made through another replica.
const answerLookback = 16

// Session is one connected agent's stream as seen by the hub.
type Session struct {
	DeviceID string
	id       string // tells this stream's presence row from a successor's
	key      []byte // SHA-256 of the device key the stream authenticated with
	out      chan *agentv1.VerifierMessage
	done     chan struct{}
	once     sync.Once
	cause    error
	// news is called after a message is queued and when the session is
	// dropped (see Notify).
	news atomic.Pointer[func()]
}

// Notify has f called, without blocking, after each message queued for the
// session and when the hub drops it: a stream waiting for its agent on one
// goroutine wakes on it to look at Out and Done. f must not block, and may
// be called more than once for one event. Messages queued before Notify are
// in Out; a session dropped before it is told at once.
func (s *Session) Notify(f func()) {
	s.news.Store(&f)
	// Dropped before f was stored: nobody told it.
	select {
	case <-s.done:
		f()
	default:
	}
}

func (s *Session) tell() {
	if f := s.news.Load(); f != nil {
		(*f)()
	}
}

// Out is what the stream's writer sends to the agent.
func (s *Session) Out() <-chan *agentv1.VerifierMessage { return s.out }

// Done is closed when the hub drops the session (replaced by a newer one).
func (s *Session) Done() <-chan struct{} { return s.done }

// Err says why Done was closed.
func (s *Session) Err() error { return s.cause }

func (s *Session) close(err error) {
	s.once.Do(func() { s.cause = err; close(s.done); s.tell() })
}

// ReportLister reads stored reports: a check answered at another replica
// is read back from the database.
type ReportLister interface {
	ListReports(ctx context.Context, deviceID string, limit int) ([]storage.Report, error)
}

// Hub is safe for concurrent use.
type Hub struct {
	Nonces storage.NonceStore
	Now    func() time.Time
	// Relay, when set, connects this hub to the other replicas' (Run must
	// be running); Reports must then be set too. Without one the hub knows
	// only its own streams.
	Relay   cluster.Relay
	Reports ReportLister
	// CurrentKey, when set, reads a device's current key (none, for a
	// revoked device): a re-enrollment or revocation another replica
	// signals ends the stream here whose key is not that one, whatever key
	// the signal names (a signal sent again after a later re-enrollment
	// names a key replaced since).
	CurrentKey func(ctx context.Context, deviceID string) ([]byte, error)
	Log        *slog.Logger

	mu       sync.Mutex
	sessions map[string]*Session
	waiters  map[string]chan answer // by nonce
	flights  map[string]*flight     // live checks under way, by device
	// lost is set when a presence record failed; the relay records every
	// stream again at its next heartbeat (cluster.Handler.Lost).
	lost atomic.Bool
	// unjoined holds the streams whose presence record failed, by device,
	// while retryJoins writes them again.
	retryMu  sync.Mutex
	unjoined map[string]string
	retrying bool // retryJoins runs
	// retiring is set once this replica stops (Retire).
	retiring atomic.Bool
	// cut holds the sessions of the streams that ended once retiring was
	// set, by device: their presence records are kept, and the relay
	// must not take them for stale ones (see Retire). Guarded by mu.
	cut map[string]string
	// OnChange, if set, is called with the number of connected agents.
	OnChange func(n int)
}

// flightSlack is how far apart a caller's deadline and that of a live
// check under way may be for the caller to share it: callers with the same
// timeout that come within it of one another.
const flightSlack = time.Second

// flight is one live check of a device, which the callers that come soon
// after it share; done is closed once acc or err is set. sess is the
// device's stream here when it was asked: a flight is shared only while
// that is still the device's (one asked through the relay is not shared).
type flight struct {
	started  time.Time
	deadline time.Time
	sess     *Session
	done     chan struct{}
	acc      *ingest.Accepted
	err      error
	callers  int // that asked for it, the first included (under Hub.mu)
}

// answer wakes a live check: acc when the report was stored here, seq when
// another replica stored it.
type answer struct {
	acc *ingest.Accepted
	seq uint64
}

func (h *Hub) log() *slog.Logger {
	l := h.Log
	if l == nil {
		l = slog.Default()
	}
	return l.With("component", "hub")
}

func (h *Hub) now() time.Time {
	if h.Now != nil {
		return h.Now()
	}
	return time.Now()
}

// KeyHash names a device key (PKIX DER) in sessions and relayed signals.
func KeyHash(key []byte) []byte {
	h := sha256.Sum256(key)
	return h[:]
}

// Register adds a session for a device whose stream authenticated with key
// (PKIX DER), replacing (and closing) any older one. The returned function
// removes it.
func (h *Hub) Register(deviceID string, key []byte) (*Session, func()) {
	id := make([]byte, 8)
	_, _ = rand.Read(id) // never fails
	s := &Session{DeviceID: deviceID, id: hex.EncodeToString(id), key: KeyHash(key), out: make(chan *agentv1.VerifierMessage, sendBuffer), done: make(chan struct{})}
	h.mu.Lock()
	if h.sessions == nil {
		h.sessions = make(map[string]*Session)
	}
	if old := h.sessions[deviceID]; old != nil {
		old.close(ErrReplaced)
	}
	h.sessions[deviceID] = s
	n := len(h.sessions)
	h.mu.Unlock()
	h.changed(n)
	h.presence(deviceID, s.id, true)
	return s, func() {
		h.mu.Lock()
		current := h.sessions[deviceID] == s
		retiring := h.retiring.Load()
		if current {
			delete(h.sessions, deviceID)
			if retiring {
				if h.cut == nil {
					h.cut = make(map[string]string)
				}
				h.cut[deviceID] = s.id
			}
		}
		n := len(h.sessions)
		h.mu.Unlock()
		s.close(nil)
		h.changed(n)
		if current && !retiring {
			h.presence(deviceID, s.id, false)
		}
	}
}

// presence tells the other replicas that a stream started or ended here. A
// failure is logged, not fatal: the relay records every stream again at
// its next heartbeat, and whenever its connection comes back.
func (h *Hub) presence(deviceID, session string, joined bool) {
	if h.Relay == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), relayTimeout)
	defer cancel()
	var err error
	if joined {
		if err = h.Relay.Join(ctx, deviceID, session); err == nil {
			err = h.joined(ctx, deviceID, session)
		}
	} else {
		err = h.Relay.Leave(ctx, deviceID, session)
	}
	if err != nil {
		h.lost.Store(true)
		h.log().Warn("presence not recorded; tried again", "device_id", deviceID, "joined", joined, "err", err)
		if joined {
			h.retryJoin(deviceID, session)
		}
	}
}

// retryJoin has retryJoins record session's stream again, starting it
// unless it runs.
func (h *Hub) retryJoin(deviceID, session string) {
	h.retryMu.Lock()
	defer h.retryMu.Unlock()
	if h.unjoined == nil {
		h.unjoined = make(map[string]string)
	}
	h.unjoined[deviceID] = session
	if !h.retrying {
		h.retrying = true
		go h.retryJoins()
	}
}

// retryJoins writes the presence records that failed until each is written
// or its stream has ended; a failure stops the round (the database is still
// failing) and every record waits for the next. A failed Leave needs no
// hurry: the record it leaves says "maybe connected", and the relay's
// next heartbeat removes it.
func (h *Hub) retryJoins() {
	for wait := joinRetryFirst; ; wait = min(2*wait, joinRetryMax) {
		time.Sleep(wait)
		h.retryMu.Lock()
		pending := make(map[string]string, len(h.unjoined))
		for id, sess := range h.unjoined {
			pending[id] = sess
		}
		h.retryMu.Unlock()
		for id, sess := range pending {
			if h.current(id, sess) {
				ctx, cancel := context.WithTimeout(context.Background(), relayTimeout)
				err := h.Relay.Join(ctx, id, sess)
				if err == nil {
					err = h.joined(ctx, id, sess)
				}
				cancel()
				if err != nil {
					h.lost.Store(true)
					break
				}
			}
			h.retryMu.Lock()
			if h.unjoined[id] == sess {
				delete(h.unjoined, id)
			}
			h.retryMu.Unlock()
		}
		h.retryMu.Lock()
		done := len(h.unjoined) == 0
		if done {
			h.retrying = false
		}
		h.retryMu.Unlock()
		if done {
			return
		}
	}
}

// joined follows a written Join of session: a record is one per device and
// replica, so a Join that landed after the stream was replaced or ended
// may have written over its successor's record, or outlived its own Leave.
// The device's record is made to name its current stream again, or
// removed when it has none, unless this replica is stopping: the records
// of streams cut then are kept (see Retire). Each write is checked again;
// a few rounds settle any interleaving of one device's streams that a
// person's Mac makes.
func (h *Hub) joined(ctx context.Context, deviceID, session string) error {
	for range 4 {
		cur := h.currentSession(deviceID)
		if cur == session {
			return nil
		}
		if cur == "" {
			if h.retiring.Load() {
				return nil
			}
			return h.Relay.Leave(ctx, deviceID, session)
		}
		if err := h.Relay.Join(ctx, deviceID, cur); err != nil {
			return err
		}
		session = cur
	}
	return errors.New("recording presence: the device's streams kept replacing each other")
}

// currentSession is the id of deviceID's stream here, or "".
func (h *Hub) currentSession(deviceID string) string {
	h.mu.Lock()
	defer h.mu.Unlock()
	if s := h.sessions[deviceID]; s != nil {
		return s.id
	}
	return ""
}

// current reports whether session is deviceID's stream here.
func (h *Hub) current(deviceID, session string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	s := h.sessions[deviceID]
	return s != nil && s.id == session
}

func (h *Hub) changed(n int) {
	if h.OnChange != nil {
		h.OnChange(n)
	}
}

// Retire is called when this replica stops, before its streams are cut:
// streams that end from then on keep their presence records. The relay
// marks them all as a stopped replica's when it stops, and they count as
// "cannot tell" until the agents have had time to reconnect elsewhere:
// a record removed as the stream is cut would have another replica take
// the Mac for having no agent until then. The relay is told of those
// streams with the ones still held (cluster.Handler.Devices), so that
// recording them again while it stops does not remove their records as
// stale.
func (h *Hub) Retire() {
	// Under mu, as a stream's end reads it: every stream ends either
	// before (its record removed) or after (kept, and among h.cut).
	h.mu.Lock()
	defer h.mu.Unlock()
	h.retiring.Store(true)
}

// Drop ends a device's session (e.g. it was revoked); its stream ends with err.
func (h *Hub) Drop(deviceID string, err error) {
	h.mu.Lock()
	s := h.sessions[deviceID]
	h.mu.Unlock()
	if s != nil {
		s.close(err)
	}
}

// Reenrolled ends the streams of deviceID that hold another key than key
// (PKIX DER), the device's current one: here at once and, through the
// relay, on the other replicas. A stream of the new key (the re-enrolled
// agent may connect before this runs) stays. Where the signal does not
// arrive (a replica cut off from the database), storage still refuses the
// old stream's next report, which ends it.
func (h *Hub) Reenrolled(deviceID string, key []byte) {
	hash := KeyHash(key)
	h.endOtherKeys(deviceID, hash)
	if h.Relay == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), relayTimeout)
	defer cancel()
	if err := h.Relay.PublishEnrolled(ctx, cluster.Enrolled{DeviceID: deviceID, KeyHash: hash}); err != nil {
		h.log().Warn("re-enrollment not relayed; other replicas end the old key's stream at its next report", "device_id", deviceID, "err", err)
	}
}

// Revoked ends deviceID's stream here and, through the relay, on the other
// replicas, with ErrRevoked: the device was revoked, and has no current key
// any more. Where the signal does not arrive, storage still refuses the
// stream's next report, which ends it.
func (h *Hub) Revoked(deviceID string) {
	h.Drop(deviceID, revokedError(deviceID))
	if h.Relay == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), relayTimeout)
	defer cancel()
	// An Enrolled signal with no key: every stream of the device ends.
	if err := h.Relay.PublishEnrolled(ctx, cluster.Enrolled{DeviceID: deviceID}); err != nil {
		h.log().Warn("revocation not relayed; other replicas end the device's stream at its next report", "device_id", deviceID, "err", err)
	}
}

// relayedEnrollment ends e.DeviceID's stream here unless it holds the
// device's current key, as the database has it (CurrentKey: none for a
// revoked device), or, if that cannot be read, the key the signal names
// (none for a revocation).
func (h *Hub) relayedEnrollment(e cluster.Enrolled) {
	hash := e.KeyHash
	if h.CurrentKey != nil {
		ctx, cancel := context.WithTimeout(context.Background(), relayTimeout)
		defer cancel()
		key, err := h.CurrentKey(ctx, e.DeviceID)
		switch {
		case err != nil:
			h.log().Warn("the device's current key could not be read; judging its stream by the re-enrollment signal", "device_id", e.DeviceID, "err", err)
		case len(key) == 0:
			hash = nil
		default:
			hash = KeyHash(key)
		}
	}
	h.endOtherKeys(e.DeviceID, hash)
}

// endOtherKeys ends deviceID's session here unless it holds the key hash;
// an empty hash (a revoked device) ends it whatever its key.
func (h *Hub) endOtherKeys(deviceID string, hash []byte) {
	h.mu.Lock()
	s := h.sessions[deviceID]
	h.mu.Unlock()
	switch {
	case s == nil:
	case len(hash) == 0:
		h.log().Info("stream of a revoked device ended", "device_id", deviceID)
		s.close(ErrRevoked)
	case !bytes.Equal(s.key, hash):
		h.log().Info("stream of a replaced key ended", "device_id", deviceID)
		s.close(ErrKeyReplaced)
	}
}

// Connected reports whether the device has a session here or, with a
// relay, on another live replica.
func (h *Hub) Connected(deviceID string) bool {
	if h.Local(deviceID) {
		return true
	}
	ctx, cancel := context.WithTimeout(context.Background(), relayTimeout)
	defer cancel()
	return h.elsewhere(ctx, deviceID)
}

// MaybeConnected is Connected, except that a relay that cannot say counts
// as connected: for a caller to whom "no agent" would grant the weaker
// binding (a certificate alone under --browser-binding either), not
// knowing must not. Not knowing is an unreadable presence table, or a
// stream recorded only on replicas whose heartbeat is stale
// (cluster.ErrPresenceStale): such a replica may be alive and holding it,
// cut off from the database only. On a stopping replica, a stream it cut
// counts too: its record stands for the other replicas until its agent
// reconnects to one, and this replica, whose own records Elsewhere skips,
// must not read the Mac as having no agent meanwhile (a sign-in still
// being answered as it stops).
func (h *Hub) MaybeConnected(deviceID string) bool {
	if h.Local(deviceID) || h.wasCut(deviceID) {
		return true
	}
	if h.Relay == nil {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), relayTimeout)
	defer cancel()
	ok, err := h.Relay.Elsewhere(ctx, deviceID)
	switch {
	case errors.Is(err, cluster.ErrPresenceStale):
		h.log().Warn("agent's stream recorded on a silent replica; counted as connected", "device_id", deviceID)
		return true
	case err != nil:
		h.log().Warn("presence unreadable; counted as connected", "device_id", deviceID, "err", err)
		return true
	}
	return ok
}

// Local reports whether the device has a session here.
func (h *Hub) Local(deviceID string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	_, ok := h.sessions[deviceID]
	return ok
}

// wasCut reports whether the device's stream was cut as this replica
// stops (Retire).
func (h *Hub) wasCut(deviceID string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	_, ok := h.cut[deviceID]
	return ok
}

// elsewhere reports whether another replica holds the device's stream; an
// unreadable answer counts as no (the check is then "offline", fail closed).
func (h *Hub) elsewhere(ctx context.Context, deviceID string) bool {
	if h.Relay == nil {
		return false
	}
	ok, err := h.Relay.Elsewhere(ctx, deviceID)
	switch {
	case errors.Is(err, cluster.ErrPresenceStale):
		// A replica that died: a live check there would only time out.
		return false
	case err != nil:
		h.log().Warn("presence unreadable", "device_id", deviceID, "err", err)
		return false
	}
	return ok
}

// WaitEmpty waits until no stream is open here, or ctx ends; it reports
// whether none is.
func (h *Hub) WaitEmpty(ctx context.Context) bool {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for h.Count() > 0 {
		select {
		case <-t.C:
		case <-ctx.Done():
			return h.Count() == 0
		}
	}
	return true
}

// Count is the number of agents connected to this replica.
func (h *Hub) Count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.sessions)
}

// Send queues a message for a device without blocking.
func (h *Hub) Send(deviceID string, m *agentv1.VerifierMessage) error {
	h.mu.Lock()
	s := h.sessions[deviceID]
	h.mu.Unlock()
	if s == nil {
		return ErrNotConnected
	}
	return s.offer(m)
}

func (s *Session) offer(m *agentv1.VerifierMessage) error {
	select {
	case <-s.done:
		return ErrNotConnected
	default:
	}
	select {
	case s.out <- m:
		s.tell()
		return nil
	default:
		return ErrBusy
	}
}

// Broadcast queues a message for every connected agent and returns how many
// took it.
func (h *Hub) Broadcast(m *agentv1.VerifierMessage) int {
	h.mu.Lock()
	all := make([]*Session, 0, len(h.sessions))
	for _, s := range h.sessions {
		all = append(all, s)
	}
	h.mu.Unlock()
	n := 0
	for _, s := range all {
		if s.offer(m) == nil {
			n++
		}
	}
	return n
}

// Delivered is called by the stream after a report is stored; it wakes the
// live check waiting for the report's nonce, here or, through the relay, at
// the replica that asked.
func (h *Hub) Delivered(a *ingest.Accepted) {
	nonce := a.Report.GetNonce()
	if len(nonce) == 0 || a.Lapsed {
		// A lapsed answer's check has given up on it, here and everywhere.
		return
	}
	if h.wake(nonce, answer{acc: a}) || h.Relay == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), relayTimeout)
	defer cancel()
	err := h.Relay.PublishAnswered(ctx, cluster.Answered{DeviceID: a.Stored.DeviceID, Nonce: nonce, Seq: a.Stored.Seq})
	if err != nil {
		h.log().Warn("live check answer not relayed", "device_id", a.Stored.DeviceID, "err", err)
	}
}

// wake hands ans to the live check waiting for nonce, if there is one here.
func (h *Hub) wake(nonce []byte, ans answer) bool {
	h.mu.Lock()
	ch := h.waiters[string(nonce)]
	delete(h.waiters, string(nonce))
	h.mu.Unlock()
	if ch == nil {
		return false
	}
	ch <- ans // buffered, one value ever
	return true
}

// Run relays signals between this hub and the other replicas' until ctx
// ends; without a relay it only waits.
func (h *Hub) Run(ctx context.Context) error {
	if h.Relay == nil {
		<-ctx.Done()
		return nil
	}
	return h.Relay.Run(ctx, cluster.Handler{
		// Another replica asks for a check of a device streaming here.
		Check: func(c cluster.Check) {
			// One already expired (sent again, or late) is not asked: the
			// caller has given up on it.
			if !h.Local(c.DeviceID) || !c.ExpiresAt.After(h.now()) {
				return
			}
			err := h.Send(c.DeviceID, checkNow(c.Nonce, c.ExpiresAt, h.now()))
			if err != nil {
				h.log().Warn("relayed live check not sent", "device_id", c.DeviceID, "err", err)
			}
		},
		// Another replica stored the report a check here asked for.
		Answered: func(a cluster.Answered) { h.wake(a.Nonce, answer{seq: a.Seq}) },
		// A device enrolled again at another replica.
		Enrolled: h.relayedEnrollment,
		Devices:  h.devices,
		Lost:     func() bool { return h.lost.Swap(false) },
		Streams:  h.kept,
	})
}

// kept is len(h.devices()), counted without building the map.
func (h *Hub) kept() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := len(h.sessions)
	for id := range h.cut {
		if h.sessions[id] == nil {
			n++
		}
	}
	return n
}

// devices are the streams whose presence records this replica keeps:
// those it holds and, once it stops, those cut as it stopped.
func (h *Hub) devices() map[string]string {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make(map[string]string, len(h.sessions)+len(h.cut))
	for id, sess := range h.cut {
		out[id] = sess
	}
	for id, s := range h.sessions {
		out[id] = s.id
	}
	return out
}

// checkNow is the message asking for a check whose nonce expires at
// expires, sent at now (this replica's clock, by which the answer's nonce
// is judged when it arrives here).
func checkNow(nonce []byte, expires, now time.Time) *agentv1.VerifierMessage {
	return &agentv1.VerifierMessage{Message: &agentv1.VerifierMessage_CheckNow{CheckNow: &agentv1.CheckNow{
		Nonce: nonce, ExpiresAt: timestamppb.New(expires), Ttl: durationpb.New(max(expires.Sub(now), 0)),
	}}}
}

// CheckNow asks a connected agent for a fresh report and waits for it until
// ttl passes or ctx ends. The nonce is recorded first, so the report that
// answers it is verified like any other and the nonce can be used only once.
// An agent streaming to another replica is asked through the relay, and
// the report it answers with is read back from storage.
//
// A caller that asks for the same device within flightSlack of a check of
// it sent here, with the same timeout give or take that, shares its
// answer, as long as the device's stream here is still the one it was sent
// on: an agent runs its policies once for each CheckNow, so a burst of
// sign-ins from one Mac (a person opening several apps) would otherwise be
// answered a run apart each, the later ones after their nonce expired (and
// so answering no check). The shared check
// runs to its own end whatever becomes of the caller that started it.
// Checks asked at other replicas, with other timeouts (an admin's
// RequestCheck) or more than flightSlack apart are not shared.
func (h *Hub) CheckNow(ctx context.Context, deviceID string, ttl time.Duration) (*ingest.Accepted, error) {
	now := h.now()
	deadline := now.Add(ttl)
	h.mu.Lock()
	f := h.flights[deviceID]
	cur := h.sessions[deviceID]
	if f == nil || cur == nil || f.sess != cur || now.Sub(f.started) > flightSlack || f.deadline.Sub(deadline).Abs() > flightSlack {
		// This caller asks on its own, and later callers join it.
		f = &flight{started: now, deadline: deadline, sess: cur, done: make(chan struct{})}
		if h.flights == nil {
			h.flights = make(map[string]*flight)
		}
		h.flights[deviceID] = f
		go func() { // bounded by ttl
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ttl)
			defer cancel()
			f.acc, f.err = h.checkNow(fctx, deviceID, ttl)
			h.mu.Lock()
			if h.flights[deviceID] == f {
				delete(h.flights, deviceID)
			}
			h.mu.Unlock()
			close(f.done)
		}()
	}
	f.callers++
	h.mu.Unlock()
	timer := time.NewTimer(ttl)
	defer timer.Stop()
	select {
	case <-f.done:
		return f.acc, f.err
	case <-timer.C:
		return nil, context.DeadlineExceeded
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// checkNow is one live check, as CheckNow describes it.
func (h *Hub) checkNow(ctx context.Context, deviceID string, ttl time.Duration) (*ingest.Accepted, error) {
	local := h.Local(deviceID)
	if !local && !h.elsewhere(ctx, deviceID) {
		return nil, ErrNotConnected
	}
	nonce := make([]byte, 16)
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	expires := h.now().Add(ttl)
	if err := h.Nonces.CreateNonce(ctx, deviceID, nonce, expires); err != nil {
		return nil, fmt.Errorf("recording nonce: %w", err)
	}
	ch := make(chan answer, 1)
	h.mu.Lock()
	if h.waiters == nil {
		h.waiters = make(map[string]chan answer)
	}
	h.waiters[string(nonce)] = ch
	h.mu.Unlock()
	defer func() {
		h.mu.Lock()
		delete(h.waiters, string(nonce))
		h.mu.Unlock()
	}()
	if local {
		if err := h.Send(deviceID, checkNow(nonce, expires, h.now())); err != nil {
			return nil, err
		}
	} else {
		// The answer comes back as a signal: asked before this replica
		// hears them (it is starting, or reconnecting), the check would be
		// answered unheard and wait out its time.
		if hr, ok := h.Relay.(cluster.Hearer); ok {
			select {
			case <-hr.Hearing():
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		if err := h.Relay.PublishCheck(ctx, cluster.Check{DeviceID: deviceID, Nonce: nonce, ExpiresAt: expires}); err != nil {
			return nil, err
		}
	}
	timer := time.NewTimer(ttl)
	defer timer.Stop()
	select {
	case ans := <-ch:
		if ans.acc != nil {
			return ans.acc, nil
		}
		return h.stored(ctx, deviceID, nonce, ans.seq)
	case <-timer.C:
		return nil, context.DeadlineExceeded
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// stored reads back the report another replica stored in answer to nonce.
func (h *Hub) stored(ctx context.Context, deviceID string, nonce []byte, seq uint64) (*ingest.Accepted, error) {
	if h.Reports == nil {
		return nil, errors.New("answered at another replica, but the hub has no report store to read it from")
	}
	rs, err := h.Reports.ListReports(ctx, deviceID, answerLookback)
	if err != nil {
		return nil, fmt.Errorf("reading the relayed answer: %w", err)
	}
	for _, r := range rs {
		if r.Seq != seq {
			continue
		}
		pr := new(agentv1.PostureReport)
		if err := proto.Unmarshal(r.Payload, pr); err != nil {
			return nil, fmt.Errorf("reading the relayed answer: %w", err)
		}
		// The signal only says where to look; the stored report must itself
		// be the answer to this check.
		if pr.GetDeviceId() != deviceID || !bytes.Equal(pr.GetNonce(), nonce) {
			return nil, fmt.Errorf("report %d of device %s does not carry this check's nonce", seq, deviceID)
		}
		return &ingest.Accepted{Report: pr, Stored: r}, nil
	}
	return nil, fmt.Errorf("report %d of device %s, relayed as this check's answer, is not stored", seq, deviceID)
}
