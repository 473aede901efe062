package grpclite

import (
	"encoding/binary"
	"sync"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// Frames are written by whichever goroutine produces them, under c.wmu,
// into a buffer from bufPool that goes back once it is flushed: an idle
// connection holds no write buffer.

const maxPooledBuf = 64 << 10

var bufPool = sync.Pool{New: func() any {
	b := make([]byte, 0, 16<<10+512)
	return &b
}}

// encoders write header blocks without the dynamic table (its size is set
// to 0 once, which any decoder accepts), so that they hold no state for a
// connection and can be shared.
type encoder struct {
	enc *hpack.Encoder
	out *[]byte
}

func (e *encoder) Write(p []byte) (int, error) {
	*e.out = append(*e.out, p...)
	return len(p), nil
}

var encPool = sync.Pool{New: func() any {
	e := &encoder{}
	e.enc = hpack.NewEncoder(e)
	e.enc.SetMaxDynamicTableSize(0)
	return e
}}

// startWrite takes the write lock and a buffer.
func (c *conn) startWrite() {
	c.wmu.Lock()
	c.out = bufPool.Get().(*[]byte)
	*c.out = (*c.out)[:0]
}

// flush writes what the buffer holds, within SendWindowTimeout. c.wmu is
// held.
func (c *conn) flush() error { return c.flushWithin(c.o.SendWindowTimeout) }

// flushWithin writes what the buffer holds. A peer that takes none of it
// within d (it stopped reading its socket, yet may still send frames
// that keep the connection alive) fails the write, and with it the
// connection: the write lock it holds would otherwise keep every stream's
// writes, a keepalive ping and an interrupted call's end waiting for as
// long as the peer likes. c.wmu is held.
func (c *conn) flushWithin(d time.Duration) error {
	if c.werr != nil {
		*c.out = (*c.out)[:0]
		return c.werr
	}
	if len(*c.out) == 0 {
		return nil
	}
	_ = c.nc.SetWriteDeadline(time.Now().Add(d))
	_, err := c.nc.Write(*c.out)
	*c.out = (*c.out)[:0]
	if err != nil {
		c.werr = err
	}
	return err
}

// endWrite flushes, gives the buffer back and releases the lock. A write
// that fails ends the connection.
func (c *conn) endWrite() error {
	err := c.flush()
	if cap(*c.out) <= maxPooledBuf {
		bufPool.Put(c.out)
	}
	c.out = nil
	c.wmu.Unlock()
	if err != nil {
		c.close(err)
	}
	return err
}

// tryStartWrite is startWrite unless another write holds the lock.
func (c *conn) tryStartWrite() bool {
	if !c.wmu.TryLock() {
		return false
	}
	c.out = bufPool.Get().(*[]byte)
	*c.out = (*c.out)[:0]
	return true
}

func (c *conn) frameHeader(length int, t http2.FrameType, flags http2.Flags, id uint32) {
	*c.out = append(*c.out, byte(length>>16), byte(length>>8), byte(length), byte(t), byte(flags),
		byte(id>>24)&0x7f, byte(id>>16), byte(id>>8), byte(id))
}

func (c *conn) putSettings(ss ...http2.Setting) {
	c.frameHeader(6*len(ss), http2.FrameSettings, 0, 0)
	for _, s := range ss {
		*c.out = binary.BigEndian.AppendUint16(*c.out, uint16(s.ID))
		*c.out = binary.BigEndian.AppendUint32(*c.out, s.Val)
	}
}

func (c *conn) putSettingsAck() { c.frameHeader(0, http2.FrameSettings, http2.FlagSettingsAck, 0) }

func (c *conn) putPing(ack bool, data [8]byte) {
	var flags http2.Flags
	if ack {
		flags = http2.FlagPingAck
	}
	c.frameHeader(8, http2.FramePing, flags, 0)
	*c.out = append(*c.out, data[:]...)
}

func (c *conn) putWindowUpdate(id, incr uint32) {
	c.frameHeader(4, http2.FrameWindowUpdate, 0, id)
	*c.out = binary.BigEndian.AppendUint32(*c.out, incr&0x7fffffff)
}

func (c *conn) putRST(id uint32, code http2.ErrCode) {
	c.frameHeader(4, http2.FrameRSTStream, 0, id)
	*c.out = binary.BigEndian.AppendUint32(*c.out, uint32(code))
}

func (c *conn) putGoAway(last uint32, code http2.ErrCode, debug []byte) {
	c.frameHeader(8+len(debug), http2.FrameGoAway, 0, 0)
	*c.out = binary.BigEndian.AppendUint32(*c.out, last&0x7fffffff)
	*c.out = binary.BigEndian.AppendUint32(*c.out, uint32(code))
	*c.out = append(*c.out, debug...)
}

// putHeaders encodes a header block as HEADERS and, beyond the peer's
// frame size, CONTINUATION frames.
func (c *conn) putHeaders(id uint32, fields []hpack.HeaderField, endStream bool) {
	start := len(*c.out)
	*c.out = append(*c.out, make([]byte, 9)...)
	e := encPool.Get().(*encoder)
	e.out = c.out
	for _, f := range fields {
		_ = e.enc.WriteField(f) // writes to memory
	}
	e.out = nil
	encPool.Put(e)
	block := (*c.out)[start+9:]
	var flags http2.Flags
	if endStream {
		flags = http2.FlagHeadersEndStream
	}
	max := maxFrameSize
	if len(block) <= max {
		b := *c.out
		*c.out = b[:start]
		c.frameHeader(len(block), http2.FrameHeaders, flags|http2.FlagHeadersEndHeaders, id)
		*c.out = b
		return
	}
	rest := append([]byte(nil), block...)
	*c.out = (*c.out)[:start]
	t := http2.FrameHeaders
	for len(rest) > 0 {
		n := min(len(rest), max)
		f := flags
		if n == len(rest) {
			f |= http2.FlagHeadersEndHeaders
		}
		c.frameHeader(n, t, f, id)
		*c.out = append(*c.out, rest[:n]...)
		rest = rest[n:]
		t, flags = http2.FrameContinuation, 0
	}
}

// putData frames p as DATA frames of at most 16 KiB (the least a peer may
// accept),
// flushing whenever the buffer passes WriteBufferSize.
func (c *conn) putData(id uint32, p []byte, endStream bool) error {
	for {
		n := min(len(p), maxFrameSize)
		var flags http2.Flags
		if endStream && n == len(p) {
			flags = http2.FlagDataEndStream
		}
		c.frameHeader(n, http2.FrameData, flags, id)
		*c.out = append(*c.out, p[:n]...)
		p = p[n:]
		if len(p) == 0 {
			return nil
		}
		if len(*c.out) >= c.o.WriteBufferSize {
			if err := c.flush(); err != nil {
				return err
			}
		}
	}
}

// writeWindowUpdate returns n bytes of window to the peer.
func (c *conn) writeWindowUpdate(id, n uint32) {
	c.startWrite()
	c.putWindowUpdate(id, n)
	_ = c.endWrite()
}

// writeRST resets a stream.
func (c *conn) writeRST(id uint32, code http2.ErrCode) {
	c.startWrite()
	c.putRST(id, code)
	_ = c.endWrite()
}

// keepalivePing pings the peer unless a write is under way (which, if it
// is stuck, keepalive ends by closing the connection). The write is
// bounded by KeepaliveTimeout.
func (c *conn) keepalivePing() {
	if !c.tryStartWrite() {
		return
	}
	c.putPing(false, keepalivePingData)
	err := c.flushWithin(c.o.KeepaliveTimeout)
	bufPool.Put(c.out)
	c.out = nil
	c.wmu.Unlock()
	if err != nil {
		c.close(err)
	}
}
