package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/clearance/clearance/verifier/storage"
)

// signInChallengeColumns are the sign_in_challenges table's columns in
// scanSignInChallenge's order.
const signInChallengeColumns = `challenge_hash, browser_hash, username, request, relay_state,
	device_id, created_at, expires_at, used_at`

// Every sign-in bound by the agent runs these.
var (
	insertSignInChallenge = prepared(`INSERT INTO sign_in_challenges (` + signInChallengeColumns + `)
	VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 0) ON CONFLICT (challenge_hash) DO NOTHING`)
	useSignInChallenge = prepared(`UPDATE sign_in_challenges SET used_at = $1 WHERE challenge_hash = $2 AND used_at = 0
	RETURNING ` + signInChallengeColumns)
)

func scanSignInChallenge(sc scanner) (storage.SignInChallenge, error) {
	var (
		c                            storage.SignInChallenge
		relayState                   []byte
		createdAt, expiresAt, usedAt int64
	)
	if err := sc.Scan(&c.ChallengeHash, &c.BrowserHash, &c.Username, &c.Request, &relayState,
		&c.DeviceID, &createdAt, &expiresAt, &usedAt); err != nil {
		return storage.SignInChallenge{}, err
	}
	c.RelayState = string(relayState)
	c.CreatedAt, c.ExpiresAt, c.UsedAt = fromNS(createdAt), fromNS(expiresAt), fromNS(usedAt)
	return c, nil
}

// CreateSignInChallenge stores c unused; ErrAlreadyExists if its hash is taken.
func (s *Store) CreateSignInChallenge(ctx context.Context, c storage.SignInChallenge) error {
	args, err := signInChallengeArgs(c)
	if err != nil {
		return fmt.Errorf("creating sign-in challenge: %w", err)
	}
	err = s.groupedOne(ctx, func(ctx context.Context, q conn) error {
		return createSignInChallenge(ctx, q, args, storage.ErrAlreadyExists)
	})
	if err != nil {
		return fmt.Errorf("creating sign-in challenge: %w", err)
	}
	return nil
}

// StartSignInChallenge records the request ID and stores the challenge in
// one transaction (in the group commit, one savepoint): a replayed ID ends
// it before the challenge is written, and a taken challenge hash rolls the
// ID back. The request ID's primary key is the arbiter of concurrent
// calls, as in UseRequestID.
func (s *Store) StartSignInChallenge(ctx context.Context, issuer, id string, idExpiresAt time.Time, c storage.SignInChallenge) error {
	idArgs, err := requestIDArgs(issuer, id, idExpiresAt)
	if err != nil {
		return fmt.Errorf("recording request ID: %w", err)
	}
	args, err := signInChallengeArgs(c)
	if err != nil {
		return fmt.Errorf("creating sign-in challenge: %w", err)
	}
	err = s.groupedLazy(ctx, func(ctx context.Context, q conn) error {
		if err := useRequestID(ctx, q, idArgs); err != nil {
			return err
		}
		return createSignInChallenge(ctx, q, args, storage.ErrChallengeTaken)
	})
	if err != nil {
		return fmt.Errorf("recording request ID and sign-in challenge: %w", err)
	}
	return nil
}

// signInChallengeArgs checks c and returns insertSignInChallenge's
// arguments.
func signInChallengeArgs(c storage.SignInChallenge) ([]any, error) {
	if err := checkTokenHash(c.ChallengeHash); err != nil {
		return nil, err
	}
	if err := checkTokenHash(c.BrowserHash); err != nil {
		return nil, err
	}
	if err := checkTexts(false, textField{"username", c.Username}, textField{"device id", c.DeviceID}); err != nil {
		return nil, err
	}
	if len(c.RelayState) > storage.MaxRelayStateLen {
		return nil, fmt.Errorf("relay state is %d bytes, more than the %d allowed", len(c.RelayState), storage.MaxRelayStateLen)
	}
	if len(c.Request) > storage.MaxSignInRequestLen {
		return nil, fmt.Errorf("request is %d bytes, more than the %d allowed", len(c.Request), storage.MaxSignInRequestLen)
	}
	var tc timeCodec
	createdAt, expiresAt := tc.ns("created at", c.CreatedAt), tc.ns("expires at", c.ExpiresAt)
	if tc.err != nil {
		return nil, tc.err
	}
	return []any{c.ChallengeHash, c.BrowserHash, c.Username, blob(c.Request), blob([]byte(c.RelayState)), c.DeviceID, createdAt, expiresAt}, nil
}

// createSignInChallenge inserts the challenge signInChallengeArgs made;
// taken if its hash is stored already.
func createSignInChallenge(ctx context.Context, q conn, args []any, taken error) error {
	res, err := q.exec(ctx, insertSignInChallenge, args...)
	if err != nil {
		return err
	}
	return oneRow(res, taken)
}

// GetSignInChallenge returns the challenge with this hash, or ErrNotFound.
func (s *Store) GetSignInChallenge(ctx context.Context, challengeHash []byte) (storage.SignInChallenge, error) {
	c, err := scanSignInChallenge(s.reader().queryRow(ctx,
		hotRead(`SELECT `+signInChallengeColumns+` FROM sign_in_challenges WHERE challenge_hash = $1`), blob(challengeHash)))
	if errors.Is(err, sql.ErrNoRows) {
		return storage.SignInChallenge{}, fmt.Errorf("sign-in challenge: %w", storage.ErrNotFound)
	}
	if err != nil {
		return storage.SignInChallenge{}, fmt.Errorf("reading sign-in challenge: %w", err)
	}
	return c, nil
}

// UseSignInChallenge marks the challenge used and returns it. The
// conditional update is the arbiter: of concurrent calls, one changes the
// row and the others, waiting for it to commit, change nothing.
func (s *Store) UseSignInChallenge(ctx context.Context, challengeHash []byte, now time.Time) (storage.SignInChallenge, error) {
	var tc timeCodec
	at := tc.ns("used at", now)
	if tc.err != nil {
		return storage.SignInChallenge{}, fmt.Errorf("using sign-in challenge: %w", tc.err)
	}
	if at == 0 {
		return storage.SignInChallenge{}, errors.New("using sign-in challenge: no time given")
	}
	var c storage.SignInChallenge
	err := s.groupedOneLazy(ctx, func(ctx context.Context, q conn) error {
		var err error
		c, err = scanSignInChallenge(q.queryRow(ctx, useSignInChallenge, at, blob(challengeHash)))
		if !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		found, err := exists(ctx, q, `SELECT 1 FROM sign_in_challenges WHERE challenge_hash = $1`, blob(challengeHash))
		if err != nil {
			return err
		}
		if !found {
			return storage.ErrNotFound
		}
		return storage.ErrAlreadyExists
	})
	if err != nil {
		return storage.SignInChallenge{}, fmt.Errorf("using sign-in challenge: %w", err)
	}
	return c, nil
}

// DeleteExpiredSignInChallenges removes challenges whose expiry is strictly
// before the given time.
func (s *Store) DeleteExpiredSignInChallenges(ctx context.Context, before time.Time) (int, error) {
	n, err := s.deleteBefore(ctx, `DELETE FROM sign_in_challenges WHERE expires_at < $1`, before)
	if err != nil {
		return 0, fmt.Errorf("deleting expired sign-in challenges: %w", err)
	}
	return n, nil
}

// ServerKey returns the key stored under name, storing candidate first if
// there is none. Insert-or-nothing then read: concurrent first calls all
// read the one key that was inserted.
func (s *Store) ServerKey(ctx context.Context, name string, candidate []byte) ([]byte, error) {
	if err := checkTexts(true, textField{"key name", name}); err != nil {
		return nil, fmt.Errorf("server key: %w", err)
	}
	if len(candidate) < 16 {
		return nil, fmt.Errorf("server key %s: candidate of %d bytes, want at least 16", name, len(candidate))
	}
	var key []byte
	err := s.write(ctx, func(q conn) error {
		if _, err := q.exec(ctx, `INSERT INTO server_keys (name, key) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING`, name, candidate); err != nil {
			return err
		}
		return q.queryRow(ctx, `SELECT key FROM server_keys WHERE name = $1`, name).Scan(&key)
	})
	if err != nil {
		return nil, fmt.Errorf("server key %s: %w", name, err)
	}
	return key, nil
}
