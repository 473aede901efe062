package admin_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	adminv1 "github.com/clearance/clearance/proto/gen/clearance/admin/v1"
	agentv1 "github.com/clearance/clearance/proto/gen/clearance/agent/v1"
	"github.com/clearance/clearance/verifier/admin"
	"github.com/clearance/clearance/verifier/storage"
)

// Exemptions through the admin API: granted with a reason and an expiry,
// listed while active, revoked once, every change audited; bad requests
// refused with INVALID_ARGUMENT and nothing stored.
func TestExemptionsAPI(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	store := newStore(t)
	now := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	s := &admin.Server{Store: store, Now: func() time.Time { return now }, Policies: fixedPolicies("v7", "firewall", "macos-version")}

	until := timestamppb.New(now.Add(72 * time.Hour))
	bad := map[string]*adminv1.GrantExemptionRequest{
		"neither":         {ExpiresAt: until, Reason: "r"},
		"both":            {DeviceId: "d", Username: "u", ExpiresAt: until, Reason: "r"},
		"no reason":       {DeviceId: "d", ExpiresAt: until, Reason: "  "},
		"no expiry":       {DeviceId: "d", Reason: "r"},
		"past":            {DeviceId: "d", ExpiresAt: timestamppb.New(now), Reason: "r"},
		"too far":         {DeviceId: "d", ExpiresAt: timestamppb.New(now.Add(400 * 24 * time.Hour)), Reason: "r"},
		"bad policy":      {DeviceId: "d", ExpiresAt: until, Reason: "r", PolicyIds: []string{"Fire Wall"}},
		"twice":           {DeviceId: "d", ExpiresAt: until, Reason: "r", PolicyIds: []string{"fw", "fw"}},
		"huge reason":     {DeviceId: "d", ExpiresAt: until, Reason: strings.Repeat("x", 5000)},
		"invalid expiry":  {DeviceId: "d", ExpiresAt: &timestamppb.Timestamp{Seconds: -1 << 62}, Reason: "r"},
		"NUL in username": {Username: "a\x00b", ExpiresAt: until, Reason: "r"},
		"tab in username": {Username: "a\tb@example.com", ExpiresAt: until, Reason: "r"},
		"zero-width":      {Username: "bob\u200b@example.com", ExpiresAt: until, Reason: "r"},
		"only white":      {Username: " \t ", ExpiresAt: until, Reason: "r"},
		"Cyrillic a":      {Username: "\u0430lice@example.com", ExpiresAt: until, Reason: "r"},
		"grapheme joiner": {Username: "alice@example.com\u034f", ExpiresAt: until, Reason: "r"},
		"Hangul filler":   {Username: "alice\u3164@example.com", ExpiresAt: until, Reason: "r"},
		"no-break space":  {Username: "alice\u00a0smith@example.com", ExpiresAt: until, Reason: "r"},
		"em space":        {Username: "alice\u2003@example.com", ExpiresAt: until, Reason: "r"},
		"braille blank":   {Username: "alice\u2800@example.com", ExpiresAt: until, Reason: "r"},
		"variation sel.":  {Username: "alice\ufe0f@example.com", ExpiresAt: until, Reason: "r"},
		// A mistyped id would exempt from nothing.
		"unknown policy": {DeviceId: "d", ExpiresAt: until, Reason: "r", PolicyIds: []string{"firewall", "filevault"}},
	}
	for name, req := range bad {
		if _, err := s.GrantExemption(ctx, req); status.Code(err) != codes.InvalidArgument {
			t.Errorf("%s: %v, want INVALID_ARGUMENT", name, err)
		}
	}
	_, err := s.GrantExemption(ctx, bad["unknown policy"])
	if msg := status.Convert(err).Message(); !strings.Contains(msg, `no policy "filevault" in the policy set in force (version "v7"); its policies: firewall, macos-version`) {
		t.Errorf("unknown policy: %q", msg)
	}
	if l, _ := s.ListExemptions(ctx, &adminv1.ListExemptionsRequest{IncludeInactive: true}); len(l.GetExemptions()) != 0 {
		t.Fatalf("refused grants stored: %v", l)
	}

	// A device that is not enrolled would be exempt from nothing, and the
	// listing would show it in force: refused, nothing stored.
	if _, err := s.GrantExemption(ctx, &adminv1.GrantExemptionRequest{DeviceId: "dev-1", PolicyIds: []string{"firewall"}, ExpiresAt: until, Reason: "replacement Mac on order"}); status.Code(err) != codes.NotFound ||
		!strings.Contains(status.Convert(err).Message(), `no enrolled device's id is or starts with "dev-1"`) {
		t.Fatalf("grant for a device not enrolled: %v", err)
	}
	setup := storage.AuditEvent{At: now, Actor: "test", Action: "setup"}
	if err := store.CreateEnrollSecret(ctx, storage.EnrollSecret{ID: "s", Hash: []byte("h"), CreatedAt: now}, setup); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"dev-1", "dev-10", "dev-2"} {
		if _, _, err := store.EnrollDevice(ctx, storage.Enrollment{
			Device: storage.Device{ID: id, HardwareUUID: "HW-" + id, Platform: "darwin", PublicKey: []byte("key " + id),
				CertSerial: "c" + id, CertNotAfter: now.Add(24 * time.Hour), EnrolledAt: now},
			Cert:     storage.Cert{Serial: "c" + id, Kind: "device", NotBefore: now, NotAfter: now.Add(24 * time.Hour), DER: []byte("der")},
			SecretID: "s", Audit: setup,
		}); err != nil {
			t.Fatal(err)
		}
	}
	// The start of one id names it; a start two ids have is refused.
	if _, err := s.GrantExemption(ctx, &adminv1.GrantExemptionRequest{DeviceId: "dev-", ExpiresAt: until, Reason: "r"}); status.Code(err) != codes.InvalidArgument ||
		!strings.Contains(status.Convert(err).Message(), `more than one device's id starts with "dev-"`) {
		t.Fatalf("grant for an ambiguous start: %v", err)
	}
	if l, _ := s.ListExemptions(ctx, &adminv1.ListExemptionsRequest{IncludeInactive: true}); len(l.GetExemptions()) != 0 {
		t.Fatalf("refused grants stored: %v", l)
	}
	if g, err := s.GrantExemption(ctx, &adminv1.GrantExemptionRequest{DeviceId: "DEV-2", ExpiresAt: until, Reason: "r"}); err != nil || g.GetExemption().GetDeviceId() != "dev-2" {
		t.Fatalf("grant for the start of one id: %v, %v", g, err)
	} else if _, err := s.RevokeExemption(ctx, &adminv1.RevokeExemptionRequest{Id: g.GetExemption().GetId()}); err != nil {
		t.Fatal(err)
	}
	g, err := s.GrantExemption(ctx, &adminv1.GrantExemptionRequest{DeviceId: "dev-1", PolicyIds: []string{"firewall"}, ExpiresAt: until, Reason: "replacement Mac on order"})
	if err != nil {
		t.Fatal(err)
	}
	e := g.GetExemption()
	if e.GetId() <= 0 || !e.GetActive() || e.GetCreatedBy() != "admin-api" || !e.GetExpiresAt().AsTime().Equal(until.AsTime()) {
		t.Fatalf("granted %v", e)
	}
	// White space around a username is not kept (it would cover nobody),
	// and a name nobody has is granted with a word that it may be mistyped.
	if g, err := s.GrantExemption(ctx, &adminv1.GrantExemptionRequest{Username: " Ada@example.com\n", ExpiresAt: until, Reason: "travelling"}); err != nil {
		t.Fatal(err)
	} else if g.GetExemption().GetUsername() != "Ada@example.com" || !g.GetUsernameUnknown() {
		t.Fatalf("grant for a padded username nobody has: %v", g)
	}
	if _, err := store.CreateUser(ctx, storage.User{ID: "u-grace", UserName: "grace@example.com", Active: true, CreatedAt: now, UpdatedAt: now, Version: 1, Source: storage.SourceSCIM, Resource: []byte("{}")}, setup); err != nil {
		t.Fatal(err)
	}
	if g, err := s.GrantExemption(ctx, &adminv1.GrantExemptionRequest{Username: "GRACE@example.com", ExpiresAt: until, Reason: "r"}); err != nil || g.GetUsernameUnknown() {
		t.Fatalf("grant for a provisioned user: %v, %v", g, err)
	} else if _, err := s.RevokeExemption(ctx, &adminv1.RevokeExemptionRequest{Id: g.GetExemption().GetId()}); err != nil {
		t.Fatal(err)
	}
	if g, err := s.GrantExemption(ctx, &adminv1.GrantExemptionRequest{DeviceId: "dev-2", ExpiresAt: until, Reason: "r"}); err != nil || g.GetUsernameUnknown() {
		t.Fatalf("a device grant says its username is unknown: %v, %v", g, err)
	} else if _, err := s.RevokeExemption(ctx, &adminv1.RevokeExemptionRequest{Id: g.GetExemption().GetId()}); err != nil {
		t.Fatal(err)
	}
	l, err := s.ListExemptions(ctx, &adminv1.ListExemptionsRequest{Username: "ada@EXAMPLE.com"})
	if err != nil || len(l.GetExemptions()) != 1 || l.GetExemptions()[0].GetUsername() != "Ada@example.com" {
		t.Fatalf("list by user: %v, %v", l, err)
	}

	r, err := s.RevokeExemption(ctx, &adminv1.RevokeExemptionRequest{Id: e.GetId()})
	if err != nil || r.GetExemption().GetActive() || r.GetExemption().GetRevokedBy() != "admin-api" {
		t.Fatalf("revoke: %v, %v", r, err)
	}
	if _, err := s.RevokeExemption(ctx, &adminv1.RevokeExemptionRequest{Id: e.GetId()}); status.Code(err) != codes.FailedPrecondition {
		t.Errorf("second revoke: %v", err)
	}
	if _, err := s.RevokeExemption(ctx, &adminv1.RevokeExemptionRequest{Id: 9999}); status.Code(err) != codes.NotFound {
		t.Errorf("unknown revoke: %v", err)
	}
	active, _ := s.ListExemptions(ctx, &adminv1.ListExemptionsRequest{})
	all, _ := s.ListExemptions(ctx, &adminv1.ListExemptionsRequest{IncludeInactive: true})
	if len(active.GetExemptions()) != 1 || len(all.GetExemptions()) != 5 {
		t.Fatalf("active %d, all %d; want 1 and 5", len(active.GetExemptions()), len(all.GetExemptions()))
	}
	audit, err := store.ListAudit(ctx, storage.AuditFilter{DeviceID: "dev-1", Limit: 10})
	if err != nil || len(audit) != 3 || audit[0].Action != "exemption.revoke" || audit[1].Action != "exemption.grant" ||
		!strings.Contains(audit[1].Detail, "replacement Mac on order") {
		t.Fatalf("audit %+v, %v", audit, err)
	}
	// An exemption expires on time: from its expiry it is not listed as active.
	now = now.Add(72 * time.Hour)
	if l, _ := s.ListExemptions(ctx, &adminv1.ListExemptionsRequest{}); len(l.GetExemptions()) != 0 {
		t.Fatalf("expired exemptions listed as active: %v", l)
	}

	// A name that can pass for another is refused even once Okta has
	// provisioned it: whether it reads as someone else's cannot be checked
	// reliably here (exempt the Mac instead).
	if _, err := store.CreateUser(ctx, storage.User{ID: "u-yildiz", UserName: "y\u0131ld\u0131z@example.com", Active: true, CreatedAt: now, UpdatedAt: now}, setup); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GrantExemption(ctx, &adminv1.GrantExemptionRequest{Username: "y\u0131ld\u0131z@example.com", ExpiresAt: timestamppb.New(now.Add(time.Hour)), Reason: "r"}); status.Code(err) != codes.InvalidArgument ||
		!strings.Contains(err.Error(), "grant the exemption to the device instead") {
		t.Errorf("a provisioned look-alike name: %v, want refused", err)
	}
}

// fixedPolicySet is a policy set in force that is never reloaded.
type fixedPolicySet struct{ ps *agentv1.PolicySet }

func fixedPolicies(version string, ids ...string) fixedPolicySet {
	ps := &agentv1.PolicySet{Version: version}
	for _, id := range ids {
		ps.Policies = append(ps.Policies, &agentv1.Policy{Id: id})
	}
	return fixedPolicySet{ps}
}

func (f fixedPolicySet) Current() *agentv1.PolicySet { return f.ps }
func (f fixedPolicySet) Reload(record func(*agentv1.PolicySet, []string) error) (*agentv1.PolicySet, error) {
	if record != nil {
		if err := record(f.ps, nil); err != nil {
			return nil, err
		}
	}
	return f.ps, nil
}

// ListDecisions filters by mode: the would-deny, warned and bypassed reports.
func TestListDecisionsModes(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	store := newStore(t)
	s := &admin.Server{Store: store}
	now := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	for i, m := range []string{"enforce", "monitor", "warned", "bypassed", "monitor"} {
		if _, err := store.AppendDecision(ctx, storage.DecisionRecord{At: now.Add(time.Duration(i) * time.Second), Username: "ada", Allow: true,
			Reason: "allowed", LiveCheck: "none", Source: "sso", Mode: m,
			Results: []storage.DecisionResult{{PolicyID: "firewall", Status: "FAIL", Required: true, Enforcement: "monitor", Waiver: "monitor"}}}); err != nil {
			t.Fatal(err)
		}
	}
	resp, err := s.ListDecisions(ctx, &adminv1.ListDecisionsRequest{Modes: []string{"monitor"}})
	if err != nil || len(resp.GetDecisions()) != 2 || resp.GetDecisions()[0].GetMode() != "monitor" ||
		resp.GetDecisions()[0].GetResults()[0].GetWaiver() != "monitor" {
		t.Fatalf("would-deny report: %v, %v", resp, err)
	}
	if resp, _ := s.ListDecisions(ctx, &adminv1.ListDecisionsRequest{Modes: []string{"warn", "warned", "bypassed"}}); len(resp.GetDecisions()) != 2 {
		t.Fatalf("warned and bypassed: %v", resp)
	}
	for _, bad := range [][]string{{"would-deny"}, {"monitor", "monitor", "monitor", "monitor", "monitor", "monitor", "monitor"}} {
		if _, err := s.ListDecisions(ctx, &adminv1.ListDecisionsRequest{Modes: bad}); status.Code(err) != codes.InvalidArgument {
			t.Errorf("modes %v: %v", bad, err)
		}
	}
	// Cloudflare's evaluations are in the report too, and apart by origin.
	if _, err := store.AppendDecision(ctx, storage.DecisionRecord{At: now.Add(time.Minute), Username: "ada", Allow: true, Score: 90,
		Reason: "allowed", LiveCheck: "none", Source: storage.SourceCloudflare, Mode: "monitor"}); err != nil {
		t.Fatal(err)
	}
	for origin, want := range map[adminv1.DecisionOrigin][]string{
		adminv1.DecisionOrigin_DECISION_ORIGIN_UNSPECIFIED: {"cloudflare", "sso", "sso"},
		adminv1.DecisionOrigin_DECISION_ORIGIN_OKTA:        {"sso", "sso"},
		adminv1.DecisionOrigin_DECISION_ORIGIN_CLOUDFLARE:  {"cloudflare"},
	} {
		resp, err := s.ListDecisions(ctx, &adminv1.ListDecisionsRequest{Modes: []string{"monitor"}, Origin: origin})
		var got []string
		for _, d := range resp.GetDecisions() {
			got = append(got, d.GetSource())
		}
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("origin %v: %v, %v; want %v", origin, got, err, want)
		}
	}
	if _, err := s.ListDecisions(ctx, &adminv1.ListDecisionsRequest{Origin: 7}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("origin 7: %v", err)
	}
}

// ListExemptions pages through every exemption, newest first, with none
// repeated or lost when grants land between pages; a device is named by
// the start of its id, and a start that names no device, or two, is
// refused rather than answered with an empty list.
func TestListExemptionsPagesAndDevicePrefix(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	store := newStore(t)
	now := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	s := &admin.Server{Store: store, Now: func() time.Time { return now }, Policies: fixedPolicies("v7", "firewall")}
	setup := storage.AuditEvent{At: now, Actor: "test", Action: "setup"}
	if err := store.CreateEnrollSecret(ctx, storage.EnrollSecret{ID: "s", Hash: []byte("h"), CreatedAt: now}, setup); err != nil {
		t.Fatal(err)
	}
	devs := []string{"83bffe5b-31ab-4c1e-9a00-000000000001", "83bffe5b-31ab-4c1e-9a00-000000000002", "1cf1a242-0000-4000-8000-000000000003"}
	for _, id := range devs {
		if _, _, err := store.EnrollDevice(ctx, storage.Enrollment{
			Device: storage.Device{ID: id, HardwareUUID: "HW-" + id, Platform: "darwin", PublicKey: []byte("key " + id),
				CertSerial: "c" + id, CertNotAfter: now.Add(24 * time.Hour), EnrolledAt: now},
			Cert:     storage.Cert{Serial: "c" + id, Kind: "device", NotBefore: now, NotAfter: now.Add(24 * time.Hour), DER: []byte("der")},
			SecretID: "s", Audit: setup,
		}); err != nil {
			t.Fatal(err)
		}
	}
	until := timestamppb.New(now.Add(time.Hour))
	grant := func(dev string) int64 {
		t.Helper()
		g, err := s.GrantExemption(ctx, &adminv1.GrantExemptionRequest{DeviceId: dev, ExpiresAt: until, Reason: "r"})
		if err != nil {
			t.Fatal(err)
		}
		return g.GetExemption().GetId()
	}
	var want []int64
	for i := range 108 {
		want = append(want, grant(devs[i%3]))
	}
	slices.Reverse(want)

	// The default page is 100, and says there is more.
	first, err := s.ListExemptions(ctx, &adminv1.ListExemptionsRequest{})
	if err != nil || len(first.GetExemptions()) != 100 || first.GetNextPageToken() == "" {
		t.Fatalf("first page: %d exemptions, token %q, %v", len(first.GetExemptions()), first.GetNextPageToken(), err)
	}
	// Walked 7 at a time, with a grant after each page: every exemption
	// that was there once, in order, none twice.
	var got []int64
	req := &adminv1.ListExemptionsRequest{PageSize: 7}
	for pages := 0; ; pages++ {
		if pages > 20 {
			t.Fatal("paging does not end")
		}
		resp, err := s.ListExemptions(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range resp.GetExemptions() {
			got = append(got, e.GetId())
		}
		if resp.GetNextPageToken() == "" {
			break
		}
		grant(devs[2])
		req.PageToken = resp.GetNextPageToken()
	}
	if !slices.Equal(got, want) {
		t.Fatalf("paged %d exemptions %v…, want %d", len(got), got[:min(len(got), 5)], len(want))
	}
	if _, err := s.ListExemptions(ctx, &adminv1.ListExemptionsRequest{PageToken: "not-a-token"}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("bad page token: %v", err)
	}

	// The start of one device's id, in either case, lists that device's.
	for _, prefix := range []string{"1cf1", "1CF1A242", devs[2]} {
		l, err := s.ListExemptions(ctx, &adminv1.ListExemptionsRequest{DeviceId: prefix, PageSize: 1000})
		if err != nil || len(l.GetExemptions()) == 0 {
			t.Fatalf("device %q: %v, %v", prefix, len(l.GetExemptions()), err)
		}
		for _, e := range l.GetExemptions() {
			if e.GetDeviceId() != devs[2] {
				t.Fatalf("device %q listed %v", prefix, e)
			}
		}
	}
	for prefix, c := range map[string]struct {
		code codes.Code
		msg  string
	}{
		"83bf":   {codes.InvalidArgument, `"83bf": more than one device's id starts with that; give more of it`},
		"ffff":   {codes.NotFound, `no enrolled device's id is or starts with "ffff"`},
		"a\x00b": {codes.InvalidArgument, "device_id holds a control character"},
	} {
		_, err := s.ListExemptions(ctx, &adminv1.ListExemptionsRequest{DeviceId: prefix})
		if status.Code(err) != c.code || !strings.Contains(status.Convert(err).Message(), c.msg) {
			t.Errorf("device %q: %v, want %v %q", prefix, err, c.code, c.msg)
		}
	}
}

// allow_unknown_policies grants a policy the set in force does not have
// yet, as written; a malformed id is refused all the same.
func TestGrantExemptionAllowUnknownPolicies(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	now := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	s := &admin.Server{Store: newStore(t), Now: func() time.Time { return now }, Policies: fixedPolicies("v7", "firewall")}
	until := timestamppb.New(now.Add(time.Hour))
	g, err := s.GrantExemption(ctx, &adminv1.GrantExemptionRequest{Username: "ada@example.com", PolicyIds: []string{"next-quarters-policy"},
		ExpiresAt: until, Reason: "ahead of the policy", AllowUnknownPolicies: true})
	if err != nil || !slices.Equal(g.GetExemption().GetPolicyIds(), []string{"next-quarters-policy"}) {
		t.Fatalf("grant ahead of the policy: %v, %v", g, err)
	}
	if _, err := s.GrantExemption(ctx, &adminv1.GrantExemptionRequest{Username: "ada@example.com", PolicyIds: []string{"Next Quarter"},
		ExpiresAt: until, Reason: "r", AllowUnknownPolicies: true}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("malformed policy id with allow_unknown_policies: %v", err)
	}
}
