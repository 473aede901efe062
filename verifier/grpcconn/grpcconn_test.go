package grpcconn

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/clearance/clearance/internal/rawh2"
	"github.com/clearance/clearance/internal/testkit"
	"github.com/clearance/clearance/internal/testkit/testpki"
	"github.com/clearance/clearance/verifier/grpclite"
)

// pki is a throwaway CA with a server certificate and a device
// certificate.
type pki struct {
	roots  *x509.CertPool
	server tls.Certificate
	device tls.Certificate
	// stranger is a certificate no CA of the server issued.
	stranger tls.Certificate
	verify   func(*x509.Certificate) bool
}

func newPKI(t *testing.T) *pki {
	t.Helper()
	root := testpki.NewCA(t)
	ca := root.NewIntermediate(t)
	p := &pki{
		roots:    root.Pool(),
		server:   ca.Issue(t, testpki.CN("server"), testpki.ServerAuth(), testpki.DNS("localhost")).TLS(),
		device:   ca.Issue(t, testpki.CN("device"), testpki.ClientAuth()).TLS(),
		stranger: testpki.SelfSigned(t, testpki.CN("stranger"), testpki.ClientAuth()).TLS(),
	}
	inter := x509.NewCertPool()
	inter.AddCert(ca.Cert)
	p.verify = func(c *x509.Certificate) bool {
		_, err := c.Verify(x509.VerifyOptions{Roots: p.roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
		return err == nil
	}
	return p
}

// recorder is the metrics a Listener reports.
type recorder struct {
	mu      sync.Mutex
	conns   map[string]int
	closed  map[string]int
	refused map[string]int
}

func newRecorder() *recorder {
	return &recorder{conns: map[string]int{}, closed: map[string]int{}, refused: map[string]int{}}
}
func (r *recorder) GRPCConns(class string, d int) { r.mu.Lock(); r.conns[class] += d; r.mu.Unlock() }
func (r *recorder) GRPCConnClosed(reason string)  { r.mu.Lock(); r.closed[reason]++; r.mu.Unlock() }
func (r *recorder) GRPCStreamRefused(m string)    { r.mu.Lock(); r.refused[m]++; r.mu.Unlock() }
func (r *recorder) get(m map[string]int, k string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return m[k]
}

// env is a Listener serving a health service on both classes; each
// server's health answers SERVING for its own class's name only, so a
// client can tell which server it reached.
type env struct {
	p       *pki
	l       *Listener
	addr    string
	metrics *recorder
	// peers records the AuthInfo the device server's calls saw.
	peers chan credentials.AuthInfo
}

func start(t *testing.T, o Options, lim Limits) *env {
	t.Helper()
	p := newPKI(t)
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e := &env{p: p, metrics: newRecorder(), peers: make(chan credentials.AuthInfo, 16)}
	o.TLS = &tls.Config{Certificates: []tls.Certificate{p.server}, ClientAuth: tls.RequestClientCert, MinVersion: tls.VersionTLS12}
	o.Device = func(c *x509.Certificate) (string, bool) { return c.Subject.CommonName, p.verify(c) }
	o.Metrics = e.metrics
	e.l = New(raw, o)
	e.addr = raw.Addr().String()
	long := NewLongStreams(e.metrics)
	record := func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		if pr, ok := peer.FromContext(ctx); ok {
			select {
			case e.peers <- pr.AuthInfo:
			default:
			}
		}
		return h(ctx, req)
	}
	terms := DeviceTerms(lim)
	terms.StreamInterceptors = []grpc.StreamServerInterceptor{long.Interceptor()}
	terms.UnaryInterceptors = []grpc.UnaryServerInterceptor{record}
	dev := grpclite.NewServer(terms)
	other := grpc.NewServer(append(UnauthenticatedOptions(lim), grpc.ChainStreamInterceptor(long.Interceptor()))...)
	for srv, class := range map[grpc.ServiceRegistrar]string{dev: ClassDevice, other: ClassUnauthenticated} {
		h := health.NewServer()
		h.SetServingStatus(class, healthpb.HealthCheckResponse_SERVING)
		healthpb.RegisterHealthServer(srv, h)
	}
	done := make(chan error, 1)
	go func() { done <- e.l.Serve(dev, other) }()
	t.Cleanup(func() {
		dev.Stop()
		other.Stop()
		e.l.Close()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return e
}

func (e *env) tlsConfig(cert *tls.Certificate) *tls.Config {
	c := &tls.Config{RootCAs: e.p.roots, ServerName: "localhost", MinVersion: tls.VersionTLS12}
	if cert != nil {
		c.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert, nil }
	}
	return c
}

// client is a well-behaved grpc-go client from src presenting cert.
func (e *env) client(t *testing.T, src string, cert *tls.Certificate) healthpb.HealthClient {
	t.Helper()
	d := dialer(src)
	conn, err := grpc.NewClient(e.addr, grpc.WithTransportCredentials(credentials.NewTLS(e.tlsConfig(cert))),
		grpc.WithContextDialer(func(ctx context.Context, a string) (net.Conn, error) { return d.DialContext(ctx, "tcp", a) }))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return healthpb.NewHealthClient(conn)
}

func dialer(src string) *net.Dialer {
	return &net.Dialer{LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(netip.MustParseAddr(src), 0))}
}

// raw is a rude HTTP/2 client from src presenting cert.
func (e *env) raw(t *testing.T, src string, cert *tls.Certificate) *rawh2.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := rawh2.Dial(ctx, dialer(src), e.addr, e.tlsConfig(cert))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return c
}

func servedBy(t *testing.T, c healthpb.HealthClient) string {
	t.Helper()
	for _, class := range []string{ClassDevice, ClassUnauthenticated} {
		resp, err := c.Check(ctx(t), &healthpb.HealthCheckRequest{Service: class})
		if err == nil && resp.GetStatus() == healthpb.HealthCheckResponse_SERVING {
			return class
		}
	}
	t.Fatal("served by neither server")
	return ""
}

// waitFor polls cond: the listener's bookkeeping follows a close on another
// goroutine.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testkit.Eventually(t, 10*time.Second, what, cond)
}

// TestClasses: a device certificate is served by the device server, with
// the certificate visible to the call as credentials.NewTLS would show it;
// no certificate, or one no CA of ours issued, by the unauthenticated one.
func TestClasses(t *testing.T) {
	t.Parallel()
	e := start(t, Options{}, Limits{})
	if got := servedBy(t, e.client(t, "127.0.0.1", &e.p.device)); got != ClassDevice {
		t.Errorf("device certificate served by %s", got)
	}
	info := (<-e.peers).(credentials.TLSInfo)
	if len(info.State.PeerCertificates) == 0 || info.State.PeerCertificates[0].Subject.CommonName != "device" ||
		info.SecurityLevel != credentials.PrivacyAndIntegrity {
		t.Errorf("the call saw %+v, not the device certificate", info)
	}
	if got := servedBy(t, e.client(t, "127.0.0.1", nil)); got != ClassUnauthenticated {
		t.Errorf("no certificate served by %s", got)
	}
	if got := servedBy(t, e.client(t, "127.0.0.1", &e.p.stranger)); got != ClassUnauthenticated {
		t.Errorf("a stranger's certificate served by %s", got)
	}
	waitFor(t, "the gauges", func() bool {
		return e.metrics.get(e.metrics.conns, ClassDevice) == 1 && e.metrics.get(e.metrics.conns, ClassUnauthenticated) == 2 &&
			e.metrics.get(e.metrics.conns, ClassHandshaking) == 0
	})
}

// TestPerSource: an address holds at most PerSource unauthenticated
// connections: its oldest is closed for its new one, and counted. Other
// addresses, and device connections from the same one, are not affected.
func TestPerSource(t *testing.T) {
	t.Parallel()
	e := start(t, Options{PerSource: 4}, Limits{})
	var conns []*rawh2.Conn
	for range 4 {
		c := e.raw(t, "127.0.0.1", nil)
		c.Open(rawh2.Watch, "localhost", nil)
		if got := c.WaitAnswered(ctx(t), 1); got.Accepted != 1 {
			t.Fatalf("within the limit: %+v", got)
		}
		conns = append(conns, c)
	}
	fifth := e.raw(t, "127.0.0.1", nil)
	fifth.Open(rawh2.Watch, "localhost", nil)
	if got := fifth.WaitAnswered(ctx(t), 1); got.Accepted != 1 {
		t.Errorf("the newest from the address: %+v", got)
	}
	if err := conns[0].WaitClosed(ctx(t)); err != nil {
		t.Errorf("the oldest from the address: %v", err)
	}
	if conns[1].Counts().Closed {
		t.Error("the second oldest was closed too")
	}
	if n := e.metrics.get(e.metrics.closed, ClosedEvictedPerSource); n != 1 {
		t.Errorf("%d closed evicted_per_source, want 1", n)
	}
	if got := servedBy(t, e.client(t, "127.0.0.2", nil)); got != ClassUnauthenticated {
		t.Errorf("another address: %s", got)
	}
	if got := servedBy(t, e.client(t, "127.0.0.1", &e.p.device)); got != ClassDevice {
		t.Errorf("an agent behind the same address: %s", got)
	}
	if n := e.metrics.get(e.metrics.closed, ClosedEvictedPerSource); n != 1 {
		t.Errorf("the agent's connection evicted someone: %d evicted_per_source", n)
	}
	waitFor(t, "the counts", func() bool { c := e.l.Counts(); return c.Unauthenticated == 5 && c.Sources == 2 })
}

// TestEvictsOldest: with the unauthenticated connections at their cap, a
// new one is served and the oldest closed: holding connections open is
// worth nothing, and an agent enrolling still gets through.
func TestEvictsOldest(t *testing.T) {
	t.Parallel()
	e := start(t, Options{Unauthenticated: 3, PerSource: 100}, Limits{})
	var held []*rawh2.Conn
	for range 3 {
		c := e.raw(t, "127.0.0.3", nil)
		c.Open(rawh2.Watch, "localhost", nil)
		c.WaitAnswered(ctx(t), 1)
		held = append(held, c)
	}
	if got := servedBy(t, e.client(t, "127.0.0.4", nil)); got != ClassUnauthenticated {
		t.Fatalf("the newcomer: %s", got)
	}
	if err := held[0].WaitClosed(ctx(t)); err != nil {
		t.Errorf("the oldest: %v", err)
	}
	if held[1].Counts().Closed {
		t.Error("the second oldest was closed too")
	}
	if n := e.metrics.get(e.metrics.closed, ClosedEvicted); n != 1 {
		t.Errorf("%d evicted, want 1", n)
	}
	if c := e.l.Counts(); c.Unauthenticated != 3 {
		t.Errorf("counts %+v, want 3 unauthenticated", c)
	}
}

// TestStreamsPerConnection: a client that ignores the server's stream
// quota gets its excess streams reset: UnauthenticatedStreams on an
// unauthenticated connection, MaxStreams on a device one. (Below the
// bound on Watch streams per address, which TestLongStreams checks.)
func TestStreamsPerConnection(t *testing.T) {
	t.Parallel()
	e := start(t, Options{}, Limits{MaxStreams: 6, UnauthenticatedStreams: 4})
	for _, tc := range []struct {
		name, src string
		cert      *tls.Certificate
		want      int
	}{
		{"unauthenticated", "127.0.0.5", nil, 4},
		{"device", "127.0.0.11", &e.p.device, 6},
	} {
		c := e.raw(t, tc.src, tc.cert)
		for range 40 {
			if err := c.Open(rawh2.Watch, "localhost", nil); err != nil {
				t.Fatal(err)
			}
		}
		got := c.WaitAnswered(ctx(t), 40)
		if got.Accepted != tc.want || got.Refused != 40-tc.want {
			t.Errorf("%s: %+v; want %d accepted, the rest refused", tc.name, got, tc.want)
		}
	}
}

// TestLongStreams: health Watch streams are bounded per client address
// across connections (and in all), refused with RESOURCE_EXHAUSTED.
func TestLongStreams(t *testing.T) {
	t.Parallel()
	e := start(t, Options{}, Limits{})
	accepted, refused := 0, 0
	for range 3 {
		c := e.raw(t, "127.0.0.6", nil)
		for range DefaultUnauthenticatedStreams {
			c.Open(rawh2.Watch, "localhost", nil)
		}
		got := c.WaitAnswered(ctx(t), DefaultUnauthenticatedStreams)
		accepted += got.Accepted
		refused += got.Refused
	}
	if accepted != MaxLongStreamsPerSource || refused != 3*DefaultUnauthenticatedStreams-MaxLongStreamsPerSource {
		t.Errorf("%d accepted, %d refused; want %d accepted from one address", accepted, refused, MaxLongStreamsPerSource)
	}
	if n := e.metrics.get(e.metrics.refused, rawh2.Watch); n != refused {
		t.Errorf("%d counted refused, want %d", n, refused)
	}
	// A well-behaved client sees the status.
	st, err := e.client(t, "127.0.0.6", nil).Watch(ctx(t), &healthpb.HealthCheckRequest{})
	if err == nil {
		_, err = st.Recv()
	}
	if status.Code(err) != codes.ResourceExhausted {
		t.Errorf("the next Watch: %v, want RESOURCE_EXHAUSTED", err)
	}
	// Another address has its own share.
	c := e.raw(t, "127.0.0.7", nil)
	c.Open(rawh2.Watch, "localhost", nil)
	if got := c.WaitAnswered(ctx(t), 1); got.Accepted != 1 {
		t.Errorf("another address: %+v", got)
	}
}

// TestLongStreamsOneSpelling: Watch spelled any way but
// "/grpc.health.v1.Health/Watch" is refused before the bound on long-lived
// streams is consulted, so no spelling of it adds to what an address may
// hold. Device connections are the ones grpclite serves; the bound is
// per address, not per connection.
func TestLongStreamsOneSpelling(t *testing.T) {
	t.Parallel()
	e := start(t, Options{}, Limits{})
	c := e.raw(t, "127.0.0.8", &e.p.device)
	waitFor(t, "the device connection", func() bool { return e.l.Counts().Device == 1 })
	others := []string{strings.TrimPrefix(rawh2.Watch, "/"), "/" + rawh2.Watch, rawh2.Watch + "/"}
	n := 0
	for range MaxLongStreamsPerSource {
		for _, m := range append(others, rawh2.Watch) {
			c.Open(m, "localhost", nil)
			n++
		}
	}
	got := c.WaitAnswered(ctx(t), n)
	if got.Accepted != MaxLongStreamsPerSource || got.Refused != n-MaxLongStreamsPerSource {
		t.Errorf("%+v; want %d accepted of %d", got, MaxLongStreamsPerSource, n)
	}
	// The bound is full: the next Watch from the address, on a connection
	// of its own, is refused by it, and it alone is counted.
	c2 := e.raw(t, "127.0.0.8", &e.p.device)
	c2.Open(rawh2.Watch, "localhost", nil)
	if got := c2.WaitAnswered(ctx(t), 1); got.Refused != 1 {
		t.Errorf("the next Watch: %+v, want refused", got)
	}
	if r := e.metrics.get(e.metrics.refused, rawh2.Watch); r != 1 {
		t.Errorf("%d Watch streams refused by the bound, want 1", r)
	}
}

// TestKeepaliveEnforced: pings without a call in flight, on an
// unauthenticated connection, and pings more often than every 20 s on any
// connection, get GOAWAY ENHANCE_YOUR_CALM and the connection closed.
func TestKeepaliveEnforced(t *testing.T) {
	t.Parallel()
	e := start(t, Options{}, Limits{})
	for _, tc := range []struct {
		name   string
		cert   *tls.Certificate
		stream bool
	}{
		{"unauthenticated, no call", nil, false},
		{"device, with a call", &e.p.device, true},
	} {
		c := e.raw(t, "127.0.0.8", tc.cert)
		if tc.stream {
			c.Open(rawh2.Watch, "localhost", nil)
			c.WaitAnswered(ctx(t), 1)
		}
		for i := 0; i < 10 && !c.Counts().Closed; i++ {
			c.Ping()
			time.Sleep(20 * time.Millisecond)
		}
		if err := c.WaitClosed(ctx(t)); err != nil {
			t.Errorf("%s: %v", tc.name, err)
		}
		if got := c.Counts(); got.GoAway != "ENHANCE_YOUR_CALM" {
			t.Errorf("%s: GOAWAY %q, want ENHANCE_YOUR_CALM", tc.name, got.GoAway)
		}
	}
}

// TestIdleAndOld: an unauthenticated connection with nothing in flight is
// told to go away after UnauthenticatedIdle; one holding a stream, after
// UnauthenticatedMaxAge. A device connection is left alone.
func TestIdleAndOld(t *testing.T) {
	t.Parallel()
	e := start(t, Options{}, Limits{UnauthenticatedIdle: 200 * time.Millisecond, UnauthenticatedMaxAge: 400 * time.Millisecond})
	idle := e.raw(t, "127.0.0.9", nil)
	busy := e.raw(t, "127.0.0.9", nil)
	busy.Open(rawh2.Watch, "localhost", nil)
	busy.WaitAnswered(ctx(t), 1)
	agent := e.raw(t, "127.0.0.9", &e.p.device)
	agent.Open(rawh2.Watch, "localhost", nil)
	agent.WaitAnswered(ctx(t), 1)
	if err := idle.WaitClosed(ctx(t)); err != nil {
		t.Errorf("idle: %v", err)
	}
	waitFor(t, "GOAWAY on the busy connection", func() bool { return busy.Counts().GoAway != "" })
	if got := busy.Counts(); got.GoAway != "NO_ERROR" || got.Closed {
		t.Errorf("busy: %+v; want a graceful GOAWAY, the call given its grace", got)
	}
	if got := agent.Counts(); got.GoAway != "" || got.Closed {
		t.Errorf("device connection: %+v; want it left alone", got)
	}
}

// TestHandshakes: a connection that never finishes TLS is closed after the
// handshake timeout and counted; one that does not offer h2 is refused.
func TestHandshakes(t *testing.T) {
	t.Parallel()
	e := start(t, Options{HandshakeTimeout: 200 * time.Millisecond}, Limits{})
	silent, err := dialer("127.0.0.10").Dial("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	waitFor(t, "the handshaking gauge", func() bool { return e.l.Counts().Handshaking == 1 })
	silent.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := silent.Read(make([]byte, 1)); err == nil || errors.Is(err, context.DeadlineExceeded) || strings.Contains(err.Error(), "timeout") {
		t.Errorf("a silent connection: read %v, want it closed by the server", err)
	}
	cfg := e.tlsConfig(nil)
	cfg.NextProtos = []string{"http/1.1"}
	tc, err := tls.DialWithDialer(dialer("127.0.0.10"), "tcp", e.addr, cfg)
	if err == nil {
		tc.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, err = tc.Read(make([]byte, 1))
		tc.Close()
	}
	if err == nil {
		t.Error("a connection without h2 was kept")
	}
	waitFor(t, "both counted", func() bool { return e.metrics.get(e.metrics.closed, ClosedHandshakeFailed) == 2 })
	if c := e.l.Counts(); c != (Counts{}) {
		t.Errorf("counts %+v, want nothing left", c)
	}
}

// TestEnrollWhileFlooded: an attacker holding as many unauthenticated
// connections as it can, from many addresses, with as many streams as it
// may, does not keep a new client (an agent enrolling) from being served.
func TestEnrollWhileFlooded(t *testing.T) {
	t.Parallel()
	e := start(t, Options{Unauthenticated: 32, PerSource: 4}, Limits{})
	for i := range 16 {
		src := netip.AddrFrom4([4]byte{127, 0, 1, byte(i + 1)}).String()
		for range 4 {
			c, err := rawh2.Dial(ctx(t), dialer(src), e.addr, e.tlsConfig(nil))
			if err != nil {
				continue // closed at once: over a limit
			}
			t.Cleanup(func() { c.Close() })
			for range DefaultUnauthenticatedStreams {
				c.Open(rawh2.Watch, "localhost", nil)
			}
		}
	}
	waitFor(t, "the flood to settle", func() bool { return e.l.Counts().Unauthenticated == 32 && e.l.Counts().Handshaking == 0 })
	if got := servedBy(t, e.client(t, "127.0.0.1", nil)); got != ClassUnauthenticated {
		t.Errorf("the enrolling agent: %s", got)
	}
	if c := e.l.Counts(); c.Unauthenticated > 32 || c.Sources > 17 {
		t.Errorf("counts %+v, over the caps", c)
	}
}

// TestSlowHandshakesEvicted: an address that opens connections and never
// finishes TLS loses its oldest when it opens more than
// MaxHandshakesPerSource, long before the handshake timeout; another
// address's handshake goes through meanwhile.
func TestSlowHandshakesEvicted(t *testing.T) {
	t.Parallel()
	e := start(t, Options{}, Limits{})
	var silent []net.Conn
	for range MaxHandshakesPerSource + 1 {
		c, err := dialer("127.0.0.12").Dial("tcp", e.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		silent = append(silent, c)
	}
	silent[0].SetReadDeadline(time.Now().Add(DefaultHandshakeTimeout / 2))
	if _, err := silent[0].Read(make([]byte, 1)); err == nil || strings.Contains(err.Error(), "timeout") {
		t.Errorf("the oldest silent connection: read %v, want it closed by the server", err)
	}
	waitFor(t, "the handshakes counted", func() bool { return e.l.Counts().Handshaking == MaxHandshakesPerSource })
	if n := e.metrics.get(e.metrics.closed, ClosedEvictedPerSource); n != 1 {
		t.Errorf("%d evicted_per_source, want 1", n)
	}
	if got := servedBy(t, e.client(t, "127.0.0.13", nil)); got != ClassUnauthenticated {
		t.Errorf("another address: %s", got)
	}
}

// TestUnauthenticatedMessagesSmall: a call without a device certificate
// may not announce more than UnauthenticatedMaxMessage (gRPC buffers a
// whole message before any check of the call runs); a device connection
// takes the larger messages it is given.
func TestUnauthenticatedMessagesSmall(t *testing.T) {
	t.Parallel()
	e := start(t, Options{}, Limits{})
	big := &healthpb.HealthCheckRequest{Service: strings.Repeat("x", UnauthenticatedMaxMessage+1)}
	_, err := e.client(t, "127.0.0.1", nil).Check(ctx(t), big)
	if status.Code(err) != codes.ResourceExhausted {
		t.Errorf("a large message without a certificate: %v, want ResourceExhausted", err)
	}
	_, err = e.client(t, "127.0.0.1", &e.p.device).Check(ctx(t), big)
	if status.Code(err) != codes.NotFound { // no such service: the message was read
		t.Errorf("a large message on a device connection: %v, want NotFound", err)
	}
	small := &healthpb.HealthCheckRequest{Service: strings.Repeat("x", UnauthenticatedMaxMessage-64)}
	if _, err := e.client(t, "127.0.0.1", nil).Check(ctx(t), small); status.Code(err) != codes.NotFound {
		t.Errorf("a message under the bound without a certificate: %v, want NotFound", err)
	}
}

// TestDeviceConnsBounded: one device holds at most DevicePerDevice
// connections, and one address DevicePerSource device connections; a new
// one closes the oldest, which its client sees.
func TestDeviceConnsBounded(t *testing.T) {
	t.Parallel()
	e := start(t, Options{}, Limits{})
	var conns []*rawh2.Conn
	for range DevicePerDevice + 2 {
		conns = append(conns, e.raw(t, "127.0.0.1", &e.p.device))
		waitFor(t, "the connection settled", func() bool { return e.l.Counts().Handshaking == 0 })
	}
	waitFor(t, "the oldest two closed", func() bool { return conns[0].Counts().Closed && conns[1].Counts().Closed })
	if c := e.l.Counts(); c.Device != DevicePerDevice {
		t.Errorf("device connections held: %d, want %d", c.Device, DevicePerDevice)
	}
	if n := e.metrics.get(e.metrics.closed, ClosedEvictedPerDevice); n != 2 {
		t.Errorf("%s: %d, want 2", ClosedEvictedPerDevice, n)
	}

	s := start(t, Options{DevicePerSource: 2}, Limits{})
	for range 3 {
		s.raw(t, "127.0.0.2", &s.p.device)
		waitFor(t, "the connection settled", func() bool { return s.l.Counts().Handshaking == 0 })
	}
	// The eviction is counted after the new connection settles.
	waitFor(t, "the oldest evicted and counted", func() bool {
		return s.l.Counts().Device == 2 && s.metrics.get(s.metrics.closed, ClosedEvictedDevicePerSource) >= 1
	})
	if n := s.metrics.get(s.metrics.closed, ClosedEvictedDevicePerSource); n != 1 {
		t.Errorf("%s: %d, want 1", ClosedEvictedDevicePerSource, n)
	}
	// A device's connections are not unauthenticated ones.
	if c := s.l.Counts(); c.Unauthenticated != 0 {
		t.Errorf("%+v", c)
	}
}
