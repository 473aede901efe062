package devicewire

import (
	"testing"
	"time"

	"golang.org/x/net/http2"
)

// TestMaxFrameSizeOutOfRange: SETTINGS_MAX_FRAME_SIZE below 16,384 (or over
// 2^24-1) is a connection error of type PROTOCOL_ERROR (RFC 9113 6.5.2).
// Taken as the size of the frames to write, 0 made the server append empty
// CONTINUATION frames without end and the process grow until it died.
func TestMaxFrameSizeOutOfRange(t *testing.T) {
	e := start(t)
	before := e.rssKB()
	for _, v := range []uint32{0, 1, 16383, 1 << 24} {
		r := e.dialRaw(e.dev)
		r.preface(http2.Setting{ID: http2.SettingMaxFrameSize, Val: v})
		// A call whose refusal the connection's reader writes itself.
		r.headers(1, true, reqFields("/no.Such/Method")...)
		var goAway *http2.GoAwayFrame
		_ = r.drain(10*time.Second, func(f http2.Frame) {
			if g, ok := f.(*http2.GoAwayFrame); ok && goAway == nil {
				goAway = g
			}
		})
		if goAway == nil || goAway.ErrCode != http2.ErrCodeProtocol {
			t.Errorf("MAX_FRAME_SIZE %d: GOAWAY %v, want PROTOCOL_ERROR", v, goAway)
		}
	}
	if !e.alive() {
		t.Fatal("verifier died")
	}
	if after := e.rssKB(); after > before+64<<10 {
		t.Errorf("RSS %d kB -> %d kB after four refused connections", before, after)
	}
}
