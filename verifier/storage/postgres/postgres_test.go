package postgres_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
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

// Replicas share one database.
func TestShared(t *testing.T) {
	storagetest.RunShared(t, func(t *testing.T) func() (storage.Store, error) {
		dsn := newDatabase(t)
		return func() (storage.Store, error) {
			s, err := postgres.Open(t.Context(), dsn)
			if err != nil {
				return nil, err
			}
			return s, nil
		}
	})
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
