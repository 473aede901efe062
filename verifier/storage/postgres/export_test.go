package postgres

import (
	"context"
	"net"
	"strconv"
	"sync"
	"testing"

	"github.com/clearance/clearance/internal/localport"
)

// RefuseListening points r's listening connection at a port that refuses
// it, as a server that takes no new connection while the pool's stand.
func RefuseListening(t *testing.T, r *Relay) {
	t.Helper()
	addr, closeFn, err := localport.Refused()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = closeFn() })
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		t.Fatal(err)
	}
	r.cc.Host, r.cc.Port = host, uint16(n)
}

// HoldPool takes every connection of s's pool until the test ends, as a
// pool that every caller has exhausted.
func HoldPool(t *testing.T, s *Store) {
	t.Helper()
	for range s.pool.Config().MaxConns {
		c, err := s.pool.Acquire(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(c.Release)
	}
}

// ListenGate holds a relay's listening connections while shut, as a
// replica that is still starting or reconnecting.
type ListenGate struct {
	mu   sync.Mutex
	open chan struct{} // closed while the gate is open
}

// GateListening shuts a gate before each of r's listening connections;
// call it before r runs.
func GateListening(r *Relay) *ListenGate {
	g := &ListenGate{open: make(chan struct{})}
	r.beforeListen = func(ctx context.Context) error {
		g.mu.Lock()
		open := g.open
		g.mu.Unlock()
		select {
		case <-open:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return g
}

// Open lets listening connections through until Shut.
func (g *ListenGate) Open() {
	g.mu.Lock()
	defer g.mu.Unlock()
	select {
	case <-g.open:
	default:
		close(g.open)
	}
}

// Shut holds the next listening connection until Open.
func (g *ListenGate) Shut() {
	g.mu.Lock()
	defer g.mu.Unlock()
	select {
	case <-g.open:
		g.open = make(chan struct{})
	default:
	}
}
