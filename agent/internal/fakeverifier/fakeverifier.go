// Package fakeverifier is an in-process AgentService for the agent's tests:
// a throwaway PKI built in code, a gRPC server on loopback TLS, and a
// verifier that checks report signatures and seqs the way the real one does
// (exact resend of a report it accepted: acked again; any other seq not
// above the last: stream ended with AlreadyExists).
package fakeverifier

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/clearance/clearance/internal/testkit/testpki"
	"github.com/clearance/clearance/pkg/deviceid"
	"github.com/clearance/clearance/pkg/report"
	agentv1 "github.com/clearance/clearance/proto/gen/clearance/agent/v1"
)

// PKI is a root CA, a device CA under it, and a server certificate.
type PKI struct {
	Root, DeviceCA *x509.Certificate
	Server         tls.Certificate
	deviceCA       *testpki.CA
}

func nextSerial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		panic(err)
	}
	return n
}

// NewPKI builds a fresh PKI.
func NewPKI(t testing.TB) *PKI {
	root := testpki.NewCA(t, testpki.CN("Test Root"))
	deviceCA := root.NewIntermediate(t, testpki.CN("Test Device CA"))
	server := deviceCA.Issue(t, testpki.CN("verifier"), testpki.ServerAuth(),
		testpki.DNS("localhost"), testpki.IPs(net.IPv4(127, 0, 0, 1)))
	return &PKI{Root: root.Cert, DeviceCA: deviceCA.Cert, Server: server.TLS(), deviceCA: deviceCA}
}

// RootPEM is the root CA as PEM.
func (p *PKI) RootPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: p.Root.Raw})
}

// WriteRoot writes the root CA PEM into dir and returns its path.
func (p *PKI) WriteRoot(t testing.TB, dir string) string {
	path := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(path, p.RootPEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// Roots is a pool holding the root.
func (p *PKI) Roots() *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AddCert(p.Root)
	return pool
}

// Issue signs a device certificate for csr, naming deviceID as the
// verifier's do (its SAN URI).
func (p *PKI) Issue(csr *x509.CertificateRequest, deviceID string, notBefore time.Time, lifetime time.Duration) (*x509.Certificate, error) {
	return p.IssueFunc(csr, deviceID, notBefore, lifetime, nil)
}

// IssueFunc is Issue with mod, when set, changing the template first (a
// verifier that lies, holding the device CA's key).
func (p *PKI) IssueFunc(csr *x509.CertificateRequest, deviceID string, notBefore time.Time, lifetime time.Duration, mod func(*x509.Certificate)) (*x509.Certificate, error) {
	uri, err := url.Parse(deviceid.URI(deviceID))
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: nextSerial(), Subject: pkix.Name{CommonName: deviceID}, URIs: []*url.URL{uri},
		NotBefore: notBefore, NotAfter: notBefore.Add(lifetime),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, KeyUsage: x509.KeyUsageDigitalSignature,
	}
	if mod != nil {
		mod(tmpl)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.DeviceCA, csr.PublicKey, p.deviceCA.Key)
	if err != nil {
		return nil, err
	}
	return x509.ParseCertificate(der)
}

// IssueBrowserCert issues what the verifier's SCEP endpoint gives a Mac's
// browser: an RSA key, CN and SAN URI naming the hardware UUID, client
// authentication, from the device CA.
func (p *PKI) IssueBrowserCert(t testing.TB, hardwareUUID string, serial *big.Int, notAfter time.Time) *x509.Certificate {
	t.Helper()
	return p.deviceCA.Issue(t, testpki.MacBrowser(hardwareUUID), testpki.Valid(time.Now().Add(-time.Minute), notAfter),
		testpki.Template(func(c *x509.Certificate) { c.SerialNumber = serial })).Cert
}

// Session is one Connect stream as the server sees it.
type Session struct {
	DeviceID string
	Hello    *agentv1.Hello
	send     chan *agentv1.VerifierMessage
	end      chan error
}

// Send queues a message to the agent.
func (s *Session) Send(m *agentv1.VerifierMessage) { s.send <- m }

// End ends the stream with err (nil for OK).
func (s *Session) End(err error) { s.end <- err }

// Received is one report the server got.
type Received struct {
	Report    *agentv1.PostureReport
	Payload   []byte
	Duplicate bool
}

// Verifier is the fake AgentService.
type Verifier struct {
	agentv1.UnimplementedAgentServiceServer
	PKI  *PKI
	Addr string
	// Lifetime of issued certificates (default 1h).
	Lifetime time.Duration
	// NotBefore of issued certificates (default a minute before its clock).
	NotBefore func() time.Time
	// ClockOffset is how far the verifier's clock is from the machine's: it
	// is what verifier_time says and where issued certificates start.
	ClockOffset time.Duration
	// PolicySet is sent at connect when set.
	PolicySet *agentv1.PolicySet
	// Session is sent at connect before the PolicySet, with verifier_time
	// set to the verifier's clock (default: a Session naming no presence URL).
	Session *agentv1.Session
	// AutoAck acks every accepted report (default true via New). Set it
	// before the agent starts, or with SetAutoAck while it runs.
	AutoAck bool
	// RejectConnect, when it returns an error, refuses the Nth connection.
	RejectConnect func(n int) error
	// Secret is the enroll secret Enroll accepts.
	Secret string
	// EnrollHook, when set, sees every Enroll request first; an error it
	// returns is Enroll's answer (a request held for approval, say).
	EnrollHook func(req *agentv1.EnrollRequest) error
	// EnrollAnswer and RenewAnswer, when set, may change an answer before
	// it is sent (a verifier that lies).
	EnrollAnswer func(*agentv1.EnrollResponse)
	RenewAnswer  func(*agentv1.RenewResponse)

	Sessions chan *Session
	Reports  chan Received

	clockMu  sync.Mutex // guards ClockOffset once agents run
	mu       sync.Mutex
	keys     map[string]crypto.PublicKey
	lastSeq  map[string]uint64
	accepted map[string]map[uint64][]byte // payload by seq, per device
	connects int
	enrolls  int
	renews   int
}

// New starts a fake verifier on loopback TLS; it stops with the test.
func New(t testing.TB) *Verifier {
	v := &Verifier{
		PKI: NewPKI(t), AutoAck: true, Secret: "s3cret", Lifetime: time.Hour,
		Sessions: make(chan *Session, 16), Reports: make(chan Received, 256),
		keys: map[string]crypto.PublicKey{}, lastSeq: map[string]uint64{}, accepted: map[string]map[uint64][]byte{},
	}
	clientCAs := x509.NewCertPool()
	clientCAs.AddCert(v.PKI.DeviceCA)
	srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(&tls.Config{
		Certificates: []tls.Certificate{v.PKI.Server},
		ClientCAs:    clientCAs,
		ClientAuth:   tls.VerifyClientCertIfGiven,
	})))
	agentv1.RegisterAgentServiceServer(srv, v)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	v.Addr = ln.Addr().String()
	go srv.Serve(ln)
	t.Cleanup(srv.Stop)
	return v
}

// Counts returns how many connects, enrollments and renewals happened.
func (v *Verifier) Counts() (connects, enrolls, renews int) {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.connects, v.enrolls, v.renews
}

// SetAutoAck turns acks on or off while agents run.
func (v *Verifier) SetAutoAck(on bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.AutoAck = on
}

// LastSeq is the last accepted seq of a device.
func (v *Verifier) LastSeq(deviceID string) uint64 {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.lastSeq[deviceID]
}

// Enroll implements AgentService.
func (v *Verifier) Enroll(_ context.Context, req *agentv1.EnrollRequest) (*agentv1.EnrollResponse, error) {
	if v.EnrollHook != nil {
		if err := v.EnrollHook(req); err != nil {
			return nil, err
		}
	}
	if req.GetEnrollSecret() != v.Secret {
		return nil, status.Error(codes.Unauthenticated, "enroll secret is not valid")
	}
	csr, err := x509.ParseCertificateRequest(req.GetCsr())
	if err != nil || csr.CheckSignature() != nil {
		return nil, status.Errorf(codes.InvalidArgument, "bad csr: %v", err)
	}
	id := "dev-" + strings.ToLower(req.GetFacts().GetHardwareUuid())
	if len(id) > 40 {
		id = id[:40]
	}
	cert, err := v.PKI.Issue(csr, id, v.notBefore(), v.Lifetime)
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	v.mu.Lock()
	v.keys[id] = csr.PublicKey
	v.enrolls++
	v.mu.Unlock()
	resp := &agentv1.EnrollResponse{DeviceId: id, Certificate: cert.Raw, CaChain: [][]byte{v.PKI.DeviceCA.Raw, v.PKI.Root.Raw}, NotAfter: timestamppb.New(cert.NotAfter),
		VerifierTime: timestamppb.New(v.now())}
	if v.EnrollAnswer != nil {
		v.EnrollAnswer(resp)
	}
	return resp, nil
}

// now is the verifier's clock.
func (v *Verifier) now() time.Time {
	v.clockMu.Lock()
	defer v.clockMu.Unlock()
	return time.Now().Add(v.ClockOffset)
}

// SetClockOffset changes ClockOffset while agents run.
func (v *Verifier) SetClockOffset(d time.Duration) {
	v.clockMu.Lock()
	defer v.clockMu.Unlock()
	v.ClockOffset = d
}

func (v *Verifier) notBefore() time.Time {
	if v.NotBefore != nil {
		return v.NotBefore()
	}
	return v.now().Add(-time.Minute)
}

func (v *Verifier) device(ctx context.Context) (string, error) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return "", status.Error(codes.Unauthenticated, "no peer")
	}
	ti, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(ti.State.PeerCertificates) == 0 {
		return "", status.Error(codes.Unauthenticated, "a device certificate is required")
	}
	id := ti.State.PeerCertificates[0].Subject.CommonName
	v.mu.Lock()
	_, known := v.keys[id]
	v.mu.Unlock()
	if !known {
		return "", status.Errorf(codes.Unauthenticated, "device %s is not enrolled", id)
	}
	return id, nil
}

// Renew implements AgentService.
func (v *Verifier) Renew(ctx context.Context, req *agentv1.RenewRequest) (*agentv1.RenewResponse, error) {
	id, err := v.device(ctx)
	if err != nil {
		return nil, err
	}
	csr, err := x509.ParseCertificateRequest(req.GetCsr())
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	cert, err := v.PKI.Issue(csr, id, v.notBefore(), v.Lifetime)
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	v.mu.Lock()
	v.renews++
	v.mu.Unlock()
	resp := &agentv1.RenewResponse{Certificate: cert.Raw, CaChain: [][]byte{v.PKI.DeviceCA.Raw, v.PKI.Root.Raw}, NotAfter: timestamppb.New(cert.NotAfter),
		VerifierTime: timestamppb.New(v.now())}
	if v.RenewAnswer != nil {
		v.RenewAnswer(resp)
	}
	return resp, nil
}

// Connect implements AgentService.
func (v *Verifier) Connect(stream agentv1.AgentService_ConnectServer) error {
	v.mu.Lock()
	v.connects++
	n := v.connects
	v.mu.Unlock()
	if v.RejectConnect != nil {
		if err := v.RejectConnect(n); err != nil {
			return err
		}
	}
	id, err := v.device(stream.Context())
	if err != nil {
		return err
	}
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	if first.GetHello() == nil {
		return status.Error(codes.InvalidArgument, "the first message on Connect must be Hello")
	}
	sess := &Session{DeviceID: id, Hello: first.GetHello(), send: make(chan *agentv1.VerifierMessage, 16), end: make(chan error, 1)}
	session := &agentv1.Session{}
	if v.Session != nil {
		session = proto.CloneOf(v.Session)
	}
	session.VerifierTime = timestamppb.New(v.now())
	if err := stream.Send(&agentv1.VerifierMessage{Message: &agentv1.VerifierMessage_Session{Session: session}}); err != nil {
		return err
	}
	if v.PolicySet != nil {
		if err := stream.Send(&agentv1.VerifierMessage{Message: &agentv1.VerifierMessage_PolicySet{PolicySet: v.PolicySet}}); err != nil {
			return err
		}
	}
	v.Sessions <- sess

	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	recvErr := make(chan error, 1)
	acks := make(chan uint64, 256)
	go func() {
		recvErr <- v.read(ctx, stream, id, acks)
	}()
	for {
		select {
		case err := <-recvErr:
			return err
		case err := <-sess.end:
			return err
		case m := <-sess.send:
			if err := stream.Send(m); err != nil {
				return err
			}
		case seq := <-acks:
			if err := stream.Send(&agentv1.VerifierMessage{Message: &agentv1.VerifierMessage_Ack{Ack: &agentv1.Ack{Seq: seq}}}); err != nil {
				return err
			}
		}
	}
}

func (v *Verifier) read(ctx context.Context, stream agentv1.AgentService_ConnectServer, id string, acks chan<- uint64) error {
	for {
		m, err := stream.Recv()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		sr := m.GetReport()
		if sr == nil {
			return status.Error(codes.InvalidArgument, "expected a report")
		}
		v.mu.Lock()
		pub := v.keys[id]
		v.mu.Unlock()
		r, err := report.Verify(pub, sr)
		if err != nil {
			return status.Errorf(codes.PermissionDenied, "report rejected: %v", err)
		}
		if r.GetDeviceId() != id {
			return status.Error(codes.PermissionDenied, "device mismatch")
		}
		v.mu.Lock()
		last := v.lastSeq[id]
		if v.accepted[id] == nil {
			v.accepted[id] = map[uint64][]byte{}
		}
		stored, seen := v.accepted[id][r.GetSeq()]
		dup := false
		switch {
		case r.GetSeq() > last:
			v.lastSeq[id] = r.GetSeq()
			v.accepted[id][r.GetSeq()] = sr.GetPayload()
		case seen && bytes.Equal(stored, sr.GetPayload()):
			dup = true
		default:
			v.mu.Unlock()
			return status.Errorf(codes.AlreadyExists, "report seq %d is not greater than the last accepted seq %d", r.GetSeq(), last)
		}
		autoAck := v.AutoAck
		v.mu.Unlock()
		v.Reports <- Received{Report: r, Payload: sr.GetPayload(), Duplicate: dup}
		if autoAck {
			acks <- r.GetSeq()
		}
	}
}

// String helps failure messages.
func (r Received) String() string {
	return fmt.Sprintf("seq=%d results=%d nonce=%x dup=%v", r.Report.GetSeq(), len(r.Report.GetResults()), r.Report.GetNonce(), r.Duplicate)
}
