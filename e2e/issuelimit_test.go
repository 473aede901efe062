package e2e

import (
	"context"
	"crypto/x509"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/clearance/clearance/internal/protoagent"
	adminv1 "github.com/clearance/clearance/proto/gen/clearance/admin/v1"
	agentv1 "github.com/clearance/clearance/proto/gen/clearance/agent/v1"
)

// TestOneDeviceFloodBounded: one enrolled device renewing and re-enrolling
// with its own key as fast as it can, from several workers for a few
// seconds, gets at most 4 certificates (its enrollment's included) and as
// many audit rows; every answer is a certificate the verifier honours;
// and the real agent of another Mac goes on reporting meanwhile.
func TestOneDeviceFloodBounded(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	dataDir := filepath.Join(dir, "verifier")
	v := startVerifier(t, dataDir)
	secret := v.enrollSecret()
	startMac(t, filepath.Join(dir, "mac"), v.grpcAddr, filepath.Join(dataDir, "ca.pem"), secret, "", "", "")
	genuine := theDevice(t, v)
	seq := waitDevice(t, v, "the real agent reporting", within, func(g *adminv1.GetDeviceResponse) bool {
		return g.GetDevice().GetConnected() && g.GetDevice().GetLastSeq() > 0
	}).GetDevice().GetLastSeq()

	a, err := protoagent.New(v.grpcAddr, v.rootPEM(), "F100D000-0000-4000-8000-000000000001")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := a.Enroll(ctx, secret); err != nil {
		t.Fatal(err)
	}
	db := openSQLite(t, dataDir)
	count := func(table string) int {
		t.Helper()
		var n int
		if err := db.QueryRow(`SELECT count(*) FROM `+table+` WHERE device_id = ?`, a.DeviceID).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	certsBefore, auditBefore := count("certs"), count("audit")

	// 1. The flood: renewals over the device's certificate, and
	// enrollments with its key and no certificate.
	conn, err := a.Dial()
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := agentv1.NewAgentServiceClient(conn)
	var (
		wg             sync.WaitGroup
		mu             sync.Mutex
		answers, fails int
		serials        = map[string]bool{}
	)
	end := time.Now().Add(4 * time.Second)
	for w := range 6 {
		wg.Go(func() {
			for time.Now().Before(end) {
				csr, err := protoagent.CSR(a.Key)
				if err != nil {
					t.Error(err)
					return
				}
				var der []byte
				if w%2 == 0 {
					r, err := client.Renew(ctx, &agentv1.RenewRequest{Csr: csr})
					der = r.GetCertificate()
					if err != nil {
						der = nil
					}
				} else {
					r, err := a.EnrollRaw(ctx, &agentv1.EnrollRequest{EnrollSecret: secret, Csr: csr, Facts: a.Facts})
					der = r.GetCertificate()
					if err != nil {
						der = nil
					}
				}
				mu.Lock()
				if der == nil {
					fails++
				} else {
					answers++
					serials[string(der)] = true
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	// Past the limit, requests are answered with the current certificate;
	// the few that fail were in flight on a connection the verifier
	// closed: each enrollment dials anew with the device's certificate,
	// and a device's fifth connection closes its oldest.
	if fails > answers/10 {
		t.Errorf("%d of the flood's %d requests failed; past the limit they are answered with the current certificate", fails, fails+answers)
	}

	// 2. What it wrote.
	certs, audit := count("certs"), count("audit")
	t.Logf("%d answers, %d failed, %d distinct certificates; certs rows %d -> %d, audit rows %d -> %d", answers, fails, len(serials), certsBefore, certs, auditBefore, audit)
	if certs > 4 || certs-certsBefore > 3 {
		t.Errorf("certs rows of the device: %d (from %d), want at most 4 in all", certs, certsBefore)
	}
	if audit-auditBefore > 3 {
		t.Errorf("audit rows of the device grew by %d, want at most 3", audit-auditBefore)
	}
	if n := v.metric(t, `clearance_renewals_total{outcome="current_cert"}`) + v.metric(t, `clearance_enrollments_total{outcome="current_cert"}`); n == 0 {
		t.Error("no answer counted as current_cert")
	}
	waitLog(t, v.logs, "the limit in the log", "device certificate limit reached")

	// 3. The device's current certificate, as the last answer gave it,
	// still connects; the genuine Mac's agent kept reporting.
	var current []byte
	d := v.device(t, a.DeviceID)
	for der := range serials {
		c, err := x509.ParseCertificate([]byte(der))
		if err != nil {
			t.Fatal(err)
		}
		if serialHex(c) == d.GetDevice().GetCertSerial() {
			current = c.Raw
		}
	}
	if current == nil {
		t.Fatalf("no answer carried the device's current certificate %s", d.GetDevice().GetCertSerial())
	}
	a.CertDER = current
	st, err := a.Connect(ctx)
	if err != nil {
		t.Fatalf("connecting with the current certificate after the flood: %v", err)
	}
	st.Close()
	for deadline := time.Now().Add(within); ; time.Sleep(100 * time.Millisecond) {
		if g := v.device(t, genuine).GetDevice(); g.GetConnected() && g.GetLastSeq() > seq {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the real agent did not report again within %s of the flood", within)
		}
	}
}
