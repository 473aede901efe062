package sqlstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/clearance/clearance/verifier/storage"
)

const oktaSignInColumns = `uuid, published, event_type, username, client_ip, user_agent, os, outcome,
	decision_id, unmatched, seen_at`

func scanOktaSignIn(sc scanner) (storage.OktaSignIn, error) {
	var (
		e                 storage.OktaSignIn
		published, seenAt int64
	)
	if err := sc.Scan(&e.UUID, &published, &e.EventType, &e.Username, &e.ClientIP, &e.UserAgent, &e.OS,
		&e.Outcome, &e.DecisionID, &e.Unmatched, &seenAt); err != nil {
		return storage.OktaSignIn{}, err
	}
	e.Published, e.SeenAt = fromNS(published), fromNS(seenAt)
	return e, nil
}

// OktaCursor returns the cursor stored under name, or ErrNotFound.
func (s *Store) OktaCursor(ctx context.Context, name string) (string, error) {
	return one(ctx, s.reader(), scanString, "okta cursor", fmt.Sprintf("okta cursor %q", name),
		`SELECT value FROM okta_cursors WHERE name = $1`, name)
}

// SaveOktaLogPage stores the events not stored yet and the cursor, in one
// transaction, and returns the UUIDs it stored.
func (s *Store) SaveOktaLogPage(ctx context.Context, cursorName, cursor string, at time.Time, events []storage.OktaSignIn) ([]string, error) {
	fail := func(err error) ([]string, error) { return nil, fmt.Errorf("saving okta log page: %w", err) }
	if err := checkTexts(true, textField{"cursor name", cursorName}); err != nil {
		return fail(err)
	}
	if err := checkText("cursor", cursor, storage.MaxOktaCursorLen); err != nil {
		return fail(err)
	}
	if len(events) > storage.MaxOktaPage {
		return fail(fmt.Errorf("%d events, more than the %d a page holds", len(events), storage.MaxOktaPage))
	}
	var tc timeCodec
	updatedAt := tc.ns("cursor time", at)
	args := make([][]any, len(events))
	for i, e := range events {
		if err := checkTexts(true, textField{"event uuid", e.UUID}); err != nil {
			return fail(err)
		}
		if err := checkTexts(false, textField{"event type", e.EventType}, textField{"username", e.Username},
			textField{"client IP", e.ClientIP}, textField{"user agent", e.UserAgent}, textField{"OS", e.OS},
			textField{"outcome", e.Outcome}); err != nil {
			return fail(err)
		}
		if e.DecisionID < 0 {
			return fail(errors.New("negative decision ID"))
		}
		args[i] = []any{e.UUID, tc.ns("published", e.Published), e.EventType, e.Username, e.ClientIP, e.UserAgent,
			e.OS, e.Outcome, e.DecisionID, e.Unmatched, tc.ns("seen at", e.SeenAt)}
	}
	if tc.err != nil {
		return fail(tc.err)
	}
	var added []string
	err := s.write(ctx, func(q conn) error {
		added = added[:0]
		for i, a := range args {
			res, err := q.exec(ctx, `INSERT INTO okta_sign_ins (`+oktaSignInColumns+`)
				VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT (uuid) DO NOTHING`, a...)
			if err != nil {
				return err
			}
			if n, err := res.RowsAffected(); err != nil {
				return err
			} else if n == 1 {
				added = append(added, events[i].UUID)
			}
		}
		_, err := q.exec(ctx, `INSERT INTO okta_cursors (name, value, updated_at) VALUES ($1, $2, $3)
			ON CONFLICT (name) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at`,
			cursorName, cursor, updatedAt)
		return err
	})
	if err != nil {
		return fail(err)
	}
	return added, nil
}

// ListOktaSignIns returns the matching events, newest published first.
func (s *Store) ListOktaSignIns(ctx context.Context, f storage.OktaSignInFilter) ([]storage.OktaSignIn, error) {
	var w filter
	if f.Unmatched {
		w.add("unmatched = ?", true)
	}
	if f.DecisionID != 0 {
		w.add("decision_id = ?", f.DecisionID)
	}
	if !f.Since.IsZero() && !f.Since.Before(minTime) {
		if f.Since.After(maxTime) {
			return []storage.OktaSignIn{}, nil
		}
		w.add("published >= ?", f.Since.UnixNano())
	}
	q, args := w.query(`SELECT `+oktaSignInColumns+` FROM okta_sign_ins`, `published DESC, uuid`, decisionLimit(f.Limit))
	out, err := list(ctx, s.reader(), scanOktaSignIn, q, args...)
	if err != nil {
		return nil, fmt.Errorf("listing okta sign-ins: %w", err)
	}
	return out, nil
}

// DeleteOktaSignInsBefore removes events published strictly before the
// given time.
func (s *Store) DeleteOktaSignInsBefore(ctx context.Context, before time.Time) (int, error) {
	n, err := s.deleteBefore(ctx, `DELETE FROM okta_sign_ins WHERE published < $1`, before)
	if err != nil {
		return 0, fmt.Errorf("deleting okta sign-ins: %w", err)
	}
	return n, nil
}
