package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clearance/clearance/verifier/storage"
)

// readStmts returns the queries the store keeps prepared on its reading
// pool.
func readStmts(t *testing.T, s *Store) map[string]*sql.Stmt {
	t.Helper()
	v := reflect.ValueOf(s.Store).Elem()
	m := map[string]*sql.Stmt{}
	reads := (*sync.Map)(v.FieldByName("reads").Addr().UnsafePointer())
	reads.Range(func(k, st any) bool {
		m[k.(string)] = st.(*sql.Stmt)
		return true
	})
	return m
}

func serials(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("ABSENT%05d", i)
	}
	return out
}

// A lookup's query text depends on how many values it is given (the
// Cloudflare posture endpoint varies it with the devices Cloudflare asks
// about, from many goroutines at once): none of those texts is kept, so
// they cannot crowd out the sign-in's reads, which are.
func TestReadCacheKeepsNoLookupTexts(t *testing.T) {
	s, ds := fleet(t, filepath.Join(t.TempDir(), "c.db"), 1)
	for n := 1; n <= 300; n++ {
		_, err := s.DevicesBySerial(t.Context(), serials(n))
		must(t, err)
	}
	var wg sync.WaitGroup
	for n := 300; n < 364; n++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := s.DevicesBySerial(context.Background(), serials(n)); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	for q := range readStmts(t, s) {
		if strings.Contains(q, " IN (") {
			t.Errorf("a lookup's text is kept prepared: %.80q", q)
		}
	}
	// A sign-in read used for the first time now is kept.
	must(t, s.SaveReport(t.Context(), report(ds[0], 1), nil, 10))
	if _, err := s.LatestReport(t.Context(), ds[0].ID); err != nil {
		t.Fatal(err)
	}
	for q := range readStmts(t, s) {
		if strings.Contains(q, "FROM reports") {
			return
		}
	}
	t.Errorf("LatestReport is not kept prepared")
}

// Reads after a write see it, through the group commit and without, while
// other goroutines read the same prepared statements; and no reader pins a
// WAL snapshot (a checkpoint completes).
func TestPreparedReadsSeeCommittedWrites(t *testing.T) {
	s, ds := fleet(t, filepath.Join(t.TempDir(), "c.db"), 4)
	var wg sync.WaitGroup
	for _, d := range ds {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for seq := uint64(1); seq <= 150; seq++ {
				if err := s.SaveReport(context.Background(), report(d, seq), nil, 5); err != nil {
					t.Error(err)
					return
				}
				got, err := s.GetDevice(context.Background(), d.ID)
				if err != nil || got.LastSeq != seq {
					t.Errorf("GetDevice after report %d: LastSeq %d, %v", seq, got.LastSeq, err)
					return
				}
				r, err := s.LatestReport(context.Background(), d.ID)
				if err != nil || r.Seq != seq {
					t.Errorf("LatestReport after report %d: %d, %v", seq, r.Seq, err)
					return
				}
				// A listing that stops early and one that finds nothing.
				if _, err := s.DevicesBySerial(context.Background(), []string{d.SerialNumber, "NOSUCH"}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	var busy, logN, done int
	must(t, s.w.QueryRowContext(t.Context(), `PRAGMA wal_checkpoint(TRUNCATE)`).Scan(&busy, &logN, &done))
	if busy != 0 {
		t.Errorf("checkpoint busy: a reader holds a snapshot (log %d, checkpointed %d)", logN, done)
	}
}

// A read whose context is done before its statement is prepared fails,
// keeps nothing, and the next read prepares it.
func TestReadCanceledBeforePrepare(t *testing.T) {
	s, ds := fleet(t, filepath.Join(t.TempDir(), "c.db"), 1)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := s.GetDevice(ctx, ds[0].ID); err == nil {
		t.Fatal("GetDevice with a canceled context succeeded")
	}
	for q, st := range readStmts(t, s) {
		if st == nil {
			t.Errorf("nil statement kept for %q", q)
		}
	}
	if _, err := s.GetDevice(t.Context(), ds[0].ID); err != nil {
		t.Fatal(err)
	}
	if m := readStmts(t, s); len(m) != 1 {
		t.Errorf("kept %d statements, want GetDevice's", len(m))
	}
}

// Many first uses of one query at once keep one statement.
func TestReadFirstUseRace(t *testing.T) {
	s, ds := fleet(t, filepath.Join(t.TempDir(), "c.db"), 1)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			if _, err := s.GetDevice(context.Background(), ds[0].ID); err != nil {
				t.Error(err)
			}
		}()
	}
	close(start)
	wg.Wait()
	if m := readStmts(t, s); len(m) != 1 {
		t.Errorf("kept %d statements; want 1", len(m))
	}
}

// Close while reads run: they fail, nothing panics.
func TestCloseWhileReading(t *testing.T) {
	s, err := Open(t.Context(), filepath.Join(t.TempDir(), "c.db"))
	must(t, err)
	must(t, s.CreateEnrollSecret(t.Context(), secret("s"), storage.AuditEvent{At: t0}))
	d, _, err := s.EnrollDevice(t.Context(), enrollment(1, "s"))
	must(t, err)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	errs := make(chan error, 64)
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; ; j++ {
				select {
				case <-stop:
					return
				default:
				}
				// Fresh texts too, so that some prepare while Close runs.
				_, err := s.DevicesBySerial(context.Background(), serials(1+(i*37+j)%200))
				if err == nil {
					_, err = s.GetDevice(context.Background(), d.ID)
				}
				if err != nil {
					select {
					case errs <- err:
					default:
					}
					return
				}
			}
		}()
	}
	must(t, s.Close())
	close(stop)
	wg.Wait()
	close(errs)
	seen := map[string]bool{}
	for err := range errs {
		seen[err.Error()] = true
	}
	t.Logf("errors after Close: %v", seen)
}

// A read of a table that is gone fails with the same error whether its
// statement was kept from before or cannot be prepared at all.
func TestReadOfMissingTableSameError(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.db")
	a := open(t, path)
	if _, err := a.OktaCursor(t.Context(), "x"); err == nil {
		t.Fatal("want not found")
	}
	other, err := sql.Open("sqlite", dsn(path, false))
	must(t, err)
	defer other.Close()
	_, err = other.ExecContext(t.Context(), `DROP TABLE okta_cursors`)
	must(t, err)
	_, errKept := a.OktaCursor(t.Context(), "x")
	b := open(t, path)
	_, errFresh := b.OktaCursor(t.Context(), "x")
	t.Logf("kept statement: %v\nfresh store:    %v", errKept, errFresh)
	if errKept == nil || errFresh == nil || errKept.Error() != errFresh.Error() {
		t.Errorf("errors differ:\n kept:  %v\n fresh: %v", errKept, errFresh)
	}
}

// The admin API's decision filters (each field optional, up to six modes,
// times before year 1678 or after 2262 turned into conditions of their own)
// give over a thousand query texts: an operator paging through the
// dashboard's filters fills the cache.
func TestReadCacheKeepsNoFilterTexts(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "c.db"))
	allModes := []string{"enforce", "monitor", "warn", "warned", "bypassed", "exempt"}
	times := []time.Time{{}, t0, time.Date(9000, 1, 1, 0, 0, 0, 0, time.UTC)}
	allow := true
	n := 0
	for bits := range 8 {
		for m := range len(allModes) + 1 {
			for _, since := range times {
				for _, until := range times {
					f := storage.DecisionFilter{Modes: allModes[:m], Since: since, Until: until}
					if bits&1 != 0 {
						f.Username = "ana"
					}
					if bits&2 != 0 {
						f.DeviceID = "dev-1"
					}
					if bits&4 != 0 {
						f.Allow = &allow
					}
					_, err := s.ListDecisions(t.Context(), f)
					must(t, err)
					n++
				}
			}
		}
	}
	if m := readStmts(t, s); len(m) != 0 {
		t.Errorf("%d admin-reachable filters left %d statements kept; want none", n, len(m))
	}
	// A sign-in read used for the first time now is kept.
	if _, err := s.GetDevice(t.Context(), "dev-1"); err == nil {
		t.Fatal("GetDevice found a device in an empty store")
	}
	for q := range readStmts(t, s) {
		if strings.Contains(q, "FROM devices") {
			return
		}
	}
	t.Errorf("GetDevice is not kept prepared")
}

// Reads canceled part-way through their kept statements leave them fit
// for the next read on the same connection.
func TestPreparedReadsAfterCanceledReads(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "c.db"))
	must(t, s.CreateEnrollSecret(t.Context(), secret("s"), storage.AuditEvent{At: t0}))
	ds := make([]storage.Device, 2)
	for i := range ds {
		e := enrollment(i+1, "s")
		e.Device.SerialNumber = fmt.Sprintf("C02SER%d", i+1)
		d, _, err := s.EnrollDevice(t.Context(), e)
		must(t, err)
		ds[i] = d
	}
	must(t, s.SaveReport(t.Context(), report(ds[0], 1), nil, 5))
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 200 {
				ctx, cancel := context.WithTimeout(context.Background(), time.Duration((i*200+j)%50)*time.Microsecond)
				_, _ = s.DevicesBySerial(ctx, serials(600))
				_, _ = s.LatestReport(ctx, ds[0].ID)
				cancel()
			}
		}()
	}
	wg.Wait()
	for seq := uint64(2); seq <= 20; seq++ {
		must(t, s.SaveReport(t.Context(), report(ds[0], seq), nil, 5))
		r, err := s.LatestReport(t.Context(), ds[0].ID)
		if err != nil || r.Seq != seq {
			t.Fatalf("LatestReport after report %d: %d, %v", seq, r.Seq, err)
		}
		got, err := s.DevicesBySerial(t.Context(), append(serials(600), ds[1].SerialNumber))
		if err != nil || len(got) != 1 || got[0].ID != ds[1].ID {
			t.Fatalf("DevicesBySerial: %v, %v", got, err)
		}
	}
}

// SCIM list filters and the other sign-in reads keep to fixed texts or run
// in read transactions, which keep nothing.
func TestSCIMFiltersKeepNothing(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "c.db"))
	for i := range 50 {
		q := storage.PeopleQuery{Offset: i, Limit: 1 + i%3}
		if i%2 == 0 {
			q.Name = fmt.Sprintf("user%d", i)
		}
		if i%3 == 0 {
			q.ExternalID = fmt.Sprintf("ext%d", i)
		}
		_, err := s.ListUsers(t.Context(), q)
		must(t, err)
		_, err = s.ListGroups(t.Context(), q)
		must(t, err)
	}
	if m := readStmts(t, s); len(m) != 0 {
		t.Errorf("SCIM listings kept %d statements", len(m))
	}
}
