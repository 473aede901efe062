package signin

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/clearance/clearance/pkg/presence"
	"github.com/clearance/clearance/verifier/access"
	"github.com/clearance/clearance/verifier/decision"
	"github.com/clearance/clearance/verifier/idp"
	"github.com/clearance/clearance/verifier/reason"
	"github.com/clearance/clearance/verifier/storage"
	"github.com/clearance/clearance/verifier/web"
)

// The agent's proof of presence binds a sign-in to the Mac: the browser is
// sent by top-level navigation to the agent on 127.0.0.1, which signs a
// statement {challenge, device, this verifier's origin, time} with the
// device key and sends the browser back here. The challenge ties the
// statement to one sign-in, the __Host- cookie ties that sign-in to the
// browser that started it, and the device's current enrolled key ties it to
// the Mac. (A top-level navigation meets neither mixed-content rules nor
// Chrome's local-network permission prompt; a fetch would meet both.)

// PathPresence is where the agent sends the browser back.
const PathPresence = "/saml/presence"

// ChallengeTTL is how long a proof of presence may take to come back.
const ChallengeTTL = 2 * time.Minute

// Cookies. __Host- makes the browser keep them to this exact origin, over
// HTTPS, for every path.
const (
	// cookieSignIn is a random value naming this browser; a sign-in is
	// completed only by the browser whose cookie started it. A session
	// cookie, reused across sign-ins so that several tabs work at once.
	cookieSignIn = "__Host-clearance-signin"
	// cookieDevice is a signed hint of which Mac this browser proved to be
	// on last time, so that a browser whose agent is not running is told so
	// instead of being stranded on its own connection error page. It is a
	// hint, never a credential.
	cookieDevice = "__Host-clearance-device"
	// hintLifetime is how long the device hint is kept.
	hintLifetime = 90 * 24 * time.Hour
	browserBytes = 32
)

// Binding is how sign-ins are bound to the Mac.
type Binding string

const (
	// BindingAgent: the agent's proof of presence, always.
	BindingAgent Binding = "agent"
	// BindingCertificate: a browser certificate the Mac's agent vouches for
	// (the weaker mode: a certificate in a keychain proves the certificate
	// is on the Mac, not its key).
	BindingCertificate Binding = "certificate"
	// BindingEither: the agent's proof, and a browser certificate alone
	// only for a Mac whose agent is not connected (see Handler.bind).
	BindingEither Binding = "either"
	// BindingHint is never a Handler's binding: it marks a decision made
	// from the device hint alone, which names the Mac this browser last
	// proved to be on, not the one it is on now. Only a denial is ever
	// made so (a revoked Mac's: see Handler.revokedHint).
	BindingHint Binding = "hint"
)

// DeviceReader reads a device's current enrollment.
type DeviceReader interface {
	GetDevice(ctx context.Context, id string) (storage.Device, error)
}

// Presence is what the agent binding needs.
type Presence struct {
	// AgentAddr is where agents serve proofs, a loopback host:port
	// (presence.DefaultAgentAddr).
	AgentAddr string
	// URL is this verifier's presence URL, exactly as agents know it.
	URL string
	// Devices gives each device's current key.
	Devices DeviceReader
	// Connected reports whether a device's agent holds a stream to this or
	// another replica (hub.Hub.Connected).
	Connected func(deviceID string) bool
	// MaybeConnected is Connected, but true when that cannot be told
	// (hub.Hub.MaybeConnected): with BindingEither a certificate decides
	// alone only for a Mac known to have no agent connected. nil: Connected.
	MaybeConnected func(deviceID string) bool
	// HintKey signs the device-hint cookie and authenticates the
	// challenges this verifier issues (shared by every replica; each use
	// has its own context).
	HintKey []byte
	// MaxSkew is how far a statement's time may be ahead of this clock (or
	// behind it beyond ChallengeTTL): the agent's clock, not this one.
	MaxSkew time.Duration

	origin string
}

// Check prepares p: its URL must be one agents sign for.
func (p *Presence) Check() error {
	o, err := presence.OriginOf(p.URL)
	if err != nil {
		return err
	}
	if _, err := presence.AgentURL(p.AgentAddr, presence.NewChallenge(), p.URL); err != nil {
		return err
	}
	if len(p.HintKey) < 16 {
		return errors.New("device hint key is missing")
	}
	if p.MaxSkew <= 0 {
		p.MaxSkew = 5 * time.Minute
	}
	p.origin = o
	return nil
}

// challengeNonce is how many of a challenge's bytes are random; the rest
// are their MAC.
const challengeNonce = 16

// newChallenge is a one-time challenge: 16 random bytes and their MAC
// under the presence key, so that a statement naming a challenge no
// replica issued is refused before anything is read or written for it.
// To the agent it is presence.ChallengeSize opaque bytes, as before.
func (p *Presence) newChallenge() string {
	b := make([]byte, presence.ChallengeSize)
	_, _ = rand.Read(b[:challengeNonce])
	copy(b[challengeNonce:], p.challengeMAC(b[:challengeNonce]))
	return base64.RawURLEncoding.EncodeToString(b)
}

// issued reports whether challenge carries a valid MAC: one a replica made,
// in its one spelling (canonical base64url, as the statement's parser
// requires too). The decoder skips CR and LF even in strict mode, so the
// length is checked first: a spelling with one has more characters.
func (p *Presence) issued(challenge string) bool {
	if len(challenge) != base64.RawURLEncoding.EncodedLen(presence.ChallengeSize) {
		return false
	}
	b, err := base64.RawURLEncoding.Strict().DecodeString(challenge)
	if err != nil || len(b) != presence.ChallengeSize {
		return false
	}
	return hmac.Equal(b[challengeNonce:], p.challengeMAC(b[:challengeNonce]))
}

func (p *Presence) challengeMAC(nonce []byte) []byte {
	m := hmac.New(sha256.New, p.HintKey)
	m.Write([]byte("clearance presence challenge v1\n"))
	m.Write(nonce)
	return m.Sum(nil)[:presence.ChallengeSize-challengeNonce]
}

func hash32(b []byte) []byte {
	s := sha256.Sum256(b)
	return s[:]
}

// browser returns this browser's sign-in cookie value, and whether it is
// new (and must be set).
func browserID(r *http.Request) (value string, fresh bool) {
	if c, err := r.Cookie(cookieSignIn); err == nil {
		if b, err := base64.RawURLEncoding.DecodeString(c.Value); err == nil && len(b) == browserBytes {
			return c.Value, false
		}
	}
	b := make([]byte, browserBytes)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b), true
}

// browserHash is the stored form of r's sign-in cookie; nil without one.
func browserHash(r *http.Request) []byte {
	c, err := r.Cookie(cookieSignIn)
	if err != nil || c.Value == "" {
		return nil
	}
	return hash32([]byte(c.Value))
}

// hostCookie is a __Host- cookie: Secure, no Domain, Path=/.
func hostCookie(name, value string, maxAge time.Duration) *http.Cookie {
	c := &http.Cookie{Name: name, Value: value, Path: "/", Secure: true, HttpOnly: true, SameSite: http.SameSiteLaxMode}
	if maxAge > 0 {
		c.MaxAge = int(maxAge / time.Second)
	}
	return c
}

// dropHint tells the browser to forget its device hint.
func dropHint(w http.ResponseWriter) {
	c := hostCookie(cookieDevice, "", 0)
	c.MaxAge = -1 // Max-Age=0
	http.SetCookie(w, c)
}

// hintFor is the device-hint cookie value for deviceID, good until
// expires: "v2.<device id>.<expiry, unix seconds>.<MAC>".
func (p *Presence) hintFor(deviceID string, expires time.Time) string {
	exp := strconv.FormatInt(expires.Unix(), 10)
	return "v2." + deviceID + "." + exp + "." + base64.RawURLEncoding.EncodeToString(p.hintMAC(deviceID, exp))
}

func (p *Presence) hintMAC(deviceID, exp string) []byte {
	m := hmac.New(sha256.New, p.HintKey)
	m.Write([]byte("clearance device hint v2\n" + deviceID + "\n" + exp))
	return m.Sum(nil)[:16]
}

// hintedDevice returns the device r's hint cookie names, if it is genuine
// and not expired at now.
func (p *Presence) hintedDevice(r *http.Request, now time.Time) (string, bool) {
	c, err := r.Cookie(cookieDevice)
	if err != nil || len(c.Value) > 256 {
		return "", false
	}
	parts := strings.Split(c.Value, ".")
	if len(parts) != 4 || parts[0] != "v2" || parts[1] == "" {
		return "", false
	}
	mac, err := base64.RawURLEncoding.DecodeString(parts[3])
	if err != nil || !hmac.Equal(mac, p.hintMAC(parts[1], parts[2])) {
		return "", false
	}
	exp, err := strconv.ParseInt(parts[2], 10, 64)
	if err != nil || !now.Before(time.Unix(exp, 0)) {
		return "", false
	}
	return parts[1], true
}

// route is how a sign-in is bound, as bind decides it.
type route struct {
	// agent: by the agent's proof of presence. pin, then, is the only
	// device whose proof completes it ("" for any enrolled device's).
	agent bool
	pin   string
	// identified: the browser's certificate was read already (ident, or
	// why it names no usable device: ierr), and binds the sign-in unless
	// agent is set.
	identified bool
	ident      Identity
	ierr       *IdentifyError
}

// bind decides how this sign-in is bound. With BindingEither a
// certificate never outranks a running agent: when the certificate names
// a Mac whose agent is connected, that Mac's proof is asked for, and only
// that Mac's proof completes the sign-in (so whoever holds a copy of the
// certificate cannot pick the weaker binding by sending no cookies, nor
// steer the proof to another Mac with a hint). The certificate decides
// alone only when the Mac it names has no agent connected: the Macs
// `either` exists for. Whether an agent is connected is the verifier's own
// knowledge (its streams), which no browser can change.
func (h *Handler) bind(ctx context.Context, r *http.Request, now time.Time) route {
	switch h.Binding {
	case BindingCertificate:
		return route{}
	case BindingEither:
		if !h.Identify.Presented(r) {
			return route{agent: true}
		}
		ident, ierr := h.Identify.Identify(ctx, r, now)
		switch {
		case ierr == nil && h.Presence.mayBeConnected(ident.DeviceID):
			return route{agent: true, pin: ident.DeviceID}
		case ierr == nil:
			return route{identified: true, ident: ident}
		case ierr.Reason != reason.Storage:
			// A certificate that names no usable Mac binds nothing: a
			// genuine hint naming a Mac whose agent is connected sends
			// the browser to the agent, as without a certificate.
			if dev, ok := h.Presence.hintedDevice(r, now); ok && h.Presence.Connected(dev) {
				return route{agent: true}
			}
		}
		return route{identified: true, ierr: ierr}
	}
	return route{agent: true}
}

// mayBeConnected is MaybeConnected, or Connected without it.
func (p *Presence) mayBeConnected(deviceID string) bool {
	if p.MaybeConnected != nil {
		return p.MaybeConnected(deviceID)
	}
	return p.Connected(deviceID)
}

// askAgent starts the proof of presence: 0. within the bound on unsigned
// requests, 1. the browser's cookie, 2. the
// request's ID spent and a challenge stored with the request for any
// replica to complete, in one write, 3. the browser sent to the agent — or,
// when its Mac is known not to be running the agent, a page that says so.
// pin, when set, is the Mac the browser's certificate named, whose agent is
// connected: only its proof completes the sign-in, and a hint is not read.
func (h *Handler) askAgent(w http.ResponseWriter, r *http.Request, a *attempt, pin string) {
	ctx := r.Context()
	now := h.now()
	a.binding = BindingAgent
	// The Mac this browser is on: the one its certificate named, or the one
	// it proved to be on last time if its hint is genuine; and whether its
	// agent is connected: asked once.
	dev, hinted, connected := pin, true, true
	if pin == "" {
		dev, hinted = h.Presence.hintedDevice(r, now)
		connected = hinted && h.Presence.Connected(dev)
	}
	// 0. A request anyone could have sent stores nothing beyond the bound
	// on them all: a browser whose genuine hint names a Mac with its agent
	// connected counts against the bound for known Macs.
	known := ""
	if connected {
		known = dev
	}
	if h.unsignedBusy(w, r, a, known) {
		return
	}
	// 0a. A hint naming a Mac whose agent is not connected: the agent of a
	// revoked Mac cannot connect, so the hint alone says what is true.
	if hinted && !connected {
		d, err := h.Presence.Devices.GetDevice(ctx, dev)
		switch {
		case errors.Is(err, storage.ErrNotFound):
			// No longer enrolled: the hint names nothing; the agent on
			// this Mac says which Mac it is now.
			dropHint(w)
			hinted = false
		case err != nil:
			h.unavailable(w, r, "reading the hinted device", err)
			return
		case d.Revoked():
			h.revokedHint(w, r, a, d)
			return
		}
	}
	// 1. This browser.
	browser, fresh := browserID(r)

	// 2. Replay, and the challenge, in one commit: a replayed request
	// stores no challenge and sets no cookie. A failure of either part
	// (a taken challenge hash included) stores neither and fails closed,
	// as a replay cache that cannot write does.
	challenge := h.Presence.newChallenge()
	err := h.Store.StartSignInChallenge(ctx, a.req.AuthnRequest.Issuer.Value, a.req.AuthnRequest.ID, h.requestIDExpiry(a.req, a.start),
		storage.SignInChallenge{
			ChallengeHash: hash32([]byte(challenge)), BrowserHash: hash32([]byte(browser)),
			Username: a.req.Username, Request: a.req.XML, RelayState: a.req.RelayState, DeviceID: pin,
			CreatedAt: now, ExpiresAt: now.Add(ChallengeTTL),
		})
	if !h.spent(w, r, a.req, "recording request ID and sign-in challenge", err) {
		return
	}
	if fresh {
		http.SetCookie(w, hostCookie(cookieSignIn, browser, 0))
	}
	agentURL, err := presence.AgentURL(h.Presence.AgentAddr, challenge, h.Presence.URL)
	if err != nil {
		h.unavailable(w, r, "building the agent URL", err)
		return
	}

	// 3. A Mac known from an earlier sign-in whose agent is not connected:
	// the browser would only find nothing listening.
	if hinted && !connected {
		ref := newRef()
		h.metrics().SSORefused(string(reason.AgentNotRunning))
		h.log().Info("agent_not_running", "device_id", dev, "user", a.req.Username, "request_id", a.req.AuthnRequest.ID, "ref", ref, "remote", r.RemoteAddr)
		h.Pages.AgentMissing(w, http.StatusOK, web.AgentMissing{TryAgainURL: agentURL, SupportID: ref, Now: now})
		return
	}
	h.log().Debug("asking agent for presence", "user", a.req.Username, "request_id", a.req.AuthnRequest.ID, "device_id", pin)
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Referrer-Policy", "no-referrer")
	http.Redirect(w, r, agentURL, http.StatusSeeOther)
}

// revokedHint answers a sign-in from a browser whose genuine hint names a
// revoked Mac: the Mac was removed, whatever else is true of it, and the
// security team sees the attempt. The decision is recorded under that Mac
// with BindingHint: the hint says this browser proved to be on it once,
// and a copy of the cookie says as much from any browser, so the row
// claims no more. The hint is dropped, so that the next sign-in from this
// browser asks the agent on the Mac it is on (a revoked Mac's agent
// proves it again; a browser moved to another Mac is not held to the old
// one). An unsigned request is only counted (see unrecorded).
func (h *Handler) revokedHint(w http.ResponseWriter, r *http.Request, a *attempt, dev storage.Device) {
	now := h.now()
	a.binding, a.ident = BindingHint, Identity{DeviceID: dev.ID, Via: "hint", Device: &dev}
	dropHint(w)
	// A revoked device is denied before anything else is read.
	d := decision.Decide(decision.Input{Device: &dev, Username: a.req.Username, Now: now})
	if d.Allow || d.Reason != reason.DeviceRevoked {
		h.unavailable(w, r, "deciding on a revoked device", fmt.Errorf("device %s: decided %s", dev.ID, d.Reason))
		return
	}
	if !a.req.Signed {
		ref := h.unrecorded(r, a, reason.DeviceRevoked, "the device hint names a revoked device", dev.ID, "")
		h.Pages.Denied(w, http.StatusForbidden, web.Denied{Reason: reason.DeviceRevoked, DeviceName: dev.Hostname, Now: now, SupportID: ref})
		return
	}
	if !h.spendRequestID(w, r, a.req, a.start) {
		return
	}
	h.finish(w, r, a, d)
}

// presence completes a sign-in with the agent's proof: 1. decode, 2. find
// the sign-in it answers and 3. spend it (once, whatever follows), 4. from the
// same browser, in time, 5. for this verifier, 6. from the Mac the
// sign-in's certificate named, if one did, 7. signed by the device's
// current key; then decide and answer as any sign-in.
func (h *Handler) presence(w http.ResponseWriter, r *http.Request) {
	start := h.now()
	ctx := r.Context()
	p := h.Presence

	// 1. The statement, strictly decoded.
	raw, sig, err := presence.ParseRedirectQuery(r.URL.RawQuery)
	if err != nil {
		h.refuse(w, r, byAnyone(refused(reason.PresenceMalformed, "%v", err)), http.StatusBadRequest)
		return
	}
	st, err := presence.Parse(raw)
	if err != nil {
		h.refuse(w, r, byAnyone(refused(reason.PresenceMalformed, "%v", err)), http.StatusBadRequest)
		return
	}

	// 2. The sign-in it answers (a challenge a replica issued: its MAC is
	// checked before anything is read or written), 3. used now, whatever
	// follows (one write): a statement completes its sign-in at most once, and is spent
	// by its first presentation even when that one is refused. A statement
	// leaked on its way (to another browser, into a browser's history, a
	// proxy's log) is worth nothing afterwards, and one challenge yields at
	// most one refusal on record. Of concurrent presentations, exactly one
	// gets past this, on any replica.
	if !p.issued(st.Challenge) {
		h.refuse(w, r, byAnyone(refused(reason.PresenceUnknown, "no sign-in has this challenge: not one this verifier issued (device %s)", st.DeviceID)), http.StatusBadRequest)
		return
	}
	chash := hash32([]byte(st.Challenge))
	ch, err := h.Store.UseSignInChallenge(ctx, chash, start)
	switch {
	case errors.Is(err, storage.ErrNotFound):
		h.refuse(w, r, byAnyone(refused(reason.PresenceUnknown, "no sign-in has this challenge (device %s)", st.DeviceID)), http.StatusBadRequest)
		return
	case errors.Is(err, storage.ErrAlreadyExists):
		// The URL is in the browser's history: anyone who has it can
		// send it again.
		h.refuse(w, r, byAnyone(refused(reason.PresenceReplayed, "the sign-in's challenge was presented before (completed or refused)")), http.StatusBadRequest)
		return
	case err != nil:
		h.unavailable(w, r, "using sign-in challenge", err)
		return
	}

	// 4. The browser that started it, in time.
	bh := browserHash(r)
	if bh == nil || subtle.ConstantTimeCompare(bh, ch.BrowserHash) != 1 {
		h.refuse(w, r, refused(reason.PresenceOtherBrowser, "sign-in started in another browser (cookie present: %v; device %s)", bh != nil, st.DeviceID), http.StatusForbidden)
		return
	}
	if !start.Before(ch.ExpiresAt) {
		h.refuse(w, r, refused(reason.PresenceExpired, "challenge expired at %s", ch.ExpiresAt.UTC().Format(time.RFC3339)), http.StatusBadRequest)
		return
	}

	// 5. For this verifier.
	if st.Origin != p.origin {
		h.refuse(w, r, refused(reason.PresenceWrongOrigin, "statement for %s, this verifier is %s", st.Origin, p.origin), http.StatusBadRequest)
		return
	}

	// The sign-in's request, as it was checked on arrival.
	req, err := idp.Reparse(ch.Request, ch.RelayState, h.IdP.Expect(start))
	if err != nil {
		h.refuse(w, r, fromIdP(err), http.StatusBadRequest)
		return
	}
	a := &attempt{req: req, source: sourceSSO, start: start, binding: BindingAgent, browser: bh}

	// 6. From the Mac the browser's certificate named, when one did: the
	// loopback answers from whichever Mac the browser is on, and a proof
	// from another Mac does not speak for the certificate's. On record
	// under the certificate's Mac, whose sign-in this was.
	if ch.DeviceID != "" && st.DeviceID != ch.DeviceID {
		a.ident = Identity{DeviceID: ch.DeviceID, Via: "agent"}
		h.unbound(w, r, a, reason.PresenceOtherDevice, "", fmt.Sprintf("proof from device %s; the browser's certificate names device %s", st.DeviceID, ch.DeviceID))
		return
	}

	// 7. Signed by the device's current key. A proof that is not names
	// the device only as a claim: anyone who can start a sign-in can
	// name any device, and the device's decisions are those bound to it.
	dev, err := p.Devices.GetDevice(ctx, st.DeviceID)
	switch {
	case errors.Is(err, storage.ErrNotFound):
		h.unbound(w, r, a, reason.PresenceUnknownDevice, st.DeviceID, fmt.Sprintf("device %s is not enrolled", st.DeviceID))
		return
	case err != nil:
		h.unavailable(w, r, "reading device", err)
		return
	}
	if err := verifyStatement(dev, raw, sig); err != nil {
		h.unbound(w, r, a, reason.PresenceBadSignature, dev.ID, err.Error())
		return
	}
	a.ident = Identity{DeviceID: dev.ID, Via: "agent", Device: &dev}
	if err := st.CheckTime(start, ChallengeTTL+p.MaxSkew, p.MaxSkew); err != nil {
		h.unbound(w, r, a, reason.PresenceClock, "", err.Error())
		return
	}

	// This browser is on this Mac: remember it, for a useful page when the
	// agent is not running next time.
	http.SetCookie(w, hostCookie(cookieDevice, p.hintFor(dev.ID, start.Add(hintLifetime)), hintLifetime))
	d, err := h.Gate.Decide(ctx, h.query(a, req.Username), access.LiveIfStale)
	if err != nil {
		h.unavailable(w, r, "deciding", err)
		return
	}
	h.finish(w, r, a, d)
}

// verifyStatement checks raw's signature with dev's current enrolled key.
func verifyStatement(dev storage.Device, raw, sig []byte) error {
	pub, err := x509.ParsePKIXPublicKey(dev.PublicKey)
	if err != nil {
		return fmt.Errorf("device %s key: %w", dev.ID, err)
	}
	if _, err := presence.Verify(pub, raw, sig); err != nil {
		return fmt.Errorf("device %s: %w", dev.ID, err)
	}
	return nil
}

// unbound records and answers a proof that does not prove this browser is
// on a Mac: an attempt worth keeping in the decision log — unless the
// sign-in's request is unsigned, when anyone could have started it and it
// is only counted (unrecorded). It is kept under a.ident's device, the one
// it was bound to (a genuine proof at the wrong time, or the certificate's
// Mac), if any; claimed is the device a proof named but was not signed by,
// kept as the row's claimed device and not under it.
func (h *Handler) unbound(w http.ResponseWriter, r *http.Request, a *attempt, code reason.Code, claimed, detail string) {
	ctx := r.Context()
	if !a.req.Signed {
		if claimed != "" {
			detail = "claimed device " + claimed + ": " + detail
		}
		ref := h.unrecorded(r, a, code, detail, a.ident.DeviceID, "")
		h.Pages.Refused(w, http.StatusForbidden, web.Refused{Reason: code, SupportID: ref})
		return
	}
	now := h.now()
	latency := now.Sub(a.start)
	id, err := h.Store.AppendDecision(ctx, h.withClient(r, storage.DecisionRecord{
		At: now, Username: a.req.Username, DeviceID: a.ident.DeviceID, ClaimedDeviceID: claimed, Reason: string(code), Binding: string(BindingAgent),
		LiveCheck: decision.LiveCheckNone.String(), Latency: latency, Source: a.source, RequestID: a.req.AuthnRequest.ID,
	}))
	if err != nil {
		h.unavailable(w, r, "recording decision", err)
		return
	}
	h.metrics().SSODecision(false, string(code), metricMode(""), latency)
	h.log().LogAttrs(ctx, slog.LevelWarn, "sso_decision", slog.Bool("allow", false), slog.String("reason", string(code)),
		slog.String("detail", detail), slog.String("user", a.req.Username), slog.String("device_id", a.ident.DeviceID), slog.String("claimed_device_id", claimed),
		slog.Int64("decision_id", id), slog.String("binding", string(BindingAgent)), slog.String("request_id", a.req.AuthnRequest.ID),
		slog.String("remote", r.RemoteAddr))
	h.Pages.Refused(w, http.StatusForbidden, web.Refused{Reason: code, SupportID: fmt.Sprint(id)})
}
