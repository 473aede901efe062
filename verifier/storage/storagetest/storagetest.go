// Package storagetest is the conformance suite every storage backend passes:
// each backend's tests call Run in one line. It checks the behaviour the
// storage package documents, through the storage.Store interface only, and
// that a failing call leaves what the interface can read unchanged.
package storagetest

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"flag"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clearance/clearance/verifier/storage"
)

// Run runs the suite. newStore must return an empty, ready store of its own
// for each call (subtests run concurrently, see concurrency) and close it
// when t ends, e.g. with t.Cleanup.
func Run(t *testing.T, newStore func(t *testing.T) storage.Store) {
	t.Helper()
	groups := []struct {
		name  string
		tests []test
	}{
		{"Devices", deviceTests},
		{"Secrets", secretTests},
		{"Approvals", approvalTests},
		{"Reports", reportTests},
		{"ConcurrentReports", concurrentReportTests},
		{"Nonces", nonceTests},
		{"Audit", auditTests},
		{"SAMLRequests", samlRequestTests},
		{"PendingSignIns", pendingSignInTests},
		{"SignInChallenges", signInChallengeTests},
		{"ServerKeys", serverKeyTests},
		{"Decisions", decisionTests},
		{"BrowserCerts", browserCertTests},
		{"Cloudflare", cloudflareTests},
		{"Okta", oktaTests},
		{"Rollout", rolloutTests},
		{"People", peopleTests},
		{"AdminTokens", adminTokenTests},
		{"PolicyStreaks", streakTests},
		{"SettingsRejected", settingsRejectedTests},
		{"Reinstall", reinstallTests},
		{"Store", storeTests},
		{"Dump", dumpTests},
	}
	// The subtests are not t.Parallel: -parallel (GOMAXPROCS by default)
	// would bound them, and they spend their time waiting on the backend.
	// They run from goroutines of their own instead, which t.Run allows,
	// every group's at once, a bounded number at a time.
	slots := make(chan struct{}, concurrency())
	var groupsDone sync.WaitGroup
	for _, g := range groups {
		groupsDone.Go(func() {
			t.Run(g.name, func(t *testing.T) {
				var testsDone sync.WaitGroup
				for _, tc := range g.tests {
					testsDone.Go(func() {
						slots <- struct{}{}
						defer func() { <-slots }()
						t.Run(tc.name, func(t *testing.T) { tc.run(t, newStore(t)) })
					})
				}
				testsDone.Wait()
			})
		})
	}
	groupsDone.Wait()
}

// defaultConcurrency is how many of the suite's tests run at once. Each
// spends most of its time on round trips and fsyncs (on PostgreSQL, also
// on creating and dropping its database), so more than GOMAXPROCS of them
// keep a small machine busy: on 2 cores, 8 at once take the PostgreSQL run
// from 55 s to about 35 s, and more gain nothing, the CPU being spent.
// On PostgreSQL 8 tests hold at most 8 pools (max(4, NumCPU) connections
// each, one more while opening) and 8 connections creating or dropping a
// database: far below the max_connections of 300 scripts/postgres.sh
// sets, with room for the packages go test runs beside this one.
const defaultConcurrency = 8

// concurrency is defaultConcurrency, or -parallel when it is given, so
// that -parallel 1 still runs the suite one test at a time.
func concurrency() int {
	n := defaultConcurrency
	flag.Visit(func(f *flag.Flag) {
		if f.Name == "test.parallel" {
			if p, err := strconv.Atoi(f.Value.String()); err == nil && p > 0 {
				n = p
			}
		}
	})
	return n
}

// test is one behaviour, checked on a fresh store.
type test struct {
	name string
	run  func(t *testing.T, s storage.Store)
}

// Inputs carry a non-UTC zone and nanoseconds, so every comparison also
// checks that times come back in UTC at full precision.
var (
	zone = time.FixedZone("UTC+2", 2*60*60)
	t0   = time.Date(2025, time.March, 4, 7, 6, 7, 123456789, zone)
)

// at is t0 plus d.
func at(d time.Duration) time.Time { return t0.Add(d) }

const (
	minute = time.Minute
	hour   = time.Hour
)

// --- fixtures ---

func newSecret(id string, created time.Time) storage.EnrollSecret {
	h := sha256.Sum256([]byte("enroll secret " + id))
	return storage.EnrollSecret{ID: id, Description: "secret " + id, Hash: h[:], CreatedAt: created}
}

func createSecret(t *testing.T, s storage.Store, id string) storage.EnrollSecret {
	t.Helper()
	sec := newSecret(id, t0)
	must(t, s.CreateEnrollSecret(t.Context(), sec, storage.AuditEvent{
		At: t0, Actor: "cli", Action: "secret.create", Detail: "secret " + id,
	}))
	return sec
}

func revokeSecret(t *testing.T, s storage.Store, id string) {
	t.Helper()
	_, err := s.RevokeEnrollSecret(t.Context(), id, at(minute), storage.AuditEvent{
		At: at(minute), Actor: "cli", Action: "secret.revoke",
	})
	must(t, err)
}

// deviceKey is the key (a stand-in for PKIX DER) of the device with this
// ID as its first enrollment (newEnrollment) gives it.
func deviceKey(id string) []byte { return fmt.Appendf(nil, "pkix-der-key-%s\x00\xff", id) }

// newEnrollment describes the first enrollment of machine n with secretID.
func newEnrollment(n int, secretID string) storage.Enrollment {
	serial := fmt.Sprintf("%x", 0x5e0000+n)
	id := fmt.Sprintf("dev-%03d", n)
	return storage.Enrollment{
		Device: storage.Device{
			ID:           id,
			HardwareUUID: fmt.Sprintf("5A1B2C3D-0000-4000-8000-%012d", n),
			SerialNumber: fmt.Sprintf("C02X%05d", n),
			Model:        "MacBookPro18,3",
			OSName:       "macOS",
			OSVersion:    "15.1",
			Hostname:     fmt.Sprintf("mac-%d.example.com", n),
			Platform:     "darwin",
			AgentVersion: "1.0.0",
			PublicKey:    deviceKey(id),
			CertSerial:   serial,
			CertNotAfter: at(24 * hour),
			EnrolledAt:   t0,
		},
		Cert: storage.Cert{
			Serial:    serial,
			DeviceID:  "replaced-by-the-backend",
			Kind:      "device",
			NotBefore: t0,
			NotAfter:  at(24 * hour),
			DER:       []byte("cert-der-" + serial),
		},
		SecretID: secretID,
		Audit: storage.AuditEvent{
			At: t0, Actor: "agent", Action: "device.enroll", Detail: fmt.Sprintf("machine %d", n),
		},
	}
}

// stored is the device a first enrollment must produce.
func stored(e storage.Enrollment) storage.Device {
	d := e.Device
	d.Enrollments = 1
	d.LastSeen = d.EnrolledAt
	d.LastSeq = 0
	d.LastReportAt = time.Time{}
	d.RevokedAt = time.Time{}
	d.RevokedReason = ""
	d.SecretID = e.SecretID
	return d
}

func enroll(t *testing.T, s storage.Store, e storage.Enrollment) storage.Device {
	t.Helper()
	d, _, err := s.EnrollDevice(t.Context(), e)
	must(t, err)
	return d
}

// enrollN creates a secret and enrolls machines 1..n with it.
func enrollN(t *testing.T, s storage.Store, n int) []storage.Device {
	t.Helper()
	createSecret(t, s, "fleet")
	var ds []storage.Device
	for i := 1; i <= n; i++ {
		ds = append(ds, enroll(t, s, newEnrollment(i, "fleet")))
	}
	return ds
}

func revokeDevice(t *testing.T, s storage.Store, id string) storage.Device {
	t.Helper()
	d, err := s.RevokeDevice(t.Context(), id, "lost", at(hour), storage.AuditEvent{
		At: at(hour), Actor: "admin-api", Action: "device.revoke",
	})
	must(t, err)
	return d
}

// newReport is a report from the device's first enrollment's key. Its
// payload names its time, so two reports with one seq differ unless they
// were made for the same moment.
func newReport(deviceID string, seq uint64, received time.Time) storage.Report {
	return storage.Report{
		DeviceID:   deviceID,
		Seq:        seq,
		ObservedAt: received.Add(-2 * time.Second),
		ReceivedAt: received,
		Payload:    fmt.Appendf(nil, "posture %s %d %d \x00\x01\xfe\xff", deviceID, seq, received.UnixNano()),
		Signature:  fmt.Appendf(nil, "signature %s %d", deviceID, seq),
		Key:        deviceKey(deviceID),
	}
}

// signedWith is r verified with another key.
func signedWith(r storage.Report, key []byte) storage.Report {
	r.Key = key
	return r
}

func save(t *testing.T, s storage.Store, r storage.Report, nonce []byte, keep int) {
	t.Helper()
	must(t, s.SaveReport(t.Context(), r, nonce, keep))
}

func createNonce(t *testing.T, s storage.Store, deviceID, nonce string, expires time.Time) {
	t.Helper()
	must(t, s.CreateNonce(t.Context(), deviceID, []byte(nonce), expires))
}

func getDevice(t *testing.T, s storage.Store, id string) storage.Device {
	t.Helper()
	d, err := s.GetDevice(t.Context(), id)
	must(t, err)
	return d
}

func getSecret(t *testing.T, s storage.Store, id string) storage.EnrollSecret {
	t.Helper()
	sec, err := s.GetEnrollSecret(t.Context(), id)
	must(t, err)
	return sec
}

func listReports(t *testing.T, s storage.Store, deviceID string) []storage.Report {
	t.Helper()
	rs, err := s.ListReports(t.Context(), deviceID, 1000)
	must(t, err)
	return rs
}

// listAudit is the device's audit (every event for ""), newest first,
// without IDs: what the fixtures appended, to compare with them.
func listAudit(t *testing.T, s storage.Store, deviceID string) []storage.AuditEvent {
	t.Helper()
	es, err := s.ListAudit(t.Context(), storage.AuditFilter{DeviceID: deviceID, Limit: storage.MaxAuditLimit})
	must(t, err)
	return withoutIDs(es)
}

// each is f of every element of xs, in order: never nil.
func each[T, V any](xs []T, f func(T) V) []V {
	out := make([]V, 0, len(xs))
	for _, x := range xs {
		out = append(out, f(x))
	}
	return out
}

func seqs(rs []storage.Report) []uint64 {
	return each(rs, func(r storage.Report) uint64 { return r.Seq })
}

// auditDetails is the Detail of each event with action in the audit of
// deviceID ("" for every device), newest first.
func auditDetails(t *testing.T, s storage.Store, deviceID, action string) []string {
	t.Helper()
	var out []string
	for _, e := range listAudit(t, s, deviceID) {
		if e.Action == action {
			out = append(out, e.Detail)
		}
	}
	return out
}

// wantNewestAudit fails unless the audit of deviceID ("" for every device)
// holds n events, the newest want.
func wantNewestAudit(t *testing.T, s storage.Store, what, deviceID string, n int, want storage.AuditEvent) {
	t.Helper()
	if a := listAudit(t, s, deviceID); len(a) != n {
		t.Errorf("%s: audit has %d events, want %d", what, len(a), n)
	} else {
		equal(t, what, a[0], want)
	}
}

// --- assertions ---

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("unexpected error: %v", err)
	}
}

// wantErr fails unless err matches target; a nil target accepts any error.
func wantErr(t *testing.T, err, target error) {
	t.Helper()
	switch {
	case err == nil && target == nil:
		t.Fatalf("err = nil, want an error")
	case err == nil:
		t.Fatalf("err = nil, want %v", target)
	case target != nil && !errors.Is(err, target):
		t.Fatalf("err = %v, want %v", err, target)
	}
}

// equal reports every difference between got and want. Times are equal when
// they are the same instant and got is in UTC; nil and empty byte slices are
// equal.
func equal(t *testing.T, what string, got, want any) {
	t.Helper()
	if d := diff(what, reflect.ValueOf(got), reflect.ValueOf(want)); len(d) > 0 {
		t.Errorf("%s differs:\n  %s", what, strings.Join(d, "\n  "))
	}
}

var timeType = reflect.TypeFor[time.Time]()

func diff(path string, got, want reflect.Value) []string {
	if !got.IsValid() || !want.IsValid() {
		if got.IsValid() != want.IsValid() {
			return []string{fmt.Sprintf("%s: got %v, want %v", path, got, want)}
		}
		return nil
	}
	if got.Type() != want.Type() {
		return []string{fmt.Sprintf("%s: got type %s, want %s", path, got.Type(), want.Type())}
	}
	if got.Type() == timeType {
		g, w := got.Interface().(time.Time), want.Interface().(time.Time)
		switch {
		case g.IsZero() != w.IsZero() || !g.Equal(w):
			return []string{fmt.Sprintf("%s: got %s, want %s", path, fmtTime(g), fmtTime(w))}
		case g.Location() != time.UTC:
			return []string{fmt.Sprintf("%s: got %s, want it in UTC", path, fmtTime(g))}
		}
		return nil
	}
	switch got.Kind() {
	case reflect.Struct:
		var out []string
		for i := range got.NumField() {
			if f := got.Type().Field(i); f.IsExported() {
				out = append(out, diff(path+"."+f.Name, got.Field(i), want.Field(i))...)
			}
		}
		return out
	case reflect.Slice:
		if got.Type().Elem().Kind() == reflect.Uint8 {
			if !bytes.Equal(got.Bytes(), want.Bytes()) {
				return []string{fmt.Sprintf("%s: got %q, want %q", path, got.Bytes(), want.Bytes())}
			}
			return nil
		}
		var out []string
		if got.Len() != want.Len() {
			out = append(out, fmt.Sprintf("%s: got %d elements, want %d", path, got.Len(), want.Len()))
		}
		for i := range min(got.Len(), want.Len()) {
			out = append(out, diff(fmt.Sprintf("%s[%d]", path, i), got.Index(i), want.Index(i))...)
		}
		return out
	case reflect.Map:
		keys := map[string]reflect.Value{}
		for _, k := range append(got.MapKeys(), want.MapKeys()...) {
			keys[fmt.Sprint(k.Interface())] = k
		}
		names := make([]string, 0, len(keys))
		for n := range keys {
			names = append(names, n)
		}
		slices.Sort(names)
		var out []string
		for _, n := range names {
			k := keys[n]
			out = append(out, diff(fmt.Sprintf("%s[%s]", path, n), got.MapIndex(k), want.MapIndex(k))...)
		}
		return out
	default:
		if !reflect.DeepEqual(got.Interface(), want.Interface()) {
			return []string{fmt.Sprintf("%s: got %#v, want %#v", path, got.Interface(), want.Interface())}
		}
		return nil
	}
}

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "zero time"
	}
	return t.Format(time.RFC3339Nano) + " (" + t.Location().String() + ")"
}

// state is everything the interface can list, plus the certificates whose
// serials a test names (a failed call must not have stored them).
type state struct {
	Devices []storage.Device
	Reports map[string][]storage.Report
	Secrets []storage.EnrollSecret
	Audit   []storage.AuditEvent
	Certs   map[string]storage.Cert // zero Cert when not found

	serials []string
}

func snapshot(t *testing.T, s storage.Store, serials ...string) state {
	t.Helper()
	ctx := t.Context()
	st := state{
		Reports: map[string][]storage.Report{},
		Certs:   map[string]storage.Cert{},
		serials: serials,
	}
	after := ""
	for {
		page, err := s.ListDevices(ctx, after, 1000)
		must(t, err)
		st.Devices = append(st.Devices, page...)
		if len(page) < 1000 {
			break
		}
		after = page[len(page)-1].ID
	}
	for _, d := range st.Devices {
		st.Reports[d.ID] = listReports(t, s, d.ID)
		if _, ok := st.Certs[d.CertSerial]; !ok {
			st.Certs[d.CertSerial] = storage.Cert{}
		}
	}
	var err error
	st.Secrets, err = s.ListEnrollSecrets(ctx)
	must(t, err)
	st.Audit = listAudit(t, s, "")
	for _, serial := range append(serials, slices.Collect(maps.Keys(st.Certs))...) {
		c, err := s.GetCert(ctx, serial)
		if err != nil && !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("GetCert(%q): %v", serial, err)
		}
		st.Certs[serial] = c
	}
	return st
}

// unchanged fails if the store no longer matches the snapshot.
func (before state) unchanged(t *testing.T, s storage.Store) {
	t.Helper()
	after := snapshot(t, s, before.serials...)
	equal(t, "store state after the failed call", after, before)
}
