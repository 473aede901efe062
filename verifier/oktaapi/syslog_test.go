package oktaapi_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/clearance/clearance/internal/oktaorg"
	"github.com/clearance/clearance/verifier/oktaapi"
	"github.com/clearance/clearance/verifier/storage"
	"github.com/clearance/clearance/verifier/storage/sqlite"
)

const (
	safariMac = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15"
	chromeWin = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36"
)

// event is a System Log event as Okta sends it.
func event(uuid, typ, user, os, ua, result string, published time.Time) oktaorg.Event {
	return oktaorg.Event{
		"uuid": uuid, "published": published.UTC().Format("2006-01-02T15:04:05.000Z"), "eventType": typ,
		"version": "0", "severity": "INFO", "displayMessage": "User login to Okta", "legacyEventType": "core.user_auth.login_success",
		"actor":   map[string]any{"id": "00u" + user, "type": "User", "alternateId": user + "@example.com", "displayName": user},
		"client":  map[string]any{"ipAddress": "198.51.100.7", "userAgent": map[string]any{"rawUserAgent": ua, "os": os, "browser": "SAFARI"}, "zone": "null", "device": "Computer"},
		"outcome": map[string]any{"result": result},
		"target":  []any{},
	}
}

func openStore(t *testing.T, dir string) *sqlite.Store {
	t.Helper()
	s, err := sqlite.Open(context.Background(), filepath.Join(dir, "clearance.db"))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func allow(t *testing.T, s storage.Store, user, ua string, at time.Time, ok bool) int64 {
	t.Helper()
	reason := "allowed"
	if !ok {
		reason = "policy_failed"
	}
	id, err := s.AppendDecision(context.Background(), storage.DecisionRecord{
		At: at, Username: user + "@example.com", DeviceID: "DEV-" + user, Allow: ok, Reason: reason,
		Source: "sso", LiveCheck: "none", ClientIP: "10.1.2.3", UserAgent: ua,
	})
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func TestSystemLogCorrelation(t *testing.T) {
	t.Parallel()
	org, c, _ := newOrg(t)
	dir := t.TempDir()
	store := openStore(t, dir)
	reg := prometheus.NewRegistry()
	m := oktaapi.NewLogMetrics(reg)
	poller := func(s storage.Store) *oktaapi.LogPoller {
		return &oktaapi.LogPoller{Client: c, Store: s, Metrics: m}
	}
	now := time.Now()

	aliceOK := allow(t, store, "alice", safariMac, now.Add(-40*time.Second), true)
	erinDenied := allow(t, store, "erin", safariMac, now.Add(-30*time.Second), false)
	// Frank was allowed in another browser: his Safari sign-in is not that one.
	allow(t, store, "frank", chromeWin, now.Add(-20*time.Second), true)
	// Ivy's Mac passed a Cloudflare posture check: that is no sign-in
	// through Clearance, so her Okta sign-in still alerts.
	if _, err := store.AppendDecision(context.Background(), storage.DecisionRecord{
		At: now.Add(-60 * time.Second), Username: "ivy@example.com", DeviceID: "DEV-ivy", Allow: true, Reason: "allowed",
		Source: storage.SourceCloudflare, LiveCheck: "none", Score: 100,
	}); err != nil {
		t.Fatal(err)
	}
	org.AddEvent(event("e-alice", oktaapi.EventSessionStart, "alice", "Mac OS X", safariMac, "SUCCESS", now.Add(-30*time.Second)))
	org.AddEvent(event("e-bob", oktaapi.EventSessionStart, "bob", "Mac OS X", safariMac, "SUCCESS", now.Add(-25*time.Second)))
	org.AddEvent(event("e-carol", oktaapi.EventSessionStart, "carol", "Windows 10", chromeWin, "SUCCESS", now.Add(-20*time.Second)))
	org.AddEvent(event("e-dave-sso", oktaapi.EventSSO, "dave", "Mac OS X", safariMac, "SUCCESS", now.Add(-15*time.Second)))
	org.AddEvent(event("e-erin", oktaapi.EventSessionStart, "erin", "Mac OS X", safariMac, "SUCCESS", now.Add(-10*time.Second)))
	org.AddEvent(event("e-frank", oktaapi.EventSessionStart, "frank", "Mac OS X", safariMac, "SUCCESS", now.Add(-5*time.Second)))
	org.AddEvent(event("e-alice-fail", oktaapi.EventSessionStart, "alice", "Mac OS X", safariMac, "FAILURE", now.Add(-4*time.Second)))
	org.AddEvent(event("e-ivy", oktaapi.EventSessionStart, "ivy", "Mac OS X", safariMac, "SUCCESS", now.Add(-3500*time.Millisecond)))
	// Not a sign-in: the query's filter leaves it out.
	org.AddEvent(event("e-other", "user.lifecycle.create", "gina", "", "", "SUCCESS", now.Add(-3*time.Second)))

	n, err := poller(store).Poll(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if n != 8 {
		t.Fatalf("stored %d events, want 8", n)
	}
	unmatched, err := store.ListOktaSignIns(context.Background(), storage.OktaSignInFilter{Unmatched: true})
	if err != nil {
		t.Fatal(err)
	}
	// Bob: no decision at all. Erin: Clearance denied, Okta let her in.
	// Frank: the allow was another browser's. Ivy: only Cloudflare's.
	if got := uuidsOf(unmatched); got != "e-ivy e-frank e-erin e-bob" {
		t.Errorf("alerts %q, want e-ivy e-frank e-erin e-bob", got)
	}
	if got := testutil.ToFloat64(m.UnmatchedCounter()); got != 4 {
		t.Errorf("clearance_okta_unmatched_signins_total = %v, want 4", got)
	}
	// What Okta did after each decision is on record.
	for id, want := range map[int64]string{aliceOK: "e-alice-fail e-alice", erinDenied: "e-erin"} {
		got, _ := store.ListOktaSignIns(context.Background(), storage.OktaSignInFilter{DecisionID: id})
		if uuidsOf(got) != want {
			t.Errorf("events after decision %d: %q, want %q", id, uuidsOf(got), want)
		}
	}

	// A restart: the cursor is in the database. Okta then serves an event
	// published before the last one read (persisted late), and one it
	// already served.
	if err := store.Close(); err != nil {
		t.Fatal(err)
	}
	store = openStore(t, dir)
	defer store.Close()
	before := len(org.Requests())
	org.AddEvent(event("e-late", oktaapi.EventSessionStart, "hank", "Mac OS X", safariMac, "SUCCESS", now.Add(-50*time.Second)))
	org.AddEvent(event("e-bob", oktaapi.EventSessionStart, "bob", "Mac OS X", safariMac, "SUCCESS", now.Add(-25*time.Second)))
	n, err = poller(store).Poll(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Errorf("after the restart stored %d events, want 1 (e-late; e-bob again is not new)", n)
	}
	if got := testutil.ToFloat64(m.UnmatchedCounter()); got != 5 {
		t.Errorf("clearance_okta_unmatched_signins_total = %v, want 5", got)
	}
	reqs := org.Requests()[before:]
	if len(reqs) != 2 {
		t.Errorf("after the restart %d requests, want 2 (the new page, then an empty one)", len(reqs))
	}
	all, _ := store.ListOktaSignIns(context.Background(), storage.OktaSignInFilter{})
	if len(all) != 9 {
		t.Errorf("%d events stored in all, want 9", len(all))
	}
}

// failingStore fails one SaveOktaLogPage: a crash between reading a page
// and storing it.
type failingStore struct {
	*sqlite.Store
	saves, failAt int
}

func (f *failingStore) SaveOktaLogPage(ctx context.Context, name, cursor string, at time.Time, es []storage.OktaSignIn) ([]string, error) {
	f.saves++
	if f.saves == f.failAt {
		return nil, errors.New("disk full")
	}
	return f.Store.SaveOktaLogPage(ctx, name, cursor, at, es)
}

func TestSystemLogPollSurvivesFailures(t *testing.T) {
	t.Parallel()
	org, c, _ := newOrg(t)
	store := openStore(t, t.TempDir())
	defer store.Close()
	now := time.Now()
	for i := range 2500 {
		org.AddEvent(event(fmt.Sprintf("e%05d", i), oktaapi.EventSessionStart, fmt.Sprintf("u%d", i%7), "Mac OS X", safariMac, "SUCCESS", now.Add(-time.Minute)))
	}
	m := oktaapi.NewLogMetrics(nil)
	fs := &failingStore{Store: store, failAt: 2}
	p := &oktaapi.LogPoller{Client: c, Store: fs, Metrics: m}
	// Okta fails past the retries: nothing is stored, nothing is lost.
	org.FailNext(500, 500, 500, 500)
	if _, err := p.Poll(context.Background()); err == nil {
		t.Fatal("a poll against a failing Okta succeeded")
	}
	// The first page is stored; the second is read, then not stored.
	n1, err := p.Poll(context.Background())
	if err == nil || n1 != 1000 {
		t.Fatalf("first poll: %d, %v; want 1000 and the store's error", n1, err)
	}
	// The next poll reads the second page again, then the third.
	n2, err := p.Poll(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if n1+n2 != 2500 {
		t.Errorf("stored %d + %d events, want 2500", n1, n2)
	}
	if got := testutil.ToFloat64(m.UnmatchedCounter()); got != 2500 {
		t.Errorf("clearance_okta_unmatched_signins_total = %v, want 2500: each event counted once", got)
	}
}

func TestSystemLogCursorOfAnotherOrg(t *testing.T) {
	t.Parallel()
	org, c, _ := newOrg(t)
	store := openStore(t, t.TempDir())
	defer store.Close()
	// A cursor stored while the verifier read another org.
	if _, err := store.SaveOktaLogPage(context.Background(), oktaapi.LogCursor, "https://old.okta.com/api/v1/logs?after=x", time.Now(), nil); err != nil {
		t.Fatal(err)
	}
	org.AddEvent(event("e1", oktaapi.EventSessionStart, "ann", "Mac OS X", safariMac, "SUCCESS", time.Now().Add(-time.Minute)))
	n, err := (&oktaapi.LogPoller{Client: c, Store: store}).Poll(context.Background())
	if err != nil || n != 1 {
		t.Fatalf("poll after the org changed: %d, %v; want the new org's event", n, err)
	}
	cur, _ := store.OktaCursor(context.Background(), oktaapi.LogCursor)
	if !strings.HasPrefix(cur, org.URL()+"/api/v1/logs?") {
		t.Errorf("cursor %q is not on the new org", cur)
	}
}

func uuidsOf(es []storage.OktaSignIn) string {
	var s []string
	for _, e := range es {
		s = append(s, e.UUID)
	}
	return strings.Join(s, " ")
}

// TestSystemLogLookAlikeLogin: an Okta sign-in by a login that differs
// from a decision's username in ASCII case is that decision's; one by a
// look-alike (a Kelvin sign for the k) is another user's, with no decision
// of Clearance to answer for it.
func TestSystemLogLookAlikeLogin(t *testing.T) {
	t.Parallel()
	org, c, _ := newOrg(t)
	store := openStore(t, t.TempDir())
	defer store.Close()
	now := time.Now()
	kate := allow(t, store, "kate", safariMac, now.Add(-40*time.Second), true)
	org.AddEvent(event("e-kate", oktaapi.EventSessionStart, "KATE", "Mac OS X", safariMac, "SUCCESS", now.Add(-30*time.Second)))
	org.AddEvent(event("e-kelvin", oktaapi.EventSessionStart, "\u212Aate", "Mac OS X", safariMac, "SUCCESS", now.Add(-20*time.Second)))
	if _, err := (&oktaapi.LogPoller{Client: c, Store: store}).Poll(context.Background()); err != nil {
		t.Fatal(err)
	}
	unmatched, _ := store.ListOktaSignIns(context.Background(), storage.OktaSignInFilter{Unmatched: true})
	if got := uuidsOf(unmatched); got != "e-kelvin" {
		t.Errorf("alerts %q, want e-kelvin", got)
	}
	got, _ := store.ListOktaSignIns(context.Background(), storage.OktaSignInFilter{DecisionID: kate})
	if uuidsOf(got) != "e-kate" {
		t.Errorf("events after kate's decision: %q, want e-kate", uuidsOf(got))
	}
}
