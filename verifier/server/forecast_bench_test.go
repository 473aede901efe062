package server_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"

	adminv1 "github.com/clearance/clearance/proto/gen/clearance/admin/v1"
	"github.com/clearance/clearance/verifier/admin"
	"github.com/clearance/clearance/verifier/server"
)

// fleetAdmin starts a verifier on the example policies with cfBatch Macs
// (fillFleet: nine in ten passing) and returns its admin client and the
// context that carries the data dir's token.
func fleetAdmin(b *testing.B) (adminv1.AdminServiceClient, context.Context) {
	b.Helper()
	dir := b.TempDir()
	pol, err := os.ReadFile("../../examples/policies.yaml")
	if err != nil {
		b.Fatal(err)
	}
	policies := filepath.Join(dir, "policies.yaml")
	if err := os.WriteFile(policies, pol, 0o600); err != nil {
		b.Fatal(err)
	}
	cfg := baseConfig(filepath.Join(dir, "data"), policies)
	clk := &clock{t: time.Now().UTC()}
	srv := runBenchServer(b, cfg, server.WithClock(clk.Now))
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(srv.CA.RootPEM())
	conn, err := grpc.NewClient(srv.GRPCAddr.String(), grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: roots, ServerName: "localhost"})))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { conn.Close() })
	tok, err := os.ReadFile(filepath.Join(cfg.DataDir, admin.TokenFile))
	if err != nil {
		b.Fatal(err)
	}
	ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+strings.TrimSpace(string(tok)))
	c := adminv1.NewAdminServiceClient(conn)
	set, err := c.ListPolicies(ctx, &adminv1.ListPoliciesRequest{})
	if err != nil {
		b.Fatal(err)
	}
	fillFleet(b, srv.Store, set.GetPolicySet(), clk.Now())
	return c, ctx
}

// BenchmarkForecastFleet is `policies forecast` over 1,000 Macs: every
// page of ForecastEnforcement (500 devices each), each Mac decided twice
// from its stored report, for no one (no person is assigned or signed in).
func BenchmarkForecastFleet(b *testing.B) {
	c, ctx := fleetAdmin(b)
	var blocked int
	for b.Loop() {
		blocked = 0
		token := ""
		for {
			resp, err := c.ForecastEnforcement(ctx, &adminv1.ForecastEnforcementRequest{PageSize: 500, PageToken: token})
			if err != nil {
				b.Fatal(err)
			}
			for _, d := range resp.GetDevices() {
				if !d.GetEnforced().GetAllow() {
					blocked++
				}
			}
			if token = resp.GetNextPageToken(); token == "" {
				break
			}
		}
	}
	if blocked != cfBatch/10 {
		b.Fatalf("%d Macs forecast blocked, want %d", blocked, cfBatch/10)
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N*cfBatch), "us/device")
}

// BenchmarkListDevicesFleet is the baseline beside it: `devices` over the
// same 1,000 Macs, every page of ListDevices, each Mac's latest report read
// and summed up.
func BenchmarkListDevicesFleet(b *testing.B) {
	c, ctx := fleetAdmin(b)
	var n int
	for b.Loop() {
		n = 0
		token := ""
		for {
			resp, err := c.ListDevices(ctx, &adminv1.ListDevicesRequest{PageSize: 500, PageToken: token})
			if err != nil {
				b.Fatal(err)
			}
			n += len(resp.GetDevices())
			if token = resp.GetNextPageToken(); token == "" {
				break
			}
		}
	}
	if n != cfBatch {
		b.Fatalf("%d devices listed, want %d", n, cfBatch)
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N*cfBatch), "us/device")
}
