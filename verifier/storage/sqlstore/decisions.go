package sqlstore

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/clearance/clearance/verifier/storage"
)

// decisionValueColumns are the decisions table's columns but id, in
// decisionArgs' order.
const decisionValueColumns = `at, username, device_id, cert_serial, allow, reason, results,
	policy_set_version, report_seq, live_check, latency_ns, source, request_id, binding, score, client_ip, user_agent, mode, claimed_device_id, user_not_bound`

// decisionColumns are the decisions table's columns in scanDecision's order.
const decisionColumns = `id, ` + decisionValueColumns

// Every sign-in appends one.
var insertDecision = prepared(`INSERT INTO decisions (` + decisionValueColumns + `)
	VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20) RETURNING id`)

// decisionArgs checks d and returns its values in decisionValueColumns'
// order, Results encoded as JSON.
func decisionArgs(d storage.DecisionRecord) ([]any, error) {
	if err := checkTexts(false, textField{"username", d.Username}, textField{"device ID", d.DeviceID}, textField{"claimed device ID", d.ClaimedDeviceID},
		textField{"cert serial", d.CertSerial}, textField{"reason", d.Reason},
		textField{"policy set version", d.PolicySetVersion}, textField{"live check", d.LiveCheck},
		textField{"source", d.Source}, textField{"request ID", d.RequestID}, textField{"binding", d.Binding},
		textField{"client IP", d.ClientIP}, textField{"user agent", d.UserAgent}, textField{"mode", d.Mode}); err != nil {
		return nil, err
	}
	// Both engines' integers are signed; no real seq gets near this.
	if d.ReportSeq > math.MaxInt64 {
		return nil, fmt.Errorf("report seq %d exceeds the storable maximum %d", d.ReportSeq, int64(math.MaxInt64))
	}
	results := d.Results
	if results == nil {
		results = []storage.DecisionResult{} // "[]", not "null"
	}
	js, err := json.Marshal(results)
	if err != nil {
		return nil, fmt.Errorf("encoding results: %w", err)
	}
	if len(js) > storage.MaxDecisionResultsLen {
		return nil, fmt.Errorf("results are %d bytes as JSON, more than the %d allowed", len(js), storage.MaxDecisionResultsLen)
	}
	if d.Score < 0 || d.Score > 100 {
		return nil, fmt.Errorf("score %d is not between 0 and 100", d.Score)
	}
	var c timeCodec
	at := c.ns("decision time", d.At)
	if c.err != nil {
		return nil, c.err
	}
	return []any{at, d.Username, d.DeviceID, d.CertSerial, d.Allow, d.Reason, string(js),
		d.PolicySetVersion, int64(d.ReportSeq), d.LiveCheck, int64(d.Latency), d.Source, d.RequestID, d.Binding, d.Score, d.ClientIP, d.UserAgent, d.Mode, d.ClaimedDeviceID, d.UserNotBound}, nil
}

func scanDecision(sc scanner) (storage.DecisionRecord, error) {
	var (
		d                storage.DecisionRecord
		at, seq, latency int64
		results          string
	)
	if err := sc.Scan(&d.ID, &at, &d.Username, &d.DeviceID, &d.CertSerial, &d.Allow, &d.Reason,
		&results, &d.PolicySetVersion, &seq, &d.LiveCheck, &latency, &d.Source, &d.RequestID, &d.Binding, &d.Score, &d.ClientIP, &d.UserAgent, &d.Mode, &d.ClaimedDeviceID, &d.UserNotBound); err != nil {
		return storage.DecisionRecord{}, err
	}
	if err := json.Unmarshal([]byte(results), &d.Results); err != nil {
		return storage.DecisionRecord{}, fmt.Errorf("decoding results of decision %d: %w", d.ID, err)
	}
	if len(d.Results) == 0 {
		d.Results = nil
	}
	d.At = fromNS(at)
	d.ReportSeq = uint64(seq) // never negative: CHECK (report_seq >= 0)
	d.Latency = time.Duration(latency)
	return d, nil
}

// AppendDecision stores d and returns its new ID.
func (s *Store) AppendDecision(ctx context.Context, d storage.DecisionRecord) (int64, error) {
	args, err := decisionArgs(d)
	if err != nil {
		return 0, fmt.Errorf("appending decision: %w", err)
	}
	var id int64
	err = s.groupedOne(ctx, func(ctx context.Context, q conn) error {
		return q.queryRow(ctx, insertDecision, args...).Scan(&id)
	})
	if err != nil {
		return 0, fmt.Errorf("appending decision: %w", err)
	}
	return id, nil
}

var _ storage.LazyDecisionAppender = (*Store)(nil)

// AppendDecisionLazy stores d (see storage.LazyDecisionAppender). With a
// group commit that can sync after the fact (SetLazySync), d is committed
// without waiting for an fsync, and durable waits for one that began after
// the commit: decisions committed before an fsync began share it.
// Otherwise d is durable when it returns, and durable returns nil at once.
func (s *Store) AppendDecisionLazy(ctx context.Context, d storage.DecisionRecord) (int64, func(context.Context) error, error) {
	if s.group == nil || s.syncLazy == nil || s.lazyMark == nil {
		id, err := s.AppendDecision(ctx, d)
		return id, func(context.Context) error { return nil }, err
	}
	args, err := decisionArgs(d)
	if err != nil {
		return 0, nil, fmt.Errorf("appending decision: %w", err)
	}
	var id int64
	err = s.groupedOneLazy(ctx, func(ctx context.Context, q conn) error {
		return q.queryRow(ctx, insertDecision, args...).Scan(&id)
	})
	if err != nil {
		return 0, nil, fmt.Errorf("appending decision: %w", err)
	}
	// Read once the commit has returned: it counts it.
	mark := s.lazyMark()
	sync := s.syncLazy
	return id, func(ctx context.Context) error {
		if err := sync(ctx, mark); err != nil {
			return fmt.Errorf("making decision %d durable: %w", id, err)
		}
		return nil
	}, nil
}

var _ storage.DecisionBatcher = (*Store)(nil)

// AppendDecisions stores ds in one transaction (see storage.DecisionBatcher).
func (s *Store) AppendDecisions(ctx context.Context, ds []storage.DecisionRecord) error {
	rows := make([][]any, 0, len(ds))
	for i, d := range ds {
		args, err := decisionArgs(d)
		if err != nil {
			return fmt.Errorf("appending decision %d of %d: %w", i+1, len(ds), err)
		}
		rows = append(rows, args)
	}
	if len(rows) == 0 {
		return nil
	}
	err := s.grouped(ctx, func(ctx context.Context, q conn) error {
		for _, args := range rows {
			if _, err := q.exec(ctx, insertDecision, args...); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("appending %d decisions: %w", len(ds), err)
	}
	return nil
}

// ListDecisions returns the decisions matching f, newest (highest ID) first.
func (s *Store) ListDecisions(ctx context.Context, f storage.DecisionFilter) ([]storage.DecisionRecord, error) {
	q, args := listDecisionsQuery(f, s.d.ASCIILower)
	ds, err := list(ctx, s.reader(), scanDecision, q, args...)
	if err != nil {
		return nil, fmt.Errorf("listing decisions: %w", err)
	}
	return ds, nil
}

// listDecisionsQuery builds the query for f, newest first, and its
// arguments (times outside the storable range: see filter.between).
func listDecisionsQuery(f storage.DecisionFilter, asciiLower func(string) string) (string, []any) {
	var w filter
	if f.Username != "" {
		// Any case of A–Z, as a sign-in's exemptions and bindings match
		// the username, by the index on the same expression.
		w.add(asciiLower("username")+" = ?", storage.UserNameKey(f.Username))
	}
	if f.DeviceID != "" {
		w.add("device_id = ?", f.DeviceID)
	}
	if f.ClaimedDeviceID != "" {
		// "<> ''" as the partial index decisions_claimed_device_id says
		// it, so that both engines know the index holds every match.
		w.add("claimed_device_id = ?", f.ClaimedDeviceID)
		w.conds = append(w.conds, "claimed_device_id <> ''")
	}
	if f.Allow != nil {
		w.add("allow = ?", *f.Allow)
	}
	if f.UserNotBound {
		// As the partial index decisions_user_not_bound says it.
		w.conds = append(w.conds, "user_not_bound")
	}
	if f.Bound {
		w.conds = append(w.conds, "NOT user_not_bound")
	}
	if f.SignIns {
		w.add("source <> ?", storage.SourceCloudflare)
	}
	if f.Cloudflare {
		w.add("source = ?", storage.SourceCloudflare)
	}
	if len(f.Modes) > 0 {
		var in []string
		for _, m := range f.Modes {
			w.args = append(w.args, m)
			in = append(in, "$"+strconv.Itoa(len(w.args)))
		}
		w.conds = append(w.conds, "mode IN ("+strings.Join(in, ", ")+")")
	}
	w.between("at", f.Since, f.Until)
	if f.BeforeID > 0 {
		w.add("id < ?", f.BeforeID)
	}
	return w.query(`SELECT `+decisionColumns+` FROM decisions`, `id DESC`, decisionLimit(f.Limit))
}

// decisionLimit is the number of decisions a List with this limit returns
// at most: DefaultDecisionLimit for <= 0, capped at MaxDecisionLimit.
func decisionLimit(limit int) int {
	if limit <= 0 {
		return storage.DefaultDecisionLimit
	}
	return min(limit, storage.MaxDecisionLimit)
}

// DeleteDecisionsBefore removes decisions made strictly before the given
// time.
func (s *Store) DeleteDecisionsBefore(ctx context.Context, before time.Time) (int, error) {
	n, err := s.deleteBefore(ctx, `DELETE FROM decisions WHERE at < $1`, before)
	if err != nil {
		return 0, fmt.Errorf("deleting decisions: %w", err)
	}
	return n, nil
}
