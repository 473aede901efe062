package osquerysim_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apache/thrift/lib/go/thrift"
	osq "github.com/osquery/osquery-go"
	"github.com/osquery/osquery-go/gen/osquery"
	"github.com/osquery/osquery-go/transport"

	"github.com/clearance/clearance/internal/osquerysim"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// socketPath returns a socket path short enough for sun_path (104 bytes on
// macOS), which t.TempDir's long names can exceed.
func socketPath(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "osqsim")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return filepath.Join(dir, "osquery.em")
}

type running struct {
	sim    *osquerysim.Sim
	socket string
	stop   func() error // stops serving and returns Serve's error
}

// start serves fixture on a fresh socket until the test ends.
func start(t *testing.T, fixture string) *running {
	t.Helper()
	f, err := osquerysim.LoadFixture(fixture)
	if err != nil {
		t.Fatal(err)
	}
	sim, err := osquerysim.New(f, osquerysim.WithLogger(quiet),
		osquerysim.WithFlags(map[string]string{"database_path": "/tmp/osquery.db"}))
	if err != nil {
		t.Fatal(err)
	}
	path := socketPath(t)
	ln, err := osquerysim.Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sim.ServeListener(ctx, ln) }()
	var once sync.Once
	var serveErr error
	stop := func() error {
		once.Do(func() {
			cancel()
			select {
			case serveErr = <-done:
			case <-time.After(10 * time.Second):
				serveErr = errors.New("Serve did not return")
			}
			sim.Close()
		})
		return serveErr
	}
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return &running{sim: sim, socket: path, stop: stop}
}

// client is osquery-go's own client, unmodified, as the agent uses it.
func client(t *testing.T, socket string) *osq.ExtensionManagerClient {
	t.Helper()
	c, err := osq.NewClient(socket, 5*time.Second)
	if err != nil {
		t.Fatalf("osquery.NewClient: %v", err)
	}
	t.Cleanup(c.Close)
	return c
}

func TestPing(t *testing.T) {
	r := start(t, "compliant-mac")
	st, err := client(t, r.socket).Ping()
	if err != nil {
		t.Fatal(err)
	}
	want := &osquery.ExtensionStatus{Code: 0, Message: "pong", UUID: 0}
	if !reflect.DeepEqual(st, want) {
		t.Errorf("Ping = %+v, want %+v", st, want)
	}
}

func TestQueryRows(t *testing.T) {
	r := start(t, "compliant-mac")
	c := client(t, r.socket)
	tests := []struct {
		name string
		sql  string
		want []map[string]string
	}{
		{
			name: "integers and text come back as strings; NULL as empty",
			sql:  "SELECT name, version, major, minor, patch, codename FROM os_version",
			want: []map[string]string{{"name": "macOS", "version": "15.6.1", "major": "15", "minor": "6", "patch": "1", "codename": ""}},
		},
		{
			name: "bigint",
			sql:  "SELECT physical_memory, cpu_logical_cores, hardware_model FROM system_info",
			want: []map[string]string{{"physical_memory": "38654705664", "cpu_logical_cores": "12", "hardware_model": "Mac15,6"}},
		},
		{
			name: "doubles print as osqueryd prints them",
			sql:  "SELECT 1.5 AS a, 100.0 AS b, 0.1 AS c, 1e20 AS d, -2 AS e",
			want: []map[string]string{{"a": "1.5", "b": "100.0", "c": "0.10000000000000001", "d": "1e+20.0", "e": "-2"}},
		},
		{
			name: "policy style query returns one row per match",
			sql:  "SELECT 1 FROM sip_config WHERE config_flag = 'sip' AND enabled = 1",
			want: []map[string]string{{"1": "1"}},
		},
		{
			name: "no match is no rows",
			sql:  "SELECT 1 FROM alf WHERE global_state = 2",
			want: []map[string]string{},
		},
		{
			name: "macOS 15 alf has no allow_signed_enabled value",
			sql:  "SELECT allow_signed_enabled, global_state FROM alf",
			want: []map[string]string{{"allow_signed_enabled": "", "global_state": "1"}},
		},
		{
			name: "every statement's rows, as osqueryd returns them",
			sql:  "SELECT 'a' AS x; SELECT 'b' AS x;",
			want: []map[string]string{{"x": "a"}, {"x": "b"}},
		},
		{
			name: "version collation compares release segments",
			sql:  "SELECT (SELECT count(*) FROM os_version WHERE version >= '15.10') AS newer, (SELECT count(*) FROM os_version WHERE version > '15.6') AS older",
			want: []map[string]string{{"newer": "0", "older": "1"}},
		},
		{
			name: "version_compare",
			sql:  "SELECT version_compare('15.10', '15.9') AS a, version_compare('1.0', '1.0') AS b, version_compare('2:1.0', '1:9.9', 'DPKG') AS c",
			want: []map[string]string{{"a": "1", "b": "0", "c": "1"}},
		},
		{
			name: "nocase collation on uuid columns",
			sql:  "SELECT username FROM users WHERE uuid = '8f3b2c1d-6e5a-4d9b-b7c8-2a1f0e9d3c4b'",
			want: []map[string]string{{"username": "alice"}},
		},
		{
			name: "join across tables",
			sql:  "SELECT u.username, d.name FROM disk_encryption d JOIN users u ON u.uuid = d.user_uuid WHERE d.filevault_status = 'on' ORDER BY d.name",
			want: []map[string]string{{"username": "alice", "name": "/dev/disk3s1"}, {"username": "alice", "name": "/dev/disk3s5"}},
		},
		{
			name: "the Clearance user certificate is in the login keychain",
			sql:  "SELECT common_name, key_strength FROM certificates WHERE issuer2 = 'O = Clearance, CN = Clearance Device CA' AND ca = 0 AND path LIKE '/Users/%/Library/Keychains/login.keychain-db'",
			want: []map[string]string{{"common_name": "5A1C7E2B-9D4F-4B8A-A3E6-0C2D71F9B846", "key_strength": "2048"}},
		},
		{
			name: "empty query",
			sql:  "  -- nothing\n",
			want: []map[string]string{},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res, err := c.Query(tc.sql)
			if err != nil {
				t.Fatal(err)
			}
			if res.Status.Code != 0 || res.Status.Message != "OK" {
				t.Fatalf("status = %+v, want 0 OK", res.Status)
			}
			if got := []map[string]string(res.Response); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("rows = %v, want %v", res.Response, tc.want)
			}
		})
	}
}

func TestQueryRowHelper(t *testing.T) {
	r := start(t, "compliant-mac")
	row, err := client(t, r.socket).QueryRow("SELECT pid, version, uuid FROM osquery_info")
	if err != nil {
		t.Fatal(err)
	}
	if row["pid"] != strconv.Itoa(os.Getpid()) || row["version"] != osquerysim.OsqueryVersion || row["uuid"] != "5A1C7E2B-9D4F-4B8A-A3E6-0C2D71F9B846" {
		t.Errorf("osquery_info = %v", row)
	}
}

func TestQueryErrors(t *testing.T) {
	r := start(t, "compliant-mac")
	c := client(t, r.socket)
	tests := []struct {
		sql, msg string
	}{
		{"SELECT foo FROM alf", "no such column: foo"},
		{"SELECT * FROM nope", "no such table: nope"},
		{"SELEC 1", `near "SELEC": syntax error`},
		// Windows-only columns do not exist on macOS, as on a real Mac.
		{"SELECT sid FROM certificates", "no such column: sid"},
		{"SELECT store_location FROM certificates", "no such column: store_location"},
		{"SELECT username FROM certificates", "no such column: username"},
		{"SELECT 1; SELECT nope FROM alf", "no such column: nope"},
		// The tables are views of the host.
		{"UPDATE alf SET global_state = 1", "table alf may not be modified"},
		{"INSERT INTO users (uid, username) VALUES (0, 'mallory')", "table users may not be modified"},
		{"DELETE FROM disk_encryption", "table disk_encryption may not be modified"},
		{"CREATE TABLE scratch (x)", "not authorized"},
		{"DROP TABLE alf", "not authorized"},
		{"ATTACH DATABASE '/tmp/x.db' AS x", "not authorized"},
		{"PRAGMA case_sensitive_like = 1", "not authorized"},
		{"SELECT version_compare('1')", "Must provide two version strings to compare."},
	}
	for _, tc := range tests {
		t.Run(tc.sql, func(t *testing.T) {
			res, err := c.Query(tc.sql)
			if err != nil {
				t.Fatal(err)
			}
			if res.Status.Code != 1 || res.Status.Message != tc.msg {
				t.Errorf("status = %d %q, want 1 %q", res.Status.Code, res.Status.Message, tc.msg)
			}
			if len(res.Response) != 0 {
				t.Errorf("rows = %v, want none", res.Response)
			}
			// osquery-go's helper turns the status into a Go error.
			if _, err := c.QueryRows(tc.sql); err == nil || !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("QueryRows error = %v, want one containing %q", err, tc.msg)
			}
		})
	}

	// A refused write changes nothing.
	row, err := c.QueryRow("SELECT global_state FROM alf")
	if err != nil || row["global_state"] != "1" {
		t.Errorf("alf after refused writes = %v, %v", row, err)
	}
	if rows, err := c.QueryRows("PRAGMA table_info(screenlock)"); err != nil || len(rows) != 2 {
		t.Errorf("PRAGMA table_info = %v, %v; want two columns", rows, err)
	}
}

func TestStateChangesWhileServing(t *testing.T) {
	r := start(t, "compliant-mac")
	c := client(t, r.socket)
	const q = "SELECT 1 FROM disk_encryption WHERE user_uuid != '' AND filevault_status = 'on'"
	count := func() int {
		t.Helper()
		rows, err := c.QueryRows(q)
		if err != nil {
			t.Fatal(err)
		}
		return len(rows)
	}
	if n := count(); n == 0 {
		t.Fatal("compliant-mac: FileVault check returned no rows")
	}

	// The same connection sees the new state on its next query.
	if err := r.sim.LoadFixture("failing-mac"); err != nil {
		t.Fatal(err)
	}
	if n := count(); n != 0 {
		t.Fatalf("failing-mac: FileVault check returned %d rows, want 0", n)
	}
	row, err := c.QueryRow("SELECT global_state FROM alf")
	if err != nil || row["global_state"] != "0" {
		t.Fatalf("failing-mac alf = %v, %v", row, err)
	}

	// A fixture built in code, with one table changed.
	f := r.sim.Fixture()
	f.Tables["screenlock"] = []osquerysim.Row{{"enabled": "0", "grace_period": "-1"}}
	if err := r.sim.SetState(f); err != nil {
		t.Fatal(err)
	}
	row, err = c.QueryRow("SELECT enabled, grace_period FROM screenlock")
	if err != nil || row["enabled"] != "0" || row["grace_period"] != "-1" {
		t.Fatalf("screenlock = %v, %v", row, err)
	}

	// An invalid state is refused and the served one stays.
	bad := osquerysim.Fixture{Tables: map[string][]osquerysim.Row{"alf": {{"global_stat": "1"}}}}
	if err := r.sim.SetState(bad); err == nil || !strings.Contains(err.Error(), `unknown column "global_stat"`) {
		t.Fatalf("SetState(bad) = %v, want unknown column error", err)
	}
	if n := count(); n != 0 {
		t.Fatalf("after refused state: %d rows, want 0", n)
	}
}

func TestStateChangeUnderLoad(t *testing.T) {
	r := start(t, "compliant-mac")
	compliant, _ := osquerysim.LoadFixture("compliant-mac")
	failing, _ := osquerysim.LoadFixture("failing-mac")
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for i := 0; i < 4; i++ {
		c := client(t, r.socket)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 50; j++ {
				res, err := c.Query("SELECT global_state FROM alf")
				switch {
				case err != nil:
					errs <- err
					return
				case res.Status.Code != 0 || len(res.Response) != 1:
					errs <- errors.New("query failed during a state change: " + res.Status.Message)
					return
				}
			}
		}()
	}
	for i := 0; i < 20; i++ {
		f := compliant
		if i%2 == 0 {
			f = failing
		}
		if err := r.sim.SetState(f); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestGetQueryColumns(t *testing.T) {
	r := start(t, "compliant-mac")
	c := client(t, r.socket)
	res, err := c.GetQueryColumns("SELECT global_state, version, 1 + 1 AS two FROM alf")
	if err != nil {
		t.Fatal(err)
	}
	want := []map[string]string{{"global_state": "INTEGER"}, {"version": "TEXT"}, {"two": "UNKNOWN"}}
	if res.Status.Code != 0 || !reflect.DeepEqual([]map[string]string(res.Response), want) {
		t.Errorf("GetQueryColumns = %+v %v, want %v", res.Status, res.Response, want)
	}
	res, err = c.GetQueryColumns("SELECT uid, physical_memory FROM users, system_info")
	if err != nil {
		t.Fatal(err)
	}
	want = []map[string]string{{"uid": "BIGINT"}, {"physical_memory": "BIGINT"}}
	if !reflect.DeepEqual([]map[string]string(res.Response), want) {
		t.Errorf("GetQueryColumns = %v, want %v", res.Response, want)
	}
	res, err = c.GetQueryColumns("SELECT nope FROM alf")
	if err != nil {
		t.Fatal(err)
	}
	if res.Status.Code != 1 || res.Status.Message != "no such column: nope" {
		t.Errorf("GetQueryColumns error status = %+v", res.Status)
	}
}

func TestExtensionManagerCalls(t *testing.T) {
	r := start(t, "compliant-mac")
	c := client(t, r.socket)

	exts, err := c.Extensions()
	if err != nil || len(exts) != 0 {
		t.Fatalf("Extensions = %v, %v; want none", exts, err)
	}
	info := &osquery.InternalExtensionInfo{Name: "clearance-test", Version: "1.0.0"}
	st, err := c.RegisterExtension(info, osquery.ExtensionRegistry{"table": {}})
	if err != nil || st.Code != 0 || st.UUID <= 0 || st.UUID > 65535 {
		t.Fatalf("RegisterExtension = %+v, %v", st, err)
	}
	uuid := st.UUID
	exts, err = c.Extensions()
	if err != nil || exts[uuid] == nil || exts[uuid].Name != "clearance-test" {
		t.Fatalf("Extensions after register = %v, %v", exts, err)
	}
	st, err = c.RegisterExtension(info, osquery.ExtensionRegistry{})
	if err != nil || st.Code != 1 || st.Message != "Duplicate extension registered" {
		t.Errorf("duplicate RegisterExtension = %+v, %v", st, err)
	}
	st, err = c.RegisterExtension(&osquery.InternalExtensionInfo{Name: "x"}, osquery.ExtensionRegistry{"nope": {}})
	if err != nil || st.Code != 1 || st.Message != "Failed adding registry: Unknown registry: nope" {
		t.Errorf("RegisterExtension(unknown registry) = %+v, %v", st, err)
	}
	st, err = c.RegisterExtension(&osquery.InternalExtensionInfo{Name: "old", SdkVersion: "1.7.6"}, nil)
	if err != nil || st.Code != 1 || st.Message != "Incompatible extension SDK version" {
		t.Errorf("RegisterExtension(old sdk) = %+v, %v", st, err)
	}
	st, err = c.DeregisterExtension(uuid)
	if err != nil || st.Code != 0 {
		t.Errorf("DeregisterExtension = %+v, %v", st, err)
	}
	st, err = c.DeregisterExtension(uuid)
	if err != nil || st.Code != 1 || st.Message != "No extension UUID found" {
		t.Errorf("second DeregisterExtension = %+v, %v", st, err)
	}

	opts, err := c.Options()
	if err != nil {
		t.Fatal(err)
	}
	if o := opts["database_path"]; o == nil || o.Value != "/tmp/osquery.db" || o.DefaultValue != "/var/osquery/osquery.db" {
		t.Errorf("options[database_path] = %+v", o)
	}

	calls := []struct {
		registry, item string
		req            osquery.ExtensionPluginRequest
		code           int32
		msg            string
		rows           int
	}{
		{"table", "screenlock", osquery.ExtensionPluginRequest{"action": "generate"}, 0, "OK", 1},
		{"table", "sip_config", osquery.ExtensionPluginRequest{"action": "generate"}, 0, "OK", 13},
		{"table", "screenlock", osquery.ExtensionPluginRequest{"action": "columns"}, 0, "OK", 3},
		{"table", "screenlock", osquery.ExtensionPluginRequest{"action": "insert"}, 0, "OK", 1},
		{"table", "screenlock", osquery.ExtensionPluginRequest{}, 1, "Table plugins must include a request action", 0},
		{"table", "screenlock", osquery.ExtensionPluginRequest{"action": "explode"}, 1, "Unknown table plugin action: explode", 0},
		{"table", "nope", osquery.ExtensionPluginRequest{"action": "generate"}, 1, "Cannot call registry item: nope", 0},
		{"nope", "x", nil, 1, "Unknown registry requested: nope", 0},
	}
	for _, tc := range calls {
		res, err := c.Call(tc.registry, tc.item, tc.req)
		if err != nil {
			t.Fatal(err)
		}
		if res.Status.Code != tc.code || res.Status.Message != tc.msg || len(res.Response) != tc.rows {
			t.Errorf("Call(%s, %s, %v) = %+v %v, want %d %q with %d rows", tc.registry, tc.item, tc.req, res.Status, res.Response, tc.code, tc.msg, tc.rows)
		}
	}
	res, _ := c.Call("table", "screenlock", osquery.ExtensionPluginRequest{"action": "generate"})
	if got := res.Response[0]; got["enabled"] != "1" || got["grace_period"] != "0" {
		t.Errorf("generate screenlock = %v", got)
	}
}

// rawClient speaks Thrift to the socket without osquery-go's wrapper, with
// the protocol settings given, to pin down the wire format.
func rawClient(t *testing.T, socket string, conf *thrift.TConfiguration, buffered bool) *osquery.ExtensionManagerClient {
	t.Helper()
	sock, err := transport.Open(socket, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sock.Close() })
	var trans thrift.TTransport = sock
	if buffered {
		trans = thrift.NewTBufferedTransport(sock, 4096)
	}
	return osquery.NewExtensionManagerClientFactory(trans, thrift.NewTBinaryProtocolFactoryConf(conf))
}

func TestWireFormat(t *testing.T) {
	r := start(t, "compliant-mac")
	// osqueryd reads binary messages with or without the strict version
	// header, unframed, and so does the simulator. C++ extensions use a
	// buffered transport; osquery-go a bare socket. Both work.
	cases := map[string]struct {
		conf     *thrift.TConfiguration
		buffered bool
	}{
		"strict, bare socket (osquery-go)":     {&thrift.TConfiguration{}, false},
		"non-strict write":                     {&thrift.TConfiguration{TBinaryStrictWrite: thrift.BoolPtr(false)}, false},
		"strict, buffered transport (C++ SDK)": {&thrift.TConfiguration{}, true},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			c := rawClient(t, r.socket, tc.conf, tc.buffered)
			st, err := c.Ping(context.Background())
			if err != nil || st.Message != "pong" {
				t.Fatalf("Ping = %+v, %v", st, err)
			}
			res, err := c.Query(context.Background(), "SELECT enabled FROM screenlock")
			if err != nil || res.Status.Code != 0 || res.Response[0]["enabled"] != "1" {
				t.Fatalf("Query = %+v, %v", res, err)
			}
		})
	}
}

func TestShutdownCall(t *testing.T) {
	r := start(t, "compliant-mac")
	idle := client(t, r.socket) // an open connection must not hold the server up
	if _, err := idle.Ping(); err != nil {
		t.Fatal(err)
	}
	c := rawClient(t, r.socket, &thrift.TConfiguration{}, false)
	if err := c.Shutdown(context.Background()); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if err := r.stop(); err != nil {
		t.Fatalf("Serve returned %v after shutdown()", err)
	}
	if _, err := os.Stat(r.socket); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket still present after shutdown: %v", err)
	}
}

func TestServeRemovesSocketOnCancel(t *testing.T) {
	f, _ := osquerysim.LoadFixture("compliant-mac")
	sim, err := osquerysim.New(f, osquerysim.WithLogger(quiet))
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	path := socketPath(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sim.Serve(ctx, path) }()
	c := client(t, path)
	if _, err := c.Ping(); err != nil {
		t.Fatal(err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Serve = %v", err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket still present: %v", err)
	}
	if _, err := c.Ping(); err == nil {
		t.Error("Ping succeeded after the server stopped")
	}
}

func TestListen(t *testing.T) {
	r := start(t, "compliant-mac")
	// A live socket is not stolen.
	if _, err := osquerysim.Listen(r.socket); err == nil || !strings.Contains(err.Error(), "already listening") {
		t.Errorf("Listen on a live socket = %v", err)
	}
	// Anything else at the path is not deleted.
	file := filepath.Join(filepath.Dir(socketPath(t)), "plain")
	if err := os.WriteFile(file, []byte("keep"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := osquerysim.Listen(file); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Errorf("Listen on a regular file = %v", err)
	}
	// A stale socket (nobody listening) is replaced.
	stale := socketPath(t)
	ln, err := osquerysim.Listen(stale)
	if err != nil {
		t.Fatal(err)
	}
	if ul, ok := ln.(interface{ SetUnlinkOnClose(bool) }); ok {
		ul.SetUnlinkOnClose(false)
	}
	ln.Close()
	ln, err = osquerysim.Listen(stale)
	if err != nil {
		t.Fatalf("Listen over a stale socket: %v", err)
	}
	ln.Close()
}

func TestQueryTimeout(t *testing.T) {
	f, _ := osquerysim.LoadFixture("compliant-mac")
	sim, err := osquerysim.New(f, osquerysim.WithLogger(quiet), osquerysim.WithQueryTimeout(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	begin := time.Now()
	_, err = sim.Query(context.Background(), "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n) SELECT count(*) FROM n")
	if err == nil || err.Error() != "interrupted" {
		t.Errorf("runaway query: err = %v, want interrupted", err)
	}
	if d := time.Since(begin); d > 5*time.Second {
		t.Errorf("runaway query took %v", d)
	}
	if rows, err := sim.Query(context.Background(), "SELECT 1 AS one"); err != nil || rows[0]["one"] != "1" {
		t.Errorf("query after an interrupted one = %v, %v", rows, err)
	}
}
