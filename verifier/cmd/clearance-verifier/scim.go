package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/clearance/clearance/pkg/cli"
	"github.com/clearance/clearance/verifier/config"
	"github.com/clearance/clearance/verifier/scim"
	"github.com/clearance/clearance/verifier/storage"
)

// scimCmd manages the bearer tokens Okta provisions users and groups with.
func (a *app) scimCmd() *cli.Command {
	return &cli.Command{
		Name:    "scim",
		Summary: "manage the tokens Okta's SCIM provisioning authenticates with",
		Commands: []*cli.Command{{
			Name:    "token",
			Summary: "create, list and revoke SCIM bearer tokens",
			Commands: []*cli.Command{
				{
					Name:    "create",
					Summary: "make a new SCIM token and print it (the last line of output, shown only once)",
					Doc: "Makes a bearer token for Okta's SCIM provisioning (the app's API Token, with the authentication mode " +
						"HTTP Header) and prints it as the last line of standard output; only its hash is kept. Several tokens " +
						"may be valid at once: create the next, give it to Okta, then revoke the old one. " + databaseDoc + "\n\n" +
						"  clearance-verifier scim token create --data-dir /var/lib/clearance \\\n    --description \"Okta provisioning\"",
					Footer: config.SharedFooter,
					Flags: func(fs *cli.FlagSet) cli.Action {
						b := config.Bind(fs, databaseSettings...)
						fs.Group("Token")
						desc := fs.String("description", "", "what the token is for, e.g. 'Okta production org'")
						return func(ctx context.Context, _ []string) error {
							if n := len(*desc); n > scim.MaxTokenDescription {
								return cli.Usagef("--description is %d characters; the limit is %d", n, scim.MaxTokenDescription)
							}
							return a.withStore(ctx, b, func(store storage.Store) error {
								rec, token, err := scim.CreateToken(ctx, store, *desc, "cli", a.now())
								if err != nil {
									return err
								}
								a.announce(token, "Created SCIM token %s. It is shown only once:\n", rec.ID)
								return nil
							})
						}
					},
				},
				a.storeListCmd("list", "list SCIM tokens (never their values)",
					"Lists SCIM tokens: id, when created, whether revoked. The audit log names the token behind each change. "+
						"--json prints an array of objects with the fields id, description, state (active or revoked), "+
						"created_at and revoked_at (RFC 3339 times in UTC, null when unset). ",
					func(ctx context.Context, store storage.Store, asJSON bool) error {
						recs, err := store.ListSCIMTokens(ctx)
						if err != nil {
							return err
						}
						if asJSON {
							out := make([]scimTokenJSON, 0, len(recs))
							for _, r := range recs {
								state := "active"
								if r.Revoked() {
									state = "revoked"
								}
								out = append(out, scimTokenJSON{ID: r.ID, Description: r.Description, State: state,
									CreatedAt: jsonTime(r.CreatedAt), RevokedAt: jsonTime(r.RevokedAt)})
							}
							return printRecords(a.stdout, out)
						}
						tw := newTable(a.stdout, "ID\tCREATED\tSTATE\tDESCRIPTION")
						for _, r := range recs {
							state := "active"
							if r.Revoked() {
								state = "revoked " + r.RevokedAt.UTC().Format(time.RFC3339)
							}
							fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.ID, r.CreatedAt.UTC().Format(time.RFC3339), state, clean(r.Description))
						}
						return tw.Flush()
					}),
				a.storeCmd("revoke", "stop a SCIM token from working", "ID", 1, "the token's ID (see 'scim token list')",
					"Revokes the SCIM token ID (see 'scim token list'): requests with it get 401 at once. ",
					func(ctx context.Context, store storage.Store, args []string) error {
						now := a.now()
						rec, err := store.RevokeSCIMToken(ctx, args[0], now, storage.AuditEvent{At: now, Actor: "cli",
							Action: "scim_token.revoke", Detail: "scim token " + args[0] + " revoked"})
						if errors.Is(err, storage.ErrNotFound) {
							return fmt.Errorf("no SCIM token %q (see 'scim token list')", args[0])
						}
						if err != nil {
							return err
						}
						fmt.Fprintf(a.stdout, "revoked %s\n", rec.ID)
						return nil
					}),
			},
		}},
	}
}

// scimTokenJSON is a SCIM token as 'scim token list --json' prints it.
type scimTokenJSON struct {
	ID          string  `json:"id"`
	Description string  `json:"description"`
	State       string  `json:"state"`
	CreatedAt   *string `json:"created_at"`
	RevokedAt   *string `json:"revoked_at"`
}
