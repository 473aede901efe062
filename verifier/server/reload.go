package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"

	"github.com/clearance/clearance/pkg/printable"
	adminv1 "github.com/clearance/clearance/proto/gen/clearance/admin/v1"
	"github.com/clearance/clearance/verifier/admin"
	"github.com/clearance/clearance/verifier/config"
	"github.com/clearance/clearance/verifier/decision"
	"github.com/clearance/clearance/verifier/metrics"
	"github.com/clearance/clearance/verifier/storage"
)

// WithSettingsReread lets Reload read the settings again: reread resolves
// the same flags and environment with the settings file as it is now (serve
// passes its binding's Resolve). Without it Reload reads the policy file
// alone.
func WithSettingsReread(reread func() (*config.Config, error)) Option {
	return func(s *Server) { s.reread = reread }
}

// hostName names this replica in the audit events it writes of itself.
func hostName() string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		return "an unnamed host"
	}
	return printable.Line(h)
}

// StartActor is the audit actor of what a start puts in force
// (verifier.start): the enforcement ceiling and the policy set.
const StartActor = "serve"

// liveSettings are the settings a reload puts in force; any other setting
// changed in the settings file waits for a restart.
var liveSettings = map[string]bool{"enforcement": true}

// Reload is SIGHUP's work: it reads the settings file again and puts a
// changed enforcement ceiling in force, then re-reads the policy file and
// pushes it to connected agents. A settings file that does not resolve
// changes nothing and the policy file is still read: they are separate
// files, and a fixed policy file should not wait for the other. It
// returns the errors of both.
func (s *Server) Reload(ctx context.Context) error {
	log := s.log.With("component", "server")
	ctx = admin.InProcess(ctx, admin.SighupActor)
	serr := s.reloadSettings(ctx, log)
	perr := s.reloadPolicies(ctx)
	log.Info("enforcement ceiling", "enforcement", string(s.Rollout.CurrentCeiling()))
	return errors.Join(serr, perr)
}

func (s *Server) reloadPolicies(ctx context.Context) error {
	// The admin service logs a refused file (policy reload failed) and an
	// audit log that could not record the reload.
	_, err := s.admin.ReloadPolicies(ctx, &adminv1.ReloadPoliciesRequest{})
	return err
}

// reloadSettings reads the settings again and applies what can change
// live. Changes are found against the settings the process started with
// (s.cfg) for those that need a restart, so every reload says again what a
// restart would apply; the ceiling against the one in force.
func (s *Server) reloadSettings(ctx context.Context, log *slog.Logger) (err error) {
	if s.reread == nil || s.cfg.SettingsFile() == "" {
		return nil
	}
	// Counted once it is known whether what the file says is in force: a
	// ceiling the audit log could not record is not, and counts as failed.
	defer func() { s.Metrics.Reloaded(metrics.ReloadSettings, err, s.now()) }()
	next, err := s.reread()
	if err != nil {
		log.Error("settings file not reloaded: nothing in it is applied until it reads cleanly", "file", s.cfg.SettingsFile(), "err", err)
		return err
	}
	changed, outranked := s.cfg.Compare(next)
	var restart []string
	for _, k := range changed {
		if !liveSettings[k] {
			restart = append(restart, k)
		}
	}
	if len(restart) > 0 {
		// Names only: some settings are secrets.
		log.Warn("changed in the settings file; restart to apply", "file", s.cfg.SettingsFile(), "settings", restart)
	}
	for _, o := range outranked {
		log.Warn("set in the settings file, but a flag or environment variable sets it instead; restart without it to apply the file's value",
			"setting", o.Key, "set_by", o.By)
	}
	ceiling := decision.Enforcement(next.Enforcement).Lower(decision.Enforce)
	if was := s.Rollout.CurrentCeiling(); was != ceiling {
		// It changes what every failing Mac meets: recorded in the audit
		// log first, and put in force only once recorded, so the log never
		// says a ceiling other than the one in force. A store that cannot
		// take it leaves the ceiling as it was, until the next SIGHUP.
		ev := storage.AuditEvent{At: s.now(), Actor: admin.CallerFrom(ctx).Actor(), Action: "settings.enforcement",
			Detail: fmt.Sprintf("enforcement ceiling %s, was %s (settings file %s, on %s)", ceiling, was, s.cfg.SettingsFile(), hostName())}
		if err := s.Store.AppendAudit(context.WithoutCancel(ctx), ev); err != nil {
			log.Error("enforcement ceiling not changed: the audit log could not record the change; send SIGHUP again once the store answers",
				"from", string(was), "to", string(ceiling), "err", err)
			return fmt.Errorf("recording the enforcement ceiling's change: %w", err)
		}
		s.Rollout.SetCeiling(ceiling)
		s.Metrics.EnforcementCeiling(string(ceiling))
		log.Warn("enforcement ceiling changed", "from", string(was), "to", string(ceiling), "set_by", next.SetBy("enforcement"))
	}
	return nil
}
