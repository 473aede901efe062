package loadgen

import (
	"context"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestPercentile(t *testing.T) {
	t.Parallel()
	ms := func(ns ...int) []time.Duration {
		out := make([]time.Duration, len(ns))
		for i, n := range ns {
			out[i] = time.Duration(n) * time.Millisecond
		}
		return out
	}
	hundred := make([]time.Duration, 100)
	for i := range hundred {
		hundred[i] = time.Duration(i+1) * time.Millisecond
	}
	for _, tc := range []struct {
		name   string
		sorted []time.Duration
		p      float64
		want   time.Duration
	}{
		{"empty", nil, 0.5, 0},
		{"one", ms(7), 0.99, 7 * time.Millisecond},
		{"median of four is the second", ms(1, 2, 3, 4), 0.5, 2 * time.Millisecond},
		{"p99 of four is the largest", ms(1, 2, 3, 4), 0.99, 4 * time.Millisecond},
		{"p50 of 1..100", hundred, 0.5, 50 * time.Millisecond},
		{"p99 of 1..100", hundred, 0.99, 99 * time.Millisecond},
		{"p100 is the maximum", hundred, 1, 100 * time.Millisecond},
		{"tiny p is the minimum", hundred, 0.0001, time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Percentile(tc.sorted, tc.p); got != tc.want {
				t.Errorf("Percentile(%v, %v) = %v, want %v", tc.sorted, tc.p, got, tc.want)
			}
		})
	}
}

func TestRecorderSummary(t *testing.T) {
	t.Parallel()
	var r Recorder
	for _, d := range []time.Duration{3, 1, 2, 5, 4} {
		r.Add(d * time.Millisecond)
	}
	s := r.Summary(2 * time.Second)
	if s.Count != 5 || s.P50 != 3*time.Millisecond || s.P99 != 5*time.Millisecond || s.Rate() != 2.5 {
		t.Errorf("summary %+v, rate %v; want 5 samples, p50 3ms, p99 5ms, 2.5/s", s, s.Rate())
	}
}

func TestSourceAddrs(t *testing.T) {
	t.Parallel()
	addrs, err := SourceAddrs(4)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.4"}
	for i, a := range addrs {
		if a.String() != want[i] || !a.IsLoopback() {
			t.Errorf("address %d is %v, want loopback %s", i, a, want[i])
		}
	}
	// 1,000 connections over 4 addresses: 250 each.
	count := map[netip.Addr]int{}
	for i := range 1000 {
		count[SourceFor(addrs, i)]++
	}
	for _, a := range addrs {
		if count[a] != 250 {
			t.Errorf("%v carries %d of 1000 connections, want 250", a, count[a])
		}
	}
	for _, n := range []int{0, MaxSourceAddrs + 1} {
		if _, err := SourceAddrs(n); err == nil {
			t.Errorf("SourceAddrs(%d) succeeded; want an error", n)
		}
	}
	if all, _ := SourceAddrs(MaxSourceAddrs); all[len(all)-1].String() != "127.0.0.16" {
		t.Errorf("last of %d addresses is %v, want 127.0.0.16", MaxSourceAddrs, all[len(all)-1])
	}
}

// Loopback source addresses other than 127.0.0.1 really carry connections.
func TestDialFromSourceAddr(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	src := netip.MustParseAddr("127.0.0.7")
	got := make(chan string, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			got <- err.Error()
			return
		}
		got <- c.RemoteAddr().String()
		c.Close()
	}()
	c, err := dialer(src).Dial("tcp", l.Addr().String())
	if err != nil {
		t.Skipf("this system does not route %v on loopback: %v", src, err)
	}
	defer c.Close()
	if remote := <-got; !strings.HasPrefix(remote, "127.0.0.7:") {
		t.Errorf("the listener saw %s, want a connection from 127.0.0.7", remote)
	}
}

func TestRequireLoopback(t *testing.T) {
	t.Parallel()
	for addr, ok := range map[string]bool{
		"127.0.0.1:8443": true, "localhost:8443": true, "[::1]:8443": true, "127.0.0.9:1": true,
		"10.0.0.1:8443": false, "example.com:443": false, "8443": false,
	} {
		if err := requireLoopback(addr); (err == nil) != ok {
			t.Errorf("requireLoopback(%q) = %v, want ok=%v", addr, err, ok)
		}
	}
}

func TestFailingShare(t *testing.T) {
	t.Parallel()
	for _, share := range []float64{0, 0.25, 0.5, 1} {
		n := 0
		for i := range 1000 {
			if failing(i, share) {
				n++
			}
		}
		if want := int(1000 * share); n != want {
			t.Errorf("share %v: %d of 1000 agents failing, want %d", share, n, want)
		}
	}
}

// A phase stops by itself at its deadline, and only then: work that runs
// until its context ends is stopped by the phase, not by the test.
func TestPhaseStopsAtDeadline(t *testing.T) {
	t.Parallel()
	var running, atDeadline atomic.Int32
	phaseFor(context.Background(), 50*time.Millisecond, 3, func(ctx context.Context, i int) {
		running.Add(1)
		<-ctx.Done()
		if ctx.Err() == context.DeadlineExceeded {
			atDeadline.Add(1)
		}
	})
	if running.Load() != 3 || atDeadline.Load() != 3 {
		t.Errorf("%d workers ran and %d were stopped by the deadline, want 3 and 3", running.Load(), atDeadline.Load())
	}
}

// A run's context ending (the command's --duration, or ^C) ends a phase
// early.
func TestPhaseStopsWithContext(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		phaseFor(ctx, time.Hour, 2, func(ctx context.Context, i int) { <-ctx.Done() })
	}()
	cancel()
	<-done
}

// pace stops with its context and hands work on only while workers take it.
func TestPaceDropsWhenBusy(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan struct{}) // nobody receives: every offer is dropped
	var dropped atomic.Int32
	done := make(chan struct{})
	go func() {
		defer close(done)
		pace(ctx, 1000, func() bool { return offer(ch, struct{}{}) }, func() {
			if dropped.Add(1) == 5 {
				cancel()
			}
		})
	}()
	<-done
	if dropped.Load() < 5 {
		t.Errorf("%d drops counted, want at least 5", dropped.Load())
	}
}

func TestReadDataDir(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "ca.pem"), []byte("-----BEGIN CERTIFICATE-----\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "admin.token"), []byte("tok123\n"), 0o600)
	var tg Target
	if err := tg.ReadDataDir(dir); err != nil {
		t.Fatal(err)
	}
	if tg.Token != "tok123" || len(tg.RootPEM) == 0 {
		t.Errorf("token %q, %d bytes of CA; want the trimmed token and the PEM", tg.Token, len(tg.RootPEM))
	}
	if err := (&Target{}).ReadDataDir(t.TempDir()); err == nil {
		t.Error("an empty data dir was read without error")
	}
}

// TestHostileRunsAlone: the hostile phase needs the verifier's limits on,
// which would hold the other phases' ceilings down: it is refused beside
// them, and without browsers.
func TestHostileRunsAlone(t *testing.T) {
	t.Parallel()
	target := &Target{GRPCAddr: "127.0.0.1:1", SSODial: "127.0.0.1:2"}
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{Target: target, Agents: 1, Duration: time.Second, Signins: 1, Phases: []string{"sso", "hostile"}}, "runs alone"},
		{Config{Target: target, Agents: 1, Duration: time.Second, Phases: []string{"hostile"}}, "at least one browser"},
		{Config{Target: target, Agents: 1, Duration: time.Second, Phases: []string{"attack"}}, "want ingest, sso, steady or hostile"},
	} {
		if err := tc.cfg.fill(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want %q", tc.cfg.Phases, err, tc.want)
		}
	}
	ok := Config{Target: target, Agents: 1, Duration: time.Second, Signins: 1, Phases: []string{"hostile"}}
	if err := ok.fill(); err != nil {
		t.Errorf("hostile alone: %v", err)
	}
}

// TestAgentClient: the lean client unless grpc-go's is asked for; any
// other name is refused.
func TestAgentClient(t *testing.T) {
	t.Parallel()
	target := &Target{GRPCAddr: "127.0.0.1:1"}
	for in, want := range map[string]string{"": ClientLean, ClientLean: ClientLean, ClientGRPC: ClientGRPC} {
		c := Config{Target: target, Agents: 1, Duration: time.Second, Phases: []string{"ingest"}, AgentClient: in}
		if err := c.fill(); err != nil || c.AgentClient != want {
			t.Errorf("%q: %q, %v; want %q", in, c.AgentClient, err, want)
		}
	}
	c := Config{Target: target, Agents: 1, Duration: time.Second, Phases: []string{"ingest"}, AgentClient: "http3"}
	if err := c.fill(); err == nil || !strings.Contains(err.Error(), `"http3"`) {
		t.Errorf("unknown client: %v, want it named in an error", err)
	}
}
