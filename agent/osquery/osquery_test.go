package osquery_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/clearance/clearance/agent/osquery"
	"github.com/clearance/clearance/agent/policy"
	"github.com/clearance/clearance/internal/osquerysim"
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
