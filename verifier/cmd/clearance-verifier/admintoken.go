package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/clearance/clearance/pkg/cli"
	adminv1 "github.com/clearance/clearance/proto/gen/clearance/admin/v1"
	"github.com/clearance/clearance/verifier/admin"
	"github.com/clearance/clearance/verifier/config"
	"github.com/clearance/clearance/verifier/idsecret"
	"github.com/clearance/clearance/verifier/storage"
)

// adminTokenCmd manages named admin tokens: one per person or system, so
// the audit log names who made each change.
func (a *app) adminTokenCmd() *cli.Command {
	return &cli.Command{
		Name:    "admin-token",
		Summary: "create, list and revoke named admin API tokens, one per person or system",
		Commands: []*cli.Command{
			{
				Name:    "create",
				Summary: "make a named admin token and print it (the last line of output, shown only once)",
				Doc: "Makes a bearer token for the admin API for one person or system and prints it as the last line of " +
					"standard output; only its hash is kept. The audit log names its holder (admin:NAME) for every change " +
					"made with it. Role read may list and read (devices, decisions, people, the audit log, explain) and " +
					"change nothing; role admin may make every call, as the data dir's admin.token does. Give each person " +
					"their own, and revoke it when they leave; no two unrevoked tokens share a name. " + databaseDoc + "\n\n" +
					"  clearance-verifier admin-token create --data-dir /var/lib/clearance \\\n    --name alice@example.com --role read --expires 2160h\n\n" +
					"Use it with grpcurl as the header 'authorization: Bearer TOKEN', or with this CLI's admin commands " +
					"as --admin-token-file FILE.",
				Footer: config.SharedFooter,
				Flags: func(fs *cli.FlagSet) cli.Action {
					b := config.Bind(fs, databaseSettings...)
					fs.Group("Token")
					name := fs.String("name", "", "who holds it: a person's e-mail address or a system's name (ASCII letters, digits and . _ @ + -)")
					role := fs.String("role", storage.AdminRoleRead, "read (list and read, change nothing) or admin (every admin call)")
					expires := fs.Duration("expires", 0, "how long it works, from now, e.g. 2160h (0: until revoked)")
					return func(ctx context.Context, _ []string) error {
						if err := admin.CheckTokenName(*name); err != nil {
							return cli.Usagef("--name: %v", err)
						}
						if err := admin.CheckRole(*role); err != nil {
							return cli.Usagef("--role: %v", err)
						}
						if *expires != 0 && (*expires < time.Minute || *expires > maxTokenLife) {
							return cli.Usagef("--expires %s: give from 1m to %s (10 years), or 0 for a token that works until revoked", *expires, maxTokenLife)
						}
						now := a.now()
						var until time.Time
						if *expires > 0 {
							until = now.Add(*expires)
						}
						return a.withStore(ctx, b, func(store storage.Store) error {
							rec, token, err := admin.CreateNamedToken(ctx, store, *name, *role, until, "cli", now)
							if err != nil {
								return err
							}
							a.announce(token, "Created admin token %s for %s, role %s%s. It is shown only once:\n",
								rec.ID, rec.Name, rec.Role, expiryPhrase(rec.ExpiresAt))
							return nil
						})
					}
				},
			},
			a.storeListCmd("list", "list named admin tokens (never their values)",
				"Lists named admin tokens: id, holder, role, when created, whether expired or revoked. --json prints "+
					"an array of objects with the fields id, name, role, state (active, expired or revoked), created_at, "+
					"expires_at and revoked_at (RFC 3339 times in UTC, null when unset). ",
				func(ctx context.Context, store storage.Store, asJSON bool) error {
					recs, err := store.ListAdminTokens(ctx)
					if err != nil {
						return err
					}
					now := a.now()
					if asJSON {
						out := make([]adminTokenJSON, 0, len(recs))
						for _, r := range recs {
							out = append(out, adminTokenJSON{ID: r.ID, Name: r.Name, Role: r.Role, State: adminTokenState(r, now),
								CreatedAt: jsonTime(r.CreatedAt), ExpiresAt: jsonTime(r.ExpiresAt), RevokedAt: jsonTime(r.RevokedAt)})
						}
						return printRecords(a.stdout, out)
					}
					tw := newTable(a.stdout, "ID\tNAME\tROLE\tCREATED\tSTATE")
					for _, r := range recs {
						state := "active"
						switch {
						case r.Revoked():
							state = "revoked " + r.RevokedAt.UTC().Format(time.RFC3339)
						case r.Expired(now):
							state = "expired " + r.ExpiresAt.UTC().Format(time.RFC3339)
						case !r.ExpiresAt.IsZero():
							state = "active, expires " + r.ExpiresAt.UTC().Format(time.RFC3339)
						}
						fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.ID, clean(r.Name), r.Role, r.CreatedAt.UTC().Format(time.RFC3339), state)
					}
					return tw.Flush()
				}),
			a.storeCmd("revoke", "stop a named admin token from working", "ID", 1, "the token's ID (see 'admin-token list')",
				"Revokes the admin token ID (see 'admin-token list'; the whole token, as a secret scanner found it, "+
					"names its ID too): calls with it are refused at once, on every replica. ",
				func(ctx context.Context, store storage.Store, args []string) error {
					id, err := tokenID(args[0])
					if err != nil {
						return err
					}
					rec, err := store.GetAdminToken(ctx, id)
					if errors.Is(err, storage.ErrNotFound) {
						return fmt.Errorf("no admin token %q (see 'admin-token list')", id)
					}
					if err != nil {
						return err
					}
					if rec.Revoked() {
						fmt.Fprintf(a.stdout, "%s (%s) was revoked already, at %s\n", rec.ID, clean(rec.Name), rec.RevokedAt.UTC().Format(time.RFC3339))
						return nil
					}
					now := a.now()
					rec, err = store.RevokeAdminToken(ctx, id, now, storage.AuditEvent{At: now, Actor: "cli",
						Action: "admin_token.revoke", Detail: "admin token " + id + " (" + rec.Name + ") revoked"})
					if err != nil {
						return err
					}
					fmt.Fprintf(a.stdout, "revoked %s (%s)\n", rec.ID, clean(rec.Name))
					return nil
				}),
			{
				Name:    "whoami",
				Summary: "ask the verifier whose token the admin commands use, its role and expiry",
				Doc: "Asks the running verifier's admin API who the token these commands send is (--admin-token-file, " +
					"CLEARANCE_ADMIN_TOKEN_FILE, or the data dir's admin.token): the name the audit log gives its changes, " +
					"its role and when it expires. A check before a change, or of a token a colleague gave you. --json prints " +
					"the admin API's WhoAmIResponse.\n\n" +
					"  clearance-verifier admin-token whoami --verifier verifier.example.com:8443 \\\n" +
					"    --ca-file ca.pem --admin-token-file ~/.clearance/admin.token",
				Footer: config.SharedFooter,
				Flags: func(fs *cli.FlagSet) cli.Action {
					af := a.bindAdmin(fs)
					fs.Group("Output")
					asJSON := fs.Bool("json", false, "print the admin API's response as JSON")
					return func(ctx context.Context, args []string) error {
						if err := cli.NoArgs(args); err != nil {
							return err
						}
						return a.withAdmin(ctx, af, func(c *adminConn) error {
							resp, err := call(c, c.client.WhoAmI, &adminv1.WhoAmIRequest{})
							if err != nil {
								return err
							}
							if *asJSON {
								return printJSON(a.stdout, resp)
							}
							token := "the data dir's admin.token (names no person)"
							if resp.GetTokenId() != "" {
								token = "named, id " + resp.GetTokenId()
							}
							role := resp.GetRole()
							switch role {
							case storage.AdminRoleRead:
								role += " (lists and reads, changes nothing)"
							case storage.AdminRoleAdmin:
								role += " (every admin call)"
							}
							expires := "never"
							if e := resp.GetExpiresAt(); e != nil {
								expires = e.AsTime().UTC().Format(time.RFC3339) + " (in " + strings.TrimSuffix(ago(a.now(), true, e.AsTime()), " ago") + ")"
							}
							for _, kv := range [][2]string{{"verifier", c.addr}, {"actor", clean(resp.GetActor())}, {"token", token}, {"role", role}, {"expires", expires}} {
								fmt.Fprintf(a.stdout, "%-9s %s\n", kv[0], kv[1])
							}
							return nil
						})
					}
				},
			},
		},
	}
}

// adminTokenJSON is an admin token as 'admin-token list --json' prints it.
type adminTokenJSON struct {
	ID        string  `json:"id"`
	Name      string  `json:"name"`
	Role      string  `json:"role"`
	State     string  `json:"state"`
	CreatedAt *string `json:"created_at"`
	ExpiresAt *string `json:"expires_at"`
	RevokedAt *string `json:"revoked_at"`
}

// adminTokenState is active, expired or revoked.
func adminTokenState(r storage.AdminToken, now time.Time) string {
	switch {
	case r.Revoked():
		return "revoked"
	case r.Expired(now):
		return "expired"
	}
	return "active"
}

// maxTokenLife bounds --expires: ten years.
const maxTokenLife = 87600 * time.Hour

// tokenID is the admin token ID arg names: an ID as 'admin-token list'
// shows it, or a whole token (whose secret is never repeated back).
func tokenID(arg string) (string, error) {
	if strings.HasPrefix(arg, admin.NamedTokenPrefix) {
		id, ok := idsecret.ID(admin.NamedTokenPrefix, arg)
		if !ok {
			return "", cli.Usagef("the argument starts as an admin token (%s) but is not one; give the ID 'admin-token list' shows", admin.NamedTokenPrefix)
		}
		return id, nil
	}
	if len(arg) != 16 || strings.Trim(arg, "0123456789abcdef") != "" {
		return "", cli.Usagef("%q is not an admin token ID (16 hex characters, as 'admin-token list' shows them)", clean(arg))
	}
	return arg, nil
}

// expiryPhrase is ", expires T" for a token that expires, and says so of
// one that never does.
func expiryPhrase(t time.Time) string {
	if t.IsZero() {
		return ", never expires (until revoked)"
	}
	return ", expires " + t.UTC().Format(time.RFC3339)
}
