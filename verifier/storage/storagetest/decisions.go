package storagetest

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/clearance/clearance/verifier/storage"
)

var decisionTests = []test{
	{"AppendAndList", testDecisionAppendList},
	{"AppendLazy", testDecisionAppendLazy},
	{"ResultsRoundTrip", testDecisionResults},
	{"Filters", testDecisionFilters},
	{"Paging", testDecisionPaging},
	{"Limits", testDecisionLimits},
	{"DeleteBefore", testDeleteDecisionsBefore},
	{"RefusesUnstorable", testDecisionUnstorable},
}

func ptr[T any](v T) *T { return &v }

// newDecision is a sign-in by user from device at time when, allowed or
// denied.
func newDecision(user, device string, allow bool, when time.Time) storage.DecisionRecord {
	d := storage.DecisionRecord{
		At:         when,
		Username:   user,
		DeviceID:   device,
		CertSerial: "5e0001",
		Allow:      allow,
		Reason:     "allowed",
		Results: []storage.DecisionResult{
			{PolicyID: "filevault", Status: "PASS", Required: true, Critical: true},
			{PolicyID: "firewall", Status: "PASS", Required: true},
		},
		PolicySetVersion: "sha256:3b1f",
		ReportSeq:        42,
		LiveCheck:        "none",
		Latency:          3*time.Millisecond + 141592*time.Nanosecond,
		Source:           "sso",
		RequestID:        fmt.Sprintf("id-%s-%d", user, when.UnixNano()),
		Binding:          "agent",
	}
	if !allow {
		d.Reason = "policy_failed"
		d.Results[1] = storage.DecisionResult{PolicyID: "firewall", Status: "FAIL", Required: true}
	}
	return d
}

func appendDecision(t *testing.T, s storage.Store, d storage.DecisionRecord) storage.DecisionRecord {
	t.Helper()
	id, err := s.AppendDecision(t.Context(), d)
	must(t, err)
	d.ID = id
	return d
}

// testDecisionAppendLazy: a store that appends decisions lazily returns
// one that is on record at once and, once durable returns, stored as any
// other; a bad one is refused with nothing stored.
func testDecisionAppendLazy(t *testing.T, s storage.Store) {
	l, ok := s.(storage.LazyDecisionAppender)
	if !ok {
		t.Skip("the store appends every decision durably")
	}
	ctx := t.Context()
	d := newDecision("ada@example.com", "dev-1", true, t0)
	id, durable, err := l.AppendDecisionLazy(ctx, d)
	must(t, err)
	d.ID = id
	if got := listDecisions(t, s, storage.DecisionFilter{Limit: 10}); len(got) != 1 || got[0].ID != id {
		t.Fatalf("before durable: %+v, want decision %d", got, id)
	}
	must(t, durable(ctx))
	equal(t, "ListDecisions", listDecisions(t, s, storage.DecisionFilter{Limit: 10}), []storage.DecisionRecord{d})
	bad := d
	bad.Username = "x\x00y"
	if _, _, err := l.AppendDecisionLazy(ctx, bad); err == nil {
		t.Fatal("a decision with a NUL in it was stored")
	}
	if got := listDecisions(t, s, storage.DecisionFilter{Limit: 10}); len(got) != 1 {
		t.Fatalf("after a refused append: %d decisions, want 1", len(got))
	}
}

func listDecisions(t *testing.T, s storage.Store, f storage.DecisionFilter) []storage.DecisionRecord {
	t.Helper()
	ds, err := s.ListDecisions(t.Context(), f)
	must(t, err)
	return ds
}

func ids(ds []storage.DecisionRecord) []int64 {
	return each(ds, func(d storage.DecisionRecord) int64 { return d.ID })
}

// reversed is ds newest (last appended) first.
func reversed(ds ...storage.DecisionRecord) []storage.DecisionRecord {
	out := make([]storage.DecisionRecord, 0, len(ds))
	for i := len(ds) - 1; i >= 0; i-- {
		out = append(out, ds[i])
	}
	return out
}

func testDecisionAppendList(t *testing.T, s storage.Store) {
	if got := listDecisions(t, s, storage.DecisionFilter{}); len(got) != 0 {
		t.Fatalf("ListDecisions on an empty store = %v, want none", got)
	}
	// Appended out of time order: the list follows the IDs, not At.
	var ds []storage.DecisionRecord
	for i, when := range []time.Duration{2 * minute, 0, 3 * minute} {
		d := newDecision(fmt.Sprintf("user%d@example.com", i), "dev-001", i != 1, at(when))
		ds = append(ds, appendDecision(t, s, d))
	}
	// Every field of a full record round-trips.
	full := storage.DecisionRecord{
		At:         at(time.Hour + time.Nanosecond),
		Username:   "zoë.o'brien+\"test\"@example.com",
		DeviceID:   "dev-002",
		CertSerial: "1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d",
		Allow:      false,
		Reason:     "stale_posture",
		Results: []storage.DecisionResult{
			{PolicyID: "os-version", Status: "ERROR", Required: true, Message: "no such table: os_version"},
			{PolicyID: "gatekeeper", Status: "MISSING", Required: true, Critical: true},
		},
		PolicySetVersion: "v7",
		ReportSeq:        math.MaxInt64,
		LiveCheck:        "timed_out",
		Latency:          5*time.Second + time.Nanosecond,
		Source:           "sso_retry",
		RequestID:        "id0123456789abcdef",
		UserNotBound:     true,
	}
	full = appendDecision(t, s, full)
	ds = append(ds, full)
	// UserNotBound finds it, and only it, with the other filters too.
	equal(t, "ListDecisions not bound", listDecisions(t, s, storage.DecisionFilter{UserNotBound: true}), []storage.DecisionRecord{full})
	equal(t, "ListDecisions not bound on another device", listDecisions(t, s, storage.DecisionFilter{UserNotBound: true, DeviceID: "dev-001"}), []storage.DecisionRecord{})
	equal(t, "ListDecisions bound on its device", listDecisions(t, s, storage.DecisionFilter{Bound: true, DeviceID: "dev-002"}), []storage.DecisionRecord{})
	if got := listDecisions(t, s, storage.DecisionFilter{Bound: true}); len(got) != len(ds)-1 || slices.ContainsFunc(got, func(d storage.DecisionRecord) bool { return d.UserNotBound }) {
		t.Errorf("ListDecisions bound: %v, want every record but the one not bound", ids(got))
	}
	// A refused proof's row names the device it claimed, under none; the
	// claimed device's own decisions leave it out.
	claimed := newDecision("mallory@example.com", "", false, at(2*time.Hour))
	claimed.Reason, claimed.Results, claimed.ClaimedDeviceID = "presence_bad_signature", nil, "dev-002"
	ds = append(ds, appendDecision(t, s, claimed))
	equal(t, "ListDecisions of the claimed device", listDecisions(t, s, storage.DecisionFilter{DeviceID: "dev-002"}), []storage.DecisionRecord{full})
	// ClaimedDeviceID finds it, and only it.
	equal(t, "ListDecisions claiming the device", listDecisions(t, s, storage.DecisionFilter{ClaimedDeviceID: "dev-002"}), []storage.DecisionRecord{ds[len(ds)-1]})
	equal(t, "ListDecisions claiming another device", listDecisions(t, s, storage.DecisionFilter{ClaimedDeviceID: "dev-001"}), []storage.DecisionRecord{})

	for i, d := range ds {
		if d.ID <= 0 || (i > 0 && d.ID <= ds[i-1].ID) {
			t.Errorf("IDs in append order = %v, want positive and increasing", ids(ds))
			break
		}
	}
	equal(t, "ListDecisions", listDecisions(t, s, storage.DecisionFilter{}), reversed(ds...))
}

func testDecisionResults(t *testing.T, s storage.Store) {
	cases := []struct {
		name    string
		results []storage.DecisionResult
	}{
		{"none", nil},
		{"empty", []storage.DecisionResult{}},
		{"every field", []storage.DecisionResult{{
			PolicyID: "screen-lock", Status: "ERROR", Required: true, Critical: true,
			Message: "near \"SELEC\": syntax error\n\ttab, 'quote', \\backslash\\, <xml/> & ünïcödé ✓ \u2028 \x01",
		}}},
		{"zero values", []storage.DecisionResult{{}}},
		{"many", func() []storage.DecisionResult {
			var rs []storage.DecisionResult
			for i := range 50 {
				rs = append(rs, storage.DecisionResult{
					PolicyID: fmt.Sprintf("policy-%02d", i), Status: []string{"PASS", "FAIL", "ERROR", "MISSING"}[i%4],
					Required: i%2 == 0, Critical: i%3 == 0, Message: strings.Repeat("m", i),
				})
			}
			return rs
		}()},
	}
	for _, tc := range cases {
		d := newDecision("alice@example.com", "dev-001", false, t0)
		d.Results = tc.results
		d = appendDecision(t, s, d)
		got := listDecisions(t, s, storage.DecisionFilter{Limit: 1})
		if len(got) != 1 {
			t.Fatalf("%s: ListDecisions returned %d records, want 1", tc.name, len(got))
		}
		equal(t, "decision with results "+tc.name, got[0], d)
	}
}

func testDecisionFilters(t *testing.T, s storage.Store) {
	var (
		a1 = appendDecision(t, s, newDecision("alice@example.com", "dev-001", true, at(0)))
		b1 = appendDecision(t, s, newDecision("bob@example.com", "dev-002", false, at(minute)))
		a2 = appendDecision(t, s, newDecision("alice@example.com", "dev-002", false, at(2*minute)))
		n1 = appendDecision(t, s, newDecision("carol@example.com", "", false, at(3*minute))) // no device
		a3 = appendDecision(t, s, newDecision("alice@example.com", "dev-001", true, at(4*minute)))
		// Appended last, but made earlier than the rest.
		b2 = appendDecision(t, s, newDecision("bob@example.com", "dev-002", true, at(-minute)))
	)
	farPast := time.Date(1, time.January, 2, 0, 0, 0, 0, time.UTC)
	farFuture := time.Date(9999, time.December, 31, 23, 59, 59, 999999999, time.UTC)
	// The same instant in another zone bounds the same way.
	inUTC := func(d time.Duration) time.Time { return at(d).UTC() }

	cases := []struct {
		name string
		f    storage.DecisionFilter
		want []storage.DecisionRecord
	}{
		{"none", storage.DecisionFilter{}, reversed(a1, b1, a2, n1, a3, b2)},
		{"username", storage.DecisionFilter{Username: "alice@example.com"}, reversed(a1, a2, a3)},
		{"username in any case of A-Z", storage.DecisionFilter{Username: "ALICE@example.com"}, reversed(a1, a2, a3)},
		{"unknown username", storage.DecisionFilter{Username: "dave@example.com"}, nil},
		{"device", storage.DecisionFilter{DeviceID: "dev-002"}, reversed(b1, a2, b2)},
		{"unknown device", storage.DecisionFilter{DeviceID: "dev-999"}, nil},
		{"allowed", storage.DecisionFilter{Allow: ptr(true)}, reversed(a1, a3, b2)},
		{"denied", storage.DecisionFilter{Allow: ptr(false)}, reversed(b1, a2, n1)},
		{"since is inclusive", storage.DecisionFilter{Since: at(2 * minute)}, reversed(a2, n1, a3)},
		{"until is exclusive", storage.DecisionFilter{Until: at(2 * minute)}, reversed(a1, b1, b2)},
		{"since and until", storage.DecisionFilter{Since: at(minute), Until: at(3 * minute)}, reversed(b1, a2)},
		{"since and until in UTC", storage.DecisionFilter{Since: inUTC(minute), Until: inUTC(3 * minute)}, reversed(b1, a2)},
		{"one nanosecond window", storage.DecisionFilter{Since: at(minute), Until: at(minute + 1)}, reversed(b1)},
		{"empty window", storage.DecisionFilter{Since: at(minute), Until: at(minute)}, nil},
		{"until before since", storage.DecisionFilter{Since: at(3 * minute), Until: at(minute)}, nil},
		// Bounds no backend can store still bound (the admin API takes any
		// year from 1 to 9999).
		{"since long ago", storage.DecisionFilter{Since: farPast}, reversed(a1, b1, a2, n1, a3, b2)},
		{"until far ahead", storage.DecisionFilter{Until: farFuture}, reversed(a1, b1, a2, n1, a3, b2)},
		{"since far ahead", storage.DecisionFilter{Since: farFuture}, nil},
		{"until long ago", storage.DecisionFilter{Until: farPast}, nil},
		{"since long ago until far ahead", storage.DecisionFilter{Since: farPast, Until: farFuture, Allow: ptr(true)}, reversed(a1, a3, b2)},
		{"before ID", storage.DecisionFilter{BeforeID: n1.ID}, reversed(a1, b1, a2)},
		{"before the first ID", storage.DecisionFilter{BeforeID: a1.ID}, nil},
		{"before a later ID", storage.DecisionFilter{BeforeID: b2.ID + 1000}, reversed(a1, b1, a2, n1, a3, b2)},
		{"negative before ID is from the newest", storage.DecisionFilter{BeforeID: -1}, reversed(a1, b1, a2, n1, a3, b2)},
		{"limit", storage.DecisionFilter{Limit: 2}, reversed(a3, b2)},
		{"username and allowed", storage.DecisionFilter{Username: "alice@example.com", Allow: ptr(true)}, reversed(a1, a3)},
		{"username and device", storage.DecisionFilter{Username: "alice@example.com", DeviceID: "dev-002"}, reversed(a2)},
		{"everything", storage.DecisionFilter{
			Username: "alice@example.com", DeviceID: "dev-001", Allow: ptr(true),
			Since: at(0), Until: at(5 * minute), BeforeID: a3.ID, Limit: 10,
		}, reversed(a1)},
	}
	for _, tc := range cases {
		equal(t, "ListDecisions "+tc.name, listDecisions(t, s, tc.f), tc.want)
	}

	// A username recorded in another case of A-Z is the same user, as a
	// sign-in compares them; a letter beyond A-Z that folds to one (U+212A,
	// the Kelvin sign, for K) is another user, in either direction.
	a4 := appendDecision(t, s, newDecision("Alice@Example.COM", "dev-001", true, at(5*minute)))
	k1 := appendDecision(t, s, newDecision("\u212Aate@example.com", "dev-003", true, at(6*minute)))
	for _, tc := range []struct {
		name     string
		username string
		want     []storage.DecisionRecord
	}{
		{"recorded in another case", "alice@example.com", reversed(a1, a2, a3, a4)},
		{"asked in another case", "aLiCe@EXAMPLE.com", reversed(a1, a2, a3, a4)},
		{"a look-alike is another username", "kate@example.com", nil},
		{"the look-alike's own", "\u212Aate@EXAMPLE.com", reversed(k1)},
	} {
		equal(t, "ListDecisions username "+tc.name, listDecisions(t, s, storage.DecisionFilter{Username: tc.username}), tc.want)
	}
}

// Following BeforeID from page to page visits every match once, newest first.
func testDecisionPaging(t *testing.T, s storage.Store) {
	var alice []storage.DecisionRecord
	for i := range 7 {
		alice = append(alice, appendDecision(t, s, newDecision("alice@example.com", "dev-001", i%2 == 0, at(time.Duration(i)*minute))))
		appendDecision(t, s, newDecision("bob@example.com", "dev-002", true, at(time.Duration(i)*minute)))
	}
	f := storage.DecisionFilter{Username: "alice@example.com", Limit: 3}
	var got []storage.DecisionRecord
	pages := 0
	for {
		page := listDecisions(t, s, f)
		got = append(got, page...)
		pages++
		if len(page) < f.Limit || pages > 10 {
			break
		}
		f.BeforeID = page[len(page)-1].ID
	}
	equal(t, "pages of alice's decisions", got, reversed(alice...))
	if pages != 3 {
		t.Errorf("read %d pages of 3, want 3", pages)
	}
}

func testDecisionLimits(t *testing.T, s storage.Store) {
	const n = storage.MaxDecisionLimit + 5
	for i := range n {
		appendDecision(t, s, newDecision("alice@example.com", "dev-001", true, at(time.Duration(i))))
	}
	cases := []struct{ limit, want int }{
		{0, storage.DefaultDecisionLimit},
		{-1, storage.DefaultDecisionLimit},
		{1, 1},
		{storage.DefaultDecisionLimit + 1, storage.DefaultDecisionLimit + 1},
		{storage.MaxDecisionLimit, storage.MaxDecisionLimit},
		{storage.MaxDecisionLimit + 1, storage.MaxDecisionLimit},
		{1 << 40, storage.MaxDecisionLimit},
	}
	for _, tc := range cases {
		got := listDecisions(t, s, storage.DecisionFilter{Limit: tc.limit})
		if len(got) != tc.want {
			t.Errorf("ListDecisions(limit %d) returned %d records, want %d", tc.limit, len(got), tc.want)
			continue
		}
		// Whatever the limit, the newest come first.
		if at := got[0].At; !at.Equal(t0.Add(n - 1)) {
			t.Errorf("ListDecisions(limit %d) starts at %s, want the newest", tc.limit, fmtTime(at))
		}
	}
}

func testDeleteDecisionsBefore(t *testing.T, s storage.Store) {
	ctx := t.Context()
	appendDecision(t, s, newDecision("alice@example.com", "dev-001", true, at(-2*hour)))
	atCutoff := appendDecision(t, s, newDecision("bob@example.com", "dev-002", false, at(-hour)))
	// Appended after the cutoff's record but older: retention goes by At.
	appendDecision(t, s, newDecision("alice@example.com", "dev-001", false, at(-hour-1)))
	recent := appendDecision(t, s, newDecision("alice@example.com", "dev-001", true, t0))

	n, err := s.DeleteDecisionsBefore(ctx, at(-hour))
	must(t, err)
	if n != 2 {
		t.Errorf("DeleteDecisionsBefore = %d, want 2 (strictly before the cutoff)", n)
	}
	n, err = s.DeleteDecisionsBefore(ctx, at(-hour))
	must(t, err)
	if n != 0 {
		t.Errorf("second DeleteDecisionsBefore = %d, want 0", n)
	}
	equal(t, "ListDecisions after retention", listDecisions(t, s, storage.DecisionFilter{}), reversed(atCutoff, recent))

	// Deleting everything, the newest included, does not let IDs go back:
	// a cursor from before can never name a new record.
	n, err = s.DeleteDecisionsBefore(ctx, at(hour))
	must(t, err)
	if n != 2 {
		t.Errorf("DeleteDecisionsBefore of everything = %d, want 2", n)
	}
	next := appendDecision(t, s, newDecision("alice@example.com", "dev-001", true, at(2*hour)))
	if next.ID <= recent.ID {
		t.Errorf("ID after deleting every record = %d, want more than %d", next.ID, recent.ID)
	}
	equal(t, "ListDecisions after deleting everything", listDecisions(t, s, storage.DecisionFilter{}), reversed(next))
}

func testDecisionUnstorable(t *testing.T, s storage.Store) {
	ctx := t.Context()
	kept := appendDecision(t, s, newDecision("alice@example.com", "dev-001", true, t0))
	long := strings.Repeat("a", storage.MaxTextLen+1)
	cases := []struct {
		name   string
		change func(d *storage.DecisionRecord)
	}{
		{"username too long", func(d *storage.DecisionRecord) { d.Username = long }},
		{"device ID too long", func(d *storage.DecisionRecord) { d.DeviceID = long }},
		{"request ID too long", func(d *storage.DecisionRecord) { d.RequestID = long }},
		{"reason too long", func(d *storage.DecisionRecord) { d.Reason = long }},
		{"username not UTF-8", func(d *storage.DecisionRecord) { d.Username = "alice\xff" }},
		{"username with NUL", func(d *storage.DecisionRecord) { d.Username = "alice\x00" }},
		{"results too long", func(d *storage.DecisionRecord) {
			d.Results = []storage.DecisionResult{{PolicyID: "p", Status: "ERROR", Message: strings.Repeat("m", storage.MaxDecisionResultsLen)}}
		}},
		{"report seq beyond int64", func(d *storage.DecisionRecord) { d.ReportSeq = math.MaxUint64 }},
		{"time out of range", func(d *storage.DecisionRecord) { d.At = time.Date(9999, 12, 31, 0, 0, 0, 0, time.UTC) }},
	}
	for _, tc := range cases {
		d := newDecision("bob@example.com", "dev-002", false, at(minute))
		tc.change(&d)
		if _, err := s.AppendDecision(ctx, d); err == nil {
			t.Errorf("%s: AppendDecision succeeded, want an error", tc.name)
		}
	}
	equal(t, "ListDecisions after refused appends", listDecisions(t, s, storage.DecisionFilter{}), []storage.DecisionRecord{kept})

	// The longest text allowed round-trips.
	d := newDecision(strings.Repeat("ü", storage.MaxTextLen/2), strings.Repeat("d", storage.MaxTextLen), false, at(minute))
	d.RequestID = strings.Repeat("r", storage.MaxTextLen)
	d = appendDecision(t, s, d)
	equal(t, "ListDecisions longest username", listDecisions(t, s, storage.DecisionFilter{Username: d.Username}), []storage.DecisionRecord{d})
}
