package loadgen

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	agentv1 "github.com/clearance/clearance/proto/gen/clearance/agent/v1"
)

// connectServer is a grpc-go server, an implementation of HTTP/2 and
// gRPC independent of h2Stream, serving connect as AgentService.Connect on
// loopback TLS. It returns the address and the roots that trust it.
func connectServer(t *testing.T, connect func(agentv1.AgentService_ConnectServer) error) (string, *x509.CertPool) {
	t.Helper()
	cert, roots := localhostCert(t)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{cert}})))
	agentv1.RegisterAgentServiceServer(srv, &connectOnly{connect: connect})
	go srv.Serve(lis) // ends with Stop
	t.Cleanup(srv.Stop)
	return lis.Addr().String(), roots
}

// localhostCert is a self-signed certificate for localhost and the roots that trust it.
func localhostCert(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), DNSNames: []string{"localhost"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, roots
}

type connectOnly struct {
	agentv1.UnimplementedAgentServiceServer
	connect func(agentv1.AgentService_ConnectServer) error
}

func (c *connectOnly) Connect(s agentv1.AgentService_ConnectServer) error { return c.connect(s) }

func dialTest(t *testing.T, addr string, roots *x509.CertPool) *h2Stream {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	h, err := dialH2(ctx, &net.Dialer{}, addr, &tls.Config{RootCAs: roots, ServerName: "localhost", MinVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	return h
}

// TestH2StreamAgainstGRPC has h2Stream hold a Connect call with grpc-go's
// server: messages both ways larger than the 64 KiB windows (so that
// sending waits for the server's WINDOW_UPDATEs and reading returns
// windows), the server's SETTINGS and PINGs answered, and the call's
// status at its end.
func TestH2StreamAgainstGRPC(t *testing.T) {
	big := strings.Repeat("x", 300<<10)
	got := make(chan int, 1)
	addr, roots := connectServer(t, func(s agentv1.AgentService_ConnectServer) error {
		if m, err := s.Recv(); err != nil || m.GetHello().GetAgentVersion() != "test" {
			return status.Errorf(codes.InvalidArgument, "hello: %v %v", m, err)
		}
		if err := s.Send(&agentv1.VerifierMessage{Message: &agentv1.VerifierMessage_Session{Session: &agentv1.Session{PresenceUrl: "https://localhost"}}}); err != nil {
			return err
		}
		ps := &agentv1.PolicySet{Version: "v1", Policies: []*agentv1.Policy{{Id: "p", Query: big}}}
		for range 3 {
			if err := s.Send(&agentv1.VerifierMessage{Message: &agentv1.VerifierMessage_PolicySet{PolicySet: ps}}); err != nil {
				return err
			}
		}
		m, err := s.Recv()
		if err != nil {
			return err
		}
		got <- len(m.GetReport().GetPayload())
		return status.Error(codes.FailedPrecondition, "that is all")
	})
	h := dialTest(t, addr, roots)
	if err := h.Send(&agentv1.AgentMessage{Message: &agentv1.AgentMessage_Hello{Hello: &agentv1.Hello{AgentVersion: "test"}}}); err != nil {
		t.Fatal(err)
	}
	m, err := h.Recv()
	if err != nil || m.GetSession().GetPresenceUrl() != "https://localhost" {
		t.Fatalf("first message %v, %v; want the Session", m, err)
	}
	for i := range 3 {
		m, err := h.Recv()
		if err != nil || len(m.GetPolicySet().GetPolicies()[0].GetQuery()) != len(big) {
			t.Fatalf("policy set %d: %v; want %d bytes of query", i, err, len(big))
		}
	}
	// Reading goes on beside the large send, as a simulated Mac's receive
	// loop does: the window updates arrive there.
	end := make(chan error, 1)
	go func() {
		_, err := h.Recv()
		end <- err
	}()
	payload := make([]byte, 400<<10)
	sent := make(chan error, 1)
	go func() {
		sent <- h.Send(&agentv1.AgentMessage{Message: &agentv1.AgentMessage_Report{Report: &agentv1.SignedReport{Payload: payload}}})
	}()
	select {
	case err := <-sent:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("sending 400 KiB never got the window it waits for")
	}
	select {
	case n := <-got:
		if n != len(payload) {
			t.Errorf("server read a payload of %d bytes, want %d", n, len(payload))
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the server never read the large report")
	}
	select {
	case err := <-end:
		if err == nil || !strings.Contains(err.Error(), "grpc-status 9") || !strings.Contains(err.Error(), "that is all") {
			t.Errorf("stream ended with %v; want grpc-status 9 and the server's message", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Recv did not return the stream's end")
	}
}

// TestH2StreamEOF: a call the server ends with status OK is io.EOF.
func TestH2StreamEOF(t *testing.T) {
	addr, roots := connectServer(t, func(s agentv1.AgentService_ConnectServer) error {
		return s.Send(&agentv1.VerifierMessage{Message: &agentv1.VerifierMessage_Ack{Ack: &agentv1.Ack{Seq: 7}}})
	})
	h := dialTest(t, addr, roots)
	if m, err := h.Recv(); err != nil || m.GetAck().GetSeq() != 7 {
		t.Fatalf("got %v, %v; want Ack 7", m, err)
	}
	if _, err := h.Recv(); !errors.Is(err, io.EOF) {
		t.Errorf("end: %v, want io.EOF", err)
	}
}

// TestH2StreamCloseEndsWaitingSend: a Send waiting for window the server
// never returns (its handler does not read) returns once the stream is
// closed, and so does a Recv waiting for a message.
func TestH2StreamCloseEndsWaitingSend(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	addr, roots := connectServer(t, func(s agentv1.AgentService_ConnectServer) error {
		<-release
		return nil
	})
	h := dialTest(t, addr, roots)
	recvd := make(chan error, 1)
	go func() {
		_, err := h.Recv()
		recvd <- err
	}()
	sent := make(chan error, 1)
	go func() {
		sent <- h.Send(&agentv1.AgentMessage{Message: &agentv1.AgentMessage_Report{Report: &agentv1.SignedReport{Payload: make([]byte, 1<<20)}}})
	}()
	select {
	case err := <-sent:
		t.Fatalf("Send of 1 MiB returned %v with no window returned", err)
	case <-time.After(500 * time.Millisecond):
	}
	h.Close()
	for name, ch := range map[string]chan error{"Send": sent, "Recv": recvd} {
		select {
		case err := <-ch:
			if err == nil {
				t.Errorf("%s returned nil after Close", name)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%s still waiting after Close", name)
		}
	}
}

// within fails the test unless f returns within d: a flow-control
// regression fails here rather than hanging until go test's timeout.
func within[T any](t *testing.T, d time.Duration, what string, f func() T) T {
	t.Helper()
	ch := make(chan T, 1)
	go func() { ch <- f() }()
	select {
	case v := <-ch:
		return v
	case <-time.After(d):
		t.Fatalf("%s: still waiting after %v", what, d)
		panic("unreachable")
	}
}

// TestH2StreamSendsOnTheReadingGoroutine: a message larger than the
// window, sent while no Recv runs (as the ingest phase sends its next
// report from the goroutine that read the last Ack), reads the window
// updates itself.
func TestH2StreamSendsOnTheReadingGoroutine(t *testing.T) {
	got := make(chan int, 2)
	addr, roots := connectServer(t, func(s agentv1.AgentService_ConnectServer) error {
		for {
			m, err := s.Recv()
			if err != nil {
				return err
			}
			got <- len(m.GetReport().GetPayload())
			if err := s.Send(&agentv1.VerifierMessage{Message: &agentv1.VerifierMessage_Ack{Ack: &agentv1.Ack{Seq: 1}}}); err != nil {
				return err
			}
		}
	})
	h := dialTest(t, addr, roots)
	send := func(n int) error {
		return h.Send(&agentv1.AgentMessage{Message: &agentv1.AgentMessage_Report{Report: &agentv1.SignedReport{Payload: make([]byte, n)}}})
	}
	if err := within(t, 10*time.Second, "small send", func() error { return send(100) }); err != nil {
		t.Fatal(err)
	}
	if err := within(t, 10*time.Second, "first Ack", func() error { _, err := h.Recv(); return err }); err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{300 << 10, 1 << 20} {
		if err := within(t, 30*time.Second, "large send on the reading goroutine", func() error { return send(n) }); err != nil {
			t.Fatal(err)
		}
	}
	for _, want := range []int{100, 300 << 10} {
		if n := <-got; n != want {
			t.Errorf("server read %d bytes, want %d", n, want)
		}
	}
	// The Acks the Sends read meanwhile wait in order for Recv.
	for i := range 2 {
		m := within(t, 10*time.Second, fmt.Sprint("Ack ", i), func() *agentv1.VerifierMessage { m, _ := h.Recv(); return m })
		if m.GetAck() == nil {
			t.Fatalf("message %d after the large sends: %v; want an Ack", i, m)
		}
	}
}

// TestH2StreamSendAfterEnd: once the verifier ends the call, Send says so
// (io.EOF for status OK, the status otherwise), as grpc-go's client does.
func TestH2StreamSendAfterEnd(t *testing.T) {
	for _, tc := range []struct {
		ret  error
		want string
	}{{nil, "EOF"}, {status.Error(codes.Unavailable, "going"), "grpc-status 14"}} {
		addr, roots := connectServer(t, func(s agentv1.AgentService_ConnectServer) error { return tc.ret })
		h := dialTest(t, addr, roots)
		if err := within(t, 10*time.Second, "Recv", func() error { _, err := h.Recv(); return err }); err == nil {
			t.Fatal("Recv returned a message from a call that sent none")
		}
		err := within(t, 10*time.Second, "Send after the end", func() error {
			return h.Send(&agentv1.AgentMessage{Message: &agentv1.AgentMessage_Report{Report: &agentv1.SignedReport{Payload: make([]byte, 1<<20)}}})
		})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Send after the call ended with %v: %v, want %q", tc.ret, err, tc.want)
		}
	}
}

// rawServer accepts one TLS connection offering h2 on loopback, reads the
// client's preface and hands serve a framer on it; it returns the address
// and the roots that trust it.
func rawServer(t *testing.T, serve func(*http2.Framer, net.Conn)) (string, *x509.CertPool) {
	t.Helper()
	cert, roots := localhostCert(t)
	lis, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{NextProtos: []string{"h2"}, Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lis.Close() })
	done := make(chan struct{})
	t.Cleanup(func() { <-done })
	go func() {
		defer close(done)
		c, err := lis.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		preface := make([]byte, len(http2.ClientPreface))
		if _, err := io.ReadFull(c, preface); err != nil || string(preface) != http2.ClientPreface {
			t.Errorf("client preface %q, %v", preface, err)
			return
		}
		fr := http2.NewFramer(c, c)
		fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
		serve(fr, c)
	}()
	return lis.Addr().String(), roots
}

// nextFrame reads frames until one that is not flow control or settings
// bookkeeping the test has no interest in, failing after 10 s.
func nextFrame(t *testing.T, fr *http2.Framer, c net.Conn) http2.Frame {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Errorf("server reading: %v", err)
			return nil
		}
		if _, ok := f.(*http2.WindowUpdateFrame); !ok {
			return f
		}
	}
}

// TestH2StreamFrames checks the frames h2Stream writes against a server
// written frame by frame: its SETTINGS read and acknowledged before the
// call's HEADERS, a message sent no further than a window those SETTINGS
// made small (and the rest once it grows), a PING answered with its
// payload, a small message in one DATA frame; then the server's GOAWAY named in the error
// the connection's end returns, and in a second call a RST_STREAM ending
// Recv and Send.
func TestH2StreamFrames(t *testing.T) {
	const window = 1000
	msg := func(n int) *agentv1.AgentMessage {
		return &agentv1.AgentMessage{Message: &agentv1.AgentMessage_Report{Report: &agentv1.SignedReport{Payload: make([]byte, n)}}}
	}
	large, small := msg(2500), msg(100)
	// On the wire: gRPC's 5-byte prefix and the message.
	largeN, smallN := 5+proto.Size(large), 5+proto.Size(small)
	addr, roots := rawServer(t, func(fr *http2.Framer, c net.Conn) {
		fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: window}, http2.Setting{ID: http2.SettingMaxFrameSize, Val: 16384})
		var settings, settingsAck, pingAck, headers bool
		for !(settings && settingsAck && headers) {
			switch f := nextFrame(t, fr, c).(type) {
			case nil:
				return
			case *http2.SettingsFrame:
				if f.IsAck() {
					settingsAck = true
				} else {
					settings = true
				}
			case *http2.MetaHeadersFrame:
				if f.StreamID != 1 || f.PseudoValue("path") != connectPath || f.PseudoValue("method") != "POST" || f.StreamEnded() {
					t.Errorf("HEADERS stream %d path %q method %q end %v", f.StreamID, f.PseudoValue("path"), f.PseudoValue("method"), f.StreamEnded())
				}
				headers = true
			default:
				t.Errorf("%v before the call's HEADERS", f)
				return
			}
		}
		// The large message: the window's worth, then nothing.
		read := 0
		for read < window {
			f, ok := nextFrame(t, fr, c).(*http2.DataFrame)
			if !ok {
				t.Errorf("want DATA, got %v", f)
				return
			}
			read += len(f.Data())
		}
		if read != window {
			t.Errorf("read %d bytes of DATA on a %d-byte window", read, window)
		}
		c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		if f, err := fr.ReadFrame(); err == nil {
			t.Errorf("%v beyond the window", f)
		}
		c.SetReadDeadline(time.Time{})
		fr.WritePing(false, [8]byte{'p', 'i', 'n', 'g', 'p', 'o', 'n', 'g'})
		fr.WriteWindowUpdate(1, 1<<20)
		for read < largeN+smallN || !pingAck {
			switch f := nextFrame(t, fr, c).(type) {
			case *http2.DataFrame:
				if read >= largeN && len(f.Data()) != smallN {
					t.Errorf("a %d-byte message came in a DATA frame of %d bytes, want one", smallN, len(f.Data()))
				}
				read += len(f.Data())
			case *http2.PingFrame:
				if !f.IsAck() || f.Data != [8]byte{'p', 'i', 'n', 'g', 'p', 'o', 'n', 'g'} {
					t.Errorf("PING answered %v %q, want an ACK with the same payload", f.IsAck(), f.Data[:])
				}
				pingAck = true
			default:
				t.Errorf("want DATA or the PING's answer, got %v", f)
				return
			}
		}
		fr.WriteGoAway(1, http2.ErrCodeNo, []byte("draining"))
		time.Sleep(50 * time.Millisecond)
	})
	h := dialTest(t, addr, roots)
	recvd := make(chan error, 1)
	go func() {
		_, err := h.Recv()
		recvd <- err
	}()
	if err := within(t, 10*time.Second, "Send", func() error { return h.Send(large) }); err != nil {
		t.Fatal(err)
	}
	if err := within(t, 10*time.Second, "Send", func() error { return h.Send(small) }); err != nil {
		t.Fatal(err)
	}
	if err := within(t, 10*time.Second, "Recv's end", func() error { return <-recvd }); err == nil || !strings.Contains(err.Error(), "GOAWAY") || !strings.Contains(err.Error(), "draining") {
		t.Errorf("Recv ended with %v, want the GOAWAY and its debug data named", err)
	}

	addr, roots = rawServer(t, func(fr *http2.Framer, c net.Conn) {
		fr.WriteSettings()
		for {
			f := nextFrame(t, fr, c)
			if f == nil {
				return
			}
			if f, ok := f.(*http2.MetaHeadersFrame); ok && f.StreamID == 1 {
				break
			}
		}
		fr.WriteRSTStream(1, http2.ErrCodeCancel)
		time.Sleep(200 * time.Millisecond)
	})
	h = dialTest(t, addr, roots)
	if err := within(t, 10*time.Second, "Recv", func() error { _, err := h.Recv(); return err }); err == nil || !strings.Contains(err.Error(), "CANCEL") {
		t.Errorf("Recv after RST_STREAM: %v, want the reset named", err)
	}
	if err := within(t, 10*time.Second, "Send", func() error { return h.Send(msg(10)) }); err == nil {
		t.Error("Send after RST_STREAM succeeded")
	}
}
