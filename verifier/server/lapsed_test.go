package server_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/clearance/clearance/internal/protoagent"
)

// TestLapsedAnswerKeepsTheStream: an answer to the device's own live check
// that arrives after the check expired is stored and acknowledged, counted,
// and the stream goes on. The sweep keeps an expired nonce for twice the
// report skew, so an answer that late is still known for what it is; one
// arriving after that is refused as a nonce never issued.
func TestLapsedAnswerKeepsTheStream(t *testing.T) {
	h := start(t)
	a := h.enrolled(h.secret())
	ctx := context.Background()
	now := h.clock.Now
	for _, n := range []string{"lapsed-just-now", "lapsed-long-ago"} {
		if err := h.srv.Store.CreateNonce(ctx, a.DeviceID, []byte(n), now().Add(time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	st := h.connect(a)
	defer st.Close()
	ps := st.PolicySet
	h.clock.Add(2 * time.Second)
	m, err := st.Exchange(protoagent.Sign(a.Key, a.Report(ps, 1, now(), []byte("lapsed-just-now"), pass)))
	if err != nil || m.GetAck().GetSeq() != 1 {
		t.Fatalf("a lapsed answer: %v %v, want acknowledged", m, err)
	}
	if m, err := st.Exchange(protoagent.Sign(a.Key, a.Report(ps, 2, now(), nil, pass))); err != nil || m.GetAck().GetSeq() != 2 {
		t.Fatalf("the next report on the same stream: %v %v", m, err)
	}
	// The same expired nonce again, on every report: each is stored and
	// counted, but the log line is sampled.
	for seq := uint64(3); seq <= 20; seq++ {
		if m, err := st.Exchange(protoagent.Sign(a.Key, a.Report(ps, seq, now(), []byte("lapsed-just-now"), pass))); err != nil || m.GetAck().GetSeq() != seq {
			t.Fatalf("report %d with the same lapsed nonce: %v %v", seq, m, err)
		}
	}
	if got := metricVector(t, h, "clearance_live_check_answers_lapsed_total", false)[""]; got != 19 {
		t.Errorf("clearance_live_check_answers_lapsed_total = %v, want 19", got)
	}
	h.logs.hasLine(t, "level=INFO", "live check answered after it expired", "seq=1")
	if n := strings.Count(h.logs.String(), "level=INFO msg=\"live check answered after it expired"); n != 1 {
		t.Errorf("%d info lines for 19 lapsed answers, want 1", n)
	}

	// Within twice the skew (10 minutes) the sweep keeps the nonce; after
	// it, the nonce is gone.
	h.clock.Add(9 * time.Minute)
	h.srv.Sweep(ctx)
	if m, err := st.Exchange(protoagent.Sign(a.Key, a.Report(ps, 21, now(), []byte("lapsed-long-ago"), pass))); err != nil || m.GetAck().GetSeq() != 21 {
		t.Fatalf("an answer 9 minutes late, after a sweep: %v %v", m, err)
	}
	if err := h.srv.Store.CreateNonce(ctx, a.DeviceID, []byte("swept"), now().Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	h.clock.Add(11 * time.Minute)
	h.srv.Sweep(ctx)
	_, err = st.Exchange(protoagent.Sign(a.Key, a.Report(ps, 22, now(), []byte("swept"), pass)))
	checkStatus(t, err, codes.FailedPrecondition, "never issued")
}
