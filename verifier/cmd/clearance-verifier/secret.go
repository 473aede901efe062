package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/clearance/clearance/pkg/cli"
	"github.com/clearance/clearance/pkg/printable"
	adminv1 "github.com/clearance/clearance/proto/gen/clearance/admin/v1"
	"github.com/clearance/clearance/verifier/admin"
	"github.com/clearance/clearance/verifier/config"
	"github.com/clearance/clearance/verifier/enroll"
	"github.com/clearance/clearance/verifier/storage"
)

const databaseDoc = "It writes to the database the verifier serving the data dir uses (recorded there by serve), " +
	"whether or not the server runs. With PostgreSQL the password comes from CLEARANCE_DATABASE, " +
	"the --config file, PGPASSWORD or a PostgreSQL password file; it is never stored in the data dir."

// secretCmd manages enroll secrets by writing to the database directly.
func (a *app) secretCmd() *cli.Command {
	return &cli.Command{
		Name:    "secret",
		Summary: "create, list and revoke the enroll secrets agents enroll with",
		Commands: []*cli.Command{
			{
				Name:    "create",
				Summary: "make a new enroll secret and print it (the last line of output, shown only once)",
				Doc: "Makes a new enroll secret and prints it as the last line of standard output; it is shown only once " +
					"and only its hash is kept. " + databaseDoc + "\n\n" +
					"A secret that expires (--expires) or runs out (--max-uses) enrolls nothing after; a leaked one " +
					"does less harm. Every new device and every approval counts as a use; a Mac keeping its enrollment spends none (re-enrolling with the key it has, or a rotation that key signed).\n\n" +
					"  clearance-verifier secret create --data-dir /var/lib/clearance \\\n    --description \"Jamf, all Macs\" --expires 720h --max-uses 500",
				Footer: config.SharedFooter,
				Flags: func(fs *cli.FlagSet) cli.Action {
					b := config.Bind(fs, databaseSettings...)
					fs.Group("Secret")
					desc := fs.String("description", "", "what the secret is for, e.g. 'Jamf, engineering Macs'")
					expires := fs.Duration("expires", 0, "how long the secret enrolls, from now, e.g. 720h (0: until revoked)")
					maxUses := fs.Int("max-uses", 0, "how many enrollments it may make (0: no limit)")
					return func(ctx context.Context, _ []string) error {
						if n := len(*desc); n > enroll.MaxSecretDescription {
							return cli.Usagef("--description is %d characters; the limit is %d", n, enroll.MaxSecretDescription)
						}
						scope := enroll.SecretScope{ExpiresIn: *expires, MaxUses: *maxUses}
						if err := scope.Check(); err != nil {
							return cli.Usagef("--expires/--max-uses: %v", err)
						}
						return a.withStore(ctx, b, func(store storage.Store) error {
							rec, value, err := enroll.CreateSecret(ctx, store, *desc, scope, "cli", a.now())
							if err != nil {
								return err
							}
							a.announce(value, "Created enroll secret %s%s. It is shown only once:\n", rec.ID, scopeText(rec))
							return nil
						})
					}
				},
			},
			a.storeListCmd("list", "list enroll secrets with their use counts (never their values)",
				"Lists enroll secrets: id, when created, how many devices enrolled with each, and whether it is revoked. "+
					"--json prints them as the admin API's ListEnrollSecretsResponse. ",
				func(ctx context.Context, store storage.Store, asJSON bool) error {
					recs, err := store.ListEnrollSecrets(ctx)
					if err != nil {
						return err
					}
					if asJSON {
						resp := &adminv1.ListEnrollSecretsResponse{}
						for _, r := range recs {
							resp.EnrollSecrets = append(resp.EnrollSecrets, admin.EnrollSecretProto(r))
						}
						return printJSON(a.stdout, resp)
					}
					tw := newTable(a.stdout, "ID\tCREATED\tUSES\tSTATE\tDESCRIPTION")
					now := a.now()
					for _, r := range recs {
						uses := fmt.Sprint(r.Uses)
						if r.MaxUses > 0 {
							uses += fmt.Sprintf("/%d", r.MaxUses)
						}
						state := "active"
						switch {
						case r.Revoked():
							state = "revoked " + r.RevokedAt.UTC().Format(time.RFC3339)
						case r.Expired(now):
							state = "expired " + r.ExpiresAt.UTC().Format(time.RFC3339)
						case r.Exhausted():
							state = "used up"
						case !r.ExpiresAt.IsZero():
							state = "active until " + r.ExpiresAt.UTC().Format(time.RFC3339)
						}
						fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.ID, r.CreatedAt.UTC().Format(time.RFC3339), uses, state, clean(r.Description))
					}
					return tw.Flush()
				}),
			a.storeCmd("revoke", "stop an enroll secret from enrolling more devices", "ID", 1, "the secret's ID (see 'secret list')",
				"Revokes the enroll secret ID (see 'secret list'): no more devices enroll with it; those that did stay enrolled. "+
					"It then lists the devices whose current key was enrolled with it: if the secret leaked, look at each "+
					"(revoke one with the admin API's RevokeDevice). ",
				func(ctx context.Context, store storage.Store, args []string) error {
					now := a.now()
					rec, err := store.RevokeEnrollSecret(ctx, args[0], now,
						storage.AuditEvent{At: now, Actor: "cli", Action: "secret.revoke", Detail: "enroll secret " + args[0] + " revoked"})
					if errors.Is(err, storage.ErrNotFound) {
						return fmt.Errorf("no enroll secret %q (see 'secret list')", args[0])
					}
					if err != nil {
						return err
					}
					fmt.Fprintf(a.stdout, "revoked %s\n", rec.ID)
					return printSecretDevices(ctx, a.stdout, store, rec.ID)
				}),
		},
	}
}

// storeCmd is a command that works on the data dir's store itself: the
// database settings bound, args checked (nargs of them, what says which),
// and run with the store open. doc ends with databaseDoc.
func (a *app) storeCmd(name, summary, args string, nargs int, what, doc string,
	run func(ctx context.Context, store storage.Store, args []string) error) *cli.Command {
	return &cli.Command{
		Name: name, Summary: summary, Args: args, Doc: doc + databaseDoc, Footer: config.SharedFooter,
		Flags: func(fs *cli.FlagSet) cli.Action {
			b := config.Bind(fs, databaseSettings...)
			return func(ctx context.Context, argv []string) error {
				if err := cli.ExactArgs(argv, nargs, what); err != nil {
					return err
				}
				return a.withStore(ctx, b, func(store storage.Store) error { return run(ctx, store, argv) })
			}
		},
	}
}

// storeListCmd is a listing that reads the data dir's store itself, as
// storeCmd does, with --json.
func (a *app) storeListCmd(name, summary, doc string, run func(ctx context.Context, store storage.Store, asJSON bool) error) *cli.Command {
	return &cli.Command{
		Name: name, Summary: summary, Doc: doc + databaseDoc, Footer: config.SharedFooter,
		Flags: func(fs *cli.FlagSet) cli.Action {
			b := config.Bind(fs, databaseSettings...)
			fs.Group("Output")
			asJSON := fs.Bool("json", false, "print JSON (the fields are in the description above)")
			return func(ctx context.Context, argv []string) error {
				if err := cli.NoArgs(argv); err != nil {
					return err
				}
				return a.withStore(ctx, b, func(store storage.Store) error { return run(ctx, store, *asJSON) })
			}
		},
	}
}

// printRecords prints v, a listing's records, as indented JSON, escaped as
// printJSON escapes it: one array, empty when nothing is listed.
func printRecords(w io.Writer, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "%s\n", printable.JSON(b))
	return err
}

// jsonTime is a record's time for printRecords: RFC 3339 in UTC, null
// when unset.
func jsonTime(t time.Time) *string {
	if t.IsZero() {
		return nil
	}
	v := t.UTC().Format(time.RFC3339Nano)
	return &v
}

// withStore resolves the bound database settings, opens the database the
// server reads and runs f with it.
func (a *app) withStore(ctx context.Context, b *config.Binding, f func(storage.Store) error) error {
	cfg, err := b.Resolve(a.getenv)
	if err != nil {
		return err
	}
	store, err := openDatabase(ctx, cfg)
	if err != nil {
		return err
	}
	defer store.Close()
	return f(store)
}

// scopeText describes a new secret's limits for the confirmation line.
func scopeText(r storage.EnrollSecret) string {
	var parts []string
	if !r.ExpiresAt.IsZero() {
		parts = append(parts, "expires "+r.ExpiresAt.UTC().Format(time.RFC3339))
	}
	if r.MaxUses > 0 {
		parts = append(parts, fmt.Sprintf("at most %d enrollments", r.MaxUses))
	}
	if len(parts) == 0 {
		return ""
	}
	return " (" + strings.Join(parts, ", ") + ")"
}

// printSecretDevices lists the devices whose current key secretID
// enrolled, for whoever just revoked it.
func printSecretDevices(ctx context.Context, w io.Writer, store storage.Store, secretID string) error {
	var devs []storage.Device
	after := ""
	for {
		page, err := store.ListDevicesBySecret(ctx, secretID, after, 1000)
		if err != nil {
			return err
		}
		devs = append(devs, page...)
		if len(page) < 1000 {
			break
		}
		after = page[len(page)-1].ID
	}
	if len(devs) == 0 {
		fmt.Fprintf(w, "no enrolled device's current key was enrolled with %s\n", secretID)
		return nil
	}
	fmt.Fprintf(w, "%d devices' current keys were enrolled with %s; if the secret leaked, check each:\n", len(devs), secretID)
	tw := newTable(w, "DEVICE\tHOSTNAME\tSERIAL\tHARDWARE UUID\tENROLLED\tSTATE")
	for _, d := range devs {
		state := "active"
		if d.Revoked() {
			state = "revoked"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", d.ID, orDash(clean(d.Hostname)), serialCell(d.SerialNumber), clean(d.HardwareUUID),
			d.EnrolledAt.UTC().Format(time.RFC3339), state)
	}
	return tw.Flush()
}
