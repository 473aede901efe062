package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"strconv"
	"time"

	"github.com/clearance/clearance/verifier/storage"
	"github.com/clearance/clearance/verifier/storage/internal/sqlrow"
)

// AppendDecision stores d and returns its new ID.
func (s *Store) AppendDecision(ctx context.Context, d storage.DecisionRecord) (int64, error) {
	args, err := sqlrow.DecisionArgs(d)
	if err != nil {
		return 0, fmt.Errorf("appending decision: %w", err)
	}
	// Every sign-in appends one: committed with whatever else is waiting
	// (see groupcommit.go), so concurrent sign-ins share an fsync.
	var id int64
	err = s.reports.do(ctx, func(ctx context.Context, tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `INSERT INTO decisions (`+sqlrow.DecisionValueColumns+`)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, args...)
		if err != nil {
			return err
		}
		id, err = res.LastInsertId()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("appending decision: %w", err)
	}
	return id, nil
}

// ListDecisions returns the decisions matching f, newest (highest ID) first.
func (s *Store) ListDecisions(ctx context.Context, f storage.DecisionFilter) ([]storage.DecisionRecord, error) {
	q, args := sqlrow.ListDecisionsQuery(f, func(n int) string { return "?" + strconv.Itoa(n) })
	rows, err := s.r.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("listing decisions: %w", err)
	}
	defer rows.Close()
	ds := []storage.DecisionRecord{}
	for rows.Next() {
		d, err := sqlrow.ScanDecision(rows)
		if err != nil {
			return nil, fmt.Errorf("listing decisions: %w", err)
		}
		ds = append(ds, d)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing decisions: %w", err)
	}
	return ds, nil
}

// DeleteDecisionsBefore removes decisions made strictly before the given
// time.
func (s *Store) DeleteDecisionsBefore(ctx context.Context, before time.Time) (int, error) {
	n, err := s.deleteBefore(ctx, `DELETE FROM decisions WHERE at < ?`, before)
	if err != nil {
		return 0, fmt.Errorf("deleting decisions: %w", err)
	}
	return n, nil
}
