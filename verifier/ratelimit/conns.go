package ratelimit

import (
	"container/list"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"github.com/clearance/clearance/pkg/logsample"
)

// Bounds of the HTTPS listeners' connections. Without them, 15,000
// connections held open on the sign-in listener cost 640 MB, and 20,000
// bare TCP connections took every file descriptor, so the gRPC listener
// could accept nothing (agents included).
const (
	// DefaultSSOConns bounds the sign-in listener's connections in all. A
	// sign-in is two or three requests within seconds; with keep-alive
	// closed after SSOIdleTimeout, 10 requests a second from an office
	// hold about 300. Past the bound, a new connection closes an idle one
	// (the browser opens another when it needs one), else one of the
	// address holding the most, so the bound costs nothing until that many
	// requests are in flight at once.
	DefaultSSOConns = 1024
	// DefaultSSOConnsPerSource bounds them per client address (an IPv6
	// /64): its new one closes its oldest idle one, else its oldest that
	// has not begun a request, else its oldest.
	DefaultSSOConnsPerSource = 256
	// HTTPConns and HTTPConnsPerSource bound the listener of /metrics and
	// /healthz: a scraper and a few load balancers.
	HTTPConns          = 128
	HTTPConnsPerSource = 32
)

// ConnsOptions configure a Conns.
type ConnsOptions struct {
	// Name is the listener's name in logs and metrics ("sso", "http").
	Name string
	// Max bounds connections in all, PerSource per client address (the TCP
	// peer's, an IPv6 /64). Both must be positive.
	Max, PerSource int
	// Exempt are peers never bounded per source (a trusted proxy, through
	// which every client comes; an office's NAT address); Max still counts
	// them.
	Exempt  []*net.IPNet
	Metrics ConnMetrics
	Log     *slog.Logger
	Now     func() time.Time
}

// ConnMetrics counts an HTTPS listener's connections; *metrics.Metrics
// implements it.
type ConnMetrics interface {
	HTTPConns(listener string, delta int)
	HTTPConnClosed(listener, reason string)
}

// Reasons a connection is closed to keep within a bound, as
// clearance_http_connections_closed_total{reason} names them.
const (
	ClosedConnPerSource = "evicted_per_source"
	ClosedConn          = "evicted"
	// ClosedHeaderLines: its request's headers ran past their bound in
	// lines (httpsconn).
	ClosedHeaderLines = "header_lines"
)

// Conns is a listener that holds at most Max connections, and PerSource
// per client address. A new connection past its source's bound makes room
// by closing that source's oldest idle connection, else its oldest that
// has not begun a request (a handshake, or a bare TCP connection), else its
// oldest. Past Max, it closes the oldest idle connection of all (a
// browser's idle keep-alive connection is the cheapest to lose: it opens
// another), else the oldest that has not begun a request of the source
// that holds the most, else the oldest that has not begun a request of
// all, else the oldest of the source that holds the most. Holding
// connections open is then worth nothing to whoever holds them, and a
// flood of connections, from few addresses or many, closes its own before
// a request under way. Serve it with an http.Server whose
// ConnState is c.ConnState, so it knows which connections are idle and
// which have begun a request.
type Conns struct {
	net.Listener
	o ConnsOptions

	mu    sync.Mutex
	all   *list.List // of *limitedConn, oldest first
	per   map[netip.Addr]*list.List
	count int

	sample logsample.Sample
}

// NewConns wraps ln.
func NewConns(ln net.Listener, o ConnsOptions) *Conns {
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	c := &Conns{Listener: ln, o: o, all: list.New(), per: map[netip.Addr]*list.List{}}
	c.sample.Every = logEvery
	return c
}

// limitedConn is one connection Conns holds.
type limitedConn struct {
	net.Conn
	cs   *Conns
	src  netip.Addr
	once sync.Once

	// Guarded by cs.mu.
	idle bool
	// begun: a request has begun on it (it is not merely handshaking,
	// or connected and silent).
	begun         bool
	elem, srcElem *list.Element // nil once out of the lists
}

func (lc *limitedConn) Close() error {
	lc.once.Do(func() { lc.cs.release(lc) })
	return lc.Conn.Close()
}

// Accept returns the next connection, having made room for it.
func (c *Conns) Accept() (net.Conn, error) {
	raw, err := c.Listener.Accept()
	if err != nil {
		return nil, err
	}
	lc := &limitedConn{Conn: raw, cs: c, src: peerKey(raw.RemoteAddr())}
	var evicted []*limitedConn
	var reasons []string
	c.mu.Lock()
	if !contains(c.o.Exempt, lc.src) {
		if l := c.per[lc.src]; l != nil && l.Len() >= c.o.PerSource {
			evicted = append(evicted, c.evict(l))
			reasons = append(reasons, ClosedConnPerSource)
		}
	}
	if c.count >= c.o.Max {
		victim := c.oldestIdle(c.all)
		if victim == nil {
			heaviest := c.heaviest()
			if victim = c.oldestNotBegun(heaviest); victim == nil {
				if victim = c.oldestNotBegun(c.all); victim == nil {
					victim = heaviest.Front().Value.(*limitedConn)
				}
			}
		}
		c.forget(victim)
		evicted = append(evicted, victim)
		reasons = append(reasons, ClosedConn)
	}
	lc.elem = c.all.PushBack(lc)
	l := c.per[lc.src]
	if l == nil {
		l = list.New()
		c.per[lc.src] = l
	}
	lc.srcElem = l.PushBack(lc)
	c.count++
	c.mu.Unlock()
	if c.o.Metrics != nil {
		c.o.Metrics.HTTPConns(c.o.Name, 1)
	}
	for i, ev := range evicted {
		// Its server's read fails, and it closes the connection.
		ev.Conn.Close()
		c.closedFor(reasons[i], ev.src)
	}
	return lc, nil
}

// evict takes pick(l) out of the counts and returns it; c.mu is held.
func (c *Conns) evict(l *list.List) *limitedConn {
	victim := c.pick(l)
	c.forget(victim)
	return victim
}

// pick returns l's oldest idle connection, else its oldest that has not
// begun a request, else its oldest; l is not empty and c.mu is held.
func (c *Conns) pick(l *list.List) *limitedConn {
	if lc := c.oldestIdle(l); lc != nil {
		return lc
	}
	if lc := c.oldestNotBegun(l); lc != nil {
		return lc
	}
	return l.Front().Value.(*limitedConn)
}

// oldestNotBegun returns l's oldest connection that has not begun a
// request, or nil; c.mu is held.
func (c *Conns) oldestNotBegun(l *list.List) *limitedConn {
	for e := l.Front(); e != nil; e = e.Next() {
		if lc := e.Value.(*limitedConn); !lc.begun {
			return lc
		}
	}
	return nil
}

// oldestIdle returns l's oldest idle connection, or nil; c.mu is held.
func (c *Conns) oldestIdle(l *list.List) *limitedConn {
	for e := l.Front(); e != nil; e = e.Next() {
		if lc := e.Value.(*limitedConn); lc.idle {
			return lc
		}
	}
	return nil
}

// heaviest returns the connections of the source that holds the most (of
// those that hold as many, the one whose oldest is oldest); c.mu is held
// and c.all is not empty.
func (c *Conns) heaviest() *list.List {
	var best *list.List
	for e := c.all.Front(); e != nil; e = e.Next() {
		l := c.per[e.Value.(*limitedConn).src]
		if best == nil || l.Len() > best.Len() {
			best = l
		}
	}
	return best
}

// forget takes lc out of the counts once; c.mu is held.
func (c *Conns) forget(lc *limitedConn) bool {
	if lc.elem == nil {
		return false
	}
	c.all.Remove(lc.elem)
	if l := c.per[lc.src]; l != nil {
		l.Remove(lc.srcElem)
		if l.Len() == 0 {
			delete(c.per, lc.src)
		}
	}
	lc.elem, lc.srcElem = nil, nil
	c.count--
	return true
}

func (c *Conns) release(lc *limitedConn) {
	c.mu.Lock()
	forgot := c.forget(lc)
	c.mu.Unlock()
	if c.o.Metrics != nil && forgot {
		c.o.Metrics.HTTPConns(c.o.Name, -1)
	}
}

func (c *Conns) closedFor(reason string, src netip.Addr) {
	if c.o.Metrics != nil {
		c.o.Metrics.HTTPConns(c.o.Name, -1)
		c.o.Metrics.HTTPConnClosed(c.o.Name, reason)
	}
	if ok, skipped := c.sample.Take(c.o.Now()); ok {
		c.o.Log.Warn("https_connection_limit: a connection was closed to make room for a new one", "component", "ratelimit",
			"listener", c.o.Name, "reason", reason, "source", src.String(), "max", c.o.Max, "per_source", c.o.PerSource, "others_not_logged", skipped)
	}
}

// ConnState is the http.Server's ConnState hook: it tells Conns which
// connections wait idle between requests.
func (c *Conns) ConnState(nc net.Conn, st http.ConnState) {
	for { // *tls.Conn, or a connection that ends TLS itself
		u, ok := nc.(interface{ NetConn() net.Conn })
		if !ok {
			break
		}
		nc = u.NetConn()
	}
	lc, ok := nc.(*limitedConn)
	if !ok || lc.cs != c {
		return
	}
	c.mu.Lock()
	lc.idle = st == http.StateIdle
	lc.begun = lc.begun || st == http.StateActive
	c.mu.Unlock()
}

// ConnCounts is a snapshot of a Conns (for tests).
type ConnCounts struct{ Conns, Sources int }

// Counts returns the current counts.
func (c *Conns) Counts() ConnCounts {
	c.mu.Lock()
	defer c.mu.Unlock()
	return ConnCounts{Conns: c.count, Sources: len(c.per)}
}

func peerKey(a net.Addr) netip.Addr {
	if ta, ok := a.(*net.TCPAddr); ok {
		return Key(ta.AddrPort().Addr())
	}
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.Addr{}
	}
	return Key(ap.Addr())
}
