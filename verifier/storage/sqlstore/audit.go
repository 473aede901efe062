package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/clearance/clearance/verifier/storage"
)

// insertAudit appends e and its subjects. q must be a transaction when e
// has subjects, so that the event never stands without them.
func insertAudit(ctx context.Context, q conn, e storage.AuditEvent) error {
	var c timeCodec
	at := c.ns("audit time", e.At)
	if c.err != nil {
		return fmt.Errorf("appending audit: %w", c.err)
	}
	subjects := auditSubjects(e.Subjects)
	if len(subjects) == 0 {
		if _, err := q.exec(ctx,
			`INSERT INTO audit (at, actor, action, device_id, detail) VALUES ($1, $2, $3, $4, $5)`,
			at, e.Actor, e.Action, e.DeviceID, e.Detail); err != nil {
			return fmt.Errorf("appending audit: %w", err)
		}
		return nil
	}
	if q.tx == nil {
		return errors.New("appending audit: an event with subjects needs a transaction")
	}
	if kept := keptSubjects(subjects); kept < len(subjects) {
		e.Detail += fmt.Sprintf(" (%d people; the first %d named)", len(subjects), kept)
		subjects = subjects[:kept]
	}
	for _, sub := range subjects {
		if err := checkTexts(false, textField{"subject's user id", sub.UserID}, textField{"subject's username", sub.UserName}); err != nil {
			return fmt.Errorf("appending audit: %w", err)
		}
	}
	var id int64
	if err := q.queryRow(ctx,
		`INSERT INTO audit (at, actor, action, device_id, detail) VALUES ($1, $2, $3, $4, $5) RETURNING id`,
		at, e.Actor, e.Action, e.DeviceID, e.Detail).Scan(&id); err != nil {
		return fmt.Errorf("appending audit: %w", err)
	}
	// Several rows a statement: a group deleted names every member.
	for start := 0; start < len(subjects); start += subjectsPerInsert {
		batch := subjects[start:min(start+subjectsPerInsert, len(subjects))]
		var (
			b    strings.Builder
			args = make([]any, 0, 6*len(batch))
		)
		b.WriteString(`INSERT INTO audit_subjects (audit_id, n, at, user_id, user_name, user_name_key) VALUES `)
		for i, sub := range batch {
			if i > 0 {
				b.WriteString(", ")
			}
			k := len(args)
			fmt.Fprintf(&b, "($%d, $%d, $%d, $%d, $%d, $%d)", k+1, k+2, k+3, k+4, k+5, k+6)
			args = append(args, id, start+i, at, sub.UserID, sub.UserName, storage.UserNameKey(sub.UserName))
		}
		if _, err := q.exec(ctx, b.String(), args...); err != nil {
			return fmt.Errorf("appending audit subjects: %w", err)
		}
	}
	return nil
}

// keptSubjects is how many of subjects an event keeps: the first, up to
// storage.MaxAuditSubjects of them and storage.MaxAuditSubjectBytes of
// their ids and usernames.
func keptSubjects(subjects []storage.AuditSubject) int {
	bytes := 0
	for i, sub := range subjects {
		if bytes += len(sub.UserID) + len(sub.UserName); i == storage.MaxAuditSubjects || bytes > storage.MaxAuditSubjectBytes {
			return i
		}
	}
	return len(subjects)
}

// subjectsPerInsert bounds the rows of one INSERT of audit subjects (six
// parameters each: well within both engines' limits).
const subjectsPerInsert = 200

// auditSubjects is ss without the subjects that name no one and without
// repeats, in order.
func auditSubjects(ss []storage.AuditSubject) []storage.AuditSubject {
	out := make([]storage.AuditSubject, 0, len(ss))
	seen := make(map[storage.AuditSubject]bool, len(ss))
	for _, sub := range ss {
		if sub == (storage.AuditSubject{}) || seen[sub] {
			continue
		}
		seen[sub] = true
		out = append(out, sub)
	}
	return out
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

// AppendAudit appends one event, with its subjects in the same
// transaction.
func (s *Store) AppendAudit(ctx context.Context, e storage.AuditEvent) error {
	if len(e.Subjects) == 0 {
		return insertAudit(ctx, s.writer(), e)
	}
	return s.write(ctx, func(q conn) error { return insertAudit(ctx, q, e) })
}

// ListAudit returns the events matching f, newest first: by At, then by
// order of appending, each with its first subjects. The events and their
// subjects are read in one transaction, so that retention cannot come
// between them.
func (s *Store) ListAudit(ctx context.Context, f storage.AuditFilter) ([]storage.AuditEvent, error) {
	q, args := listAuditQuery(f)
	var events []storage.AuditEvent
	err := s.read(ctx, func(c conn) error {
		var err error
		if events, err = list(ctx, c, scanAudit, q, args...); err != nil {
			return err
		}
		return listSubjects(ctx, c, events, f.User)
	})
	if err != nil {
		return nil, fmt.Errorf("listing audit: %w", err)
	}
	return events, nil
}

// listSubjects fills in the events' subjects: at most
// storage.MaxListedAuditSubjects each, those user matches first (as the
// filter matches them: userMatch), then in the order they were appended,
// with the count of the others. Three queries for the page, each reading
// only what it returns: an event's first subjects and its last ordinal by
// the primary key (audit_id, n), and the matching ones by the filter's
// indexes, never every subject of an event about thousands of people.
func listSubjects(ctx context.Context, c conn, events []storage.AuditEvent, user string) error {
	if len(events) == 0 {
		return nil
	}
	ids := func(args []any) ([]any, string) {
		in := make([]string, len(events))
		for i := range events {
			args = append(args, events[i].ID)
			in[i] = "$" + strconv.Itoa(len(args))
		}
		return args, strings.Join(in, ", ")
	}
	byID := make(map[int64]*storage.AuditEvent, len(events))
	for i := range events {
		byID[events[i].ID] = &events[i]
	}
	type row struct {
		id  int64
		n   int
		sub storage.AuditSubject
	}
	scanRow := func(sc scanner) (row, error) {
		var r row
		return r, sc.Scan(&r.id, &r.n, &r.sub.UserID, &r.sub.UserName)
	}
	// The subjects the filter matched, listed first.
	listed := map[int64]map[int]bool{}
	if user != "" && storable(user) {
		cond, args := userMatch(nil, user)
		args, in := ids(args)
		rows, err := list(ctx, c, scanRow, `SELECT audit_id, n, user_id, user_name FROM audit_subjects
			WHERE audit_id IN (`+in+`) AND `+cond+` ORDER BY audit_id, n`, args...)
		if err != nil {
			return fmt.Errorf("reading audit subjects: %w", err)
		}
		for _, r := range rows {
			e := byID[r.id]
			if len(e.Subjects) == storage.MaxListedAuditSubjects {
				continue
			}
			e.Subjects = append(e.Subjects, r.sub)
			if listed[r.id] == nil {
				listed[r.id] = map[int]bool{}
			}
			listed[r.id][r.n] = true
		}
	}
	// Then each event's first, by the order they were appended.
	args, in := ids(nil)
	rows, err := list(ctx, c, scanRow, `SELECT audit_id, n, user_id, user_name FROM audit_subjects
		WHERE audit_id IN (`+in+`) AND n < `+strconv.Itoa(storage.MaxListedAuditSubjects)+` ORDER BY audit_id, n`, args...)
	if err != nil {
		return fmt.Errorf("reading audit subjects: %w", err)
	}
	for _, r := range rows {
		e := byID[r.id]
		if len(e.Subjects) == storage.MaxListedAuditSubjects || listed[r.id][r.n] {
			continue
		}
		e.Subjects = append(e.Subjects, r.sub)
	}
	// How many each has: its last ordinal, found at the end of its range
	// of the primary key.
	type total struct {
		id   int64
		last sql.NullInt64
	}
	args, in = ids(nil)
	totals, err := list(ctx, c, func(sc scanner) (total, error) {
		var t total
		return t, sc.Scan(&t.id, &t.last)
	}, `SELECT id, (SELECT max(n) FROM audit_subjects WHERE audit_id = audit.id) FROM audit WHERE id IN (`+in+`)`, args...)
	if err != nil {
		return fmt.Errorf("counting audit subjects: %w", err)
	}
	for _, t := range totals {
		if e := byID[t.id]; t.last.Valid {
			e.MoreSubjects = int(t.last.Int64) + 1 - len(e.Subjects)
		}
	}
	return nil
}

// userMatch is the condition on audit_subjects that the user filter
// matches, and its arguments appended to args: the subjects with that
// user id or, when no subject has that id, with that username (folded as
// storage.UserNameKey folds it). An id wins, as the admin API's lookups
// of a person try the id first: a user whose username is someone else's
// id does not join that person's history.
func userMatch(args []any, user string) (string, []any) {
	args = append(args, user, storage.UserNameKey(user))
	n := len(args)
	return fmt.Sprintf("(user_id = $%d OR (user_name_key = $%d AND NOT EXISTS (SELECT 1 FROM audit_subjects WHERE user_id = $%d)))",
		n-1, n, n-1), args
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
	switch {
	case f.User == "":
	case !storable(f.User):
		w.conds = append(w.conds, nothing)
	default:
		// IN, not a join: an event with several matching subjects is
		// one row, so pages neither repeat nor skip it.
		var cond string
		cond, w.args = userMatch(w.args, f.User)
		w.conds = append(w.conds, "id IN (SELECT audit_id FROM audit_subjects WHERE "+cond+")")
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
// time, and their subjects (which carry their event's time) first, in one
// transaction.
func (s *Store) DeleteAuditBefore(ctx context.Context, before time.Time) (int, error) {
	var c timeCodec
	b := c.ns("before", before)
	if c.err != nil {
		return 0, fmt.Errorf("deleting audit: %w", c.err)
	}
	var n int64
	err := s.write(ctx, func(q conn) error {
		if _, err := q.exec(ctx, `DELETE FROM audit_subjects WHERE at < $1`, b); err != nil {
			return err
		}
		res, err := q.exec(ctx, `DELETE FROM audit WHERE at < $1`, b)
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("deleting audit: %w", err)
	}
	return int(n), nil
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
