package server_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/clearance/clearance/internal/cfsim"
	agentv1 "github.com/clearance/clearance/proto/gen/clearance/agent/v1"
	"github.com/clearance/clearance/verifier/config"
	"github.com/clearance/clearance/verifier/storage"
)

// cfBatch is the batch Cloudflare sends at most.
const cfBatch = 1000

// BenchmarkCloudflareBatch is one posture request of 1,000 devices through
// the real HTTP listener, as Cloudflare's custom_s2s integration sends it:
// the Access token checked (keys cached), the body decoded, 1,000 enrolled
// Macs found by serial number (900 passing, 100 failing, every report
// fresh), each decided from its stored report as a sign-in would be, 1,000
// rows appended to the decision log in one commit, and the answer read to
// the end over a kept-alive HTTPS connection. One request at a time, as
// the integration polls.
func BenchmarkCloudflareBatch(b *testing.B) {
	ctx := context.Background()
	access, err := cfsim.New("bench", "bench-aud")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(access.Close)
	fl := startBenchFleet(b, func(cfg *config.Config) {
		cfg.CloudflareTeam, cfg.CloudflareAUD, cfg.CloudflareCertsURL = "bench", "bench-aud", access.CertsURL()
		cfg.CloudflareScoreCompliant, cfg.CloudflareScoreWarn = 100, 90
	})
	srv, clk, devices := fl.srv, fl.clk, fl.devices
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(srv.CA.RootPEM())

	c := &cfsim.Client{URL: "https://" + srv.HTTPAddr.String() + "/cloudflare/v1/posture", HTTP: &http.Client{Timeout: time.Minute,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: "localhost"}, MaxIdleConnsPerHost: 1}}}
	token, err := access.ServiceToken(clk.Now()).Sign()
	if err != nil {
		b.Fatal(err)
	}
	body, err := json.Marshal(cfsim.Request{Devices: devices})
	if err != nil {
		b.Fatal(err)
	}
	// One checked batch first: what is measured is answers that are right.
	resp, err := c.Score(ctx, token, devices)
	if err != nil {
		b.Fatal(err)
	}
	var compliant int
	for _, r := range resp.Result {
		if r.Score == 100 && r.S2SID != "" {
			compliant++
		}
	}
	if compliant != cfBatch*9/10 {
		b.Fatalf("%d devices scored 100, want %d", compliant, cfBatch*9/10)
	}

	latencies := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for b.Loop() {
		t0 := time.Now()
		status, _, err := c.Post(ctx, token, body)
		latencies = append(latencies, time.Since(t0))
		if err != nil || status != http.StatusOK {
			b.Fatalf("HTTP %d, %v", status, err)
		}
	}
	b.StopTimer()
	slices.Sort(latencies)
	b.ReportMetric(float64(len(latencies))/b.Elapsed().Seconds(), "batches/s")
	b.ReportMetric(float64(len(latencies)*cfBatch)/b.Elapsed().Seconds(), "devices/s")
	b.ReportMetric(ms(percentile(latencies, 0.50)), "p50-ms")
	b.ReportMetric(ms(percentile(latencies, 0.99)), "p99-ms")
}

// fillFleet enrolls cfBatch Macs straight into the store, each with one
// fresh report (the first nine in ten passing every policy, the rest
// failing them), and returns them as Cloudflare would name them.
func fillFleet(b *testing.B, st storage.Store, ps *agentv1.PolicySet, now time.Time) []cfsim.Device {
	b.Helper()
	ctx := context.Background()
	h := sha256.Sum256([]byte("bench secret"))
	if err := st.CreateEnrollSecret(ctx, storage.EnrollSecret{ID: "bench", Description: "bench", Hash: h[:], CreatedAt: now},
		storage.AuditEvent{At: now, Actor: "bench", Action: "secret.create"}); err != nil {
		b.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	pub, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)
	out := make([]cfsim.Device, cfBatch)
	for i := range cfBatch {
		id, serial := fmt.Sprintf("bench-%04d", i), fmt.Sprintf("BENCH%06d", i)
		certSerial := fmt.Sprintf("%x", 0xbe0000+i)
		_, _, err := st.EnrollDevice(ctx, storage.Enrollment{
			Device: storage.Device{ID: id, HardwareUUID: fmt.Sprintf("BE0C0000-0000-4000-8000-%012d", i), SerialNumber: serial,
				Hostname: fmt.Sprintf("mac-%d", i), Platform: "darwin", PublicKey: pub, CertSerial: certSerial,
				CertNotAfter: now.Add(24 * time.Hour), EnrolledAt: now},
			Cert:     storage.Cert{Serial: certSerial, Kind: "device", NotBefore: now, NotAfter: now.Add(24 * time.Hour), DER: []byte("bench")},
			SecretID: "bench", Audit: storage.AuditEvent{At: now, Actor: "bench", Action: "device.enroll"},
		})
		if err != nil {
			b.Fatal(err)
		}
		status := agentv1.PolicyStatus_POLICY_STATUS_PASS
		if i%10 == 9 {
			status = agentv1.PolicyStatus_POLICY_STATUS_FAIL
		}
		r := &agentv1.PostureReport{DeviceId: id, Seq: 1, ObservedAt: timestamppb.New(now), PolicySetVersion: ps.GetVersion(), AgentVersion: "bench"}
		for _, p := range ps.GetPolicies() {
			r.Results = append(r.Results, &agentv1.PolicyResult{PolicyId: p.GetId(), Status: status, Rows: 1})
		}
		payload, err := proto.Marshal(r)
		if err != nil {
			b.Fatal(err)
		}
		if err := st.SaveReport(ctx, storage.Report{DeviceID: id, Seq: 1, ObservedAt: now, ReceivedAt: now, Payload: payload,
			Signature: []byte("not checked when deciding"), Key: pub}, nil, 10); err != nil {
			b.Fatal(err)
		}
		out[i] = cfsim.Device{DeviceID: fmt.Sprintf("cf-%04d", i), Email: fmt.Sprintf("user%d@example.com", i), SerialNumber: serial,
			MACAddress: "aa:bb:cc:dd:ee:ff", VirtualIPv4: "100.96.0.1", Hostname: fmt.Sprintf("mac-%d", i)}
	}
	return out
}
