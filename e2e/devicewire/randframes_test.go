package devicewire

import (
	"encoding/binary"
	"math/rand"
	"testing"
	"time"
)

// TestRandomFrames: 400 device connections, each a preface and SETTINGS
// and then 200 frames of random type (0-10), flags, small stream ids and
// payload (sometimes a valid header block or gRPC message prefix); the
// verifier must stay up.
func TestRandomFrames(t *testing.T) {
	e := start(t)
	e.snapshot("before")
	rng := rand.New(rand.NewSource(1))
	for c := 0; c < 400; c++ {
		r := e.dialRaw(e.dev)
		r.preface()
		go func() { _ = r.drain(3*time.Second, nil) }()
		hb := r.block(reqFields(connectPath)...)
		for i := 0; i < 200; i++ {
			typ := byte(rng.Intn(11))
			flags := byte(rng.Intn(256))
			id := uint32(rng.Intn(12))
			var p []byte
			switch rng.Intn(4) {
			case 0:
				p = append([]byte(nil), hb...)
			case 1:
				p = make([]byte, 5+rng.Intn(20))
				binary.BigEndian.PutUint32(p[1:5], uint32(rng.Intn(1<<20)))
			default:
				p = make([]byte, rng.Intn(64))
				rng.Read(p)
			}
			if typ == 1 && rng.Intn(2) == 0 {
				flags |= 0x4
			}
			r.wmu.Lock()
			hdr := []byte{byte(len(p) >> 16), byte(len(p) >> 8), byte(len(p)), typ, flags, byte(id >> 24), byte(id >> 16), byte(id >> 8), byte(id)}
			_, err := r.tc.Write(append(hdr, p...))
			r.wmu.Unlock()
			if err != nil {
				break
			}
		}
		r.tc.Close()
		if !e.alive() {
			t.Fatalf("verifier died after connection %d", c)
		}
	}
	time.Sleep(2 * time.Second)
	e.snapshot("after")
	if !e.alive() {
		t.Fatal("verifier died")
	}
}
