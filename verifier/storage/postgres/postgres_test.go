package postgres_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/clearance/clearance/internal/testkit/testpg"
	"github.com/clearance/clearance/verifier/storage"
	"github.com/clearance/clearance/verifier/storage/postgres"
	"github.com/clearance/clearance/verifier/storage/storagetest"
)

func TestConformance(t *testing.T) {
	testpg.Require(t)
	// One database migrated, copied for each test: the same schema, without
	// running every migration a few hundred times.
	template := testpg.NewDatabase(t)
	s, err := postgres.Open(t.Context(), template)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	s.Close()
	storagetest.Run(t, func(t *testing.T) storage.Store { return open(t, testpg.NewDatabaseFrom(t, template)) })
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

func connect(t *testing.T, ctx context.Context, dsn string) *pgx.Conn {
	t.Helper()
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("connecting to %s: %v", testpg.DSNVar, err)
	}
	return c
}

// Replicas share one database.
func TestShared(t *testing.T) {
	storagetest.RunShared(t, func(t *testing.T) func() (storage.Store, error) {
		dsn := testpg.NewDatabase(t)
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

// TestDatabaseTime: the server's clock as it answers, on the same machine
// as this test, so within a few seconds of ours (a sanity check that the
// value and its zone are read right, not a measure of speed).
func TestDatabaseTime(t *testing.T) {
	testpg.Require(t)
	s := open(t, testpg.NewDatabase(t))
	at, err := s.DatabaseTime(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Since(at).Abs(); d > 5*time.Second {
		t.Errorf("database time %s is %s from ours", at, d)
	}
}

// A connection string that does not parse is refused without being
// quoted: pgx leaves its password out, but not a password passed another
// way.
func TestOpenUnparsableDSNNotQuoted(t *testing.T) {
	dsns := []string{
		"postgres://u:pw@127.0.0.1/db?options=-c%20password%3Ds3cret&sslmode=bogus",
		"host=127.0.0.1 password=pw options='-c password=s3cret' sslmode=bogus",
		"host=127.0.0.1 sslmode=s3cret",
		"postgres://u@127.0.0.1:99999/db?options=s3cret",
		"postgres://u:s3cret@[::1/db",
		"postgres://u:s3cret@h%zz/db",
		"postgres://u@127.0.0.1/db?sslrootcert=/nonexistent/s3cret&sslmode=verify-full",
		"postgres://u@127.0.0.1/db?servicefile=/nonexistent/s3cret&service=x",
		"postgres://u@127.0.0.1/db?options=-c%20password%3Ds3cret&pool_max_conns=x",
		"postgres://u@127.0.0.1:1/db?options=-c x=`: password=s3cret&sslmode=bogus",
		"postgres://u@127.0.0.1/db?options=-c`: password%3Ds3cret`",
		"postgres://[::1]:5432,[::2]:5432/clearance?options=-c%20password%3Ds3cret%zz&sslmode=require",
	}
	// A parameter whose value pgx cannot use, holding the secret itself.
	for _, p := range []string{"target_session_attrs", "min_protocol_version", "channel_binding", "sslmode", "sslcertmode",
		"connect_timeout", "pool_max_conns", "require_auth", "statement_cache_capacity", "default_query_exec_mode", "pool_max_conn_lifetime"} {
		dsns = append(dsns, "postgres://u@127.0.0.1/db?"+p+"=s3cret")
	}
	for _, dsn := range dsns {
		_, err := postgres.Open(t.Context(), dsn)
		if err == nil {
			t.Fatalf("Open(%q) succeeded", dsn)
		}
		t.Logf("%v", err)
		if strings.Contains(err.Error(), "s3cret") || strings.Contains(err.Error(), "pw@") || !strings.Contains(err.Error(), "does not parse") {
			t.Errorf("Open(%q): %v", dsn, err)
		}
	}
}
