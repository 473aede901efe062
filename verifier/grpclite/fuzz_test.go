package grpclite

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"log/slog"
	"net"
	"runtime"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// FuzzServeConn feeds bytes, after the client preface and SETTINGS, to a
// served connection over net.Pipe. Whatever they are, the connection must
// end once the peer hangs up, and the server must not panic.
func FuzzServeConn(f *testing.F) {
	for _, seed := range fuzzSeeds() {
		f.Add(seed)
	}
	echo := &impl{
		unary: func(ctx context.Context, in *wrapperspb.StringValue) (*wrapperspb.StringValue, error) { return in, nil },
		bidi: func(ss grpc.ServerStream) error {
			for {
				in := new(wrapperspb.StringValue)
				if err := ss.RecvMsg(in); err != nil {
					if err == io.EOF {
						return nil
					}
					return err
				}
				if err := ss.SendMsg(in); err != nil {
					return err
				}
			}
		},
		server: func(in *wrapperspb.StringValue, ss grpc.ServerStream) error { return ss.SendMsg(in) },
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		s := NewServer(Options{
			ConnectionTimeout: time.Second, KeepaliveTime: time.Second, KeepaliveTimeout: time.Second,
			MaxConcurrentStreams: 8, MaxRecvMsgSize: 1 << 16, MaxHeaderListSize: 8 << 10,
			Logger: slog.New(slog.DiscardHandler),
		})
		s.RegisterService(&testDesc, echo)
		cli, srv := net.Pipe()
		done := make(chan struct{})
		go func() { defer close(done); s.serveConn(srv) }()
		go func() { _, _ = io.Copy(io.Discard, cli) }()
		_ = cli.SetWriteDeadline(time.Now().Add(2 * time.Second))
		_, _ = cli.Write([]byte(http2.ClientPreface))
		_, _ = cli.Write([]byte{0, 0, 0, byte(http2.FrameSettings), 0, 0, 0, 0, 0})
		_, _ = cli.Write(data)
		cli.Close()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			buf := make([]byte, 1<<20)
			n := runtime.Stack(buf, true)
			t.Fatalf("the connection did not end after the peer hung up:\n%s", buf[:n])
		}
		s.Stop()
	})
}

// fuzzSeeds are valid exchanges: calls of each kind, resets, pings,
// window updates, headers split into CONTINUATION frames.
func fuzzSeeds() [][]byte {
	var out [][]byte
	msg := func(v string) []byte {
		b, _ := proto.Marshal(wrapperspb.String(v))
		return append(binary.BigEndian.AppendUint32([]byte{0}, uint32(len(b))), b...)
	}
	build := func(do func(fr *http2.Framer, block func(path string, md ...string) []byte)) {
		var buf, hbuf bytes.Buffer
		fr := http2.NewFramer(&buf, nil)
		enc := hpack.NewEncoder(&hbuf)
		block := func(path string, md ...string) []byte {
			hbuf.Reset()
			for _, f := range []hpack.HeaderField{{Name: ":method", Value: "POST"}, {Name: ":scheme", Value: "http"},
				{Name: ":path", Value: path}, {Name: ":authority", Value: "x"}, {Name: "content-type", Value: "application/grpc"},
				{Name: "te", Value: "trailers"}, {Name: "grpc-timeout", Value: "5S"}} {
				_ = enc.WriteField(f)
			}
			for i := 0; i+1 < len(md); i += 2 {
				_ = enc.WriteField(hpack.HeaderField{Name: md[i], Value: md[i+1]})
			}
			return append([]byte(nil), hbuf.Bytes()...)
		}
		do(fr, block)
		out = append(out, buf.Bytes())
	}
	build(func(fr *http2.Framer, block func(string, ...string) []byte) {
		_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block(mUnary), EndHeaders: true})
		_ = fr.WriteData(1, true, msg("hello"))
	})
	build(func(fr *http2.Framer, block func(string, ...string) []byte) {
		_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block(mBidi, "x-md", "v", "x-md-bin", "AAE"), EndHeaders: true})
		_ = fr.WriteData(1, false, msg("one"))
		_ = fr.WritePing(false, [8]byte{1})
		_ = fr.WriteWindowUpdate(0, 1000)
		_ = fr.WriteWindowUpdate(1, 1000)
		_ = fr.WriteData(1, false, msg("two"))
		_ = fr.WriteData(1, true, nil)
	})
	build(func(fr *http2.Framer, block func(string, ...string) []byte) {
		_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block(mBidi), EndHeaders: true})
		_ = fr.WriteRSTStream(1, http2.ErrCodeCancel)
		_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, BlockFragment: block(mServer), EndHeaders: true})
		_ = fr.WriteData(3, true, msg("s"))
		_ = fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1 << 20}, http2.Setting{ID: http2.SettingMaxFrameSize, Val: 1 << 15})
		_ = fr.WriteSettingsAck()
		_ = fr.WriteGoAway(3, http2.ErrCodeNo, nil)
	})
	build(func(fr *http2.Framer, block func(string, ...string) []byte) {
		b := block(mUnary, "x-long", string(bytes.Repeat([]byte("v"), 300)))
		_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: b[:10]})
		_ = fr.WriteContinuation(1, false, b[10:40])
		_ = fr.WriteContinuation(1, true, b[40:])
		_ = fr.WriteData(1, false, msg("split")[:3])
		_ = fr.WriteDataPadded(1, true, msg("split")[3:], make([]byte, 7))
	})
	build(func(fr *http2.Framer, block func(string, ...string) []byte) {
		// Misspelled paths, refused before any handler runs.
		_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block(mServer[1:]), EndHeaders: true})
		_ = fr.WriteData(1, true, msg("no slash"))
		_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, BlockFragment: block("/" + mServer), EndHeaders: true, EndStream: true})
		_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 5, BlockFragment: block(mServer), EndHeaders: true})
		_ = fr.WriteData(5, true, msg("s"))
	})
	return out
}
