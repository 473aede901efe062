// Package hub keeps track of the agents connected to this verifier: one
// session per device, a way to send it messages (policy sets, CheckNow), and
// live checks that wait for the fresh report a CheckNow asked for.
package hub

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"sync"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	agentv1 "github.com/clearance/clearance/proto/gen/clearance/agent/v1"
	"github.com/clearance/clearance/verifier/ingest"
	"github.com/clearance/clearance/verifier/storage"
)

// Errors from Send and CheckNow.
var (
	ErrNotConnected = errors.New("agent is not connected")
	ErrBusy         = errors.New("agent is not reading its stream")
	ErrReplaced     = errors.New("a newer connection from the same device replaced this one")
)

// sendBuffer bounds what may queue for one agent; an agent that stops reading
// gets ErrBusy rather than unbounded memory.
const sendBuffer = 32

// Session is one connected agent's stream as seen by the hub.
type Session struct {
	DeviceID string
	out      chan *agentv1.VerifierMessage
	done     chan struct{}
	once     sync.Once
	cause    error
}

// Out is what the stream's writer sends to the agent.
func (s *Session) Out() <-chan *agentv1.VerifierMessage { return s.out }

// In queues a message from the stream's own reader (acks), which may block
// for room instead of failing.
func (s *Session) In() chan<- *agentv1.VerifierMessage { return s.out }

// Done is closed when the hub drops the session (replaced by a newer one).
func (s *Session) Done() <-chan struct{} { return s.done }

// Err says why Done was closed.
func (s *Session) Err() error { return s.cause }

func (s *Session) close(err error) {
	s.once.Do(func() { s.cause = err; close(s.done) })
}

// Hub is safe for concurrent use.
type Hub struct {
	Nonces storage.NonceStore
	Now    func() time.Time

	mu       sync.Mutex
	sessions map[string]*Session
	waiters  map[string]chan *ingest.Accepted // by nonce
	// OnChange, if set, is called with the number of connected agents.
	OnChange func(n int)
}

func (h *Hub) now() time.Time {
	if h.Now != nil {
		return h.Now()
	}
	return time.Now()
}

// Register adds a session for a device, replacing (and closing) any older one.
// The returned function removes it.
func (h *Hub) Register(deviceID string) (*Session, func()) {
	s := &Session{DeviceID: deviceID, out: make(chan *agentv1.VerifierMessage, sendBuffer), done: make(chan struct{})}
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
	return s, func() {
		h.mu.Lock()
		if h.sessions[deviceID] == s {
			delete(h.sessions, deviceID)
		}
		n := len(h.sessions)
		h.mu.Unlock()
		s.close(nil)
		h.changed(n)
	}
}

func (h *Hub) changed(n int) {
	if h.OnChange != nil {
		h.OnChange(n)
	}
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

// Connected reports whether the device has a session here.
func (h *Hub) Connected(deviceID string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	_, ok := h.sessions[deviceID]
	return ok
}

// Count is the number of connected agents.
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
// live check waiting for the report's nonce, if any.
func (h *Hub) Delivered(a *ingest.Accepted) {
	nonce := a.Report.GetNonce()
	if len(nonce) == 0 {
		return
	}
	h.mu.Lock()
	ch := h.waiters[string(nonce)]
	delete(h.waiters, string(nonce))
	h.mu.Unlock()
	if ch != nil {
		ch <- a // buffered, one value ever
	}
}

// CheckNow asks a connected agent for a fresh report and waits for it until
// ttl passes or ctx ends. The nonce is recorded first, so the report that
// answers it is verified like any other and the nonce can be used only once.
func (h *Hub) CheckNow(ctx context.Context, deviceID string, ttl time.Duration) (*ingest.Accepted, error) {
	if !h.Connected(deviceID) {
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
	ch := make(chan *ingest.Accepted, 1)
	h.mu.Lock()
	if h.waiters == nil {
		h.waiters = make(map[string]chan *ingest.Accepted)
	}
	h.waiters[string(nonce)] = ch
	h.mu.Unlock()
	defer func() {
		h.mu.Lock()
		delete(h.waiters, string(nonce))
		h.mu.Unlock()
	}()
	msg := &agentv1.VerifierMessage{Message: &agentv1.VerifierMessage_CheckNow{CheckNow: &agentv1.CheckNow{
		Nonce: nonce, ExpiresAt: timestamppb.New(expires),
	}}}
	if err := h.Send(deviceID, msg); err != nil {
		return nil, err
	}
	timer := time.NewTimer(ttl)
	defer timer.Stop()
	select {
	case a := <-ch:
		return a, nil
	case <-timer.C:
		return nil, context.DeadlineExceeded
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}
