package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/clearance/clearance/pkg/cli"
	adminv1 "github.com/clearance/clearance/proto/gen/clearance/admin/v1"
	"github.com/clearance/clearance/verifier/config"
)

// revokeCmd is `devices revoke`: the admin API's RevokeDevice, with its
// reason required.
func (a *app) revokeCmd() *cli.Command {
	return &cli.Command{
		Name:    "revoke",
		Summary: "revoke a device: its agent is cut off and it signs no one in",
		Args:    "DEVICE_ID",
		Doc: "Revokes the device DEVICE_ID (its id, or the start of it the tables show, which no other device's id " +
			"may start with), with a reason kept in the audit log: its stream ends at once on every replica, its " +
			"reports and certificates are refused, and every sign-in from it is denied (device_revoked). A revoked " +
			"device's key never enrolls again, and its hardware UUID comes back only with a new key, by a request the " +
			"security team approves ('devices pending', reason revoked_device; approving reinstates the device). Use it " +
			"for a Mac that is lost, stolen or gone, not to pause one (an exemption or a policy's rollout is for that).\n\n" +
			"  clearance-verifier devices revoke --data-dir /var/lib/clearance 3f2a8c1e \\\n    --reason \"reported stolen, ticket 4711\"",
		Footer: config.SharedFooter,
		Flags: func(fs *cli.FlagSet) cli.Action {
			af := a.bindAdmin(fs)
			fs.Group("Revoke")
			why := fs.String("reason", "", "why (required; kept in the audit log, at most 500 characters)")
			return func(ctx context.Context, args []string) error {
				if err := cli.ExactArgs(args, 1, "the device's id, or the start of it (see 'devices')"); err != nil {
					return err
				}
				if strings.TrimSpace(*why) == "" {
					return cli.Usagef("--reason is required: it is kept in the audit log with the revocation")
				}
				return a.withAdmin(ctx, af, func(c *adminConn) error {
					resp, err := call(c, c.client.RevokeDevice, &adminv1.RevokeDeviceRequest{DeviceId: args[0], Reason: strings.TrimSpace(*why)})
					if err != nil {
						return err
					}
					d := resp.GetDevice()
					fmt.Fprintf(a.stdout, "revoked: device %s (%s, %s); its agent is disconnected and it signs no one in\n",
						d.GetDeviceId(), hostPhrase(d.GetFacts().GetHostname()), serialPhrase(d.GetFacts().GetSerialNumber()))
					return nil
				})
			}
		},
	}
}
