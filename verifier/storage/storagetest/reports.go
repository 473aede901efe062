package storagetest

import (
	"bytes"
	"errors"
	"math"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/clearance/clearance/verifier/storage"
)

var reportTests = []test{
	{"SaveAndRead", testSaveAndRead},
	{"SeqMustIncrease", testSeqMustIncrease},
	{"UnknownOrRevokedDevice", testSaveUnknownOrRevoked},
	{"LastSeenNeverMovesBack", testSaveLastSeen},
	{"NonceErrors", testNonceErrors},
	{"NonceConsumedOnlyOnSuccess", testNonceConsumedOnlyOnSuccess},
	{"Retention", testRetention},
	{"KeepBelowOne", testKeepBelowOne},
	{"ListReportsOrderAndLimit", testListReports},
	{"LargeSeq", testLargeSeq},
	{"ExactResend", testExactResend},
	{"KeyMustBeCurrent", testKeyMustBeCurrent},
}

var nonceTests = []test{
	{"CreateDuplicate", testNonceDuplicate},
	{"DeleteExpired", testDeleteExpiredNonces},
}

func testSaveAndRead(t *testing.T, s storage.Store) {
	ctx := t.Context()
	d := enrollN(t, s, 1)[0]
	r := newReport(d.ID, 1, at(minute))
	// A realistic payload, every byte value included: stored verbatim.
	r.Payload = bytes.Repeat([]byte{0x00, 0x0a, 0x27, 0x5c, 0x80, 0xff}, 350)
	save(t, s, r, nil, 10)

	latest, err := s.LatestReport(ctx, d.ID)
	must(t, err)
	equal(t, "LatestReport", latest, r)
	equal(t, "ListReports", listReports(t, s, d.ID), []storage.Report{r})
	want := d
	want.LastSeq = 1
	want.LastReportAt = r.ObservedAt
	want.LastSeen = r.ReceivedAt
	equal(t, "device after report", getDevice(t, s, d.ID), want)
}

func testSeqMustIncrease(t *testing.T, s storage.Store) {
	ctx := t.Context()
	ds := enrollN(t, s, 2)
	d := ds[0]

	// A fresh device has LastSeq 0: seq 0 is not greater.
	before := snapshot(t, s)
	wantErr(t, s.SaveReport(ctx, newReport(d.ID, 0, at(minute)), nil, 10), storage.ErrSeqNotIncreasing)
	before.unchanged(t, s)

	save(t, s, newReport(d.ID, 5, at(minute)), nil, 10)
	for _, seq := range []uint64{0, 4, 5} {
		before := snapshot(t, s)
		wantErr(t, s.SaveReport(ctx, newReport(d.ID, seq, at(2*minute)), nil, 10), storage.ErrSeqNotIncreasing)
		before.unchanged(t, s)
	}
	// Gaps are fine: only order matters.
	save(t, s, newReport(d.ID, 6, at(3*minute)), nil, 10)
	save(t, s, newReport(d.ID, 100, at(4*minute)), nil, 10)
	if got := getDevice(t, s, d.ID).LastSeq; got != 100 {
		t.Errorf("LastSeq = %d, want 100", got)
	}
	// Each device has its own sequence.
	save(t, s, newReport(ds[1].ID, 1, at(5*minute)), nil, 10)
	if got := seqs(listReports(t, s, d.ID)); !slices.Equal(got, []uint64{100, 6, 5}) {
		t.Errorf("seqs = %v, want [100 6 5]", got)
	}
}

func testSaveUnknownOrRevoked(t *testing.T, s storage.Store) {
	ds := enrollN(t, s, 2)
	revokeDevice(t, s, ds[1].ID)
	createNonce(t, s, ds[0].ID, "nonce", at(hour))
	before := snapshot(t, s)
	wantErr(t, s.SaveReport(t.Context(), newReport("no-such-device", 1, at(minute)), nil, 10), storage.ErrNotFound)
	wantErr(t, s.SaveReport(t.Context(), newReport(ds[1].ID, 1, at(minute)), nil, 10), storage.ErrDeviceRevoked)
	before.unchanged(t, s)
}

func testSaveLastSeen(t *testing.T, s storage.Store) {
	ctx := t.Context()
	d := enrollN(t, s, 1)[0]
	must(t, s.TouchDevice(ctx, d.ID, at(10*hour)))

	r := newReport(d.ID, 1, at(5*hour))
	save(t, s, r, nil, 10)
	got := getDevice(t, s, d.ID)
	if !got.LastSeen.Equal(at(10*hour)) || got.LastSeq != 1 || !got.LastReportAt.Equal(r.ObservedAt) {
		t.Errorf("after an older report: LastSeen %s, LastSeq %d, LastReportAt %s; want %s, 1, %s",
			fmtTime(got.LastSeen), got.LastSeq, fmtTime(got.LastReportAt), fmtTime(at(10*hour)), fmtTime(r.ObservedAt))
	}
	save(t, s, newReport(d.ID, 2, at(11*hour)), nil, 10)
	if got := getDevice(t, s, d.ID).LastSeen; !got.Equal(at(11 * hour)) {
		t.Errorf("after a newer report: LastSeen %s, want %s", fmtTime(got), fmtTime(at(11*hour)))
	}
}

// testNonceErrors checks each nonce error, and their order when several
// apply: unknown, wrong device, used, expired.
func testNonceErrors(t *testing.T, s storage.Store) {
	ctx := t.Context()
	ds := enrollN(t, s, 2)
	a, b := ds[0].ID, ds[1].ID
	createNonce(t, s, a, "a-used", at(2*hour))
	createNonce(t, s, a, "a-used-expired", at(hour))
	createNonce(t, s, a, "a-expires-on-arrival", at(hour))
	createNonce(t, s, a, "a-expired", at(hour-1))
	createNonce(t, s, a, "a-valid", at(hour+1))
	createNonce(t, s, b, "b-valid", at(2*hour))
	createNonce(t, s, b, "b-expired", at(minute))
	createNonce(t, s, b, "b-used", at(2*hour))
	save(t, s, newReport(a, 1, at(minute)), []byte("a-used"), 10)
	save(t, s, newReport(a, 2, at(minute)), []byte("a-used-expired"), 10)
	save(t, s, newReport(b, 1, at(minute)), []byte("b-used"), 10)
	const seq = 2 // a's LastSeq; every report below arrives at(hour)

	cases := []struct {
		name, nonce string
		want        error
	}{
		{"unknown", "never-issued", storage.ErrNonceUnknown},
		{"issued to another device", "b-valid", storage.ErrNonceWrongDevice},
		{"used", "a-used", storage.ErrNonceUsed},
		{"expires when the report arrives", "a-expires-on-arrival", storage.ErrNonceExpired},
		{"expired before the report arrived", "a-expired", storage.ErrNonceExpired},
		{"another device's and expired", "b-expired", storage.ErrNonceWrongDevice},
		{"another device's and used", "b-used", storage.ErrNonceWrongDevice},
		{"used and expired", "a-used-expired", storage.ErrNonceUsed},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := snapshot(t, s)
			err := s.SaveReport(ctx, newReport(a, seq+1, at(hour)), []byte(tc.nonce), 10)
			wantErr(t, err, tc.want)
			before.unchanged(t, s)
		})
	}

	// The seq check comes before the nonce.
	before := snapshot(t, s)
	wantErr(t, s.SaveReport(ctx, newReport(a, seq, at(hour)), []byte("never-issued"), 10), storage.ErrSeqNotIncreasing)
	before.unchanged(t, s)

	// After all that, a valid nonce (expiring a nanosecond after arrival)
	// is accepted once.
	save(t, s, newReport(a, seq+1, at(hour)), []byte("a-valid"), 10)
	wantErr(t, s.SaveReport(ctx, newReport(a, seq+2, at(hour)), []byte("a-valid"), 10), storage.ErrNonceUsed)
	// And an empty nonce means none.
	save(t, s, newReport(a, seq+2, at(hour)), []byte{}, 10)
	// The attempt with another device's nonce did not use it up.
	save(t, s, newReport(b, 2, at(hour)), []byte("b-valid"), 10)
}

// A report that fails any check must not use up its nonce: the agent
// retries with a corrected report and the same nonce.
func testNonceConsumedOnlyOnSuccess(t *testing.T, s storage.Store) {
	ctx := t.Context()
	d := enrollN(t, s, 1)[0]
	save(t, s, newReport(d.ID, 5, at(minute)), nil, 10)
	createNonce(t, s, d.ID, "nonce", at(hour))

	wantErr(t, s.SaveReport(ctx, newReport(d.ID, 5, at(2*minute)), []byte("nonce"), 10), storage.ErrSeqNotIncreasing)
	wantErr(t, s.SaveReport(ctx, newReport(d.ID, 6, at(2*minute)), []byte("nonce"), 0), nil)
	save(t, s, newReport(d.ID, 6, at(2*minute)), []byte("nonce"), 10)
	wantErr(t, s.SaveReport(ctx, newReport(d.ID, 7, at(3*minute)), []byte("nonce"), 10), storage.ErrNonceUsed)
}

func testRetention(t *testing.T, s storage.Store) {
	ds := enrollN(t, s, 2)
	a, b := ds[0].ID, ds[1].ID
	save(t, s, newReport(b, 1, at(minute)), nil, 3)
	save(t, s, newReport(b, 2, at(minute)), nil, 3)

	for seq := uint64(1); seq <= 5; seq++ {
		save(t, s, newReport(a, seq, at(minute)), nil, 3)
	}
	steps := []struct {
		seq  uint64
		keep int
		want []uint64
	}{
		{0, 0, []uint64{5, 4, 3}},
		{6, 1, []uint64{6}},
		{7, 10, []uint64{7, 6}},
		{8, 2, []uint64{8, 7}},
	}
	for _, st := range steps {
		if st.seq > 0 {
			save(t, s, newReport(a, st.seq, at(minute)), nil, st.keep)
		}
		if got := seqs(listReports(t, s, a)); !slices.Equal(got, st.want) {
			t.Errorf("after seq %d with keep %d: seqs %v, want %v", st.seq, st.keep, got, st.want)
		}
	}
	if got := seqs(listReports(t, s, b)); !slices.Equal(got, []uint64{2, 1}) {
		t.Errorf("other device's seqs = %v, want [2 1]: retention is per device", got)
	}
}

func testKeepBelowOne(t *testing.T, s storage.Store) {
	d := enrollN(t, s, 1)[0]
	save(t, s, newReport(d.ID, 1, at(minute)), nil, 10)
	for _, keep := range []int{0, -1} {
		before := snapshot(t, s)
		wantErr(t, s.SaveReport(t.Context(), newReport(d.ID, 2, at(minute)), nil, keep), nil)
		before.unchanged(t, s)
	}
}

func testListReports(t *testing.T, s storage.Store) {
	ctx := t.Context()
	ds := enrollN(t, s, 2)
	d := ds[0]
	var all []storage.Report
	for seq := uint64(1); seq <= 5; seq++ {
		r := newReport(d.ID, seq*10, at(time.Duration(seq)*minute))
		save(t, s, r, nil, 100)
		all = append([]storage.Report{r}, all...)
	}
	for _, tc := range []struct {
		limit int
		want  []storage.Report
	}{
		{1, all[:1]},
		{2, all[:2]},
		{5, all},
		{100, all},
		{0, all[:1]},
		{-1, all[:1]},
	} {
		got, err := s.ListReports(ctx, d.ID, tc.limit)
		must(t, err)
		equal(t, "ListReports limit "+strconv.Itoa(tc.limit), got, tc.want)
	}
	latest, err := s.LatestReport(ctx, d.ID)
	must(t, err)
	equal(t, "LatestReport", latest, all[0])

	// A device without reports has an empty history and no latest report.
	got, err := s.ListReports(ctx, ds[1].ID, 10)
	must(t, err)
	if len(got) != 0 {
		t.Errorf("ListReports of a device without reports = %+v", got)
	}
	_, err = s.LatestReport(ctx, ds[1].ID)
	wantErr(t, err, storage.ErrNotFound)
}

// Seqs are uint64, and backends may store them in signed 64-bit columns.
// Seqs up to MaxInt64 must round-trip; beyond that a backend may refuse
// the report, but must then change nothing.
func testLargeSeq(t *testing.T, s storage.Store) {
	ctx := t.Context()
	d := enrollN(t, s, 1)[0]
	big := newReport(d.ID, math.MaxInt64-1, at(minute))
	save(t, s, big, nil, 10)
	latest, err := s.LatestReport(ctx, d.ID)
	must(t, err)
	equal(t, "LatestReport", latest, big)
	if got := getDevice(t, s, d.ID).LastSeq; got != math.MaxInt64-1 {
		t.Errorf("LastSeq = %d, want %d", got, uint64(math.MaxInt64-1))
	}

	before := snapshot(t, s)
	huge := newReport(d.ID, math.MaxUint64, at(2*minute))
	if err := s.SaveReport(ctx, huge, nil, 10); err != nil {
		before.unchanged(t, s)
		return
	}
	latest, err = s.LatestReport(ctx, d.ID)
	must(t, err)
	equal(t, "LatestReport", latest, huge)
	if got := getDevice(t, s, d.ID).LastSeq; got != math.MaxUint64 {
		t.Errorf("LastSeq = %d, want %d", got, uint64(math.MaxUint64))
	}
}

func testNonceDuplicate(t *testing.T, s storage.Store) {
	ctx := t.Context()
	ds := enrollN(t, s, 2)
	createNonce(t, s, ds[0].ID, "nonce", at(hour))
	wantErr(t, s.CreateNonce(ctx, ds[0].ID, []byte("nonce"), at(2*hour)), storage.ErrAlreadyExists)
	wantErr(t, s.CreateNonce(ctx, ds[1].ID, []byte("nonce"), at(2*hour)), storage.ErrAlreadyExists)

	// The original stands: issued to the first device, expiring at(hour).
	wantErr(t, s.SaveReport(ctx, newReport(ds[1].ID, 1, at(minute)), []byte("nonce"), 10), storage.ErrNonceWrongDevice)
	wantErr(t, s.SaveReport(ctx, newReport(ds[0].ID, 1, at(hour)), []byte("nonce"), 10), storage.ErrNonceExpired)
	save(t, s, newReport(ds[0].ID, 1, at(minute)), []byte("nonce"), 10)
	wantErr(t, s.CreateNonce(ctx, ds[0].ID, []byte("nonce"), at(2*hour)), storage.ErrAlreadyExists)

	// Nonces are bytes: one that differs only after a zero byte is another.
	createNonce(t, s, ds[0].ID, "nonce\x00", at(hour))
	createNonce(t, s, ds[0].ID, "\x00nonce", at(hour))
}

func testDeleteExpiredNonces(t *testing.T, s storage.Store) {
	ctx := t.Context()
	d := enrollN(t, s, 1)[0]
	createNonce(t, s, d.ID, "expired", at(hour))
	createNonce(t, s, d.ID, "expired-used", at(hour))
	createNonce(t, s, d.ID, "expires-at-cutoff", at(2*hour))
	createNonce(t, s, d.ID, "live", at(3*hour))
	save(t, s, newReport(d.ID, 1, at(minute)), []byte("expired-used"), 10)

	n, err := s.DeleteExpiredNonces(ctx, at(2*hour))
	must(t, err)
	if n != 2 {
		t.Errorf("DeleteExpiredNonces = %d, want 2 (used or not, strictly before the cutoff)", n)
	}
	n, err = s.DeleteExpiredNonces(ctx, at(2*hour))
	must(t, err)
	if n != 0 {
		t.Errorf("second DeleteExpiredNonces = %d, want 0", n)
	}

	// Deleted nonces are unknown now; the one at the cutoff still exists.
	for _, nonce := range []string{"expired", "expired-used"} {
		err := s.SaveReport(ctx, newReport(d.ID, 2, at(2*hour)), []byte(nonce), 10)
		wantErr(t, err, storage.ErrNonceUnknown)
	}
	wantErr(t, s.SaveReport(ctx, newReport(d.ID, 2, at(2*hour)), []byte("expires-at-cutoff"), 10), storage.ErrNonceExpired)
	save(t, s, newReport(d.ID, 2, at(2*hour)), []byte("live"), 10)
}

// testExactResend: a report stored before is recognised when it comes
// again (its ack was lost), whichever of the device's stored reports it
// is, and nothing changes; the same seq with other bytes is still refused.
func testExactResend(t *testing.T, s storage.Store) {
	ctx := t.Context()
	ds := enrollN(t, s, 2)
	d := ds[0]
	createNonce(t, s, d.ID, "check", at(hour))
	r1 := newReport(d.ID, 1, at(minute))
	r2 := newReport(d.ID, 2, at(2*minute))
	r3 := newReport(d.ID, 3, at(3*minute))
	save(t, s, r1, nil, 3)
	save(t, s, r2, []byte("check"), 3)
	save(t, s, r3, nil, 3)

	before := snapshot(t, s)
	for _, tc := range []struct {
		name  string
		r     storage.Report
		nonce string
		want  error
	}{
		{"the latest again", r3, "", storage.ErrReportStored},
		{"an older one again", r1, "", storage.ErrReportStored},
		// Its nonce was consumed when it was stored; the resend is still
		// the same report.
		{"the one that answered a nonce", r2, "check", storage.ErrReportStored},
		{"same seq, other bytes", newReport(d.ID, 2, at(4*minute)), "", storage.ErrSeqNotIncreasing},
		{"same bytes, other seq", func() storage.Report { r := r2; r.Seq = 1; return r }(), "", storage.ErrSeqNotIncreasing},
		{"another device's report", signedWith(func() storage.Report { r := r3; r.DeviceID = ds[1].ID; return r }(), deviceKey(ds[1].ID)), "", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var nonce []byte
			if tc.nonce != "" {
				nonce = []byte(tc.nonce)
			}
			err := s.SaveReport(ctx, tc.r, nonce, 3)
			if tc.want == nil {
				must(t, err)
				return
			}
			wantErr(t, err, tc.want)
			if errors.Is(err, storage.ErrReportStored) && errors.Is(err, storage.ErrSeqNotIncreasing) {
				t.Errorf("err = %v matches both ErrReportStored and ErrSeqNotIncreasing", err)
			}
		})
	}
	equal(t, "first device after the resends", snapshot(t, s).Reports[d.ID], before.Reports[d.ID])

	// Once retention dropped it, a resend is no longer recognised: only
	// its seq is, as not above the last.
	save(t, s, newReport(d.ID, 4, at(5*minute)), nil, 3)
	wantErr(t, s.SaveReport(ctx, r1, nil, 3), storage.ErrSeqNotIncreasing)
}

// testKeyMustBeCurrent: a report verified with a key the device no longer
// holds is refused, whatever its seq, while a renewed certificate (same
// key) changes nothing; after re-enrollment only the new key reports.
func testKeyMustBeCurrent(t *testing.T, s storage.Store) {
	ctx := t.Context()
	d := enrollN(t, s, 1)[0]
	oldKey := d.PublicKey
	save(t, s, newReport(d.ID, 1, at(minute)), nil, 10)

	// Renewal keeps the key: reports go on.
	must(t, s.RenewDeviceCert(ctx, storage.Cert{Serial: "abc123", DeviceID: d.ID, Kind: "device", NotBefore: at(minute), NotAfter: at(48 * hour), DER: []byte("renewed")},
		storage.IssueLimit{}, storage.AuditEvent{At: at(minute), Actor: "agent", Action: "device.renew"}))
	save(t, s, newReport(d.ID, 2, at(2*minute)), nil, 10)

	// A key that never was the device's.
	before := snapshot(t, s, "abc124")
	wantErr(t, s.SaveReport(ctx, signedWith(newReport(d.ID, 3, at(3*minute)), []byte("someone else's key")), nil, 10), storage.ErrKeyReplaced)
	wantErr(t, s.SaveReport(ctx, signedWith(newReport(d.ID, 3, at(3*minute)), nil), nil, 10), storage.ErrKeyReplaced)
	before.unchanged(t, s)

	// The device enrolls again with a new key.
	again := newEnrollment(1, "fleet")
	again.Device.PublicKey = []byte("pkix-der-key-new")
	again.Device.CertSerial, again.Cert.Serial = "abc124", "abc124"
	again.Device.EnrolledAt, again.Cert.NotBefore = at(hour), at(hour)
	enroll(t, s, again)
	createNonce(t, s, d.ID, "check", at(2*hour))

	before = snapshot(t, s)
	for name, r := range map[string]storage.Report{
		"old key, next seq":              newReport(d.ID, 3, at(hour)),
		"old key, seq as high as can be": newReport(d.ID, math.MaxInt64, at(hour)),
		"old key, an exact resend":       newReport(d.ID, 2, at(2*minute)),
	} {
		err := s.SaveReport(ctx, r, nil, 10)
		wantErr(t, err, storage.ErrKeyReplaced)
		if err := s.SaveReport(ctx, r, []byte("check"), 10); !errors.Is(err, storage.ErrKeyReplaced) {
			t.Errorf("%s with a nonce: err = %v, want ErrKeyReplaced", name, err)
		}
	}
	before.unchanged(t, s)
	if got := getDevice(t, s, d.ID).LastSeq; got != 0 {
		t.Fatalf("LastSeq = %d after the old key's reports, want 0", got)
	}

	// The new key reports from seq 1, and its report keeps its key.
	r := signedWith(newReport(d.ID, 1, at(hour)), again.Device.PublicKey)
	save(t, s, r, []byte("check"), 10)
	latest, err := s.LatestReport(ctx, d.ID)
	must(t, err)
	equal(t, "LatestReport", latest, r)
	rs := listReports(t, s, d.ID)
	if len(rs) != 3 || !bytes.Equal(rs[2].Key, oldKey) {
		t.Errorf("history = %d reports, oldest with key %q; want 3, the oldest with the first key", len(rs), rs[len(rs)-1].Key)
	}
}
