package web

import (
	"github.com/clearance/clearance/verifier/decision"
)

// kind is the wording of one remediation page. Written for an employee who
// is not technical: what happened, then what to do.
type kind struct {
	title   string // <title>
	heading string // <h1>
	message string // main line when the decision gave none
	// do lists the steps to take; retry is whether a Check again button is
	// on the page, so that no step points at a button that isn't there.
	do   func(retry bool) []string
	help string // closing line, after the list of findings or steps
}

func (k kind) steps(retry bool) []string {
	if k.do == nil {
		return nil
	}
	return k.do(retry)
}

const contactIT = "If it keeps happening, contact your IT team and give them the reference below."

// againOrBack is the step that retries: the button when there is one.
func againOrBack(retry bool, wait string) string {
	if retry {
		return wait + "choose Check again."
	}
	return wait + "go back to the app you were signing in to and sign in again."
}

var kinds = map[Kind]kind{
	KindPolicy: {
		title:   "Your Mac needs attention",
		heading: "Your Mac needs attention before you can sign in",
		message: "This Mac doesn't meet your organization's security requirements. Fix the items below.",
		help:    "If you can't fix an item yourself, contact your IT team and give them the reference below.",
	},
	KindUnchecked: {
		title:   "Clearance couldn't check this Mac",
		heading: "Clearance couldn't check this Mac",
		message: "Clearance reached this Mac, but its security checks couldn't run just now, so sign-in can't continue yet. This usually isn't something you caused.",
		do: func(retry bool) []string {
			return []string{
				againOrBack(retry, "Wait a minute, then "),
				"If this page comes back, restart the Mac: Clearance checks it again when it starts. Then go back to the app you were signing in to and sign in again.",
				contactIT,
			}
		},
	},
	KindNoCert: {
		title:   "This Mac couldn't be identified",
		heading: "We couldn't identify this Mac",
		message: "Your browser didn't share this Mac's device certificate, so your organization can't check that this Mac is secure.",
		do: func(bool) []string {
			return []string{
				"If your browser asked you to choose a certificate, go back to the app, sign in again, and this time choose the certificate your organization installed for this Mac. If your Mac asks for your login password to use it, enter it and choose Always Allow.",
				"If your browser didn't ask, this Mac may not have its sign-in profile yet. Ask your IT team to install the Clearance profile on this Mac. You can see the profiles installed in System Settings, under General > Device Management (on older macOS: Privacy & Security > Profiles).",
				"Then quit and reopen your browser, go back to the app and sign in again.",
			}
		},
	},
	KindUnknownDevice: {
		title:   "This Mac isn't recognized",
		heading: "This Mac isn't set up for secure sign-in",
		message: "This Mac isn't set up for secure sign-in. Ask your IT team to set it up.",
		do: func(bool) []string {
			return []string{
				"Ask your IT team to set up this Mac for secure sign-in, and give them the reference below.",
				"If IT has just set up or reinstalled this Mac, wait a few minutes, then go back to the app and sign in again.",
			}
		},
	},
	KindOffline: {
		title:   "Your Mac couldn't be checked",
		heading: "We couldn't check this Mac",
		message: "We couldn't get a recent security check from this Mac, so sign-in can't continue yet.",
		do: func(retry bool) []string {
			return []string{
				"Make sure this Mac is connected to the internet, and to your organization's VPN if you use one.",
				againOrBack(retry, "Wait a minute, then "),
				"If it still doesn't work, restart the Mac and try again. " + contactIT,
			}
		},
	},
	KindRevoked: {
		title:   "This Mac can't be used to sign in",
		heading: "This Mac can't be used to sign in",
		message: "This Mac is no longer allowed to sign in. Contact your IT team.",
		do: func(bool) []string {
			return []string{
				"Contact your IT team and give them the reference below.",
				"Until then, you can sign in from another Mac that is set up for secure sign-in.",
			}
		},
	},
	KindGeneric: {
		title:   "Sign-in couldn't be completed",
		heading: "We couldn't complete your sign-in",
		message: "Something went wrong while checking this Mac. Try again, and contact your IT team if it keeps happening.",
		do: func(retry bool) []string {
			return []string{againOrBack(retry, "Wait a moment, then "), contactIT}
		},
	},
}

// Findings converts a decision's findings for a page, each with how the
// decision found it acts on the sign-in (its effective enforcement, when
// it blocks from, whether Resolve later was offered for it). A policy's
// description and osquery's error text are left behind: they are for the
// security team, not the person at the Mac.
func Findings(fs []decision.Finding) []Finding {
	if len(fs) == 0 {
		return nil
	}
	out := make([]Finding, len(fs))
	for i, f := range fs {
		out[i] = Finding{
			Name: f.Name, UserText: f.UserText, Resolution: f.Resolution,
			Status: string(f.Status), Critical: f.Critical,
			Enforcement: f.Enforcement, BlocksFrom: f.BlocksFrom, ResolveLater: f.BypassOffered,
		}
	}
	return out
}
