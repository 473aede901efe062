package web

import (
	"strconv"
	"time"

	"github.com/clearance/clearance/verifier/decision"
	"github.com/clearance/clearance/verifier/reason"
)

// Every sentence a person reads about a sign-in is here, keyed by the
// sign-in's reason code. Callers pass codes; they never write the words.

// Message is the main line for a decision's reason: what happened, in plain
// English, and what to do. live is the live check made before deciding: for
// a missing or stale report, a failed live check says what the person can
// act on (the agent could not be reached).
func Message(code reason.Code, live decision.LiveCheck) string {
	if m, ok := message(code, live); ok {
		return m
	}
	return kinds[KindFor(code, live)].message
}

// message is the reason's own main line, if it has one; pages without one
// show their kind's.
func message(code reason.Code, live decision.LiveCheck) (string, bool) {
	switch code {
	case reason.NoReport, reason.StalePosture:
		switch live {
		case decision.LiveCheckTimedOut:
			return msgTimedOut, true
		case decision.LiveCheckOffline:
			return msgOffline, true
		}
	}
	m, ok := messages[code]
	return m, ok
}

const (
	msgTimedOut = "This Mac didn't answer a security check in time. Make sure it's connected to the internet, then choose Check again."
	msgOffline  = "This Mac's security check service isn't connected. Make sure the Mac is connected to the internet, wait a minute, then choose Check again. If it keeps happening, contact your IT team."
)

// messages are the main lines of decisions and device identification.
var messages = map[reason.Code]string{
	reason.Allowed:         "This Mac meets your organization's security requirements.",
	reason.UnknownDevice:   "This Mac isn't set up for secure sign-in. Ask your IT team to set it up.",
	reason.DeviceRevoked:   "This Mac is no longer allowed to sign in. Contact your IT team.",
	reason.UserUnknown:     "Your account isn't set up for sign-in from Macs yet. Contact your IT team and give them the reference below.",
	reason.UserDeactivated: "Your account has been turned off, so you can't sign in. If you think this is a mistake, contact your IT team.",
	reason.UserNotBound:    "You can't sign in from this Mac because it isn't assigned to you. Use your own Mac, or ask your IT team to assign this one to you.",
	reason.NoPolicies:      "Sign-in can't be checked right now because the security requirements aren't available. Try again in a few minutes, or contact your IT team.",
	reason.NoReport:        "This Mac hasn't sent a security check yet. Make sure it's connected to the internet, wait a minute, then choose Check again.",
	reason.DeviceMismatch:  "Something went wrong while checking this Mac. Try again, and contact your IT team if it keeps happening.",
	reason.ClockSkew:       "This Mac's clock is set ahead. In System Settings, turn on setting the date and time automatically, then choose Check again.",
	reason.StalePosture:    "This Mac hasn't sent a security check recently. Make sure it's connected to the internet, then choose Check again.",
	reason.CertNotVouched:  "This browser hasn't been confirmed by the security check on this Mac yet. Wait a minute, then choose Check again. If it keeps happening, contact your IT team.",
	reason.PolicyFailed:    "This Mac doesn't meet your organization's security requirements. Fix the items below, then choose Check again.",
	reason.PolicyError:     "Clearance reached this Mac, but its security checks couldn't run just now, so sign-in can't continue yet. This usually isn't something you caused.",
	reason.PolicyMissing:   "This Mac hasn't finished its security checks yet, so sign-in can't continue. This usually sorts itself out within a minute.",

	reason.ExpiredCert:    "This Mac's sign-in certificate has expired or isn't valid yet. Check that the Mac's date and time are set automatically; if they are, ask your IT team to renew it.",
	reason.SupersededCert: "This certificate was replaced by a newer one. Quit and reopen your browser, choose the newest certificate, and sign in again.",
}

// KindFor is the page for a denial's reason. Reasons without a page of their
// own (a clock set ahead, no policies loaded, …) are generic, unless a live
// check just failed, which is what the person can act on.
func KindFor(code reason.Code, live decision.LiveCheck) Kind {
	switch code {
	case reason.PolicyFailed:
		return KindPolicy
	case reason.PolicyError, reason.PolicyMissing:
		return KindUnchecked
	case reason.UnknownDevice, reason.ExpiredCert, reason.UntrustedCert, reason.UnknownCert, reason.RevokedCert:
		return KindUnknownDevice
	case reason.DeviceRevoked, reason.SupersededCert:
		return KindRevoked
	case reason.NoReport, reason.StalePosture:
		return KindOffline
	case reason.NoClientCert:
		return KindNoCert
	}
	if live == decision.LiveCheckOffline || live == decision.LiveCheckTimedOut {
		return KindOffline
	}
	return KindGeneric
}

// refusal is the title and main line for a sign-in request that cannot be
// served at all.
func refusal(code reason.Code) (title, msg string) {
	const back = " Go back to the app and sign in again."
	switch code {
	case reason.NotConfigured, reason.RequestCertMissing:
		return "Sign-in isn't set up yet", "This security check isn't connected to your organization's sign-in yet. Contact your IT team."
	case reason.Replayed:
		return "This sign-in link was already used", "Each sign-in link works once, and this one has been used (perhaps the page was reloaded or opened twice)." + back
	case reason.StaleRequest:
		return "This sign-in link has expired", "The sign-in took too long to reach this check, or this computer's clock is wrong." + back
	case reason.FutureRequest:
		return "This sign-in link isn't valid yet", "The clocks of this computer's sign-in services disagree. Check that the date and time are set automatically." + back
	case reason.RetryExpired:
		return "This sign-in has expired", "It's been too long since the security check stopped this sign-in, or your Mac has been set up again since." + back
	case reason.RetryRestart:
		return "This sign-in took too long", "It's been more than a few minutes since this sign-in started, so your organization's sign-in service has stopped waiting for it. Start again: your Mac will be checked again then."
	case reason.RetryAgentRunning:
		return "Sign in again", "Clearance is running on this Mac now, so it confirms this sign-in instead of the browser's certificate. Start again: your Mac will be checked then."
	case reason.RetryDone:
		return "This sign-in is already complete", "It was completed in another tab or window." + back
	case reason.RetryOtherCert:
		return "This sign-in belongs to another browser", "Check again from the same browser that started the sign-in." + back
	case reason.MissingSignature, reason.BadSignature, reason.UnsupportedSigAlg, reason.WrongIssuer, reason.WrongACS, reason.WrongDestination:
		return "This sign-in request can't be trusted", "The request didn't come from your organization's sign-in service as expected. If this keeps happening, contact your IT team." + back
	case reason.NoSubject, reason.BadSubject:
		return "This sign-in request didn't say who is signing in", "The request from your organization's sign-in service didn't name the person signing in the way this check needs. Contact your IT team and give them the reference below: the identity provider's settings in Okta need checking (IdP Usage: Factor only; IdP username: idpuser.subjectNameId)."
	case reason.SpoofedCertHeader, reason.BadCertHeader:
		return "Sign-in couldn't be checked", "This sign-in came through a connection that isn't allowed to vouch for a Mac. Contact your IT team."
	case reason.Storage:
		return "Sign-in is unavailable right now", "The security check couldn't be completed. Wait a minute, then go back to the app and sign in again."
	case reason.RateLimited:
		return "Too many sign-ins at once", "Your network sent more sign-in requests than this check accepts at once. Wait a minute, then go back to the app and sign in again."
	case reason.RetryTooOften:
		return "Too many checks in a row", "This Mac was checked again many times in a short while. Wait a few seconds, go back, and choose Check again."
	case reason.Busy:
		return "Too many sign-ins at once", "More people are signing in right now than this check accepts at once. Wait a minute, then go back to the app and sign in again."
	case reason.PresenceOtherBrowser, reason.RetryOtherBrowser:
		return "This sign-in belongs to another browser", "This sign-in was started in another browser or window, so it can't be finished here. Sign in again from this browser." + back
	case reason.PresenceReplayed:
		return "This sign-in was already completed", "It was completed in another tab or window." + back
	case reason.PresenceExpired:
		return "This sign-in has expired", "The security check on this Mac took too long to answer." + back
	case reason.PresenceMalformed, reason.PresenceUnknown, reason.PresenceWrongOrigin:
		return "This sign-in couldn't be checked", "The answer from this Mac's security check doesn't belong to a sign-in that's in progress here." + back
	case reason.PresenceUnknownDevice:
		return "This Mac isn't set up for secure sign-in", "This Mac isn't enrolled with your organization. Ask your IT team to set it up, and give them the reference below."
	case reason.PresenceBadSignature:
		return "This Mac couldn't be confirmed", "The security check couldn't confirm that this browser is running on the Mac it named. If this Mac was just reinstalled or set up again, wait a few minutes." + back + " If it keeps happening, contact your IT team and give them the reference below."
	case reason.PresenceOtherDevice:
		return "This browser's certificate belongs to another Mac", "This browser presented the certificate of one Mac, and the security check answered from another, so the sign-in can't be confirmed. If this browser's settings were copied from another Mac, remove that Mac's certificate from this Mac's keychain." + back + " If it keeps happening, contact your IT team and give them the reference below."
	case reason.PresenceClock:
		return "This Mac's clock is wrong", "This Mac's date and time are too far off to confirm the sign-in. In System Settings, turn on setting the date and time automatically." + back
	case reason.SigningFailed:
		return "Sign-in couldn't be completed", "Your Mac passed the security check, but the sign-in couldn't be sent on. Go back to the app and sign in again; if it keeps happening, contact your IT team."
	case reason.InvalidACSURL:
		return "This sign-in can't be completed", "Your Mac passed the security check, but the sign-in can't be sent on because this server's sign-in settings are wrong. Contact your IT team."
	}
	return "This sign-in request couldn't be read", "The request was damaged or isn't one this check accepts." + back
}

// Words of the remediation page's findings.
const (
	// msgPartialFix is the main line after "Check again" when some items
	// are fixed and others still fail.
	msgPartialFix = "Good progress: some items are fixed. Fix the ones below too, then choose Check again."
	// unnamed stands in for a policy without a name.
	unnamed = "Unnamed check"
	// noResolution is the fix of a policy that gives none.
	noResolution = "Your IT team can help you fix this. Give them the reference below."
	// uncheckedHeading heads the names of the required policies that
	// couldn't be checked, on a page that also lists fixes.
	uncheckedHeading = "Couldn't be checked"
)

// uncheckedText says what to do about policies that couldn't be checked,
// alongside others to fix.
func uncheckedText(retry bool) string {
	const (
		first = "Clearance couldn't check these just now. "
		rest  = " If they still can't be checked, restart the Mac and sign in again. If that doesn't help, contact your IT team and give them the reference below."
	)
	if retry {
		return first + "Choose Check again once you've fixed the rest." + rest
	}
	return first + "Once you've fixed the rest, go back to the app and sign in again." + rest
}

// noteVouchingOff tells the helpdesk that a weaker check was used.
const noteVouchingOff = "This browser certificate was not checked against the Mac's own report (require-agent-vouched-cert is off)."

// noteBindingMismatch tells the helpdesk that the user is not bound to
// this Mac, which user-binding warn lets through.
const noteBindingMismatch = "This Mac isn't assigned to the person signing in (user-binding is warn, so this alone does not stop them)."

// Notes are the helpdesk lines a decision adds to its page.
func Notes(d decision.Decision) []string {
	var notes []string
	if d.CertVouching == decision.VouchingOff {
		notes = append(notes, noteVouchingOff)
	}
	if d.BindingMismatch {
		notes = append(notes, noteBindingMismatch)
	}
	return notes
}

// agentMissingText is the page for a Mac whose agent is not running.
var agentMissingText = struct {
	title, message, hint, help string
	steps                      []string
}{
	title:   "Clearance isn't running on this Mac",
	message: "Before you sign in, your organization checks that this Mac is secure. The Clearance service on this Mac isn't answering, so the check can't run.",
	steps: []string{
		"Make sure this Mac is connected to the internet, and to your organization's VPN if you use one.",
		"In System Settings, open General, then Login Items. Under Allow in the Background, make sure clearance-agent is switched on.",
		"Restart the Mac. Clearance starts by itself when the Mac starts.",
		"Then choose Try again. If it's been more than two minutes, go back to the app you were signing in to and sign in again instead.",
	},
	hint: "If your browser says it can't connect after Try again, Clearance still isn't running on this Mac.",
	help: "If you're not on the Mac you usually sign in from, or this keeps happening, contact your IT team and give them the reference below.",
}

// Words of a sign-in that a policy's rollout lets through with a warning,
// or that may be resolved later.
const (
	// msgWarn is the main line when Continue would complete the sign-in.
	msgWarn = "This Mac doesn't meet your organization's security requirements. You can continue signing in this time, but please fix the items below soon."
	// msgResolveLater is the main line when "Resolve later" would.
	msgResolveLater = "This Mac doesn't meet your organization's security requirements. Fix the items below, then choose Check again. If you can't fix them right now, you can choose Resolve later once."
	// msgResolveLaterMixed is that line when some items don't block now.
	msgResolveLaterMixed = "This Mac doesn't meet your organization's security requirements. Fix the items below, then choose Check again. If you can't fix the ones that block sign-in now right away, you can choose Resolve later once."
	continueLabel        = "Continue"
	continueHint         = "Continue signs you in this time. Your IT team can see that you were shown these items."
	resolveLabel         = "Resolve later"
)

// Words of each item's state on the remediation page: its badge, and a
// line about what it does to this sign-in.
const (
	badgeNow         = "Blocks sign-in now"
	badgeCritical    = "Blocks sign-in now, cannot be skipped"
	badgeLater       = "Blocks sign-in from " // and the time
	badgeWarning     = "Warning: doesn't block"
	badgeRecommended = "Recommended"
	// effectSkippable is said of an item Resolve later skips.
	effectSkippable = "If you can't fix this now, Resolve later skips it this once."
)

// effectLater says what an item that blocks later does until then.
func effectLater(critical bool) string {
	if critical {
		return "Until then it doesn't stop you signing in. From then it can't be skipped."
	}
	return "Until then it doesn't stop you signing in."
}

// blockFromText says from when the items that block later will block
// sign-in: n of them, all from that time (same) or the first from it.
func blockFromText(when string, n int, same bool) string {
	switch {
	case n == 1:
		return "From " + when + ", the item marked for then will stop you signing in from this Mac."
	case same:
		return "From " + when + ", the items marked for then will stop you signing in from this Mac."
	}
	return "From " + when + ", the first of the items marked with a date will stop you signing in from this Mac."
}

// resolveLaterHint explains what Resolve later does, and how often.
func resolveLaterHint(username, period string) string {
	who := "you"
	if username != "" {
		who = username
	}
	if period == "" {
		return "Resolve later signs " + who + " in this once, without the fixes. This Mac can't choose it again for these items for a while."
	}
	return "Resolve later signs " + who + " in this once, without the fixes. This Mac can choose it once every " + period + " for each item."
}

// resolveLaterMixedHint is resolveLaterHint for a page where some items
// don't block now: the button skips only those that do.
func resolveLaterMixedHint(username, period string) string {
	who := "you"
	if username != "" {
		who = username
	}
	const first = " in this once, skipping the items that block sign-in now; the others don't stop this sign-in."
	if period == "" {
		return "Resolve later signs " + who + first + " This Mac can't choose it again for the items it skips for a while."
	}
	return "Resolve later signs " + who + first + " This Mac can choose it once every " + period + " for each item it skips."
}

// blockDate is how a block date reads on the page, e.g. "Friday 5 Dec,
// 09:00 UTC". The server does not know the person's time zone, so it says
// UTC; the page's <time> element carries the exact instant.
func blockDate(t time.Time) string {
	return t.UTC().Format("Monday 2 Jan, 15:04 UTC")
}

// badgeDate is how a block date reads in an item's badge, e.g. "Fri 5
// Dec, 09:00 UTC": blockDate, shorter.
func badgeDate(t time.Time) string {
	return t.UTC().Format("Mon 2 Jan, 15:04 UTC")
}

// periodText renders a bypass period in days or hours.
func periodText(d time.Duration) string {
	switch {
	case d <= 0:
		return ""
	case d%(24*time.Hour) == 0 && d > 24*time.Hour:
		return strconv.Itoa(int(d/(24*time.Hour))) + " days"
	case d == 24*time.Hour:
		return "day"
	case d%time.Hour == 0 && d > time.Hour:
		return strconv.Itoa(int(d/time.Hour)) + " hours"
	}
	return "hour"
}
