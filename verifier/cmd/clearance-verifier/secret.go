package main

import (
	"context"
	"errors"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/clearance/clearance/pkg/cli"
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
					"  clearance-verifier secret create --data-dir /var/lib/clearance \\\n    --description \"Jamf, all Macs\"",
				Footer: config.SharedFooter,
				Flags: func(fs *cli.FlagSet) cli.Action {
					b := config.Bind(fs, databaseSettings...)
					fs.Group("Secret")
					desc := fs.String("description", "", "what the secret is for, e.g. 'Jamf, engineering Macs'")
					return func(ctx context.Context, _ []string) error {
						return a.withStore(ctx, b, func(store storage.Store) error {
							if n := len(*desc); n > enroll.MaxSecretDescription {
								return cli.Usagef("--description is %d characters; the limit is %d", n, enroll.MaxSecretDescription)
							}
							rec, value, err := enroll.CreateSecret(ctx, store, *desc, "cli", a.now())
							if err != nil {
								return err
							}
							fmt.Fprintf(a.stderr, "Created enroll secret %s. It is shown only once:\n", rec.ID)
							fmt.Fprintln(a.stdout, value)
							return nil
						})
					}
				},
			},
			{
				Name:    "list",
				Summary: "list enroll secrets with their use counts (never their values)",
				Doc:     "Lists enroll secrets: id, when created, how many devices enrolled with each, and whether it is revoked. " + databaseDoc,
				Footer:  config.SharedFooter,
				Flags: func(fs *cli.FlagSet) cli.Action {
					b := config.Bind(fs, databaseSettings...)
					return func(ctx context.Context, _ []string) error {
						return a.withStore(ctx, b, func(store storage.Store) error {
							recs, err := store.ListEnrollSecrets(ctx)
							if err != nil {
								return err
							}
							tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
							fmt.Fprintln(tw, "ID\tCREATED\tUSES\tSTATE\tDESCRIPTION")
							for _, r := range recs {
								state := "active"
								if r.Revoked() {
									state = "revoked " + r.RevokedAt.UTC().Format(time.RFC3339)
								}
								fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\n", r.ID, r.CreatedAt.UTC().Format(time.RFC3339), r.Uses, state, r.Description)
							}
							return tw.Flush()
						})
					}
				},
			},
			{
				Name:    "revoke",
				Summary: "stop an enroll secret from enrolling more devices",
				Args:    "ID",
				Doc:     "Revokes the enroll secret ID (see 'secret list'): no more devices enroll with it; those that did stay enrolled. " + databaseDoc,
				Footer:  config.SharedFooter,
				Flags: func(fs *cli.FlagSet) cli.Action {
					b := config.Bind(fs, databaseSettings...)
					return func(ctx context.Context, args []string) error {
						if err := cli.ExactArgs(args, 1, "the secret's ID (see 'secret list')"); err != nil {
							return err
						}
						return a.withStore(ctx, b, func(store storage.Store) error {
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
							return nil
						})
					}
				},
			},
		},
	}
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
