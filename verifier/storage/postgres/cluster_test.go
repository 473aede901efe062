package postgres_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"google.golang.org/protobuf/proto"

	"github.com/clearance/clearance/internal/testkit"
	"github.com/clearance/clearance/internal/testkit/testpg"
	agentv1 "github.com/clearance/clearance/proto/gen/clearance/agent/v1"
	"github.com/clearance/clearance/verifier/cluster"
	"github.com/clearance/clearance/verifier/hub"
	"github.com/clearance/clearance/verifier/ingest"
	"github.com/clearance/clearance/verifier/storage"
	"github.com/clearance/clearance/verifier/storage/postgres"
)

// beat is the heartbeat the tests' relays use, so staleness shows quickly.
const beat = 200 * time.Millisecond

// heard collects what a relay's Run delivers.
type heard struct {
	checks   chan cluster.Check
	answered chan cluster.Answered
	enrolled chan cluster.Enrolled
	mu       sync.Mutex
	devices  map[string]string
}

func newHeard() *heard {
	return &heard{checks: make(chan cluster.Check, 16), answered: make(chan cluster.Answered, 16), enrolled: make(chan cluster.Enrolled, 16), devices: map[string]string{}}
}

func (h *heard) handler() cluster.Handler {
	return cluster.Handler{
		Check:    func(c cluster.Check) { h.checks <- c },
		Answered: func(a cluster.Answered) { h.answered <- a },
		Enrolled: func(e cluster.Enrolled) { h.enrolled <- e },
		Devices: func() map[string]string {
			h.mu.Lock()
			defer h.mu.Unlock()
			out := map[string]string{}
			for k, v := range h.devices {
				out[k] = v
			}
			return out
		},
	}
}

// runRelay runs r until the returned stop is called (or the test ends).
func runRelay(t *testing.T, r *postgres.Relay, h cluster.Handler) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx, h) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// bothListening waits until two replicas have a heartbeat: each writes one
// only once it LISTENs.
func bothListening(t *testing.T, admin *pgx.Conn) {
	t.Helper()
	listening(t, admin, 2)
}

// listening waits until want replicas have a heartbeat.
func listening(t *testing.T, admin *pgx.Conn, want int) {
	t.Helper()
	eventually(t, fmt.Sprintf("%d replicas listening", want), 5*time.Second, func() bool {
		var n int
		if err := admin.QueryRow(t.Context(), `SELECT count(*) FROM cluster_replicas WHERE heartbeat_at > '-infinity'`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n == want
	})
}

// heardWithin returns what ch delivers within 5 s, or fails the test.
func heardWithin[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case got := <-ch:
		return got
	case <-time.After(5 * time.Second):
		t.Fatalf("timed out: %s", what)
		panic("unreachable")
	}
}

func eventually(t *testing.T, what string, within time.Duration, cond func() bool) {
	t.Helper()
	testkit.Eventually(t, within, what, cond)
}

// elsewhere reports whether r sees deviceID's stream on a live replica;
// a record it cannot tell about (cluster.ErrPresenceStale: a replica
// whose row its pool re-inserted before its heartbeat, say) is not seen.
func elsewhere(t *testing.T, r *postgres.Relay, deviceID string) bool {
	t.Helper()
	ok, err := r.Elsewhere(t.Context(), deviceID)
	if err != nil && !errors.Is(err, cluster.ErrPresenceStale) {
		t.Fatalf("Elsewhere: %v", err)
	}
	return ok && err == nil
}

// Two replicas on one database: each hears the other's signals and not its
// own, and presence follows streams, sessions and heartbeats.
func TestRelaySignalsAndPresence(t *testing.T) {
	dsn, a, b := twoRelays(t)
	ha, hb := newHeard(), newHeard()
	ha.devices["dev-1"] = "s1" // a held dev-1's stream before it started listening
	stopA := runRelay(t, a, ha.handler())
	runRelay(t, b, hb.handler())

	// 1. Presence: a's start-up records the streams it holds.
	eventually(t, "b sees dev-1 on a", 5*time.Second, func() bool { return elsewhere(t, b, "dev-1") })
	if elsewhere(t, a, "dev-1") {
		t.Error("a sees its own stream as elsewhere")
	}
	if elsewhere(t, b, "dev-2") {
		t.Error("b sees a device nobody streams")
	}

	// 2. Signals reach the other replica only, once it listens: a
	// heartbeat is written after the LISTEN.
	ctx := t.Context()
	admin := connect(t, ctx, dsn)
	defer admin.Close(context.Background())
	bothListening(t, admin)
	want := cluster.Check{DeviceID: "dev-1", Nonce: []byte{1, 2, 3}, ExpiresAt: time.Now().Add(time.Minute).Truncate(time.Millisecond)}
	if err := b.PublishCheck(ctx, want); err != nil {
		t.Fatal(err)
	}
	select {
	case got := <-ha.checks:
		if got.DeviceID != want.DeviceID || !bytes.Equal(got.Nonce, want.Nonce) || !got.ExpiresAt.Equal(want.ExpiresAt) {
			t.Errorf("a heard %+v, want %+v", got, want)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a did not hear b's check")
	}
	if err := a.PublishAnswered(ctx, cluster.Answered{DeviceID: "dev-1", Nonce: []byte{1, 2, 3}, Seq: 7}); err != nil {
		t.Fatal(err)
	}
	select {
	case got := <-hb.answered:
		if got.Seq != 7 || !bytes.Equal(got.Nonce, []byte{1, 2, 3}) {
			t.Errorf("b heard %+v", got)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("b did not hear a's answer")
	}
	if err := a.PublishEnrolled(ctx, cluster.Enrolled{DeviceID: "dev-1", KeyHash: hub.KeyHash([]byte("new key"))}); err != nil {
		t.Fatal(err)
	}
	select {
	case got := <-hb.enrolled:
		if got.DeviceID != "dev-1" || !bytes.Equal(got.KeyHash, hub.KeyHash([]byte("new key"))) {
			t.Errorf("b heard %+v", got)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("b did not hear a's re-enrollment")
	}
	select {
	case c := <-hb.checks:
		t.Errorf("b heard its own check %+v", c)
	case a := <-ha.answered:
		t.Errorf("a heard its own answer %+v", a)
	case <-time.After(300 * time.Millisecond):
	}

	// 3. A stream that a newer one replaced leaves no gap when it ends.
	if err := a.Join(ctx, "dev-1", "s2"); err != nil {
		t.Fatal(err)
	}
	if err := a.Leave(ctx, "dev-1", "s1"); err != nil {
		t.Fatal(err)
	}
	if !elsewhere(t, b, "dev-1") {
		t.Error("the older session's end removed the newer one's presence")
	}
	if err := a.Leave(ctx, "dev-1", "s2"); err != nil {
		t.Fatal(err)
	}
	if elsewhere(t, b, "dev-1") {
		t.Error("presence outlived the stream")
	}

	// 4. A replica that stops cleanly is no longer routed to at once; its
	// Macs are not taken for having no agent until their agents had time
	// to reconnect elsewhere.
	if err := a.Join(ctx, "dev-1", "s3"); err != nil {
		t.Fatal(err)
	}
	if !elsewhere(t, b, "dev-1") {
		t.Fatal("presence not recorded")
	}
	stopA()
	if ok, err := b.Elsewhere(ctx, "dev-1"); ok || !errors.Is(err, cluster.ErrPresenceStale) {
		t.Errorf("a stopped: Elsewhere = %v, %v; want false, ErrPresenceStale", ok, err)
	}
}

// A replica that dies without cleaning up stops counting once its
// heartbeat is stale; its rows do not lie forever.
func TestRelayStalePresence(t *testing.T) {
	dsn := testpg.NewDatabase(t)
	sa, sb := open(t, dsn), open(t, dsn)
	// a beats slowly: after its first beat it looks dead to b's threshold.
	a := sa.Relay(postgres.RelayOptions{ReplicaID: "a", Heartbeat: time.Hour, StaleAfter: time.Second})
	b := sb.Relay(postgres.RelayOptions{ReplicaID: "b", Heartbeat: beat, StaleAfter: time.Second})
	ha := newHeard()
	ha.devices["dev-1"] = "s1"
	runRelay(t, a, ha.handler())
	eventually(t, "b sees dev-1 on a", 5*time.Second, func() bool { return elsewhere(t, b, "dev-1") })
	// Stale is not "no agent": a may be alive, holding the stream, and cut
	// off from the database only.
	eventually(t, "a's presence goes stale", 5*time.Second, func() bool {
		ok, err := b.Elsewhere(t.Context(), "dev-1")
		if err != nil && !errors.Is(err, cluster.ErrPresenceStale) {
			t.Fatalf("Elsewhere: %v", err)
		}
		return !ok && err != nil
	})
	// A record on a live replica outranks one on a silent replica.
	hb := newHeard()
	hb.devices["dev-1"] = "s2"
	runRelay(t, b, hb.handler())
	c0 := sb.Relay(postgres.RelayOptions{ReplicaID: "c0", Heartbeat: beat})
	eventually(t, "c0 sees dev-1 on b", 5*time.Second, func() bool {
		ok, err := c0.Elsewhere(t.Context(), "dev-1")
		if err != nil && !errors.Is(err, cluster.ErrPresenceStale) {
			t.Fatalf("Elsewhere: %v", err)
		}
		return ok && err == nil
	})

	// A record of a replica never heard from (no row of its own yet) is
	// not "no agent" either.
	c := sb.Relay(postgres.RelayOptions{ReplicaID: "c"})
	if err := c.Join(t.Context(), "dev-2", "s"); err != nil {
		t.Fatal(err)
	}
	if ok, err := b.Elsewhere(t.Context(), "dev-2"); ok || !errors.Is(err, cluster.ErrPresenceStale) {
		t.Errorf("dev-2 on a replica never heard from: Elsewhere = %v, %v; want false, ErrPresenceStale", ok, err)
	}
}

// stale reports whether r reads deviceID as recorded only on replicas
// that cannot be asked (cluster.ErrPresenceStale); any other error fails.
func stale(t *testing.T, r *postgres.Relay, deviceID string) bool {
	t.Helper()
	ok, err := r.Elsewhere(t.Context(), deviceID)
	if err != nil && !errors.Is(err, cluster.ErrPresenceStale) {
		t.Fatalf("Elsewhere: %v", err)
	}
	return !ok && err != nil
}

// A replica whose listening connection never comes up (new connections
// refused while its pool stands) still holds its agents' streams: they
// count as "cannot tell", not as no agent, for as long as the replica
// runs, however long that is; once it stops cleanly they count so for a
// few minutes, then are forgotten.
func TestRelayListeningNeverUp(t *testing.T) {
	dsn := testpg.NewDatabase(t)
	sa, sb := open(t, dsn), open(t, dsn)
	a := sa.Relay(postgres.RelayOptions{ReplicaID: "a", Heartbeat: beat})
	postgres.RefuseListening(t, a)
	b := sb.Relay(postgres.RelayOptions{ReplicaID: "b", Heartbeat: beat})
	ha := newHeard()
	ha.devices["dev-1"] = "s1"
	stopA := runRelay(t, a, ha.handler())
	runRelay(t, b, newHeard().handler())
	ctx := t.Context()
	if err := a.Join(ctx, "dev-1", "s1"); err != nil { // the hub's, over the pool
		t.Fatal(err)
	}
	eventually(t, "b reads dev-1 as cannot tell", 5*time.Second, func() bool { return stale(t, b, "dev-1") })

	// a has no heartbeat at all, older than any bound: b, which forgets
	// long-silent replicas at each of its beats, keeps a's record while a
	// runs.
	time.Sleep(5 * beat)
	if !stale(t, b, "dev-1") {
		t.Fatal("a running replica's agent forgotten")
	}
	admin := connect(t, ctx, dsn)
	defer admin.Close(context.Background())

	stopA()
	if !stale(t, b, "dev-1") {
		t.Fatal("a stopped: its agent taken for gone before it could reconnect")
	}
	var left time.Duration
	if err := admin.QueryRow(ctx, `SELECT extract(epoch FROM forget_at - now())::float8 * interval '1 second' FROM cluster_replicas WHERE replica_id = 'a'`).Scan(&left); err != nil {
		t.Fatal(err)
	}
	if left <= time.Minute || left > 3*time.Minute {
		t.Errorf("a stopped: forgotten in %v, want about 2 minutes", left)
	}
	if _, err := admin.Exec(ctx, `UPDATE cluster_replicas SET forget_at = now() WHERE replica_id = 'a'`); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a forgotten", 5*time.Second, func() bool {
		ok, err := b.Elsewhere(ctx, "dev-1")
		return !ok && err == nil
	})
}

// aHolding runs replica a, holding dev-1's stream (edit, if set, changes
// its handler), beside replica b, which is not running, on a new database,
// and waits until b sees dev-1 on a.
func aHolding(t *testing.T, edit func(*cluster.Handler)) (dsn string, b *postgres.Relay, ha *heard) {
	t.Helper()
	dsn = testpg.NewDatabase(t)
	sa, sb := open(t, dsn), open(t, dsn)
	a := sa.Relay(postgres.RelayOptions{ReplicaID: "a", Heartbeat: beat})
	b = sb.Relay(postgres.RelayOptions{ReplicaID: "b", Heartbeat: beat})
	ha = newHeard()
	ha.devices["dev-1"] = "s1"
	hd := ha.handler()
	if edit != nil {
		edit(&hd)
	}
	runRelay(t, a, hd)
	eventually(t, "b sees dev-1 on a", 5*time.Second, func() bool { return elsewhere(t, b, "dev-1") })
	return dsn, b, ha
}

// The listening connection is cut (as when PostgreSQL restarts): the relay
// reconnects by itself, records its streams again and hears signals again.
func TestRelayReconnects(t *testing.T) {
	dsn, b, ha := aHolding(t, nil)

	ctx := t.Context()
	admin := connect(t, ctx, dsn)
	defer admin.Close(context.Background())
	// Presence lost with the connection (as if written to a database that
	// was then restored) comes back from what the replica holds.
	if _, err := admin.Exec(ctx, `DELETE FROM cluster_presence`); err != nil {
		t.Fatal(err)
	}
	var cut int
	if err := admin.QueryRow(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE datname = current_database() AND application_name = $1`, postgres.RelayApplicationName).Scan(&cut); err != nil || cut != 1 {
		t.Fatalf("terminating the relay's connection: %d, %v", cut, err)
	}
	eventually(t, "presence re-recorded", 10*time.Second, func() bool { return elsewhere(t, b, "dev-1") })
	// Signals published before the LISTEN is back are lost by design;
	// publish until one is heard.
	got := false
	for deadline := time.Now().Add(10 * time.Second); !got && time.Now().Before(deadline); {
		if err := b.PublishCheck(ctx, cluster.Check{DeviceID: "dev-1", Nonce: []byte{9}}); err != nil {
			t.Fatal(err)
		}
		select {
		case <-ha.checks:
			got = true
		case <-time.After(200 * time.Millisecond):
		}
	}
	if !got {
		t.Fatal("a hears nothing after its connection was cut")
	}
}

// A relay hears signals only while its listening connection LISTENs:
// Hearing is open before the first, closed once it listens, open again
// while it reconnects.
func TestRelayHearingFollowsTheConnection(t *testing.T) {
	dsn := testpg.NewDatabase(t)
	r := open(t, dsn).Relay(postgres.RelayOptions{ReplicaID: "a", Heartbeat: beat})
	gate := postgres.GateListening(r)
	runRelay(t, r, newHeard().handler())
	hears := func() bool {
		select {
		case <-r.Hearing():
			return true
		default:
			return false
		}
	}
	time.Sleep(300 * time.Millisecond)
	if hears() {
		t.Fatal("hearing before the relay listens")
	}
	gate.Open()
	heardWithin(t, r.Hearing(), "hearing once the relay listens")

	gate.Shut()
	ctx := t.Context()
	admin := connect(t, ctx, dsn)
	defer admin.Close(context.Background())
	var cut int
	if err := admin.QueryRow(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE datname = current_database() AND application_name = $1`, postgres.RelayApplicationName).Scan(&cut); err != nil || cut != 1 {
		t.Fatalf("terminating the relay's connection: %d, %v", cut, err)
	}
	eventually(t, "not hearing once the connection is cut", 5*time.Second, func() bool { return !hears() })
	time.Sleep(300 * time.Millisecond)
	if hears() {
		t.Fatal("hearing while the relay reconnects")
	}
	gate.Open()
	heardWithin(t, r.Hearing(), "hearing once the relay listens again")
}

// twoHubs opens two replicas' stores on one new database, enrolls a
// device through the first, and runs a hub on each, relayed: the first
// replicas' stores, their hubs and the device.
func twoHubs(t *testing.T) (sa, sb *postgres.Store, hubA, hubB *hub.Hub, d storage.Device) {
	t.Helper()
	p := twoHubsOn(t, false)
	return p.sa, p.sb, p.hubA, p.hubB, p.d
}

// hubPair is what twoHubsOn sets up, with the database's DSN and a
// function that stops replica a's hub (and relay) and waits for it.
type hubPair struct {
	dsn        string
	sa, sb     *postgres.Store
	hubA, hubB *hub.Hub
	d          storage.Device
	stopA      func()
}

// twoHubsOn is twoHubs, with a pool of two connections for the first
// replica's store (for HoldPool) when small is set.
func twoHubsOn(t *testing.T, small bool) hubPair {
	t.Helper()
	p, _ := hubPairOn(t, small, false)
	return p
}

// hubPairOn is twoHubsOn; with gateB, replica b's relay does not listen
// until release is called (and the pair is returned once a listens).
func hubPairOn(t *testing.T, small, gateB bool) (p hubPair, release func()) {
	t.Helper()
	p = hubPair{dsn: testpg.NewDatabase(t)}
	aDSN := p.dsn
	if small {
		aDSN = smallPool(t, p.dsn)
	}
	p.sa, p.sb = open(t, aDSN), open(t, p.dsn)
	p.d = enrollOne(t, p.sa)
	relayB := p.sb.Relay(postgres.RelayOptions{ReplicaID: "b", Heartbeat: beat})
	release = func() {}
	if gateB {
		release = postgres.GateListening(relayB).Open
		t.Cleanup(release)
	}
	p.hubA = &hub.Hub{Nonces: p.sa, Reports: p.sa, Relay: p.sa.Relay(postgres.RelayOptions{ReplicaID: "a", Heartbeat: beat})}
	p.hubB = &hub.Hub{Nonces: p.sb, Reports: p.sb, Relay: relayB}
	for _, h := range []*hub.Hub{p.hubA, p.hubB} {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- h.Run(ctx) }()
		var once sync.Once
		stop := func() { once.Do(func() { cancel(); <-done }) }
		t.Cleanup(stop)
		if h == p.hubA {
			p.stopA = stop
		}
	}
	// Both listening before a test asks anything: a check's answer
	// reaches the replica that asked only once it listens.
	admin := connect(t, t.Context(), p.dsn)
	t.Cleanup(func() { admin.Close(context.Background()) })
	if gateB {
		listening(t, admin, 1)
	} else {
		bothListening(t, admin)
	}
	return p, release
}

// A sign-in at replica B asks for a check of a device whose stream is on
// replica A: A's hub sends CheckNow on the stream, the report is stored
// (consuming B's nonce), and B's CheckNow returns that report read back
// from the database.
func TestHubCheckThroughOtherReplica(t *testing.T) {
	sa, _, hubA, hubB, d := twoHubs(t)
	sess, unregister := hubA.Register(d.ID, d.PublicKey)
	defer unregister()
	eventually(t, "b sees the stream on a", 5*time.Second, func() bool { return hubB.Connected(d.ID) })
	if hubB.Local(d.ID) {
		t.Fatal("b holds a session it never registered")
	}

	// The agent on a's stream answers CheckNow with a report carrying the
	// nonce; a stores it as the stream's reader does, then tells the hub.
	agentDone := make(chan error, 1)
	go func() {
		m := <-sess.Out()
		cn := m.GetCheckNow()
		if cn == nil {
			agentDone <- nil
			return
		}
		pr := &agentv1.PostureReport{DeviceId: d.ID, Seq: 5, Nonce: cn.GetNonce()}
		payload, err := proto.Marshal(pr)
		if err != nil {
			agentDone <- err
			return
		}
		r := storage.Report{DeviceID: d.ID, Seq: 5, ObservedAt: t0, ReceivedAt: time.Now(), Payload: payload, Signature: []byte("sig"), Key: d.PublicKey}
		if err := sa.SaveReport(context.Background(), r, cn.GetNonce(), 10); err != nil {
			agentDone <- err
			return
		}
		hubA.Delivered(&ingest.Accepted{Report: pr, Stored: r})
		agentDone <- nil
	}()
	acc, err := hubB.CheckNow(t.Context(), d.ID, 15*time.Second)
	if err != nil {
		t.Fatalf("CheckNow at b: %v", err)
	}
	if err := <-agentDone; err != nil {
		t.Fatal(err)
	}
	if acc.Report.GetSeq() != 5 || acc.Stored.Seq != 5 || len(acc.Report.GetNonce()) == 0 {
		t.Errorf("b got report %d (stored %d), nonce %x", acc.Report.GetSeq(), acc.Stored.Seq, acc.Report.GetNonce())
	}

	// Once a's stream ends, b no longer routes checks there.
	unregister()
	if hubB.Connected(d.ID) {
		t.Error("b still sees the stream after it ended")
	}
	if _, err := hubB.CheckNow(t.Context(), d.ID, time.Second); !errors.Is(err, hub.ErrNotConnected) {
		t.Errorf("CheckNow for a device streaming nowhere: %v, want ErrNotConnected", err)
	}
}

// A check asked at a replica that does not hear signals yet (it is
// starting, or its listening connection is being opened again) waits until
// it does before it is sent: sent at once, it would be answered unheard and
// wait out its time.
func TestHubCheckAskedBeforeHearing(t *testing.T) {
	p, release := hubPairOn(t, false, true)
	sess, unregister := p.hubA.Register(p.d.ID, p.d.PublicKey)
	defer unregister()
	eventually(t, "b sees the stream on a", 5*time.Second, func() bool { return p.hubB.Connected(p.d.ID) })

	asked := make(chan struct{})
	agentDone := make(chan error, 1)
	go func() {
		m := <-sess.Out()
		close(asked)
		cn := m.GetCheckNow()
		if cn == nil {
			agentDone <- errors.New("a's stream got no CheckNow")
			return
		}
		pr := &agentv1.PostureReport{DeviceId: p.d.ID, Seq: 5, Nonce: cn.GetNonce()}
		payload, err := proto.Marshal(pr)
		if err != nil {
			agentDone <- err
			return
		}
		r := storage.Report{DeviceID: p.d.ID, Seq: 5, ObservedAt: t0, ReceivedAt: time.Now(), Payload: payload, Signature: []byte("sig"), Key: p.d.PublicKey}
		if err := p.sa.SaveReport(context.Background(), r, cn.GetNonce(), 10); err != nil {
			agentDone <- err
			return
		}
		p.hubA.Delivered(&ingest.Accepted{Report: pr, Stored: r})
		agentDone <- nil
	}()
	type result struct {
		acc *ingest.Accepted
		err error
	}
	got := make(chan result, 1)
	go func() {
		acc, err := p.hubB.CheckNow(t.Context(), p.d.ID, 10*time.Second)
		got <- result{acc, err}
	}()
	select {
	case <-asked:
		t.Fatal("the check was sent while b could not hear its answer")
	case <-time.After(500 * time.Millisecond):
	}
	release()
	res := heardWithin(t, got, "b's check once it listens")
	if res.err != nil {
		t.Fatalf("CheckNow at b: %v", res.err)
	}
	if err := heardWithin(t, agentDone, "a's agent"); err != nil {
		t.Fatal(err)
	}
	if res.acc.Report.GetSeq() != 5 || res.acc.Stored.Seq != 5 {
		t.Errorf("b got report %d (stored %d)", res.acc.Report.GetSeq(), res.acc.Stored.Seq)
	}
}

// A device enrolls again at replica B while its old key's stream is on
// replica A: A ends that stream at once, and a stream of the new key on A
// is left alone.
func TestHubReenrollmentEndsStreamOnOtherReplica(t *testing.T) {
	_, sb, hubA, hubB, d := twoHubs(t)
	old, unregister := hubA.Register(d.ID, d.PublicKey)
	defer unregister()
	eventually(t, "b sees the stream on a", 5*time.Second, func() bool { return hubB.Connected(d.ID) })

	start := time.Now()
	hubB.Reenrolled(d.ID, []byte("new key"))
	select {
	case <-old.Done():
		if !errors.Is(old.Err(), hub.ErrKeyReplaced) {
			t.Fatalf("a's stream ended with %v, want ErrKeyReplaced", old.Err())
		}
		t.Logf("a ended the old key's stream %s after b's re-enrollment", time.Since(start).Round(time.Millisecond))
	case <-time.After(5 * time.Second):
		t.Fatal("a's stream of the old key did not end")
	}

	current, unregisterCurrent := hubA.Register(d.ID, []byte("new key"))
	defer unregisterCurrent()
	hubB.Reenrolled(d.ID, []byte("new key"))
	// The signal is heard in order with others: a check published after
	// it arriving shows it was handled.
	waitCheck := make(chan struct{})
	go func() {
		<-current.Out()
		close(waitCheck)
	}()
	nonce := []byte("after the signal")
	if err := sb.CreateNonce(t.Context(), d.ID, nonce, time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if err := hubB.Relay.PublishCheck(t.Context(), cluster.Check{DeviceID: d.ID, Nonce: nonce, ExpiresAt: time.Now().Add(time.Minute)}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-waitCheck:
	case <-time.After(5 * time.Second):
		t.Fatal("a did not relay the check")
	}
	select {
	case <-current.Done():
		t.Fatalf("a ended the new key's stream: %v", current.Err())
	default:
	}
}

// A Join that failed (here: a row removed behind the relay's back, as a
// failed write leaves it) is recorded again at the next heartbeat once
// the hub says one was lost, without waiting for a reconnect.
func TestRelayRecordsLostPresenceAgain(t *testing.T) {
	var lost atomic.Bool
	dsn, b, _ := aHolding(t, func(h *cluster.Handler) {
		h.Lost = func() bool { return lost.Swap(false) }
		h.Streams = func() int { return 0 } // the count check below is another test's
	})

	ctx := t.Context()
	admin := connect(t, ctx, dsn)
	defer admin.Close(context.Background())
	if _, err := admin.Exec(ctx, `DELETE FROM cluster_presence`); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * beat)
	if elsewhere(t, b, "dev-1") {
		t.Fatal("presence back before any was lost")
	}
	lost.Store(true)
	eventually(t, "presence recorded again", 5*time.Second, func() bool { return elsewhere(t, b, "dev-1") })
}

// Streams that start and end while the relay records them all again keep
// their own records: a Join made after the snapshot of the streams stays,
// and a stream that ended after it does not come back.
func TestRelayResyncRaces(t *testing.T) {
	_, a, b := twoRelays(t)
	var calls atomic.Int32
	hd := cluster.Handler{Devices: func() map[string]string {
		if calls.Add(1) == 1 {
			// The snapshot: dev-ended's stream, which ends at once (its
			// Leave runs before the snapshot is written), and dev-new's,
			// which starts after it was taken.
			if err := a.Join(context.Background(), "dev-new", "s-new"); err != nil {
				t.Error(err)
			}
			if err := a.Leave(context.Background(), "dev-ended", "s-ended"); err != nil {
				t.Error(err)
			}
			return map[string]string{"dev-ended": "s-ended"}
		}
		return map[string]string{"dev-new": "s-new"}
	}, Streams: func() int { return 1 }} // Devices for the resync's snapshot only
	runRelay(t, a, hd)
	// Written, then read again, then the ended stream's record removed.
	eventually(t, "dev-new recorded and dev-ended not", 5*time.Second, func() bool {
		return calls.Load() >= 2 && elsewhere(t, b, "dev-new") && !elsewhere(t, b, "dev-ended")
	})
}

// A Join written after a resync began keeps its record even when the
// database's clock was set back in between, so that the row's time reads
// as older than the resync: the resync tells the rows it may remove by
// the order they were written in, not by the clock.
func TestRelayResyncKeepsAJoinAfterTheClockStepsBack(t *testing.T) {
	dsn, a, b := twoRelays(t)
	ctx := t.Context()
	admin := connect(t, ctx, dsn)
	defer admin.Close(context.Background())
	var calls atomic.Int32
	hd := cluster.Handler{Devices: func() map[string]string {
		if calls.Add(1) == 1 {
			// dev-new's stream starts after the snapshot; its Join lands
			// with the clock an hour behind.
			if err := a.Join(context.Background(), "dev-new", "s-new"); err != nil {
				t.Error(err)
			}
			if _, err := admin.Exec(context.Background(), `UPDATE cluster_presence SET since = since - interval '1 hour'
				WHERE device_id = 'dev-new'`); err != nil {
				t.Error(err)
			}
			return map[string]string{}
		}
		return map[string]string{"dev-new": "s-new"}
	}, Streams: func() int { return 1 }} // Devices for the resync's snapshot only
	runRelay(t, a, hd)
	eventually(t, "the first resync done", 5*time.Second, func() bool { return calls.Load() >= 2 })
	seenThroughout(t, b, "dev-new", 5*beat)
}

// A replica forgotten while it runs (its row and presence rows deleted:
// the database's clock jumped an hour, or someone cleaned the tables)
// records its streams again at its next heartbeat.
func TestRelayForgottenWhileRunning(t *testing.T) {
	dsn, b, _ := aHolding(t, nil)

	forgetA(t, dsn)
	eventually(t, "dev-1 recorded again", 5*time.Second, func() bool { return elsewhere(t, b, "dev-1") })
}

// forgetA deletes replica a's row and its presence rows, as another
// replica's beat forgets a replica.
func forgetA(t *testing.T, dsn string) {
	t.Helper()
	ctx := t.Context()
	admin := connect(t, ctx, dsn)
	defer admin.Close(context.Background())
	if _, err := admin.Exec(ctx, `BEGIN; DELETE FROM cluster_presence WHERE replica_id = 'a'; DELETE FROM cluster_replicas WHERE replica_id = 'a'; COMMIT`); err != nil {
		t.Fatal(err)
	}
}

// A beat forgets a replica and its rows together: none of its presence
// rows outlives its own row, where it would count for an hour as a
// replica never heard from.
func TestRelayForgetsRowsWithTheirReplica(t *testing.T) {
	dsn := testpg.NewDatabase(t)
	sb := open(t, dsn)
	b := sb.Relay(postgres.RelayOptions{ReplicaID: "b", Heartbeat: beat})
	ctx := t.Context()
	admin := connect(t, ctx, dsn)
	defer admin.Close(context.Background())
	// Stopped replicas due to be forgotten one after another, over the
	// beats to come, each with many rows.
	if _, err := admin.Exec(ctx, `INSERT INTO cluster_replicas (replica_id, started_at, heartbeat_at, forget_at)
		SELECT 'gone-' || i, now(), '-infinity', clock_timestamp() + i * interval '10 milliseconds' FROM generate_series(1, 100) i`); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Exec(ctx, `INSERT INTO cluster_presence (device_id, replica_id, session, since)
		SELECT 'dev-' || d, 'gone-' || i, 's', now() FROM generate_series(1, 100) i, generate_series(1, 200) d`); err != nil {
		t.Fatal(err)
	}
	runRelay(t, b, newHeard().handler())
	eventually(t, "every stopped replica forgotten", 10*time.Second, func() bool {
		var n int
		if err := admin.QueryRow(ctx, `SELECT count(*) FROM cluster_replicas WHERE replica_id LIKE 'gone-%'`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n == 0
	})
	var orphans int
	if err := admin.QueryRow(ctx, `SELECT count(*) FROM cluster_presence WHERE replica_id LIKE 'gone-%'`).Scan(&orphans); err != nil {
		t.Fatal(err)
	}
	if orphans != 0 {
		t.Errorf("%d presence rows outlived their replica", orphans)
	}
}

// Records deleted behind a replica's back (another replica's beat racing
// its refresh, or a hand-run TRUNCATE) while its own row stays are found
// by counting them against the streams it holds, and written again.
func TestRelayRecordsMissingRowsAgain(t *testing.T) {
	dsn, b, _ := aHolding(t, nil)
	ctx := t.Context()
	admin := connect(t, ctx, dsn)
	defer admin.Close(context.Background())
	if _, err := admin.Exec(ctx, `TRUNCATE cluster_presence`); err != nil {
		t.Fatal(err)
	}
	eventually(t, "dev-1 recorded again", 5*time.Second, func() bool { return elsewhere(t, b, "dev-1") })
}

// A replica whose listening connection is down, forgotten meanwhile,
// records its streams again over its pool.
func TestRelayForgottenWhileNotListening(t *testing.T) {
	dsn := testpg.NewDatabase(t)
	sa, sb := open(t, dsn), open(t, dsn)
	a := sa.Relay(postgres.RelayOptions{ReplicaID: "a", Heartbeat: beat})
	postgres.RefuseListening(t, a)
	b := sb.Relay(postgres.RelayOptions{ReplicaID: "b", Heartbeat: beat})
	ha := newHeard()
	ha.devices["dev-1"] = "s1"
	runRelay(t, a, ha.handler())
	// Never listening, a has recorded nothing yet: its one stream is
	// recorded by the count check.
	eventually(t, "b reads dev-1 as cannot tell", 5*time.Second, func() bool { return stale(t, b, "dev-1") })
	forgetA(t, dsn)
	eventually(t, "dev-1 recorded again", 5*time.Second, func() bool { return stale(t, b, "dev-1") })
}

// A lock held on a forgotten replica's rows (an operator's open
// transaction) holds back the forgetting, not the heartbeat: the replica
// stays one to route live checks to.
func TestRelayHeartbeatNotHeldByLocks(t *testing.T) {
	dsn := testpg.NewDatabase(t)
	sb := open(t, dsn) // migrated
	ctx := t.Context()
	admin := connect(t, ctx, dsn)
	defer admin.Close(context.Background())
	if _, err := admin.Exec(ctx, `INSERT INTO cluster_replicas (replica_id, started_at, heartbeat_at, forget_at) VALUES ('gone', now(), '-infinity', now());
		INSERT INTO cluster_presence (device_id, replica_id, session, since) VALUES ('dev-9', 'gone', 's', now())`); err != nil {
		t.Fatal(err)
	}
	locker := connect(t, ctx, dsn)
	defer locker.Close(context.Background())
	if _, err := locker.Exec(ctx, `BEGIN; SELECT * FROM cluster_presence WHERE replica_id = 'gone' FOR UPDATE`); err != nil {
		t.Fatal(err)
	}
	b := sb.Relay(postgres.RelayOptions{ReplicaID: "b", Heartbeat: beat})
	runRelay(t, b, newHeard().handler())
	age := func() time.Duration {
		var d time.Duration
		if err := admin.QueryRow(ctx, `SELECT extract(epoch FROM now() - heartbeat_at)::float8 * interval '1 second' FROM cluster_replicas WHERE replica_id = 'b'`).Scan(&d); err != nil {
			return time.Hour
		}
		return d
	}
	eventually(t, "b's first heartbeat", 5*time.Second, func() bool { return age() < time.Second })
	for range 10 {
		time.Sleep(beat)
		if a := age(); a > 3*beat+time.Second {
			t.Fatalf("b's heartbeat %v old while a lock held its forgetting", a)
		}
	}
	if _, err := locker.Exec(ctx, `ROLLBACK`); err != nil {
		t.Fatal(err)
	}
	eventually(t, "gone forgotten once the lock is released", 5*time.Second, func() bool {
		var n int
		if err := admin.QueryRow(ctx, `SELECT count(*) FROM cluster_presence WHERE replica_id = 'gone'`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n == 0
	})
}

// A stream whose record failed while the pool can serve no one (every
// connection busy) is recorded again over the listening connection, whose
// heartbeat is what makes the records count.
func TestRelayRecordsAgainWithoutThePool(t *testing.T) {
	dsn, a, b := losingA(t)
	postgres.HoldPool(t, a.store)
	lost := a.lost
	ctx := t.Context()
	admin := connect(t, ctx, dsn)
	defer admin.Close(context.Background())
	if _, err := admin.Exec(ctx, `DELETE FROM cluster_presence WHERE replica_id = 'a'`); err != nil {
		t.Fatal(err)
	}
	lost.Store(true) // the Join that failed
	eventually(t, "dev-1 recorded again", 5*time.Second, func() bool { return elsewhere(t, b, "dev-1") })
}

// replicaA is replica a of a test beside replica b: its store and relay,
// what its handler heard, and lost, which its handler's Lost reports and
// clears.
type replicaA struct {
	store *postgres.Store
	relay *postgres.Relay
	heard *heard
	lost  *atomic.Bool
}

// losingA runs replica a, holding dev-1's stream, on a pool of two
// connections (for HoldPool), beside replica b, which is not running, on a
// new database, and waits until b sees dev-1 on a.
func losingA(t *testing.T) (dsn string, a replicaA, b *postgres.Relay) {
	t.Helper()
	dsn = testpg.NewDatabase(t)
	a.store = open(t, smallPool(t, dsn))
	a.relay = a.store.Relay(postgres.RelayOptions{ReplicaID: "a", Heartbeat: beat})
	b = open(t, dsn).Relay(postgres.RelayOptions{ReplicaID: "b", Heartbeat: beat})
	a.heard, a.lost = newHeard(), new(atomic.Bool)
	a.heard.devices["dev-1"] = "s1"
	hd := a.heard.handler()
	hd.Lost = func() bool { return a.lost.Swap(false) }
	runRelay(t, a.relay, hd)
	eventually(t, "b sees dev-1 on a", 5*time.Second, func() bool { return elsewhere(t, b, "dev-1") })
	return dsn, a, b
}

// twoRelays opens two replicas' stores on one new database and returns
// its DSN and their relays, a and b, neither running.
func twoRelays(t *testing.T) (dsn string, a, b *postgres.Relay) {
	t.Helper()
	dsn = testpg.NewDatabase(t)
	a = open(t, dsn).Relay(postgres.RelayOptions{ReplicaID: "a", Heartbeat: beat})
	b = open(t, dsn).Relay(postgres.RelayOptions{ReplicaID: "b", Heartbeat: beat})
	return dsn, a, b
}

// smallPool is dsn with a pool of two connections, for HoldPool to take.
func smallPool(t *testing.T, dsn string) string {
	t.Helper()
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("pool_max_conns", "2")
	u.RawQuery = q.Encode()
	return u.String()
}

// seenThroughout fails t if b reads deviceID as on no replica at any
// moment of d.
func seenThroughout(t *testing.T, b *postgres.Relay, deviceID string, d time.Duration) {
	t.Helper()
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		if !elsewhere(t, b, deviceID) {
			t.Fatalf("%s read as connected nowhere while its agent streams to a", deviceID)
		}
	}
}

// An agent that reconnects to the same replica replaces its stream with
// no Leave, so its row names the old session until the new stream's Join
// lands. With that Join lost and the pool held, the resync the listening
// connection does keeps the row, and names the new session in it.
func TestRelayResyncKeepsAReplacedStreamsRecord(t *testing.T) {
	dsn, a, b := losingA(t)
	postgres.HoldPool(t, a.store)
	a.heard.mu.Lock()
	a.heard.devices["dev-1"] = "s2"
	a.heard.mu.Unlock()
	a.lost.Store(true) // s2's Join, which the held pool failed
	seenThroughout(t, b, "dev-1", 10*beat)

	ctx := t.Context()
	admin := connect(t, ctx, dsn)
	defer admin.Close(context.Background())
	eventually(t, "the row names s2", 5*time.Second, func() bool {
		var sess string
		err := admin.QueryRow(ctx, `SELECT session FROM cluster_presence WHERE replica_id = 'a' AND device_id = 'dev-1'`).Scan(&sess)
		return err == nil && sess == "s2"
	})
}

// The same through the hub: the agent's second stream on a, whose Join
// the held pool fails, replaces its first.
func TestHubReconnectWhileThePoolIsHeld(t *testing.T) {
	p := twoHubsOn(t, true)
	sa, hubA, hubB, d := p.sa, p.hubA, p.hubB, p.d
	_, leave1 := hubA.Register(d.ID, d.PublicKey)
	defer leave1()
	eventually(t, "b sees the stream on a", 5*time.Second, func() bool { return hubB.Connected(d.ID) })

	postgres.HoldPool(t, sa)
	_, leave2 := hubA.Register(d.ID, d.PublicKey)
	defer leave2()
	leave1() // replaced: no Leave
	for end := time.Now().Add(10 * beat); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		if !hubB.MaybeConnected(d.ID) {
			t.Fatal("b reads the Mac as connected nowhere while its agent streams to a")
		}
	}
}

// Two Joins of one device that commit out of order (the replaced stream's
// last) leave its row naming the replaced session; a resync owed for
// another reason keeps the row.
func TestRelayResyncKeepsAReorderedJoinsRecord(t *testing.T) {
	_, a, b := losingA(t)
	ctx := t.Context()
	a.heard.mu.Lock()
	a.heard.devices["dev-1"] = "s2"
	a.heard.mu.Unlock()
	if err := a.relay.Join(ctx, "dev-1", "s2"); err != nil {
		t.Fatal(err)
	}
	if err := a.relay.Join(ctx, "dev-1", "s1"); err != nil { // the replaced stream's, late
		t.Fatal(err)
	}
	time.Sleep(2 * beat) // the row older than the next resync's start
	a.lost.Store(true)   // another stream's write failed
	seenThroughout(t, b, "dev-1", 10*beat)
}

// A lock held on one of a replica's presence rows (an operator's open
// transaction) while a resync is owed holds back neither the replica's
// liveness nor its heartbeat, so it is never forgotten for it, nor the
// re-recording of its live streams.
func TestRelayResyncNotHeldByLocks(t *testing.T) {
	var lost atomic.Bool
	dsn, b, _ := aHolding(t, func(h *cluster.Handler) { h.Lost = func() bool { return lost.Swap(false) } })
	ctx := t.Context()
	admin := connect(t, ctx, dsn)
	defer admin.Close(context.Background())
	locker := connect(t, ctx, dsn)
	defer locker.Close(context.Background())
	// A record of a stream a no longer holds, which its resync deletes.
	if _, err := admin.Exec(ctx, `INSERT INTO cluster_presence (device_id, replica_id, session, since) VALUES ('dev-old', 'a', 's-old', now() - interval '1 minute')`); err != nil {
		t.Fatal(err)
	}
	if _, err := locker.Exec(ctx, `BEGIN; SELECT * FROM cluster_presence WHERE replica_id = 'a' AND device_id = 'dev-old' FOR UPDATE`); err != nil {
		t.Fatal(err)
	}
	defer locker.Exec(context.Background(), `ROLLBACK`)
	// A live stream's record lost meanwhile comes back all the same.
	if _, err := admin.Exec(ctx, `DELETE FROM cluster_presence WHERE replica_id = 'a' AND device_id = 'dev-1'`); err != nil {
		t.Fatal(err)
	}
	lost.Store(true)
	eventually(t, "dev-1 recorded again while the lock is held", 5*time.Second, func() bool { return elsewhere(t, b, "dev-1") })
	state := func() (forget time.Time, heartbeatAge time.Duration) {
		if err := admin.QueryRow(ctx, `SELECT forget_at, extract(epoch FROM now() - heartbeat_at)::float8 * interval '1 second'
			FROM cluster_replicas WHERE replica_id = 'a'`).Scan(&forget, &heartbeatAge); err != nil {
			t.Fatal(err)
		}
		return forget, heartbeatAge
	}
	last, _ := state()
	for range 8 {
		time.Sleep(3 * beat) // each window holds at least two of a's beats
		forget, age := state()
		if !forget.After(last) {
			t.Fatalf("a's forget_at stood still at %v while a lock held its resync", last)
		}
		if age > 5*time.Second {
			t.Fatalf("a's heartbeat %v old while a lock held its resync", age)
		}
		last = forget
	}
}

// A stopping replica's streams are cut with their records kept, for the
// agents to reconnect elsewhere; recording its streams again before its
// relay stops (its listening connection cut once) keeps them too.
func TestHubStoppingKeepsCutStreamsThroughAResync(t *testing.T) {
	p := twoHubsOn(t, false)
	dsn, hubA, hubB, d := p.dsn, p.hubA, p.hubB, p.d
	_, cut := hubA.Register(d.ID, d.PublicKey)
	_, held := hubA.Register("dev-held", []byte("key"))
	defer held()
	eventually(t, "b sees the stream on a", 5*time.Second, func() bool { return hubB.Connected(d.ID) })
	time.Sleep(3 * beat) // nothing owed

	hubA.Retire()
	cut() // no Leave: the record stays
	ctx := t.Context()
	admin := connect(t, ctx, dsn)
	defer admin.Close(context.Background())
	if _, err := admin.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
		WHERE datname = current_database() AND application_name = $1`, postgres.RelayApplicationName); err != nil {
		t.Fatal(err)
	}
	for end := time.Now().Add(15 * beat); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		if !hubB.MaybeConnected(d.ID) {
			t.Fatal("b reads the Mac as connected nowhere: the stopping replica's resync removed its cut stream's record")
		}
	}
}

// A record of a stream this replica does not hold (a Join the database
// committed after its caller gave up on it, the stream ended meanwhile) is
// removed within a few heartbeats: more records than streams at two
// checks running, and its Mac would count as connected for good.
func TestRelayRemovesRecordsOfEndedStreams(t *testing.T) {
	dsn, b, _ := aHolding(t, nil)
	ctx := t.Context()
	admin := connect(t, ctx, dsn)
	defer admin.Close(context.Background())
	if _, err := admin.Exec(ctx, `INSERT INTO cluster_presence (device_id, replica_id, session, since)
		VALUES ('dev-ended', 'a', 'late', now())`); err != nil {
		t.Fatal(err)
	}
	if !elsewhere(t, b, "dev-ended") {
		t.Fatal("control: b does not see the ended stream's record")
	}
	eventually(t, "the ended stream's record removed", 20*beat, func() bool { return !elsewhere(t, b, "dev-ended") })
	if !elsewhere(t, b, "dev-1") {
		t.Fatal("dev-1's record removed with it")
	}
}

// An agent that reconnects to this replica while a resync runs, after
// its snapshot (the new stream's Join not yet written), keeps its record:
// the resync does not take the replaced stream for an ended one.
func TestRelayResyncKeepsAStreamReplacedMeanwhile(t *testing.T) {
	dsn, a, b := twoRelays(t)
	var cur atomic.Value
	cur.Store("s1")
	var armed, lost atomic.Bool
	hd := cluster.Handler{
		Devices: func() map[string]string {
			m := map[string]string{"dev-1": cur.Load().(string)}
			if armed.CompareAndSwap(true, false) {
				cur.Store("s2") // reconnected just after this snapshot
			}
			return m
		},
		Streams: func() int { return 1 },
		Lost:    func() bool { return lost.Swap(false) },
	}
	runRelay(t, a, hd)
	eventually(t, "b sees dev-1 on a", 5*time.Second, func() bool { return elsewhere(t, b, "dev-1") })
	time.Sleep(3 * beat)
	armed.Store(true)
	lost.Store(true)
	eventually(t, "a resync", 5*time.Second, func() bool { return !armed.Load() })
	seenThroughout(t, b, "dev-1", 5*beat)

	ctx := t.Context()
	admin := connect(t, ctx, dsn)
	defer admin.Close(context.Background())
	var sess string
	if err := admin.QueryRow(ctx, `SELECT session FROM cluster_presence WHERE replica_id = 'a' AND device_id = 'dev-1'`).Scan(&sess); err != nil || sess != "s2" {
		t.Fatalf("the record names %q (%v), want s2", sess, err)
	}
}

// A stopping replica records its streams once more as its relay stops:
// a record deleted behind its back just before (found by the count only
// at a second heartbeat, which does not come), or a Join that failed
// (retried only while its stream is held), is written for the stream it
// cut, which other replicas then read as "cannot tell" until its agent
// reconnects elsewhere; over the pool when PostgreSQL takes no new
// connection.
func TestRelayRecordsCutStreamsAsItStops(t *testing.T) {
	for _, why := range []string{"rows deleted", "join failed", "no new connection"} {
		t.Run(why, func(t *testing.T) {
			p := twoHubsOn(t, why == "join failed")
			_, held := p.hubA.Register("dev-held", []byte("key"))
			eventually(t, "b sees a's stream", 5*time.Second, func() bool { return p.hubB.Connected("dev-held") })
			time.Sleep(3 * beat) // nothing owed
			var cut func()
			if why == "join failed" {
				postgres.HoldPool(t, p.sa)
				_, cut = p.hubA.Register(p.d.ID, p.d.PublicKey) // its Join times out
			} else {
				_, cut = p.hubA.Register(p.d.ID, p.d.PublicKey)
				eventually(t, "b sees the stream on a", 5*time.Second, func() bool { return p.hubB.Connected(p.d.ID) })
				if why == "no new connection" {
					postgres.RefuseListening(t, p.hubA.Relay.(*postgres.Relay))
				}
				admin := connect(t, t.Context(), p.dsn)
				defer admin.Close(context.Background())
				if _, err := admin.Exec(t.Context(), `DELETE FROM cluster_presence WHERE replica_id = 'a'`); err != nil {
					t.Fatal(err)
				}
			}
			p.hubA.Retire()
			cut()
			held()
			p.stopA()
			for _, id := range []string{"dev-held", p.d.ID} {
				if !p.hubB.MaybeConnected(id) {
					t.Errorf("b reads %s as connected nowhere once a stopped", id)
				}
			}
		})
	}
}

// Any role that may connect to the database may LISTEN and NOTIFY on the
// relay's channel, with no grant on any table. Such a role hears only
// sealed signals (no device id), and nothing it sends is taken: the old
// plain signal, one of its own making, or a replica's genuine signal sent
// again. The replicas' own signals still go through.
func TestRelayRefusesForgedSignals(t *testing.T) {
	dsn, a, b := twoRelays(t)
	ha, hb := newHeard(), newHeard()
	runRelay(t, a, ha.handler())
	runRelay(t, b, hb.handler())
	ctx := t.Context()
	admin := connect(t, ctx, dsn)
	defer admin.Close(context.Background())
	bothListening(t, admin)

	// A role with no grant at all: PUBLIC's CONNECT is all it has.
	role := fmt.Sprintf("intruder_%d", time.Now().UnixNano())
	if _, err := admin.Exec(ctx, `CREATE ROLE `+role+` LOGIN PASSWORD 'intruder'`); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = admin.Exec(context.Background(), `DROP ROLE IF EXISTS `+role) })
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.UserPassword(role, "intruder")
	intruder := connect(t, ctx, u.String())
	defer intruder.Close(context.Background())
	if _, err := intruder.Exec(ctx, `SELECT key FROM server_keys`); err == nil {
		t.Fatal("a role with no grant read the server keys")
	}
	if _, err := intruder.Exec(ctx, `LISTEN clearance_cluster`); err != nil {
		t.Fatal(err)
	}

	// A genuine signal: b hears it; the intruder hears it sealed.
	if err := a.PublishEnrolled(ctx, cluster.Enrolled{DeviceID: "dev-1", KeyHash: hub.KeyHash([]byte("new key"))}); err != nil {
		t.Fatal(err)
	}
	if got := heardWithin(t, hb.enrolled, "b hears a's re-enrollment"); got.DeviceID != "dev-1" {
		t.Errorf("b heard %+v", got)
	}
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	n, err := intruder.WaitForNotification(wctx)
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(n.Payload, "dev-1") || strings.Contains(n.Payload, "enrolled") {
		t.Errorf("the intruder read a signal: %s", n.Payload)
	}

	// What the intruder sends: none of it reaches either replica.
	forged := []string{
		n.Payload, // the genuine one, again
		`{"from":"x","kind":"enrolled","device_id":"dev-1","key_hash":"AAAA"}`,
		`{"from":"x","kind":"check","device_id":"dev-1","nonce":"AQID","expires_at":"2099-01-01T00:00:00Z"}`,
		`{"from":"x","kind":"answered","device_id":"dev-1","nonce":"AQID","seq":7}`,
		"s1:" + strings.Repeat("A", 64),
	}
	for _, p := range forged {
		if _, err := intruder.Exec(ctx, `SELECT pg_notify('clearance_cluster', $1)`, p); err != nil {
			t.Fatal(err)
		}
	}
	// Then a genuine one, which arrives after them: by then each forgery
	// was heard and refused.
	if err := b.PublishAnswered(ctx, cluster.Answered{DeviceID: "dev-2", Nonce: []byte{9}, Seq: 3}); err != nil {
		t.Fatal(err)
	}
	if got := heardWithin(t, ha.answered, "a hears b's answer"); got.DeviceID != "dev-2" || got.Seq != 3 {
		t.Errorf("a heard %+v, want b's genuine answer", got)
	}
	select {
	case c := <-ha.checks:
		t.Errorf("a took a forged check %+v", c)
	case c := <-hb.checks:
		t.Errorf("b took a forged check %+v", c)
	case e := <-ha.enrolled:
		t.Errorf("a took a forged re-enrollment %+v", e)
	case e := <-hb.enrolled:
		t.Errorf("b took a forged or replayed re-enrollment %+v", e)
	case x := <-ha.answered:
		t.Errorf("a took a forged answer %+v", x)
	case x := <-hb.answered:
		t.Errorf("b took a forged answer %+v", x)
	case <-time.After(300 * time.Millisecond):
	}
}

// PublicMayConnect reads PUBLIC's CONNECT on the database: granted on a new
// one, gone once revoked.
func TestPublicMayConnect(t *testing.T) {
	dsn := testpg.NewDatabase(t)
	s := open(t, dsn)
	ctx := t.Context()
	if may, err := s.PublicMayConnect(ctx); err != nil || !may {
		t.Fatalf("a new database: PublicMayConnect = %v, %v; want true", may, err)
	}
	admin := connect(t, ctx, dsn)
	defer admin.Close(context.Background())
	if _, err := admin.Exec(ctx, `REVOKE CONNECT ON DATABASE `+pgx.Identifier{admin.Config().Database}.Sanitize()+` FROM PUBLIC`); err != nil {
		t.Fatal(err)
	}
	if may, err := s.PublicMayConnect(ctx); err != nil || may {
		t.Fatalf("after REVOKE: PublicMayConnect = %v, %v; want false", may, err)
	}
}
