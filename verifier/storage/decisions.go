package storage

import (
	"context"
	"time"
)

// MaxDecisionResultsLen bounds DecisionRecord.Results, as JSON, in bytes.
// The record's text fields are bounded by MaxTextLen.
const MaxDecisionResultsLen = 1 << 20

// DefaultDecisionRetention is how long the decision log is kept unless
// configured (decision-retention).
const DefaultDecisionRetention = 90 * 24 * time.Hour

// Decision list limits: a List without a limit returns
// DefaultDecisionLimit records, and never more than MaxDecisionLimit.
const (
	DefaultDecisionLimit = 100
	MaxDecisionLimit     = 1000
)

// DecisionRecord is one access decision as the decision log keeps it: who
// asked, from which device and certificate, what was decided and why, from
// which results, and how long it took.
type DecisionRecord struct {
	// ID is assigned by AppendDecision: positive and increasing in append
	// order within one database, never reused (not even after the newest
	// records are deleted). It is the paging cursor.
	ID       int64
	At       time.Time
	Username string // the Okta username from the AuthnRequest's Subject
	DeviceID string // empty when no enrolled device was identified
	// ClaimedDeviceID is the device a refused proof of presence named but
	// was not signed by (no such device, or another key): kept for
	// investigation, but not as DeviceID, since anyone who can sign in to
	// Okta can name any device. Empty otherwise.
	ClaimedDeviceID string
	CertSerial      string // the browser certificate's serial (lowercase hex); empty when none
	Allow           bool
	// Reason is the decision.Reason that won (e.g. "allowed",
	// "policy_failed", "unknown_device", "no_client_cert").
	Reason string
	// Results has every policy's outcome the decision was made from, in
	// policy-set order; empty when the decision came before policies were judged.
	Results          []DecisionResult
	PolicySetVersion string
	// ReportSeq is the seq of the report the decision used (0: none). As for
	// reports, seqs above math.MaxInt64 may be refused.
	ReportSeq uint64
	// LiveCheck is what the live check did: "none", "answered", "timed_out",
	// "agent_offline".
	LiveCheck string
	// Latency is the time from receiving the request to the decision,
	// live check included.
	Latency time.Duration
	// Source is what asked: "sso" (a sign-in), "sso_retry" ("Check again"),
	// SourceCloudflare (Cloudflare's device posture integration).
	Source string
	// RequestID is the AuthnRequest's ID, joining the log with Okta's; for
	// a Cloudflare evaluation, Cloudflare's device_id, joining it with
	// Cloudflare's device list.
	RequestID string
	// Binding is how the sign-in was bound to the Mac: "agent" (the agent's
	// proof of presence) or "certificate" (a browser certificate); "hint"
	// for a denial made from the browser's device hint alone (it names a
	// revoked Mac); empty when nothing bound it (refused before a Mac was
	// identified).
	Binding string
	// ClientIP and UserAgent are the browser's address (as the sign-in
	// listener saw it, behind trusted proxies the one they name) and its
	// User-Agent (clipped to MaxTextLen): what an Okta System Log event of
	// the same sign-in is matched on. Empty in decisions made before they
	// were kept.
	ClientIP  string
	UserAgent string
	// Mode is the enforcement outcome (decision.Mode): "enforce",
	// "monitor" (allowed; would have denied), "warn" (shown Continue),
	// "warned" (allowed after Continue), "bypassed" (allowed after Resolve
	// later), "exempt"; empty when no policy was judged.
	Mode string
	// Score is the device posture score (0 to 100) answered to Cloudflare,
	// for Source SourceCloudflare; 0 for every other decision.
	Score int
	// UserNotBound: the person signing in is not bound to the Mac
	// (assigned, or one of its accounts): --user-binding warn let the
	// sign-in go on (decision.Decision.BindingMismatch), or enforce denied
	// it for that (Reason "user_not_bound"). False in decisions made
	// before it was kept.
	UserNotBound bool
}

// SourceCloudflare is DecisionRecord.Source for an evaluation answered to
// Cloudflare's device posture integration.
const SourceCloudflare = "cloudflare"

// DecisionBatcher is an optional ability of a DecisionStore: appending many
// decisions in one commit (a Cloudflare batch evaluates up to 1,000
// devices at once; one commit per row would be most of its time).
type DecisionBatcher interface {
	// AppendDecisions stores ds in one transaction: all or none.
	AppendDecisions(ctx context.Context, ds []DecisionRecord) error
}

// LazyDecisionAppender is an optional ability of a DecisionStore: a
// decision written now and made durable later, so that a sign-in's
// response can be signed while its decision is written and the fsyncs of
// the decisions written meanwhile can be shared.
type LazyDecisionAppender interface {
	// AppendDecisionLazy stores d and returns its ID once it is committed
	// and visible, perhaps before it is durable, with durable, which
	// returns once it is (or why it cannot be). Nothing that depends on d
	// being on record (a signed response) may leave before durable has
	// returned nil.
	AppendDecisionLazy(ctx context.Context, d DecisionRecord) (id int64, durable func(context.Context) error, err error)
}

// DecisionResult is one policy's outcome in a DecisionRecord.
type DecisionResult struct {
	PolicyID string `json:"policy_id"`
	// Status is PASS, FAIL, ERROR or MISSING.
	Status   string `json:"status"`
	Required bool   `json:"required,omitempty"`
	Critical bool   `json:"critical,omitempty"`
	// Message is osquery's message for ERROR (bounded by the caller).
	Message string `json:"message,omitempty"`
	// Enforcement, Waiver and GraceEnds are the policy's rollout in this
	// decision, for one that did not pass (decision.Finding's).
	Enforcement string    `json:"enforcement,omitempty"`
	Waiver      string    `json:"waiver,omitempty"`
	GraceEnds   time.Time `json:"grace_ends,omitzero"`
	ExemptionID int64     `json:"exemption_id,omitempty"`
	// OtherExemptionIDs: the other exemptions that covered it too.
	OtherExemptionIDs []int64 `json:"other_exemption_ids,omitempty"`
}

// DecisionFilter selects decisions. Zero fields do not filter.
type DecisionFilter struct {
	Username string
	DeviceID string
	// ClaimedDeviceID keeps only records whose ClaimedDeviceID is this.
	ClaimedDeviceID string
	// Allow, when non-nil, keeps only allowed (true) or denied (false) decisions.
	Allow *bool
	// Modes, when set, keeps only decisions with one of these Modes.
	Modes []string
	// UserNotBound keeps only records with UserNotBound; Bound, only those
	// without it (sign-ins by someone the Mac is bound to, or made before
	// it was kept, or with --user-binding off).
	UserNotBound, Bound bool
	// SignIns keeps only sign-ins: Cloudflare's evaluations
	// (SourceCloudflare) are left out. Cloudflare keeps only those.
	SignIns, Cloudflare bool
	// Since and Until bound At: Since <= At < Until. Any time works, even
	// one outside the range a backend can store.
	Since, Until time.Time
	// BeforeID pages: only records with ID < BeforeID (<= 0: from the
	// newest). Pass the last ID of one page to get the next.
	BeforeID int64
	// Limit caps the result: <= 0 means DefaultDecisionLimit, and the
	// backend caps it further at MaxDecisionLimit.
	Limit int
}

// DecisionStore keeps the decision log.
type DecisionStore interface {
	// AppendDecision stores d (its ID is ignored) and returns the new ID,
	// durable, and with it every write that returned before it was called
	// (see SAMLRequestStore). Results are kept as JSON: they round-trip
	// exactly for valid UTF-8.
	AppendDecision(ctx context.Context, d DecisionRecord) (int64, error)
	// ListDecisions returns the matching records, newest (highest ID) first.
	ListDecisions(ctx context.Context, f DecisionFilter) ([]DecisionRecord, error)
	// DeleteDecisionsBefore removes records with At strictly before the
	// given time (retention) and returns how many.
	DeleteDecisionsBefore(ctx context.Context, before time.Time) (int, error)
}
