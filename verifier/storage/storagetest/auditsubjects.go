package storagetest

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/clearance/clearance/verifier/storage"
)

// subject is an audit subject.
func subject(id, name string) storage.AuditSubject {
	return storage.AuditSubject{UserID: id, UserName: name}
}

// byUser is ListAudit of the events about user, without their IDs.
func byUser(t *testing.T, s storage.Store, user string) []storage.AuditEvent {
	t.Helper()
	return withoutIDs(listAuditFilter(t, s, storage.AuditFilter{User: user}))
}

func testAuditSubjects(t *testing.T, s storage.Store) {
	ctx := t.Context()
	none := storage.AuditEvent{At: at(0), Actor: "cli", Action: "secret.create", Detail: "no one"}
	two := storage.AuditEvent{At: at(hour), Actor: "scim:tok1", Action: "group.members", Detail: "2 added",
		Subjects: []storage.AuditSubject{subject("u2", "Bob@example.com"), subject("u1", "alice@example.com")}}
	// A subject named twice is kept once; one that names no one, not at
	// all; a username with no directory user is a subject on its own.
	repeated := storage.AuditEvent{At: at(2 * hour), Actor: "cli", Action: "exemption.grant", Detail: "r",
		Subjects: []storage.AuditSubject{subject("", "carol@example.com"), {}, subject("", "carol@example.com")}}
	appendAudit(t, s, none, two, repeated)
	wantRepeated := repeated
	wantRepeated.Subjects = []storage.AuditSubject{subject("", "carol@example.com")}
	equal(t, "ListAudit with subjects", withoutIDs(listAuditFilter(t, s, storage.AuditFilter{})),
		[]storage.AuditEvent{wantRepeated, two, none})

	// A subject that cannot be stored fails the append, and appends
	// nothing.
	bad := storage.AuditEvent{At: at(3 * hour), Actor: "cli", Action: "x", Subjects: []storage.AuditSubject{subject("u1", "nul\x00")}}
	if err := s.AppendAudit(ctx, bad); err == nil {
		t.Error("AppendAudit with a NUL in a subject succeeded")
	}
	if got := listAuditFilter(t, s, storage.AuditFilter{}); len(got) != 3 {
		t.Errorf("after a refused append: %d events, want 3", len(got))
	}
}

func testAuditUserFilter(t *testing.T, s storage.Store) {
	e := []storage.AuditEvent{
		{At: at(0), Actor: "scim:tok1", Action: "user.create", Subjects: []storage.AuditSubject{subject("u1", "alice@example.com")}},
		{At: at(hour), Actor: "scim:tok1", Action: "user.create", Subjects: []storage.AuditSubject{subject("u2", "bob@example.com")}},
		// Each member added is a subject: the event is about both.
		{At: at(2 * hour), Actor: "okta-api-sync", Action: "group.members",
			Subjects: []storage.AuditSubject{subject("u1", "alice@example.com"), subject("u2", "bob@example.com")}},
		{At: at(3 * hour), Actor: "admin-api", Action: "device.assign", DeviceID: "dev-1",
			Subjects: []storage.AuditSubject{subject("u1", "Alice@Example.com")}},
		// A look-alike: a Cyrillic а (U+0430) for the first a.
		{At: at(4 * hour), Actor: "scim:tok1", Action: "user.create", Subjects: []storage.AuditSubject{subject("u3", "\u0430lice@example.com")}},
		// Alice deleted; her username given later to someone else.
		{At: at(5 * hour), Actor: "scim:tok1", Action: "user.delete", Subjects: []storage.AuditSubject{subject("u1", "alice@example.com")}},
		{At: at(6 * hour), Actor: "scim:tok1", Action: "user.create", Subjects: []storage.AuditSubject{subject("u9", "ALICE@example.com")}},
		// A user exemption for a username no directory user has.
		{At: at(7 * hour), Actor: "cli", Action: "exemption.grant", Subjects: []storage.AuditSubject{subject("", "dora@example.com")}},
		// A Kelvin sign (U+212A) folds to k in Unicode, not here.
		{At: at(8 * hour), Actor: "cli", Action: "exemption.grant", Subjects: []storage.AuditSubject{subject("", "\u212Aim@example.com")}},
		{At: at(9 * hour), Actor: "cli", Action: "secret.create"},
	}
	appendAudit(t, s, e...)
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
	// Filtered by Bob, the event about both names him first.
	bobFirst := e[2]
	bobFirst.Subjects = []storage.AuditSubject{e[2].Subjects[1], e[2].Subjects[0]}
	cases := []struct {
		name string
		f    storage.AuditFilter
		want []storage.AuditEvent
	}{
		{"by id", storage.AuditFilter{User: "u1"}, newest(0, 2, 3, 5)},
		{"id is case-sensitive", storage.AuditFilter{User: "U1"}, nil},
		{"by username: everyone who had it", storage.AuditFilter{User: "alice@example.com"}, newest(0, 2, 3, 5, 6)},
		{"by username in other capitals", storage.AuditFilter{User: "ALICE@EXAMPLE.COM"}, newest(0, 2, 3, 5, 6)},
		{"a look-alike username is another", storage.AuditFilter{User: "\u0430lice@example.com"}, newest(4)},
		{"the look-alike's id", storage.AuditFilter{User: "u3"}, newest(4)},
		{"username without an id", storage.AuditFilter{User: "Dora@example.com"}, newest(7)},
		{"no Unicode case folding", storage.AuditFilter{User: "kim@example.com"}, nil},
		{"nobody", storage.AuditFilter{User: "zed@example.com"}, nil},
		{"unstorable", storage.AuditFilter{User: "alice\x00"}, nil},
		{"and actor", storage.AuditFilter{User: "u2", Actor: "okta-api-sync"}, []storage.AuditEvent{bobFirst}},
		{"and action", storage.AuditFilter{User: "alice@example.com", Action: "user."}, newest(0, 5, 6)},
		{"and device", storage.AuditFilter{User: "u1", DeviceID: "dev-1"}, newest(3)},
		{"and time", storage.AuditFilter{User: "u1", Since: at(hour), Until: at(5 * hour)}, newest(2, 3)},
		{"and limit", storage.AuditFilter{User: "u1", Limit: 2}, newest(3, 5)},
	}
	for _, tc := range cases {
		equal(t, fmt.Sprintf("ListAudit(%s)", tc.name), withoutIDs(listAuditFilter(t, s, tc.f)), tc.want)
	}
}

func testAuditUserPaging(t *testing.T, s storage.Store) {
	// Events that share times, appended out of time order, each with
	// several subjects that match: every page boundary must neither skip
	// nor repeat one.
	for i, d := range []time.Duration{2, 1, 1, 1, 3, 1, 2, 2, 0, 1, 3} {
		subjects := []storage.AuditSubject{subject("u1", "alice@example.com"), subject("u1", "Alice-old@example.com")}
		if i%3 == 0 {
			subjects = append(subjects, subject("u2", "ALICE@example.com"), subject("u3", "bob@example.com"))
		}
		if i == 4 {
			subjects = []storage.AuditSubject{subject("u3", "bob@example.com")}
		}
		appendAudit(t, s, storage.AuditEvent{At: at(d * hour), Actor: "scim:tok1", Action: "group.members",
			Detail: fmt.Sprint(i), Subjects: subjects})
	}
	for _, f := range []storage.AuditFilter{{User: "alice@example.com"}, {User: "u1"}, {User: "u1", Since: at(hour), Until: at(3 * hour)}} {
		all := listAuditFilter(t, s, f)
		if len(all) != 10 && f.Since.IsZero() {
			t.Errorf("%+v: %d events, want 10", f, len(all))
		}
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
}

func testAuditListedSubjects(t *testing.T, s storage.Store) {
	// A group deleted names every member; a listing names the first
	// MaxListedAuditSubjects, and counts the others.
	var members []storage.AuditSubject
	for i := range storage.MaxListedAuditSubjects + 5 {
		members = append(members, subject(fmt.Sprintf("u%02d", i), fmt.Sprintf("user%02d@example.com", i)))
	}
	appendAudit(t, s, storage.AuditEvent{At: t0, Actor: "scim:tok1", Action: "group.delete", Subjects: members})
	got := listAuditFilter(t, s, storage.AuditFilter{})
	if len(got) != 1 {
		t.Fatalf("ListAudit = %d events, want 1", len(got))
	}
	equal(t, "listed subjects", got[0].Subjects, members[:storage.MaxListedAuditSubjects])
	if got[0].MoreSubjects != 5 {
		t.Errorf("MoreSubjects = %d, want 5", got[0].MoreSubjects)
	}
	// The person filtered by is listed first, however far down.
	last := members[len(members)-1]
	for _, user := range []string{last.UserID, strings.ToUpper(last.UserName)} {
		got = listAuditFilter(t, s, storage.AuditFilter{User: user})
		if len(got) != 1 || len(got[0].Subjects) != storage.MaxListedAuditSubjects || got[0].Subjects[0] != last ||
			got[0].Subjects[1] != members[0] || got[0].MoreSubjects != 5 {
			t.Errorf("ListAudit(User %q) = %+v, want %v first, then the others in order", user, got, last)
		}
	}
}

func testAuditSubjectsCapped(t *testing.T, s storage.Store) {
	// A change about more people than an event keeps names the first
	// MaxAuditSubjects, and says in its detail how many there were.
	n := storage.MaxAuditSubjects + 500
	var members []storage.AuditSubject
	for i := range n {
		members = append(members, subject(fmt.Sprintf("u%05d", i), fmt.Sprintf("user%05d@example.com", i)))
	}
	appendAudit(t, s, storage.AuditEvent{At: t0, Actor: "scim:tok1", Action: "group.members", Detail: "group g1: 0 members added, 1500 removed", Subjects: members})
	got := listAuditFilter(t, s, storage.AuditFilter{})
	if len(got) != 1 {
		t.Fatalf("ListAudit = %d events, want 1", len(got))
	}
	wantDetail := fmt.Sprintf("group g1: 0 members added, 1500 removed (%d people; the first %d named)", n, storage.MaxAuditSubjects)
	if got[0].Detail != wantDetail {
		t.Errorf("detail %q, want %q", got[0].Detail, wantDetail)
	}
	if got[0].MoreSubjects != storage.MaxAuditSubjects-storage.MaxListedAuditSubjects {
		t.Errorf("MoreSubjects = %d, want %d", got[0].MoreSubjects, storage.MaxAuditSubjects-storage.MaxListedAuditSubjects)
	}
	if _, ok := s.(snapshotter); ok {
		d, err := Dump(t.Context(), s)
		must(t, err)
		if rows := tableRows(d, "audit_subjects"); len(rows) != storage.MaxAuditSubjects {
			t.Errorf("%d subject rows kept, want %d", len(rows), storage.MaxAuditSubjects)
		}
	}
	// The last one kept is found; one past the cap is not.
	if got := byUser(t, s, members[storage.MaxAuditSubjects-1].UserID); len(got) != 1 || got[0].Subjects[0] != members[storage.MaxAuditSubjects-1] {
		t.Errorf("the last subject kept: %+v", got)
	}
	if got := byUser(t, s, members[storage.MaxAuditSubjects].UserName); len(got) != 0 {
		t.Errorf("a subject past the cap is found: %+v", got)
	}
}

func testAuditSubjectBytesCapped(t *testing.T, s storage.Store) {
	// People of long names: the bytes bound the subjects kept before the
	// count does.
	var members []storage.AuditSubject
	long := strings.Repeat("x", 480)
	for i := range 200 {
		members = append(members, subject(fmt.Sprintf("u%05d", i), fmt.Sprintf("%s%05d@example.com", long, i)))
	}
	per := len(members[0].UserID) + len(members[0].UserName)
	want := storage.MaxAuditSubjectBytes / per
	appendAudit(t, s, storage.AuditEvent{At: t0, Actor: "scim:tok1", Action: "group.members", Detail: "200 added", Subjects: members})
	got := listAuditFilter(t, s, storage.AuditFilter{})
	if len(got) != 1 || got[0].Detail != fmt.Sprintf("200 added (200 people; the first %d named)", want) ||
		len(got[0].Subjects)+got[0].MoreSubjects != want {
		t.Errorf("an event about 200 people of %d-byte names: %q, %d listed + %d more, want %d kept", per, got[0].Detail, len(got[0].Subjects), got[0].MoreSubjects, want)
	}
}

func testAuditUserFilterIDFirst(t *testing.T, s storage.Store) {
	// Someone whose username is another person's id does not join that
	// person's history: the id wins, as the admin API's lookups try it
	// first. Found by their own id, or by that username once no subject
	// has it as an id.
	alice := storage.AuditEvent{At: at(0), Actor: "scim:tok1", Action: "user.create", Subjects: []storage.AuditSubject{subject("00u1alice", "alice@example.com")}}
	intruder := storage.AuditEvent{At: at(hour), Actor: "scim:tok1", Action: "user.create", Subjects: []storage.AuditSubject{subject("00u2mallory", "00u1ALICE")}}
	appendAudit(t, s, alice, intruder)
	equal(t, "by alice's id", byUser(t, s, "00u1alice"), []storage.AuditEvent{alice})
	equal(t, "by the intruder's id", byUser(t, s, "00u2mallory"), []storage.AuditEvent{intruder})
	equal(t, "by the intruder's username, no one's id", byUser(t, s, "00u1ALICE"), []storage.AuditEvent{intruder})
	// Listed first only where the filter matched.
	got := listAuditFilter(t, s, storage.AuditFilter{User: "00u1alice"})
	if len(got) != 1 || len(got[0].Subjects) != 1 || got[0].Subjects[0].UserID != "00u1alice" {
		t.Errorf("alice's history lists %+v", got)
	}
}

func testAuditSubjectsRetention(t *testing.T, s storage.Store) {
	ctx := t.Context()
	old := storage.AuditEvent{At: at(-2 * hour), Actor: "scim:tok1", Action: "user.delete",
		Subjects: []storage.AuditSubject{subject("u1", "alice@example.com"), subject("u2", "bob@example.com")}}
	recent := storage.AuditEvent{At: t0, Actor: "admin-api", Action: "device.assign", DeviceID: "dev-1",
		Subjects: []storage.AuditSubject{subject("u2", "bob@example.com")}}
	appendAudit(t, s, old, recent)
	n, err := s.DeleteAuditBefore(ctx, at(-hour))
	must(t, err)
	if n != 1 {
		t.Errorf("DeleteAuditBefore = %d, want 1 event", n)
	}
	equal(t, "alice's events after retention", byUser(t, s, "alice@example.com"), []storage.AuditEvent(nil))
	equal(t, "bob's events after retention", byUser(t, s, "u2"), []storage.AuditEvent{recent})
	if _, ok := s.(snapshotter); ok {
		d, err := Dump(ctx, s)
		must(t, err)
		rows := tableRows(d, "audit_subjects")
		if len(rows) != 1 || !strings.Contains(rows[0], `user_id="u2"`) {
			t.Errorf("audit_subjects after retention = %q, want only the recent event's one row", rows)
		}
	}
}

// tableRows are the rows of table in a Dump.
func tableRows(dump, table string) []string {
	_, rest, ok := strings.Cut(dump, "table "+table+"\n")
	if !ok {
		return nil
	}
	var rows []string
	for _, line := range strings.Split(rest, "\n") {
		if !strings.HasPrefix(line, "  ") {
			break
		}
		rows = append(rows, line)
	}
	return rows
}

// testAuditSubjectsFromPeople: the people store names the people each
// user and group change is about, as they were, whatever the caller
// passed (kept too).
func testAuditSubjectsFromPeople(t *testing.T, s storage.Store) {
	ctx := t.Context()
	subjectsOf := func(action string) [][]storage.AuditSubject {
		t.Helper()
		var out [][]storage.AuditSubject
		for _, e := range listAuditFilter(t, s, storage.AuditFilter{Action: action}) {
			out = append(out, e.Subjects)
		}
		return out
	}
	type subjects = []storage.AuditSubject

	alice := createUser(t, s, "u1", "alice@example.com")
	createUser(t, s, "u2", "bob@example.com")
	createUser(t, s, "u3", "carol@example.com")
	equal(t, "user.create subjects", subjectsOf("user.create"),
		[]subjects{{subject("u3", "carol@example.com")}, {subject("u2", "bob@example.com")}, {subject("u1", "alice@example.com")}})

	// Renamed: found by either name. Deactivated: by the name it has.
	alice.UserName = "alice.smith@example.com"
	alice, err := s.UpdateUser(ctx, alice, scimAudit("user.update"))
	must(t, err)
	alice.Active = false
	_, err = s.UpdateUser(ctx, alice, scimAudit("user.deactivate"))
	must(t, err)
	equal(t, "user.update subjects", subjectsOf("user.update"),
		[]subjects{{subject("u1", "alice.smith@example.com"), subject("u1", "alice@example.com")}})
	equal(t, "user.deactivate subjects", subjectsOf("user.deactivate"), []subjects{{subject("u1", "alice.smith@example.com")}})
	// A refused update appends nothing.
	_, err = s.UpdateUser(ctx, alice, scimAudit("user.stale"))
	wantErr(t, err, storage.ErrStale)
	equal(t, "a stale update's events", subjectsOf("user.stale"), [][]storage.AuditSubject(nil))

	// A group: created with its members; each change names only the
	// members it added or removed, added first; a rename names no one.
	g := createGroup(t, s, newGroup("g1", "Eng", "u2", "u1"))
	equal(t, "group.create subjects", subjectsOf("group.create"),
		[]subjects{{subject("u1", "alice.smith@example.com"), subject("u2", "bob@example.com")}})
	g.Members = []string{"u3", "u1"}
	g, err = s.UpdateGroup(ctx, g, scimAudit("group.members"))
	must(t, err)
	g.DisplayName = "Engineering"
	g, err = s.UpdateGroup(ctx, g, scimAudit("group.rename"))
	must(t, err)
	equal(t, "group.members subjects", subjectsOf("group.members"),
		[]subjects{{subject("u3", "carol@example.com"), subject("u2", "bob@example.com")}})
	equal(t, "group.rename subjects", subjectsOf("group.rename"), []subjects{nil})

	// The caller's subjects stay, ahead of the store's.
	ev := scimAudit("group.create")
	ev.Action, ev.Subjects = "group.create2", []storage.AuditSubject{subject("", "dora@example.com")}
	_, err = s.CreateGroup(ctx, newGroup("g2", "Ops", "u3"), ev)
	must(t, err)
	equal(t, "caller's and store's subjects", subjectsOf("group.create2"),
		[]subjects{{subject("", "dora@example.com"), subject("u3", "carol@example.com")}})
	if len(ev.Subjects) != 1 {
		t.Errorf("the caller's event was changed: %v", ev.Subjects)
	}

	// A group deleted: the members it had. A user deleted (the caller
	// naming only the id): the username it had.
	must(t, s.DeleteGroup(ctx, "g1", 0, scimAudit("group.delete")))
	equal(t, "group.delete subjects", subjectsOf("group.delete"),
		[]subjects{{subject("u1", "alice.smith@example.com"), subject("u3", "carol@example.com")}})
	must(t, s.DeleteUser(ctx, "u1", 0, scimAudit("user.delete")))
	equal(t, "user.delete subjects", subjectsOf("user.delete"), []subjects{{subject("u1", "alice.smith@example.com")}})
	wantErr(t, s.DeleteUser(ctx, "u1", 0, scimAudit("user.delete")), storage.ErrNotFound)
	wantErr(t, s.DeleteGroup(ctx, "g1", 0, scimAudit("group.delete")), storage.ErrNotFound)

	// Alice's whole history, found by her first name after she is gone.
	var actions []string
	for _, e := range listAuditFilter(t, s, storage.AuditFilter{User: "alice@example.com"}) {
		actions = append(actions, e.Action)
	}
	equal(t, "alice's history by her first username", actions, []string{"user.update", "user.create"})
	actions = nil
	for _, e := range listAuditFilter(t, s, storage.AuditFilter{User: "u1"}) {
		actions = append(actions, e.Action)
	}
	equal(t, "alice's history by id", actions,
		[]string{"user.delete", "group.delete", "group.create", "user.deactivate", "user.update", "user.create"})
}
