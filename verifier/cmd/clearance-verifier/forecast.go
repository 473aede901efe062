package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/clearance/clearance/pkg/cli"
	adminv1 "github.com/clearance/clearance/proto/gen/clearance/admin/v1"
	"github.com/clearance/clearance/verifier/config"
	"github.com/clearance/clearance/verifier/rollout"
)

func (a *app) forecastCmd() *cli.Command {
	return &cli.Command{
		Name:    "forecast",
		Summary: "whose sign-ins enforcing policies would stop, before you enforce them",
		Doc: "Decides, for every Mac that is not revoked and without recording anything, what a sign-in " +
			"gets now and what it would get if the --policy policies (every required policy when none is given) " +
			"were in enforce mode whatever the --enforcement ceiling, the others as they are now (--no-ceiling: as " +
			"the policy file states them): grace periods and Resolve later as the file says, exemptions counting, " +
			"from each Mac's latest report however old. A Mac is decided for each person assigned to it (up to 16), " +
			"else for the people whom --user-binding-rule binds to its local accounts, as sign-in does (among those who " +
			"signed in from it; shown local:NAME), else for the person of its latest Okta sign-in (last:NAME; while the directory " +
			"holds anyone, only a person it holds), else for the one Cloudflare last asked about it for, " +
			"else for the Mac alone (every policy applying). It lists the sign-ins a named policy would stop, at " +
			"once or when a grace period ends (--every: every sign-in), and counts them. Nothing is written: no " +
			"grace period starts until a real sign-in. It asks the running verifier's admin API with the data " +
			"dir's ca.pem and admin.token; a token with role read will do.\n\n" +
			"  clearance-verifier policies forecast --data-dir /var/lib/clearance \\\n" +
			"    --policy firewall",
		Footer: config.SharedFooter,
		Flags: func(fs *cli.FlagSet) cli.Action {
			af := a.bindAdmin(fs)
			fs.Group("Forecast")
			var ids []string
			var emptyID bool
			fs.Func("policy", "forecast enforcing the policy with this `id` (repeat, or separate with commas; default: every policy)", func(v string) error {
				for _, id := range strings.Split(v, ",") {
					if id = strings.TrimSpace(id); id != "" {
						ids = append(ids, id)
					} else {
						emptyID = true
					}
				}
				return nil
			})
			noCeiling := fs.Bool("no-ceiling", false, "the other policies in the modes the policy file gives them, not lowered by the --enforcement ceiling")
			every := fs.Bool("every", false, "list every sign-in, not only those a named policy would stop")
			fs.Group("Output")
			asJSON := fs.Bool("json", false, "print the admin API's ForecastEnforcementResponse as JSON (every page's devices in one)")
			wide := fs.Bool("wide", false, "full device ids and nothing shortened, whatever the terminal's width")
			return func(ctx context.Context, _ []string) error {
				if emptyID {
					return cli.Usagef("--policy holds an empty id; leave --policy out to forecast every policy")
				}
				return a.withAdmin(ctx, af, func(c *adminConn) error {
					for _, id := range ids {
						if err := c.checkPolicyID(id); err != nil {
							return err
						}
					}
					var enforced []string
					rows, err := allPages(func(token string) ([]*adminv1.DeviceForecast, string, error) {
						resp, err := call(c, c.client.ForecastEnforcement, &adminv1.ForecastEnforcementRequest{
							PolicyIds: ids, LiftCeiling: *noCeiling, PageSize: 200, PageToken: token})
						enforced = resp.GetPolicyIds()
						return resp.GetDevices(), resp.GetNextPageToken(), err
					})
					if err != nil {
						return err
					}
					all := &adminv1.ForecastEnforcementResponse{PolicyIds: enforced, Devices: rows}
					if *asJSON {
						return printJSON(a.stdout, all)
					}
					keep := rows
					if !*every {
						keep = nil
						for _, r := range rows {
							if stoppedBy(r, enforced) {
								keep = append(keep, r)
							}
						}
					}
					if len(keep) > 0 {
						if err := renderForecast(a.stdout, keep, a.now(), time.Local, a.tableWidth(*wide)); err != nil {
							return err
						}
					}
					fmt.Fprintln(a.stderr, forecastSummary(all, len(ids) == 0))
					return nil
				})
			}
		},
	}
}

// stoppedBy reports whether one of the named policies would stop r's
// sign-in, at once or from the end of a grace period.
func stoppedBy(r *adminv1.DeviceForecast, named []string) bool {
	for _, id := range r.GetEnforced().GetBlockingPolicyIds() {
		if slices.Contains(named, id) {
			return true
		}
	}
	return false
}

// renderForecast writes one row per Mac and person: what a sign-in gets
// now, what it would get enforced, and the policies that would block it.
func renderForecast(w io.Writer, rows []*adminv1.DeviceForecast, now time.Time, loc *time.Location, width int) error {
	// The wide table also says how old each decision's report is.
	wide := width == 0
	head := []string{"DEVICE", "HOST", "PERSON", "NOW", "IF ENFORCED", "BLOCKED BY"}
	if wide {
		head = slices.Insert(head, 3, "REPORT")
	}
	out := [][]string{head}
	for _, r := range rows {
		// Where the person comes from, before the name, where a narrow
		// table does not cut it.
		person := r.GetUsername()
		if person != "" {
			// A name that is not ASCII is marked first, as exemption
			// listings mark it: one letter can make another person's.
			person = rollout.ShownUsername(person)
		}
		switch {
		case person == "":
			person = "none known"
		case r.GetUsernameSource() == "local_account":
			person = "local:" + person
		case r.GetUsernameSource() == "latest_sign_in":
			person = "last:" + person
		case r.GetUsernameSource() == "cloudflare":
			person = "cf:" + person
		}
		nowText := outcomeText(r.GetNow(), loc)
		if r.GetReportStale() {
			nowText += " *"
		}
		row := []string{
			shorten(r.GetDeviceId(), width), orDash(markLookAlike(r.GetDeviceName())), person,
			nowText, outcomeText(r.GetEnforced(), loc),
			orDash(strings.Join(r.GetEnforced().GetBlockingPolicyIds(), ",")),
		}
		if wide {
			row = slices.Insert(row, 3, ago(r.GetObservedAt().AsTime(), r.GetObservedAt() != nil, now))
		}
		out = append(out, row)
	}
	return writeTable(w, out, width, []shrink{{col: 1, floor: 10}, {col: 2, floor: 16, middle: true}})
}

// outcomeText says in a few words what a sign-in gets.
func outcomeText(o *adminv1.ForecastOutcome, loc *time.Location) string {
	switch {
	case o.GetAllow() && o.GetMode() == "monitor":
		return "let in (monitor)"
	case o.GetAllow() && len(o.GetExemptPolicyIds()) > 0:
		return "let in (exempt)"
	case o.GetAllow():
		return "let in"
	case o.GetCanContinue() && o.GetBlockFrom() != nil:
		return "warned; blocked from " + o.GetBlockFrom().AsTime().In(loc).Format("Mon 02 Jan")
	case o.GetCanContinue():
		return "warned (Continue)"
	case o.GetCanResolveLater():
		return "blocked; Resolve later"
	case o.GetReason() != "" && o.GetReason() != "policy_failed":
		return "blocked (" + o.GetReason() + ")"
	}
	return "blocked"
}

// forecastSummary counts, sign-in by sign-in, what enforcing the named
// policies would do: those it would stop first, then what the counts
// leave out.
func forecastSummary(r *adminv1.ForecastEnforcementResponse, everyPolicy bool) string {
	var stopped, already, grace, later, stale, crowded, omitted, nobody int
	macs, stoppedMacs := map[string]bool{}, map[string]bool{}
	for _, d := range r.GetDevices() {
		macs[d.GetDeviceId()] = true
		if n := d.GetPeopleOmitted(); n > 0 {
			crowded++
			omitted += int(n)
		}
		if d.GetReportStale() {
			stale++
		}
		if d.GetUsername() == "" {
			nobody++
		}
		if !stoppedBy(d, r.GetPolicyIds()) {
			continue
		}
		stopped++
		stoppedMacs[d.GetDeviceId()] = true
		o, n := d.GetEnforced(), d.GetNow()
		switch {
		case o.GetCanContinue() && o.GetBlockFrom() != nil:
			grace++
		case o.GetCanResolveLater():
			later++
		}
		if !n.GetAllow() && !n.GetCanContinue() {
			already++
		}
	}
	what := "If " + clean(strings.Join(r.GetPolicyIds(), ", ")) + " were enforced, it"
	switch {
	case everyPolicy:
		what = "If every policy were enforced, they"
	case len(r.GetPolicyIds()) > 1:
		what = strings.TrimSuffix(what, " it") + " they"
	}
	lines := []string{fmt.Sprintf("%s would stop %d of %d sign-ins (%d of %d Macs): %d at once (%d offered Resolve later), "+
		"%d when a grace period ends; %d of the %d are blocked now already",
		what, stopped, len(r.GetDevices()), len(stoppedMacs), len(macs), stopped-grace, later, grace, already, stopped)}
	if stale > 0 {
		lines = append(lines, fmt.Sprintf("* %d sign-ins decided on a report older than the verifier's --max-posture-age: a real one asks the Mac for a fresh report first (--wide: REPORT)", stale))
	}
	if nobody > 0 {
		lines = append(lines, fmt.Sprintf("%d Macs with no known person (none assigned; no sign-in on record by a person the directory holds, sign-ins not bound to the Mac left out: decisions --not-bound, --user-binding-rule): decided for the Mac alone, every policy applying", nobody))
	}
	if crowded > 0 {
		lines = append(lines, fmt.Sprintf("not counted: %d people assigned to %d Macs beyond the 16 each is decided for (--json: peopleOmitted; 'explain --user' decides for one)", omitted, crowded))
	}
	return strings.Join(lines, "\n")
}
