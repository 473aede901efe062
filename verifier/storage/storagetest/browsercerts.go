package storagetest

import (
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/clearance/clearance/verifier/storage"
)

var browserCertTests = []test{
	{"RecordGetList", testRecordBrowserCert},
	{"GraceMarksOlderCerts", testBrowserCertGrace},
	{"IssuanceSupersedesNothing", testBrowserCertIssuanceSupersedesNothing},
	{"RevokeKeepsEarliest", testRevokeBrowserCert},
	{"CountSince", testCountBrowserCertsSince},
	{"ChallengeOneTimeUse", testSCEPChallengeOnce},
	{"ChallengeExpired", testSCEPChallengeExpired},
	{"ConcurrentChallengeUse", testSCEPChallengeConcurrent},
	{"Limit", testBrowserCertLimit},
	{"RevokedOrUnknownDevice", testRecordBrowserCertDevice},
	{"DuplicateSerial", testRecordBrowserCertDuplicate},
	{"DeleteExpiredChallenges", testDeleteExpiredSCEPChallenges},
	{"RefusesUnstorable", testBrowserCertUnstorable},
}

// grace is the usual grace period in these tests (the default setting).
const grace = 72 * hour

// newBrowserCert is browser certificate n of device d, valid from notBefore.
func newBrowserCert(d storage.Device, n int, notBefore time.Time) storage.BrowserCert {
	serial := fmt.Sprintf("%x", 0xb40000+n)
	der := []byte("browser-cert-der-" + serial + "\x00\xff")
	fp := sha1.Sum(der)
	return storage.BrowserCert{
		Cert: storage.Cert{
			Serial:    serial,
			DeviceID:  d.ID,
			Kind:      storage.CertKindBrowser,
			NotBefore: notBefore,
			NotAfter:  notBefore.Add(365 * 24 * hour),
			DER:       der,
		},
		HardwareUUID: d.HardwareUUID,
		SHA1:         hex.EncodeToString(fp[:]),
	}
}

func scepAudit(at time.Time, serial string) storage.AuditEvent {
	return storage.AuditEvent{At: at, Actor: "scep", Action: "browser_cert.issue", Detail: "serial " + serial}
}

// record stores c as issued at now (with the challenge when it is set)
// and, as its Mac's agent then reports it, supersedes the older ones with
// grace.
func record(t *testing.T, s storage.Store, c storage.BrowserCert, challenge []byte, now time.Time, grace time.Duration) {
	t.Helper()
	must(t, s.RecordBrowserCert(t.Context(), c, challenge, storage.IssueLimit{}, now, scepAudit(now, c.Serial)))
	_, err := s.SupersedeBrowserCerts(t.Context(), c.Serial, now, grace, storage.AuditEvent{At: now, Actor: "agent", Action: "browser_cert.vouched", Detail: "serial " + c.Serial})
	must(t, err)
}

func getBrowserCert(t *testing.T, s storage.Store, serial string) storage.BrowserCert {
	t.Helper()
	c, err := s.GetBrowserCert(t.Context(), serial)
	must(t, err)
	return c
}

func listBrowserCerts(t *testing.T, s storage.Store, deviceID string) []storage.BrowserCert {
	t.Helper()
	cs, err := s.ListBrowserCerts(t.Context(), deviceID)
	must(t, err)
	return cs
}

func countSince(t *testing.T, s storage.Store, deviceID string, since time.Time) int {
	t.Helper()
	n, err := s.CountBrowserCertsSince(t.Context(), deviceID, since)
	must(t, err)
	return n
}

// challengeHash is the SHA-256 of a one-time SCEP challenge.
func challengeHash(challenge string) []byte {
	h := sha256.Sum256([]byte("scep challenge " + challenge))
	return h[:]
}

func createChallenge(t *testing.T, s storage.Store, challenge string, expires time.Time) []byte {
	t.Helper()
	h := challengeHash(challenge)
	must(t, s.CreateSCEPChallenge(t.Context(), h, expires, storage.AuditEvent{
		At: t0, Actor: "cli", Action: "scep_challenge.create",
	}))
	return h
}

func usable(t *testing.T, s storage.Store, hash []byte, now time.Time) bool {
	t.Helper()
	ok, err := s.SCEPChallengeUsable(t.Context(), hash, now)
	must(t, err)
	return ok
}

// revoked is c as it reads once its RevokeAfter is at, for reason.
func revoked(c storage.BrowserCert, at time.Time, reason string) storage.BrowserCert {
	c.RevokeAfter = at
	c.RevokedReason = reason
	return c
}

// browserState is state plus what the browser certificate calls can read:
// every device's browser certificates, and whether the named challenges
// are usable at t0.
type browserState struct {
	state
	Browser map[string][]storage.BrowserCert
	Usable  map[string]bool

	challenges [][]byte
}

func browserSnapshot(t *testing.T, s storage.Store, challenges [][]byte, serials ...string) browserState {
	t.Helper()
	st := browserState{
		state:      snapshot(t, s, serials...),
		Browser:    map[string][]storage.BrowserCert{},
		Usable:     map[string]bool{},
		challenges: challenges,
	}
	for _, d := range st.Devices {
		st.Browser[d.ID] = listBrowserCerts(t, s, d.ID)
	}
	for _, h := range challenges {
		st.Usable[hex.EncodeToString(h)] = usable(t, s, h, t0)
	}
	return st
}

func (before browserState) unchanged(t *testing.T, s storage.Store) {
	t.Helper()
	after := browserSnapshot(t, s, before.challenges, before.serials...)
	equal(t, "store state after the failed call", after, before)
}

func testRecordBrowserCert(t *testing.T, s storage.Store) {
	ctx := t.Context()
	ds := enrollN(t, s, 2)
	a, b := ds[0], ds[1]

	// Two certificates with the same NotBefore are ordered by serial.
	c1 := newBrowserCert(a, 1, at(minute))
	c2 := newBrowserCert(a, 2, at(2*minute))
	c3 := newBrowserCert(a, 3, at(2*minute))
	cb := newBrowserCert(b, 4, at(minute))
	// The caller's revocation fields are not taken: a new certificate counts.
	c1in := revoked(c1, at(-hour), "caller said so")
	record(t, s, c1in, nil, at(minute), grace)
	record(t, s, c3, nil, at(2*minute), grace)
	record(t, s, c2, nil, at(3*minute), grace)
	record(t, s, cb, nil, at(3*minute), grace)

	// c1 was superseded by c3, then c2 reported later left its earlier
	// RevokeAfter alone; c3, with c2's NotBefore and a higher serial, is the
	// newer of the two and was not superseded by it.
	want1 := revoked(c1, at(2*minute+grace), storage.SupersededReason+c3.Serial)
	want3 := c3
	equal(t, "GetBrowserCert 1", getBrowserCert(t, s, c1.Serial), want1)
	equal(t, "GetBrowserCert 2", getBrowserCert(t, s, c2.Serial), c2)
	equal(t, "GetBrowserCert 3", getBrowserCert(t, s, c3.Serial), want3)
	equal(t, "ListBrowserCerts", listBrowserCerts(t, s, a.ID), []storage.BrowserCert{want3, c2, want1})
	// The other device's certificate is its own and was not superseded.
	equal(t, "ListBrowserCerts of the other device", listBrowserCerts(t, s, b.ID), []storage.BrowserCert{cb})

	// Sign-in finds any issued certificate through GetCert.
	cert, err := s.GetCert(ctx, c2.Serial)
	must(t, err)
	equal(t, "GetCert of a browser certificate", cert, c2.Cert)

	// The agent's own certificate is no browser certificate.
	if _, err := s.GetBrowserCert(ctx, a.CertSerial); err == nil {
		t.Errorf("GetBrowserCert(agent cert serial) succeeded, want ErrNotFound")
	} else {
		wantErr(t, err, storage.ErrNotFound)
	}
	for _, c := range listBrowserCerts(t, s, a.ID) {
		if c.Serial == a.CertSerial {
			t.Errorf("ListBrowserCerts lists the agent certificate %s", c.Serial)
		}
	}
	_, err = s.GetBrowserCert(ctx, "b4ffff")
	wantErr(t, err, storage.ErrNotFound)

	// A device with no browser certificate lists none.
	d3 := enroll(t, s, newEnrollment(3, "fleet"))
	if got := listBrowserCerts(t, s, d3.ID); got == nil || len(got) != 0 {
		t.Errorf("ListBrowserCerts of a device without browser certs = %#v, want an empty list", got)
	}

	// Each recording is audited under its device.
	equal(t, "audited issues of device A", auditDetails(t, s, a.ID, "browser_cert.issue"), []string{"serial " + c2.Serial, "serial " + c3.Serial, "serial " + c1.Serial})
}

func testBrowserCertGrace(t *testing.T, s storage.Store) {
	ds := enrollN(t, s, 2)
	a, b := ds[0], ds[1]
	c1 := newBrowserCert(a, 1, t0)
	c2 := newBrowserCert(a, 2, at(hour))
	c3 := newBrowserCert(a, 3, at(2*hour))
	c4 := newBrowserCert(a, 4, at(3*hour))
	cb := newBrowserCert(b, 5, t0)

	record(t, s, c1, nil, t0, grace)
	record(t, s, cb, nil, t0, grace)
	equal(t, "first certificate", getBrowserCert(t, s, c1.Serial), c1)

	// A newer certificate: the older one counts for the grace period.
	record(t, s, c2, nil, at(hour), grace)
	want1 := revoked(c1, at(hour+grace), storage.SupersededReason+c2.Serial)
	equal(t, "superseded certificate", getBrowserCert(t, s, c1.Serial), want1)
	if got := getBrowserCert(t, s, c1.Serial); got.RevokedAt(at(hour+grace-time.Nanosecond)) || !got.RevokedAt(at(hour+grace)) {
		t.Errorf("superseded certificate: RevokedAt wrong around the end of the grace period (RevokeAfter %s)", fmtTime(got.RevokeAfter))
	}

	// Another one: the first keeps its earlier end, the second gets its own.
	record(t, s, c3, nil, at(2*hour), grace)
	want2 := revoked(c2, at(2*hour+grace), storage.SupersededReason+c3.Serial)
	equal(t, "first certificate after a third", getBrowserCert(t, s, c1.Serial), want1)
	equal(t, "second certificate after a third", getBrowserCert(t, s, c2.Serial), want2)

	// A revocation already earlier than the grace period stays too.
	must(t, s.RevokeBrowserCert(t.Context(), c3.Serial, "lost", at(2*hour+minute), storage.AuditEvent{At: at(2 * hour)}))
	want3 := revoked(c3, at(2*hour+minute), "lost")

	// Grace 0: every certificate whose end is later stops counting now.
	record(t, s, c4, nil, at(3*hour), 0)
	want1 = revoked(c1, at(3*hour), storage.SupersededReason+c4.Serial)
	want2 = revoked(c2, at(3*hour), storage.SupersededReason+c4.Serial)
	equal(t, "device A after grace 0", listBrowserCerts(t, s, a.ID), []storage.BrowserCert{c4, want3, want2, want1})
	for _, c := range []storage.BrowserCert{want1, want2} {
		if !c.RevokedAt(at(3 * hour)) {
			t.Errorf("certificate %s counts after grace 0", c.Serial)
		}
	}
	if getBrowserCert(t, s, c4.Serial).RevokedAt(at(100 * hour)) {
		t.Error("the newest certificate does not count")
	}

	// Another device's certificates are never touched.
	equal(t, "device B", listBrowserCerts(t, s, b.ID), []storage.BrowserCert{cb})
}

// A certificate minted for a Mac's UUID (by anyone holding the SCEP
// challenge) takes nothing from the Mac's own until the Mac's agent reports
// it; and the agent reporting an older certificate never cuts off a newer
// one.
func testBrowserCertIssuanceSupersedesNothing(t *testing.T, s storage.Store) {
	ctx := t.Context()
	d := enrollN(t, s, 1)[0]
	mine := newBrowserCert(d, 1, t0)
	record(t, s, mine, nil, t0, grace)
	for i := 2; i <= 11; i++ {
		c := newBrowserCert(d, i, at(time.Duration(i)*minute))
		must(t, s.RecordBrowserCert(ctx, c, nil, storage.IssueLimit{}, at(time.Duration(i)*minute), scepAudit(at(time.Duration(i)*minute), c.Serial)))
	}
	equal(t, "the Mac's certificate after ten others were minted", getBrowserCert(t, s, mine.Serial), mine)

	// The agent reports its own (older) certificate again: the newer ones,
	// never reported, are untouched too.
	n, err := s.SupersedeBrowserCerts(ctx, mine.Serial, at(hour), grace, storage.AuditEvent{At: at(hour)})
	must(t, err)
	if n != 0 {
		t.Errorf("reporting the oldest certificate superseded %d others", n)
	}
	newest := newBrowserCert(d, 11, at(11*minute))
	equal(t, "the newest certificate", getBrowserCert(t, s, newest.Serial), newest)

	// Once the agent reports the newest, every older one starts its grace.
	n, err = s.SupersedeBrowserCerts(ctx, newest.Serial, at(2*hour), grace, storage.AuditEvent{At: at(2 * hour)})
	must(t, err)
	if n != 10 {
		t.Errorf("reporting the newest superseded %d, want 10", n)
	}
	equal(t, "the Mac's first certificate", getBrowserCert(t, s, mine.Serial), revoked(mine, at(2*hour+grace), storage.SupersededReason+newest.Serial))
	// Again: nothing more changes.
	if n, err := s.SupersedeBrowserCerts(ctx, newest.Serial, at(3*hour), grace, storage.AuditEvent{At: at(3 * hour)}); err != nil || n != 0 {
		t.Errorf("repeating: %d changed, %v", n, err)
	}
	_, err = s.SupersedeBrowserCerts(ctx, "b4ffff", at(hour), grace, storage.AuditEvent{})
	wantErr(t, err, storage.ErrNotFound)
	_, err = s.SupersedeBrowserCerts(ctx, d.CertSerial, at(hour), grace, storage.AuditEvent{})
	wantErr(t, err, storage.ErrNotFound)
}

func testRevokeBrowserCert(t *testing.T, s storage.Store) {
	ctx := t.Context()
	d := enrollN(t, s, 1)[0]
	c1 := newBrowserCert(d, 1, t0)
	c2 := newBrowserCert(d, 2, at(hour))
	record(t, s, c1, nil, t0, grace)
	audit := func(reason string) storage.AuditEvent {
		return storage.AuditEvent{At: at(hour), Actor: "admin-api", Action: "browser_cert.revoke", Detail: reason}
	}

	must(t, s.RevokeBrowserCert(ctx, c1.Serial, "lost", at(10*hour), audit("lost")))
	want := revoked(c1, at(10*hour), "lost")
	equal(t, "revoked", getBrowserCert(t, s, c1.Serial), want)
	// The same call again, and a later one, change nothing.
	must(t, s.RevokeBrowserCert(ctx, c1.Serial, "lost", at(10*hour), audit("lost")))
	must(t, s.RevokeBrowserCert(ctx, c1.Serial, "stolen", at(20*hour), audit("stolen")))
	equal(t, "revoked again, later", getBrowserCert(t, s, c1.Serial), want)
	// An earlier one wins, with its reason.
	must(t, s.RevokeBrowserCert(ctx, c1.Serial, "compromised", at(5*hour), audit("compromised")))
	want = revoked(c1, at(5*hour), "compromised")
	equal(t, "revoked earlier", getBrowserCert(t, s, c1.Serial), want)

	// Superseding never extends a revocation.
	record(t, s, c2, nil, at(hour), grace)
	equal(t, "revoked, then superseded", getBrowserCert(t, s, c1.Serial), want)
	// The same the other way round: a revoked certificate that a newer
	// one supersedes keeps its earlier revocation.
	must(t, s.RevokeBrowserCert(ctx, c2.Serial, "lost", at(2*hour), audit("lost")))
	record(t, s, newBrowserCert(d, 3, at(3*hour)), nil, at(3*hour), grace)
	equal(t, "revoked, then superseded (2)", getBrowserCert(t, s, c2.Serial), revoked(c2, at(2*hour), "lost"))

	// Every request is audited under the device, the ones that changed
	// nothing included.
	equal(t, "audited revocations", auditDetails(t, s, d.ID, "browser_cert.revoke"), []string{"lost", "compromised", "stolen", "lost", "lost"})

	// Unknown serials and agent certificates: ErrNotFound, nothing changes.
	before := browserSnapshot(t, s, nil)
	wantErr(t, s.RevokeBrowserCert(ctx, "b4ffff", "lost", at(hour), audit("unknown")), storage.ErrNotFound)
	wantErr(t, s.RevokeBrowserCert(ctx, d.CertSerial, "lost", at(hour), audit("agent cert")), storage.ErrNotFound)
	before.unchanged(t, s)
	if _, err := s.GetCert(ctx, d.CertSerial); err != nil {
		t.Errorf("GetCert(agent cert) after a refused revocation: %v", err)
	}
}

func testCountBrowserCertsSince(t *testing.T, s storage.Store) {
	ctx := t.Context()
	ds := enrollN(t, s, 2)
	a, b := ds[0], ds[1]
	if n := countSince(t, s, a.ID, time.Time{}); n != 0 {
		t.Errorf("count before any certificate = %d, want 0", n)
	}
	for i, nb := range []time.Time{t0, at(hour), at(2 * hour)} {
		record(t, s, newBrowserCert(a, i+1, nb), nil, nb, grace)
	}
	record(t, s, newBrowserCert(b, 9, at(hour)), nil, at(hour), grace)

	// The agent certificate (NotBefore t0) is not counted.
	for _, tc := range []struct {
		since time.Time
		want  int
	}{
		{time.Time{}, 3},
		{at(-hour), 3},
		{t0, 3},
		{at(time.Nanosecond), 2},
		{at(hour), 2},
		{at(2 * hour), 1},
		{at(2*hour + time.Nanosecond), 0},
		{at(48 * hour), 0},
	} {
		if n := countSince(t, s, a.ID, tc.since); n != tc.want {
			t.Errorf("CountBrowserCertsSince(%s) = %d, want %d", fmtTime(tc.since), n, tc.want)
		}
	}
	if n := countSince(t, s, b.ID, t0); n != 1 {
		t.Errorf("count of device B = %d, want 1", n)
	}
	// Revoked and superseded certificates were still issued: they count.
	must(t, s.RevokeBrowserCert(ctx, newBrowserCert(a, 3, t0).Serial, "lost", at(3*hour), storage.AuditEvent{At: at(3 * hour)}))
	if n := countSince(t, s, a.ID, t0); n != 3 {
		t.Errorf("count after a revocation = %d, want 3", n)
	}
	_, err := s.CountBrowserCertsSince(ctx, "no-such-device", t0)
	wantErr(t, err, storage.ErrNotFound)
}

func testSCEPChallengeOnce(t *testing.T, s storage.Store) {
	ctx := t.Context()
	d := enrollN(t, s, 1)[0]
	h := createChallenge(t, s, "one", at(hour))
	other := createChallenge(t, s, "two", at(hour))

	if !usable(t, s, h, t0) {
		t.Fatal("new challenge not usable")
	}
	if usable(t, s, challengeHash("never issued"), t0) {
		t.Error("unknown challenge usable")
	}
	if usable(t, s, h, at(hour)) || usable(t, s, h, at(2*hour)) {
		t.Error("challenge usable at or after its expiry")
	}
	// Checking consumes nothing.
	if !usable(t, s, h, at(hour-time.Nanosecond)) {
		t.Error("challenge not usable just before its expiry")
	}

	c1 := newBrowserCert(d, 1, t0)
	record(t, s, c1, h, at(minute), grace)
	if usable(t, s, h, at(minute)) {
		t.Error("challenge still usable after it was used")
	}
	if !usable(t, s, other, at(minute)) {
		t.Error("using one challenge used another")
	}

	// A second use is refused and stores nothing.
	c2 := newBrowserCert(d, 2, at(2*minute))
	before := browserSnapshot(t, s, [][]byte{h, other}, c2.Serial)
	wantErr(t, s.RecordBrowserCert(ctx, c2, h, storage.IssueLimit{}, at(2*minute), scepAudit(at(2*minute), c2.Serial)), storage.ErrNotFound)
	// So is a challenge never issued, and an empty one.
	wantErr(t, s.RecordBrowserCert(ctx, c2, challengeHash("never issued"), storage.IssueLimit{}, at(2*minute), scepAudit(at(2*minute), c2.Serial)), storage.ErrNotFound)
	wantErr(t, s.RecordBrowserCert(ctx, c2, []byte{}, storage.IssueLimit{}, at(2*minute), scepAudit(at(2*minute), c2.Serial)), storage.ErrNotFound)
	before.unchanged(t, s)

	// A used challenge is kept (so a reuse is told apart), and cannot be
	// created again until it is swept.
	wantErr(t, s.CreateSCEPChallenge(ctx, h, at(5*hour), storage.AuditEvent{At: t0}), storage.ErrAlreadyExists)
	wantErr(t, s.CreateSCEPChallenge(ctx, other, at(5*hour), storage.AuditEvent{At: t0}), storage.ErrAlreadyExists)
	before.unchanged(t, s)

	// The other challenge still works, once, and without a challenge (the
	// static one, checked by the caller) recording works as well.
	record(t, s, c2, other, at(2*minute), grace)
	record(t, s, newBrowserCert(d, 3, at(3*minute)), nil, at(3*minute), grace)
	if n := len(listBrowserCerts(t, s, d.ID)); n != 3 {
		t.Errorf("%d browser certificates, want 3", n)
	}

	if created := len(auditDetails(t, s, "", "scep_challenge.create")); created != 2 {
		t.Errorf("%d challenge creations audited, want 2", created)
	}
}

func testSCEPChallengeExpired(t *testing.T, s storage.Store) {
	ctx := t.Context()
	d := enrollN(t, s, 1)[0]
	h := createChallenge(t, s, "short", at(hour))
	c := newBrowserCert(d, 1, at(hour))

	before := browserSnapshot(t, s, [][]byte{h}, c.Serial)
	for _, now := range []time.Time{at(hour), at(hour + time.Nanosecond), at(48 * hour)} {
		wantErr(t, s.RecordBrowserCert(ctx, c, h, storage.IssueLimit{}, now, scepAudit(now, c.Serial)), storage.ErrNotFound)
	}
	before.unchanged(t, s)
	// Just before the expiry it works.
	record(t, s, c, h, at(hour-time.Nanosecond), grace)
}

// The same one-time challenge presented by several SCEP requests at once
// (on one replica or several) issues one certificate.
func testSCEPChallengeConcurrent(t *testing.T, s storage.Store) {
	ds := enrollN(t, s, racers)
	var n atomic.Int32

	// All for one Mac.
	h := createChallenge(t, s, "race-one-device", at(hour))
	errs := race(func() error {
		c := newBrowserCert(ds[0], int(n.Add(1)), t0)
		return s.RecordBrowserCert(t.Context(), c, h, storage.IssueLimit{}, at(minute), scepAudit(at(minute), c.Serial))
	})
	oneWinner(t, "RecordBrowserCert on one device", errs, storage.ErrNotFound)
	if got := len(listBrowserCerts(t, s, ds[0].ID)); got != 1 {
		t.Errorf("%d browser certificates stored for one challenge, want 1", got)
	}

	// Each for another Mac.
	h = createChallenge(t, s, "race-many-devices", at(hour))
	var next atomic.Int32
	errs = race(func() error {
		i := int(next.Add(1)) - 1
		c := newBrowserCert(ds[i], 100+i, t0)
		return s.RecordBrowserCert(t.Context(), c, h, storage.IssueLimit{}, at(minute), scepAudit(at(minute), c.Serial))
	})
	oneWinner(t, "RecordBrowserCert on many devices", errs, storage.ErrNotFound)
	stored := 0
	for _, d := range ds {
		stored += len(listBrowserCerts(t, s, d.ID))
	}
	if stored != 2 {
		t.Errorf("%d browser certificates stored for two challenges, want 2", stored)
	}
	if usable(t, s, h, at(minute)) {
		t.Error("challenge usable after the race")
	}
}

// A Mac is recorded at most limit.Certs browser certificates with a
// NotBefore within limit.Per before the new one's: past that the recording
// is refused, consumes no challenge and changes nothing, and concurrent
// recordings for one Mac (on one replica or several) count one after the
// other, so that no burst of requests passes it together.
func testBrowserCertLimit(t *testing.T, s storage.Store) {
	ctx := t.Context()
	ds := enrollN(t, s, 3)
	d := ds[0]
	limit := storage.IssueLimit{Certs: 3, Per: 24 * hour}
	rec := func(d storage.Device, n int, nb time.Time, challenge []byte) error {
		c := newBrowserCert(d, n, nb)
		return s.RecordBrowserCert(ctx, c, challenge, limit, nb, scepAudit(nb, c.Serial))
	}
	for i := 1; i <= 3; i++ {
		must(t, rec(d, i, at(time.Duration(i)*hour), nil))
	}

	// The fourth in the window: refused, its challenge kept, nothing
	// stored, and it says when the next may be.
	h := createChallenge(t, s, "limit", at(48*hour))
	fourth := newBrowserCert(d, 4, at(4*hour))
	before := browserSnapshot(t, s, [][]byte{h}, fourth.Serial)
	err := rec(d, 4, at(4*hour), h)
	wantErr(t, err, storage.ErrTooManyCerts)
	var tooMany *storage.TooManyCertsError
	if !errors.As(err, &tooMany) || !tooMany.RetryAt.Equal(at(25*hour)) {
		t.Errorf("refusal %v, want a *TooManyCertsError with RetryAt %s", err, at(25*hour))
	}
	before.unchanged(t, s)

	// Another Mac's allowance is its own; device certificates do not count.
	must(t, rec(ds[1], 10, at(4*hour), nil))

	// From RetryAt, when the first is Per before the new one, one more.
	wantErr(t, rec(d, 5, at(25*hour-time.Nanosecond), nil), storage.ErrTooManyCerts)
	must(t, rec(d, 6, at(25*hour), nil))
	wantErr(t, rec(d, 7, at(25*hour), nil), storage.ErrTooManyCerts)

	// racers at once for a third Mac: exactly limit.Certs stored.
	var n atomic.Int32
	errs := race(func() error { return rec(ds[2], 100+int(n.Add(1)), at(hour), nil) })
	won := 0
	for _, err := range errs {
		switch {
		case err == nil:
			won++
		case !errors.Is(err, storage.ErrTooManyCerts):
			t.Errorf("concurrent recording: %v, want nil or %v", err, storage.ErrTooManyCerts)
		}
	}
	if got := len(listBrowserCerts(t, s, ds[2].ID)); won != limit.Certs || got != limit.Certs {
		t.Errorf("%d of %d concurrent recordings succeeded and %d are stored, want %d", won, racers, got, limit.Certs)
	}
}

func testRecordBrowserCertDevice(t *testing.T, s storage.Store) {
	ctx := t.Context()
	ds := enrollN(t, s, 2)
	a, b := ds[0], ds[1]
	h := createChallenge(t, s, "device", at(hour))
	old := newBrowserCert(b, 1, t0)
	record(t, s, old, nil, t0, grace)
	revokeDevice(t, s, b.ID)

	unknown := newBrowserCert(a, 2, at(minute))
	unknown.DeviceID = "no-such-device"
	onRevoked := newBrowserCert(b, 3, at(minute))
	otherMac := newBrowserCert(a, 4, at(minute))
	otherMac.HardwareUUID = b.HardwareUUID
	before := browserSnapshot(t, s, [][]byte{h}, unknown.Serial, onRevoked.Serial, otherMac.Serial)

	for _, tc := range []struct {
		name   string
		c      storage.BrowserCert
		target error
	}{
		{"unknown device", unknown, storage.ErrNotFound},
		{"revoked device", onRevoked, storage.ErrDeviceRevoked},
		// The certificate names another Mac than the device's.
		{"hardware UUID of another device", otherMac, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, challenge := range [][]byte{nil, h} {
				err := s.RecordBrowserCert(ctx, tc.c, challenge, storage.IssueLimit{}, at(minute), scepAudit(at(minute), tc.c.Serial))
				wantErr(t, err, tc.target)
			}
			// Neither the challenge was consumed nor the revoked device's
			// certificate superseded.
			before.unchanged(t, s)
		})
	}
	if !usable(t, s, h, at(minute)) {
		t.Error("challenge consumed by refused calls")
	}
}

func testRecordBrowserCertDuplicate(t *testing.T, s storage.Store) {
	ctx := t.Context()
	d := enrollN(t, s, 1)[0]
	h := createChallenge(t, s, "dup", at(hour))
	c1 := newBrowserCert(d, 1, t0)
	c2 := newBrowserCert(d, 2, at(minute))
	record(t, s, c1, nil, t0, grace)
	record(t, s, c2, nil, at(minute), grace)

	// Same serial, later and with grace 0: had it been recorded, c2 would
	// stop counting at once.
	dup := newBrowserCert(d, 1, at(2*minute))
	agentSerial := newBrowserCert(d, 3, at(2*minute))
	agentSerial.Serial = d.CertSerial
	before := browserSnapshot(t, s, [][]byte{h}, d.CertSerial)
	for _, c := range []storage.BrowserCert{c1, dup, agentSerial} {
		for _, challenge := range [][]byte{nil, h} {
			err := s.RecordBrowserCert(ctx, c, challenge, storage.IssueLimit{}, at(2*minute), scepAudit(at(2*minute), c.Serial))
			wantErr(t, err, storage.ErrAlreadyExists)
		}
	}
	before.unchanged(t, s)
	agent, err := s.GetCert(ctx, d.CertSerial)
	must(t, err)
	if agent.Kind != storage.CertKindDevice {
		t.Errorf("agent certificate kind = %q after a refused duplicate, want %q", agent.Kind, storage.CertKindDevice)
	}
}

func testDeleteExpiredSCEPChallenges(t *testing.T, s storage.Store) {
	ctx := t.Context()
	d := enrollN(t, s, 1)[0]
	h1 := createChallenge(t, s, "1", at(hour))
	h2 := createChallenge(t, s, "2", at(2*hour))
	h3 := createChallenge(t, s, "3", at(3*hour))
	record(t, s, newBrowserCert(d, 1, t0), h2, t0, grace) // h2 is used

	sweep := func(before time.Time, want int) {
		t.Helper()
		n, err := s.DeleteExpiredSCEPChallenges(ctx, before)
		must(t, err)
		if n != want {
			t.Errorf("DeleteExpiredSCEPChallenges(%s) = %d, want %d", fmtTime(before), n, want)
		}
	}
	sweep(at(hour), 0) // strictly before
	sweep(at(2*hour), 1)
	sweep(at(2*hour), 0)
	sweep(at(3*hour), 1) // used or not

	// Swept challenges are forgotten and can be created again; the live
	// one is still there, usable.
	createChallenge(t, s, "1", at(5*hour))
	createChallenge(t, s, "2", at(5*hour))
	wantErr(t, s.CreateSCEPChallenge(ctx, h3, at(5*hour), storage.AuditEvent{At: t0}), storage.ErrAlreadyExists)
	if !usable(t, s, h3, at(2*hour)) {
		t.Error("live challenge swept")
	}
	if !usable(t, s, h1, at(2*hour)) || !usable(t, s, h2, at(2*hour)) {
		t.Error("re-created challenges not usable")
	}
	sweep(at(6*hour), 3)
}

func testBrowserCertUnstorable(t *testing.T, s storage.Store) {
	ctx := t.Context()
	d := enrollN(t, s, 1)[0]
	h := createChallenge(t, s, "unstorable", at(hour))
	good := newBrowserCert(d, 1, t0)
	record(t, s, good, nil, t0, grace)

	c := newBrowserCert(d, 2, at(minute))
	edit := func(f func(c *storage.BrowserCert)) storage.BrowserCert {
		c := c
		f(&c)
		return c
	}
	long := strings.Repeat("a", storage.MaxTextLen+1)
	audit := scepAudit(at(minute), c.Serial)
	before := browserSnapshot(t, s, [][]byte{h}, c.Serial, "")

	records := []struct {
		name  string
		c     storage.BrowserCert
		now   time.Time
		grace time.Duration
	}{
		{"agent kind", edit(func(c *storage.BrowserCert) { c.Kind = storage.CertKindDevice }), at(minute), grace},
		{"empty kind", edit(func(c *storage.BrowserCert) { c.Kind = "" }), at(minute), grace},
		{"empty serial", edit(func(c *storage.BrowserCert) { c.Serial = "" }), at(minute), grace},
		{"serial too long", edit(func(c *storage.BrowserCert) { c.Serial = long }), at(minute), grace},
		{"empty hardware UUID", edit(func(c *storage.BrowserCert) { c.HardwareUUID = "" }), at(minute), grace},
		{"hardware UUID with NUL", edit(func(c *storage.BrowserCert) { c.HardwareUUID += "\x00" }), at(minute), grace},
		{"SHA-1 upper case", edit(func(c *storage.BrowserCert) { c.SHA1 = strings.ToUpper(c.SHA1) }), at(minute), grace},
		{"SHA-1 short", edit(func(c *storage.BrowserCert) { c.SHA1 = c.SHA1[:38] }), at(minute), grace},
		{"SHA-1 empty", edit(func(c *storage.BrowserCert) { c.SHA1 = "" }), at(minute), grace},
		{"not after out of range", edit(func(c *storage.BrowserCert) { c.NotAfter = time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC) }), at(minute), grace},
		{"zero now", c, time.Time{}, grace},
	}
	for _, tc := range records {
		for _, challenge := range [][]byte{nil, h} {
			if err := s.RecordBrowserCert(ctx, tc.c, challenge, storage.IssueLimit{}, tc.now, audit); err == nil {
				t.Errorf("RecordBrowserCert with %s succeeded, want an error", tc.name)
			}
		}
	}
	// Superseding with an impossible grace period changes nothing either.
	for name, g := range map[string]time.Duration{"negative grace": -time.Nanosecond, "grace out of range": time.Duration(1<<63 - 1)} {
		if _, err := s.SupersedeBrowserCerts(ctx, c.Serial, at(minute), g, audit); err == nil {
			t.Errorf("SupersedeBrowserCerts with %s succeeded, want an error", name)
		}
	}
	for _, tc := range []struct {
		name string
		hash []byte
		exp  time.Time
	}{
		{"short hash", h[:31], at(hour)},
		{"empty hash", nil, at(hour)},
		{"zero expiry", challengeHash("zero expiry"), time.Time{}},
		{"expiry out of range", challengeHash("far"), time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)},
	} {
		if err := s.CreateSCEPChallenge(ctx, tc.hash, tc.exp, storage.AuditEvent{At: t0}); err == nil {
			t.Errorf("CreateSCEPChallenge with %s succeeded, want an error", tc.name)
		}
	}
	for _, tc := range []struct {
		name, reason string
		at           time.Time
	}{
		{"zero time", "lost", time.Time{}},
		{"reason with NUL", "lost\x00", at(hour)},
		{"reason too long", long, at(hour)},
	} {
		if err := s.RevokeBrowserCert(ctx, good.Serial, tc.reason, tc.at, storage.AuditEvent{At: t0}); err == nil {
			t.Errorf("RevokeBrowserCert with %s succeeded, want an error", tc.name)
		}
	}
	before.unchanged(t, s)
	if usable(t, s, challengeHash("zero expiry"), time.Time{}) {
		t.Error("a refused challenge was stored")
	}
	// The right call still works.
	record(t, s, c, h, at(minute), grace)
}
