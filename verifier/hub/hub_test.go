package hub

import (
	"context"
	"errors"
	"testing"
	"time"

	agentv1 "github.com/clearance/clearance/proto/gen/clearance/agent/v1"
	"github.com/clearance/clearance/verifier/ingest"
)

type nonceLog struct{ got [][]byte }

func (n *nonceLog) CreateNonce(_ context.Context, _ string, nonce []byte, _ time.Time) error {
	n.got = append(n.got, nonce)
	return nil
}
func (n *nonceLog) DeleteExpiredNonces(context.Context, time.Time) (int, error) { return 0, nil }

func TestRegisterReplacesOlderSession(t *testing.T) {
	t.Parallel()
	var h Hub
	counts := []int{}
	h.OnChange = func(n int) { counts = append(counts, n) }
	a, doneA := h.Register("d1")
	b, doneB := h.Register("d1")
	select {
	case <-a.Done():
	default:
		t.Fatal("older session not closed")
	}
	if !errors.Is(a.Err(), ErrReplaced) {
		t.Fatalf("older session err = %v", a.Err())
	}
	doneA() // must not remove the newer session
	if !h.Connected("d1") {
		t.Fatal("newer session removed by older one's cleanup")
	}
	doneB()
	if h.Connected("d1") || h.Count() != 0 {
		t.Fatal("session still registered")
	}
	_ = b
	if got := counts[len(counts)-1]; got != 0 {
		t.Fatalf("last count = %d", got)
	}
}

func TestSendBoundedAndNotConnected(t *testing.T) {
	t.Parallel()
	var h Hub
	if err := h.Send("nobody", &agentv1.VerifierMessage{}); !errors.Is(err, ErrNotConnected) {
		t.Fatalf("Send = %v", err)
	}
	_, done := h.Register("d1")
	defer done()
	var err error
	for i := 0; i <= sendBuffer; i++ {
		err = h.Send("d1", &agentv1.VerifierMessage{})
	}
	if !errors.Is(err, ErrBusy) {
		t.Fatalf("Send past buffer = %v, want ErrBusy", err)
	}
}

func TestCheckNowDeliversMatchingReport(t *testing.T) {
	t.Parallel()
	nonces := &nonceLog{}
	h := &Hub{Nonces: nonces}
	s, done := h.Register("d1")
	defer done()
	go func() {
		m := <-s.Out()
		cn := m.GetCheckNow()
		// A report for another nonce must not satisfy the waiter.
		h.Delivered(&ingest.Accepted{Report: &agentv1.PostureReport{Nonce: []byte("other")}})
		h.Delivered(&ingest.Accepted{Report: &agentv1.PostureReport{Seq: 9, Nonce: cn.GetNonce()}})
	}()
	a, err := h.CheckNow(context.Background(), "d1", 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if a.Report.GetSeq() != 9 || len(nonces.got) != 1 {
		t.Fatalf("got seq %d, nonces %d", a.Report.GetSeq(), len(nonces.got))
	}
}

func TestCheckNowErrors(t *testing.T) {
	t.Parallel()
	h := &Hub{Nonces: &nonceLog{}}
	if _, err := h.CheckNow(context.Background(), "d1", time.Second); !errors.Is(err, ErrNotConnected) {
		t.Fatalf("offline: %v", err)
	}
	_, done := h.Register("d1")
	defer done()
	if _, err := h.CheckNow(context.Background(), "d1", 10*time.Millisecond); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("silent agent: %v", err)
	}
	if len(h.waiters) != 0 {
		t.Fatal("waiter leaked")
	}
}
