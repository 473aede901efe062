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

// maxPeoplePage is the most users one ListUsers page holds.
const maxPeoplePage = 500

func (a *app) peopleCmd() *cli.Command {
	return &cli.Command{
		Name:    "people",
		Summary: "the people Okta provisioned, their groups and their Macs",
		Args:    "[USER]",
		Doc: "Lists the people Okta provisioned (over SCIM or the Okta API sync), by id: username, name, whether " +
			"Okta keeps them active, their groups, and how many Macs they use. With USER (a username or the " +
			"user's id), shows that person: their groups, their latest sign-in, and each Mac they use with how " +
			"it is tied to them: assigned ('devices assign'), local account (an account on the Mac that " +
			"--user-binding-rule maps to them, as sign-in binds them) or sign-in (one of their latest 1,000 Okta " +
			"sign-ins came from it). It asks the running verifier's admin API with the data dir's ca.pem and " +
			"admin.token; a token with role read will do.\n\n" +
			"  clearance-verifier people --data-dir /var/lib/clearance --group Engineering\n" +
			"  clearance-verifier people --data-dir /var/lib/clearance jane@example.com",
		Footer: config.SharedFooter,
		Flags: func(fs *cli.FlagSet) cli.Action {
			af := a.bindAdmin(fs)
			fs.Group("Filters")
			group := fs.String("group", "", "only the members of this group (its `name`, any case, or id)")
			limit := fs.Int("limit", 100, "at most this many people (up to 500)")
			all := fs.Bool("all", false, "every person who matches, however many (asked for 500 at a time), not at most --limit")
			fs.Group("Output")
			asJSON := fs.Bool("json", false, "print the admin API's answer as JSON (ListUsers' users, or GetUser's)")
			wide := fs.Bool("wide", false, "full device ids and nothing shortened, whatever the terminal's width")
			return func(ctx context.Context, args []string) error {
				if len(args) > 1 {
					return cli.Usagef("give at most one person (a username or id); got %d arguments", len(args))
				}
				if err := fs.NotEmpty("group"); err != nil {
					return err
				}
				if len(args) == 1 {
					if strings.TrimSpace(args[0]) == "" {
						return cli.Usagef("an empty USER names no one: give a username or id, or leave it out to list everyone")
					}
					for _, f := range []string{"group", "limit", "all"} {
						if fs.Given(f) {
							return cli.Usagef("--%s lists people: leave it out to show one person, or leave out USER", f)
						}
					}
				}
				if *limit < 1 || *limit > maxPeoplePage {
					return cli.Usagef("--limit must be from 1 to %d", maxPeoplePage)
				}
				if *all {
					*limit = maxPeoplePage
				}
				width := a.tableWidth(*wide)
				return a.withAdmin(ctx, af, func(c *adminConn) error {
					if len(args) == 1 {
						resp, err := call(c, c.client.GetUser, &adminv1.GetUserRequest{User: args[0]})
						if err != nil {
							return err
						}
						if *asJSON {
							return printJSON(a.stdout, resp)
						}
						return renderPerson(a.stdout, resp, a.now(), time.Local, width)
					}
					req := &adminv1.ListUsersRequest{Group: *group, PageSize: int32(*limit), Details: true}
					var total uint32
					users, more, err := gather(*all, func(token string) ([]*adminv1.User, string, error) {
						req.PageToken = token
						resp, err := call(c, c.client.ListUsers, req)
						total = resp.GetTotal()
						return resp.GetUsers(), resp.GetNextPageToken(), err
					})
					if err != nil {
						return err
					}
					if more != "" {
						defer fmt.Fprintf(a.stderr, "%d more people match (%d in all): --limit up to %d, --all for every one, or --group to narrow\n",
							int(total)-len(users), total, maxPeoplePage)
					}
					none := "no people are provisioned: they come from Okta, over SCIM or the Okta API sync (see docs/okta.md)"
					if *group != "" {
						none = fmt.Sprintf("group %q has no members", clean(*group))
					}
					return a.printList(*asJSON, &adminv1.ListUsersResponse{Users: users, Total: total, NextPageToken: more}, len(users), none, func() error {
						return renderPeople(a.stdout, users, width)
					})
				})
			}
		},
	}
}

// renderPeople writes the people table, fitted to width (0: no limit).
func renderPeople(w io.Writer, users []*adminv1.User, width int) error {
	rows := [][]string{{"USERNAME", "NAME", "ACTIVE", "MACS", "GROUPS"}}
	for _, u := range users {
		active := "yes"
		if !u.GetActive() {
			active = "no"
		}
		groups := make([]string, 0, len(u.GetGroups()))
		for _, g := range u.GetGroups() {
			groups = append(groups, groupCell(g))
		}
		rows = append(rows, []string{
			personCell(u.GetUserName()), orDash(clean(u.GetDisplayName())), active,
			strconv.Itoa(int(u.GetDevices())), orDash(strings.Join(groups, ",")),
		})
	}
	// Names give way first; usernames only down to 20 characters.
	return writeTable(w, rows, width, []shrink{{col: 1, floor: 8}, {col: 0, floor: 20, middle: true}})
}

// groupCell is a group's name as a list of them shows it: quoted when it
// holds a comma or a quote, or begins or ends with a space, so that one
// named "Eng,Sales" does not read as two.
func groupCell(name string) string {
	c := clean(name)
	if strings.ContainsAny(c, `,"`) || strings.TrimSpace(c) != c {
		return strconv.Quote(c)
	}
	return c
}

// howBound says how a Mac is tied to its person, in the words of the
// people table.
func howBound(d *adminv1.UserDevice) string {
	var out []string
	for _, s := range d.GetSources() {
		switch s {
		case "admin":
			out = append(out, "assigned")
		case "local_account":
			out = append(out, "local account "+clean(d.GetLocalAccount()))
		case "sign_in":
			out = append(out, "signed in")
		default:
			out = append(out, clean(s))
		}
	}
	return strings.Join(out, ", ")
}

// renderPerson writes one person: who they are, then their Macs as a
// table fitted to width.
func renderPerson(w io.Writer, r *adminv1.GetUserResponse, now time.Time, loc *time.Location, width int) error {
	u := r.GetUser()
	active := "yes"
	if !u.GetActive() {
		active = "no (Okta deactivated them: their sign-ins are denied)"
	}
	groups := make([]string, 0, len(r.GetGroups()))
	for _, g := range r.GetGroups() {
		groups = append(groups, groupCell(g))
	}
	last := "none on record"
	if at := r.GetLastSignInAt(); at != nil {
		result := "let in"
		if !r.GetLastSignInAllowed() {
			result = "denied: " + clean(r.GetLastSignInReason())
		}
		last = fmt.Sprintf("%s (%s), from %s, %s", at.AsTime().In(loc).Format("2006-01-02 15:04:05 MST"),
			ago(at.AsTime(), true, now), orDash(shorten(r.GetLastSignInDeviceId(), width)), result)
	}
	for _, kv := range [][2]string{
		{"username", personCell(u.GetUserName())},
		{"name", orDash(clean(u.GetDisplayName()))},
		{"email", orDash(clean(u.GetEmail()))},
		{"id", clean(u.GetUserId())},
		{"active", active},
		{"source", orDash(u.GetSource())},
		{"groups", orDash(strings.Join(groups, ", "))},
		{"last sign-in", last},
	} {
		if _, err := fmt.Fprintf(w, "%-13s %s\n", kv[0]+":", kv[1]); err != nil {
			return err
		}
	}
	if len(r.GetDevices()) == 0 {
		_, err := fmt.Fprintln(w, "\nno Macs: none assigned, none whose local account --user-binding-rule maps to them, no sign-in on record")
		return err
	}
	fmt.Fprintln(w)
	rows := [][]string{{"DEVICE", "HOST", "HOW"}}
	for _, d := range r.GetDevices() {
		rows = append(rows, []string{shorten(d.GetDeviceId(), width), orDash(markLookAlike(d.GetHostname())), howBound(d)})
	}
	return writeTableCut(w, rows, width, []shrink{{col: 1, floor: 10}})
}
