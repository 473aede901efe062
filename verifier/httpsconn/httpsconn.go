// Package httpsconn terminates TLS for the verifier's HTTPS listeners
// itself, so that it can bound what a client makes a connection hold
// before its request reaches a handler: the lines of the request's
// headers. Go's HTTP server turns each header line into a map entry of
// about 130 bytes and bounds only their bytes (MaxHeaderBytes), so 64 KiB
// of 8-byte lines (`X1:`) cost about 1 MiB a connection, and 1,024
// connections that never finished their headers took 932 MiB.
//
// Serve the Listener with an http.Server (Serve, not ServeTLS) whose
// ConnState calls the Listener's and whose ConnContext is ConnContext;
// read a request's TLS state with State, since the server does not see a
// *tls.Conn and leaves Request.TLS nil.
package httpsconn

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/clearance/clearance/pkg/logsample"
)

// DefaultMaxHeaderLines bounds a request's header lines (its request line
// included): a browser sends 10 to 30, and nothing that signs in, or
// provisions people, sends hundreds.
const DefaultMaxHeaderLines = 200

// ErrHeaderLines ends a connection whose request's headers ran past the
// bound.
var ErrHeaderLines = errors.New("httpsconn: too many header lines")

// Options configure a Listener.
type Options struct {
	// TLS is the listener's configuration.
	TLS *tls.Config
	// MaxHeaderLines bounds each request's header lines
	// (DefaultMaxHeaderLines when 0).
	MaxHeaderLines int
	// Log gets failed handshakes at debug (anyone can cause one) and
	// connections closed for their header lines, sampled, at warn.
	Log *slog.Logger
	// Closed, when set, counts a connection closed for its header lines.
	Closed func()
	// Handshake bounds writing until the server sets its own deadlines at
	// its first request (DefaultHandshake when 0): the handshake's, and
	// any a client makes the connection write before then (answers to TLS
	// key updates).
	Handshake time.Duration
	Now       func() time.Time
}

// DefaultHandshake is the default Options.Handshake: the sign-in
// listener's bound on a handshake and a request's headers.
const DefaultHandshake = 5 * time.Second

// Listener accepts TLS connections over an inner listener.
type Listener struct {
	net.Listener
	o      Options
	sample logsample.Sample
}

// Listen wraps inner.
func Listen(inner net.Listener, o Options) *Listener {
	if o.MaxHeaderLines <= 0 {
		o.MaxHeaderLines = DefaultMaxHeaderLines
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Handshake <= 0 {
		o.Handshake = DefaultHandshake
	}
	l := &Listener{Listener: inner, o: o}
	l.sample.Every = time.Minute
	return l
}

// Accept returns the next connection; its handshake runs at its first read,
// under the server's read deadline.
func (l *Listener) Accept() (net.Conn, error) {
	raw, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	// The server bounds reads from the first; writes it bounds only once a
	// request's headers are in. Until then a client that never reads
	// could hold a write, and with it the connection, for good.
	_ = raw.SetWriteDeadline(time.Now().Add(l.o.Handshake))
	return &Conn{tc: tls.Server(raw, l.o.TLS), l: l, raw: raw, counting: true}, nil
}

// Conn is one connection of a Listener. It has no ConnectionState method:
// the server would read it once, before the handshake, and put that empty
// state in every request (State reads it when asked).
type Conn struct {
	tc  *tls.Conn
	l   *Listener
	raw net.Conn

	handshook atomic.Bool
	failed    atomic.Bool // closed for its header lines

	mu       sync.Mutex
	counting bool // a request's headers are being read
	lines    int  // lines read since counting began
	lineLen  int  // bytes of the line being read, but '\r'
	seenLine bool // a line that is not blank was read since counting began
}

// NetConn is the connection under TLS.
func (c *Conn) NetConn() net.Conn { return c.raw }

func (c *Conn) Write(p []byte) (int, error) { return c.tc.Write(p) }

// Close ends a write under way first: it holds the TLS connection's lock,
// which closing waits for, and a peer that stopped reading would hold it.
// The close_notify it then sends gets a moment, not TLS's 5 s: the server
// closes idle connections one after another under its lock.
func (c *Conn) Close() error {
	_ = c.raw.SetWriteDeadline(time.Now())
	t := time.AfterFunc(closeNotifyWait, func() { c.raw.Close() })
	defer t.Stop()
	return c.tc.Close()
}

// closeNotifyWait bounds Close's close_notify.
const closeNotifyWait = 100 * time.Millisecond

// CloseWrite says the server is done writing (TLS close_notify), so that
// the server's lingering close works as with its own TLS.
func (c *Conn) CloseWrite() error                  { return c.tc.CloseWrite() }
func (c *Conn) LocalAddr() net.Addr                { return c.tc.LocalAddr() }
func (c *Conn) RemoteAddr() net.Addr               { return c.tc.RemoteAddr() }
func (c *Conn) SetDeadline(t time.Time) error      { return c.tc.SetDeadline(t) }
func (c *Conn) SetReadDeadline(t time.Time) error  { return c.tc.SetReadDeadline(t) }
func (c *Conn) SetWriteDeadline(t time.Time) error { return c.tc.SetWriteDeadline(t) }

// Read reads plaintext, completing the handshake first, and ends the
// connection once the headers being read pass the bound.
func (c *Conn) Read(p []byte) (int, error) {
	if c.failed.Load() {
		return 0, ErrHeaderLines
	}
	if !c.handshook.Load() {
		if err := c.tc.Handshake(); err != nil {
			c.l.o.Log.Debug("TLS handshake error", "from", c.raw.RemoteAddr().String(), "err", err)
			// As net/http's own TLS does: a client that spoke plain HTTP
			// is told why it gets nothing (the write is bounded since the
			// accept).
			var re tls.RecordHeaderError
			if errors.As(err, &re) && re.Conn != nil && looksLikeHTTP(re.RecordHeader) {
				_, _ = io.WriteString(re.Conn, "HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n")
			}
			return 0, err
		}
		c.handshook.Store(true)
	}
	n, err := c.tc.Read(p)
	c.mu.Lock()
	over := c.count(p[:n])
	c.mu.Unlock()
	if over {
		// The server reads again after an error; count the closure once.
		if !c.failed.Swap(true) {
			c.l.closedForLines(c.raw.RemoteAddr())
		}
		c.Close()
		return 0, ErrHeaderLines
	}
	return n, err
}

// count counts the lines of b while a request's headers are read, up to
// the blank line that ends them (a blank line before any other does not:
// it would let the lines after it go uncounted), and reports whether they
// passed the bound; c.mu is held. Counting stops at the blank line, so
// that a body read ahead with the headers does not count.
func (c *Conn) count(b []byte) bool {
	for len(b) > 0 && c.counting {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			c.lineLen += len(bytes.TrimRight(b, "\r"))
			return false
		}
		c.lineLen += len(bytes.TrimRight(b[:i], "\r"))
		c.lines++
		if c.lines > c.l.o.MaxHeaderLines {
			return true
		}
		if c.lineLen == 0 && c.seenLine {
			c.counting = false
		}
		c.seenLine = c.seenLine || c.lineLen > 0
		c.lineLen = 0
		b = b[i+1:]
	}
	return false
}

func (l *Listener) closedForLines(from net.Addr) {
	if l.o.Closed != nil {
		l.o.Closed()
	}
	if ok, skipped := l.sample.Take(l.o.Now()); ok {
		l.o.Log.Warn("https_header_lines: a connection was closed for sending more header lines than any browser does",
			"from", from.String(), "max", l.o.MaxHeaderLines, "others_not_logged", skipped)
	}
}

// ConnState is for the http.Server's ConnState hook: from the moment a
// request's headers are read (StateActive) its lines are no longer
// counted, and counting starts over when the connection waits for the
// next request (StateIdle).
func (l *Listener) ConnState(nc net.Conn, st http.ConnState) {
	c, ok := nc.(*Conn)
	if !ok || c.l != l {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	switch st {
	case http.StateActive:
		c.counting = false
	case http.StateIdle:
		c.counting, c.lines, c.lineLen, c.seenLine = true, 0, 0, false
		// The server clears the write deadline after each request; what a
		// client makes an idle connection write (answers to TLS key
		// updates) is bounded until its next request sets one again.
		_ = c.raw.SetWriteDeadline(time.Now().Add(l.o.Handshake))
	}
}

// looksLikeHTTP reports a TLS record header that is the start of an HTTP
// request's method.
func looksLikeHTTP(h [5]byte) bool {
	switch string(h[:]) {
	case "GET /", "HEAD ", "POST ", "PUT /", "OPTIO":
		return true
	}
	return false
}

type connKey struct{}

// ConnContext is for the http.Server's ConnContext hook: it puts the
// connection in its requests' contexts, for State.
func ConnContext(ctx context.Context, c net.Conn) context.Context {
	if cc, ok := c.(*Conn); ok {
		return context.WithValue(ctx, connKey{}, cc)
	}
	return ctx
}

// State is r's TLS state: Request.TLS where the server set it, else that
// of the Conn that carried r; nil over plain HTTP.
func State(r *http.Request) *tls.ConnectionState {
	if r.TLS != nil {
		return r.TLS
	}
	if c, ok := r.Context().Value(connKey{}).(*Conn); ok {
		st := c.tc.ConnectionState()
		return &st
	}
	return nil
}
