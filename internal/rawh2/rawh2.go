// Package rawh2 is a deliberately rude HTTP/2 gRPC client, written from
// frames: it opens streams without waiting for the server's stream quota
// (a grpc-go client would queue them), pings whenever told to, and holds
// whatever it opened without reading beyond what flow control needs. The
// verifier's tests and clearance-loadgen's hostile phase use it to do what
// an attacker's client does, which no well-behaved client can show.
package rawh2

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"fmt"
	"net"
	"sync"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// Watch is the method path of grpc.health.v1.Health/Watch.
const Watch = "/grpc.health.v1.Health/Watch"

// Conn is one HTTP/2 connection to a gRPC server.
type Conn struct {
	tc *tls.Conn

	wmu  sync.Mutex // one frame written at a time
	fr   *http2.Framer
	enc  *hpack.Encoder
	hbuf bytes.Buffer
	next uint32 // the next stream id

	mu       sync.Mutex
	answered map[uint32]bool // streams the server answered or reset
	accepted int             // streams the server answered with headers
	refused  int             // streams refused by status or reset
	goaway   *http2.GoAwayFrame
	done     chan struct{} // closed when the read loop ends
	readErr  error
	streamCh chan struct{} // a token per stream answered or reset
}

// Dial connects to addr over TLS (config is cloned; "h2" is offered) from
// dialer, sends the preface and reads frames in the background until
// Close.
func Dial(ctx context.Context, dialer *net.Dialer, addr string, config *tls.Config) (*Conn, error) {
	cfg := config.Clone()
	cfg.NextProtos = []string{"h2"}
	tc, err := (&tls.Dialer{NetDialer: dialer, Config: cfg}).DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	c := &Conn{tc: tc.(*tls.Conn), next: 1, done: make(chan struct{}), streamCh: make(chan struct{}, 1<<16), answered: map[uint32]bool{}}
	c.fr = http2.NewFramer(c.tc, c.tc)
	c.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	c.enc = hpack.NewEncoder(&c.hbuf)
	if _, err := c.tc.Write([]byte(http2.ClientPreface)); err != nil {
		c.tc.Close()
		return nil, err
	}
	// A large connection window, so that whatever the server sends does
	// not stall it on this client.
	if err := c.fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1 << 20}); err != nil {
		c.tc.Close()
		return nil, err
	}
	if err := c.fr.WriteWindowUpdate(0, 1<<30); err != nil {
		c.tc.Close()
		return nil, err
	}
	go c.read() // ended by Close (the connection's end)
	return c, nil
}

// Open starts a call to method with an empty request message and ends the
// client's side of it: for a server-streaming method such as Watch, the
// stream then stays open for as long as the server keeps it. It does not
// wait for an answer.
func (c *Conn) Open(method, authority string, md map[string]string) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	id, err := c.headers(method, authority, md)
	if err != nil {
		return err
	}
	// The length-prefixed empty message: not compressed, zero bytes.
	return c.fr.WriteData(id, true, []byte{0, 0, 0, 0, 0})
}

// OpenHeld starts a call to method and sends nothing more: no request
// message, no end of stream. The server holds the call open waiting for
// its message (a unary call's handler is never reached), and answers it
// only to refuse it.
func (c *Conn) OpenHeld(method, authority string) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_, err := c.headers(method, authority, nil)
	return err
}

// OpenPartial starts a call to method whose request message announces
// size bytes, sends all of it but the last byte, and holds: the server
// buffers what it was sent while it waits for the rest (gRPC reads a whole
// message before any check of the call runs), or refuses a size over its
// bound at once. size must be at most 64 KiB (one stream's initial flow
// control window).
func (c *Conn) OpenPartial(method, authority string, size int) error {
	if size < 1 || size > 65535-5 {
		return fmt.Errorf("rawh2: a held message of %d bytes", size)
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	id, err := c.headers(method, authority, nil)
	if err != nil {
		return err
	}
	msg := make([]byte, 5+size-1)
	binary.BigEndian.PutUint32(msg[1:5], uint32(size))
	for len(msg) > 0 { // frames of at most the default 16 KiB
		n := min(len(msg), 16384)
		if err := c.fr.WriteData(id, false, msg[:n]); err != nil {
			return err
		}
		msg = msg[n:]
	}
	return nil
}

// headers opens the next stream with a call's headers. c.wmu is held.
func (c *Conn) headers(method, authority string, md map[string]string) (uint32, error) {
	id := c.next
	c.next += 2
	c.hbuf.Reset()
	for _, f := range [][2]string{{":method", "POST"}, {":scheme", "https"}, {":path", method}, {":authority", authority},
		{"content-type", "application/grpc"}, {"te", "trailers"}} {
		if err := c.enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]}); err != nil {
			return 0, err
		}
	}
	for k, v := range md {
		if err := c.enc.WriteField(hpack.HeaderField{Name: k, Value: v}); err != nil {
			return 0, err
		}
	}
	return id, c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: c.hbuf.Bytes(), EndHeaders: true})
}

// Ping sends a PING frame.
func (c *Conn) Ping() error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.fr.WritePing(false, [8]byte{'r', 'a', 'w', 'h', '2'})
}

func (c *Conn) read() {
	defer close(c.done)
	for {
		f, err := c.fr.ReadFrame()
		if err != nil {
			c.mu.Lock()
			c.readErr = err
			c.mu.Unlock()
			return
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				c.wmu.Lock()
				_ = c.fr.WriteSettingsAck()
				c.wmu.Unlock()
			}
		case *http2.PingFrame:
			if !f.IsAck() {
				c.wmu.Lock()
				_ = c.fr.WritePing(true, f.Data)
				c.wmu.Unlock()
			}
		case *http2.MetaHeadersFrame:
			// The response's headers, or a trailers-only answer (a
			// refusal by the application: a grpc-status other than 0).
			// Trailers after a response are not a second answer.
			if f.PseudoValue("status") != "" {
				c.answer(f.StreamID, f.StreamEnded() && grpcStatus(f) != "0")
			}
		case *http2.RSTStreamFrame:
			// After an answer, a reset only ends the stream (grpc-go
			// resets a stream it answered before the client half-closed).
			c.answer(f.StreamID, true)
		case *http2.GoAwayFrame:
			c.mu.Lock()
			g := *f
			c.goaway = &g
			c.mu.Unlock()
		case *http2.DataFrame:
			// Give the window back so that the server can keep sending.
			if n := len(f.Data()); n > 0 {
				c.wmu.Lock()
				_ = c.fr.WriteWindowUpdate(f.StreamID, uint32(n))
				_ = c.fr.WriteWindowUpdate(0, uint32(n))
				c.wmu.Unlock()
			}
		}
	}
}

// answer counts a stream's first answer only.
func (c *Conn) answer(id uint32, refused bool) {
	c.mu.Lock()
	if c.answered[id] {
		c.mu.Unlock()
		return
	}
	c.answered[id] = true
	if refused {
		c.refused++
	} else {
		c.accepted++
	}
	c.mu.Unlock()
	select {
	case c.streamCh <- struct{}{}:
	default:
	}
}

func grpcStatus(f *http2.MetaHeadersFrame) string {
	for _, h := range f.RegularFields() {
		if h.Name == "grpc-status" {
			return h.Value
		}
	}
	return ""
}

// Counts are what the server did with the streams opened so far.
type Counts struct {
	Accepted, Refused int
	// GoAway is the server's GOAWAY error code ("" if none was sent).
	GoAway string
	// Closed: the connection has ended.
	Closed bool
}

// Counts reads the counts.
func (c *Conn) Counts() Counts {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := Counts{Accepted: c.accepted, Refused: c.refused}
	if c.goaway != nil {
		out.GoAway = c.goaway.ErrCode.String()
	}
	select {
	case <-c.done:
		out.Closed = true
	default:
	}
	return out
}

// WaitAnswered waits until n streams have been answered (accepted or
// refused), the connection ends, or ctx ends.
func (c *Conn) WaitAnswered(ctx context.Context, n int) Counts {
	for {
		cs := c.Counts()
		if cs.Accepted+cs.Refused >= n || cs.Closed {
			return cs
		}
		select {
		case <-c.streamCh:
		case <-c.done:
		case <-ctx.Done():
			return c.Counts()
		}
	}
}

// WaitClosed waits until the server ends the connection or ctx ends.
func (c *Conn) WaitClosed(ctx context.Context) error {
	select {
	case <-c.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("connection still open: %w", ctx.Err())
	}
}

// Close ends the connection.
func (c *Conn) Close() error {
	err := c.tc.Close()
	<-c.done
	return err
}
