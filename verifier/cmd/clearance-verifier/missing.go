package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"time"

	"github.com/clearance/clearance/pkg/cli"
	"github.com/clearance/clearance/pkg/printable"
	adminv1 "github.com/clearance/clearance/proto/gen/clearance/admin/v1"
	"github.com/clearance/clearance/verifier/config"
	"github.com/clearance/clearance/verifier/knownlist"
	"github.com/clearance/clearance/verifier/storage"
)

// missingCmd is `devices missing`: the Macs an MDM manages that the
// verifier does not hear from.
func (a *app) missingCmd() *cli.Command {
	return &cli.Command{
		Name:    "missing",
		Summary: "the Macs of an MDM's export that have not enrolled, or do not report",
		Args:    "FILE",
		Doc: "Reads FILE, a CSV export of your MDM's devices (read as 'devices import' reads it: Jamf Pro, " +
			"Kandji, Intune or Fleet, or one serial number a line), and lists each Mac of it the verifier does " +
			"not hear from, by its serial number: not enrolled (no device has that serial: the package or the " +
			"agent profile has not reached it, or its agent is refused; 'clearance-agent status' on it says why), " +
			"waiting for approval (see 'devices pending'), revoked, or not reporting (enrolled, but no report " +
			"for --silent-for, or none ever). Macs that report are left out; the count of each is on standard " +
			"error. Nothing is changed.\n\n" +
			"  clearance-verifier devices missing --data-dir /var/lib/clearance \\\n    jamf-computers.csv",
		Footer: config.SharedFooter,
		Flags: func(fs *cli.FlagSet) cli.Action {
			af := a.bindAdmin(fs)
			fs.Group("Missing")
			silent := fs.Duration("silent-for", 24*time.Hour, "an enrolled Mac whose latest report is older than this `duration` is listed as not reporting")
			fs.Group("Output")
			asJSON := fs.Bool("json", false, "print the Macs as a JSON array of {serial, name, state, deviceId, requestId, lastReportAt}")
			wide := fs.Bool("wide", false, "full device ids and nothing shortened, whatever the terminal's width")
			return func(ctx context.Context, args []string) error {
				if err := cli.ExactArgs(args, 1, "the CSV file"); err != nil {
					return err
				}
				if *silent <= 0 {
					return cli.Usagef("--silent-for must be positive")
				}
				es, sum, err := readExport(args[0])
				if err != nil {
					return err
				}
				fmt.Fprintf(a.stderr, "%s: %d serial numbers (%s, column %q)\n", args[0], len(es), sum.Format, orDash(sum.SerialColumn))
				return a.withAdmin(ctx, af, func(c *adminConn) error {
					devs, err := c.listDevices()
					if err != nil {
						return err
					}
					pending, err := c.listPending()
					if err != nil {
						return err
					}
					ms, counts := missingMacs(es, devs, pending, a.now(), *silent)
					fmt.Fprintf(a.stderr, "%d reporting, %d not enrolled, %d waiting for approval, %d revoked, %d not reporting\n",
						counts[missingReporting], counts[missingNotEnrolled], counts[missingPending], counts[missingRevoked], counts[missingSilent])
					if *asJSON {
						b, err := json.MarshalIndent(ms, "", "  ")
						if err != nil {
							return err
						}
						_, err = fmt.Fprintf(a.stdout, "%s\n", printable.JSON(b))
						return err
					}
					if len(ms) == 0 {
						fmt.Fprintln(a.stderr, "every Mac of the export reports")
						return nil
					}
					return renderMissing(a.stdout, ms, a.now(), a.tableWidth(*wide))
				})
			}
		},
	}
}

// readExport reads an MDM's export of its devices, or a list of serial
// numbers, as 'devices import' reads it (knownlist), every row checked. The
// error names the file.
func readExport(path string) ([]knownlist.Entry, knownlist.Summary, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, knownlist.Summary{}, err
	}
	defer f.Close()
	es, sum, err := knownlist.Parse(f)
	if err != nil {
		return nil, sum, fmt.Errorf("%s: %w", path, err)
	}
	return es, sum, nil
}

// The states of a Mac of the export, as `devices missing` says them.
const (
	missingReporting   = "reporting"
	missingNotEnrolled = "not enrolled"
	missingPending     = "waiting for approval"
	missingRevoked     = "revoked"
	missingSilent      = "not reporting"
)

// missingMac is one Mac of the export the verifier does not hear from.
type missingMac struct {
	Serial       string     `json:"serial"`
	Name         string     `json:"name,omitempty"`
	State        string     `json:"state"`
	DeviceID     string     `json:"deviceId,omitempty"`
	RequestID    string     `json:"requestId,omitempty"`
	LastReportAt *time.Time `json:"lastReportAt,omitempty"`
}

// missingMacs sorts each Mac of the export by what the verifier knows of
// its serial number: an unrevoked device that reported within silent is
// reporting (left out of the list); else one that never did, or not
// since, is not reporting; else a waiting request is waiting for
// approval; else a revoked device is revoked; else it is not enrolled.
// counts has every state's number, reporting included.
func missingMacs(es []knownlist.Entry, devs []*adminv1.Device, pending []*adminv1.PendingEnrollment, now time.Time, silent time.Duration) ([]missingMac, map[string]int) {
	bySerial := map[string][]*adminv1.Device{}
	for _, d := range devs {
		if s := storage.CanonicalSerial(d.GetFacts().GetSerialNumber()); s != "" {
			bySerial[s] = append(bySerial[s], d)
		}
	}
	waiting := map[string]*adminv1.PendingEnrollment{}
	for _, p := range pending {
		if s := storage.CanonicalSerial(p.GetFacts().GetSerialNumber()); s != "" && waiting[s] == nil {
			waiting[s] = p
		}
	}
	counts := map[string]int{}
	var out []missingMac
	for _, e := range es {
		m := missingMac{Serial: e.Serial, Name: e.Name, State: missingNotEnrolled}
		ds := bySerial[e.Serial]
		// The device that reported last speaks for the serial: a Mac
		// enrolled again under a new id leaves its old one behind.
		active := slices.DeleteFunc(slices.Clone(ds), func(d *adminv1.Device) bool {
			return d.GetStatus() == adminv1.DeviceStatus_DEVICE_STATUS_REVOKED
		})
		slices.SortFunc(active, func(a, b *adminv1.Device) int {
			return b.GetLastReportAt().AsTime().Compare(a.GetLastReportAt().AsTime())
		})
		switch {
		case len(active) > 0:
			d := active[0]
			m.DeviceID = d.GetDeviceId()
			m.State = missingSilent
			if at := d.GetLastReportAt(); at != nil {
				t := at.AsTime()
				m.LastReportAt = &t
				if now.Sub(t) <= silent {
					m.State = missingReporting
				}
			}
		case waiting[e.Serial] != nil:
			m.State, m.RequestID = missingPending, waiting[e.Serial].GetRequestId()
		case len(ds) > 0:
			m.State, m.DeviceID = missingRevoked, ds[0].GetDeviceId()
		}
		counts[m.State]++
		if m.State != missingReporting {
			out = append(out, m)
		}
	}
	return out, counts
}

// renderMissing writes the table of Macs the verifier does not hear from,
// fitted to width (0: no limit).
func renderMissing(w io.Writer, ms []missingMac, now time.Time, width int) error {
	rows := [][]string{{"SERIAL", "NAME", "STATE", "DEVICE", "LAST REPORT"}}
	for _, m := range ms {
		device := shorten(m.DeviceID, width)
		if m.RequestID != "" {
			device = "request " + shorten(m.RequestID, width)
		}
		last := "-"
		if m.LastReportAt != nil {
			last = ago(*m.LastReportAt, true, now)
		} else if m.State == missingSilent {
			last = "never"
		}
		rows = append(rows, []string{m.Serial, orDash(markLookAlike(clean(m.Name))), m.State, orDash(device), last})
	}
	return writeTable(w, rows, width, []shrink{{col: 1, floor: 8}})
}
