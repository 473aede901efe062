package main

import (
	"context"
	"fmt"

	"github.com/clearance/clearance/pkg/cli"
	adminv1 "github.com/clearance/clearance/proto/gen/clearance/admin/v1"
	"github.com/clearance/clearance/verifier/config"
)

// assignCmds are `devices assign|unassign`: the admin API's AssignDevice
// and UnassignDevice, with the device by the start of its id.
func (a *app) assignCmds() []*cli.Command {
	cmd := func(name, summary, doc string, do func(c *adminConn, device, user string) (string, error)) *cli.Command {
		return &cli.Command{
			Name:    name,
			Summary: summary,
			Args:    "DEVICE_ID USER",
			Doc:     doc,
			Footer:  config.SharedFooter,
			Flags: func(fs *cli.FlagSet) cli.Action {
				af := a.bindAdmin(fs)
				return func(ctx context.Context, args []string) error {
					if err := cli.ExactArgs(args, 2, "the device's id, or the start of it (see 'devices'), and the user's username or id"); err != nil {
						return err
					}
					return a.withAdmin(ctx, af, func(c *adminConn) error {
						id, err := c.resolveDevice(args[0])
						if err != nil {
							return err
						}
						said, err := do(c, id, args[1])
						if err != nil {
							return err
						}
						fmt.Fprintln(a.stdout, said)
						return nil
					})
				}
			},
		}
	}
	return []*cli.Command{
		cmd("assign", "say which person uses a Mac, for --user-binding",
			"Assigns the device DEVICE_ID (its id, or the start of it the tables show) to USER (an Okta username or "+
				"the user's id, as SCIM or the Okta API sync provisioned them): with --user-binding enforce, only the "+
				"people a Mac is assigned to, or whose local account on it --user-binding-rule maps to them, sign in "+
				"from it. A Mac may be assigned to several people. Audited as device.assign.\n\n"+
				"  clearance-verifier devices assign --data-dir /var/lib/clearance \\\n    3f2a8c1e jane@example.com",
			func(c *adminConn, device, user string) (string, error) {
				resp, err := call(c, c.client.AssignDevice, &adminv1.AssignDeviceRequest{DeviceId: device, User: user})
				if err != nil {
					return "", err
				}
				return fmt.Sprintf("assigned: device %s to %s (%s)", device, personCell(resp.GetUser().GetUserName()), resp.GetUser().GetUserId()), nil
			}),
		cmd("unassign", "take back a Mac's assignment to a person",
			"Removes the assignment of the device DEVICE_ID to USER that 'devices assign' made (a mapping by "+
				"--user-binding-rule is not an assignment and stays). Audited as device.unassign.\n\n"+
				"  clearance-verifier devices unassign --data-dir /var/lib/clearance \\\n    3f2a8c1e jane@example.com",
			func(c *adminConn, device, user string) (string, error) {
				if _, err := call(c, c.client.UnassignDevice, &adminv1.UnassignDeviceRequest{DeviceId: device, User: user}); err != nil {
					return "", err
				}
				return fmt.Sprintf("unassigned: device %s from %s", device, clean(user)), nil
			}),
	}
}
