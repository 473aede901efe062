package postgres_test

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/clearance/clearance/internal/testkit/testpg"
	"github.com/clearance/clearance/verifier/storage"
	"github.com/clearance/clearance/verifier/storage/postgres"
)

// TestSerialAdmitsOneDeviceAcrossReplicas: two new devices admitted on one
// serial number at the same moment, through two replicas and with two
// enroll secrets (so that no secret's row orders them), never both enroll:
// the serial is locked for the decision although no row holds it yet (a
// serial not on the known list, under auto).
func TestSerialAdmitsOneDeviceAcrossReplicas(t *testing.T) {
	testpg.Require(t)
	dsn := testpg.NewDatabase(t)
	a, b := open(t, dsn), open(t, dsn)
	ctx := t.Context()
	for _, id := range []string{"s1", "s2"} {
		if err := a.CreateEnrollSecret(ctx, storage.EnrollSecret{ID: id, Hash: []byte("h" + id), CreatedAt: t0}, storage.AuditEvent{At: t0}); err != nil {
			t.Fatal(err)
		}
	}
	enrollment := func(n int, serial, secret string) storage.Enrollment {
		cs := fmt.Sprintf("c%06x", n)
		return storage.Enrollment{
			Device: storage.Device{
				ID: fmt.Sprintf("dev-%d", n), HardwareUUID: fmt.Sprintf("HW-%d", n), SerialNumber: serial,
				PublicKey: fmt.Appendf(nil, "key-%d", n), CertSerial: cs, CertNotAfter: t0.Add(time.Hour), EnrolledAt: t0,
			},
			Cert:     storage.Cert{Serial: cs, Kind: "device", NotBefore: t0, NotAfter: t0.Add(time.Hour), DER: []byte("der")},
			SecretID: secret,
			Audit:    storage.AuditEvent{At: t0, Actor: "agent", Action: "device.enroll"},
			Checked:  &storage.Checked{Serial: serial},
		}
	}
	for i := range 40 {
		serial := fmt.Sprintf("C02RACE%04d", i)
		var wg sync.WaitGroup
		errs := make([]error, 2)
		start := make(chan struct{})
		for j, st := range []*postgres.Store{a, b} {
			e := enrollment(2*i+j, serial, []string{"s1", "s2"}[j])
			wg.Go(func() {
				<-start
				_, _, errs[j] = st.EnrollDevice(ctx, e)
			})
		}
		close(start)
		wg.Wait()
		for _, err := range errs {
			if err != nil && !errors.Is(err, storage.ErrSerialEnrolled) {
				t.Fatal(err)
			}
		}
		if errs[0] == nil && errs[1] == nil {
			t.Fatalf("%s: both devices enrolled on it", serial)
		}
		if errs[0] != nil && errs[1] != nil {
			t.Fatalf("%s: neither device enrolled on it", serial)
		}
	}
}
