package osquery_test

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/clearance/clearance/agent/osquery"
	"github.com/clearance/clearance/agent/policy"
	"github.com/clearance/clearance/internal/osquerysim"
	"github.com/clearance/clearance/internal/testkit"
	agentv1 "github.com/clearance/clearance/proto/gen/clearance/agent/v1"
)

// shortDir returns a directory whose paths fit in a unix socket address.
func shortDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "oq")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// serveSim runs the osquery stand-in in-process on socket until stop.
func serveSim(t *testing.T, fixture, socket string) (sim *osquerysim.Sim, stop func()) {
	t.Helper()
	f, err := osquerysim.LoadFixture(fixture)
	if err != nil {
		t.Fatal(err)
	}
	sim, err = osquerysim.New(f)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := sim.Serve(ctx, socket); err != nil && ctx.Err() == nil {
			t.Errorf("sim: %v", err)
		}
	}()
	stop = func() {
		cancel()
		<-done
		sim.Close()
	}
	t.Cleanup(func() {
		select {
		case <-done:
		default:
			stop()
		}
	})
	return sim, stop
}

func attach(t *testing.T, socket string) *osquery.Runner {
	t.Helper()
	r, err := osquery.New(osquery.Options{
		Socket: socket, QueryTimeout: 5 * time.Second, ConnectWait: 2 * time.Second,
		MinBackoff: 5 * time.Millisecond, MaxBackoff: 50 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Interrupt(nil) })
	return r
}

var (
	fileVault = &agentv1.Policy{Id: "filevault-on", Query: "SELECT 1 FROM disk_encryption WHERE filevault_status = 'on' LIMIT 1"}
	badColumn = &agentv1.Policy{Id: "bad-column", Query: "SELECT sid FROM certificates"}
)

func TestAttachQueries(t *testing.T) {
	t.Parallel()
	socket := filepath.Join(shortDir(t), "osquery.em")
	serveSim(t, "compliant-mac", socket)
	r := attach(t, socket)
	ctx := context.Background()

	facts, err := osquery.Facts(ctx, r)
	if err != nil {
		t.Fatal(err)
	}
	if facts.GetHardwareUuid() == "" || facts.GetPlatform() != "darwin" || facts.GetOsVersion() == "" || facts.GetHostname() == "" {
		t.Errorf("facts = %v", facts)
	}

	tests := []struct {
		name    string
		p       *agentv1.Policy
		want    agentv1.PolicyStatus
		message string
	}{
		{"rows pass", &agentv1.Policy{Id: "any-user", Query: "SELECT * FROM system_info"}, agentv1.PolicyStatus_POLICY_STATUS_PASS, ""},
		{"no rows fail", &agentv1.Policy{Id: "nobody", Query: "SELECT * FROM system_info WHERE 1 = 0"}, agentv1.PolicyStatus_POLICY_STATUS_FAIL, ""},
		{"osquery error", badColumn, agentv1.PolicyStatus_POLICY_STATUS_ERROR, "no such column"},
		{"syntax error", &agentv1.Policy{Id: "syntax", Query: "SELECT 1 FROM WHERE"}, agentv1.PolicyStatus_POLICY_STATUS_ERROR, "syntax error"},
	}
	for _, tt := range tests {
		res := policy.Run(ctx, r, tt.p, nil)
		if res.GetStatus() != tt.want || !strings.Contains(res.GetMessage(), tt.message) {
			t.Errorf("%s: %s %q, want %s with %q", tt.name, res.GetStatus(), res.GetMessage(), tt.want, tt.message)
		}
	}
	var qe *osquery.QueryError
	if _, err := r.Query(ctx, "SELECT sid FROM certificates"); !errors.As(err, &qe) || qe.Code == 0 {
		t.Errorf("err = %v, want a QueryError with osquery's non-zero status", err)
	}
}

// An answer larger than MaxResponse is not read to the end: the query is an
// ERROR that says why, and the next query gets a fresh connection.
func TestAttachBoundsTheAnswer(t *testing.T) {
	t.Parallel()
	socket := filepath.Join(shortDir(t), "osquery.em")
	serveSim(t, "compliant-mac", socket)
	r, err := osquery.New(osquery.Options{
		Socket: socket, QueryTimeout: 10 * time.Second, ConnectWait: 2 * time.Second,
		MinBackoff: 5 * time.Millisecond, MaxBackoff: 50 * time.Millisecond,
		MaxResponse: 64 << 10,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Interrupt(nil) })
	ctx := context.Background()
	// About 20 bytes a row on the wire: 100 000 rows are 2 MB.
	many := &agentv1.Policy{Id: "many-rows", Query: "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x < 100000) SELECT x FROM c"}
	res := policy.Run(ctx, r, many, nil)
	if res.GetStatus() != agentv1.PolicyStatus_POLICY_STATUS_ERROR || !strings.Contains(res.GetMessage(), "larger than the agent accepts (more than 65536 bytes)") {
		t.Errorf("100 000 rows: %s %q (rows %d), want ERROR: larger than the agent accepts", res.GetStatus(), res.GetMessage(), res.GetRows())
	}
	// Few rows, each under the bound, that add up past it.
	wide := "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x < 100) SELECT x, hex(zeroblob(5000)) AS pad FROM c"
	for _, sql := range []string{many.GetQuery(), wide} {
		if _, err := r.Query(ctx, sql); !errors.Is(err, osquery.ErrResponseTooLarge) {
			t.Errorf("Query(%.40q…) err = %v, want ErrResponseTooLarge", sql, err)
		}
	}
	// What a posture check asks still fits, on a new connection.
	few := &agentv1.Policy{Id: "few-rows", Query: "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x < 1000) SELECT x FROM c"}
	if res := policy.Run(ctx, r, few, nil); res.GetStatus() != agentv1.PolicyStatus_POLICY_STATUS_PASS || res.GetRows() != 1000 {
		t.Errorf("1000 rows after the refusal: %s %q (rows %d), want PASS with 1000", res.GetStatus(), res.GetMessage(), res.GetRows())
	}
	if res := policy.Run(ctx, r, fileVault, nil); res.GetStatus() != agentv1.PolicyStatus_POLICY_STATUS_PASS {
		t.Errorf("after the refusal: %s %q, want PASS", res.GetStatus(), res.GetMessage())
	}
}

// The agent takes posture only from an osqueryd running as root or as the
// agent's user: a socket someone else could serve is refused, and every
// policy is an ERROR that says why, never a PASS.
func TestAttachRefusesASocketOthersControl(t *testing.T) {
	t.Parallel()
	refused := func(t *testing.T, socket, want string) {
		t.Helper()
		r := attach(t, socket)
		res := policy.Run(context.Background(), r, fileVault, nil)
		if res.GetStatus() != agentv1.PolicyStatus_POLICY_STATUS_ERROR || !strings.Contains(res.GetMessage(), want) {
			t.Errorf("%s %q, want ERROR with %q", res.GetStatus(), res.GetMessage(), want)
		}
	}
	t.Run("directory others can write", func(t *testing.T) {
		t.Parallel()
		dir := shortDir(t)
		if err := os.Chmod(dir, 0o777); err != nil {
			t.Fatal(err)
		}
		socket := filepath.Join(dir, "osquery.em")
		serveSim(t, "compliant-mac", socket)
		refused(t, socket, "directory of the osquery socket (the configured socket's directory) is writable by group or others (mode 0777)")
	})
	t.Run("sticky directory", func(t *testing.T) {
		t.Parallel()
		dir := shortDir(t)
		if err := os.Chmod(dir, 0o777|os.ModeSticky); err != nil {
			t.Fatal(err)
		}
		socket := filepath.Join(dir, "osquery.em")
		serveSim(t, "compliant-mac", socket)
		r := attach(t, socket)
		if res := policy.Run(context.Background(), r, fileVault, nil); res.GetStatus() != agentv1.PolicyStatus_POLICY_STATUS_PASS {
			t.Errorf("%s %q, want PASS: others cannot replace a socket in a sticky directory", res.GetStatus(), res.GetMessage())
		}
	})
	t.Run("symbolic link", func(t *testing.T) {
		t.Parallel()
		dir := shortDir(t)
		socket := filepath.Join(dir, "osquery.em")
		serveSim(t, "compliant-mac", socket)
		link := filepath.Join(dir, "link.em")
		if err := os.Symlink(socket, link); err != nil {
			t.Fatal(err)
		}
		refused(t, link, "osquery socket (the configured socket) is a symbolic link")
	})
	t.Run("owned by another user", func(t *testing.T) {
		t.Parallel()
		if os.Geteuid() != 0 {
			t.Skip("giving the socket to another user needs root, which the agent runs as")
		}
		socket := filepath.Join(shortDir(t), "osquery.em")
		serveSim(t, "compliant-mac", socket)
		testkit.Eventually(t, 10*time.Second, "the stand-in's socket", func() bool { _, err := os.Stat(socket); return err == nil })
		if err := os.Chown(socket, 65534, 65534); err != nil {
			t.Fatal(err)
		}
		refused(t, socket, "osquery socket (the configured socket) is owned by uid 65534, not by root or the agent's user (uid 0)")
	})
}

// What the security test did: an unprivileged user serves a "compliant"
// osquery. Here the socket file even looks right (root owns it and its
// directory, as if swapped in after the check): on Linux the kernel says
// who is serving, and the agent refuses.
func TestAttachRefusesAPeerOfAnotherUser(t *testing.T) {
	t.Parallel()
	if runtime.GOOS != "linux" {
		t.Skip("the agent asks the kernel who serves the socket on Linux only")
	}
	if os.Geteuid() != 0 {
		t.Skip("running the stand-in as another user needs root, which the agent runs as")
	}
	if testing.Short() {
		t.Skip("builds the osquery stand-in")
	}
	base := shortDir(t)
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(base, "osquery-sim")
	raw, err := os.ReadFile(buildSim(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, raw, 0o755); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(base, "d")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(dir, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	socket := filepath.Join(dir, "osquery.em")
	cmd := exec.Command(bin, "--socket", socket, "--fixture", "compliant-mac")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	testkit.Eventually(t, 10*time.Second, "the stand-in's socket", func() bool { _, err := os.Stat(socket); return err == nil })
	// The swap: the file and its directory now look like root's.
	for _, p := range []string{socket, dir} {
		if err := os.Chown(p, 0, 0); err != nil {
			t.Fatal(err)
		}
	}
	r := attach(t, socket)
	res := policy.Run(context.Background(), r, fileVault, nil)
	want := "osquery socket (the configured socket) is served by uid 65534 (pid "
	if res.GetStatus() != agentv1.PolicyStatus_POLICY_STATUS_ERROR || !strings.Contains(res.GetMessage(), want) {
		t.Errorf("%s %q, want ERROR with %q", res.GetStatus(), res.GetMessage(), want)
	}
}

// A spawned osqueryd another user could replace is never started.
func TestSpawnRefusesAnOsquerydOthersCanWrite(t *testing.T) {
	t.Parallel()
	dir := shortDir(t)
	bin := filepath.Join(dir, "osqueryd")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\nexit 1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(bin, 0o777); err != nil {
		t.Fatal(err)
	}
	var logs testkit.Buffer
	r, err := osquery.New(osquery.Options{
		Osqueryd: bin, Dir: filepath.Join(dir, "state"), QueryTimeout: time.Second, ConnectWait: 100 * time.Millisecond,
		MinBackoff: 10 * time.Millisecond, MaxBackoff: 20 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(&logs, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- r.Execute() }()
	defer func() {
		r.Interrupt(nil)
		<-done
	}()
	testkit.Eventually(t, 10*time.Second, "the refusal in the log", func() bool {
		return logs.HasLine("osqueryd stopped, restarting", "refusing to start osqueryd: osqueryd "+bin+" is writable by group or others (mode 0777)")
	})
	if pid := r.PID(); pid != 0 {
		t.Errorf("osqueryd started (pid %d)", pid)
	}
}

func TestAttachStateChange(t *testing.T) {
	t.Parallel()
	socket := filepath.Join(shortDir(t), "osquery.em")
	sim, _ := serveSim(t, "compliant-mac", socket)
	r := attach(t, socket)
	ctx := context.Background()
	if res := policy.Run(ctx, r, fileVault, nil); res.GetStatus() != agentv1.PolicyStatus_POLICY_STATUS_PASS {
		t.Fatalf("compliant: %s %s", res.GetStatus(), res.GetMessage())
	}
	if err := sim.LoadFixture("failing-mac"); err != nil {
		t.Fatal(err)
	}
	if res := policy.Run(ctx, r, fileVault, nil); res.GetStatus() != agentv1.PolicyStatus_POLICY_STATUS_FAIL {
		t.Errorf("failing: %s %s, want FAIL", res.GetStatus(), res.GetMessage())
	}
}

func TestAttachSocketGoneThenBack(t *testing.T) {
	t.Parallel()
	socket := filepath.Join(shortDir(t), "osquery.em")
	_, stop := serveSim(t, "compliant-mac", socket)
	r := attach(t, socket)
	ctx := context.Background()
	if res := policy.Run(ctx, r, fileVault, nil); res.GetStatus() != agentv1.PolicyStatus_POLICY_STATUS_PASS {
		t.Fatalf("before: %s %s", res.GetStatus(), res.GetMessage())
	}
	stop()
	os.Remove(socket)
	res := policy.Run(ctx, r, fileVault, nil)
	if res.GetStatus() != agentv1.PolicyStatus_POLICY_STATUS_ERROR || res.GetMessage() == "" {
		t.Fatalf("socket gone: %s %q, want ERROR with a reason", res.GetStatus(), res.GetMessage())
	}
	serveSim(t, "compliant-mac", socket)
	if res := policy.Run(ctx, r, fileVault, nil); res.GetStatus() != agentv1.PolicyStatus_POLICY_STATUS_PASS {
		t.Errorf("after osquery returned: %s %q, want PASS", res.GetStatus(), res.GetMessage())
	}
}

func buildSim(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "osquery-sim")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/clearance/clearance/internal/osquerysim/cmd/osquery-sim")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building osquery-sim: %v\n%s", err, out)
	}
	return bin
}

func waitReady(t *testing.T, r *osquery.Runner) {
	t.Helper()
	select {
	case <-r.Ready():
	case <-time.After(30 * time.Second):
		t.Fatal("osqueryd never became ready")
	}
}

func TestSpawnRestartsKilledOsqueryd(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("builds the osquery stand-in")
	}
	bin := buildSim(t)
	r, err := osquery.New(osquery.Options{
		Osqueryd: bin, Dir: shortDir(t), ExtraFlags: []string{"--fixture=compliant-mac"},
		QueryTimeout: 5 * time.Second, ConnectWait: 100 * time.Millisecond,
		// The restart backoff outlasts ConnectWait, so the query right
		// after the kill cannot meet the replacement osqueryd.
		HealthInterval: 50 * time.Millisecond, MinBackoff: 500 * time.Millisecond, MaxBackoff: time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- r.Execute() }()
	defer func() {
		r.Interrupt(nil)
		if err := <-done; err != nil {
			t.Errorf("Execute: %v", err)
		}
	}()
	ctx := context.Background()
	waitReady(t, r)
	if res := policy.Run(ctx, r, fileVault, nil); res.GetStatus() != agentv1.PolicyStatus_POLICY_STATUS_PASS {
		t.Fatalf("spawned: %s %q", res.GetStatus(), res.GetMessage())
	}

	pid := r.PID()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// The first query after the kill meets the dead connection: ERROR,
	// never the last PASS.
	if res := policy.Run(ctx, r, fileVault, nil); res.GetStatus() != agentv1.PolicyStatus_POLICY_STATUS_ERROR || res.GetMessage() == "" {
		t.Errorf("after kill: %s %q, want ERROR with a reason", res.GetStatus(), res.GetMessage())
	}
	for r.PID() == pid {
		time.Sleep(time.Millisecond) // until the supervisor notices the exit
	}
	waitReady(t, r)
	if r.PID() == pid || r.PID() == 0 {
		t.Fatalf("osqueryd not restarted (pid %d → %d)", pid, r.PID())
	}
	if res := policy.Run(ctx, r, fileVault, nil); res.GetStatus() != agentv1.PolicyStatus_POLICY_STATUS_PASS {
		t.Errorf("after restart: %s %q, want PASS", res.GetStatus(), res.GetMessage())
	}
}

func TestFlagsKeepFilesInDir(t *testing.T) {
	t.Parallel()
	for _, f := range osquery.Flags("/var/db/clearance/osquery") {
		for _, name := range []string{"--extensions_socket=", "--database_path=", "--pidfile="} {
			if strings.HasPrefix(f, name) && !strings.HasPrefix(f, name+"/var/db/clearance/osquery/") {
				t.Errorf("%s is outside the osquery dir", f)
			}
		}
	}
}

// A query its caller gives up on (a run's time budget) ends at once with
// an error that says so, and the next query gets its own answer on a new
// connection, never the answer the abandoned one was still owed.
func TestAttachCallerGivesUp(t *testing.T) {
	t.Parallel()
	socket := filepath.Join(shortDir(t), "osquery.em")
	serveSim(t, "compliant-mac", socket)
	r := attach(t, socket) // its own timeout: 5 s
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	slow := "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x < 200000000) SELECT count(*) AS n FROM c"
	_, err := r.Query(ctx, slow)
	if err == nil || !strings.Contains(err.Error(), "query stopped") {
		t.Errorf("err = %v, want the query stopped", err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("gave up after %s, want at the caller's 200 ms", took)
	}
	rows, err := r.Query(context.Background(), "SELECT 7 AS seven")
	if err != nil || len(rows) != 1 || rows[0]["seven"] != "7" {
		t.Errorf("next query: %v %v, want its own answer, seven=7", rows, err)
	}
}
