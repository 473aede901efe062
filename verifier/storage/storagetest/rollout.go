package storagetest

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clearance/clearance/verifier/storage"
)

var rolloutTests = []test{
	{"GraceStartsOnce", testGraceStartsOnce},
	{"GraceConcurrentStart", testGraceConcurrentStart},
	{"ForgetGraces", testForgetGraces},
	{"BypassOncePerPeriod", testBypassOncePerPeriod},
	{"BypassConcurrent", testBypassConcurrent},
	{"Exemptions", testExemptions},
	{"ExemptionsExpireOnTime", testExemptionsExpire},
	{"ExemptionsRevoke", testExemptionsRevoke},
	{"ExemptionsRefused", testExemptionsRefused},
	{"ExemptionsUserNameLookAlikes", testExemptionsUserNameLookAlikes},
	{"ExemptionsLookAlikesPastTheBound", testExemptionsLookAlikesPastTheBound},
	{"DecisionModes", testDecisionModes},
}

// The first FAIL starts the grace; later calls read it; a PASS ends it and
// the next FAIL starts a new one. Per device and policy.
func testGraceStartsOnce(t *testing.T, s storage.Store) {
	ctx := t.Context()
	got, err := s.StartGrace(ctx, "dev-1", "firewall", at(0))
	must(t, err)
	if !got.Equal(at(0)) || got.Location() != time.UTC {
		t.Fatalf("first start = %v, want %v in UTC", got, at(0))
	}
	got, err = s.StartGrace(ctx, "dev-1", "firewall", at(hour))
	must(t, err)
	if !got.Equal(at(0)) {
		t.Fatalf("second start = %v, want the first, %v", got, at(0))
	}
	_, err = s.StartGrace(ctx, "dev-1", "sip", at(2*hour))
	must(t, err)
	_, err = s.StartGrace(ctx, "dev-2", "firewall", at(3*hour))
	must(t, err)
	m, err := s.GraceStarts(ctx, "dev-1")
	must(t, err)
	if len(m) != 2 || !m["firewall"].Equal(at(0)) || !m["sip"].Equal(at(2*hour)) {
		t.Fatalf("GraceStarts(dev-1) = %v", m)
	}
	must(t, s.EndGrace(ctx, "dev-1", "firewall"))
	must(t, s.EndGrace(ctx, "dev-1", "firewall")) // none recorded: fine
	got, err = s.StartGrace(ctx, "dev-1", "firewall", at(5*hour))
	must(t, err)
	if !got.Equal(at(5 * hour)) {
		t.Fatalf("start after a PASS = %v, want %v", got, at(5*hour))
	}
	if m, err := s.GraceStarts(ctx, "dev-2"); err != nil || len(m) != 1 || !m["firewall"].Equal(at(3*hour)) {
		t.Fatalf("GraceStarts(dev-2) = %v, %v", m, err)
	}
	if m, err := s.GraceStarts(ctx, "dev-9"); err != nil || len(m) != 0 {
		t.Fatalf("GraceStarts(unknown) = %v, %v", m, err)
	}
	for _, bad := range [][2]string{{"", "p"}, {"d", ""}, {"d\x00", "p"}} {
		if _, err := s.StartGrace(ctx, bad[0], bad[1], at(0)); err == nil {
			t.Errorf("StartGrace(%q, %q) accepted", bad[0], bad[1])
		}
	}
	if _, err := s.StartGrace(ctx, "d", "p", time.Time{}); err == nil {
		t.Error("StartGrace with no time accepted")
	}
}

// ForgetGraces forgets the starts of the policies not kept, on every
// device, and leaves the others.
func testForgetGraces(t *testing.T, s storage.Store) {
	ctx := t.Context()
	for _, dp := range [][2]string{{"dev-1", "firewall"}, {"dev-1", "sip"}, {"dev-2", "sip"}, {"dev-2", "filevault"}, {"dev-3", "it's"}} {
		_, err := s.StartGrace(ctx, dp[0], dp[1], at(0))
		must(t, err)
	}
	n, err := s.ForgetGraces(ctx, []string{"firewall", "filevault"})
	must(t, err)
	if n != 3 {
		t.Errorf("forgot %d, want 3", n)
	}
	for dev, want := range map[string][]string{"dev-1": {"firewall"}, "dev-2": {"filevault"}, "dev-3": nil} {
		m, err := s.GraceStarts(ctx, dev)
		must(t, err)
		if len(m) != len(want) || (len(want) == 1 && m[want[0]].IsZero()) {
			t.Errorf("GraceStarts(%s) = %v, want %v", dev, m, want)
		}
	}
	if n, err := s.ForgetGraces(ctx, []string{"firewall", "filevault"}); err != nil || n != 0 {
		t.Errorf("forgetting again: %d, %v", n, err)
	}
	if n, err := s.ForgetGraces(ctx, nil); err != nil || n != 2 {
		t.Errorf("forgetting every start: %d, %v", n, err)
	}
	if m, err := s.GraceStarts(ctx, "dev-1"); err != nil || len(m) != 0 {
		t.Errorf("after forgetting every start: %v, %v", m, err)
	}
}

// Concurrent first FAILs (two replicas, two tabs) agree on one start.
func testGraceConcurrentStart(t *testing.T, s storage.Store) {
	const n = 8
	starts := make([]time.Time, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			starts[i], errs[i] = s.StartGrace(t.Context(), "dev-1", "firewall", at(time.Duration(i)*minute))
		})
	}
	wg.Wait()
	must(t, errors.Join(errs...))
	for _, st := range starts {
		if !st.Equal(starts[0]) {
			t.Fatalf("concurrent starts disagree: %v", starts)
		}
	}
}

// A bypass is recorded once per period: a second within it changes nothing.
func testBypassOncePerPeriod(t *testing.T, s storage.Store) {
	ctx := t.Context()
	const period = 7 * 24 * hour
	use := func(policy string, when time.Time) error {
		return s.UseBypass(ctx, "dev-1", policy, "alice@example.com", when, when.Add(-period))
	}
	must(t, use("firewall", at(0)))
	wantErr(t, use("firewall", at(hour)), storage.ErrAlreadyExists)
	wantErr(t, use("firewall", at(period-1)), storage.ErrAlreadyExists)
	must(t, use("sip", at(hour))) // another policy
	must(t, s.UseBypass(ctx, "dev-2", "firewall", "bob@example.com", at(hour), at(hour-period)))
	m, err := s.Bypasses(ctx, "dev-1")
	must(t, err)
	if len(m) != 2 || !m["firewall"].Equal(at(0)) || !m["sip"].Equal(at(hour)) {
		t.Fatalf("Bypasses = %v", m)
	}
	must(t, use("firewall", at(period)))
	if m, _ := s.Bypasses(ctx, "dev-1"); !m["firewall"].Equal(at(period)) || m["firewall"].Location() != time.UTC {
		t.Fatalf("bypass after the period not recorded: %v", m)
	}
	if err := s.UseBypass(ctx, "", "p", "u", at(0), at(-period)); err == nil {
		t.Error("bypass with no device accepted")
	}
	if err := s.UseBypass(ctx, "d", "p", "u", time.Time{}, at(-period)); err == nil {
		t.Error("bypass with no time accepted")
	}
}

// Of many presses of "Resolve later" at once, one counts.
func testBypassConcurrent(t *testing.T, s storage.Store) {
	const n = 8
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			errs[i] = s.UseBypass(t.Context(), "dev-1", "firewall", "alice@example.com", at(time.Duration(i)), at(-24*hour))
		})
	}
	wg.Wait()
	oneWinner(t, "concurrent bypasses", errs, storage.ErrAlreadyExists)
}

func newExemption(device, user string, policies ...string) storage.Exemption {
	return storage.Exemption{
		DeviceID: device, Username: user, PolicyIDs: policies,
		Reason: "replacement Mac on order", CreatedBy: "admin-api",
		CreatedAt: at(0), ExpiresAt: at(24 * hour),
	}
}

func createExemption(t *testing.T, s storage.Store, e storage.Exemption) storage.Exemption {
	t.Helper()
	id, err := s.CreateExemption(t.Context(), e, exemptionAudit("exemption.grant", e.DeviceID))
	must(t, err)
	if id <= 0 {
		t.Fatalf("exemption id %d", id)
	}
	e.ID = id
	e.CreatedAt, e.ExpiresAt = e.CreatedAt.UTC(), e.ExpiresAt.UTC()
	return e
}

func exemptionIDs(es []storage.Exemption) []int64 {
	return each(es, func(e storage.Exemption) int64 { return e.ID })
}

func exemptionAudit(action, device string) storage.AuditEvent {
	return storage.AuditEvent{At: t0, Actor: "cli", Action: action, DeviceID: device, Detail: "for the test"}
}

func testExemptions(t *testing.T, s storage.Store) {
	ctx := t.Context()
	dev := createExemption(t, s, newExemption("dev-1", "", "firewall", "sip"))
	user := createExemption(t, s, newExemption("", "Alice@Example.com"))
	other := createExemption(t, s, newExemption("dev-2", "", "firewall"))

	got, err := s.GetExemption(ctx, dev.ID)
	must(t, err)
	if es, err := s.ListAudit(ctx, storage.AuditFilter{DeviceID: "dev-1", Limit: 10}); err != nil || len(es) != 1 || es[0].Action != "exemption.grant" ||
		es[0].Detail != fmt.Sprintf("exemption %d: for the test", dev.ID) {
		t.Fatalf("audit of the grant: %+v, %v", es, err)
	}
	if got.DeviceID != "dev-1" || !slices.Equal(got.PolicyIDs, []string{"firewall", "sip"}) || got.Reason != dev.Reason ||
		got.CreatedBy != "admin-api" || !got.CreatedAt.Equal(at(0)) || !got.ExpiresAt.Equal(at(24*hour)) ||
		!got.RevokedAt.IsZero() || got.ExpiresAt.Location() != time.UTC {
		t.Fatalf("GetExemption = %+v", got)
	}
	if got, _ := s.GetExemption(ctx, user.ID); got.PolicyIDs != nil || got.Username != "Alice@Example.com" {
		t.Fatalf("all-policy user exemption = %+v", got)
	}
	_, err = s.GetExemption(ctx, 999999)
	wantErr(t, err, storage.ErrNotFound)

	for name, c := range map[string]struct {
		dev, user string
		want      []int64
	}{
		"device":             {"dev-1", "", []int64{dev.ID}},
		"user, another case": {"", "alice@EXAMPLE.com", []int64{user.ID}},
		"both":               {"dev-1", "alice@example.com", []int64{user.ID, dev.ID}},
		"neither matches":    {"dev-9", "bob@example.com", nil},
		"nothing asked":      {"", "", nil},
	} {
		es, err := s.ExemptionsFor(ctx, c.dev, c.user, at(hour))
		must(t, err)
		if got := exemptionIDs(es); !slices.Equal(got, c.want) {
			t.Errorf("ExemptionsFor %s = %v, want %v", name, got, c.want)
		}
	}

	all, err := s.ListExemptions(ctx, storage.ExemptionFilter{})
	must(t, err)
	if got := exemptionIDs(all); !slices.Equal(got, []int64{other.ID, user.ID, dev.ID}) {
		t.Fatalf("ListExemptions = %v, want newest first", got)
	}
	byDev, err := s.ListExemptions(ctx, storage.ExemptionFilter{DeviceID: "dev-2"})
	must(t, err)
	byUser, err := s.ListExemptions(ctx, storage.ExemptionFilter{Username: "ALICE@example.com"})
	must(t, err)
	one, err := s.ListExemptions(ctx, storage.ExemptionFilter{Limit: 1})
	must(t, err)
	if !slices.Equal(exemptionIDs(byDev), []int64{other.ID}) || !slices.Equal(exemptionIDs(byUser), []int64{user.ID}) || len(one) != 1 {
		t.Fatalf("filters: device %v user %v limit %v", exemptionIDs(byDev), exemptionIDs(byUser), exemptionIDs(one))
	}
	// Paged by ID: each page starts below the last ID of the one before,
	// and combines with the other filters.
	after, err := s.ListExemptions(ctx, storage.ExemptionFilter{BeforeID: other.ID, Limit: 1})
	must(t, err)
	rest, err := s.ListExemptions(ctx, storage.ExemptionFilter{BeforeID: user.ID})
	must(t, err)
	userBelow, err := s.ListExemptions(ctx, storage.ExemptionFilter{Username: "alice@example.com", BeforeID: user.ID})
	must(t, err)
	if !slices.Equal(exemptionIDs(after), []int64{user.ID}) || !slices.Equal(exemptionIDs(rest), []int64{dev.ID}) || len(userBelow) != 0 {
		t.Fatalf("paging: after %d %v, after %d %v, user's after %d %v", other.ID, exemptionIDs(after), user.ID, exemptionIDs(rest), user.ID, exemptionIDs(userBelow))
	}
}

// testExemptionsUserNameLookAlikes: an exemption covers its user name in
// any ASCII case and nothing else (storage.SameUserName). A look-alike
// that Unicode case mapping, or a database's lower(), would fold into the
// name (a Kelvin sign for the k of kate) is another user: listing or
// reading the exemptions of either finds its own only.
func testExemptionsUserNameLookAlikes(t *testing.T, s storage.Store) {
	ctx := t.Context()
	for i, c := range []struct{ what, plain, alike string }{
		{"Kelvin sign", "kate", "\u212Aate"},
		{"long s", "sam", "\u017Fam"},
		{"dotted capital I", "ida", "\u0130da"},
		{"fullwidth k", "kate", "\uff4Bate"},
	} {
		t.Run(c.what, func(t *testing.T) {
			domain := fmt.Sprintf("@%d.example.com", i)
			plain, alike := c.plain+domain, c.alike+domain
			// Interleaved, so that each user's rows are among the newest.
			var own, others []int64
			for _, name := range []string{plain, alike, asciiUpper(plain), asciiUpper(alike)} {
				e := createExemption(t, s, newExemption("", name))
				if name == plain || name == asciiUpper(plain) {
					own = append(own, e.ID)
				} else {
					others = append(others, e.ID)
				}
			}
			slices.Reverse(own) // newest first
			slices.Reverse(others)
			for _, q := range []struct {
				name string
				want []int64
			}{
				{plain, own}, {asciiUpper(plain), own},
				{alike, others}, {asciiUpper(alike), others},
			} {
				listed, err := s.ListExemptions(ctx, storage.ExemptionFilter{Username: q.name})
				must(t, err)
				if got := exemptionIDs(listed); !slices.Equal(got, q.want) {
					t.Errorf("ListExemptions(Username %+q) = %v, want %v", q.name, got, q.want)
				}
				active, err := s.ListExemptions(ctx, storage.ExemptionFilter{Username: q.name, ActiveAt: at(hour)})
				must(t, err)
				if got := exemptionIDs(active); !slices.Equal(got, q.want) {
					t.Errorf("ListExemptions(Username %+q, active) = %v, want %v", q.name, got, q.want)
				}
				read, err := s.ExemptionsFor(ctx, "dev-9", q.name, at(hour))
				must(t, err)
				if got := exemptionIDs(read); !slices.Equal(got, q.want) {
					t.Errorf("ExemptionsFor(%+q) = %v, want %v", q.name, got, q.want)
				}
			}
		})
	}
}

// lookAlikeFlood is more exemptions than the SQL backends read for one
// sign-in (sqlstore's maxExemptionsFor, 100) or list by default
// (storage.DefaultDecisionLimit).
const lookAlikeFlood = 150

// testExemptionsLookAlikesPastTheBound: a sign-in reads a bounded number
// of exemptions, newest first. However many newer exemptions a look-alike
// of the user's name has, they are not among them, so they cannot push
// out the user's own; nor do they fill the user's listing.
func testExemptionsLookAlikesPastTheBound(t *testing.T, s storage.Store) {
	ctx := t.Context()
	const alike = "\u212Aate@example.com"
	own := createExemption(t, s, newExemption("", "kate@example.com"))
	for range lookAlikeFlood {
		createExemption(t, s, newExemption("", alike))
	}
	for _, name := range []string{"kate@example.com", "Kate@Example.com", "KATE@EXAMPLE.COM"} {
		es, err := s.ExemptionsFor(ctx, "", name, at(hour))
		must(t, err)
		if got := exemptionIDs(es); !slices.Equal(got, []int64{own.ID}) {
			t.Errorf("ExemptionsFor(%+q) = %d exemptions, the user's own among them: %v; want only %d",
				name, len(got), slices.Contains(got, own.ID), own.ID)
		}
		listed, err := s.ListExemptions(ctx, storage.ExemptionFilter{Username: name, ActiveAt: at(hour)})
		must(t, err)
		if got := exemptionIDs(listed); !slices.Equal(got, []int64{own.ID}) {
			t.Errorf("ListExemptions(Username %+q) = %d exemptions, the user's own among them: %v; want only %d",
				name, len(got), slices.Contains(got, own.ID), own.ID)
		}
	}
	es, err := s.ExemptionsFor(ctx, "", alike, at(hour))
	must(t, err)
	if len(es) == 0 || slices.Contains(exemptionIDs(es), own.ID) {
		t.Errorf("ExemptionsFor(%+q) = %v, want the look-alike's own", alike, exemptionIDs(es))
	}
	for _, e := range es {
		if e.Username != alike {
			t.Fatalf("ExemptionsFor(%+q) read %+q's exemption %d", alike, e.Username, e.ID)
		}
	}
}

// An exemption counts until ExpiresAt, and not at ExpiresAt.
func testExemptionsExpire(t *testing.T, s storage.Store) {
	ctx := t.Context()
	e := createExemption(t, s, newExemption("dev-1", ""))
	for _, c := range []struct {
		when time.Time
		want int
	}{{at(24*hour - 1), 1}, {at(24 * hour), 0}, {at(48 * hour), 0}} {
		es, err := s.ExemptionsFor(ctx, "dev-1", "", c.when)
		must(t, err)
		if len(es) != c.want || e.Active(c.when) != (c.want == 1) {
			t.Errorf("at %v: %d exemptions (Active %v), want %d", c.when, len(es), e.Active(c.when), c.want)
		}
		active, err := s.ListExemptions(ctx, storage.ExemptionFilter{ActiveAt: c.when})
		must(t, err)
		if len(active) != c.want {
			t.Errorf("ListExemptions active at %v: %d, want %d", c.when, len(active), c.want)
		}
	}
	// Bounds outside the storable range select all or nothing.
	if es, err := s.ListExemptions(ctx, storage.ExemptionFilter{ActiveAt: time.Date(1, 1, 1, 0, 0, 1, 0, time.UTC)}); err != nil || len(es) != 1 {
		t.Errorf("active in year 1: %v, %v", es, err)
	}
	if es, err := s.ListExemptions(ctx, storage.ExemptionFilter{ActiveAt: time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)}); err != nil || len(es) != 0 {
		t.Errorf("active in year 9999: %v, %v", es, err)
	}
}

func testExemptionsRevoke(t *testing.T, s storage.Store) {
	ctx := t.Context()
	e := createExemption(t, s, newExemption("dev-1", ""))
	must(t, s.RevokeExemption(ctx, e.ID, at(hour), "cli", exemptionAudit("exemption.revoke", "dev-1")))
	if es, _ := s.ListAudit(ctx, storage.AuditFilter{DeviceID: "dev-1", Limit: 10}); len(es) != 2 || es[0].Action != "exemption.revoke" {
		t.Fatalf("audit after revoke: %+v", es)
	}
	wantErr(t, s.RevokeExemption(ctx, e.ID, at(2*hour), "cli", exemptionAudit("exemption.revoke", "dev-1")), storage.ErrAlreadyExists)
	wantErr(t, s.RevokeExemption(ctx, 999999, at(hour), "cli", exemptionAudit("exemption.revoke", "")), storage.ErrNotFound)
	got, err := s.GetExemption(ctx, e.ID)
	must(t, err)
	if !got.RevokedAt.Equal(at(hour)) || got.RevokedBy != "cli" || got.Active(at(2*hour)) {
		t.Fatalf("revoked exemption = %+v", got)
	}
	if es, err := s.ExemptionsFor(ctx, "dev-1", "", at(2*hour)); err != nil || len(es) != 0 {
		t.Fatalf("revoked exemption still counts: %v, %v", es, err)
	}
}

func testExemptionsRefused(t *testing.T, s storage.Store) {
	ctx := t.Context()
	for name, e := range map[string]storage.Exemption{
		"device and user": newExemption("dev-1", "alice@example.com"),
		"neither":         newExemption("", ""),
		"comma in policy": newExemption("dev-1", "", "a,b"),
		"empty policy":    newExemption("dev-1", "", ""),
		"NUL in reason":   func() storage.Exemption { e := newExemption("dev-1", ""); e.Reason = "a\x00b"; return e }(),
		"no expiry":       func() storage.Exemption { e := newExemption("dev-1", ""); e.ExpiresAt = time.Time{}; return e }(),
		"oversized reason": func() storage.Exemption {
			e := newExemption("dev-1", "")
			e.Reason = strings.Repeat("x", 1<<20)
			return e
		}(),
		"too many policies": newExemption("dev-1", "", manyIDs(storage.MaxExemptionPolicies+1)...),
	} {
		if _, err := s.CreateExemption(ctx, e, exemptionAudit("exemption.grant", e.DeviceID)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if es, err := s.ListExemptions(ctx, storage.ExemptionFilter{}); err != nil || len(es) != 0 {
		t.Fatalf("refused exemptions left rows: %v, %v", es, err)
	}
}

func manyIDs(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("p%d", i)
	}
	return out
}

// Each decision keeps its enforcement outcome and each result its rollout;
// the log filters by outcome.
func testDecisionModes(t *testing.T, s storage.Store) {
	ctx := t.Context()
	monitor := newDecision("alice", "dev-1", true, at(0))
	monitor.Mode = "monitor"
	monitor.Results[1] = storage.DecisionResult{PolicyID: "firewall", Status: "FAIL", Required: true,
		Enforcement: "monitor", Waiver: "monitor", GraceEnds: at(72 * hour).UTC(), ExemptionID: 7, OtherExemptionIDs: []int64{9, 12}}
	monitor = appendDecision(t, s, monitor)
	warned := newDecision("alice", "dev-1", true, at(minute))
	warned.Mode = "warned"
	warned = appendDecision(t, s, warned)
	bypassed := newDecision("bob", "dev-2", true, at(2*minute))
	bypassed.Mode = "bypassed"
	bypassed = appendDecision(t, s, bypassed)
	plain := appendDecision(t, s, newDecision("bob", "dev-2", false, at(3*minute)))

	list := func(modes ...string) []int64 {
		return ids(listDecisions(t, s, storage.DecisionFilter{Modes: modes}))
	}
	if got := list("monitor"); !slices.Equal(got, []int64{monitor.ID}) {
		t.Errorf("monitor: %v", got)
	}
	if got := list("warn", "warned"); !slices.Equal(got, []int64{warned.ID}) {
		t.Errorf("warned: %v", got)
	}
	if got := list("bypassed", "monitor"); !slices.Equal(got, []int64{bypassed.ID, monitor.ID}) {
		t.Errorf("bypassed or monitor: %v", got)
	}
	if got := list(); len(got) != 4 || got[0] != plain.ID {
		t.Errorf("no filter: %v", got)
	}
	ds, err := s.ListDecisions(ctx, storage.DecisionFilter{Modes: []string{"monitor"}})
	must(t, err)
	if len(ds) != 1 || ds[0].Mode != "monitor" || !reflect.DeepEqual(ds[0].Results[1], monitor.Results[1]) {
		t.Fatalf("monitor decision read back as %+v", ds)
	}
}

// testSharedRollout: replicas on one database share grace starts, bypass
// uses and exemptions, and agree on each race.
func testSharedRollout(t *testing.T, open func() (storage.Store, error)) {
	ctx := t.Context()
	stores := openStores(t, open, 2)
	a, b := stores[0], stores[1]

	first, err := a.StartGrace(ctx, "dev-1", "firewall", at(0))
	must(t, err)
	second, err := b.StartGrace(ctx, "dev-1", "firewall", at(hour))
	must(t, err)
	if !first.Equal(second) {
		t.Fatalf("replicas disagree on the grace start: %v and %v", first, second)
	}

	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		s := stores[i%2]
		wg.Go(func() { errs[i] = s.UseBypass(ctx, "dev-1", "firewall", "alice", at(time.Duration(i)), at(-hour)) })
	}
	wg.Wait()
	oneWinner(t, "bypasses across replicas", errs, storage.ErrAlreadyExists)

	e := createExemption(t, a, newExemption("dev-1", ""))
	if es, err := b.ExemptionsFor(ctx, "dev-1", "", at(hour)); err != nil || len(es) != 1 || es[0].ID != e.ID {
		t.Fatalf("exemption granted on a, seen on b: %v, %v", es, err)
	}
	must(t, b.RevokeExemption(ctx, e.ID, at(hour), "cli", exemptionAudit("exemption.revoke", "dev-1")))
	if es, err := a.ExemptionsFor(ctx, "dev-1", "", at(2*hour)); err != nil || len(es) != 0 {
		t.Fatalf("exemption revoked on b still counts on a: %v, %v", es, err)
	}
}
