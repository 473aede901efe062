package grpclite

import (
	"encoding/binary"
	"errors"
	"io"
	"testing"

	"golang.org/x/net/http2"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// wakeHandler serves Bidi: it hands its stream out, then echoes every
// message and counts on woken each Recv that Wake interrupted.
func wakeHandler(streams chan<- grpc.ServerStream, woken chan<- struct{}) *impl {
	return &impl{bidi: func(ss grpc.ServerStream) error {
		streams <- ss
		for {
			m := new(wrapperspb.StringValue)
			err := ss.RecvMsg(m)
			switch {
			case errors.Is(err, ErrWoken):
				woken <- struct{}{}
				continue
			case err == io.EOF:
				return nil
			case err != nil:
				return err
			}
			if err := ss.SendMsg(m); err != nil {
				return err
			}
		}
	}}
}

func TestWakeInterruptsAWaitingRecv(t *testing.T) {
	t.Parallel()
	streams, woken := make(chan grpc.ServerStream, 1), make(chan struct{}, 4)
	_, addr := newTLSServer(t, wakeHandler(streams, woken), Options{})
	ctx := ctxT(t)
	cs, err := dial(t, addr).NewStream(ctx, bidiDesc, mBidi)
	if err != nil {
		t.Fatal(err)
	}
	// Headers alone open the call; the handler then waits in Recv.
	if err := cs.SendMsg(wrapperspb.String("first")); err != nil {
		t.Fatal(err)
	}
	ss := <-streams
	echo := new(wrapperspb.StringValue)
	if err := cs.RecvMsg(echo); err != nil || echo.GetValue() != "first" {
		t.Fatalf("echo %q, %v", echo.GetValue(), err)
	}

	if !Wake(ss) || !Wakeable(ss) {
		t.Fatal("a grpclite stream is not wakeable")
	}
	select {
	case <-woken:
	case <-ctx.Done():
		t.Fatal("Recv was not woken")
	}
	// The stream goes on: the next message arrives whole.
	if err := cs.SendMsg(wrapperspb.String("second")); err != nil {
		t.Fatal(err)
	}
	if err := cs.RecvMsg(echo); err != nil || echo.GetValue() != "second" {
		t.Fatalf("echo after the wake %q, %v", echo.GetValue(), err)
	}
	if err := cs.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if err := cs.RecvMsg(echo); err != io.EOF {
		t.Fatalf("after CloseSend: %v", err)
	}
	if n := len(woken); n != 0 {
		t.Errorf("one Wake woke %d more Recvs", n)
	}
}

func TestWakeOtherStreams(t *testing.T) {
	t.Parallel()
	var ss grpc.ServerStream = &grpc.GenericServerStream[wrapperspb.StringValue, wrapperspb.StringValue]{}
	if Wake(ss) || Wakeable(ss) {
		t.Error("Wake claims a stream that is not grpclite's")
	}
}

// A Wake while a message is half read leaves that message whole: the wake
// is taken by the next wait for a message's first byte.
func TestWakeNeverSplitsAMessage(t *testing.T) {
	t.Parallel()
	streams, woken := make(chan grpc.ServerStream, 1), make(chan struct{}, 4)
	s := NewServer(Options{})
	s.RegisterService(&testDesc, wakeHandler(streams, woken))
	rc := rawDial(t, serve(t, s))
	ctx := ctxT(t)

	payload, err := proto.Marshal(wrapperspb.String("split across two frames"))
	if err != nil {
		t.Fatal(err)
	}
	msg := binary.BigEndian.AppendUint32([]byte{0}, uint32(len(payload)))
	msg = append(msg, payload...)
	half := len(msg) / 2

	rc.open(1, mBidi, false)
	rc.write(func(fr *http2.Framer) error { return fr.WriteData(1, false, msg[:half]) })
	st := (<-streams).(*stream)
	// Until the handler has taken the first half, its Recv is past the
	// message's first byte.
	waitTaken(t, ctx, st)
	Wake(st)
	rc.write(func(fr *http2.Framer) error { return fr.WriteData(1, false, msg[half:]) })

	got := rc.next("the echo", func(f http2.Frame) bool {
		d, ok := f.(*http2.DataFrame)
		return ok && d.StreamID == 1 && len(d.Data()) > 0
	}).(*http2.DataFrame)
	echo := new(wrapperspb.StringValue)
	if err := proto.Unmarshal(got.Data()[5:], echo); err != nil || echo.GetValue() != "split across two frames" {
		t.Fatalf("echo %q, %v", echo.GetValue(), err)
	}
	// The wake was kept for the next wait.
	select {
	case <-woken:
	case <-ctx.Done():
		t.Fatal("the wake was lost")
	}
}
