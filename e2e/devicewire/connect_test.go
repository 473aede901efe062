package devicewire

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"

	adminv1 "github.com/clearance/clearance/proto/gen/clearance/admin/v1"
	agentv1 "github.com/clearance/clearance/proto/gen/clearance/agent/v1"
)

const connectPath = "/clearance.agent.v1.AgentService/Connect"

func frameMsg(m proto.Message) []byte {
	b, err := proto.Marshal(m)
	if err != nil {
		panic(err)
	}
	out := make([]byte, 5+len(b))
	binary.BigEndian.PutUint32(out[1:], uint32(len(b)))
	copy(out[5:], b)
	return out
}

// rawStream is a Connect stream over a raw connection, with a reader that
// answers pings and settings and records what the server says on it.
type rawStream struct {
	r  *raw
	id uint32

	mu      sync.Mutex
	buf     []byte
	msgs    []*agentv1.VerifierMessage
	ended   chan struct{}
	endNote string
	events  []string
}

func (e *env) rawConnect(r *raw, id uint32) *rawStream {
	e.t.Helper()
	s := &rawStream{r: r, id: id, ended: make(chan struct{})}
	r.headers(id, false, reqFields(connectPath)...)
	hello := &agentv1.AgentMessage{Message: &agentv1.AgentMessage_Hello{Hello: &agentv1.Hello{AgentVersion: "attack"}}}
	if err := r.data(id, false, frameMsg(hello)); err != nil {
		e.t.Fatal(err)
	}
	go s.read()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		s.mu.Lock()
		n := len(s.msgs)
		s.mu.Unlock()
		if n >= 2 {
			return s
		}
		time.Sleep(20 * time.Millisecond)
	}
	e.t.Fatalf("no Session and PolicySet on the raw Connect; events %v", s.events)
	return nil
}

func (s *rawStream) read() {
	r := s.r
	for {
		f, err := r.fr.ReadFrame()
		if err != nil {
			s.mu.Lock()
			s.events = append(s.events, "read: "+err.Error())
			s.mu.Unlock()
			select {
			case <-s.ended:
			default:
				s.endNote = "connection: " + err.Error()
				close(s.ended)
			}
			return
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				r.wmu.Lock()
				_ = r.fr.WriteSettingsAck()
				r.wmu.Unlock()
			}
			continue
		case *http2.PingFrame:
			if !f.IsAck() {
				r.wmu.Lock()
				_ = r.fr.WritePing(true, f.Data)
				r.wmu.Unlock()
			}
		case *http2.DataFrame:
			if f.StreamID == s.id {
				s.mu.Lock()
				s.buf = append(s.buf, f.Data()...)
				for len(s.buf) >= 5 {
					n := int(binary.BigEndian.Uint32(s.buf[1:5]))
					if len(s.buf) < 5+n {
						break
					}
					m := new(agentv1.VerifierMessage)
					_ = proto.Unmarshal(s.buf[5:5+n], m)
					s.msgs = append(s.msgs, m)
					s.buf = s.buf[5+n:]
				}
				s.mu.Unlock()
			}
			if n := len(f.Data()); n > 0 {
				r.wmu.Lock()
				_ = r.fr.WriteWindowUpdate(0, uint32(n))
				_ = r.fr.WriteWindowUpdate(f.StreamID, uint32(n))
				r.wmu.Unlock()
			}
		}
		s.mu.Lock()
		s.events = append(s.events, describe(f))
		s.mu.Unlock()
		if f.Header().StreamID == s.id {
			if mh, ok := f.(*http2.MetaHeadersFrame); ok && mh.StreamEnded() {
				s.endNote = describe(f)
				close(s.ended)
			}
			if _, ok := f.(*http2.RSTStreamFrame); ok {
				select {
				case <-s.ended:
				default:
					s.endNote = describe(f)
					close(s.ended)
				}
			}
		}
	}
}

// halfMessage sends the 5-byte prefix of a report announcing n bytes, and
// k bytes of it: the handler's Recv is then inside a message, where Wake
// does not reach it.
func (s *rawStream) halfMessage(n, k int) {
	p := make([]byte, 5+k)
	binary.BigEndian.PutUint32(p[1:5], uint32(n))
	if err := s.r.data(s.id, false, p); err != nil {
		s.r.t.Fatal(err)
	}
}

func (s *rawStream) waitEnd(d time.Duration) (string, bool) {
	select {
	case <-s.ended:
		return s.endNote, true
	case <-time.After(d):
		return "", false
	}
}

func (e *env) admin() adminv1.AdminServiceClient {
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(e.p.RootPEM)
	cc, err := grpc.NewClient(e.p.GRPCAddr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: roots, ServerName: "localhost"})))
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { cc.Close() })
	return adminv1.NewAdminServiceClient(cc)
}

func (e *env) adminCtx() context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	e.t.Cleanup(cancel)
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+e.p.Token)
}

// TestRevokeMidMessage: a Connect stream ends PERMISSION_DENIED at `devices
// revoke`, whether it waits for the agent's next message or holds the first
// bytes of one (a half-sent report once kept a revoked device's stream and
// connection open).
func TestRevokeMidMessage(t *testing.T) {
	for _, mid := range []bool{false, true} {
		name := "idle"
		if mid {
			name = "mid-message"
		}
		t.Run(name, func(t *testing.T) {
			e := start(t)
			r := e.dialRaw(e.dev)
			r.preface()
			s := e.rawConnect(r, 1)
			if mid {
				s.halfMessage(1000, 10)
				time.Sleep(200 * time.Millisecond)
			}
			if _, err := e.admin().RevokeDevice(e.adminCtx(), &adminv1.RevokeDeviceRequest{DeviceId: e.dev.DeviceID, Reason: "revoked while a report is half sent"}); err != nil {
				t.Fatal(err)
			}
			note, ok := s.waitEnd(10 * time.Second)
			if !ok || !strings.Contains(note, "grpc-status=7") {
				t.Errorf("%s: the revoked device's stream did not end PERMISSION_DENIED: ended=%v %s", name, ok, note)
			}
		})
	}
}

// TestRevokeZeroWindow: a device that returns no flow-control window
// (SETTINGS_INITIAL_WINDOW_SIZE 0) opens 32 Connects on each of 4
// connections; each stream's first send waits for window. Each newer stream
// must still end the one before it, and the device's revocation the last:
// the handlers (and the workers sending for them) end, and the device is
// not connected.
func TestRevokeZeroWindow(t *testing.T) {
	e := start(t)
	before := e.metric("go_goroutines")
	hello := &agentv1.AgentMessage{Message: &agentv1.AgentMessage_Hello{Hello: &agentv1.Hello{AgentVersion: "no-window"}}}
	// Each stream the verifier opened is answered with headers (they need
	// no window) before its first message waits.
	var mu sync.Mutex
	answered := map[[2]uint32]bool{}
	for c := 0; c < 4; c++ {
		r := e.dialRaw(e.dev)
		r.preface(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 0})
		go func() {
			_ = r.drain(time.Minute, func(f http2.Frame) {
				if h, ok := f.(*http2.MetaHeadersFrame); ok {
					mu.Lock()
					answered[[2]uint32{uint32(c), h.StreamID}] = true
					mu.Unlock()
				}
			})
		}()
		for i := 0; i < 32; i++ {
			id := uint32(2*i + 1)
			r.headers(id, false, reqFields(connectPath)...)
			if err := r.data(id, false, frameMsg(hello)); err != nil {
				t.Fatal(err)
			}
		}
	}
	for i := 0; ; i++ {
		mu.Lock()
		n := len(answered)
		mu.Unlock()
		if n == 128 {
			break
		}
		if i == 300 {
			t.Fatalf("%d of 128 streams answered", n)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// Goroutines are read from /metrics: the verifier's own count.
	settle := func(what string, limit float64) {
		t.Helper()
		var n float64
		for range 100 {
			if n = e.metric("go_goroutines"); n >= 0 && n <= limit {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Errorf("%s: %v goroutines, want at most %v (%v before)", what, n, limit, before)
	}
	// The newest stream of each connection may still wait (4 connections,
	// a handler and a worker each, and each connection's reader).
	settle("128 streams, each replaced by the next", before+16)
	if _, err := e.admin().RevokeDevice(e.adminCtx(), &adminv1.RevokeDeviceRequest{DeviceId: e.dev.DeviceID, Reason: "no window"}); err != nil {
		t.Fatal(err)
	}
	settle("after the revocation", before+8)
	d, err := e.admin().GetDevice(e.adminCtx(), &adminv1.GetDeviceRequest{DeviceId: e.dev.DeviceID})
	if err != nil {
		t.Fatal(err)
	}
	if d.GetDevice().GetConnected() {
		t.Error("a revoked device is still connected")
	}
}
