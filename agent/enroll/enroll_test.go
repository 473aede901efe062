package enroll_test

import (
	"context"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/clearance/clearance/agent/clock"
	"github.com/clearance/clearance/agent/devicekey"
	"github.com/clearance/clearance/agent/enroll"
	"github.com/clearance/clearance/agent/internal/fakeverifier"
	"github.com/clearance/clearance/agent/state"
	agentv1 "github.com/clearance/clearance/proto/gen/clearance/agent/v1"
)

func manager(t *testing.T, v *fakeverifier.Verifier, dir string, secret string) *enroll.Manager {
	t.Helper()
	sd, err := state.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	key, err := devicekey.Open(context.Background(), sd, devicekey.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return &enroll.Manager{
		Dir: sd, Signer: key, Verifier: v.Addr, Roots: v.PKI.Roots(), EnrollSecret: secret,
		Facts: func(context.Context) (*agentv1.DeviceFacts, error) {
			return &agentv1.DeviceFacts{HardwareUuid: "5A1C7E2B-9D4F-4B8A-A3E6-0C2D71F9B846", Platform: "darwin"}, nil
		},
	}
}

// enrolled is manager, enrolled once.
func enrolled(t *testing.T, v *fakeverifier.Verifier, dir string) *enroll.Manager {
	t.Helper()
	m := manager(t, v, dir, v.Secret)
	if _, err := m.Ensure(context.Background()); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestEnrollOnceThenReuse(t *testing.T) {
	t.Parallel()
	v := fakeverifier.New(t)
	dir := t.TempDir()
	m := manager(t, v, dir, v.Secret)
	id, err := m.Ensure(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if id.DeviceID == "" || id.Cert == nil || len(id.Chain) != 2 {
		t.Fatalf("identity = %+v", id)
	}
	for _, f := range []string{state.IdentityFile, state.KeyFile, state.KeyURIFile} {
		fi, err := os.Stat(m.Dir.File(f))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s mode %04o, want no group/other access", f, fi.Mode().Perm())
		}
	}
	// A new process with the same state dir reuses the identity.
	again, err := manager(t, v, dir, v.Secret).Ensure(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if again.DeviceID != id.DeviceID || !again.Cert.Equal(id.Cert) {
		t.Error("identity not reloaded from the state dir")
	}
	if _, enrolls, _ := v.Counts(); enrolls != 1 {
		t.Errorf("enrolled %d times, want 1", enrolls)
	}
}

func TestEnrollNeedsSecret(t *testing.T) {
	t.Parallel()
	v := fakeverifier.New(t)
	tests := []struct {
		name, secret string
		wantNoSecret bool
	}{
		{"none configured", "", true},
		{"wrong secret", "wrong", false},
	}
	for _, tt := range tests {
		_, err := manager(t, v, t.TempDir(), tt.secret).Ensure(context.Background())
		if err == nil {
			t.Errorf("%s: enrolled", tt.name)
			continue
		}
		if errors.Is(err, enroll.ErrNoSecret) != tt.wantNoSecret {
			t.Errorf("%s: err = %v", tt.name, err)
		}
	}
}

func TestExpiredCertReenrolls(t *testing.T) {
	t.Parallel()
	v := fakeverifier.New(t)
	dir := t.TempDir()
	m := manager(t, v, dir, v.Secret)
	first, err := m.Ensure(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	// An hour and more on, for the device and the verifier alike.
	later := manager(t, v, dir, v.Secret)
	later.Clock = clock.New(func() time.Time { return first.Cert.NotAfter.Add(time.Minute) }, nil)
	v.ClockOffset = time.Until(first.Cert.NotAfter.Add(time.Minute))
	second, err := later.Ensure(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if second.Cert.Equal(first.Cert) {
		t.Error("expired certificate kept")
	}
	if _, enrolls, _ := v.Counts(); enrolls != 2 {
		t.Errorf("enrolls = %d, want 2", enrolls)
	}
}

func TestRenewalAtTwoThirds(t *testing.T) {
	t.Parallel()
	v := fakeverifier.New(t)
	v.Lifetime = 3 * time.Hour
	m := manager(t, v, t.TempDir(), v.Secret)
	now := time.Now()
	m.Clock = clock.New(func() time.Time { return now }, nil)
	waits := make(chan time.Duration, 4)
	fire := make(chan time.Time)
	m.After = func(d time.Duration) <-chan time.Time {
		waits <- d
		return fire
	}
	id, err := m.Ensure(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- m.Execute() }()
	defer func() {
		m.Interrupt(nil)
		<-done
	}()

	// In the verifier's time, which the enrollment taught the clock.
	want := id.Cert.NotBefore.Add(2 * time.Hour).Sub(m.Clock.Now())
	if got := <-waits; got != want {
		t.Errorf("renewal scheduled in %s, want %s (two thirds of the lifetime)", got, want)
	}
	fire <- now
	if got := <-waits; got <= 0 {
		t.Errorf("next renewal in %s", got)
	}
	if _, _, renews := v.Counts(); renews != 1 {
		t.Errorf("renewals = %d, want 1", renews)
	}
	stored, err := m.Dir.LoadIdentity()
	if err != nil {
		t.Fatal(err)
	}
	if stored.Cert.Equal(id.Cert) || stored.DeviceID != id.DeviceID {
		t.Error("renewed certificate not stored")
	}
}

// A verifier issuing certificates already due for renewal (only a broken
// or compromised one would) does not have the agent renew in a loop: each
// such renewal backs the next off, from 30 s doubling.
func TestRenewalOfADueCertificateBacksOff(t *testing.T) {
	t.Parallel()
	v := fakeverifier.New(t)
	m := manager(t, v, t.TempDir(), v.Secret)
	if _, err := m.Ensure(context.Background()); err != nil {
		t.Fatal(err)
	}
	v.NotBefore = func() time.Time { return time.Now().Add(-time.Hour) }
	v.Lifetime = time.Hour + time.Minute
	waits := make(chan time.Duration, 4)
	fire := make(chan time.Time)
	m.After = func(d time.Duration) <-chan time.Time {
		waits <- d
		return fire
	}
	done := make(chan error, 1)
	go func() { done <- m.Execute() }()
	defer func() {
		m.Interrupt(nil)
		<-done
	}()
	<-waits // the enrolled certificate's own time
	for _, want := range []time.Duration{30 * time.Second, time.Minute, 2 * time.Minute} {
		fire <- time.Now()
		if got := <-waits; got != want {
			t.Errorf("after renewing into a certificate already due: next renewal in %s, want %s", got, want)
		}
	}
	if _, _, renews := v.Counts(); renews != 3 {
		t.Errorf("renewals = %d, want 3", renews)
	}
}

// A device whose clock is ten minutes off either way enrolls once: it
// checks the certificate it was issued (valid from a minute before the
// verifier's clock) in the verifier's time, which the response carries,
// instead of finding it "not yet valid" and enrolling again and again.
func TestEnrollWithSkewedClock(t *testing.T) {
	t.Parallel()
	for _, off := range []time.Duration{-10 * time.Minute, 10 * time.Minute} {
		t.Run(off.String(), func(t *testing.T) {
			t.Parallel()
			v := fakeverifier.New(t)
			dir := t.TempDir()
			m := manager(t, v, dir, v.Secret)
			m.Clock = clock.New(func() time.Time { return time.Now().Add(off) }, nil)
			id, err := m.Ensure(context.Background())
			if err != nil {
				t.Fatalf("enrolling with the clock %s off: %v", off, err)
			}
			if got, known := m.Clock.Offset(); !known || (got+off).Abs() > 5*time.Second {
				t.Errorf("offset learnt = %s (known %v), want about %s", got, known, -off)
			}
			// Renewal is due two thirds into the life, in the verifier's time.
			if d := time.Until(id.RenewAt()); d < 35*time.Minute || d > 45*time.Minute {
				t.Errorf("renewal due in %s, want about 40m of the 1h certificate", d)
			}
			again := manager(t, v, dir, v.Secret)
			again.Clock = clock.New(func() time.Time { return time.Now().Add(off) }, nil)
			if _, err := again.Ensure(context.Background()); err != nil {
				t.Fatal(err)
			}
			if _, enrolls, _ := v.Counts(); enrolls != 1 {
				t.Errorf("enrolled %d times, want once", enrolls)
			}
		})
	}
}

// An answer is used only if its certificate names the device id it does:
// a verifier naming another (only a broken or compromised one would) left
// the Mac reporting under an id the verifier refused for good, and a
// megabyte id in every log line.
func TestEnrollAnswerNamesItsCertificatesDevice(t *testing.T) {
	t.Parallel()
	for name, lie := range map[string]string{
		"another device": "dev-someone-else",
		"a huge id":      strings.Repeat("d", 3<<20),
		"no id":          "",
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			v := fakeverifier.New(t)
			v.EnrollAnswer = func(r *agentv1.EnrollResponse) { r.DeviceId = lie }
			dir := t.TempDir()
			m := manager(t, v, dir, v.Secret)
			_, err := m.Ensure(context.Background())
			if !errors.Is(err, enroll.ErrUnusableResponse) {
				t.Fatalf("Ensure = %v, want ErrUnusableResponse", err)
			}
			if len(err.Error()) > 1024 {
				t.Errorf("error of %d bytes: the verifier's id is not clipped", len(err.Error()))
			}
			if _, err := m.Dir.LoadIdentity(); !errors.Is(err, state.ErrNotEnrolled) {
				t.Errorf("identity stored from an unusable answer: %v", err)
			}
		})
	}
}

// A renewal is used only if its certificate names this device.
func TestRenewAnswerNamesThisDevice(t *testing.T) {
	t.Parallel()
	v := fakeverifier.New(t)
	m := manager(t, v, t.TempDir(), v.Secret)
	id, err := m.Ensure(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	v.RenewAnswer = func(r *agentv1.RenewResponse) {
		csr := &x509.CertificateRequest{PublicKey: id.Cert.PublicKey}
		other, err := v.PKI.Issue(csr, "dev-someone-else", time.Now().Add(-time.Minute), time.Hour)
		if err != nil {
			t.Error(err)
			return
		}
		r.Certificate = other.Raw
	}
	if _, err := m.Renew(context.Background()); !errors.Is(err, enroll.ErrUnusableResponse) {
		t.Fatalf("Renew = %v, want ErrUnusableResponse", err)
	}
	stored, err := m.Dir.LoadIdentity()
	if err != nil || !stored.Cert.Equal(id.Cert) {
		t.Errorf("stored identity changed by an unusable renewal (%v)", err)
	}
}

// What is stored and presented is the path the certificate was verified
// by, not the chain the answer carried: a chain padded with copies made
// every later handshake larger than the verifier's TLS accepts. A chain
// longer than a verifier sends is refused.
func TestEnrollStoresTheVerifiedChain(t *testing.T) {
	t.Parallel()
	v := fakeverifier.New(t)
	pad := func(n int) func(*agentv1.EnrollResponse) {
		return func(r *agentv1.EnrollResponse) {
			for range n {
				r.CaChain = append(r.CaChain, v.PKI.DeviceCA.Raw)
			}
		}
	}
	v.EnrollAnswer = pad(20)
	if _, err := manager(t, v, t.TempDir(), v.Secret).Ensure(context.Background()); !errors.Is(err, enroll.ErrUnusableResponse) {
		t.Errorf("a chain of 22 certificates: Ensure = %v, want ErrUnusableResponse", err)
	}
	v.EnrollAnswer = pad(5)
	m := manager(t, v, t.TempDir(), v.Secret)
	if _, err := m.Ensure(context.Background()); err != nil {
		t.Fatal(err)
	}
	stored, err := m.Dir.LoadIdentity()
	if err != nil {
		t.Fatal(err)
	}
	if len(stored.Chain) != 2 || !stored.Chain[0].Equal(v.PKI.DeviceCA) || !stored.Chain[1].Equal(v.PKI.Root) {
		t.Errorf("stored chain of %d certificates, want the device CA and the root", len(stored.Chain))
	}
}

// A Mac without an enroll secret, whose certificate the verifier's time as
// learnt makes expired while its own clock does not, drops that time
// instead of refusing to connect until it restarts.
func TestEnsureDropsATimeThatExpiresTheCertificate(t *testing.T) {
	t.Parallel()
	v := fakeverifier.New(t)
	dir := t.TempDir()
	enrolled(t, v, dir)
	noSecret := manager(t, v, dir, "")
	noSecret.Clock = clock.New(time.Now, nil)
	noSecret.Clock.Learn(time.Now().Add(50*365*24*time.Hour), time.Now())
	if _, err := noSecret.Ensure(context.Background()); err != nil {
		t.Fatalf("Ensure = %v, want the stored identity", err)
	}
	if off, _ := noSecret.Clock.Offset(); off != 0 {
		t.Errorf("offset %s kept, want it dropped", off)
	}
}

// An issued certificate larger than a verifier's (a verifier holding the
// device CA's key could pad one) is refused: the agent presents it in
// every handshake, which the verifier's TLS refuses past 256 KiB, and the
// agent would never have enrolled again.
func TestIssuedCertificateSizeBounded(t *testing.T) {
	t.Parallel()
	v := fakeverifier.New(t)
	v.EnrollAnswer = func(r *agentv1.EnrollResponse) {
		leaf, err := x509.ParseCertificate(r.Certificate)
		if err != nil {
			t.Error(err)
			return
		}
		big, err := v.PKI.IssueFunc(&x509.CertificateRequest{PublicKey: leaf.PublicKey}, r.DeviceId, leaf.NotBefore, 10*365*24*time.Hour,
			func(c *x509.Certificate) {
				c.ExtraExtensions = []pkix.Extension{{Id: asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 99999, 1}, Value: make([]byte, 300<<10)}}
			})
		if err != nil {
			t.Error(err)
			return
		}
		r.Certificate = big.Raw
	}
	m := manager(t, v, t.TempDir(), v.Secret)
	if _, err := m.Ensure(context.Background()); !errors.Is(err, enroll.ErrUnusableResponse) {
		t.Fatalf("Ensure = %v, want ErrUnusableResponse", err)
	}
}

// A renewed certificate must be valid in the verifier's time as known
// before the answer, not only in the time the same answer teaches: else a
// renewal could replace a working certificate with one valid only in a
// time of the answer's choosing, which a Mac without a secret could not
// recover from.
func TestRenewalValidOnlyInItsOwnTimeRefused(t *testing.T) {
	t.Parallel()
	for name, at := range map[string]time.Duration{"past": -50 * time.Minute, "future": 20 * time.Hour} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			v := fakeverifier.New(t)
			dir := t.TempDir()
			id, err := enrolled(t, v, dir).Dir.LoadIdentity()
			if err != nil {
				t.Fatal(err)
			}
			v.RenewAnswer = func(r *agentv1.RenewResponse) {
				c, err := v.PKI.Issue(&x509.CertificateRequest{PublicKey: id.Cert.PublicKey}, id.DeviceID, time.Now().Add(at), 30*time.Minute)
				if err != nil {
					t.Error(err)
					return
				}
				r.Certificate = c.Raw
				r.VerifierTime = timestamppb.New(time.Now().Add(at + 10*time.Minute))
			}
			m := manager(t, v, dir, "")
			if _, err := m.Ensure(context.Background()); err != nil {
				t.Fatal(err)
			}
			if _, err := m.Renew(context.Background()); !errors.Is(err, enroll.ErrUnusableResponse) {
				t.Fatalf("Renew = %v, want ErrUnusableResponse", err)
			}
			stored, err := m.Dir.LoadIdentity()
			if err != nil || !stored.Cert.Equal(id.Cert) {
				t.Errorf("stored certificate replaced by an unusable renewal (%v)", err)
			}
		})
	}
}

// The device records which enroll secret it enrolled with, by the id the
// verifier's `secret list` shows, never the secret; a renewal keeps it.
func TestEnrollRecordsTheSecretsID(t *testing.T) {
	t.Parallel()
	v := fakeverifier.New(t)
	v.Secret = "3f2a8c1e4b5d6a7f.c2VjcmV0LXZhbHVlLW5vdC1zaG93bg"
	v.Lifetime = 3 * time.Hour
	m := manager(t, v, t.TempDir(), v.Secret)
	if _, err := m.Ensure(context.Background()); err != nil {
		t.Fatal(err)
	}
	id, err := m.Dir.LoadIdentity()
	if err != nil || id.EnrollSecretID != "3f2a8c1e4b5d6a7f" {
		t.Fatalf("identity %+v, %v; want secret id 3f2a8c1e4b5d6a7f", id, err)
	}
	raw, err := os.ReadFile(m.Dir.File(state.IdentityFile))
	if err != nil || strings.Contains(string(raw), "c2VjcmV0") {
		t.Errorf("identity.json holds the secret's value: %s, %v", raw, err)
	}
	if _, err := m.Renew(context.Background()); err != nil {
		t.Fatal(err)
	}
	if id, err := m.Dir.LoadIdentity(); err != nil || id.EnrollSecretID != "3f2a8c1e4b5d6a7f" {
		t.Errorf("after renewal: %+v, %v", id, err)
	}
	for secret, want := range map[string]string{
		"s3cret":                      "",
		"3F2A8C1E4B5D6A7F.value":      "",
		"3f2a8c1e4b5d6a7.value":       "",
		" 3f2a8c1e4b5d6a7f.value\n":   "3f2a8c1e4b5d6a7f",
		"scim_3f2a8c1e4b5d6a7f.value": "",
	} {
		if got := enroll.SecretID(secret); got != want {
			t.Errorf("SecretID(%q) = %q, want %q", secret, got, want)
		}
	}
}
