// Package signin runs the sign-in that Okta starts at the verifier: it takes
// an AuthnRequest that verifier/idp decoded and checked, finds which Mac the
// browser is on, has verifier/access decide, records the decision, and
// answers with idp's signed response or web's remediation page, holding a
// denied sign-in so that "Check again" can complete it.
//
// The SAML mechanics are idp's, the access rules decision's, and the words
// web's; this package is the order in which they happen.
package signin

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/clearance/clearance/pkg/logsample"
	"github.com/clearance/clearance/verifier/access"
	"github.com/clearance/clearance/verifier/decision"
	"github.com/clearance/clearance/verifier/idp"
	"github.com/clearance/clearance/verifier/ratelimit"
	"github.com/clearance/clearance/verifier/reason"
	"github.com/clearance/clearance/verifier/rollout"
	"github.com/clearance/clearance/verifier/storage"
	"github.com/clearance/clearance/verifier/web"
)

// Store is what the sign-in flow persists: the replay cache, held sign-ins
// and the decision log.
type Store interface {
	storage.SAMLRequestStore
	storage.SignInChallengeStore
	storage.PendingSignInStore
	storage.DecisionStore
}

// Metrics counts sign-ins; *metrics.Metrics implements it.
type Metrics interface {
	// SSODecision counts a decision; mode is its decision.Mode ("enforce"
	// when nothing softened it).
	SSODecision(allow bool, reason, mode string, d time.Duration)
	SSORefused(reason string)
	// SSOUnrecorded counts a refusal kept out of the decision log (see
	// Handler.unrecorded).
	SSOUnrecorded(reason string)
	// SSOUnsignedBusy counts an unsigned sign-in refused busy by the
	// bucket named (see UnsignedLimits): BucketNoMac, BucketOneMac or
	// BucketMacs.
	SSOUnsignedBusy(bucket string)
}

// Deciding is the access gate; *access.Gate implements it.
type Deciding interface {
	Decide(ctx context.Context, q access.Query, mode access.Mode) (decision.Decision, error)
}

var _ Deciding = (*access.Gate)(nil)

// Rollout keeps what decisions learn about rollout state; *rollout.Source
// implements it.
type Rollout interface {
	// Record starts and ends grace periods a decision saw.
	Record(ctx context.Context, d decision.Decision) error
	// SpendBypass records the policies d resolved later; an error wrapping
	// rollout.ErrBypassSpent if one was spent meanwhile.
	SpendBypass(ctx context.Context, d decision.Decision, username string, now time.Time) error
	// BypassPeriod is how often one policy may be resolved later.
	BypassPeriod() time.Duration
}

// Paths on the SSO listener.
const (
	PathMetadata = "/saml/metadata"
	PathCert     = "/saml/cert.pem"
	PathSSO      = "/saml/sso"
	PathRetry    = "/saml/sso/retry"
	// PathContinue completes a held sign-in whose failing policies only
	// warn; PathResolveLater one that may be resolved later once.
	PathContinue     = "/saml/sso/continue"
	PathResolveLater = "/saml/sso/resolve-later"
)

// DefaultPendingTTL is how long a denied sign-in can be resumed with
// "Check again".
const DefaultPendingTTL = 10 * time.Minute

// Handler serves sign-in: SSO, "Check again", metadata and the certificate.
type Handler struct {
	IdP *idp.IdP
	// Binding says how a sign-in is bound to the Mac: by the agent's proof
	// of presence (Presence), by a browser certificate (Identify), or either.
	Binding  Binding
	Presence *Presence
	Identify *Identifier
	Gate     Deciding
	Store    Store
	Pages    *web.Renderer
	// Rollout, when set, keeps grace and bypass state; without it Continue
	// and Resolve later are never offered.
	Rollout Rollout
	Options

	// unrecordedLog samples the log lines of refusals kept out of the
	// decision log; refusedLog those of requests refused before they
	// identified anything (refusal.anyone); each one sample per reason (our
	// codes, a bounded set), so that a flood of one kind never hides the
	// first line of another.
	unrecordedLog logsample.Samples
	refusedLog    logsample.Samples
	// debugXMLLog samples the DebugSAML dumps of refused requests.
	debugXMLLog logsample.Sample
	// logger is Log with the component, made once (loggerOnce): a logger
	// made per line formats its attributes again each time.
	loggerOnce sync.Once
	logger     *slog.Logger
}

// Options are the handler's settings and what it reports to.
type Options struct {
	Log     *slog.Logger
	Metrics Metrics
	Now     func() time.Time
	// PendingTTL is how long a denied sign-in can be resumed
	// (DefaultPendingTTL when zero).
	PendingTTL time.Duration
	// MaxHeldAge: "Check again" on a sign-in held longer sends the person
	// back to Okta to start over (DefaultMaxHeldAge when zero).
	MaxHeldAge time.Duration
	// DebugSAML logs refused requests' decoded XML: the first
	// maxDebugXML bytes, at most one per debugXMLEvery.
	DebugSAML bool
	// UnsignedStarts, when set, bounds the sign-ins on requests Okta did
	// not sign that store anything, from every address together: anyone
	// can send such a request, and what it stores is kept for minutes, so
	// the per-address limit alone bounds them only by the sender's number
	// of addresses. Its Anyone bucket counts browsers that show no Mac, its
	// Known bucket those that show one (an enrolled device's certificate,
	// a genuine device hint naming a Mac whose agent is connected, or a
	// held sign-in pressed again), so that a flood of the first kind does
	// not hold back the second; each Mac spends a bucket of its own first
	// (PerMac), so that one Mac's copied hint or certificate cannot spend
	// Known alone.
	UnsignedStarts *UnsignedLimits
	// Presses, when set, bounds the presses of each Mac's held sign-ins
	// (Check again, Continue, Resolve later), keyed by device ID: each
	// writes a decision row and asks the agent for a fresh check.
	Presses *ratelimit.Keyed
}

// DefaultMaxHeldAge is how old a held sign-in may be for "Check again" to
// answer Okta's original request: Okta stops waiting for an answer after a
// few minutes.
const DefaultMaxHeldAge = 5 * time.Minute

// maxDebugXML bounds a request logged with DebugSAML: enough for what Okta
// sends (a few hundred bytes to 2 KiB), and the log line stays small however
// large a request anyone sends.
const maxDebugXML = 4 << 10

// debugXMLEvery spaces DebugSAML dumps: anyone can send refused requests,
// and each would otherwise be a log line of several KiB (tried: 5 MB of log
// in 10 s from one address). The ones left out are counted in the next.
const debugXMLEvery = 250 * time.Millisecond

// Register mounts the handler's paths on mux.
func (h *Handler) Register(mux *http.ServeMux) {
	h.debugXMLLog.Every = debugXMLEvery
	mux.HandleFunc("GET "+PathMetadata, h.metadata)
	mux.HandleFunc("GET "+PathCert, h.cert)
	mux.HandleFunc("GET "+PathSSO, h.sso)
	mux.HandleFunc("POST "+PathSSO, h.sso)
	mux.HandleFunc("POST "+PathRetry, h.retry)
	mux.HandleFunc("POST "+PathContinue, h.continueSignIn)
	mux.HandleFunc("POST "+PathResolveLater, h.resolveLater)
	if h.Binding != BindingCertificate {
		mux.HandleFunc("GET "+PathPresence, h.presence)
	}
}

func (h *Handler) now() time.Time {
	if h.Now != nil {
		return h.Now()
	}
	return time.Now()
}

func (h *Handler) log() *slog.Logger {
	h.loggerOnce.Do(func() {
		l := h.Log
		if l == nil {
			l = slog.Default()
		}
		h.logger = l.With("component", "sso")
	})
	return h.logger
}

func (h *Handler) metadata(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/samlmetadata+xml")
	w.Header().Set("Cache-Control", "no-cache")
	_, _ = w.Write(h.IdP.Metadata())
}

func (h *Handler) cert(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/x-pem-file")
	w.Header().Set("Content-Disposition", `attachment; filename="clearance-idp-cert.pem"`)
	_, _ = w.Write(h.IdP.CertPEM())
}

// attempt is one sign-in on its way to an answer.
type attempt struct {
	req    *idp.Request
	ident  Identity
	source string // "sso" (a sign-in) or "sso_retry" ("Check again")
	start  time.Time
	// token is the held sign-in's token on "Check again"; nil on a first try.
	token []byte
	// binding is how the Mac was identified; browser, with the agent's
	// proof, the hash of the browser's sign-in cookie.
	binding Binding
	browser []byte
	// failedBefore, on "Check again", holds the ids of the policies that
	// were not passing on the earlier pages of this sign-in.
	failedBefore map[string]bool
	// resolveLater, on a press, holds the ids of the policies the held
	// sign-in's latest page offered to resolve later.
	resolveLater []string
}

// Sources of a decision, as the decision log records them.
const (
	sourceSSO   = "sso"
	sourceRetry = "sso_retry"
	// sourceContinue and sourceResolveLater: the person chose Continue or
	// Resolve later on the page of a held sign-in.
	sourceContinue     = "sso_continue"
	sourceResolveLater = "sso_resolve_later"
)

// refusal is a request refused before any decision: the reason picks the
// page; the detail is for the log only.
type refusal struct {
	code   reason.Code
	detail string
	// xml is the decoded request, when it got that far (logged with
	// DebugSAML only).
	xml []byte
	// anyone: anyone could send the request as often as they like: it
	// identified nothing before it was refused (no verified signature, no
	// known challenge or token), or it is a replay of one that did (a
	// signed request's URL or a spent proof's, from a browser's history or
	// a proxy's log). Its log line is sampled.
	anyone bool
}

// byAnyone marks rf as a refusal anyone could cause (refusal.anyone).
func byAnyone(rf *refusal) *refusal {
	rf.anyone = true
	return rf
}

func refused(code reason.Code, format string, args ...any) *refusal {
	return &refusal{code: code, detail: fmt.Sprintf(format, args...)}
}

// fromIdP turns idp's request error into a refusal.
func fromIdP(err error) *refusal {
	var re *idp.RequestError
	if errors.As(err, &re) {
		return &refusal{code: re.Reason, detail: re.Detail}
	}
	return &refusal{code: reason.MalformedXML, detail: err.Error()}
}

// sso answers an AuthnRequest: 1. decode the binding, 2. check the request,
// 3. consume its ID, 4. identify the device, 5. decide (with a live check
// when the posture is old), 6. record, 7. respond or show what to fix.
func (h *Handler) sso(w http.ResponseWriter, r *http.Request) {
	start := h.now()
	ctx := r.Context()
	if !h.IdP.Configured() {
		h.refuse(w, r, byAnyone(refused(reason.NotConfigured, "okta_audience and okta_acs_url are not set")), http.StatusServiceUnavailable)
		return
	}
	if !h.IdP.SignaturesCheckable() {
		h.refuse(w, r, byAnyone(refused(reason.RequestCertMissing, "okta_request_cert (Okta's request-signing certificate) is not set; set it, or allow_unsigned_requests")), http.StatusServiceUnavailable)
		return
	}

	// 1. Binding.
	var rec *idp.Received
	var err error
	if r.Method == http.MethodGet {
		rec, err = idp.DecodeRedirect(r.URL.RawQuery)
	} else {
		r.Body = http.MaxBytesReader(w, r.Body, idp.MaxPostBody)
		if perr := r.ParseForm(); perr != nil {
			h.refuse(w, r, byAnyone(refused(reason.Oversized, "form: %v", perr)), http.StatusBadRequest)
			return
		}
		rec, err = idp.DecodePost(r.PostForm.Get("SAMLRequest"), r.PostForm.Get("RelayState"))
	}
	if err != nil {
		h.refuse(w, r, byAnyone(fromIdP(err)), http.StatusBadRequest)
		return
	}

	// 2. The request itself.
	req, err := idp.Validate(rec, h.IdP.Expect(start))
	if err != nil {
		// Refused before or by its signature check: anyone's.
		rf := byAnyone(fromIdP(err))
		rf.xml = rec.XML
		h.refuse(w, r, rf, http.StatusBadRequest)
		return
	}

	// 3. Which Mac is this? The agent on it proves it (completed at
	// PathPresence; askAgent spends the ID, 4, in the write that stores
	// its challenge); or a browser certificate names it (bind says which).
	a := &attempt{req: req, source: sourceSSO, start: start}
	rt := h.bind(ctx, r, start)
	if rt.agent {
		h.askAgent(w, r, a, rt.pin)
		return
	}
	a.binding = BindingCertificate
	// The certificate: read by bind already (BindingEither), or read here.
	ident, ierr := rt.ident, rt.ierr
	identify := func() { ident, ierr = h.Identify.Identify(ctx, r, start) }
	if rt.identified {
		identify = nil
	}
	if req.Signed {
		// 4. Replay, while the certificate is looked up: a signed
		// request's ID is spent whatever its certificate names, and the
		// lookup only reads, so it runs while the spend waits for its
		// commit. Its outcome is used only once the ID is spent.
		identified := func() {}
		if identify != nil {
			identified = beside(identify)
		}
		err := h.useRequestID(ctx, req, start)
		identified()
		if !h.spent(w, r, req, "recording request ID", err) {
			return
		}
	} else {
		if identify != nil {
			identify()
		}
		if ierr != nil {
			// Unsigned and naming no Mac: refused without spending its ID,
			// so such a request writes nothing at all (see unrecorded).
			h.unidentified(w, r, a, ierr)
			return
		}
		// Within the bound on unsigned sign-ins that store anything.
		if h.unsignedBusy(w, r, a, ident.DeviceID) {
			return
		}
		// 4. Replay.
		if !h.spendRequestID(w, r, req, start) {
			return
		}
	}
	if ierr != nil {
		h.unidentified(w, r, a, ierr)
		return
	}
	a.ident = ident

	// 5. Decide.
	d, err := h.Gate.Decide(ctx, h.query(a, req.Username), access.LiveIfStale)
	if err != nil {
		h.unavailable(w, r, "deciding", err)
		return
	}
	h.finish(w, r, a, d)
}

// spendRequestID is the replay check: each request ID is answered once, on
// any replica. It is remembered for longer than any IssueInstant could still
// pass. It answers the request itself and returns false when the request
// goes no further.
func (h *Handler) spendRequestID(w http.ResponseWriter, r *http.Request, req *idp.Request, start time.Time) bool {
	return h.spent(w, r, req, "recording request ID", h.useRequestID(r.Context(), req, start))
}

// useRequestID records req's ID as answered (spendRequestID's write).
func (h *Handler) useRequestID(ctx context.Context, req *idp.Request, start time.Time) error {
	return h.Store.UseRequestID(ctx, req.AuthnRequest.Issuer.Value, req.AuthnRequest.ID, h.requestIDExpiry(req, start))
}

// requestIDExpiry is when the ID of req, received at start, may be
// forgotten: once no IssueInstant that passed then could pass again, here
// (start plus twice this verifier's skew) or, for a signed request, at any
// verifier however its skew is set (a replica with a larger one, or this one
// restarted with it): its IssueInstant plus RequestSkewLimit. The minute
// covers clocks that differ between replicas. An unsigned request's ID is
// anyone's to make anew, so remembering it longer would protect nothing
// and only keep more of what unauthenticated traffic writes.
func (h *Handler) requestIDExpiry(req *idp.Request, start time.Time) time.Time {
	until := start.Add(2 * h.IdP.Settings().MaxRequestSkew)
	if req.Signed {
		until = later(until, req.AuthnRequest.IssueInstant.Add(idp.RequestSkewLimit))
	}
	return until.Add(time.Minute)
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// spent answers the request when the outcome err of the write that spends
// its ID (useRequestID, or askAgent's StartSignInChallenge) ends it, and
// reports whether it goes on; step names the write in the log.
func (h *Handler) spent(w http.ResponseWriter, r *http.Request, req *idp.Request, step string, err error) bool {
	switch {
	case errors.Is(err, storage.ErrAlreadyExists):
		// Signed or not, whoever holds the request's URL can send it
		// again, as often as the rate limit lets them.
		h.refuse(w, r, byAnyone(refused(reason.Replayed, "request ID %s was already answered", req.AuthnRequest.ID)), http.StatusBadRequest)
		return false
	case err != nil:
		h.unavailable(w, r, step, err)
		return false
	}
	return true
}

func (h *Handler) query(a *attempt, username string) access.Query {
	return access.Query{DeviceID: a.ident.DeviceID, Username: username, BrowserCert: a.ident.Browser, Device: a.ident.Device}
}

// retry is "Check again": the held sign-in is decided again after a live
// check and, if the Mac now passes, completed with a response to the
// original request.
func (h *Handler) retry(w http.ResponseWriter, r *http.Request) { h.resume(w, r, sourceRetry) }

// continueSignIn is Continue: the held sign-in is decided again, the
// person having seen the warnings, and completed if nothing but warnings
// stood in its way. It is held to the same rules as "Check again": a POST
// with the held sign-in's token, from the browser (or certificate) that
// started it, completing it once.
func (h *Handler) continueSignIn(w http.ResponseWriter, r *http.Request) {
	h.resume(w, r, sourceContinue)
}

// resolveLater is "Resolve later", under the same rules: the held sign-in
// is decided again with the person's one-time bypass, which is spent (once
// per policy per period, on every replica) only if it completes it.
func (h *Handler) resolveLater(w http.ResponseWriter, r *http.Request) {
	h.resume(w, r, sourceResolveLater)
}

// resume decides a held sign-in again and completes it if now allowed:
// "Check again", Continue or Resolve later (source says which).
func (h *Handler) resume(w http.ResponseWriter, r *http.Request, source string) {
	start := h.now()
	ctx := r.Context()
	r.Body = http.MaxBytesReader(w, r.Body, 4<<10)
	if err := r.ParseForm(); err != nil {
		h.refuse(w, r, byAnyone(refused(reason.RetryBadToken, "form: %v", err)), http.StatusBadRequest)
		return
	}
	token, err := base64.RawURLEncoding.DecodeString(r.PostForm.Get("token"))
	if err != nil || len(token) != tokenBytes {
		h.refuse(w, r, byAnyone(refused(reason.RetryBadToken, "token is not %d base64url bytes", tokenBytes)), http.StatusBadRequest)
		return
	}
	sum := sha256.Sum256(token)
	hash := sum[:]
	p, err := h.Store.GetPendingSignIn(ctx, hash)
	switch {
	case errors.Is(err, storage.ErrNotFound):
		h.refuse(w, r, byAnyone(refused(reason.RetryExpired, "no held sign-in for this token")), http.StatusBadRequest)
		return
	case err != nil:
		h.unavailable(w, r, "reading held sign-in", err)
		return
	case !start.Before(p.ExpiresAt):
		h.refuse(w, r, refused(reason.RetryExpired, "held sign-in expired at %s", p.ExpiresAt.UTC().Format(time.RFC3339)), http.StatusBadRequest)
		return
	case start.Sub(p.CreatedAt) > h.maxHeldAge():
		h.restart(w, r, p, hash, reason.RetryRestart, fmt.Sprintf("held since %s, longer than %s", p.CreatedAt.UTC().Format(time.RFC3339), h.maxHeldAge()))
		return
	}
	req, err := idp.Reparse(p.Request, p.RelayState, h.IdP.Expect(start))
	if err != nil {
		h.refuse(w, r, fromIdP(err), http.StatusBadRequest)
		return
	}
	a := &attempt{req: req, source: source, start: start, token: token, resolveLater: p.ResolveLater}
	if p.BrowserHash != nil {
		// Bound by the agent's proof: only the browser that gave it may
		// resume, for the Mac it proved.
		bh := browserHash(r)
		if bh == nil || subtle.ConstantTimeCompare(bh, p.BrowserHash) != 1 {
			h.refuse(w, r, refused(reason.RetryOtherBrowser, "held for another browser (cookie present: %v)", bh != nil), http.StatusForbidden)
			return
		}
		a.binding, a.browser, a.ident = BindingAgent, bh, Identity{DeviceID: p.DeviceID, Via: "agent"}
	} else {
		a.binding = BindingCertificate
		ident, ierr := h.Identify.Identify(ctx, r, start)
		if ierr != nil {
			h.unidentified(w, r, a, ierr)
			return
		}
		a.ident = ident
		if ident.CertSerial != p.CertSerial || ident.DeviceID != p.DeviceID {
			// The token was made for another browser certificate: a leaked
			// token cannot complete someone else's sign-in.
			h.refuse(w, r, refused(reason.RetryOtherCert, "held for certificate %s, presented %s", p.CertSerial, ident.CertSerial), http.StatusForbidden)
			return
		}
		if h.Binding == BindingEither && h.Presence.mayBeConnected(ident.DeviceID) {
			// Held while the Mac's agent was not connected; it is now (or
			// that cannot be told), and a certificate no longer binds this
			// Mac's sign-ins alone (see bind): the person starts over, and
			// is sent to the agent.
			h.restart(w, r, p, hash, reason.RetryAgentRunning, fmt.Sprintf("held for certificate %s while device %s had no agent connected; it has one now", p.CertSerial, p.DeviceID))
			return
		}
	}
	// A held sign-in was made for a browser that showed its Mac; pressed
	// again on an unsigned request, each press writes a decision.
	if h.unsignedBusy(w, r, a, a.ident.DeviceID) {
		return
	}
	if h.Presses != nil {
		if ok, wait := h.Presses.Allow(a.ident.DeviceID); !ok {
			w.Header().Set("Retry-After", ratelimit.RetryAfter(wait))
			rf := refused(reason.RetryTooOften, "device %s: held sign-ins pressed more often than %.1f a second (burst %d)", a.ident.DeviceID, ratelimit.PressPerMacRate, ratelimit.PressPerMacBurst)
			rf.anyone = true
			h.refuse(w, r, rf, http.StatusTooManyRequests)
			return
		}
	}
	q, mode := h.query(a, p.Username), access.LiveAlways
	switch source {
	case sourceContinue, sourceResolveLater:
		// The person chose not to fix anything now: a fresh report is
		// needed only as for a sign-in, when the stored one is old.
		q.Continue, q.ResolveLater, mode = source == sourceContinue, source == sourceResolveLater, access.LiveIfStale
		// Resolve later skips only what the page offered: if something
		// else would need skipping now (a grace ended since the page was
		// shown), the sign-in stays held and a fresh page says what is
		// true now, as "Check again" would, with no bypass spent.
		q.ResolveLaterOffered = p.ResolveLater
		// And each press passes over only the items its own page listed
		// (another tab's, or a page older than a warning, lists others):
		// else the person is shown what is in the way now.
		q.PageShown = pageShown(r.PostForm)
		if h.Rollout == nil {
			q.Continue, q.ResolveLater = false, false
		}
	}
	d, err := h.Gate.Decide(ctx, q, mode)
	if err != nil {
		h.unavailable(w, r, "deciding", err)
		return
	}
	if !d.Allow && d.Results != nil {
		a.failedBefore = h.failedBefore(ctx, p, req.AuthnRequest.ID)
	}
	if d.Allow && len(d.Bypassed()) > 0 {
		// Spent before the held sign-in is completed: of two presses (two
		// tabs, two replicas), one spends it and the other completes nothing.
		switch err := h.Rollout.SpendBypass(ctx, d, p.Username, start); {
		case errors.Is(err, rollout.ErrBypassSpent):
			h.refuse(w, r, refused(reason.RetryDone, "resolve later already used: %v", err), http.StatusBadRequest)
			return
		case err != nil:
			h.unavailable(w, r, "spending bypass", err)
			return
		}
	}
	if d.Allow {
		// Only the press that removes the held sign-in completes it.
		switch err := h.Store.DeletePendingSignIn(ctx, hash); {
		case errors.Is(err, storage.ErrNotFound):
			h.refuse(w, r, refused(reason.RetryDone, "held sign-in already completed"), http.StatusBadRequest)
			return
		case err != nil:
			h.unavailable(w, r, "completing held sign-in", err)
			return
		}
	}
	h.finish(w, r, a, d)
}

const tokenBytes = 32

func (h *Handler) maxHeldAge() time.Duration {
	if h.MaxHeldAge > 0 {
		return h.MaxHeldAge
	}
	return DefaultMaxHeldAge
}

// restart answers "Check again" on a held sign-in that cannot be completed
// as it was started, code saying why (detail for the log): held too long
// (reason.RetryRestart: Okta has likely stopped waiting for an answer to its
// request, and a response to it would be refused there), or held under a
// certificate while the Mac's agent has connected since
// (reason.RetryAgentRunning). The held sign-in is dropped and the person is
// sent to start over at Okta.
func (h *Handler) restart(w http.ResponseWriter, r *http.Request, p storage.PendingSignIn, hash []byte, code reason.Code, detail string) {
	if err := h.Store.DeletePendingSignIn(r.Context(), hash); err != nil && !errors.Is(err, storage.ErrNotFound) {
		h.log().Warn("dropping a held sign-in failed", "err", err)
	}
	ref := newRef()
	h.metrics().SSORefused(string(code))
	h.log().Info("sso_request_refused", "reason", string(code), "detail", detail,
		"user", p.Username, "device_id", p.DeviceID, "ref", ref, "remote", r.RemoteAddr)
	restart := ""
	if u, err := url.Parse(h.IdP.Settings().ACSURLs[0]); err == nil && u.Scheme == "https" && u.Host != "" {
		restart = "https://" + u.Host + "/" // the Okta org
	}
	h.Pages.Refused(w, http.StatusOK, web.Refused{Reason: code, SupportID: ref, RestartURL: restart})
}

// Bounds on reading the decision log for what failed before: a held
// sign-in lives minutes, so its decisions are among the newest few.
const (
	beforePage  = 100
	beforePages = 3
)

// failedBefore returns the ids of the policies that were not passing in the
// earlier decisions of the held sign-in p. The decision log already keeps
// each one with its results, under the AuthnRequest's ID, which only this
// sign-in can carry (request IDs are answered once): reading it there needs
// no copy in the held sign-in, and nothing the browser sends can change it.
// It only adds "Now passing" to a page, so a failure to read is logged and
// the page goes without.
func (h *Handler) failedBefore(ctx context.Context, p storage.PendingSignIn, requestID string) map[string]bool {
	denied := false
	f := storage.DecisionFilter{
		DeviceID: p.DeviceID, Allow: &denied, Limit: beforePage,
		// Stores may keep times coarser than Go's: a second's margin
		// cannot miss the decision that held the sign-in.
		Since: p.CreatedAt.Add(-time.Second),
	}
	out := map[string]bool{}
	for range beforePages {
		recs, err := h.Store.ListDecisions(ctx, f)
		if err != nil {
			h.log().Warn("reading earlier decisions failed; no Now passing shown", "err", err)
			return nil
		}
		for _, rec := range recs {
			if rec.RequestID != requestID {
				continue
			}
			for _, res := range rec.Results {
				if res.Status != string(decision.StatusPass) {
					out[res.PolicyID] = true
				}
			}
		}
		if len(recs) < beforePage {
			break
		}
		f.BeforeID = recs[len(recs)-1].ID
	}
	return out
}

// nowPassing names the policies of results that pass now and did not
// before, in policy-set order.
func nowPassing(results []decision.Finding, before map[string]bool) []string {
	var out []string
	for _, f := range results {
		if f.Status == decision.StatusPass && before[f.PolicyID] {
			out = append(out, f.Name)
		}
	}
	return out
}

// retryable reports whether "Check again" can change a denial: the Mac is
// known and something about its posture can be fixed.
func retryable(r decision.Reason) bool {
	switch r {
	case reason.UnknownDevice, reason.DeviceRevoked, reason.DeviceMismatch:
		return false
	}
	return true
}

// finish records the decision and answers: a signed response, or the
// remediation page with "Check again" (holding the sign-in under a new token,
// or the one it was resumed with).
func (h *Handler) finish(w http.ResponseWriter, r *http.Request, a *attempt, d decision.Decision) {
	ctx := r.Context()
	now := h.now()
	latency := now.Sub(a.start)
	rec := storage.DecisionRecord{
		At: now, Username: a.req.Username, DeviceID: a.ident.DeviceID, CertSerial: a.ident.CertSerial,
		Allow: d.Allow, Reason: string(d.Reason), PolicySetVersion: d.PolicySetVersion,
		ReportSeq: d.ReportSeq, LiveCheck: d.LiveCheck.String(), Latency: latency,
		Source: a.source, RequestID: a.req.AuthnRequest.ID, Results: d.StoredResults(),
		Binding: string(a.binding), Mode: string(d.Mode),
		UserNotBound: d.BindingMismatch || d.Reason == reason.UserNotBound,
	}
	// An allowed sign-in's response is signed while the decision is
	// written: the signatures take the CPU while the write waits for its
	// commit. The response is sent only once the decision is on record and
	// durable: where the store commits first and syncs later, its fsync
	// comes after the signatures, and covers every decision committed
	// before it began.
	var resp string
	var signErr error
	signed := func() {}
	if d.Allow {
		signed = beside(func() { resp, signErr = h.IdP.Respond(r, a.req, h.assert(a), now) })
		defer signed()
	}
	if h.Rollout != nil {
		// A grace period that cannot be recorded would start again at
		// every sign-in and never end: fail closed.
		if err := h.Rollout.Record(ctx, d); err != nil {
			h.unavailable(w, r, "recording grace", err)
			return
		}
	}
	id, durable, err := h.appendDecision(ctx, h.withClient(r, rec), d.Allow)
	if err != nil {
		// Every decision is on record, or it is not made: fail closed.
		h.unavailable(w, r, "recording decision", err)
		return
	}
	if d.Allow {
		// The signatures ran while the decision was committed; its fsync,
		// shared with the decisions committed meanwhile, comes before
		// anything is said of it.
		signed()
		if err := durable(ctx); err != nil {
			// The row is committed but not known to be durable, and its
			// response is never sent. The log names it, so the decision
			// log is read right.
			h.unavailable(w, r, "making decision durable", err, "decision_id", id, "response_sent", false)
			return
		}
	}
	h.metrics().SSODecision(d.Allow, string(d.Reason), metricMode(d.Mode), latency)
	attrs := append(d.LogAttrs(),
		slog.Int64("decision_id", id), slog.String("source", a.source), slog.String("binding", string(a.binding)),
		slog.String("cert_serial", a.ident.CertSerial), slog.String("request_id", a.req.AuthnRequest.ID),
		slog.Duration("latency", latency))
	h.log().LogAttrs(ctx, slog.LevelInfo, "sso_decision", attrs...)

	if d.Allow {
		if signErr != nil {
			h.log().Error("signing response failed", "err", signErr, "decision_id", id, "response_sent", false)
			h.Pages.Refused(w, http.StatusInternalServerError, web.Refused{Reason: reason.SigningFailed, SupportID: strconv.FormatInt(id, 10)})
			return
		}
		if err := h.Pages.Post(w, web.Post{ACSURL: h.IdP.ACSURL(a.req), SAMLResponse: resp, RelayState: a.req.RelayState, Notes: web.Notes(d)}); err != nil {
			h.log().Error("response not sent", "err", err, "decision_id", id, "response_sent", false)
		}
		return
	}

	// Policies that monitor mode or an exemption lets through do not stop
	// this sign-in: they are shown with the recommendations, not as fixes.
	var blocking, waived []decision.Finding
	for _, f := range d.Failing {
		if f.Waiver == decision.WaiverNone {
			blocking = append(blocking, f)
		} else {
			waived = append(waived, f)
		}
	}
	page := web.Denied{
		Reason: d.Reason, LiveCheck: d.LiveCheck,
		DeviceName: d.DeviceName, Username: d.Username, LastChecked: d.LastReportAt, Now: now,
		Failing: web.Findings(blocking), PageShown: decision.PageDigest(blocking), Advisory: web.Findings(append(waived, d.Advisory...)), NowPassing: nowPassing(d.Results, a.failedBefore),
		SupportID: strconv.FormatInt(id, 10), Notes: web.Notes(d),
	}
	if retryable(d.Reason) {
		// What this page offers to resolve later is kept with the held
		// sign-in: a press skips only those (see resume).
		var offered []string
		if h.Rollout != nil && d.CanResolveLater {
			offered = resolveLaterOffered(blocking)
		}
		offerKept := true
		token := a.token
		if token == nil {
			token, err = h.hold(ctx, a, now, offered)
			if err != nil {
				h.log().Warn("holding sign-in failed; no Check again offered", "err", err, "decision_id", id)
			}
		} else if !slices.Equal(offered, a.resolveLater) {
			sum := sha256.Sum256(token)
			if err := h.Store.SetPendingSignInResolveLater(ctx, sum[:], offered); err != nil {
				// A press would then skip only what an earlier page offered.
				h.log().Warn("recording what the page offers failed; no Resolve later offered", "err", err, "decision_id", id)
				offerKept = false
			}
		}
		if token != nil {
			page.RetryAction, page.RetryToken = PathRetry, base64.RawURLEncoding.EncodeToString(token)
			if h.Rollout != nil {
				// Each item says from the decision whether it blocks now,
				// later or not at all (web.Findings); these are the page's
				// buttons for what the decision lets the person do.
				switch {
				case d.CanContinue:
					page.ContinueAction = PathContinue
				case d.CanResolveLater && offerKept:
					page.ResolveLaterAction, page.ResolveLaterPeriod = PathResolveLater, h.Rollout.BypassPeriod()
				}
			}
		}
	}
	h.Pages.Denied(w, http.StatusForbidden, page)
}

// beside starts fn on a goroutine of its own and returns wait, which
// returns once fn has returned. A panic in fn is raised again by wait, on
// the handler's goroutine, where net/http recovers it as it did when fn
// ran there. Only the handler's goroutine calls wait; a second call returns
// at once.
func beside(fn func()) (wait func()) {
	done := make(chan struct{})
	var panicked any
	go func() {
		defer close(done)
		defer func() { panicked = recover() }()
		fn()
	}()
	return func() {
		<-done
		if p := panicked; p != nil {
			panicked = nil
			panic(p)
		}
	}
}

// appendDecision records rec. For a decision that lets a response go
// (lazy), a store that can make it durable later (storage.LazyDecisionAppender)
// only commits it, and durable waits for its fsync; otherwise it is durable
// when this returns, and durable returns nil.
func (h *Handler) appendDecision(ctx context.Context, rec storage.DecisionRecord, lazy bool) (int64, func(context.Context) error, error) {
	if l, ok := h.Store.(storage.LazyDecisionAppender); ok && lazy {
		return l.AppendDecisionLazy(ctx, rec)
	}
	id, err := h.Store.AppendDecision(ctx, rec)
	return id, func(context.Context) error { return nil }, err
}

// assert is what an allowed sign-in's response asserts: the device, and
// how the browser was bound to it.
func (h *Handler) assert(a *attempt) idp.Assert {
	as := idp.Assert{Attributes: []idp.Attribute{{Name: "clearance_device_id", Value: a.ident.DeviceID}}}
	if a.binding == BindingAgent {
		as.AuthnContext = idp.AuthnContextX509
	}
	return as
}

// resolveLaterOffered returns the ids of the blocking findings that the
// page offers to resolve later, in their order.
func resolveLaterOffered(blocking []decision.Finding) []string {
	var out []string
	for _, f := range blocking {
		if f.BypassOffered {
			out = append(out, f.PolicyID)
		}
	}
	return out
}

// pageShown is the digest a Continue or Resolve later form posted as
// "shown", or "" when it has none or not one: such a press passes over
// nothing (decision.Rollout.PageShown), and the person gets the page
// again, with one.
func pageShown(form url.Values) string {
	if v := form.Get("shown"); len(v) == decision.PageDigestLen {
		return v
	}
	return ""
}

// hold stores the denied sign-in for "Check again" and returns its token;
// resolveLater is what its page offers to resolve later.
func (h *Handler) hold(ctx context.Context, a *attempt, now time.Time, resolveLater []string) ([]byte, error) {
	token := make([]byte, tokenBytes)
	if _, err := rand.Read(token); err != nil {
		return nil, err
	}
	sum := sha256.Sum256(token)
	ttl := h.PendingTTL
	if ttl <= 0 {
		ttl = DefaultPendingTTL
	}
	p := storage.PendingSignIn{
		TokenHash: sum[:], DeviceID: a.ident.DeviceID, CertSerial: a.ident.CertSerial, BrowserHash: a.browser, Username: a.req.Username,
		Request: a.req.XML, RelayState: a.req.RelayState, CreatedAt: now, ExpiresAt: now.Add(ttl), ResolveLater: resolveLater,
	}
	if a.binding == BindingAgent {
		// Proven by the device's key as it was read for the proof: held
		// only while the device still has it (a live check may have
		// waited while the Mac changed keys).
		if a.ident.Device == nil {
			return nil, errors.New("no device record for the proof's key")
		}
		p.DeviceKey = a.ident.Device.PublicKey
	}
	err := h.Store.CreatePendingSignIn(ctx, p)
	if err != nil {
		return nil, err
	}
	return token, nil
}

// unidentified records and answers a sign-in whose certificate names no
// usable device; an unsigned one is only counted (see unrecorded).
func (h *Handler) unidentified(w http.ResponseWriter, r *http.Request, a *attempt, ierr *IdentifyError) {
	ctx := r.Context()
	if ierr.Reason == reason.Storage {
		h.unavailable(w, r, "identifying device", errors.New(ierr.Detail))
		return
	}
	now := h.now()
	latency := now.Sub(a.start)
	var ref string
	if !a.req.Signed {
		ref = h.unrecorded(r, a, ierr.Reason, ierr.Detail, ierr.DeviceID, "")
	} else {
		id, err := h.Store.AppendDecision(ctx, h.withClient(r, storage.DecisionRecord{
			At: now, Username: a.req.Username, DeviceID: ierr.DeviceID, CertSerial: ierr.CertSerial, Reason: string(ierr.Reason), Binding: string(a.binding),
			LiveCheck: decision.LiveCheckNone.String(), Latency: latency, Source: a.source, RequestID: a.req.AuthnRequest.ID,
		}))
		if err != nil {
			h.unavailable(w, r, "recording decision", err)
			return
		}
		h.metrics().SSODecision(false, string(ierr.Reason), metricMode(""), latency)
		h.log().Info("sso_decision", "allow", false, "reason", string(ierr.Reason), "detail", ierr.Detail,
			"user", a.req.Username, "device_id", ierr.DeviceID, "cert_serial", ierr.CertSerial, "decision_id", id, "source", a.source,
			"request_id", a.req.AuthnRequest.ID, "remote", r.RemoteAddr, "latency", latency)
		ref = strconv.FormatInt(id, 10)
	}
	switch ierr.Reason {
	case reason.SpoofedCertHeader, reason.BadCertHeader:
		h.Pages.Refused(w, http.StatusBadRequest, web.Refused{Reason: ierr.Reason, SupportID: ref})
	default:
		h.Pages.Denied(w, http.StatusForbidden, web.Denied{Reason: ierr.Reason, Now: now, SupportID: ref})
	}
}

// UnsignedLimits bound the sign-ins on unsigned requests that store
// anything, from every address together: one bucket for browsers that show
// no Mac; for those that show one, a bucket per Mac and then one they all
// share.
type UnsignedLimits struct {
	Anyone, Known *ratelimit.Shared
	PerMac        *ratelimit.Keyed
}

// The buckets of UnsignedLimits, as the busy metric and log name them: an
// operator raises sso_unsigned_rate_limit (or has Okta sign its requests)
// for the first and last, and looks at one Mac for the second.
const (
	BucketNoMac  = "no_mac"  // Anyone: browsers that show no Mac
	BucketOneMac = "one_mac" // PerMac: one Mac's own
	BucketMacs   = "macs"    // Known: every Mac's together
)

// unsignedBusy answers 503 and reports true when a sign-in on an unsigned
// request would store something beyond its bound; mac is the device the
// browser shows (its certificate's, its genuine hint's with the agent
// connected, its held sign-in's), "" for none. It stores nothing itself.
func (h *Handler) unsignedBusy(w http.ResponseWriter, r *http.Request, a *attempt, mac string) bool {
	if a.req.Signed || h.UnsignedStarts == nil {
		return false
	}
	ok, wait, bucket, over := true, time.Duration(0), BucketNoMac, "over sso_unsigned_rate_limit"
	switch {
	case mac == "":
		ok, wait = h.UnsignedStarts.Anyone.Allow()
	default:
		if ok, wait = h.UnsignedStarts.PerMac.Allow(mac); !ok {
			bucket, over = BucketOneMac, "over the bound for one Mac"
		} else {
			bucket = BucketMacs
			ok, wait = h.UnsignedStarts.Known.Allow()
		}
	}
	if ok {
		return false
	}
	h.metrics().SSOUnsignedBusy(bucket)
	ref := h.unrecorded(r, a, reason.Busy, over, mac, bucket)
	w.Header().Set("Retry-After", ratelimit.RetryAfter(wait))
	h.Pages.Refused(w, http.StatusServiceUnavailable, web.Refused{Reason: reason.Busy, SupportID: ref})
	return true
}

// unrecordedLogEvery is how often a refusal kept out of the decision log
// is logged at info; the others are logged at debug.
const unrecordedLogEvery = 10 * time.Second

// maxLoggedField bounds a sender-chosen string in an unrecorded line.
const maxLoggedField = 64

// unrecorded counts a refusal that anyone could have caused and returns the
// reference its page shows. The request is unsigned (allowed only with
// allow_unsigned_requests), so its username and request ID are whatever the
// sender wrote: a decision-log row for each would let one client fill the
// log with denials for any username, and the disk with them (tried: about a
// thousand rows a second, 2 KB each, kept for the retention period). So it
// is counted (clearance_sso_unrecorded_total{reason}) and logged at info, for
// each reason (and each bucket of a busy one: bucket, "" for none) at most
// once per unrecordedLogEvery with how many were left out, and each at
// debug. A signed request can only come from Okta: its refusals keep their
// rows.
func (h *Handler) unrecorded(r *http.Request, a *attempt, code reason.Code, detail, deviceID, bucket string) string {
	ref := newRef()
	h.metrics().SSOUnrecorded(string(code))
	attrs := []any{"reason", string(code), "detail", clip(detail), "user", clip(a.req.Username), "device_id", clip(deviceID),
		"request_id", clip(a.req.AuthnRequest.ID), "binding", string(a.binding), "source", a.source, "ref", ref, "remote", r.RemoteAddr}
	sample := string(code)
	if bucket != "" {
		// Sampled apart: a flood that empties one bucket does not keep
		// the line naming the Mac that emptied another from info.
		attrs = append(attrs, "bucket", bucket)
		sample += "/" + bucket
	}
	if c, ok := h.client(r); ok {
		attrs = append(attrs, "client", c)
	}
	if ok, skipped := h.unrecordedLog.Take(sample, unrecordedLogEvery, h.now()); ok {
		h.log().Info("sso_unrecorded", append(attrs, "others_not_logged", skipped)...)
	} else {
		h.log().Debug("sso_unrecorded", attrs...)
	}
	return ref
}

// client is the address of the browser behind a trusted proxy, as the
// rate limit counts it (ratelimit.ClientAddr): the proxy's own address is
// what r.RemoteAddr says, and in a flood from many addresses the log would
// name only the proxy. ok is false without a trusted proxy in between.
func (h *Handler) client(r *http.Request) (string, bool) {
	if h.Identify == nil || len(h.Identify.Trusted) == 0 || !h.Identify.trusted(r.RemoteAddr) {
		return "", false
	}
	a := ratelimit.ClientAddr(r, h.Identify.Trusted)
	if !a.IsValid() {
		return "", false
	}
	return a.String(), true
}

// clip bounds a sender-chosen string for the log.
func clip(s string) string {
	if len(s) > maxLoggedField {
		return s[:maxLoggedField] + "…"
	}
	return s
}

// refuse answers a request that is refused before any decision.
func (h *Handler) refuse(w http.ResponseWriter, r *http.Request, rf *refusal, status int) {
	ref := newRef()
	h.metrics().SSORefused(string(rf.code))
	h.logRefused(r, rf, ref)
	if h.DebugSAML && len(rf.xml) > 0 {
		if ok, skipped := h.debugXMLLog.Take(h.now()); ok {
			x := rf.xml
			if len(x) > maxDebugXML {
				i := maxDebugXML
				for i > 0 && !utf8.RuneStart(x[i]) {
					i--
				}
				x = x[:i]
			}
			// The AuthnRequest only: RelayState, Okta's state, is never logged.
			h.log().Warn("sso_request_refused_xml", "ref", ref, "reason", string(rf.code), "bytes", len(rf.xml), "xml", string(x),
				"others_not_logged", skipped)
		}
	}
	h.Pages.Refused(w, status, web.Refused{Reason: rf.code, SupportID: ref})
}

// maxLoggedDetail bounds a refusal's detail in the log: details quote the
// request (an XML parser's error, a field's value), and a line per request
// of whatever its sender wrote was 15 KB.
const maxLoggedDetail = idp.MaxDetail

// logRefused logs a refusal at warn. One that anyone could cause
// (refusal.anyone) is logged at warn at most once per unrecordedLogEvery
// for its reason, saying how many were left out, and each at debug.
func (h *Handler) logRefused(r *http.Request, rf *refusal, ref string) {
	detail := rf.detail
	if len(detail) > maxLoggedDetail {
		detail = strings.ToValidUTF8(detail[:maxLoggedDetail], "") + "…"
	}
	attrs := []any{"reason", string(rf.code), "detail", detail, "ref", ref, "remote", r.RemoteAddr, "method", r.Method}
	if !rf.anyone {
		h.log().Warn("sso_request_refused", attrs...)
		return
	}
	if ok, skipped := h.refusedLog.Take(string(rf.code), unrecordedLogEvery, h.now()); ok {
		h.log().Warn("sso_request_refused", append(attrs, "others_not_logged", skipped)...)
	} else {
		h.log().Debug("sso_request_refused", attrs...)
	}
}

// unavailable fails closed when storage or signing cannot be used; attrs
// are logged with the step.
func (h *Handler) unavailable(w http.ResponseWriter, r *http.Request, what string, err error, attrs ...any) {
	if r.Context().Err() != nil {
		// The browser hung up, which cancelled the work: not a storage
		// failure, and no one is left to read a page.
		h.metrics().SSORefused(string(reason.ClientGone))
		h.log().Debug("sso_client_gone", append([]any{"step", what, "err", err, "remote", r.RemoteAddr}, attrs...)...)
		return
	}
	ref := newRef()
	h.metrics().SSORefused(string(reason.Storage))
	h.log().Error("sso_unavailable", append([]any{"step", what, "err", err, "ref", ref, "remote", r.RemoteAddr}, attrs...)...)
	h.Pages.Refused(w, http.StatusServiceUnavailable, web.Refused{Reason: reason.Storage, SupportID: ref})
}

func newRef() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return "r-" + hex.EncodeToString(b)
}

// metricMode is the mode label of a decision: "enforce" when nothing
// softened it, or it was made before policies were judged.
func metricMode(m decision.Mode) string {
	if m == "" {
		return string(decision.ModeEnforce)
	}
	return string(m)
}

type noMetrics struct{}

func (noMetrics) SSODecision(bool, string, string, time.Duration) {}
func (noMetrics) SSORefused(string)                               {}
func (noMetrics) SSOUnrecorded(string)                            {}
func (noMetrics) SSOUnsignedBusy(string)                          {}

func (h *Handler) metrics() Metrics {
	if h.Metrics == nil {
		return noMetrics{}
	}
	return h.Metrics
}
