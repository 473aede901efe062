package sqlstore

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/clearance/clearance/verifier/storage"
)

// StartGrace records at as the device's grace start for the policy unless
// one is recorded, and returns the recorded start. Insert-or-nothing then
// read, in one transaction: concurrent first calls all read the one start
// that was inserted.
func (s *Store) StartGrace(ctx context.Context, deviceID, policyID string, at time.Time) (time.Time, error) {
	fail := func(err error) (time.Time, error) { return time.Time{}, fmt.Errorf("starting grace: %w", err) }
	if err := checkTexts(true, textField{"device ID", deviceID}, textField{"policy ID", policyID}); err != nil {
		return fail(err)
	}
	var tc timeCodec
	n := tc.ns("grace start", at)
	if tc.err != nil {
		return fail(tc.err)
	}
	if n == 0 {
		return fail(errors.New("no time given"))
	}
	var got int64
	err := s.write(ctx, func(q conn) error {
		if _, err := q.exec(ctx, `INSERT INTO policy_grace (device_id, policy_id, started_at) VALUES ($1, $2, $3)
			ON CONFLICT (device_id, policy_id) DO NOTHING`, deviceID, policyID, n); err != nil {
			return err
		}
		return q.queryRow(ctx, `SELECT started_at FROM policy_grace WHERE device_id = $1 AND policy_id = $2`, deviceID, policyID).Scan(&got)
	})
	if err != nil {
		return fail(err)
	}
	return fromNS(got), nil
}

// EndGrace forgets the device's grace start for the policy.
func (s *Store) EndGrace(ctx context.Context, deviceID, policyID string) error {
	if _, err := s.writer().exec(ctx, `DELETE FROM policy_grace WHERE device_id = $1 AND policy_id = $2`, deviceID, policyID); err != nil {
		return fmt.Errorf("ending grace: %w", err)
	}
	return nil
}

// ForgetGraces forgets the grace starts of every policy not in keep.
func (s *Store) ForgetGraces(ctx context.Context, keep []string) (int, error) {
	q := `DELETE FROM policy_grace`
	args := make([]any, len(keep))
	if len(keep) > 0 {
		in := make([]string, len(keep))
		for i, id := range keep {
			in[i], args[i] = "$"+strconv.Itoa(i+1), id
		}
		q += ` WHERE policy_id NOT IN (` + strings.Join(in, ", ") + `)`
	}
	res, err := s.writer().exec(ctx, q, args...)
	if err != nil {
		return 0, fmt.Errorf("forgetting grace starts: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("forgetting grace starts: %w", err)
	}
	return int(n), nil
}

// GraceStarts returns the device's grace starts by policy id.
func (s *Store) GraceStarts(ctx context.Context, deviceID string) (map[string]time.Time, error) {
	return s.timesByPolicy(ctx, "reading grace starts", hotRead(`SELECT policy_id, started_at FROM policy_grace WHERE device_id = $1`), deviceID)
}

// UseBypass records a "Resolve later" unless one after notBefore is
// recorded. The conditional upsert is the arbiter: of concurrent calls, on
// any replica, one changes the row and the others change nothing.
func (s *Store) UseBypass(ctx context.Context, deviceID, policyID, username string, at, notBefore time.Time) error {
	fail := func(err error) error { return fmt.Errorf("recording bypass: %w", err) }
	if err := checkTexts(true, textField{"device ID", deviceID}, textField{"policy ID", policyID}); err != nil {
		return fail(err)
	}
	if err := checkTexts(false, textField{"username", username}); err != nil {
		return fail(err)
	}
	var tc timeCodec
	n, nb := tc.ns("bypass time", at), tc.ns("not before", notBefore)
	if tc.err != nil {
		return fail(tc.err)
	}
	if n == 0 {
		return fail(errors.New("no time given"))
	}
	err := s.write(ctx, func(q conn) error {
		return q.execOne(ctx, storage.ErrAlreadyExists, `INSERT INTO policy_bypasses (device_id, policy_id, username, used_at) VALUES ($1, $2, $3, $4)
			ON CONFLICT (device_id, policy_id) DO UPDATE SET username = excluded.username, used_at = excluded.used_at
			WHERE policy_bypasses.used_at <= $5`, deviceID, policyID, username, n, nb)
	})
	if err != nil {
		return fail(err)
	}
	return nil
}

// Bypasses returns when the device last resolved each policy later.
func (s *Store) Bypasses(ctx context.Context, deviceID string) (map[string]time.Time, error) {
	return s.timesByPolicy(ctx, "reading bypasses", hotRead(`SELECT policy_id, used_at FROM policy_bypasses WHERE device_id = $1`), deviceID)
}

// timesByPolicy runs query, a SELECT of (policy ID, time) rows of deviceID.
func (s *Store) timesByPolicy(ctx context.Context, doing, query, deviceID string) (map[string]time.Time, error) {
	type row struct {
		id string
		at int64
	}
	rows, err := list(ctx, s.reader(), func(sc scanner) (row, error) {
		var r row
		return r, sc.Scan(&r.id, &r.at)
	}, query, deviceID)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", doing, err)
	}
	m := make(map[string]time.Time, len(rows))
	for _, r := range rows {
		m[r.id] = fromNS(r.at)
	}
	return m, nil
}

// exemptionColumns are the exemptions table's columns in scanExemption's
// order.
const exemptionColumns = `id, device_id, username, policy_ids, reason, created_by, created_at, expires_at, revoked_at, revoked_by`

func scanExemption(sc scanner) (storage.Exemption, error) {
	var (
		e                               storage.Exemption
		policies                        string
		createdAt, expiresAt, revokedAt int64
	)
	if err := sc.Scan(&e.ID, &e.DeviceID, &e.Username, &policies, &e.Reason, &e.CreatedBy,
		&createdAt, &expiresAt, &revokedAt, &e.RevokedBy); err != nil {
		return storage.Exemption{}, err
	}
	if policies != "" {
		e.PolicyIDs = strings.Split(policies, ",")
	}
	e.CreatedAt, e.ExpiresAt, e.RevokedAt = fromNS(createdAt), fromNS(expiresAt), fromNS(revokedAt)
	return e, nil
}

// CreateExemption stores e and returns its new ID.
func (s *Store) CreateExemption(ctx context.Context, e storage.Exemption, audit storage.AuditEvent) (int64, error) {
	fail := func(err error) (int64, error) { return 0, fmt.Errorf("creating exemption: %w", err) }
	if (e.DeviceID == "") == (e.Username == "") {
		return fail(errors.New("name exactly one of a device and a user"))
	}
	if err := checkTexts(false, textField{"device ID", e.DeviceID}, textField{"username", e.Username},
		textField{"reason", e.Reason}, textField{"created by", e.CreatedBy}, textField{"audit detail", audit.Detail}); err != nil {
		return fail(err)
	}
	if len(e.PolicyIDs) > storage.MaxExemptionPolicies {
		return fail(fmt.Errorf("%d policies, more than the %d allowed", len(e.PolicyIDs), storage.MaxExemptionPolicies))
	}
	for _, id := range e.PolicyIDs {
		if id == "" || strings.ContainsAny(id, ", ") {
			return fail(fmt.Errorf("policy ID %q is empty or holds a comma or space", id))
		}
	}
	policies := strings.Join(e.PolicyIDs, ",")
	if err := checkText("policies", policies, storage.MaxTextLen); err != nil {
		return fail(err)
	}
	var tc timeCodec
	createdAt, expiresAt := tc.ns("created at", e.CreatedAt), tc.ns("expires at", e.ExpiresAt)
	if tc.err != nil {
		return fail(tc.err)
	}
	if expiresAt == 0 {
		return fail(errors.New("no expiry given"))
	}
	var id int64
	err := s.write(ctx, func(q conn) error {
		if err := q.queryRow(ctx, `INSERT INTO exemptions (device_id, username, policy_ids, reason, created_by, created_at, expires_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id`,
			e.DeviceID, e.Username, policies, e.Reason, e.CreatedBy, createdAt, expiresAt).Scan(&id); err != nil {
			return err
		}
		a := audit
		a.Detail = "exemption " + strconv.FormatInt(id, 10) + ": " + audit.Detail
		return insertAudit(ctx, q, a)
	})
	if err != nil {
		return fail(err)
	}
	return id, nil
}

// GetExemption returns the exemption with this ID.
func (s *Store) GetExemption(ctx context.Context, id int64) (storage.Exemption, error) {
	return one(ctx, s.reader(), scanExemption, "exemption", fmt.Sprintf("exemption %d", id),
		`SELECT `+exemptionColumns+` FROM exemptions WHERE id = $1`, id)
}

// ListExemptions returns the exemptions matching f, newest first.
func (s *Store) ListExemptions(ctx context.Context, f storage.ExemptionFilter) ([]storage.Exemption, error) {
	var w filter
	if f.DeviceID != "" {
		w.add("device_id = ?", f.DeviceID)
	}
	if f.Username != "" {
		w.add("username_key = ?", storage.UserNameKey(f.Username))
	}
	if f.BeforeID > 0 {
		w.add("id < ?", f.BeforeID)
	}
	if !f.ActiveAt.IsZero() {
		if cond, arg, ok := activeAt(f.ActiveAt); ok {
			w.add(cond, arg)
		} else {
			w.conds = append(w.conds, cond)
		}
	}
	q, args := w.query(`SELECT `+exemptionColumns+` FROM exemptions`, `id DESC`, decisionLimit(f.Limit))
	es, err := list(ctx, s.reader(), scanExemption, q, args...)
	if err != nil {
		return nil, fmt.Errorf("listing exemptions: %w", err)
	}
	return es, nil
}

// activeAt is the condition "active at t" with its argument; ok is false
// when t lies outside the storable range and the condition takes none.
func activeAt(t time.Time) (cond string, arg any, ok bool) {
	switch {
	case t.Before(minTime):
		return "revoked_at = 0", nil, false
	case t.After(maxTime):
		return "0 = 1", nil, false
	}
	return "revoked_at = 0 AND expires_at > ?", t.UnixNano(), true
}

// maxExemptionsFor bounds the exemptions one sign-in reads: more than this
// covering one device or user is a mistake, and the newest win.
const maxExemptionsFor = 100

// ExemptionsFor returns the exemptions active at now that cover the device
// or the user.
func (s *Store) ExemptionsFor(ctx context.Context, deviceID, username string, now time.Time) ([]storage.Exemption, error) {
	if deviceID == "" && username == "" {
		return nil, nil
	}
	var tc timeCodec
	n := tc.ns("now", now)
	if tc.err != nil {
		return nil, fmt.Errorf("reading exemptions: %w", tc.err)
	}
	// An empty deviceID or username matches no row: the table's CHECK
	// keeps the unused one of each row empty, and '' <> ''. username_key
	// is username with A-Z folded (storage.UserNameKey), as each backend's
	// schema computes it: a look-alike's rows are never read, so however
	// many there are they cannot crowd the user's own out of the limit.
	es, err := list(ctx, s.reader(), scanExemption, hotRead(`SELECT `+exemptionColumns+` FROM exemptions
		WHERE revoked_at = 0 AND expires_at > $1
		  AND ((device_id <> '' AND device_id = $2) OR (username_key <> '' AND username_key = $3))
		ORDER BY id DESC LIMIT $4`), n, deviceID, storage.UserNameKey(username), maxExemptionsFor)
	if err != nil {
		return nil, fmt.Errorf("reading exemptions: %w", err)
	}
	return es, nil
}

// RevokeExemption ends the exemption at at. The conditional update is the
// arbiter between concurrent revocations.
func (s *Store) RevokeExemption(ctx context.Context, id int64, at time.Time, by string, audit storage.AuditEvent) error {
	fail := func(err error) error { return fmt.Errorf("revoking exemption %d: %w", id, err) }
	if err := checkTexts(false, textField{"revoked by", by}); err != nil {
		return fail(err)
	}
	var tc timeCodec
	n := tc.ns("revoked at", at)
	if tc.err != nil {
		return fail(tc.err)
	}
	if n == 0 {
		return fail(errors.New("no time given"))
	}
	err := s.write(ctx, func(q conn) error {
		switch err := q.execOne(ctx, storage.ErrAlreadyExists,
			`UPDATE exemptions SET revoked_at = $1, revoked_by = $2 WHERE id = $3 AND revoked_at = 0`, n, by, id); {
		case err == nil:
			return insertAudit(ctx, q, audit)
		case !errors.Is(err, storage.ErrAlreadyExists):
			return err
		}
		found, err := exists(ctx, q, `SELECT 1 FROM exemptions WHERE id = $1`, id)
		if err != nil {
			return err
		}
		if !found {
			return storage.ErrNotFound
		}
		return storage.ErrAlreadyExists
	})
	if err != nil {
		return fail(err)
	}
	return nil
}
