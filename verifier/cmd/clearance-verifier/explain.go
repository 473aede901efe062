package main

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/clearance/clearance/pkg/cli"
	adminv1 "github.com/clearance/clearance/proto/gen/clearance/admin/v1"
	"github.com/clearance/clearance/verifier/config"
)

// explainCmd is the admin API's ExplainAccess as a person reads it: the
// decision a sign-in from a device would get now, and each policy's part
// in it.
func (a *app) explainCmd() *cli.Command {
	return &cli.Command{
		Name:    "explain",
		Summary: "would a sign-in from this Mac be let in now, and why: each policy's part",
		Args:    "DEVICE_ID",
		Doc: "Decides, without recording anything, what a sign-in from the device DEVICE_ID (its id, or the start of " +
			"it the tables show) would get now: let in or not and why, what the person would be told, whether the " +
			"page would offer Continue or Resolve later, and for each policy in force its result and its part in the " +
			"decision: blocks sign-in now, blocks from a date (its grace period runs until then), only warns, let " +
			"through by monitor mode or an exemption, or advisory. With --user the person's Okta record, groups and " +
			"Mac bindings count as at a real sign-in (policies scoped to groups apply or not); without it, as for a " +
			"sign-in that names no one. --live asks the Mac's agent for a fresh report first, as a sign-in does when " +
			"the latest is old. It asks the running verifier's admin API with the data dir's ca.pem and " +
			"admin.token.\n\n" +
			"  clearance-verifier explain --data-dir /var/lib/clearance 3f2a8c1e \\\n    --user alice@example.com",
		Footer: config.SharedFooter,
		Flags: func(fs *cli.FlagSet) cli.Action {
			af := a.bindAdmin(fs)
			fs.Group("Sign-in")
			user := fs.String("user", "", "decide for this Okta `username`, as their sign-in would be")
			live := fs.Bool("live", false, "ask the agent for a fresh report first (up to the verifier's live-check timeout)")
			fs.Group("Output")
			asJSON := fs.Bool("json", false, "print the admin API's ExplainAccessResponse as JSON")
			wide := fs.Bool("wide", false, "nothing shortened, whatever the terminal's width")
			return func(ctx context.Context, args []string) error {
				if err := cli.ExactArgs(args, 1, "the device's id, or the start of it (see 'devices')"); err != nil {
					return err
				}
				return a.withAdmin(ctx, af, func(c *adminConn) error {
					resp, err := call(c, c.client.ExplainAccess, &adminv1.ExplainAccessRequest{
						DeviceId: args[0], Username: strings.TrimSpace(*user), LiveCheck: *live,
					})
					if err != nil {
						return err
					}
					if u := strings.TrimSpace(*user); u != "" {
						if err := a.noteUnknownUser(c, u, "this is the decision for a stranger, whom every policy applies to"); err != nil {
							return err
						}
					}
					if *asJSON {
						return printJSON(a.stdout, resp)
					}
					return renderExplain(a.stdout, resp, a.now(), time.Local, a.tableWidth(*wide))
				})
			}
		},
	}
}

// wouldDenyUnless names what lets a sign-in in that would otherwise be
// denied, by the decision's mode: enforcing the policies ends monitor and
// warn (and its Continue); an exemption, or a Resolve later, holds under
// enforce too.
func wouldDenyUnless(mode string) string {
	switch mode {
	case "exempt":
		return "without the exemption"
	case "bypassed":
		return "without the Resolve later"
	}
	return "enforced"
}

// renderExplain writes the decision, its context, and one row for each
// policy in force.
func renderExplain(w io.Writer, r *adminv1.ExplainAccessResponse, now time.Time, loc *time.Location, width int) error {
	at := func(t time.Time) string { return t.In(loc).Format("Mon 2006-01-02 15:04:05 MST") }
	result := "DENY"
	if r.GetAllow() {
		result = "allow"
	}
	decided := result + ": " + r.GetReason()
	if m := r.GetMode(); m != "" && m != "enforce" {
		decided += " (" + m + ")"
	}
	if wd := r.GetWouldDeny(); wd != "" {
		decided += "; " + wouldDenyUnless(r.GetMode()) + ", it would deny: " + wd
	}
	device := r.GetDeviceId()
	if n := r.GetDeviceName(); n != "" {
		device += " (" + clean(n) + ")"
	}
	user := "none given (every policy applies, group-scoped ones too)"
	if u := r.GetUsername(); u != "" {
		user = personCell(u)
	}
	rows := [][2]string{
		{"device", device},
		{"user", user},
		{"decision", decided},
		{"told", clean(r.GetMessage())},
	}
	var page []string
	if r.GetCanContinue() {
		page = append(page, "Continue")
	}
	if r.GetCanResolveLater() {
		page = append(page, "Resolve later")
	}
	switch {
	case len(page) > 0:
		rows = append(rows, [2]string{"page offers", strings.Join(page, " and ")})
	case !r.GetAllow():
		rows = append(rows, [2]string{"page offers", "nothing to skip: the Mac must be fixed (or exempted)"})
	}
	if b := r.GetBlockFrom(); b != nil {
		rows = append(rows, [2]string{"blocks from", at(b.AsTime()) + " (a grace period ends)"})
	}
	report := "none usable"
	if o := r.GetObservedAt(); o != nil {
		report = fmt.Sprintf("seq %d, observed %s (%s)", r.GetReportSeq(), at(o.AsTime()), ago(o.AsTime(), true, now))
		if v := r.GetReportPolicySetVersion(); v != "" && v != r.GetPolicySetVersion() {
			report += fmt.Sprintf("; the agent ran policy set %s, %s is in force", clean(v), clean(r.GetPolicySetVersion()))
		}
	}
	rows = append(rows, [2]string{"report", report}, [2]string{"live check", r.GetLiveCheck()})
	for _, kv := range rows {
		for i, line := range wrapWords(kv[1], width-13) {
			label := kv[0]
			if i > 0 {
				label = ""
			}
			if _, err := fmt.Fprintf(w, "%-12s %s\n", label, line); err != nil {
				return err
			}
		}
	}
	if len(r.GetResults()) == 0 {
		_, err := fmt.Fprintln(w, "\nno policy was judged: the decision was made before the report's results counted")
		return err
	}
	rollout := map[string]*adminv1.PolicyFinding{}
	for _, f := range r.GetFailing() {
		rollout[f.GetPolicyId()] = f
	}
	table := [][]string{{"POLICY", "NAME", "RESULT", "FOR", "COUNTS", "EFFECT"}}
	for _, f := range r.GetResults() {
		counts := "advisory"
		switch {
		case f.GetCritical():
			counts = "critical"
		case f.GetRequired():
			counts = "required"
		}
		table = append(table, []string{
			clean(f.GetPolicyId()), clean(f.GetName()),
			strings.TrimPrefix(f.GetStatus().String(), "POLICY_STATUS_"), lasted(f.GetSince(), now), counts,
			policyPart(f, rollout[f.GetPolicyId()], r.GetCanResolveLater(), loc),
		})
	}
	if _, err := fmt.Fprintln(w); err != nil {
		return err
	}
	return writeTableCut(w, table, width, []shrink{{col: 1, floor: 7}})
}

// policyPart says what one policy did to the decision: the page's words
// for an item (blocks now, blocks from, warning), or what let it through.
// failing is the policy's entry among the failing required ones, which
// carries its rollout; nil for one that passed or is advisory. Only a
// page that offers Resolve later lets it skip an item.
func policyPart(f, failing *adminv1.PolicyFinding, resolveLater bool, loc *time.Location) string {
	if f.GetStatus() == adminv1.PolicyStatus_POLICY_STATUS_PASS {
		return "-"
	}
	if !f.GetRequired() || failing == nil {
		return "advisory: never blocks"
	}
	switch failing.GetWaiver() {
	case "exempt":
		if others := failing.GetOtherExemptionIds(); len(others) > 0 {
			ids := []string{strconv.FormatInt(failing.GetExemptionId(), 10)}
			for _, id := range others {
				ids = append(ids, strconv.FormatInt(id, 10))
			}
			return "let through by exemptions " + strings.Join(ids, ", ")
		}
		return fmt.Sprintf("let through by exemption %d", failing.GetExemptionId())
	case "monitor":
		return "monitor: let through; Recommended on a page"
	case "warned":
		return "warned: Continue pressed"
	case "bypassed":
		return "skipped by Resolve later"
	}
	if b := failing.GetBlocksFrom(); b != nil {
		return "blocks from " + b.AsTime().In(loc).Format("Mon 02 Jan 15:04 MST")
	}
	switch failing.GetEnforcement() {
	case "warn":
		return "warning: doesn't block"
	case "monitor":
		return "monitor: Recommended on a page"
	}
	switch {
	case failing.GetCritical():
		return "blocks now, can't be skipped"
	case failing.GetBypassOffered() && resolveLater:
		return "blocks now; Resolve later skips"
	}
	return "blocks now"
}

// wrapWords breaks s into lines of at most n characters at spaces (a word
// longer than n stands alone); n < 1 leaves s whole.
func wrapWords(s string, n int) []string {
	if n < 1 || runeLen(s) <= n {
		return []string{s}
	}
	return cli.WrapText(s, n)
}
