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
)

func (a *app) forecastCmd() *cli.Command {
	return &cli.Command{
		Name:    "forecast",
		Summary: "who would be blocked if policies were enforced now, before you enforce them",
		Doc: "Decides, for every Mac that is not revoked and without recording anything, what a sign-in " +
			"gets now and what it would get if the --policy policies (every policy when none is given) were " +
			"in enforce mode whatever the --enforcement ceiling, the others as they are now: the policy file's " +
			"grace periods and Resolve later kept, exemptions counting, from each Mac's latest report however old " +
			"(the wide table says how old). A Mac is decided for each person assigned " +
			"to it (up to 16), else for the person of its latest sign-in, else for no one (held to every policy, " +
			"as a sign-in naming no one is). It lists the sign-ins enforcing " +
			"would not let straight in (--every: all of them) and ends with a count. Nothing is written: no grace " +
			"period starts until a real sign-in. It asks the running verifier's admin API with the data dir's " +
			"ca.pem and admin.token; a token with role read will do.\n\n" +
			"  clearance-verifier policies forecast --data-dir /var/lib/clearance \\\n" +
			"    --policy firewall",
		Footer: config.SharedFooter,
		Flags: func(fs *cli.FlagSet) cli.Action {
			af := a.bindAdmin(fs)
			fs.Group("Forecast")
			var ids []string
			fs.Func("policy", "forecast enforcing the policy with this `id` (repeat, or separate with commas; default: every policy)", func(v string) error {
				for _, id := range strings.Split(v, ",") {
					if id = strings.TrimSpace(id); id != "" {
						ids = append(ids, id)
					}
				}
				return nil
			})
			every := fs.Bool("every", false, "list every sign-in, those enforcing lets in too")
			fs.Group("Output")
			asJSON := fs.Bool("json", false, "print the admin API's ForecastEnforcementResponse as JSON (every page's devices in one)")
			wide := fs.Bool("wide", false, "full device ids and nothing shortened, whatever the terminal's width")
			return func(ctx context.Context, _ []string) error {
				return a.withAdmin(ctx, af, func(c *adminConn) error {
					for _, id := range ids {
						if err := c.checkPolicyID(id); err != nil {
							return err
						}
					}
					var enforced []string
					rows, err := allPages(func(token string) ([]*adminv1.DeviceForecast, string, error) {
						resp, err := call(c, c.client.ForecastEnforcement, &adminv1.ForecastEnforcementRequest{PolicyIds: ids, PageSize: 200, PageToken: token})
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
							if !r.GetEnforced().GetAllow() {
								keep = append(keep, r)
							}
						}
					}
					if len(keep) > 0 {
						if err := renderForecast(a.stdout, keep, a.now(), time.Local, tableWidth(a.getenv, *wide)); err != nil {
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
		person := r.GetUsername()
		switch {
		case person == "":
			person = "none yet"
		case r.GetUsernameSource() == "latest_sign_in":
			person += " (last)"
		}
		row := []string{
			shorten(r.GetDeviceId(), width), orDash(markLookAlike(r.GetDeviceName())), person,
			outcomeText(r.GetNow(), loc), outcomeText(r.GetEnforced(), loc),
			orDash(strings.Join(r.GetEnforced().GetBlockingPolicyIds(), ",")),
		}
		if wide {
			row = slices.Insert(row, 3, ago(r.GetObservedAt().AsTime(), r.GetObservedAt() != nil, now))
		}
		out = append(out, row)
	}
	return writeTable(w, out, width, []shrink{{col: 1, floor: 10}, {col: 2, floor: 12}})
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

// forecastSummary counts what enforcing would do, sign-in by sign-in.
func forecastSummary(r *adminv1.ForecastEnforcementResponse, everyPolicy bool) string {
	var blocked, later, grace, warned, exempt, newlyBlocked, crowded, omitted int
	macs := map[string]bool{}
	for _, d := range r.GetDevices() {
		macs[d.GetDeviceId()] = true
		if n := d.GetPeopleOmitted(); n > 0 {
			crowded++
			omitted += int(n)
		}
		o := d.GetEnforced()
		switch {
		case o.GetAllow():
			if len(o.GetExemptPolicyIds()) > 0 {
				exempt++
			}
		case o.GetCanContinue() && o.GetBlockFrom() != nil:
			grace++
		case o.GetCanContinue():
			warned++
		default:
			blocked++
			if o.GetCanResolveLater() {
				later++
			}
			if n := d.GetNow(); n.GetAllow() || n.GetCanContinue() {
				newlyBlocked++
			}
		}
	}
	what := "If " + clean(strings.Join(r.GetPolicyIds(), ", ")) + " were enforced"
	if everyPolicy {
		what = "If every policy were enforced"
	}
	out := fmt.Sprintf("%s, of %d sign-ins from %d Macs: %d would be blocked (%d not blocked now; %d offered Resolve later), "+
		"%d warned until a grace period ends, %d warned only, %d let in by an exemption, %d let in",
		what, len(r.GetDevices()), len(macs), blocked, newlyBlocked, later, grace, warned, exempt, len(r.GetDevices())-blocked-grace-warned-exempt)
	if crowded > 0 {
		out += fmt.Sprintf("\nnot counted: %d people assigned to %d Macs beyond the 16 each is decided for (--json: people_omitted; 'explain --user' decides for one)", omitted, crowded)
	}
	return out
}
