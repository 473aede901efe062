package admin_test

import (
	"context"
	"fmt"
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

	// A name with a look-alike letter is refused until Okta provisions it;
	// then it is that person's, granted as Okta spells it in any ASCII case.
	turkish := &adminv1.GrantExemptionRequest{Username: "Yıldız@example.com", ExpiresAt: timestamppb.New(now.Add(time.Hour)), Reason: "new Mac on order"}
	if _, err := s.GrantExemption(ctx, turkish); status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "no user Okta provisioned") {
		t.Fatalf("a look-alike name nobody provisioned: %v", err)
	}
	if _, err := store.CreateUser(ctx, storage.User{ID: "u-yildiz", UserName: "yıldız@example.com", Active: true, CreatedAt: now, UpdatedAt: now}, setup); err != nil {
		t.Fatal(err)
	}
	if g, err := s.GrantExemption(ctx, turkish); err != nil || g.GetUsernameUnknown() {
		t.Fatalf("the provisioned name: %v %v", g, err)
	}
	// Provisioned too, a name that reads as another provisioned person's
	// is refused: the grant would read as hers.
	for _, u := range []storage.User{{ID: "u-alice", UserName: "alice@example.com"}, {ID: "u-alice2", UserName: "\u0430lice@example.com"}} {
		u.Active, u.CreatedAt, u.UpdatedAt = true, now, now
		if _, err := store.CreateUser(ctx, u, setup); err != nil {
			t.Fatal(err)
		}
	}
	_, err = s.GrantExemption(ctx, &adminv1.GrantExemptionRequest{Username: "\u0430lice@example.com", ExpiresAt: timestamppb.New(now.Add(time.Hour)), Reason: "r"})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "reads as alice@example.com, another") {
		t.Fatalf("a provisioned name that reads as another's: %v", err)
	}
	// Through a look-alike that ASCII spells two ways (ⅿ: m or rn), or three
	// (Cyrillic І: I, l or 1), against a person known only by a sign-in in
	// another case; of names that are not ASCII themselves (ş for ș, ⅼ in
	// yıldız, the two forms of ü): all refused, however the victim is known.
	if _, err := store.AppendDecision(ctx, storage.DecisionRecord{At: now, Username: "ivan@example.com", Reason: "allowed", Source: "sso"}); err != nil {
		t.Fatal(err)
	}
	provision := func(id, name string) {
		t.Helper()
		if _, err := store.CreateUser(ctx, storage.User{ID: id, UserName: name, Active: true, CreatedAt: now, UpdatedAt: now}, setup); err != nil {
			t.Fatal(err)
		}
	}
	provision("u-mary", "mary@example.com")
	provision("u-stefan", "\u0219tefan@example.ro")
	provision("u-muller", "m\u00fcller@example.de")
	for i, name := range []string{"\u217fary@example.com", "\u0406van@example.com", "\u015ftefan@example.ro", "y\u0131\u217cd\u0131z@example.com", "mu\u0308ller@example.de"} {
		provision(fmt.Sprintf("u-look-%d", i), name)
		if _, err := s.GrantExemption(ctx, &adminv1.GrantExemptionRequest{Username: name, ExpiresAt: timestamppb.New(now.Add(time.Hour)), Reason: "r"}); status.Code(err) != codes.InvalidArgument ||
			!strings.Contains(err.Error(), "reads as") {
			t.Errorf("provisioned %q: %v, want refused as reading as another's", name, err)
		}
	}
	// Real names in one script, or Latin with letters of their own, that
	// read as nobody else's: granted once provisioned.
	for i, name := range []string{"\u0438\u0440\u0438\u043d\u0430@example.ru", "k\u0131l\u0131\u00e7@example.com.tr", "bj\u00f8rn.\u00e6sir@example.dk", "\u03bd\u03af\u03ba\u03bf\u03c2@example.gr"} {
		provision(fmt.Sprintf("u-real-%d", i), name)
		if _, err := s.GrantExemption(ctx, &adminv1.GrantExemptionRequest{Username: name, ExpiresAt: timestamppb.New(now.Add(time.Hour)), Reason: "r"}); err != nil {
			t.Errorf("provisioned %q: %v, want granted", name, err)
		}
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
func (f fixedPolicySet) Reload(record func(*agentv1.PolicySet) error) (*agentv1.PolicySet, error) {
	if record != nil {
		if err := record(f.ps); err != nil {
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
