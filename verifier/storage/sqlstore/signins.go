package sqlstore

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/clearance/clearance/verifier/storage"
)

// pendingSignInColumns are the pending_sign_ins table's columns in
// pendingSignInArgs' and scanPendingSignIn's order.
const pendingSignInColumns = `token_hash, device_id, cert_serial, username, request, relay_state,
	created_at, expires_at, browser_hash, resolve_later`

// Every sign-in runs these.
var (
	// DO NOTHING applies to the primary key only, unlike SQLite's INSERT
	// OR IGNORE, which would also swallow a CHECK failure.
	insertRequestID = prepared(`INSERT INTO saml_request_ids (issuer, id, expires_at)
		VALUES ($1, $2, $3) ON CONFLICT (issuer, id) DO NOTHING`)
	insertPendingSignIn = prepared(`INSERT INTO pending_sign_ins (` + pendingSignInColumns + `)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (token_hash) DO NOTHING`)
)

// checkTokenHash refuses a pending sign-in key that is not a SHA-256.
func checkTokenHash(h []byte) error {
	if len(h) != sha256.Size {
		return fmt.Errorf("token hash is %d bytes, want %d", len(h), sha256.Size)
	}
	return nil
}

// pendingSignInArgs checks p and returns its values in pendingSignInColumns'
// order. RelayState goes into a blob: it comes from a URL and is returned
// byte for byte, whatever bytes it holds.
func pendingSignInArgs(p storage.PendingSignIn) ([]any, error) {
	if err := checkTokenHash(p.TokenHash); err != nil {
		return nil, err
	}
	if p.BrowserHash != nil {
		if err := checkTokenHash(p.BrowserHash); err != nil {
			return nil, fmt.Errorf("browser hash: %w", err)
		}
	}
	if err := checkTexts(false, textField{"device ID", p.DeviceID}, textField{"cert serial", p.CertSerial},
		textField{"username", p.Username}); err != nil {
		return nil, err
	}
	if len(p.RelayState) > storage.MaxRelayStateLen {
		return nil, fmt.Errorf("relay state is %d bytes, more than the %d allowed", len(p.RelayState), storage.MaxRelayStateLen)
	}
	if len(p.Request) > storage.MaxSignInRequestLen {
		return nil, fmt.Errorf("request is %d bytes, more than the %d allowed", len(p.Request), storage.MaxSignInRequestLen)
	}
	resolveLater, err := resolveLaterText(p.ResolveLater)
	if err != nil {
		return nil, err
	}
	var c timeCodec
	createdAt := c.ns("created at", p.CreatedAt)
	expiresAt := c.ns("expires at", p.ExpiresAt)
	if c.err != nil {
		return nil, c.err
	}
	return []any{p.TokenHash, p.DeviceID, p.CertSerial, p.Username, blob(p.Request),
		blob([]byte(p.RelayState)), createdAt, expiresAt, blob(p.BrowserHash), resolveLater}, nil
}

// resolveLaterText checks a pending sign-in's ResolveLater policy ids and
// joins them with commas for its column.
func resolveLaterText(ids []string) (string, error) {
	if len(ids) > storage.MaxResolveLaterPolicies {
		return "", fmt.Errorf("resolve later: %d policies, more than the %d allowed", len(ids), storage.MaxResolveLaterPolicies)
	}
	for _, id := range ids {
		if id == "" || strings.Contains(id, ",") {
			return "", fmt.Errorf("resolve later: policy ID %q is empty or holds a comma", id)
		}
		if err := checkText("resolve later policy ID", id, storage.MaxTextLen); err != nil {
			return "", err
		}
	}
	return strings.Join(ids, ","), nil
}

func scanPendingSignIn(sc scanner) (storage.PendingSignIn, error) {
	var (
		p                    storage.PendingSignIn
		relayState           []byte
		createdAt, expiresAt int64
		resolveLater         string
	)
	if err := sc.Scan(&p.TokenHash, &p.DeviceID, &p.CertSerial, &p.Username, &p.Request,
		&relayState, &createdAt, &expiresAt, &p.BrowserHash, &resolveLater); err != nil {
		return storage.PendingSignIn{}, err
	}
	if resolveLater != "" {
		p.ResolveLater = strings.Split(resolveLater, ",")
	}
	if len(p.BrowserHash) == 0 {
		p.BrowserHash = nil
	}
	p.RelayState = string(relayState)
	p.CreatedAt = fromNS(createdAt)
	p.ExpiresAt = fromNS(expiresAt)
	return p, nil
}

// UseRequestID records an AuthnRequest's issuer and ID, or returns
// ErrAlreadyExists if they are recorded already. The primary key is the
// arbiter: of concurrent inserts of one pair, in any process, one inserts
// the row and the others (waiting for it to commit) insert nothing.
func (s *Store) UseRequestID(ctx context.Context, issuer, id string, expiresAt time.Time) error {
	args, err := requestIDArgs(issuer, id, expiresAt)
	if err != nil {
		return fmt.Errorf("recording request ID: %w", err)
	}
	err = s.groupedOneLazy(ctx, func(ctx context.Context, q conn) error { return useRequestID(ctx, q, args) })
	if err != nil {
		return fmt.Errorf("recording request ID: %w", err)
	}
	return nil
}

// requestIDArgs checks a request ID's record and returns insertRequestID's
// arguments.
func requestIDArgs(issuer, id string, expiresAt time.Time) ([]any, error) {
	if id == "" {
		return nil, errors.New("empty request ID")
	}
	if err := checkTexts(false, textField{"issuer", issuer}, textField{"request ID", id}); err != nil {
		return nil, err
	}
	var c timeCodec
	exp := c.ns("expires at", expiresAt)
	if c.err != nil {
		return nil, c.err
	}
	return []any{issuer, id, exp}, nil
}

// useRequestID inserts the record requestIDArgs made: ErrAlreadyExists if
// its issuer and ID are recorded already.
func useRequestID(ctx context.Context, q conn, args []any) error {
	res, err := q.exec(ctx, insertRequestID, args...)
	if err != nil {
		return err
	}
	return oneRow(res, storage.ErrAlreadyExists)
}

// DeleteExpiredRequestIDs removes request IDs whose expiry is strictly
// before the given time.
func (s *Store) DeleteExpiredRequestIDs(ctx context.Context, before time.Time) (int, error) {
	n, err := s.deleteBefore(ctx, `DELETE FROM saml_request_ids WHERE expires_at < $1`, before)
	if err != nil {
		return 0, fmt.Errorf("deleting expired request IDs: %w", err)
	}
	return n, nil
}

// CreatePendingSignIn stores p; ErrAlreadyExists if its token hash is taken.
func (s *Store) CreatePendingSignIn(ctx context.Context, p storage.PendingSignIn) error {
	args, err := pendingSignInArgs(p)
	if err != nil {
		return fmt.Errorf("creating pending sign-in: %w", err)
	}
	insert := func(q conn) error {
		res, err := q.exec(ctx, insertPendingSignIn, args...)
		if err != nil {
			return err
		}
		return oneRow(res, storage.ErrAlreadyExists)
	}
	if p.DeviceKey != nil {
		// Held only while the key that proved it is the device's: in
		// one transaction that locks the device's row, so that a key
		// change or a revocation either commits first (and this
		// refuses) or waits for this insert (and forgets it: dropHeld).
		err = s.write(ctx, func(q conn) error {
			d, err := lockUnrevoked(ctx, q, p.DeviceID)
			if err != nil {
				return err
			}
			if !bytes.Equal(d.PublicKey, p.DeviceKey) {
				return fmt.Errorf("device %s: %w", d.ID, storage.ErrKeyReplaced)
			}
			return insert(q)
		})
	} else {
		err = s.groupedOne(ctx, func(_ context.Context, q conn) error { return insert(q) })
	}
	if err != nil {
		return fmt.Errorf("creating pending sign-in: %w", err)
	}
	return nil
}

// GetPendingSignIn returns the pending sign-in with this token hash, expired
// or not, or ErrNotFound.
func (s *Store) GetPendingSignIn(ctx context.Context, tokenHash []byte) (storage.PendingSignIn, error) {
	p, err := scanPendingSignIn(s.reader().queryRow(ctx,
		`SELECT `+pendingSignInColumns+` FROM pending_sign_ins WHERE token_hash = $1`, blob(tokenHash)))
	if errors.Is(err, sql.ErrNoRows) {
		return storage.PendingSignIn{}, fmt.Errorf("pending sign-in: %w", storage.ErrNotFound)
	}
	if err != nil {
		return storage.PendingSignIn{}, fmt.Errorf("reading pending sign-in: %w", err)
	}
	return p, nil
}

// SetPendingSignInResolveLater replaces the policies the pending sign-in's
// page offered to resolve later; ErrNotFound if it is not there.
func (s *Store) SetPendingSignInResolveLater(ctx context.Context, tokenHash []byte, policyIDs []string) error {
	text, err := resolveLaterText(policyIDs)
	if err != nil {
		return fmt.Errorf("updating pending sign-in: %w", err)
	}
	res, err := s.writer().exec(ctx, `UPDATE pending_sign_ins SET resolve_later = $1 WHERE token_hash = $2`, text, blob(tokenHash))
	if err == nil {
		err = oneRow(res, storage.ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("updating pending sign-in: %w", err)
	}
	return nil
}

// DeletePendingSignIn removes the pending sign-in; ErrNotFound if it is not
// there. A concurrent delete of the same row waits for the first to commit
// and then finds nothing, so only one succeeds.
func (s *Store) DeletePendingSignIn(ctx context.Context, tokenHash []byte) error {
	res, err := s.writer().exec(ctx, `DELETE FROM pending_sign_ins WHERE token_hash = $1`, blob(tokenHash))
	if err == nil {
		err = oneRow(res, storage.ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("deleting pending sign-in: %w", err)
	}
	return nil
}

// DeleteExpiredPendingSignIns removes pending sign-ins whose expiry is
// strictly before the given time.
func (s *Store) DeleteExpiredPendingSignIns(ctx context.Context, before time.Time) (int, error) {
	n, err := s.deleteBefore(ctx, `DELETE FROM pending_sign_ins WHERE expires_at < $1`, before)
	if err != nil {
		return 0, fmt.Errorf("deleting expired pending sign-ins: %w", err)
	}
	return n, nil
}
