package server

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/clearance/clearance/pkg/logsample"
	"github.com/clearance/clearance/verifier/metrics"
	"github.com/clearance/clearance/verifier/storage"
)

// skewedStore is a store whose database server's clock is off by behind.
type skewedStore struct {
	storage.Store
	behind time.Duration
}

func (s skewedStore) DatabaseTime(context.Context) (time.Time, error) {
	return time.Now().Add(-s.behind), nil
}

// TestDatabaseClockSkew: a replica whose clock is not the database's sets
// the gauge to how far it is ahead and says so at error, once per
// interval; one within MaxDatabaseSkew says nothing. A store without a
// database server is not measured.
func TestDatabaseClockSkew(t *testing.T) {
	for _, tc := range []struct {
		behind time.Duration
		errors int
	}{
		{5 * time.Minute, 1},
		{-2 * time.Minute, 1},
		{2 * time.Second, 0},
	} {
		var logs bytes.Buffer
		log := slog.New(slog.NewTextHandler(&logs, nil))
		s := &Server{Store: skewedStore{behind: tc.behind}, Metrics: metrics.New()}
		sample := logsample.Sample{Every: databaseSkewLogEvery}
		for range 3 {
			s.checkDatabaseClock(t.Context(), log, &sample)
		}
		got := gaugeValue(t, s.Metrics, "clearance_database_clock_skew_seconds")
		if want := tc.behind.Seconds(); got < want-1 || got > want+1 {
			t.Errorf("database %s behind: the gauge says %.3f s", tc.behind, got)
		}
		if n := strings.Count(logs.String(), "level=ERROR"); n != tc.errors {
			t.Errorf("database %s behind: %d error lines in three checks, want %d:\n%s", tc.behind, n, tc.errors, logs.String())
		}
	}
}

// gaugeValue reads one gauge from m's registry.
func gaugeValue(t *testing.T, m *metrics.Metrics, name string) float64 {
	t.Helper()
	mfs, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("no gauge %s", name)
	return 0
}

// TestNoDatabaseServerNotMeasured: a store with no database server of its own has no
// clock to compare, and the gauge stays at zero.
func TestNoDatabaseServerNotMeasured(t *testing.T) {
	var logs bytes.Buffer
	s := &Server{Store: struct{ storage.Store }{}, Metrics: metrics.New()}
	s.checkDatabaseClock(t.Context(), slog.New(slog.NewTextHandler(&logs, nil)), &logsample.Sample{Every: time.Hour})
	if got := gaugeValue(t, s.Metrics, "clearance_database_clock_skew_seconds"); got != 0 || logs.Len() != 0 {
		t.Errorf("gauge %v, logs %q", got, logs.String())
	}
}
