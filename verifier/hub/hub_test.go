package hub

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/clearance/clearance/internal/testkit"
	agentv1 "github.com/clearance/clearance/proto/gen/clearance/agent/v1"
	"github.com/clearance/clearance/verifier/cluster"
	"github.com/clearance/clearance/verifier/ingest"
)

type nonceLog struct {
	mu  sync.Mutex
	got [][]byte
}

func (n *nonceLog) CreateNonce(_ context.Context, _ string, nonce []byte, _ time.Time) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.got = append(n.got, nonce)
	return nil
}

func (n *nonceLog) count() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return len(n.got)
}
func (n *nonceLog) DeleteExpiredNonces(context.Context, time.Time) (int, error) { return 0, nil }

func TestRegisterReplacesOlderSession(t *testing.T) {
	t.Parallel()
	var h Hub
	counts := []int{}
	h.OnChange = func(n int) { counts = append(counts, n) }
	a, doneA := h.Register("d1", nil)
	b, doneB := h.Register("d1", nil)
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
	_, done := h.Register("d1", nil)
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
	s, done := h.Register("d1", nil)
	defer done()
	ttl := make(chan time.Duration, 1)
	go func() {
		m := <-s.Out()
		cn := m.GetCheckNow()
		// The agent reckons the check's time left from its ttl.
		ttl <- cn.GetTtl().AsDuration()
		// A report for another nonce must not satisfy the waiter.
		h.Delivered(&ingest.Accepted{Report: &agentv1.PostureReport{Nonce: []byte("other")}})
		// Nor one stored as lapsed (the store found the nonce expired).
		h.Delivered(&ingest.Accepted{Report: &agentv1.PostureReport{Seq: 8, Nonce: cn.GetNonce()}, Lapsed: true})
		h.Delivered(&ingest.Accepted{Report: &agentv1.PostureReport{Seq: 9, Nonce: cn.GetNonce()}})
	}()
	a, err := h.CheckNow(context.Background(), "d1", 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if a.Report.GetSeq() != 9 || nonces.count() != 1 {
		t.Fatalf("got seq %d, nonces %d", a.Report.GetSeq(), nonces.count())
	}
	if got := <-ttl; got <= 4*time.Second || got > 5*time.Second {
		t.Errorf("CheckNow ttl %s, want what was left of 5s when it was sent", got)
	}
}

func TestCheckNowErrors(t *testing.T) {
	t.Parallel()
	h := &Hub{Nonces: &nonceLog{}}
	if _, err := h.CheckNow(context.Background(), "d1", time.Second); !errors.Is(err, ErrNotConnected) {
		t.Fatalf("offline: %v", err)
	}
	_, done := h.Register("d1", nil)
	defer done()
	if _, err := h.CheckNow(context.Background(), "d1", 10*time.Millisecond); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("silent agent: %v", err)
	}
	// The check ends on its own timer, as the caller gives up on its.
	for end := time.Now().Add(time.Second); ; time.Sleep(5 * time.Millisecond) {
		h.mu.Lock()
		n := len(h.waiters) + len(h.flights)
		h.mu.Unlock()
		if n == 0 {
			break
		}
		if time.Now().After(end) {
			t.Fatal("waiter or flight leaked")
		}
	}
}

// TestCheckNowShared: callers asking for the same device while a check of
// it is under way share its one CheckNow and its answer, even once the
// caller that started it has given up.
func TestCheckNowShared(t *testing.T) {
	t.Parallel()
	nonces := &nonceLog{}
	// The hub's clock stands still: however late the goroutines below
	// start, they come within the second a check is shared for.
	t0 := time.Now()
	h := &Hub{Nonces: nonces, Now: func() time.Time { return t0 }}
	s, done := h.Register("d1", nil)
	defer done()
	first, cancelFirst := context.WithCancel(context.Background())
	type result struct {
		acc *ingest.Accepted
		err error
	}
	results := make(chan result, 3)
	ask := func(ctx context.Context, ttl time.Duration) {
		acc, err := h.CheckNow(ctx, "d1", ttl)
		results <- result{acc, err}
	}
	go ask(first, 5*time.Second)
	m := <-s.Out()
	// Two more sign-ins of the same Mac while its check is out, with the
	// same timeout give or take.
	go ask(context.Background(), 4500*time.Millisecond)
	go ask(context.Background(), 5*time.Second)
	testkit.Eventually(t, 4*time.Second, "both to join the check", func() bool {
		h.mu.Lock()
		defer h.mu.Unlock()
		f := h.flights["d1"]
		return f != nil && f.callers == 3
	})
	select {
	case extra := <-s.Out():
		t.Fatalf("a second CheckNow was sent: %v", extra)
	default:
	}
	cancelFirst()
	if r := <-results; !errors.Is(r.err, context.Canceled) {
		t.Fatalf("the caller that gave up: %v", r.err)
	}
	h.Delivered(&ingest.Accepted{Report: &agentv1.PostureReport{Seq: 7, Nonce: m.GetCheckNow().GetNonce()}})
	for range 2 {
		if r := <-results; r.err != nil || r.acc.Report.GetSeq() != 7 {
			t.Errorf("a caller sharing the check: %v, %v", r.acc, r.err)
		}
	}
	if n := nonces.count(); n != 1 {
		t.Errorf("%d nonces recorded, want 1", n)
	}
}

// TestCheckNowNotSharedAcrossStreams: a check sent on a stream that has
// since been replaced (the agent reconnected) is not shared: a caller asks
// the new stream.
func TestCheckNowNotSharedAcrossStreams(t *testing.T) {
	t.Parallel()
	h := &Hub{Nonces: &nonceLog{}}
	old, doneOld := h.Register("d1", nil)
	go func() { _, _ = h.CheckNow(context.Background(), "d1", 2*time.Second) }()
	<-old.Out()
	doneOld()
	s, done := h.Register("d1", nil)
	defer done()
	got := make(chan error, 1)
	go func() { _, err := h.CheckNow(context.Background(), "d1", 2*time.Second); got <- err }()
	var m *agentv1.VerifierMessage
	select {
	case m = <-s.Out():
	case <-time.After(time.Second):
		t.Fatal("no CheckNow on the new stream: the caller joined the old stream's check")
	}
	h.Delivered(&ingest.Accepted{Report: &agentv1.PostureReport{Seq: 3, Nonce: m.GetCheckNow().GetNonce()}})
	if err := <-got; err != nil {
		t.Errorf("the caller on the new stream: %v", err)
	}
}

// TestCheckNowLongerAsksAnew: callers whose timeouts differ by more than
// flightSlack (an admin's RequestCheck during a sign-in's, or the other
// way round) ask on their own.
func TestCheckNowLongerAsksAnew(t *testing.T) {
	t.Parallel()
	h := &Hub{Nonces: &nonceLog{}}
	s, done := h.Register("d1", nil)
	defer done()
	got := make(chan error, 3)
	go func() { _, err := h.CheckNow(context.Background(), "d1", 200*time.Millisecond); got <- err }()
	<-s.Out()
	go func() { _, err := h.CheckNow(context.Background(), "d1", time.Minute); got <- err }()
	m := <-s.Out()
	if err := <-got; !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("the short check: %v", err)
	}
	// A sign-in's 3 s check during the minute-long one asks on its own too.
	go func() { _, err := h.CheckNow(context.Background(), "d1", 3*time.Second); got <- err }()
	m3 := <-s.Out()
	h.Delivered(&ingest.Accepted{Report: &agentv1.PostureReport{Seq: 8, Nonce: m.GetCheckNow().GetNonce()}})
	h.Delivered(&ingest.Accepted{Report: &agentv1.PostureReport{Seq: 9, Nonce: m3.GetCheckNow().GetNonce()}})
	for range 2 {
		if err := <-got; err != nil {
			t.Errorf("a caller that asked on its own: %v", err)
		}
	}
}

// TestCheckNowSharedOnlySoonAfter: a caller whose deadline is within a
// second of a check's, but who comes well after it was sent (a short
// sign-in late in a long RequestCheck), asks on its own.
func TestCheckNowSharedOnlySoonAfter(t *testing.T) {
	t.Parallel()
	now := time.Now()
	var mu sync.Mutex
	h := &Hub{Nonces: &nonceLog{}, Now: func() time.Time { mu.Lock(); defer mu.Unlock(); return now }}
	s, done := h.Register("d1", nil)
	defer done()
	go func() { _, _ = h.CheckNow(context.Background(), "d1", 3*time.Second) }()
	<-s.Out()
	mu.Lock()
	now = now.Add(2500 * time.Millisecond) // its deadline is 0.5 s away
	mu.Unlock()
	go func() { _, _ = h.CheckNow(context.Background(), "d1", time.Second) }()
	select {
	case <-s.Out():
	case <-time.After(time.Second):
		t.Fatal("a caller that came 2.5 s after a check was sent shared it")
	}
}

// checkCounter is a cluster.Relay for a device streaming elsewhere that
// counts the checks published.
type checkCounter struct {
	cluster.Relay
	mu     sync.Mutex
	checks int
}

func (r *checkCounter) Elsewhere(context.Context, string) (bool, error) { return true, nil }
func (r *checkCounter) PublishCheck(context.Context, cluster.Check) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.checks++
	return nil
}

// TestCheckNowRelayedNotShared: checks relayed to another replica are not
// shared: this replica cannot tell whether the stream they were sent to
// is still the device's.
func TestCheckNowRelayedNotShared(t *testing.T) {
	t.Parallel()
	r := &checkCounter{}
	h := &Hub{Nonces: &nonceLog{}, Relay: r}
	for range 2 {
		go func() { _, _ = h.CheckNow(context.Background(), "d1", 300*time.Millisecond) }()
	}
	published := func() int { r.mu.Lock(); defer r.mu.Unlock(); return r.checks }
	testkit.Eventually(t, 5*time.Second, "a check published for each caller", func() bool { return published() >= 2 })
	if n := published(); n != 2 {
		t.Errorf("%d relayed checks published for two callers, want 2", n)
	}
}

// relayLog is a cluster.Relay that records what is published and hands the
// handler to the test.
type relayLog struct {
	cluster.Relay
	enrolled []cluster.Enrolled
	handler  chan cluster.Handler
}

func (r *relayLog) PublishEnrolled(_ context.Context, e cluster.Enrolled) error {
	r.enrolled = append(r.enrolled, e)
	return nil
}

func (r *relayLog) Join(context.Context, string, string) error  { return nil }
func (r *relayLog) Leave(context.Context, string, string) error { return nil }

func (r *relayLog) Run(ctx context.Context, h cluster.Handler) error {
	r.handler <- h
	<-ctx.Done()
	return nil
}

// A re-enrollment ends the device's stream of the old key, here and (as
// a relayed signal) on other replicas, and leaves a stream of the new key.
func TestReenrolledEndsOldKeyStream(t *testing.T) {
	t.Parallel()
	oldKey, newKey := []byte("old key"), []byte("new key")
	relay := &relayLog{handler: make(chan cluster.Handler, 1)}
	h := &Hub{Relay: relay}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go h.Run(ctx)
	handler := <-relay.handler

	old, doneOld := h.Register("d1", oldKey)
	defer doneOld()
	other, doneOther := h.Register("d2", oldKey)
	defer doneOther()
	h.Reenrolled("d1", newKey)
	select {
	case <-old.Done():
	default:
		t.Fatal("the old key's session was not ended")
	}
	if !errors.Is(old.Err(), ErrKeyReplaced) {
		t.Fatalf("err = %v, want ErrKeyReplaced", old.Err())
	}
	if len(relay.enrolled) != 1 || relay.enrolled[0].DeviceID != "d1" || !bytes.Equal(relay.enrolled[0].KeyHash, KeyHash(newKey)) {
		t.Fatalf("published %+v, want d1 with the new key's hash", relay.enrolled)
	}

	// The new key's session stays, whether the signal is this replica's
	// own or another replica's.
	current, doneCurrent := h.Register("d1", newKey)
	defer doneCurrent()
	h.Reenrolled("d1", newKey)
	handler.Enrolled(cluster.Enrolled{DeviceID: "d1", KeyHash: KeyHash(newKey)})
	select {
	case <-current.Done():
		t.Fatalf("the new key's session was ended: %v", current.Err())
	default:
	}
	// Another replica's re-enrollment with yet another key ends it.
	handler.Enrolled(cluster.Enrolled{DeviceID: "d1", KeyHash: KeyHash([]byte("third key"))})
	if !errors.Is(current.Err(), ErrKeyReplaced) {
		t.Fatalf("after another replica's re-enrollment err = %v, want ErrKeyReplaced", current.Err())
	}
	select {
	case <-other.Done():
		t.Fatal("another device's session was ended")
	default:
	}
}

// With the database to read, a relayed re-enrollment ends a stream only if
// its key is not the device's current one, whatever key the signal names:
// a signal sent again after a later re-enrollment names a key replaced
// since. If the database cannot be read, the signal decides.
func TestRelayedReenrollmentReadsTheCurrentKey(t *testing.T) {
	t.Parallel()
	current := []byte("current key")
	var failRead atomic.Bool
	relay := &relayLog{handler: make(chan cluster.Handler, 1)}
	h := &Hub{Relay: relay, CurrentKey: func(_ context.Context, id string) ([]byte, error) {
		if failRead.Load() {
			return nil, errors.New("database unavailable")
		}
		return current, nil
	}}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go h.Run(ctx)
	handler := <-relay.handler

	s, done := h.Register("d1", current)
	defer done()
	handler.Enrolled(cluster.Enrolled{DeviceID: "d1", KeyHash: KeyHash([]byte("a key replaced since"))})
	select {
	case <-s.Done():
		t.Fatalf("a signal naming an older key ended the current key's stream: %v", s.Err())
	default:
	}
	failRead.Store(true)
	handler.Enrolled(cluster.Enrolled{DeviceID: "d1", KeyHash: KeyHash([]byte("a key replaced since"))})
	if !errors.Is(s.Err(), ErrKeyReplaced) {
		t.Fatalf("with the database unreadable, err = %v, want the signal to decide (ErrKeyReplaced)", s.Err())
	}
	old, doneOld := h.Register("d2", []byte("old key"))
	defer doneOld()
	failRead.Store(false)
	handler.Enrolled(cluster.Enrolled{DeviceID: "d2", KeyHash: KeyHash([]byte("whatever"))})
	if !errors.Is(old.Err(), ErrKeyReplaced) {
		t.Fatalf("a stream whose key is not the current one: err = %v, want ErrKeyReplaced", old.Err())
	}
}

// A relayed check that has already expired (sent again, or late) is not
// sent to the agent.
func TestRelayedExpiredCheckNotSent(t *testing.T) {
	t.Parallel()
	now := time.Now()
	relay := &relayLog{handler: make(chan cluster.Handler, 1)}
	h := &Hub{Relay: relay, Now: func() time.Time { return now }}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go h.Run(ctx)
	handler := <-relay.handler
	s, done := h.Register("d1", nil)
	defer done()
	handler.Check(cluster.Check{DeviceID: "d1", Nonce: []byte("old"), ExpiresAt: now.Add(-time.Second)})
	handler.Check(cluster.Check{DeviceID: "d1", Nonce: []byte("new"), ExpiresAt: now.Add(time.Second)})
	m := <-s.Out()
	if string(m.GetCheckNow().GetNonce()) != "new" {
		t.Fatalf("the agent was sent %v, want only the check still alive", m)
	}
	select {
	case m := <-s.Out():
		t.Fatalf("another message sent: %v", m)
	default:
	}
}

func TestNotifyOnNewsAndOnDrop(t *testing.T) {
	t.Parallel()
	var h Hub
	s, done := h.Register("d1", nil)
	told := 0
	s.Notify(func() { told++ })
	if err := h.Send("d1", &agentv1.VerifierMessage{}); err != nil {
		t.Fatal(err)
	}
	if told != 1 {
		t.Fatalf("told %d times after a message, want 1", told)
	}
	// A message refused (the buffer full) is no news.
	for range sendBuffer {
		_ = h.Send("d1", &agentv1.VerifierMessage{})
	}
	if told != sendBuffer {
		t.Fatalf("told %d times after filling the buffer, want %d", told, sendBuffer)
	}
	_, doneNewer := h.Register("d1", nil) // drops s
	defer doneNewer()
	if told != sendBuffer+1 {
		t.Fatalf("told %d times after the drop, want %d", told, sendBuffer+1)
	}
	done() // already dropped: no news twice
	if told != sendBuffer+1 {
		t.Fatalf("told %d times after cleanup, want %d", told, sendBuffer+1)
	}
}

// elsewhereRelay answers Elsewhere with ok and err.
type elsewhereRelay struct {
	cluster.Relay
	ok  bool
	err error
}

func (r elsewhereRelay) Elsewhere(context.Context, string) (bool, error) { return r.ok, r.err }

// Connected counts an unreadable relay as no agent (a live check then
// reports offline); MaybeConnected counts it as an agent, for a caller to
// whom "no agent" would grant the weaker binding.
func TestMaybeConnectedWhenUnknown(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name            string
		relay           cluster.Relay
		connected, mays bool
	}{
		{"no relay", nil, false, false},
		{"on another replica", elsewhereRelay{ok: true}, true, true},
		{"on none", elsewhereRelay{}, false, false},
		{"relay unreadable", elsewhereRelay{err: errors.New("connection refused")}, false, true},
		{"on a silent replica only", elsewhereRelay{err: fmt.Errorf("device dev-1: %w", cluster.ErrPresenceStale)}, false, true},
	} {
		h := &Hub{Relay: tc.relay}
		if got := h.Connected("dev-1"); got != tc.connected {
			t.Errorf("%s: Connected = %v, want %v", tc.name, got, tc.connected)
		}
		if got := h.MaybeConnected("dev-1"); got != tc.mays {
			t.Errorf("%s: MaybeConnected = %v, want %v", tc.name, got, tc.mays)
		}
	}
}

// flakyRelay fails every Join and Leave, and hands its Handler to the
// test once Run starts.
type flakyRelay struct {
	cluster.Relay
	handler chan cluster.Handler
}

func (r flakyRelay) Run(ctx context.Context, h cluster.Handler) error {
	r.handler <- h
	<-ctx.Done()
	return nil
}
func (flakyRelay) Join(context.Context, string, string) error { return errors.New("statement timeout") }
func (flakyRelay) Leave(context.Context, string, string) error {
	return errors.New("statement timeout")
}

// A stream whose presence was not recorded is not hidden until the relay
// next reconnects: the relay is told to record every stream again, once
// for each failure, with the stream among them.
func TestLostPresenceIsRecordedAgain(t *testing.T) {
	t.Parallel()
	r := flakyRelay{handler: make(chan cluster.Handler, 1)}
	h := &Hub{Relay: r}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.Run(ctx) }()
	defer func() { cancel(); <-done }()
	hd := <-r.handler
	if hd.Lost() {
		t.Fatal("Lost before any presence was written")
	}
	_, end := h.Register("dev-1", nil)
	if !hd.Lost() {
		t.Fatal("a failed Join is not reported lost")
	}
	if hd.Lost() {
		t.Fatal("Lost reported twice for one failure")
	}
	if got := hd.Devices(); got["dev-1"] == "" {
		t.Fatalf("Devices = %v, want dev-1's stream", got)
	}
	end()
	if !hd.Lost() {
		t.Fatal("a failed Leave is not reported lost")
	}
}

// joinsRelay fails the first fail Joins, then records them; Leaves are
// recorded. A Join waits for the channel hold returns for its session, if
// any.
type joinsRelay struct {
	cluster.Relay
	mu     sync.Mutex
	fail   int
	joined map[string]string
	hold   func(session string) <-chan struct{}
}

func (r *joinsRelay) Join(_ context.Context, deviceID, session string) error {
	if r.hold != nil {
		if ch := r.hold(session); ch != nil {
			<-ch
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail > 0 {
		r.fail--
		return errors.New("lock timeout")
	}
	r.joined[deviceID] = session
	return nil
}

func (r *joinsRelay) Leave(_ context.Context, deviceID, session string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.joined[deviceID] == session {
		delete(r.joined, deviceID)
	}
	return nil
}

// Elsewhere: no other replica holds anything (a relay skips its own
// records).
func (r *joinsRelay) Elsewhere(context.Context, string) (bool, error) { return false, nil }

func (r *joinsRelay) get(deviceID string) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.joined[deviceID]
}

// A stream whose presence record failed is recorded as soon as the
// database takes it again, not at the relay's next heartbeat; one that
// ended meanwhile is not recorded.
func TestFailedJoinTriedAgain(t *testing.T) {
	t.Parallel()
	r := &joinsRelay{fail: 3, joined: map[string]string{}}
	h := &Hub{Relay: r}
	_, end := h.Register("dev-1", nil)
	deadline := time.Now().Add(2 * time.Second)
	for r.get("dev-1") == "" && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if r.get("dev-1") == "" {
		t.Fatal("dev-1's stream not recorded after its Join failed")
	}
	end()
	if got := r.get("dev-1"); got != "" {
		t.Fatalf("dev-1 still recorded after its stream ended: %q", got)
	}

	r.mu.Lock()
	r.fail = 1
	r.mu.Unlock()
	_, end = h.Register("dev-2", nil)
	end() // ends before the Join is tried again
	time.Sleep(3 * joinRetryFirst)
	if got := r.get("dev-2"); got != "" {
		t.Fatalf("an ended stream recorded: %q", got)
	}
}

// A Join that lands after its stream was replaced (an agent that
// reconnected while the first Join waited for the database) does not leave
// the record naming the replaced stream, whose successor's Leave would not
// remove it; nor, once the successor has ended too, a record at all,
// unless the successor was cut as this replica stopped.
func TestLateJoinOfAReplacedStream(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ successorEnds, retiring bool }{{false, false}, {true, false}, {true, true}} {
		release := make(chan struct{})
		var first sync.Once
		r := &joinsRelay{joined: map[string]string{}}
		r.hold = func(string) <-chan struct{} {
			var ch <-chan struct{}
			first.Do(func() { ch = release })
			return ch
		}
		h := &Hub{Relay: r}
		registered := make(chan *Session, 1)
		go func() {
			s, _ := h.Register("dev-1", nil)
			registered <- s
		}()
		deadline := time.Now().Add(2 * time.Second)
		for !h.Local("dev-1") && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		s2, end2 := h.Register("dev-1", nil)
		if c.retiring {
			h.Retire()
		}
		if c.successorEnds {
			end2()
		}
		close(release)
		s1 := <-registered
		got := r.get("dev-1")
		switch {
		case c.retiring:
			if got == "" {
				t.Errorf("%+v: no record, want one kept for the stream cut at shutdown", c)
			}
		case c.successorEnds:
			if got != "" {
				t.Errorf("%+v: record names %q, want none (first stream %q)", c, got, s1.id)
			}
		case got != s2.id:
			t.Errorf("%+v: record names %q, want %q (first stream %q)", c, got, s2.id, s1.id)
		}
	}
}

// Once the replica stops, a stream cut then is still among the devices the
// relay records (whose records it keeps), beside those still held; one that
// ended before is not.
func TestCutStreamsKeptForTheRelay(t *testing.T) {
	t.Parallel()
	r := &joinsRelay{joined: map[string]string{}}
	h := &Hub{Relay: r}
	_, endBefore := h.Register("dev-before", nil)
	endBefore()
	_, endCut := h.Register("dev-cut", nil)
	held, endHeld := h.Register("dev-held", nil)
	defer endHeld()
	h.Retire()
	cut := h.currentSession("dev-cut")
	endCut()
	want := map[string]string{"dev-cut": cut, "dev-held": held.id}
	if got := h.devices(); !maps.Equal(got, want) {
		t.Fatalf("devices = %v, want %v", got, want)
	}
	if got := h.kept(); got != len(want) {
		t.Fatalf("kept = %d, want %d", got, len(want))
	}
	if got := r.get("dev-cut"); got != cut {
		t.Fatalf("the cut stream's record is %q, want %q", got, cut)
	}
}

// A stopping replica reads the Macs whose streams it cut as it stopped as
// connected, as the other replicas do from the records it keeps for them:
// a sign-in it still answers must not take them for Macs with no agent.
// The streams that ended before it stopped are gone, as anywhere.
func TestStoppingReplicaCountsItsCutStreams(t *testing.T) {
	t.Parallel()
	h := &Hub{Relay: &joinsRelay{joined: map[string]string{}}}
	_, endBefore := h.Register("dev-before", nil)
	endBefore()
	_, endCut := h.Register("dev-cut", nil)
	h.Retire()
	endCut()
	if !h.MaybeConnected("dev-cut") {
		t.Error("the stopping replica reads the Mac whose stream it cut as having no agent")
	}
	if h.MaybeConnected("dev-before") {
		t.Error("a stream that ended before the replica stopped counts as connected")
	}
}

// A revocation ends the device's stream here with the caller's error and,
// relayed as a signal with no key, on other replicas with ErrRevoked,
// whatever the stream's key: the database says the device has no current
// key, and if it cannot be read the signal decides.
func TestRevokedEndsStreamEverywhere(t *testing.T) {
	t.Parallel()
	key := []byte("current key")
	var failRead atomic.Bool
	relay := &relayLog{handler: make(chan cluster.Handler, 1)}
	h := &Hub{Relay: relay, CurrentKey: func(_ context.Context, id string) ([]byte, error) {
		switch {
		case failRead.Load():
			return nil, errors.New("database unavailable")
		case id == "revoked":
			return nil, nil
		}
		return key, nil
	}}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go h.Run(ctx)
	handler := <-relay.handler

	local, doneLocal := h.Register("d1", key)
	defer doneLocal()
	h.Revoked("d1")
	if err := local.Err(); !errors.Is(err, ErrRevoked) || err.Error() != "device d1 was revoked" {
		t.Fatalf("the local stream ended with %v, want ErrRevoked naming the device", err)
	}
	if len(relay.enrolled) != 1 || relay.enrolled[0].DeviceID != "d1" || len(relay.enrolled[0].KeyHash) != 0 {
		t.Fatalf("published %+v, want d1 with no key", relay.enrolled)
	}

	s, done := h.Register("revoked", key)
	defer done()
	other, doneOther := h.Register("d2", key)
	defer doneOther()
	handler.Enrolled(cluster.Enrolled{DeviceID: "revoked"})
	if !errors.Is(s.Err(), ErrRevoked) {
		t.Fatalf("a revoked device's stream: err = %v, want ErrRevoked", s.Err())
	}
	failRead.Store(true)
	handler.Enrolled(cluster.Enrolled{DeviceID: "d2"})
	if !errors.Is(other.Err(), ErrRevoked) {
		t.Fatalf("with the database unreadable: err = %v, want the signal to decide (ErrRevoked)", other.Err())
	}
}
