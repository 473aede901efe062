package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/clearance/clearance/pkg/cli"
	adminv1 "github.com/clearance/clearance/proto/gen/clearance/admin/v1"
	"github.com/clearance/clearance/verifier/admin"
	"github.com/clearance/clearance/verifier/config"
	"github.com/clearance/clearance/verifier/storage"
)

// maxReinstallBatch bounds the Macs one expect-reinstall names: a lab or
// a class room, not a fleet; each is a window in which anyone with its
// hardware UUID, serial number and an enroll secret could enroll as it.
const maxReinstallBatch = 500

// expectReinstallCmd is `devices expect-reinstall`: the admin API's
// ExpectReinstall for each Mac named, by the start of its id or by its
// serial number.
func (a *app) expectReinstallCmd() *cli.Command {
	return &cli.Command{
		Name:    "expect-reinstall",
		Summary: "let Macs about to be wiped enroll their new keys without approval",
		Args:    "[DEVICE_ID…]",
		Doc: "A Mac that is wiped and set up again (Erase All Content and Settings, a reinstall of macOS) loses its " +
			"device key, and its agent's new key waits for approval like any key that proves nothing. Say so before " +
			"you wipe it: until --within from now, the Mac's next enrollment with a new key, from the same hardware " +
			"UUID and serial number and with a valid enroll secret, replaces its key without approval, once, and is " +
			"audited as proof reinstall_expected. Anyone who has the Mac's hardware UUID, serial number and an enroll " +
			"secret could enroll as it meanwhile: keep --within to what the reinstall takes. --cancel takes it back. " +
			"Name the Macs by device id (or its start), or by serial number in a --serials file: an MDM's CSV " +
			"export (Jamf Pro, Kandji, Intune, Fleet) or a plain list, read as 'devices import' reads it, up to 500 " +
			"at once. Every Mac is found and checked before any is changed: one not found, revoked, enrolled " +
			"without a serial number, or a serial number more than one enrolled Mac has, changes nothing. " +
			"Audited as device.expect_reinstall for each; the admin API's GetDevice shows it (reinstall_expected_until).\n\n" +
			"  clearance-verifier devices expect-reinstall --data-dir /var/lib/clearance \\\n    --within 4h 3f2a8c1e\n" +
			"  clearance-verifier devices expect-reinstall --data-dir /var/lib/clearance \\\n    --within 8h --serials lab-macs.txt",
		Footer: config.SharedFooter,
		Flags: func(fs *cli.FlagSet) cli.Action {
			af := a.bindAdmin(fs)
			fs.Group("Reinstall")
			within := fs.Duration("within", admin.DefaultReinstallWithin, "how long from now the new key may come (1m to 168h)")
			cancel := fs.Bool("cancel", false, "take back the expected reinstall instead")
			serials := fs.String("serials", "", "an MDM's CSV export or a list of serial numbers (a `file`), with or instead of DEVICE_IDs")
			return func(ctx context.Context, args []string) error {
				if len(args) == 0 && *serials == "" {
					return cli.Usagef("name the Macs: DEVICE_ID arguments (see 'devices'), or --serials FILE")
				}
				if *cancel && fs.Given("within") {
					return cli.Usagef("--within and --cancel together: --cancel takes an expectation back")
				}
				if !*cancel && (*within < time.Minute || *within > admin.MaxReinstallWithin) {
					return cli.Usagef("--within %s: give from 1m to %s", *within, admin.MaxReinstallWithin)
				}
				var wanted []string
				if *serials != "" {
					var err error
					if wanted, err = readSerials(*serials); err != nil {
						return err
					}
				}
				if n := len(args) + len(wanted); n > maxReinstallBatch {
					return cli.Usagef("%d Macs named; at most %d at once", n, maxReinstallBatch)
				}
				return a.withAdmin(ctx, af, func(c *adminConn) error {
					ids, err := c.reinstallDevices(args, wanted)
					if err != nil {
						return err
					}
					for i, id := range ids {
						req := &adminv1.ExpectReinstallRequest{DeviceId: id, Cancel: *cancel}
						if !*cancel {
							req.Within = durationpb.New(*within)
						}
						resp, err := call(c, c.client.ExpectReinstall, req)
						if err != nil {
							if i > 0 {
								return fmt.Errorf("%w (the %d Macs above are done; the other %d are not)", err, i, len(ids)-i)
							}
							return err
						}
						d := resp.GetDevice()
						name := fmt.Sprintf("%s (%s, serial %s)", d.GetDeviceId(), clean(orDash(d.GetFacts().GetHostname())), clean(orDash(d.GetFacts().GetSerialNumber())))
						if *cancel {
							fmt.Fprintf(a.stdout, "no reinstall expected: %s; a new key from it waits for approval\n", name)
							continue
						}
						fmt.Fprintf(a.stdout, "reinstall expected: %s may enroll one new key without approval until %s\n",
							name, resp.GetUntil().AsTime().UTC().Format(time.RFC3339))
					}
					return nil
				})
			}
		},
	}
}

// readSerials reads a --serials file as 'devices import' reads a list
// (knownlist: an MDM's CSV export, found by its serial number column, or a
// plain list), every row checked: at most maxReinstallBatch serial numbers.
func readSerials(path string) ([]string, error) {
	entries, _, err := readExport(path)
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			return nil, err
		}
		return nil, cli.Usagef("%v", err)
	}
	if len(entries) > maxReinstallBatch {
		return nil, cli.Usagef("%s: %d serial numbers; at most %d at once", path, len(entries), maxReinstallBatch)
	}
	out := make([]string, 0, len(entries))
	for _, e := range entries {
		out = append(out, e.Serial)
	}
	if len(out) == 0 {
		return nil, cli.Usagef("%s holds no serial number", path)
	}
	return out, nil
}

// reinstallDevices finds every Mac named, by id (or its start) and by
// serial number, each once, before anything changes: one not found, or a
// serial number more than one enrolled Mac has, is an error naming it.
// Revoked Macs are not counted: a new key never replaces a revoked one's.
func (c *adminConn) reinstallDevices(prefixes, serials []string) ([]string, error) {
	devs, err := c.listDevices()
	if err != nil {
		return nil, err
	}
	var ids []string
	seen := map[string]bool{}
	add := func(id string) {
		if !seen[id] {
			seen[id] = true
			ids = append(ids, id)
		}
	}
	var problems []string
	// What ExpectReinstall would refuse is found here, before any call:
	// a revoked Mac comes back only by approval, and one enrolled without
	// a serial number cannot be told from another.
	check := func(d *adminv1.Device, named string) {
		switch {
		case d.GetStatus() == adminv1.DeviceStatus_DEVICE_STATUS_REVOKED:
			problems = append(problems, fmt.Sprintf("%s (%s) is revoked: it comes back only by approval", named, d.GetDeviceId()))
		case storage.CanonicalSerial(d.GetFacts().GetSerialNumber()) == "":
			// ExpectReinstall's own test: a serial number of letters and
			// digits only (a virtual machine's, with spaces, is not one).
			problems = append(problems, fmt.Sprintf("%s (%s) enrolled without a serial number of letters and digits only, so its reinstall cannot be expected", named, d.GetDeviceId()))
		default:
			add(d.GetDeviceId())
		}
	}
	for _, p := range prefixes {
		if strings.TrimSpace(p) == "" {
			// The start of every id: "$ID" of a variable never set.
			problems = append(problems, "an empty DEVICE_ID names no Mac")
			continue
		}
		var found []*adminv1.Device
		for _, d := range devs {
			if strings.HasPrefix(d.GetDeviceId(), strings.ToLower(p)) {
				found = append(found, d)
			}
		}
		switch len(found) {
		case 0:
			problems = append(problems, fmt.Sprintf("no device id starts with %q", clean(p)))
		case 1:
			check(found[0], fmt.Sprintf("device %q", clean(p)))
		default:
			problems = append(problems, fmt.Sprintf("%d devices' ids start with %q; give more of it", len(found), clean(p)))
		}
	}
	for _, sn := range serials {
		// Serial numbers compare as the server compares them: canonical
		// (A-Z, 0-9), never folded beyond ASCII, so that a Kelvin sign
		// for a K is another serial number, not this one.
		want := storage.CanonicalSerial(sn)
		var found, revoked []*adminv1.Device
		for _, d := range devs {
			if want == "" || storage.CanonicalSerial(d.GetFacts().GetSerialNumber()) != want {
				continue
			}
			if d.GetStatus() == adminv1.DeviceStatus_DEVICE_STATUS_REVOKED {
				revoked = append(revoked, d)
			} else {
				found = append(found, d)
			}
		}
		named := fmt.Sprintf("serial number %q", clean(sn))
		switch {
		case len(found) == 1:
			check(found[0], named)
		case len(found) > 1:
			var ids []string
			for _, d := range found {
				ids = append(ids, d.GetDeviceId())
			}
			problems = append(problems, fmt.Sprintf("%d enrolled Macs have %s (%s): name them by device id", len(found), named, strings.Join(ids, ", ")))
		case len(revoked) > 0:
			check(revoked[0], named)
		default:
			problems = append(problems, fmt.Sprintf("no enrolled Mac has %s", named))
		}
	}
	if len(problems) > 0 {
		more := ""
		if len(problems) > 10 {
			more = fmt.Sprintf("; and %d more", len(problems)-10)
			problems = problems[:10]
		}
		return nil, fmt.Errorf("nothing changed: %s%s (see 'clearance-verifier devices')", strings.Join(problems, "; "), more)
	}
	return ids, nil
}
