package grpclite

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/clearance/clearance/internal/testkit"
)

// The verifier's terms for device connections (verifier/grpcconn), which
// both servers are measured with.
const (
	benchWindow     = 64 << 10
	benchMaxStreams = 32
)

// holdHandler answers a stream's first message and then blocks in Recv,
// as the verifier's Connect handler holds an agent's stream.
var holdHandler = &impl{bidi: func(ss grpc.ServerStream) error {
	in := new(wrapperspb.StringValue)
	if err := ss.RecvMsg(in); err != nil {
		return err
	}
	if err := ss.SendMsg(in); err != nil {
		return err
	}
	for {
		if err := ss.RecvMsg(in); err != nil {
			if err == io.EOF {
				return nil
			}
			return err
		}
	}
}}

// heldServer is a server under measurement.
type heldServer struct {
	serve func(net.Listener) error
	stop  func()
}

func newHeldServer(b *testing.B, kind string) heldServer {
	creds := credentials.NewTLS(testPKI(b).server)
	switch kind {
	case "grpclite":
		s := NewServer(Options{
			Creds: creds, MaxConcurrentStreams: benchMaxStreams, MaxHeaderListSize: 64 << 10,
			ConnectionTimeout: 10 * time.Second, KeepaliveTime: 2 * time.Minute, KeepaliveTimeout: 20 * time.Second,
			PingMinTime: 20 * time.Second, PermitWithoutStream: true,
			WindowSize: benchWindow, WriteBufferSize: 4096,
		})
		s.RegisterService(&testDesc, holdHandler)
		return heldServer{serve: s.Serve, stop: s.Stop}
	case "grpc-go":
		s := grpc.NewServer(
			grpc.Creds(creds), grpc.MaxConcurrentStreams(benchMaxStreams), grpc.MaxHeaderListSize(64<<10),
			grpc.ConnectionTimeout(10*time.Second),
			grpc.KeepaliveParams(keepalive.ServerParameters{Time: 2 * time.Minute, Timeout: 20 * time.Second}),
			grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 20 * time.Second, PermitWithoutStream: true}),
			grpc.StaticStreamWindowSize(benchWindow), grpc.StaticConnWindowSize(benchWindow),
			grpc.ReadBufferSize(0), grpc.WriteBufferSize(4096), grpc.SharedWriteBuffer(true),
		)
		s.RegisterService(&testDesc, holdHandler)
		return heldServer{serve: s.Serve, stop: s.Stop}
	}
	b.Fatalf("no server %q", kind)
	return heldServer{}
}

// BenchmarkHeldStreams is what a server holds per connection that holds
// one idle bidi stream (its handler blocked in Recv): grpclite's and
// grpc-go's, with the verifier's settings, in the same run. The clients
// (grpc-go over mutual TLS 1.3) run in a child process, this test binary
// again running TestHeldStreamsClients, so that this process is the server
// alone. Measured after two GCs and a return of freed memory to the OS:
// RSS, live heap, goroutine stacks and goroutines, each the growth from
// before the clients, divided by them. CLEARANCE_HELD_STREAMS sets the
// number of connections (default 100; the target is measured at 2000);
// with CLEARANCE_PROFILE_DIR set, each server's heap profile is written
// there while the connections are held.
func BenchmarkHeldStreams(b *testing.B) {
	n := 100
	if v := os.Getenv("CLEARANCE_HELD_STREAMS"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 1 {
			b.Fatalf("CLEARANCE_HELD_STREAMS=%q: want a positive number", v)
		}
	}
	for range b.N {
		rss := map[string]float64{}
		for _, kind := range []string{"grpc-go", "grpclite"} {
			per := measureHeld(b, kind, n)
			rss[kind] = per.rss
			b.ReportMetric(per.rss, kind+"-rss-KiB/conn")
			b.ReportMetric(per.heap, kind+"-heap-KiB/conn")
			b.ReportMetric(per.stack, kind+"-stack-KiB/conn")
			b.ReportMetric(per.goroutines, kind+"-goroutines/conn")
		}
		b.ReportMetric(float64(n), "conns")
		if rss["grpc-go"] > 0 {
			b.ReportMetric(rss["grpclite"]/rss["grpc-go"], "rss-ratio")
		}
	}
}

type perConn struct{ rss, heap, stack, goroutines float64 }

func measureHeld(b *testing.B, kind string, n int) perConn {
	b.Helper()
	srv := newHeldServer(b, kind)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.serve(l) }()
	defer func() { srv.stop(); <-served }()

	base := memNow()
	p := testPKI(b)
	child := startHeldClients(b, heldJob{Addr: l.Addr().String(), Conns: n,
		Cert: string(p.clientCert), Key: string(p.clientKey), Root: string(p.rootPEM)})
	child.await(b, "connected")
	held := memNow()
	if dir := os.Getenv("CLEARANCE_PROFILE_DIR"); dir != "" {
		writeHeapProfile(b, filepath.Join(dir, "heap-"+kind+".pprof"))
	}
	child.finish(b)

	kib := func(a, b uint64) float64 { return (float64(a) - float64(b)) / 1024 / float64(n) }
	return perConn{
		rss: kib(held.rss, base.rss), heap: kib(held.heap, base.heap), stack: kib(held.stack, base.stack),
		goroutines: float64(held.goroutines-base.goroutines) / float64(n),
	}
}

func writeHeapProfile(b *testing.B, path string) {
	b.Helper()
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
		b.Fatal(err)
	}
}

type memState struct {
	rss, heap, stack uint64
	goroutines       int
}

// memNow is what this process holds after two GCs (pooled buffers outlive
// the first) and with freed memory returned to the OS, so that one
// server's measurement does not reuse the pages of the other's.
func memNow() memState {
	runtime.GC()
	runtime.GC()
	debug.FreeOSMemory()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return memState{heap: ms.HeapAlloc, stack: ms.StackInuse, rss: selfRSS(), goroutines: runtime.NumGoroutine()}
}

// selfRSS reads VmRSS from /proc/self/status (0 elsewhere than Linux).
func selfRSS() uint64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return kb * 1024
		}
	}
	return 0
}

// heldJob is the child's work, passed in its environment.
type heldJob struct {
	Addr            string
	Conns           int
	Cert, Key, Root string
}

const heldJobEnv = "CLEARANCE_BENCH_HELD_JOB"

// TestHeldStreamsClients is BenchmarkHeldStreams's clients, run only as its
// child process: it opens the connections, each with a Bidi stream that
// has had its first answer, prints "connected", and holds them until its
// stdin closes.
func TestHeldStreamsClients(t *testing.T) {
	raw := os.Getenv(heldJobEnv)
	if raw == "" {
		t.Skip("run by BenchmarkHeldStreams")
	}
	var job heldJob
	if err := json.Unmarshal([]byte(raw), &job); err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair([]byte(job.Cert), []byte(job.Key))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM([]byte(job.Root))
	creds := credentials.NewTLS(&tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{cert}, RootCAs: roots, ServerName: "localhost"})

	var (
		mu      sync.Mutex
		conns   []*grpc.ClientConn
		streams []grpc.ClientStream
		errs    []error
		wg      sync.WaitGroup
		work    = make(chan struct{})
	)
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range work {
				cc, cs, err := holdOne(t, job.Addr, creds)
				mu.Lock()
				if err != nil {
					errs = append(errs, err)
				} else {
					conns, streams = append(conns, cc), append(streams, cs)
				}
				mu.Unlock()
			}
		}()
	}
	for range job.Conns {
		work <- struct{}{}
	}
	close(work)
	wg.Wait()
	if len(errs) > 0 {
		t.Fatalf("%d of %d connections failed; first: %v", len(errs), job.Conns, errs[0])
	}
	fmt.Println("connected")
	_, _ = io.Copy(io.Discard, os.Stdin)
	for _, cc := range conns {
		cc.Close()
	}
	_ = streams
}

func holdOne(t *testing.T, addr string, creds credentials.TransportCredentials) (*grpc.ClientConn, grpc.ClientStream, error) {
	cc, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		return nil, nil, err
	}
	cs, err := cc.NewStream(t.Context(), bidiDesc, mBidi)
	if err == nil {
		err = cs.SendMsg(wrapperspb.String("hello"))
	}
	if err == nil {
		err = cs.RecvMsg(new(wrapperspb.StringValue))
	}
	if err != nil {
		cc.Close()
		return nil, nil, err
	}
	return cc, cs, nil
}

// heldClients is the child process.
type heldClients struct{ *testkit.Child }

func startHeldClients(b *testing.B, job heldJob) *heldClients {
	b.Helper()
	return &heldClients{testkit.StartChild(b, "TestHeldStreamsClients", heldJobEnv, job)}
}

func (h *heldClients) await(b *testing.B, word string) {
	b.Helper()
	for h.Out.Scan() {
		if h.Out.Text() == word {
			return
		}
	}
	b.Fatalf("client process ended before %q: %v", word, h.Out.Err())
}

func (h *heldClients) finish(b *testing.B) {
	b.Helper()
	h.Stdin.Close()
	for h.Out.Scan() {
	}
	if err := h.Cmd.Wait(); err != nil {
		b.Fatalf("client process: %v", err)
	}
}
