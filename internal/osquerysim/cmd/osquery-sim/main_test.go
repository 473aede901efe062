package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	osq "github.com/osquery/osquery-go"

	"github.com/clearance/clearance/internal/osquerysim"
	"github.com/clearance/clearance/internal/testkit"
)

func TestParseArgs(t *testing.T) {
	dir := t.TempDir()
	flagfile := filepath.Join(dir, "osquery.flags")
	if err := os.WriteFile(flagfile, []byte("# written by an agent\n--extensions_socket=/tmp/from-flagfile.em\n\n--disable_watchdog\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		args   []string
		socket string
		fix    string
		pid    string
		flags  map[string]string
	}{
		{"defaults", nil, defaultSocket, defaultFixture, "", map[string]string{}},
		{"our flags", []string{"--socket", "/tmp/a.em", "--fixture=failing-mac", "-pidfile=/tmp/p"},
			"/tmp/a.em", "failing-mac", "/tmp/p", map[string]string{"extensions_socket": "/tmp/a.em", "pidfile": "/tmp/p"}},
		{"osqueryd command line",
			[]string{"--extensions_socket=/tmp/b.em", "--database_path=/tmp/db", "--config_path", "/etc/osquery.conf", "--disable_events", "--nodisable_watchdog", "--logger_plugin=filesystem", "--force"},
			"/tmp/b.em", defaultFixture, "",
			map[string]string{"extensions_socket": "/tmp/b.em", "database_path": "/tmp/db", "config_path": "/etc/osquery.conf", "disable_events": "true", "disable_watchdog": "false", "logger_plugin": "filesystem", "force": "true"}},
		{"unknown switch before a flag", []string{"--some_new_switch", "--fixture", "x.json"},
			defaultSocket, "x.json", "", map[string]string{"some_new_switch": "true"}},
		{"flagfile", []string{"--flagfile=" + flagfile},
			"/tmp/from-flagfile.em", defaultFixture, "", map[string]string{"extensions_socket": "/tmp/from-flagfile.em", "disable_watchdog": "true"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := parseArgs(tc.args)
			if err != nil {
				t.Fatal(err)
			}
			if cfg.socket != tc.socket || cfg.fixture != tc.fix || cfg.pidfile != tc.pid {
				t.Errorf("socket, fixture, pidfile = %q %q %q, want %q %q %q", cfg.socket, cfg.fixture, cfg.pidfile, tc.socket, tc.fix, tc.pid)
			}
			if !reflect.DeepEqual(cfg.osqueryd, tc.flags) {
				t.Errorf("osqueryd flags = %v, want %v", cfg.osqueryd, tc.flags)
			}
		})
	}

	bad := [][]string{
		{"positional"},
		{"--socket"},
		{"--socket="},
		{"--verbose=maybe"},
		{"--flagfile=" + filepath.Join(dir, "missing")},
	}
	for _, args := range bad {
		if _, err := parseArgs(args); err == nil {
			t.Errorf("parseArgs(%q) succeeded", args)
		}
	}
}

func copyFixture(t *testing.T, name, dst string) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "..", "testdata", name+".json"))
	if err != nil {
		t.Fatal(err)
	}
	writeAtomically(t, dst, data)
}

// writeAtomically replaces dst the way editors and `mv` do.
func writeAtomically(t *testing.T, dst string, data []byte) {
	t.Helper()
	tmp := dst + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, dst); err != nil {
		t.Fatal(err)
	}
}

// TestCommand runs the command as an agent would spawn osqueryd, and drives
// its fixture file while osquery-go's client is connected.
func TestCommand(t *testing.T) {
	dir, err := os.MkdirTemp("", "osqsim") // short: unix socket paths are limited
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	socket := filepath.Join(dir, "osquery.em")
	pidfile := filepath.Join(dir, "osqueryd.pid")
	fixture := filepath.Join(dir, "mac.json")
	copyFixture(t, "compliant-mac", fixture)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	hup := make(chan os.Signal, 1)
	logs := &testkit.Buffer{}
	code := make(chan int, 1)
	go func() {
		code <- runMain(ctx, []string{
			"--extensions_socket=" + socket, "--fixture", fixture, "--pidfile=" + pidfile,
			"--database_path=" + filepath.Join(dir, "db"), "--disable_events", "--config_path=/nonexistent",
		}, hup, &bytes.Buffer{}, logs)
	}()

	c, err := osq.NewClient(socket, 5*time.Second)
	if err != nil {
		t.Fatalf("connecting: %v\n%s", err, logs)
	}
	defer c.Close()
	globalState := func() string {
		row, err := c.QueryRow("SELECT global_state FROM alf")
		if err != nil {
			t.Fatalf("query: %v\n%s", err, logs)
		}
		return row["global_state"]
	}
	if got := globalState(); got != "1" {
		t.Fatalf("global_state = %q, want 1", got)
	}
	if data, err := os.ReadFile(pidfile); err != nil || strings.TrimSpace(string(data)) != strconv.Itoa(os.Getpid()) {
		t.Errorf("pidfile = %q, %v", data, err)
	}

	// 1. The file changes: the next queries see the new state.
	copyFixture(t, "failing-mac", fixture)
	testkit.Eventually(t, 5*time.Second, "the failing fixture", func() bool { return globalState() == "0" })

	// 2. A broken file is logged and the state kept.
	writeAtomically(t, fixture, []byte(`{"tables": {"alf": [{"global_state": "on"}]}}`))
	testkit.Eventually(t, 5*time.Second, "the reload error in the log", func() bool { return strings.Contains(logs.String(), "fixture reload failed") })
	if got := globalState(); got != "0" {
		t.Errorf("after a bad fixture global_state = %q, want 0 (kept)", got)
	}

	// 3. SIGHUP re-reads the file.
	copyFixture(t, "compliant-mac", fixture)
	hup <- syscall.SIGHUP
	testkit.Eventually(t, 5*time.Second, "the compliant fixture", func() bool { return globalState() == "1" })
	testkit.Eventually(t, 5*time.Second, "a reload on SIGHUP", func() bool {
		for _, line := range strings.Split(logs.String(), "\n") {
			if strings.Contains(line, `msg="fixture reloaded"`) && strings.Contains(line, "reason=sighup") {
				return true
			}
		}
		return false
	})

	// 4. SIGTERM (the context) stops it and cleans up.
	cancel()
	select {
	case got := <-code:
		if got != 0 {
			t.Fatalf("exit code %d\n%s", got, logs)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("did not stop")
	}
	for _, p := range []string{socket, pidfile} {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s left behind: %v", p, err)
		}
	}
}

func TestCommandBadStart(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.json")
	if err := os.WriteFile(bad, []byte(`{"tables": {"nope": []}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := map[string]struct {
		args []string
		code int
		msg  string
	}{
		"usage":          {[]string{"stray"}, 2, "unexpected argument"},
		"bad fixture":    {[]string{"--socket=" + filepath.Join(dir, "s"), "--fixture=" + bad}, 1, `unknown table \"nope\"`},
		"missing socket": {[]string{"--socket=" + filepath.Join(dir, "no", "such", "dir", "s")}, 1, "listening on extensions socket"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			var stderr bytes.Buffer
			got := runMain(context.Background(), tc.args, nil, &bytes.Buffer{}, &stderr)
			if got != tc.code || !strings.Contains(stderr.String(), tc.msg) {
				t.Errorf("exit %d, stderr %q; want %d and %q", got, stderr.String(), tc.code, tc.msg)
			}
		})
	}
	var stdout bytes.Buffer
	if got := runMain(context.Background(), []string{"--help"}, nil, &stdout, &bytes.Buffer{}); got != 0 || !strings.Contains(stdout.String(), "compliant-mac") {
		t.Errorf("--help: %d %q", got, stdout.String())
	}
	stdout.Reset()
	if got := runMain(context.Background(), []string{"--version"}, nil, &stdout, &bytes.Buffer{}); got != 0 || !strings.Contains(stdout.String(), osquerysim.OsqueryVersion) {
		t.Errorf("--version: %d %q", got, stdout.String())
	}
}

// TestCommandCertificates changes the keychains of the running command's
// Mac through its fixture file, as a demo removes the browser certificate.
func TestCommandCertificates(t *testing.T) {
	dir, err := os.MkdirTemp("", "osqsim")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	socket := filepath.Join(dir, "osquery.em")
	fixture := filepath.Join(dir, "mac.json")
	copyFixture(t, "compliant-mac", fixture)

	ctx, cancel := context.WithCancel(context.Background())
	logs := &testkit.Buffer{}
	code := make(chan int, 1)
	go func() {
		code <- runMain(ctx, []string{"--extensions_socket=" + socket, "--fixture=" + fixture}, nil, &bytes.Buffer{}, logs)
	}()
	t.Cleanup(func() {
		cancel()
		<-code
	})
	c, err := osq.NewClient(socket, 5*time.Second)
	if err != nil {
		t.Fatalf("connecting: %v\n%s", err, logs)
	}
	defer c.Close()
	userCerts := func() int {
		rows, err := c.QueryRows("SELECT serial FROM certificates WHERE path LIKE '/Users/%/Library/Keychains/%'")
		if err != nil {
			t.Fatalf("query: %v\n%s", err, logs)
		}
		return len(rows)
	}
	if n := userCerts(); n != 1 {
		t.Fatalf("user certificates = %d, want 1", n)
	}

	f, err := osquerysim.LoadFixture(fixture)
	if err != nil {
		t.Fatal(err)
	}
	var kept []osquerysim.Row
	for _, row := range f.Tables["certificates"] {
		if !strings.HasPrefix(row["path"], "/Users/") {
			kept = append(kept, row)
		}
	}
	f.Tables["certificates"] = kept
	data, err := json.Marshal(f)
	if err != nil {
		t.Fatal(err)
	}
	writeAtomically(t, fixture, data)
	testkit.Eventually(t, 5*time.Second, "the certificate to leave the login keychain", func() bool { return userCerts() == 0 })
}
