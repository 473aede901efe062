package enroll

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"time"

	"github.com/clearance/clearance/verifier/storage"
)

// One-time SCEP challenges: a Mac's SCEP request carries one as its
// challengePassword, and it is consumed when the browser certificate is
// recorded. Only the SHA-256 is stored, like enroll secrets.

// Bounds of a one-time SCEP challenge's lifetime.
const (
	DefaultChallengeTTL = 24 * time.Hour
	MaxChallengeTTL     = 30 * 24 * time.Hour
)

// ChallengeStore stores one-time SCEP challenges.
type ChallengeStore interface {
	CreateSCEPChallenge(ctx context.Context, hash []byte, expiresAt time.Time, audit storage.AuditEvent) error
}

// ChallengeHash is what the store keeps of a challenge.
func ChallengeHash(challenge string) []byte {
	sum := sha256.Sum256([]byte(challenge))
	return sum[:]
}

// CreateChallenge makes and stores a one-time SCEP challenge valid for ttl
// (DefaultChallengeTTL when 0) and returns it; it is not kept anywhere.
func CreateChallenge(ctx context.Context, store ChallengeStore, ttl time.Duration, actor string, now time.Time) (string, time.Time, error) {
	switch {
	case ttl == 0:
		ttl = DefaultChallengeTTL
	case ttl < time.Minute || ttl > MaxChallengeTTL:
		return "", time.Time{}, fmt.Errorf("challenge lifetime %s is outside 1m to %s", ttl, MaxChallengeTTL)
	}
	var value [24]byte
	if _, err := rand.Read(value[:]); err != nil {
		return "", time.Time{}, err
	}
	challenge := base64.RawURLEncoding.EncodeToString(value[:])
	expires := now.Add(ttl)
	err := store.CreateSCEPChallenge(ctx, ChallengeHash(challenge), expires, storage.AuditEvent{
		At: now, Actor: actor, Action: "scep_challenge.create", Detail: "one-time SCEP challenge created, expires " + expires.UTC().Format(time.RFC3339),
	})
	if err != nil {
		return "", time.Time{}, fmt.Errorf("storing SCEP challenge: %w", err)
	}
	return challenge, expires, nil
}
