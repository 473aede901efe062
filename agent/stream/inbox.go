package stream

import (
	"sync"

	"google.golang.org/protobuf/proto"

	agentv1 "github.com/clearance/clearance/proto/gen/clearance/agent/v1"
)

// inboxBytes bounds the verifier's messages read ahead while the session
// is busy (a run): enough for the acks of every report resent at connect
// and a few checks, small next to the one message gRPC lets in at a time.
// Each message is charged messageCost besides its encoded size, what it
// takes to hold one however small (an empty message encodes to nothing),
// so the bound is also one on their number: 4,096 at most.
const (
	inboxBytes  = 1 << 20
	messageCost = 256
)

// cost is what m is charged in the inbox.
func cost(m *agentv1.VerifierMessage) int { return proto.Size(m) + messageCost }

// inbox holds the verifier's messages between the stream's reader and the
// session, in order, up to inboxBytes (one message is always let in), and
// then how the stream ended. The reader keeps reading while the session
// runs policies, so it learns at once that the stream ended (and stops
// the run), instead of waiting to hand over the message it holds.
type inbox struct {
	mu     sync.Mutex
	cond   sync.Cond
	q      []*agentv1.VerifierMessage
	bytes  int
	end    error // how the stream ended, once it did
	ended  bool
	closed bool // the session is gone
}

func newInbox() *inbox {
	b := &inbox{}
	b.cond.L = &b.mu
	return b
}

// put adds m, waiting while the inbox is full; false once closed.
func (b *inbox) put(m *agentv1.VerifierMessage) bool {
	n := cost(m)
	b.mu.Lock()
	defer b.mu.Unlock()
	for !b.closed && len(b.q) > 0 && b.bytes+n > inboxBytes {
		b.cond.Wait()
	}
	if b.closed {
		return false
	}
	b.q = append(b.q, m)
	b.bytes += n
	b.cond.Broadcast()
	return true
}

// finish records how the stream ended, after the messages before it.
func (b *inbox) finish(err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.end, b.ended = err, true
	b.cond.Broadcast()
}

// close ends every wait: the session is gone.
func (b *inbox) close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	b.cond.Broadcast()
}

// get returns the next message, waiting for one; or, once the messages
// are all taken, how the stream ended (ok false, err set); or ok false
// and err nil once closed.
func (b *inbox) get() (m *agentv1.VerifierMessage, ok bool, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for !b.closed && len(b.q) == 0 && !b.ended {
		b.cond.Wait()
	}
	switch {
	case b.closed:
		return nil, false, nil
	case len(b.q) > 0:
		m = b.q[0]
		b.q[0] = nil
		b.q = b.q[1:]
		b.bytes -= cost(m)
		b.cond.Broadcast()
		return m, true, nil
	default:
		return nil, false, b.end
	}
}
