package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/clearance/clearance/pkg/cli"
	"github.com/clearance/clearance/pkg/policy"
	adminv1 "github.com/clearance/clearance/proto/gen/clearance/admin/v1"
	"github.com/clearance/clearance/verifier/admin"
	"github.com/clearance/clearance/verifier/config"
	"github.com/clearance/clearance/verifier/rollout"
	"github.com/clearance/clearance/verifier/storage"
)

// checkGrantPolicies refuses a grant naming a policy the policy file at path
// does not have. It reads the file only when the grant names policies, and
// reports whether it did (not without a path).
func checkGrantPolicies(g rollout.Grant, path string) (checked bool, err error) {
	if len(g.PolicyIDs) == 0 || path == "" {
		return false, nil
	}
	set, err := policy.Load(path)
	if err != nil {
		// The path may come from a config file shared with serve, relative
		// to serve's directory: say what it is for and how to choose.
		return false, fmt.Errorf("checking the --policy ids against the policies setting: %w (give --policies the file serve reads, or --unchecked to grant the ids as written)", err)
	}
	ids := make([]string, 0, len(set.Policies))
	for _, p := range set.Policies {
		ids = append(ids, p.ID)
	}
	if err := g.CheckPolicies(ids, rollout.SetDescription("policy file "+path, set.Version)); err != nil {
		return false, cli.Usagef("%v", err)
	}
	return true, nil
}

// checkGrantWithServer refuses a grant naming a policy the verifier serving
// dataDir does not have in force, asking its admin API: without a policy
// file, that is the set the ids must name. A verifier that does not answer
// refuses the grant too, saying how to check or skip the check.
func (a *app) checkGrantWithServer(ctx context.Context, g rollout.Grant, dataDir string) error {
	none := ""
	c, err := adminFlags{verifier: &none}.dial(ctx, dataDir)
	if err == nil {
		defer c.close()
		var resp *adminv1.ListPoliciesResponse
		if resp, err = call(c, c.client.ListPolicies, &adminv1.ListPoliciesRequest{}); err == nil {
			set := resp.GetPolicySet()
			ids := make([]string, 0, len(set.GetPolicies()))
			for _, p := range set.GetPolicies() {
				ids = append(ids, p.GetId())
			}
			if err := g.CheckPolicies(ids, rollout.SetDescription("the policy set in force at "+c.addr, set.GetVersion())); err != nil {
				return cli.Usagef("%v", err)
			}
			return nil
		}
	}
	return fmt.Errorf("cannot check the --policy ids: no policy file was given and the running verifier could not be asked: %w (give --policies the file serve reads, or --unchecked to grant them as written)", err)
}

// exemptionDoc says, for each exemption command, where it goes.
const exemptionDoc = "It asks the running verifier's admin API (as 'devices assign' does: the address serve recorded in " +
	"the data dir, or --verifier with --ca-file from another machine), so the audit log names whose token made the " +
	"change (admin:NAME for a named token from --admin-token-file; admin-api for the data dir's admin.token). " +
	"With --direct it writes the database the data dir names (or --database) itself, for when the verifier is " +
	"stopped; the audit log then names the actor cli."

// exemptionFlags are what every exemption command binds: the admin API's
// flags, and --direct with the database settings it reads.
type exemptionFlags struct {
	admin  adminFlags
	direct *bool
	given  func(string) bool
	// directOnly are the flags that only --direct reads.
	directOnly []string
}

// bindExemption binds the admin API's flags, --direct and the database
// settings, and extra (settings of serve's only --direct reads).
func (a *app) bindExemption(fs *cli.FlagSet, extra ...string) exemptionFlags {
	af := a.bindAdmin(fs, append([]string{"database"}, extra...)...)
	fs.Group("Without the verifier")
	direct := fs.Bool("direct", false, "write the database itself instead of asking the running verifier, "+
		"for when it is stopped (audited as cli, naming no one)")
	return exemptionFlags{admin: af, direct: direct, given: fs.Given, directOnly: append([]string{"database"}, extra...)}
}

// run runs api with a connection to the verifier, or with --direct, do
// with the database open. A flag that only the other way reads is refused,
// so that a grant never quietly names someone other than it seems to.
func (a *app) exemptionRun(ctx context.Context, f exemptionFlags, api func(*adminConn) error, direct func(storage.Store) error) error {
	if *f.direct {
		for _, name := range []string{"verifier", "admin-token-file", "ca-file"} {
			if f.given(name) {
				return cli.Usagef("--%s is for asking the running verifier, which --direct does not: leave out one of them", name)
			}
		}
		return a.withStore(ctx, f.admin.b, direct)
	}
	for _, name := range f.directOnly {
		if f.given(name) {
			return cli.Usagef("--%s is read only with --direct; without it the running verifier is asked (it checks against its own database and policy set)", name)
		}
	}
	return a.withAdmin(ctx, f.admin, api)
}

// exemptionCmd manages exemptions: through the running verifier's admin
// API by default, so that each change is audited as the person whose
// token made it, or with --direct in the database itself, whether or not
// the server runs.
func (a *app) exemptionCmd() *cli.Command {
	return &cli.Command{
		Name:    "exemption",
		Summary: "let a device or a user sign in despite failing policies, until a time",
		Commands: []*cli.Command{
			{
				Name:    "grant",
				Summary: "exempt a device or a user from some policies (or all) until a time, with a reason",
				Doc: "Grants an exemption: sign-ins from the device (--device) or by the Okta user (--user) are not " +
					"blocked by the policies named (--policy; all policies when left out) until the exemption expires " +
					"(--until, or --for from now; at most a year). It counts for critical policies too: it is the " +
					"security team's decision, kept with its reason and in the audit log. Prints the exemption's id " +
					"as the last line. The verifier checks each --policy id against the set in force, and refuses a " +
					"device that is not enrolled and a username that can pass for another; --unchecked grants the ids " +
					"as written (for a policy the verifier will load later). With --direct, the ids are checked against " +
					"the policy file given with --policies (the file serve reads, also from the environment or the " +
					"config file), or without one against the set in force at the running verifier; an id not there, " +
					"a file that cannot be read, or a verifier that does not answer refuses the grant. " + exemptionDoc + "\n\n" +
					"  clearance-verifier exemption grant --data-dir /var/lib/clearance \\\n" +
					"    --admin-token-file ~/.clearance/admin.token \\\n" +
					"    --device 3f2a… --policy macos-version --for 168h \\\n" +
					"    --reason \"replacement Mac arrives next week\"",
				Footer: config.SharedFooter,
				Flags: func(fs *cli.FlagSet) cli.Action {
					// The policy file, when given (as serve is given it:
					// flag, environment or config file), checks the ids of
					// a --direct grant.
					ef := a.bindExemption(fs, "policies")
					fs.Lookup("policies").Usage = "with --direct, the policy YAML file serve reads, to check the --policy ids against (read only when --policy is given; default: ask the running verifier)"
					fs.Group("Exemption")
					device := fs.String("device", "", "exempt this device (`id`, or the start of one as the tables show it; it must be enrolled)")
					user := fs.String("user", "", "exempt this Okta `username` (any case of its ASCII letters)")
					// Repeated, the lists add up: a flag given twice does not
					// quietly keep only its last value.
					var policies []string
					fs.Func("policy", "comma-separated policy `ids` to exempt from, or the flag repeated (default: every policy)", func(v string) error {
						if strings.TrimSpace(v) == "" {
							return errors.New("needs policy ids; leave it out to exempt from every policy")
						}
						policies = append(policies, strings.Split(v, ",")...)
						return nil
					})
					until := fs.String("until", "", "when it ends, as RFC 3339 (e.g. 2026-12-24T18:00:00Z)")
					dur := fs.Duration("for", 0, "when it ends, from now (e.g. 72h)")
					why := fs.String("reason", "", "why it is granted (required; kept with it and in the audit log)")
					unchecked := fs.Bool("unchecked", false, "grant the --policy ids as written, checked against no policy set (one the verifier will load later)")
					return func(ctx context.Context, args []string) error {
						if err := cli.ExactArgs(args, 0, ""); err != nil {
							return err
						}
						now := a.now()
						var expires time.Time
						switch {
						case (*until == "") == (*dur == 0):
							return cli.Usagef("give exactly one of --until and --for")
						case *until != "":
							t, err := time.Parse(time.RFC3339, *until)
							if err != nil {
								return cli.Usagef("--until %q is not an RFC 3339 time such as 2026-12-24T18:00:00Z", *until)
							}
							expires = t
						default:
							expires = now.Add(*dur)
						}
						g := rollout.Grant{DeviceID: *device, Username: *user, PolicyIDs: policies, ExpiresAt: expires, Reason: *why}
						return a.exemptionRun(ctx, ef, func(c *adminConn) error {
							resp, err := c.client.GrantExemption(c.ctx, &adminv1.GrantExemptionRequest{
								DeviceId: g.DeviceID, Username: g.Username, PolicyIds: g.PolicyIDs,
								ExpiresAt: timestamppb.New(g.ExpiresAt), Reason: g.Reason, AllowUnknownPolicies: *unchecked,
							})
							if status.Code(err) == codes.InvalidArgument {
								// What the grant asks for, as the flags gave it.
								return cli.Usagef("%s", status.Convert(err).Message())
							}
							if err != nil {
								return c.explain(err)
							}
							a.granted(exemptionOf(resp.GetExemption()), resp.GetUsernameUnknown())
							return nil
						}, func(store storage.Store) error {
							if err := g.Check(now); err != nil {
								return cli.Usagef("%v", err)
							}
							if !*unchecked {
								if err := a.checkDirectGrant(ctx, ef, g); err != nil {
									return err
								}
							}
							e, err := rollout.GrantExemption(ctx, store, g, "cli", now)
							if rollout.IsGrantError(err) {
								return cli.Usagef("%v", err)
							}
							if err != nil {
								return err
							}
							unknown := false
							if e.Username != "" {
								known, err := rollout.KnownUsername(ctx, store, e.Username)
								unknown = err == nil && !known
							}
							a.granted(e, unknown)
							return nil
						})
					}
				},
			},
			{
				Name:    "list",
				Summary: "list exemptions in force (--all: also expired and revoked ones)",
				Doc: "Lists exemptions, newest first: id, whom it covers, which policies, until when, by whom and why; " +
					"every one, however many pages the verifier returns them in. --json prints them as the admin API's " +
					"ListExemptionsResponse (with --direct too). " + exemptionDoc,
				Footer: config.SharedFooter,
				Flags: func(fs *cli.FlagSet) cli.Action {
					ef := a.bindExemption(fs)
					fs.Group("Filters")
					device := fs.String("device", "", "only exemptions of this device (`id`, or the start of one as the tables show it)")
					user := fs.String("user", "", "only exemptions of this Okta `username`")
					all := fs.Bool("all", false, "also expired and revoked exemptions")
					fs.Group("Output")
					asJSON := fs.Bool("json", false, "print the admin API's response as JSON")
					return func(ctx context.Context, args []string) error {
						if err := cli.NoArgs(args); err != nil {
							return err
						}
						if err := fs.NotEmpty("device", "user"); err != nil {
							return err
						}
						show := func(es []*adminv1.Exemption, more string) error {
							if more != "" {
								defer fmt.Fprintf(a.stderr, "more exemptions match than the %d listed: narrow it with --device or --user\n", len(es))
							}
							return a.printList(*asJSON, &adminv1.ListExemptionsResponse{Exemptions: es, NextPageToken: more}, len(es), "no exemptions match", func() error {
								return renderExemptions(a.stdout, es)
							})
						}
						return a.exemptionRun(ctx, ef, func(c *adminConn) error {
							req := &adminv1.ListExemptionsRequest{DeviceId: *device, Username: *user, IncludeInactive: *all, PageSize: 1000}
							es, more, err := gather(true, func(token string) ([]*adminv1.Exemption, string, error) {
								req.PageToken = token
								resp, err := call(c, c.client.ListExemptions, req)
								return resp.GetExemptions(), resp.GetNextPageToken(), err
							})
							if err != nil {
								return err
							}
							return show(es, more)
						}, func(store storage.Store) error {
							es, err := a.listExemptionsDirect(ctx, store, *device, *user, *all)
							if err != nil {
								return err
							}
							return show(es, "")
						})
					}
				},
			},
			{
				Name:    "revoke",
				Summary: "end an exemption now",
				Args:    "ID",
				Doc:     "Revokes the exemption ID (see 'exemption list'): from now on the policies it covered count again. " + exemptionDoc,
				Footer:  config.SharedFooter,
				Flags: func(fs *cli.FlagSet) cli.Action {
					ef := a.bindExemption(fs)
					return func(ctx context.Context, args []string) error {
						if err := cli.ExactArgs(args, 1, "the exemption's ID (see 'exemption list')"); err != nil {
							return err
						}
						id, err := strconv.ParseInt(args[0], 10, 64)
						if err != nil || id <= 0 {
							return cli.Usagef("%q is not an exemption ID (see 'exemption list')", args[0])
						}
						notFound := fmt.Errorf("no exemption %d (see 'exemption list --all')", id)
						revoked := fmt.Errorf("exemption %d is already revoked", id)
						return a.exemptionRun(ctx, ef, func(c *adminConn) error {
							_, err := c.client.RevokeExemption(c.ctx, &adminv1.RevokeExemptionRequest{Id: id})
							switch status.Code(err) {
							case codes.OK:
							case codes.NotFound:
								return notFound
							case codes.FailedPrecondition:
								return revoked
							default:
								return c.explain(err)
							}
							fmt.Fprintf(a.stdout, "revoked %d\n", id)
							return nil
						}, func(store storage.Store) error {
							_, err := rollout.RevokeExemption(ctx, store, id, "cli", a.now())
							switch {
							case errors.Is(err, storage.ErrNotFound):
								return notFound
							case errors.Is(err, rollout.ErrRevoked):
								return revoked
							case err != nil:
								return err
							}
							fmt.Fprintf(a.stdout, "revoked %d\n", id)
							return nil
						})
					}
				},
			},
		},
	}
}

// checkDirectGrant refuses a --direct grant naming a policy that neither
// the policy file (--policies) nor, without one, the running verifier has.
func (a *app) checkDirectGrant(ctx context.Context, f exemptionFlags, g rollout.Grant) error {
	cfg, err := f.admin.b.Resolve(a.getenv)
	if err != nil {
		return err
	}
	checked, err := checkGrantPolicies(g, cfg.Policies)
	if err != nil || checked || len(g.PolicyIDs) == 0 {
		return err
	}
	return a.checkGrantWithServer(ctx, g, cfg.DataDir)
}

// granted says what a grant made: a note when the username is no one's
// the verifier knows, the exemption on stderr and its id as the last line
// of stdout.
func (a *app) granted(e storage.Exemption, usernameUnknown bool) {
	if usernameUnknown {
		fmt.Fprintf(a.stderr, "note: no user named %s is provisioned (SCIM or the Okta sync) or has signed in; check the spelling: the exemption covers that username and no other\n", rollout.ShownUsername(e.Username))
	}
	a.announce(e.ID, "Granted exemption for %s.\n", clean(rollout.Describe(e)))
}

// exemptionOf is the exemption the admin API returned, as Describe reads it.
func exemptionOf(p *adminv1.Exemption) storage.Exemption {
	return storage.Exemption{
		ID: p.GetId(), DeviceID: p.GetDeviceId(), Username: p.GetUsername(), PolicyIDs: p.GetPolicyIds(), Reason: p.GetReason(),
		CreatedBy: p.GetCreatedBy(), CreatedAt: p.GetCreatedAt().AsTime(), ExpiresAt: p.GetExpiresAt().AsTime(), RevokedBy: p.GetRevokedBy(),
	}
}

// listExemptionsDirect reads every matching exemption from the database,
// as ListExemptions would list them: a device named by the start of its
// id, as the tables show it, must name one device.
func (a *app) listExemptionsDirect(ctx context.Context, store storage.Store, device, user string, all bool) ([]*adminv1.Exemption, error) {
	now := a.now()
	f := storage.ExemptionFilter{Username: user, Limit: storage.MaxDecisionLimit}
	if device != "" {
		id, err := storage.ResolveDeviceID(ctx, store, device)
		switch {
		case errors.Is(err, storage.ErrNotFound):
			return nil, fmt.Errorf("%v (see 'clearance-verifier devices --wide')", err)
		case errors.Is(err, storage.ErrAmbiguousDevice):
			return nil, cli.Usagef("%v", err)
		case err != nil:
			return nil, err
		}
		f.DeviceID = id
	}
	if !all {
		f.ActiveAt = now
	}
	var out []*adminv1.Exemption
	for {
		es, err := store.ListExemptions(ctx, f)
		if err != nil {
			return nil, err
		}
		for _, e := range es {
			out = append(out, admin.ExemptionProto(e, now))
		}
		if len(es) < f.Limit || len(out) >= maxAll {
			return out, nil
		}
		f.BeforeID = es[len(es)-1].ID
	}
}

// renderExemptions writes the exemptions table.
func renderExemptions(w io.Writer, es []*adminv1.Exemption) error {
	tw := newTable(w, "ID\tCOVERS\tPOLICIES\tSTATE\tBY\tREASON")
	for _, e := range es {
		covers := "device " + e.GetDeviceId()
		if e.GetUsername() != "" {
			covers = "user " + rollout.ShownUsername(e.GetUsername())
		}
		pols := "all"
		if len(e.GetPolicyIds()) > 0 {
			pols = strings.Join(e.GetPolicyIds(), ",")
		}
		state := "until " + e.GetExpiresAt().AsTime().UTC().Format(time.RFC3339)
		switch {
		case e.GetRevokedAt() != nil:
			state = "revoked " + e.GetRevokedAt().AsTime().UTC().Format(time.RFC3339)
		case !e.GetActive():
			state = "expired " + e.GetExpiresAt().AsTime().UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\n", e.GetId(), clean(covers), clean(pols), state, clean(e.GetCreatedBy()), clean(e.GetReason()))
	}
	return tw.Flush()
}
