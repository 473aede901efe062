package sqlstore

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

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

// ListAudit returns the events matching f, newest first: by At, then by
// order of appending.
func (s *Store) ListAudit(ctx context.Context, f storage.AuditFilter) ([]storage.AuditEvent, error) {
	q, args := listAuditQuery(f)
	events, err := list(ctx, s.reader(), scanAudit, q, args...)
	if err != nil {
		return nil, fmt.Errorf("listing audit: %w", err)
	}
	return events, nil
}

// listAuditQuery builds the query for f and its arguments (times outside
// the storable range: see filter.between).
func listAuditQuery(f storage.AuditFilter) (string, []any) {
	var w filter
	if f.DeviceID != "" {
		w.add("device_id = ?", f.DeviceID)
	}
	if f.DevicePrefix != "" {
		// A range, so that audit_device_id_at serves it: device_id
		// compares bytewise in both engines (COLLATE "C" in PostgreSQL),
		// and UTF-8's byte order is its code points' order.
		w.add("device_id >= ?", f.DevicePrefix)
		if end, ok := prefixEnd(f.DevicePrefix); ok {
			w.add("device_id < ?", end)
		}
	}
	if f.Actor != "" {
		w.add("actor = ?", f.Actor)
	}
	switch a := f.Action; {
	case a == "":
	case strings.HasSuffix(a, "."):
		// substr counts characters in both engines; the length is ours.
		w.add("substr(action, 1, "+strconv.Itoa(utf8.RuneCountInString(a))+") = ?", a)
	default:
		w.add("action = ?", a)
	}
	w.between("at", f.Since, f.Until)
	if f.BeforeID > 0 {
		switch {
		case f.BeforeAt.Before(minTime):
			w.conds = append(w.conds, nothing)
		case f.BeforeAt.After(maxTime):
		default:
			at := f.BeforeAt.UnixNano()
			w.args = append(w.args, at, f.BeforeID)
			n := len(w.args)
			w.conds = append(w.conds, fmt.Sprintf("(at < $%d OR (at = $%d AND id < $%d))", n-1, n-1, n))
		}
	}
	limit := f.Limit
	if limit <= 0 {
		limit = storage.DefaultAuditLimit
	}
	return w.query(`SELECT id, at, actor, action, device_id, detail FROM audit`, `at DESC, id DESC`,
		min(limit, storage.MaxAuditLimit))
}

// prefixEnd is the least string greater than every string that starts with
// p, in code point order: p with its last character replaced by the next
// one (after dropping trailing U+10FFFF). ok is false when there is none.
func prefixEnd(p string) (end string, ok bool) {
	r := []rune(p)
	for len(r) > 0 {
		last := r[len(r)-1]
		r = r[:len(r)-1]
		switch {
		case last == utf8.MaxRune:
			continue
		case last == 0xD7FF: // the next code point is a surrogate
			return string(append(r, 0xE000)), true
		}
		return string(append(r, last+1)), true
	}
	return "", false
}

// DeleteAuditBefore removes the events recorded strictly before the given
// time.
func (s *Store) DeleteAuditBefore(ctx context.Context, before time.Time) (int, error) {
	n, err := s.deleteBefore(ctx, `DELETE FROM audit WHERE at < $1`, before)
	if err != nil {
		return 0, fmt.Errorf("deleting audit: %w", err)
	}
	return n, nil
}

func scanAudit(sc scanner) (storage.AuditEvent, error) {
	var (
		e  storage.AuditEvent
		at int64
	)
	err := sc.Scan(&e.ID, &at, &e.Actor, &e.Action, &e.DeviceID, &e.Detail)
	e.At = fromNS(at)
	return e, err
}
