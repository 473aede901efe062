package postgres

import (
	"context"
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
	var id int64
	if err := s.pool.QueryRow(ctx, `INSERT INTO decisions (`+sqlrow.DecisionValueColumns+`)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) RETURNING id`, args...).
		Scan(&id); err != nil {
		return 0, fmt.Errorf("appending decision: %w", err)
	}
	return id, nil
}

// ListDecisions returns the decisions matching f, newest (highest ID) first.
func (s *Store) ListDecisions(ctx context.Context, f storage.DecisionFilter) ([]storage.DecisionRecord, error) {
	q, args := sqlrow.ListDecisionsQuery(f, func(n int) string { return "$" + strconv.Itoa(n) })
	rows, err := s.pool.Query(ctx, q, args...)
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
	n, err := s.deleteBefore(ctx, `DELETE FROM decisions WHERE at < $1`, before)
	if err != nil {
		return 0, fmt.Errorf("deleting decisions: %w", err)
	}
	return n, nil
}
