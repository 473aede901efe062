package server_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/clearance/clearance/internal/protoagent"
	adminv1 "github.com/clearance/clearance/proto/gen/clearance/admin/v1"
	"github.com/clearance/clearance/verifier/config"
	"github.com/clearance/clearance/verifier/decision"
	"github.com/clearance/clearance/verifier/storage"
)

const forecastPolicies = `policies:
  - id: firewall
    name: Firewall is on
    query: SELECT 1 FROM alf WHERE global_state >= 1
    resolution: Turn on the firewall.
    enforcement: warn
    grace: 72h
    allow_bypass: true
  - id: filevault
    name: FileVault is on
    query: SELECT 1 FROM disk_encryption WHERE encrypted = 1
    resolution: Turn on FileVault.
    critical: true
    enforcement: monitor
  - id: screen-lock
    name: Screen locks
    query: SELECT 1 FROM screenlock WHERE enabled = 1
    resolution: Turn on the screen lock.
`

// forecastMac enrolls a Mac whose one report fails the policies named.
func forecastMac(t *testing.T, h *harness, failing ...string) *protoagent.Agent {
	t.Helper()
	return accountMac(t, h, nil, failing...)
}

// TestForecastEnforcement: the fleet as a sign-in finds it now and as it
// would with the policies enforced: the policy file's grace and bypass
// kept, exemptions counting, each assigned person decided for, revoked Macs
// left out, nothing written; a policy not in force is refused.
func TestForecastEnforcement(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "policies.yaml")
	if err := os.WriteFile(file, []byte(forecastPolicies), 0o600); err != nil {
		t.Fatal(err)
	}
	h := startWith(t, func(c *config.Config) { c.Policies = file })
	ctx := context.Background()

	both := forecastMac(t, h, "firewall", "filevault")
	exempt := forecastMac(t, h, "filevault")
	passing := forecastMac(t, h)
	revoked := forecastMac(t, h, "screen-lock")
	if _, err := h.admin.RevokeDevice(h.ctx(), &adminv1.RevokeDeviceRequest{DeviceId: revoked.DeviceID, Reason: "lost"}); err != nil {
		t.Fatal(err)
	}
	at := h.clock.Now()
	for _, name := range []string{"alice@example.com", "bob@example.com"} {
		if _, err := h.srv.Store.CreateUser(ctx, storage.User{ID: name, UserName: name, Active: true, CreatedAt: at, UpdatedAt: at},
			storage.AuditEvent{At: at, Actor: "test", Action: "user.create"}); err != nil {
			t.Fatal(err)
		}
		if _, err := h.admin.AssignDevice(h.ctx(), &adminv1.AssignDeviceRequest{DeviceId: both.DeviceID, User: name}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := h.admin.GrantExemption(h.ctx(), &adminv1.GrantExemptionRequest{DeviceId: exempt.DeviceID, PolicyIds: []string{"filevault"},
		ExpiresAt: timestamppb.New(at.Add(24 * time.Hour)), Reason: "replacement on order"}); err != nil {
		t.Fatal(err)
	}
	// The exempt Mac's latest sign-in named no one; the one before, carol
	// (provisioned, assigned no Mac); Cloudflare asked about it since, by
	// another address.
	if _, err := h.srv.Store.CreateUser(ctx, storage.User{ID: "carol", UserName: "carol@example.com", Active: true, CreatedAt: at, UpdatedAt: at},
		storage.AuditEvent{At: at, Actor: "test", Action: "user.create"}); err != nil {
		t.Fatal(err)
	}
	for _, d := range []storage.DecisionRecord{
		{Username: "carol@example.com", Source: "sso"},
		{Source: "sso"},
		{Username: "mallory@example.com", Source: storage.SourceCloudflare},
	} {
		d.At, d.DeviceID, d.Reason = at, exempt.DeviceID, "allowed"
		if _, err := h.srv.Store.AppendDecision(ctx, d); err != nil {
			t.Fatal(err)
		}
	}
	decisions, audit := h.decisionCount(t), len(h.auditOf(""))

	forecast := func(ids ...string) map[string][]*adminv1.DeviceForecast {
		t.Helper()
		resp, err := h.admin.ForecastEnforcement(h.ctx(), &adminv1.ForecastEnforcementRequest{PolicyIds: ids, PageSize: 2})
		if err != nil {
			t.Fatal(err)
		}
		out := map[string][]*adminv1.DeviceForecast{}
		for {
			for _, d := range resp.GetDevices() {
				out[d.GetDeviceId()] = append(out[d.GetDeviceId()], d)
			}
			if resp.GetNextPageToken() == "" {
				return out
			}
			if resp, err = h.admin.ForecastEnforcement(h.ctx(), &adminv1.ForecastEnforcementRequest{PolicyIds: ids, PageSize: 2, PageToken: resp.GetNextPageToken()}); err != nil {
				t.Fatal(err)
			}
		}
	}

	all := forecast()
	if len(all) != 3 || all[revoked.DeviceID] != nil {
		t.Fatalf("forecast of %d devices %v, want the three not revoked", len(all), all)
	}
	people := all[both.DeviceID]
	if len(people) != 2 || people[0].GetUsername() != "alice@example.com" || people[1].GetUsername() != "bob@example.com" || people[0].GetUsernameSource() != "assigned" {
		t.Fatalf("the assigned Mac: %v, want one row for each assigned person", people)
	}
	for _, p := range people {
		now, enforced := p.GetNow(), p.GetEnforced()
		// Now: firewall warns (Continue), filevault is monitored.
		if now.GetAllow() || !now.GetCanContinue() || len(now.GetBlockingPolicyIds()) != 0 {
			t.Errorf("%s now: %v, want a warning with Continue and nothing blocking", p.GetUsername(), now)
		}
		// Enforced: filevault blocks now (critical, no grace), firewall
		// from the end of its grace, which starts at the next sign-in.
		if enforced.GetAllow() || enforced.GetCanContinue() || enforced.GetCanResolveLater() ||
			!slices.Equal(enforced.GetBlockingPolicyIds(), []string{"firewall", "filevault"}) ||
			!enforced.GetBlockFrom().AsTime().Equal(at.Add(72*time.Hour)) {
			t.Errorf("%s enforced: %v, want blocked by filevault now and firewall from %v", p.GetUsername(), enforced, at.Add(72*time.Hour))
		}
	}
	ex := all[exempt.DeviceID][0]
	if !ex.GetNow().GetAllow() || !ex.GetEnforced().GetAllow() || !slices.Equal(ex.GetEnforced().GetExemptPolicyIds(), []string{"filevault"}) ||
		ex.GetUsername() != "carol@example.com" || ex.GetUsernameSource() != "latest_sign_in" {
		t.Errorf("the exempt Mac: %v, want let in both ways by its exemption, for carol, its latest sign-in naming someone", ex)
	}
	if p := all[passing.DeviceID][0]; !p.GetNow().GetAllow() || !p.GetEnforced().GetAllow() || p.GetUsername() != "" || p.GetUsernameSource() != "" {
		t.Errorf("the passing Mac: %v, want let in, for no one", p)
	}

	// Only the firewall: filevault stays monitored, so the sign-in warns
	// until the grace ends and blocks from then.
	fw := forecast("firewall", "firewall")[both.DeviceID][0].GetEnforced()
	if fw.GetAllow() || !fw.GetCanContinue() || !slices.Equal(fw.GetBlockingPolicyIds(), []string{"firewall"}) || fw.GetBlockFrom() == nil {
		t.Errorf("firewall alone: %v, want Continue now and a block from the grace's end", fw)
	}

	for _, ids := range [][]string{{"firewal"}, {"firewall", ""}, {"bad\x1bid"}} {
		_, err := h.admin.ForecastEnforcement(h.ctx(), &adminv1.ForecastEnforcementRequest{PolicyIds: ids})
		if status.Code(err) != codes.InvalidArgument {
			t.Errorf("policy_ids %q: %v, want INVALID_ARGUMENT", ids, err)
		}
	}
	// Not base64; a NUL; not UTF-8 (PostgreSQL would refuse the last two
	// as an error): none is a token this server made.
	for _, tok := range []string{"%%", "AA", "_w", "YQBi"} {
		if _, err := h.admin.ForecastEnforcement(h.ctx(), &adminv1.ForecastEnforcementRequest{PageToken: tok}); status.Code(err) != codes.InvalidArgument {
			t.Errorf("forecast page token %q: %v, want INVALID_ARGUMENT", tok, err)
		}
		if _, err := h.admin.ListDevices(h.ctx(), &adminv1.ListDevicesRequest{PageToken: tok}); status.Code(err) != codes.InvalidArgument {
			t.Errorf("devices page token %q: %v, want INVALID_ARGUMENT", tok, err)
		}
	}
	if d, a := h.decisionCount(t), len(h.auditOf("")); d != decisions || a != audit {
		t.Errorf("a forecast wrote: decisions %d → %d, audit events %d → %d", decisions, d, audit, a)
	}
	// The policies in force are as they were: the forecast changed a copy.
	if r := h.explain(both); r.GetAllow() || !r.GetCanContinue() || r.GetMode() != "warn" {
		t.Errorf("after the forecasts a sign-in gets %s, allow %v, Continue %v; want the warning it got before", r.GetMode(), r.GetAllow(), r.GetCanContinue())
	}

	// A day later every report is stale, as a sign-in would find it (it
	// asks the Mac first); the forecast judges the policies all the same,
	// and says how old the report is.
	h.clock.Add(24 * time.Hour)
	if r := h.explain(passing); r.GetAllow() {
		t.Fatal("a day-old report still lets a sign-in in: the clock did not move")
	}
	later := forecast()
	if p := later[passing.DeviceID][0]; !p.GetNow().GetAllow() || !p.GetEnforced().GetAllow() || !p.GetObservedAt().AsTime().Equal(at) {
		t.Errorf("the passing Mac a day later: %v, want let in, its report of %v", p, at)
	}
	if e := later[both.DeviceID][0].GetEnforced(); !slices.Equal(e.GetBlockingPolicyIds(), []string{"firewall", "filevault"}) {
		t.Errorf("the failing Mac a day later: %v, want blocked by its policies", e)
	}

	// No grace started: a real sign-in later still gets the whole 72 hours.
	if g, err := h.srv.Store.GraceStarts(ctx, both.DeviceID); err != nil || len(g) != 0 {
		t.Errorf("grace starts after a forecast: %v %v", g, err)
	}
}

func (h *harness) decisionCount(t *testing.T) int {
	t.Helper()
	ds, err := h.srv.Store.ListDecisions(context.Background(), storage.DecisionFilter{Limit: storage.MaxDecisionLimit})
	if err != nil {
		t.Fatal(err)
	}
	return len(ds)
}

// TestForecastBounds: a Mac with more people assigned than a forecast
// decides for is decided for 16 and says how many it left out; a page
// holds about page_size rows and never splits a Mac's rows.
func TestForecastBounds(t *testing.T) {
	t.Parallel()
	h := startWith(t, nil)
	ctx := context.Background()
	crowded := forecastMac(t, h, "filevault")
	var others []*protoagent.Agent
	for range 3 {
		others = append(others, forecastMac(t, h))
	}
	at := h.clock.Now()
	for i := range 20 {
		name := fmt.Sprintf("user%02d@example.com", i)
		if _, err := h.srv.Store.CreateUser(ctx, storage.User{ID: fmt.Sprintf("u%02d", i), UserName: name, Active: true, CreatedAt: at, UpdatedAt: at},
			storage.AuditEvent{At: at, Actor: "test", Action: "user.create"}); err != nil {
			t.Fatal(err)
		}
		if _, err := h.admin.AssignDevice(h.ctx(), &adminv1.AssignDeviceRequest{DeviceId: crowded.DeviceID, User: name}); err != nil {
			t.Fatal(err)
		}
	}
	var pages [][]*adminv1.DeviceForecast
	token := ""
	for {
		resp, err := h.admin.ForecastEnforcement(h.ctx(), &adminv1.ForecastEnforcementRequest{PageSize: 2, PageToken: token})
		if err != nil {
			t.Fatal(err)
		}
		// Every policy that can block, named: not the advisory
		// screen-lock of the example set.
		if ids := resp.GetPolicyIds(); slices.Contains(ids, "screen-lock") || !slices.Contains(ids, "filevault") {
			t.Fatalf("policy_ids %v, want the required policies only", ids)
		}
		pages = append(pages, resp.GetDevices())
		if token = resp.GetNextPageToken(); token == "" {
			break
		}
		if len(pages) > 10 {
			t.Fatal("the pages do not end")
		}
	}
	rows := map[string][]*adminv1.DeviceForecast{}
	for _, p := range pages {
		if len(p) == 0 {
			t.Fatalf("an empty page among %d", len(pages))
		}
		seen := map[string]bool{}
		for _, r := range p {
			seen[r.GetDeviceId()] = true
		}
		for id := range seen {
			if rows[id] != nil {
				t.Fatalf("device %s's rows split between pages", id)
			}
		}
		for _, r := range p {
			rows[r.GetDeviceId()] = append(rows[r.GetDeviceId()], r)
		}
		// A page ends once it has page_size rows, after the Mac that
		// reached them: the rows before its last Mac's are fewer.
		last := p[len(p)-1].GetDeviceId()
		before := 0
		for _, r := range p {
			if r.GetDeviceId() != last {
				before++
			}
		}
		if before >= 2 {
			t.Errorf("a page of %d rows, %d before its last Mac's: it should have ended before that Mac", len(p), before)
		}
	}
	c := rows[crowded.DeviceID]
	if len(c) != 16 || c[15].GetPeopleOmitted() != 4 || c[0].GetPeopleOmitted() != 0 || c[0].GetUsername() != "user00@example.com" {
		t.Fatalf("the crowded Mac: %d rows, last omits %d, first %q; want 16, 4 left out, user00 first", len(c), c[len(c)-1].GetPeopleOmitted(), c[0].GetUsername())
	}
	for _, o := range others {
		if len(rows[o.DeviceID]) != 1 {
			t.Errorf("device %s: %d rows, want 1", o.DeviceID, len(rows[o.DeviceID]))
		}
	}

	// A Mac whose 1,006 assigned people have all left: 1,000 records are
	// read, none decided for; the Mac is decided alone, and says 6 were
	// not read. One still there behind 64 who left is found.
	abandoned := forecastMac(t, h)
	for i := range 1006 {
		name := fmt.Sprintf("gone%04d@example.com", i)
		if _, err := h.srv.Store.CreateUser(ctx, storage.User{ID: fmt.Sprintf("g%04d", i), UserName: name, CreatedAt: at, UpdatedAt: at},
			storage.AuditEvent{At: at, Actor: "test", Action: "user.create"}); err != nil {
			t.Fatal(err)
		}
		if err := h.srv.Store.BindDevice(ctx, storage.DeviceUser{DeviceID: abandoned.DeviceID, UserID: fmt.Sprintf("g%04d", i), Source: "admin", CreatedAt: at},
			storage.AuditEvent{At: at, Actor: "test", Action: "device.assign"}); err != nil {
			t.Fatal(err)
		}
	}
	resp, err := h.admin.ForecastEnforcement(h.ctx(), &adminv1.ForecastEnforcementRequest{PageSize: 500})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range resp.GetDevices() {
		if r.GetDeviceId() == abandoned.DeviceID && (r.GetUsername() != "" || r.GetPeopleOmitted() != 6) {
			t.Errorf("the abandoned Mac: %v, want decided alone, 6 people not read", r)
		}
	}
	shared := forecastMac(t, h)
	for i := range 64 {
		if err := h.srv.Store.BindDevice(ctx, storage.DeviceUser{DeviceID: shared.DeviceID, UserID: fmt.Sprintf("g%04d", i), Source: "admin", CreatedAt: at},
			storage.AuditEvent{At: at, Actor: "test", Action: "device.assign"}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := h.admin.AssignDevice(h.ctx(), &adminv1.AssignDeviceRequest{DeviceId: shared.DeviceID, User: "user19@example.com"}); err != nil {
		t.Fatal(err)
	}
	resp, err = h.admin.ForecastEnforcement(h.ctx(), &adminv1.ForecastEnforcementRequest{PageSize: 500})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range resp.GetDevices() {
		if r.GetDeviceId() == shared.DeviceID && (r.GetUsername() != "user19@example.com" || r.GetUsernameSource() != "assigned") {
			t.Errorf("the shared Mac: %v, want decided for user19, assigned after 64 who left", r)
		}
	}
}

// TestForecastPeopleAndModes: a Mac only Cloudflare asks about is decided
// for the person Cloudflare named; a Mac with no known person for itself
// alone, even when usernames must be provisioned; lift_ceiling gives the
// other policies their own modes; a stale report is said to be; an
// advisory or empty policy id is refused.
func TestForecastPeopleAndModes(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "policies.yaml")
	if err := os.WriteFile(file, []byte(forecastPolicies+`  - id: advice
    name: Advice
    query: SELECT 1
    resolution: Nothing to do.
    required: false
`), 0o600); err != nil {
		t.Fatal(err)
	}
	h := startWith(t, func(c *config.Config) {
		c.Policies, c.SCIMUsers, c.Enforcement = file, config.SCIMRequired, string(decision.Monitor)
	})
	ctx := context.Background()
	cf := forecastMac(t, h, "filevault")
	nobody := forecastMac(t, h, "screen-lock")
	at := h.clock.Now()
	if _, err := h.srv.Store.CreateUser(ctx, storage.User{ID: "kim", UserName: "kim@example.com", Active: true, CreatedAt: at, UpdatedAt: at},
		storage.AuditEvent{At: at, Actor: "test", Action: "user.create"}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.srv.Store.AppendDecision(ctx, storage.DecisionRecord{At: at, DeviceID: cf.DeviceID, Username: "kim@example.com", Source: storage.SourceCloudflare, Reason: "allowed"}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.admin.GrantExemption(h.ctx(), &adminv1.GrantExemptionRequest{Username: "kim@example.com", PolicyIds: []string{"filevault"},
		ExpiresAt: timestamppb.New(at.Add(time.Hour)), Reason: "new Mac on order"}); err != nil {
		t.Fatal(err)
	}
	forecast := func(req *adminv1.ForecastEnforcementRequest) map[string]*adminv1.DeviceForecast {
		t.Helper()
		resp, err := h.admin.ForecastEnforcement(h.ctx(), req)
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]*adminv1.DeviceForecast{}
		for _, d := range resp.GetDevices() {
			out[d.GetDeviceId()] = d
		}
		return out
	}
	// A Mac whose one assigned person has left, used by another since.
	left := forecastMac(t, h, "screen-lock")
	if _, err := h.srv.Store.CreateUser(ctx, storage.User{ID: "old", UserName: "old@example.com", Active: true, CreatedAt: at, UpdatedAt: at},
		storage.AuditEvent{At: at, Actor: "test", Action: "user.create"}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.admin.AssignDevice(h.ctx(), &adminv1.AssignDeviceRequest{DeviceId: left.DeviceID, User: "old@example.com"}); err != nil {
		t.Fatal(err)
	}
	old, err := h.srv.Store.GetUser(ctx, "old")
	if err != nil {
		t.Fatal(err)
	}
	old.Active = false
	if _, err := h.srv.Store.UpdateUser(ctx, old, storage.AuditEvent{At: at, Actor: "test", Action: "user.deactivate"}); err != nil {
		t.Fatal(err)
	}
	// kim signed in on it, then old, before leaving: kim is whom it is for.
	for _, name := range []string{"kim@example.com", "old@example.com"} {
		if _, err := h.srv.Store.AppendDecision(ctx, storage.DecisionRecord{At: at, DeviceID: left.DeviceID, Username: name, Source: "sso", Reason: "allowed"}); err != nil {
			t.Fatal(err)
		}
	}
	all := forecast(&adminv1.ForecastEnforcementRequest{})
	if r := all[left.DeviceID]; r.GetUsername() != "kim@example.com" || r.GetUsernameSource() != "latest_sign_in" ||
		!slices.Equal(r.GetEnforced().GetBlockingPolicyIds(), []string{"screen-lock"}) {
		t.Errorf("the Mac whose assigned person left: %v, want decided for kim, who signs in on it", r)
	}
	if r := all[cf.DeviceID]; r.GetUsername() != "kim@example.com" || r.GetUsernameSource() != "cloudflare" ||
		!r.GetEnforced().GetAllow() || !slices.Equal(r.GetEnforced().GetExemptPolicyIds(), []string{"filevault"}) {
		t.Errorf("the Mac Cloudflare asks about for kim: %v, want decided for kim, let in by kim's exemption", r)
	}
	if r := all[nobody.DeviceID]; r.GetUsername() != "" || r.GetEnforced().GetReason() != "policy_failed" ||
		!slices.Equal(r.GetEnforced().GetBlockingPolicyIds(), []string{"screen-lock"}) {
		t.Errorf("the Mac nobody is known on: %v, want it decided alone, blocked by its policy (not for an unprovisioned user)", r)
	}
	// Only screen-lock named: it blocks; the firewall (warn in the file)
	// stays monitored under the monitor ceiling, and warns with the
	// ceiling lifted.
	if r := forecast(&adminv1.ForecastEnforcementRequest{PolicyIds: []string{"screen-lock"}})[nobody.DeviceID]; r.GetEnforced().GetAllow() {
		t.Errorf("screen-lock alone: %v, want blocked", r)
	}
	fw := forecastMac(t, h, "firewall")
	if r := forecast(&adminv1.ForecastEnforcementRequest{PolicyIds: []string{"screen-lock"}})[fw.DeviceID]; !r.GetEnforced().GetAllow() || r.GetEnforced().GetMode() != "monitor" {
		t.Errorf("the firewall under the monitor ceiling: %v, want let in (monitor)", r.GetEnforced())
	}
	if r := forecast(&adminv1.ForecastEnforcementRequest{PolicyIds: []string{"screen-lock"}, LiftCeiling: true})[fw.DeviceID]; r.GetEnforced().GetAllow() || !r.GetEnforced().GetCanContinue() {
		t.Errorf("the firewall with the ceiling lifted: %v, want its own warn", r.GetEnforced())
	}

	if r := all[cf.DeviceID]; r.GetReportStale() {
		t.Errorf("a fresh report said stale: %v", r)
	}
	h.clock.Add(time.Hour)
	if r := forecast(&adminv1.ForecastEnforcementRequest{})[cf.DeviceID]; !r.GetReportStale() {
		t.Errorf("an hour-old report not said stale: %v", r)
	}

	for _, ids := range [][]string{{"advice"}, {""}} {
		if _, err := h.admin.ForecastEnforcement(h.ctx(), &adminv1.ForecastEnforcementRequest{PolicyIds: ids}); status.Code(err) != codes.InvalidArgument {
			t.Errorf("policy_ids %q: %v, want INVALID_ARGUMENT", ids, err)
		}
	}
}
