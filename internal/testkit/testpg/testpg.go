// Package testpg gives tests a PostgreSQL database of their own on the
// server named by CLEARANCE_TEST_POSTGRES_DSN (scripts/postgres.sh starts
// one on loopback): created empty, dropped when the test ends.
package testpg

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// DSNVar names the server the tests use.
const DSNVar = "CLEARANCE_TEST_POSTGRES_DSN"

// Require returns the server's DSN. Without one it skips the test, except
// under CI (CI=true), where .ci/run starts a server and its absence is a
// failure.
func Require(t testing.TB) string {
	t.Helper()
	dsn := os.Getenv(DSNVar)
	if dsn != "" {
		return dsn
	}
	if os.Getenv("CI") == "true" {
		t.Fatal(DSNVar + " not set under CI: .ci/run must start PostgreSQL with scripts/postgres.sh")
	}
	t.Skip(DSNVar + " not set (scripts/postgres.sh run go test ./… starts one)")
	return ""
}

// NewDatabase creates an empty database of the test's own and returns its
// DSN. It is dropped when the test ends, after the cleanups registered
// later (a store or a verifier using it); FORCE ends any connection a
// failed test left behind.
func NewDatabase(t testing.TB) string {
	t.Helper()
	return newDatabase(t, "")
}

// NewDatabaseFrom is NewDatabase with a copy of template, a database of
// this server (its DSN) that no one is connected to: a suite whose every
// test starts from the same schema migrates one database, not each.
func NewDatabaseFrom(t testing.TB, template string) string {
	t.Helper()
	u, err := url.Parse(template)
	if err != nil || len(u.Path) < 2 {
		t.Fatalf("template %q is not a database DSN", template)
	}
	return newDatabase(t, u.Path[1:])
}

func newDatabase(t testing.TB, template string) string {
	t.Helper()
	base := Require(t)
	u, err := url.Parse(base)
	if err != nil || u.Scheme == "" {
		t.Fatalf("%s must be a postgres:// URL", DSNVar)
	}
	name := "clearance_test_" + suffix()
	exec := func(ctx context.Context, sql func(*pgx.Conn) string) error {
		c, err := pgx.Connect(ctx, base)
		if err != nil {
			return err
		}
		defer c.Close(context.Background())
		_, err = c.Exec(ctx, sql(c))
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// A Unicode character classification (LC_CTYPE), as a database made
	// with a distribution's default locale has, whatever the server's own
	// default (scripts/postgres.sh makes it C): lower() and upper() then map
	// every letter with a case, not only A-Z, so a query that leans on them
	// shows here what it does in production. Sort order stays C's.
	create := func(c *pgx.Conn) string {
		if template == "" {
			return `CREATE DATABASE ` + name + ` TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C.UTF-8'`
		}
		// A copy keeps the template's encoding and locale. PostgreSQL 15's
		// default way to copy (WAL_LOG) writes the whole template to the WAL:
		// it takes three times as long as copying its files (60 ms, 20 ms), and
		// a suite copying it for each of a few hundred tests fills the WAL
		// past max_wal_size, into checkpoints. Older servers only copy files.
		sql := `CREATE DATABASE ` + name + ` TEMPLATE ` + pgx.Identifier{template}.Sanitize()
		if major(c.PgConn().ParameterStatus("server_version")) >= 15 {
			sql += ` STRATEGY FILE_COPY`
		}
		return sql
	}
	if err := exec(ctx, create); err != nil {
		t.Fatalf("creating test database on %s: %v", DSNVar, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		drop := func(*pgx.Conn) string { return `DROP DATABASE IF EXISTS ` + name + ` WITH (FORCE)` }
		if err := exec(ctx, drop); err != nil {
			t.Errorf("dropping test database %s: %v", name, err)
		}
	})
	u.Path = "/" + name
	return u.String()
}

// NewDatabaseWithPassword is NewDatabase with a password in the DSN that
// the test server (which trusts loopback) never asks for: tests that check
// a password is never written or logged look for it.
func NewDatabaseWithPassword(t testing.TB) (dsn, password string) {
	t.Helper()
	u, err := url.Parse(NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	password = "never-asked-" + suffix()
	u.User = url.UserPassword(u.User.Username(), password)
	return u.String(), password
}

func suffix() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b) // never fails
	return hex.EncodeToString(b)
}

// major is the major version in a server_version such as "15.18 (Debian
// 15.18-0+deb12u1)" or "17beta1", 0 when it has none.
func major(version string) int {
	end := 0
	for end < len(version) && '0' <= version[end] && version[end] <= '9' {
		end++
	}
	n, _ := strconv.Atoi(version[:end])
	return n
}
