package ingest_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/clearance/clearance/internal/cpustat"
	"github.com/clearance/clearance/internal/protoagent"
	"github.com/clearance/clearance/pkg/report"
	agentv1 "github.com/clearance/clearance/proto/gen/clearance/agent/v1"
	"github.com/clearance/clearance/verifier/ingest"
	"github.com/clearance/clearance/verifier/storage"
	"github.com/clearance/clearance/verifier/storage/sqlite"
)

// setup returns a SQLite store holding one enrolled device and its key.
func setup(tb testing.TB) (*sqlite.Store, storage.Device, *ecdsa.PrivateKey) {
	tb.Helper()
	st, devs, keys := setupFleet(tb, 1)
	return st, devs[0], keys[0]
}

// setupFleet returns a SQLite store, in a file as in production, holding n
// enrolled devices (dev-1 … dev-n) and their keys.
func setupFleet(tb testing.TB, n int) (*sqlite.Store, []storage.Device, []*ecdsa.PrivateKey) {
	tb.Helper()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(tb.TempDir(), "clearance.db"))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { st.Close() })
	now := time.Now()
	sum := sha256.Sum256([]byte("s"))
	if err := st.CreateEnrollSecret(ctx, storage.EnrollSecret{ID: "s1", Hash: sum[:], CreatedAt: now}, storage.AuditEvent{At: now, Action: "secret.create"}); err != nil {
		tb.Fatal(err)
	}
	devs := make([]storage.Device, n)
	keys := make([]*ecdsa.PrivateKey, n)
	for i := range n {
		keys[i], _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		pub, _ := x509.MarshalPKIXPublicKey(&keys[i].PublicKey)
		serial := fmt.Sprintf("%x", i+1)
		devs[i], _, err = st.EnrollDevice(ctx, storage.Enrollment{
			Device:   storage.Device{ID: fmt.Sprintf("dev-%d", i+1), HardwareUUID: fmt.Sprintf("00000000-0000-4000-8000-%012d", i+1), PublicKey: pub, CertSerial: serial, CertNotAfter: now.Add(time.Hour), EnrolledAt: now},
			Cert:     storage.Cert{Serial: serial, Kind: "device", NotBefore: now, NotAfter: now.Add(time.Hour), DER: []byte{1}},
			SecretID: "s1",
			Audit:    storage.AuditEvent{At: now, Action: "device.enroll"},
		})
		if err != nil {
			tb.Fatal(err)
		}
	}
	return st, devs, keys
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
	if _, err := v.Accept(context.Background(), dev, sr); !errors.As(err, &rej) || rej.Code != codes.PermissionDenied || rej.Reason != ingest.RejectDeviceRevoked {
		t.Fatalf("revoked: %v", err)
	}
}

// TestResendOfOlderReport: acks lost for several reports, then a reconnect:
// every resend of a stored report is acked again, not only the latest, and
// the same seq with other content is still refused.
func TestResendOfOlderReport(t *testing.T) {
	t.Parallel()
	st, dev, key := setup(t)
	v := &ingest.Verifier{Store: st}
	a := &protoagent.Agent{DeviceID: dev.ID}
	now := time.Now()
	var sent []*agentv1.SignedReport
	for seq := uint64(1); seq <= 3; seq++ {
		sr := protoagent.Sign(key, a.Report(policies, seq, now, nil, agentv1.PolicyStatus_POLICY_STATUS_PASS))
		if _, err := v.Accept(context.Background(), dev, sr); err != nil {
			t.Fatalf("seq %d: %v", seq, err)
		}
		sent = append(sent, sr)
	}
	for i, sr := range sent {
		acc, err := v.Accept(context.Background(), dev, sr)
		if err != nil || !acc.Duplicate || acc.Stored.Seq != uint64(i+1) {
			t.Errorf("resend of seq %d: %+v %v; want it acknowledged as a duplicate", i+1, acc, err)
		}
	}
	other := protoagent.Sign(key, a.Report(policies, 2, now, nil, agentv1.PolicyStatus_POLICY_STATUS_FAIL))
	var rej *ingest.Rejection
	if _, err := v.Accept(context.Background(), dev, other); !errors.As(err, &rej) || rej.Code != codes.AlreadyExists || rej.Reason != ingest.RejectSeqReplay {
		t.Errorf("seq 2 with other content: %v, want AlreadyExists seq_replay", err)
	}
	if d, _ := st.GetDevice(context.Background(), dev.ID); d.LastSeq != 3 {
		t.Errorf("LastSeq = %d after the resends, want 3", d.LastSeq)
	}
}

// TestSeqBound: a seq above MaxSeq is the agent's mistake (InvalidArgument,
// never a retryable Unavailable) and changes nothing.
func TestSeqBound(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		seq  uint64
		code codes.Code
	}{
		{ingest.MaxSeq - 1, codes.OK},
		{ingest.MaxSeq, codes.OK},
		{ingest.MaxSeq + 1, codes.InvalidArgument},
		{1<<63 - 1, codes.InvalidArgument},
		{1 << 63, codes.InvalidArgument},
		{1<<64 - 1, codes.InvalidArgument},
	} {
		t.Run(fmt.Sprint(tc.seq), func(t *testing.T) {
			t.Parallel()
			st, dev, key := setup(t)
			v := &ingest.Verifier{Store: st}
			a := &protoagent.Agent{DeviceID: dev.ID}
			_, err := v.Accept(context.Background(), dev, protoagent.Sign(key, a.Report(policies, tc.seq, time.Now(), nil, agentv1.PolicyStatus_POLICY_STATUS_PASS)))
			var rej *ingest.Rejection
			switch {
			case tc.code == codes.OK && err != nil:
				t.Fatalf("seq %d refused: %v", tc.seq, err)
			case tc.code == codes.OK:
			case !errors.As(err, &rej) || rej.Code != tc.code || rej.Reason != ingest.RejectSeqTooLarge:
				t.Fatalf("seq %d: %v, want %s seq_too_large", tc.seq, err, tc.code)
			}
			want := tc.seq
			if tc.code != codes.OK {
				want = 0
			}
			if d, _ := st.GetDevice(context.Background(), dev.ID); d.LastSeq != want {
				t.Errorf("LastSeq = %d, want %d", d.LastSeq, want)
			}
		})
	}
}

// TestKeyReplacedMidStream: the device record a stream read when it
// connected names the old key; once the device enrolled again, a report
// verified with that key is refused as PermissionDenied, whatever its seq.
func TestKeyReplacedMidStream(t *testing.T) {
	t.Parallel()
	st, dev, key := setup(t)
	v := &ingest.Verifier{Store: st}
	a := &protoagent.Agent{DeviceID: dev.ID}
	ctx := context.Background()
	if _, err := v.Accept(ctx, dev, protoagent.Sign(key, a.Report(policies, 1, time.Now(), nil, agentv1.PolicyStatus_POLICY_STATUS_PASS))); err != nil {
		t.Fatal(err)
	}
	newKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	pub, _ := x509.MarshalPKIXPublicKey(&newKey.PublicKey)
	now := time.Now()
	if _, _, err := st.EnrollDevice(ctx, storage.Enrollment{
		Device:   storage.Device{ID: "ignored", HardwareUUID: dev.HardwareUUID, PublicKey: pub, CertSerial: "ff", CertNotAfter: now.Add(time.Hour), EnrolledAt: now},
		Cert:     storage.Cert{Serial: "ff", Kind: "device", NotBefore: now, NotAfter: now.Add(time.Hour), DER: []byte{1}},
		SecretID: "s1",
		Audit:    storage.AuditEvent{At: now, Action: "device.reenroll"},
	}); err != nil {
		t.Fatal(err)
	}
	for _, seq := range []uint64{2, ingest.MaxSeq} {
		_, err := v.Accept(ctx, dev, protoagent.Sign(key, a.Report(policies, seq, time.Now(), nil, agentv1.PolicyStatus_POLICY_STATUS_PASS)))
		var rej *ingest.Rejection
		if !errors.As(err, &rej) || rej.Code != codes.PermissionDenied || rej.Reason != ingest.RejectKeyReplaced || !strings.Contains(rej.Msg, "enrolled again") {
			t.Fatalf("seq %d with the old key: %v, want PermissionDenied key_replaced", seq, err)
		}
	}
	current, err := st.GetDevice(ctx, dev.ID)
	if err != nil || current.LastSeq != 0 {
		t.Fatalf("device after the old key's reports: LastSeq %d, %v; want 0", current.LastSeq, err)
	}
	if _, err := v.Accept(ctx, current, protoagent.Sign(newKey, a.Report(policies, 1, time.Now(), nil, agentv1.PolicyStatus_POLICY_STATUS_PASS))); err != nil {
		t.Fatalf("the new key's first report: %v", err)
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

// agentsPerCPU is how many agents report at once, per CPU, in the parallel
// benchmarks: enough that reports wait for the store together, as when a
// fleet reports at once.
const agentsPerCPU = 128

// benchAgent is one agent of BenchmarkAcceptParallel, with its reports
// signed ahead so that signing is not measured.
type benchAgent struct {
	dev    storage.Device
	key    *ecdsa.PrivateKey
	signed []*agentv1.SignedReport
	seq    uint64
}

// next is the agent's next report. One is signed now only if the agent got
// more than its share of the iterations.
func (a *benchAgent) next() *agentv1.SignedReport {
	a.seq++
	if int(a.seq) <= len(a.signed) {
		return a.signed[a.seq-1]
	}
	ag := &protoagent.Agent{DeviceID: a.dev.ID}
	return protoagent.Sign(a.key, ag.Report(policies, a.seq, time.Now(), nil, agentv1.PolicyStatus_POLICY_STATUS_PASS))
}

// BenchmarkAcceptParallel is BenchmarkAccept with many agents reporting at
// once, each its own device sending one report after another as over its
// stream: ns/op is the inverse of the ingest rate. Compare it with
// BenchmarkECDSAP256VerifyParallel, the ceiling on the same cores.
func BenchmarkAcceptParallel(b *testing.B) {
	n := agentsPerCPU * runtime.GOMAXPROCS(0)
	st, devs, keys := setupFleet(b, n)
	v := &ingest.Verifier{Store: st, Keep: 100}
	agents := make([]*benchAgent, n)
	share := b.N/n + 1
	for i := range agents {
		agents[i] = &benchAgent{dev: devs[i], key: keys[i]}
		a := &protoagent.Agent{DeviceID: devs[i].ID}
		for seq := range uint64(share + share/2) {
			agents[i].signed = append(agents[i].signed, protoagent.Sign(keys[i],
				a.Report(policies, seq+1, time.Now(), nil, agentv1.PolicyStatus_POLICY_STATUS_PASS)))
		}
	}
	var next atomic.Int64
	ctx := context.Background()
	b.SetParallelism(agentsPerCPU)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		a := agents[next.Add(1)-1]
		for pb.Next() {
			if _, err := v.Accept(ctx, a.dev, a.next()); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkECDSAP256VerifyParallel is BenchmarkECDSAP256Verify on every
// CPU at once: the ceiling BenchmarkAcceptParallel is measured against.
func BenchmarkECDSAP256VerifyParallel(b *testing.B) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	d := sha256.Sum256([]byte("report"))
	sig, _ := ecdsa.SignASN1(rand.Reader, key, d[:])
	b.SetParallelism(agentsPerCPU)
	b.ReportAllocs()
	machine := cpustat.Start()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if !ecdsa.VerifyASN1(&key.PublicKey, d[:], sig) {
				b.Error("verify failed")
				return
			}
		}
	})
	b.StopTimer()
	if c, ok := machine.Cores(); ok {
		b.ReportMetric(c.Steal, "steal-cores")
	}
}

// browserCert is a well-formed keychain certificate entry.
func browserCert(i int) *agentv1.KeychainCertificate {
	return &agentv1.KeychainCertificate{
		Serial:        fmt.Sprintf("%x", 0x710f6b8f43f8b41c+i),
		Sha1:          fmt.Sprintf("%040x", i+1),
		Path:          "/Users/alice/Library/Keychains/login.keychain-db",
		NotValidAfter: timestamppb.New(time.Date(2027, 7, 20, 10, 0, 0, 0, time.UTC)),
		Issuer:        "Clearance Device CA",
	}
}

func TestAcceptCertificates(t *testing.T) {
	t.Parallel()
	st, dev, key := setup(t)
	v := &ingest.Verifier{Store: st}
	a := &protoagent.Agent{DeviceID: dev.ID}
	r := a.Report(policies, 1, time.Now(), nil, agentv1.PolicyStatus_POLICY_STATUS_PASS)
	for i := range ingest.MaxCertificates {
		r.Certificates = append(r.Certificates, browserCert(i))
	}
	acc, err := v.Accept(context.Background(), dev, protoagent.Sign(key, r))
	if err != nil {
		t.Fatal(err)
	}
	// What the sign-in gate reads back is the list the agent signed.
	stored := new(agentv1.PostureReport)
	if err := proto.Unmarshal(acc.Stored.Payload, stored); err != nil {
		t.Fatal(err)
	}
	if got := stored.GetCertificates(); len(got) != ingest.MaxCertificates || !proto.Equal(got[0], browserCert(0)) {
		t.Errorf("stored certificates = %v", got)
	}
}

func TestRejectMalformedCertificates(t *testing.T) {
	t.Parallel()
	st, dev, key := setup(t)
	v := &ingest.Verifier{Store: st}
	a := &protoagent.Agent{DeviceID: dev.ID}
	with := func(f func(*agentv1.KeychainCertificate)) []*agentv1.KeychainCertificate {
		c := browserCert(0)
		f(c)
		return []*agentv1.KeychainCertificate{browserCert(1), c}
	}
	tooMany := make([]*agentv1.KeychainCertificate, ingest.MaxCertificates+1)
	for i := range tooMany {
		tooMany[i] = browserCert(i)
	}
	tests := []struct {
		name  string
		certs []*agentv1.KeychainCertificate
		want  string
	}{
		{"too many", tooMany, "33 certificates, limit 32"},
		{"long serial", with(func(c *agentv1.KeychainCertificate) { c.Serial = "1" + strings.Repeat("0", 64) }), "certificates[1]: serial longer than 64"},
		{"empty serial", with(func(c *agentv1.KeychainCertificate) { c.Serial = "" }), "certificates[1]: serial"},
		{"upper-case serial", with(func(c *agentv1.KeychainCertificate) { c.Serial = "710F6B8F43F8B41C" }), "not lowercase hex without leading zeros"},
		{"leading zero", with(func(c *agentv1.KeychainCertificate) { c.Serial = "0a" }), "not lowercase hex without leading zeros"},
		{"short sha1", with(func(c *agentv1.KeychainCertificate) { c.Sha1 = strings.Repeat("a", 39) }), "certificates[1]: sha1 is not 40"},
		{"colon sha1", with(func(c *agentv1.KeychainCertificate) { c.Sha1 = strings.Repeat("ab:", 13) + "a" }), "sha1 is not 40"},
		{"upper-case sha1", with(func(c *agentv1.KeychainCertificate) { c.Sha1 = strings.Repeat("A", 40) }), "sha1 is not 40"},
		{"long path", with(func(c *agentv1.KeychainCertificate) { c.Path = "/" + strings.Repeat("p", 1024) }), "certificates[1]: path longer than 1024"},
		{"long issuer", with(func(c *agentv1.KeychainCertificate) { c.Issuer = strings.Repeat("i", 257) }), "certificates[1]: issuer longer than 256"},
		{"bad time", with(func(c *agentv1.KeychainCertificate) { c.NotValidAfter = &timestamppb.Timestamp{Nanos: -1} }), "certificates[1]: not_valid_after"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := a.Report(policies, 1, time.Now(), nil, agentv1.PolicyStatus_POLICY_STATUS_PASS)
			r.Certificates = tc.certs
			_, err := v.Accept(context.Background(), dev, protoagent.Sign(key, r))
			var rej *ingest.Rejection
			if !errors.As(err, &rej) || rej.Reason != ingest.RejectMalformed || rej.Code != codes.InvalidArgument || !errors.Is(err, report.ErrMalformed) {
				t.Fatalf("Accept = %v, want a malformed rejection", err)
			}
			if !strings.Contains(rej.Msg, tc.want) {
				t.Errorf("message %q does not say %q", rej.Msg, tc.want)
			}
		})
	}
	// Nothing was stored: the first good report still takes seq 1.
	r := a.Report(policies, 1, time.Now(), nil, agentv1.PolicyStatus_POLICY_STATUS_PASS)
	r.Certificates = []*agentv1.KeychainCertificate{browserCert(0)}
	if _, err := v.Accept(context.Background(), dev, protoagent.Sign(key, r)); err != nil {
		t.Fatalf("good report after rejections: %v", err)
	}
}

// TestOneRunAnswersTwoChecks: an agent answers checks that waited behind a
// run with that run's results: reports of one time and one content, each
// with its own nonce and seq. Each is stored and uses its own nonce; the
// same nonce again is refused.
func TestOneRunAnswersTwoChecks(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st, dev, key := setup(t)
	v := &ingest.Verifier{Store: st}
	a := &protoagent.Agent{DeviceID: dev.ID}
	observed := time.Now().Add(-time.Second)
	for _, n := range []string{"check-1", "check-2"} {
		if err := st.CreateNonce(ctx, dev.ID, []byte(n), time.Now().Add(time.Minute)); err != nil {
			t.Fatal(err)
		}
	}
	for i, n := range []string{"check-1", "check-2"} {
		sr := protoagent.Sign(key, a.Report(policies, uint64(i+1), observed, []byte(n), agentv1.PolicyStatus_POLICY_STATUS_PASS))
		acc, err := v.Accept(ctx, dev, sr)
		if err != nil || acc.Duplicate || string(acc.Report.GetNonce()) != n {
			t.Fatalf("the answer to %s: %+v %v", n, acc, err)
		}
	}
	again := protoagent.Sign(key, a.Report(policies, 3, observed, []byte("check-2"), agentv1.PolicyStatus_POLICY_STATUS_PASS))
	var rej *ingest.Rejection
	if _, err := v.Accept(ctx, dev, again); !errors.As(err, &rej) || rej.Reason != ingest.RejectNonceUsed {
		t.Errorf("a third report with check-2's nonce: %v, want nonce_used", err)
	}
	if d, _ := st.GetDevice(ctx, dev.ID); d.LastSeq != 2 {
		t.Errorf("LastSeq = %d, want 2", d.LastSeq)
	}
}

// TestLapsedAnswerStored: a report answering this device's own check after
// the check expired is stored as a report (Lapsed, the seq moved on), its
// nonce left unused, so its resend is acknowledged again and a later
// report carrying the same nonce is not taken as an answer either. A nonce
// never issued, or another device's, is still refused.
func TestLapsedAnswerStored(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st, devs, keys := setupFleet(t, 2)
	dev, key := devs[0], keys[0]
	v := &ingest.Verifier{Store: st}
	a := &protoagent.Agent{DeviceID: dev.ID}
	if err := st.CreateNonce(ctx, dev.ID, []byte("late"), time.Now().Add(-time.Second)); err != nil {
		t.Fatal(err)
	}
	if err := st.CreateNonce(ctx, devs[1].ID, []byte("theirs"), time.Now().Add(-time.Second)); err != nil {
		t.Fatal(err)
	}
	observed := time.Now().Add(-2 * time.Second)
	sr := protoagent.Sign(key, a.Report(policies, 1, observed, []byte("late"), agentv1.PolicyStatus_POLICY_STATUS_PASS))
	acc, err := v.Accept(ctx, dev, sr)
	if err != nil || !acc.Lapsed || acc.Duplicate || acc.Stored.Seq != 1 {
		t.Fatalf("a late answer: %+v %v, want it stored as lapsed", acc, err)
	}
	if acc, err := v.Accept(ctx, dev, sr); err != nil || !acc.Duplicate {
		t.Errorf("its resend: %+v %v, want acknowledged again", acc, err)
	}
	again := protoagent.Sign(key, a.Report(policies, 2, observed, []byte("late"), agentv1.PolicyStatus_POLICY_STATUS_PASS))
	if acc, err := v.Accept(ctx, dev, again); err != nil || !acc.Lapsed {
		t.Errorf("a second report with the lapsed nonce: %+v %v, want stored as lapsed", acc, err)
	}
	for _, tt := range []struct {
		nonce string
		want  ingest.Reason
	}{{"never-issued", ingest.RejectNonceUnknown}, {"theirs", ingest.RejectNonceWrongDevice}} {
		r := protoagent.Sign(key, a.Report(policies, 3, observed, []byte(tt.nonce), agentv1.PolicyStatus_POLICY_STATUS_PASS))
		var rej *ingest.Rejection
		if _, err := v.Accept(ctx, dev, r); !errors.As(err, &rej) || rej.Reason != tt.want {
			t.Errorf("a report with nonce %q: %v, want %s", tt.nonce, err, tt.want)
		}
	}
	if d, _ := st.GetDevice(ctx, dev.ID); d.LastSeq != 2 {
		t.Errorf("LastSeq = %d, want 2", d.LastSeq)
	}
}

// TestSettingsRejection: a report saying its agent rejected the settings
// it was given makes the device say so, and a later one that does not
// clears it. One whose word is out of bounds (too long, not UTF-8, with a
// control character, with no time or one after the report) is refused as
// malformed, saying what, and nothing of it is stored.
func TestSettingsRejection(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st, dev, key := setup(t)
	v := &ingest.Verifier{Store: st}
	a := &protoagent.Agent{DeviceID: dev.ID}
	now := time.Now()
	report1 := func(seq uint64, rej *agentv1.SettingsRejection) *agentv1.PostureReport {
		r := a.Report(policies, seq, now, nil, agentv1.PolicyStatus_POLICY_STATUS_PASS)
		r.SettingsRejection = rej
		return r
	}
	device := func() storage.Device {
		t.Helper()
		d, err := st.GetDevice(ctx, dev.ID)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	rejectedAt := now.Add(-time.Hour).UTC()
	const why = `CAFingerprint from /Library/Managed Preferences/com.clearance.agent.plist key CAFingerprint: no configured CA certificate has this fingerprint (the new ones changed CAFingerprint)`
	if _, err := v.Accept(ctx, dev, protoagent.Sign(key, report1(1, &agentv1.SettingsRejection{At: timestamppb.New(rejectedAt), Reason: why}))); err != nil {
		t.Fatal(err)
	}
	if d := device(); !d.SettingsRejectedAt.Equal(rejectedAt) || d.SettingsRejected != why {
		t.Fatalf("device says rejected at %v for %q; want %v, %q", d.SettingsRejectedAt, d.SettingsRejected, rejectedAt, why)
	}

	edited := func(from, to string) *agentv1.SignedReport {
		// protobuf writes no invalid UTF-8: written, then edited.
		sr := protoagent.Sign(key, report1(2, &agentv1.SettingsRejection{At: timestamppb.New(now), Reason: from}))
		sig, err := report.SignPayload(key, []byte(strings.Replace(string(sr.GetPayload()), from, to, 1)))
		if err != nil {
			t.Fatal(err)
		}
		return &agentv1.SignedReport{Payload: []byte(strings.Replace(string(sr.GetPayload()), from, to, 1)), Signature: sig}
	}
	for _, tc := range []struct {
		name string
		sr   *agentv1.SignedReport
		want string
	}{
		{"oversized", protoagent.Sign(key, report1(2, &agentv1.SettingsRejection{At: timestamppb.New(now), Reason: strings.Repeat("é", 129)})),
			"settings_rejection: reason is 258 bytes, limit 256"},
		{"not UTF-8", edited("caf-reason", "caf\xe9reason"), "invalid UTF-8"},
		{"a line break", protoagent.Sign(key, report1(2, &agentv1.SettingsRejection{At: timestamppb.New(now), Reason: "fine\nNEW SETTINGS: in use"})),
			"settings_rejection: reason holds a control, format or line-separator character"},
		{"a terminal escape", protoagent.Sign(key, report1(2, &agentv1.SettingsRejection{At: timestamppb.New(now), Reason: "\x1b]0;owned\x07"})),
			"settings_rejection: reason holds a control, format or line-separator character"},
		{"a C1 control", protoagent.Sign(key, report1(2, &agentv1.SettingsRejection{At: timestamppb.New(now), Reason: "a\u009bb"})),
			"settings_rejection: reason holds a control, format or line-separator character"},
		{"a right-to-left override", protoagent.Sign(key, report1(2, &agentv1.SettingsRejection{At: timestamppb.New(now), Reason: "fine\u202e gnp.exe"})),
			"settings_rejection: reason holds a control, format or line-separator character"},
		{"a zero-width space", protoagent.Sign(key, report1(2, &agentv1.SettingsRejection{At: timestamppb.New(now), Reason: "fi\u200bne"})),
			"settings_rejection: reason holds a control, format or line-separator character"},
		{"a line separator", protoagent.Sign(key, report1(2, &agentv1.SettingsRejection{At: timestamppb.New(now), Reason: "one\u2028two"})),
			"settings_rejection: reason holds a control, format or line-separator character"},
		{"empty", protoagent.Sign(key, report1(2, &agentv1.SettingsRejection{At: timestamppb.New(now)})), "settings_rejection: reason is empty"},
		{"no time", protoagent.Sign(key, report1(2, &agentv1.SettingsRejection{Reason: why})), "settings_rejection: at is missing"},
		{"after the report", protoagent.Sign(key, report1(2, &agentv1.SettingsRejection{At: timestamppb.New(now.Add(time.Second)), Reason: why})),
			"settings_rejection: at is after observed_at"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := v.Accept(ctx, dev, tc.sr)
			var rej *ingest.Rejection
			if !errors.As(err, &rej) || rej.Reason != ingest.RejectMalformed || rej.Code != codes.InvalidArgument {
				t.Fatalf("Accept = %v, want a malformed rejection", err)
			}
			if !strings.Contains(rej.Msg, tc.want) {
				t.Errorf("message %q does not say %q", rej.Msg, tc.want)
			}
			if d := device(); d.LastSeq != 1 || !d.SettingsRejectedAt.Equal(rejectedAt) || d.SettingsRejected != why {
				t.Errorf("stored: seq %d, rejected at %v for %q", d.LastSeq, d.SettingsRejectedAt, d.SettingsRejected)
			}
		})
	}

	// The agent runs on the settings it was given: a report without a
	// word of it clears what the device said.
	if _, err := v.Accept(ctx, dev, protoagent.Sign(key, report1(2, nil))); err != nil {
		t.Fatal(err)
	}
	if d := device(); !d.SettingsRejectedAt.IsZero() || d.SettingsRejected != "" {
		t.Errorf("after a report of settings that run, the device says rejected at %v for %q", d.SettingsRejectedAt, d.SettingsRejected)
	}
}
