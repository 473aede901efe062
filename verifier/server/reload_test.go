package server_test

import (
	"context"
	"database/sql"
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/clearance/clearance/internal/protoagent"
	"github.com/clearance/clearance/pkg/cli"
	adminv1 "github.com/clearance/clearance/proto/gen/clearance/admin/v1"
	agentv1 "github.com/clearance/clearance/proto/gen/clearance/agent/v1"
	"github.com/clearance/clearance/verifier/config"
	"github.com/clearance/clearance/verifier/datadir"
	"github.com/clearance/clearance/verifier/server"
	"github.com/clearance/clearance/verifier/storage"
)

// startSettings starts a verifier whose settings come from a settings
// file, as serve reads them, with flags args after it; the server reads
// the file again on Reload, as on SIGHUP.
func startSettings(t *testing.T, settings string, args ...string) (*harness, string) {
	t.Helper()
	file := filepath.Join(t.TempDir(), "verifier.yaml")
	if err := os.WriteFile(file, []byte(settings), 0o600); err != nil {
		t.Fatal(err)
	}
	fs := cli.Wrap(flag.NewFlagSet("serve", flag.ContinueOnError))
	fs.SetOutput(io.Discard)
	b := config.Bind(fs)
	if err := fs.Parse(append([]string{"--config", file, "--data-dir", t.TempDir(), "--policies", examplePolicies(t),
		"--grpc-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0", "--sso-listen", "127.0.0.1:0",
		"--sso-public-url", "https://localhost:8444"}, args...)); err != nil {
		t.Fatal(err)
	}
	getenv := func(string) string { return "" }
	cfg, err := b.Resolve(getenv)
	if err != nil {
		t.Fatal(err)
	}
	h := startWithOptions(t, func(c *config.Config) { *c = *cfg },
		server.WithSettingsReread(func() (*config.Config, error) { return b.Resolve(getenv) }))
	return h, file
}

// failingDevice is an enrolled device whose last report fails every policy.
func (h *harness) failingDevice() *protoagent.Agent {
	h.t.Helper()
	a := h.enrolled(h.secret())
	st := h.connect(a)
	fail := agentv1.PolicyStatus_POLICY_STATUS_FAIL
	if m, err := st.Exchange(protoagent.Sign(a.Key, a.Report(st.PolicySet, 1, h.clock.Now(), nil, fail))); err != nil || m.GetAck().GetSeq() != 1 {
		h.t.Fatalf("report: %v %v", m, err)
	}
	st.Close()
	return a
}

func (h *harness) explain(a *protoagent.Agent) *adminv1.ExplainAccessResponse {
	h.t.Helper()
	resp, err := h.admin.ExplainAccess(h.ctx(), &adminv1.ExplainAccessRequest{DeviceId: a.DeviceID})
	if err != nil {
		h.t.Fatal(err)
	}
	return resp
}

func (h *harness) ceiling() string {
	h.t.Helper()
	resp, err := h.admin.ListPolicies(h.ctx(), &adminv1.ListPoliciesRequest{})
	if err != nil {
		h.t.Fatal(err)
	}
	return resp.GetEnforcementCeiling()
}

// Removing enforcement: monitor from the settings file and reloading (what
// SIGHUP does) enforces at once: the same failing Mac that monitor let
// through is denied, the log says the ceiling changed, and a settings file
// that no longer parses changes nothing and says why.
func TestReloadAppliesEnforcement(t *testing.T) {
	t.Parallel()
	h, file := startSettings(t, "enforcement: monitor\nscep_challenge: first-challenge-0123456789\n")
	h.logs.has(t, "enforcement ceiling")
	h.logs.has(t, `set_by="settings file"`)
	// What the start put in force is audited, as a reload's change is.
	if got := h.auditOf("verifier.start"); len(got) != 1 || got[0].GetActor() != "serve" ||
		!strings.HasPrefix(got[0].GetDetail(), "enforcement ceiling monitor (set by settings file), policy set ") {
		t.Fatalf("verifier.start events %v, want one by serve naming the ceiling and where it was set", got)
	}
	a := h.failingDevice()
	if r := h.explain(a); !r.GetAllow() || r.GetMode() != "monitor" {
		t.Fatalf("under monitor: allow %v, mode %q", r.GetAllow(), r.GetMode())
	}
	if c := h.ceiling(); c != "monitor" {
		t.Fatalf("ListPolicies ceiling %q, want monitor", c)
	}

	// enforcement removed, a secret and a restart-only setting changed.
	if err := os.WriteFile(file, []byte("scep_challenge: second-challenge-0123456789\nreport_history: 9\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := h.srv.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	if r := h.explain(a); r.GetAllow() || r.GetMode() != "enforce" {
		t.Fatalf("after the reload: allow %v, mode %q; want a denial in enforce", r.GetAllow(), r.GetMode())
	}
	if c := h.ceiling(); c != "enforce" {
		t.Fatalf("ListPolicies ceiling %q, want enforce", c)
	}
	h.logs.has(t, `msg="enforcement ceiling changed" component=server from=monitor to=enforce`)
	// In the audit log as SIGHUP's, not as an admin token's; the policy
	// file, unchanged, is not.
	if got := h.auditOf("settings.enforcement"); len(got) != 1 || got[0].GetActor() != "sighup" ||
		!strings.Contains(got[0].GetDetail(), "enforcement ceiling enforce, was monitor (settings file "+file+", on ") {
		t.Fatalf("settings.enforcement events %v, want one by sighup naming both ceilings and the file", got)
	}
	if got := h.auditOf("policies.reload"); len(got) != 0 {
		t.Fatalf("an unchanged policy file read again on SIGHUP is audited: %v", got)
	}
	h.logs.has(t, `settings="[report_history scep_challenge]"`)
	if strings.Contains(h.logs.String(), "challenge-0123456789") {
		t.Fatal("a secret's value is in the log")
	}

	// A file that no longer parses: the ceiling stays, the log says why.
	if err := os.WriteFile(file, []byte("enforcement: [monitor\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := h.srv.Reload(context.Background()); err == nil {
		t.Fatal("a broken settings file reloaded without an error")
	}
	h.logs.has(t, "settings file not reloaded")
	if r := h.explain(a); r.GetMode() != "enforce" {
		t.Fatalf("a broken settings file changed the mode to %q", r.GetMode())
	}
	got := metricVector(t, h, "clearance_reloads_total", false)
	if got[`file="settings",result="ok"`] != 1 || got[`file="settings",result="failed"`] != 1 || got[`file="policies",result="ok"`] != 2 {
		t.Fatalf("clearance_reloads_total %v", got)
	}
	if at := metricVector(t, h, "clearance_policies_loaded_timestamp_seconds", true)[""]; at < float64(time.Now().Add(-time.Hour).Unix()) {
		t.Fatalf("clearance_policies_loaded_timestamp_seconds %v", at)
	}
}

// A ceiling set by a flag outranks the file: a reload keeps it and says a
// restart without the flag is needed.
func TestReloadOutrankedEnforcement(t *testing.T) {
	t.Parallel()
	h, file := startSettings(t, "enforcement: monitor\n", "--enforcement", "monitor")
	a := h.failingDevice()
	if err := os.WriteFile(file, []byte("enforcement: enforce\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := h.srv.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	if r := h.explain(a); r.GetMode() != "monitor" {
		t.Fatalf("the file outranked the flag: mode %q", r.GetMode())
	}
	h.logs.has(t, "a flag or environment variable sets it instead")
	h.logs.has(t, "setting=enforcement set_by=--enforcement")
}

// A FIFO put in the settings file's place is refused at once, not waited
// on: the reload that reads it is the one every later SIGHUP takes, and a
// fixed file is then read again.
func TestReloadRefusesAFIFO(t *testing.T) {
	t.Parallel()
	h, file := startSettings(t, "enforcement: monitor\n")
	a := h.failingDevice()
	if err := os.Remove(file); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(file, 0o600); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- h.srv.Reload(context.Background()) }()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("a FIFO in the settings file's place reloaded without an error")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the reload waited on a FIFO in the settings file's place")
	}
	h.logs.has(t, "is not a regular file (a FIFO)")
	if err := os.Remove(file); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, []byte("enforcement: enforce\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := h.srv.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	if r := h.explain(a); r.GetMode() != "enforce" {
		t.Fatalf("after the file was fixed: mode %q, want enforce", r.GetMode())
	}
}

// auditOf returns the audit events of action, newest first.
func (h *harness) auditOf(action string) []*adminv1.AuditEvent {
	h.t.Helper()
	resp, err := h.admin.ListAuditEvents(h.ctx(), &adminv1.ListAuditEventsRequest{Action: action})
	if err != nil {
		h.t.Fatal(err)
	}
	return resp.GetEvents()
}

// A policy file changed and read again on SIGHUP is audited as sighup's,
// with the set it replaced; a person's reload as theirs even when nothing
// changed; a file that does not load is logged as the admin service words
// it, without the gRPC status around it.
func TestReloadPoliciesAudit(t *testing.T) {
	t.Parallel()
	h, _ := startSettings(t, "enforcement: enforce\n")
	before := h.ceiling()
	was := h.policySet().GetVersion()
	file := h.renamePolicy()
	if err := h.srv.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	got := h.auditOf("policies.reload")
	if len(got) != 1 || got[0].GetActor() != "sighup" || !strings.Contains(got[0].GetDetail(), "(was "+was+")") ||
		!strings.HasSuffix(got[0].GetDetail(), ": filevault: name changed") {
		t.Fatalf("policies.reload events %v, want one by sighup naming the set it replaced (%s) and what changed", got, was)
	}
	if h.ceiling() != before || len(h.auditOf("settings.enforcement")) != 0 {
		t.Fatal("an unchanged ceiling was changed or audited")
	}

	if _, err := h.admin.ReloadPolicies(h.ctx(), &adminv1.ReloadPoliciesRequest{}); err != nil {
		t.Fatal(err)
	}
	got = h.auditOf("policies.reload")
	if len(got) != 2 || got[0].GetActor() != "admin-api" || !strings.HasSuffix(got[0].GetDetail(), "; unchanged") {
		t.Fatalf("policies.reload events %v, want the person's unchanged reload too", got)
	}

	// A policy moved to monitor, another given a grace period: the
	// answer and the event say which and how.
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	edited := strings.Replace(string(b), "  - id: firewall\n", "  - id: firewall\n    enforcement: monitor\n    grace: 72h\n", 1)
	if err := os.WriteFile(file, []byte(edited), 0o600); err != nil {
		t.Fatal(err)
	}
	resp, err := h.admin.ReloadPolicies(h.ctx(), &adminv1.ReloadPoliciesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	want := "firewall: enforcement enforce → monitor, grace none → 72h"
	if c := resp.GetChanges(); len(c) != 1 || c[0] != want {
		t.Errorf("ReloadPolicies changes %q, want [%q]", c, want)
	}
	if got = h.auditOf("policies.reload"); len(got) != 3 || !strings.HasSuffix(got[0].GetDetail(), "policies: "+want) {
		t.Errorf("policies.reload events %v, want the change in the last", got)
	}
	h.logs.has(t, `changes="`+want+`"`)

	if err := os.WriteFile(file, []byte("policies: [\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := h.srv.Reload(context.Background()); err == nil {
		t.Fatal("a broken policy file reloaded")
	}
	h.logs.hasLine(t, `msg="policy reload failed"`, "by=sighup")
	if strings.Contains(h.logs.String(), "rpc error") {
		t.Fatalf("the log words a failed reload as a gRPC status:\n%s", h.logs.String())
	}
	// A person's reload of the broken file is logged too, once, with who
	// asked: the log is where a replica's refusals are read.
	if _, err := h.admin.ReloadPolicies(h.ctx(), &adminv1.ReloadPoliciesRequest{}); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("ReloadPolicies of a broken file: %v, want FailedPrecondition", err)
	}
	h.logs.hasLine(t, `msg="policy reload failed"`, "by=admin-api")
	if n := strings.Count(h.logs.String(), `msg="policy reload failed"`); n != 2 {
		t.Errorf("%d reload failures logged, want 2 (one a reload):\n%s", n, h.logs.String())
	}
}

// auditDown is a store whose audit log cannot be written.
type auditDown struct{ storage.Store }

func (auditDown) AppendAudit(context.Context, storage.AuditEvent) error {
	return errors.New("database is locked")
}

// A ceiling change the audit log cannot record is not put in force: the
// log never says a ceiling other than the one in force. The next SIGHUP,
// once the store answers, applies it.
func TestReloadCeilingWaitsForTheAudit(t *testing.T) {
	t.Parallel()
	h, file := startSettings(t, "enforcement: monitor\n")
	store := h.srv.Store
	h.srv.Store = auditDown{store}
	if err := os.WriteFile(file, []byte("enforcement: enforce\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := h.srv.Reload(context.Background()); err == nil {
		t.Fatal("a ceiling change the audit log refused reloaded without an error")
	}
	h.logs.has(t, "enforcement ceiling not changed: the audit log could not record the change")
	if c := h.ceiling(); c != "monitor" {
		t.Fatalf("ceiling %q in force without its audit event, want monitor", c)
	}
	if got := metricVector(t, h, "clearance_reloads_total", false); got[`file="settings",result="failed"`] != 1 || got[`file="settings",result="ok"`] != 0 {
		t.Fatalf("a reload whose ceiling was not put in force: clearance_reloads_total %v, want it failed", got)
	}
	h.srv.Store = store
	if err := h.srv.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	if c := h.ceiling(); c != "enforce" || len(h.auditOf("settings.enforcement")) != 1 {
		t.Fatalf("after the store answered: ceiling %q, events %v", c, h.auditOf("settings.enforcement"))
	}
}

// A policy set the audit log cannot record is not put in force, from the
// admin API or from SIGHUP: the audit log never names a set other than the
// one deciding sign-ins, agents are not sent it, and the reload counts as
// failed. Once the store answers, the next reload applies it. The store
// refuses for real: a trigger on the audit table of the verifier's SQLite.
func TestReloadPoliciesWaitsForTheAudit(t *testing.T) {
	t.Parallel()
	h, _ := startSettings(t, "enforcement: enforce\n")
	was := h.policySet().GetVersion()
	h.renamePolicy()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(h.cfg.DataDir, datadir.SQLiteFile)+"?_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(`CREATE TRIGGER refuse_audit BEFORE INSERT ON audit BEGIN SELECT RAISE(ABORT, 'refused'); END`); err != nil {
		t.Fatal(err)
	}

	_, err = h.admin.ReloadPolicies(h.ctx(), &adminv1.ReloadPoliciesRequest{})
	if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "previous set stays in force") {
		t.Fatalf("reload the audit log refused: %v, want UNAVAILABLE saying the previous set stays in force", err)
	}
	if err := h.srv.Reload(context.Background()); err == nil {
		t.Fatal("a SIGHUP reload the audit log refused reloaded without an error")
	}
	if v := h.policySet().GetVersion(); v != was {
		t.Fatalf("set %s in force without its audit event, want %s", v, was)
	}
	h.logs.has(t, "policies not reloaded: the audit log could not record the reload")
	if got := metricVector(t, h, "clearance_reloads_total", false); got[`file="policies",result="failed"`] != 2 || got[`file="policies",result="ok"`] != 0 {
		t.Fatalf("clearance_reloads_total %v, want two failed policy reloads and none ok", got)
	}

	if _, err := db.Exec(`DROP TRIGGER refuse_audit`); err != nil {
		t.Fatal(err)
	}
	if err := h.srv.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	now := h.policySet().GetVersion()
	got := h.auditOf("policies.reload")
	if now == was || len(got) != 1 || !strings.Contains(got[0].GetDetail(), "policy set "+now+" (was "+was+")") {
		t.Fatalf("after the store answered: set %s (was %s), events %v", now, was, got)
	}
}

func (h *harness) policySet() *agentv1.PolicySet {
	h.t.Helper()
	resp, err := h.admin.ListPolicies(h.ctx(), &adminv1.ListPoliciesRequest{})
	if err != nil {
		h.t.Fatal(err)
	}
	return resp.GetPolicySet()
}

// renamePolicy gives the first policy of the harness's policy file another
// name, which makes it another set, and returns the file.
func (h *harness) renamePolicy() string {
	h.t.Helper()
	file := h.cfg.Policies
	b, err := os.ReadFile(file)
	if err != nil {
		h.t.Fatal(err)
	}
	changed := strings.Replace(string(b), "name: FileVault disk encryption is on", "name: FileVault is on", 1)
	if changed == string(b) {
		h.t.Fatal("the policy file has no FileVault policy to rename")
	}
	if err := os.WriteFile(file, []byte(changed), 0o600); err != nil {
		h.t.Fatal(err)
	}
	return file
}
