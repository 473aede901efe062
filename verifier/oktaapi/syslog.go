package oktaapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/clearance/clearance/verifier/storage"
)

// LogCursor is the name the System Log cursor is stored under.
const LogCursor = "system_log"

// Defaults of the System Log poller.
const (
	DefaultLogInterval = time.Minute
	// DefaultLookback is how far back the first poll starts, with no
	// stored cursor.
	DefaultLookback = time.Hour
	// DefaultMatchBefore and DefaultMatchAfter bound the decisions an
	// event may match: Okta asks Clearance before it starts the session,
	// so the decision normally precedes the event by the seconds the
	// person spent on the ceremony; a remediation and "Check again" can
	// take minutes. After allows for the two clocks' skew.
	DefaultMatchBefore = 10 * time.Minute
	DefaultMatchAfter  = 2 * time.Minute
	// maxPagesPerPoll bounds one poll's pages, so that a backlog is read
	// over several polls instead of one long burst against rate limits.
	maxPagesPerPoll = 20
)

// DefaultAlertEvents are the event types that alert when no Clearance
// allow matches: a new Okta session. Add user.authentication.sso when
// Clearance is required on every app sign-in (an app policy with
// re-authentication on every sign-in); otherwise app sign-ins inside an
// existing session never reach Clearance and would alert falsely.
var DefaultAlertEvents = []string{EventSessionStart}

// LogStore is what the System Log poller reads and writes.
type LogStore interface {
	ListDecisions(ctx context.Context, f storage.DecisionFilter) ([]storage.DecisionRecord, error)
	OktaCursor(ctx context.Context, name string) (string, error)
	SaveOktaLogPage(ctx context.Context, cursorName, cursor string, at time.Time, events []storage.OktaSignIn) ([]string, error)
}

// LogMetrics are the System Log poller's metrics.
type LogMetrics struct {
	unmatched prometheus.Counter
	events    *prometheus.CounterVec
}

// NewLogMetrics registers the poller's metrics with reg (nil: unregistered).
func NewLogMetrics(reg prometheus.Registerer) *LogMetrics {
	m := &LogMetrics{
		unmatched: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "clearance_okta_unmatched_signins_total",
			Help: "Okta macOS sign-ins (System Log) that no Clearance allow matched: Okta let someone in without asking Clearance, or over its denial.",
		}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "clearance_okta_log_events_total",
			Help: "Okta System Log sign-in events read, by whether a Clearance allow matched them (allow, deny, none).",
		}, []string{"match"}),
	}
	if reg != nil {
		reg.MustRegister(m.unmatched, m.events)
	}
	return m
}

// LogPoller reads sign-in events from Okta's System Log with a polling
// query whose next link is the cursor, stored in the database so that a
// restart resumes where the last page ended, and matches each event to the
// Clearance decision that preceded it.
type LogPoller struct {
	Client  *Client
	Store   LogStore
	Log     *slog.Logger
	Metrics *LogMetrics
	// Interval between polls; Lookback, Before, After: see the defaults.
	Interval, Lookback, Before, After time.Duration
	// AlertEvents are the event types that alert when unmatched.
	AlertEvents []string
	Now         func() time.Time
}

func (p *LogPoller) now() time.Time {
	if p.Now != nil {
		return p.Now()
	}
	return time.Now()
}

func (p *LogPoller) log() *slog.Logger {
	if p.Log != nil {
		return p.Log
	}
	return slog.New(slog.DiscardHandler)
}

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

// Run polls until ctx ends. A failed poll is logged and retried at the
// next interval: Okta being away must not stop the verifier.
func (p *LogPoller) Run(ctx context.Context) error {
	t := time.NewTicker(orDefault(p.Interval, DefaultLogInterval))
	defer t.Stop()
	for {
		if _, err := p.Poll(ctx); err != nil && ctx.Err() == nil {
			p.log().Warn("okta_log_poll_failed", "component", "oktaapi", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Poll reads the pages available now and returns how many new events it
// stored.
func (p *LogPoller) Poll(ctx context.Context) (int, error) {
	cursor, err := p.Store.OktaCursor(ctx, LogCursor)
	switch {
	case errors.Is(err, storage.ErrNotFound):
		cursor = p.Client.LogsURL(p.now().Add(-orDefault(p.Lookback, DefaultLookback)), SignInEventTypes)
	case err != nil:
		return 0, err
	case p.Client.sameOrigin(cursor) != nil:
		// The verifier now reads another org: its log starts afresh.
		p.log().Warn("okta_log_cursor_reset: the stored System Log cursor is for another Okta org", "component", "oktaapi")
		cursor = p.Client.LogsURL(p.now().Add(-orDefault(p.Lookback, DefaultLookback)), SignInEventTypes)
	}
	total := 0
	for range maxPagesPerPoll {
		page, err := p.Client.Get(ctx, cursor)
		if err != nil {
			return total, fmt.Errorf("reading the System Log: %w", err)
		}
		var events []LogEvent
		if err := json.Unmarshal(page.Body, &events); err != nil {
			return total, fmt.Errorf("decoding System Log events: %w", err)
		}
		if len(events) > storage.MaxOktaPage {
			return total, fmt.Errorf("a System Log page of %d events, more than the %d asked for", len(events), storage.MaxOktaPage)
		}
		next := page.Next
		if next == "" {
			// A polling query always has a next link; without one, poll
			// again from the same place rather than lose the position.
			next = cursor
		}
		recs, matches, err := p.correlate(ctx, events)
		if err != nil {
			return total, err
		}
		added, err := p.Store.SaveOktaLogPage(ctx, LogCursor, next, p.now(), recs)
		if err != nil {
			return total, err
		}
		p.report(recs, matches, added)
		total += len(added)
		if len(events) == 0 || next == cursor {
			return total, nil
		}
		cursor = next
	}
	return total, nil
}

// report logs and counts what a page added (not what it repeated).
func (p *LogPoller) report(recs []storage.OktaSignIn, matches map[string]string, added []string) {
	isNew := make(map[string]bool, len(added))
	for _, u := range added {
		isNew[u] = true
	}
	for _, r := range recs {
		if !isNew[r.UUID] {
			continue
		}
		if p.Metrics != nil {
			p.Metrics.events.WithLabelValues(matches[r.UUID]).Inc()
		}
		if r.Unmatched {
			if p.Metrics != nil {
				p.Metrics.unmatched.Inc()
			}
			p.log().Warn("okta_unmatched_signin: Okta let a Mac sign in without a Clearance allow; check the Okta policy that should require Clearance",
				"component", "oktaapi", "event_uuid", r.UUID, "event_type", r.EventType, "user", r.Username,
				"published", r.Published, "client_ip", r.ClientIP, "os", r.OS, "decision_id", r.DecisionID)
		}
	}
}

// correlate turns events into records matched to decisions, and says for
// each (by UUID) what it matched: "allow", "deny" or "none".
func (p *LogPoller) correlate(ctx context.Context, events []LogEvent) ([]storage.OktaSignIn, map[string]string, error) {
	out := make([]storage.OktaSignIn, 0, len(events))
	matches := make(map[string]string, len(events))
	seen := map[string]bool{}
	for _, e := range events {
		if e.UUID == "" || seen[e.UUID] || len(e.UUID) > storage.MaxTextLen {
			continue // nothing to key it by: it cannot be stored once
		}
		seen[e.UUID] = true
		rec := storage.OktaSignIn{
			UUID: e.UUID, Published: e.Published, EventType: text(e.EventType), Username: text(e.Actor.AlternateID),
			ClientIP: text(e.Client.IPAddress), UserAgent: text(e.Client.UserAgent.RawUserAgent),
			OS: text(e.Client.UserAgent.OS), Outcome: text(e.Outcome.Result), SeenAt: p.now(),
		}
		d, err := p.match(ctx, rec)
		if err != nil {
			return nil, nil, err
		}
		rec.DecisionID = d.ID
		allowed := d.ID != 0 && d.Allow
		rec.Unmatched = !allowed && p.alerts(rec)
		switch {
		case allowed:
			matches[rec.UUID] = "allow"
		case d.ID != 0:
			matches[rec.UUID] = "deny"
		default:
			matches[rec.UUID] = "none"
		}
		out = append(out, rec)
	}
	return out, matches, nil
}

// alerts reports whether e, unmatched, is the bypass to alert on: a
// successful sign-in of an alerting type from macOS.
func (p *LogPoller) alerts(e storage.OktaSignIn) bool {
	types := p.AlertEvents
	if types == nil {
		types = DefaultAlertEvents
	}
	ok := false
	for _, t := range types {
		ok = ok || t == e.EventType
	}
	return ok && (e.Outcome == "SUCCESS" || e.Outcome == "ALLOW") && IsMacOS(e.OS, e.UserAgent)
}

// IsMacOS reports whether Okta's reading of the client (its os field, or
// the raw User-Agent when that is empty) is a Mac.
func IsMacOS(os, ua string) bool {
	s := strings.ToLower(os)
	if s == "" {
		s = strings.ToLower(ua)
		return strings.Contains(s, "macintosh") || strings.Contains(s, "mac os x")
	}
	return strings.Contains(s, "mac os") || strings.Contains(s, "macos") || strings.Contains(s, "os x")
}

// match finds the decision an event followed: one for the same user
// within [published-Before, published+After]. An allow wins over a deny;
// an allow whose User-Agent differs from the event's (both known) is not
// the same browser and does not match. Among the rest, the same address
// wins, then the nearest in time. The zero record means none.
func (p *LogPoller) match(ctx context.Context, e storage.OktaSignIn) (storage.DecisionRecord, error) {
	if e.Username == "" {
		return storage.DecisionRecord{}, nil
	}
	f := storage.DecisionFilter{
		Username: e.Username,
		Since:    e.Published.Add(-orDefault(p.Before, DefaultMatchBefore)),
		Until:    e.Published.Add(orDefault(p.After, DefaultMatchAfter)),
		Limit:    storage.MaxDecisionLimit,
	}
	ds, err := p.Store.ListDecisions(ctx, f)
	if err != nil {
		return storage.DecisionRecord{}, fmt.Errorf("matching an Okta event to decisions: %w", err)
	}
	if lower := storage.UserNameKey(e.Username); lower != e.Username {
		// Okta logins are case-insensitive; the AuthnRequest may carry
		// another case than the System Log. Only ASCII case: a look-alike
		// login is another user, whose decisions these are not.
		f.Username = lower
		more, err := p.Store.ListDecisions(ctx, f)
		if err != nil {
			return storage.DecisionRecord{}, fmt.Errorf("matching an Okta event to decisions: %w", err)
		}
		ds = append(ds, more...)
	}
	var best storage.DecisionRecord
	bestScore := -1
	for _, d := range ds {
		// Only a sign-in Okta sent through Clearance answers for one:
		// a Cloudflare posture evaluation names a user but no browser.
		if d.Source == storage.SourceCloudflare {
			continue
		}
		if d.Allow && d.UserAgent != "" && e.UserAgent != "" && d.UserAgent != e.UserAgent {
			continue
		}
		score := 0
		if d.Allow {
			score += 4
		}
		if d.ClientIP != "" && d.ClientIP == e.ClientIP {
			score += 2
		}
		if score > bestScore || (score == bestScore && absDur(d.At.Sub(e.Published)) < absDur(best.At.Sub(e.Published))) {
			best, bestScore = d, score
		}
	}
	return best, nil
}

func absDur(d time.Duration) time.Duration {
	if d < 0 {
		return -d
	}
	return d
}

// text makes an event's field storable: valid UTF-8 without NUL, at most
// storage.MaxTextLen bytes.
func text(s string) string {
	s = strings.ToValidUTF8(strings.ReplaceAll(s, "\x00", ""), "\uFFFD")
	if len(s) > storage.MaxTextLen {
		s = strings.ToValidUTF8(s[:storage.MaxTextLen], "")
	}
	return s
}

// UnmatchedCounter is clearance_okta_unmatched_signins_total, for tests.
func (m *LogMetrics) UnmatchedCounter() prometheus.Counter { return m.unmatched }
