package server

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/clearance/clearance/verifier/metrics"
	"github.com/clearance/clearance/verifier/storage"
)

// probedStore is a store whose Ping and CheckWrite fail on demand.
type probedStore struct {
	storage.Store
	mu                sync.Mutex
	pingErr, writeErr error
	writes            int
}

func (s *probedStore) Ping(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pingErr
}

func (s *probedStore) CheckWrite(context.Context, time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.writes++
	return s.writeErr
}

func (s *probedStore) set(ping, write error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pingErr, s.writeErr = ping, write
}

// /healthz follows the store's ability to write: unhealthy while a write
// cannot commit, healthy again once it can, saying so once each way in the
// log and in a gauge, and probing at most once per probeEvery.
func TestHealthFollowsWrites(t *testing.T) {
	t.Parallel()
	st := &probedStore{}
	now := time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)
	var logs bytes.Buffer
	m := metrics.New()
	h := &storeHealth{store: st, now: func() time.Time { return now }, metrics: m, log: slog.New(slog.NewTextHandler(&logs, nil))}
	get := func() (int, string) {
		rec := httptest.NewRecorder()
		h.serveHTTP(rec, httptest.NewRequest(http.MethodGet, "/healthz", nil))
		return rec.Code, rec.Body.String()
	}
	gauge := func() float64 {
		mfs, err := m.Registry.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() == "clearance_store_writable" {
				return mf.GetMetric()[0].GetGauge().GetValue()
			}
		}
		t.Fatal("no clearance_store_writable gauge")
		return 0
	}

	steps := []struct {
		name        string
		ping, write error
		advance     time.Duration
		code        int
		gauge       float64
		writes      int
	}{
		{"writable", nil, nil, 0, http.StatusOK, 1, 1},
		{"disk full, within the probe interval: the last answer", nil, errors.New("database or disk is full (13)"), probeEvery / 2, http.StatusOK, 1, 1},
		{"disk full", nil, errors.New("database or disk is full (13)"), probeEvery, http.StatusServiceUnavailable, 0, 2},
		{"still full", nil, errors.New("database or disk is full (13)"), probeEvery, http.StatusServiceUnavailable, 0, 3},
		{"space again", nil, nil, probeEvery, http.StatusOK, 1, 4},
		{"unreachable: no write tried", errors.New("connection refused"), nil, probeEvery, http.StatusServiceUnavailable, 0, 4},
		{"clock stepped back: probe again", nil, nil, -time.Hour, http.StatusOK, 1, 5},
	}
	for _, s := range steps {
		st.set(s.ping, s.write)
		now = now.Add(s.advance)
		code, body := get()
		if code != s.code || gauge() != s.gauge || st.writes != s.writes {
			t.Fatalf("%s: status %d %q, gauge %v, %d writes; want %d, %v, %d", s.name, code, body, gauge(), st.writes, s.code, s.gauge, s.writes)
		}
		if code != http.StatusOK && strings.Contains(body, "disk is full") {
			t.Errorf("%s: the answer shows the cause %q; it belongs in the log", s.name, body)
		}
	}
	log := logs.String()
	if n := strings.Count(log, "store unhealthy"); n != 2 {
		t.Errorf("log says unhealthy %d times, want once per failure:\n%s", n, log)
	}
	if n := strings.Count(log, "store healthy again"); n != 2 {
		t.Errorf("log says healthy again %d times, want once per recovery:\n%s", n, log)
	}
	if !strings.Contains(log, "disk is full") {
		t.Errorf("log does not name the cause:\n%s", log)
	}
}

// slowStore is a store whose probes take a while, fail when their context
// is done, as a database driver's do, and are counted.
type slowStore struct {
	storage.Store
	delay time.Duration
	pings atomic.Int32
}

func (s *slowStore) Ping(ctx context.Context) error {
	s.pings.Add(1)
	select {
	case <-time.After(s.delay):
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *slowStore) CheckWrite(ctx context.Context, _ time.Time) error { return ctx.Err() }

// A /healthz caller that goes away (its connection reset, its request's
// context canceled) neither makes the probe, which every caller shares for
// probeEvery, a failure, nor queues a probe of its own: callers meanwhile
// share the one under way.
func TestHealthNotFailedByCallerGone(t *testing.T) {
	t.Parallel()
	st := &slowStore{delay: probeEvery + 200*time.Millisecond}
	h := &storeHealth{store: st, now: time.Now, metrics: metrics.New(), log: slog.New(slog.NewTextHandler(&bytes.Buffer{}, nil))}
	gone, cancel := context.WithCancel(context.Background())
	cancel()
	var wg sync.WaitGroup
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := h.check(gone); err != nil && !errors.Is(err, context.Canceled) {
				t.Errorf("a caller gone: %v", err)
			}
		}()
	}
	wg.Wait()
	rec := httptest.NewRecorder()
	h.serveHTTP(rec, httptest.NewRequest(http.MethodGet, "/healthz", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("the next caller got %d", rec.Code)
	}
	if n := st.pings.Load(); n != 1 {
		t.Errorf("%d probes for 21 callers within a probe's time, want 1", n)
	}
}
