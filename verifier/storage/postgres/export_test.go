package postgres

import (
	"net"
	"testing"
)

// RefuseListening points r's listening connection at a port that refuses
// it, as a server that takes no new connection while the pool's stand.
func RefuseListening(t *testing.T, r *Relay) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	r.cc.Host, r.cc.Port = "127.0.0.1", uint16(port)
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
