package loadgen

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"math/big"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	agentv1 "github.com/clearance/clearance/proto/gen/clearance/agent/v1"
)

// connectServer is a grpc-go server, an implementation of HTTP/2 and
// gRPC independent of h2Stream, serving connect as AgentService.Connect on
// loopback TLS. It returns the address and the roots that trust it.
func connectServer(t *testing.T, connect func(agentv1.AgentService_ConnectServer) error) (string, *x509.CertPool) {
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
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(&tls.Config{
		Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}})))
	agentv1.RegisterAgentServiceServer(srv, &connectOnly{connect: connect})
	go srv.Serve(lis) // ends with Stop
	t.Cleanup(srv.Stop)
	return lis.Addr().String(), roots
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
