package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/clearance/clearance/internal/protoagent"
	"github.com/clearance/clearance/internal/testkit/testpg"
	"github.com/clearance/clearance/pkg/run"
	agentv1 "github.com/clearance/clearance/proto/gen/clearance/agent/v1"
	"github.com/clearance/clearance/verifier/config"
	"github.com/clearance/clearance/verifier/datadir"
	"github.com/clearance/clearance/verifier/server"
)

// serveConfig is serve's configuration for a test: loopback listeners on
// free ports, read by serve's own rules.
func serveConfig(t *testing.T, dir string, extra ...string) *config.Config {
	t.Helper()
	policies, err := filepath.Abs("../../../examples/policies.yaml")
	if err != nil {
		t.Fatal(err)
	}
	args := append([]string{"--data-dir", dir, "--policies", policies, "--grpc-listen", "127.0.0.1:0",
		"--http-listen", "127.0.0.1:0", "--sso-listen", "127.0.0.1:0", "--sso-public-url", "https://localhost:8444", "--log-level", "warn"}, extra...)
	cfg, err := config.Load(flag.NewFlagSet("serve", flag.ContinueOnError), args, noEnv)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// newDataDir is a data dir as serve's first start leaves it, without
// leaving the server running.
func newDataDir(t *testing.T, extra ...string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "data")
	srv, err := server.New(context.Background(), serveConfig(t, dir, extra...), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	srv.Close()
	return dir
}

// testServer is a verifier running in this process.
type testServer struct {
	dir  string
	srv  *server.Server
	addr string
}

func startServer(t *testing.T, extra ...string) *testServer {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "data")
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	srv, err := server.New(context.Background(), serveConfig(t, dir, extra...), log)
	if err != nil {
		t.Fatal(err)
	}
	var g run.Group
	g.Logger = log
	if err := srv.Actors(&g); err != nil {
		srv.Close()
		t.Fatal(err)
	}
	stop := make(chan struct{})
	g.Add("test", func() error { <-stop; return nil }, func(error) {})
	done := make(chan error, 1)
	go func() { done <- g.Run() }()
	t.Cleanup(func() {
		close(stop)
		if err := <-done; err != nil {
			t.Errorf("server stopped with %v", err)
		}
		srv.Close()
	})
	return &testServer{dir: dir, srv: srv, addr: srv.GRPCAddr.String()}
}

// enroll enrolls a made-up Mac with secret and has it report every policy
// at st over its stream, which stays open for the test.
func (s *testServer) enroll(t *testing.T, secret, hardwareUUID string, st agentv1.PolicyStatus) *protoagent.Agent {
	t.Helper()
	return s.enrollWith(t, secret, hardwareUUID, st, nil)
}

// enrollWith is enroll with the first report changed by edit (when not nil)
// before it is signed.
func (s *testServer) enrollWith(t *testing.T, secret, hardwareUUID string, st agentv1.PolicyStatus, edit func(*agentv1.PostureReport)) *protoagent.Agent {
	t.Helper()
	root, err := os.ReadFile(filepath.Join(s.dir, "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	a, err := protoagent.New(s.addr, root, hardwareUUID)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	if _, err := a.Enroll(ctx, secret); err != nil {
		t.Fatalf("enrolling with the CLI's secret: %v", err)
	}
	stream, err := a.Connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stream.Close)
	r := a.Report(stream.PolicySet, 1, time.Now(), nil, st)
	if edit != nil {
		edit(r)
	}
	if _, err := stream.Exchange(protoagent.Sign(a.Key, r)); err != nil {
		t.Fatal(err)
	}
	return a
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}

// TestSecretEnrollsAgainstServer: a secret the CLI creates with only the
// data dir is one the running server accepts, on SQLite and on PostgreSQL
// (where the data dir records the database without its password).
func TestSecretEnrollsAgainstServer(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) {
		t.Parallel()
		s := startServer(t)
		out, _, err := execute(noEnv, "secret", "create", "--data-dir", s.dir)
		if err != nil {
			t.Fatal(err)
		}
		s.enroll(t, lastLine(out), "0A1B2C3D-4E5F-4061-8172-839405A6B7C8", agentv1.PolicyStatus_POLICY_STATUS_PASS)
	})
	t.Run("postgres", func(t *testing.T) {
		t.Parallel()
		dsn, password := testpg.NewDatabaseWithPassword(t)
		s := startServer(t, "--database", dsn)
		record, err := os.ReadFile(filepath.Join(s.dir, datadir.RecordFile))
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(record), password) || !strings.Contains(string(record), "postgres://") {
			t.Fatalf("%s:\n%s", datadir.RecordFile, record)
		}
		// No --database: the data dir says which database, and nothing in
		// the data dir holds the password.
		out, _, err := execute(noEnv, "secret", "create", "--data-dir", s.dir)
		if err != nil {
			t.Fatal(err)
		}
		s.enroll(t, lastLine(out), "0A1B2C3D-4E5F-4061-8172-839405A6B7C9", agentv1.PolicyStatus_POLICY_STATUS_PASS)
		// The same database given in the environment, password and all.
		out, _, err = execute(envOf(map[string]string{"CLEARANCE_DATABASE": dsn}), "secret", "create", "--data-dir", s.dir)
		if err != nil {
			t.Fatal(err)
		}
		s.enroll(t, lastLine(out), "0A1B2C3D-4E5F-4061-8172-839405A6B7CA", agentv1.PolicyStatus_POLICY_STATUS_PASS)
		// Another database is refused before anything is written.
		other, _ := testpg.NewDatabaseWithPassword(t)
		_, _, err = execute(envOf(map[string]string{"CLEARANCE_DATABASE": other}), "scep", "challenge", "--data-dir", s.dir)
		if err == nil || !strings.Contains(err.Error(), "would never be read") || strings.Contains(err.Error(), password) {
			t.Errorf("another database: %v", err)
		}
		for _, dir := range walk(t, s.dir) {
			if b, _ := os.ReadFile(dir); strings.Contains(string(b), password) {
				t.Errorf("%s holds the database password", dir)
			}
		}
	})
}

func walk(t *testing.T, dir string) []string {
	t.Helper()
	var files []string
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			files = append(files, p)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// TestDatabaseCommandsRefuse: secret and scep challenge act only on a
// verifier data dir, and say what is missing.
func TestDatabaseCommandsRefuse(t *testing.T) {
	t.Parallel()
	sqliteDir := newDataDir(t)
	empty := t.TempDir()
	half := t.TempDir()
	if err := os.WriteFile(filepath.Join(half, "ca.pem"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		env  map[string]string
		args []string
		want []string
	}{
		{"empty dir", nil, []string{"--data-dir", empty}, []string{empty + " is not a clearance-verifier data dir", "no ca.pem or admin.token"}},
		{"half a data dir", nil, []string{"--data-dir", half}, []string{"it has no admin.token"}},
		{"typo", nil, []string{"--data-dir", empty + "x"}, []string{"does not exist", "clearance-verifier serve --data-dir"}},
		{"sqlite dir, postgres env", map[string]string{"CLEARANCE_DATABASE": "postgres://u:pw@db.example.com/x"}, []string{"--data-dir", sqliteDir},
			[]string{"uses SQLite in the data dir", "PostgreSQL db.example.com:5432/x", "would never be read"}},
		{"nothing", nil, nil, []string{"--data-dir is required"}},
	} {
		for _, cmd := range [][]string{{"secret", "create"}, {"secret", "list"}, {"scep", "challenge"}} {
			_, _, err := execute(envOf(tc.env), append(cmd, tc.args...)...)
			if err == nil {
				t.Errorf("%s: %v accepted", tc.name, cmd)
				continue
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("%s: %v: error %q does not say %q", tc.name, cmd, err, w)
				}
			}
			if strings.Contains(err.Error(), "pw@") {
				t.Errorf("%s: the error shows the password: %v", tc.name, err)
			}
		}
	}
	if _, err := os.Stat(filepath.Join(empty, datadir.SQLiteFile)); err == nil {
		t.Error("a database was created in a directory that is not a data dir")
	}
}

// A password with an unencoded '/' ends the URL's host early: serve and
// the CLI refuse the URL and show the password nowhere, where pgx would
// have quoted it as the database's name.
func TestDatabasePasswordPastHostRefused(t *testing.T) {
	policies, err := filepath.Abs("../../../examples/policies.yaml")
	if err != nil {
		t.Fatal(err)
	}
	const dsn = "postgres://clearance:/S3cretPW+q@db.internal:5432/clearance?host=127.0.0.1&port=1&sslmode=disable"
	for _, args := range [][]string{
		{"serve", "--data-dir", t.TempDir(), "--policies", policies, "--database", dsn},
		{"secret", "create", "--data-dir", startServer(t).dir, "--database", dsn},
	} {
		out, errOut, err := execute(noEnv, args...)
		if err == nil || !strings.Contains(err.Error(), "percent-encode") {
			t.Errorf("%s: %v", args[0], err)
		}
		for _, s := range []string{out, errOut, fmt.Sprint(err)} {
			if strings.Contains(s, "S3cretPW") {
				t.Errorf("%s shows the password: %s", args[0], s)
			}
		}
	}
}

// newSecret creates an enroll secret with the CLI and returns its value.
func (s *testServer) newSecret(t *testing.T) string {
	t.Helper()
	out, _, err := execute(noEnv, "secret", "create", "--data-dir", s.dir)
	if err != nil {
		t.Fatal(err)
	}
	return lastLine(out)
}
