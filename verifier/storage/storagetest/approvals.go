package storagetest

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/clearance/clearance/verifier/storage"
)

var approvalTests = []test{
	{"SecretScope", testSecretScope},
	{"DevicesBySecret", testDevicesBySecret},
	{"RequestEnrollment", testRequestEnrollment},
	{"RequestLimits", testRequestLimits},
	{"RejectEnrollment", testRejectEnrollment},
	{"RejectEnrollmentKey", testRejectEnrollmentKey},
	{"RejectEnrollmentKeyInBatches", testRejectEnrollmentKeyInBatches},
	{"RejectedBounded", testRejectedBounded},
	{"RejectEnrollmentSource", testRejectEnrollmentSource},
	{"ApproveReenrollment", testApproveReenrollment},
	{"ApproveNewDevice", testApproveNewDevice},
	{"ApproveChecksSerial", testApproveChecksSerial},
	{"ApproveFailuresChangeNothing", testApproveFailures},
	{"ApproveReinstates", testApproveReinstates},
	{"RevokedEarlierKeyRefused", testRevokedEarlierKeyRefused},
	{"ReinstateChecksRevocation", testReinstateChecksRevocation},
	{"EnrollmentAnswersRequest", testEnrollmentAnswersRequest},
	{"KnownDevices", testKnownDevices},
	{"EnrollChecked", testEnrollChecked},
	{"RequestsStayCurrent", testRequestsStayCurrent},
	{"RequestExpiry", testRequestExpiry},
	{"RejectedKeyNeverEnrolls", testRejectedKeyNeverEnrolls},
	{"SerialEnrolledOnce", testSerialEnrolledOnce},
	{"SerialHolders", testSerialHolders},
	{"ReenrollKeepsSerial", testReenrollKeepsSerial},
}

// An enrollment admitted on one state of the device commits only if that
// state still holds: a proof checked against a key the device no longer
// has, or a new device that appeared meanwhile, changes nothing.
func testEnrollChecked(t *testing.T, s storage.Store) {
	createSecret(t, s, "sec")
	d := enroll(t, s, newEnrollment(1, "sec"))

	stale := newEnrollment(1, "sec")
	stale.Device.PublicKey = []byte("rotated-key")
	stale.Device.CertSerial, stale.Cert.Serial = "abc123", "abc123"
	stale.Checked = &storage.Checked{Key: []byte("a key the device no longer has")}
	appeared := newEnrollment(1, "sec")
	appeared.Device.ID = "dev-generated"
	appeared.Device.CertSerial, appeared.Cert.Serial = "abc124", "abc124"
	appeared.Checked = &storage.Checked{}
	for name, e := range map[string]storage.Enrollment{"stale key": stale, "device appeared": appeared} {
		before := dumpOf(t, s)
		_, _, err := s.EnrollDevice(t.Context(), e)
		wantErr(t, err, storage.ErrKeyReplaced)
		sameDump(t, name, before, s)
	}

	fresh := stale
	fresh.Checked = &storage.Checked{Key: d.PublicKey}
	if got := enroll(t, s, fresh); string(got.PublicKey) != "rotated-key" {
		t.Errorf("key after a checked rotation = %q", got.PublicKey)
	}
	first := newEnrollment(2, "sec")
	first.Checked = &storage.Checked{}
	enroll(t, s, first)
}

// dumpOf is the store's every row (storagetest.Dump), for checks that a
// refused call changed nothing at all.
func dumpOf(t *testing.T, s storage.Store) string {
	t.Helper()
	d, err := Dump(t.Context(), s)
	must(t, err)
	return d
}

func sameDump(t *testing.T, what, before string, s storage.Store) {
	t.Helper()
	if after := dumpOf(t, s); after != before {
		t.Errorf("%s changed the store:\n%s\n--- after ---\n%s", what, before, after)
	}
}

func createScopedSecret(t *testing.T, s storage.Store, id string, sec storage.EnrollSecret) storage.EnrollSecret {
	t.Helper()
	base := newSecret(id, t0)
	base.ExpiresAt, base.MaxUses = sec.ExpiresAt, sec.MaxUses
	must(t, s.CreateEnrollSecret(t.Context(), base, storage.AuditEvent{At: t0, Actor: "cli", Action: "secret.create"}))
	return base
}

// A secret's expiry and use limit hold at the enrollment's commit, each
// refused with its own error, and a refused enrollment changes nothing.
func testSecretScope(t *testing.T, s storage.Store) {
	ctx := t.Context()
	expiring := createScopedSecret(t, s, "expiring", storage.EnrollSecret{ExpiresAt: at(hour)})
	limited := createScopedSecret(t, s, "limited", storage.EnrollSecret{MaxUses: 2})
	createSecret(t, s, "revoked")
	revokeSecret(t, s, "revoked")
	equal(t, "GetEnrollSecret expiring", getSecret(t, s, "expiring"), expiring)
	equal(t, "GetEnrollSecret limited", getSecret(t, s, "limited"), limited)

	// Before the expiry: enrolls.
	e := newEnrollment(1, "expiring")
	e.Device.EnrolledAt = at(hour - 1)
	enroll(t, s, e)
	// Two uses of the limited secret: two new devices.
	enroll(t, s, newEnrollment(2, "limited"))
	enroll(t, s, newEnrollment(6, "limited"))
	if got := getSecret(t, s, "limited"); got.Uses != 2 || !got.Exhausted() {
		t.Errorf("limited secret: uses %d, exhausted %v; want 2, true", got.Uses, got.Exhausted())
	}

	cases := []struct {
		name   string
		e      storage.Enrollment
		want   error
		others []error
	}{
		{"expired at its expiry", func() storage.Enrollment {
			e := newEnrollment(3, "expiring")
			e.Device.EnrolledAt = at(hour)
			return e
		}(), storage.ErrSecretExpired, []error{storage.ErrSecretRevoked, storage.ErrSecretExhausted}},
		{"exhausted", newEnrollment(4, "limited"), storage.ErrSecretExhausted, []error{storage.ErrSecretRevoked, storage.ErrSecretExpired}},
		{"revoked, the key the device has", func() storage.Enrollment {
			e := newEnrollment(1, "revoked")
			e.Device.CertSerial, e.Cert.Serial = "abc998", "abc998"
			return e
		}(), storage.ErrSecretRevoked, []error{storage.ErrSecretExpired, storage.ErrSecretExhausted}},
		{"revoked", newEnrollment(5, "revoked"), storage.ErrSecretRevoked, []error{storage.ErrSecretExpired, storage.ErrSecretExhausted}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := dumpOf(t, s)
			_, _, err := s.EnrollDevice(ctx, tc.e)
			wantErr(t, err, tc.want)
			for _, o := range tc.others {
				if errors.Is(err, o) {
					t.Errorf("err %v is also %v: the reasons must be told apart", err, o)
				}
			}
			sameDump(t, "a refused enrollment", before, s)
		})
	}

	// The holder of a device's current key re-enrolls with a secret that
	// expired or ran out: with that key (machine 1: a lost certificate, an
	// approved key collecting its certificate) or with a new one it signed
	// (machine 2: a rotation). The device keeps its enrollment: no use is
	// spent.
	for i, sec := range []string{"expiring", "limited"} {
		n := 1 + i
		e := newEnrollment(n, sec)
		if n == 2 {
			e.Device.PublicKey = []byte("machine 2's new key")
		}
		e.Device.EnrolledAt = at(3 * hour)
		e.Device.CertSerial, e.Cert.Serial = fmt.Sprintf("abd%03d", n), fmt.Sprintf("abd%03d", n)
		uses := getSecret(t, s, sec).Uses
		if d := enroll(t, s, e); d.CertSerial != e.Cert.Serial {
			t.Errorf("re-enrollment of machine %d with a lapsed secret %s: cert %q", n, sec, d.CertSerial)
		}
		if got := getSecret(t, s, sec).Uses; got != uses {
			t.Errorf("secret %s uses %d after a re-enrollment of machine %d, want %d", sec, got, n, uses)
		}
	}
}

func testDevicesBySecret(t *testing.T, s storage.Store) {
	ctx := t.Context()
	createSecret(t, s, "a")
	createSecret(t, s, "b")
	for n, sec := range map[int]string{1: "a", 2: "a", 3: "a", 4: "b"} {
		enroll(t, s, newEnrollment(n, sec))
	}
	// Machine 1 rotates its key presenting secret b: its enrollment began
	// with a, and stays a's.
	again := newEnrollment(1, "b")
	again.Device.PublicKey = []byte("machine 1's new key")
	again.Device.CertSerial, again.Cert.Serial = "abc123", "abc123"
	enroll(t, s, again)

	bySecret := func(secret, after string, limit int) []string {
		ds, err := s.ListDevicesBySecret(ctx, secret, after, limit)
		must(t, err)
		for _, d := range ds {
			if d.SecretID != secret {
				t.Errorf("device %s listed for secret %s records %q", d.ID, secret, d.SecretID)
			}
		}
		return deviceIDs(ds)
	}
	equal(t, "devices of a", bySecret("a", "", 10), []string{"dev-001", "dev-002", "dev-003"})
	equal(t, "devices of b", bySecret("b", "", 10), []string{"dev-004"})
	equal(t, "devices of a, paged", bySecret("a", "dev-002", 1), []string{"dev-003"})
	equal(t, "devices of an unknown secret", bySecret("nope", "", 10), []string{})
	if got := getDevice(t, s, "dev-001").SecretID; got != "a" {
		t.Errorf("GetDevice SecretID = %q, want a", got)
	}
}

// newRequest is machine n asking, with keyName's key, to enroll.
func newRequest(n int, keyName, secretID string) storage.PendingEnrollment {
	return storage.PendingEnrollment{
		ID:            fmt.Sprintf("req-%03d-%s", n, keyName),
		HardwareUUID:  fmt.Sprintf("5a1b2c3d-0000-4000-8000-%012d", n),
		SerialNumber:  fmt.Sprintf("C02X%05d", n),
		Model:         "MacBookPro18,3",
		OSName:        "macOS",
		OSVersion:     "15.1",
		Hostname:      fmt.Sprintf("other-%d.example.com", n),
		Platform:      "darwin",
		AgentVersion:  "1.0.0",
		PublicKey:     []byte("candidate-key-" + keyName + "\x00\xff"),
		SecretID:      secretID,
		Reason:        "unknown_serial",
		Source:        "192.0.2.7",
		SourceNet:     "192.0.2.7",
		LastRequestAt: at(2 * hour),
	}
}

// requested is what storing a new request r makes of it.
func requested(r storage.PendingEnrollment) storage.PendingEnrollment {
	r.HardwareUUID = storage.CanonicalHardwareUUID(r.HardwareUUID)
	r.RequestedAt = r.LastRequestAt
	r.Requests = 1
	r.RejectedAt = time.Time{}
	return r
}

func request(t *testing.T, s storage.Store, r storage.PendingEnrollment, limits storage.PendingLimits) storage.PendingEnrollment {
	t.Helper()
	got, err := s.RequestEnrollment(t.Context(), r, limits, storage.AuditEvent{
		At: r.LastRequestAt, Actor: "agent", Action: "device.enroll_pending", Detail: r.ID,
	})
	must(t, err)
	return got
}

func listRequests(t *testing.T, s storage.Store, after string, limit int) []string {
	t.Helper()
	ps, err := s.ListPendingEnrollments(t.Context(), after, limit)
	must(t, err)
	return each(ps, func(p storage.PendingEnrollment) string { return p.ID })
}

func testRequestEnrollment(t *testing.T, s storage.Store) {
	ctx := t.Context()
	createSecret(t, s, "sec")
	r := newRequest(1, "k1", "sec")
	got := request(t, s, r, storage.PendingLimits{})
	want := requested(r)
	equal(t, "stored request", got, want)
	stored, err := s.GetPendingEnrollment(ctx, r.ID)
	must(t, err)
	equal(t, "GetPendingEnrollment", stored, want)

	// The agent polls again, asking for the same: the same request,
	// refreshed; its ID and first time stay.
	poll := newRequest(1, "k1", "sec")
	poll.ID = "req-generated-again"
	poll.LastRequestAt = at(3 * hour)
	got = request(t, s, poll, storage.PendingLimits{PerDevice: 1, Total: 1})
	want.LastRequestAt, want.Requests = at(3*hour), 2
	equal(t, "refreshed request", got, want)
	// A late poll never moves the latest request time back.
	late := poll
	late.LastRequestAt = at(2 * hour)
	if got := request(t, s, late, storage.PendingLimits{}); !got.LastRequestAt.Equal(at(3*hour)) || got.Requests != 3 {
		t.Errorf("late poll: LastRequestAt %s, Requests %d; want %s, 3", fmtTime(got.LastRequestAt), got.Requests, fmtTime(at(3*hour)))
	}
	if _, err := s.GetPendingEnrollment(ctx, poll.ID); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("the poll's own ID was stored: err %v", err)
	}

	// A poll that changes anything the security team is shown is filed
	// anew, under its own ID, and the ID they read is gone: approving it
	// must not enroll a serial, a hostname, a model, a secret they did not
	// see, a claim they were not shown (another reason: a device enrolled
	// on its serial since), nor an ask from another address.
	createSecret(t, s, "sec2")
	read := r
	for i, tc := range []struct {
		name   string
		change func(*storage.PendingEnrollment)
	}{
		{"serial", func(r *storage.PendingEnrollment) { r.SerialNumber = "C02STOLEN01" }},
		{"no serial", func(r *storage.PendingEnrollment) { r.SerialNumber = "" }},
		{"hostname", func(r *storage.PendingEnrollment) { r.Hostname = "alice-macbook-pro" }},
		{"model", func(r *storage.PendingEnrollment) { r.Model = "VMware7,1" }},
		{"os name", func(r *storage.PendingEnrollment) { r.OSName = "Ubuntu" }},
		{"os version", func(r *storage.PendingEnrollment) { r.OSVersion = "15.2" }},
		{"platform", func(r *storage.PendingEnrollment) { r.Platform = "linux" }},
		{"agent version", func(r *storage.PendingEnrollment) { r.AgentVersion = "1.0.1" }},
		{"source", func(r *storage.PendingEnrollment) { r.Source, r.SourceNet = "198.51.100.1", "198.51.100.1" }},
		{"source in the same network", func(r *storage.PendingEnrollment) { r.Source = "198.51.100.2" }},
		{"reason", func(r *storage.PendingEnrollment) { r.Reason = "serial_enrolled" }},
		{"secret", func(r *storage.PendingEnrollment) { r.SecretID = "sec2" }},
	} {
		next := read
		tc.change(&next)
		next.ID = "req-001-k1-" + strings.ReplaceAll(tc.name, " ", "-")
		next.LastRequestAt = at(4*hour + time.Duration(i)*minute)
		got := request(t, s, next, storage.PendingLimits{})
		equal(t, "request with another "+tc.name, got, requested(next))
		if _, err := s.GetPendingEnrollment(ctx, read.ID); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("another %s: the request read before is still there: err %v", tc.name, err)
		}
		if _, _, err := approve(t, s, read.ID, "dev-x", at(5*hour)); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("another %s: approving the request read before: err %v, want ErrNotFound", tc.name, err)
		}
		equal(t, "waiting after another "+tc.name, listRequests(t, s, "", 10), []string{next.ID})
		read = next
	}
	// None is audited again, so that a key alternating facts cannot grow
	// the audit log.
	moved, resecret := read, read
	moved.ID, moved.SecretID = "req-001-k1-back", "sec"
	for range 5 {
		request(t, s, moved, storage.PendingLimits{})
		request(t, s, resecret, storage.PendingLimits{})
	}
	r = resecret

	// Another key for the same machine is another request.
	request(t, s, newRequest(1, "k2", "sec"), storage.PendingLimits{})
	request(t, s, newRequest(2, "k1", "sec"), storage.PendingLimits{})
	equal(t, "ListPendingEnrollments", listRequests(t, s, "", 10), []string{"req-001-k1-secret", "req-001-k2", "req-002-k1"})
	equal(t, "ListPendingEnrollments paged", listRequests(t, s, "req-001-k1-secret", 1), []string{"req-001-k2"})

	// One audit event per request, none per poll or re-filing.
	if events := len(auditDetails(t, s, "", "device.enroll_pending")); events != 3 {
		t.Errorf("%d device.enroll_pending audit events, want 3 (one per request)", events)
	}
}

// A full queue takes a new request in the place of the oldest one: whoever
// fills a Mac's places, a genuine agent that keeps asking is recorded.
func testRequestLimits(t *testing.T, s storage.Store) {
	ctx := t.Context()
	createSecret(t, s, "sec")
	from := func(r storage.PendingEnrollment, addr string, when time.Duration) storage.PendingEnrollment {
		r.Source, r.SourceNet, r.LastRequestAt = addr, addr, at(when)
		return r
	}
	waiting := func(what string, want ...string) {
		t.Helper()
		equal(t, what, listRequests(t, s, "", 100), want)
	}

	// Per device: an attacker's four keys fill machine 1's places.
	limits := storage.PendingLimits{PerDevice: 4}
	for i, k := range []string{"a1", "a2", "a3", "a4"} {
		request(t, s, from(newRequest(1, k, "sec"), "203.0.113.9", 2*hour+time.Duration(i)*minute), limits)
	}
	// The genuine Mac asks from elsewhere: recorded, in the place of the
	// attacker's oldest.
	request(t, s, from(newRequest(1, "mac", "sec"), "192.0.2.50", 3*hour), limits)
	waiting("after the genuine request", "req-001-a2", "req-001-a3", "req-001-a4", "req-001-mac")
	// More attacker keys push out the attacker's own requests first.
	for i, k := range []string{"a5", "a6", "a7"} {
		request(t, s, from(newRequest(1, k, "sec"), "203.0.113.9", 4*hour+time.Duration(i)*minute), limits)
	}
	waiting("after more attacker keys", "req-001-a5", "req-001-a6", "req-001-a7", "req-001-mac")
	// The genuine Mac's polls keep its request and its ID.
	mac := request(t, s, from(newRequest(1, "mac", "sec"), "192.0.2.50", 5*hour), limits)
	if mac.ID != "req-001-mac" || mac.Requests != 2 {
		t.Errorf("the genuine poll: request %s, %d requests; want req-001-mac, 2", mac.ID, mac.Requests)
	}
	// Evictions add no audit event, nor does a request that pushed out
	// one of its own source's: a flood must not grow the audit log.
	if events := len(auditDetails(t, s, "", "device.enroll_pending")); events != 5 {
		t.Errorf("%d device.enroll_pending events, want 5 (the first four and the genuine one)", events)
	}
	for _, id := range []string{"req-001-a5", "req-001-a6", "req-001-a7", "req-001-mac"} {
		_, err := s.RejectEnrollment(ctx, id, at(6*hour), storage.PendingLimits{}, storage.AuditEvent{At: at(6 * hour), Actor: "admin-api", Action: "device.enroll_reject"})
		must(t, err)
	}

	// Per source: one address holds at most PerSource places; its new
	// requests push out its own oldest, never another address's.
	limits = storage.PendingLimits{PerSource: 2}
	request(t, s, from(newRequest(10, "k", "sec"), "192.0.2.60", 6*hour), limits)
	for n := 11; n <= 14; n++ {
		request(t, s, from(newRequest(n, "k", "sec"), "203.0.113.9", 6*hour+time.Duration(n)*minute), limits)
	}
	waiting("per source", "req-010-k", "req-013-k", "req-014-k")

	// In all: the oldest request anywhere makes way.
	limits = storage.PendingLimits{Total: 3}
	request(t, s, from(newRequest(15, "k", "sec"), "198.51.100.3", 7*hour), limits)
	waiting("in all", "req-013-k", "req-014-k", "req-015-k")

	// Rejected requests take no place and are never evicted.
	rejected, err := s.GetPendingEnrollment(ctx, "req-001-a5")
	must(t, err)
	if !rejected.Rejected() {
		t.Errorf("rejected request evicted or changed: %+v", rejected)
	}
}

// Waiting requests not asked again for MaxAge are removed: by the sweep,
// and by the next request.
func testRequestExpiry(t *testing.T, s storage.Store) {
	ctx := t.Context()
	createSecret(t, s, "sec")
	old := newRequest(1, "k", "sec")
	old.LastRequestAt = at(hour)
	request(t, s, old, storage.PendingLimits{})
	rej := newRequest(2, "k", "sec")
	rej.LastRequestAt = at(hour)
	request(t, s, rej, storage.PendingLimits{})
	_, err := s.RejectEnrollment(ctx, rej.ID, at(hour), storage.PendingLimits{}, storage.AuditEvent{At: at(hour), Actor: "admin-api", Action: "device.enroll_reject"})
	must(t, err)
	request(t, s, newRequest(3, "k", "sec"), storage.PendingLimits{}) // at 2h

	n, err := s.DeleteExpiredEnrollmentRequests(ctx, at(hour))
	must(t, err)
	if n != 0 {
		t.Errorf("swept %d requests asked at the cutoff, want 0", n)
	}
	n, err = s.DeleteExpiredEnrollmentRequests(ctx, at(hour+1))
	must(t, err)
	if n != 1 {
		t.Errorf("swept %d requests, want 1", n)
	}
	equal(t, "after the sweep", listRequests(t, s, "", 10), []string{"req-003-k"})
	if got, err := s.GetPendingEnrollment(ctx, rej.ID); err != nil || !got.Rejected() {
		t.Errorf("the rejected request: %+v, %v; want it kept", got, err)
	}

	later := newRequest(4, "k", "sec")
	later.LastRequestAt = at(2*hour + 30*minute)
	request(t, s, later, storage.PendingLimits{MaxAge: 29 * minute})
	equal(t, "after a request with MaxAge", listRequests(t, s, "", 10), []string{"req-004-k"})
}

// A waiting request always names the device state approval would change:
// recording one against a state that is gone is refused, an enrollment
// that gives the hardware UUID a device or a new key removes the requests
// waiting for it, and so does approving one of them.
func testRequestsStayCurrent(t *testing.T, s storage.Store) {
	ctx := t.Context()
	createSecret(t, s, "sec")

	// A "new device" request for machine 1; then the real Mac enrolls.
	early := request(t, s, newRequest(1, "attacker", "sec"), storage.PendingLimits{})
	d := enroll(t, s, newEnrollment(1, "sec"))
	if _, err := s.GetPendingEnrollment(ctx, early.ID); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("the new-device request outlived the enrollment: err %v", err)
	}
	before := dumpOf(t, s)
	_, _, err := approve(t, s, early.ID, "dev-x", at(4*hour))
	wantErr(t, err, storage.ErrNotFound)
	sameDump(t, "approving the removed request", before, s)

	// Recording a request against a state that is gone changes nothing.
	for name, r := range map[string]storage.PendingEnrollment{
		"new device, but enrolled": newRequest(1, "late", "sec"),
		"an old key": func() storage.PendingEnrollment {
			r := newRequest(1, "late", "sec")
			r.DeviceID, r.DeviceKey = d.ID, []byte("a key the device no longer has")
			return r
		}(),
		"a device that is not there": func() storage.PendingEnrollment {
			r := newRequest(9, "late", "sec")
			r.DeviceID, r.DeviceKey = "dev-009", []byte("some key")
			return r
		}(),
	} {
		before := dumpOf(t, s)
		_, err := s.RequestEnrollment(ctx, r, storage.PendingLimits{}, storage.AuditEvent{At: at(2 * hour), Actor: "agent", Action: "device.enroll_pending"})
		wantErr(t, err, storage.ErrKeyReplaced)
		sameDump(t, name, before, s)
	}

	// Requests against the current key; a proven rotation removes them.
	against := func(key string) storage.PendingEnrollment {
		r := newRequest(1, key, "sec")
		r.DeviceID, r.DeviceKey, r.Reason = d.ID, d.PublicKey, "unproven_key"
		return request(t, s, r, storage.PendingLimits{})
	}
	r1 := against("k1")
	if !bytes.Equal(r1.DeviceKey, d.PublicKey) || r1.DeviceID != d.ID {
		t.Errorf("stored request: device %s key %q; want %s %q", r1.DeviceID, r1.DeviceKey, d.ID, d.PublicKey)
	}
	rejected := against("rejected")
	_, err = s.RejectEnrollment(ctx, rejected.ID, at(3*hour), storage.PendingLimits{}, storage.AuditEvent{At: at(3 * hour), Actor: "admin-api", Action: "device.enroll_reject"})
	must(t, err)
	rot := newEnrollment(1, "sec")
	rot.Device.PublicKey = []byte("rotated-key")
	rot.Device.CertSerial, rot.Cert.Serial = "abc200", "abc200"
	rot.Checked = &storage.Checked{Key: d.PublicKey}
	d = enroll(t, s, rot)
	equal(t, "waiting after the rotation", listRequests(t, s, "", 10), []string{})
	if _, err := s.GetPendingEnrollment(ctx, rejected.ID); err != nil {
		t.Errorf("the rejected request was removed: %v", err)
	}
	before = dumpOf(t, s)
	_, _, err = approve(t, s, r1.ID, "dev-x", at(4*hour))
	wantErr(t, err, storage.ErrNotFound)
	sameDump(t, "approving a request made against the old key", before, s)

	// A same-key re-enrollment leaves the requests: they are still about
	// the key the device has.
	r2 := against("k2")
	r3 := against("k3")
	same := newEnrollment(1, "sec")
	same.Device.PublicKey = d.PublicKey
	same.Device.CertSerial, same.Cert.Serial = "abc201", "abc201"
	enroll(t, s, same)
	equal(t, "waiting after a same-key re-enrollment", listRequests(t, s, "", 10), []string{r2.ID, r3.ID})

	// Approving one removes the others: they were made against the key it
	// replaced.
	_, _, err = approve(t, s, r2.ID, "dev-x", at(4*hour))
	must(t, err)
	equal(t, "waiting after an approval", listRequests(t, s, "", 10), []string{})
	if got := getDevice(t, s, d.ID); !bytes.Equal(got.PublicKey, r2.PublicKey) {
		t.Errorf("key after the approval = %q, want %q", got.PublicKey, r2.PublicKey)
	}
}

// A key rejected for a hardware UUID never enrolls it, whatever admitted
// it, and enrolling never removes the rejection.
func testRejectedKeyNeverEnrolls(t *testing.T, s storage.Store) {
	ctx := t.Context()
	createSecret(t, s, "sec")
	e := newEnrollment(1, "sec")
	r := newRequest(1, "k", "sec")
	r.PublicKey = e.Device.PublicKey
	request(t, s, r, storage.PendingLimits{})
	_, err := s.RejectEnrollment(ctx, r.ID, at(3*hour), storage.PendingLimits{}, storage.AuditEvent{At: at(3 * hour), Actor: "admin-api", Action: "device.enroll_reject"})
	must(t, err)
	got, err := s.FindEnrollmentRequest(ctx, strings.ToLower(r.HardwareUUID), r.PublicKey)
	must(t, err)
	if got.ID != r.ID || !got.Rejected() {
		t.Errorf("FindEnrollmentRequest = %+v, want the rejected request", got)
	}
	if _, err := s.FindEnrollmentRequest(ctx, r.HardwareUUID, []byte("another key")); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("FindEnrollmentRequest of another key: err %v, want ErrNotFound", err)
	}

	before := dumpOf(t, s)
	_, _, err = s.EnrollDevice(ctx, e)
	wantErr(t, err, storage.ErrRequestRejected)
	sameDump(t, "enrolling a rejected key", before, s)

	// Another key enrolls; the rejection stays.
	other := newEnrollment(1, "sec")
	other.Device.PublicKey = []byte("another key")
	enroll(t, s, other)
	if got, err := s.GetPendingEnrollment(ctx, r.ID); err != nil || !got.Rejected() {
		t.Errorf("rejected request after an enrollment: %+v, %v", got, err)
	}
}

// Under the known list, a listed serial admits one device: an enrollment
// admitted on a serial commits only while no unrevoked device has it.
// Serials are stored and compared in canonical form.
func testSerialEnrolledOnce(t *testing.T, s storage.Store) {
	ctx := t.Context()
	createSecret(t, s, "sec")
	_, err := s.ImportKnownDevices(ctx, []storage.KnownDevice{{SerialNumber: "C02VICTIM01", Source: "mdm", ImportedAt: at(hour)}},
		storage.AuditEvent{At: at(hour), Actor: "admin-api", Action: "device.import"})
	must(t, err)

	first := newEnrollment(1, "sec")
	first.Device.SerialNumber = "c02victim01"
	first.Checked = &storage.Checked{Serial: "C02VICTIM01"}
	d := enroll(t, s, first)
	if d.SerialNumber != "C02VICTIM01" {
		t.Errorf("stored serial %q, want the canonical C02VICTIM01", d.SerialNumber)
	}
	for _, q := range []string{"C02VICTIM01", "c02Victim01"} {
		got, err := s.GetDeviceBySerial(ctx, q)
		must(t, err)
		if got.ID != d.ID {
			t.Errorf("GetDeviceBySerial(%q) = %s, want %s", q, got.ID, d.ID)
		}
	}
	for _, q := range []string{" C02VICTIM01 ", "C02VıCTIM01", "C02VICTIM01 ", ""} {
		if _, err := s.GetDeviceBySerial(ctx, q); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("GetDeviceBySerial(%q): err %v, want ErrNotFound", q, err)
		}
	}

	second := newEnrollment(2, "sec")
	second.Device.SerialNumber = "C02VICTIM01"
	second.Checked = &storage.Checked{Serial: "C02VICTIM01"}
	before := dumpOf(t, s)
	_, _, err = s.EnrollDevice(ctx, second)
	wantErr(t, err, storage.ErrSerialEnrolled)
	sameDump(t, "a second device on an enrolled serial", before, s)

	// Revoking the first does not free its serial: a lost or stolen Mac's
	// serial admits no other machine without approval.
	revokeDevice(t, s, d.ID)
	got, err := s.GetDeviceBySerial(ctx, "C02VICTIM01")
	must(t, err)
	if got.ID != d.ID || !got.Revoked() {
		t.Errorf("GetDeviceBySerial after revocation = %s (revoked %v), want the revoked %s", got.ID, got.Revoked(), d.ID)
	}
	before = dumpOf(t, s)
	_, _, err = s.EnrollDevice(ctx, second)
	wantErr(t, err, storage.ErrSerialEnrolled)
	sameDump(t, "a second device on a revoked device's serial", before, s)

	// An unrevoked device comes first.
	third := newEnrollment(3, "sec")
	third.Device.SerialNumber = "C02VICTIM01"
	d3 := enroll(t, s, third) // no Checked: admitted without the list
	if got, err := s.GetDeviceBySerial(ctx, "c02victim01"); err != nil || got.ID != d3.ID {
		t.Errorf("GetDeviceBySerial with a revoked and an unrevoked device = %s, %v; want the unrevoked %s", got.ID, err, d3.ID)
	}
}

// SerialHolders finds the devices on each serial as GetDeviceBySerial
// does (canonical form, revoked ones included, unrevoked first), a few
// per serial with the count of all.
func testSerialHolders(t *testing.T, s storage.Store) {
	ctx := t.Context()
	createSecret(t, s, "sec")
	on := func(n int, serial string) storage.Device {
		e := newEnrollment(n, "sec")
		e.Device.SerialNumber = serial
		return enroll(t, s, e)
	}
	// Three devices on one serial (one revoked, the first), one on
	// another, one whose serial has no canonical form.
	d1 := on(1, "c02shared1")
	revokeDevice(t, s, d1.ID)
	d2 := on(2, "C02SHARED1")
	d3 := on(3, "C02SHARED1")
	d4 := on(4, "C02ALONE01")
	on(5, "C02 SPACED")
	ids := func(h storage.SerialHolders) []string {
		return each(h.Devices, func(d storage.Device) string { return d.ID })
	}
	holders := func(perSerial int, serials ...string) map[string]storage.SerialHolders {
		t.Helper()
		got, err := s.SerialHolders(ctx, serials, perSerial)
		must(t, err)
		return got
	}

	got := holders(10, "c02shared1", "C02ALONE01", "C02NOBODY1", "C02 SPACED", "C02SHARED1", "")
	equal(t, "serials held", len(got), 2)
	equal(t, "holders of C02SHARED1", ids(got["C02SHARED1"]), []string{d2.ID, d3.ID, d1.ID})
	equal(t, "count of C02SHARED1", got["C02SHARED1"].Total, 3)
	equal(t, "holders of C02ALONE01", ids(got["C02ALONE01"]), []string{d4.ID})
	equal(t, "count of C02ALONE01", got["C02ALONE01"].Total, 1)
	if !got["C02SHARED1"].Devices[2].Revoked() || got["C02SHARED1"].Devices[0].Revoked() {
		t.Errorf("holders of C02SHARED1: %+v; want the revoked one last", got["C02SHARED1"].Devices)
	}
	if g, err := s.GetDeviceBySerial(ctx, "C02SHARED1"); err != nil || g.ID != got["C02SHARED1"].Devices[0].ID {
		t.Errorf("GetDeviceBySerial = %s, %v; want the first holder %s", g.ID, err, d2.ID)
	}

	// At most perSerial each, the count of all kept.
	got = holders(1, "C02SHARED1", "C02ALONE01")
	equal(t, "first holder of C02SHARED1", ids(got["C02SHARED1"]), []string{d2.ID})
	equal(t, "count of C02SHARED1, one shown", got["C02SHARED1"].Total, 3)
	equal(t, "first holder of C02ALONE01", ids(got["C02ALONE01"]), []string{d4.ID})

	equal(t, "no serials", len(holders(10)), 0)
	equal(t, "serials nobody has", len(holders(10, "C02NOBODY1", "C02 SPACED", "c02sharedı")), 0)
}

// A re-enrollment takes the request's facts but keeps the serial number
// the device was enrolled with.
func testReenrollKeepsSerial(t *testing.T, s storage.Store) {
	ctx := t.Context()
	createSecret(t, s, "sec")
	first := newEnrollment(1, "sec")
	first.Device.SerialNumber = "C02ORIGINAL1"
	d := enroll(t, s, first)

	again := newEnrollment(1, "sec")
	again.Device.SerialNumber = "C02SOMEONEELSE"
	again.Device.Hostname = "renamed"
	again.Device.CertSerial, again.Cert.Serial = "5e9999", "5e9999"
	again.Checked = &storage.Checked{Key: d.PublicKey}
	got, reenrolled, err := s.EnrollDevice(ctx, again)
	must(t, err)
	if !reenrolled || got.ID != d.ID {
		t.Fatalf("re-enrollment: reenrolled %v, id %s; want true, %s", reenrolled, got.ID, d.ID)
	}
	// The hostname too: it follows the agent's Hello, not an enrollment.
	if got.SerialNumber != "C02ORIGINAL1" || got.Hostname != d.Hostname {
		t.Errorf("after re-enrollment: serial %q, hostname %q; want C02ORIGINAL1 and %s (kept)", got.SerialNumber, got.Hostname, d.Hostname)
	}
	if _, err := s.GetDeviceBySerial(ctx, "C02SOMEONEELSE"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("GetDeviceBySerial of the serial a re-enrollment reported: err %v, want ErrNotFound", err)
	}
	// Even when the service checked that serial: the device has one.
	again.Checked.Serial = "C02SOMEONEELSE"
	again.Device.CertSerial, again.Cert.Serial = "5e999a", "5e999a"
	if got, _, err := s.EnrollDevice(ctx, again); err != nil || got.SerialNumber != "C02ORIGINAL1" {
		t.Errorf("re-enrollment checked on another serial: serial %q, %v; want C02ORIGINAL1 kept", got.SerialNumber, err)
	}

	// A device enrolled with no serial takes the first one checked, once,
	// if no device has it by then.
	none := newEnrollment(2, "sec")
	none.Device.SerialNumber = ""
	dn := enroll(t, s, none)
	taken := newEnrollment(2, "sec")
	taken.Device.SerialNumber = "C02ORIGINAL1"
	taken.Device.CertSerial, taken.Cert.Serial = "5e2001", "5e2001"
	taken.Checked = &storage.Checked{Key: dn.PublicKey, Serial: "C02ORIGINAL1"}
	if _, _, err := s.EnrollDevice(ctx, taken); !errors.Is(err, storage.ErrSerialEnrolled) {
		t.Errorf("taking a serial another device has: %v, want ErrSerialEnrolled", err)
	}
	first2 := newEnrollment(2, "sec")
	first2.Device.SerialNumber = "c02first2"
	first2.Device.CertSerial, first2.Cert.Serial = "5e2002", "5e2002"
	first2.Checked = &storage.Checked{Key: dn.PublicKey, Serial: "C02FIRST2"}
	got, _, err = s.EnrollDevice(ctx, first2)
	must(t, err)
	if got.ID != dn.ID || storage.CanonicalSerial(got.SerialNumber) != "C02FIRST2" {
		t.Errorf("a device with no serial re-enrolled with its first: %s %q", got.ID, got.SerialNumber)
	}
}

func testRejectEnrollment(t *testing.T, s storage.Store) {
	ctx := t.Context()
	createSecret(t, s, "sec")
	r := request(t, s, newRequest(1, "k1", "sec"), storage.PendingLimits{})
	request(t, s, newRequest(2, "k1", "sec"), storage.PendingLimits{})

	got, err := s.RejectEnrollment(ctx, r.ID, at(3*hour), storage.PendingLimits{}, storage.AuditEvent{At: at(3 * hour), Actor: "admin-api", Action: "device.enroll_reject"})
	must(t, err)
	want := r
	want.RejectedAt = at(3 * hour)
	equal(t, "rejected request", got, want)
	if !got.Rejected() {
		t.Error("Rejected() = false after RejectEnrollment")
	}
	equal(t, "waiting requests", listRequests(t, s, "", 10), []string{"req-002-k1"})

	// Idempotent: the first rejection stays.
	again, err := s.RejectEnrollment(ctx, r.ID, at(4*hour), storage.PendingLimits{}, storage.AuditEvent{At: at(4 * hour), Actor: "admin-api", Action: "device.enroll_reject"})
	must(t, err)
	equal(t, "rejected twice", again, want)

	// The same key asking again is refused, and nothing changes.
	before := dumpOf(t, s)
	stored, err := s.RequestEnrollment(ctx, newRequest(1, "k1", "sec"), storage.PendingLimits{},
		storage.AuditEvent{At: at(5 * hour), Actor: "agent", Action: "device.enroll_pending"})
	wantErr(t, err, storage.ErrRequestRejected)
	equal(t, "request returned with ErrRequestRejected", stored, want)
	sameDump(t, "a rejected key asking again", before, s)

	before = dumpOf(t, s)
	_, err = s.RejectEnrollment(ctx, "no-such-request", at(5*hour), storage.PendingLimits{}, storage.AuditEvent{At: at(5 * hour), Actor: "admin-api", Action: "device.enroll_reject"})
	wantErr(t, err, storage.ErrNotFound)
	sameDump(t, "rejecting an unknown request", before, s)
}

// Rejected requests are kept up to limits.Rejected: recording a rejection,
// by id or by key, removes the oldest rejections beyond it (by rejection
// time, then id), never a waiting request nor an audit event. The key of
// a rejection removed so asks again as a key never rejected: it waits
// again, a new request.
func testRejectedBounded(t *testing.T, s storage.Store) {
	ctx := t.Context()
	createSecret(t, s, "sec")
	limits := storage.PendingLimits{Rejected: 3}
	reject := func(id string, when time.Duration) {
		t.Helper()
		_, err := s.RejectEnrollment(ctx, id, at(when), limits, storage.AuditEvent{At: at(when), Actor: "admin-api", Action: "device.enroll_reject", Detail: id})
		must(t, err)
	}
	rejected := func(what string, want ...string) {
		t.Helper()
		var got []string
		for n := 1; n <= 12; n++ {
			for _, k := range []string{"k", "flood"} {
				if p, err := s.GetPendingEnrollment(ctx, fmt.Sprintf("req-%03d-%s", n, k)); err == nil && p.Rejected() {
					got = append(got, p.ID)
				}
			}
		}
		equal(t, what, got, append([]string{}, want...))
	}
	for n := 1; n <= 7; n++ {
		request(t, s, newRequest(n, "k", "sec"), storage.PendingLimits{})
	}
	for _, n := range []int{10, 11} {
		request(t, s, newRequest(n, "flood", "sec"), storage.PendingLimits{})
	}

	// Within the bound, every rejection stays; unbounded (zero), too.
	reject("req-002-k", 4*hour)
	reject("req-001-k", 4*hour)
	reject("req-003-k", 4*hour)
	rejected("three rejections", "req-001-k", "req-002-k", "req-003-k")
	// One more: the oldest goes (of the same time, the first by id).
	reject("req-004-k", 5*hour)
	rejected("a fourth rejection", "req-002-k", "req-003-k", "req-004-k")
	// Rejecting again what is rejected records nothing, and removes
	// nothing.
	reject("req-004-k", 6*hour)
	rejected("a rejection again", "req-002-k", "req-003-k", "req-004-k")
	// By key: two more, and the two oldest go.
	_, err := s.RejectEnrollmentKey(ctx, storage.KeyFingerprint(newRequest(0, "flood", "").PublicKey), 0, at(7*hour), limits,
		storage.AuditEvent{At: at(7 * hour), Actor: "admin-api", Action: "device.enroll_reject"})
	must(t, err)
	rejected("rejected by key", "req-004-k", "req-010-flood", "req-011-flood")
	_, err = s.RejectEnrollment(ctx, "req-005-k", at(8*hour), storage.PendingLimits{}, storage.AuditEvent{At: at(8 * hour), Actor: "admin-api", Action: "device.enroll_reject"})
	must(t, err)
	rejected("no bound", "req-004-k", "req-005-k", "req-010-flood", "req-011-flood")

	// Waiting requests stay, and so does the audit of every rejection.
	equal(t, "waiting requests", listRequests(t, s, "", 10), []string{"req-006-k", "req-007-k"})
	if n := len(auditDetails(t, s, "", "device.enroll_reject")); n != 8 {
		t.Errorf("%d device.enroll_reject audit events, want 8: rejections removed keep theirs", n)
	}

	// The key of a rejection removed asks again: it waits, a new request,
	// audited as one; a key still rejected is refused.
	pending := len(auditDetails(t, s, "", "device.enroll_pending"))
	again := newRequest(1, "k", "sec")
	again.ID, again.LastRequestAt = "req-001-k-again", at(9*hour)
	got := request(t, s, again, storage.PendingLimits{})
	equal(t, "the key of a removed rejection asking again", got, requested(again))
	if n := len(auditDetails(t, s, "", "device.enroll_pending")); n != pending+1 {
		t.Errorf("%d device.enroll_pending audit events, want %d", n, pending+1)
	}
	before := dumpOf(t, s)
	_, err = s.RequestEnrollment(ctx, newRequest(4, "k", "sec"), storage.PendingLimits{}, storage.AuditEvent{At: at(9 * hour), Actor: "agent", Action: "device.enroll_pending"})
	wantErr(t, err, storage.ErrRequestRejected)
	sameDump(t, "a key still rejected asking again", before, s)
}

// Rejected by source, every waiting request from an address, or from a
// network, is: for each Mac, whatever its key; the first ones by hardware
// UUID when a call takes fewer. Sources are compared as addresses. Other
// networks' requests are untouched, and a network none waits from changes
// nothing.
func testRejectEnrollmentSource(t *testing.T, s storage.Store) {
	ctx := t.Context()
	createSecret(t, s, "sec")
	from := func(n int, key, source string) {
		t.Helper()
		r := newRequest(n, key, "sec")
		r.Source, r.SourceNet = source, source
		request(t, s, r, storage.PendingLimits{})
	}
	from(1, "a", "198.51.100.7")
	from(1, "b", "198.51.100.200") // another key for machine 1
	from(2, "a", "::ffff:198.51.100.9")
	from(3, "a", "198.51.101.7")
	from(4, "a", "2001:db8:1:2::1")
	from(5, "a", "2001:db8:1:2:ffff::9")
	from(6, "a", "2001:db8:1:3::1")
	from(7, "a", "")
	from(8, "a", "@")
	from(9, "a", "198.51.100.70")
	_, err := s.RejectEnrollment(ctx, "req-009-a", at(3*hour), storage.PendingLimits{}, storage.AuditEvent{At: at(3 * hour), Actor: "admin-api", Action: "device.enroll_reject"})
	must(t, err)
	ids := func(ps []storage.PendingEnrollment) []string {
		return each(ps, func(p storage.PendingEnrollment) string { return p.ID })
	}
	bySource := func(network string, maxMacs int, when time.Duration) ([]storage.PendingEnrollment, error) {
		return s.RejectEnrollmentSource(ctx, netip.MustParsePrefix(network), maxMacs, at(when), storage.PendingLimits{},
			storage.AuditEvent{At: at(when), Actor: "admin-api", Action: "device.enroll_reject", Detail: "from " + network})
	}
	rejects := len(auditDetails(t, s, "", "device.enroll_reject"))

	// None waits from there (the one request was rejected already), or the
	// network is none: nothing changes.
	for _, network := range []string{"198.51.100.70/32", "203.0.113.0/24"} {
		before := dumpOf(t, s)
		_, err := bySource(network, 0, 4*hour)
		wantErr(t, err, storage.ErrNotFound)
		sameDump(t, "rejecting from "+network, before, s)
	}
	before := dumpOf(t, s)
	_, err = s.RejectEnrollmentSource(ctx, netip.Prefix{}, 0, at(4*hour), storage.PendingLimits{}, storage.AuditEvent{At: at(4 * hour), Action: "device.enroll_reject"})
	if err == nil {
		t.Error("rejecting from an invalid network: no error")
	}
	_, err = s.RejectEnrollmentSource(ctx, netip.MustParsePrefix("198.51.100.7/24"), 0, at(4*hour), storage.PendingLimits{}, storage.AuditEvent{At: at(4 * hour), Action: "device.enroll_reject"})
	if err == nil {
		t.Error("rejecting from a network with bits set past its prefix: no error")
	}
	sameDump(t, "rejecting from invalid networks", before, s)

	// One address, as an exact prefix.
	got, err := bySource("198.51.100.7/32", 0, 4*hour)
	must(t, err)
	equal(t, "rejected from 198.51.100.7", ids(got), []string{"req-001-a"})
	if !got[0].RejectedAt.Equal(at(4 * hour)) {
		t.Errorf("rejected at %s, want %s", fmtTime(got[0].RejectedAt), fmtTime(at(4*hour)))
	}
	// A /24, an IPv4-mapped source in it: two Macs' requests at once.
	got, err = bySource("198.51.100.0/24", 0, 5*hour)
	must(t, err)
	equal(t, "rejected from 198.51.100.0/24", ids(got), []string{"req-001-b", "req-002-a"})
	// A /64, in calls of one Mac each.
	got, err = bySource("2001:db8:1:2::/64", 1, 6*hour)
	must(t, err)
	equal(t, "first call from 2001:db8:1:2::/64", ids(got), []string{"req-004-a"})
	got, err = bySource("2001:db8:1:2::/64", 1, 6*hour)
	must(t, err)
	equal(t, "second call from 2001:db8:1:2::/64", ids(got), []string{"req-005-a"})
	_, err = bySource("2001:db8:1:2::/64", 1, 6*hour)
	wantErr(t, err, storage.ErrNotFound)

	equal(t, "waiting", listRequests(t, s, "", 10), []string{"req-003-a", "req-006-a", "req-007-a", "req-008-a"})
	ds := auditDetails(t, s, "", "device.enroll_reject")
	if len(ds) != rejects+5 {
		t.Errorf("%d device.enroll_reject events after rejecting 5 requests by source, want %d", len(ds), rejects+5)
	} else if !strings.Contains(ds[0], "request req-005-a, hardware UUID ") || !strings.HasSuffix(ds[0], ", from 2001:db8:1:2::/64") {
		t.Errorf("newest rejection's audit detail %q; want it to name the request and the network", ds[0])
	}
	// The keys rejected asking again for those Macs are refused.
	r := newRequest(2, "a", "sec")
	r.LastRequestAt = at(7 * hour)
	before = dumpOf(t, s)
	_, err = s.RequestEnrollment(ctx, r, storage.PendingLimits{}, storage.AuditEvent{At: at(7 * hour), Actor: "agent", Action: "device.enroll_pending"})
	wantErr(t, err, storage.ErrRequestRejected)
	sameDump(t, "a key rejected by source asking again", before, s)

	// Rejecting by source keeps the rejections bounded too.
	_, err = s.RejectEnrollmentSource(ctx, netip.MustParsePrefix("2001:db8:1:3::/64"), 0, at(8*hour), storage.PendingLimits{Rejected: 2},
		storage.AuditEvent{At: at(8 * hour), Actor: "admin-api", Action: "device.enroll_reject"})
	must(t, err)
	for id, kept := range map[string]bool{"req-009-a": false, "req-001-a": false, "req-005-a": true, "req-006-a": true} {
		if _, err := s.GetPendingEnrollment(ctx, id); (err == nil) != kept {
			t.Errorf("%s after a rejection with room for two: err %v, want kept %v", id, err, kept)
		}
	}
}

func rejectKey(t *testing.T, s storage.Store, prefix string, maxMacs int, when time.Time) ([]storage.PendingEnrollment, error) {
	return s.RejectEnrollmentKey(t.Context(), prefix, maxMacs, when, storage.PendingLimits{}, storage.AuditEvent{
		At: when, Actor: "admin-api", Action: "device.enroll_reject", Detail: "by key " + prefix})
}

// A key that changes its serial at every ask is filed anew under another
// id each time; rejected by its fingerprint, every request it waits with
// is, for each Mac, and it is refused from then on. Other keys' requests
// are untouched, and a prefix that names no key, or several, changes
// nothing.
func testRejectEnrollmentKey(t *testing.T, s storage.Store) {
	ctx := t.Context()
	createSecret(t, s, "sec")
	fp := func(keyName string) string { return storage.KeyFingerprint(newRequest(0, keyName, "").PublicKey) }

	// The key asks as machine 1 and is read, then asks again with
	// another serial: the id read is gone.
	read := request(t, s, newRequest(1, "x", "sec"), storage.PendingLimits{})
	moved := newRequest(1, "x", "sec")
	moved.ID, moved.SerialNumber, moved.LastRequestAt = "req-001-x-moved", "C02MOVED01", at(3*hour)
	request(t, s, moved, storage.PendingLimits{})
	if _, err := s.GetPendingEnrollment(ctx, read.ID); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("the request read is still there: %v", err)
	}
	// It asks as machine 2 too, and as machine 5, an enrolled device.
	request(t, s, newRequest(2, "x", "sec"), storage.PendingLimits{})
	d5 := enroll(t, s, newEnrollment(5, "sec"))
	known := newRequest(5, "x", "sec")
	known.DeviceID, known.DeviceKey, known.Reason = d5.ID, d5.PublicKey, "unproven_key"
	request(t, s, known, storage.PendingLimits{})
	// Its request as machine 4 was rejected already.
	r4 := request(t, s, newRequest(4, "x", "sec"), storage.PendingLimits{})
	r4, err := s.RejectEnrollment(ctx, r4.ID, at(4*hour), storage.PendingLimits{}, storage.AuditEvent{At: at(4 * hour), Actor: "admin-api", Action: "device.enroll_reject"})
	must(t, err)
	// Other keys, one for the same machine.
	request(t, s, newRequest(1, "y", "sec"), storage.PendingLimits{})
	request(t, s, newRequest(3, "z", "sec"), storage.PendingLimits{})
	others := map[string]storage.PendingEnrollment{}
	for _, id := range []string{"req-001-y", "req-003-z", r4.ID} {
		p, err := s.GetPendingEnrollment(ctx, id)
		must(t, err)
		others[id] = p
	}
	var want []storage.PendingEnrollment
	for _, id := range []string{"req-001-x-moved", "req-002-x", "req-005-x"} {
		p, err := s.GetPendingEnrollment(ctx, id)
		must(t, err)
		p.RejectedAt = at(5 * hour)
		want = append(want, p)
	}
	rejects := len(auditDetails(t, s, "", "device.enroll_reject"))

	// Refused, changing nothing: a prefix that is no hex, one no waiting
	// key has (the rejected request's key is no longer waiting for
	// machine 4 alone), and one several keys have.
	ambiguous, keys := ambiguousPrefix(t, s)
	for _, tc := range []struct {
		prefix string
		want   error
	}{
		{"", nil},
		{"xyz", nil},
		{fp("x") + "0", nil},
		{"0x" + fp("x")[:14], nil},
		{fp("never asked"), storage.ErrNotFound},
		{ambiguous, storage.ErrAmbiguousKey},
	} {
		before := dumpOf(t, s)
		_, err := rejectKey(t, s, tc.prefix, 0, at(5*hour))
		wantErr(t, err, tc.want)
		if tc.want == storage.ErrAmbiguousKey {
			var amb *storage.AmbiguousKeyError
			if !errors.As(err, &amb) || amb.Keys != keys {
				t.Errorf("rejecting by %s: %v; want an AmbiguousKeyError naming %d keys", tc.prefix, err, keys)
			}
		}
		sameDump(t, "rejecting by "+tc.prefix, before, s)
	}

	// By the first 16 digits the listing shows, in upper case.
	got, err := rejectKey(t, s, strings.ToUpper(fp("x")[:16]), 0, at(5*hour))
	must(t, err)
	equal(t, "requests rejected by key", got, want)
	for _, p := range want {
		stored, err := s.GetPendingEnrollment(ctx, p.ID)
		must(t, err)
		equal(t, "stored "+p.ID, stored, p)
	}
	for id, p := range others {
		stored, err := s.GetPendingEnrollment(ctx, id)
		must(t, err)
		equal(t, "other key's request "+id, stored, p)
	}
	var waiting []string
	for _, id := range listRequests(t, s, "", 100) {
		if !strings.HasPrefix(id, "req-1") { // ambiguousPrefix's
			waiting = append(waiting, id)
		}
	}
	equal(t, "waiting requests", waiting, []string{"req-001-y", "req-003-z"})
	// One audit event per request, the known device's under it.
	if n := len(auditDetails(t, s, "", "device.enroll_reject")); n != rejects+3 {
		t.Errorf("%d device.enroll_reject events after rejecting 3 requests by key, want %d", n, rejects+3)
	}
	if ds := auditDetails(t, s, d5.ID, "device.enroll_reject"); len(ds) != 1 || !strings.Contains(ds[0], "request req-005-x") {
		t.Errorf("audit of the known device: %q; want its request's rejection", ds)
	}

	// The key asking again, with yet another serial, is refused.
	again := newRequest(1, "x", "sec")
	again.ID, again.SerialNumber, again.LastRequestAt = "req-001-x-again", "C02AGAIN01", at(6*hour)
	before := dumpOf(t, s)
	_, err = s.RequestEnrollment(ctx, again, storage.PendingLimits{}, storage.AuditEvent{At: at(6 * hour), Actor: "agent", Action: "device.enroll_pending"})
	wantErr(t, err, storage.ErrRequestRejected)
	sameDump(t, "the rejected key asking again", before, s)
	// Rejected again: no request of it waits.
	_, err = rejectKey(t, s, fp("x"), 0, at(7*hour))
	wantErr(t, err, storage.ErrNotFound)
	sameDump(t, "rejecting the key again", before, s)
}

// ambiguousPrefix requests, for machines from 100 on, keys until two
// have fingerprints that start with the same hex digit, and returns that
// digit and how many waiting keys have fingerprints starting with it.
func ambiguousPrefix(t *testing.T, s storage.Store) (string, int) {
	t.Helper()
	first := map[string]bool{}
	digit := ""
	for n := 100; digit == ""; n++ {
		r := request(t, s, newRequest(n, fmt.Sprintf("amb%d", n), "sec"), storage.PendingLimits{})
		d := storage.KeyFingerprint(r.PublicKey)[:1]
		if first[d] {
			digit = d
		}
		first[d] = true
	}
	ps, err := s.ListPendingEnrollments(t.Context(), "", 1000)
	must(t, err)
	keys := map[string]bool{}
	for _, p := range ps {
		if f := storage.KeyFingerprint(p.PublicKey); strings.HasPrefix(f, digit) {
			keys[f] = true
		}
	}
	return digit, len(keys)
}

// A key waiting for more hardware UUIDs than a call takes is rejected for
// the first ones, in order, and the rest by the next calls.
func testRejectEnrollmentKeyInBatches(t *testing.T, s storage.Store) {
	ctx := t.Context()
	createSecret(t, s, "sec")
	for _, n := range []int{22, 20, 21} {
		request(t, s, newRequest(n, "w", "sec"), storage.PendingLimits{})
	}
	request(t, s, newRequest(20, "v", "sec"), storage.PendingLimits{})
	ids := func(ps []storage.PendingEnrollment) []string {
		return each(ps, func(p storage.PendingEnrollment) string { return p.ID })
	}
	fp := storage.KeyFingerprint(newRequest(0, "w", "").PublicKey)
	got, err := rejectKey(t, s, fp, 2, at(5*hour))
	must(t, err)
	equal(t, "first call", ids(got), []string{"req-020-w", "req-021-w"})
	equal(t, "waiting after the first call", listRequests(t, s, "", 10), []string{"req-020-v", "req-022-w"})
	got, err = rejectKey(t, s, fp, 2, at(5*hour))
	must(t, err)
	equal(t, "second call", ids(got), []string{"req-022-w"})
	_, err = rejectKey(t, s, fp, 2, at(5*hour))
	wantErr(t, err, storage.ErrNotFound)
	if _, err := s.GetPendingEnrollment(ctx, "req-020-v"); err != nil {
		t.Errorf("another key's request: %v", err)
	}
}

func approve(t *testing.T, s storage.Store, id, newID string, when time.Time) (storage.Device, bool, error) {
	t.Helper()
	return s.ApproveEnrollment(t.Context(), storage.Approval{
		RequestID: id, NewDeviceID: newID, At: when,
		Audit: storage.AuditEvent{At: when, Actor: "admin-api", Action: "device.enroll_approve", Detail: id},
	})
}

// Approving an unproven re-enrollment replaces the device's key: reports of
// the old key are refused from then on, and the agent of the new key
// enrolls by proving it.
func testApproveReenrollment(t *testing.T, s storage.Store) {
	ctx := t.Context()
	createSecret(t, s, "first")
	createSecret(t, s, "second")
	orig := enroll(t, s, newEnrollment(1, "first"))
	save(t, s, newReport(orig.ID, 1, at(minute)), nil, 10)

	r := newRequest(1, "k1", "second")
	r.DeviceID, r.DeviceKey = orig.ID, orig.PublicKey
	// The request reports another serial: the Mac keeps its own.
	r.SerialNumber = "C02ANOTHERMAC"
	request(t, s, r, storage.PendingLimits{})
	d, existed, err := approve(t, s, r.ID, "dev-generated", at(4*hour))
	must(t, err)
	if !existed {
		t.Error("existed = false for a known hardware UUID")
	}
	want := orig // the hostname too: it follows the agent's Hello, not an approval
	want.PublicKey = r.PublicKey
	want.CertSerial, want.CertNotAfter = "", time.Time{}
	want.Enrollments = 2
	want.LastSeq = 0
	want.LastSeen = at(2 * hour) // the request's time
	want.LastReportAt = newReport(orig.ID, 1, at(minute)).ObservedAt
	want.SecretID = "second"
	equal(t, "approved device", d, want)
	equal(t, "GetDevice", getDevice(t, s, orig.ID), want)
	if _, err := s.GetPendingEnrollment(ctx, r.ID); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("approved request still stored: err %v", err)
	}
	if u := getSecret(t, s, "second").Uses; u != 1 {
		t.Errorf("secret uses = %d, want 1 (the approval)", u)
	}
	if a := listAudit(t, s, orig.ID); len(a) == 0 || a[0].Action != "device.enroll_approve" {
		t.Errorf("device audit = %+v, want the approval first", a)
	}

	// The old key's reports are refused; the new key's are taken.
	wantErr(t, s.SaveReport(ctx, newReport(orig.ID, 2, at(5*hour)), nil, 10), storage.ErrKeyReplaced)
	save(t, s, signedWith(newReport(orig.ID, 1, at(5*hour)), r.PublicKey), nil, 10)

	// The agent proves the approved key and gets its certificate: the
	// approval was the enrollment, the collection is not another, and is
	// audited as what it is.
	e := newEnrollment(1, "second")
	e.Device.PublicKey = r.PublicKey
	e.Device.CertSerial, e.Cert.Serial = "abc123", "abc123"
	e.Device.EnrolledAt = at(6 * hour)
	e.Collect = &storage.AuditEvent{At: at(6 * hour), Actor: "agent", Action: "device.collect"}
	got := enroll(t, s, e)
	if got.CertSerial != "abc123" || got.ID != orig.ID || got.Enrollments != 2 {
		t.Errorf("enrollment after approval: %s, cert %q, enrollments %d; want %s, abc123, 2", got.ID, got.CertSerial, got.Enrollments, orig.ID)
	}
	if a := listAudit(t, s, orig.ID); len(a) == 0 || a[0].Action != "device.collect" {
		t.Errorf("device audit = %+v, want the collection first", a)
	}
	// Once collected, the same key again is a re-enrollment, Collect or not.
	e.Device.CertSerial, e.Cert.Serial = "abc124", "abc124"
	e.Device.EnrolledAt, e.Audit.At, e.Collect.At = at(7*hour), at(7*hour), at(7*hour)
	if got := enroll(t, s, e); got.Enrollments != 3 {
		t.Errorf("a later enrollment with the approved key: enrollments %d, want 3", got.Enrollments)
	}
	if a := listAudit(t, s, orig.ID); len(a) == 0 || a[0].Action != e.Audit.Action {
		t.Errorf("device audit = %+v, want the re-enrollment's event first", a)
	}
}

func testApproveNewDevice(t *testing.T, s storage.Store) {
	createSecret(t, s, "sec")
	r := request(t, s, newRequest(7, "k1", "sec"), storage.PendingLimits{})
	d, existed, err := approve(t, s, r.ID, "dev-new", at(4*hour))
	must(t, err)
	if existed {
		t.Error("existed = true for a new hardware UUID")
	}
	want := storage.Device{
		ID: "dev-new", HardwareUUID: r.HardwareUUID, SerialNumber: r.SerialNumber, Model: r.Model,
		OSName: r.OSName, OSVersion: r.OSVersion, Hostname: r.Hostname, Platform: r.Platform,
		AgentVersion: r.AgentVersion, PublicKey: r.PublicKey, EnrolledAt: at(4 * hour), Enrollments: 1,
		LastSeen: at(2 * hour), SecretID: "sec",
	}
	equal(t, "approved new device", d, want)
	equal(t, "GetDevice", getDevice(t, s, "dev-new"), want)
	equal(t, "waiting requests", listRequests(t, s, "", 10), []string{})
}

// A new device's request on a serial a device has enrolled on since it
// was filed is approved only with the reason that shows the claim: else it
// is refused, nothing enrolled, and the request filed anew with that
// reason under another id, which can then be approved.
func testApproveChecksSerial(t *testing.T, s storage.Store) {
	ctx := t.Context()
	createSecret(t, s, "sec")
	r := request(t, s, newRequest(7, "k1", "sec"), storage.PendingLimits{}) // unknown_serial
	mac := newEnrollment(1, "sec")
	mac.Device.SerialNumber = r.SerialNumber
	enroll(t, s, mac)
	claim := func(id, newID string) error {
		_, _, err := s.ApproveEnrollment(ctx, storage.Approval{
			RequestID: id, NewDeviceID: "dev-claim", At: at(4 * hour), ClaimReason: "serial_enrolled", NewRequestID: newID,
			Audit: storage.AuditEvent{At: at(4 * hour), Actor: "admin-api", Action: "device.enroll_approve", Detail: id},
		})
		return err
	}
	if err := claim(r.ID, "req-refiled"); !errors.Is(err, storage.ErrSerialEnrolled) {
		t.Fatalf("approving the request read as unknown_serial: %v, want ErrSerialEnrolled", err)
	}
	if _, err := s.GetDevice(ctx, "dev-claim"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("the refused approval enrolled: %v", err)
	}
	if _, err := s.GetPendingEnrollment(ctx, r.ID); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("the request read before is still there: %v", err)
	}
	refiled, err := s.GetPendingEnrollment(ctx, "req-refiled")
	must(t, err)
	if refiled.Reason != "serial_enrolled" || refiled.HardwareUUID != storage.CanonicalHardwareUUID(r.HardwareUUID) {
		t.Fatalf("the request filed anew: %+v", refiled)
	}
	if got := auditDetails(t, s, "", "device.enroll_approve_refused"); len(got) != 1 || !strings.Contains(got[0], "req-refiled") {
		t.Fatalf("refused approval's audit: %q", got)
	}
	if err := claim(r.ID, "req-again"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("the id read before, again: %v, want ErrNotFound", err)
	}
	must(t, claim("req-refiled", "req-unused"))
	if d := getDevice(t, s, "dev-claim"); storage.CanonicalSerial(d.SerialNumber) != storage.CanonicalSerial(r.SerialNumber) {
		t.Fatalf("approved claim: serial %q", d.SerialNumber)
	}
}

func testApproveFailures(t *testing.T, s storage.Store) {
	ctx := t.Context()
	createSecret(t, s, "sec")
	createSecret(t, s, "leaked")
	gone := enroll(t, s, newEnrollment(2, "sec"))
	gone = revokeDevice(t, s, gone.ID)
	createSecret(t, s, "sec2")
	rejected := request(t, s, newRequest(1, "k1", "sec"), storage.PendingLimits{})
	_, err := s.RejectEnrollment(ctx, rejected.ID, at(3*hour), storage.PendingLimits{}, storage.AuditEvent{At: at(3 * hour), Actor: "admin-api", Action: "device.enroll_reject"})
	must(t, err)
	byLeaked := request(t, s, newRequest(3, "k1", "leaked"), storage.PendingLimits{})
	revokeSecret(t, s, "leaked")
	ofRevokedReq := newRequest(2, "k1", "sec2")
	ofRevokedReq.DeviceID, ofRevokedReq.DeviceKey, ofRevokedReq.DeviceRevokedAt = gone.ID, gone.PublicKey, gone.RevokedAt
	ofRevoked := request(t, s, ofRevokedReq, storage.PendingLimits{})
	revokeSecret(t, s, "sec2")
	waiting := request(t, s, newRequest(4, "k1", "sec"), storage.PendingLimits{})
	taken := enroll(t, s, newEnrollment(5, "sec"))

	cases := []struct {
		name, id, newID string
		want            error
	}{
		{"unknown request", "no-such-request", "dev-x", storage.ErrNotFound},
		{"rejected request", rejected.ID, "dev-x", storage.ErrRequestRejected},
		{"secret revoked since", byLeaked.ID, "dev-x", storage.ErrSecretRevoked},
		{"revoked device, secret revoked since", ofRevoked.ID, "dev-x", storage.ErrSecretRevoked},
		{"device ID taken", waiting.ID, taken.ID, storage.ErrAlreadyExists},
		{"empty device ID", waiting.ID, "", nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := dumpOf(t, s)
			_, _, err := approve(t, s, tc.id, tc.newID, at(4*hour))
			wantErr(t, err, tc.want)
			sameDump(t, "a refused approval", before, s)
		})
	}
}

// An enrollment that goes through (the key proven, the serial imported
// since) answers the requests waiting for that hardware UUID: they were
// made while it had no device.
func testEnrollmentAnswersRequest(t *testing.T, s storage.Store) {
	createSecret(t, s, "sec")
	e := newEnrollment(1, "sec")
	mine := newRequest(1, "mine", "sec")
	mine.PublicKey = e.Device.PublicKey
	request(t, s, mine, storage.PendingLimits{})
	request(t, s, newRequest(1, "other", "sec"), storage.PendingLimits{})
	request(t, s, newRequest(2, "other", "sec"), storage.PendingLimits{})
	enroll(t, s, e)
	equal(t, "waiting requests", listRequests(t, s, "", 10), []string{"req-002-other"})
}

func testKnownDevices(t *testing.T, s storage.Store) {
	ctx := t.Context()
	imp := func(ds ...storage.KnownDevice) (int, error) {
		return s.ImportKnownDevices(ctx, ds, storage.AuditEvent{At: at(hour), Actor: "admin-api", Action: "device.import", Detail: fmt.Sprintf("%d serials", len(ds))})
	}
	a := storage.KnownDevice{SerialNumber: "C02XA0001", Name: "Ana's MacBook", Source: "jamf.csv", ImportedAt: at(hour)}
	b := storage.KnownDevice{SerialNumber: "C02XB0002", Source: "jamf.csv", ImportedAt: at(hour)}
	n, err := imp(a, b)
	must(t, err)
	if n != 2 {
		t.Errorf("added %d, want 2", n)
	}
	for _, q := range []string{"C02XA0001", "c02xa0001", "C02xA0001"} {
		got, err := s.GetKnownDevice(ctx, q)
		must(t, err)
		equal(t, "GetKnownDevice "+q, got, a)
	}
	// Only the exact letters and digits match: no space, no look-alike.
	for _, q := range []string{" C02XA0001 ", "C02XA0001\u00a0", "c02xa000\u0131", "C02X\uff21\u0030001", "C02XA 0001"} {
		if _, err := s.GetKnownDevice(ctx, q); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("GetKnownDevice(%q): err %v, want ErrNotFound", q, err)
		}
	}
	// Imported again from another export: updated, not added.
	a2 := a
	a2.Name, a2.Source, a2.ImportedAt = "Ana's Mac", "kandji.csv", at(2*hour)
	c := storage.KnownDevice{SerialNumber: "C02XC0003", Source: "kandji.csv", ImportedAt: at(2 * hour)}
	n, err = imp(a2, c)
	must(t, err)
	if n != 1 {
		t.Errorf("added %d, want 1", n)
	}
	got, err := s.GetKnownDevice(ctx, "C02XA0001")
	must(t, err)
	equal(t, "re-imported", got, a2)
	if _, err := s.GetKnownDevice(ctx, "C02XZ9999"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("unknown serial: err %v, want ErrNotFound", err)
	}

	// One bad entry refuses the whole import.
	for _, bad := range []storage.KnownDevice{
		{SerialNumber: "c02xlower", ImportedAt: at(hour)},
		{SerialNumber: "", ImportedAt: at(hour)},
		{SerialNumber: "C02XNUL", Name: "a\x00b", ImportedAt: at(hour)},
	} {
		before := dumpOf(t, s)
		if _, err := imp(storage.KnownDevice{SerialNumber: "C02XD0004", ImportedAt: at(hour)}, bad); err == nil {
			t.Errorf("import with %+v succeeded", bad)
		}
		sameDump(t, "a refused import", before, s)
	}
}

// A revoked Mac comes back only by approval, and only with a new key:
// its revoked key never asks, a request made against the revocation waits,
// and approving it reinstates the same device (its history kept, its
// revocation cleared, the new key in place) and ends the browser
// certificates issued before the revocation.
func testApproveReinstates(t *testing.T, s storage.Store) {
	ctx := t.Context()
	createSecret(t, s, "first")
	createSecret(t, s, "second")
	orig := enroll(t, s, newEnrollment(1, "first"))
	save(t, s, newReport(orig.ID, 1, at(minute)), nil, 10)
	bc := newBrowserCert(orig, 1, at(minute))
	record(t, s, bc, nil, at(minute), 0)
	revoked := revokeDevice(t, s, orig.ID)

	// The revoked key: refused, nothing recorded.
	same := newRequest(1, "k0", "second")
	same.PublicKey = orig.PublicKey
	same.DeviceID, same.DeviceKey, same.DeviceRevokedAt = orig.ID, orig.PublicKey, revoked.RevokedAt
	before := dumpOf(t, s)
	_, err := s.RequestEnrollment(ctx, same, storage.PendingLimits{}, storage.AuditEvent{At: at(2 * hour), Actor: "agent", Action: "device.enroll_pending"})
	wantErr(t, err, storage.ErrDeviceRevoked)
	sameDump(t, "the revoked key asking", before, s)

	// Made as if the device were not revoked: the state is gone.
	unrevoked := newRequest(1, "k1", "second")
	unrevoked.DeviceID, unrevoked.DeviceKey = orig.ID, orig.PublicKey
	_, err = s.RequestEnrollment(ctx, unrevoked, storage.PendingLimits{}, storage.AuditEvent{At: at(2 * hour), Actor: "agent", Action: "device.enroll_pending"})
	wantErr(t, err, storage.ErrKeyReplaced)
	sameDump(t, "a request made against the device unrevoked", before, s)

	// A new key, made against the revocation: waits.
	r := unrevoked
	r.Reason = "revoked_device"
	r.DeviceRevokedAt = revoked.RevokedAt
	got := request(t, s, r, storage.PendingLimits{})
	equal(t, "waiting request", got, requested(r))
	if u := getSecret(t, s, "second").Uses; u != 0 {
		t.Errorf("secret uses while the request waits = %d, want 0", u)
	}

	d, existed, err := s.ApproveEnrollment(ctx, storage.Approval{
		RequestID: r.ID, NewDeviceID: "dev-generated", At: at(4 * hour),
		Audit: storage.AuditEvent{At: at(4 * hour), Actor: "admin-api", Action: "device.reinstate", Detail: r.ID},
	})
	must(t, err)
	if !existed {
		t.Error("existed = false for a revoked device")
	}
	want := orig // the hostname too: it follows the agent's Hello, not an approval
	want.PublicKey = r.PublicKey
	want.CertSerial, want.CertNotAfter = "", time.Time{}
	want.Enrollments = 2
	want.LastSeen = at(2 * hour)
	want.LastReportAt = newReport(orig.ID, 1, at(minute)).ObservedAt
	want.SecretID = "second"
	equal(t, "reinstated device", d, want)
	equal(t, "GetDevice", getDevice(t, s, orig.ID), want)
	if u := getSecret(t, s, "second").Uses; u != 1 {
		t.Errorf("secret uses = %d, want 1 (the approval)", u)
	}
	if a := listAudit(t, s, orig.ID); len(a) == 0 || a[0].Action != "device.reinstate" {
		t.Errorf("device audit = %+v, want the reinstatement first", a)
	}
	if n := len(listReports(t, s, orig.ID)); n != 1 {
		t.Errorf("reports after reinstatement = %d, want the 1 from before", n)
	}
	// The browser certificate issued before stops counting at the
	// revocation.
	if c := getBrowserCert(t, s, bc.Serial); !c.RevokeAfter.Equal(revoked.RevokedAt) || !strings.Contains(c.RevokedReason, "device revoked") {
		t.Errorf("browser certificate from before the revocation: revoke after %v (%q), want %v", c.RevokeAfter, c.RevokedReason, revoked.RevokedAt)
	}
	// The old key's reports stay refused; the agent of the new key
	// enrolls by proving it.
	wantErr(t, s.SaveReport(ctx, newReport(orig.ID, 2, at(5*hour)), nil, 10), storage.ErrKeyReplaced)
	e := newEnrollment(1, "second")
	e.Device.PublicKey = r.PublicKey
	e.Device.CertSerial, e.Cert.Serial = "abc123", "abc123"
	e.Device.EnrolledAt = at(6 * hour)
	e.Collect = &storage.AuditEvent{At: at(6 * hour), Actor: "agent", Action: "device.collect"}
	if got := enroll(t, s, e); got.ID != orig.ID || got.Revoked() || got.CertSerial != "abc123" {
		t.Errorf("enrollment after reinstatement: %s, revoked %v, cert %q", got.ID, got.Revoked(), got.CertSerial)
	}
	// Collecting the reinstated key's first certificate is not another
	// enrollment: the approval counted.
	if n := getDevice(t, s, orig.ID).Enrollments; n != 2 {
		t.Errorf("enrollments after the approved key collected its certificate = %d, want 2 (the first, the approval)", n)
	}
}

// An approval commits only against the revocation its request was made
// against: a request made before the device was revoked is stale once it
// is, and rejecting a revoked device's request keeps it revoked and its key
// refused.
func testReinstateChecksRevocation(t *testing.T, s storage.Store) {
	ctx := t.Context()
	createSecret(t, s, "sec")
	orig := enroll(t, s, newEnrollment(1, "sec"))

	// Waiting for a key change, then the device is revoked.
	r := newRequest(1, "k1", "sec")
	r.DeviceID, r.DeviceKey, r.Reason = orig.ID, orig.PublicKey, "unproven_key"
	request(t, s, r, storage.PendingLimits{})
	revoked := revokeDevice(t, s, orig.ID)
	_, _, err := approve(t, s, r.ID, "dev-x", at(4*hour))
	wantErr(t, err, storage.ErrRequestStale)
	if d := getDevice(t, s, orig.ID); !d.Revoked() || !bytes.Equal(d.PublicKey, orig.PublicKey) {
		t.Fatalf("a stale approval changed the revoked device: %+v", d)
	}

	// Rejecting a revoked device's request: still revoked, the key refused.
	r2 := newRequest(1, "k2", "sec")
	r2.DeviceID, r2.DeviceKey, r2.DeviceRevokedAt, r2.Reason = orig.ID, orig.PublicKey, revoked.RevokedAt, "revoked_device"
	request(t, s, r2, storage.PendingLimits{})
	_, err = s.RejectEnrollment(ctx, r2.ID, at(5*hour), storage.PendingLimits{}, storage.AuditEvent{At: at(5 * hour), Actor: "admin-api", Action: "device.enroll_reject"})
	must(t, err)
	if d := getDevice(t, s, orig.ID); !d.Revoked() {
		t.Fatal("rejecting the request reinstated the device")
	}
	_, err = s.RequestEnrollment(ctx, r2, storage.PendingLimits{}, storage.AuditEvent{At: at(6 * hour), Actor: "agent", Action: "device.enroll_pending"})
	wantErr(t, err, storage.ErrRequestRejected)

	// Reinstated by one approval, then revoked again: a request made
	// against the first revocation is stale.
	r3 := newRequest(1, "k3", "sec")
	r3.DeviceID, r3.DeviceKey, r3.DeviceRevokedAt, r3.Reason = orig.ID, orig.PublicKey, revoked.RevokedAt, "revoked_device"
	request(t, s, r3, storage.PendingLimits{})
	_, _, err = approve(t, s, r3.ID, "dev-x", at(7*hour))
	must(t, err)
	if d := getDevice(t, s, orig.ID); d.Revoked() || !bytes.Equal(d.PublicKey, r3.PublicKey) {
		t.Fatalf("after approval: %+v", d)
	}
	_, err = s.RevokeDevice(ctx, orig.ID, "lost again", at(8*hour), storage.AuditEvent{At: at(8 * hour), Actor: "admin-api", Action: "device.revoke"})
	must(t, err)
	r4 := newRequest(1, "k4", "sec")
	r4.DeviceID, r4.DeviceKey, r4.DeviceRevokedAt, r4.Reason = orig.ID, orig.PublicKey, revoked.RevokedAt, "revoked_device"
	_, err = s.RequestEnrollment(ctx, r4, storage.PendingLimits{}, storage.AuditEvent{At: at(9 * hour), Actor: "agent", Action: "device.enroll_pending"})
	wantErr(t, err, storage.ErrKeyReplaced)
}

// testRevokedEarlierKeyRefused: a key a revoked device held before its last
// (one it rotated away from) cannot ask to come back, nor be approved back;
// DeviceHadKey knows every key a device has held.
func testRevokedEarlierKeyRefused(t *testing.T, s storage.Store) {
	ctx := t.Context()
	createSecret(t, s, "first")
	createSecret(t, s, "second")
	orig := enroll(t, s, newEnrollment(1, "first"))
	rot := newEnrollment(1, "first")
	rot.Device.PublicKey = []byte("rotated-key")
	rot.Device.CertSerial, rot.Cert.Serial = "abc200", "abc200"
	rot.Checked = &storage.Checked{Key: orig.PublicKey}
	enroll(t, s, rot)
	for key, want := range map[string]bool{string(orig.PublicKey): true, "rotated-key": true, "another key": false} {
		if had, err := s.DeviceHadKey(ctx, orig.ID, []byte(key)); err != nil || had != want {
			t.Errorf("DeviceHadKey(%q) = %v, %v; want %v", key, had, err, want)
		}
	}
	if had, err := s.DeviceHadKey(ctx, "dev-none", orig.PublicKey); err != nil || had {
		t.Errorf("DeviceHadKey of no device = %v, %v", had, err)
	}
	revoked := revokeDevice(t, s, orig.ID)

	// The key before the last: refused, nothing recorded.
	earlier := newRequest(1, "k0", "second")
	earlier.PublicKey = orig.PublicKey
	earlier.Reason = "revoked_device"
	earlier.DeviceID, earlier.DeviceKey, earlier.DeviceRevokedAt = orig.ID, []byte("rotated-key"), revoked.RevokedAt
	before := dumpOf(t, s)
	_, err := s.RequestEnrollment(ctx, earlier, storage.PendingLimits{}, storage.AuditEvent{At: at(2 * hour), Actor: "agent", Action: "device.enroll_pending"})
	wantErr(t, err, storage.ErrDeviceRevoked)
	sameDump(t, "an earlier key asking", before, s)

	// A new key waits and is approved: the device holds it too from then.
	r := earlier
	r.PublicKey = []byte("a new key")
	got := request(t, s, r, storage.PendingLimits{})
	d, _, err := s.ApproveEnrollment(ctx, storage.Approval{
		RequestID: got.ID, NewDeviceID: "dev-generated", At: at(4 * hour),
		Audit: storage.AuditEvent{At: at(4 * hour), Actor: "admin-api", Action: "device.reinstate", Detail: got.ID},
	})
	must(t, err)
	if d.Revoked() || string(d.PublicKey) != "a new key" {
		t.Fatalf("reinstated device: %+v", d)
	}
	if had, err := s.DeviceHadKey(ctx, orig.ID, []byte("a new key")); err != nil || !had {
		t.Errorf("DeviceHadKey of the approved key = %v, %v", had, err)
	}
}
