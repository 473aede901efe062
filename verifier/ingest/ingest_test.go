package ingest_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/clearance/clearance/internal/protoagent"
	agentv1 "github.com/clearance/clearance/proto/gen/clearance/agent/v1"
	"github.com/clearance/clearance/verifier/ingest"
	"github.com/clearance/clearance/verifier/storage"
	"github.com/clearance/clearance/verifier/storage/sqlite"
)

// setup returns a SQLite store holding one enrolled device and its key.
func setup(tb testing.TB) (*sqlite.Store, storage.Device, *ecdsa.PrivateKey) {
	tb.Helper()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(tb.TempDir(), "clearance.db"))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { st.Close() })
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	pub, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)
	now := time.Now()
	sum := sha256.Sum256([]byte("s"))
	if err := st.CreateEnrollSecret(ctx, storage.EnrollSecret{ID: "s1", Hash: sum[:], CreatedAt: now}, storage.AuditEvent{At: now, Action: "secret.create"}); err != nil {
		tb.Fatal(err)
	}
	dev, _, err := st.EnrollDevice(ctx, storage.Enrollment{
		Device:   storage.Device{ID: "dev-1", HardwareUUID: "00000000-0000-4000-8000-000000000001", PublicKey: pub, CertSerial: "1", CertNotAfter: now.Add(time.Hour), EnrolledAt: now},
		Cert:     storage.Cert{Serial: "1", Kind: "device", NotBefore: now, NotAfter: now.Add(time.Hour), DER: []byte{1}},
		SecretID: "s1",
		Audit:    storage.AuditEvent{At: now, Action: "device.enroll"},
	})
	if err != nil {
		tb.Fatal(err)
	}
	return st, dev, key
}

var policies = &agentv1.PolicySet{Version: "v1", Policies: []*agentv1.Policy{
	{Id: "filevault"}, {Id: "firewall"}, {Id: "sip"}, {Id: "gatekeeper"}, {Id: "screenlock"}, {Id: "os-version"},
}}

func TestAcceptAndDuplicate(t *testing.T) {
	t.Parallel()
	st, dev, key := setup(t)
	v := &ingest.Verifier{Store: st}
	a := &protoagent.Agent{DeviceID: dev.ID}
	sr := protoagent.Sign(key, a.Report(policies, 1, time.Now(), nil, agentv1.PolicyStatus_POLICY_STATUS_PASS))
	acc, err := v.Accept(context.Background(), dev, sr)
	if err != nil || acc.Duplicate || acc.Stored.Seq != 1 {
		t.Fatalf("first: %+v %v", acc, err)
	}
	// The same bytes again (ack lost) are acked again without storing.
	acc, err = v.Accept(context.Background(), dev, sr)
	if err != nil || !acc.Duplicate {
		t.Fatalf("resend: %+v %v", acc, err)
	}
	// A revoked device is refused before anything else.
	dev.RevokedAt = time.Now()
	var rej *ingest.Rejection
	if _, err := v.Accept(context.Background(), dev, sr); !errors.As(err, &rej) || rej.Code != codes.PermissionDenied || rej.Reason != "device_revoked" {
		t.Fatalf("revoked: %v", err)
	}
}

// BenchmarkAccept is the cost of accepting one report: signature verify,
// parse, checks, and a durable SQLite commit.
func BenchmarkAccept(b *testing.B) {
	st, dev, key := setup(b)
	v := &ingest.Verifier{Store: st, Keep: 100}
	a := &protoagent.Agent{DeviceID: dev.ID}
	reports := make([]*agentv1.SignedReport, b.N)
	for i := range reports {
		reports[i] = protoagent.Sign(key, a.Report(policies, uint64(i+1), time.Now(), nil, agentv1.PolicyStatus_POLICY_STATUS_PASS))
	}
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := v.Accept(ctx, dev, reports[i]); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkECDSAP256Verify is the raw cost of the one ECDSA verification
// every report needs: the ceiling ingest is measured against.
func BenchmarkECDSAP256Verify(b *testing.B) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	d := sha256.Sum256([]byte("report"))
	sig, _ := ecdsa.SignASN1(rand.Reader, key, d[:])
	b.ReportAllocs()
	for b.Loop() {
		if !ecdsa.VerifyASN1(&key.PublicKey, d[:], sig) {
			b.Fatal("verify failed")
		}
	}
}
