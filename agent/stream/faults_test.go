package stream_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/clearance/clearance/agent/clock"
	"github.com/clearance/clearance/agent/internal/fakeverifier"
	"github.com/clearance/clearance/agent/state"
	"github.com/clearance/clearance/agent/stream"
	"github.com/clearance/clearance/internal/testkit"
	agentv1 "github.com/clearance/clearance/proto/gen/clearance/agent/v1"
)

// TestLostAcksThenReset: the verifier stores reports but their acks never
// arrive, then the connection resets. The agent resends every one of them,
// the verifier acknowledges each resend (none is refused, so none is
// dropped and seq does not jump), and a fresh report follows at once.
func TestLostAcksThenReset(t *testing.T) {
	t.Parallel()
	v := fakeverifier.New(t)
	v.PolicySet = policySet
	v.AutoAck = false
	a := startAgent(t, v, t.TempDir(), nil)
	s := nextSession(t, v)
	// The report on connecting, then three answers to CheckNow: all stored,
	// none acknowledged.
	stored := []uint64{nextReport(t, v).Report.GetSeq()}
	for i := range 3 {
		s.Send(&agentv1.VerifierMessage{Message: &agentv1.VerifierMessage_CheckNow{CheckNow: &agentv1.CheckNow{
			Nonce: fmt.Appendf(nil, "nonce-%d-0123456789", i), ExpiresAt: timestamppb.New(time.Now().Add(time.Minute)),
		}}})
		stored = append(stored, nextReport(t, v).Report.GetSeq())
	}

	// Acks come back again from now on; the connection resets.
	v.SetAutoAck(true)
	reset := time.Now()
	s.End(status.Error(codes.Unavailable, "connection reset"))
	nextSession(t, v)
	var resent []uint64
	var fresh fakeverifier.Received
	for {
		r := nextReport(t, v)
		if !r.Duplicate {
			fresh = r
			break
		}
		resent = append(resent, r.Report.GetSeq())
	}
	t.Logf("reset; %d resends acknowledged again, fresh report seq %d stored %s after the reset",
		len(resent), fresh.Report.GetSeq(), time.Since(reset).Round(time.Millisecond))
	// Every stored report the agent had no ack for was resent, in order,
	// and the fresh one follows without a gap.
	if !slices.Equal(resent, stored) {
		t.Fatalf("resent %v, want every unacknowledged report %v", resent, stored)
	}
	if want := stored[len(stored)-1] + 1; fresh.Report.GetSeq() != want {
		t.Errorf("fresh report seq %d, want %d: no seq skipped", fresh.Report.GetSeq(), want)
	}
	waitAcked(t, a.client, fresh.Report.GetSeq())
	if err := a.client.Stats().LastError; status.Code(err) != codes.Unavailable {
		t.Errorf("last error = %v, want the reset's Unavailable", err)
	}
}

// slowQuerier answers like querier, but each query takes delay while slow
// is set.
type slowQuerier struct {
	*querier
	slow  atomic.Bool
	delay time.Duration
}

func (q *slowQuerier) Query(ctx context.Context, sql string) ([]map[string]string, error) {
	if q.slow.Load() {
		select {
		case <-time.After(q.delay):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return q.querier.Query(ctx, sql)
}

// slowly is a slowQuerier whose every query takes d.
func slowly(d time.Duration) *slowQuerier {
	q := &slowQuerier{querier: newQuerier(), delay: d}
	q.slow.Store(true)
	return q
}

// TestStreamEndNotStuckOnReader: the verifier sends a message and ends the
// stream while the agent is busy running policies. The agent's send then
// fails; the stream's status comes from its reader, which holds the
// message that came first. The agent must take that message and learn the
// real status at once, not wait seconds and end with a bare EOF.
func TestStreamEndNotStuckOnReader(t *testing.T) {
	t.Parallel()
	v := fakeverifier.New(t)
	v.PolicySet = policySet
	q := &slowQuerier{querier: newQuerier(), delay: 100 * time.Millisecond}
	a := startAgent(t, v, t.TempDir(), func(o *stream.Options) { o.Querier = q })
	s := nextSession(t, v)
	first := nextReport(t, v)
	waitAcked(t, a.client, first.Report.GetSeq())

	q.slow.Store(true)
	s.Send(&agentv1.VerifierMessage{Message: &agentv1.VerifierMessage_CheckNow{CheckNow: &agentv1.CheckNow{
		Nonce: []byte("nonce-0123456789"), ExpiresAt: timestamppb.New(time.Now().Add(time.Minute)),
	}}})
	time.Sleep(50 * time.Millisecond) // the agent is running the policies
	s.Send(&agentv1.VerifierMessage{Message: &agentv1.VerifierMessage_Ack{Ack: &agentv1.Ack{Seq: first.Report.GetSeq()}}})
	ended := time.Now()
	s.End(status.Error(codes.Unavailable, "verifier restarting"))
	q.slow.Store(false)

	nextSession(t, v)
	took := time.Since(ended)
	t.Logf("reconnected %s after the verifier ended the stream", took.Round(time.Millisecond))
	if took > 2*time.Second {
		t.Errorf("reconnected %s after the stream ended: the agent waited on its reader", took)
	}
	if err := a.client.Stats().LastError; status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "verifier restarting") {
		t.Errorf("the session ended with %v, want the verifier's Unavailable status", err)
	}
}

// The agent's clock is ten minutes off either way: reports are stamped in
// the verifier's time (learnt from Session.verifier_time), while Hello
// tells the verifier what the device's own clock says.
func TestReportsInVerifierTime(t *testing.T) {
	t.Parallel()
	for _, off := range []time.Duration{-10 * time.Minute, 10 * time.Minute} {
		t.Run(off.String(), func(t *testing.T) {
			t.Parallel()
			v := fakeverifier.New(t)
			v.PolicySet = policySet
			dir := t.TempDir()
			local := func() time.Time { return time.Now().Add(off) }
			a := startAgent(t, v, dir, func(o *stream.Options) { o.Clock = clock.New(local, nil) })
			s := nextSession(t, v)
			if d := s.Hello.GetAgentTime().AsTime().Sub(time.Now()); (d - off).Abs() > 5*time.Second {
				t.Errorf("Hello.agent_time is %s from now, want the device's own clock, %s", d, off)
			}
			r := nextReport(t, v).Report
			if d := time.Since(r.GetObservedAt().AsTime()); d.Abs() > 5*time.Second {
				t.Errorf("observed_at is %s from the verifier's now, want it in the verifier's time", d)
			}
			if _, enrolls, _ := v.Counts(); enrolls != 1 {
				t.Errorf("enrolled %d times, want once", enrolls)
			}
			a.stop(t)

			// A restarted agent reports in the verifier's time too: it
			// waits for the Session before its first report.
			startAgent(t, v, dir, func(o *stream.Options) { o.Clock = clock.New(local, nil) })
			nextSession(t, v)
			r = nextReport(t, v).Report
			if d := time.Since(r.GetObservedAt().AsTime()); d.Abs() > 5*time.Second {
				t.Errorf("after a restart observed_at is %s from the verifier's now", d)
			}
			if _, enrolls, _ := v.Counts(); enrolls != 1 {
				t.Errorf("enrolled %d times after a restart, want once", enrolls)
			}
		})
	}
}

// A device the verifier refuses for good (revoked) is not retried at the
// reconnect pace: the agent waits StopWait, and says why.
func TestRefusedDeviceStopsRetrying(t *testing.T) {
	t.Parallel()
	v := fakeverifier.New(t)
	v.PolicySet = policySet
	// Longer than a client's field in a refusal log: the verifier's words
	// are kept whole.
	why := "device D1 is revoked: laptop reported stolen; re-enrolling needs the security team"
	v.RejectConnect = func(int) error { return status.Error(codes.PermissionDenied, why) }
	dir := t.TempDir()
	var mu sync.Mutex
	var waits []time.Duration
	stopWaited := make(chan struct{}, 1)
	startAgent(t, v, dir, func(o *stream.Options) {
		o.StopWait = 42 * time.Minute
		o.After = func(d time.Duration) <-chan time.Time {
			mu.Lock()
			waits = append(waits, d)
			mu.Unlock()
			if d == 42*time.Minute {
				select {
				case stopWaited <- struct{}{}:
				default:
				}
			}
			return make(chan time.Time) // never: one attempt is enough
		}
	})
	select {
	case <-stopWaited:
	case <-time.After(10 * time.Second):
		mu.Lock()
		defer mu.Unlock()
		t.Fatalf("waits = %v, want StopWait after PermissionDenied", waits)
	}
	if connects, _, _ := v.Counts(); connects != 1 {
		t.Errorf("%d connects, want 1", connects)
	}
	// `clearance-agent status` reads why.
	sd, err := state.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 10*time.Second, "the refusal to be recorded", func() bool {
		r, err := sd.LoadRefusal()
		return err == nil && r != nil
	})
	r, _ := sd.LoadRefusal()
	if r.Code != "PermissionDenied" || r.Message != why || r.RetryAt.Sub(r.At) != 42*time.Minute || r.Verifier != v.Addr {
		t.Errorf("recorded refusal = %+v", r)
	}
}

// A recorded refusal is forgotten once the verifier accepts the device.
func TestRefusalClearedOnConnect(t *testing.T) {
	t.Parallel()
	v := fakeverifier.New(t)
	v.PolicySet = policySet
	v.RejectConnect = func(n int) error {
		if n == 1 {
			return status.Error(codes.PermissionDenied, "device is revoked")
		}
		return nil
	}
	dir := t.TempDir()
	sd, err := state.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	recorded := make(chan struct{})
	startAgent(t, v, dir, func(o *stream.Options) {
		o.StopWait = 42 * time.Minute
		o.After = func(d time.Duration) <-chan time.Time {
			if d == 42*time.Minute {
				// The refusal is on disk before the wait begins.
				if r, err := sd.LoadRefusal(); err == nil && r != nil {
					close(recorded)
				}
			}
			c := make(chan time.Time, 1)
			c <- time.Now()
			return c
		}
	})
	nextSession(t, v)
	select {
	case <-recorded:
	default:
		t.Fatal("no refusal was recorded before the wait")
	}
	testkit.Eventually(t, 10*time.Second, "the refusal to be forgotten", func() bool {
		r, err := sd.LoadRefusal()
		return err == nil && r == nil
	})
}
