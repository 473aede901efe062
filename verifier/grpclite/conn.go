package grpclite

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// What a peer can make a connection hold, and its bound:
//   - header blocks: MaxHeaderListSize decoded (the framer stops decoding
//     beyond it and ends the connection when a block runs far past it,
//     CONTINUATION floods included); the HPACK table 4 KiB;
//   - frames: 16 KiB each (we never raise SETTINGS_MAX_FRAME_SIZE), read
//     one at a time; DATA goes straight into its stream's queue;
//   - streams: MaxConcurrentStreams open (more are refused), and as many
//     handlers running (the reader waits for one to end, so resetting
//     streams as fast as they open cannot pile up handlers);
//   - received data: per stream, at most the window queued plus the one
//     message a Recv is assembling (at most MaxRecvMsgSize); the
//     connection window is returned on receipt, as grpc-go does;
//   - SETTINGS and PING: answered as they are read, never queued (a peer
//     that does not read what we write stalls its own reader);
//   - WINDOW_UPDATE: a window past 2^31-1 is a flow-control error;
//   - pings: grpc-go's enforcement policy.

const (
	maxFrameSize = 16384 // we accept frames of the HTTP/2 default size
	// hpackTableSize is the HPACK table the client may use (the HTTP/2
	// default; we do not announce another).
	hpackTableSize = 4096
	maxPingStrikes = 2
	// pingNoStream is grpc-go's spacing of pings without a call in flight
	// when they are not permitted.
	pingNoStream = 2 * time.Hour
	// lingerAfterGoAway: after a GOAWAY that ends the connection, what the
	// peer still sends is read and dropped for at most this long, so that
	// closing does not reset the connection before the peer reads the
	// GOAWAY.
	lingerAfterGoAway = time.Second
)

var (
	keepalivePingData = [8]byte{'k', 'e', 'e', 'p', 'a', 'l', 'v', 'e'}
	drainPingData     = [8]byte{'d', 'r', 'a', 'i', 'n', 'i', 'n', 'g'}
	errKeepalive      = errors.New("grpclite: keepalive ping not answered in time")
)

// connError ends the connection with a GOAWAY of its code.
type connError struct {
	code http2.ErrCode
	msg  string
}

func (e connError) Error() string { return fmt.Sprintf("connection error %v: %s", e.code, e.msg) }

type conn struct {
	srv  *Server
	o    *Options
	raw  net.Conn
	nc   net.Conn
	peer *peer.Peer
	fr   *http2.Framer // the reader's alone

	// wmu serialises writes; out is the buffer of the write under way.
	wmu  sync.Mutex
	out  *[]byte
	werr error

	mu             sync.Mutex
	cond           sync.Cond // on mu: send windows, handler slots, closing
	streams        map[uint32]*stream
	handlers       uint32 // handlers running
	connSendWin    int64
	peerInitWin    int64
	peerMaxHdrList uint32 // 0: none announced
	ready          bool   // the preface and first SETTINGS arrived
	draining       bool   // the first GOAWAY of a graceful stop was sent
	goAway         bool   // new streams are not served
	lastServed     uint32 // the last stream registered to be served
	goAwayLast     uint32 // the stream a graceful stop's final GOAWAY named
	goAwayNamed    bool   // that GOAWAY was sent
	drainWait      *time.Timer
	closed         bool
	closeOnce      sync.Once

	// The reader's alone.
	maxStreamID uint32
	overflowed  uint32 // a stream whose send window overflowed, to reset
	connRecv    uint32 // received and not yet returned
	pingStrikes int
	lastPingAt  time.Time

	lastRead     atomic.Int64
	resetStrikes atomic.Bool // a header or data frame was sent since the last ping

	// Keepalive, under mu.
	ka     *time.Timer
	kaPrev int64
	kaOut  bool
	kaLeft time.Duration
}

func newConn(s *Server, raw, nc net.Conn, auth credentials.AuthInfo) *conn {
	c := &conn{
		srv: s, o: &s.opts, raw: raw, nc: nc,
		peer:        &peer.Peer{Addr: raw.RemoteAddr(), LocalAddr: raw.LocalAddr(), AuthInfo: auth},
		connSendWin: 65535,
		peerInitWin: 65535,
	}
	c.cond.L = &c.mu
	c.fr = http2.NewFramer(nil, nc)
	c.fr.SetMaxReadFrameSize(maxFrameSize)
	c.fr.MaxHeaderListSize = s.opts.MaxHeaderListSize
	c.fr.ReadMetaHeaders = hpack.NewDecoder(hpackTableSize, nil)
	return c
}

// serve runs the connection: settings, the client's preface, then frames
// until the connection ends.
func (c *conn) serve() (err error) {
	defer func() { c.fail(err) }()
	// 1. Our settings, and the connection window beyond the default.
	c.startWrite()
	ss := []http2.Setting{{ID: http2.SettingMaxConcurrentStreams, Val: c.o.MaxConcurrentStreams}}
	if c.o.WindowSize != 65535 {
		ss = append(ss, http2.Setting{ID: http2.SettingInitialWindowSize, Val: c.o.WindowSize})
	}
	ss = append(ss, http2.Setting{ID: http2.SettingMaxHeaderListSize, Val: c.o.MaxHeaderListSize})
	c.putSettings(ss...)
	if c.o.WindowSize > 65535 {
		c.putWindowUpdate(0, c.o.WindowSize-65535)
	}
	if err := c.endWrite(); err != nil {
		return err
	}

	// 2. The client's preface and its SETTINGS.
	var preface [len(http2.ClientPreface)]byte
	if _, err := io.ReadFull(c.nc, preface[:]); err != nil {
		return err
	}
	if string(preface[:]) != http2.ClientPreface {
		return errors.New("grpclite: bad client preface")
	}
	f, err := c.fr.ReadFrame()
	if err != nil {
		return err
	}
	sf, ok := f.(*http2.SettingsFrame)
	if !ok || sf.IsAck() {
		return fmt.Errorf("grpclite: first frame %v is not SETTINGS", f.Header().Type)
	}
	if err := c.handleSettings(sf); err != nil {
		return err
	}
	_ = c.raw.SetDeadline(time.Time{})
	c.mu.Lock()
	c.ready = true
	draining := c.draining
	c.mu.Unlock()
	if draining {
		return errServerStopped
	}

	// 3. Frames.
	c.lastRead.Store(time.Now().UnixNano())
	c.mu.Lock()
	c.ka = time.AfterFunc(c.o.KeepaliveTime, c.keepalive)
	c.mu.Unlock()
	for {
		if err := c.readFrame(); err != nil {
			return err
		}
	}
}

// fail ends the connection after the reader stopped on err: a protocol
// error with a GOAWAY, anything else at once.
func (c *conn) fail(err error) {
	var (
		ce   connError
		h2ce http2.ConnectionError
	)
	switch {
	case errors.As(err, &ce):
	case errors.As(err, &h2ce):
		ce = connError{code: http2.ErrCode(h2ce), msg: err.Error()}
		if d := c.fr.ErrorDetail(); d != nil {
			ce.msg = d.Error()
		}
	case errors.Is(err, http2.ErrFrameTooLarge):
		ce = connError{code: http2.ErrCodeFrameSize, msg: "frame too large"}
	default:
		c.close(err)
		return
	}
	c.goAwayClose(ce.code, []byte(ce.msg), err)
}

// goAwayClose sends a GOAWAY and closes the connection, reading (and
// dropping) what the peer still sends for a moment first.
func (c *conn) goAwayClose(code http2.ErrCode, debug []byte, err error) {
	last := c.maxStreamID
	c.mu.Lock()
	c.goAway = true
	if c.goAwayNamed && c.goAwayLast < last {
		// A GOAWAY's stream may not grow: the streams after the one a
		// graceful stop named were not served.
		last = c.goAwayLast
	}
	c.mu.Unlock()
	c.startWrite()
	c.putGoAway(last, code, debug)
	if c.endWrite() != nil {
		return
	}
	c.closeStreams(err)
	_ = c.nc.SetReadDeadline(time.Now().Add(lingerAfterGoAway))
	_, _ = io.Copy(io.Discard, io.LimitReader(c.nc, 1<<20))
	c.close(err)
}

// closeStreams marks the connection closed and cancels every call.
func (c *conn) closeStreams(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	c.closed = true
	for _, s := range c.streams {
		s.abort()
	}
	c.cond.Broadcast()
}

// close ends the connection now.
func (c *conn) close(err error) {
	c.closeStreams(err)
	c.closeOnce.Do(func() {
		c.mu.Lock()
		if c.ka != nil {
			c.ka.Stop()
		}
		if c.drainWait != nil {
			c.drainWait.Stop()
		}
		c.mu.Unlock()
		c.nc.Close()
	})
}

// drainAckWait is how long a graceful stop waits for the answer to its
// PING before it sends the final GOAWAY regardless, as grpc-go's server
// does: a client that never answers does not keep the connection taking
// new calls.
const drainAckWait = time.Minute

// drain starts a graceful stop: a GOAWAY that lets streams in flight
// arrive, and a PING whose answer says they have (or, without one, the
// passing of drainAckWait).
func (c *conn) drain() {
	c.mu.Lock()
	if c.closed || c.draining {
		c.mu.Unlock()
		return
	}
	c.draining = true
	ready := c.ready
	c.mu.Unlock()
	if !ready {
		// serve stops once the preface is read.
		return
	}
	c.startWrite()
	c.putGoAway(math.MaxInt32, http2.ErrCodeNo, nil)
	c.putPing(false, drainPingData)
	_ = c.endWrite()
	wait := c.o.drainAckWait
	if wait <= 0 {
		wait = drainAckWait
	}
	c.mu.Lock()
	if !c.closed {
		c.drainWait = time.AfterFunc(wait, c.drained)
	}
	c.mu.Unlock()
}

// drained ends a graceful stop, on the answer to the drain PING or once
// drainAckWait has passed without one, whichever comes first: no stream
// after the last one served is served, the GOAWAY says which that was,
// and the connection ends with its last call.
func (c *conn) drained() {
	c.mu.Lock()
	if c.goAway || c.closed {
		// Done already, or the connection is ending anyway.
		c.mu.Unlock()
		return
	}
	c.goAway = true
	last := c.lastServed
	c.goAwayLast, c.goAwayNamed = last, true
	idle := len(c.streams) == 0
	c.mu.Unlock()
	c.startWrite()
	c.putGoAway(last, http2.ErrCodeNo, nil)
	_ = c.endWrite()
	if idle {
		c.close(errServerStopped)
	}
}

// keepalive is grpc-go's: a connection with nothing read for KeepaliveTime
// is pinged, and closed if nothing is read for KeepaliveTimeout more. Its
// state is under c.mu; the ping and the close happen after.
func (c *conn) keepalive() {
	ping, end := false, false
	c.mu.Lock()
	switch last := c.lastRead.Load(); {
	case c.closed:
	case last > c.kaPrev:
		c.kaPrev, c.kaOut = last, false
		c.ka.Reset(time.Duration(last) + c.o.KeepaliveTime - time.Duration(time.Now().UnixNano()))
	case c.kaOut && c.kaLeft <= 0:
		end = true
	default:
		if !c.kaOut {
			c.kaOut, c.kaLeft, ping = true, c.o.KeepaliveTimeout, true
		}
		d := min(c.o.KeepaliveTime, c.kaLeft)
		c.kaLeft -= d
		c.ka.Reset(d)
	}
	c.mu.Unlock()
	if end {
		c.close(errKeepalive)
	}
	if ping {
		c.keepalivePing()
	}
}

// readFrame reads and handles one frame.
func (c *conn) readFrame() error {
	fh, err := c.fr.ReadFrameHeader()
	if err != nil {
		return err
	}
	c.lastRead.Store(time.Now().UnixNano())
	if fh.Type == http2.FrameData {
		return c.readData(fh)
	}
	f, err := c.fr.ReadFrameForHeader(fh)
	if err != nil {
		var se http2.StreamError
		if errors.As(err, &se) {
			c.resetStream(se.StreamID, se.Code)
			return nil
		}
		return err
	}
	switch f := f.(type) {
	case *http2.MetaHeadersFrame:
		return c.operateHeaders(f)
	case *http2.SettingsFrame:
		return c.handleSettings(f)
	case *http2.PingFrame:
		return c.handlePing(f)
	case *http2.WindowUpdateFrame:
		if err := c.handleWindowUpdate(f); err != nil {
			return err
		}
		if id := c.overflowed; id != 0 {
			c.overflowed = 0
			c.resetStream(id, http2.ErrCodeFlowControl)
		}
	case *http2.RSTStreamFrame:
		if c.idle(f.StreamID) {
			return connError{http2.ErrCodeProtocol, fmt.Sprintf("RST_STREAM on idle stream %d", f.StreamID)}
		}
		c.mu.Lock()
		s := c.streams[f.StreamID]
		if s != nil {
			delete(c.streams, s.id)
			s.abort()
			c.cond.Broadcast()
		}
		c.mu.Unlock()
	case *http2.PushPromiseFrame:
		return connError{http2.ErrCodeProtocol, "PUSH_PROMISE from a client"}
	case *http2.GoAwayFrame, *http2.PriorityFrame:
		// As grpc-go: nothing to do.
	}
	return nil
}

// idle: a stream id the client has not opened.
func (c *conn) idle(id uint32) bool { return id%2 == 0 || id > c.maxStreamID }

// resetStream ends a stream with RST_STREAM.
func (c *conn) resetStream(id uint32, code http2.ErrCode) {
	c.mu.Lock()
	if s := c.streams[id]; s != nil {
		delete(c.streams, id)
		s.abort()
		c.cond.Broadcast()
	}
	c.mu.Unlock()
	c.writeRST(id, code)
}

func (c *conn) readData(fh http2.FrameHeader) error {
	if fh.StreamID == 0 {
		return connError{http2.ErrCodeProtocol, "DATA on stream 0"}
	}
	// The payload is read into a pooled buffer and copied into the
	// stream's queue: an idle connection holds no read buffer.
	scratch := chunkPool.Get().(*[]byte)
	defer chunkPool.Put(scratch)
	buf := (*scratch)[:fh.Length]
	if _, err := io.ReadFull(c.nc, buf); err != nil {
		return err
	}
	data := buf
	if fh.Flags.Has(http2.FlagDataPadded) {
		if len(buf) == 0 || int(buf[0]) > len(buf)-1 {
			return connError{http2.ErrCodeProtocol, "pad size larger than data payload"}
		}
		data = buf[1 : len(buf)-int(buf[0])]
	}
	// The connection window, returned on receipt (streams bound what is
	// buffered).
	c.connRecv += fh.Length
	if c.connRecv > c.o.WindowSize {
		return connError{http2.ErrCodeFlowControl, "connection flow-control window exceeded"}
	}
	if c.connRecv >= c.o.WindowSize/4 {
		c.writeWindowUpdate(0, c.connRecv)
		c.connRecv = 0
	}
	c.mu.Lock()
	s := c.streams[fh.StreamID]
	c.mu.Unlock()
	if s == nil {
		if c.idle(fh.StreamID) {
			return connError{http2.ErrCodeProtocol, fmt.Sprintf("DATA on idle stream %d", fh.StreamID)}
		}
		return nil // a closed stream's
	}
	if code := s.onData(data, fh.Length, fh.Flags.Has(http2.FlagDataEndStream)); code != http2.ErrCodeNo {
		c.resetStream(s.id, code)
	}
	return nil
}

func (c *conn) handleSettings(f *http2.SettingsFrame) error {
	if f.IsAck() {
		return nil
	}
	c.startWrite()
	err := f.ForeachSetting(func(s http2.Setting) error {
		switch s.ID {
		case http2.SettingInitialWindowSize:
			if s.Val > math.MaxInt32 {
				return connError{http2.ErrCodeFlowControl, "SETTINGS_INITIAL_WINDOW_SIZE over 2^31-1"}
			}
			c.mu.Lock()
			delta := int64(s.Val) - c.peerInitWin
			c.peerInitWin = int64(s.Val)
			for _, st := range c.streams {
				st.sendWin += delta
				if st.sendWin > math.MaxInt32 {
					c.mu.Unlock()
					return connError{http2.ErrCodeFlowControl, "stream window overflow"}
				}
			}
			c.cond.Broadcast()
			c.mu.Unlock()
		case http2.SettingMaxFrameSize:
			// RFC 9113 6.5.2: 16,384 to 2^24-1, else a connection error.
			// We never write frames over 16 KiB whatever the peer allows.
			if s.Val < maxFrameSize || s.Val > 1<<24-1 {
				return connError{http2.ErrCodeProtocol, fmt.Sprintf("SETTINGS_MAX_FRAME_SIZE %d out of range", s.Val)}
			}
		case http2.SettingMaxHeaderListSize:
			c.mu.Lock()
			c.peerMaxHdrList = s.Val
			c.mu.Unlock()
		}
		// HEADER_TABLE_SIZE: we never use the dynamic table.
		return nil
	})
	if err == nil {
		c.putSettingsAck()
	}
	if werr := c.endWrite(); err == nil {
		err = werr
	}
	return err
}

func (c *conn) handlePing(f *http2.PingFrame) error {
	if f.IsAck() {
		c.mu.Lock()
		draining := c.draining
		c.mu.Unlock()
		// Only the answer to our own drain ping: a client cannot end its
		// connection's service by sending one unasked.
		if draining && f.Data == drainPingData {
			c.drained()
		}
		return nil
	}
	c.startWrite()
	c.putPing(true, f.Data)
	if err := c.endWrite(); err != nil {
		return err
	}
	// grpc-go's enforcement: a ping too soon after the last one is a
	// strike, unless we sent headers or data since.
	now := time.Now()
	defer func() { c.lastPingAt = now }()
	if c.resetStrikes.Swap(false) {
		c.pingStrikes = 0
		return nil
	}
	c.mu.Lock()
	n := len(c.streams)
	c.mu.Unlock()
	min := c.o.PingMinTime
	if n == 0 && !c.o.PermitWithoutStream {
		min = pingNoStream
	}
	if c.lastPingAt.Add(min).After(now) {
		c.pingStrikes++
	}
	if c.pingStrikes > maxPingStrikes {
		return connError{http2.ErrCodeEnhanceYourCalm, "too_many_pings"}
	}
	return nil
}

func (c *conn) handleWindowUpdate(f *http2.WindowUpdateFrame) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if f.StreamID == 0 {
		c.connSendWin += int64(f.Increment)
		if c.connSendWin > math.MaxInt32 {
			return connError{http2.ErrCodeFlowControl, "connection window overflow"}
		}
		c.cond.Broadcast()
		return nil
	}
	if c.idle(f.StreamID) {
		return connError{http2.ErrCodeProtocol, fmt.Sprintf("WINDOW_UPDATE on idle stream %d", f.StreamID)}
	}
	s := c.streams[f.StreamID]
	if s == nil {
		return nil
	}
	s.sendWin += int64(f.Increment)
	c.cond.Broadcast()
	if s.sendWin > math.MaxInt32 {
		// Reset by readFrame, once c.mu is released.
		c.overflowed = s.id
	}
	return nil
}

// operateHeaders starts a call, or refuses it as grpc-go would.
func (c *conn) operateHeaders(f *http2.MetaHeadersFrame) error {
	id := f.StreamID
	if id%2 != 1 || id <= c.maxStreamID {
		return connError{http2.ErrCodeProtocol, fmt.Sprintf("received an illegal stream id: %d", id)}
	}
	c.maxStreamID = id
	if f.Truncated {
		c.writeRST(id, http2.ErrCodeFrameSize)
		return nil
	}
	c.mu.Lock()
	refuse := c.goAway || c.closed
	c.mu.Unlock()
	if refuse {
		return nil // as grpc-go: a stream after the GOAWAY is not served
	}

	var (
		isGRPC                     bool
		contentType, subtype       string
		method, path, recvEncoding string
		protocolError              bool
		headerError                *status.Status
		timeout                    time.Duration
		timeoutSet                 bool
		md                         = make(metadata.MD, len(f.Fields))
	)
	for _, hf := range f.Fields {
		switch hf.Name {
		case "content-type":
			st, ok := contentSubtype(hf.Value)
			if !ok {
				contentType = hf.Value
				break
			}
			md[hf.Name] = append(md[hf.Name], hf.Value)
			subtype, isGRPC = st, true
		case "grpc-encoding":
			recvEncoding = hf.Value
		case ":method":
			method = hf.Value
		case ":path":
			path = hf.Value
		case "grpc-timeout":
			timeoutSet = true
			var err error
			if timeout, err = decodeTimeout(hf.Value); err != nil {
				headerError = status.Newf(codes.Internal, "malformed grpc-timeout: %v", err)
			}
		case "connection":
			protocolError = true
		default:
			if reservedHeader(hf.Name) {
				break
			}
			v, err := decodeMetadataHeader(hf.Name, hf.Value)
			if err != nil {
				headerError = status.Newf(codes.Internal, "malformed binary metadata %q in header %q: %v", hf.Value, hf.Name, err)
				break
			}
			md[hf.Name] = append(md[hf.Name], v)
		}
	}
	endStream := f.StreamEnded()
	if len(md[":authority"]) > 1 || len(md["host"]) > 1 {
		msg := fmt.Sprintf("num values of :authority: %v, num values of host: %v, both must only have 1 value as per HTTP/2 spec", len(md[":authority"]), len(md["host"]))
		c.earlyAbort(id, subtype, status.New(codes.Internal, msg), http.StatusBadRequest, !endStream)
		return nil
	}
	if protocolError {
		c.writeRST(id, http2.ErrCodeProtocol)
		return nil
	}
	if !isGRPC {
		c.earlyAbort(id, subtype, status.Newf(codes.InvalidArgument, "invalid gRPC request content-type %q", contentType), http.StatusUnsupportedMediaType, !endStream)
		return nil
	}
	if headerError != nil {
		c.earlyAbort(id, subtype, headerError, http.StatusBadRequest, !endStream)
		return nil
	}
	if len(md[":authority"]) == 0 {
		if host, ok := md["host"]; ok {
			md[":authority"] = host
		}
	}
	delete(md, "host")
	if len(md[":authority"]) == 0 {
		c.earlyAbort(id, subtype, status.New(codes.Internal, "no host or :authority header present"), http.StatusBadRequest, !endStream)
		return nil
	}
	c.mu.Lock()
	full := uint32(len(c.streams)) >= c.o.MaxConcurrentStreams
	c.mu.Unlock()
	if full {
		c.writeRST(id, http2.ErrCodeRefusedStream)
		return nil
	}
	if method != http.MethodPost {
		c.earlyAbort(id, subtype, status.Newf(codes.Internal, "Received a HEADERS frame with :method %q which should be POST", method), http.StatusMethodNotAllowed, !endStream)
		return nil
	}
	if timeoutSet && timeout <= 0 {
		c.earlyAbort(id, subtype, status.New(codes.DeadlineExceeded, context.DeadlineExceeded.Error()), http.StatusOK, !endStream)
		return nil
	}

	// What grpc.Server checks before a handler runs.
	svc, fullMethod, md1, sd, st := c.srv.lookup(path)
	if st == nil && recvEncoding != "" && recvEncoding != "identity" {
		st = status.Newf(codes.Unimplemented, "grpc: Decompressor is not installed for grpc-encoding %q", recvEncoding)
	}
	if st != nil {
		c.earlyAbort(id, subtype, st, http.StatusOK, !endStream)
		return nil
	}

	s := newStream(c, id, fullMethod, subtype, md1, sd, svc, endStream)
	var ctx context.Context
	if timeoutSet {
		ctx, s.cancel = context.WithTimeout(context.Background(), timeout)
		// A Recv waiting for a message (stream.await) wakes at the
		// deadline; every other end of a call (a reset, the connection's
		// close) wakes it already.
		context.AfterFunc(ctx, s.wake)
	} else {
		ctx, s.cancel = context.WithCancel(context.Background())
	}
	ctx = metadata.NewIncomingContext(ctx, md)
	ctx = peer.NewContext(ctx, c.peer)
	s.ctx = grpc.NewContextWithServerTransportStream(ctx, (*transportStream)(s))

	c.mu.Lock()
	if c.closed || c.goAway {
		c.mu.Unlock()
		s.cancel()
		return nil
	}
	if c.streams == nil {
		c.streams = make(map[uint32]*stream, 1)
	}
	c.streams[id] = s
	// Under the lock that refuses streams once goAway is set: the final
	// GOAWAY (drained) names no stream that is not served.
	c.lastServed = id
	s.sendWin = c.peerInitWin
	// A handler slot: the reader waits while MaxConcurrentStreams
	// handlers run, however many of their streams were reset.
	for c.handlers >= c.o.MaxConcurrentStreams && !c.closed {
		c.cond.Wait()
	}
	if c.closed {
		c.mu.Unlock()
		s.cancel()
		return nil
	}
	c.handlers++
	c.mu.Unlock()
	go s.run() // owned by the connection: ends with the call, which the connection's close cancels
	return nil
}

// streamDone releases what a call held on its connection.
func (c *conn) streamDone(s *stream) {
	s.mu.Lock()
	s.reset = true
	s.q.free()
	s.mu.Unlock()
	c.mu.Lock()
	if c.streams[s.id] == s {
		delete(c.streams, s.id)
	}
	c.handlers--
	c.cond.Broadcast()
	last := c.goAway && !c.closed && len(c.streams) == 0
	c.mu.Unlock()
	if last {
		c.close(errServerStopped)
	}
}

// earlyAbort answers a call that is not served with a trailers-only
// response, as grpc-go's writeEarlyAbort.
func (c *conn) earlyAbort(id uint32, subtype string, st *status.Status, httpStatus int, rst bool) {
	hf := []hpack.HeaderField{
		{Name: ":status", Value: fmt.Sprint(httpStatus)},
		{Name: "content-type", Value: contentTypeOf(subtype)},
	}
	hf = appendStatus(hf, st)
	if !c.headerListFits(hf) {
		c.writeRST(id, http2.ErrCodeInternal)
		return
	}
	c.startWrite()
	c.putHeaders(id, hf, true)
	if rst {
		c.putRST(id, http2.ErrCodeNo)
	}
	_ = c.endWrite()
}

// headerListFits checks fields against the peer's
// SETTINGS_MAX_HEADER_LIST_SIZE.
func (c *conn) headerListFits(hf []hpack.HeaderField) bool {
	c.mu.Lock()
	max := c.peerMaxHdrList
	c.mu.Unlock()
	if max == 0 {
		return true
	}
	var n uint32
	for _, f := range hf {
		n += f.Size()
		if n > max {
			return false
		}
	}
	return true
}

// lookup finds the method a call's :path names, or the status grpc-go
// answers. full is the method's full name as registered, which the call's
// interceptors and grpc.Method see: never the client's spelling of it.
func (s *Server) lookup(path string) (svc *service, full string, md *grpc.MethodDesc, sd *grpc.StreamDesc, st *status.Status) {
	name, method, ok := splitMethod(path)
	if !ok {
		return nil, "", nil, nil, status.Newf(codes.Unimplemented, "malformed method name: %q", path)
	}
	s.mu.Lock()
	svc = s.services[name]
	s.mu.Unlock()
	if svc == nil {
		return nil, "", nil, nil, status.Newf(codes.Unimplemented, "unknown service %v", name)
	}
	if md := svc.methods[method]; md != nil {
		return svc, svc.full[method], md, nil, nil
	}
	if sd := svc.streams[method]; sd != nil {
		return svc, svc.full[method], nil, sd, nil
	}
	return nil, "", nil, nil, status.Newf(codes.Unimplemented, "unknown method %v for service %v", method, name)
}

// splitMethod splits a :path of the form gRPC over HTTP/2 gives it,
// "/" Service-Name "/" method-name, into the two names. Anything else (no
// leading slash, an empty name, a slash more) is malformed: limits and
// checks that compare full method names must see only the one spelling.
// grpc-go's server refuses a path without the leading slash the same way;
// an empty name or an extra slash it reports as an unknown service or
// method, with the same code.
func splitMethod(path string) (service, method string, ok bool) {
	rest, ok := strings.CutPrefix(path, "/")
	if !ok {
		return "", "", false
	}
	service, method, ok = strings.Cut(rest, "/")
	if !ok || !validName(service) || !validName(method) {
		return "", "", false
	}
	return service, method, true
}

// validName: a service or method name is not empty and has no slash.
func validName(n string) bool { return n != "" && !strings.Contains(n, "/") }
