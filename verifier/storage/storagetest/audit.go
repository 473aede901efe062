package storagetest

import (
	"fmt"
	"testing"
	"time"

	"github.com/clearance/clearance/verifier/storage"
)

var auditTests = []test{
	{"AppendAndList", testAuditAppendList},
	{"SameTimeNewestAppendedFirst", testAuditSameTime},
	{"Filters", testAuditFilters},
	{"Limits", testAuditLimits},
	{"Paging", testAuditPaging},
	{"DeleteBefore", testDeleteAuditBefore},
	{"Subjects", testAuditSubjects},
	{"UserFilter", testAuditUserFilter},
	{"UserFilterPaging", testAuditUserPaging},
	{"ListedSubjects", testAuditListedSubjects},
	{"SubjectsCapped", testAuditSubjectsCapped},
	{"SubjectBytesCapped", testAuditSubjectBytesCapped},
	{"UserFilterIDFirst", testAuditUserFilterIDFirst},
	{"SubjectsRetention", testAuditSubjectsRetention},
	{"SubjectsFromPeople", testAuditSubjectsFromPeople},
}

// withoutIDs is es with their IDs zeroed, to compare with events as
// appended.
func withoutIDs(es []storage.AuditEvent) []storage.AuditEvent {
	if es == nil {
		return nil
	}
	out := make([]storage.AuditEvent, len(es))
	for i, e := range es {
		e.ID = 0
		out[i] = e
	}
	return out
}

// listAuditFilter is ListAudit(f), every event's ID checked to be
// positive.
func listAuditFilter(t *testing.T, s storage.Store, f storage.AuditFilter) []storage.AuditEvent {
	t.Helper()
	es, err := s.ListAudit(t.Context(), f)
	must(t, err)
	for _, e := range es {
		if e.ID <= 0 {
			t.Errorf("event %+v has ID %d, want a positive one", e, e.ID)
		}
	}
	return es
}

func appendAudit(t *testing.T, s storage.Store, es ...storage.AuditEvent) {
	t.Helper()
	for _, e := range es {
		must(t, s.AppendAudit(t.Context(), e))
	}
}

func testAuditAppendList(t *testing.T, s storage.Store) {
	if got := listAuditFilter(t, s, storage.AuditFilter{}); len(got) != 0 {
		t.Fatalf("ListAudit on an empty store = %v, want none", got)
	}
	// Appended out of time order: the list is newest first by At.
	events := []storage.AuditEvent{
		{At: at(2 * hour), Actor: "admin-api", Action: "device.revoke", DeviceID: "dev-a", Detail: "stolen"},
		{At: at(hour), Actor: "agent", Action: "device.enroll", DeviceID: "dev-b", Detail: `quotes ' " and \ survive`},
		{At: at(3 * hour), Actor: "agent", Action: "device.renew", DeviceID: "dev-a"},
		{At: at(0), Actor: "cli", Action: "secret.create", Detail: "fleet"},
	}
	appendAudit(t, s, events...)
	byTime := []storage.AuditEvent{events[2], events[0], events[1], events[3]}

	got := listAuditFilter(t, s, storage.AuditFilter{})
	equal(t, "ListAudit", withoutIDs(got), byTime)
	seen := map[int64]bool{}
	for _, e := range got {
		if seen[e.ID] {
			t.Errorf("ID %d is given to two events", e.ID)
		}
		seen[e.ID] = true
	}
	// IDs follow the order of appending.
	if len(got) == 4 && !(got[1].ID < got[2].ID && got[2].ID < got[0].ID && got[0].ID < got[3].ID) {
		t.Errorf("IDs in list order = %d %d %d %d, want appending order 2nd < 3rd < 1st < 4th",
			got[0].ID, got[1].ID, got[2].ID, got[3].ID)
	}
}

func testAuditSameTime(t *testing.T, s storage.Store) {
	var events []storage.AuditEvent
	for _, detail := range []string{"first", "second", "third"} {
		e := storage.AuditEvent{At: t0, Actor: "cli", Action: "secret.create", Detail: detail}
		must(t, s.AppendAudit(t.Context(), e))
		events = append([]storage.AuditEvent{e}, events...)
	}
	equal(t, "ListAudit", listAudit(t, s, ""), events)
}

func testAuditFilters(t *testing.T, s storage.Store) {
	const (
		dev1 = "0d5c3a1e-1111-4000-8000-000000000001"
		dev2 = "0d5c3a1e-2222-4000-8000-000000000002"
		dev3 = "7f00aa00-3333-4000-8000-000000000003"
	)
	e := []storage.AuditEvent{
		{At: at(0), Actor: "agent", Action: "device.enroll", DeviceID: dev1},
		{At: at(hour), Actor: "admin-api", Action: "device.revoke", DeviceID: dev1, Detail: "stolen"},
		{At: at(2 * hour), Actor: "scim:tok1", Action: "user.create", Detail: "alice@example.com"},
		{At: at(3 * hour), Actor: "cli", Action: "exemption.grant", DeviceID: dev2},
		{At: at(4 * hour), Actor: "admin-api", Action: "device.enroll_approve", DeviceID: dev3},
		{At: at(5 * hour), Actor: "admin-api", Action: "devices.import"},
		{At: at(6 * hour), Actor: "admin-api", Action: "device", DeviceID: "0d5c3a1e"},
		{At: at(7 * hour), Actor: "cli", Action: "secret.revoke", DeviceID: "0d5c3a1f-0000"},
		{At: at(8 * hour), Actor: "scim:tok10", Action: "user.deactivate", DeviceID: "0d5c3a1eé-π"},
	}
	appendAudit(t, s, e...)
	// newest picks events by index, newest first.
	newest := func(is ...int) []storage.AuditEvent {
		var out []storage.AuditEvent
		for k := len(e) - 1; k >= 0; k-- {
			for _, i := range is {
				if i == k {
					out = append(out, e[k])
				}
			}
		}
		return out
	}
	far := time.Date(2, 1, 1, 0, 0, 0, 0, time.UTC) // year 1 is the zero time: no bound
	farFuture := time.Date(9999, 12, 31, 0, 0, 0, 0, time.UTC)
	cases := []struct {
		name string
		f    storage.AuditFilter
		want []storage.AuditEvent
	}{
		{"everything", storage.AuditFilter{}, newest(0, 1, 2, 3, 4, 5, 6, 7, 8)},
		{"device", storage.AuditFilter{DeviceID: dev1}, newest(0, 1)},
		{"device is exact", storage.AuditFilter{DeviceID: "0d5c3a1e"}, newest(6)},
		{"device prefix", storage.AuditFilter{DevicePrefix: "0d5c3a1e"}, newest(0, 1, 3, 6, 8)},
		{"device prefix, one device", storage.AuditFilter{DevicePrefix: "0d5c3a1e-2"}, newest(3)},
		{"device prefix, whole id", storage.AuditFilter{DevicePrefix: dev3}, newest(4)},
		{"device prefix beyond ASCII", storage.AuditFilter{DevicePrefix: "0d5c3a1eé"}, newest(8)},
		{"device prefix, nothing", storage.AuditFilter{DevicePrefix: "ffff"}, nil},
		{"device prefix at the last code point", storage.AuditFilter{DevicePrefix: "0d5c3a1e\U0010FFFF"}, nil},
		{"actor", storage.AuditFilter{Actor: "admin-api"}, newest(1, 4, 5, 6)},
		{"actor is exact", storage.AuditFilter{Actor: "scim:tok1"}, newest(2)},
		{"actor is case-sensitive", storage.AuditFilter{Actor: "CLI"}, nil},
		{"action", storage.AuditFilter{Action: "device.revoke"}, newest(1)},
		{"action is exact", storage.AuditFilter{Action: "device"}, newest(6)},
		{"action prefix", storage.AuditFilter{Action: "device."}, newest(0, 1, 4)},
		{"action prefix is case-sensitive", storage.AuditFilter{Action: "DEVICE."}, nil},
		{"action prefix of a prefix", storage.AuditFilter{Action: "devices."}, newest(5)},
		{"action prefix, LIKE's wildcards are plain", storage.AuditFilter{Action: "%."}, nil},
		{"since is inclusive", storage.AuditFilter{Since: at(7 * hour)}, newest(7, 8)},
		{"until is exclusive", storage.AuditFilter{Until: at(hour)}, newest(0)},
		{"since and until", storage.AuditFilter{Since: at(hour), Until: at(3 * hour)}, newest(1, 2)},
		{"since long ago", storage.AuditFilter{Since: far}, newest(0, 1, 2, 3, 4, 5, 6, 7, 8)},
		{"since far ahead", storage.AuditFilter{Since: farFuture}, nil},
		{"until long ago", storage.AuditFilter{Until: far}, nil},
		{"until far ahead", storage.AuditFilter{Until: farFuture}, newest(0, 1, 2, 3, 4, 5, 6, 7, 8)},
		{"filters and", storage.AuditFilter{Actor: "admin-api", Action: "device.", DevicePrefix: "0d5c"}, newest(1)},
		{"filters and, to nothing", storage.AuditFilter{Actor: "cli", DeviceID: dev1}, nil},
		{"limit", storage.AuditFilter{Actor: "admin-api", Limit: 2}, newest(5, 6)},
	}
	for _, tc := range cases {
		equal(t, fmt.Sprintf("ListAudit(%s)", tc.name), withoutIDs(listAuditFilter(t, s, tc.f)), tc.want)
	}
}

func testAuditLimits(t *testing.T, s storage.Store) {
	for i := range storage.DefaultAuditLimit + 1 {
		appendAudit(t, s, storage.AuditEvent{At: at(time.Duration(i) * minute), Actor: "cli", Action: "secret.create"})
	}
	for _, limit := range []int{0, -1} {
		if got := listAuditFilter(t, s, storage.AuditFilter{Limit: limit}); len(got) != storage.DefaultAuditLimit {
			t.Errorf("ListAudit(limit %d) returned %d events, want the default %d", limit, len(got), storage.DefaultAuditLimit)
		}
	}
	if got := listAuditFilter(t, s, storage.AuditFilter{Limit: storage.MaxAuditLimit * 10}); len(got) != storage.DefaultAuditLimit+1 {
		t.Errorf("ListAudit(limit %d) returned %d events, want all %d", storage.MaxAuditLimit*10, len(got), storage.DefaultAuditLimit+1)
	}
}

func testAuditPaging(t *testing.T, s storage.Store) {
	// Events share times, and were appended out of time order: a page
	// boundary inside a run of equal times must neither skip nor repeat.
	for i, d := range []time.Duration{2, 1, 1, 1, 3, 1, 2, 2, 0, 1, 3} {
		appendAudit(t, s, storage.AuditEvent{At: at(d * hour), Actor: "cli", Action: "secret.create",
			DeviceID: fmt.Sprintf("dev-%d", i%2), Detail: fmt.Sprint(i)})
	}
	for _, f := range []storage.AuditFilter{{}, {DeviceID: "dev-1"}, {Since: at(hour), Until: at(3 * hour)}} {
		all := listAuditFilter(t, s, f)
		for size := 1; size <= 4; size++ {
			var got []storage.AuditEvent
			page := f
			page.Limit = size
			for range len(all) + 2 {
				es := listAuditFilter(t, s, page)
				got = append(got, es...)
				if len(es) < size {
					break
				}
				last := es[len(es)-1]
				page.BeforeAt, page.BeforeID = last.At, last.ID
			}
			equal(t, fmt.Sprintf("pages of %d of %+v", size, f), got, all)
		}
	}
	// A cursor outside the storable range: before everything, or after.
	if got := listAuditFilter(t, s, storage.AuditFilter{BeforeAt: time.Date(2, 1, 1, 0, 0, 0, 0, time.UTC), BeforeID: 1}); len(got) != 0 {
		t.Errorf("ListAudit before year 2 = %d events, want none", len(got))
	}
	if got := listAuditFilter(t, s, storage.AuditFilter{BeforeAt: time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC), BeforeID: 1}); len(got) != 11 {
		t.Errorf("ListAudit before year 9999 = %d events, want all 11", len(got))
	}
}

func testDeleteAuditBefore(t *testing.T, s storage.Store) {
	ctx := t.Context()
	old := storage.AuditEvent{At: at(-2 * hour), Actor: "cli", Action: "secret.create"}
	atCutoff := storage.AuditEvent{At: at(-hour), Actor: "admin-api", Action: "device.revoke", DeviceID: "dev-1"}
	// Appended after the cutoff's event but older: retention goes by At.
	justBefore := storage.AuditEvent{At: at(-hour - time.Nanosecond), Actor: "agent", Action: "device.renew", DeviceID: "dev-1"}
	recent := storage.AuditEvent{At: t0, Actor: "cli", Action: "exemption.grant", DeviceID: "dev-1"}
	appendAudit(t, s, old, atCutoff, justBefore, recent)

	n, err := s.DeleteAuditBefore(ctx, at(-hour))
	must(t, err)
	if n != 2 {
		t.Errorf("DeleteAuditBefore = %d, want 2 (strictly before the cutoff)", n)
	}
	if n, err = s.DeleteAuditBefore(ctx, at(-hour)); err != nil || n != 0 {
		t.Errorf("second DeleteAuditBefore = %d, %v; want 0", n, err)
	}
	equal(t, "ListAudit after retention", listAudit(t, s, ""), []storage.AuditEvent{recent, atCutoff})
	equal(t, "device's audit after retention", listAudit(t, s, "dev-1"), []storage.AuditEvent{recent, atCutoff})

	// A cutoff beyond what can be stored is refused, not taken as "all".
	if _, err := s.DeleteAuditBefore(ctx, time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)); err == nil {
		t.Error("DeleteAuditBefore(year 9999) succeeded, want an error")
	}
	equal(t, "ListAudit after a refused delete", listAudit(t, s, ""), []storage.AuditEvent{recent, atCutoff})
}
