package storagetest

import (
	"bytes"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/clearance/clearance/verifier/storage"
)

var signInChallengeTests = []test{
	{"CreateGetUse", testSignInChallengeLifecycle},
	{"CreateDuplicate", testSignInChallengeDuplicate},
	{"ConcurrentUse", testSignInChallengeConcurrentUse},
	{"DeleteExpired", testDeleteExpiredSignInChallenges},
	{"RefusesUnstorable", testSignInChallengeUnstorable},
}

var serverKeyTests = []test{
	{"FirstCandidateWins", testServerKeyFirstWins},
	{"ConcurrentFirst", testServerKeyConcurrent},
	{"RefusesShort", testServerKeyRefusesShort},
}

func newSignInChallenge(challenge string, created time.Time) storage.SignInChallenge {
	p := newPendingSignIn(challenge, created)
	return storage.SignInChallenge{
		ChallengeHash: tokenHash("challenge " + challenge), BrowserHash: tokenHash("browser " + challenge),
		Username: p.Username, Request: p.Request, RelayState: p.RelayState,
		CreatedAt: created, ExpiresAt: created.Add(2 * minute),
	}
}

func getSignInChallenge(t *testing.T, s storage.Store, hash []byte) storage.SignInChallenge {
	t.Helper()
	c, err := s.GetSignInChallenge(t.Context(), hash)
	must(t, err)
	return c
}

func testSignInChallengeLifecycle(t *testing.T, s storage.Store) {
	ctx := t.Context()
	c := newSignInChallenge("c1", t0)
	other := newSignInChallenge("c2", at(minute))
	other.RelayState, other.Request = "", nil
	must(t, s.CreateSignInChallenge(ctx, c))
	must(t, s.CreateSignInChallenge(ctx, other))
	equal(t, "GetSignInChallenge", getSignInChallenge(t, s, c.ChallengeHash), c)
	equal(t, "GetSignInChallenge other", getSignInChallenge(t, s, other.ChallengeHash), other)

	near := bytes.Clone(c.ChallengeHash)
	near[0] ^= 1
	_, err := s.GetSignInChallenge(ctx, near)
	wantErr(t, err, storage.ErrNotFound)
	wantErr(t, s.UseSignInChallenge(ctx, near, at(minute)), storage.ErrNotFound)

	// Used once: it stays, marked, and a second use is told apart from a
	// challenge that never was.
	must(t, s.UseSignInChallenge(ctx, c.ChallengeHash, at(minute)))
	used := c
	used.UsedAt = at(minute)
	equal(t, "GetSignInChallenge after use", getSignInChallenge(t, s, c.ChallengeHash), used)
	wantErr(t, s.UseSignInChallenge(ctx, c.ChallengeHash, at(2*minute)), storage.ErrAlreadyExists)
	equal(t, "GetSignInChallenge after a second use", getSignInChallenge(t, s, c.ChallengeHash), used)
	equal(t, "GetSignInChallenge other", getSignInChallenge(t, s, other.ChallengeHash), other)
}

func testSignInChallengeDuplicate(t *testing.T, s storage.Store) {
	ctx := t.Context()
	c := newSignInChallenge("c1", t0)
	must(t, s.CreateSignInChallenge(ctx, c))
	dup := newSignInChallenge("c1", at(hour))
	dup.Username = "mallory@example.com"
	// Even a "used" duplicate cannot mark the stored one.
	dup.UsedAt = at(hour)
	wantErr(t, s.CreateSignInChallenge(ctx, dup), storage.ErrAlreadyExists)
	equal(t, "GetSignInChallenge", getSignInChallenge(t, s, c.ChallengeHash), c)

	// UsedAt is ignored on create: a new challenge waits.
	fresh := newSignInChallenge("c2", t0)
	fresh.UsedAt = t0
	must(t, s.CreateSignInChallenge(ctx, fresh))
	fresh.UsedAt = time.Time{}
	equal(t, "GetSignInChallenge fresh", getSignInChallenge(t, s, fresh.ChallengeHash), fresh)
}

func testSignInChallengeConcurrentUse(t *testing.T, s storage.Store) {
	c := newSignInChallenge("c1", t0)
	must(t, s.CreateSignInChallenge(t.Context(), c))
	errs := race(func() error { return s.UseSignInChallenge(t.Context(), c.ChallengeHash, at(minute)) })
	oneWinner(t, "UseSignInChallenge", errs, storage.ErrAlreadyExists)
}

func testDeleteExpiredSignInChallenges(t *testing.T, s storage.Store) {
	ctx := t.Context()
	old := newSignInChallenge("old", t0) // expires at t0+2m
	used := newSignInChallenge("used", t0)
	keep := newSignInChallenge("keep", at(minute)) // expires at t0+3m
	for _, c := range []storage.SignInChallenge{old, used, keep} {
		must(t, s.CreateSignInChallenge(ctx, c))
	}
	must(t, s.UseSignInChallenge(ctx, used.ChallengeHash, at(minute)))
	// Strictly before: one expiring exactly at the cut stays.
	n, err := s.DeleteExpiredSignInChallenges(ctx, at(2*minute))
	must(t, err)
	if n != 0 {
		t.Errorf("deleted %d at the expiry instant, want 0", n)
	}
	n, err = s.DeleteExpiredSignInChallenges(ctx, at(2*minute+1))
	must(t, err)
	if n != 2 {
		t.Errorf("deleted %d, want 2 (used or not)", n)
	}
	_, err = s.GetSignInChallenge(ctx, old.ChallengeHash)
	wantErr(t, err, storage.ErrNotFound)
	equal(t, "kept", getSignInChallenge(t, s, keep.ChallengeHash), keep)
}

func testSignInChallengeUnstorable(t *testing.T, s storage.Store) {
	ctx := t.Context()
	for name, mod := range map[string]func(*storage.SignInChallenge){
		"short challenge hash": func(c *storage.SignInChallenge) { c.ChallengeHash = c.ChallengeHash[:31] },
		"no browser hash":      func(c *storage.SignInChallenge) { c.BrowserHash = nil },
		"long username":        func(c *storage.SignInChallenge) { c.Username = strings.Repeat("u", storage.MaxTextLen+1) },
		"NUL in username":      func(c *storage.SignInChallenge) { c.Username = "a\x00b" },
		"long relay state":     func(c *storage.SignInChallenge) { c.RelayState = strings.Repeat("r", storage.MaxRelayStateLen+1) },
		"long request":         func(c *storage.SignInChallenge) { c.Request = make([]byte, storage.MaxSignInRequestLen+1) },
	} {
		c := newSignInChallenge("c-"+name, t0)
		mod(&c)
		if err := s.CreateSignInChallenge(ctx, c); err == nil {
			t.Errorf("%s: stored", name)
		}
		if _, err := s.GetSignInChallenge(ctx, c.ChallengeHash); err == nil {
			t.Errorf("%s: readable after a refused create", name)
		}
	}
}

func testServerKeyFirstWins(t *testing.T, s storage.Store) {
	ctx := t.Context()
	first := bytes.Repeat([]byte{1}, 32)
	k, err := s.ServerKey(ctx, "device-hint", first)
	must(t, err)
	equal(t, "first ServerKey", k, first)
	k, err = s.ServerKey(ctx, "device-hint", bytes.Repeat([]byte{2}, 32))
	must(t, err)
	equal(t, "second ServerKey", k, first)
	k, err = s.ServerKey(ctx, "other", bytes.Repeat([]byte{3}, 16))
	must(t, err)
	equal(t, "other ServerKey", k, bytes.Repeat([]byte{3}, 16))
}

func testServerKeyConcurrent(t *testing.T, s storage.Store) {
	keys := make(chan []byte, racers)
	var n atomic.Int32
	errs := race(func() error {
		k, err := s.ServerKey(t.Context(), "device-hint", bytes.Repeat([]byte{byte(n.Add(1))}, 32))
		keys <- k
		return err
	})
	close(keys)
	for _, err := range errs {
		must(t, err)
	}
	var first []byte
	for k := range keys {
		if first == nil {
			first = k
		}
		if !bytes.Equal(k, first) {
			t.Fatalf("concurrent first calls disagree: %x and %x", first, k)
		}
	}
}

func testServerKeyRefusesShort(t *testing.T, s storage.Store) {
	ctx := t.Context()
	if _, err := s.ServerKey(ctx, "device-hint", []byte("short")); err == nil {
		t.Error("a 5-byte key was stored")
	}
	if _, err := s.ServerKey(ctx, "", bytes.Repeat([]byte{1}, 32)); err == nil {
		t.Error("a key without a name was stored")
	}
	k, err := s.ServerKey(ctx, "device-hint", bytes.Repeat([]byte{9}, 32))
	must(t, err)
	equal(t, "ServerKey after refusals", k, bytes.Repeat([]byte{9}, 32))
}
