package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/clearance/clearance/pkg/cli"
	adminv1 "github.com/clearance/clearance/proto/gen/clearance/admin/v1"
	"github.com/clearance/clearance/verifier/config"
)

// checkCmd is `devices check`: the admin API's RequestCheck, a live check
// of one Mac now.
func (a *app) checkCmd() *cli.Command {
	return &cli.Command{
		Name:    "check",
		Summary: "have a Mac's agent run its policies now and show the results",
		Args:    "DEVICE_ID",
		Doc: "Asks the agent of the device DEVICE_ID (its id, or the start of it the tables show) to run its policies " +
			"now, as a sign-in's live check does, waits for its signed report, and prints each policy's result. " +
			"The report is stored as any report is, and counts for the Mac's next sign-ins. The agent must be " +
			"connected to this verifier (with replicas, ask the one it is connected to). It asks the running " +
			"verifier's admin API with the data dir's ca.pem and admin.token.\n\n" +
			"  clearance-verifier devices check --data-dir /var/lib/clearance 3f2a8c1e",
		Footer: config.SharedFooter,
		Flags: func(fs *cli.FlagSet) cli.Action {
			af := a.bindAdmin(fs)
			fs.Group("Check")
			timeout := fs.Duration("timeout", 0, "how long to wait for the report, at most 60s (default: the verifier's --live-check-timeout)")
			fs.Group("Output")
			asJSON := fs.Bool("json", false, "print the admin API's RequestCheckResponse as JSON")
			wide := fs.Bool("wide", false, "nothing shortened, whatever the terminal's width")
			return func(ctx context.Context, args []string) error {
				if err := cli.ExactArgs(args, 1, "the device's id, or the start of it (see 'devices')"); err != nil {
					return err
				}
				if *timeout < 0 || *timeout > time.Minute {
					return cli.Usagef("--timeout must be from 1s to 60s")
				}
				req := &adminv1.RequestCheckRequest{DeviceId: args[0]}
				if *timeout > 0 {
					req.Timeout = durationpb.New(*timeout)
				}
				return a.withAdmin(ctx, af, func(c *adminConn) error {
					start := time.Now()
					resp, err := call(c, c.client.RequestCheck, req)
					if err != nil {
						return err
					}
					if *asJSON {
						return printJSON(a.stdout, resp)
					}
					return renderCheck(a.stdout, resp, time.Since(start), time.Local, a.tableWidth(*wide))
				})
			}
		},
	}
}

// renderCheck writes a live check's report: which device, when, whether
// its agent rejected the settings it was given, and each policy's result
// with osquery's message for an ERROR.
func renderCheck(w io.Writer, r *adminv1.RequestCheckResponse, took time.Duration, loc *time.Location, width int) error {
	rep := r.GetReport().GetReport()
	if _, err := fmt.Fprintf(w, "device %s answered in %s: report seq %d, observed %s\n", rep.GetDeviceId(),
		took.Round(time.Millisecond), rep.GetSeq(), rep.GetObservedAt().AsTime().In(loc).Format("2006-01-02 15:04:05 MST")); err != nil {
		return err
	}
	if sr := rep.GetSettingsRejection(); sr != nil {
		// The agent's own words: one line, escaped (clean).
		if _, err := fmt.Fprintf(w, "its agent rejected the settings it was given at %s and runs on others: %s\n",
			sr.GetAt().AsTime().In(loc).Format("2006-01-02 15:04:05 MST"), clean(sr.GetReason())); err != nil {
			return err
		}
	}
	if _, err := fmt.Fprintln(w); err != nil {
		return err
	}
	rows := [][]string{{"POLICY", "NAME", "RESULT", "COUNTS", "MESSAGE"}}
	for _, p := range r.GetPolicies() {
		counts := "advisory"
		switch {
		case p.GetCritical():
			counts = "critical"
		case p.GetRequired():
			counts = "required"
		}
		result := strings.TrimPrefix(p.GetStatus().String(), "POLICY_STATUS_")
		if result == "UNSPECIFIED" {
			result = "MISSING"
		}
		rows = append(rows, []string{clean(p.GetPolicyId()), clean(p.GetName()), result, counts, orDash(clean(p.GetMessage()))})
	}
	return writeTableCut(w, rows, width, []shrink{{col: 1, floor: 12}})
}
