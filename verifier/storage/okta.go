package storage

import (
	"context"
	"time"
)

// MaxOktaCursorLen bounds a stored Okta cursor (a System Log next link).
const MaxOktaCursorLen = 4096

// MaxOktaPage bounds the events SaveOktaLogPage takes at once (Okta's
// largest System Log page).
const MaxOktaPage = 1000

// OktaSignIn is one sign-in event from Okta's System Log, with the
// Clearance decision it was matched to: what Okta did after (or without)
// asking Clearance.
type OktaSignIn struct {
	// UUID is Okta's event uuid: an event is stored once.
	UUID      string
	Published time.Time
	EventType string // user.session.start, user.authentication.sso, ...
	Username  string // actor.alternateId: the Okta login
	ClientIP  string
	UserAgent string // client.userAgent.rawUserAgent, clipped to MaxTextLen
	OS        string // client.userAgent.os as Okta read it, e.g. "Mac OS X"
	Outcome   string // outcome.result: SUCCESS, FAILURE, ALLOW, DENY, ...
	// DecisionID is the decision it was matched to; 0 when none matched.
	DecisionID int64
	// Unmatched marks the alert: a successful macOS sign-in with no
	// Clearance allow to match it.
	Unmatched bool
	// SeenAt is when the verifier read it.
	SeenAt time.Time
}

// OktaSignInFilter selects sign-in events. Zero fields do not filter.
type OktaSignInFilter struct {
	Unmatched  bool  // only the alerts
	DecisionID int64 // only those matched to this decision
	// Since bounds Published from below (inclusive).
	Since time.Time
	// Limit caps the result like DecisionFilter.Limit.
	Limit int
}

// OktaLogStore keeps what the verifier reads from Okta's System Log: the
// polling cursors, which survive restarts, and the sign-in events.
type OktaLogStore interface {
	// OktaCursor returns the cursor stored under name, or ErrNotFound.
	OktaCursor(ctx context.Context, name string) (string, error)
	// SaveOktaLogPage stores, in one transaction, the events whose UUID is
	// not stored yet and the cursor that follows them, and returns the
	// UUIDs it stored: a page read twice (after a crash before the cursor
	// moved) adds nothing the second time. With no events it stores only
	// the cursor (the user sync keeps its watermarks so).
	SaveOktaLogPage(ctx context.Context, cursorName, cursor string, at time.Time, events []OktaSignIn) ([]string, error)
	// ListOktaSignIns returns matching events, newest Published first.
	ListOktaSignIns(ctx context.Context, f OktaSignInFilter) ([]OktaSignIn, error)
	// DeleteOktaSignInsBefore removes events published strictly before the
	// given time (retention) and returns how many.
	DeleteOktaSignInsBefore(ctx context.Context, before time.Time) (int, error)
}
