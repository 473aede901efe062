package server

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/clearance/clearance/verifier/metrics"
	"github.com/clearance/clearance/verifier/storage"
)

// Bounds of the health check's work.
const (
	// healthTimeout bounds one check: a database that does not answer in
	// time is unhealthy.
	healthTimeout = 2 * time.Second
	// probeEvery bounds how often /healthz writes: a load balancer or a
	// flood of requests polling it costs at most one small commit per
	// interval; between probes the last outcome is served.
	probeEvery = time.Second
)

// storeHealth is the verifier's answer to /healthz: the database answers (Ping)
// and can commit a write (CheckWrite). Writes are what agents' acks and
// sign-ins depend on; a store that reads but cannot write (a full disk)
// must take the replica out of rotation, and put it back once it can.
type storeHealth struct {
	store   storage.Store
	now     func() time.Time
	metrics *metrics.Metrics
	log     *slog.Logger

	// stopping is set when shutdown begins: from then on /healthz answers
	// 503, so load balancers stop sending sign-ins to a replica that has
	// stopped taking them, while the listener stays up to tell them.
	stopping atomic.Bool

	mu       sync.Mutex
	probedAt time.Time // when the last probe ended
	err      error
	failing  bool
	// running is closed when the probe under way ends; nil when none is.
	running chan struct{}
}

// check returns why the store is unhealthy, or nil. One probe runs at a
// time, detached from its callers, and every caller meanwhile waits for
// its outcome, or gives up when its own context ends: a caller that goes
// away (a client that resets its connection to /healthz) neither makes
// the probe a failure, which anyone could then answer every load
// balancer's check with, nor queues a probe of its own.
func (h *storeHealth) check(ctx context.Context) error {
	h.mu.Lock()
	now := h.now()
	if !h.probedAt.IsZero() && now.Sub(h.probedAt) >= 0 && now.Sub(h.probedAt) < probeEvery {
		err := h.err
		h.mu.Unlock()
		return err
	}
	if h.running == nil {
		h.running = make(chan struct{})
		go h.probe(h.running)
	}
	done := h.running
	h.mu.Unlock()
	select {
	case <-done:
		h.mu.Lock()
		defer h.mu.Unlock()
		return h.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// probe asks the store whether it answers and can write, within
// healthTimeout, records the outcome and closes done.
func (h *storeHealth) probe(done chan struct{}) {
	ctx, cancel := context.WithTimeout(context.Background(), healthTimeout)
	defer cancel()
	err := h.store.Ping(ctx)
	if err == nil {
		if werr := h.store.CheckWrite(ctx, h.now()); werr != nil {
			err = fmt.Errorf("the database cannot write: %w", werr)
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.probedAt, h.err, h.running = h.now(), err, nil
	h.metrics.StoreWritable(err == nil)
	switch {
	case err != nil && !h.failing:
		h.log.Error("store unhealthy: reports are not acknowledged and sign-ins fail until it recovers", "err", err)
	case err == nil && h.failing:
		h.log.Info("store healthy again")
	}
	h.failing = err != nil
	close(done)
}

func (h *storeHealth) serveHTTP(w http.ResponseWriter, r *http.Request) {
	if h.stopping.Load() {
		http.Error(w, "stopping: this verifier is shutting down", http.StatusServiceUnavailable)
		return
	}
	if err := h.check(r.Context()); err != nil {
		// The cause (a path, a driver message) is in the log, not in the
		// answer to whoever polls.
		http.Error(w, "unhealthy: database unavailable or cannot write", http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	fmt.Fprintln(w, "ok")
}
