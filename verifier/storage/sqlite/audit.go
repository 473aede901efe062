package sqlite

import (
	"context"
	"fmt"

	"github.com/clearance/clearance/verifier/storage"
	"github.com/clearance/clearance/verifier/storage/internal/sqlrow"
)

func insertAudit(ctx context.Context, q querier, e storage.AuditEvent) error {
	var c sqlrow.TimeCodec
	at := c.NS("audit time", e.At)
	if c.Err != nil {
		return fmt.Errorf("appending audit: %w", c.Err)
	}
	if _, err := q.ExecContext(ctx,
		`INSERT INTO audit (at, actor, action, device_id, detail) VALUES (?, ?, ?, ?, ?)`,
		at, e.Actor, e.Action, e.DeviceID, e.Detail); err != nil {
		return fmt.Errorf("appending audit: %w", err)
	}
	return nil
}

// AppendAudit appends one event.
func (s *Store) AppendAudit(ctx context.Context, e storage.AuditEvent) error {
	return insertAudit(ctx, s.w, e)
}

// ListAudit returns up to limit (clamped to [1, 1000]) events, newest
// first: by At, then by order of appending. deviceID filters when set.
func (s *Store) ListAudit(ctx context.Context, deviceID string, limit int) ([]storage.AuditEvent, error) {
	q := `SELECT at, actor, action, device_id, detail FROM audit ORDER BY at DESC, id DESC LIMIT ?`
	args := []any{sqlrow.ClampLimit(limit)}
	if deviceID != "" {
		q = `SELECT at, actor, action, device_id, detail FROM audit WHERE device_id = ?
			ORDER BY at DESC, id DESC LIMIT ?`
		args = []any{deviceID, sqlrow.ClampLimit(limit)}
	}
	rows, err := s.r.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("listing audit: %w", err)
	}
	defer rows.Close()
	events := []storage.AuditEvent{}
	for rows.Next() {
		var (
			e  storage.AuditEvent
			at int64
		)
		if err := rows.Scan(&at, &e.Actor, &e.Action, &e.DeviceID, &e.Detail); err != nil {
			return nil, fmt.Errorf("listing audit: %w", err)
		}
		e.At = sqlrow.FromNS(at)
		events = append(events, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing audit: %w", err)
	}
	return events, nil
}
