package grpclite

import (
	"context"
	"errors"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/encoding/gzip"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

func TestUnaryMetadataBothWays(t *testing.T) {
	t.Parallel()
	h := &impl{unary: func(ctx context.Context, in *wrapperspb.StringValue) (*wrapperspb.StringValue, error) {
		md, _ := metadata.FromIncomingContext(ctx)
		p, _ := peer.FromContext(ctx)
		cn := ""
		if ti, ok := p.AuthInfo.(credentials.TLSInfo); ok && len(ti.State.PeerCertificates) > 0 {
			cn = ti.State.PeerCertificates[0].Subject.CommonName
		}
		m, _ := grpc.Method(ctx)
		if err := grpc.SetHeader(ctx, metadata.Pairs("x-head", "h1", "x-head-bin", "\x00\xff")); err != nil {
			return nil, err
		}
		if err := grpc.SetTrailer(ctx, metadata.Pairs("x-trail", "t1")); err != nil {
			return nil, err
		}
		got := strings.Join([]string{in.Value, first(md, "x-req"), first(md, "x-req-bin"), first(md, ":authority"), cn, m, p.Addr.Network()}, "|")
		return wrapperspb.String(got), nil
	}}
	_, addr := newTLSServer(t, h, Options{})
	cc := dial(t, addr)
	ctx := metadata.AppendToOutgoingContext(ctxT(t), "x-req", "r1", "x-req-bin", "\x01\x02")
	var out wrapperspb.StringValue
	var head, trail metadata.MD
	if err := cc.Invoke(ctx, mUnary, wrapperspb.String("hi"), &out, grpc.Header(&head), grpc.Trailer(&trail)); err != nil {
		t.Fatal(err)
	}
	want := strings.Join([]string{"hi", "r1", "\x01\x02", "passthrough", "device-1", mUnary, "tcp"}, "|")
	if out.Value != want && !strings.HasPrefix(out.Value, "hi|r1|\x01\x02|") {
		t.Errorf("handler saw %q, want %q", out.Value, want)
	}
	if got := strings.Split(out.Value, "|"); got[4] != "device-1" || got[5] != mUnary {
		t.Errorf("handler saw %q", out.Value)
	}
	if first(head, "x-head") != "h1" || first(head, "x-head-bin") != "\x00\xff" || first(head, "content-type") != "application/grpc" {
		t.Errorf("headers %v", head)
	}
	if first(trail, "x-trail") != "t1" {
		t.Errorf("trailers %v", trail)
	}
}

func first(md metadata.MD, k string) string {
	if v := md.Get(k); len(v) > 0 {
		return v[0]
	}
	return ""
}

func TestUnaryErrorWithDetails(t *testing.T) {
	t.Parallel()
	msg := "denied: 100% ünïcode\nand a newline"
	detail, err := anypb.New(wrapperspb.String("posture: disk not encrypted"))
	if err != nil {
		t.Fatal(err)
	}
	h := &impl{unary: func(ctx context.Context, in *wrapperspb.StringValue) (*wrapperspb.StringValue, error) {
		st := status.New(codes.PermissionDenied, msg)
		st, err := st.WithDetails(wrapperspb.String("posture: disk not encrypted"))
		if err != nil {
			return nil, err
		}
		_ = grpc.SetTrailer(ctx, metadata.Pairs("x-after", "yes"))
		return nil, st.Err()
	}}
	_, addr := newTLSServer(t, h, Options{})
	cc := dial(t, addr)
	var trail metadata.MD
	err = cc.Invoke(ctxT(t), mUnary, wrapperspb.String("x"), new(wrapperspb.StringValue), grpc.Trailer(&trail))
	st := status.Convert(err)
	if st.Code() != codes.PermissionDenied || st.Message() != msg {
		t.Fatalf("status %v %q", st.Code(), st.Message())
	}
	if d := st.Proto().GetDetails(); len(d) != 1 || !proto.Equal(d[0], detail) {
		t.Errorf("details %v", d)
	}
	if first(trail, "x-after") != "yes" {
		t.Errorf("trailers %v", trail)
	}
}

func TestDeadlinePropagates(t *testing.T) {
	t.Parallel()
	h := &impl{unary: func(ctx context.Context, in *wrapperspb.StringValue) (*wrapperspb.StringValue, error) {
		d, ok := ctx.Deadline()
		if !ok {
			return nil, status.Error(codes.FailedPrecondition, "no deadline")
		}
		return wrapperspb.String(d.UTC().Format(time.RFC3339Nano)), nil
	}}
	_, addr := newTLSServer(t, h, Options{})
	cc := dial(t, addr)
	want := time.Now().Add(time.Hour)
	ctx, cancel := context.WithDeadline(context.Background(), want)
	defer cancel()
	var out wrapperspb.StringValue
	if err := cc.Invoke(ctx, mUnary, wrapperspb.String("x"), &out); err != nil {
		t.Fatal(err)
	}
	got, err := time.Parse(time.RFC3339Nano, out.Value)
	if err != nil {
		t.Fatal(err)
	}
	// The deadline travels as a timeout (rounded up to its unit), so it
	// comes out near the client's, not on it.
	if d := got.Sub(want).Abs(); d > time.Minute {
		t.Errorf("server deadline %v, client's %v", got, want)
	}

	// An expired deadline never reaches a handler.
	h.unary = func(ctx context.Context, in *wrapperspb.StringValue) (*wrapperspb.StringValue, error) {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	ctx, cancel = context.WithTimeout(ctxT(t), time.Millisecond)
	defer cancel()
	if err := cc.Invoke(ctx, mUnary, wrapperspb.String("x"), &out); status.Code(err) != codes.DeadlineExceeded {
		t.Errorf("short deadline: %v", err)
	}
}

func TestClientCancelCancelsHandler(t *testing.T) {
	t.Parallel()
	started, ended := make(chan struct{}), make(chan error, 1)
	h := &impl{bidi: func(ss grpc.ServerStream) error {
		close(started)
		<-ss.Context().Done()
		ended <- ss.Context().Err()
		return status.Error(codes.Aborted, "gone")
	}}
	_, addr := newTLSServer(t, h, Options{})
	cc := dial(t, addr)
	ctx, cancel := context.WithCancel(ctxT(t))
	cs, err := cc.NewStream(ctx, bidiDesc, mBidi)
	if err != nil {
		t.Fatal(err)
	}
	if err := cs.SendMsg(wrapperspb.String("x")); err != nil {
		t.Fatal(err)
	}
	<-started
	cancel()
	if err := <-ended; !errors.Is(err, context.Canceled) {
		t.Errorf("handler's context: %v", err)
	}
}

// A status the handler returns after its Recv failed is the status the
// client sees (grpc-go's own server writes Canceled when Recv fails).
func TestHandlerStatusWins(t *testing.T) {
	t.Parallel()
	h := &impl{bidi: func(ss grpc.ServerStream) error {
		err := ss.RecvMsg(new(wrapperspb.StringValue))
		if status.Code(err) != codes.ResourceExhausted {
			return status.Errorf(codes.Internal, "recv: %v", err)
		}
		return status.Error(codes.Aborted, "handler's own verdict")
	}}
	_, addr := newTLSServer(t, h, Options{MaxRecvMsgSize: 10})
	cc := dial(t, addr)
	cs, err := cc.NewStream(ctxT(t), bidiDesc, mBidi)
	if err != nil {
		t.Fatal(err)
	}
	_ = cs.SendMsg(wrapperspb.String(strings.Repeat("x", 100)))
	err = cs.RecvMsg(new(wrapperspb.StringValue))
	if st := status.Convert(err); st.Code() != codes.Aborted || st.Message() != "handler's own verdict" {
		t.Errorf("client saw %v", err)
	}
}

func TestLargeMessagesBeyondTheWindow(t *testing.T) {
	t.Parallel()
	big := strings.Repeat("0123456789abcdef", 1<<16) // 1 MiB
	h := &impl{
		bidi: func(ss grpc.ServerStream) error {
			for {
				in := new(wrapperspb.StringValue)
				if err := ss.RecvMsg(in); err == io.EOF {
					return nil
				} else if err != nil {
					return err
				}
				if err := ss.SendMsg(wrapperspb.String(in.Value + "!")); err != nil {
					return err
				}
			}
		},
		server: func(in *wrapperspb.StringValue, ss grpc.ServerStream) error {
			for i := range 3 {
				if err := ss.SendMsg(wrapperspb.String(big + string(rune('a'+i)))); err != nil {
					return err
				}
			}
			return nil
		},
	}
	_, addr := newTLSServer(t, h, Options{WindowSize: 64 << 10, MaxRecvMsgSize: 8 << 20})
	cc := dial(t, addr, grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(8<<20)))

	t.Run("bidi", func(t *testing.T) {
		cs, err := cc.NewStream(ctxT(t), bidiDesc, mBidi)
		if err != nil {
			t.Fatal(err)
		}
		for i := range 3 {
			msg := big + strings.Repeat("x", i)
			if err := cs.SendMsg(wrapperspb.String(msg)); err != nil {
				t.Fatal(err)
			}
			var out wrapperspb.StringValue
			if err := cs.RecvMsg(&out); err != nil {
				t.Fatal(err)
			}
			if out.Value != msg+"!" {
				t.Fatalf("echo %d: %d bytes, want %d", i, len(out.Value), len(msg)+1)
			}
		}
		_ = cs.CloseSend()
		if err := cs.RecvMsg(new(wrapperspb.StringValue)); err != io.EOF {
			t.Errorf("end: %v", err)
		}
	})
	t.Run("server-streaming", func(t *testing.T) {
		cs, err := cc.NewStream(ctxT(t), serverDesc, mServer)
		if err != nil {
			t.Fatal(err)
		}
		if err := cs.SendMsg(wrapperspb.String("go")); err != nil {
			t.Fatal(err)
		}
		_ = cs.CloseSend()
		for i := range 3 {
			var out wrapperspb.StringValue
			if err := cs.RecvMsg(&out); err != nil {
				t.Fatal(err)
			}
			if out.Value != big+string(rune('a'+i)) {
				t.Fatalf("message %d: %d bytes", i, len(out.Value))
			}
		}
		if err := cs.RecvMsg(new(wrapperspb.StringValue)); err != io.EOF {
			t.Errorf("end: %v", err)
		}
	})
}

func TestMaxRecvMsgSize(t *testing.T) {
	t.Parallel()
	h := &impl{unary: func(ctx context.Context, in *wrapperspb.StringValue) (*wrapperspb.StringValue, error) {
		return in, nil
	}}
	_, addr := newTLSServer(t, h, Options{MaxRecvMsgSize: 1024})
	cc := dial(t, addr)
	err := cc.Invoke(ctxT(t), mUnary, wrapperspb.String(strings.Repeat("x", 2000)), new(wrapperspb.StringValue))
	st := status.Convert(err)
	if st.Code() != codes.ResourceExhausted || st.Message() != "grpc: received message larger than max (2003 vs. 1024)" {
		t.Errorf("got %v", err)
	}
	// The connection still serves.
	var out wrapperspb.StringValue
	if err := cc.Invoke(ctxT(t), mUnary, wrapperspb.String("small"), &out); err != nil || out.Value != "small" {
		t.Errorf("after: %v %q", err, out.Value)
	}
}

func TestUnknownServiceAndMethod(t *testing.T) {
	t.Parallel()
	h := &impl{unary: func(ctx context.Context, in *wrapperspb.StringValue) (*wrapperspb.StringValue, error) {
		return in, nil
	}}
	_, addr := newTLSServer(t, h, Options{})
	cc := dial(t, addr)
	for method, want := range map[string]string{
		"/no.Such/Thing":            "unknown service no.Such",
		"/" + testService + "/Nope": "unknown method Nope for service " + testService,
		"nonsense":                  `malformed method name: "nonsense"`,
		mUnary[1:]:                  `malformed method name: "` + mUnary[1:] + `"`,
	} {
		err := cc.Invoke(ctxT(t), method, wrapperspb.String("x"), new(wrapperspb.StringValue))
		if st := status.Convert(err); st.Code() != codes.Unimplemented || st.Message() != want {
			t.Errorf("%s: %v, want Unimplemented %q", method, err, want)
		}
	}
	// No decompressor is installed, as in a grpc-go server without one
	// registered.
	err := cc.Invoke(ctxT(t), mUnary, wrapperspb.String("x"), new(wrapperspb.StringValue), grpc.UseCompressor(gzip.Name))
	if st := status.Convert(err); st.Code() != codes.Unimplemented || st.Message() != `grpc: Decompressor is not installed for grpc-encoding "gzip"` {
		t.Errorf("gzip: %v", err)
	}
}

func TestInterceptorOrder(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var log []string
	note := func(s string) { mu.Lock(); log = append(log, s); mu.Unlock() }
	unary := func(name string) grpc.UnaryServerInterceptor {
		return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
			note(name + ">" + info.FullMethod)
			defer note("<" + name)
			return handler(ctx, req)
		}
	}
	stream := func(name string) grpc.StreamServerInterceptor {
		return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
			note(name + ">" + info.FullMethod)
			defer note("<" + name)
			return handler(srv, ss)
		}
	}
	h := &impl{
		unary: func(ctx context.Context, in *wrapperspb.StringValue) (*wrapperspb.StringValue, error) {
			note("unary")
			return in, nil
		},
		bidi: func(ss grpc.ServerStream) error { note("bidi"); return nil },
	}
	_, addr := newTLSServer(t, h, Options{
		UnaryInterceptors:  []grpc.UnaryServerInterceptor{unary("u1"), unary("u2"), unary("u3")},
		StreamInterceptors: []grpc.StreamServerInterceptor{stream("s1"), stream("s2")},
	})
	cc := dial(t, addr)
	if err := cc.Invoke(ctxT(t), mUnary, wrapperspb.String("x"), new(wrapperspb.StringValue)); err != nil {
		t.Fatal(err)
	}
	cs, err := cc.NewStream(ctxT(t), bidiDesc, mBidi)
	if err != nil {
		t.Fatal(err)
	}
	if err := cs.RecvMsg(new(wrapperspb.StringValue)); err != io.EOF {
		t.Fatal(err)
	}
	want := []string{"u1>" + mUnary, "u2>" + mUnary, "u3>" + mUnary, "unary", "<u3", "<u2", "<u1",
		"s1>" + mBidi, "s2>" + mBidi, "bidi", "<s2", "<s1"}
	mu.Lock()
	defer mu.Unlock()
	if strings.Join(log, " ") != strings.Join(want, " ") {
		t.Errorf("order:\n got %v\nwant %v", log, want)
	}
}
