package main

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/clearance/clearance/pkg/cli"
	adminv1 "github.com/clearance/clearance/proto/gen/clearance/admin/v1"
	"github.com/clearance/clearance/verifier/admin"
	"github.com/clearance/clearance/verifier/config"
)

// expectReinstallCmd is `devices expect-reinstall`: the admin API's
// ExpectReinstall, with the device by the start of its id.
func (a *app) expectReinstallCmd() *cli.Command {
	return &cli.Command{
		Name:    "expect-reinstall",
		Summary: "let a Mac about to be wiped enroll its new key without approval",
		Args:    "DEVICE_ID",
		Doc: "A Mac that is wiped and set up again (Erase All Content and Settings, a reinstall of macOS) loses its " +
			"device key, and its agent's new key waits for approval like any key that proves nothing. Say so before " +
			"you wipe it: until --within from now, the Mac's next enrollment with a new key, from the same hardware " +
			"UUID and serial number and with a valid enroll secret, replaces its key without approval, once, and is " +
			"audited as proof reinstall_expected. Anyone who has the Mac's hardware UUID, serial number and an enroll " +
			"secret could enroll as it meanwhile: keep --within to what the reinstall takes. --cancel takes it back. " +
			"Audited as device.expect_reinstall; the admin API's GetDevice shows it (reinstall_expected_until).\n\n" +
			"  clearance-verifier devices expect-reinstall --data-dir /var/lib/clearance \\\n    --within 4h 3f2a8c1e",
		Footer: config.SharedFooter,
		Flags: func(fs *cli.FlagSet) cli.Action {
			af := a.bindAdmin(fs)
			fs.Group("Reinstall")
			within := fs.Duration("within", admin.DefaultReinstallWithin, "how long from now the new key may come (1m to 168h)")
			cancel := fs.Bool("cancel", false, "take back the expected reinstall instead")
			return func(ctx context.Context, args []string) error {
				if err := cli.ExactArgs(args, 1, "the device's id, or the start of it (see 'devices')"); err != nil {
					return err
				}
				if *cancel && fs.Given("within") {
					return cli.Usagef("--within and --cancel together: --cancel takes an expectation back")
				}
				if !*cancel && (*within < time.Minute || *within > admin.MaxReinstallWithin) {
					return cli.Usagef("--within %s: give from 1m to %s", *within, admin.MaxReinstallWithin)
				}
				return a.withAdmin(ctx, af, func(c *adminConn) error {
					id, err := c.resolveDevice(args[0])
					if err != nil {
						return err
					}
					req := &adminv1.ExpectReinstallRequest{DeviceId: id, Cancel: *cancel}
					if !*cancel {
						req.Within = durationpb.New(*within)
					}
					resp, err := call(c, c.client.ExpectReinstall, req)
					if err != nil {
						return err
					}
					d := resp.GetDevice()
					name := fmt.Sprintf("%s (%s, serial %s)", d.GetDeviceId(), clean(orDash(d.GetFacts().GetHostname())), clean(orDash(d.GetFacts().GetSerialNumber())))
					if *cancel {
						fmt.Fprintf(a.stdout, "no reinstall expected: %s; a new key from it waits for approval\n", name)
						return nil
					}
					fmt.Fprintf(a.stdout, "reinstall expected: %s may enroll one new key without approval until %s\n",
						name, resp.GetUntil().AsTime().UTC().Format(time.RFC3339))
					return nil
				})
			}
		},
	}
}
