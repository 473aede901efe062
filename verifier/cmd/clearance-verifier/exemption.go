package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/clearance/clearance/pkg/cli"
	"github.com/clearance/clearance/pkg/policy"
	adminv1 "github.com/clearance/clearance/proto/gen/clearance/admin/v1"
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

// exemptionCmd manages exemptions by writing to the database directly, as
// secret does, so that it works whether or not the server runs.
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
					"as the last line. Each --policy id is checked against the policy file given with --policies (the " +
					"file serve reads, also from the environment or the config file), or without one against the set " +
					"in force at the running verifier (its admin API, at the address serve recorded in the data dir): " +
					"an id not there, a file that cannot be read, or a verifier that does not answer refuses the grant; " +
					"--unchecked grants the ids as written. " + databaseDoc + "\n\n" +
					"  clearance-verifier exemption grant --data-dir /var/lib/clearance \\\n    --policies /etc/clearance/policies.yaml \\\n    --device 3f2a… --policy macos-version --for 168h \\\n    --reason \"replacement Mac arrives next week\"",
				Footer: config.SharedFooter,
				Flags: func(fs *cli.FlagSet) cli.Action {
					// The policy file, when given (as serve is given it:
					// flag, environment or config file), checks the ids.
					b := config.Bind(fs, append(databaseSettings[:len(databaseSettings):len(databaseSettings)], "policies")...)
					fs.Lookup("policies").Usage = "the policy YAML file serve reads, to check the --policy ids against (read only when --policy is given; default: ask the running verifier)"
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
						g := rollout.Grant{DeviceID: *device, Username: *user, ExpiresAt: expires, Reason: *why}
						g.PolicyIDs = policies
						if err := g.Check(now); err != nil {
							return cli.Usagef("%v", err)
						}
						cfg, err := b.Resolve(a.getenv)
						if err != nil {
							return err
						}
						if !*unchecked {
							checked, err := checkGrantPolicies(g, cfg.Policies)
							if err != nil {
								return err
							}
							if !checked && len(g.PolicyIDs) > 0 {
								if err := a.checkGrantWithServer(ctx, g, cfg.DataDir); err != nil {
									return err
								}
							}
						}
						return a.withStore(ctx, b, func(store storage.Store) error {
							e, err := rollout.GrantExemption(ctx, store, g, "cli", now)
							if err != nil {
								return err
							}
							if e.Username != "" {
								if known, err := rollout.KnownUsername(ctx, store, e.Username); err == nil && !known {
									fmt.Fprintf(a.stderr, "note: no user named %s is provisioned (SCIM or the Okta sync) or has signed in; check the spelling: the exemption covers that username and no other\n", rollout.ShownUsername(e.Username))
								}
							}
							a.announce(e.ID, "Granted exemption for %s.\n", clean(rollout.Describe(e)))
							return nil
						})
					}
				},
			},
			{
				Name:    "list",
				Summary: "list exemptions in force (--all: also expired and revoked ones)",
				Doc:     "Lists exemptions, newest first: id, whom it covers, which policies, until when, by whom and why. " + databaseDoc,
				Footer:  config.SharedFooter,
				Flags: func(fs *cli.FlagSet) cli.Action {
					b := config.Bind(fs, databaseSettings...)
					fs.Group("Filters")
					device := fs.String("device", "", "only exemptions of this device (`id`)")
					user := fs.String("user", "", "only exemptions of this Okta `username`")
					all := fs.Bool("all", false, "also expired and revoked exemptions")
					return func(ctx context.Context, _ []string) error {
						if err := fs.NotEmpty("device", "user"); err != nil {
							return err
						}
						return a.withStore(ctx, b, func(store storage.Store) error {
							now := a.now()
							f := storage.ExemptionFilter{DeviceID: *device, Username: *user, Limit: storage.MaxDecisionLimit}
							if !*all {
								f.ActiveAt = now
							}
							es, err := store.ListExemptions(ctx, f)
							if err != nil {
								return err
							}
							if len(es) == 0 {
								fmt.Fprintln(a.stderr, "no exemptions match")
								return nil
							}
							tw := newTable(a.stdout, "ID\tCOVERS\tPOLICIES\tSTATE\tBY\tREASON")
							for _, e := range es {
								covers := "device " + e.DeviceID
								if e.Username != "" {
									covers = "user " + rollout.ShownUsername(e.Username)
								}
								pols := "all"
								if len(e.PolicyIDs) > 0 {
									pols = strings.Join(e.PolicyIDs, ",")
								}
								state := "until " + e.ExpiresAt.UTC().Format(time.RFC3339)
								switch {
								case !e.RevokedAt.IsZero():
									state = "revoked " + e.RevokedAt.UTC().Format(time.RFC3339)
								case !e.Active(now):
									state = "expired " + e.ExpiresAt.UTC().Format(time.RFC3339)
								}
								fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\n", e.ID, clean(covers), pols, state, clean(e.CreatedBy), clean(e.Reason))
							}
							return tw.Flush()
						})
					}
				},
			},
			{
				Name:    "revoke",
				Summary: "end an exemption now",
				Args:    "ID",
				Doc:     "Revokes the exemption ID (see 'exemption list'): from now on the policies it covered count again. " + databaseDoc,
				Footer:  config.SharedFooter,
				Flags: func(fs *cli.FlagSet) cli.Action {
					b := config.Bind(fs, databaseSettings...)
					return func(ctx context.Context, args []string) error {
						if err := cli.ExactArgs(args, 1, "the exemption's ID (see 'exemption list')"); err != nil {
							return err
						}
						id, err := strconv.ParseInt(args[0], 10, 64)
						if err != nil || id <= 0 {
							return cli.Usagef("%q is not an exemption ID (see 'exemption list')", args[0])
						}
						return a.withStore(ctx, b, func(store storage.Store) error {
							_, err := rollout.RevokeExemption(ctx, store, id, "cli", a.now())
							switch {
							case errors.Is(err, storage.ErrNotFound):
								return fmt.Errorf("no exemption %d (see 'exemption list --all')", id)
							case errors.Is(err, rollout.ErrRevoked):
								return fmt.Errorf("exemption %d is already revoked", id)
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
