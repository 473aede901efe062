package postgres_test

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/clearance/clearance/internal/testkit/testpg"
	"github.com/clearance/clearance/verifier/storage"
	"github.com/clearance/clearance/verifier/storage/postgres"
)

// TestSerialAdmitsOneDeviceAcrossReplicas: two new devices admitted on one
// serial number at the same moment, through two replicas and with two
// enroll secrets (so that no secret's row orders them), never both enroll:
// the serial is locked for the decision although no row holds it yet (a
// serial not on the known list, under auto).
func TestSerialAdmitsOneDeviceAcrossReplicas(t *testing.T) {
	a, b := twoReplicas(t, "s1", "s2")
	ctx := t.Context()
	enrollment := func(n int, serial, secret string) storage.Enrollment {
		cs := fmt.Sprintf("c%06x", n)
		return storage.Enrollment{
			Device: storage.Device{
				ID: fmt.Sprintf("dev-%d", n), HardwareUUID: fmt.Sprintf("HW-%d", n), SerialNumber: serial,
				PublicKey: fmt.Appendf(nil, "key-%d", n), CertSerial: cs, CertNotAfter: t0.Add(time.Hour), EnrolledAt: t0,
			},
			Cert:     storage.Cert{Serial: cs, Kind: "device", NotBefore: t0, NotAfter: t0.Add(time.Hour), DER: []byte("der")},
			SecretID: secret,
			Audit:    storage.AuditEvent{At: t0, Actor: "agent", Action: "device.enroll"},
			Checked:  &storage.Checked{Serial: serial},
		}
	}
	for i := range 40 {
		serial := fmt.Sprintf("C02RACE%04d", i)
		var wg sync.WaitGroup
		errs := make([]error, 2)
		start := make(chan struct{})
		for j, st := range []*postgres.Store{a, b} {
			e := enrollment(2*i+j, serial, []string{"s1", "s2"}[j])
			wg.Go(func() {
				<-start
				_, _, errs[j] = st.EnrollDevice(ctx, e)
			})
		}
		close(start)
		wg.Wait()
		for _, err := range errs {
			if err != nil && !errors.Is(err, storage.ErrSerialEnrolled) {
				t.Fatal(err)
			}
		}
		if errs[0] == nil && errs[1] == nil {
			t.Fatalf("%s: both devices enrolled on it", serial)
		}
		if errs[0] != nil && errs[1] != nil {
			t.Fatalf("%s: neither device enrolled on it", serial)
		}
	}
}

// TestApprovalAndPollOfOneMac: an agent's poll that lands while its
// request is approved on another replica leaves no "new device" request
// behind for the key just enrolled (one that, rejected as a stale claim,
// would lock the approved Mac out): the hardware UUID is locked before
// either decides on it.
func TestApprovalAndPollOfOneMac(t *testing.T) {
	a, b := twoReplicas(t, "s1")
	ctx := t.Context()
	approved := 0
	for i := range 40 {
		req := storage.PendingEnrollment{ID: fmt.Sprintf("req-%d", i), HardwareUUID: fmt.Sprintf("HW-%d", i),
			SerialNumber: fmt.Sprintf("C02POLL%04d", i), PublicKey: fmt.Appendf(nil, "key-%d", i), SecretID: "s1",
			Reason: "manual", LastRequestAt: t0}
		if _, err := a.RequestEnrollment(ctx, req, storage.PendingLimits{}, storage.AuditEvent{At: t0, Action: "device.enroll_pending"}); err != nil {
			t.Fatal(err)
		}
		poll := req
		poll.ID, poll.LastRequestAt = fmt.Sprintf("req-%d-poll", i), t0.Add(time.Second)
		var wg sync.WaitGroup
		start := make(chan struct{})
		var aerr, perr error
		wg.Go(func() {
			<-start
			_, _, aerr = a.ApproveEnrollment(ctx, storage.Approval{RequestID: req.ID, NewDeviceID: fmt.Sprintf("dev-%d", i), At: t0,
				Audit: storage.AuditEvent{At: t0, Action: "device.enroll_approve"}, ClaimReason: "serial_enrolled", NewRequestID: fmt.Sprintf("req-%d-refiled", i)})
		})
		wg.Go(func() {
			<-start
			_, perr = b.RequestEnrollment(ctx, poll, storage.PendingLimits{}, storage.AuditEvent{At: t0, Action: "device.enroll_pending"})
		})
		close(start)
		wg.Wait()
		if aerr != nil {
			t.Fatalf("round %d: approval: %v", i, aerr)
		}
		if perr != nil && !errors.Is(perr, storage.ErrKeyReplaced) {
			t.Fatalf("round %d: poll: %v", i, perr)
		}
		approved++
		if left, err := a.FindEnrollmentRequest(ctx, req.HardwareUUID, req.PublicKey); err == nil {
			t.Fatalf("round %d: request %s (device %q, %s) left for the key just enrolled", i, left.ID, left.DeviceID, left.Reason)
		} else if !errors.Is(err, storage.ErrNotFound) {
			t.Fatal(err)
		}
	}
	if approved == 0 {
		t.Fatal("no round approved")
	}
}

// TestRejectAndEnrollOfOneKey: a key rejected on one replica while it
// enrolls on another (under known, its serial imported meanwhile) is
// either rejected before its enrollment reads the rejections, and refused,
// or enrolled first, its request removed and the rejection refused: never
// both reported done.
func TestRejectAndEnrollOfOneKey(t *testing.T) {
	a, b := twoReplicas(t, "s1")
	ctx := t.Context()
	for i := range 100 {
		hw, key, serial := fmt.Sprintf("HW-R-%d", i), fmt.Appendf(nil, "key-r-%d", i), fmt.Sprintf("C02REJ%04d", i)
		req := storage.PendingEnrollment{ID: fmt.Sprintf("req-r-%d", i), HardwareUUID: hw, SerialNumber: serial,
			PublicKey: key, SecretID: "s1", Reason: "unknown_serial", LastRequestAt: t0}
		if _, err := a.RequestEnrollment(ctx, req, storage.PendingLimits{}, storage.AuditEvent{At: t0, Action: "device.enroll_pending"}); err != nil {
			t.Fatal(err)
		}
		cs := fmt.Sprintf("r%06x", i)
		e := storage.Enrollment{
			Device: storage.Device{ID: fmt.Sprintf("dev-r-%d", i), HardwareUUID: hw, SerialNumber: serial, PublicKey: key,
				CertSerial: cs, CertNotAfter: t0.Add(time.Hour), EnrolledAt: t0},
			Cert:     storage.Cert{Serial: cs, Kind: "device", NotBefore: t0, NotAfter: t0.Add(time.Hour), DER: []byte("der")},
			SecretID: "s1", Audit: storage.AuditEvent{At: t0, Actor: "agent", Action: "device.enroll"},
			Checked: &storage.Checked{Serial: serial},
		}
		var wg sync.WaitGroup
		start := make(chan struct{})
		var rerr, eerr error
		wg.Go(func() {
			<-start
			_, rerr = b.RejectEnrollment(ctx, req.ID, t0.Add(time.Minute), storage.PendingLimits{}, storage.AuditEvent{At: t0, Action: "device.enroll_reject"})
		})
		wg.Go(func() {
			<-start
			_, _, eerr = a.EnrollDevice(ctx, e)
		})
		close(start)
		wg.Wait()
		switch {
		case rerr == nil && eerr == nil:
			t.Fatalf("round %d: the key was rejected and enrolled", i)
		case rerr != nil && !errors.Is(rerr, storage.ErrNotFound):
			t.Fatalf("round %d: reject: %v", i, rerr)
		case eerr != nil && !errors.Is(eerr, storage.ErrRequestRejected):
			t.Fatalf("round %d: enroll: %v", i, eerr)
		}
	}
}

// TestRejectKeyAndEnrollOfOneKey: a key rejected by its fingerprint on one
// replica, for the two Macs it waits for, while it enrolls as one of them
// on another: the rejection takes each Mac's lock before it decides, so
// the key is either refused on that Mac or enrolled there with its request
// removed (and the rejection names only the other Mac's): never rejected
// and enrolled on one Mac.
func TestRejectKeyAndEnrollOfOneKey(t *testing.T) {
	a, b := twoReplicas(t, "s1")
	ctx := t.Context()
	for i := range 60 {
		key, serial := fmt.Appendf(nil, "key-k-%d", i), fmt.Sprintf("C02KEY%04d", i)
		// The hardware UUIDs sort the other way round from their filing.
		hws := []string{fmt.Sprintf("HW-K-%d-B", i), fmt.Sprintf("HW-K-%d-A", i)}
		for j, hw := range hws {
			req := storage.PendingEnrollment{ID: fmt.Sprintf("req-k-%d-%d", i, j), HardwareUUID: hw, SerialNumber: serial,
				PublicKey: key, SecretID: "s1", Reason: "unknown_serial", LastRequestAt: t0}
			if _, err := a.RequestEnrollment(ctx, req, storage.PendingLimits{}, storage.AuditEvent{At: t0, Action: "device.enroll_pending"}); err != nil {
				t.Fatal(err)
			}
		}
		cs := fmt.Sprintf("k%06x", i)
		e := storage.Enrollment{
			Device: storage.Device{ID: fmt.Sprintf("dev-k-%d", i), HardwareUUID: hws[0], SerialNumber: serial, PublicKey: key,
				CertSerial: cs, CertNotAfter: t0.Add(time.Hour), EnrolledAt: t0},
			Cert:     storage.Cert{Serial: cs, Kind: "device", NotBefore: t0, NotAfter: t0.Add(time.Hour), DER: []byte("der")},
			SecretID: "s1", Audit: storage.AuditEvent{At: t0, Actor: "agent", Action: "device.enroll"},
			Checked: &storage.Checked{Serial: serial},
		}
		var wg sync.WaitGroup
		start := make(chan struct{})
		var (
			rejected   []storage.PendingEnrollment
			rerr, eerr error
		)
		wg.Go(func() {
			<-start
			rejected, rerr = b.RejectEnrollmentKey(ctx, storage.KeyFingerprint(key), 0, t0.Add(time.Minute), storage.PendingLimits{}, storage.AuditEvent{At: t0, Action: "device.enroll_reject"})
		})
		wg.Go(func() {
			<-start
			_, _, eerr = a.EnrollDevice(ctx, e)
		})
		close(start)
		wg.Wait()
		if rerr != nil {
			t.Fatalf("round %d: reject: %v", i, rerr)
		}
		if eerr != nil && !errors.Is(eerr, storage.ErrRequestRejected) {
			t.Fatalf("round %d: enroll: %v", i, eerr)
		}
		onEnrolled := false
		for _, p := range rejected {
			onEnrolled = onEnrolled || p.HardwareUUID == hws[0]
		}
		if eerr == nil && onEnrolled {
			t.Fatalf("round %d: the key was rejected and enrolled on %s", i, hws[0])
		}
		if eerr != nil && len(rejected) != 2 {
			t.Fatalf("round %d: the enrollment was refused, yet the rejection named %d requests", i, len(rejected))
		}
	}
}

// TestRejectKeyLocksMacsInOrder: a rejection by key takes the locks of the
// Macs it waits for in the order of their hardware UUIDs, whatever order
// their requests were filed in, so that two rejections (or a rejection and
// anything else that takes several) never each hold a lock the other
// waits for. Another transaction holds the second Mac's lock: the
// rejection waits for it holding the first's, and goes through once it is
// released.
func TestRejectKeyLocksMacsInOrder(t *testing.T) {
	testpg.Require(t)
	ctx := t.Context()
	dsn := testpg.NewDatabase(t)
	s := open(t, dsn)
	if err := s.CreateEnrollSecret(ctx, storage.EnrollSecret{ID: "s1", Hash: []byte("hs1"), CreatedAt: t0}, storage.AuditEvent{At: t0}); err != nil {
		t.Fatal(err)
	}
	key := []byte("key-in-order")
	for i, hw := range []string{"HW-ORDER-B", "HW-ORDER-A"} {
		req := storage.PendingEnrollment{ID: fmt.Sprintf("req-o-%d", i), HardwareUUID: hw, SerialNumber: "C02ORDER01",
			PublicKey: key, SecretID: "s1", Reason: "manual", LastRequestAt: t0}
		if _, err := s.RequestEnrollment(ctx, req, storage.PendingLimits{}, storage.AuditEvent{At: t0, Action: "device.enroll_pending"}); err != nil {
			t.Fatal(err)
		}
	}
	// The lock texts lockMac takes.
	const lockB, lockA = "hardware uuid HW-ORDER-B", "hardware uuid HW-ORDER-A"
	holder, probe := connect(t, ctx, dsn), connect(t, ctx, dsn)
	defer holder.Close(ctx)
	defer probe.Close(ctx)
	tx, err := holder.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtextextended($1, 0))`, lockB); err != nil {
		t.Fatal(err)
	}

	done := make(chan error, 1)
	var rejected []storage.PendingEnrollment
	go func() {
		var err error
		rejected, err = s.RejectEnrollmentKey(ctx, storage.KeyFingerprint(key), 0, t0.Add(time.Minute), storage.PendingLimits{}, storage.AuditEvent{At: t0, Action: "device.enroll_reject"})
		done <- err
	}()
	// Once the rejection waits (for B), it holds A.
	deadline := time.Now().Add(10 * time.Second)
	for {
		var waiting int
		if err := probe.QueryRow(ctx, `SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted
			AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`).Scan(&waiting); err != nil {
			t.Fatal(err)
		}
		if waiting > 0 {
			break
		}
		select {
		case err := <-done:
			t.Fatalf("the rejection ended while B was locked: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("the rejection never waited for B's lock")
		}
		time.Sleep(10 * time.Millisecond)
	}
	var free bool
	if err := probe.QueryRow(ctx, `SELECT pg_try_advisory_xact_lock(hashtextextended($1, 0))`, lockA).Scan(&free); err != nil {
		t.Fatal(err)
	}
	if free {
		t.Fatal("the rejection waits for B without holding A: it takes the locks in filing order, not in order")
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil || len(rejected) != 2 {
		t.Fatalf("rejection after B's lock was released: %d requests, %v; want both", len(rejected), err)
	}
}

// twoReplicas is two stores on one new database, as two replicas have,
// with the enroll secrets named.
func twoReplicas(t *testing.T, secrets ...string) (a, b *postgres.Store) {
	t.Helper()
	testpg.Require(t)
	dsn := testpg.NewDatabase(t)
	a, b = open(t, dsn), open(t, dsn)
	for _, id := range secrets {
		if err := a.CreateEnrollSecret(t.Context(), storage.EnrollSecret{ID: id, Hash: []byte("h" + id), CreatedAt: t0}, storage.AuditEvent{At: t0}); err != nil {
			t.Fatal(err)
		}
	}
	return a, b
}

// TestPerSourceBoundAcrossReplicas: two replicas filing requests from one
// full source network at once each evict a request of their own (the
// oldest that no other transaction holds), so the network never has more
// waiting than its bound.
func TestPerSourceBoundAcrossReplicas(t *testing.T) {
	perSourceBound(t, 15, 10, 2)
}

// TestPerSourceBoundUnderManyWriters: a network one short of its bound,
// then many new requests from it at once through two replicas. The bound
// holds, and none of them is refused: each takes the oldest one's place,
// as a request over a bound does.
func TestPerSourceBoundUnderManyWriters(t *testing.T) {
	perSourceBound(t, 10, 9, 16)
}

// perSourceBound runs rounds of a network with filled waiting requests
// (its bound is 10) and then writers new ones at once, alternating between
// two replicas: none is refused, and the network ends each round with
// exactly its bound waiting.
func perSourceBound(t *testing.T, rounds, filled, writers int) {
	a, b := twoReplicas(t, "s1")
	ctx := t.Context()
	limits := storage.PendingLimits{PerSource: 10, PerDevice: 4, Total: 10000}
	request := func(s *postgres.Store, id, net string, at time.Time) error {
		_, err := s.RequestEnrollment(ctx, storage.PendingEnrollment{ID: id, HardwareUUID: "HW-" + id, SerialNumber: "C02" + id,
			PublicKey: []byte("key-" + id), SecretID: "s1", Reason: "manual", Source: net, SourceNet: net, LastRequestAt: at},
			limits, storage.AuditEvent{At: at, Action: "device.enroll_pending"})
		return err
	}
	for r := range rounds {
		net := fmt.Sprintf("198.51.100.%d", r)
		for i := range filled {
			if err := request(a, fmt.Sprintf("P%02d%02d", r, i), net, t0.Add(time.Duration(i)*time.Minute)); err != nil {
				t.Fatal(err)
			}
		}
		var wg sync.WaitGroup
		start := make(chan struct{})
		for j := range writers {
			s := []*postgres.Store{a, b}[j%2]
			wg.Go(func() {
				<-start
				if err := request(s, fmt.Sprintf("Q%02d%02d", r, j), net, t0.Add(time.Hour)); err != nil {
					t.Errorf("round %d, request %d: %v", r, j, err)
				}
			})
		}
		close(start)
		wg.Wait()
		ps, err := a.ListPendingEnrollments(ctx, "", 1000)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, p := range ps {
			if p.SourceNet == net {
				n++
			}
		}
		if n != limits.PerSource {
			t.Fatalf("round %d: %d requests wait from %s; the bound is %d, and it was reached", r, n, net, limits.PerSource)
		}
	}
}
