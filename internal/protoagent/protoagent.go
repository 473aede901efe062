// Package protoagent is a minimal agent built only from the generated proto
// and the standard library's crypto. Verifier tests and the load generator use
// it to speak AgentService exactly as the documented contract says, so they
// check the verifier independently of clearance-agent's own code.
package protoagent

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/clearance/clearance/pkg/keyrotation"
	"github.com/clearance/clearance/pkg/policy"
	agentv1 "github.com/clearance/clearance/proto/gen/clearance/agent/v1"
)

// Agent is one simulated device.
type Agent struct {
	Addr  string
	Roots *x509.CertPool
	Key   *ecdsa.PrivateKey
	Facts *agentv1.DeviceFacts
	// HelloFacts, when set, are the facts Connect's Hello gives (the
	// device's facts now, as an agent gives them at each connection).
	HelloFacts *agentv1.DeviceFacts
	DeviceID   string
	CertDER    []byte
	Chain      [][]byte
}

// New makes a device with a fresh P-256 key and the given hardware UUID,
// and a serial number of its own made from it (SerialFor): a verifier
// admits no second device on a serial one already has.
func New(addr string, rootPEM []byte, hardwareUUID string) (*Agent, error) {
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(rootPEM) {
		return nil, errors.New("no certificate in root PEM")
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	return &Agent{
		Addr: addr, Roots: roots, Key: key,
		Facts: &agentv1.DeviceFacts{
			HardwareUuid: hardwareUUID, SerialNumber: SerialFor(hardwareUUID), Model: "MacBookPro18,3",
			OsName: "macOS", OsVersion: "15.1.1", Hostname: "test-mac", Platform: "darwin", AgentVersion: "test",
		},
	}, nil
}

// SerialFor is the serial number New gives the device with hardwareUUID:
// "C02" and nine upper-case hex digits of the UUID's SHA-256.
func SerialFor(hardwareUUID string) string {
	sum := sha256.Sum256([]byte(hardwareUUID))
	return "C02" + strings.ToUpper(hex.EncodeToString(sum[:]))[:9]
}

// CSR returns a DER certificate request signed by key.
func CSR(key crypto.Signer) ([]byte, error) {
	return x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "clearance-device"}}, key)
}

// Dial connects with mTLS if the agent holds a certificate, else TLS only.
func (a *Agent) Dial() (*grpc.ClientConn, error) {
	host, _, err := net.SplitHostPort(a.Addr)
	if err != nil {
		return nil, err
	}
	cfg := &tls.Config{RootCAs: a.Roots, ServerName: host, MinVersion: tls.VersionTLS12}
	if a.CertDER != nil {
		cfg.Certificates = []tls.Certificate{{Certificate: append([][]byte{a.CertDER}, a.Chain...), PrivateKey: a.Key}}
	}
	return grpc.NewClient(a.Addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
}

// EnrollRaw sends an Enroll request as given.
func (a *Agent) EnrollRaw(ctx context.Context, req *agentv1.EnrollRequest) (*agentv1.EnrollResponse, error) {
	conn, err := a.Dial()
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	return agentv1.NewAgentServiceClient(conn).Enroll(ctx, req)
}

// Enroll enrolls with the agent's key and facts and keeps the certificate.
func (a *Agent) Enroll(ctx context.Context, secret string) (*agentv1.EnrollResponse, error) {
	csr, err := CSR(a.Key)
	if err != nil {
		return nil, err
	}
	resp, err := a.EnrollRaw(ctx, &agentv1.EnrollRequest{EnrollSecret: secret, Csr: csr, Facts: a.Facts})
	if err != nil {
		return nil, err
	}
	a.DeviceID, a.CertDER, a.Chain = resp.GetDeviceId(), resp.GetCertificate(), resp.GetCaChain()
	return resp, nil
}

// EnrollRotating enrolls with the agent's key, proving it with previous,
// the key the device enrolled with before (pkg/keyrotation), and keeps the
// certificate.
func (a *Agent) EnrollRotating(ctx context.Context, secret string, previous crypto.Signer) (*agentv1.EnrollResponse, error) {
	csr, err := CSR(a.Key)
	if err != nil {
		return nil, err
	}
	proof, err := keyrotation.Sign(previous, csr)
	if err != nil {
		return nil, err
	}
	resp, err := a.EnrollRaw(ctx, &agentv1.EnrollRequest{EnrollSecret: secret, Csr: csr, Facts: a.Facts, KeyProof: proof})
	if err != nil {
		return nil, err
	}
	a.DeviceID, a.CertDER, a.Chain = resp.GetDeviceId(), resp.GetCertificate(), resp.GetCaChain()
	return resp, nil
}

// Stream is an open Connect stream.
type Stream struct {
	conn      *grpc.ClientConn
	cancel    context.CancelFunc
	Client    agentv1.AgentService_ConnectClient
	Session   *agentv1.Session
	PolicySet *agentv1.PolicySet
}

// Connect opens Connect, sends Hello and waits for the Session and the
// PolicySet.
func (a *Agent) Connect(ctx context.Context) (*Stream, error) {
	conn, err := a.Dial()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	st := &Stream{conn: conn, cancel: cancel}
	st.Client, err = agentv1.NewAgentServiceClient(conn).Connect(ctx)
	if err != nil {
		st.Close()
		return nil, err
	}
	if err := st.Client.Send(&agentv1.AgentMessage{Message: &agentv1.AgentMessage_Hello{Hello: &agentv1.Hello{AgentVersion: "test", Facts: a.HelloFacts}}}); err != nil {
		// The server may already have ended the stream; its status comes from Recv.
		if _, rerr := st.Client.Recv(); rerr != nil {
			err = rerr
		}
		st.Close()
		return nil, err
	}
	m, err := st.Client.Recv()
	if err != nil {
		st.Close()
		return nil, err
	}
	if m.GetSession() == nil {
		st.Close()
		return nil, fmt.Errorf("expected Session first, got %v", m)
	}
	st.Session = m.GetSession()
	if m, err = st.Client.Recv(); err != nil {
		st.Close()
		return nil, err
	}
	if m.GetPolicySet() == nil {
		st.Close()
		return nil, fmt.Errorf("expected PolicySet first, got %v", m)
	}
	st.PolicySet = m.GetPolicySet()
	return st, nil
}

// Close ends the stream and its connection.
func (st *Stream) Close() {
	st.cancel()
	st.conn.Close()
}

// AnswerChecks answers every CheckNow on st with report(seq, nonce), seq
// counting on from first, until the stream ends or a send fails. Other
// messages are read and dropped.
func (st *Stream) AnswerChecks(first uint64, report func(seq uint64, nonce []byte) *agentv1.SignedReport) {
	seq := first
	for {
		m, err := st.Client.Recv()
		if err != nil {
			return
		}
		if cn := m.GetCheckNow(); cn != nil {
			seq++
			if st.Send(report(seq, cn.GetNonce())) != nil {
				return
			}
		}
	}
}

// Ended reads st until it ends and then sends the error it ended with.
func (st *Stream) Ended() <-chan error {
	ended := make(chan error, 1)
	go func() {
		for {
			if _, err := st.Client.Recv(); err != nil {
				ended <- err
				return
			}
		}
	}()
	return ended
}

// Send sends a signed report.
func (st *Stream) Send(sr *agentv1.SignedReport) error {
	return st.Client.Send(&agentv1.AgentMessage{Message: &agentv1.AgentMessage_Report{Report: sr}})
}

// Exchange sends a report and returns the next message (an Ack if accepted)
// or the error that ended the stream.
func (st *Stream) Exchange(sr *agentv1.SignedReport) (*agentv1.VerifierMessage, error) {
	if err := st.Send(sr); err != nil {
		// The stream's real status comes from Recv.
		_, rerr := st.Client.Recv()
		if rerr != nil {
			return nil, rerr
		}
		return nil, err
	}
	return st.Client.Recv()
}

// Report builds a report for this device with every policy in ps at status.
func (a *Agent) Report(ps *agentv1.PolicySet, seq uint64, observed time.Time, nonce []byte, st agentv1.PolicyStatus) *agentv1.PostureReport {
	r := &agentv1.PostureReport{
		DeviceId: a.DeviceID, Seq: seq, ObservedAt: timestamppb.New(observed), Nonce: nonce,
		PolicySetVersion: ps.GetVersion(), AgentVersion: "test",
	}
	for _, p := range ps.GetPolicies() {
		r.Results = append(r.Results, &agentv1.PolicyResult{PolicyId: p.GetId(), Status: st, Rows: 1, QuerySha256: policy.QueryDigest(p.GetQuery())})
	}
	return r
}

// Sign serializes r and signs it as the contract in stream.proto says:
// ECDSA over SHA-256("clearance posture report v1\n" || payload), written out
// here rather than imported, so tests check the documented scheme.
func Sign(key *ecdsa.PrivateKey, r *agentv1.PostureReport) *agentv1.SignedReport {
	payload, err := proto.MarshalOptions{Deterministic: true}.Marshal(r)
	if err != nil {
		panic(err)
	}
	return SignPayload(key, payload)
}

// SignPayload signs raw payload bytes.
func SignPayload(key *ecdsa.PrivateKey, payload []byte) *agentv1.SignedReport {
	h := sha256.New()
	h.Write([]byte("clearance posture report v1\n"))
	h.Write(payload)
	sig, err := ecdsa.SignASN1(rand.Reader, key, h.Sum(nil))
	if err != nil {
		panic(err)
	}
	return &agentv1.SignedReport{Payload: payload, Signature: sig}
}
