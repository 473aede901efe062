package storagetest

import (
	"strings"
	"testing"
	"time"

	"github.com/clearance/clearance/verifier/storage"
)

var settingsRejectedTests = []test{
	{"SetKeptCleared", testSettingsRejected},
	{"WithTheirReport", testSettingsRejectedWithTheirReport},
	{"Refused", testSettingsRejectedRefused},
}

// rejecting is r saying its agent rejected the settings it was given at
// hour h, for why.
func rejecting(r storage.Report, h int, why string) storage.Report {
	r.SettingsRejectedAt, r.SettingsRejected = at(time.Duration(h)*hour-time.Minute), why
	return r
}

// checkRejected checks what the device, read alone and in a listing, says
// of its agent's settings: rejected at hour h for why, or (why "") none.
func checkRejected(t *testing.T, s storage.Store, deviceID, what string, h int, why string) {
	t.Helper()
	var want time.Time
	if why != "" {
		want = at(time.Duration(h)*hour - time.Minute)
	}
	d := getDevice(t, s, deviceID)
	equal(t, what+": rejected at", d.SettingsRejectedAt, want)
	equal(t, what+": why", d.SettingsRejected, why)
	listed, err := s.ListDevices(t.Context(), "", 100)
	must(t, err)
	for _, l := range listed {
		if l.ID == deviceID {
			equal(t, what+": listed, rejected at", l.SettingsRejectedAt, want)
			equal(t, what+": listed, why", l.SettingsRejected, why)
		}
	}
}

// testSettingsRejected: each report makes what it says of its agent's
// settings the device's: a rejection, the same again, another, none.
func testSettingsRejected(t *testing.T, s storage.Store) {
	ds := enrollN(t, s, 2)
	id := ds[0].ID
	checkRejected(t, s, id, "enrolled", 0, "")
	const why = `CAFingerprint from /Library/Managed Preferences/com.clearance.agent.plist key CAFingerprint: no configured CA certificate has this fingerprint (the new ones changed CAFingerprint)`
	save(t, s, rejecting(newReport(id, 1, at(hour)), 1, why), nil, 10)
	checkRejected(t, s, id, "a report that says so", 1, why)
	// Every report says it, and the same again changes nothing else.
	save(t, s, rejecting(newReport(id, 2, at(2*hour)), 1, why), nil, 10)
	checkRejected(t, s, id, "the same again", 1, why)
	want := getDevice(t, s, id)
	if want.LastSeq != 2 || !want.LastReportAt.Equal(at(2*hour-2*time.Second)) {
		t.Errorf("device after the second report: seq %d, last report %v", want.LastSeq, want.LastReportAt)
	}
	// Another rejection replaces it, with all it may hold: every byte of
	// UTF-8 but NUL.
	other := "unknown key \"CAFingerprnt\": did you mean CAFingerprint? ✓ \u202e\x1b[2J '\"\\ " + strings.Repeat("é", 300)
	save(t, s, rejecting(newReport(id, 3, at(3*hour)), 3, other), nil, 10)
	checkRejected(t, s, id, "another rejection", 3, other)
	// Another device's is its own.
	checkRejected(t, s, ds[1].ID, "the other device", 0, "")
	save(t, s, newReport(ds[1].ID, 1, at(3*hour)), nil, 10)
	checkRejected(t, s, id, "after the other device's report", 3, other)
	// A report on the settings it was given clears it.
	save(t, s, newReport(id, 4, at(4*hour)), nil, 10)
	checkRejected(t, s, id, "a report of settings that run", 0, "")
	// A re-enrollment keeps what the latest report said, as it keeps
	// LastReportAt: the next report says.
	save(t, s, rejecting(newReport(id, 5, at(5*hour)), 5, why), nil, 10)
	e := newKeyEnrollment("rekeyed", at(6*hour))
	enroll(t, s, e)
	checkRejected(t, s, id, "re-enrolled", 5, why)
	r := signedWith(newReport(id, 1, at(7*hour)), e.Device.PublicKey)
	save(t, s, r, nil, 10)
	checkRejected(t, s, id, "the new key's first report", 0, "")
}

// testSettingsRejectedWithTheirReport: what a report says of the settings
// is stored with the report or not at all, in the reports' order: a
// report refused (an earlier seq, an exact resend, an unknown nonce, a
// replaced key, a revoked device) changes nothing.
func testSettingsRejectedWithTheirReport(t *testing.T, s storage.Store) {
	ctx := t.Context()
	ds := enrollN(t, s, 2)
	id := ds[0].ID
	save(t, s, rejecting(newReport(id, 2, at(2*hour)), 2, "rejected"), nil, 10)
	before := dumpOf(t, s)
	wantErr(t, s.SaveReport(ctx, newReport(id, 1, at(3*hour)), nil, 10), storage.ErrSeqNotIncreasing)
	wantErr(t, s.SaveReport(ctx, newReport(id, 2, at(2*hour)), nil, 10), storage.ErrReportStored)
	wantErr(t, s.SaveReport(ctx, newReport(id, 3, at(3*hour)), []byte("no-such-nonce"), 10), storage.ErrNonceUnknown)
	wantErr(t, s.SaveReport(ctx, signedWith(newReport(id, 3, at(3*hour)), []byte("another key")), nil, 10), storage.ErrKeyReplaced)
	sameDump(t, "refused reports", before, s)
	checkRejected(t, s, id, "after refused reports", 2, "rejected")

	revokeDevice(t, s, ds[1].ID)
	before = dumpOf(t, s)
	wantErr(t, s.SaveReport(ctx, rejecting(newReport(ds[1].ID, 1, at(4*hour)), 4, "rejected"), nil, 10), storage.ErrDeviceRevoked)
	sameDump(t, "a revoked device's report", before, s)
}

// testSettingsRejectedRefused: a rejection no store keeps is refused with
// its report, ErrInvalid, and nothing changes.
func testSettingsRejectedRefused(t *testing.T, s storage.Store) {
	ctx := t.Context()
	id := enrollN(t, s, 1)[0].ID
	save(t, s, newReport(id, 1, at(hour)), nil, 10)
	before := dumpOf(t, s)
	for name, r := range map[string]storage.Report{
		"a time without a reason": rejecting(newReport(id, 2, at(2*hour)), 2, ""),
		"a reason without a time": func() storage.Report {
			r := newReport(id, 2, at(2*hour))
			r.SettingsRejected = "why"
			return r
		}(),
		"an oversized reason": rejecting(newReport(id, 2, at(2*hour)), 2, strings.Repeat("x", storage.MaxTextLen+1)),
		"a reason not UTF-8":  rejecting(newReport(id, 2, at(2*hour)), 2, "caf\xe9"),
		"a NUL in the reason": rejecting(newReport(id, 2, at(2*hour)), 2, "a\x00b"),
	} {
		t.Run(name, func(t *testing.T) {
			wantErr(t, s.SaveReport(ctx, r, nil, 10), storage.ErrInvalid)
		})
	}
	sameDump(t, "reports with a rejection no store keeps", before, s)
}
