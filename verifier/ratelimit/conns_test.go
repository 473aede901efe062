package ratelimit

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

type connRecorder struct {
	mu     sync.Mutex
	open   map[string]int
	closed map[string]int
}

func (r *connRecorder) HTTPConns(l string, d int) { r.mu.Lock(); r.open[l] += d; r.mu.Unlock() }
func (r *connRecorder) HTTPConnClosed(l, reason string) {
	r.mu.Lock()
	r.closed[l+"/"+reason]++
	r.mu.Unlock()
}
func (r *connRecorder) get(m map[string]int, k string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return m[k]
}

// connsServer is an HTTPS server behind Conns.
func connsServer(t *testing.T, o ConnsOptions) (*httptest.Server, *Conns, *connRecorder) {
	t.Helper()
	rec := &connRecorder{open: map[string]int{}, closed: map[string]int{}}
	o.Name, o.Metrics = "sso", rec
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	c := NewConns(srv.Listener, o)
	srv.Listener = c
	srv.Config.ConnState = c.ConnState
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv, c, rec
}

func dialFrom(t *testing.T, src, addr string) net.Conn {
	t.Helper()
	d := &net.Dialer{LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(netip.MustParseAddr(src), 0))}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// closedByServer reports whether the server has closed c (a read ends at
// once with EOF or a reset; a live connection times out).
func closedByServer(c net.Conn) bool {
	_ = c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	_, err := c.Read(make([]byte, 1))
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return false
	}
	return err != nil
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestConnsPerSource: bare TCP connections (no handshake) from one address
// past PerSource close that address's oldest; another address is not
// touched, and the counts never pass the bounds.
func TestConnsPerSource(t *testing.T) {
	t.Parallel()
	srv, c, rec := connsServer(t, ConnsOptions{Max: 100, PerSource: 3})
	addr := srv.Listener.Addr().String()
	other := dialFrom(t, "127.0.0.3", addr)
	var held []net.Conn
	for range 5 {
		held = append(held, dialFrom(t, "127.0.0.2", addr))
	}
	waitUntil(t, "the counts", func() bool { return rec.get(rec.closed, "sso/"+ClosedConnPerSource) == 2 })
	if got := c.Counts(); got.Conns != 4 || got.Sources != 2 {
		t.Errorf("counts %+v, want 4 connections from 2 sources", got)
	}
	for i, h := range held {
		if want := i < 2; closedByServer(h) != want {
			t.Errorf("connection %d closed: %v, want %v", i, !want, want)
		}
	}
	if closedByServer(other) {
		t.Error("another address's connection was closed")
	}
	if n := rec.get(rec.open, "sso"); n != 4 {
		t.Errorf("gauge %d, want 4", n)
	}
}

// TestConnsIdleFirst: at Max, a new connection closes an idle keep-alive
// connection before one that is handshaking; an exempt address is not
// bounded per source.
func TestConnsIdleFirst(t *testing.T) {
	t.Parallel()
	_, exempt, _ := net.ParseCIDR("127.0.0.9/32")
	srv, c, rec := connsServer(t, ConnsOptions{Max: 3, PerSource: 1, Exempt: []*net.IPNet{exempt}})
	addr := srv.Listener.Addr().String()
	bare := dialFrom(t, "127.0.0.9", addr) // handshaking, the oldest
	waitUntil(t, "the first counted", func() bool { return c.Counts().Conns == 1 })
	// An idle keep-alive connection, after a request.
	idle := tls.Client(dialFrom(t, "127.0.0.9", addr), &tls.Config{InsecureSkipVerify: true})
	if _, err := io.WriteString(idle, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 512)
	if _, err := idle.Read(buf); err != nil {
		t.Fatal(err)
	}
	// The server marks it idle after writing the response (ConnState).
	waitUntil(t, "the kept-alive connection idle", func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		for e := c.all.Front(); e != nil; e = e.Next() {
			if e.Value.(*limitedConn).idle {
				return true
			}
		}
		return false
	})
	dialFrom(t, "127.0.0.9", addr) // exempt: three from one address
	waitUntil(t, "three counted", func() bool { return c.Counts().Conns == 3 })
	dialFrom(t, "127.0.0.10", addr)
	waitUntil(t, "one evicted", func() bool { return rec.get(rec.closed, "sso/"+ClosedConn) == 1 })
	if closedByServer(bare) {
		t.Error("the handshaking connection was closed, not the idle one")
	}
	if got := c.Counts(); got.Conns != 3 {
		t.Errorf("counts %+v", got)
	}
	_ = idle.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := idle.Read(buf); err == nil {
		t.Error("the idle connection is still open")
	}
}

// TestConnsFloodClosesItsOwn: at Max, a flood of bare connections from two
// addresses closes its own, never the connection of a sign-in under way
// from elsewhere, even one older than the flood's that has not sent its
// request yet.
func TestConnsFloodClosesItsOwn(t *testing.T) {
	t.Parallel()
	srv, c, rec := connsServer(t, ConnsOptions{Max: 6, PerSource: 100})
	addr := srv.Listener.Addr().String()
	var signIns []*tls.Conn
	for _, src := range []string{"127.0.0.20", "127.0.0.23"} {
		s := tls.Client(dialFrom(t, src, addr), &tls.Config{InsecureSkipVerify: true})
		if err := s.Handshake(); err != nil {
			t.Fatal(err)
		}
		signIns = append(signIns, s)
	}
	waitUntil(t, "two sign-ins counted", func() bool { return c.Counts().Conns == 2 })
	var flood []net.Conn
	for i := range 40 {
		flood = append(flood, dialFrom(t, "127.0.0."+strconv.Itoa(21+i%2), addr))
	}
	waitUntil(t, "the flood's evictions", func() bool { return rec.get(rec.closed, "sso/"+ClosedConn) == 36 })
	if got := c.Counts(); got.Conns != 6 {
		t.Errorf("counts %+v, want 6", got)
	}
	for i, s := range signIns {
		if _, err := io.WriteString(s, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
			t.Fatalf("sign-in %d: %v", i, err)
		}
		_ = s.SetReadDeadline(time.Now().Add(10 * time.Second))
		b := make([]byte, 512)
		n, err := s.Read(b)
		if !strings.Contains(string(b[:n]), "200 OK") {
			t.Errorf("sign-in %d was closed by the flood: %q %v", i, b[:n], err)
		}
	}
	closed := 0
	for _, f := range flood {
		if closedByServer(f) {
			closed++
		}
	}
	if closed != 36 {
		t.Errorf("%d of the flood's connections closed, want 36", closed)
	}
}

// TestConnsSourceKeepsItsRequests: past its source's bound, a source's new
// connection closes its oldest that has not begun a request before an
// older one whose request has begun.
func TestConnsSourceKeepsItsRequests(t *testing.T) {
	t.Parallel()
	srv, c, rec := connsServer(t, ConnsOptions{Max: 100, PerSource: 2})
	addr := srv.Listener.Addr().String()
	busy := beginRequest(t, c, "127.0.0.30", addr)
	silent := dialFrom(t, "127.0.0.30", addr)
	waitUntil(t, "two counted", func() bool { return c.Counts().Conns == 2 })
	dialFrom(t, "127.0.0.30", addr)
	waitUntil(t, "one evicted", func() bool { return rec.get(rec.closed, "sso/"+ClosedConnPerSource) == 1 })
	if !closedByServer(silent) {
		t.Error("the silent connection was kept")
	}
	if _, err := io.WriteString(busy, "body"); err != nil {
		t.Fatal(err)
	}
	_ = busy.SetReadDeadline(time.Now().Add(10 * time.Second))
	b := make([]byte, 512)
	if n, err := busy.Read(b); !strings.Contains(string(b[:n]), "200 OK") {
		t.Errorf("the request under way was closed: %q %v", b[:n], err)
	}
}

// TestConnsManySourcesSpareRequests: a flood of bare connections from
// many addresses, one each, closes its own (none of them has begun a
// request), not an older request under way from an address holding as
// many.
func TestConnsManySourcesSpareRequests(t *testing.T) {
	t.Parallel()
	srv, c, rec := connsServer(t, ConnsOptions{Max: 6, PerSource: 100})
	addr := srv.Listener.Addr().String()
	beginRequest(t, c, "127.0.0.40", addr)
	for i := range 30 {
		dialFrom(t, "127.0.1."+strconv.Itoa(1+i), addr)
	}
	waitUntil(t, "the flood's evictions", func() bool { return rec.get(rec.closed, "sso/"+ClosedConn) == 25 })
	c.mu.Lock()
	kept := c.per[Key(netip.MustParseAddr("127.0.0.40"))] != nil
	c.mu.Unlock()
	if !kept {
		t.Fatal("the request under way was closed by the flood")
	}
}

// beginRequest opens the first connection to c, from src, and begins a
// request on it: its headers are in, its 4-byte body is not.
func beginRequest(t *testing.T, c *Conns, src, addr string) *tls.Conn {
	t.Helper()
	busy := tls.Client(dialFrom(t, src, addr), &tls.Config{InsecureSkipVerify: true})
	if _, err := io.WriteString(busy, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the request begun", func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.all.Len() == 1 && c.all.Front().Value.(*limitedConn).begun
	})
	return busy
}
