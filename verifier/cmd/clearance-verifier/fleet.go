package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"golang.org/x/term"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/clearance/clearance/pkg/cli"
	"github.com/clearance/clearance/pkg/printable"
	adminv1 "github.com/clearance/clearance/proto/gen/clearance/admin/v1"
	"github.com/clearance/clearance/verifier/config"
	"github.com/clearance/clearance/verifier/decision"
	"github.com/clearance/clearance/verifier/rollout"
	"github.com/clearance/clearance/verifier/storage"
)

// shortID is how many characters of a device id the tables show, as a
// prefix that --device also accepts.
const shortID = 8

func (a *app) devicesCmd() *cli.Command {
	return &cli.Command{
		Name:    "devices",
		Summary: "the fleet as a table: who is connected, passing, failing and why",
		Doc: "Lists every enrolled device as the running verifier sees it: host name, serial number, when its " +
			"agent last reported, whether it is connected now, how many policies pass and fail, and the " +
			"required policies it fails (each stands in the way of its sign-ins as its rollout mode says; 'explain' " +
			"tells for one Mac), or \"stale report\" when its latest report is too old to sign in with. It asks the verifier's admin API with the " +
			"data dir's ca.pem and admin.token.\n\n" +
			"  clearance-verifier devices --data-dir /var/lib/clearance --failing",
		Footer:   config.SharedFooter,
		Commands: append(append(a.approvalCmds(), a.assignCmds()...), a.expectReinstallCmd(), a.missingCmd()),
		Flags: func(fs *cli.FlagSet) cli.Action {
			af := a.bindAdmin(fs)
			fs.Group("Filters")
			failing := fs.Bool("failing", false, "only devices that fail a required policy, or whose latest report is missing or older than the verifier's --max-posture-age")
			offline := fs.Bool("offline", false, "only devices whose agent is not connected")
			policy := fs.String("policy", "", "only devices whose latest report does not pass the policy with this `id` (required or not)")
			serial := fs.String("serial", "", "only the devices with this `serial` number (any case)")
			host := fs.String("host", "", "only the devices whose host name is or starts with this `name` (A-Z in any case)")
			user := fs.String("user", "", "only the Macs this Okta `username` (or user id) uses: those assigned to them or whose local account --user-binding-rule maps to them (with SCIM or the Okta API sync), and those their latest 1,000 sign-ins came from")
			failingFor := fs.Duration("failing-for", 0, "only devices out of compliance without a break for at least this `duration` (e.g. 72h; the wide table's FOR column)")
			settingsRejected := fs.Bool("settings-rejected", false, "only devices whose agent rejected the settings it was given (a profile it cannot use) and runs on others; the table then says when and why")
			revoked := fs.Bool("revoked", false, "keep revoked Macs in --failing, --failing-for, --offline, --policy and --settings-rejected, which leave them out: they can sign in to nothing")
			fs.Group("Output")
			asJSON := fs.Bool("json", false, "print the devices as JSON (the admin API's Device messages)")
			wide := fs.Bool("wide", false, "full device ids and nothing shortened, whatever the terminal's width")
			return func(ctx context.Context, _ []string) error {
				if err := fs.NotEmpty("serial", "host", "user"); err != nil {
					return err
				}
				if *failingFor < 0 {
					return cli.Usagef("--failing-for %s is negative", *failingFor)
				}
				// Fleet health is about Macs that can still sign in.
				health := *failing || *offline || *policy != "" || fs.Given("failing-for") || *settingsRejected
				if *revoked && !health {
					return cli.Usagef("--revoked keeps revoked Macs in --failing, --failing-for, --offline, --policy or --settings-rejected; without one of those every Mac is listed, revoked ones too")
				}
				// The verifier filters, by the rule ListDevices documents:
				// the CLI and grpcurl get the same answer.
				req := &adminv1.ListDevicesRequest{SerialNumber: *serial, HostName: *host, User: *user,
					Failing: *failing, Offline: *offline, PolicyId: *policy, SettingsRejected: *settingsRejected, IncludeRevoked: *revoked}
				if fs.Given("failing-for") {
					req.FailingFor = durationpb.New(*failingFor)
				}
				return a.withAdmin(ctx, af, func(c *adminConn) error {
					if *policy != "" {
						if err := c.checkPolicyID(*policy); err != nil {
							return err
						}
					}
					devs, err := c.listDevicesWhere(req)
					if err != nil {
						return err
					}
					if *settingsRejected {
						if err := onlySettingsRejected(devs); err != nil {
							return err
						}
					}
					// A name nobody has lists nothing: only then is it
					// worth asking whether the name is known, since a typo
					// otherwise reads as a stranger with no Mac.
					if *user != "" && len(devs) == 0 {
						if err := a.noteUnknownUser(c, *user, "no Mac is bound to that username or signed in from by it"); err != nil {
							return err
						}
					}
					return a.printList(*asJSON, &adminv1.ListDevicesResponse{Devices: devs}, len(devs), "no devices match", func() error {
						if *settingsRejected {
							return renderRejectedSettings(a.stdout, devs, a.now(), a.tableWidth(*wide))
						}
						if err := renderDevices(a.stdout, devs, a.now(), a.tableWidth(*wide)); err != nil {
							return err
						}
						noteRejectedSettings(a.stderr, devs)
						return nil
					})
				})
			}
		},
	}
}

// onlySettingsRejected refuses a --settings-rejected answer that lists a
// Mac whose agent runs on its settings: a verifier older than the filter
// ignores it and lists every Mac, which must be said, not shown as every
// Mac rejecting its settings.
func onlySettingsRejected(devs []*adminv1.Device) error {
	for _, d := range devs {
		if d.GetSettingsRejection() == nil {
			return errors.New("this verifier does not know the settings_rejected filter (it is older than this command): it listed a device whose agent runs on its settings; upgrade the verifier")
		}
	}
	return nil
}

// timeHeading is the TIME column's heading: the zone its times are in,
// and their year when they share one (the column shows month and day),
// short enough not to widen the column.
func timeHeading(ds []*adminv1.Decision, loc *time.Location) string {
	if len(ds) == 0 {
		return "TIME"
	}
	first := ds[0].GetAt().AsTime().In(loc)
	zone, _ := first.Zone()
	for _, d := range ds {
		if d.GetAt().AsTime().In(loc).Year() != first.Year() {
			return "TIME " + zone
		}
	}
	return fmt.Sprintf("TIME %s %d", zone, first.Year())
}

// checkPolicyID refuses an id that is not a policy in force on the
// verifier c asks: "no devices match" would read as "every Mac passes
// it", the answer to a typo.
func (c *adminConn) checkPolicyID(id string) error {
	resp, err := call(c, c.client.ListPolicies, &adminv1.ListPoliciesRequest{})
	if err != nil {
		return err
	}
	var ids []string
	for _, p := range resp.GetPolicySet().GetPolicies() {
		if p.GetId() == id {
			return nil
		}
		ids = append(ids, p.GetId())
	}
	hint := "the policies in force are " + strings.Join(ids, ", ")
	if s := cli.Suggest(id, ids); s != "" {
		hint = "did you mean " + s + "?"
	}
	return cli.Usagef("--policy %q is not a policy in force on %s: %s", clean(id), c.addr, hint)
}

// tableWidth is the width tables are fitted to: 0 (no limit) with --wide,
// else the terminal's width when stdout is one, else $COLUMNS when it is a
// number (output piped on), else 80. Within it, a table's last column
// (the reason, the detail) keeps what the others leave, so a wider
// terminal shows more of it.
func (a *app) tableWidth(wide bool) int {
	if wide {
		return 0
	}
	if a.termWidth != nil {
		if n := a.termWidth(); n > 0 {
			// Too narrow for any table: fitted to 40 and wrapped by
			// the terminal, rather than cut to nothing.
			return min(max(n, minTableWidth), maxTableWidth)
		}
	}
	if n, err := strconv.Atoi(a.getenv("COLUMNS")); err == nil && n >= minTableWidth && n <= maxTableWidth {
		return n
	}
	return cli.Width
}

// The widths a table is fitted to, whatever the terminal says.
const (
	minTableWidth = 40
	maxTableWidth = 1000
)

// stdoutWidth is the process's stdout's width in columns when it is a
// terminal, else 0.
func stdoutWidth() int {
	fd := int(os.Stdout.Fd())
	if !term.IsTerminal(fd) {
		return 0
	}
	w, _, err := term.GetSize(fd)
	if err != nil {
		return 0
	}
	return w
}

// printJSON writes m as the admin API's JSON, every scalar field included:
// a denied decision says "allow": false, an offline device "connected":
// false, where protojson's default leaves them out (grpcurl's too,
// without -emit-defaults), and a filter on the field would miss them.
func printJSON(w io.Writer, m proto.Message) error {
	b, err := protojson.MarshalOptions{Multiline: true, Indent: "  ", EmitDefaultValues: true}.Marshal(m)
	if err != nil {
		return err
	}
	// protojson passes C1 controls and bidirectional overrides through
	// raw; escaped, the JSON means the same and a terminal shows it inert.
	_, err = fmt.Fprintf(w, "%s\n", printable.JSON(b))
	return err
}

// renderDevices writes the devices table, fitted to width (0: no limit).
func renderDevices(w io.Writer, devs []*adminv1.Device, now time.Time, width int) error {
	// The wide table also says who used each Mac, which agent version it
	// runs, and whether its agent rejected the settings it was given;
	// 80 columns have no room.
	wide := width == 0
	head := []string{"DEVICE", "HOST", "SERIAL", "LAST SEEN", "ONLINE", "PASS/FAIL", "FAILING"}
	if wide {
		head = slices.Insert(head, 2, "USER")
		head = slices.Insert(head, 7, "FOR")
		head = slices.Insert(head, 4, "AGENT")
		head = slices.Insert(head, 9, "SETTINGS")
	}
	rows := [][]string{head}
	for _, d := range devs {
		s := d.GetSummary()
		passFail := fmt.Sprintf("%d/%d", s.GetPass(), s.GetFail()+s.GetError()+s.GetMissing())
		failing := failingPhrase(s)
		switch {
		case d.GetLastReportAt() == nil:
			passFail, failing = "-", "no report yet"
		case d.GetState() == "stale":
			// Compliant or not, its sign-ins wait for a fresh report.
			failing = strings.TrimSuffix("stale report "+failing, " ")
		}
		// Said before the name, where a narrow table does not cut it.
		host := markLookAlike(d.GetFacts().GetHostname())
		row := []string{
			shorten(d.GetDeviceId(), width), orDash(host), serialCell(d.GetFacts().GetSerialNumber()),
			ago(d.GetLastSeen().AsTime(), d.GetLastSeen() != nil, now), onlineCell(d), passFail, failing,
		}
		if wide {
			row = slices.Insert(row, 2, userCell(d.GetLocalUser()))
			row = slices.Insert(row, 7, lasted(sinceOf(s), now))
			row = slices.Insert(row, 4, orDash(clean(d.GetFacts().GetAgentVersion())))
			settings := "-"
			if sr := d.GetSettingsRejection(); sr != nil {
				// When and why: --settings-rejected.
				settings = "rejected " + lasted(sr.GetAt(), now)
			}
			row = slices.Insert(row, 9, settings)
		}
		rows = append(rows, row)
	}
	// Host names may be long: they give way first, down to 10 characters.
	return writeTable(w, rows, width, []shrink{{col: 1, floor: 10}})
}

// renderRejectedSettings writes the table of `devices --settings-rejected`:
// the Macs that did not take the settings they were given, with when and
// why, the agent's own words, cut to fit width (0: no limit).
func renderRejectedSettings(w io.Writer, devs []*adminv1.Device, now time.Time, width int) error {
	rows := [][]string{{"DEVICE", "HOST", "SERIAL", "LAST SEEN", "ONLINE", "SETTINGS REJECTED"}}
	for _, d := range devs {
		sr := d.GetSettingsRejection()
		rows = append(rows, []string{
			shorten(d.GetDeviceId(), width), orDash(markLookAlike(d.GetFacts().GetHostname())), serialCell(d.GetFacts().GetSerialNumber()),
			ago(d.GetLastSeen().AsTime(), d.GetLastSeen() != nil, now), onlineCell(d),
			ago(sr.GetAt().AsTime(), sr != nil, now) + ": " + sr.GetReason(),
		})
	}
	return writeTableCut(w, rows, width, []shrink{{col: 1, floor: 10}})
}

// noteRejectedSettings says, after a devices table, how many of its Macs
// did not take the settings they were given, which the 80-column table has
// no room to mark, and where to read which and why.
func noteRejectedSettings(w io.Writer, devs []*adminv1.Device) {
	n := 0
	for _, d := range devs {
		if d.GetSettingsRejection() != nil {
			n++
		}
	}
	switch n {
	case 0:
	case 1:
		fmt.Fprintln(w, "1 of these Macs did not take the settings it was given: 'devices --settings-rejected' says which and why")
	default:
		fmt.Fprintf(w, "%d of these Macs did not take the settings they were given: 'devices --settings-rejected' says which and why\n", n)
	}
}

// onlineCell is the ONLINE column: "revoked", else whether d's agent is
// connected now.
func onlineCell(d *adminv1.Device) string {
	switch {
	case d.GetStatus() == adminv1.DeviceStatus_DEVICE_STATUS_REVOKED:
		return "revoked"
	case d.GetConnected():
		return "yes"
	}
	return "no"
}

// sinceOf is since when the summary's Mac has been as it is: failing, or
// compliant; nil when not recorded.
func sinceOf(s *adminv1.PostureSummary) *timestamppb.Timestamp {
	if s.GetCompliant() {
		return s.GetCompliantSince()
	}
	return s.GetFailingSince()
}

// lasted says how long before now since was, in the largest whole unit
// ("3d"), or "-" when since is not recorded.
func lasted(since *timestamppb.Timestamp, now time.Time) string {
	if since == nil {
		return "-"
	}
	return strings.TrimSuffix(ago(since.AsTime(), true, now), " ago")
}

// failingPhrase lists a summary's failing policies, each that could not
// be checked marked "(error)" and each with no result "(no result)": those
// are faults on the Mac or in the policy, not a setting the person changes.
// Then those scoped to groups none of the Mac's people are in, marked "(not
// its people's)": they stop none of its sign-ins.
func failingPhrase(s *adminv1.PostureSummary) string {
	ids := make([]string, 0, len(s.GetFailing())+len(s.GetFailingOutOfScope()))
	for _, id := range s.GetFailing() {
		switch {
		case slices.Contains(s.GetFailingError(), id):
			id += " (error)"
		case slices.Contains(s.GetFailingMissing(), id):
			id += " (no result)"
		}
		ids = append(ids, id)
	}
	for _, id := range s.GetFailingOutOfScope() {
		ids = append(ids, id+" (not its people's)")
	}
	return strings.Join(ids, ",")
}

func shorten(id string, width int) string {
	if width == 0 || len(id) <= shortID {
		return id
	}
	return id[:shortID]
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// ago says how long before now t was, in the largest whole unit.
func ago(t time.Time, set bool, now time.Time) string {
	if !set {
		return "never"
	}
	d := now.Sub(t)
	switch {
	case d < time.Second:
		return "just now"
	case d < time.Minute:
		return fmt.Sprintf("%ds ago", int(d/time.Second))
	case d < time.Hour:
		return fmt.Sprintf("%dm ago", int(d/time.Minute))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh ago", int(d/time.Hour))
	}
	return fmt.Sprintf("%dd ago", int(d/(24*time.Hour)))
}

// newTable starts a table with its header row (tab-separated columns),
// to be flushed when its rows are written.
func newTable(w io.Writer, header string) *tabwriter.Writer {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, header)
	return tw
}

// shrink lets a column of a table be cut down to floor characters: at its
// end, or with middle in its middle, for names whose end tells them apart
// (alice.sm…mple.com and alice.sm….evil.io, where a cut at the end would
// show both as alice.smith@ex…).
type shrink struct {
	col, floor int
	middle     bool
}

// writeTable writes rows (the first is the header) in columns two spaces
// apart. With a width, the shrinkable columns are cut (with "…") down to
// their floors, then the last column, a list, is shortened to what fits
// ("filevault +2") until a line fits.
func writeTable(w io.Writer, rows [][]string, width int, shrinkable []shrink) error {
	return fitTable(w, rows, width, shrinkable, fitList)
}

// writeTableCut is writeTable for a table whose last column is text: it is
// cut (with "…") to what fits.
func writeTableCut(w io.Writer, rows [][]string, width int, shrinkable []shrink) error {
	return fitTable(w, rows, width, shrinkable, cut)
}

// fitTable writes rows as writeTable says, shortening the last column with
// fitLast.
func fitTable(w io.Writer, rows [][]string, width int, shrinkable []shrink, fitLast func(string, int) string) error {
	for _, r := range rows {
		for i, c := range r {
			r[i] = clean(c)
		}
	}
	if width > 0 {
		cols := len(rows[0])
		widths := make([]int, cols)
		for _, r := range rows {
			for i, c := range r {
				widths[i] = max(widths[i], runeLen(c))
			}
		}
		over := func() int {
			n := 2*(cols-1) - width
			for _, wd := range widths {
				n += wd
			}
			return n
		}
		for _, s := range shrinkable {
			if o := over(); o > 0 && widths[s.col] > s.floor {
				widths[s.col] = max(s.floor, runeLen(rows[0][s.col]), widths[s.col]-o)
			}
		}
		last := cols - 1
		if o := over(); o > 0 {
			widths[last] = max(runeLen(rows[0][last]), widths[last]-o)
		}
		middle := map[int]bool{}
		for _, s := range shrinkable {
			middle[s.col] = s.middle
		}
		for _, r := range rows {
			for i, c := range r {
				switch {
				case i == last:
					r[i] = fitLast(c, widths[i])
				case middle[i]:
					r[i] = cutMiddle(c, widths[i])
				default:
					r[i] = cut(c, widths[i])
				}
			}
		}
	}
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	// An empty last cell leaves padding behind.
	for _, l := range strings.SplitAfter(b.String(), "\n") {
		if l == "" {
			continue
		}
		if _, err := io.WriteString(w, strings.TrimRight(l, " \n")+"\n"); err != nil {
			return err
		}
	}
	return nil
}

// fitList shortens "a,b,c" (or "reason: a,b,c") to at most n characters by
// naming as many items as fit and counting the rest: "a +2".
func fitList(s string, n int) string {
	if runeLen(s) <= n {
		return s
	}
	prefix, list := "", s
	if i := strings.Index(s, ": "); i >= 0 {
		prefix, list = s[:i+2], s[i+2:]
	}
	items := strings.Split(list, ",")
	if len(items) < 2 {
		return cut(s, n)
	}
	for k := len(items) - 1; k >= 1; k-- {
		out := prefix + strings.Join(items[:k], ",") + fmt.Sprintf(" +%d", len(items)-k)
		if runeLen(out) <= n {
			return out
		}
	}
	more := fmt.Sprintf(" +%d", len(items)-1)
	if n > len(more)+1 {
		return cut(prefix+items[0], n-len(more)) + more
	}
	return cut(s, n)
}

// clean keeps a cell on one line, out of tabwriter's way and harmless to
// the terminal: what devices report (host names, serial numbers) is outside
// input, and a C1 control or a bidirectional override in it would act on the
// admin's terminal or reorder the line. Such characters are shown escaped.
func clean(s string) string { return printable.Line(s) }

func runeLen(s string) int { return len([]rune(s)) }

// cutMiddle is s cut to n characters in its middle: its start and its
// end, with "…" between. A mark that leads it ("(not ASCII) ",
// "(look-alike) ") is kept whole, as a cut at the end keeps it.
func cutMiddle(s string, n int) string {
	mark := ""
	for _, m := range []string{"(not ASCII) ", "(look-alike) "} {
		if strings.HasPrefix(s, m) {
			mark, s = m, s[len(m):]
		}
	}
	r, m := []rune(s), runeLen(mark)
	if m+len(r) <= n || n-m <= 2 {
		return cut(mark+s, n)
	}
	n -= m
	head := n / 2
	tail := n - 1 - head
	return mark + string(r[:head]) + "…" + string(r[len(r)-tail:])
}

func cut(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	if n <= 1 {
		return string(r[:n])
	}
	return string(r[:n-1]) + "…"
}

func (a *app) decisionsCmd() *cli.Command {
	return &cli.Command{
		Name:    "decisions",
		Summary: "recent sign-ins: who, from which device, let in or not, and why",
		Doc: "Lists recent sign-in decisions from the verifier's decision log, newest first: when, the Okta " +
			"username, the device, whether the user was let in, and the reason with the policies that " +
			"failed. It asks the running verifier's admin API with the data dir's ca.pem and admin.token.\n\n" +
			"  clearance-verifier decisions --data-dir /var/lib/clearance --denied \\\n    --user alice@example.com",
		Footer: config.SharedFooter,
		Flags: func(fs *cli.FlagSet) cli.Action {
			af := a.bindAdmin(fs)
			fs.Group("Filters")
			user := fs.String("user", "", "only sign-ins by this Okta `username`")
			device := fs.String("device", "", "only sign-ins from this device (`id`, or the start of one as the tables show it)")
			claimed := fs.String("claimed", "", "only refused proofs of presence that named this device (`id`, or the start of an enrolled one's) but were not signed by its key: who tried to pass for it")
			denied := fs.Bool("denied", false, "only sign-ins that were refused")
			notBound := fs.Bool("not-bound", false, "only sign-ins by someone the Mac is not bound to (not assigned to them, no account of theirs): let in under --user-binding warn, or refused under enforce")
			var ref int64
			fs.Func("reference", "only the decision with this `id`: the Reference the person's page showed (and the log line sso_decision's decision_id)", func(v string) error {
				n, err := parseReference(v)
				ref = n
				return err
			})
			mode := fs.String("mode", "", "only decisions with these comma-separated enforcement `modes`: monitor (would deny), warn, warned, bypassed, exempt, enforce")
			origin := fs.String("origin", "", "only Okta's sign-ins (okta) or Cloudflare's evaluations (cloudflare); default both")
			win := bindWindow(fs, "decisions")
			limit := fs.Int("limit", 20, "at most this many decisions (up to 1000)")
			all := fs.Bool("all", false, "every decision that matches, however many (asked for 1000 at a time), not at most --limit")
			fs.Group("Output")
			asJSON := fs.Bool("json", false, "print the decisions as JSON (the admin API's Decision messages)")
			wide := fs.Bool("wide", false, "full device ids and nothing shortened, whatever the terminal's width")
			return func(ctx context.Context, _ []string) error {
				if err := fs.NotEmpty("user", "device", "claimed", "mode", "origin"); err != nil {
					return err
				}
				if *limit < 1 || *limit > 1000 {
					return cli.Usagef("--limit must be from 1 to 1000")
				}
				if *all {
					*limit = 1000
				}
				since, until, err := win.times(a.now(), time.Local)
				if err != nil {
					return err
				}
				var modes []string
				if *mode != "" {
					if modes, err = parseModes(*mode); err != nil {
						return err
					}
				}
				from := map[string]adminv1.DecisionOrigin{
					"":           adminv1.DecisionOrigin_DECISION_ORIGIN_UNSPECIFIED,
					"okta":       adminv1.DecisionOrigin_DECISION_ORIGIN_OKTA,
					"cloudflare": adminv1.DecisionOrigin_DECISION_ORIGIN_CLOUDFLARE,
				}[*origin]
				if from == 0 && *origin != "" {
					return cli.Usagef("--origin %q: give okta or cloudflare", *origin)
				}
				return a.withAdmin(ctx, af, func(c *adminConn) error {
					req := &adminv1.ListDecisionsRequest{Username: *user, PageSize: int32(*limit), Since: since, Until: until, Id: ref}
					if *device != "" {
						var err error
						if req.DeviceId, err = c.resolveDevice(*device); err != nil {
							return err
						}
					}
					if *claimed != "" {
						// The claim may name a device that is not enrolled:
						// a start is expanded only when it names one.
						req.ClaimedDeviceId = *claimed
						if id, err := c.resolveDevice(*claimed); err == nil {
							req.ClaimedDeviceId = id
						}
					}
					if *denied {
						req.Result = adminv1.DecisionResult_DECISION_RESULT_DENY
					}
					req.UserNotBound = *notBound
					req.Modes = modes
					req.Origin = from
					ds, more, err := gather(*all, func(token string) ([]*adminv1.Decision, string, error) {
						req.PageToken = token
						resp, err := call(c, c.client.ListDecisions, req)
						return resp.GetDecisions(), resp.GetNextPageToken(), err
					})
					if err != nil {
						return err
					}
					defer moreMatch(a.stderr, "decisions", more, *all)
					return a.printList(*asJSON, &adminv1.ListDecisionsResponse{Decisions: ds, NextPageToken: more}, len(ds), "no sign-ins match", func() error {
						return renderDecisions(a.stdout, ds, time.Local, a.tableWidth(*wide))
					})
				})
			}
		},
	}
}

// parseModes reads --mode's comma-separated modes, refusing one that is
// not a decision's mode as the other flags' bad values are: a usage error.
func parseModes(v string) ([]string, error) {
	known := make([]string, len(decision.Modes))
	for i, m := range decision.Modes {
		known[i] = string(m)
	}
	var out []string
	for _, m := range strings.Split(v, ",") {
		m = strings.TrimSpace(m)
		if slices.Contains(known, m) {
			out = append(out, m)
			continue
		}
		hint := ""
		if s := cli.Suggest(m, known); s != "" {
			hint = " (did you mean " + s + "?)"
		}
		return nil, cli.Usagef("--mode %q is not a mode%s: give one or more of %s, comma-separated", clean(m), hint, strings.Join(known, ", "))
	}
	return out, nil
}

// parseReference reads the Reference a person's page showed as a
// decision's id. An "r-" reference names a request refused before any
// decision, which only the log has.
func parseReference(v string) (int64, error) {
	v = strings.TrimSpace(v)
	if strings.HasPrefix(strings.ToLower(v), "r-") {
		return 0, fmt.Errorf("%s is a request refused before any decision was made, so it is not in the decision log: search the verifier's log for ref=%s (sso_request_refused, or sso_unrecorded with --log-level debug)", printable.Identifier(v), printable.Identifier(v))
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n <= 0 {
		return 0, errors.New("give the number the page showed as its Reference")
	}
	return n, nil
}

// resolveDevice accepts a full device id as is, or the unique device whose
// id starts with prefix.
func (c *adminConn) resolveDevice(prefix string) (string, error) {
	switch {
	case strings.TrimSpace(prefix) == "":
		// The start of every id: "$ID" of a variable never set.
		return "", cli.Usagef("an empty device id names no Mac (see 'clearance-verifier devices')")
	case len(prefix) == 36:
		// A whole id is looked up alone, not among the whole fleet; one
		// no Mac has is refused as a start no id has is.
		resp, err := c.client.GetDevice(c.ctx, &adminv1.GetDeviceRequest{DeviceId: prefix})
		if status.Code(err) == codes.NotFound {
			return "", fmt.Errorf("no device has the id %q (see 'clearance-verifier devices')", prefix)
		}
		if err != nil {
			return "", c.explain(err)
		}
		return resp.GetDevice().GetDeviceId(), nil
	}
	devs, err := c.listDevices()
	if err != nil {
		return "", err
	}
	var found []string
	for _, d := range devs {
		if strings.HasPrefix(d.GetDeviceId(), strings.ToLower(prefix)) {
			found = append(found, d.GetDeviceId())
		}
	}
	switch len(found) {
	case 0:
		return "", fmt.Errorf("no device id starts with %q (see 'clearance-verifier devices')", prefix)
	case 1:
		return found[0], nil
	}
	return "", fmt.Errorf("%d devices' ids start with %q; give more of it", len(found), prefix)
}

// failedPolicies are the required policies d's Mac did not pass. In a
// denial those that blocked come first, and each that did not block is
// marked with what let it through or how it acts ("firewall (monitor)",
// "screen-lock (warn)"): a denial for filevault alone does not read as one
// for both.
func failedPolicies(d *adminv1.Decision) []string {
	var blocked, others []string
	for _, r := range d.GetResults() {
		if !r.GetRequired() || r.GetStatus() == adminv1.PolicyStatus_POLICY_STATUS_PASS {
			continue
		}
		how := r.GetWaiver()
		if how == "" && r.GetEnforcement() != "enforce" {
			how = r.GetEnforcement()
		}
		if d.GetAllow() || how == "" {
			blocked = append(blocked, r.GetPolicyId())
		} else {
			others = append(others, r.GetPolicyId()+" ("+how+")")
		}
	}
	return append(blocked, others...)
}

// renderDecisions writes the decisions table in loc's time, fitted to width.
func renderDecisions(w io.Writer, ds []*adminv1.Decision, loc *time.Location, width int) error {
	rows := [][]string{{timeHeading(ds, loc), "USER", "DEVICE", "RESULT", "REASON"}}
	for _, d := range ds {
		result := "DENY"
		switch {
		case d.GetSource() == storage.SourceCloudflare:
			// Cloudflare's posture rule decides from the score.
			result = "score " + strconv.Itoa(int(d.GetScore()))
		case d.GetAllow():
			result = "allow"
		}
		// What let a failing Mac in, or offered Continue, reads beside the
		// result, where a narrow table does not cut it off: "allow
		// monitor" is the would-deny report's row.
		if m := d.GetMode(); m != "" && m != "enforce" && d.GetSource() != storage.SourceCloudflare {
			result += " " + m
		}
		reason := d.GetReason()
		if failed := failedPolicies(d); (!d.GetAllow() || d.GetMode() != "") && len(failed) > 0 {
			reason += ": " + strings.Join(failed, ",")
		}
		if m := d.GetMode(); m != "" && m != "enforce" && d.GetSource() == storage.SourceCloudflare {
			reason += " (" + m + ")"
		}
		switch {
		case d.GetClaimedDeviceId() != "":
			// Named by a proof it did not sign: not this row's device.
			reason += " (claimed " + shorten(d.GetClaimedDeviceId(), width) + ")"
		case d.GetBinding() == "hint":
			reason += " (by device hint)"
		case d.GetUserNotBound() && d.GetReason() != "user_not_bound":
			// Let in under --user-binding warn: whose Mac it is, is the
			// question.
			reason += " (not bound)"
		}
		rows = append(rows, []string{
			d.GetAt().AsTime().In(loc).Format("01-02 15:04:05"), personCell(d.GetUsername()),
			orDash(shorten(d.GetDeviceId(), width)), result, reason,
		})
	}
	return writeTable(w, rows, width, []shrink{{col: 1, floor: 16, middle: true}})
}

// userCell shows a Mac's account name, the Mac's own text. macOS short
// names are ASCII letters, digits, '_', '-' and '.': one with any other
// character is marked, and escaped so that it reads as one cell and
// nothing else (backslashes, spaces, blank fillers and invisible
// characters written as escapes).
func userCell(name string) string {
	if name == "" {
		return "-"
	}
	esc := printable.Identifier(strings.ReplaceAll(name, `\`, `\\`))
	esc = strings.ReplaceAll(esc, " ", `\x20`)
	for _, r := range name {
		if r >= utf8.RuneSelf {
			return "(not ASCII) " + esc
		}
	}
	if name == "-" {
		return `\x2d`
	}
	return esc
}

// personCell is an Okta username as the tables show it, as exemption
// listings and the forecast show it (rollout.ShownUsername): escaped,
// quoted when it holds a space, a comma or a quote, and marked when it is
// not ASCII, since one letter can make another person's name
// ("аlice@example.com" with a Cyrillic а). "-" when there is none.
func personCell(name string) string {
	if name == "" {
		return "-"
	}
	return rollout.ShownUsername(name)
}

// markLookAlike is a host name led by "(look-alike)" when it can pass for
// another ("аlice-mbp" with a Cyrillic а): its agent chose it. It escapes
// nothing: give it a cleaned name, or a cell the table escapes. macOS's
// own names ("Alice’s MacBook Pro", with a right single quotation mark)
// are not marked for that mark alone.
func markLookAlike(host string) string {
	if printable.Deceptive(strings.ReplaceAll(host, "\u2019", "'")) {
		return "(look-alike) " + host
	}
	return host
}
