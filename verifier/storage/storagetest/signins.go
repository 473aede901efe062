package storagetest

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clearance/clearance/verifier/storage"
)

var samlRequestTests = []test{
	{"UseOnce", testUseRequestIDOnce},
	{"ExpiredUnsweptStillRefused", testUseRequestIDExpired},
	{"DeleteExpired", testDeleteExpiredRequestIDs},
	{"ConcurrentUse", testUseRequestIDConcurrent},
	{"RefusesUnstorable", testUseRequestIDUnstorable},
}

var pendingSignInTests = []test{
	{"CreateGetDelete", testPendingSignInLifecycle},
	{"CreateDuplicate", testPendingSignInDuplicate},
	{"ExpiredUnsweptReturned", testPendingSignInExpired},
	{"ConcurrentDelete", testPendingSignInConcurrentDelete},
	{"DeleteExpired", testDeleteExpiredPendingSignIns},
	{"RefusesUnstorable", testPendingSignInUnstorable},
	{"SetResolveLater", testPendingSignInResolveLater},
	{"ForgottenWithTheKey", testPendingSignInForgottenWithTheKey},
}

const (
	oktaIssuer  = "http://www.okta.com/exk1a2b3c4d5e6f7g8h9"
	otherIssuer = "http://www.okta.com/exk9z8y7x6w5v4u3t2s1"
)

// racers is how many goroutines race for one record.
const racers = 8

// race runs call from racers goroutines released together and returns
// their errors.
func race(call func() error) []error {
	var (
		wg    sync.WaitGroup
		start = make(chan struct{})
		errs  = make([]error, racers)
	)
	for i := range racers {
		wg.Go(func() {
			<-start
			errs[i] = call()
		})
	}
	close(start)
	wg.Wait()
	return errs
}

// oneWinner fails unless exactly one of errs is nil and every other one is loser.
func oneWinner(t *testing.T, what string, errs []error, loser error) {
	t.Helper()
	won := 0
	for _, err := range errs {
		switch {
		case err == nil:
			won++
		case !errors.Is(err, loser):
			t.Errorf("%s: err = %v, want nil or %v", what, err, loser)
		}
	}
	if won != 1 {
		t.Errorf("%s: %d calls succeeded, want exactly 1", what, won)
	}
}

func useRequestID(t *testing.T, s storage.Store, issuer, id string, expires time.Time) {
	t.Helper()
	must(t, s.UseRequestID(t.Context(), issuer, id, expires))
}

func testUseRequestIDOnce(t *testing.T, s storage.Store) {
	ctx := t.Context()
	const id = "id8f3c1a2b4d5e6f708192a3b4c5d6e7f8"
	useRequestID(t, s, oktaIssuer, id, at(5*minute))

	// A replay is refused, whatever expiry it asks for.
	wantErr(t, s.UseRequestID(ctx, oktaIssuer, id, at(5*minute)), storage.ErrAlreadyExists)
	wantErr(t, s.UseRequestID(ctx, oktaIssuer, id, at(time.Hour)), storage.ErrAlreadyExists)

	// The pair is the key: another issuer may use the same ID, and the same
	// issuer other IDs, compared byte for byte.
	useRequestID(t, s, otherIssuer, id, at(5*minute))
	useRequestID(t, s, "", id, at(5*minute))
	useRequestID(t, s, oktaIssuer, strings.ToUpper(id), at(5*minute))
	useRequestID(t, s, oktaIssuer, id+" ", at(5*minute))
	useRequestID(t, s, oktaIssuer+"/", id, at(5*minute))
	wantErr(t, s.UseRequestID(ctx, otherIssuer, id, at(5*minute)), storage.ErrAlreadyExists)
	wantErr(t, s.UseRequestID(ctx, "", id, at(5*minute)), storage.ErrAlreadyExists)
}

func testUseRequestIDExpired(t *testing.T, s storage.Store) {
	ctx := t.Context()
	useRequestID(t, s, oktaIssuer, "id-old", at(-hour))
	// Long expired but not swept: still remembered, still refused.
	wantErr(t, s.UseRequestID(ctx, oktaIssuer, "id-old", at(hour)), storage.ErrAlreadyExists)
	// A sweep that does not reach it changes nothing.
	n, err := s.DeleteExpiredRequestIDs(ctx, at(-2*hour))
	must(t, err)
	if n != 0 {
		t.Errorf("DeleteExpiredRequestIDs before the expiry = %d, want 0", n)
	}
	wantErr(t, s.UseRequestID(ctx, oktaIssuer, "id-old", at(hour)), storage.ErrAlreadyExists)
}

func testDeleteExpiredRequestIDs(t *testing.T, s storage.Store) {
	ctx := t.Context()
	useRequestID(t, s, oktaIssuer, "id-expired-1", at(hour))
	useRequestID(t, s, otherIssuer, "id-expired-2", at(hour))
	useRequestID(t, s, oktaIssuer, "id-at-cutoff", at(2*hour))
	useRequestID(t, s, oktaIssuer, "id-live", at(3*hour))

	n, err := s.DeleteExpiredRequestIDs(ctx, at(2*hour))
	must(t, err)
	if n != 2 {
		t.Errorf("DeleteExpiredRequestIDs = %d, want 2 (strictly before the cutoff)", n)
	}
	n, err = s.DeleteExpiredRequestIDs(ctx, at(2*hour))
	must(t, err)
	if n != 0 {
		t.Errorf("second DeleteExpiredRequestIDs = %d, want 0", n)
	}

	// Swept IDs are forgotten; the others are still refused.
	useRequestID(t, s, oktaIssuer, "id-expired-1", at(4*hour))
	useRequestID(t, s, otherIssuer, "id-expired-2", at(4*hour))
	wantErr(t, s.UseRequestID(ctx, oktaIssuer, "id-at-cutoff", at(4*hour)), storage.ErrAlreadyExists)
	wantErr(t, s.UseRequestID(ctx, oktaIssuer, "id-live", at(4*hour)), storage.ErrAlreadyExists)

	n, err = s.DeleteExpiredRequestIDs(ctx, at(5*hour))
	must(t, err)
	if n != 4 {
		t.Errorf("DeleteExpiredRequestIDs of everything = %d, want 4", n)
	}
}

// The same AuthnRequest arriving on several connections (or replicas) at
// once produces one response.
func testUseRequestIDConcurrent(t *testing.T, s storage.Store) {
	ctx := t.Context()
	for _, id := range []string{"id-race-1", "id-race-2", "id-race-3", "id-race-4", "id-race-5"} {
		errs := race(func() error { return s.UseRequestID(ctx, oktaIssuer, id, at(5*minute)) })
		oneWinner(t, "UseRequestID "+id, errs, storage.ErrAlreadyExists)
	}
}

func testUseRequestIDUnstorable(t *testing.T, s storage.Store) {
	ctx := t.Context()
	long := strings.Repeat("i", storage.MaxTextLen+1)
	cases := []struct {
		name, issuer, id string
		expires          time.Time
	}{
		{"empty ID", oktaIssuer, "", at(minute)},
		{"ID too long", oktaIssuer, long, at(minute)},
		{"issuer too long", long, "id-1", at(minute)},
		{"ID not UTF-8", oktaIssuer, "id-\xff", at(minute)},
		{"ID with NUL", oktaIssuer, "id-\x00", at(minute)},
		{"issuer with NUL", oktaIssuer + "\x00", "id-1", at(minute)},
		{"expiry out of range", oktaIssuer, "id-1", time.Date(9999, 12, 31, 0, 0, 0, 0, time.UTC)},
	}
	for _, tc := range cases {
		if err := s.UseRequestID(ctx, tc.issuer, tc.id, tc.expires); err == nil {
			t.Errorf("%s: UseRequestID succeeded, want an error", tc.name)
		}
	}
	// Nothing was recorded by the refused calls.
	useRequestID(t, s, oktaIssuer, "id-1", at(minute))
	n, err := s.DeleteExpiredRequestIDs(ctx, at(hour))
	must(t, err)
	if n != 1 {
		t.Errorf("DeleteExpiredRequestIDs = %d, want 1: a refused call stored something", n)
	}

	// The longest values allowed are kept and compared in full.
	maxIssuer := strings.Repeat("é", storage.MaxTextLen/2)
	maxID := strings.Repeat("x", storage.MaxTextLen)
	useRequestID(t, s, maxIssuer, maxID, at(minute))
	wantErr(t, s.UseRequestID(ctx, maxIssuer, maxID, at(minute)), storage.ErrAlreadyExists)
	useRequestID(t, s, maxIssuer, maxID[:len(maxID)-1]+"y", at(minute))
}

// --- pending sign-ins ---

func tokenHash(token string) []byte {
	h := sha256.Sum256([]byte(token))
	return h[:]
}

func newPendingSignIn(token string, created time.Time) storage.PendingSignIn {
	return storage.PendingSignIn{
		TokenHash:  tokenHash(token),
		DeviceID:   "dev-001",
		CertSerial: "5e0001",
		Username:   "alice@example.com",
		Request: []byte(`<samlp:AuthnRequest xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" ID="id` + token +
			`" Version="2.0"><saml2:Issuer xmlns:saml2="urn:oasis:names:tc:SAML:2.0:assertion">` + oktaIssuer +
			"</saml2:Issuer></samlp:AuthnRequest>\n"),
		// Returned verbatim, whatever bytes it holds.
		RelayState: "/app/okta_org2org/exk1/sso/saml?x=1&y=%20 \x00\xff'\"",
		CreatedAt:  created,
		ExpiresAt:  created.Add(10 * minute),
	}
}

func getPendingSignIn(t *testing.T, s storage.Store, hash []byte) storage.PendingSignIn {
	t.Helper()
	p, err := s.GetPendingSignIn(t.Context(), hash)
	must(t, err)
	return p
}

func testPendingSignInLifecycle(t *testing.T, s storage.Store) {
	ctx := t.Context()
	p := newPendingSignIn("token-1", t0)
	other := newPendingSignIn("token-2", at(minute))
	other.Username, other.RelayState, other.Request = "bob@example.com", "", nil
	other.CertSerial, other.BrowserHash = "", tokenHash("browser-2") // bound by the agent's proof
	must(t, s.CreatePendingSignIn(ctx, p))
	must(t, s.CreatePendingSignIn(ctx, other))

	equal(t, "GetPendingSignIn", getPendingSignIn(t, s, p.TokenHash), p)
	equal(t, "GetPendingSignIn other", getPendingSignIn(t, s, other.TokenHash), other)

	// The hash is the whole key: one that differs in its last byte is
	// another (absent) sign-in.
	near := bytes.Clone(p.TokenHash)
	near[len(near)-1] ^= 1
	_, err := s.GetPendingSignIn(ctx, near)
	wantErr(t, err, storage.ErrNotFound)
	wantErr(t, s.DeletePendingSignIn(ctx, near), storage.ErrNotFound)
	_, err = s.GetPendingSignIn(ctx, nil)
	wantErr(t, err, storage.ErrNotFound)

	must(t, s.DeletePendingSignIn(ctx, p.TokenHash))
	_, err = s.GetPendingSignIn(ctx, p.TokenHash)
	wantErr(t, err, storage.ErrNotFound)
	wantErr(t, s.DeletePendingSignIn(ctx, p.TokenHash), storage.ErrNotFound)
	// The other one is untouched.
	equal(t, "GetPendingSignIn other after delete", getPendingSignIn(t, s, other.TokenHash), other)
}

func testPendingSignInDuplicate(t *testing.T, s storage.Store) {
	ctx := t.Context()
	p := newPendingSignIn("token-1", t0)
	must(t, s.CreatePendingSignIn(ctx, p))
	dup := newPendingSignIn("token-1", at(hour))
	dup.Username = "mallory@example.com"
	wantErr(t, s.CreatePendingSignIn(ctx, dup), storage.ErrAlreadyExists)
	// The original stands.
	equal(t, "GetPendingSignIn", getPendingSignIn(t, s, p.TokenHash), p)
}

func testPendingSignInExpired(t *testing.T, s storage.Store) {
	p := newPendingSignIn("token-old", at(-hour))
	must(t, s.CreatePendingSignIn(t.Context(), p))
	// The caller compares ExpiresAt with its clock: the store returns it.
	equal(t, "GetPendingSignIn expired", getPendingSignIn(t, s, p.TokenHash), p)
}

// Two "Check again" presses at once: only one may complete the sign-in.
func testPendingSignInConcurrentDelete(t *testing.T, s storage.Store) {
	ctx := t.Context()
	for _, token := range []string{"race-1", "race-2", "race-3", "race-4", "race-5"} {
		p := newPendingSignIn(token, t0)
		must(t, s.CreatePendingSignIn(ctx, p))
		errs := race(func() error { return s.DeletePendingSignIn(ctx, p.TokenHash) })
		oneWinner(t, "DeletePendingSignIn "+token, errs, storage.ErrNotFound)
		_, err := s.GetPendingSignIn(ctx, p.TokenHash)
		wantErr(t, err, storage.ErrNotFound)
	}
}

func testDeleteExpiredPendingSignIns(t *testing.T, s storage.Store) {
	ctx := t.Context()
	expiring := func(token string, expires time.Time) storage.PendingSignIn {
		p := newPendingSignIn(token, t0)
		p.ExpiresAt = expires
		must(t, s.CreatePendingSignIn(ctx, p))
		return p
	}
	expired1 := expiring("expired-1", at(hour))
	expired2 := expiring("expired-2", at(hour))
	cutoff := expiring("at-cutoff", at(2*hour))
	live := expiring("live", at(3*hour))

	n, err := s.DeleteExpiredPendingSignIns(ctx, at(2*hour))
	must(t, err)
	if n != 2 {
		t.Errorf("DeleteExpiredPendingSignIns = %d, want 2 (strictly before the cutoff)", n)
	}
	n, err = s.DeleteExpiredPendingSignIns(ctx, at(2*hour))
	must(t, err)
	if n != 0 {
		t.Errorf("second DeleteExpiredPendingSignIns = %d, want 0", n)
	}
	for _, p := range []storage.PendingSignIn{expired1, expired2} {
		_, err := s.GetPendingSignIn(ctx, p.TokenHash)
		wantErr(t, err, storage.ErrNotFound)
	}
	for _, p := range []storage.PendingSignIn{cutoff, live} {
		equal(t, "GetPendingSignIn after sweep", getPendingSignIn(t, s, p.TokenHash), p)
	}
}

func testPendingSignInUnstorable(t *testing.T, s storage.Store) {
	ctx := t.Context()
	long := strings.Repeat("a", storage.MaxTextLen+1)
	cases := []struct {
		name   string
		change func(p *storage.PendingSignIn)
	}{
		{"no token hash", func(p *storage.PendingSignIn) { p.TokenHash = nil }},
		{"short token hash", func(p *storage.PendingSignIn) { p.TokenHash = p.TokenHash[:31] }},
		{"long token hash", func(p *storage.PendingSignIn) { p.TokenHash = append(bytes.Clone(p.TokenHash), 0) }},
		{"username too long", func(p *storage.PendingSignIn) { p.Username = long }},
		{"device ID too long", func(p *storage.PendingSignIn) { p.DeviceID = long }},
		{"cert serial too long", func(p *storage.PendingSignIn) { p.CertSerial = long }},
		{"username not UTF-8", func(p *storage.PendingSignIn) { p.Username = "alice\xff" }},
		{"relay state too long", func(p *storage.PendingSignIn) {
			p.RelayState = strings.Repeat("r", storage.MaxRelayStateLen+1)
		}},
		{"request too long", func(p *storage.PendingSignIn) {
			p.Request = bytes.Repeat([]byte("<"), storage.MaxSignInRequestLen+1)
		}},
		{"expiry out of range", func(p *storage.PendingSignIn) {
			p.ExpiresAt = time.Date(9999, 12, 31, 0, 0, 0, 0, time.UTC)
		}},
		{"resolve later with an empty id", func(p *storage.PendingSignIn) { p.ResolveLater = []string{"firewall", ""} }},
		{"resolve later id with a comma", func(p *storage.PendingSignIn) { p.ResolveLater = []string{"firewall,filevault"} }},
		{"resolve later id too long", func(p *storage.PendingSignIn) { p.ResolveLater = []string{long} }},
		{"resolve later too many", func(p *storage.PendingSignIn) {
			p.ResolveLater = make([]string, storage.MaxResolveLaterPolicies+1)
			for i := range p.ResolveLater {
				p.ResolveLater[i] = "p"
			}
		}},
	}
	for _, tc := range cases {
		p := newPendingSignIn("token", t0)
		tc.change(&p)
		if err := s.CreatePendingSignIn(ctx, p); err == nil {
			t.Errorf("%s: CreatePendingSignIn succeeded, want an error", tc.name)
		}
		_, err := s.GetPendingSignIn(ctx, tokenHash("token"))
		wantErr(t, err, storage.ErrNotFound)
	}

	// The largest values allowed round-trip.
	p := newPendingSignIn("token", t0)
	p.Username = strings.Repeat("ü", storage.MaxTextLen/2)
	p.RelayState = strings.Repeat("\xff", storage.MaxRelayStateLen)
	p.Request = bytes.Repeat([]byte{0, 0xff}, storage.MaxSignInRequestLen/2)
	p.ResolveLater = make([]string, storage.MaxResolveLaterPolicies)
	for i := range p.ResolveLater {
		p.ResolveLater[i] = strings.Repeat("p", 64)
	}
	must(t, s.CreatePendingSignIn(ctx, p))
	equal(t, "GetPendingSignIn largest", getPendingSignIn(t, s, p.TokenHash), p)
}

// A held sign-in keeps the policies its latest page offered to resolve
// later: stored with it, replaced when a page shown again offers others,
// emptied when one offers none, and only for the sign-in named.
func testPendingSignInResolveLater(t *testing.T, s storage.Store) {
	ctx := t.Context()
	p := newPendingSignIn("token-1", t0)
	p.ResolveLater = []string{"firewall"}
	other := newPendingSignIn("token-2", t0)
	other.ResolveLater = []string{"screen-lock"}
	must(t, s.CreatePendingSignIn(ctx, p))
	must(t, s.CreatePendingSignIn(ctx, other))
	equal(t, "GetPendingSignIn", getPendingSignIn(t, s, p.TokenHash), p)

	must(t, s.SetPendingSignInResolveLater(ctx, p.TokenHash, []string{"firewall", "filevault"}))
	p.ResolveLater = []string{"firewall", "filevault"}
	equal(t, "after SetPendingSignInResolveLater", getPendingSignIn(t, s, p.TokenHash), p)
	// Setting the same again is no error.
	must(t, s.SetPendingSignInResolveLater(ctx, p.TokenHash, []string{"firewall", "filevault"}))

	must(t, s.SetPendingSignInResolveLater(ctx, p.TokenHash, nil))
	p.ResolveLater = nil
	equal(t, "after offering none", getPendingSignIn(t, s, p.TokenHash), p)
	equal(t, "the other sign-in", getPendingSignIn(t, s, other.TokenHash), other)

	// Refused values change nothing.
	for _, bad := range [][]string{{""}, {"a,b"}} {
		if err := s.SetPendingSignInResolveLater(ctx, other.TokenHash, bad); err == nil || errors.Is(err, storage.ErrNotFound) {
			t.Errorf("SetPendingSignInResolveLater(%q) = %v, want a refusal", bad, err)
		}
	}
	equal(t, "the other sign-in after refusals", getPendingSignIn(t, s, other.TokenHash), other)

	must(t, s.DeletePendingSignIn(ctx, p.TokenHash))
	wantErr(t, s.SetPendingSignInResolveLater(ctx, p.TokenHash, []string{"firewall"}), storage.ErrNotFound)
}

// A sign-in held for a device was proven by the key it had then: a new key
// (a proven rotation, an approval) or a revocation forgets it; the same key
// enrolling again, and the sign-ins of other devices, keep theirs.
func testPendingSignInForgottenWithTheKey(t *testing.T, s storage.Store) {
	ctx := t.Context()
	ds := enrollN(t, s, 2)
	held := func(token, deviceID string) []byte {
		t.Helper()
		p := newPendingSignIn(token, t0)
		p.DeviceID = deviceID
		must(t, s.CreatePendingSignIn(ctx, p))
		return p.TokenHash
	}
	kept := func(what string, hash []byte, want bool) {
		t.Helper()
		_, err := s.GetPendingSignIn(ctx, hash)
		switch {
		case want && err != nil:
			t.Errorf("%s: the held sign-in is gone: %v", what, err)
		case !want && !errors.Is(err, storage.ErrNotFound):
			t.Errorf("%s: the held sign-in is still there (err %v)", what, err)
		}
	}
	first, other := held("first", ds[0].ID), held("other", ds[1].ID)

	same := newEnrollment(1, "fleet")
	same.Device.CertSerial, same.Cert.Serial = "abc301", "abc301"
	enroll(t, s, same)
	kept("the same key enrolled again", first, true)

	rot := newEnrollment(1, "fleet")
	rot.Device.PublicKey = []byte("rotated-key")
	rot.Device.CertSerial, rot.Cert.Serial = "abc302", "abc302"
	rot.Checked = &storage.Checked{Key: ds[0].PublicKey}
	enroll(t, s, rot)
	kept("a proven rotation", first, false)
	kept("another device's key rotated", other, true)

	// One proven by the old key, held after the rotation committed (its
	// live check waited meanwhile), is refused; by the new key, held.
	late := newPendingSignIn("late", t0)
	late.DeviceKey = ds[0].PublicKey
	before := dumpOf(t, s)
	wantErr(t, s.CreatePendingSignIn(ctx, late), storage.ErrKeyReplaced)
	sameDump(t, "a sign-in held under the key replaced", before, s)
	late.DeviceKey = []byte("rotated-key")
	must(t, s.CreatePendingSignIn(ctx, late))
	kept("a sign-in held under the key the device has", late.TokenHash, true)
	must(t, s.DeletePendingSignIn(ctx, late.TokenHash))

	second := held("second", ds[0].ID)
	r := newRequest(1, "unproven", "fleet")
	r.DeviceID, r.DeviceKey, r.Reason = ds[0].ID, []byte("rotated-key"), "unproven_key"
	request(t, s, r, storage.PendingLimits{})
	kept("a request waiting for approval", second, true)
	_, _, err := approve(t, s, r.ID, "dev-unused", at(3*hour))
	must(t, err)
	kept("an approved key", second, false)
	kept("another device's key approved", other, true)

	revokeDevice(t, s, ds[1].ID)
	kept("a revocation", other, false)
	revoked := newPendingSignIn("revoked", t0)
	revoked.DeviceID, revoked.DeviceKey = ds[1].ID, ds[1].PublicKey
	wantErr(t, s.CreatePendingSignIn(ctx, revoked), storage.ErrDeviceRevoked)
	unknown := newPendingSignIn("unknown", t0)
	unknown.DeviceID, unknown.DeviceKey = "dev-404", []byte("some key")
	wantErr(t, s.CreatePendingSignIn(ctx, unknown), storage.ErrNotFound)
	kept("a sign-in held for a revoked or unknown device", revoked.TokenHash, false)
}
