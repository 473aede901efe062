package main

import (
	"context"
	"errors"
	"time"

	"github.com/clearance/clearance/pkg/cli"
	"github.com/clearance/clearance/verifier/config"
	"github.com/clearance/clearance/verifier/oktaapi"
)

// oktaStatusCmd shows what the configured Okta API credential can read.
func (a *app) oktaStatusCmd() *cli.Command {
	return &cli.Command{
		Name:    "status",
		Summary: "show what the Okta API credential can read (users, groups, System Log, apps)",
		Doc: "Reads one item of users, groups, the System Log and apps with the configured credential and " +
			"prints each as on, off (Okta answered 403, or the service app was not granted the scope) or error, " +
			"with the scope and the admin role it needs. Exits non-zero unless users, groups and the System Log are on.\n\n" +
			"  clearance-verifier okta status --okta-org-url https://example.okta.com \\\n    --okta-api-token-file /etc/clearance/okta.token",
		Footer: config.SharedFooter,
		Flags: func(fs *cli.FlagSet) cli.Action {
			b := config.Bind(fs, "okta-org-url", "okta-api-token-file", "okta-client-id", "okta-private-key-file")
			return func(ctx context.Context, _ []string) error {
				cfg, err := b.Resolve(a.getenv)
				if err != nil {
					return err
				}
				c, method, err := oktaapi.New(oktaapi.Settings{
					OrgURL: cfg.OktaOrgURL, APITokenFile: cfg.OktaAPITokenFile,
					ClientID: cfg.OktaClientID, PrivateKeyFile: cfg.OktaPrivateKeyFile,
					Scopes: append(oktaapi.DefaultScopes, oktaapi.ScopeApps), Getenv: a.getenv, HTTP: a.oktaHTTP,
				})
				if errors.Is(err, oktaapi.ErrNotConfigured) {
					return cli.Usagef("%v", err)
				}
				if err != nil {
					return err
				}
				ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
				defer cancel()
				caps := c.Status(ctx)
				if err := oktaapi.WriteStatus(a.stdout, c.Org.String(), method, caps); err != nil {
					return err
				}
				for _, cp := range caps {
					if cp.Name != "apps" && cp.State != oktaapi.StateOn {
						return errors.New("the credential cannot read everything the verifier needs")
					}
				}
				return nil
			}
		},
	}
}
