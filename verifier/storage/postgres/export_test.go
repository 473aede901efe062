package postgres

import (
	"net"
	"strconv"
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
