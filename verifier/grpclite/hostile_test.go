package grpclite

import (
	"bytes"
	"fmt"
	"math"
	"strings"
	"sync/atomic"
	"testing"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// TestHostileInput drives a server with frames no client should send: each
// case ends as HTTP/2 says, and the connection, once closed, leaves no
// goroutine behind.
func TestHostileInput(t *testing.T) {
	var running, most atomic.Int32
	h := &impl{bidi: heldBidi(&running, &most)}
	s := NewServer(Options{MaxHeaderListSize: 1024, MaxConcurrentStreams: 4})
	s.RegisterService(&testDesc, h)
	addr := serve(t, s)
	// Each case runs on a goroutine of its own.
	base := runtimeGoroutines() + 1

	raw := func(rc *rawClient, typ http2.FrameType, flags http2.Flags, id uint32, payload []byte) {
		rc.write(func(fr *http2.Framer) error { return fr.WriteRawFrame(typ, flags, id, payload) })
	}
	// bigHeaders are n bytes of metadata in fields of 200 (a single
	// value past the list size is an HPACK error of its own).
	bigHeaders := func(rc *rawClient, n int) []byte {
		var hf []hpack.HeaderField
		for i := 0; i < n; i += 200 {
			hf = append(hf, hpack.HeaderField{Name: fmt.Sprintf("x-big-%d", i), Value: strings.Repeat("~|", 100)})
		}
		return rc.block(mBidi, hf...)
	}

	for _, tc := range []struct {
		name string
		run  func(t *testing.T, rc *rawClient)
	}{
		{"SETTINGS of a bad length", func(t *testing.T, rc *rawClient) {
			raw(rc, http2.FrameSettings, 0, 0, []byte{0, 3, 0, 0, 0})
			rc.expectGoAway(http2.ErrCodeFrameSize)
		}},
		{"a frame beyond 16 KiB", func(t *testing.T, rc *rawClient) {
			raw(rc, http2.FramePing, 0, 0, make([]byte, 20000))
			rc.expectGoAway(http2.ErrCodeFrameSize)
		}},
		{"garbage after the preface", func(t *testing.T, rc *rawClient) {
			_, _ = rc.nc.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
		}},
		{"HEADERS on an even stream", func(t *testing.T, rc *rawClient) {
			rc.open(2, mBidi, false)
			rc.expectGoAway(http2.ErrCodeProtocol)
		}},
		{"stream ids going down", func(t *testing.T, rc *rawClient) {
			rc.open(5, mBidi, false)
			rc.open(3, mBidi, false)
			rc.expectGoAway(http2.ErrCodeProtocol)
		}},
		{"DATA on an idle stream", func(t *testing.T, rc *rawClient) {
			rc.write(func(fr *http2.Framer) error { return fr.WriteData(7, false, []byte{0, 0, 0, 0, 0}) })
			rc.expectGoAway(http2.ErrCodeProtocol)
		}},
		{"RST_STREAM on an idle stream", func(t *testing.T, rc *rawClient) {
			rc.write(func(fr *http2.Framer) error { return fr.WriteRSTStream(9, http2.ErrCodeCancel) })
			rc.expectGoAway(http2.ErrCodeProtocol)
		}},
		{"PUSH_PROMISE from the client", func(t *testing.T, rc *rawClient) {
			rc.open(1, mBidi, false)
			raw(rc, http2.FramePushPromise, http2.FlagPushPromiseEndHeaders, 1, []byte{0, 0, 0, 2})
			rc.expectGoAway(http2.ErrCodeProtocol)
		}},
		{"headers past the list size", func(t *testing.T, rc *rawClient) {
			b := bigHeaders(rc, 1100)
			rc.write(func(fr *http2.Framer) error {
				return fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: b, EndHeaders: true})
			})
			rc.expectRST(1, http2.ErrCodeFrameSize)
			rc.expectAlive()
		}},
		{"headers far past the list size", func(t *testing.T, rc *rawClient) {
			b := bigHeaders(rc, 12000)
			rc.write(func(fr *http2.Framer) error {
				return fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: b, EndHeaders: true})
			})
			rc.expectGoAway(http2.ErrCodeProtocol)
		}},
		{"a CONTINUATION flood", func(t *testing.T, rc *rawClient) {
			b := rc.block(mBidi)
			rc.write(func(fr *http2.Framer) error {
				return fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: b})
			})
			var more bytes.Buffer
			enc := hpack.NewEncoder(&more)
			for i := range 200 {
				more.Reset()
				_ = enc.WriteField(hpack.HeaderField{Name: "x-flood", Value: strings.Repeat(string(rune('a'+i%26)), 200)})
				frag := append([]byte(nil), more.Bytes()...)
				rc.write(func(fr *http2.Framer) error { return fr.WriteContinuation(1, false, frag) })
			}
			rc.expectGoAway(http2.ErrCodeProtocol)
		}},
		{"the connection window past 2^31-1", func(t *testing.T, rc *rawClient) {
			rc.write(func(fr *http2.Framer) error { return fr.WriteWindowUpdate(0, math.MaxInt32) })
			rc.expectGoAway(http2.ErrCodeFlowControl)
		}},
		{"a stream window past 2^31-1", func(t *testing.T, rc *rawClient) {
			rc.open(1, mBidi, false)
			rc.write(func(fr *http2.Framer) error { return fr.WriteWindowUpdate(1, math.MaxInt32) })
			rc.expectRST(1, http2.ErrCodeFlowControl)
			rc.expectAlive()
		}},
		{"DATA past the stream window", func(t *testing.T, rc *rawClient) {
			rc.open(1, mBidi, false)
			// The handler never reads: 65535 bytes are all it may be sent.
			chunk := make([]byte, 16384)
			for range 5 {
				rc.write(func(fr *http2.Framer) error { return fr.WriteData(1, false, chunk) })
			}
			rc.expectRST(1, http2.ErrCodeFlowControl)
			rc.expectAlive()
		}},
		{"DATA after END_STREAM", func(t *testing.T, rc *rawClient) {
			rc.open(1, mBidi, true)
			rc.write(func(fr *http2.Framer) error { return fr.WriteData(1, false, []byte{0}) })
			rc.expectRST(1, http2.ErrCodeStreamClosed)
			rc.expectAlive()
		}},
		{"rapid reset", func(t *testing.T, rc *rawClient) {
			for id := uint32(1); id < 4000; id += 2 {
				rc.open(id, mBidi, false)
				rc.write(func(fr *http2.Framer) error { return fr.WriteRSTStream(id, http2.ErrCodeCancel) })
			}
			rc.expectAlive()
			if n := most.Load(); n > 4 {
				t.Errorf("%d handlers ran at once, beyond MaxConcurrentStreams 4", n)
			}
		}},
		{"streams beyond the limit", func(t *testing.T, rc *rawClient) {
			for id := uint32(1); id <= 9; id += 2 {
				rc.open(id, mBidi, false)
			}
			rc.expectRST(9, http2.ErrCodeRefusedStream)
			rc.expectAlive()
		}},
		{"empty DATA frames and SETTINGS, many", func(t *testing.T, rc *rawClient) {
			rc.open(1, mBidi, false)
			go func() {
				for range 5000 {
					rc.write(func(fr *http2.Framer) error { return fr.WriteData(1, false, nil) })
					rc.write(func(fr *http2.Framer) error { return fr.WriteSettings() })
				}
				rc.write(func(fr *http2.Framer) error { return fr.WritePing(false, [8]byte{'d', 'o', 'n', 'e'}) })
			}()
			rc.next("the last PING's ack", func(f http2.Frame) bool {
				p, ok := f.(*http2.PingFrame)
				return ok && p.IsAck() && p.Data == [8]byte{'d', 'o', 'n', 'e'}
			})
		}},
		{"a bad content-type", func(t *testing.T, rc *rawClient) {
			rc.hbuf.Reset()
			for _, f := range []hpack.HeaderField{{Name: ":method", Value: "POST"}, {Name: ":scheme", Value: "http"},
				{Name: ":path", Value: mBidi}, {Name: ":authority", Value: "x"}, {Name: "content-type", Value: "text/html"}} {
				_ = rc.enc.WriteField(f)
			}
			b := append([]byte(nil), rc.hbuf.Bytes()...)
			rc.write(func(fr *http2.Framer) error {
				return fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: b, EndHeaders: true, EndStream: true})
			})
			f := rc.next("the answer", func(f http2.Frame) bool { _, ok := f.(*http2.MetaHeadersFrame); return ok }).(*http2.MetaHeadersFrame)
			if f.PseudoValue("status") != "415" || !f.StreamEnded() {
				t.Errorf("answer %v", f.Fields)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			most.Store(0)
			rc := rawDial(t, addr)
			tc.run(t, rc)
			rc.nc.Close()
			settleGoroutines(t, base)
		})
	}
	// What was served is gone, too.
	if n := len(liteConns(s)); n != 0 {
		t.Errorf("%d connections still tracked", n)
	}
}
