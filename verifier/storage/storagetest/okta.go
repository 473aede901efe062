package storagetest

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/clearance/clearance/verifier/storage"
)

var oktaTests = []test{
	{"CursorMissing", testOktaCursorMissing},
	{"PageStoredOnce", testOktaPageStoredOnce},
	{"Filters", testOktaFilters},
	{"Refused", testOktaRefused},
	{"Retention", testOktaRetention},
	{"DecisionClient", testDecisionClient},
}

func oktaSignIn(uuid string, minutes int) storage.OktaSignIn {
	return storage.OktaSignIn{
		UUID: uuid, Published: at(time.Duration(minutes) * minute), EventType: "user.session.start",
		Username: "alice@example.com", ClientIP: "192.0.2.7", UserAgent: "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7)",
		OS: "Mac OS X", Outcome: "SUCCESS", SeenAt: at(hour),
	}
}

func utcSignIn(e storage.OktaSignIn) storage.OktaSignIn {
	e.Published, e.SeenAt = e.Published.UTC(), e.SeenAt.UTC()
	return e
}

func testOktaCursorMissing(t *testing.T, s storage.Store) {
	if _, err := s.OktaCursor(t.Context(), "logs"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("OktaCursor on an empty store: %v, want ErrNotFound", err)
	}
}

func testOktaPageStoredOnce(t *testing.T, s storage.Store) {
	ctx := t.Context()
	a, b := oktaSignIn("uuid-a", 0), oktaSignIn("uuid-b", 1)
	b.DecisionID = 42
	added, err := s.SaveOktaLogPage(ctx, "logs", "https://org/api/v1/logs?after=1", at(hour), []storage.OktaSignIn{a, b})
	must(t, err)
	equal(t, "added", added, []string{"uuid-a", "uuid-b"})
	// The same page again (a crash before the cursor moved), with one new
	// event: only the new one is added; the cursor moves on.
	c := oktaSignIn("uuid-c", 2)
	c.Unmatched = true
	added, err = s.SaveOktaLogPage(ctx, "logs", "https://org/api/v1/logs?after=2", at(2*hour), []storage.OktaSignIn{b, a, c})
	must(t, err)
	equal(t, "added again", added, []string{"uuid-c"})
	cur, err := s.OktaCursor(ctx, "logs")
	must(t, err)
	equal(t, "cursor", cur, "https://org/api/v1/logs?after=2")
	got, err := s.ListOktaSignIns(ctx, storage.OktaSignInFilter{})
	must(t, err)
	equal(t, "ListOktaSignIns", got, []storage.OktaSignIn{utcSignIn(c), utcSignIn(b), utcSignIn(a)})
	// An empty page still moves the cursor.
	added, err = s.SaveOktaLogPage(ctx, "logs", "https://org/api/v1/logs?after=3", at(3*hour), nil)
	must(t, err)
	equal(t, "added from an empty page", len(added), 0)
	cur, _ = s.OktaCursor(ctx, "logs")
	equal(t, "cursor after an empty page", cur, "https://org/api/v1/logs?after=3")
}

func testOktaFilters(t *testing.T, s storage.Store) {
	ctx := t.Context()
	var page []storage.OktaSignIn
	for i := range 6 {
		e := oktaSignIn(fmt.Sprintf("u%d", i), i)
		e.Unmatched = i%2 == 0
		if i == 3 {
			e.DecisionID = 7
		}
		page = append(page, e)
	}
	_, err := s.SaveOktaLogPage(ctx, "logs", "c", at(hour), page)
	must(t, err)
	got, err := s.ListOktaSignIns(ctx, storage.OktaSignInFilter{Unmatched: true})
	must(t, err)
	equal(t, "unmatched", uuids(got), []string{"u4", "u2", "u0"})
	got, err = s.ListOktaSignIns(ctx, storage.OktaSignInFilter{DecisionID: 7})
	must(t, err)
	equal(t, "by decision", uuids(got), []string{"u3"})
	got, err = s.ListOktaSignIns(ctx, storage.OktaSignInFilter{Since: page[4].Published, Limit: 1})
	must(t, err)
	equal(t, "since, limit 1", uuids(got), []string{"u5"})
}

func uuids(es []storage.OktaSignIn) []string {
	return each(es, func(e storage.OktaSignIn) string { return e.UUID })
}

func testOktaRefused(t *testing.T, s storage.Store) {
	ctx := t.Context()
	long := oktaSignIn("long", 0)
	long.UserAgent = strings.Repeat("x", storage.MaxTextLen+1)
	for name, tc := range map[string]struct {
		cursorName, cursor string
		events             []storage.OktaSignIn
	}{
		"no cursor name":    {"", "c", nil},
		"long cursor":       {"logs", strings.Repeat("c", storage.MaxOktaCursorLen+1), nil},
		"empty uuid":        {"logs", "c", []storage.OktaSignIn{oktaSignIn("", 0)}},
		"long user agent":   {"logs", "c", []storage.OktaSignIn{long}},
		"too many events":   {"logs", "c", make([]storage.OktaSignIn, storage.MaxOktaPage+1)},
		"bad UTF-8 in type": {"logs", "c", []storage.OktaSignIn{func() storage.OktaSignIn { e := oktaSignIn("x", 0); e.EventType = "\xff"; return e }()}},
	} {
		if _, err := s.SaveOktaLogPage(ctx, tc.cursorName, tc.cursor, at(0), tc.events); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	// Nothing of a refused page is stored, not even its cursor.
	if _, err := s.OktaCursor(ctx, "logs"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("cursor after refused pages: %v, want ErrNotFound", err)
	}
}

func testOktaRetention(t *testing.T, s storage.Store) {
	ctx := t.Context()
	_, err := s.SaveOktaLogPage(ctx, "logs", "c", at(hour), []storage.OktaSignIn{oktaSignIn("old", 0), oktaSignIn("new", 10)})
	must(t, err)
	n, err := s.DeleteOktaSignInsBefore(ctx, oktaSignIn("", 5).Published)
	must(t, err)
	equal(t, "deleted", n, 1)
	got, _ := s.ListOktaSignIns(ctx, storage.OktaSignInFilter{})
	equal(t, "kept", uuids(got), []string{"new"})
}

func testDecisionClient(t *testing.T, s storage.Store) {
	d := newDecision("alice@example.com", "dev-001", true, at(0))
	d.ClientIP = "2001:db8::7"
	d.UserAgent = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Safari/605.1.15"
	d = appendDecision(t, s, d)
	got, err := s.ListDecisions(t.Context(), storage.DecisionFilter{Username: d.Username})
	must(t, err)
	equal(t, "decision with client", got, []storage.DecisionRecord{d})
}
