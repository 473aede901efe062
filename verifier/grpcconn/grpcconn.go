// Package grpcconn owns who gets a connection to the verifier's gRPC
// listener, and on what terms. The listener must be reachable from
// anywhere agents are, and before limits, 50,000 health Watch streams over
// 50 connections, with no certificate and no token, were all accepted
// (+360 MB). So it completes each TLS handshake itself, then hands the
// connection to one of two gRPC servers: connections that present a
// current device certificate (agents) to one, every other connection
// (enrollment, admin tools, health checks, reflection) to a second with
// tighter terms: few streams, closed when idle or old, and few of them,
// per client address and in all. The servers serve the same services; the
// class only sets the terms, never what a call may do (every call still
// checks its own credentials).
package grpcconn

import (
	"container/list"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"google.golang.org/grpc/credentials"

	"github.com/clearance/clearance/verifier/ratelimit"
)

// Connection classes, as clearance_grpc_connections{class} names them.
const (
	ClassDevice          = "device"
	ClassUnauthenticated = "unauthenticated"
	ClassHandshaking     = "handshaking"
)

// Defaults of the limits (the grpc-* settings).
const (
	// DefaultMaxStreams bounds concurrent calls on any one connection. An
	// agent holds one Connect stream and now and then a Renew.
	DefaultMaxStreams = 32
	// DefaultUnauthenticatedConns bounds connections without a device
	// certificate, in all; when full, the oldest is closed for a new one.
	DefaultUnauthenticatedConns = 128
	// DefaultUnauthenticatedPerSource bounds them per client address (an
	// IPv6 /64); when a source is at it, its oldest is closed for its new
	// one. Holding connections is then worth nothing, and an office whose
	// Macs enroll (one short connection each) is never locked out by one
	// machine behind the same address that holds some.
	DefaultUnauthenticatedPerSource = 16
	// DefaultUnauthenticatedStreams bounds concurrent calls on one of them:
	// enrollment makes one, an admin tool a few. A call held open without
	// its request message costs the verifier about 25 KiB.
	DefaultUnauthenticatedStreams = 4
	// DefaultUnauthenticatedIdle closes one with no call in flight for this
	// long (a GOAWAY: a client makes a new connection for its next call).
	DefaultUnauthenticatedIdle = 30 * time.Second
	// DefaultUnauthenticatedMaxAge closes one this old, whatever it is
	// doing, after UnauthenticatedGrace for the calls in flight: nothing
	// without a device certificate needs a connection for longer.
	DefaultUnauthenticatedMaxAge = 10 * time.Minute
	// DefaultDevicePerSource bounds connections with a current device
	// certificate from one client address (an IPv6 /64); its new one closes
	// its oldest. Every one needs a current certificate of an enrolled,
	// unrevoked device, and each device may hold DevicePerDevice, so this
	// only matters to someone holding many devices' keys; it is high
	// because an office's Macs may all reach the verifier through one NAT
	// address.
	DefaultDevicePerSource = 4096
)

// Fixed bounds, not settings: nothing legitimate comes near them.
const (
	// DefaultHandshakeTimeout bounds a TLS handshake.
	DefaultHandshakeTimeout = 10 * time.Second
	// MaxHandshakes bounds TLS handshakes in progress; a connection beyond
	// it is closed at once (its client retries): evicting one would waste
	// the work done on it. A fleet reconnecting after a restart handshakes
	// in milliseconds each. Before a handshake nothing says whether a
	// connection is an agent's.
	MaxHandshakes = 1024
	// MaxHandshakesPerSource bounds one address's handshakes in progress;
	// its oldest is closed for a new one, so that one address cannot fill
	// MaxHandshakes with handshakes it never finishes.
	MaxHandshakesPerSource = 64
	// UnauthenticatedGrace is how long calls in flight on an unauthenticated
	// connection get once it is told to go away (idle or old).
	UnauthenticatedGrace = 30 * time.Second
	// DevicePerDevice bounds connections presenting one device's
	// certificate; its new one closes its oldest. An agent holds one (two
	// for a moment while it reconnects); more are a copied key or a bug.
	DevicePerDevice = 4
	// UnauthenticatedMaxMessage bounds a message received on a connection
	// without a device certificate. gRPC buffers a call's whole message
	// before any interceptor (the admin token check) runs, so a call held
	// with all but the last byte of its message costs what the message
	// announced: at 512 KiB (a report's bound), 256 connections × 4 calls
	// held that way were over 400 MiB; at 8 KiB all of them cost about 20
	// MiB more than calls held without a message. An enrollment is at most
	// about 3 KiB, every admin request but an import of known devices
	// under 1 KiB, and the admin CLI sends known-device lists in pieces
	// that fit.
	UnauthenticatedMaxMessage = 8 << 10
)

// Reasons a connection is closed to keep within a limit, as
// clearance_grpc_connections_closed_total{reason} names them.
const (
	ClosedEvictedPerSource = "evicted_per_source"
	ClosedEvicted          = "evicted"
	// A device's connection closed for its newer one, and a device
	// connection closed for a newer one from its address.
	ClosedEvictedPerDevice       = "evicted_per_device"
	ClosedEvictedDevicePerSource = "evicted_device_per_source"
	ClosedHandshakes             = "handshakes"
	ClosedHandshakeFailed        = "handshake_failed"
)

// Metrics counts connections; *metrics.Metrics implements it.
type Metrics interface {
	GRPCConns(class string, delta int)
	GRPCConnClosed(reason string)
	GRPCStreamRefused(method string)
}

// Options configure a Listener.
type Options struct {
	// TLS is the server's TLS configuration; "h2" is required by ALPN, as
	// gRPC requires it.
	TLS *tls.Config
	// Device reports whether a presented leaf certificate is a current
	// device certificate (chains to the device CA, within its validity,
	// names an enrolled device that is not revoked, is that device's
	// current certificate), and names the device. Its connection is then
	// served by the device server; any other by the unauthenticated one.
	Device func(leaf *x509.Certificate) (deviceID string, ok bool)
	// Unauthenticated and PerSource bound unauthenticated connections,
	// DevicePerSource device connections per client address (the Default*
	// values when zero).
	Unauthenticated, PerSource, DevicePerSource int
	// HandshakeTimeout bounds a TLS handshake (DefaultHandshakeTimeout
	// when zero).
	HandshakeTimeout time.Duration
	Metrics          Metrics
	Log              *slog.Logger
}

// Listener accepts connections on a TCP listener and sorts them into the
// device and the unauthenticated servers' listeners.
type Listener struct {
	raw    net.Listener
	o      Options
	device *chanListener
	other  *chanListener
	ctx    context.Context // ends handshakes in progress at Close
	cancel context.CancelFunc

	mu          sync.Mutex
	handshaking pool[netip.Addr] // TLS not done yet
	unauth      pool[netip.Addr] // handshaken, without a device certificate
	devices     pool[netip.Addr] // handshaken, with a current device certificate
	perDevice   pool[string]     // the same, by device id
	closed      bool

	handshakes sync.WaitGroup
}

// New wraps raw. Serve accepts from it.
func New(raw net.Listener, o Options) *Listener {
	if o.Unauthenticated <= 0 {
		o.Unauthenticated = DefaultUnauthenticatedConns
	}
	if o.PerSource <= 0 {
		o.PerSource = DefaultUnauthenticatedPerSource
	}
	if o.DevicePerSource <= 0 {
		o.DevicePerSource = DefaultDevicePerSource
	}
	if o.HandshakeTimeout <= 0 {
		o.HandshakeTimeout = DefaultHandshakeTimeout
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	tc := o.TLS.Clone()
	tc.NextProtos = []string{"h2"}
	o.TLS = tc
	ctx, cancel := context.WithCancel(context.Background())
	return &Listener{
		raw: raw, o: o, ctx: ctx, cancel: cancel,
		device: newChanListener(raw.Addr()), other: newChanListener(raw.Addr()),
		handshaking: newPool[netip.Addr](), unauth: newPool[netip.Addr](),
		devices: newPool[netip.Addr](), perDevice: newPool[string](),
	}
}

// Server is what serves one class: a *grpc.Server.
type Server interface {
	Serve(net.Listener) error
}

// Serve accepts connections, serving those with a device certificate with
// device and the others with other, until Close (or a server's Serve
// fails). The servers are stopped by their owner (GracefulStop or Stop);
// Serve returns once the accept loop and both Serve calls have ended.
func (l *Listener) Serve(device, other Server) error {
	errc := make(chan error, 3)
	go func() { errc <- l.accept() }()
	go func() { errc <- device.Serve(l.device) }()
	go func() { errc <- other.Serve(l.other) }()
	first := <-errc
	l.Close()
	<-errc
	<-errc
	l.handshakes.Wait()
	if errors.Is(first, net.ErrClosed) {
		return nil
	}
	return first
}

// Close stops accepting, ends handshakes in progress and closes both
// servers' listeners (their connections are the servers' to end).
func (l *Listener) Close() error {
	l.mu.Lock()
	l.closed = true
	l.mu.Unlock()
	l.cancel()
	err := l.raw.Close()
	l.device.Close()
	l.other.Close()
	return err
}

// Addr is the listening address.
func (l *Listener) Addr() net.Addr { return l.raw.Addr() }

func (l *Listener) accept() error {
	var delay time.Duration
	for {
		raw, err := l.raw.Accept()
		if err != nil {
			l.mu.Lock()
			closed := l.closed
			l.mu.Unlock()
			if closed {
				return nil
			}
			if errors.Is(err, net.ErrClosed) {
				return err
			}
			// Out of file descriptors and the like: wait, as net/http does.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			l.o.Log.Warn("grpc accept failed; retrying", "component", "grpcconn", "err", err, "retry_in", delay)
			select {
			case <-time.After(delay):
				continue
			case <-l.ctx.Done():
				return nil
			}
		}
		delay = 0
		c, evicted, reason := l.admit(raw)
		if evicted != nil {
			l.closedFor(ClosedEvictedPerSource)
			evicted.raw.Close() // its handshake fails, and its goroutine ends
		}
		if c == nil {
			l.closedFor(reason)
			raw.Close()
			continue
		}
		l.handshakes.Add(1)
		go l.handshake(c) // owned by l: Serve waits for it
	}
}

// admit counts a new connection as handshaking, making room among its
// source's handshakes by evicting the oldest (a legitimate handshake takes
// milliseconds; one that has not finished is the likeliest to be a client
// holding it open), or says it is over MaxHandshakes.
func (l *Listener) admit(raw net.Conn) (c *conn, evicted *conn, reason string) {
	src := sourceOf(raw.RemoteAddr())
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.handshaking.len() >= MaxHandshakes {
		return nil, nil, ClosedHandshakes
	}
	if l.handshaking.count(src) >= MaxHandshakesPerSource {
		evicted = l.handshaking.oldestOf(src)
		l.handshaking.remove(evicted)
	}
	c = &conn{l: l, raw: raw, src: src, class: ClassHandshaking}
	l.handshaking.add(c, src)
	l.gauge(ClassHandshaking, 1)
	return c, evicted, ""
}

func sourceOf(a net.Addr) netip.Addr {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ratelimit.Key(ta.AddrPort().Addr())
	}
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.Addr{}
	}
	return ratelimit.Key(ap.Addr())
}

// handshake completes TLS and hands the connection to its class's server.
func (l *Listener) handshake(c *conn) {
	defer l.handshakes.Done()
	tc := tls.Server(c.raw, l.o.TLS)
	c.Conn = tc
	ctx, cancel := context.WithTimeout(l.ctx, l.o.HandshakeTimeout)
	err := tc.HandshakeContext(ctx)
	cancel()
	if err == nil && tc.ConnectionState().NegotiatedProtocol != "h2" {
		err = errors.New("the client did not offer h2 by ALPN")
	}
	if err != nil {
		l.closedFor(ClosedHandshakeFailed)
		l.o.Log.Debug("grpc handshake failed", "component", "grpcconn", "remote", c.raw.RemoteAddr().String(), "err", err)
		c.Close()
		return
	}
	c.state = tc.ConnectionState()
	var deviceID string
	if len(c.state.PeerCertificates) > 0 && l.o.Device != nil {
		if id, ok := l.o.Device(c.state.PeerCertificates[0]); ok && id != "" {
			deviceID = id
		}
	}
	to, evicted := l.settle(c, deviceID)
	for _, ev := range evicted {
		l.closedFor(ev.reason)
		ev.c.raw.Close() // its server sees the end and calls Close
	}
	if to == nil {
		c.Close()
		return
	}
	select {
	case to.ch <- c:
	case <-to.done:
		c.Close()
	}
}

// eviction is a connection closed to make room, and why.
type eviction struct {
	c      *conn
	reason string
}

// settle moves a handshaken connection into its class and returns where it
// goes. An unauthenticated one makes room for itself: the oldest of its
// source's when that source is at PerSource, else the oldest of all when
// there are Unauthenticated. A device connection (deviceID set) makes room
// among its device's (DevicePerDevice) and its source's device connections
// (DevicePerSource), closing the oldest.
func (l *Listener) settle(c *conn, deviceID string) (to *chanListener, evicted []eviction) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.handshaking.remove(c) {
		// Evicted while its handshake finished.
		return nil, nil
	}
	l.gauge(ClassHandshaking, -1)
	if deviceID != "" {
		if l.perDevice.count(deviceID) >= DevicePerDevice {
			old := l.perDevice.oldestOf(deviceID)
			l.removeDevice(old)
			evicted = append(evicted, eviction{old, ClosedEvictedPerDevice})
		}
		if l.devices.count(c.src) >= l.o.DevicePerSource {
			old := l.devices.oldestOf(c.src)
			l.removeDevice(old)
			evicted = append(evicted, eviction{old, ClosedEvictedDevicePerSource})
		}
		c.class, c.deviceID = ClassDevice, deviceID
		l.devices.add(c, c.src)
		l.perDevice.add(c, deviceID)
		l.gauge(ClassDevice, 1)
		return l.device, evicted
	}
	var old *conn
	var reason string
	switch {
	case l.unauth.count(c.src) >= l.o.PerSource:
		old, reason = l.unauth.oldestOf(c.src), ClosedEvictedPerSource
	case l.unauth.len() >= l.o.Unauthenticated:
		old, reason = l.unauth.oldest(), ClosedEvicted
	}
	if old != nil {
		l.unauth.remove(old)
		evicted = append(evicted, eviction{old, reason})
	}
	c.class = ClassUnauthenticated
	l.unauth.add(c, c.src)
	l.gauge(ClassUnauthenticated, 1)
	return l.other, evicted
}

// removeDevice takes a device connection out of both its pools; l.mu is
// held.
func (l *Listener) removeDevice(c *conn) {
	l.devices.remove(c)
	l.perDevice.remove(c)
}

// release forgets a closed connection.
func (l *Listener) release(c *conn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	// An evicted connection is out of its pool already; its gauge is
	// moved here, once, like any other's.
	switch c.class {
	case ClassHandshaking:
		l.handshaking.remove(c)
	case ClassUnauthenticated:
		l.unauth.remove(c)
	case ClassDevice:
		l.removeDevice(c)
	}
	l.gauge(c.class, -1)
}

func (l *Listener) gauge(class string, d int) {
	if l.o.Metrics != nil {
		l.o.Metrics.GRPCConns(class, d)
	}
}

func (l *Listener) closedFor(reason string) {
	if l.o.Metrics != nil {
		l.o.Metrics.GRPCConnClosed(reason)
	}
}

// Counts is a snapshot of the connections a Listener holds (for tests).
type Counts struct {
	Handshaking, Unauthenticated, Device int
	// Sources are the client addresses with an unauthenticated connection
	// or a handshake in progress.
	Sources int
}

// Counts returns the current counts.
func (l *Listener) Counts() Counts {
	l.mu.Lock()
	defer l.mu.Unlock()
	srcs := map[netip.Addr]bool{}
	for src := range l.handshaking.per {
		srcs[src] = true
	}
	for src := range l.unauth.per {
		srcs[src] = true
	}
	return Counts{Handshaking: l.handshaking.len(), Unauthenticated: l.unauth.len(), Device: l.devices.len(), Sources: len(srcs)}
}

// pool is a set of connections in arrival order, in all and per key (a
// source, a device). A connection may be in several pools. Guarded by
// Listener.mu.
type pool[K comparable] struct {
	all *list.List
	per map[K]*list.List
	at  map[*conn]place[K]
}

// place is where a connection is in one pool.
type place[K comparable] struct {
	key      K
	all, per *list.Element
}

func newPool[K comparable]() pool[K] {
	return pool[K]{all: list.New(), per: map[K]*list.List{}, at: map[*conn]place[K]{}}
}

func (p *pool[K]) len() int           { return p.all.Len() }
func (p *pool[K]) count(k K) int      { return lenOf(p.per[k]) }
func (p *pool[K]) oldest() *conn      { return p.all.Front().Value.(*conn) }
func (p *pool[K]) oldestOf(k K) *conn { return p.per[k].Front().Value.(*conn) }

func lenOf(l *list.List) int {
	if l == nil {
		return 0
	}
	return l.Len()
}

func (p *pool[K]) add(c *conn, k K) {
	l := p.per[k]
	if l == nil {
		l = list.New()
		p.per[k] = l
	}
	p.at[c] = place[K]{key: k, all: p.all.PushBack(c), per: l.PushBack(c)}
}

// remove takes c out, and reports whether it was in.
func (p *pool[K]) remove(c *conn) bool {
	pl, ok := p.at[c]
	if !ok {
		return false
	}
	delete(p.at, c)
	p.all.Remove(pl.all)
	if l := p.per[pl.key]; l != nil {
		l.Remove(pl.per)
		if l.Len() == 0 {
			delete(p.per, pl.key)
		}
	}
	return true
}

// conn is one accepted connection: the TLS connection once the handshake
// has started, and its place in the counts.
type conn struct {
	*tls.Conn
	l     *Listener
	raw   net.Conn
	src   netip.Addr
	state tls.ConnectionState

	// Guarded by l.mu: the class, and the device a device connection
	// presented.
	class    string
	deviceID string

	once sync.Once
}

// Close closes the connection and forgets it, once, whoever closes it
// first (the server, the handshake, Close). An evicted connection's socket
// is closed by the eviction; its owner then calls Close.
func (c *conn) Close() error {
	c.once.Do(func() { c.l.release(c) })
	return c.raw.Close()
}

// chanListener is one server's listener: the connections the Listener
// hands it.
type chanListener struct {
	ch   chan *conn
	done chan struct{}
	once sync.Once
	addr net.Addr
}

func newChanListener(addr net.Addr) *chanListener {
	return &chanListener{ch: make(chan *conn), done: make(chan struct{}), addr: addr}
}

func (cl *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-cl.ch:
		return c, nil
	case <-cl.done:
		return nil, net.ErrClosed
	}
}

func (cl *chanListener) Close() error {
	cl.once.Do(func() { close(cl.done) })
	return nil
}

func (cl *chanListener) Addr() net.Addr { return cl.addr }

// handshaken are the servers' credentials (set by DeviceTerms and
// UnauthenticatedOptions): the Listener did the handshake, so they only
// describe it (credentials.TLSInfo, as credentials.NewTLS would) for the
// calls that read the peer's certificate.
type handshaken struct{}

var errNotOurs = errors.New("grpcconn: a connection that did not come from the Listener")

func (handshaken) ServerHandshake(raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	c, ok := raw.(*conn)
	if !ok {
		raw.Close()
		return nil, nil, errNotOurs
	}
	return c, credentials.TLSInfo{State: c.state, CommonAuthInfo: credentials.CommonAuthInfo{SecurityLevel: credentials.PrivacyAndIntegrity}}, nil
}

func (handshaken) ClientHandshake(context.Context, string, net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return nil, nil, errors.New("grpcconn: server-side credentials only")
}

func (handshaken) Info() credentials.ProtocolInfo {
	return credentials.ProtocolInfo{SecurityProtocol: "tls", SecurityVersion: "1.2"}
}

func (h handshaken) Clone() credentials.TransportCredentials { return h }

func (handshaken) OverrideServerName(string) error { return nil }
