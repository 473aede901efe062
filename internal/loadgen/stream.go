package loadgen

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	agentv1 "github.com/clearance/clearance/proto/gen/clearance/agent/v1"
)

// connectStream is what a simulated Mac needs of its Connect stream.
type connectStream interface {
	Send(*agentv1.AgentMessage) error
	Recv() (*agentv1.VerifierMessage, error)
	// Close ends the stream and its connection; a Send or Recv waiting
	// returns.
	Close()
}

// Agent clients: how a simulated Mac holds its Connect stream.
const (
	// ClientLean is loadgen's own HTTP/2 client (h2Stream): the Mac's
	// side of the wire as clearance-agent's gRPC client writes it, for
	// less of the shared cores. The default.
	ClientLean = "lean"
	// ClientGRPC is grpc-go's client, as clearance-agent runs it.
	ClientGRPC = "grpc"
)

// grpcStream is a Connect stream on a grpc-go connection of its own.
type grpcStream struct {
	agentv1.AgentService_ConnectClient
	conn   *grpc.ClientConn
	cancel context.CancelFunc
}

func (g *grpcStream) Close() {
	g.cancel()
	g.conn.Close()
}

// connectPath is the Connect method's HTTP/2 path.
var connectPath = "/" + agentv1.AgentService_ServiceDesc.ServiceName + "/Connect"

const (
	// h2MaxMessage bounds one message from the verifier (a policy set is
	// the largest), as clearance-agent's gRPC client does (grpc-go's
	// default); a longer one ends the stream.
	h2MaxMessage = 4 << 20
	// h2Window is the window this client grants the verifier, connection
	// and stream alike: HTTP/2's default, which it never changes.
	h2Window = 65535
	// h2MaxWindow is the largest window HTTP/2 allows.
	h2MaxWindow = 1<<31 - 1
	// h2WindowReturn is how much of the 64 KiB default window the reader
	// uses up before it returns it: one WINDOW_UPDATE pair per thousand
	// or so acks.
	h2WindowReturn = 16 << 10
)

// h2Stream is one Connect stream on an HTTP/2 connection of its own,
// written frame by frame: the frames a gRPC client sends for a
// bidirectional call (preface, SETTINGS, HEADERS, length-prefixed
// messages in DATA frames within the verifier's flow-control windows,
// WINDOW_UPDATE as it reads, answers to the verifier's SETTINGS and
// PINGs). It keeps no goroutine of its own: Send writes on the caller's
// goroutine and Recv reads on its caller's; a Send that waits for window
// while no Recv runs reads the frames itself. grpc-go's client hands each
// message to a writer goroutine and each frame read to the stream's
// reader, wake-ups that cost loadgen a third of a core at ten thousand
// reports a second, on the cores the verifier under test shares.
type h2Stream struct {
	tc *tls.Conn

	smu sync.Mutex // one Send at a time; guards msg
	msg []byte     // the message being sent, with its 5-byte prefix
	wmu sync.Mutex // one writer of frames at a time; guards bw and fr's writes
	bw  *bufio.Writer
	fr  *http2.Framer

	// The send windows the verifier grants (connection and stream), its
	// largest frame, and whether the stream or connection ended.
	mu         sync.Mutex
	cond       *sync.Cond
	connWin    int64
	streamWin  int64
	maxFrame   int
	initialWin int64
	err        error // why sending ends

	// rmu is held by whoever reads frames: Recv, or a Send waiting for
	// window while no Recv runs (a reply sent from the goroutine that
	// reads, as the ingest phase's next report is). It guards the rest.
	rmu      sync.Mutex
	rb       []byte // buf's backing array, reused once buf is empty
	buf      []byte // message bytes read, not yet returned
	recvWin  int64  // what is left of the window granted the verifier
	unacked  int    // bytes read since the last WINDOW_UPDATE
	ended    bool   // the verifier ended the stream
	endedErr error
	goAway   error // the verifier's GOAWAY, if one came
}

// dialH2 connects to addr over TLS (cfg is cloned, "h2" offered) and opens
// Connect.
func dialH2(ctx context.Context, d *net.Dialer, addr string, cfg *tls.Config) (*h2Stream, error) {
	cfg = cfg.Clone()
	cfg.NextProtos = []string{"h2"}
	nc, err := (&tls.Dialer{NetDialer: d, Config: cfg}).DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	tc := nc.(*tls.Conn)
	if p := tc.ConnectionState().NegotiatedProtocol; p != "h2" {
		tc.Close()
		return nil, fmt.Errorf("verifier offered %q, not h2", p)
	}
	h := &h2Stream{tc: tc, bw: bufio.NewWriterSize(tc, 4<<10),
		connWin: 65535, streamWin: 65535, initialWin: 65535, maxFrame: 16384, recvWin: h2Window}
	h.cond = sync.NewCond(&h.mu)
	h.fr = http2.NewFramer(h.bw, bufio.NewReaderSize(tc, 4<<10))
	h.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	h.fr.MaxHeaderListSize = 64 << 10

	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	for _, f := range [][2]string{
		{":method", "POST"}, {":scheme", "https"}, {":path", connectPath}, {":authority", cfg.ServerName},
		{"content-type", "application/grpc"}, {"te", "trailers"}, {"user-agent", "clearance-loadgen"},
	} {
		_ = enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]}) // writes to a bytes.Buffer
	}
	// The preface and SETTINGS, then the verifier's SETTINGS read (and
	// acknowledged) before the call starts, as grpc-go's client waits for
	// them before a connection takes calls.
	_, err = h.bw.WriteString(http2.ClientPreface)
	if err == nil {
		err = h.fr.WriteSettings()
	}
	if err == nil {
		err = h.bw.Flush()
	}
	if err == nil {
		if d, ok := ctx.Deadline(); ok {
			tc.SetReadDeadline(d)
		}
		var f http2.Frame
		if f, err = h.fr.ReadFrame(); err == nil {
			if sf, ok := f.(*http2.SettingsFrame); !ok || sf.IsAck() {
				err = fmt.Errorf("verifier's first frame is %v, not its SETTINGS", f.Header())
			} else if err = sf.ForeachSetting(h.setting); err == nil {
				err = h.fr.WriteSettingsAck()
			}
		}
		tc.SetReadDeadline(time.Time{})
	}
	if err == nil {
		err = h.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: hb.Bytes(), EndHeaders: true})
	}
	if err == nil {
		err = h.bw.Flush()
	}
	if err != nil {
		tc.Close()
		return nil, err
	}
	return h, nil
}

// Send writes m as one gRPC message, in as many DATA frames as the
// verifier's largest frame and its windows ask, waiting for window when
// there is none. The windows are returned by Recv's goroutine: while
// none runs, a message larger than what is left waits until Close.
func (h *h2Stream) Send(m *agentv1.AgentMessage) error {
	h.smu.Lock()
	defer h.smu.Unlock()
	b, err := proto.MarshalOptions{}.MarshalAppend(append(h.msg[:0], 0, 0, 0, 0, 0), m)
	if err != nil {
		return err
	}
	binary.BigEndian.PutUint32(b[1:5], uint32(len(b)-5))
	h.msg = b
	for len(b) > 0 {
		// The window is waited for without the write lock: Recv's
		// goroutine takes it to answer a PING while the window it waits
		// for is on its way.
		n, err := h.reserve(len(b))
		if err != nil {
			return err
		}
		if err := h.write(func() error { return h.fr.WriteData(1, false, b[:n]) }); err != nil {
			return err
		}
		b = b[n:]
	}
	return nil
}

// reserve takes up to want bytes of both send windows, at most one
// frame's, waiting until there is some. While it waits it reads frames
// itself when no Recv is reading them: the window it waits for comes in
// one.
func (h *h2Stream) reserve(want int) (int, error) {
	h.mu.Lock()
	for h.err == nil && (h.connWin <= 0 || h.streamWin <= 0) {
		if h.rmu.TryLock() {
			h.mu.Unlock()
			err := h.readFrame()
			h.rmu.Unlock()
			if err != nil {
				return 0, h.fail(err)
			}
			h.mu.Lock()
			continue
		}
		h.cond.Wait() // a window, the stream's end, or Recv returning
	}
	defer h.mu.Unlock()
	if h.err != nil {
		return 0, h.err
	}
	n := int64(min(want, h.maxFrame))
	n = min(n, h.connWin, h.streamWin)
	h.connWin -= n
	h.streamWin -= n
	return int(n), nil
}

// fail ends sending with err (the first error stays) and returns it.
func (h *h2Stream) fail(err error) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.err == nil {
		h.err = err
	}
	h.cond.Broadcast()
	return h.err
}

// write writes frames (a message's, or those the verifier is owed: a
// SETTINGS or PING answer, window returned) and flushes them.
func (h *h2Stream) write(frames func() error) error {
	h.wmu.Lock()
	defer h.wmu.Unlock()
	if err := frames(); err != nil {
		return h.fail(err)
	}
	if err := h.bw.Flush(); err != nil {
		return h.fail(err)
	}
	return nil
}

// Recv reads frames until a whole message from the verifier is read, and
// returns it. The stream's end returns io.EOF for grpc-status 0 and an
// error naming the status otherwise.
func (h *h2Stream) Recv() (*agentv1.VerifierMessage, error) {
	h.rmu.Lock()
	defer func() {
		h.rmu.Unlock()
		// A Send waiting for window reads frames itself now.
		h.mu.Lock()
		h.cond.Broadcast()
		h.mu.Unlock()
	}()
	for {
		if len(h.buf) >= 5 {
			n := int(binary.BigEndian.Uint32(h.buf[1:5]))
			if h.buf[0] != 0 {
				return nil, h.fail(errors.New("verifier sent a compressed message, never asked for"))
			}
			if n > h2MaxMessage {
				return nil, h.fail(fmt.Errorf("verifier sent a message of %d bytes, over %d", n, h2MaxMessage))
			}
			if len(h.buf) >= 5+n {
				m := new(agentv1.VerifierMessage)
				err := proto.Unmarshal(h.buf[5:5+n], m)
				h.buf = h.buf[5+n:]
				if len(h.buf) == 0 && cap(h.rb) <= 64<<10 {
					h.buf = h.rb[:0] // a large policy set's buffer is not kept
				}
				if err != nil {
					return nil, h.fail(fmt.Errorf("decoding the verifier's message: %w", err))
				}
				return m, nil
			}
		}
		if h.ended {
			return nil, h.endedErr
		}
		if err := h.readFrame(); err != nil {
			if h.goAway != nil {
				err = fmt.Errorf("%w (after %v)", err, h.goAway)
			}
			return nil, h.fail(err)
		}
	}
}

// readFrame reads and handles one frame.
func (h *h2Stream) readFrame() error {
	f, err := h.fr.ReadFrame()
	if err != nil {
		return err
	}
	switch f := f.(type) {
	case *http2.DataFrame:
		if f.StreamID != 1 {
			return fmt.Errorf("DATA on stream %d, never opened", f.StreamID)
		}
		if len(h.buf) == 0 && h.rb == nil {
			h.rb = make([]byte, 0, 4<<10)
			h.buf = h.rb
		}
		h.buf = append(h.buf, f.Data()...)
		// Padding counts against the window too.
		if h.recvWin -= int64(f.Length); h.recvWin < 0 {
			return errors.New("verifier sent DATA beyond the window granted it (FLOW_CONTROL_ERROR)")
		}
		h.unacked += int(f.Length)
		if h.unacked >= h2WindowReturn {
			n := uint32(h.unacked)
			h.unacked = 0
			h.recvWin += int64(n)
			if err := h.write(func() error {
				if err := h.fr.WriteWindowUpdate(0, n); err != nil {
					return err
				}
				return h.fr.WriteWindowUpdate(1, n)
			}); err != nil {
				return err
			}
		}
		if f.StreamEnded() {
			h.end(nil)
		}
	case *http2.MetaHeadersFrame:
		if f.StreamID != 1 {
			return fmt.Errorf("HEADERS on stream %d, never opened", f.StreamID)
		}
		if s := f.PseudoValue("status"); s != "" && s != "200" {
			h.end(fmt.Errorf("verifier answered HTTP %s", s))
		} else if f.StreamEnded() {
			h.end(f.Fields)
		}
	case *http2.SettingsFrame:
		if f.IsAck() {
			return nil
		}
		if err := f.ForeachSetting(h.setting); err != nil {
			return err
		}
		return h.write(h.fr.WriteSettingsAck)
	case *http2.PingFrame:
		if !f.IsAck() {
			data := f.Data
			return h.write(func() error { return h.fr.WritePing(true, data) })
		}
	case *http2.WindowUpdateFrame:
		h.mu.Lock()
		defer h.mu.Unlock()
		w := &h.streamWin
		if f.StreamID == 0 {
			w = &h.connWin
		} else if f.StreamID != 1 {
			return nil
		}
		if *w += int64(f.Increment); *w > h2MaxWindow {
			return fmt.Errorf("verifier's WINDOW_UPDATE on stream %d takes the window past 2^31-1 (FLOW_CONTROL_ERROR)", f.StreamID)
		}
		h.cond.Broadcast()
	case *http2.RSTStreamFrame:
		if f.StreamID == 1 {
			h.end(fmt.Errorf("verifier reset the stream: %v", f.ErrCode))
		}
	case *http2.GoAwayFrame:
		// The stream may still finish: it is older than any GOAWAY names.
		// The connection's end, when it comes, ends Recv, with this.
		h.goAway = fmt.Errorf("the verifier's GOAWAY: %v %q", f.ErrCode, f.DebugData())
	}
	return nil
}

// setting applies one of the verifier's SETTINGS.
func (h *h2Stream) setting(s http2.Setting) error {
	if err := s.Valid(); err != nil {
		return fmt.Errorf("verifier's SETTINGS: %w", err)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	switch s.ID {
	case http2.SettingInitialWindowSize:
		if h.streamWin += int64(s.Val) - h.initialWin; h.streamWin > h2MaxWindow {
			return errors.New("verifier's SETTINGS take the stream's window past 2^31-1 (FLOW_CONTROL_ERROR)")
		}
		h.initialWin = int64(s.Val)
		h.cond.Broadcast()
	case http2.SettingMaxFrameSize:
		h.maxFrame = int(s.Val)
	}
	return nil
}

// end records how the verifier ended the stream: an error, or its
// trailers (or nil, for DATA with END_STREAM and no trailers). Recv
// returns it once the messages before it are read; Send at once.
func (h *h2Stream) end(v any) {
	defer func() { h.fail(h.endedErr) }()
	h.ended = true
	switch v := v.(type) {
	case error:
		h.endedErr = v
	case []hpack.HeaderField:
		code, msg := "", ""
		for _, f := range v {
			switch f.Name {
			case "grpc-status":
				code = f.Value
			case "grpc-message":
				msg = f.Value
			}
		}
		if c, err := strconv.Atoi(code); err == nil && c == 0 {
			h.endedErr = io.EOF
		} else {
			h.endedErr = fmt.Errorf("verifier ended the stream: grpc-status %s: %s", code, msg)
		}
	default:
		h.endedErr = errors.New("verifier ended the stream without trailers")
	}
}

// Close closes the connection: a Send waiting for window, or a Recv
// reading, returns.
func (h *h2Stream) Close() {
	h.fail(net.ErrClosed)
	h.tc.Close()
}
