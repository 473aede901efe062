package loadgen

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"

	"github.com/clearance/clearance/internal/localport"
	adminv1 "github.com/clearance/clearance/proto/gen/clearance/admin/v1"
)

// The simulated Okta org a verifier started with --start is configured for.
const (
	SimAudience = "https://www.okta.com/saml2/service-provider/spclearanceloadgen01"
	SimACSURL   = "https://loadgen.okta.example/sso/saml2/0oaclearanceloadgen"
	SimUser     = "load.test@example.com"
)

// Target is the verifier under load and what loadgen needs to speak to it.
type Target struct {
	GRPCAddr string // agents and admin API
	SSOURL   string // base URL of the sign-in listener, as in --sso-public-url
	SSODial  string // where that listener really is (host:port)
	RootPEM  []byte // the verifier's CA
	Token    string // admin bearer token
	PID      int    // 0 when unknown: no RSS figures
	// HTTPAddr is the HTTPS listener (/healthz, /metrics), when known.
	HTTPAddr string
	// DataDir is the verifier's data dir, when known: with SQLite in it,
	// the hostile phase reads the database's size.
	DataDir string

	// Okta settings the verifier has, for building requests it accepts.
	OktaAudience, OktaACSURL string
}

// ReadDataDir fills RootPEM, Token and DataDir from a verifier's data
// directory.
func (t *Target) ReadDataDir(dir string) error {
	root, err := os.ReadFile(filepath.Join(dir, "ca.pem"))
	if err != nil {
		return fmt.Errorf("reading the verifier's CA: %w", err)
	}
	tok, err := os.ReadFile(filepath.Join(dir, "admin.token"))
	if err != nil {
		return fmt.Errorf("reading the admin token: %w", err)
	}
	t.RootPEM, t.Token, t.DataDir = root, strings.TrimSpace(string(tok)), dir
	return nil
}

// adminConn is a TLS connection to the gRPC listener (no client
// certificate: the admin API takes the bearer token).
func (t *Target) adminConn() (*grpc.ClientConn, error) {
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(t.RootPEM) {
		return nil, errors.New("no certificate in the verifier's ca.pem")
	}
	return grpc.NewClient(t.GRPCAddr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: roots, ServerName: "localhost", MinVersion: tls.VersionTLS12})))
}

func (t *Target) authorized(ctx context.Context) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+t.Token)
}

// EnrollSecret makes a fresh enroll secret through the admin API.
func (t *Target) EnrollSecret(ctx context.Context) (string, error) {
	conn, err := t.adminConn()
	if err != nil {
		return "", err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	resp, err := adminv1.NewAdminServiceClient(conn).CreateEnrollSecret(t.authorized(ctx), &adminv1.CreateEnrollSecretRequest{Description: "clearance-loadgen"})
	if err != nil {
		return "", fmt.Errorf("creating an enroll secret: %w", err)
	}
	return resp.GetSecret(), nil
}

// Process is a clearance-verifier that loadgen started and owns.
type Process struct {
	Target
	cmd    *exec.Cmd
	exited chan error
	log    *os.File
}

// StartOptions say how to start the verifier.
type StartOptions struct {
	Binary   string // clearance-verifier
	Policies string // policy YAML
	// LiveCheckAfter is passed as --live-check-after, so that sign-ins are
	// decided from stored reports when agents report less often than the
	// default 30s.
	LiveCheckAfter time.Duration
	// Database is passed as --database when set (a postgres:// URL); empty
	// keeps the verifier on SQLite in its data dir.
	Database string
	// Hostile starts the verifier with its limits at their defaults, and
	// HostileProxy as a trusted proxy, for the hostile phase. Otherwise the
	// sign-in rate limit is off: the other phases measure the verifier's
	// ceilings from a few loopback addresses, not its limiter.
	Hostile bool
}

// Start runs the verifier on free loopback ports with a fresh data dir and
// Okta configured for the simulated org (requests unsigned: Okta's
// "Request signature" setting off, so loadgen's own RSA signs do not take
// the verifier's cores). It waits until the health check says SERVING.
func Start(ctx context.Context, o StartOptions) (*Process, error) {
	dir, err := os.MkdirTemp("", "clearance-loadgen")
	if err != nil {
		return nil, err
	}
	p := &Process{exited: make(chan error, 1)}
	p.DataDir = filepath.Join(dir, "data")
	ports, err := freePorts(3)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	p.GRPCAddr, p.HTTPAddr, p.SSODial = ports[0], ports[1], ports[2]
	_, ssoPort, _ := net.SplitHostPort(p.SSODial)
	_, grpcPort, _ := net.SplitHostPort(p.GRPCAddr)
	p.SSOURL = "https://localhost:" + ssoPort
	p.OktaAudience, p.OktaACSURL = SimAudience, SimACSURL
	args := []string{"serve", "--data-dir", p.DataDir, "--policies", o.Policies,
		"--grpc-listen", p.GRPCAddr, "--http-listen", p.HTTPAddr, "--public-url", "https://localhost:" + grpcPort,
		"--sso-listen", p.SSODial, "--sso-public-url", p.SSOURL,
		"--okta-audience", SimAudience, "--okta-acs-url", SimACSURL,
		// Browsers with a certificate use it; browsers without one sign in
		// with the agent's proof: both bindings in one run.
		"--browser-binding", "either",
		// loadgen's Okta does not sign (see Start's doc).
		"--allow-unsigned-requests",
		"--log-level", "warn"}
	if o.LiveCheckAfter > 0 {
		args = append(args, "--live-check-after", o.LiveCheckAfter.String())
	}
	if o.Database != "" {
		args = append(args, "--database", o.Database)
	}
	if o.Hostile {
		args = append(args, "--trusted-proxies", HostileProxy)
	} else {
		// The other phases measure the verifier's ceilings: no limit on
		// one address, nor on unsigned sign-ins from every address.
		args = append(args, "--sso-rate-limit", "0", "--sso-unsigned-rate-limit", "0")
	}
	p.log, err = os.Create(filepath.Join(dir, "verifier.log"))
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	p.cmd = exec.Command(o.Binary, args...)
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	if err := p.cmd.Start(); err != nil {
		p.log.Close()
		os.RemoveAll(dir)
		return nil, fmt.Errorf("starting %s: %w", o.Binary, err)
	}
	p.PID = p.cmd.Process.Pid
	go func() { p.exited <- p.cmd.Wait() }() // owned by p: Stop reads it
	deadline := time.Now().Add(30 * time.Second)
	for {
		if p.serving(ctx) {
			return p, nil
		}
		select {
		case err := <-p.exited:
			p.exited <- err
			p.Stop()
			return nil, fmt.Errorf("verifier exited during start (%v); log: %s", err, p.LogTail())
		case <-ctx.Done():
			p.Stop()
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			p.Stop()
			return nil, fmt.Errorf("verifier not serving after 30s; log: %s", p.LogTail())
		}
	}
}

func (p *Process) serving(ctx context.Context) bool {
	if err := p.ReadDataDir(p.DataDir); err != nil {
		return false
	}
	conn, err := p.adminConn()
	if err != nil {
		return false
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	return err == nil && resp.GetStatus() == healthpb.HealthCheckResponse_SERVING
}

// LogTail is the end of the verifier's log.
func (p *Process) LogTail() string {
	b, err := os.ReadFile(p.log.Name())
	if err != nil {
		return err.Error()
	}
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// Stop sends SIGTERM, waits up to 30s (then kills) and removes the data
// dir. It returns how the process ended.
func (p *Process) Stop() error {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	var err error
	select {
	case err = <-p.exited:
	case <-time.After(30 * time.Second):
		_ = p.cmd.Process.Kill()
		err = errors.New("verifier did not stop within 30s of SIGTERM; killed")
		<-p.exited
	}
	p.log.Close()
	os.RemoveAll(filepath.Dir(p.DataDir))
	return err
}

func freePorts(n int) ([]string, error) { return localport.Addrs(n) }
