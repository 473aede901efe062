// Package e2e runs the real binaries together on loopback: the verifier, and
// (as they exist) the agent and the osquery stand-in. Everything here talks
// to processes, not packages.
package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"

	"github.com/clearance/clearance/internal/localport"
	"github.com/clearance/clearance/internal/protoagent"
	"github.com/clearance/clearance/internal/testkit"
	adminv1 "github.com/clearance/clearance/proto/gen/clearance/admin/v1"
)

// binDir holds the binaries built once for the whole package.
var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "clearance-e2e-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	// clearance_testclock lets a test shift the agent's clock
	// (CLEARANCE_TEST_CLOCK_OFFSET, see agent/clock); nothing else differs
	// from a release build.
	cmd := exec.Command("go", "build", "-tags", "clearance_testclock", "-o", dir+"/", "../verifier/cmd/clearance-verifier", "../agent/cmd/clearance-agent", "../internal/osquerysim/cmd/osquery-sim")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building binaries:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// freePort is a loopback address for a process the test starts; see
// localport for why not port 0.
func freePort(t *testing.T) string {
	t.Helper()
	a, err := localport.Addr()
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// verifier is a running clearance-verifier process.
type verifier struct {
	t        *testing.T
	dataDir  string
	grpcAddr string
	httpAddr string
	cmd      *exec.Cmd
	logs     *syncBuffer
	exited   chan error
}

// syncBuffer collects a process's output while the test reads it.
type syncBuffer = testkit.Buffer

func policiesFile(t *testing.T) string {
	p, err := filepath.Abs("../examples/policies.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// startVerifier starts the binary on dataDir (created if empty) and waits
// until its health check says SERVING.
func startVerifier(t *testing.T, dataDir string) *verifier {
	t.Helper()
	return startVerifierWith(t, dataDir, policiesFile(t))
}

// startVerifierWith starts the verifier with the given policy file.
func startVerifierWith(t *testing.T, dataDir, policies string) *verifier {
	t.Helper()
	return startVerifierAt(t, dataDir, policies, freePort(t), freePort(t))
}

// startVerifierArgs starts the verifier on free gRPC and HTTP ports with
// the given flags after the data dir and policies.
func startVerifierArgs(t *testing.T, dataDir string, args ...string) *verifier {
	t.Helper()
	return startVerifierOn(t, dataDir, freePort(t), freePort(t), args...)
}

// startVerifierOn is startVerifierArgs on the given gRPC and HTTP
// addresses (a restart reuses its predecessor's).
func startVerifierOn(t *testing.T, dataDir, grpcAddr, httpAddr string, args ...string) *verifier {
	t.Helper()
	v := &verifier{t: t, dataDir: dataDir, grpcAddr: grpcAddr, httpAddr: httpAddr, logs: &syncBuffer{}, exited: make(chan error, 1)}
	v.cmd = exec.Command(filepath.Join(binDir, "clearance-verifier"), append([]string{"serve",
		"--data-dir", dataDir, "--policies", policiesFile(t),
		"--grpc-listen", v.grpcAddr, "--http-listen", v.httpAddr, "--public-url", "https://localhost:8443"}, args...)...)
	return v.run()
}

// offSSO keeps the SSO listener off its default port, which parallel tests
// would share, for tests that do not sign in (those that do start their
// own verifier).
var offSSO = []string{"--sso-listen", "127.0.0.1:0", "--sso-public-url", "https://localhost:8444"}

// startVerifierAt starts the verifier on the given addresses (a restart
// reuses its predecessor's, so agents find it again).
func startVerifierAt(t *testing.T, dataDir, policies, grpcAddr, httpAddr string) *verifier {
	t.Helper()
	v := &verifier{t: t, dataDir: dataDir, grpcAddr: grpcAddr, httpAddr: httpAddr, logs: &syncBuffer{}, exited: make(chan error, 1)}
	v.cmd = exec.Command(filepath.Join(binDir, "clearance-verifier"), append([]string{"serve",
		"--data-dir", dataDir, "--policies", policies,
		"--grpc-listen", v.grpcAddr, "--http-listen", v.httpAddr, "--public-url", "https://localhost:8443"}, offSSO...)...)
	return v.run()
}

// run starts v.cmd and waits until the verifier is serving.
func (v *verifier) run() *verifier {
	v.t.Helper()
	v.cmd.Stdout, v.cmd.Stderr = v.logs, v.logs
	if err := v.cmd.Start(); err != nil {
		v.t.Fatal(err)
	}
	return v.started()
}

// started follows the verifier v.cmd started: it stops it when the test
// ends, and waits until it is serving.
func (v *verifier) started() *verifier {
	t := v.t
	t.Helper()
	go func() { v.exited <- v.cmd.Wait() }()
	t.Cleanup(func() {
		v.stop()
		if t.Failed() {
			t.Logf("verifier log:\n%s", v.logs.String())
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		if ok := v.serving(); ok {
			return v
		}
		select {
		case err := <-v.exited:
			t.Fatalf("verifier exited during start: %v\n%s", err, v.logs.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("verifier not serving after 30s:\n%s", v.logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (v *verifier) rootPEM() []byte {
	b, err := os.ReadFile(filepath.Join(v.dataDir, "ca.pem"))
	if err != nil {
		v.t.Fatal(err)
	}
	return b
}

func (v *verifier) conn() *grpc.ClientConn {
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(v.rootPEM())
	c, err := grpc.NewClient(v.grpcAddr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: roots, ServerName: "localhost"})))
	if err != nil {
		v.t.Fatal(err)
	}
	v.t.Cleanup(func() { c.Close() })
	return c
}

func (v *verifier) serving() bool {
	if _, err := os.Stat(filepath.Join(v.dataDir, "ca.pem")); err != nil {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	resp, err := healthpb.NewHealthClient(v.conn()).Check(ctx, &healthpb.HealthCheckRequest{})
	return err == nil && resp.GetStatus() == healthpb.HealthCheckResponse_SERVING
}

// stop sends SIGTERM and waits; the verifier must exit cleanly.
func (v *verifier) stop() {
	if v.cmd.ProcessState != nil {
		return
	}
	_ = v.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-v.exited:
		if err != nil {
			v.t.Errorf("verifier exited with %v", err)
		}
	case <-time.After(20 * time.Second):
		_ = v.cmd.Process.Kill()
		v.t.Errorf("verifier did not stop within 20s of SIGTERM")
	}
}

func (v *verifier) token() string { return v.readToken("admin.token") }

// readToken reads a token file of the data dir.
func (v *verifier) readToken(name string) string {
	b, err := os.ReadFile(filepath.Join(v.dataDir, name))
	if err != nil {
		v.t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

func (v *verifier) admin() (adminv1.AdminServiceClient, context.Context) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	v.t.Cleanup(cancel)
	return adminv1.NewAdminServiceClient(v.conn()), metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+v.token())
}

// enrollSecret makes an enroll secret for v with the CLI, as an admin does.
func (v *verifier) enrollSecret() string {
	v.t.Helper()
	return lastLine(cli(v.t, "secret", "create", "--data-dir", v.dataDir))
}

// enrollAgent enrolls a made-up Mac (protoagent) with hardwareUUID and
// secret at addr, where a verifier whose CA is root listens.
func enrollAgent(t *testing.T, addr string, root []byte, secret, hardwareUUID string) *protoagent.Agent {
	t.Helper()
	a, err := protoagent.New(addr, root, hardwareUUID)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := a.Enroll(ctx, secret); err != nil {
		t.Fatalf("enrolling %s at %s: %v", hardwareUUID, addr, err)
	}
	return a
}

// cli runs clearance-verifier with args and returns stdout.
func cli(t *testing.T, args ...string) string {
	t.Helper()
	var out, errOut bytes.Buffer
	cmd := exec.Command(filepath.Join(binDir, "clearance-verifier"), args...)
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		t.Fatalf("clearance-verifier %s: %v\n%s", strings.Join(args, " "), err, errOut.String())
	}
	return out.String()
}

func lastLine(s string) string {
	var last string
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" {
			last = l
		}
	}
	return last
}
