package server_test

import (
	"context"
	"testing"
	"time"

	"github.com/clearance/clearance/verifier/config"
	"github.com/clearance/clearance/verifier/storage"
)

// TestSweepKeepsTheAuditLogForItsRetention: the sweep deletes audit events
// older than --audit-retention and keeps the rest; a config that leaves
// the setting out keeps the default 400 days, never nothing.
func TestSweepKeepsTheAuditLogForItsRetention(t *testing.T) {
	day := 24 * time.Hour
	for _, tc := range []struct {
		name      string
		retention time.Duration
		kept      time.Duration // the age of the oldest event kept
	}{
		{"configured", 30 * day, 30 * day},
		{"unset", 0, 400 * day},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := startWith(t, func(c *config.Config) { c.AuditRetention = tc.retention })
			ctx := context.Background()
			now := h.clock.Now()
			for _, age := range []time.Duration{tc.kept + time.Second, tc.kept, time.Hour} {
				e := storage.AuditEvent{At: now.Add(-age), Actor: "cli", Action: "secret.create", Detail: age.String()}
				if err := h.srv.Store.AppendAudit(ctx, e); err != nil {
					t.Fatal(err)
				}
			}
			h.srv.Sweep(ctx)
			es, err := h.srv.Store.ListAudit(ctx, storage.AuditFilter{Action: "secret.create"})
			if err != nil {
				t.Fatal(err)
			}
			var ages []string
			for _, e := range es {
				ages = append(ages, e.Detail)
			}
			if len(es) != 2 || es[0].Detail != time.Hour.String() || es[1].Detail != tc.kept.String() {
				t.Errorf("after the sweep the audit log holds %v, want the events %v and %v old", ages, time.Hour, tc.kept)
			}
		})
	}
}
