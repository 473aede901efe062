package storagetest

import (
	"bytes"
	"errors"
	"fmt"
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
	{"StartSpendsIDAndStores", testStartSignInChallenge},
	{"StartReplayStoresNoChallenge", testStartSignInChallengeReplay},
	{"StartTakenHashSpendsNoID", testStartSignInChallengeTaken},
	{"ConcurrentStart", testStartSignInChallengeConcurrent},
	{"StartRefusesUnstorable", testStartSignInChallengeUnstorable},
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
	c.DeviceID = "dev-1" // only this device's proof completes it
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
	_, err = s.UseSignInChallenge(ctx, near, at(minute))
	wantErr(t, err, storage.ErrNotFound)

	// Used once: it is returned as now stored, it stays, marked, and a
	// second use is told apart from a challenge that never was.
	used := c
	used.UsedAt = at(minute)
	got, err := s.UseSignInChallenge(ctx, c.ChallengeHash, at(minute))
	must(t, err)
	equal(t, "UseSignInChallenge", got, used)
	equal(t, "GetSignInChallenge after use", getSignInChallenge(t, s, c.ChallengeHash), used)
	got, err = s.UseSignInChallenge(ctx, c.ChallengeHash, at(2*minute))
	wantErr(t, err, storage.ErrAlreadyExists)
	equal(t, "UseSignInChallenge a second time", got, storage.SignInChallenge{})
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
	errs := race(func() error { _, err := s.UseSignInChallenge(t.Context(), c.ChallengeHash, at(minute)); return err })
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
	_, err := s.UseSignInChallenge(ctx, used.ChallengeHash, at(minute))
	must(t, err)
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
		"NUL in device id":     func(c *storage.SignInChallenge) { c.DeviceID = "a\x00b" },
		"long device id":       func(c *storage.SignInChallenge) { c.DeviceID = strings.Repeat("d", storage.MaxTextLen+1) },
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

// startDump is the store's every row, for the checks that a refused
// StartSignInChallenge wrote nothing at all.
func startDump(t *testing.T, s storage.Store) string {
	t.Helper()
	d, err := Dump(t.Context(), s)
	must(t, err)
	return d
}

// A sign-in waiting for its proof begins with one call: its request ID is
// spent and its challenge stored, readable and usable as one created alone.
func testStartSignInChallenge(t *testing.T, s storage.Store) {
	ctx := t.Context()
	c := newSignInChallenge("c1", t0)
	c.UsedAt = at(hour) // ignored, as by CreateSignInChallenge
	c.DeviceID = "dev-1"
	must(t, s.StartSignInChallenge(ctx, oktaIssuer, "id-start-1", at(5*minute), c))
	c.UsedAt = time.Time{}
	equal(t, "GetSignInChallenge after start", getSignInChallenge(t, s, c.ChallengeHash), c)
	// The ID is spent: for UseRequestID as for another start.
	wantErr(t, s.UseRequestID(ctx, oktaIssuer, "id-start-1", at(5*minute)), storage.ErrAlreadyExists)
	// Another issuer's request with the same ID is another request.
	other := newSignInChallenge("c2", t0)
	must(t, s.StartSignInChallenge(ctx, otherIssuer, "id-start-1", at(5*minute), other))
	equal(t, "GetSignInChallenge other issuer", getSignInChallenge(t, s, other.ChallengeHash), other)

	// The challenge is used once, as ever.
	_, err := s.UseSignInChallenge(ctx, c.ChallengeHash, at(minute))
	must(t, err)
	_, err = s.UseSignInChallenge(ctx, c.ChallengeHash, at(minute))
	wantErr(t, err, storage.ErrAlreadyExists)

	// The request ID is remembered until its own expiry, the challenge
	// until its own.
	n, err := s.DeleteExpiredSignInChallenges(ctx, at(3*minute))
	must(t, err)
	if n != 2 {
		t.Errorf("DeleteExpiredSignInChallenges = %d, want 2", n)
	}
	wantErr(t, s.UseRequestID(ctx, oktaIssuer, "id-start-1", at(5*minute)), storage.ErrAlreadyExists)
	n, err = s.DeleteExpiredRequestIDs(ctx, at(6*minute))
	must(t, err)
	if n != 2 {
		t.Errorf("DeleteExpiredRequestIDs = %d, want 2", n)
	}
}

// A replayed request ID stores no challenge and changes nothing, whether
// the ID was spent by UseRequestID or by an earlier start, expired (not
// yet swept) or not.
func testStartSignInChallengeReplay(t *testing.T, s storage.Store) {
	ctx := t.Context()
	useRequestID(t, s, oktaIssuer, "id-used", at(5*minute))
	useRequestID(t, s, oktaIssuer, "id-old", at(-hour))
	must(t, s.StartSignInChallenge(ctx, oktaIssuer, "id-started", at(5*minute), newSignInChallenge("first", t0)))
	before := startDump(t, s)
	for i, id := range []string{"id-used", "id-old", "id-started", "id-started"} {
		c := newSignInChallenge(fmt.Sprint("replay-", i), at(minute))
		wantErr(t, s.StartSignInChallenge(ctx, oktaIssuer, id, at(hour), c), storage.ErrAlreadyExists)
		_, err := s.GetSignInChallenge(ctx, c.ChallengeHash)
		wantErr(t, err, storage.ErrNotFound)
	}
	if after := startDump(t, s); after != before {
		t.Errorf("replays changed the store:\n%s\n--- after ---\n%s", before, after)
	}
}

// A challenge hash that is taken stores nothing: the request ID stays
// unspent and the stored challenge as it was.
func testStartSignInChallengeTaken(t *testing.T, s storage.Store) {
	ctx := t.Context()
	c := newSignInChallenge("c1", t0)
	must(t, s.StartSignInChallenge(ctx, oktaIssuer, "id-1", at(5*minute), c))
	dup := newSignInChallenge("c1", at(minute))
	dup.Username = "mallory@example.com"
	before := startDump(t, s)
	err := s.StartSignInChallenge(ctx, oktaIssuer, "id-2", at(5*minute), dup)
	wantErr(t, err, storage.ErrChallengeTaken)
	if errors.Is(err, storage.ErrAlreadyExists) {
		t.Errorf("a taken challenge hash reads as a replay: %v", err)
	}
	if after := startDump(t, s); after != before {
		t.Errorf("a refused start changed the store:\n%s\n--- after ---\n%s", before, after)
	}
	equal(t, "GetSignInChallenge", getSignInChallenge(t, s, c.ChallengeHash), c)
	// Its ID was not spent.
	useRequestID(t, s, oktaIssuer, "id-2", at(5*minute))
}

// The same request arriving on several connections at once starts one
// sign-in: exactly one call wins, and only its challenge is stored.
func testStartSignInChallengeConcurrent(t *testing.T, s storage.Store) {
	ctx := t.Context()
	for _, id := range []string{"id-race-1", "id-race-2", "id-race-3"} {
		var n atomic.Int32
		challenges := make([]storage.SignInChallenge, racers)
		for i := range challenges {
			challenges[i] = newSignInChallenge(fmt.Sprint(id, "-", i), t0)
		}
		won := make([]atomic.Bool, racers)
		errs := race(func() error {
			i := n.Add(1) - 1
			err := s.StartSignInChallenge(ctx, oktaIssuer, id, at(5*minute), challenges[i])
			won[i].Store(err == nil)
			return err
		})
		oneWinner(t, "StartSignInChallenge "+id, errs, storage.ErrAlreadyExists)
		for i, c := range challenges {
			got, err := s.GetSignInChallenge(ctx, c.ChallengeHash)
			switch {
			case won[i].Load():
				must(t, err)
				equal(t, "the winner's challenge", got, c)
			default:
				wantErr(t, err, storage.ErrNotFound)
			}
		}
		wantErr(t, s.UseRequestID(ctx, oktaIssuer, id, at(5*minute)), storage.ErrAlreadyExists)
	}
}

// Arguments either half would refuse store nothing at all: no request ID,
// no challenge.
func testStartSignInChallengeUnstorable(t *testing.T, s storage.Store) {
	ctx := t.Context()
	long := strings.Repeat("i", storage.MaxTextLen+1)
	cases := []struct {
		name, issuer, id string
		change           func(c *storage.SignInChallenge)
	}{
		{"empty ID", oktaIssuer, "", nil},
		{"ID too long", oktaIssuer, long, nil},
		{"issuer too long", long, "id-1", nil},
		{"ID with NUL", oktaIssuer, "id-\x00", nil},
		{"ID not UTF-8", oktaIssuer, "id-\xff", nil},
		{"short challenge hash", oktaIssuer, "id-1", func(c *storage.SignInChallenge) { c.ChallengeHash = c.ChallengeHash[:31] }},
		{"no browser hash", oktaIssuer, "id-1", func(c *storage.SignInChallenge) { c.BrowserHash = nil }},
		{"long username", oktaIssuer, "id-1", func(c *storage.SignInChallenge) { c.Username = long }},
		{"NUL in username", oktaIssuer, "id-1", func(c *storage.SignInChallenge) { c.Username = "a\x00b" }},
		{"long relay state", oktaIssuer, "id-1", func(c *storage.SignInChallenge) {
			c.RelayState = strings.Repeat("r", storage.MaxRelayStateLen+1)
		}},
		{"long request", oktaIssuer, "id-1", func(c *storage.SignInChallenge) { c.Request = make([]byte, storage.MaxSignInRequestLen+1) }},
		{"expiry out of range", oktaIssuer, "id-1", func(c *storage.SignInChallenge) {
			c.ExpiresAt = time.Date(9999, 12, 31, 0, 0, 0, 0, time.UTC)
		}},
	}
	before := startDump(t, s)
	for _, tc := range cases {
		c := newSignInChallenge("c-"+tc.name, t0)
		if tc.change != nil {
			tc.change(&c)
		}
		err := s.StartSignInChallenge(ctx, tc.issuer, tc.id, at(5*minute), c)
		if err == nil || errors.Is(err, storage.ErrAlreadyExists) {
			t.Errorf("%s: StartSignInChallenge = %v, want a refusal", tc.name, err)
		}
	}
	if err := s.StartSignInChallenge(ctx, oktaIssuer, "id-1", time.Date(9999, 12, 31, 0, 0, 0, 0, time.UTC),
		newSignInChallenge("c-id-expiry", t0)); err == nil {
		t.Error("an ID expiry out of range was stored")
	}
	if after := startDump(t, s); after != before {
		t.Errorf("refused starts changed the store:\n%s\n--- after ---\n%s", before, after)
	}
	// Nothing was spent: the ID still starts a sign-in.
	c := newSignInChallenge("c-ok", t0)
	must(t, s.StartSignInChallenge(ctx, oktaIssuer, "id-1", at(5*minute), c))
	equal(t, "GetSignInChallenge", getSignInChallenge(t, s, c.ChallengeHash), c)
}
