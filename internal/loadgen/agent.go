package loadgen

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/clearance/clearance/internal/protoagent"
	agentv1 "github.com/clearance/clearance/proto/gen/clearance/agent/v1"
)

// simAgent is one simulated Mac: its own P-256 key and device certificate
// and one mTLS connection holding a Connect stream. protoagent builds the
// key, CSR and signed reports from the documented contract; the connection
// is dialled here, from a chosen loopback source address.
type simAgent struct {
	a      *protoagent.Agent
	src    netip.Addr
	status agentv1.PolicyStatus // what every report says

	client string // ClientLean or ClientGRPC, for the Connect stream
	stream connectStream
	ps     *agentv1.PolicySet

	mu   sync.Mutex // one Send at a time; guards seq, ahead and sent
	seq  uint64
	sent map[uint64]time.Time
	// ahead holds reports signed before the ingest phase, seq s.seq+1
	// onwards: the signing each Mac does on its own CPU, done before the
	// timed phase so that loadgen's share of the shared cores goes to its
	// connections, not to work a fleet does elsewhere. Each is still
	// unique, fresh and checked in full by the verifier.
	ahead []*agentv1.SignedReport

	// onAck, when set, is called on the stream's receiving goroutine after
	// each ack: a closed-loop sender's next send, without a hand-off to a
	// goroutine of its own.
	onAck atomic.Pointer[func()]
	up    atomic.Bool
}

// tlsConfig is the agent's TLS: the verifier's roots, and its device
// certificate once it holds one.
func (s *simAgent) tlsConfig() *tls.Config {
	cfg := &tls.Config{RootCAs: s.a.Roots, ServerName: "localhost", MinVersion: tls.VersionTLS12}
	if s.a.CertDER != nil {
		// The leaf alone, as clearance-agent presents it: the verifier
		// parses and keeps whatever chain a connection presents, so a
		// longer one would overstate what each agent costs it.
		cfg.Certificates = []tls.Certificate{{Certificate: [][]byte{s.a.CertDER}, PrivateKey: s.a.Key}}
	}
	return cfg
}

// dial opens a gRPC connection to addr from a.src, with mTLS once the
// agent holds a certificate. Buffers are kept small: loadgen holds
// thousands of these in one process.
func (s *simAgent) dial(addr string) (*grpc.ClientConn, error) {
	cfg := s.tlsConfig()
	d := dialer(s.src)
	return grpc.NewClient(addr,
		grpc.WithTransportCredentials(credentials.NewTLS(cfg)),
		grpc.WithContextDialer(func(ctx context.Context, target string) (net.Conn, error) {
			return d.DialContext(ctx, "tcp", target)
		}),
		grpc.WithReadBufferSize(4<<10), grpc.WithWriteBufferSize(4<<10), grpc.WithSharedWriteBuffer(true),
		grpc.WithInitialWindowSize(64<<10), grpc.WithInitialConnWindowSize(64<<10),
	)
}

// enroll is the Enroll RPC on a connection of its own, as a new agent does.
func (s *simAgent) enroll(ctx context.Context, addr, secret string) error {
	conn, err := s.dial(addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	csr, err := protoagent.CSR(s.a.Key)
	if err != nil {
		return err
	}
	resp, err := agentv1.NewAgentServiceClient(conn).Enroll(ctx, &agentv1.EnrollRequest{EnrollSecret: secret, Csr: csr, Facts: s.a.Facts})
	if err != nil {
		return fmt.Errorf("enrolling: %w", err)
	}
	s.a.DeviceID, s.a.CertDER, s.a.Chain = resp.GetDeviceId(), resp.GetCertificate(), resp.GetCaChain()
	return nil
}

// connect opens Connect: 1. Hello, 2. the PolicySet, 3. a first report and
// its Ack, so that the device has posture before any sign-in.
func (s *simAgent) connect(ctx context.Context, addr string) error {
	stream, err := s.open(ctx, addr)
	if err != nil {
		return fmt.Errorf("opening Connect: %w", err)
	}
	s.stream = stream
	fail := func(step string, err error) error { s.close(); return fmt.Errorf("%s: %w", step, err) }
	stop := context.AfterFunc(ctx, s.close) // ramp-up's deadline bounds the ceremony
	defer stop()

	// 1. Hello.
	if err := stream.Send(&agentv1.AgentMessage{Message: &agentv1.AgentMessage_Hello{Hello: &agentv1.Hello{AgentVersion: "loadgen"}}}); err != nil {
		return fail("sending Hello", err)
	}
	// 2. Session, then PolicySet.
	m, err := stream.Recv()
	if err != nil {
		return fail("waiting for the Session", err)
	}
	if m.GetSession() == nil {
		return fail("waiting for the Session", fmt.Errorf("got %T first", m.GetMessage()))
	}
	if m, err = stream.Recv(); err != nil {
		return fail("waiting for the PolicySet", err)
	}
	if m.GetPolicySet() == nil {
		return fail("waiting for the PolicySet", fmt.Errorf("got %T first", m.GetMessage()))
	}
	s.ps = m.GetPolicySet()
	// 3. First report.
	s.seq = 1
	if err := stream.Send(&agentv1.AgentMessage{Message: &agentv1.AgentMessage_Report{Report: s.report(1, nil)}}); err != nil {
		return fail("sending the first report", err)
	}
	m, err = stream.Recv()
	if err != nil {
		return fail("waiting for the first Ack", err)
	}
	if m.GetAck() == nil {
		return fail("waiting for the first Ack", fmt.Errorf("got %T", m.GetMessage()))
	}
	s.up.Store(true)
	return nil
}

// open opens Connect on a connection of its own, with s.client.
func (s *simAgent) open(ctx context.Context, addr string) (connectStream, error) {
	if s.client == ClientLean {
		return dialH2(ctx, dialer(s.src), addr, s.tlsConfig())
	}
	conn, err := s.dial(addr)
	if err != nil {
		return nil, err
	}
	sctx, cancel := context.WithCancel(context.Background()) // the stream outlives ramp-up
	stream, err := agentv1.NewAgentServiceClient(conn).Connect(sctx)
	if err != nil {
		cancel()
		conn.Close()
		return nil, err
	}
	return &grpcStream{AgentService_ConnectClient: stream, conn: conn, cancel: cancel}, nil
}

func (s *simAgent) report(seq uint64, nonce []byte) *agentv1.SignedReport {
	return protoagent.Sign(s.a.Key, s.a.Report(s.ps, seq, time.Now(), nonce, s.status))
}

// signAhead signs the next k reports now, for send to take in turn.
func (s *simAgent) signAhead(k int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for range k {
		s.ahead = append(s.ahead, s.report(s.seq+uint64(len(s.ahead))+1, nil))
	}
}

// dropAhead forgets reports signed ahead and not sent; the next report
// takes a seq past them (the verifier asks only that seq increase).
func (s *simAgent) dropAhead() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seq += uint64(len(s.ahead))
	s.ahead = nil
}

// send sends the next report: one signed ahead if there is one and no
// nonce is to be answered, else one signed now.
func (s *simAgent) send(nonce []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seq++
	var sr *agentv1.SignedReport
	if len(s.ahead) > 0 && nonce == nil {
		sr = s.ahead[0]
		s.ahead[0] = nil
		s.ahead = s.ahead[1:]
	} else {
		s.seq += uint64(len(s.ahead))
		s.ahead = nil
		sr = s.report(s.seq, nonce)
	}
	s.sent[s.seq] = time.Now()
	if err := s.stream.Send(&agentv1.AgentMessage{Message: &agentv1.AgentMessage_Report{Report: sr}}); err != nil {
		delete(s.sent, s.seq)
		return err
	}
	return nil
}

// receive reads the stream until it ends: an Ack records its latency in
// *acks (when set) and runs onAck (when set); a CheckNow is
// answered at once with a report carrying its nonce.
func (s *simAgent) receive(acks *atomic.Pointer[Recorder], onDown func()) {
	defer onDown()
	defer s.up.Store(false)
	for {
		m, err := s.stream.Recv()
		if err != nil {
			return
		}
		switch msg := m.GetMessage().(type) {
		case *agentv1.VerifierMessage_Ack:
			s.mu.Lock()
			t0, ok := s.sent[msg.Ack.GetSeq()]
			delete(s.sent, msg.Ack.GetSeq())
			s.mu.Unlock()
			if r := acks.Load(); ok && r != nil {
				r.Add(time.Since(t0))
			}
			if f := s.onAck.Load(); f != nil {
				(*f)()
			}
		case *agentv1.VerifierMessage_CheckNow:
			if err := s.send(msg.CheckNow.GetNonce()); err != nil {
				return
			}
		case *agentv1.VerifierMessage_PolicySet:
			s.mu.Lock()
			s.ps = msg.PolicySet
			s.mu.Unlock()
		}
	}
}

func (s *simAgent) close() {
	if s.stream != nil {
		s.stream.Close()
	}
}

func (s *simAgent) tlsCert() tls.Certificate {
	return tls.Certificate{Certificate: append([][]byte{s.a.CertDER}, s.a.Chain...), PrivateKey: s.a.Key}
}

func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%X-%X-%X-%X-%X", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}
