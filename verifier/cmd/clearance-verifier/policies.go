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

func (a *app) policiesCmd() *cli.Command {
	return &cli.Command{
		Name:    "policies",
		Summary: "the policies in force and the rollout mode each is in",
		Doc: "Lists the policies the running verifier has in force: id, name, whether each counts for access " +
			"(required, critical or advisory), the mode a Mac failing it meets now (monitor, warn or enforce, " +
			"after the verifier's --enforcement ceiling), its grace period, whether it may be resolved later " +
			"(bypass), and the Okta groups it applies to (everyone when none; -group for one it leaves out). " +
			"The set's version and the ceiling are printed on stderr. It asks the running verifier's admin API with the data dir's " +
			"ca.pem and admin.token; with replicas, each answers for itself.\n\n" +
			"  clearance-verifier policies --data-dir /var/lib/clearance",
		Footer:   config.SharedFooter,
		Commands: []*cli.Command{a.forecastCmd()},
		Flags: func(fs *cli.FlagSet) cli.Action {
			af := a.bindAdmin(fs)
			fs.Group("Output")
			asJSON := fs.Bool("json", false, "print the admin API's ListPoliciesResponse as JSON")
			wide := fs.Bool("wide", false, "nothing shortened, whatever the terminal's width")
			return func(ctx context.Context, _ []string) error {
				return a.withAdmin(ctx, af, func(c *adminConn) error {
					resp, err := call(c, c.client.ListPolicies, &adminv1.ListPoliciesRequest{})
					if err != nil {
						return err
					}
					n := len(resp.GetPolicySet().GetPolicies())
					return a.printList(*asJSON, resp, n, "no policies in force", func() error {
						fmt.Fprintf(a.stderr, "policy set %s\n", orDash(resp.GetPolicySet().GetVersion()))
						a.printCeiling(resp.GetEnforcementCeiling())
						return renderPolicies(a.stdout, resp, a.tableWidth(*wide))
					})
				})
			}
		},
	}
}

// printCeiling says on stderr what the ceiling does, when it lowers anything.
func (a *app) printCeiling(ceiling string) {
	switch ceiling {
	case "", "enforce":
		fmt.Fprintln(a.stderr, "enforcement ceiling: enforce (each policy's own mode)")
	default:
		fmt.Fprintf(a.stderr, "enforcement ceiling: %s (no policy is stricter than %s on this verifier)\n", ceiling, ceiling)
	}
}

// renderPolicies writes the policies in force with their rollout, in the
// set's order.
func renderPolicies(w io.Writer, resp *adminv1.ListPoliciesResponse, width int) error {
	rollouts := map[string]*adminv1.PolicyRollout{}
	for _, r := range resp.GetRollouts() {
		rollouts[r.GetPolicyId()] = r
	}
	rows := [][]string{{"ID", "NAME", "COUNTS", "MODE", "GRACE", "BYPASS", "GROUPS"}}
	for _, p := range resp.GetPolicySet().GetPolicies() {
		r := rollouts[p.GetId()]
		counts := "advisory"
		switch {
		case p.GetCritical():
			counts = "critical"
		case p.GetRequired():
			counts = "required"
		}
		mode := r.GetEffectiveEnforcement()
		if own := r.GetEnforcement(); own != "" && own != mode {
			// Lowered by the ceiling: say what the file asks for.
			mode += " (file: " + own + ")"
		}
		grace := "-"
		if g := r.GetGrace(); g != nil {
			grace = durationText(g.AsDuration())
		}
		bypass := "no"
		if r.GetAllowBypass() && !p.GetCritical() {
			bypass = "yes"
		}
		groups := append([]string(nil), r.GetGroups()...)
		for _, g := range r.GetExcludeGroups() {
			groups = append(groups, "-"+g)
		}
		scope := "everyone"
		if len(groups) > 0 {
			scope = strings.Join(groups, ",")
		}
		rows = append(rows, []string{p.GetId(), p.GetName(), counts, orDash(mode), grace, bypass, scope})
	}
	return writeTable(w, rows, width, []shrink{{col: 1, floor: 20}})
}

// durationText writes d as the policy file would: the largest whole unit
// (72h, 30m, 45s).
func durationText(d time.Duration) string {
	switch {
	case d%time.Hour == 0:
		return strconv.FormatInt(int64(d/time.Hour), 10) + "h"
	case d%time.Minute == 0:
		return strconv.FormatInt(int64(d/time.Minute), 10) + "m"
	}
	return d.String()
}
