package server

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
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

	mu       sync.Mutex
	probedAt time.Time
	err      error
	failing  bool
}

// check returns why the store is unhealthy, or nil.
func (h *storeHealth) check(ctx context.Context) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	now := h.now()
	if !h.probedAt.IsZero() && now.Sub(h.probedAt) >= 0 && now.Sub(h.probedAt) < probeEvery {
		return h.err
	}
	// The probe's outcome is every caller's for probeEvery: a caller that
	// goes away (a client that resets its connection to /healthz) must not
	// make it a failure, or anyone could answer every load balancer's
	// check 503.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), healthTimeout)
	defer cancel()
	err := h.store.Ping(ctx)
	if err == nil {
		if werr := h.store.CheckWrite(ctx, now); werr != nil {
			err = fmt.Errorf("the database cannot write: %w", werr)
		}
	}
	h.probedAt, h.err = now, err
	h.metrics.StoreWritable(err == nil)
	switch {
	case err != nil && !h.failing:
		h.log.Error("store unhealthy: reports are not acknowledged and sign-ins fail until it recovers", "err", err)
	case err == nil && h.failing:
		h.log.Info("store healthy again")
	}
	h.failing = err != nil
	return err
}

func (h *storeHealth) serveHTTP(w http.ResponseWriter, r *http.Request) {
	if err := h.check(r.Context()); err != nil {
		// The cause (a path, a driver message) is in the log, not in the
		// answer to whoever polls.
		http.Error(w, "unhealthy: database unavailable or cannot write", http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	fmt.Fprintln(w, "ok")
}
