package grpclite

import (
	"bytes"
	"errors"
	"io"
	"net"
	"runtime"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
)

// rawClient speaks HTTP/2 frame by frame to a server without creds.
type rawClient struct {
	t    testing.TB
	nc   net.Conn
	wmu  sync.Mutex
	fr   *http2.Framer
	enc  *hpack.Encoder
	hbuf bytes.Buffer
}

func rawDial(t testing.TB, addr string) *rawClient {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	rc := newRawClient(t, nc)
	rc.preface()
	return rc
}

func newRawClient(t testing.TB, nc net.Conn) *rawClient {
	rc := &rawClient{t: t, nc: nc, fr: http2.NewFramer(nc, nc)}
	rc.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	rc.enc = hpack.NewEncoder(&rc.hbuf)
	return rc
}

func (rc *rawClient) preface() {
	rc.t.Helper()
	if _, err := rc.nc.Write([]byte(http2.ClientPreface)); err != nil {
		rc.t.Fatal(err)
	}
	rc.write(func(fr *http2.Framer) error { return fr.WriteSettings() })
}

// write writes frames; errors are ignored (the server may have closed).
func (rc *rawClient) write(f func(fr *http2.Framer) error) {
	rc.wmu.Lock()
	defer rc.wmu.Unlock()
	_ = f(rc.fr)
}

// block encodes a call's headers and extra fields.
func (rc *rawClient) block(path string, extra ...hpack.HeaderField) []byte {
	rc.hbuf.Reset()
	for _, f := range append([]hpack.HeaderField{
		{Name: ":method", Value: "POST"}, {Name: ":scheme", Value: "http"}, {Name: ":path", Value: path},
		{Name: ":authority", Value: "localhost"}, {Name: "content-type", Value: "application/grpc"}, {Name: "te", Value: "trailers"},
	}, extra...) {
		_ = rc.enc.WriteField(f)
	}
	return append([]byte(nil), rc.hbuf.Bytes()...)
}

func (rc *rawClient) open(id uint32, path string, endStream bool, extra ...hpack.HeaderField) {
	b := rc.block(path, extra...)
	rc.write(func(fr *http2.Framer) error {
		return fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: b, EndHeaders: true, EndStream: endStream})
	})
}

// next reads frames until match says yes; it fails the test if the
// connection ends first.
func (rc *rawClient) next(what string, match func(http2.Frame) bool) http2.Frame {
	rc.t.Helper()
	_ = rc.nc.SetReadDeadline(time.Now().Add(20 * time.Second))
	for {
		f, err := rc.fr.ReadFrame()
		if err != nil {
			rc.t.Fatalf("waiting for %s: %v", what, err)
		}
		if match(f) {
			return f
		}
	}
}

func (rc *rawClient) expectGoAway(code http2.ErrCode) *http2.GoAwayFrame {
	rc.t.Helper()
	f := rc.next("GOAWAY", func(f http2.Frame) bool { _, ok := f.(*http2.GoAwayFrame); return ok }).(*http2.GoAwayFrame)
	if f.ErrCode != code {
		rc.t.Errorf("GOAWAY %v (%q), want %v", f.ErrCode, f.DebugData(), code)
	}
	return f
}

func (rc *rawClient) expectRST(id uint32, code http2.ErrCode) {
	rc.t.Helper()
	f := rc.next("RST_STREAM", func(f http2.Frame) bool {
		if g, ok := f.(*http2.GoAwayFrame); ok {
			rc.t.Fatalf("GOAWAY %v (%q) where RST_STREAM %v was due", g.ErrCode, g.DebugData(), code)
		}
		_, ok := f.(*http2.RSTStreamFrame)
		return ok
	}).(*http2.RSTStreamFrame)
	if f.StreamID != id || f.ErrCode != code {
		rc.t.Errorf("RST_STREAM %d %v, want %d %v", f.StreamID, f.ErrCode, id, code)
	}
}

// expectAlive pings and waits for the answer.
func (rc *rawClient) expectAlive() {
	rc.t.Helper()
	rc.write(func(fr *http2.Framer) error { return fr.WritePing(false, [8]byte{'a', 'l', 'i', 'v', 'e'}) })
	rc.next("PING ack", func(f http2.Frame) bool {
		if g, ok := f.(*http2.GoAwayFrame); ok {
			rc.t.Fatalf("GOAWAY %v (%q)", g.ErrCode, g.DebugData())
		}
		p, ok := f.(*http2.PingFrame)
		return ok && p.IsAck() && p.Data == [8]byte{'a', 'l', 'i', 'v', 'e'}
	})
}

// expectClosed reads until the server ends the connection.
func (rc *rawClient) expectClosed() {
	rc.t.Helper()
	_ = rc.nc.SetReadDeadline(time.Now().Add(20 * time.Second))
	_, err := io.Copy(io.Discard, rc.nc)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		rc.t.Fatal("connection still open")
	}
}

func listen(t testing.TB) net.Listener {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func credsTLS(t testing.TB) credentials.TransportCredentials {
	return credentials.NewTLS(testPKI(t).server)
}

func dialNoCleanup(t testing.TB, addr string) *grpc.ClientConn {
	t.Helper()
	cc, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(credentials.NewTLS(testPKI(t).client)))
	if err != nil {
		t.Fatal(err)
	}
	return cc
}

func runtimeGoroutines() int { return runtime.NumGoroutine() }
