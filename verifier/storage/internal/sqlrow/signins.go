package sqlrow

import (
	"crypto/sha256"
	"errors"
	"fmt"

	"github.com/clearance/clearance/verifier/storage"
)

// CheckRequestID refuses an AuthnRequest issuer and ID that UseRequestID
// cannot record.
func CheckRequestID(issuer, id string) error {
	if id == "" {
		return errors.New("empty request ID")
	}
	if err := CheckText("issuer", issuer, storage.MaxTextLen); err != nil {
		return err
	}
	return CheckText("request ID", id, storage.MaxTextLen)
}

// CheckTokenHash refuses a pending sign-in key that is not a SHA-256.
func CheckTokenHash(h []byte) error {
	if len(h) != sha256.Size {
		return fmt.Errorf("token hash is %d bytes, want %d", len(h), sha256.Size)
	}
	return nil
}

// PendingSignInColumns are the pending_sign_ins table's columns in
// PendingSignInArgs' and ScanPendingSignIn's order.
const PendingSignInColumns = `token_hash, device_id, cert_serial, username, request, relay_state,
	created_at, expires_at`

// PendingSignInArgs checks p and returns its values in PendingSignInColumns'
// order. RelayState goes into a blob: it comes from a URL and is returned
// byte for byte, whatever bytes it holds.
func PendingSignInArgs(p storage.PendingSignIn) ([]any, error) {
	if err := CheckTokenHash(p.TokenHash); err != nil {
		return nil, err
	}
	for _, f := range []struct{ name, value string }{
		{"device ID", p.DeviceID},
		{"cert serial", p.CertSerial},
		{"username", p.Username},
	} {
		if err := CheckText(f.name, f.value, storage.MaxTextLen); err != nil {
			return nil, err
		}
	}
	if len(p.RelayState) > storage.MaxRelayStateLen {
		return nil, fmt.Errorf("relay state is %d bytes, more than the %d allowed", len(p.RelayState), storage.MaxRelayStateLen)
	}
	if len(p.Request) > storage.MaxSignInRequestLen {
		return nil, fmt.Errorf("request is %d bytes, more than the %d allowed", len(p.Request), storage.MaxSignInRequestLen)
	}
	var c TimeCodec
	createdAt := c.NS("created at", p.CreatedAt)
	expiresAt := c.NS("expires at", p.ExpiresAt)
	if c.Err != nil {
		return nil, c.Err
	}
	return []any{p.TokenHash, p.DeviceID, p.CertSerial, p.Username, Blob(p.Request),
		Blob([]byte(p.RelayState)), createdAt, expiresAt}, nil
}

// ScanPendingSignIn reads a row of PendingSignInColumns.
func ScanPendingSignIn(sc Scanner) (storage.PendingSignIn, error) {
	var (
		p                    storage.PendingSignIn
		relayState           []byte
		createdAt, expiresAt int64
	)
	if err := sc.Scan(&p.TokenHash, &p.DeviceID, &p.CertSerial, &p.Username, &p.Request,
		&relayState, &createdAt, &expiresAt); err != nil {
		return storage.PendingSignIn{}, err
	}
	p.RelayState = string(relayState)
	p.CreatedAt = FromNS(createdAt)
	p.ExpiresAt = FromNS(expiresAt)
	return p, nil
}
