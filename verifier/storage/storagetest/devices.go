package storagetest

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/clearance/clearance/verifier/storage"
)

var deviceTests = []test{
	{"EnrollNewDevice", testEnrollNewDevice},
	{"EnrollIgnoresCallerCounters", testEnrollIgnoresCallerCounters},
	{"Reenroll", testReenroll},
	{"ReenrollNeverMovesLastSeenBack", testReenrollNeverMovesLastSeenBack},
	{"EnrollFailuresChangeNothing", testEnrollFailures},
	{"SecretUseCounting", testSecretUseCounting},
	{"ListDevicesPaging", testListDevicesPaging},
	{"RevokeDevice", testRevokeDevice},
	{"UpdateDeviceFacts", testUpdateDeviceFacts},
	{"CountAgentVersions", testCountAgentVersions},
	{"RevokedDeviceAcceptsNothing", testRevokedDeviceAcceptsNothing},
	{"RenewDeviceCert", testRenewDeviceCert},
	{"RenewFailuresChangeNothing", testRenewFailures},
	{"IssueLimit", testIssueLimit},
	{"IssueLimitReenroll", testIssueLimitReenroll},
	{"DeleteSupersededDeviceCerts", testDeleteSupersededDeviceCerts},
	{"TouchDeviceNeverMovesBack", testTouchDevice},
	{"HardwareUUIDCanonical", testHardwareUUIDCanonical},
}

// Hardware UUIDs are one Mac whatever their letter case: stored upper case,
// found in any case, and a revoked Mac cannot come back by changing it.
func testHardwareUUIDCanonical(t *testing.T, s storage.Store) {
	ctx := t.Context()
	createSecret(t, s, "sec")
	e := newEnrollment(1, "sec")
	e.Device.HardwareUUID = "5a1b2c3d-0000-4000-8000-00000000abcd"
	d := enroll(t, s, e)
	const canonical = "5A1B2C3D-0000-4000-8000-00000000ABCD"
	if d.HardwareUUID != canonical {
		t.Fatalf("stored hardware UUID %q, want %q", d.HardwareUUID, canonical)
	}
	for _, u := range []string{canonical, e.Device.HardwareUUID, "5A1b2C3d-0000-4000-8000-00000000aBcD"} {
		got, err := s.GetDeviceByHardwareUUID(ctx, u)
		must(t, err)
		if got.ID != d.ID {
			t.Errorf("GetDeviceByHardwareUUID(%q) = %s, want %s", u, got.ID, d.ID)
		}
	}
	// The same Mac enrolling again in upper case is a re-enrollment.
	again := newEnrollment(1, "sec")
	again.Device.ID, again.Device.HardwareUUID = "dev-other", canonical
	again.Device.CertSerial, again.Cert.Serial = "5e9999", "5e9999"
	got, reenrolled, err := s.EnrollDevice(ctx, again)
	must(t, err)
	if !reenrolled || got.ID != d.ID {
		t.Errorf("upper-case enrollment: reenrolled %v, device %s; want a re-enrollment of %s", reenrolled, got.ID, d.ID)
	}
	// Revoked, it cannot re-enroll in another case.
	revokeDevice(t, s, d.ID)
	lower := newEnrollment(1, "sec")
	lower.Device.ID, lower.Device.HardwareUUID = "dev-lower", strings.ToLower(canonical)
	lower.Device.CertSerial, lower.Cert.Serial = "5e7777", "5e7777"
	_, _, err = s.EnrollDevice(ctx, lower)
	wantErr(t, err, storage.ErrDeviceRevoked)
	if _, err := s.GetDevice(ctx, "dev-lower"); err == nil {
		t.Error("a revoked Mac re-enrolled under a lower-case UUID as a new device")
	}
}

func testEnrollNewDevice(t *testing.T, s storage.Store) {
	ctx := t.Context()
	createSecret(t, s, "sec")
	e := newEnrollment(1, "sec")

	d, reenrolled, err := s.EnrollDevice(ctx, e)
	must(t, err)
	if reenrolled {
		t.Error("reenrolled = true for a new hardware UUID")
	}
	want := stored(e)
	equal(t, "returned device", d, want)
	equal(t, "GetDevice", getDevice(t, s, want.ID), want)
	byUUID, err := s.GetDeviceByHardwareUUID(ctx, e.Device.HardwareUUID)
	must(t, err)
	equal(t, "GetDeviceByHardwareUUID", byUUID, want)

	cert, err := s.GetCert(ctx, e.Cert.Serial)
	must(t, err)
	wantCert := e.Cert
	wantCert.DeviceID = want.ID
	equal(t, "GetCert", cert, wantCert)

	if got := getSecret(t, s, "sec").Uses; got != 1 {
		t.Errorf("secret uses = %d, want 1", got)
	}
	wantAudit := e.Audit
	wantAudit.DeviceID = want.ID
	equal(t, "device audit", listAudit(t, s, want.ID), []storage.AuditEvent{wantAudit})
}

// Only the fields storage.Enrollment says the device carries are taken from
// the caller; counters and revocation start fresh.
func testEnrollIgnoresCallerCounters(t *testing.T, s storage.Store) {
	createSecret(t, s, "sec")
	e := newEnrollment(1, "sec")
	want := stored(e)
	e.Device.Enrollments = 7
	e.Device.LastSeq = 9
	e.Device.LastReportAt = at(5 * hour)
	e.Device.LastSeen = at(-time.Hour)
	e.Device.RevokedAt = at(hour)
	e.Device.RevokedReason = "caller said so"
	e.Device.SecretID = "not the secret used"

	equal(t, "enrolled device", enroll(t, s, e), want)
	equal(t, "GetDevice", getDevice(t, s, want.ID), want)
}

func testReenroll(t *testing.T, s storage.Store) {
	ctx := t.Context()
	createSecret(t, s, "first")
	createSecret(t, s, "second")
	first := newEnrollment(1, "first")
	orig := enroll(t, s, first)
	var old []storage.Report
	for seq := uint64(1); seq <= 3; seq++ {
		r := newReport(orig.ID, seq, at(time.Duration(seq)*minute))
		save(t, s, r, nil, 10)
		old = append([]storage.Report{r}, old...)
	}

	// The device moves to a new key (a rotation the service checked):
	// new key, new cert, new facts, a freshly generated ID, the same
	// hardware, and another secret presented. Its model, OS, hostname and
	// agent version stay: they follow the agent's Hello
	// (UpdateDeviceFacts), audited and bounded, not an enrollment.
	again := newEnrollment(1, "second")
	again.Device.ID = "dev-generated-again"
	again.Device.OSVersion = "15.2"
	again.Device.Hostname = "renamed.example.com"
	again.Device.AgentVersion = "1.1.0"
	again.Device.PublicKey = []byte("pkix-der-key-reinstalled")
	again.Device.CertSerial = "abc123"
	again.Device.CertNotAfter = at(48 * hour)
	again.Device.EnrolledAt = at(hour)
	again.Cert.Serial = "abc123"
	again.Cert.NotBefore = at(hour)
	again.Cert.NotAfter = at(48 * hour)
	again.Audit.At = at(hour)

	d, reenrolled, err := s.EnrollDevice(ctx, again)
	must(t, err)
	if !reenrolled {
		t.Error("reenrolled = false for a known hardware UUID")
	}
	want := again.Device
	want.ID = orig.ID
	want.Model, want.OSName, want.OSVersion, want.Hostname, want.AgentVersion = orig.Model, orig.OSName, orig.OSVersion, orig.Hostname, orig.AgentVersion
	want.SecretID = "first" // the device keeps its enrollment
	want.EnrolledAt = orig.EnrolledAt
	want.Enrollments = 2
	want.LastSeq = 0
	want.LastSeen = at(hour)
	want.LastReportAt = old[0].ObservedAt // the latest stored report is still the old one
	equal(t, "re-enrolled device", d, want)
	equal(t, "GetDevice", getDevice(t, s, orig.ID), want)
	if _, err := s.GetDevice(ctx, again.Device.ID); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("GetDevice(generated ID) err = %v, want ErrNotFound", err)
	}
	if ds, err := s.ListDevices(ctx, "", 10); err != nil || len(ds) != 1 {
		t.Errorf("ListDevices = %d devices, %v; want 1", len(ds), err)
	}

	newCert, err := s.GetCert(ctx, "abc123")
	must(t, err)
	wantCert := again.Cert
	wantCert.DeviceID = orig.ID
	equal(t, "new cert", newCert, wantCert)
	oldCert, err := s.GetCert(ctx, first.Cert.Serial)
	must(t, err)
	if oldCert.DeviceID != orig.ID {
		t.Errorf("old cert DeviceID = %q, want %q", oldCert.DeviceID, orig.ID)
	}

	equal(t, "history kept", listReports(t, s, orig.ID), old)
	if u := getSecret(t, s, "first").Uses; u != 1 {
		t.Errorf("first secret uses = %d, want 1", u)
	}
	if u := getSecret(t, s, "second").Uses; u != 0 {
		t.Errorf("second secret uses = %d, want 0: a re-enrollment spends no use", u)
	}
	audit := listAudit(t, s, orig.ID)
	if len(audit) != 2 || audit[0].DeviceID != orig.ID || !audit[0].At.Equal(at(hour)) {
		t.Errorf("device audit = %+v, want the re-enrollment first, then the enrollment", audit)
	}

	// The new agent counts from 1 again, and its reports are the newest even
	// though older history has higher seqs.
	newKey := again.Device.PublicKey
	r1 := signedWith(newReport(orig.ID, 1, at(2*hour)), newKey)
	save(t, s, r1, nil, 10)
	latest, err := s.LatestReport(ctx, orig.ID)
	must(t, err)
	equal(t, "latest report after re-enrollment", latest, r1)
	equal(t, "reports after re-enrollment", listReports(t, s, orig.ID), append([]storage.Report{r1}, old...))
	d = getDevice(t, s, orig.ID)
	if d.LastSeq != 1 || !d.LastReportAt.Equal(r1.ObservedAt) {
		t.Errorf("device LastSeq, LastReportAt = %d, %s; want 1, %s", d.LastSeq, fmtTime(d.LastReportAt), fmtTime(r1.ObservedAt))
	}
	wantErr(t, s.SaveReport(ctx, signedWith(newReport(orig.ID, 1, at(3*hour)), newKey), nil, 10), storage.ErrSeqNotIncreasing)

	// Retention counts across enrollments, dropping the oldest first.
	save(t, s, signedWith(newReport(orig.ID, 2, at(3*hour)), newKey), nil, 2)
	if got := seqs(listReports(t, s, orig.ID)); !slices.Equal(got, []uint64{2, 1}) {
		t.Errorf("seqs after pruning to 2 = %v, want [2 1] of the new enrollment", got)
	}

	// A third enrollment counts too.
	third := newEnrollment(1, "second")
	third.Device.CertSerial, third.Cert.Serial = "abc124", "abc124"
	third.Device.EnrolledAt = at(4 * hour)
	if d := enroll(t, s, third); d.Enrollments != 3 || d.ID != orig.ID {
		t.Errorf("third enrollment: ID %q, Enrollments %d; want %q, 3", d.ID, d.Enrollments, orig.ID)
	}
}

func testReenrollNeverMovesLastSeenBack(t *testing.T, s storage.Store) {
	createSecret(t, s, "sec")
	d := enroll(t, s, newEnrollment(1, "sec"))
	must(t, s.TouchDevice(t.Context(), d.ID, at(10*hour)))
	again := newEnrollment(1, "sec")
	again.Device.CertSerial, again.Cert.Serial = "abc123", "abc123"
	again.Device.EnrolledAt = at(hour)
	if got := enroll(t, s, again).LastSeen; !got.Equal(at(10 * hour)) {
		t.Errorf("LastSeen = %s, want %s", fmtTime(got), fmtTime(at(10*hour)))
	}
}

func testEnrollFailures(t *testing.T, s storage.Store) {
	createSecret(t, s, "good")
	createSecret(t, s, "revoked")
	known := enroll(t, s, newEnrollment(1, "good"))
	gone := enroll(t, s, newEnrollment(2, "good"))
	revokeSecret(t, s, "revoked")
	revokeDevice(t, s, gone.ID)

	cases := []struct {
		name string
		e    func() storage.Enrollment
		want error // nil: any error
	}{
		{"unknown secret", func() storage.Enrollment {
			return newEnrollment(3, "no-such-secret")
		}, storage.ErrNotFound},
		{"revoked secret, new device", func() storage.Enrollment {
			return newEnrollment(3, "revoked")
		}, storage.ErrSecretRevoked},
		{"revoked secret, re-enrollment", func() storage.Enrollment {
			e := newEnrollment(1, "revoked")
			e.Device.CertSerial, e.Cert.Serial = "abc123", "abc123"
			return e
		}, storage.ErrSecretRevoked},
		{"revoked hardware UUID", func() storage.Enrollment {
			e := newEnrollment(2, "good")
			e.Device.ID = "dev-generated-again"
			e.Device.CertSerial, e.Cert.Serial = "abc123", "abc123"
			e.Device.Hostname = "changed"
			return e
		}, storage.ErrDeviceRevoked},
		{"duplicate certificate serial", func() storage.Enrollment {
			e := newEnrollment(3, "good")
			e.Device.CertSerial, e.Cert.Serial = known.CertSerial, known.CertSerial
			return e
		}, storage.ErrAlreadyExists},
		{"device ID taken by another machine", func() storage.Enrollment {
			e := newEnrollment(3, "good")
			e.Device.ID = known.ID
			return e
		}, storage.ErrAlreadyExists},
		// An empty hardware UUID would make unrelated machines one device.
		{"empty hardware UUID", func() storage.Enrollment {
			e := newEnrollment(3, "good")
			e.Device.HardwareUUID = ""
			return e
		}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := tc.e()
			before := snapshot(t, s, e.Cert.Serial)
			_, _, err := s.EnrollDevice(t.Context(), e)
			wantErr(t, err, tc.want)
			before.unchanged(t, s)
		})
	}
}

func testSecretUseCounting(t *testing.T, s storage.Store) {
	createSecret(t, s, "a")
	createSecret(t, s, "b")
	createSecret(t, s, "unused")
	for n, secret := range map[int]string{1: "a", 2: "a", 3: "a", 4: "b"} {
		enroll(t, s, newEnrollment(n, secret))
	}
	// The key machine 4 already has, again: no use, and the device keeps
	// the secret that gave it that key.
	again := newEnrollment(4, "a")
	again.Device.CertSerial, again.Cert.Serial = "abc123", "abc123"
	if d := enroll(t, s, again); d.SecretID != "b" {
		t.Errorf("same-key re-enrollment: SecretID %q, want b (the one that enrolled the key)", d.SecretID)
	}
	// A new key (a rotation, which the current key signed): no use
	// either, and the device keeps its enrollment's secret. Only a new
	// device, or an approval, spends one.
	rekeyed := newEnrollment(4, "a")
	rekeyed.Device.PublicKey = []byte("machine 4's new key")
	rekeyed.Device.CertSerial, rekeyed.Cert.Serial = "abc124", "abc124"
	if d := enroll(t, s, rekeyed); d.SecretID != "b" {
		t.Errorf("new-key re-enrollment: SecretID %q, want b (the one its enrollment began with)", d.SecretID)
	}

	for id, want := range map[string]int{"a": 3, "b": 1, "unused": 0} {
		if got := getSecret(t, s, id).Uses; got != want {
			t.Errorf("secret %q uses = %d, want %d", id, got, want)
		}
	}
}

func testListDevicesPaging(t *testing.T, s storage.Store) {
	ctx := t.Context()
	createSecret(t, s, "sec")
	// Enrolled out of ID order: the list is ordered by ID, not by insertion.
	var ids []string
	for _, n := range []int{5, 2, 7, 1, 4, 6, 3} {
		ids = append(ids, enroll(t, s, newEnrollment(n, "sec")).ID)
	}
	slices.Sort(ids)

	var got []string
	after := ""
	for page := 0; ; page++ {
		ds, err := s.ListDevices(ctx, after, 3)
		must(t, err)
		if want := min(3, len(ids)-len(got)); len(ds) != want {
			t.Fatalf("page %d after %q has %d devices, want %d", page, after, len(ds), want)
		}
		if len(ds) == 0 {
			break
		}
		for _, d := range ds {
			equal(t, "listed device "+d.ID, d, getDevice(t, s, d.ID))
			got = append(got, d.ID)
		}
		after = ds[len(ds)-1].ID
	}
	if !slices.Equal(got, ids) {
		t.Errorf("paged IDs = %v, want %v", got, ids)
	}

	// afterID need not be an existing ID.
	ds, err := s.ListDevices(ctx, "dev-0035", 10)
	must(t, err)
	if got := deviceIDs(ds); !slices.Equal(got, ids[3:]) {
		t.Errorf("after dev-0035: %v, want %v", got, ids[3:])
	}
	// A non-positive limit still returns a page (of one).
	for _, limit := range []int{0, -5} {
		ds, err := s.ListDevices(ctx, "", limit)
		must(t, err)
		if got := deviceIDs(ds); !slices.Equal(got, ids[:1]) {
			t.Errorf("ListDevices limit %d = %v, want %v", limit, got, ids[:1])
		}
	}
}

func deviceIDs(ds []storage.Device) []string {
	return each(ds, func(d storage.Device) string { return d.ID })
}

func testRevokeDevice(t *testing.T, s storage.Store) {
	ctx := t.Context()
	d := enrollN(t, s, 1)[0]
	revokeAudit := storage.AuditEvent{At: at(hour), Actor: "admin-api", Action: "device.revoke", Detail: "stolen"}

	t.Run("unknown device", func(t *testing.T) {
		before := snapshot(t, s)
		_, err := s.RevokeDevice(ctx, "no-such-device", "stolen", at(hour), revokeAudit)
		wantErr(t, err, storage.ErrNotFound)
		before.unchanged(t, s)
	})
	// Zero RevokedAt means "not revoked": it cannot record a revocation.
	t.Run("zero time", func(t *testing.T) {
		before := snapshot(t, s)
		_, err := s.RevokeDevice(ctx, d.ID, "stolen", time.Time{}, revokeAudit)
		wantErr(t, err, nil)
		before.unchanged(t, s)
	})

	want := d
	want.RevokedAt = at(hour)
	want.RevokedReason = "stolen"
	got, err := s.RevokeDevice(ctx, d.ID, "stolen", at(hour), revokeAudit)
	must(t, err)
	equal(t, "revoked device", got, want)
	equal(t, "GetDevice", getDevice(t, s, d.ID), want)
	if !got.Revoked() {
		t.Error("Revoked() = false")
	}
	wantAudit := revokeAudit
	wantAudit.DeviceID = d.ID
	wantNewestAudit(t, s, "revocation audit after the enrollment", d.ID, 2, wantAudit)

	// Again: the first revocation stands, the device is returned with
	// ErrDeviceRevoked, and nothing is appended.
	again, err := s.RevokeDevice(ctx, d.ID, "found it", at(2*hour), storage.AuditEvent{
		At: at(2 * hour), Actor: "admin-api", Action: "device.revoke", Detail: "again",
	})
	wantErr(t, err, storage.ErrDeviceRevoked)
	equal(t, "revoked again", again, want)
	equal(t, "GetDevice after second revoke", getDevice(t, s, d.ID), want)
	if a := listAudit(t, s, d.ID); len(a) != 2 || a[0].Detail == "again" {
		t.Errorf("device audit after second revoke = %+v, want nothing appended", a)
	}

	// Racing: of eight revocations of one device at once, one succeeds
	// and is audited.
	r := enroll(t, s, newEnrollment(2, "fleet"))
	var wins atomic.Int32
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := s.RevokeDevice(ctx, r.ID, fmt.Sprint("race ", i), at(3*hour), storage.AuditEvent{At: at(3 * hour), Actor: "admin-api", Action: "device.revoke"})
			switch {
			case err == nil:
				wins.Add(1)
			case !errors.Is(err, storage.ErrDeviceRevoked):
				t.Errorf("racing revocation: %v", err)
			}
		}()
	}
	wg.Wait()
	revokes := 0
	for _, e := range listAudit(t, s, r.ID) {
		if e.Action == "device.revoke" {
			revokes++
		}
	}
	if wins.Load() != 1 || revokes != 1 {
		t.Errorf("racing revocations: %d succeeded, %d audited; want 1 and 1", wins.Load(), revokes)
	}
}

// The facts an agent gives when it connects replace the inventory's, all
// but the identity ones; a revoked device's and an unknown one's are
// refused, changing nothing.
func testUpdateDeviceFacts(t *testing.T, s storage.Store) {
	ctx := t.Context()
	ds := enrollN(t, s, 2)
	d := ds[0]
	next := d
	next.Model, next.OSName, next.OSVersion, next.Hostname, next.AgentVersion = "Mac16,1", "macOS", "26.1", "Bob's MacBook Pro", "1.2.4"
	next.SerialNumber, next.HardwareUUID, next.Platform = "OTHER", "OTHER", "linux" // not the store's to change
	factsAudit := storage.AuditEvent{At: at(hour), Actor: "agent", Action: "device.facts", Detail: `hostname "mac-1.example.com" → "Bob's MacBook Pro"`}
	must(t, s.UpdateDeviceFacts(ctx, next, factsAudit))
	wantAudit := factsAudit
	wantAudit.DeviceID = d.ID
	wantNewestAudit(t, s, "facts audit", d.ID, 2, wantAudit)
	want := d
	want.Model, want.OSName, want.OSVersion, want.Hostname, want.AgentVersion = next.Model, next.OSName, next.OSVersion, next.Hostname, next.AgentVersion
	equal(t, "device after its facts changed", getDevice(t, s, d.ID), want)

	before := snapshot(t, s)
	wantErr(t, s.UpdateDeviceFacts(ctx, storage.Device{ID: "no-such-device", Hostname: "x"}, factsAudit), storage.ErrNotFound)
	before.unchanged(t, s)
	revokeDevice(t, s, ds[1].ID)
	before = snapshot(t, s)
	gone := ds[1]
	gone.Hostname = "renamed"
	wantErr(t, s.UpdateDeviceFacts(ctx, gone, factsAudit), storage.ErrDeviceRevoked)
	before.unchanged(t, s)
}

// CountAgentVersions counts the unrevoked devices by the agent version each
// last gave, byte for byte as stored: an upgrade moves a device from one
// count to the next, a revoked device leaves every count, and a device
// with no version is counted under "".
func testCountAgentVersions(t *testing.T, s storage.Store) {
	ctx := t.Context()
	count := func(what string, want map[string]int) {
		t.Helper()
		got, err := s.CountAgentVersions(ctx)
		must(t, err)
		equal(t, what, got, want)
	}
	count("versions of no devices", map[string]int{})

	createSecret(t, s, "fleet")
	versions := []string{"1.0.0", "1.0.0", "1.0.0", "1.1.0-rc.1", "", "v2", "V2", "nightly build ✓"}
	var ds []storage.Device
	for i, v := range versions {
		e := newEnrollment(i+1, "fleet")
		e.Device.AgentVersion = v
		ds = append(ds, enroll(t, s, e))
	}
	count("versions at enrollment", map[string]int{
		"1.0.0": 3, "1.1.0-rc.1": 1, "": 1, "v2": 1, "V2": 1, "nightly build ✓": 1,
	})

	// An upgrade (the agent's facts when it connects) moves a device; a
	// revocation takes one out.
	next := ds[1]
	next.AgentVersion = "1.1.0-rc.1"
	must(t, s.UpdateDeviceFacts(ctx, next, storage.AuditEvent{At: at(hour), Actor: "agent", Action: "device.facts"}))
	revokeDevice(t, s, ds[0].ID)
	revokeDevice(t, s, ds[7].ID)
	count("versions after an upgrade and two revocations", map[string]int{
		"1.0.0": 1, "1.1.0-rc.1": 2, "": 1, "v2": 1, "V2": 1,
	})
}

func testRevokedDeviceAcceptsNothing(t *testing.T, s storage.Store) {
	ctx := t.Context()
	d := enrollN(t, s, 1)[0]
	save(t, s, newReport(d.ID, 1, at(minute)), nil, 10)
	createNonce(t, s, d.ID, "nonce", at(hour))
	revokeDevice(t, s, d.ID)
	before := snapshot(t, s, "abc123")

	wantErr(t, s.SaveReport(ctx, newReport(d.ID, 2, at(2*minute)), nil, 10), storage.ErrDeviceRevoked)
	wantErr(t, s.SaveReport(ctx, newReport(d.ID, 2, at(2*minute)), []byte("nonce"), 10), storage.ErrDeviceRevoked)
	wantErr(t, s.RenewDeviceCert(ctx, storage.Cert{
		Serial: "abc123", DeviceID: d.ID, Kind: "device", NotBefore: at(hour), NotAfter: at(48 * hour), DER: []byte("der"),
	}, storage.IssueLimit{}, storage.AuditEvent{At: at(hour), Actor: "agent", Action: "device.renew"}), storage.ErrDeviceRevoked)
	again := newEnrollment(1, "fleet")
	again.Device.CertSerial, again.Cert.Serial = "abc123", "abc123"
	_, _, err := s.EnrollDevice(ctx, again)
	wantErr(t, err, storage.ErrDeviceRevoked)
	before.unchanged(t, s)
}

func testRenewDeviceCert(t *testing.T, s storage.Store) {
	ctx := t.Context()
	ds := enrollN(t, s, 2)
	d := ds[0]
	cert := storage.Cert{
		Serial: "abc123", DeviceID: d.ID, Kind: "device",
		NotBefore: at(20 * hour), NotAfter: at(72 * hour), DER: []byte("renewed der"),
	}
	audit := storage.AuditEvent{At: at(20 * hour), Actor: "agent", Action: "device.renew", Detail: "abc123"}
	must(t, s.RenewDeviceCert(ctx, cert, storage.IssueLimit{}, audit))

	want := d
	want.CertSerial = "abc123"
	want.CertNotAfter = at(72 * hour)
	equal(t, "renewed device", getDevice(t, s, d.ID), want)
	equal(t, "other device", getDevice(t, s, ds[1].ID), ds[1])
	got, err := s.GetCert(ctx, "abc123")
	must(t, err)
	equal(t, "renewed cert", got, cert)
	if old, err := s.GetCert(ctx, d.CertSerial); err != nil || old.DeviceID != d.ID {
		t.Errorf("previous cert = %+v, %v; want it kept", old, err)
	}
	wantAudit := audit
	wantAudit.DeviceID = d.ID
	wantNewestAudit(t, s, "renewal audit after the enrollment", d.ID, 2, wantAudit)
}

func testRenewFailures(t *testing.T, s storage.Store) {
	ds := enrollN(t, s, 2)
	revokeDevice(t, s, ds[1].ID)
	renewal := func(deviceID, serial string) storage.Cert {
		return storage.Cert{
			Serial: serial, DeviceID: deviceID, Kind: "device",
			NotBefore: at(hour), NotAfter: at(48 * hour), DER: []byte("der " + serial),
		}
	}
	cases := []struct {
		name string
		cert storage.Cert
		want error
	}{
		{"unknown device", renewal("no-such-device", "abc123"), storage.ErrNotFound},
		{"revoked device", renewal(ds[1].ID, "abc123"), storage.ErrDeviceRevoked},
		{"duplicate serial", renewal(ds[0].ID, ds[1].CertSerial), storage.ErrAlreadyExists},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := snapshot(t, s, tc.cert.Serial)
			err := s.RenewDeviceCert(t.Context(), tc.cert, storage.IssueLimit{}, storage.AuditEvent{
				At: at(hour), Actor: "agent", Action: "device.renew",
			})
			wantErr(t, err, tc.want)
			before.unchanged(t, s)
		})
	}
}

func testTouchDevice(t *testing.T, s storage.Store) {
	ctx := t.Context()
	d := enrollN(t, s, 1)[0]
	steps := []struct {
		at, want time.Time
	}{
		{at(hour), at(hour)},
		{at(30 * minute), at(hour)},
		{at(hour), at(hour)},
		{at(2 * hour), at(2 * hour)},
		{time.Time{}, at(2 * hour)},
	}
	for _, st := range steps {
		must(t, s.TouchDevice(ctx, d.ID, st.at))
		want := d
		want.LastSeen = st.want
		equal(t, fmt.Sprintf("device after touch at %s", fmtTime(st.at)), getDevice(t, s, d.ID), want)
	}
}

// A device is issued at most IssueLimit.Certs certificates within
// IssueLimit.Per, its enrollment's included: past that, a renewal changes
// nothing and says when the next may be; the read check agrees; another
// device is not counted; and the window moves on.
func testIssueLimit(t *testing.T, s storage.Store) {
	ctx := t.Context()
	ds := enrollN(t, s, 2)
	d := ds[0]
	limit := storage.IssueLimit{Certs: 3, Per: hour}
	renewal := func(n int, notBefore time.Time) storage.Cert {
		return storage.Cert{Serial: fmt.Sprintf("ab%04d", n), DeviceID: d.ID, Kind: storage.CertKindDevice,
			NotBefore: notBefore, NotAfter: notBefore.Add(48 * hour), DER: fmt.Appendf(nil, "der %d", n)}
	}
	renew := func(c storage.Cert) error {
		return s.RenewDeviceCert(ctx, c, limit, storage.AuditEvent{At: c.NotBefore, Actor: "agent", Action: "device.renew", Detail: c.Serial})
	}
	// The other device's renewals (its enrollment's and two: its limit)
	// are its own.
	for i := range 2 {
		c := renewal(100+i, at(time.Duration(i)*minute))
		c.DeviceID = ds[1].ID
		must(t, renew(c))
	}
	must(t, s.CheckCertLimit(ctx, d.ID, at(minute), limit))
	must(t, renew(renewal(1, at(minute))))
	must(t, renew(renewal(2, at(2*minute))))
	auditBefore := len(listAudit(t, s, d.ID))

	for i, nb := range []time.Time{at(3 * minute), at(30 * minute), at(hour - time.Nanosecond)} {
		c := renewal(10+i, nb)
		before := snapshot(t, s, c.Serial)
		err := s.CheckCertLimit(ctx, d.ID, nb, limit)
		wantErr(t, err, storage.ErrTooManyCerts)
		err = renew(c)
		wantErr(t, err, storage.ErrTooManyCerts)
		var tooMany *storage.TooManyCertsError
		if !errors.As(err, &tooMany) || tooMany.DeviceID != d.ID || !tooMany.RetryAt.Equal(at(hour)) || tooMany.Limit != limit {
			t.Errorf("renewal at %s: %#v, want a TooManyCertsError for %s retrying at %s", fmtTime(nb), err, d.ID, fmtTime(at(hour)))
		}
		before.unchanged(t, s)
	}
	if n := len(listAudit(t, s, d.ID)); n != auditBefore {
		t.Errorf("audit rows of the device: %d after refused renewals, want %d", n, auditBefore)
	}
	// The enrollment's certificate (NotBefore t0) leaves the window at
	// t0 + Per: one more may be issued then.
	must(t, s.CheckCertLimit(ctx, d.ID, at(hour), limit))
	must(t, renew(renewal(20, at(hour))))
	wantErr(t, renew(renewal(21, at(hour+time.Second))), storage.ErrTooManyCerts)
	if got := getDevice(t, s, d.ID).CertSerial; got != renewal(20, at(hour)).Serial {
		t.Errorf("current cert %q, want the last one issued", got)
	}
	// The zero limit bounds nothing.
	must(t, s.RenewDeviceCert(ctx, renewal(22, at(hour+2*time.Second)), storage.IssueLimit{},
		storage.AuditEvent{At: at(hour), Actor: "agent", Action: "device.renew"}))
}

// A re-enrollment, with the device's key or a new one, counts with its
// renewals against Enrollment.Limit; a first enrollment has nothing to
// count.
func testIssueLimitReenroll(t *testing.T, s storage.Store) {
	ctx := t.Context()
	createSecret(t, s, "fleet")
	limit := storage.IssueLimit{Certs: 2, Per: hour}
	first := newEnrollment(1, "fleet")
	first.Limit = limit
	d := enroll(t, s, first)
	reenrollment := func(n int, key []byte, notBefore time.Time) storage.Enrollment {
		e := newEnrollment(1, "fleet")
		e.Device.PublicKey = key
		e.Device.EnrolledAt = notBefore
		serial := fmt.Sprintf("ac%04d", n)
		e.Device.CertSerial, e.Cert.Serial = serial, serial
		e.Cert.NotBefore = notBefore
		e.Audit.At = notBefore
		e.Limit = limit
		e.Checked = &storage.Checked{Key: getDevice(t, s, d.ID).PublicKey}
		return e
	}
	if _, _, err := s.EnrollDevice(ctx, reenrollment(1, d.PublicKey, at(minute))); err != nil {
		t.Fatalf("same-key re-enrollment within the limit: %v", err)
	}
	uses := getSecret(t, s, "fleet").Uses
	for i, key := range [][]byte{d.PublicKey, []byte("machine 1's new key")} {
		e := reenrollment(2+i, key, at(2*minute))
		before := snapshot(t, s, e.Cert.Serial)
		_, _, err := s.EnrollDevice(ctx, e)
		wantErr(t, err, storage.ErrTooManyCerts)
		before.unchanged(t, s)
	}
	if got := getSecret(t, s, "fleet").Uses; got != uses {
		t.Errorf("secret uses %d after refused re-enrollments, want %d", got, uses)
	}
	// A rotation after the window, and another device's first enrollment
	// whatever this one's count.
	rotated, _, err := s.EnrollDevice(ctx, reenrollment(4, []byte("machine 1's new key"), at(hour)))
	must(t, err)
	if !bytes.Equal(rotated.PublicKey, []byte("machine 1's new key")) || rotated.Enrollments != 3 {
		t.Errorf("rotation after the window: %+v", rotated)
	}
	other := newEnrollment(2, "fleet")
	other.Limit = storage.IssueLimit{Certs: 1, Per: hour}
	enroll(t, s, other)
}

// Expired certificates that are no longer their device's current one are
// swept; current ones (expired or not), unexpired superseded ones and
// browser certificates stay.
func testDeleteSupersededDeviceCerts(t *testing.T, s storage.Store) {
	ctx := t.Context()
	ds := enrollN(t, s, 2) // certificates valid t0 to t0+24h
	d := ds[0]
	for i, nb := range []time.Time{at(3 * hour), at(30 * hour)} {
		c := storage.Cert{Serial: fmt.Sprintf("ad%04d", i), DeviceID: d.ID, Kind: storage.CertKindDevice,
			NotBefore: nb, NotAfter: nb.Add(24 * hour), DER: []byte("der")}
		must(t, s.RenewDeviceCert(ctx, c, storage.IssueLimit{}, storage.AuditEvent{At: nb, Actor: "agent", Action: "device.renew"}))
	}
	browser := newBrowserCert(d, 1, t0)
	browser.NotAfter = at(24 * hour)
	must(t, s.RecordBrowserCert(ctx, browser, nil, storage.IssueLimit{}, t0, scepAudit(t0, browser.Serial)))
	kept := func(serial string, want bool) {
		t.Helper()
		_, err := s.GetCert(ctx, serial)
		switch {
		case want && err != nil:
			t.Errorf("certificate %s: %v, want it kept", serial, err)
		case !want && !errors.Is(err, storage.ErrNotFound):
			t.Errorf("certificate %s: %v, want it swept", serial, err)
		}
	}

	// At t0+26h: the enrollment's certificate has expired and was
	// superseded; the first renewal has not expired.
	n, err := s.DeleteSupersededDeviceCerts(ctx, at(26*hour))
	must(t, err)
	if n != 1 {
		t.Errorf("swept %d certificates, want 1", n)
	}
	kept(d.CertSerial, false)
	kept("ad0000", true)
	kept("ad0001", true)
	kept(ds[1].CertSerial, true) // the other device's current one, expired
	kept(browser.Serial, true)
	if _, err := s.GetBrowserCert(ctx, browser.Serial); err != nil {
		t.Errorf("browser certificate: %v", err)
	}

	// Much later: only the current ones and the browser certificate stay.
	n, err = s.DeleteSupersededDeviceCerts(ctx, at(1000*hour))
	must(t, err)
	if n != 1 {
		t.Errorf("swept %d certificates, want 1", n)
	}
	kept("ad0000", false)
	kept("ad0001", true)
	kept(ds[1].CertSerial, true)
	kept(browser.Serial, true)
	if got := getDevice(t, s, d.ID).CertSerial; got != "ad0001" {
		t.Errorf("current certificate %q, want ad0001", got)
	}
}
