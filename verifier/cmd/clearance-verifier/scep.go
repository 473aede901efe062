package main

import (
	"context"
	"time"

	"github.com/clearance/clearance/pkg/cli"
	"github.com/clearance/clearance/verifier/config"
	"github.com/clearance/clearance/verifier/enroll"
	"github.com/clearance/clearance/verifier/storage"
)

// scepCmd makes one-time SCEP challenges by writing to the database directly.
func (a *app) scepCmd() *cli.Command {
	return &cli.Command{
		Name:    "scep",
		Summary: "make one-time SCEP challenges for user-scope profiles",
		Commands: []*cli.Command{{
			Name:    "challenge",
			Summary: "print a new one-time SCEP challenge (shown only once)",
			Doc: "Prints a new one-time SCEP challenge as the last line of standard output, for a user-scope " +
				"profile (profile user-scope --challenge). Only its hash is kept; the first browser certificate " +
				"issued with it uses it up. " + databaseDoc,
			Footer: config.SharedFooter,
			Flags: func(fs *cli.FlagSet) cli.Action {
				b := config.Bind(fs, databaseSettings...)
				fs.Group("Challenge")
				ttl := fs.Duration("ttl", enroll.DefaultChallengeTTL, "how long the challenge can be used, from 1m to 720h")
				return func(ctx context.Context, _ []string) error {
					return a.withStore(ctx, b, func(store storage.Store) error {
						challenge, expires, err := enroll.CreateChallenge(ctx, store, *ttl, "cli", a.now())
						if err != nil {
							return err
						}
						a.announce(challenge, "Created a one-time SCEP challenge, usable until %s. It is shown only once:\n", expires.UTC().Format(time.RFC3339))
						return nil
					})
				}
			},
		}},
	}
}
