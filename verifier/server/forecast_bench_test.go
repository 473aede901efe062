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

	"github.com/clearance/clearance/internal/cfsim"
	adminv1 "github.com/clearance/clearance/proto/gen/clearance/admin/v1"
	"github.com/clearance/clearance/verifier/admin"
	"github.com/clearance/clearance/verifier/config"
	"github.com/clearance/clearance/verifier/server"
)

// fleetAdmin starts a verifier on the example policies with cfBatch Macs
// (fillFleet: nine in ten passing) and returns its admin client and the
// context that carries the data dir's token.
func fleetAdmin(b *testing.B) (adminv1.AdminServiceClient, context.Context) {
	b.Helper()
	fl := startBenchFleet(b, nil)
	return fl.admin, fl.ctx
}

// benchFleet is a verifier for a benchmark on the example policies, with
// cfBatch Macs in its store (fillFleet), as Cloudflare would name them.
type benchFleet struct {
	srv     *server.Server
	cfg     *config.Config
	clk     *clock
	admin   adminv1.AdminServiceClient
	ctx     context.Context // carries the data dir's admin token
	devices []cfsim.Device
}

// startBenchFleet starts it; edit may change the settings first.
func startBenchFleet(b *testing.B, edit func(*config.Config)) *benchFleet {
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
	fl := &benchFleet{cfg: baseConfig(filepath.Join(dir, "data"), policies), clk: &clock{t: time.Now().UTC()}}
	if edit != nil {
		edit(fl.cfg)
	}
	fl.srv = runBenchServer(b, fl.cfg, server.WithClock(fl.clk.Now))
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(fl.srv.CA.RootPEM())
	conn, err := grpc.NewClient(fl.srv.GRPCAddr.String(), grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: roots, ServerName: "localhost"})))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { conn.Close() })
	tok, err := os.ReadFile(filepath.Join(fl.cfg.DataDir, admin.TokenFile))
	if err != nil {
		b.Fatal(err)
	}
	fl.ctx = metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+strings.TrimSpace(string(tok)))
	fl.admin = adminv1.NewAdminServiceClient(conn)
	set, err := fl.admin.ListPolicies(fl.ctx, &adminv1.ListPoliciesRequest{})
	if err != nil {
		b.Fatal(err)
	}
	fl.devices = fillFleet(b, fl.srv.Store, set.GetPolicySet(), fl.clk.Now())
	return fl
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
