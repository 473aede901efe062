package storagetest

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/clearance/clearance/verifier/storage"
)

// RunShared runs the tests of several stores sharing one database, as
// verifier replicas (or the CLI beside the server) do. newDatabase must
// make a fresh, empty database of the test's own and return a function
// that opens one more store on it; open may be called from several
// goroutines at once, the first time included. The suite closes the stores.
func RunShared(t *testing.T, newDatabase func(t *testing.T) (open func() (storage.Store, error))) {
	t.Helper()
	for _, tc := range []struct {
		name string
		run  func(t *testing.T, open func() (storage.Store, error))
	}{
		{"ConcurrentFirstOpen", testConcurrentFirstOpen},
		{"SeqRace", testSharedSeqRace},
		{"ConcurrentFirstEnrollment", testSharedFirstEnrollment},
		{"SignInRaces", testSharedSignInRaces},
		{"Rollout", testSharedRollout},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.run(t, newDatabase(t))
		})
	}
}

// openStores opens n stores at once, closed when t ends.
func openStores(t *testing.T, open func() (storage.Store, error), n int) []storage.Store {
	t.Helper()
	stores := make([]storage.Store, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { stores[i], errs[i] = open() })
	}
	wg.Wait()
	for _, s := range stores {
		if s != nil {
			t.Cleanup(func() { s.Close() })
		}
	}
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("opening: %v", err)
	}
	return stores
}

// Processes starting on a new database at once all get a migrated schema.
func testConcurrentFirstOpen(t *testing.T, open func() (storage.Store, error)) {
	for i, s := range openStores(t, open, 4) {
		createSecret(t, s, fmt.Sprint(i))
	}
}

// Two stores contend for one device's rows: the loser of a seq race gets
// ErrSeqNotIncreasing, never a lock or serialization error, and each seq
// is stored once.
func testSharedSeqRace(t *testing.T, open func() (storage.Store, error)) {
	ctx := t.Context()
	stores := openStores(t, open, 2)
	d := enrollN(t, stores[0], 1)[0]
	const n = 40
	results := make([][]error, len(stores))
	var wg sync.WaitGroup
	for i, s := range stores {
		wg.Go(func() {
			for seq := uint64(1); seq <= n; seq++ {
				// Each store's report is its own (other bytes): the
				// loser's is not the winner's again.
				results[i] = append(results[i], s.SaveReport(ctx, newReport(d.ID, seq, at(time.Duration(i))), nil, 1000))
			}
		})
	}
	wg.Wait()
	for seq := range n {
		ok := 0
		for i := range results {
			switch err := results[i][seq]; {
			case err == nil:
				ok++
			case !errors.Is(err, storage.ErrSeqNotIncreasing):
				t.Errorf("store %d seq %d: %v", i, seq+1, err)
			}
		}
		if ok > 1 {
			t.Errorf("seq %d accepted by both stores", seq+1)
		}
	}
	equal(t, "LastSeq", getDevice(t, stores[1], d.ID).LastSeq, uint64(n))
	equal(t, "reports", len(listReports(t, stores[1], d.ID)), n)
}

// The same machine enrolling through two stores at once ends as one device
// enrolled twice, not as an error.
func testSharedFirstEnrollment(t *testing.T, open func() (storage.Store, error)) {
	ctx := t.Context()
	stores := openStores(t, open, 2)
	createSecret(t, stores[0], "s")
	const rounds = 10
	for n := range rounds {
		var wg sync.WaitGroup
		errs := make([]error, len(stores))
		for i, s := range stores {
			wg.Go(func() {
				e := newEnrollment(n, "s")
				e.Device.ID = fmt.Sprintf("%s-%d", e.Device.ID, i)
				e.Cert.Serial = fmt.Sprintf("%s%d", e.Cert.Serial, i)
				e.Device.CertSerial = e.Cert.Serial
				_, _, errs[i] = s.EnrollDevice(ctx, e)
			})
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			t.Fatalf("round %d: %v", n, err)
		}
		d, err := stores[1].GetDeviceByHardwareUUID(ctx, newEnrollment(n, "s").Device.HardwareUUID)
		if err != nil || d.Enrollments != 2 {
			t.Errorf("round %d: device %+v, %v; want 2 enrollments", n, d, err)
		}
	}
	ds, err := stores[0].ListDevices(ctx, "", 1000)
	if err != nil || len(ds) != rounds {
		t.Errorf("ListDevices = %d devices, %v; want %d", len(ds), err, rounds)
	}
}

// The same AuthnRequest reaching two stores at once, and two "Check again"
// presses handled by two stores: one wins each race, and the losers get
// the documented error, never a lock or serialization error.
func testSharedSignInRaces(t *testing.T, open func() (storage.Store, error)) {
	ctx := t.Context()
	stores := openStores(t, open, 2)
	var next sync.Mutex
	turn := 0
	// Each racer uses the stores in turn.
	store := func() storage.Store {
		next.Lock()
		defer next.Unlock()
		turn++
		return stores[turn%len(stores)]
	}
	for i := range 10 {
		id := fmt.Sprintf("id-%d", i)
		oneWinner(t, "UseRequestID "+id, race(func() error {
			return store().UseRequestID(ctx, oktaIssuer, id, at(minute))
		}), storage.ErrAlreadyExists)

		p := newPendingSignIn(id, t0)
		must(t, stores[0].CreatePendingSignIn(ctx, p))
		oneWinner(t, "DeletePendingSignIn "+id, race(func() error {
			return store().DeletePendingSignIn(ctx, p.TokenHash)
		}), storage.ErrNotFound)
	}
}
