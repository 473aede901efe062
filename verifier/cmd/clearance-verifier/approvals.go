package main

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/clearance/clearance/pkg/cli"
	adminv1 "github.com/clearance/clearance/proto/gen/clearance/admin/v1"
	"github.com/clearance/clearance/verifier/admin"
	"github.com/clearance/clearance/verifier/config"
	"github.com/clearance/clearance/verifier/grpcconn"
	"github.com/clearance/clearance/verifier/knownlist"
	"github.com/clearance/clearance/verifier/storage"
)

// approvalCmds are `devices pending|approve|reject|import`: the enrollment
// requests that wait for the security team, and the list of managed Macs
// that --enroll-approval known admits.
func (a *app) approvalCmds() []*cli.Command {
	return []*cli.Command{
		a.revokeCmd(),
		a.checkCmd(),
		{
			Name:    "pending",
			Summary: "enrollment requests waiting for approval",
			Doc: "Lists the enrollment requests that wait for the security team: a known Mac asking to move to a key " +
				"it did not prove (reason unproven_key: a reinstall that lost its key, or someone else with the " +
				"enroll secret and a copied hardware UUID), or a new device the --enroll-approval policy did not " +
				"admit (unknown_serial, manual), or a new device claiming a serial number an enrolled device, " +
				"revoked or not, already has (serial_enrolled: a Mac with a new logic board, or another machine " +
				"claiming a lost Mac's serial), or a revoked Mac asking to come back with a new key (revoked_device, " +
				"under any policy: approve only if the Mac is back in your hands; its revoked key is never listed, " +
				"as it never enrolls again). A request asked again with anything it shows changed (serial, hostname, " +
				"model, OS, platform, agent version, source address, enroll secret or reason; --json shows them all) " +
				"is filed anew under another id, and approving a request whose serial was enrolled after it was made files it anew as " +
				"serial_enrolled instead: approve only ids you have read. DEVICE is the device approval would change, as it is now: its id and the " +
				"start of its current key, or (new) while no device has the hardware UUID; for a new device whose " +
				"serial enrolled devices have, (new; serial held by ID (HOSTNAME)), with revoked after a revoked " +
				"one: compare the request with that device ('devices --wide') before approving; REVOKED and when, after a " +
				"revoked device's id. SERIAL is - for a Mac " +
				"that reported none. A request stays current: " +
				"when the Mac enrolls or changes key, the requests waiting for it are removed, and requests nobody " +
				"asks again for 14 days expire. Before approving, compare the key fingerprint with the one " +
				"`clearance-agent status` shows on the Mac, and the source address with where the Mac is.\n\n" +
				"  clearance-verifier devices pending --data-dir /var/lib/clearance",
			Footer: config.SharedFooter,
			Flags: func(fs *cli.FlagSet) cli.Action {
				af := a.bindAdmin(fs)
				fs.Group("Output")
				asJSON := fs.Bool("json", false, "print the requests as JSON (the admin API's PendingEnrollment messages)")
				return func(ctx context.Context, _ []string) error {
					return a.withAdmin(ctx, af, func(c *adminConn) error {
						ps, err := c.listPending()
						if err != nil {
							return err
						}
						return a.printList(*asJSON, &adminv1.ListPendingEnrollmentsResponse{Pending: ps}, len(ps), "no enrollment requests wait for approval", func() error {
							return renderPending(a.stdout, ps, a.now())
						})
					})
				}
			},
		},
		{
			Name:    "approve",
			Summary: "approve a waiting enrollment request: its key becomes the device's",
			Args:    "REQUEST_ID",
			Doc: "Approves the enrollment request REQUEST_ID (see 'devices pending'). For a known Mac its key is " +
				"replaced at once: the agent holding the old key is disconnected and can no longer report or " +
				"sign anyone in. A revoked Mac's request (revoked_device) reinstates it: the same device id and history, " +
				"no longer revoked, with the request's key; its certificates from before stay refused. A new device is enrolled. The agent picks up its certificate on its next try, " +
				"without a restart. A request whose Mac enrolled or changed key since it was made is refused and " +
				"removed: it was about a state that is gone. An id that is no longer listed (its key asked again with " +
				"other facts, and was filed anew) is refused, and nothing is enrolled: list the requests again.\n\n" +
				"  clearance-verifier devices approve --data-dir /var/lib/clearance 6f1c2a9e-…",
			Footer: config.SharedFooter,
			Flags: func(fs *cli.FlagSet) cli.Action {
				af := a.bindAdmin(fs)
				return func(ctx context.Context, args []string) error {
					if err := cli.ExactArgs(args, 1, "the request id (see 'devices pending')"); err != nil {
						return err
					}
					return a.withAdmin(ctx, af, func(c *adminConn) error {
						resp, err := call(c, c.client.ApproveEnrollment, &adminv1.ApproveEnrollmentRequest{RequestId: args[0]})
						if err != nil {
							return err
						}
						d := resp.GetDevice()
						switch {
						case resp.GetReinstated():
							fmt.Fprintf(a.stdout, "approved: device %s (%s) is reinstated, no longer revoked, with key %s; its revoked key and certificates stay refused\n",
								d.GetDeviceId(), hostPhrase(d.GetFacts().GetHostname()), d.GetKeyFingerprint())
						case resp.GetReplacedKey():
							fmt.Fprintf(a.stdout, "approved: device %s (%s) now has key %s; the old key no longer works\n",
								d.GetDeviceId(), hostPhrase(d.GetFacts().GetHostname()), d.GetKeyFingerprint())
						default:
							fmt.Fprintf(a.stdout, "approved: new device %s (%s, %s) with key %s\n",
								d.GetDeviceId(), hostPhrase(d.GetFacts().GetHostname()), serialPhrase(d.GetFacts().GetSerialNumber()), d.GetKeyFingerprint())
						}
						return nil
					})
				}
			},
		},
		{
			Name:    "reject",
			Summary: "reject a waiting enrollment request: that key cannot enroll",
			Args:    "[REQUEST_ID]",
			Doc: "Rejects the enrollment request REQUEST_ID (see 'devices pending'), or, instead, those --key or " +
				"--all-from names. A rejected request's key asking again for " +
				"that Mac is refused, whatever the --enroll-approval policy (the latest 100,000 rejections are " +
				"kept; the key of a rejection removed is decided afresh, as a new request). A known Mac's current enrollment is " +
				"not touched. With --key, rejects every waiting request of the key whose fingerprint starts with " +
				"FINGERPRINT (KEY in 'devices pending': at least its 16 digits), for each Mac it asked as: the way to " +
				"reject a key that changes its serial number, hostname or other facts at every ask, whose request is filed " +
				"anew under another id each time; a FINGERPRINT that several waiting keys start with is refused. " +
				"With --all-from, rejects every waiting request whose source (FROM in 'devices pending') is " +
				"ADDRESS, or lies in NETWORK in CIDR form (the per-source bound counts an IPv6 /64): the way to " +
				"clear a flood. A network broader than /16 (IPv4) or /32 (IPv6), or with bits set past its " +
				"prefix, is refused, as is anything that is not an address or network: nothing is rejected.\n\n" +
				"  clearance-verifier devices reject --data-dir /var/lib/clearance 6f1c2a9e-…\n" +
				"  clearance-verifier devices reject --data-dir /var/lib/clearance \\\n    --key 9b1e64c2a7f0d3e8\n" +
				"  clearance-verifier devices reject --data-dir /var/lib/clearance \\\n    --all-from 198.51.100.7\n" +
				"  clearance-verifier devices reject --data-dir /var/lib/clearance \\\n    --all-from 2001:db8:1:2::/64",
			Footer: config.SharedFooter,
			Flags: func(fs *cli.FlagSet) cli.Action {
				af := a.bindAdmin(fs)
				fs.Group("Reject")
				key := fs.String("key", "", "reject every waiting request of the key with this fingerprint (at least its first 16 hex digits) instead of one request")
				from := fs.String("all-from", "", "reject every waiting request from this source address, or network in CIDR form, instead of one request")
				return func(ctx context.Context, args []string) error {
					given := len(args)
					for _, f := range []string{*key, *from} {
						if f != "" {
							given++
						}
					}
					switch {
					case given > 1:
						return cli.Usagef("give one of a request id, --key and --all-from")
					case *key == "" && *from == "":
						if err := cli.ExactArgs(args, 1, "the request id (see 'devices pending'), or --key or --all-from"); err != nil {
							return err
						}
					case *from != "":
						if _, err := admin.ParseSource(*from); err != nil {
							return cli.Usagef("--all-from: %s", clean(err.Error()))
						}
					}
					return a.withAdmin(ctx, af, func(c *adminConn) error {
						show := func(resp *adminv1.RejectEnrollmentResponse) {
							for _, p := range resp.GetRejected() {
								fmt.Fprintf(a.stdout, "rejected: request %s (hardware UUID %s, key %s)\n", p.GetRequestId(), clean(p.GetFacts().GetHardwareUuid()), p.GetKeyFingerprint())
							}
							if more := int(resp.GetRejectedCount()) - len(resp.GetRejected()); more > 0 {
								fmt.Fprintf(a.stdout, "rejected: %d more requests\n", more)
							}
						}
						req := &adminv1.RejectEnrollmentRequest{KeyFingerprint: *key, Source: *from}
						if len(args) > 0 {
							req.RequestId = args[0]
						}
						resp, err := c.client.RejectEnrollment(c.ctx, req)
						if *from != "" && status.Code(err) == codes.NotFound {
							// Nothing to do is no failure: a flood may have
							// stopped, or been rejected, meanwhile.
							fmt.Fprintf(a.stderr, "no enrollment request from %s waits\n", clean(*from))
							return nil
						}
						if err != nil {
							return c.explain(err)
						}
						show(resp)
						return nil
					})
				}
			},
		},
		{
			Name:    "import",
			Summary: "add the serial numbers of managed Macs from an MDM's CSV export",
			Args:    "FILE",
			Doc: "Reads FILE, a CSV export of your MDM's devices, and adds its serial numbers to the list of managed " +
				"Macs that '--enroll-approval known' enrolls without approval. It finds the serial number column " +
				"by its header: \"Serial Number\" (Jamf Pro's computer search export, Kandji's device list), " +
				"\"Serial number\" (Intune's device export), \"hardware_serial\" (Fleet's hosts report), or a " +
				"file of serial numbers without a header (Intune's corporate identifiers). Rows without a serial " +
				"are skipped; any row that is not what an export holds refuses the whole file, naming the line. " +
				"Importing again adds new serials and updates the others.\n\n" +
				"  clearance-verifier devices import --data-dir /var/lib/clearance \\\n    jamf-computers.csv",
			Footer: config.SharedFooter,
			Flags: func(fs *cli.FlagSet) cli.Action {
				af := a.bindAdmin(fs)
				fs.Group("Import")
				source := fs.String("source", "", "what the list is, kept with each serial (default: the file's name)")
				dryRun := fs.Bool("dry-run", false, "read and check the file, print what it holds, import nothing")
				return func(ctx context.Context, args []string) error {
					if err := cli.ExactArgs(args, 1, "the CSV file"); err != nil {
						return err
					}
					es, sum, err := readExport(args[0])
					if err != nil {
						return fmt.Errorf("%w; nothing was imported", err)
					}
					src := *source
					if src == "" {
						src = filepath.Base(args[0])
					}
					if err := knownlist.ValidName(src); err != nil || len(src) > 200 {
						return cli.Usagef("--source must be at most 200 characters without control characters")
					}
					fmt.Fprintf(a.stderr, "%s: %d serial numbers (%s, column %q; %d rows, %d without a serial, %d repeated)\n",
						args[0], len(es), sum.Format, orDash(sum.SerialColumn), sum.Rows, sum.Blank, sum.Duplicates)
					if *dryRun {
						for _, e := range es {
							fmt.Fprintf(a.stdout, "%s\t%s\n", e.Serial, clean(e.Name))
						}
						return nil
					}
					return a.withAdmin(ctx, af, func(c *adminConn) error {
						var added, updated uint32
						for _, req := range importBatches(es, src) {
							start := int(added + updated)
							resp, err := call(c, c.client.ImportKnownDevices, req)
							if err != nil {
								if start > 0 {
									return fmt.Errorf("%w (the first %d serial numbers were imported; import the file again)", err, start)
								}
								return err
							}
							added += resp.GetAdded()
							updated += resp.GetUpdated()
						}
						fmt.Fprintf(a.stdout, "imported %d serial numbers: %d new, %d already listed\n", len(es), added, updated)
						return nil
					})
				}
			},
		},
	}
}

// maxImportBytes bounds one ImportKnownDevices call's message: the admin
// API is reached without a device certificate, and such connections take
// messages of at most grpcconn.UnauthenticatedMaxMessage (room is left for
// the framing).
const maxImportBytes = grpcconn.UnauthenticatedMaxMessage - 1<<10

// importBatches splits a list into calls of at most admin.MaxImport devices
// and maxImportBytes each.
func importBatches(es []knownlist.Entry, src string) []*adminv1.ImportKnownDevicesRequest {
	var out []*adminv1.ImportKnownDevicesRequest
	var req *adminv1.ImportKnownDevicesRequest
	size := 0
	for _, e := range es {
		d := &adminv1.KnownDevice{SerialNumber: e.Serial, Name: e.Name}
		n := protowire.SizeTag(1) + protowire.SizeBytes(proto.Size(d))
		if req == nil || len(req.Devices) >= admin.MaxImport || size+n > maxImportBytes {
			req = &adminv1.ImportKnownDevicesRequest{Source: src}
			out = append(out, req)
			size = proto.Size(req)
		}
		req.Devices = append(req.Devices, d)
		size += n
	}
	return out
}

func renderPending(w io.Writer, ps []*adminv1.PendingEnrollment, now time.Time) error {
	tw := newTable(w, "REQUEST\tREASON\tDEVICE\tHOSTNAME\tSERIAL\tHARDWARE UUID\tFROM\tFIRST ASKED\tLAST ASKED\tKEY")
	for _, p := range ps {
		f := p.GetFacts()
		// The device approval would change, as it is now (storage keeps
		// waiting requests current), with the start of the key it has.
		device := p.GetDeviceId()
		if device == "" {
			device = "(new" + heldBy(p) + ")"
		} else if fp := p.GetDeviceKeyFingerprint(); fp != "" {
			device += " key " + shortFingerprint(fp)
		}
		if p.GetDeviceRevokedAt() != nil {
			// Approving brings a revoked Mac back: the approver must see so.
			device += " REVOKED " + ago(p.GetDeviceRevokedAt().AsTime(), true, now)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", p.GetRequestId(), p.GetReason(), device,
			orDash(markLookAlike(clean(f.GetHostname()))), serialCell(f.GetSerialNumber()), clean(f.GetHardwareUuid()), clean(p.GetSource()),
			ago(p.GetRequestedAt().AsTime(), p.GetRequestedAt() != nil, now), ago(p.GetLastRequestAt().AsTime(), p.GetLastRequestAt() != nil, now),
			shortFingerprint(p.GetKeyFingerprint()))
	}
	return tw.Flush()
}

// heldByShown bounds the devices the DEVICE column names as holding a
// request's serial; --json lists all the API returns.
const heldByShown = 3

// heldBy names the enrolled devices that have a new device's serial
// number, as "; serial held by ID (HOST) revoked, …": the device whose
// serial the request claims, for the approver to compare it with.
func heldBy(p *adminv1.PendingEnrollment) string {
	hs := p.GetSerialHolders()
	if len(hs) == 0 {
		return ""
	}
	shown := hs[:min(len(hs), heldByShown)]
	names := make([]string, 0, len(shown)+1)
	for _, h := range shown {
		name := clean(h.GetDeviceId())
		if host := markLookAlike(clean(h.GetHostname())); host != "" {
			name += " (" + host + ")"
		}
		if h.GetRevoked() {
			name += " revoked"
		}
		names = append(names, name)
	}
	if more := int(p.GetSerialHolderCount()) - len(shown); more > 0 {
		names = append(names, fmt.Sprintf("%d more", more))
	}
	return "; serial held by " + strings.Join(names, ", ")
}

// serialCell shows a serial number as the known list and the Cloudflare
// match compare it: one that is not exactly letters and digits (a space
// at either end, punctuation, a look-alike letter) matches neither, and is
// shown in quotes so that it does not pass for the listed serial it
// resembles. No serial (osquery returned none) shows as -, which a
// serial "-" is not: it is quoted.
func serialCell(s string) string {
	switch {
	case s == "":
		return "-"
	case storage.CanonicalSerial(s) != "":
		return clean(s)
	}
	return `"` + clean(s) + `"`
}

// serialPhrase is a serial number in a sentence: "serial C02…", or "no
// serial".
func serialPhrase(s string) string {
	if s == "" {
		return "no serial"
	}
	return "serial " + serialCell(s)
}

// hostPhrase is a hostname in a sentence, or "no hostname".
func hostPhrase(s string) string {
	if s == "" {
		return "no hostname"
	}
	return markLookAlike(clean(s))
}

// shortFingerprint is enough of a key fingerprint to compare by eye with
// `clearance-agent status`.
func shortFingerprint(fp string) string {
	if len(fp) <= 16 {
		return fp
	}
	return fp[:16]
}
