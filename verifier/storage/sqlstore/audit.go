package sqlstore

import (
	"context"
	"fmt"
	"time"

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

// insertAuditOf appends audit under deviceID, the device of the record it
// is about, unless the caller named one.
func insertAuditOf(ctx context.Context, q conn, audit storage.AuditEvent, deviceID string) error {
	if audit.DeviceID == "" {
		audit.DeviceID = deviceID
	}
	return insertAudit(ctx, q, audit)
}

// insertAudited inserts the what named key, as insert does, and appends
// audit, in one write transaction.
func (s *Store) insertAudited(ctx context.Context, audit storage.AuditEvent, what, key, query string, args ...any) error {
	return s.write(ctx, func(q conn) error {
		if _, err := q.insert(ctx, what, key, query, args...); err != nil {
			return err
		}
		return insertAudit(ctx, q, audit)
	})
}

// updateAudited runs query, an UPDATE of the what that get reads, then
// reads it back and appends audit, in one write transaction. The update
// may change nothing (a revocation made before): the request is audited
// either way. An event that names no device takes device's (when set) for
// the record read back.
func updateAudited[T any](ctx context.Context, s *Store, audit storage.AuditEvent, what string,
	get func(q conn) (T, error), device func(T) string, query string, args ...any) (T, error) {
	var out T
	err := s.write(ctx, func(q conn) error {
		if _, err := q.exec(ctx, query, args...); err != nil {
			return fmt.Errorf("updating %s: %w", what, err)
		}
		var err error
		if out, err = get(q); err != nil {
			return err
		}
		if audit.DeviceID == "" && device != nil {
			audit.DeviceID = device(out)
		}
		return insertAudit(ctx, q, audit)
	})
	return out, err
}

// revokeOnce sets the revoked_at of the what id in table (a fixed name,
// never caller input) to at unless it is set, so that the first
// revocation stands, and returns the record as get reads it after, with
// audit appended either way.
func revokeOnce[T any](ctx context.Context, s *Store, audit storage.AuditEvent, what, table, id string, at time.Time,
	get func(ctx context.Context, q conn, id string) (T, error)) (T, error) {
	var zero T
	revokedAt, err := revocationNS(at)
	if err != nil {
		return zero, fmt.Errorf("revoking %s: %w", what, err)
	}
	out, err := updateAudited(ctx, s, audit, what, func(q conn) (T, error) { return get(ctx, q, id) }, nil,
		`UPDATE `+table+` SET revoked_at = $1 WHERE id = $2 AND revoked_at = 0`, revokedAt, id)
	if err != nil {
		return zero, fmt.Errorf("revoking %s: %w", what, err)
	}
	return out, nil
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
