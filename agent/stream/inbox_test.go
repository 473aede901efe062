package stream

import (
	"errors"
	"testing"
	"time"

	agentv1 "github.com/clearance/clearance/proto/gen/clearance/agent/v1"
)

func TestInbox(t *testing.T) {
	ack := func(seq uint64) *agentv1.VerifierMessage {
		return &agentv1.VerifierMessage{Message: &agentv1.VerifierMessage_Ack{Ack: &agentv1.Ack{Seq: seq}}}
	}
	big := &agentv1.VerifierMessage{Message: &agentv1.VerifierMessage_CheckNow{CheckNow: &agentv1.CheckNow{Nonce: make([]byte, inboxBytes)}}}

	b := newInbox()
	// One message is always let in, however large; the next waits for room.
	if !b.put(big) {
		t.Fatal("put refused the first message")
	}
	put := make(chan bool)
	go func() { put <- b.put(ack(1)) }()
	select {
	case <-put:
		t.Fatal("put went past the byte bound")
	case <-time.After(50 * time.Millisecond):
	}
	if m, ok, _ := b.get(); !ok || m != big {
		t.Fatal("get did not return the first message")
	}
	if !<-put {
		t.Fatal("put refused once there was room")
	}
	// In order, then how the stream ended.
	b.put(ack(2))
	end := errors.New("stream ended")
	b.finish(end)
	for _, want := range []uint64{1, 2} {
		if m, ok, _ := b.get(); !ok || m.GetAck().GetSeq() != want {
			t.Fatalf("get = %v, want ack %d", m, want)
		}
	}
	if _, ok, err := b.get(); ok || !errors.Is(err, end) {
		t.Fatalf("after the messages: ok %v, err %v; want the end", ok, err)
	}
	// Closing ends every wait.
	c := newInbox()
	c.put(big)
	go func() { put <- c.put(ack(3)) }()
	time.Sleep(20 * time.Millisecond)
	c.close()
	if <-put {
		t.Error("put after close reported the message taken")
	}
	if _, ok, err := c.get(); ok || err != nil {
		t.Errorf("get after close: ok %v, err %v", ok, err)
	}
}

// Small and empty messages count too: the bound is on their number as
// well as their bytes (an empty message encodes to nothing).
func TestInboxBoundsSmallMessages(t *testing.T) {
	b := newInbox()
	empty := &agentv1.VerifierMessage{}
	n := 0
	done := make(chan struct{})
	go func() {
		defer close(done)
		for b.put(empty) {
			n++
		}
	}()
	time.Sleep(100 * time.Millisecond)
	b.close()
	<-done
	if max := inboxBytes / messageCost; n > max {
		t.Errorf("%d empty messages held, want at most %d", n, max)
	}
}
