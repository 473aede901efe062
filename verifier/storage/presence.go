package storage

import (
	"context"
	"errors"
	"time"
)

// SignInChallenge is a sign-in waiting for the Mac's proof of presence: the
// verifier sent the browser to the agent on loopback with a one-time
// challenge, and completes the sign-in when the browser comes back with a
// statement the device key signed over that challenge. Only hashes of the
// challenge and of the browser's sign-in cookie are stored.
type SignInChallenge struct {
	// ChallengeHash is the SHA-256 of the challenge (32 bytes).
	ChallengeHash []byte
	// BrowserHash is the SHA-256 of the sign-in cookie of the browser that
	// started the sign-in (32 bytes): the proof counts only from it.
	BrowserHash []byte
	// Username is the Okta username; Request and RelayState are as in
	// PendingSignIn.
	Username   string
	Request    []byte
	RelayState string
	// DeviceID, when set, is the only device whose proof completes the
	// sign-in: the Mac the certificate the browser presented named. Empty
	// when any enrolled device's proof counts.
	DeviceID  string
	CreatedAt time.Time
	ExpiresAt time.Time
	// UsedAt is when a proof completed it; zero while it waits. It is
	// ignored by CreateSignInChallenge.
	UsedAt time.Time
}

// SignInChallengeStore keeps sign-ins waiting for a proof of presence, on
// every replica sharing the database.
type SignInChallengeStore interface {
	// CreateSignInChallenge stores c, unused; ErrAlreadyExists if its
	// ChallengeHash is taken (the stored one is left as it was). Both hashes
	// must be 32 bytes.
	CreateSignInChallenge(ctx context.Context, c SignInChallenge) error
	// GetSignInChallenge returns the challenge with this hash, used or not,
	// expired or not (the caller compares with its clock), or ErrNotFound.
	GetSignInChallenge(ctx context.Context, challengeHash []byte) (SignInChallenge, error)
	// UseSignInChallenge marks the challenge used at now and returns it as
	// it is then stored (UsedAt is now): ErrNotFound if there is none,
	// ErrAlreadyExists if it was used already (nothing changes). Of
	// concurrent calls for one challenge exactly one succeeds, so a proof
	// completes a sign-in at most once. Finding and spending a challenge is
	// one call, and one write.
	UseSignInChallenge(ctx context.Context, challengeHash []byte, now time.Time) (SignInChallenge, error)
	// DeleteExpiredSignInChallenges removes challenges whose ExpiresAt is
	// strictly before the given time, used or not, and returns how many.
	DeleteExpiredSignInChallenges(ctx context.Context, before time.Time) (int, error)
	// StartSignInChallenge is SAMLRequestStore.UseRequestID(ctx, issuer,
	// id, idExpiresAt) and CreateSignInChallenge(ctx, c) in one write:
	// both are stored, or neither. A sign-in waiting for a proof of
	// presence begins with both, and commits once. If the request ID is
	// recorded already it returns ErrAlreadyExists and stores no challenge;
	// if c's hash is taken, ErrChallengeTaken, and records no request ID.
	// Arguments either call would refuse are refused, storing nothing. Of
	// concurrent calls with one issuer and ID exactly one succeeds.
	StartSignInChallenge(ctx context.Context, issuer, id string, idExpiresAt time.Time, c SignInChallenge) error
}

// ErrChallengeTaken: StartSignInChallenge was given a challenge hash that is
// stored already. It is told apart from ErrAlreadyExists, which there says
// the request ID was spent: a replay.
var ErrChallengeTaken = errors.New("sign-in challenge hash already stored")

// ServerKeyStore keeps small secret keys every replica must share (e.g. the
// key that signs the browser's device-hint cookie). They live in the
// database so that replicas agree without copying files.
type ServerKeyStore interface {
	// ServerKey returns the key stored under name; if there is none, it
	// stores candidate (at least 16 bytes) and returns it. Of concurrent
	// calls for one name, all return the same key.
	ServerKey(ctx context.Context, name string, candidate []byte) ([]byte, error)
}
