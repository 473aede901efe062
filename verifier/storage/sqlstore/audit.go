package sqlstore

import (
	"context"
	"fmt"

	"github.com/clearance/clearance/verifier/storage"
)

func insertAudit(ctx context.Context, q conn, e storage.AuditEvent) error {
	var c timeCodec
	at := c.ns("audit time", e.At)
	if c.err != nil {
		return fmt.Errorf("appending audit: %w", c.err)
	}
	if _, err := q.exec(ctx,
		`INSERT INTO audit (at, actor, action, device_id, detail) VALUES ($1, $2, $3, $4, $5)`,
		at, e.Actor, e.Action, e.DeviceID, e.Detail); err != nil {
		return fmt.Errorf("appending audit: %w", err)
	}
	return nil
}

// AppendAudit appends one event.
func (s *Store) AppendAudit(ctx context.Context, e storage.AuditEvent) error {
	return insertAudit(ctx, s.writer(), e)
}

// ListAudit returns up to limit (clamped to [1, 1000]) events, newest
// first: by At, then by order of appending. deviceID filters when set.
func (s *Store) ListAudit(ctx context.Context, deviceID string, limit int) ([]storage.AuditEvent, error) {
	q := `SELECT at, actor, action, device_id, detail FROM audit ORDER BY at DESC, id DESC LIMIT $1`
	args := []any{clampLimit(limit)}
	if deviceID != "" {
		q = `SELECT at, actor, action, device_id, detail FROM audit WHERE device_id = $2
			ORDER BY at DESC, id DESC LIMIT $1`
		args = append(args, deviceID)
	}
	events, err := list(ctx, s.reader(), scanAudit, q, args...)
	if err != nil {
		return nil, fmt.Errorf("listing audit: %w", err)
	}
	return events, nil
}

func scanAudit(sc scanner) (storage.AuditEvent, error) {
	var (
		e  storage.AuditEvent
		at int64
	)
	err := sc.Scan(&at, &e.Actor, &e.Action, &e.DeviceID, &e.Detail)
	e.At = fromNS(at)
	return e, err
}
