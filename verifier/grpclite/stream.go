package grpclite

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"slices"
	"strconv"
	"sync"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/protoadapt"
)

// stream is one call: its handler's grpc.ServerStream.
type stream struct {
	c       *conn
	id      uint32
	method  string // the full name as registered (Server.lookup), not as the client spelled it
	subtype string
	svc     *service
	md      *grpc.MethodDesc // a unary method, or
	sd      *grpc.StreamDesc // a streaming one
	ctx     context.Context
	cancel  context.CancelFunc
	sendWin int64 // under c.mu

	// The receive side, under mu.
	mu        sync.Mutex
	q         recvQueue
	recvd     uint32 // received and not yet returned to the peer's window
	consumed  uint32 // read by the handler and not yet returned
	recvEOF   bool   // the client half-closed
	discard   bool   // a Recv failed: what arrives is dropped
	reset     bool   // the stream was reset (either side) or the connection closed
	woken     bool   // Wake was called: a Recv waiting for a message's first byte returns ErrWoken
	stopped   bool   // Interrupt was called: every Recv and Send returns ErrInterrupted
	notify    chan struct{}
	recvFirst bool // the handler's goroutine alone

	// Headers and trailers, under hmu.
	hmu     sync.Mutex
	header  metadata.MD
	trailer metadata.MD
	hdrSent bool
	done    bool // the status was written
}

var _ grpc.ServerStream = (*stream)(nil)

func newStream(c *conn, id uint32, method, subtype string, md *grpc.MethodDesc, sd *grpc.StreamDesc, svc *service, endStream bool) *stream {
	return &stream{c: c, id: id, method: method, subtype: subtype, md: md, sd: sd, svc: svc,
		recvEOF: endStream, notify: make(chan struct{}, 1)}
}

// abort marks the stream reset and cancels its call. c.mu is held.
func (s *stream) abort() {
	s.mu.Lock()
	s.reset = true
	s.q.free()
	s.mu.Unlock()
	s.cancel()
	s.wake()
}

func (s *stream) wake() {
	select {
	case s.notify <- struct{}{}:
	default:
	}
}

// onData queues a DATA frame's payload (size is the frame's length,
// padding included). It returns the code to reset the stream with, if
// any.
func (s *stream) onData(data []byte, size uint32, end bool) http2.ErrCode {
	w := s.c.o.WindowSize
	s.mu.Lock()
	if s.recvEOF {
		s.mu.Unlock()
		return http2.ErrCodeStreamClosed
	}
	if s.recvd+size > w || s.recvd+size < s.recvd {
		s.mu.Unlock()
		return http2.ErrCodeFlowControl
	}
	s.recvd += size
	// Padding, and what nobody will read, is consumed at once.
	s.consumed += size - uint32(len(data))
	if s.discard || s.reset {
		s.consumed += uint32(len(data))
	} else {
		s.q.push(data)
	}
	if end {
		s.recvEOF = true
	}
	upd := s.takeUpdate()
	s.mu.Unlock()
	s.wake()
	if upd > 0 {
		s.c.writeWindowUpdate(s.id, upd)
	}
	return http2.ErrCodeNo
}

// takeUpdate returns the window to give back, once a quarter of it is
// consumed. s.mu is held.
func (s *stream) takeUpdate() uint32 {
	if s.consumed < s.c.o.WindowSize/4 || s.recvEOF || s.reset {
		return 0
	}
	u := s.consumed
	s.recvd -= u
	s.consumed = 0
	return u
}

// read reads what the client sent, waiting for it. A wakeable read (the
// first byte of a message, nothing of it read yet) returns errWoken instead
// of waiting once Wake was called.
func (s *stream) read(p []byte, wakeable bool) (int, error) {
	for {
		s.mu.Lock()
		if s.stopped {
			s.mu.Unlock()
			return 0, ErrInterrupted
		}
		if s.q.n > 0 {
			n := s.q.pop(p)
			s.consumed += uint32(n)
			upd := s.takeUpdate()
			s.mu.Unlock()
			if upd > 0 {
				s.c.writeWindowUpdate(s.id, upd)
			}
			return n, nil
		}
		if s.recvEOF {
			s.mu.Unlock()
			return 0, io.EOF
		}
		reset := s.reset
		woken := wakeable && s.woken
		if woken {
			s.woken = false
		}
		s.mu.Unlock()
		if reset {
			return 0, s.ctxErr()
		}
		if woken {
			return 0, ErrWoken
		}
		select {
		case <-s.notify:
		case <-s.ctx.Done():
			return 0, s.ctxErr()
		}
	}
}

// readFull fills p; with wakeable, only its first read may be woken.
func (s *stream) readFull(p []byte, wakeable bool) (int, error) {
	n := 0
	for n < len(p) {
		m, err := s.read(p[n:], wakeable && n == 0)
		n += m
		if err != nil {
			if err == io.EOF && n > 0 {
				err = io.ErrUnexpectedEOF
			}
			return n, err
		}
	}
	return n, nil
}

// await waits until a Recv has something to take: data, the client's
// half-close, the stream's end, a wake or a failed Recv. The wait for the
// next message is where a held stream's handler spends its life, and its
// stack shrinks to 4 KiB only while it waits on less than about 1.2 KiB of
// it (the collector halves a stack only when a quarter of it is enough), so
// it waits here, on a small frame and a plain channel receive, before the
// deeper frames of reading a message; reading one that is half arrived
// still waits in read.
func (s *stream) await() {
	for !s.ready() {
		<-s.notify
	}
}

// ready reports whether a Recv would not wait for its first byte.
func (s *stream) ready() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.q.n > 0 || s.recvEOF || s.reset || s.woken || s.stopped || s.discard || s.ctx.Err() != nil
}

// ErrWoken is what RecvMsg returns when Wake interrupted its wait for the
// next message: nothing of the stream was read, and the next RecvMsg goes
// on from where this one was.
var ErrWoken = errors.New("grpclite: Recv woken")

// Wake makes a RecvMsg of ss that waits for the next message return
// ErrWoken, or the next one that would wait, once; a message already
// arriving is not interrupted. It reports false (and does nothing) when ss
// is not a grpclite stream. With it a handler can wait for its peer and
// for something else on one goroutine: whoever has news for it wakes its
// Recv.
func Wake(ss grpc.ServerStream) bool {
	s, ok := ss.(*stream)
	if !ok {
		return false
	}
	s.mu.Lock()
	s.woken = true
	s.mu.Unlock()
	s.wake()
	return true
}

// ErrInterrupted is what every RecvMsg and SendMsg of a stream returns once
// Interrupt was called on it.
var ErrInterrupted = errors.New("grpclite: stream interrupted")

// Interrupt makes every RecvMsg and SendMsg of ss return ErrInterrupted,
// those waiting now included (for the peer's next bytes, or for its
// flow-control window), so that its handler returns at once with the
// status it chooses; that status is written, whatever the window. A
// message half received or half sent is abandoned. It reports false (and
// does nothing) when ss is not a grpclite stream.
func Interrupt(ss grpc.ServerStream) bool {
	s, ok := ss.(*stream)
	if !ok {
		return false
	}
	s.mu.Lock()
	s.stopped = true
	s.mu.Unlock()
	s.wake()
	s.c.mu.Lock()
	s.c.cond.Broadcast() // a Send waiting for window
	s.c.mu.Unlock()
	return true
}

// Wakeable reports whether Wake works on ss.
func Wakeable(ss grpc.ServerStream) bool {
	_, ok := ss.(*stream)
	return ok
}

func (s *stream) ctxErr() error {
	if err := s.ctx.Err(); err != nil {
		return status.FromContextError(err).Err()
	}
	return status.Error(codes.Canceled, context.Canceled.Error())
}

// recvMsg reads one length-prefixed message: io.EOF if the client
// half-closed first.
func (s *stream) recvMsg() ([]byte, error) {
	var hdr [5]byte
	if _, err := s.readFull(hdr[:], s.sd != nil && s.sd.ClientStreams); err != nil {
		if err == io.ErrUnexpectedEOF {
			err = status.Error(codes.Internal, err.Error())
		}
		return nil, err
	}
	n := binary.BigEndian.Uint32(hdr[1:])
	switch hdr[0] {
	case 0:
	case 1:
		// We install no decompressor (and refuse calls whose
		// grpc-encoding names one).
		return nil, status.Error(codes.Internal, "grpc: compressed flag set with identity or empty encoding")
	default:
		return nil, status.Errorf(codes.Internal, "grpc: received unexpected payload format %d", hdr[0])
	}
	if uint64(n) > uint64(s.c.o.MaxRecvMsgSize) {
		return nil, status.Errorf(codes.ResourceExhausted, "grpc: received message larger than max (%d vs. %d)", n, s.c.o.MaxRecvMsgSize)
	}
	// The buffer grows with what arrives, not with what the prefix
	// announces: a peer that announces 512 KiB and sends five bytes holds
	// five bytes' worth.
	msg := make([]byte, 0, min(int(n), msgStartBuffer))
	for len(msg) < int(n) {
		if len(msg) == cap(msg) {
			msg = slices.Grow(msg, min(int(n)-len(msg), cap(msg)))
		}
		k, err := s.read(msg[len(msg):min(cap(msg), int(n))], false)
		msg = msg[:len(msg)+k]
		if err != nil {
			if err == io.EOF || err == io.ErrUnexpectedEOF {
				err = status.Error(codes.Internal, io.ErrUnexpectedEOF.Error())
			}
			return nil, err
		}
	}
	return msg, nil
}

// msgStartBuffer is the buffer a message starts in; it doubles as the
// message arrives.
const msgStartBuffer = 4 << 10

// failRecv drops what the client sends from now on, after a Recv failed.
func (s *stream) failRecv() {
	s.mu.Lock()
	s.discard = true
	s.consumed += uint32(s.q.n)
	s.q.free()
	upd := s.takeUpdate()
	s.mu.Unlock()
	if upd > 0 {
		s.c.writeWindowUpdate(s.id, upd)
	}
}

// RecvMsg reads a message into m, checking a unary call's cardinality as
// grpc-go does.
func (s *stream) RecvMsg(m any) error {
	s.await()
	err := s.recvInto(m)
	if err != nil && err != io.EOF && err != ErrWoken {
		s.failRecv()
	}
	return err
}

func (s *stream) recvInto(m any) error {
	s.mu.Lock()
	failed := s.discard
	s.mu.Unlock()
	if failed {
		return status.Error(codes.Internal, "grpclite: Recv after an error")
	}
	clientStreams := s.sd != nil && s.sd.ClientStreams
	b, err := s.recvMsg()
	if err == io.EOF {
		if !clientStreams && !s.recvFirst {
			return status.Error(codes.Internal, "cardinality violation: received no request message from non-client-streaming RPC")
		}
		return io.EOF
	}
	if err != nil {
		return err
	}
	if err := unmarshal(b, m); err != nil {
		return status.Errorf(codes.Internal, "grpc: failed to unmarshal the received message: %v", err)
	}
	s.recvFirst = true
	if clientStreams {
		return nil
	}
	if _, err := s.recvMsg(); err == io.EOF {
		return nil
	} else if err != nil {
		return err
	}
	return status.Error(codes.Internal, "cardinality violation: received multiple request messages for non-client-streaming RPC")
}

func unmarshal(b []byte, m any) error {
	pm, ok := m.(proto.Message)
	if !ok {
		v1, ok := m.(protoadapt.MessageV1)
		if !ok {
			return errors.New("not a protobuf message")
		}
		pm = protoadapt.MessageV2Of(v1)
	}
	return proto.Unmarshal(b, pm)
}

func marshal(m any) ([]byte, error) {
	pm, ok := m.(proto.Message)
	if !ok {
		v1, ok := m.(protoadapt.MessageV1)
		if !ok {
			return nil, errors.New("not a protobuf message")
		}
		pm = protoadapt.MessageV2Of(v1)
	}
	mo := proto.MarshalOptions{}
	size := mo.Size(pm)
	b := make([]byte, 5, 5+size)
	b, err := mo.MarshalAppend(b, pm)
	if err != nil {
		return nil, err
	}
	binary.BigEndian.PutUint32(b[1:5], uint32(len(b)-5))
	return b, nil
}

// SendMsg sends m, with the headers first if they were not sent.
func (s *stream) SendMsg(m any) error {
	b, err := marshal(m)
	if err != nil {
		return status.Errorf(codes.Internal, "grpc: error while marshaling: %v", err)
	}
	if n := len(b) - 5; n > s.c.o.MaxSendMsgSize {
		return status.Errorf(codes.ResourceExhausted, "grpc: trying to send message larger than max (%d vs. %d)", n, s.c.o.MaxSendMsgSize)
	}
	s.mu.Lock()
	stopped := s.stopped
	s.mu.Unlock()
	if stopped {
		return ErrInterrupted
	}
	s.hmu.Lock()
	if s.done {
		s.hmu.Unlock()
		return s.ctxErr()
	}
	var hdr []hpack.HeaderField
	if !s.hdrSent {
		s.hdrSent = true
		hdr = s.headerFields()
	}
	s.hmu.Unlock()
	return s.writeData(hdr, b)
}

// writeData sends p within the flow-control windows, after hdr.
func (s *stream) writeData(hdr []hpack.HeaderField, p []byte) error {
	c := s.c
	if hdr != nil && !c.headerListFits(hdr) {
		c.resetStream(s.id, http2.ErrCodeInternal)
		return status.Error(codes.Internal, "grpclite: header list larger than the peer accepts")
	}
	for len(p) > 0 || hdr != nil {
		n := 0
		if len(p) > 0 {
			var err error
			if n, err = s.reserve(len(p), hdr != nil); err != nil {
				if errors.Is(err, errNoWindow) {
					// Part of the message may be out: the stream cannot
					// carry another, nor the trailers after this one.
					c.resetStream(s.id, http2.ErrCodeCancel)
					c.o.Logger.Debug("stream reset: no flow-control window returned", "stream", s.id, "waited", c.o.SendWindowTimeout)
					return status.Errorf(codes.DeadlineExceeded, "grpclite: the client returned no flow-control window for %v", c.o.SendWindowTimeout)
				}
				return err
			}
		}
		c.startWrite()
		if hdr != nil {
			c.putHeaders(s.id, hdr, false)
			hdr = nil
		}
		if n > 0 {
			if err := c.putData(s.id, p[:n], false); err != nil {
				_ = c.endWrite()
				return status.Error(codes.Unavailable, err.Error())
			}
			p = p[n:]
		}
		if err := c.endWrite(); err != nil {
			return status.Error(codes.Unavailable, err.Error())
		}
		c.resetStrikes.Store(true)
	}
	return nil
}

// errNoWindow: the client returned no window within SendWindowTimeout.
var errNoWindow = errors.New("no flow-control window returned")

// reserve takes up to want bytes of both send windows, waiting for some,
// for up to SendWindowTimeout (then errNoWindow). With nowait it returns 0
// rather than wait (headers go out first).
func (s *stream) reserve(want int, nowait bool) (int, error) {
	c := s.c
	var (
		stop     func() bool
		timer    *time.Timer
		timedOut bool // under c.mu
	)
	defer func() {
		if stop != nil {
			stop()
		}
		if timer != nil {
			timer.Stop()
		}
	}()
	c.mu.Lock()
	defer c.mu.Unlock()
	for {
		if c.closed {
			return 0, status.Error(codes.Unavailable, "transport is closing")
		}
		s.mu.Lock()
		reset, stopped := s.reset, s.stopped
		s.mu.Unlock()
		if stopped {
			return 0, ErrInterrupted
		}
		if reset || s.ctx.Err() != nil {
			return 0, s.ctxErr()
		}
		if avail := min(s.sendWin, c.connSendWin); avail > 0 {
			n := int(min(avail, int64(want)))
			s.sendWin -= int64(n)
			c.connSendWin -= int64(n)
			return n, nil
		}
		if nowait {
			return 0, nil
		}
		if timedOut {
			return 0, errNoWindow
		}
		if stop == nil {
			stop = context.AfterFunc(s.ctx, func() {
				c.mu.Lock()
				c.cond.Broadcast()
				c.mu.Unlock()
			})
			timer = time.AfterFunc(c.o.SendWindowTimeout, func() {
				c.mu.Lock()
				timedOut = true
				c.cond.Broadcast()
				c.mu.Unlock()
			})
		}
		c.cond.Wait()
	}
}

// headerFields are the response headers. s.hmu is held.
func (s *stream) headerFields() []hpack.HeaderField {
	hf := make([]hpack.HeaderField, 0, 2+len(s.header))
	hf = append(hf, hpack.HeaderField{Name: ":status", Value: "200"},
		hpack.HeaderField{Name: "content-type", Value: contentTypeOf(s.subtype)})
	return appendMD(hf, s.header)
}

// SetHeader adds to the headers to send.
func (s *stream) SetHeader(md metadata.MD) error {
	if md.Len() == 0 {
		return nil
	}
	if err := validateMD(md); err != nil {
		return status.Error(codes.Internal, err.Error())
	}
	s.hmu.Lock()
	defer s.hmu.Unlock()
	if s.hdrSent || s.done {
		return errIllegalHeaderWrite
	}
	s.header = metadata.Join(s.header, md)
	return nil
}

var errIllegalHeaderWrite = status.Error(codes.Internal, "transport: SendHeader called multiple times")

// SendHeader sends the headers now.
func (s *stream) SendHeader(md metadata.MD) error {
	if err := validateMD(md); err != nil {
		return status.Error(codes.Internal, err.Error())
	}
	s.hmu.Lock()
	if s.hdrSent || s.done {
		s.hmu.Unlock()
		return errIllegalHeaderWrite
	}
	s.header = metadata.Join(s.header, md)
	s.hdrSent = true
	hdr := s.headerFields()
	s.hmu.Unlock()
	return s.writeData(hdr, nil)
}

// SetTrailer adds to the trailers sent with the status.
func (s *stream) SetTrailer(md metadata.MD) {
	_ = (*transportStream)(s).SetTrailer(md)
}

func (s *stream) Context() context.Context { return s.ctx }

// transportStream is the call as grpc.ServerTransportStreamFromContext
// finds it (grpc.SetHeader and friends).
type transportStream stream

var _ grpc.ServerTransportStream = (*transportStream)(nil)

func (t *transportStream) Method() string                  { return t.method }
func (t *transportStream) SetHeader(md metadata.MD) error  { return (*stream)(t).SetHeader(md) }
func (t *transportStream) SendHeader(md metadata.MD) error { return (*stream)(t).SendHeader(md) }
func (t *transportStream) SetTrailer(md metadata.MD) error {
	if md.Len() == 0 {
		return nil
	}
	if err := validateMD(md); err != nil {
		return status.Error(codes.Internal, err.Error())
	}
	t.hmu.Lock()
	defer t.hmu.Unlock()
	if t.done {
		return errIllegalHeaderWrite
	}
	t.trailer = metadata.Join(t.trailer, md)
	return nil
}

// run runs the call's handler and writes the status it returns.
func (s *stream) run() {
	defer s.c.streamDone(s)
	defer s.cancel()
	var err error
	if s.md != nil {
		err = s.runUnary()
	} else {
		err = s.runStream()
	}
	st := status.New(codes.OK, "")
	if err != nil {
		var ok bool
		if st, ok = status.FromError(err); !ok {
			st = status.FromContextError(err)
		}
	}
	s.writeStatus(st)
}

func (s *stream) runUnary() error {
	dec := func(m any) error { return s.RecvMsg(m) }
	reply, err := s.md.Handler(s.svc.impl, s.ctx, dec, s.c.srv.unaryInt)
	if err != nil {
		return err
	}
	return s.SendMsg(reply)
}

func (s *stream) runStream() error {
	si := s.c.srv.streamInt
	if si == nil {
		return s.sd.Handler(s.svc.impl, s)
	}
	info := &grpc.StreamServerInfo{FullMethod: s.method, IsClientStream: s.sd.ClientStreams, IsServerStream: s.sd.ServerStreams}
	return si(s.svc.impl, s, info, s.sd.Handler)
}

// writeStatus ends the call with st: trailers (trailers-only if nothing
// was sent), then RST_STREAM if the client has not half-closed, as
// grpc-go. A stream the client reset is left alone.
func (s *stream) writeStatus(st *status.Status) {
	c := s.c
	s.hmu.Lock()
	if s.done {
		s.hmu.Unlock()
		return
	}
	s.done = true
	var hdr, tr []hpack.HeaderField
	if !s.hdrSent {
		s.hdrSent = true
		if len(s.header) > 0 {
			hdr = s.headerFields()
		} else {
			tr = append(tr, hpack.HeaderField{Name: ":status", Value: "200"},
				hpack.HeaderField{Name: "content-type", Value: contentTypeOf(s.subtype)})
		}
	}
	tr = appendStatus(tr, st)
	trailer := s.trailer
	if len(st.Proto().GetDetails()) > 0 && len(trailer["grpc-status-details-bin"]) > 0 {
		// The status's own details win over the handler's trailer.
		trailer = trailer.Copy()
		delete(trailer, "grpc-status-details-bin")
	}
	tr = appendMD(tr, trailer)
	s.hmu.Unlock()

	s.mu.Lock()
	reset, halfClosed := s.reset, s.recvEOF
	s.mu.Unlock()
	if reset {
		return
	}
	if (hdr != nil && !c.headerListFits(hdr)) || !c.headerListFits(tr) {
		c.resetStream(s.id, http2.ErrCodeInternal)
		return
	}
	c.startWrite()
	if hdr != nil {
		c.putHeaders(s.id, hdr, false)
	}
	c.putHeaders(s.id, tr, true)
	if !halfClosed {
		c.putRST(s.id, http2.ErrCodeNo)
	}
	if c.endWrite() == nil {
		c.resetStrikes.Store(true)
	}
}

// appendStatus adds grpc-status, grpc-message and the status details.
func appendStatus(hf []hpack.HeaderField, st *status.Status) []hpack.HeaderField {
	hf = append(hf, hpack.HeaderField{Name: "grpc-status", Value: strconv.Itoa(int(st.Code()))},
		hpack.HeaderField{Name: "grpc-message", Value: encodeGrpcMessage(st.Message())})
	if p := st.Proto(); len(p.GetDetails()) > 0 {
		if b, err := proto.Marshal(p); err == nil {
			hf = append(hf, hpack.HeaderField{Name: "grpc-status-details-bin", Value: encodeBinHeader(b)})
		}
	}
	return hf
}

// appendMD adds metadata, as grpc-go does: reserved names are dropped,
// -bin values base64-encoded.
func appendMD(hf []hpack.HeaderField, md metadata.MD) []hpack.HeaderField {
	for k, vv := range md {
		if reservedHeader(k) {
			continue
		}
		for _, v := range vv {
			hf = append(hf, hpack.HeaderField{Name: k, Value: encodeMetadataHeader(k, v)})
		}
	}
	return hf
}
