package server

import (
	"context"
	"log/slog"
	"os"

	"github.com/clearance/clearance/pkg/run"

	"github.com/clearance/clearance/verifier/admin"
	"github.com/clearance/clearance/verifier/config"
	"github.com/clearance/clearance/verifier/oktaapi"
)

// buildOkta makes the Okta API client when an org is configured. A
// credential that cannot be read stops the start: the operator asked for
// the sync and the sign-in correlation, and would otherwise not notice.
func (s *Server) buildOkta(cfg *config.Config, log *slog.Logger) error {
	if cfg.OktaOrgURL == "" {
		return nil
	}
	c, method, err := oktaapi.New(oktaapi.Settings{
		OrgURL: cfg.OktaOrgURL, APITokenFile: cfg.OktaAPITokenFile,
		ClientID: cfg.OktaClientID, PrivateKeyFile: cfg.OktaPrivateKeyFile,
		Getenv: os.Getenv, HTTP: s.oktaHTTP,
	})
	if err != nil {
		return err
	}
	c.Log = log.With("component", "oktaapi")
	s.Okta = c
	s.admin.Okta = admin.OktaAPI{Client: c, Credential: method}
	log.Info("okta api configured", "component", "server", "org", c.Org.String(), "credential", method)
	return nil
}

// oktaActors adds the System Log poller and the user and group sync.
func (s *Server) oktaActors(g *run.Group) {
	if s.Okta == nil {
		return
	}
	log := s.log.With("component", "oktaapi")
	poller := &oktaapi.LogPoller{Client: s.Okta, Store: s.Store, Log: log,
		Metrics: oktaapi.NewLogMetrics(s.Metrics.Registry), Interval: s.oktaPoll, AlertEvents: s.cfg.OktaAlertEvents, Now: s.now}
	// The sync writes the user store SCIM fills and sign-in reads.
	syncer := &oktaapi.Syncer{Client: s.Okta, Dir: &oktaapi.StoreDirectory{Store: s.Store, Now: s.now}, State: s.Store, Log: log,
		Interval: s.cfg.OktaSyncInterval, PollInterval: s.oktaPoll, Now: s.now}
	for _, a := range []struct {
		name string
		run  func(context.Context) error
	}{{"okta_log", poller.Run}, {"okta_sync", syncer.Run}} {
		ctx, cancel := context.WithCancel(context.Background())
		g.Add(a.name, func() error { return a.run(ctx) }, func(error) { cancel() })
	}
}
