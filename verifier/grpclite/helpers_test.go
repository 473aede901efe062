package grpclite

import (
	"context"
	"crypto/tls"
	"net"
	"runtime"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/clearance/clearance/internal/testkit"
	"github.com/clearance/clearance/internal/testkit/testpki"
)

// The test service, declared by hand over well-known types.
const (
	testService = "grpclite.test.Test"
	mUnary      = "/" + testService + "/Unary"
	mBidi       = "/" + testService + "/Bidi"
	mServer     = "/" + testService + "/ServerStream"
)

// testServer is the service's handler type: any value serves.
type testServer interface{}

// impl is the service: each test sets what its methods do.
type impl struct {
	unary  func(ctx context.Context, in *wrapperspb.StringValue) (*wrapperspb.StringValue, error)
	bidi   func(ss grpc.ServerStream) error
	server func(in *wrapperspb.StringValue, ss grpc.ServerStream) error
}

var testDesc = grpc.ServiceDesc{
	ServiceName: testService,
	HandlerType: (*testServer)(nil),
	Methods: []grpc.MethodDesc{{
		MethodName: "Unary",
		Handler: func(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
			in := new(wrapperspb.StringValue)
			if err := dec(in); err != nil {
				return nil, err
			}
			h := func(ctx context.Context, req any) (any, error) {
				return srv.(*impl).unary(ctx, req.(*wrapperspb.StringValue))
			}
			if interceptor == nil {
				return h(ctx, in)
			}
			return interceptor(ctx, in, &grpc.UnaryServerInfo{Server: srv, FullMethod: mUnary}, h)
		},
	}},
	Streams: []grpc.StreamDesc{{
		StreamName:    "Bidi",
		ServerStreams: true, ClientStreams: true,
		Handler: func(srv any, ss grpc.ServerStream) error { return srv.(*impl).bidi(ss) },
	}, {
		StreamName:    "ServerStream",
		ServerStreams: true,
		Handler: func(srv any, ss grpc.ServerStream) error {
			in := new(wrapperspb.StringValue)
			if err := ss.RecvMsg(in); err != nil {
				return err
			}
			return srv.(*impl).server(in, ss)
		},
	}},
}

var (
	bidiDesc   = &grpc.StreamDesc{ServerStreams: true, ClientStreams: true}
	serverDesc = &grpc.StreamDesc{ServerStreams: true}
)

// pki is a throwaway CA with a server and a client certificate.
type pki struct {
	server, client *tls.Config
	// The client's identity as PEM, for a child process.
	clientCert, clientKey, rootPEM []byte
}

var (
	pkiOnce sync.Once
	thePKI  pki
)

func testPKI(t testing.TB) pki {
	pkiOnce.Do(func() {
		ca := testpki.NewCA(t)
		srv := ca.Issue(t, testpki.CN("server"), testpki.ServerAuth(), testpki.DNS("localhost"))
		cli := ca.Issue(t, testpki.CN("device-1"), testpki.ClientAuth())
		roots := ca.Pool()
		thePKI = pki{
			server: &tls.Config{
				MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{srv.TLS()},
				ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: roots,
			},
			client: &tls.Config{
				MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{cli.TLS()},
				RootCAs: roots, ServerName: "localhost",
			},
			clientCert: cli.CertPEM(), clientKey: cli.KeyPEM(t), rootPEM: ca.CertPEM(),
		}
	})
	return thePKI
}

// serve starts s on a loopback listener and stops it when the test ends.
func serve(t testing.TB, s *Server) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(l) }()
	t.Cleanup(func() {
		s.Stop()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return l.Addr().String()
}

// newTLSServer is a server with mutual TLS and the test service on h.
func newTLSServer(t testing.TB, h *impl, o Options) (*Server, string) {
	t.Helper()
	o.Creds = credentials.NewTLS(testPKI(t).server)
	s := NewServer(o)
	s.RegisterService(&testDesc, h)
	return s, serve(t, s)
}

// dial is a grpc-go client over mutual TLS.
func dial(t testing.TB, addr string, opts ...grpc.DialOption) *grpc.ClientConn {
	t.Helper()
	opts = append([]grpc.DialOption{grpc.WithTransportCredentials(credentials.NewTLS(testPKI(t).client))}, opts...)
	cc, err := grpc.NewClient("passthrough:///"+addr, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// settleGoroutines waits until the goroutine count is back to at most
// base (what the test started with).
func settleGoroutines(t testing.TB, base int) {
	t.Helper()
	if !testkit.Poll(10*time.Second, func() bool { return runtime.NumGoroutine() <= base }) {
		buf := make([]byte, 1<<20)
		n := runtime.Stack(buf, true)
		t.Fatalf("%d goroutines, want at most %d:\n%s", runtime.NumGoroutine(), base, buf[:n])
	}
}
