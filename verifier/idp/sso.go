package idp

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/clearance/clearance/verifier/access"
	"github.com/clearance/clearance/verifier/decision"
	"github.com/clearance/clearance/verifier/storage"
	"github.com/clearance/clearance/verifier/web"
)

// Store is what the sign-in flow persists: the replay cache, held sign-ins
// and the decision log.
type Store interface {
	storage.SAMLRequestStore
	storage.PendingSignInStore
	storage.DecisionStore
}

// Metrics counts sign-ins; *metrics.Metrics implements it.
type Metrics interface {
	SSODecision(allow bool, reason string, d time.Duration)
	SSORefused(reason string)
}

// Deciding is the access gate; *access.Gate implements it.
type Deciding interface {
	Decide(ctx context.Context, q access.Query, mode access.Mode) (decision.Decision, error)
}

var _ Deciding = (*access.Gate)(nil)

// Paths on the SSO listener.
const (
	PathMetadata = "/saml/metadata"
	PathCert     = "/saml/cert.pem"
	PathSSO      = "/saml/sso"
	PathRetry    = "/saml/sso/retry"
)

// Reasons of the "Check again" step.
const (
	ReasonRetryBadToken  Reason = "bad_retry_token"
	ReasonRetryExpired   Reason = "sign_in_expired"
	ReasonRetryOtherCert Reason = "retry_from_other_certificate"
	ReasonRetryDone      Reason = "sign_in_already_completed"
)

// Handler serves sign-in: SSO, "Check again", metadata and the certificate.
type Handler struct {
	IdP      *IdP
	Identify *Identifier
	Gate     Deciding
	Store    Store
	Pages    *web.Renderer
	Log      *slog.Logger
	Metrics  Metrics
	Now      func() time.Time
	// PendingTTL is how long a denied sign-in can be resumed (default 10m).
	PendingTTL time.Duration
}

// Register mounts the handler's paths on mux.
func (h *Handler) Register(mux *http.ServeMux) {
	mux.HandleFunc("GET "+PathMetadata, h.metadata)
	mux.HandleFunc("GET "+PathCert, h.cert)
	mux.HandleFunc("GET "+PathSSO, h.sso)
	mux.HandleFunc("POST "+PathSSO, h.sso)
	mux.HandleFunc("POST "+PathRetry, h.retry)
}

func (h *Handler) now() time.Time {
	if h.Now != nil {
		return h.Now()
	}
	return time.Now()
}

func (h *Handler) log() *slog.Logger {
	l := h.Log
	if l == nil {
		l = slog.Default()
	}
	return l.With("component", "sso")
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

// sso answers an AuthnRequest: 1. decode the binding, 2. check the request,
// 3. consume its ID, 4. identify the device, 5. decide (with a live check
// when the posture is old), 6. record, 7. respond or show what to fix.
func (h *Handler) sso(w http.ResponseWriter, r *http.Request) {
	start := h.now()
	ctx := r.Context()
	if !h.IdP.Configured() {
		h.refuse(w, r, refuse(ReasonNotConfigured, "okta_audience and okta_acs_url are not set"), http.StatusServiceUnavailable)
		return
	}

	// 1. Binding.
	var rec *Received
	var err error
	if r.Method == http.MethodGet {
		rec, err = DecodeRedirect(r.URL.RawQuery)
	} else {
		r.Body = http.MaxBytesReader(w, r.Body, MaxPostBody)
		if perr := r.ParseForm(); perr != nil {
			err = refuse(ReasonOversized, "form: %v", perr)
		} else {
			rec, err = DecodePost(r.PostForm.Get("SAMLRequest"), r.PostForm.Get("RelayState"))
		}
	}
	if err != nil {
		h.refuse(w, r, err, http.StatusBadRequest)
		return
	}

	// 2. The request itself.
	req, err := Validate(rec, h.IdP.Expect(start))
	if err != nil {
		h.refuse(w, r, err, http.StatusBadRequest)
		return
	}

	// 3. Replay: each request ID is answered once, on any replica. It is
	// remembered for longer than any IssueInstant could still pass.
	ttl := 2*h.IdP.Settings().MaxRequestSkew + time.Minute
	switch err := h.Store.UseRequestID(ctx, req.AuthnRequest.Issuer.Value, req.AuthnRequest.ID, start.Add(ttl)); {
	case errors.Is(err, storage.ErrAlreadyExists):
		h.refuse(w, r, refuse(ReasonReplayed, "request ID %s was already answered", req.AuthnRequest.ID), http.StatusBadRequest)
		return
	case err != nil:
		h.unavailable(w, r, "recording request ID", err)
		return
	}

	// 4. Which Mac is this?
	ident, ierr := h.Identify.Identify(ctx, r, start)
	if ierr != nil {
		h.unidentified(w, r, req, ierr, "sso", start)
		return
	}

	// 5. Decide.
	d, err := h.Gate.Decide(ctx, access.Query{DeviceID: ident.DeviceID, Username: req.Username, BrowserCert: ident.Browser, Device: ident.Device}, access.LiveIfStale)
	if err != nil {
		h.unavailable(w, r, "deciding", err)
		return
	}
	h.finish(w, r, req, ident, d, "sso", start, nil)
}

// retry is "Check again": the held sign-in is decided again after a live
// check and, if the Mac now passes, completed with a response to the
// original request.
func (h *Handler) retry(w http.ResponseWriter, r *http.Request) {
	start := h.now()
	ctx := r.Context()
	r.Body = http.MaxBytesReader(w, r.Body, 4<<10)
	if err := r.ParseForm(); err != nil {
		h.refuse(w, r, refuse(ReasonRetryBadToken, "form: %v", err), http.StatusBadRequest)
		return
	}
	token, err := base64.RawURLEncoding.DecodeString(r.PostForm.Get("token"))
	if err != nil || len(token) != tokenBytes {
		h.refuse(w, r, refuse(ReasonRetryBadToken, "token is not %d base64url bytes", tokenBytes), http.StatusBadRequest)
		return
	}
	sum := sha256.Sum256(token)
	hash := sum[:]
	p, err := h.Store.GetPendingSignIn(ctx, hash)
	switch {
	case errors.Is(err, storage.ErrNotFound):
		h.refuse(w, r, refuse(ReasonRetryExpired, "no held sign-in for this token"), http.StatusBadRequest)
		return
	case err != nil:
		h.unavailable(w, r, "reading held sign-in", err)
		return
	case !start.Before(p.ExpiresAt):
		h.refuse(w, r, refuse(ReasonRetryExpired, "held sign-in expired at %s", p.ExpiresAt.UTC().Format(time.RFC3339)), http.StatusBadRequest)
		return
	}
	req, err := Reparse(p.Request, p.RelayState, h.IdP.Expect(start))
	if err != nil {
		h.refuse(w, r, err, http.StatusBadRequest)
		return
	}
	ident, ierr := h.Identify.Identify(ctx, r, start)
	if ierr != nil {
		h.unidentified(w, r, req, ierr, "sso_retry", start)
		return
	}
	if ident.CertSerial != p.CertSerial || ident.DeviceID != p.DeviceID {
		// The token was made for another browser certificate: a leaked
		// token cannot complete someone else's sign-in.
		h.refuse(w, r, refuse(ReasonRetryOtherCert, "held for certificate %s, presented %s", p.CertSerial, ident.CertSerial), http.StatusForbidden)
		return
	}
	d, err := h.Gate.Decide(ctx, access.Query{DeviceID: ident.DeviceID, Username: p.Username, BrowserCert: ident.Browser, Device: ident.Device}, access.LiveAlways)
	if err != nil {
		h.unavailable(w, r, "deciding", err)
		return
	}
	if d.Allow {
		// Only the press that removes the held sign-in completes it.
		switch err := h.Store.DeletePendingSignIn(ctx, hash); {
		case errors.Is(err, storage.ErrNotFound):
			h.refuse(w, r, refuse(ReasonRetryDone, "held sign-in already completed"), http.StatusBadRequest)
			return
		case err != nil:
			h.unavailable(w, r, "completing held sign-in", err)
			return
		}
	}
	h.finish(w, r, req, ident, d, "sso_retry", start, token)
}

const tokenBytes = 32

// notes tell the helpdesk when a weaker check was used.
func notes(d decision.Decision) []string {
	if d.CertVouching == decision.VouchingOff {
		return []string{"This browser certificate was not checked against the Mac's own report (require-agent-vouched-cert is off)."}
	}
	return nil
}

// retryable reports whether "Check again" can change a denial: the Mac is
// known and something about its posture can be fixed.
func retryable(r decision.Reason) bool {
	switch r {
	case decision.ReasonUnknownDevice, decision.ReasonDeviceRevoked, decision.ReasonDeviceMismatch:
		return false
	}
	return true
}

// finish records the decision and answers: a signed response, or the
// remediation page with "Check again" (holding the sign-in under a new token,
// or the one given).
func (h *Handler) finish(w http.ResponseWriter, r *http.Request, req *Request, ident Identity, d decision.Decision, source string, start time.Time, token []byte) {
	ctx := r.Context()
	now := h.now()
	latency := now.Sub(start)
	rec := storage.DecisionRecord{
		At: now, Username: req.Username, DeviceID: ident.DeviceID, CertSerial: ident.CertSerial,
		Allow: d.Allow, Reason: string(d.Reason), PolicySetVersion: d.PolicySetVersion,
		ReportSeq: d.ReportSeq, LiveCheck: d.LiveCheck.String(), Latency: latency,
		Source: source, RequestID: req.AuthnRequest.ID, Results: results(d.Results),
	}
	id, err := h.Store.AppendDecision(ctx, rec)
	if err != nil {
		// Every decision is on record, or it is not made: fail closed.
		h.unavailable(w, r, "recording decision", err)
		return
	}
	h.metrics().SSODecision(d.Allow, string(d.Reason), latency)
	attrs := append(d.LogAttrs(),
		slog.Int64("decision_id", id), slog.String("source", source),
		slog.String("cert_serial", ident.CertSerial), slog.String("request_id", req.AuthnRequest.ID),
		slog.Duration("latency", latency))
	h.log().LogAttrs(ctx, slog.LevelInfo, "sso_decision", attrs...)

	if d.Allow {
		resp, err := h.IdP.Respond(r, req, []Attribute{{Name: "clearance_device_id", Value: ident.DeviceID}}, now)
		if err != nil {
			h.log().Error("signing response failed", "err", err, "decision_id", id)
			h.Pages.Refused(w, http.StatusInternalServerError, web.Refused{Reason: "signing_failed", SupportID: strconv.FormatInt(id, 10)})
			return
		}
		if err := h.Pages.Post(w, web.Post{ACSURL: h.IdP.Settings().ACSURL, SAMLResponse: resp, RelayState: req.RelayState, Notes: notes(d)}); err != nil {
			h.log().Error("response not sent", "err", err, "decision_id", id)
		}
		return
	}

	page := web.Denied{
		Kind: web.KindFor(d.Reason), Reason: string(d.Reason), Message: d.Message,
		DeviceName: d.DeviceName, LastChecked: d.ObservedAt, Now: now,
		Failing: web.Findings(d.Failing), Advisory: web.Findings(d.Advisory),
		SupportID: strconv.FormatInt(id, 10), Notes: notes(d),
	}
	if d.LiveCheck == decision.LiveCheckOffline || d.LiveCheck == decision.LiveCheckTimedOut {
		if page.Kind == web.KindGeneric {
			page.Kind = web.KindOffline
		}
	}
	if retryable(d.Reason) {
		if token == nil {
			token, err = h.hold(ctx, req, ident, now)
			if err != nil {
				h.log().Warn("holding sign-in failed; no Check again offered", "err", err, "decision_id", id)
			}
		}
		if token != nil {
			page.RetryAction, page.RetryToken = PathRetry, base64.RawURLEncoding.EncodeToString(token)
		}
	}
	h.Pages.Denied(w, http.StatusForbidden, page)
}

// hold stores the denied sign-in for "Check again" and returns its token.
func (h *Handler) hold(ctx context.Context, req *Request, ident Identity, now time.Time) ([]byte, error) {
	token := make([]byte, tokenBytes)
	if _, err := rand.Read(token); err != nil {
		return nil, err
	}
	sum := sha256.Sum256(token)
	ttl := h.PendingTTL
	if ttl <= 0 {
		ttl = 10 * time.Minute
	}
	err := h.Store.CreatePendingSignIn(ctx, storage.PendingSignIn{
		TokenHash: sum[:], DeviceID: ident.DeviceID, CertSerial: ident.CertSerial, Username: req.Username,
		Request: req.XML, RelayState: req.RelayState, CreatedAt: now, ExpiresAt: now.Add(ttl),
	})
	if err != nil {
		return nil, err
	}
	return token, nil
}

// unidentified records and answers a sign-in whose certificate names no
// usable device.
func (h *Handler) unidentified(w http.ResponseWriter, r *http.Request, req *Request, ierr *IdentifyError, source string, start time.Time) {
	ctx := r.Context()
	if ierr.Reason == ReasonStorage {
		h.unavailable(w, r, "identifying device", errors.New(ierr.Detail))
		return
	}
	now := h.now()
	latency := now.Sub(start)
	id, err := h.Store.AppendDecision(ctx, storage.DecisionRecord{
		At: now, Username: req.Username, DeviceID: ierr.DeviceID, CertSerial: ierr.CertSerial, Reason: string(ierr.Reason),
		LiveCheck: decision.LiveCheckNone.String(), Latency: latency, Source: source, RequestID: req.AuthnRequest.ID,
	})
	if err != nil {
		h.unavailable(w, r, "recording decision", err)
		return
	}
	h.metrics().SSODecision(false, string(ierr.Reason), latency)
	h.log().Info("sso_decision", "allow", false, "reason", string(ierr.Reason), "detail", ierr.Detail,
		"user", req.Username, "device_id", ierr.DeviceID, "cert_serial", ierr.CertSerial, "decision_id", id, "source", source,
		"request_id", req.AuthnRequest.ID, "remote", r.RemoteAddr, "latency", latency)
	ref := strconv.FormatInt(id, 10)
	switch ierr.Reason {
	case ReasonSpoofedCertHeader, ReasonBadCertHeader:
		h.Pages.Refused(w, http.StatusBadRequest, web.Refused{Reason: string(ierr.Reason), Title: "Sign-in couldn't be checked",
			Message: "This sign-in came through a connection that isn't allowed to vouch for a Mac. Contact your IT team.", SupportID: ref})
	case ReasonNoClientCert:
		h.Pages.Denied(w, http.StatusForbidden, web.Denied{Kind: web.KindNoCert, Reason: string(ierr.Reason), Now: now, SupportID: ref})
	case ReasonExpiredCert:
		h.Pages.Denied(w, http.StatusForbidden, web.Denied{Kind: web.KindUnknownDevice, Reason: string(ierr.Reason), Now: now, SupportID: ref,
			Message: "This Mac's sign-in certificate has expired or isn't valid yet. Check that the Mac's date and time are set automatically; if they are, ask your IT team to renew it."})
	case ReasonSupersededCert:
		h.Pages.Denied(w, http.StatusForbidden, web.Denied{Kind: web.KindRevoked, Reason: string(ierr.Reason), Now: now, SupportID: ref,
			Message: "This certificate was replaced by a newer one. Quit and reopen your browser, choose the newest certificate, and sign in again."})
	default:
		h.Pages.Denied(w, http.StatusForbidden, web.Denied{Kind: web.KindUnknownDevice, Reason: string(ierr.Reason), Now: now, SupportID: ref})
	}
}

// refuse answers a request that is refused before any decision.
func (h *Handler) refuse(w http.ResponseWriter, r *http.Request, err error, status int) {
	var re *RequestError
	if !errors.As(err, &re) {
		re = &RequestError{Reason: ReasonMalformedXML, Detail: err.Error()}
	}
	ref := newRef()
	h.metrics().SSORefused(string(re.Reason))
	h.log().Warn("sso_request_refused", "reason", string(re.Reason), "detail", re.Detail, "ref", ref, "remote", r.RemoteAddr, "method", r.Method)
	title, msg := refusal(re.Reason)
	h.Pages.Refused(w, status, web.Refused{Reason: string(re.Reason), Title: title, Message: msg, SupportID: ref})
}

// unavailable fails closed when storage or signing cannot be used.
func (h *Handler) unavailable(w http.ResponseWriter, r *http.Request, what string, err error) {
	ref := newRef()
	h.metrics().SSORefused(string(ReasonStorage))
	h.log().Error("sso_unavailable", "step", what, "err", err, "ref", ref, "remote", r.RemoteAddr)
	h.Pages.Refused(w, http.StatusServiceUnavailable, web.Refused{Reason: string(ReasonStorage), Title: "Sign-in is unavailable right now",
		Message: "The security check couldn't be completed. Wait a minute, then go back to the app and sign in again.", SupportID: ref})
}

func newRef() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return "r-" + hex.EncodeToString(b)
}

// maxResultMessage bounds an osquery message kept in the decision log.
const maxResultMessage = 512

func results(fs []decision.Finding) []storage.DecisionResult {
	if len(fs) == 0 {
		return nil
	}
	out := make([]storage.DecisionResult, len(fs))
	for i, f := range fs {
		msg := f.Message
		if len(msg) > maxResultMessage {
			msg = msg[:maxResultMessage]
		}
		out[i] = storage.DecisionResult{PolicyID: f.PolicyID, Status: string(f.Status), Required: f.Required, Critical: f.Critical, Message: msg}
	}
	return out
}

// refusal is what the user is told about a refused request.
func refusal(r Reason) (title, msg string) {
	const back = " Go back to the app and sign in again."
	switch r {
	case ReasonNotConfigured:
		return "Sign-in isn't set up yet", "This security check isn't connected to your organization's sign-in yet. Contact your IT team."
	case ReasonReplayed:
		return "This sign-in link was already used", "Each sign-in link works once, and this one has been used (perhaps the page was reloaded or opened twice)." + back
	case ReasonStaleRequest:
		return "This sign-in link has expired", "The sign-in took too long to reach this check, or this computer's clock is wrong." + back
	case ReasonFutureRequest:
		return "This sign-in link isn't valid yet", "The clocks of this computer's sign-in services disagree. Check that the date and time are set automatically." + back
	case ReasonRetryExpired:
		return "This sign-in has expired", "It's been too long since the security check stopped this sign-in." + back
	case ReasonRetryDone:
		return "This sign-in is already complete", "It was completed in another tab or window." + back
	case ReasonRetryOtherCert:
		return "This sign-in belongs to another browser", "Check again from the same browser that started the sign-in." + back
	case ReasonMissingSignature, ReasonBadSignature, ReasonUnsupportedSigAlg, ReasonWrongIssuer, ReasonWrongACS, ReasonWrongDestination:
		return "This sign-in request can't be trusted", "The request didn't come from your organization's sign-in service as expected. If this keeps happening, contact your IT team." + back
	}
	return "This sign-in request couldn't be read", "The request was damaged or isn't one this check accepts." + back
}

type noMetrics struct{}

func (noMetrics) SSODecision(bool, string, time.Duration) {}
func (noMetrics) SSORefused(string)                       {}

func (h *Handler) metrics() Metrics {
	if h.Metrics == nil {
		return noMetrics{}
	}
	return h.Metrics
}
