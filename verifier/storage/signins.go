package storage

import (
	"context"
	"time"
)

// Limits on what the sign-in and decision stores keep. A value over its
// limit is refused with an error, never truncated: callers that must store
// something anyway (the decision log) bound their input first.
const (
	// MaxTextLen bounds each short text field in bytes: request IDs,
	// issuers, usernames, device IDs, certificate serials, reasons. Text
	// fields must also be valid UTF-8 without NUL bytes.
	MaxTextLen = 1024
	// MaxRelayStateLen bounds PendingSignIn.RelayState in bytes (SAML asks
	// for at most 80; some service providers send more). Any bytes are kept.
	MaxRelayStateLen = 4096
	// MaxSignInRequestLen bounds PendingSignIn.Request in bytes.
	MaxSignInRequestLen = 256 << 10
	// MaxResolveLaterPolicies bounds PendingSignIn.ResolveLater.
	MaxResolveLaterPolicies = 1000
)

// SAMLRequestStore is the AuthnRequest replay cache: every request ID the
// SSO endpoint accepts is recorded, so the same request can never produce a
// second response, on this replica or any other sharing the database.
//
// A sign-in's writes before its decision (UseRequestID, and
// SignInChallengeStore's StartSignInChallenge and UseSignInChallenge) are
// visible to every caller on every replica when they return, but a backend
// may make them durable only when a later durable write returns, such as
// the sign-in's DecisionStore.AppendDecision: a response is sent only
// after that (it may be signed while the decision is written), so one
// whose request ID or proof an OS crash could still lose is never sent.
// A proof refused before any decision (a page, no response) may be
// presentable once more after an OS crash, and meets the same checks
// again. A crash of the verifier's process loses none of them.
type SAMLRequestStore interface {
	// UseRequestID records that the AuthnRequest issued by issuer with this
	// ID was received, to be remembered until expiresAt. If the pair is
	// already recorded (expired but not yet swept included) it returns
	// ErrAlreadyExists and changes nothing. Concurrent calls with the same
	// pair: exactly one succeeds. IDs and issuers are compared byte for
	// byte; id must not be empty, issuer may be (SAML makes it optional).
	UseRequestID(ctx context.Context, issuer, id string, expiresAt time.Time) error
	// DeleteExpiredRequestIDs removes entries whose expiresAt is strictly
	// before the given time and returns how many.
	DeleteExpiredRequestIDs(ctx context.Context, before time.Time) (int, error)
}

// PendingSignIn is a denied sign-in held so that "Check again" can resume it
// once the device passes. The browser holds a random token; only its
// SHA-256 is stored.
type PendingSignIn struct {
	TokenHash []byte // SHA-256 of the token given to the browser (32 bytes)
	// Who and what the sign-in was for: the device and browser certificate
	// that presented it (a resume must come from the same certificate) and
	// the Okta username.
	DeviceID   string
	CertSerial string
	// BrowserHash, for a sign-in bound by the agent's proof of presence, is
	// the SHA-256 of the browser's sign-in cookie (32 bytes): a resume must
	// come from the same browser. nil for one bound by a certificate.
	BrowserHash []byte
	Username    string
	// Request is the validated AuthnRequest XML exactly as received (after
	// inflating); RelayState is Okta's, returned verbatim with the response
	// (kept byte for byte, whatever it contains).
	Request    []byte
	RelayState string
	CreatedAt  time.Time
	ExpiresAt  time.Time
	// ResolveLater holds the ids of the policies that the sign-in's latest
	// page offered to resolve later, in that page's order; nil when it
	// offered none. Each is a policy id: not empty, no comma.
	ResolveLater []string
	// DeviceKey, for a sign-in bound by the agent's proof, is the device
	// key (PKIX DER) that signed the proof: CreatePendingSignIn holds the
	// sign-in only while the device still has it and is not revoked. It
	// is checked, not stored (reads leave it nil).
	DeviceKey []byte
}

// PendingSignInStore keeps pending sign-ins.
type PendingSignInStore interface {
	// CreatePendingSignIn stores p; ErrAlreadyExists if its TokenHash is
	// taken (the stored one is left as it was). TokenHash must be 32 bytes.
	// With DeviceKey set: ErrNotFound, ErrDeviceRevoked, or ErrKeyReplaced
	// when the device no longer has that key, and nothing is stored (a key
	// change or revocation committed after it forgets it: see
	// DeviceStore.EnrollDevice).
	CreatePendingSignIn(ctx context.Context, p PendingSignIn) error
	// GetPendingSignIn returns the pending sign-in with this token hash, or
	// ErrNotFound. Expired entries not yet swept are returned too: the
	// caller compares ExpiresAt with its clock.
	GetPendingSignIn(ctx context.Context, tokenHash []byte) (PendingSignIn, error)
	// SetPendingSignInResolveLater replaces the ResolveLater of the
	// pending sign-in with this token hash, when a page shown for it again
	// offers other policies; ErrNotFound if it is not there.
	SetPendingSignInResolveLater(ctx context.Context, tokenHash []byte, policyIDs []string) error
	// DeletePendingSignIn removes it; ErrNotFound if it is not there. A
	// sign-in is completed only by the caller whose delete succeeded, so
	// two concurrent "Check again" presses can never both issue a response.
	DeletePendingSignIn(ctx context.Context, tokenHash []byte) error
	// DeleteExpiredPendingSignIns removes entries whose ExpiresAt is
	// strictly before the given time and returns how many.
	DeleteExpiredPendingSignIns(ctx context.Context, before time.Time) (int, error)
}
