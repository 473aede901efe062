package grpclite

import (
	"context"
	"encoding/binary"
	"errors"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/clearance/clearance/internal/testkit"
)

// waitTaken waits until the stream's handler has taken everything queued
// for it (a Recv is then past what was sent).
func waitTaken(t testing.TB, ctx context.Context, st *stream) {
	t.Helper()
	for {
		st.mu.Lock()
		n := st.q.n
		st.mu.Unlock()
		if n == 0 {
			return
		}
		if ctx.Err() != nil {
			t.Fatal("the handler never took what was sent")
		}
		time.Sleep(time.Millisecond)
	}
}

// rawDialWith is rawDial with the client's own SETTINGS.
func rawDialWith(t testing.TB, addr string, settings ...http2.Setting) *rawClient {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	rc := newRawClient(t, nc)
	if _, err := nc.Write([]byte(http2.ClientPreface)); err != nil {
		t.Fatal(err)
	}
	rc.write(func(fr *http2.Framer) error { return fr.WriteSettings(settings...) })
	return rc
}

// grpcStatusOf waits for stream id's trailers and returns their grpc-status.
func (rc *rawClient) grpcStatusOf(id uint32) string {
	rc.t.Helper()
	f := rc.next("trailers", func(f http2.Frame) bool {
		h, ok := f.(*http2.MetaHeadersFrame)
		return ok && h.StreamID == id && h.StreamEnded()
	}).(*http2.MetaHeadersFrame)
	return f.PseudoValue("status") + "/" + headerValue(f.Fields, "grpc-status")
}

func headerValue(fs []hpack.HeaderField, name string) string {
	for _, f := range fs {
		if f.Name == name {
			return f.Value
		}
	}
	return ""
}

// interruptedHandler hands its stream out, then does what act says and
// returns code once act fails with ErrInterrupted.
func interruptedHandler(streams chan<- grpc.ServerStream, act func(grpc.ServerStream) error, code codes.Code) *impl {
	return &impl{bidi: func(ss grpc.ServerStream) error {
		streams <- ss
		if err := act(ss); !errors.Is(err, ErrInterrupted) {
			return status.Errorf(codes.Internal, "not interrupted: %v", err)
		}
		return status.Error(code, "the handler's own status")
	}}
}

// A Recv with half a message arrived, and a Send that waits for window the
// peer never gives, both end at Interrupt, and the handler's status goes out.
func TestInterruptEndsWaits(t *testing.T) {
	t.Parallel()
	t.Run("half a message", func(t *testing.T) {
		t.Parallel()
		streams := make(chan grpc.ServerStream, 1)
		s := NewServer(Options{})
		s.RegisterService(&testDesc, interruptedHandler(streams, func(ss grpc.ServerStream) error {
			return ss.RecvMsg(new(wrapperspb.StringValue))
		}, codes.Aborted))
		rc := rawDial(t, serve(t, s))
		ctx := ctxT(t)
		rc.open(1, mBidi, false)
		msg := binary.BigEndian.AppendUint32([]byte{0}, 1000)
		rc.write(func(fr *http2.Framer) error { return fr.WriteData(1, false, append(msg, "ten bytes."...)) })
		st := (<-streams).(*stream)
		waitTaken(t, ctx, st)
		if !Interrupt(st) {
			t.Fatal("Interrupt refused a grpclite stream")
		}
		if got := rc.grpcStatusOf(1); got != "/10" && got != "200/10" {
			t.Errorf("status %q, want ABORTED (10)", got)
		}
	})
	t.Run("no window", func(t *testing.T) {
		t.Parallel()
		streams := make(chan grpc.ServerStream, 1)
		s := NewServer(Options{})
		s.RegisterService(&testDesc, interruptedHandler(streams, func(ss grpc.ServerStream) error {
			return ss.SendMsg(wrapperspb.String(strings.Repeat("x", 1000)))
		}, codes.PermissionDenied))
		rc := rawDialWith(t, serve(t, s), http2.Setting{ID: http2.SettingInitialWindowSize, Val: 0})
		rc.open(1, mBidi, false)
		st := (<-streams).(*stream)
		// The response's headers need no window; its message waits.
		rc.next("response headers", func(f http2.Frame) bool {
			h, ok := f.(*http2.MetaHeadersFrame)
			return ok && h.StreamID == 1 && !h.StreamEnded()
		})
		Interrupt(st)
		if got := rc.grpcStatusOf(1); got != "/7" {
			t.Errorf("status %q, want PERMISSION_DENIED (7) in trailers", got)
		}
	})
}

func TestSettingsOutOfRange(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		s    http2.Setting
		want http2.ErrCode
	}{
		{http2.Setting{ID: http2.SettingMaxFrameSize, Val: 0}, http2.ErrCodeProtocol},
		{http2.Setting{ID: http2.SettingMaxFrameSize, Val: 16383}, http2.ErrCodeProtocol},
		{http2.Setting{ID: http2.SettingMaxFrameSize, Val: 1 << 24}, http2.ErrCodeProtocol},
		{http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1 << 31}, http2.ErrCodeFlowControl},
	} {
		s := NewServer(Options{})
		s.RegisterService(&testDesc, &impl{})
		rc := rawDialWith(t, serve(t, s), c.s)
		if g := rc.expectGoAway(c.want); g == nil {
			t.Errorf("%v: no GOAWAY", c.s)
		}
	}
}

// A PING ack nobody asked for, with the drain ping's data, does not stop
// the connection's service.
func TestUnaskedDrainAck(t *testing.T) {
	t.Parallel()
	s := NewServer(Options{})
	s.RegisterService(&testDesc, &impl{bidi: func(ss grpc.ServerStream) error { return status.Error(codes.OK, "") }})
	rc := rawDial(t, serve(t, s))
	rc.write(func(fr *http2.Framer) error { return fr.WritePing(true, drainPingData) })
	rc.open(1, mBidi, true)
	if got := rc.grpcStatusOf(1); !strings.HasSuffix(got, "/0") {
		t.Errorf("a call after an unasked drain ack: status %q, want OK", got)
	}
}

// What a message's prefix announces is not allocated before it arrives: 64
// calls announcing 1 MiB each and sending nothing more hold far less.
func TestAnnouncedLengthNotAllocated(t *testing.T) {
	const calls = 64
	streams := make(chan grpc.ServerStream, calls)
	s := NewServer(Options{})
	s.RegisterService(&testDesc, &impl{bidi: func(ss grpc.ServerStream) error {
		streams <- ss
		return ss.RecvMsg(new(wrapperspb.StringValue))
	}})
	rc := rawDial(t, serve(t, s))
	ctx := ctxT(t)
	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	prefix := binary.BigEndian.AppendUint32([]byte{0}, 1<<20)
	for i := range calls {
		id := uint32(2*i + 1)
		rc.open(id, mBidi, false)
		rc.write(func(fr *http2.Framer) error { return fr.WriteData(id, false, prefix) })
	}
	for range calls {
		st := (<-streams).(*stream)
		waitTaken(t, ctx, st)
	}
	var after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&after)
	if grew := int64(after.HeapInuse) - int64(before.HeapInuse); grew > 16<<20 {
		t.Errorf("heap grew %d MiB for %d calls that announced 1 MiB each and sent 5 bytes", grew>>20, calls)
	}
}

// A Send that waits for window the client never returns fails after
// SendWindowTimeout with DeadlineExceeded; the stream is reset, the handler
// returns, and the connection serves on.
func TestSendWindowTimeout(t *testing.T) {
	t.Parallel()
	sent := make(chan error, 1)
	s := NewServer(Options{SendWindowTimeout: 200 * time.Millisecond})
	s.RegisterService(&testDesc, &impl{bidi: func(ss grpc.ServerStream) error {
		err := ss.SendMsg(wrapperspb.String(strings.Repeat("x", 1000)))
		sent <- err
		return err
	}})
	rc := rawDialWith(t, serve(t, s), http2.Setting{ID: http2.SettingInitialWindowSize, Val: 0})
	rc.open(1, mBidi, false)
	rc.expectRST(1, http2.ErrCodeCancel)
	select {
	case err := <-sent:
		if status.Code(err) != codes.DeadlineExceeded {
			t.Errorf("Send: %v, want DeadlineExceeded", err)
		}
	case <-ctxT(t).Done():
		t.Fatal("the Send never returned")
	}
	rc.expectAlive()
}

// A client that reads slowly is not cut off: each window it returns starts
// the wait again, however long the whole message takes.
func TestSendWindowTimeoutSlowReader(t *testing.T) {
	t.Parallel()
	// Long enough that a loaded machine's pause between two of the
	// updates below does not outlast it.
	const timeout = time.Second
	s := NewServer(Options{SendWindowTimeout: timeout})
	s.RegisterService(&testDesc, &impl{bidi: func(ss grpc.ServerStream) error {
		return ss.SendMsg(wrapperspb.String(strings.Repeat("x", 1000)))
	}})
	rc := rawDialWith(t, serve(t, s), http2.Setting{ID: http2.SettingInitialWindowSize, Val: 0})
	rc.open(1, mBidi, false)
	// 1,008 bytes of message, 100 at a time, one every quarter of the
	// timeout: the whole takes about two and a half timeouts.
	go func() {
		for range 11 {
			time.Sleep(timeout / 4)
			rc.write(func(fr *http2.Framer) error { return fr.WriteWindowUpdate(1, 100) })
		}
	}()
	if got := rc.grpcStatusOf(1); !strings.HasSuffix(got, "/0") {
		t.Errorf("status %q, want OK: a slow reader was cut off", got)
	}
}

// A client that gives all the window there is and then stops reading its
// socket, while it keeps sending frames (so that the connection never
// looks quiet), fails the write that fills the socket once
// SendWindowTimeout passes: the connection is closed, and the Send and its
// handler end.
func TestWriteStallClosesConnection(t *testing.T) {
	t.Parallel()
	sent := make(chan error, 1)
	s := NewServer(Options{SendWindowTimeout: 300 * time.Millisecond})
	s.RegisterService(&testDesc, &impl{bidi: func(ss grpc.ServerStream) error {
		err := ss.SendMsg(wrapperspb.String(strings.Repeat("x", 64<<20)))
		sent <- err
		return err
	}})
	nc, err := net.Dial("tcp", serve(t, s))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	_ = nc.(*net.TCPConn).SetReadBuffer(4096)
	rc := newRawClient(t, nc)
	if _, err := nc.Write([]byte(http2.ClientPreface)); err != nil {
		t.Fatal(err)
	}
	rc.write(func(fr *http2.Framer) error {
		return fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1<<31 - 1})
	})
	rc.write(func(fr *http2.Framer) error { return fr.WriteWindowUpdate(0, 1<<31-1-65535) })
	rc.open(1, mBidi, false)
	stop := make(chan struct{})
	t.Cleanup(func() { close(stop) })
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
				rc.write(func(fr *http2.Framer) error { return fr.WritePriority(1, http2.PriorityParam{Weight: 1}) })
			}
		}
	}()
	select {
	case err := <-sent:
		if status.Code(err) != codes.Unavailable {
			t.Errorf("Send: %v, want Unavailable", err)
		}
	case <-ctxT(t).Done():
		t.Fatal("the Send never returned: a client that stopped reading holds it")
	}
	testkit.Eventually(t, 10*time.Second, "the connection closed", func() bool { return len(liteConns(s)) == 0 })
}
