package server_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/clearance/clearance/pkg/run"
	adminv1 "github.com/clearance/clearance/proto/gen/clearance/admin/v1"
	"github.com/clearance/clearance/verifier/admin"
	"github.com/clearance/clearance/verifier/server"
)

// From the moment shutdown begins /healthz answers 503 on --http-listen,
// for as long as the drain lasts (here an agent's stream holds the gRPC
// listener's for up to 5 s), and the listener answers until the end.
func TestHealthzDuringDrain(t *testing.T) {
	t.Parallel()
	cfg := baseConfig(t.TempDir(), examplePolicies(t))
	logs := &logBuffer{}
	log := slog.New(slog.NewTextHandler(logs, nil))
	srv, err := server.New(context.Background(), cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	var g run.Group
	g.Logger = log
	if err := srv.Actors(&g); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	g.Add("test", func() error { <-stop; return nil }, func(error) {})
	done := make(chan error, 1)
	go func() { done <- g.Run() }()

	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(srv.CA.RootPEM())
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true,
		TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: "localhost"}}}
	healthz := func() (int, string, error) {
		resp, err := client.Get("https://" + srv.HTTPAddr.String() + "/healthz")
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body), nil
	}
	if code, body, err := healthz(); err != nil || code != http.StatusOK {
		t.Fatalf("before shutdown: %d %q %v", code, body, err)
	}

	// An agent's stream keeps the drain going.
	tok, err := os.ReadFile(filepath.Join(cfg.DataDir, admin.TokenFile))
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, srv: srv, addr: srv.GRPCAddr.String(), rootPEM: srv.CA.RootPEM(), token: strings.TrimSpace(string(tok)), clock: &clock{t: time.Now()}}
	conn, err := grpc.NewClient(h.addr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: roots, ServerName: "localhost"})))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	h.admin = adminv1.NewAdminServiceClient(conn)
	a := h.enrolled(h.secret())
	h.connect(a)

	close(stop)
	deadline := time.Now().Add(3 * time.Second)
	var code int
	var body string
	for time.Now().Before(deadline) {
		if code, body, err = healthz(); err == nil && code == http.StatusServiceUnavailable {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "stopping") {
		t.Fatalf("during the drain /healthz answered %d %q (%v), want 503 saying it is stopping", code, body, err)
	}
	select {
	case err := <-done:
		t.Fatalf("the verifier stopped (%v) before the drain could be seen", err)
	default:
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	logs.has(t, "draining: /healthz answers 503")
}
