package postgres_test

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/clearance/clearance/verifier/storage"
	"github.com/clearance/clearance/verifier/storage/postgres"
	"github.com/clearance/clearance/verifier/storage/storagetest"
)

// dsnVar names the server the tests use; scripts/postgres.sh starts one.
const dsnVar = "CLEARANCE_TEST_POSTGRES_DSN"

func TestConformance(t *testing.T) {
	requireDSN(t)
	storagetest.Run(t, func(t *testing.T) storage.Store { return open(t, newDatabase(t)) })
}

// requireDSN skips without a server locally; in CI (.ci/run starts one and
// sets CI=true) a missing server is a failure, so these tests cannot
// silently stop running.
func requireDSN(t *testing.T) {
	t.Helper()
	if os.Getenv(dsnVar) != "" {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatal(dsnVar + " not set under CI: .ci/run must start PostgreSQL with scripts/postgres.sh")
	}
	t.Skip(dsnVar + " not set (scripts/postgres.sh run go test ./verifier/storage/postgres/ starts one)")
}

func open(t *testing.T, dsn string) *postgres.Store {
	t.Helper()
	s, err := postgres.Open(t.Context(), dsn)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// newDatabase creates an empty database of the test's own on the server
// named by CLEARANCE_TEST_POSTGRES_DSN, drops it when the test ends, and
// returns its DSN. Skips the test when the variable is not set.
func newDatabase(t *testing.T) string {
	t.Helper()
	requireDSN(t)
	base := os.Getenv(dsnVar)
	u, err := url.Parse(base)
	if err != nil || u.Scheme == "" {
		t.Fatalf("%s must be a postgres:// URL", dsnVar)
	}
	name := "clearance_test_" + randomSuffix()

	admin := connect(t, context.Background(), base)
	defer admin.Close(context.Background())
	if _, err := admin.Exec(t.Context(), `CREATE DATABASE `+name); err != nil {
		t.Fatalf("creating test database: %v", err)
	}
	// Registered before the store's own cleanup, so it runs after the
	// store is closed. FORCE ends any connection a failed test left behind.
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c := connect(t, ctx, base)
		defer c.Close(ctx)
		if _, err := c.Exec(ctx, `DROP DATABASE IF EXISTS `+name+` WITH (FORCE)`); err != nil {
			t.Errorf("dropping test database: %v", err)
		}
	})
	u.Path = "/" + name
	return u.String()
}

func connect(t *testing.T, ctx context.Context, dsn string) *pgx.Conn {
	t.Helper()
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("connecting to %s: %v", dsnVar, err)
	}
	return c
}

func randomSuffix() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b) // never fails
	return hex.EncodeToString(b)
}

// Replicas contend for one device's rows: the loser of a seq race gets
// ErrSeqNotIncreasing, never a lock or serialization error, and each seq
// is stored once.
func TestTwoStoresRaceOnOneDevice(t *testing.T) {
	ctx := t.Context()
	dsn := newDatabase(t)
	a, b := open(t, dsn), open(t, dsn)
	d := enrollOne(t, a)

	const seqs = 40
	var wg sync.WaitGroup
	results := make([][]error, 2)
	for i, s := range []*postgres.Store{a, b} {
		wg.Go(func() {
			for seq := uint64(1); seq <= seqs; seq++ {
				r := storage.Report{DeviceID: d.ID, Seq: seq, ObservedAt: t0, ReceivedAt: t0, Payload: []byte("p"), Signature: []byte("s")}
				results[i] = append(results[i], s.SaveReport(ctx, r, nil, 1000))
			}
		})
	}
	wg.Wait()
	for seq := range seqs {
		ok := 0
		for i := range results {
			switch err := results[i][seq]; {
			case err == nil:
				ok++
			case !errors.Is(err, storage.ErrSeqNotIncreasing):
				t.Errorf("store %d seq %d: %v", i, seq+1, err)
			}
		}
		if ok > 1 {
			t.Errorf("seq %d accepted by both stores", seq+1)
		}
	}
	rs, err := b.ListReports(ctx, d.ID, 1000)
	if err != nil || len(rs) != seqs {
		t.Errorf("ListReports = %d reports, %v; want %d", len(rs), err, seqs)
	}
}

// The same machine enrolling through two replicas at once ends as one
// device enrolled twice, not as an error.
func TestConcurrentFirstEnrollment(t *testing.T) {
	ctx := t.Context()
	dsn := newDatabase(t)
	a, b := open(t, dsn), open(t, dsn)
	if err := a.CreateEnrollSecret(ctx, storage.EnrollSecret{ID: "s", Hash: []byte("h"), CreatedAt: t0}, storage.AuditEvent{At: t0}); err != nil {
		t.Fatal(err)
	}
	const rounds = 10
	for n := range rounds {
		var wg sync.WaitGroup
		errs := make([]error, 2)
		for i, s := range []*postgres.Store{a, b} {
			wg.Go(func() {
				e := enrollment(n, i)
				_, _, errs[i] = s.EnrollDevice(ctx, e)
			})
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			t.Fatalf("round %d: %v", n, err)
		}
		d, err := a.GetDeviceByHardwareUUID(ctx, enrollment(n, 0).Device.HardwareUUID)
		if err != nil || d.Enrollments != 2 {
			t.Errorf("round %d: device %+v, %v; want 2 enrollments", n, d, err)
		}
	}
	ds, err := a.ListDevices(ctx, "", 1000)
	if err != nil || len(ds) != rounds {
		t.Errorf("ListDevices = %d devices, %v; want %d", len(ds), err, rounds)
	}
}

func pendingSignIn(token string) storage.PendingSignIn {
	h := sha256.Sum256([]byte(token))
	return storage.PendingSignIn{TokenHash: h[:], DeviceID: "dev-1", Username: "alice", Request: []byte("<r/>"),
		RelayState: "\x00\xff", CreatedAt: t0, ExpiresAt: t0.Add(time.Minute)}
}

// The same AuthnRequest reaching two replicas at once, and two "Check
// again" presses handled by two replicas: one wins each race, and the
// losers get the documented error, never a lock or serialization error.
func TestTwoStoresRaceOnSignIns(t *testing.T) {
	ctx := t.Context()
	dsn := newDatabase(t)
	stores := []*postgres.Store{open(t, dsn), open(t, dsn)}
	const perStore = 4
	race := func(call func(s *postgres.Store) error) []error {
		var wg sync.WaitGroup
		start := make(chan struct{})
		errs := make([]error, len(stores)*perStore)
		for i := range errs {
			wg.Go(func() {
				<-start
				errs[i] = call(stores[i%len(stores)])
			})
		}
		close(start)
		wg.Wait()
		return errs
	}
	winners := func(what string, errs []error, loser error) {
		t.Helper()
		won := 0
		for _, err := range errs {
			switch {
			case err == nil:
				won++
			case !errors.Is(err, loser):
				t.Errorf("%s: %v", what, err)
			}
		}
		if won != 1 {
			t.Errorf("%s: %d winners, want 1", what, won)
		}
	}
	for i := range 10 {
		id := fmt.Sprintf("id-%d", i)
		winners("UseRequestID "+id, race(func(s *postgres.Store) error {
			return s.UseRequestID(ctx, "issuer", id, t0.Add(time.Minute))
		}), storage.ErrAlreadyExists)

		p := pendingSignIn(id)
		if err := stores[0].CreatePendingSignIn(ctx, p); err != nil {
			t.Fatal(err)
		}
		winners("DeletePendingSignIn "+id, race(func(s *postgres.Store) error {
			return s.DeletePendingSignIn(ctx, p.TokenHash)
		}), storage.ErrNotFound)
	}
}

// Replicas starting on a new database at once all get a migrated schema.
func TestConcurrentFirstOpen(t *testing.T) {
	dsn := newDatabase(t)
	const n = 4
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			s, err := postgres.Open(t.Context(), dsn)
			if err == nil {
				s.Close()
			}
			errs[i] = err
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
}

var t0 = time.Date(2025, time.March, 4, 7, 6, 7, 123456789, time.UTC)

// enrollment is machine n's enrollment through replica r: same hardware,
// distinct device ID and certificate.
func enrollment(n, r int) storage.Enrollment {
	serial := fmt.Sprintf("%x", 0x100*n+r+1)
	return storage.Enrollment{
		Device: storage.Device{
			ID: fmt.Sprintf("dev-%d-%d", n, r), HardwareUUID: fmt.Sprintf("HW-%d", n),
			PublicKey: []byte("key"), CertSerial: serial, CertNotAfter: t0.Add(time.Hour), EnrolledAt: t0,
		},
		Cert:     storage.Cert{Serial: serial, Kind: "device", NotBefore: t0, NotAfter: t0.Add(time.Hour), DER: []byte("der")},
		SecretID: "s",
		Audit:    storage.AuditEvent{At: t0, Actor: "agent", Action: "device.enroll"},
	}
}

func enrollOne(t *testing.T, s *postgres.Store) storage.Device {
	t.Helper()
	ctx := t.Context()
	if err := s.CreateEnrollSecret(ctx, storage.EnrollSecret{ID: "s", Hash: []byte("h"), CreatedAt: t0}, storage.AuditEvent{At: t0}); err != nil {
		t.Fatal(err)
	}
	d, _, err := s.EnrollDevice(ctx, enrollment(1, 0))
	if err != nil {
		t.Fatal(err)
	}
	return d
}
