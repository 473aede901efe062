package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/clearance/clearance/pkg/cli"
	"github.com/clearance/clearance/pkg/printable"
	adminv1 "github.com/clearance/clearance/proto/gen/clearance/admin/v1"
	"github.com/clearance/clearance/verifier/config"
	"github.com/clearance/clearance/verifier/rollout"
	"github.com/clearance/clearance/verifier/storage"
)

func (a *app) auditCmd() *cli.Command {
	return &cli.Command{
		Name:    "audit",
		Summary: "the audit log: who changed devices, secrets, exemptions and people, and when",
		Doc: "Lists the verifier's audit log, newest first: when, the actor (admin:<name> for a named admin token, admin-api for the data dir's, cli, agent, scep, " +
			"scim:<token id>, okta-api-sync), the action (device.revoke, exemption.grant, …), the device, the person the change is about " +
			"(the subject; +N when it is about more) and the detail. It asks the running verifier's admin API with the data dir's ca.pem and admin.token.\n\n" +
			"--user answers \"what changed for this person?\": their creation, changes and deletion, the group changes that added or removed them, " +
			"the Macs assigned to them and their exemptions, by their user id or by any username they had (A-Z in any case, other letters " +
			"exactly, so that a look-alike is someone else). A username given to someone else later finds both people: the table adds each " +
			"one's id, and --json names every subject's. Events recorded before the verifier named people name no one.\n\n" +
			"  clearance-verifier audit --data-dir /var/lib/clearance --action exemption. \\\n    --since 7d\n" +
			"  clearance-verifier audit --data-dir /var/lib/clearance \\\n    --user alice@example.com --all",
		Footer: config.SharedFooter,
		Flags: func(fs *cli.FlagSet) cli.Action {
			af := a.bindAdmin(fs)
			fs.Group("Filters")
			device := fs.String("device", "", "only events about this device (`id`, or the start of one as the tables show it)")
			actor := fs.String("actor", "", "only events of this `actor` (admin:<name>, admin-api, cli, agent, scep, scim:<token id>, okta-api-sync, sighup, serve)")
			action := fs.String("action", "", "only events with this `action` (device.revoke), or, ending in \".\", those it starts (device.)")
			user := fs.String("user", "", "only events about this person: their `user` id, or an Okta username they had when the event was recorded")
			win := bindWindow(fs, "events")
			limit := fs.Int("limit", 20, "at most this many events (up to 1000)")
			all := fs.Bool("all", false, "every event that matches, however many (asked for 1000 at a time), not at most --limit")
			fs.Group("Output")
			asJSON := fs.Bool("json", false, "print the events as JSON (the admin API's AuditEvent messages)")
			wide := fs.Bool("wide", false, "full device ids and nothing shortened, whatever the terminal's width")
			return func(ctx context.Context, _ []string) error {
				if err := fs.NotEmpty("device", "actor", "action", "user"); err != nil {
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
				req := &adminv1.ListAuditEventsRequest{Actor: *actor, Action: *action, User: *user, PageSize: int32(*limit), Since: since, Until: until}
				return a.withAdmin(ctx, af, func(c *adminConn) error {
					if *device != "" {
						// As decisions --device: an id no Mac has is an
						// error, not "no events match".
						var err error
						if req.DeviceId, err = c.resolveDevice(*device); err != nil {
							return err
						}
					}
					es, more, err := gather(*all, func(token string) ([]*adminv1.AuditEvent, string, error) {
						req.PageToken = token
						resp, err := call(c, c.client.ListAuditEvents, req)
						return resp.GetEvents(), resp.GetNextPageToken(), err
					})
					if err != nil {
						return err
					}
					defer moreMatch(a.stderr, "events", more, *all)
					none := "no audit events match"
					if *action != "" && !strings.HasSuffix(*action, ".") && !strings.Contains(*action, ".") {
						// "device" matches no action: "device." is the start of some.
						none += fmt.Sprintf(" (--action %q is a whole action; for every action it starts, give %q)", *action, *action+".")
					}
					if len(es) == 0 && *actor != "" {
						hint, err := c.actorHint(*actor)
						if err != nil {
							return err
						}
						if hint != "" {
							// Said with --json too: stdout stays JSON.
							defer fmt.Fprintln(a.stderr, "hint: "+hint)
						}
					}
					if len(es) == 0 && *user != "" {
						defer fmt.Fprintln(a.stderr, "hint: --user finds the events that name a person (by user id, or a username they had when each was recorded); "+
							"events recorded before the verifier named people name no one")
					}
					return a.printList(*asJSON, &adminv1.ListAuditEventsResponse{Events: es, NextPageToken: more}, len(es), none, func() error {
						return renderAudit(a.stdout, es, time.Local, a.tableWidth(*wide))
					})
				})
			}
		},
	}
}

// systemActors are the audit log's actors that are not a token's: each
// is written as is, in lowercase.
var systemActors = []string{"admin-api", "cli", "agent", "scep", "okta-api-sync", "sighup", "serve"}

// actorHint is what to tell someone whose --actor matched no event, or ""
// when it is written as actors are: a person's name without "admin:"
// ("sam@example.com"), or an actor in other capitals than the log's
// ("admin:SAM@example.com", "CLI"). Actors are matched exactly, so the
// forms it might mean are looked up, one event each, and the first the log
// has is named.
func (c *adminConn) actorHint(actor string) (string, error) {
	lower := strings.ToLower(actor)
	system := slices.Contains(systemActors, lower)
	tokenish := !system && !strings.Contains(actor, ":")
	var tries []string
	if tokenish {
		tries = append(tries, "admin:"+actor, "admin:"+lower)
	}
	if lower != actor {
		tries = append(tries, lower)
	}
	for _, try := range slices.Compact(tries) {
		resp, err := call(c, c.client.ListAuditEvents, &adminv1.ListAuditEventsRequest{Actor: try, PageSize: 1})
		if err != nil {
			return "", err
		}
		if len(resp.GetEvents()) > 0 {
			return fmt.Sprintf("the audit log has events of --actor %s (actors are matched exactly, capitals included)", clean(try)), nil
		}
	}
	if tokenish {
		return fmt.Sprintf("actors are written admin:<token name> for a named admin token, e.g. admin:%s; the others are %s and scim:<token id>",
			clean(actor), strings.Join(systemActors, ", ")), nil
	}
	return "", nil
}

// parseSince reads --since: a time back from now (a Go duration, or whole
// days as "7d"), an RFC 3339 time, or a date (midnight in loc).
func parseSince(s string, now time.Time, loc *time.Location) (time.Time, error) {
	if days, ok := strings.CutSuffix(s, "d"); ok {
		if n, err := strconv.Atoi(days); err == nil && n >= 0 && n <= 100*366 {
			return now.AddDate(0, 0, -n), nil
		}
	}
	if d, err := time.ParseDuration(s); err == nil {
		if d < 0 {
			return time.Time{}, fmt.Errorf("give a time back from now without a sign (24h)")
		}
		return now.Add(-d), nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	if t, err := time.ParseInLocation(time.DateOnly, s, loc); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("give a time back from now (90m, 24h, 7d), a date (2026-01-02) or an RFC 3339 time (2026-01-02T15:04:05Z)")
}

// renderAudit writes the audit table in loc's time, fitted to width. The
// detail and the subject are outside text in part (a SCIM username, a
// typed reason): writeTable escapes them, as every cell. The SUBJECT
// column is left out when no event listed is about a person (a device's
// history, an older log), where it would be dashes only.
func renderAudit(w io.Writer, es []*adminv1.AuditEvent, loc *time.Location, width int) error {
	heading := "TIME"
	if len(es) > 0 {
		// The times are in loc: the heading names its zone.
		zone, _ := es[0].GetAt().AsTime().In(loc).Zone()
		heading += " " + zone
	}
	people := slices.ContainsFunc(es, func(e *adminv1.AuditEvent) bool { return len(e.GetSubjects()) > 0 })
	shared := sharedUsernames(es)
	rows := [][]string{{heading, "ACTOR", "ACTION", "DEVICE", "DETAIL"}}
	if people {
		rows[0] = slices.Insert(rows[0], 4, "SUBJECT")
	}
	for _, e := range es {
		row := []string{
			e.GetAt().AsTime().In(loc).Format("2006-01-02 15:04:05"), e.GetActor(), e.GetAction(),
			orDash(shorten(e.GetDeviceId(), width)), e.GetDetail(),
		}
		if people {
			row = slices.Insert(row, 4, subjectCell(e, shared))
		}
		rows = append(rows, row)
	}
	// The detail is a sentence, not a list: cut, not counted. The subject
	// gives way first, then the action and the actor: on 80 columns to a
	// few characters each (every line fits, whatever the log holds), on a
	// wider terminal to enough for a username and an id, and the detail
	// has the rest.
	floors := []shrink{{col: 2, floor: 18}, {col: 1, floor: 16, middle: true}}
	switch {
	case people && width >= 120:
		floors = []shrink{{col: 4, floor: 26, middle: true}, {col: 2, floor: 18}, {col: 1, floor: 16, middle: true}}
	case people:
		floors = []shrink{{col: 4, floor: 9, middle: true}, {col: 2, floor: 16}, {col: 1, floor: 12, middle: true}}
	}
	return writeTableCut(w, rows, width, floors)
}

// subjectCell is the first person an event is about (the one --user asked
// for, which the server lists first), by username, escaped and marked as
// exemption listings show usernames; with their user id when shared names
// another person in the listing; "+N" counts the others.
func subjectCell(e *adminv1.AuditEvent, shared map[string]bool) string {
	subs := e.GetSubjects()
	if len(subs) == 0 {
		return "-"
	}
	first := subs[0]
	cell := rollout.ShownUsername(first.GetUsername())
	switch {
	case first.GetUsername() == "":
		cell = "id " + printable.Identifier(first.GetUserId())
	case first.GetUserId() != "" && shared[storage.UserNameKey(first.GetUsername())]:
		cell += " (id " + printable.Identifier(first.GetUserId()) + ")"
	}
	if n := len(subs) - 1 + int(e.GetMoreSubjects()); n > 0 {
		cell += " +" + strconv.Itoa(n)
	}
	return cell
}

// sharedUsernames are the usernames (by storage.UserNameKey) that more
// than one user id has among the events' first subjects: a username given
// to someone else after its first holder left.
func sharedUsernames(es []*adminv1.AuditEvent) map[string]bool {
	ids := map[string]string{}
	shared := map[string]bool{}
	for _, e := range es {
		subs := e.GetSubjects()
		if len(subs) == 0 || subs[0].GetUsername() == "" || subs[0].GetUserId() == "" {
			continue
		}
		k := storage.UserNameKey(subs[0].GetUsername())
		if id, ok := ids[k]; ok && id != subs[0].GetUserId() {
			shared[k] = true
		}
		ids[k] = subs[0].GetUserId()
	}
	return shared
}
