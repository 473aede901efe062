package grpclite

import (
	"context"
	"errors"
	"io"
	"math"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/reflection"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/clearance/clearance/internal/rawh2"
	"github.com/clearance/clearance/internal/testkit"
)

// heldBidi answers each Bidi stream's headers and holds it until its
// context ends.
func heldBidi(running *atomic.Int32, most *atomic.Int32) func(ss grpc.ServerStream) error {
	return func(ss grpc.ServerStream) error {
		n := running.Add(1)
		defer running.Add(-1)
		for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
		}
		if err := ss.SendHeader(metadata.MD{}); err != nil {
			return err
		}
		<-ss.Context().Done()
		return ss.Context().Err()
	}
}

func TestMaxConcurrentStreams(t *testing.T) {
	t.Parallel()
	t.Run("a rude client is refused beyond the limit", func(t *testing.T) {
		var running, most atomic.Int32
		_, addr := newTLSServer(t, &impl{bidi: heldBidi(&running, &most)}, Options{MaxConcurrentStreams: 2})
		rc, err := rawh2.Dial(ctxT(t), nil, addr, testPKI(t).client)
		if err != nil {
			t.Fatal(err)
		}
		defer rc.Close()
		for range 3 {
			if err := rc.Open(mBidi, "localhost", nil); err != nil {
				t.Fatal(err)
			}
		}
		if got := rc.WaitAnswered(ctxT(t), 3); got.Accepted != 2 || got.Refused != 1 {
			t.Errorf("counts %+v, want 2 accepted and 1 refused", got)
		}
		if most.Load() > 2 {
			t.Errorf("%d handlers ran at once", most.Load())
		}
	})
	t.Run("a grpc-go client queues beyond the limit", func(t *testing.T) {
		release := make(chan struct{})
		var bidiDone atomic.Bool
		started := make(chan struct{})
		h := &impl{
			bidi: func(ss grpc.ServerStream) error {
				close(started)
				<-release
				bidiDone.Store(true)
				return nil
			},
			unary: func(ctx context.Context, in *wrapperspb.StringValue) (*wrapperspb.StringValue, error) {
				if !bidiDone.Load() {
					return nil, status.Error(codes.FailedPrecondition, "ran beside the held stream")
				}
				return in, nil
			},
		}
		_, addr := newTLSServer(t, h, Options{MaxConcurrentStreams: 1})
		cc := dial(t, addr)
		cs, err := cc.NewStream(ctxT(t), bidiDesc, mBidi)
		if err != nil {
			t.Fatal(err)
		}
		_ = cs.SendMsg(wrapperspb.String("x"))
		<-started
		unary := make(chan error, 1)
		go func() { unary <- cc.Invoke(ctxT(t), mUnary, wrapperspb.String("q"), new(wrapperspb.StringValue)) }()
		close(release)
		if err := cs.RecvMsg(new(wrapperspb.StringValue)); err != io.EOF {
			t.Errorf("held stream: %v", err)
		}
		if err := <-unary; err != nil {
			t.Errorf("queued call: %v", err)
		}
	})
}

// liteConns are the server's connections, for tests that wait on their
// state.
func liteConns(s *Server) []*conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*conn
	for c := range s.conns {
		out = append(out, c)
	}
	return out
}

func TestGracefulStop(t *testing.T) {
	t.Parallel()
	started, release := make(chan struct{}), make(chan struct{})
	h := &impl{bidi: func(ss grpc.ServerStream) error {
		close(started)
		<-release
		return ss.SendMsg(wrapperspb.String("finished"))
	}}
	s, addr := newTLSServer(t, h, Options{})
	cc := dial(t, addr)
	cs, err := cc.NewStream(ctxT(t), bidiDesc, mBidi)
	if err != nil {
		t.Fatal(err)
	}
	_ = cs.SendMsg(wrapperspb.String("x"))
	<-started

	stopped := make(chan struct{})
	go func() { s.GracefulStop(); close(stopped) }()
	// Once the client answered the drain ping, the connection takes no
	// new streams.
	testkit.Eventually(t, 10*time.Second, "the second GOAWAY", func() bool {
		cs := liteConns(s)
		if len(cs) != 1 {
			return false
		}
		cs[0].mu.Lock()
		defer cs[0].mu.Unlock()
		return cs[0].goAway
	})
	err = cc.Invoke(ctxT(t), mUnary, wrapperspb.String("late"), new(wrapperspb.StringValue))
	if status.Code(err) != codes.Unavailable {
		t.Errorf("a call after GracefulStop: %v", err)
	}
	select {
	case <-stopped:
		t.Fatal("GracefulStop returned with a call in flight")
	default:
	}
	close(release)
	var out wrapperspb.StringValue
	if err := cs.RecvMsg(&out); err != nil || out.Value != "finished" {
		t.Errorf("the call in flight: %v %q", err, out.Value)
	}
	if err := cs.RecvMsg(&out); err != io.EOF {
		t.Errorf("its end: %v", err)
	}
	<-stopped
}

func TestStopEndsEverything(t *testing.T) {
	base := runtimeGoroutines()
	var running, most atomic.Int32
	ended := make(chan error, 1)
	h := &impl{bidi: func(ss grpc.ServerStream) error {
		err := heldBidi(&running, &most)(ss)
		ended <- err
		return err
	}}
	s := NewServer(Options{Creds: credsTLS(t)})
	s.RegisterService(&testDesc, h)
	l := listen(t)
	served := make(chan error, 1)
	go func() { served <- s.Serve(l) }()
	cc := dialNoCleanup(t, l.Addr().String())
	cs, err := cc.NewStream(ctxT(t), bidiDesc, mBidi)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cs.Header(); err != nil {
		t.Fatal(err)
	}
	s.Stop()
	if err := <-ended; !errors.Is(err, context.Canceled) {
		t.Errorf("handler: %v", err)
	}
	if err := cs.RecvMsg(new(wrapperspb.StringValue)); status.Code(err) != codes.Unavailable {
		t.Errorf("client: %v", err)
	}
	if err := <-served; err != nil {
		t.Errorf("Serve: %v", err)
	}
	if err := s.Serve(listen(t)); !errors.Is(err, grpc.ErrServerStopped) {
		t.Errorf("Serve after Stop: %v", err)
	}
	cc.Close()
	settleGoroutines(t, base)
}

func TestKeepaliveClosesASilentPeer(t *testing.T) {
	t.Parallel()
	s := NewServer(Options{KeepaliveTime: 20 * time.Millisecond, KeepaliveTimeout: 20 * time.Millisecond})
	addr := serve(t, s)
	rc := rawDial(t, addr)
	// The peer reads (so the server's writes go through) but never
	// answers: the server pings, then gives up on it.
	pinged := false
	for {
		f, err := rc.fr.ReadFrame()
		if err != nil {
			if !pinged {
				t.Errorf("closed before a ping: %v", err)
			}
			return
		}
		if p, ok := f.(*http2.PingFrame); ok && !p.IsAck() {
			pinged = true
		}
		if _, ok := f.(*http2.GoAwayFrame); ok {
			t.Errorf("unexpected GOAWAY")
		}
	}
}

func TestPingEnforcement(t *testing.T) {
	t.Parallel()
	t.Run("raw frames", func(t *testing.T) {
		s := NewServer(Options{})
		rc := rawDial(t, serve(t, s))
		for range 5 {
			rc.write(func(fr *http2.Framer) error { return fr.WritePing(false, [8]byte{1}) })
		}
		ga := rc.expectGoAway(http2.ErrCodeEnhanceYourCalm)
		if string(ga.DebugData()) != "too_many_pings" {
			t.Errorf("debug data %q", ga.DebugData())
		}
		rc.expectClosed()
	})
	t.Run("rawh2 over TLS", func(t *testing.T) {
		_, addr := newTLSServer(t, &impl{}, Options{PingMinTime: time.Hour, PermitWithoutStream: true})
		rc, err := rawh2.Dial(ctxT(t), nil, addr, testPKI(t).client)
		if err != nil {
			t.Fatal(err)
		}
		defer rc.Close()
		for range 5 {
			if err := rc.Ping(); err != nil {
				break
			}
		}
		if err := rc.WaitClosed(ctxT(t)); err != nil {
			t.Fatal(err)
		}
		if got := rc.Counts().GoAway; got != "ENHANCE_YOUR_CALM" {
			t.Errorf("GOAWAY %q", got)
		}
	})
}

func TestHealthAndReflection(t *testing.T) {
	t.Parallel()
	s := NewServer(Options{Creds: credsTLS(t)})
	hs := health.NewServer()
	healthpb.RegisterHealthServer(s, hs)
	reflection.Register(s)
	s.RegisterService(&testDesc, &impl{})
	cc := dial(t, serve(t, s))

	hc := healthpb.NewHealthClient(cc)
	res, err := hc.Check(ctxT(t), &healthpb.HealthCheckRequest{})
	if err != nil || res.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("Check: %v %v", res, err)
	}
	hs.SetServingStatus("agent", healthpb.HealthCheckResponse_SERVING)
	w, err := hc.Watch(ctxT(t), &healthpb.HealthCheckRequest{Service: "agent"})
	if err != nil {
		t.Fatal(err)
	}
	if r, err := w.Recv(); err != nil || r.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("Watch: %v %v", r, err)
	}
	hs.SetServingStatus("agent", healthpb.HealthCheckResponse_NOT_SERVING)
	if r, err := w.Recv(); err != nil || r.Status != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("Watch after the change: %v %v", r, err)
	}

	rs, err := reflectionpb.NewServerReflectionClient(cc).ServerReflectionInfo(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := rs.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatal(err)
	}
	r, err := rs.Recv()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, svc := range r.GetListServicesResponse().GetService() {
		names[svc.Name] = true
	}
	for _, want := range []string{"grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection", testService} {
		if !names[want] {
			t.Errorf("reflection lists %v, not %s", names, want)
		}
	}
}

func TestConnectionTimeout(t *testing.T) {
	t.Parallel()
	t.Run("no preface", func(t *testing.T) {
		s := NewServer(Options{ConnectionTimeout: 50 * time.Millisecond})
		nc, err := net.Dial("tcp", serve(t, s))
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		rc := newRawClient(t, nc)
		rc.expectClosed()
	})
	t.Run("no TLS handshake", func(t *testing.T) {
		_, addr := newTLSServer(t, &impl{}, Options{ConnectionTimeout: 50 * time.Millisecond})
		nc, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		newRawClient(t, nc).expectClosed()
	})
	t.Run("Stop does not wait for a handshake", func(t *testing.T) {
		s := NewServer(Options{Creds: credsTLS(t)})
		l := listen(t)
		served := make(chan error, 1)
		go func() { served <- s.Serve(l) }()
		nc, err := net.Dial("tcp", l.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		testkit.Eventually(t, 10*time.Second, "the connection in its handshake", func() bool {
			s.mu.Lock()
			defer s.mu.Unlock()
			return len(s.raws) == 1
		})
		s.Stop()
		newRawClient(t, nc).expectClosed()
		if err := <-served; err != nil {
			t.Error(err)
		}
	})
}

// A client that never answers the drain PING still gets the final GOAWAY,
// naming the last call served, once drainAckWait has passed; a call it
// opens after that is not served, the call in flight finishes, and the
// connection then ends, so GracefulStop returns.
func TestGracefulStopUnansweredPing(t *testing.T) {
	t.Parallel()
	started, release := make(chan struct{}, 2), make(chan struct{})
	var calls atomic.Int32
	s := NewServer(Options{drainAckWait: 100 * time.Millisecond})
	s.RegisterService(&testDesc, &impl{bidi: func(ss grpc.ServerStream) error {
		calls.Add(1)
		started <- struct{}{}
		<-release
		return status.Error(codes.OK, "")
	}})
	rc := rawDial(t, serve(t, s))
	rc.open(1, mBidi, false)
	<-started

	stopped := make(chan struct{})
	go func() { s.GracefulStop(); close(stopped) }()
	first := rc.expectGoAway(http2.ErrCodeNo)
	if first.LastStreamID != math.MaxInt32 {
		t.Fatalf("first GOAWAY names stream %d, want 2^31-1", first.LastStreamID)
	}
	// The PING is read and left unanswered.
	final := rc.expectGoAway(http2.ErrCodeNo)
	if final.LastStreamID != 1 {
		t.Errorf("final GOAWAY names stream %d, want 1, the call served", final.LastStreamID)
	}
	rc.open(3, mBidi, true)
	close(release)
	if got := rc.grpcStatusOf(1); !strings.HasSuffix(got, "/0") {
		t.Errorf("the call in flight: status %q, want OK", got)
	}
	select {
	case <-stopped:
	case <-ctxT(t).Done():
		t.Fatal("GracefulStop did not return once the last call ended")
	}
	if n := calls.Load(); n != 1 {
		t.Errorf("%d calls served, want 1: a call after the final GOAWAY was served", n)
	}
}

// The final GOAWAY a drain's timer sends names no call that is then left
// unserved: calls opened back to back while it fires (each with many
// headers, so that parsing them takes a while) are, up to the stream it
// names, each answered, and none above it is served.
func TestDrainTimerNamesOnlyServedCalls(t *testing.T) {
	t.Parallel()
	extra := make([]hpack.HeaderField, 4000)
	for i := range extra {
		extra[i] = hpack.HeaderField{Name: "x-a", Value: "b"}
	}
	for round := range 60 {
		started, release := make(chan struct{}, 1), make(chan struct{})
		var mu sync.Mutex
		served := map[uint32]bool{}
		s := NewServer(Options{drainAckWait: time.Duration(1+round%10) * time.Millisecond})
		s.RegisterService(&testDesc, &impl{bidi: func(ss grpc.ServerStream) error {
			id := ss.(*stream).id
			mu.Lock()
			served[id] = true
			mu.Unlock()
			if id == 1 {
				started <- struct{}{}
				<-release
			}
			return nil
		}})
		rc := rawDial(t, serve(t, s))
		rc.open(1, mBidi, false)
		<-started
		var stop atomic.Bool
		opened := make(chan struct{})
		go func() {
			defer close(opened)
			for id := uint32(3); !stop.Load(); id += 2 {
				rc.open(id, mBidi, true, extra...)
			}
		}()
		go s.GracefulStop()
		rc.expectGoAway(http2.ErrCodeNo)
		last := rc.expectGoAway(http2.ErrCodeNo).LastStreamID
		stop.Store(true)
		<-opened
		close(release)
		answered := map[uint32]bool{}
		_ = rc.nc.SetReadDeadline(time.Now().Add(10 * time.Second))
		for {
			f, err := rc.fr.ReadFrame()
			if err != nil {
				break // the connection ended with its last call
			}
			switch f := f.(type) {
			case *http2.MetaHeadersFrame:
				if f.StreamEnded() {
					answered[f.StreamID] = true
				}
			case *http2.RSTStreamFrame:
				answered[f.StreamID] = true
			}
		}
		mu.Lock()
		for id := uint32(3); id <= last; id += 2 {
			if !answered[id] && !served[id] {
				t.Fatalf("round %d: stream %d, named by the final GOAWAY (last %d), was neither served nor reset", round, id, last)
			}
		}
		for id := range served {
			if id > last {
				t.Fatalf("round %d: stream %d served, above the final GOAWAY's %d", round, id, last)
			}
		}
		mu.Unlock()
	}
}

// A protocol error after a graceful stop's final GOAWAY is answered with a
// GOAWAY that names no later stream than it did: the calls opened after it
// were not served.
func TestGoAwayNeverGrows(t *testing.T) {
	t.Parallel()
	started, release := make(chan struct{}, 1), make(chan struct{})
	s := NewServer(Options{drainAckWait: 10 * time.Millisecond})
	s.RegisterService(&testDesc, &impl{bidi: func(ss grpc.ServerStream) error {
		started <- struct{}{}
		<-release
		return nil
	}})
	t.Cleanup(func() { close(release) })
	rc := rawDial(t, serve(t, s))
	rc.open(1, mBidi, false)
	<-started
	go s.GracefulStop()
	rc.expectGoAway(http2.ErrCodeNo)
	if last := rc.expectGoAway(http2.ErrCodeNo).LastStreamID; last != 1 {
		t.Fatalf("final GOAWAY names stream %d, want 1", last)
	}
	rc.open(3, mBidi, false)
	rc.write(func(fr *http2.Framer) error { return fr.WriteWindowUpdate(0, math.MaxInt32) })
	if g := rc.expectGoAway(http2.ErrCodeFlowControl); g.LastStreamID != 1 {
		t.Errorf("GOAWAY after the protocol error names stream %d, want 1 (it may not grow)", g.LastStreamID)
	}
}
