package enroll_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/clearance/clearance/pkg/keyrotation"
	agentv1 "github.com/clearance/clearance/proto/gen/clearance/agent/v1"
	"github.com/clearance/clearance/verifier/ca"
	"github.com/clearance/clearance/verifier/enroll"
	"github.com/clearance/clearance/verifier/storage"
	"github.com/clearance/clearance/verifier/storage/sqlite"
)

// clock is a settable time for the service and its CA.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// fixture is a service on a fresh SQLite store and CA, with an enroll
// secret of maxUses uses (0: no limit).
type fixture struct {
	svc    *enroll.Service
	store  storage.Store
	clock  *clock
	secret string
	id     string
}

func newFixture(t *testing.T, maxUses int) *fixture {
	t.Helper()
	ctx := t.Context()
	dir := t.TempDir()
	clk := &clock{t: time.Now().Truncate(time.Second)}
	authority, err := ca.LoadOrCreate(filepath.Join(dir, "ca"), ca.Options{Hosts: []string{"localhost"}, Now: clk.now})
	if err != nil {
		t.Fatal(err)
	}
	store, err := sqlite.Open(ctx, filepath.Join(dir, "clearance.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	rec, secret, err := enroll.CreateSecret(ctx, store, "fleet", enroll.SecretScope{MaxUses: maxUses}, "cli", clk.now())
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{svc: &enroll.Service{Store: store, CA: authority, Now: clk.now}, store: store, clock: clk, secret: secret, id: rec.ID}
}

// mac is a device: its hardware UUID and current key.
type mac struct {
	uuid string
	key  *ecdsa.PrivateKey
}

func newMac(t *testing.T, n int) *mac {
	t.Helper()
	return &mac{uuid: "5A1B2C3D-0000-4000-8000-00000000000" + string(rune('0'+n)), key: newKey(t)}
}

func newKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func csr(t *testing.T, key *ecdsa.PrivateKey) []byte {
	t.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "device"}}, key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func (f *fixture) enrollReq(t *testing.T, m *mac, key *ecdsa.PrivateKey) *agentv1.EnrollRequest {
	t.Helper()
	return &agentv1.EnrollRequest{EnrollSecret: f.secret, Csr: csr(t, key), Facts: &agentv1.DeviceFacts{
		HardwareUuid: m.uuid, SerialNumber: "C02TEST0000" + m.uuid[len(m.uuid)-1:], Model: "MacBookPro18,3",
		OsName: "macOS", OsVersion: "15.1", Hostname: "mac", Platform: "darwin", AgentVersion: "test",
	}}
}

// enroll enrolls m with its current key.
func (f *fixture) enroll(t *testing.T, m *mac) (*agentv1.EnrollResponse, string, error) {
	t.Helper()
	return f.svc.Enroll(t.Context(), f.enrollReq(t, m, m.key))
}

// rotate asks to move m to a new key signed by its current one; on
// success m holds the new key.
func (f *fixture) rotate(t *testing.T, m *mac) (*agentv1.EnrollResponse, string, error) {
	t.Helper()
	next := newKey(t)
	req := f.enrollReq(t, m, next)
	proof, err := keyrotation.Sign(m.key, req.GetCsr())
	if err != nil {
		t.Fatal(err)
	}
	req.KeyProof = proof
	resp, outcome, err := f.svc.Enroll(t.Context(), req)
	if err == nil {
		m.key = next
	}
	return resp, outcome, err
}

// renew renews m's certificate, as the agent API does for a device that
// authenticated with it.
func (f *fixture) renew(t *testing.T, m *mac) (*agentv1.RenewResponse, string, error) {
	t.Helper()
	dev, err := f.store.GetDeviceByHardwareUUID(t.Context(), m.uuid)
	if err != nil {
		t.Fatal(err)
	}
	return f.svc.Renew(t.Context(), dev, &agentv1.RenewRequest{Csr: csr(t, m.key)})
}

func (f *fixture) device(t *testing.T, m *mac) storage.Device {
	t.Helper()
	d, err := f.store.GetDeviceByHardwareUUID(t.Context(), m.uuid)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func (f *fixture) audit(t *testing.T, deviceID string) int {
	t.Helper()
	es, err := f.store.ListAudit(t.Context(), storage.AuditFilter{DeviceID: deviceID, Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	return len(es)
}

func (f *fixture) uses(t *testing.T) int {
	t.Helper()
	s, err := f.store.GetEnrollSecret(t.Context(), f.id)
	if err != nil {
		t.Fatal(err)
	}
	return s.Uses
}

func serialOf(t *testing.T, der []byte) string {
	t.Helper()
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return ca.SerialHex(c)
}

// TestDeviceRequestsBounded: a burst of renewals, re-enrollments with the
// device's key and rotations from one device adds at most
// DefaultIssueLimit's certificates and audit rows; past it a renewal or a
// same-key re-enrollment gets the current certificate, a rotation
// RESOURCE_EXHAUSTED with when to retry; once the window has passed, a
// renewal is issued again.
func TestDeviceRequestsBounded(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 0)
	m := newMac(t, 1)
	resp, outcome, err := f.enroll(t, m)
	if err != nil || outcome != enroll.OutcomeEnrolled {
		t.Fatalf("first enrollment: %s, %v", outcome, err)
	}
	deviceID := resp.GetDeviceId()
	limit := enroll.DefaultIssueLimit
	issued := map[string]bool{serialOf(t, resp.GetCertificate()): true}

	for i := range 50 {
		var der []byte
		switch i % 3 {
		case 0:
			r, _, err := f.renew(t, m)
			if err != nil {
				t.Fatalf("renewal %d: %v", i, err)
			}
			der = r.GetCertificate()
		case 1:
			r, _, err := f.enroll(t, m)
			if err != nil {
				t.Fatalf("same-key re-enrollment %d: %v", i, err)
			}
			der = r.GetCertificate()
		case 2:
			r, outcome, err := f.rotate(t, m)
			if err != nil {
				st := status.Convert(err)
				if st.Code() != codes.ResourceExhausted || outcome != enroll.OutcomeTooManyCerts {
					t.Fatalf("rotation %d: %s, %v; want RESOURCE_EXHAUSTED", i, outcome, err)
				}
				if d := retryDelay(st); d <= 0 || d > limit.Per {
					t.Errorf("rotation %d refused with retry delay %s, want within (0, %s]", i, d, limit.Per)
				}
				continue
			}
			der = r.GetCertificate()
		}
		c, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		// Whatever the answer, it is a certificate for the device's key
		// that the verifier honours: its current one.
		if d := f.device(t, m); ca.SerialHex(c) != d.CertSerial || !m.key.PublicKey.Equal(c.PublicKey) {
			t.Fatalf("request %d answered with certificate %s, the device's current is %s", i, ca.SerialHex(c), d.CertSerial)
		}
		issued[ca.SerialHex(c)] = true
	}
	if len(issued) != limit.Certs {
		t.Errorf("%d certificates issued to one device in a burst, want the limit, %d", len(issued), limit.Certs)
	}
	for serial := range issued {
		if _, err := f.store.GetCert(t.Context(), serial); err != nil {
			t.Errorf("issued certificate %s: %v", serial, err)
		}
	}
	if n := f.audit(t, deviceID); n != limit.Certs {
		t.Errorf("%d audit rows for the device, want %d (one per certificate)", n, limit.Certs)
	}
	if err := f.store.CheckCertLimit(t.Context(), deviceID, f.clock.now().Add(-ca.Backdate), limit); err == nil {
		t.Error("the store's check allows another certificate within the window")
	}

	// After the window, a genuine renewal gets a new certificate.
	f.clock.add(limit.Per)
	r, outcome, err := f.renew(t, m)
	if err != nil || outcome != enroll.OutcomeRenewed {
		t.Fatalf("renewal after the window: %s, %v", outcome, err)
	}
	if serial := serialOf(t, r.GetCertificate()); issued[serial] || f.device(t, m).CertSerial != serial {
		t.Errorf("renewal after the window answered with %s, not a new current certificate", serial)
	}
	if n := f.audit(t, deviceID); n != limit.Certs+1 {
		t.Errorf("%d audit rows after the renewal, want %d", n, limit.Certs+1)
	}
}

// TestConcurrentBurstBounded: the bound holds for requests that arrive
// at once (the store counts in the transaction that adds a certificate).
func TestConcurrentBurstBounded(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 0)
	m := newMac(t, 2)
	resp, _, err := f.enroll(t, m)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 5 {
				if _, _, err := f.renew(t, m); err != nil {
					t.Errorf("renewal: %v", err)
				}
				if _, _, err := f.svc.Enroll(context.Background(), f.enrollReq(t, m, m.key)); err != nil {
					t.Errorf("same-key re-enrollment: %v", err)
				}
			}
		})
	}
	wg.Wait()
	if n := f.audit(t, resp.GetDeviceId()); n != enroll.DefaultIssueLimit.Certs {
		t.Errorf("%d audit rows after a concurrent burst, want %d", n, enroll.DefaultIssueLimit.Certs)
	}
}

// TestRotationSpendsNoUse: rotations proven by the current key keep the
// device's enrollment and spend no use of the secret, so they cannot use
// it up before a new Mac; and with the secret used up, the device still
// rotates.
func TestRotationSpendsNoUse(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 2)
	a := newMac(t, 3)
	if _, _, err := f.enroll(t, a); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		f.clock.add(enroll.DefaultIssueLimit.Per) // each rotation in a window of its own
		if _, outcome, err := f.rotate(t, a); err != nil || outcome != enroll.OutcomeReenrolled {
			t.Fatalf("rotation %d: %s, %v", i, outcome, err)
		}
	}
	if u := f.uses(t); u != 1 {
		t.Errorf("secret uses %d after one enrollment and three rotations, want 1", u)
	}
	if d := f.device(t, a); d.SecretID != f.id || d.Enrollments != 4 {
		t.Errorf("device after rotations: secret %q, %d enrollments; want %q, 4", d.SecretID, d.Enrollments, f.id)
	}
	// A new Mac takes the second and last use.
	if _, outcome, err := f.enroll(t, newMac(t, 4)); err != nil || outcome != enroll.OutcomeEnrolled {
		t.Fatalf("a new Mac after the rotations: %s, %v", outcome, err)
	}
	if _, outcome, err := f.enroll(t, newMac(t, 5)); status.Code(err) != codes.Unauthenticated || outcome != "exhausted_secret" {
		t.Errorf("a third Mac on a secret of two uses: %s, %v", outcome, err)
	}
	f.clock.add(enroll.DefaultIssueLimit.Per)
	if _, outcome, err := f.rotate(t, a); err != nil || outcome != enroll.OutcomeReenrolled {
		t.Errorf("rotation with the secret used up: %s, %v", outcome, err)
	}
	if u := f.uses(t); u != 2 {
		t.Errorf("secret uses %d, want 2", u)
	}
}

func retryDelay(st *status.Status) time.Duration {
	for _, d := range st.Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok {
			return ri.GetRetryDelay().AsDuration()
		}
	}
	return 0
}
