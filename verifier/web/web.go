// Package web owns every HTML page a person sees while signing in through
// the verifier: the remediation page when a Mac is denied (what failed, how
// to fix it, "Check again"), the page for a sign-in request that cannot be
// served at all, and the auto-submitting form that carries the SAML response
// back to Okta.
//
// Pages are self-contained: the stylesheet and the one script are embedded
// and inlined, and allowed by their hashes in a strict Content-Security-Policy
// set on every response, so nothing is loaded from anywhere and no route has
// to be mounted for assets. Every string given to a page is treated as
// untrusted and escaped by html/template; a policy's user text and
// resolution become paragraphs, numbered steps and bullet points by the
// rules in steps.go, never markup. Pages work without JavaScript.
//
// A policy's description is the security team's and never reaches a page;
// nor does osquery's error text, which the decision log keeps for the
// helpdesk under the page's reference.
package web

import (
	"bytes"
	"cmp"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/clearance/clearance/pkg/printable"
	"github.com/clearance/clearance/verifier/decision"
	"github.com/clearance/clearance/verifier/reason"
)

//go:embed templates/*.html
var templateFS embed.FS

var (
	//go:embed assets/style.css
	styleFile string
	//go:embed assets/autosubmit.js
	autosubmitFile string
)

// The inlined stylesheet and script; the CSP allows exactly these bytes by
// hash.
var (
	styleCSS     = strings.TrimSpace(styleFile)
	autosubmitJS = strings.TrimSpace(autosubmitFile)
)

// Finding is one policy on a remediation page.
type Finding struct {
	Name string
	// UserText says why the check matters, for the person at the Mac (the
	// policy's user_text). Shown under the name; written as Resolution is.
	UserText string
	// Resolution tells the person how to pass: paragraphs, numbered steps
	// and bullet points, by the rules in steps.go.
	Resolution string
	// Status is PASS, FAIL, ERROR or MISSING. Only FAIL is something to
	// fix: ERROR and MISSING mean the check could not run, and are shown
	// as that (see Denied).
	Status string
	// Critical findings can never be skipped: one that blocks now is shown
	// as "Blocks sign-in now, cannot be skipped".
	Critical bool

	// How a required finding acts on this sign-in, as the decision found
	// it; the page shows each item's own state from these and orders the
	// items by it: those that block now, then those that block later
	// (soonest first), then warnings. Advisory findings ignore them.
	//
	// Enforcement is the finding's effective enforcement: Enforce (or
	// empty) blocks sign-in now, Warn (or Monitor) does not.
	Enforcement decision.Enforcement
	// BlocksFrom, when set, is when a finding that warns only while its
	// grace period runs starts blocking (decision.Finding.BlocksFrom).
	BlocksFrom time.Time
	// ResolveLater: the decision offered "Resolve later" for this finding
	// (decision.Finding.BypassOffered). On a page that shows Resolve
	// later, the item says it can be skipped once.
	ResolveLater bool
}

// effect is how a required finding acts on the sign-in, in the order the
// page lists them.
type effect int

const (
	blocksNow effect = iota
	blocksLater
	warns
)

func (f Finding) effect() effect {
	switch {
	case !f.BlocksFrom.IsZero():
		return blocksLater
	case f.Enforcement == decision.Warn || f.Enforcement == decision.Monitor:
		return warns
	}
	return blocksNow
}

// Kind picks which remediation page is shown.
type Kind string

const (
	// KindPolicy: required policies fail; each is listed with its user
	// text and resolution.
	KindPolicy Kind = "policy"
	// KindUnchecked: no required policy fails, but some could not be
	// checked (ERROR or MISSING): the page says so once, with what to do,
	// instead of listing each policy's fix.
	KindUnchecked Kind = "unchecked"
	// KindNoCert: the browser presented no device certificate.
	KindNoCert Kind = "no_cert"
	// KindUnknownDevice: the certificate is not one issued to an enrolled Mac.
	KindUnknownDevice Kind = "unknown_device"
	// KindOffline: the agent is offline, its posture is stale, or a live
	// check timed out.
	KindOffline Kind = "offline"
	// KindRevoked: the device is revoked.
	KindRevoked Kind = "revoked"
	// KindGeneric: anything else. An unknown Kind is shown as this.
	KindGeneric Kind = "generic"
)

// Denied is a remediation page: the sign-in was refused because of this Mac,
// and the user can usually fix it and check again.
type Denied struct {
	// Reason is the stable reason code (e.g. "policy_failed"): it picks the
	// page's words, and is shown small for the helpdesk.
	Reason reason.Code
	// LiveCheck is the live check made before deciding; it changes the words
	// for a Mac that could not be reached.
	LiveCheck decision.LiveCheck
	// Kind, when set, overrides the page KindFor picks.
	Kind Kind
	// Message, when set, overrides the main line Message picks.
	Message string
	// DeviceName may be empty.
	DeviceName string
	// Username is who is signing in (the Okta username the request names),
	// shown so that a person who finds a page a link sent them to sees it
	// is someone else's sign-in before choosing anything on it. May be
	// empty.
	Username string
	// LastChecked is when the Mac last sent a check (its latest report),
	// whatever the decision; zero means it never has.
	LastChecked time.Time
	// Now is the time of the page, for "checked 3 minutes ago". Zero shows
	// only the absolute time.
	Now time.Time
	// Failing lists the required policies that are not passing. Those that
	// FAIL are listed with how to fix them. Those that could not be checked
	// (ERROR, MISSING) are not: when nothing FAILs the page is
	// KindUnchecked, which says once that the Mac couldn't be checked and
	// what to do; otherwise their names follow the fixes under "Couldn't be
	// checked".
	Failing []Finding
	// Advisory lists optional policies that are not passing; they never
	// block. Those that FAIL are shown as recommendations; the others are
	// left out (there is nothing to do about them).
	Advisory []Finding
	// NowPassing names the policies that were not passing when this
	// sign-in was last stopped and pass now ("Check again" after a partial
	// fix); shown above what still needs fixing.
	NowPassing []string
	// RetryAction is where the "Check again" form POSTs: a path on this
	// server ("/saml/sso/retry") or an absolute https URL. Empty, or
	// anything else, shows no button. The page's CSP form-action allows only
	// this target, and Chrome and Safari apply form-action to redirects
	// after the POST too: the retry handler should answer with a page (this
	// package's Post or Denied) or a same-origin redirect, not a redirect to
	// another origin.
	RetryAction string
	// RetryToken is posted as the hidden input "token".
	RetryToken string
	// ContinueAction, when set (a path on this server, like RetryAction),
	// shows Continue: the failing policies only warn, and posting the
	// token there completes this sign-in.
	ContinueAction string
	// ResolveLaterAction, when set, shows "Resolve later": posting the
	// token there completes this sign-in once, skipping the items that
	// block now (those with ResolveLater) and acknowledging the others.
	// ResolveLaterPeriod is how often that can be chosen (for its hint).
	// A page with Continue or Resolve later and items that block later
	// (Finding.BlocksFrom) says from when the first of them blocks.
	ResolveLaterAction string
	ResolveLaterPeriod time.Duration
	// PageShown is posted with Continue and Resolve later as the hidden
	// input "shown": which items this page listed and how each acts
	// (decision.PageDigest), so that a press passes over only those.
	PageShown string
	// SupportID is shown for the helpdesk as "Reference".
	SupportID string
	// Notes are extra lines for the helpdesk (e.g. a weaker check in use).
	Notes []string
}

// Refused is the page for a sign-in request that is broken or unacceptable
// (malformed, expired, replayed, for another audience). There is nothing to
// retry: the user is told to go back to the app and sign in again.
type Refused struct {
	// Reason is the stable reason code: it picks the page's words, and is
	// shown small for the helpdesk.
	Reason reason.Code
	// Title and Message, when set, override the words Reason picks.
	Title   string
	Message string
	// RestartURL, when an https URL, is a "Sign in again" button: where
	// the person starts over (the Okta org).
	RestartURL string
	// SupportID is shown for the helpdesk as "Reference".
	SupportID string
}

// AgentMissing is the page for a browser whose Mac (known from an earlier
// sign-in) has no agent running: sending it to the agent on loopback would
// only show the browser's own "can't connect" page.
type AgentMissing struct {
	// TryAgainURL is the agent's loopback URL for this sign-in; the page
	// links to it, so "Try again" works without JavaScript. It must be an
	// http URL on a loopback address.
	TryAgainURL string
	// SupportID is shown for the helpdesk as "Reference".
	SupportID string
	// Now is the time of the page.
	Now time.Time
}

// Post is the SAML HTTP-POST binding: a form that sends SAMLResponse and
// RelayState to the service provider's ACS URL.
type Post struct {
	// ACSURL must be an absolute https URL.
	ACSURL       string
	SAMLResponse string
	// RelayState is omitted from the form when empty.
	RelayState string
	// Notes are small lines under the button (e.g. a weaker check in use).
	Notes []string
}

// ErrUnsafeACSURL is returned by Renderer.Post for an ACS URL that is not
// an absolute https URL.
var ErrUnsafeACSURL = errors.New("web: ACS URL is not an absolute https URL")

// Renderer renders the pages. Its templates are parsed once, by New; it is
// safe for concurrent use.
type Renderer struct {
	denied, refused, post, agentMissing *template.Template

	// CSP fragments computed from the embedded assets.
	styleSrc, scriptSrc string
}

// New parses the embedded templates.
func New() (*Renderer, error) {
	base, err := template.New("layout.html").ParseFS(templateFS, "templates/layout.html")
	if err != nil {
		return nil, fmt.Errorf("parsing layout: %w", err)
	}
	page := func(name string) (*template.Template, error) {
		t, err := base.Clone()
		if err != nil {
			return nil, err
		}
		if t, err = t.ParseFS(templateFS, "templates/"+name); err != nil {
			return nil, fmt.Errorf("parsing %s: %w", name, err)
		}
		return t, nil
	}
	r := &Renderer{
		styleSrc:  "style-src " + hashSource(styleCSS),
		scriptSrc: "script-src " + hashSource(autosubmitJS),
	}
	if r.denied, err = page("denied.html"); err != nil {
		return nil, err
	}
	if r.refused, err = page("refused.html"); err != nil {
		return nil, err
	}
	if r.post, err = page("post.html"); err != nil {
		return nil, err
	}
	if r.agentMissing, err = page("agent-missing.html"); err != nil {
		return nil, err
	}
	return r, nil
}

// hashSource is the CSP source expression allowing exactly the inline
// element content s.
func hashSource(s string) string {
	sum := sha256.Sum256([]byte(s))
	return "'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"
}

// page is what the layout needs; each page adds its own fields.
type page struct {
	Title string
	CSS   template.CSS
}

type helpdesk struct {
	SupportID, Reason, DeviceName, TimeUTC string
	Notes                                  []string
}

type retry struct {
	Action, Token string
}

type findingView struct {
	Name   string
	Status string
	// Class is the item's own style: critical, or warning.
	Class      string
	Badge      string
	BadgeClass string
	// BadgeTime, when set, ends the badge: when the item starts blocking.
	BadgeTime *blockFrom
	// Effect says what the item does to this sign-in beyond the badge
	// (until when it doesn't block, whether Resolve later skips it).
	Effect     string
	UserText   []block
	Resolution []block
}

type deniedView struct {
	page
	Heading, Message string
	ShowDevice       bool
	Username         string
	// Lookalike, when set, says why the username can pass for another.
	Lookalike      *lookalike
	DeviceName     string
	Checked        bool
	CheckedAgo     string
	CheckedISO     string
	CheckedUTC     string
	NowPassing     []string
	FailingHeading string
	Failing        []findingView
	Unchecked      *uncheckedView
	Advisory       []findingView
	Steps          []string
	Retry          *retry
	// Continue and ResolveLater are the rollout's buttons; BlockFrom the
	// grace period's end.
	Continue     *choice
	ResolveLater *choice
	BlockFrom    *blockFrom
	Help         string
	Helpdesk     helpdesk
}

// choice is a button that posts the held sign-in's token to Action, with
// the digest of the items the page listed.
type choice struct {
	Action, Token, Shown, Label, Hint string
}

// blockFrom is the sentence saying when blocking starts, and its instant.
type blockFrom struct {
	Text, ISO string
}

// uncheckedView is the note, after the fixes, naming the required policies
// that could not be checked.
type uncheckedView struct {
	Heading, Text string
	Names         []string
}

type refusedView struct {
	page
	Heading, Message string
	Steps            []string
	Restart          string
	Helpdesk         helpdesk
}

type agentMissingView struct {
	page
	Heading, Message, Hint, Help string
	Steps                        []string
	TryAgain                     string
	Helpdesk                     helpdesk
}

type postView struct {
	page
	ACSURL, RelayState string
	// SAMLResponse is the whole value="…" attribute, its value a slot
	// that Post fills with the response escaped by appendAttrValue: the
	// response is most of the page, and html/template's escaper was most
	// of the page's cost.
	SAMLResponse template.HTMLAttr
	Script       template.JS
	Notes        []string
}

// attrValue escapes s for a double-quoted attribute value exactly as
// html/template does there (its attrEscaper: these seven bytes, every
// other byte as it is), so the page is the one html/template would write
// (TestAttrValue).
func attrValue(s string) string { return string(appendAttrValue(nil, s)) }

// appendAttrValue appends attrValue(s) to dst. A SAML response is base64,
// whose only such byte is '+': that case is found with IndexByte.
func appendAttrValue(dst []byte, s string) []byte {
	if !strings.ContainsAny(s, "\x00\"&'<>") {
		for {
			i := strings.IndexByte(s, '+')
			if i < 0 {
				return append(dst, s...)
			}
			dst = append(append(dst, s[:i]...), "&#43;"...)
			s = s[i+1:]
		}
	}
	from := 0
	for i := 0; i < len(s); i++ {
		var repl string
		switch s[i] {
		case 0:
			repl = "\uFFFD"
		case '"':
			repl = "&#34;"
		case '&':
			repl = "&amp;"
		case '\'':
			repl = "&#39;"
		case '+':
			repl = "&#43;"
		case '<':
			repl = "&lt;"
		case '>':
			repl = "&gt;"
		default:
			continue
		}
		dst = append(append(dst, s[from:i]...), repl...)
		from = i + 1
	}
	return append(dst, s[from:]...)
}

// Denied writes the remediation page d with the given HTTP status
// (typically 403).
func (r *Renderer) Denied(w http.ResponseWriter, status int, d Denied) {
	kind := d.Kind
	if kind == "" {
		kind = KindFor(d.Reason, d.LiveCheck)
	}
	msg := d.Message
	fix, unchecked := split(d.Failing)
	if kind == KindPolicy && len(fix) == 0 && len(unchecked) > 0 {
		// Nothing to fix, only checks that couldn't run: one item that says
		// so, not each policy's steps for a problem the Mac may not have.
		kind, msg = KindUnchecked, kinds[KindUnchecked].message
	}
	k := kinds[kind]
	if k.title == "" {
		kind, k = KindGeneric, kinds[KindGeneric]
	}
	if msg == "" && kind == KindPolicy && len(d.NowPassing) > 0 {
		msg = msgPartialFix
	}
	if msg == "" {
		msg, _ = message(d.Reason, d.LiveCheck)
	}
	v := deniedView{
		page:       page{Title: k.title, CSS: template.CSS(styleCSS)},
		Heading:    k.heading,
		Message:    orText(msg, k.message),
		DeviceName: d.DeviceName,
		Username:   shownUsername(d.Username),
		Lookalike:  lookalikeOf(d.Username),
		ShowDevice: d.DeviceName != "" || d.Username != "" || !d.LastChecked.IsZero(),
		Helpdesk: helpdesk{
			SupportID: d.SupportID, Reason: string(d.Reason), DeviceName: d.DeviceName,
			TimeUTC: utcTime(d.Now, true), Notes: d.Notes,
		},
	}
	for _, name := range d.NowPassing {
		v.NowPassing = append(v.NowPassing, orText(name, unnamed))
	}
	if !d.LastChecked.IsZero() {
		v.Checked = true
		v.CheckedAgo = ago(d.LastChecked, d.Now)
		v.CheckedISO = d.LastChecked.UTC().Format(time.RFC3339)
		v.CheckedUTC = utcTime(d.LastChecked, false)
	}

	formAction := "'none'"
	if src, ok := retrySource(d.RetryAction); ok {
		v.Retry = &retry{Action: d.RetryAction, Token: d.RetryToken}
		formAction = src
	}
	// The rollout's buttons post to this server only: the CSP's
	// form-action names one source, and it is 'self' for them.
	if src, ok := retrySource(d.ContinueAction); ok && src == "'self'" && d.RetryToken != "" && (formAction == "'none'" || formAction == src) {
		v.Continue = &choice{Action: d.ContinueAction, Token: d.RetryToken, Shown: d.PageShown, Label: continueLabel, Hint: continueHint}
		formAction = src
		if d.Message == "" {
			msg = msgWarn
		}
	} else if src, ok := retrySource(d.ResolveLaterAction); ok && src == "'self'" && d.RetryToken != "" && (formAction == "'none'" || formAction == src) {
		v.ResolveLater = &choice{Action: d.ResolveLaterAction, Token: d.RetryToken, Shown: d.PageShown, Label: resolveLabel, Hint: resolveLaterHint(shownUsername(d.Username), periodText(d.ResolveLaterPeriod))}
		formAction = src
		if d.Message == "" {
			msg = msgResolveLater
		}
	}
	v.Message = orText(msg, k.message)
	if kind == KindPolicy {
		sortByEffect(fix)
		skippable := v.ResolveLater != nil
		for _, f := range fix {
			v.Failing = append(v.Failing, viewFinding(f, true, skippable))
		}
		if later := blocksLaterOf(fix); len(later) > 0 && (v.Continue != nil || v.ResolveLater != nil) {
			first := later[0].BlocksFrom
			v.BlockFrom = &blockFrom{Text: blockFromText(blockDate(first), len(later), sameTime(later)), ISO: first.UTC().Format(time.RFC3339)}
		}
		if v.ResolveLater != nil && !allBlockNow(d.Failing) {
			// Some items don't block now: the words say the button skips
			// only those that do.
			v.ResolveLater.Hint = resolveLaterMixedHint(shownUsername(d.Username), periodText(d.ResolveLaterPeriod))
			if d.Message == "" {
				v.Message = msgResolveLaterMixed
			}
		}
		if n := len(v.Failing); n == 1 {
			v.FailingHeading = "Fix this item"
		} else {
			v.FailingHeading = "Fix these " + strconv.Itoa(n) + " items"
		}
		if len(unchecked) > 0 {
			v.Unchecked = &uncheckedView{Heading: uncheckedHeading, Text: uncheckedText(v.Retry != nil)}
			for _, f := range unchecked {
				v.Unchecked.Names = append(v.Unchecked.Names, orText(f.Name, unnamed))
			}
		}
		for _, f := range d.Advisory {
			if f.Status == "FAIL" {
				v.Advisory = append(v.Advisory, viewFinding(f, false, false))
			}
		}
	}
	v.Steps = k.steps(v.Retry != nil)
	v.Help = k.help

	r.write(w, status, r.denied, v, r.csp(formAction, ""))
}

// split separates the findings to fix (FAIL) from those that could not be
// checked (ERROR, MISSING, or no status at all). PASS findings are neither.
func split(fs []Finding) (fix, unchecked []Finding) {
	for _, f := range fs {
		switch f.Status {
		case "PASS":
		case "FAIL":
			fix = append(fix, f)
		default:
			unchecked = append(unchecked, f)
		}
	}
	return fix, unchecked
}

// sortByEffect orders the findings to fix as the page lists them: those
// that block now, then those that block later, soonest first, then
// warnings; the decision's order otherwise.
func sortByEffect(fs []Finding) {
	slices.SortStableFunc(fs, func(a, b Finding) int {
		if c := cmp.Compare(a.effect(), b.effect()); c != 0 {
			return c
		}
		return a.BlocksFrom.Compare(b.BlocksFrom)
	})
}

// blocksLaterOf returns the findings, sorted by sortByEffect, that block
// from a later time.
func blocksLaterOf(fs []Finding) []Finding {
	i := slices.IndexFunc(fs, func(f Finding) bool { return f.effect() == blocksLater })
	if i < 0 {
		return nil
	}
	j := i
	for j < len(fs) && fs[j].effect() == blocksLater {
		j++
	}
	return fs[i:j]
}

// sameTime reports whether the findings all block from the same time.
func sameTime(fs []Finding) bool {
	for _, f := range fs {
		if !f.BlocksFrom.Equal(fs[0].BlocksFrom) {
			return false
		}
	}
	return true
}

// allBlockNow reports whether every required finding not passing blocks
// sign-in now.
func allBlockNow(fs []Finding) bool {
	for _, f := range fs {
		if f.Status != "PASS" && f.effect() != blocksNow {
			return false
		}
	}
	return true
}

// Refused writes the page for a request that cannot be served, with the
// given HTTP status (typically 400).
func (r *Renderer) Refused(w http.ResponseWriter, status int, p Refused) {
	title, msg := p.Title, p.Message
	if p.Reason != "" {
		t, m := refusal(p.Reason)
		title, msg = orText(title, t), orText(msg, m)
	}
	title = orText(title, "This sign-in can't be completed")
	v := refusedView{
		page:    page{Title: title, CSS: template.CSS(styleCSS)},
		Heading: title,
		Message: orText(msg, "The sign-in request wasn't valid, or it has expired."),
		Steps: []string{
			"Go back to the app you were signing in to and sign in again.",
			"If it keeps happening, contact your IT team and give them the reference below.",
		},
		Helpdesk: helpdesk{SupportID: p.SupportID, Reason: string(p.Reason)},
	}
	if safeACS(p.RestartURL) {
		v.Restart = p.RestartURL
		v.Steps = []string{"Choose Sign in again, then open the app you were signing in to.", v.Steps[1]}
	}
	r.write(w, status, r.refused, v, r.csp("'none'", ""))
}

// AgentMissing writes the page for a Mac whose agent is not running. A
// TryAgainURL that is not an http URL on a loopback address is left out.
func (r *Renderer) AgentMissing(w http.ResponseWriter, status int, p AgentMissing) {
	t := agentMissingText
	v := agentMissingView{
		page:    page{Title: t.title, CSS: template.CSS(styleCSS)},
		Heading: t.title, Message: t.message, Steps: t.steps, Hint: t.hint, Help: t.help,
		Helpdesk: helpdesk{SupportID: p.SupportID, Reason: string(reason.AgentNotRunning), TimeUTC: utcTime(p.Now, true)},
	}
	if loopbackHTTP(p.TryAgainURL) {
		v.TryAgain = p.TryAgainURL
	}
	r.write(w, status, r.agentMissing, v, r.csp("'none'", ""))
}

// loopbackHTTP reports whether s is an http URL on a loopback IP address.
func loopbackHTTP(s string) bool {
	u, err := url.Parse(s)
	if err != nil || u.Scheme != "http" || u.User != nil {
		return false
	}
	ip, err := netip.ParseAddr(u.Hostname())
	return err == nil && ip.IsLoopback()
}

// Post writes the page that sends p to the service provider: a form posting
// to p.ACSURL with a visible Continue button, submitted at once by a small
// script when JavaScript runs.
//
// An ACS URL that is not an absolute https URL is never put in the page:
// Post writes a Refused page (status 500, reason "invalid_acs_url", without
// the SAML response) and returns ErrUnsafeACSURL for the caller to log.
func (r *Renderer) Post(w http.ResponseWriter, p Post) error {
	if !safeACS(p.ACSURL) {
		r.Refused(w, http.StatusInternalServerError, Refused{Reason: reason.InvalidACSURL})
		return ErrUnsafeACSURL
	}
	v := postView{
		page:         page{Title: "Signing you in", CSS: template.CSS(styleCSS)},
		ACSURL:       p.ACSURL,
		SAMLResponse: template.HTMLAttr(`value="` + postSlot + `"`),
		RelayState:   p.RelayState,
		Script:       template.JS(autosubmitJS),
		Notes:        p.Notes,
	}
	csp := r.csp(postFormAction, r.scriptSrc)
	page := pageBuffers.Get().(*bytes.Buffer)
	defer putPage(page)
	page.Reset()
	if err := r.post.ExecuteTemplate(page, "layout", v); err != nil {
		r.send(w, http.StatusOK, csp, nil, err)
		return nil
	}
	// The response, most of the page, goes into the slot escaped as
	// html/template would escape it (TestPostAsTemplated), without a pass
	// of the template's escaper over it and a copy of it per step.
	before, after, ok := bytes.Cut(page.Bytes(), []byte(postSlot))
	if !ok {
		r.send(w, http.StatusOK, csp, nil, errors.New("the Post page has no slot for the response"))
		return nil
	}
	body := pageBuffers.Get().(*bytes.Buffer)
	defer putPage(body)
	body.Reset()
	body.Grow(len(before) + len(p.SAMLResponse) + len(p.SAMLResponse)/8 + len(after))
	out := append(body.Bytes(), before...)
	out = appendAttrValue(out, p.SAMLResponse)
	out = append(out, after...)
	r.send(w, http.StatusOK, csp, out, nil)
	return nil
}

// postSlot stands for the response while the rest of the Post page is
// templated. It starts with '<', which html/template escapes in every value
// it writes into that page (the ACS URL, the relay state, the notes), so
// the first occurrence in the page is the slot, and the response is placed
// before any of the relay state and notes.
const postSlot = "<saml-response>"

// pageBuffers are the buffers pages are written into; one holds a Post page's
// response (tens of KiB) between sign-ins instead of being allocated and
// cleared for each.
var pageBuffers = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// putPage returns b to pageBuffers unless an unusual page grew it beyond what a
// sign-in needs.
func putPage(b *bytes.Buffer) {
	if b.Cap() <= 256<<10 {
		pageBuffers.Put(b)
	}
}

// postFormAction is the Post page's form-action. The form itself only ever
// targets the checked https ACS URL, but Chrome and Safari apply
// form-action to every redirect that follows the submission too, and the
// service provider's ACS redirects onward to wherever the user was signing
// in (any app, on any origin). Pinning the ACS origin would break those
// sign-ins, so the page allows https and nothing else; the ACS URL is held
// to https by safeACS before it reaches the page.
const postFormAction = "https:"

// csp builds the policy for one page. Nothing may load; the inline
// stylesheet (and script, when given) are allowed by hash.
func (r *Renderer) csp(formAction, scriptSrc string) string {
	parts := []string{"default-src 'none'", r.styleSrc}
	if scriptSrc != "" {
		parts = append(parts, scriptSrc)
	}
	parts = append(parts,
		"img-src 'none'",
		"base-uri 'none'",
		"form-action "+formAction,
		"frame-ancestors 'none'",
	)
	return strings.Join(parts, "; ")
}

// write renders the page fully before writing anything, so that a
// template failure becomes a clean error page rather than half a page.
func (r *Renderer) write(w http.ResponseWriter, status int, t *template.Template, data any, csp string) {
	var buf bytes.Buffer
	err := t.ExecuteTemplate(&buf, "layout", data)
	r.send(w, status, csp, buf.Bytes(), err)
}

// send writes a rendered page with the headers every page has, or, when
// rendering it failed, a plain error.
func (r *Renderer) send(w http.ResponseWriter, status int, csp string, body []byte, err error) {
	h := w.Header()
	h.Set("Content-Security-Policy", csp)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Frame-Options", "DENY")
	if err != nil {
		// Only a bug in this package can get here; the data is plain
		// strings.
		h.Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(http.StatusInternalServerError)
		_, _ = w.Write([]byte("Sign-in couldn't be completed. Go back to the app and sign in again.\n"))
		return
	}
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// safeACS reports whether s is an absolute https URL with a host, the only
// kind of ACS URL a SAML response may be posted to.
func safeACS(s string) bool {
	u, err := url.Parse(s)
	return err == nil && u.Scheme == "https" && u.Host != "" && u.User == nil &&
		!strings.ContainsAny(s, " \t\r\n\\")
}

// retrySource checks a retry action and returns the form-action source
// that allows it: 'self' for a path on this server, the origin for an
// absolute https URL.
func retrySource(action string) (string, bool) {
	if action == "" || strings.ContainsAny(action, " \t\r\n\\") {
		return "", false
	}
	u, err := url.Parse(action)
	if err != nil {
		return "", false
	}
	switch {
	case u.Scheme == "" && u.Host == "" && strings.HasPrefix(action, "/") && !strings.HasPrefix(action, "//"):
		return "'self'", true
	case u.Scheme == "https" && u.Host != "" && u.User == nil:
		return "https://" + u.Host, true
	}
	return "", false
}

// viewFinding is f as the page shows it: a required finding with its own
// state (blocks now, blocks later, a warning), an optional one as a
// recommendation. skippable is whether the page offers Resolve later.
func viewFinding(f Finding, required, skippable bool) findingView {
	v := findingView{
		Name:       orText(f.Name, unnamed),
		Status:     statusText(f.Status),
		UserText:   parseText(f.UserText),
		Resolution: parseText(f.Resolution),
	}
	if len(v.Resolution) == 0 {
		v.Resolution = []block{{Para: noResolution}}
	}
	if !required {
		v.Badge, v.BadgeClass = badgeRecommended, "advisory"
		return v
	}
	switch f.effect() {
	case blocksNow:
		switch {
		case f.Critical:
			v.Class, v.Badge, v.BadgeClass = "critical", badgeCritical, "critical"
		case skippable && f.ResolveLater:
			v.Badge, v.BadgeClass, v.Effect = badgeNow, "now", effectSkippable
		default:
			v.Badge, v.BadgeClass = badgeNow, "now"
		}
	case blocksLater:
		v.Badge = badgeLater
		v.BadgeTime = &blockFrom{Text: badgeDate(f.BlocksFrom), ISO: f.BlocksFrom.UTC().Format(time.RFC3339)}
		v.Effect = effectLater(f.Critical)
	default:
		v.Class, v.Badge, v.BadgeClass = "warning", badgeWarning, "warning"
	}
	return v
}

func statusText(s string) string {
	switch s {
	case "PASS":
		return "Passing"
	case "FAIL":
		return "Not met on this Mac"
	case "ERROR":
		return "Couldn't be checked on this Mac"
	}
	return "Not checked on this Mac yet"
}

// ago says how long before now t was, in words; empty when now is unknown
// or t is after it (a Mac clock set ahead), where only the absolute time
// is meaningful.
func ago(t, now time.Time) string {
	if now.IsZero() || t.After(now) {
		return ""
	}
	d := now.Sub(t)
	plural := func(n int64, unit string) string {
		if n == 1 {
			return "1 " + unit + " ago"
		}
		return strconv.FormatInt(n, 10) + " " + unit + "s ago"
	}
	switch {
	case d < time.Minute:
		return "less than a minute ago"
	case d < time.Hour:
		return plural(int64(d/time.Minute), "minute")
	case d < 48*time.Hour:
		return plural(int64(d/time.Hour), "hour")
	default:
		return plural(int64(d/(24*time.Hour)), "day")
	}
}

func utcTime(t time.Time, seconds bool) string {
	if t.IsZero() {
		return ""
	}
	if seconds {
		return t.UTC().Format("2 Jan 2006, 15:04:05 UTC")
	}
	return t.UTC().Format("2 Jan 2006, 15:04 UTC")
}

func orText(s, def string) string {
	if strings.TrimSpace(s) == "" {
		return def
	}
	return s
}

// lookalike is the warning under a username that can pass for another: what
// makes it so, and how it is spelled.
type lookalike struct{ Why, Spelled string }

// lookalikeOf warns of a username that can pass for another
// (printable.Deceptive): "\u0430lice@example.com", with a Cyrillic "а",
// draws as Alice's username.
func lookalikeOf(username string) *lookalike {
	if !printable.Deceptive(username) {
		return nil
	}
	why := "It has characters that read as plain ones but are not: a wide, styled, small capital or decomposed letter, a mark, or punctuation."
	switch scripts := printable.Scripts(username); {
	case printable.MixedScripts(username):
		why = "It mixes " + strings.Join(scripts[:len(scripts)-1], ", ") + " and " + scripts[len(scripts)-1] + " letters, which can look the same."
	case printable.LooksASCII(username):
		why = "Some of its characters only look like plain letters or punctuation."
	}
	return &lookalike{Why: why, Spelled: printable.ASCII(username)}
}

// shownUsername is a username as the page shows it: every character that
// would reorder text or draw as nothing written as an escape (\u202e), so
// that a name cannot be made to look like another by them (the name comes
// from the sign-in request, which an unsigned one lets anyone write).
func shownUsername(s string) string { return printable.Identifier(s) }
