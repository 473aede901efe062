package sqlstore

import (
	"context"
	"database/sql"
	"testing"
)

// TestUninterrupted: only a dialect that asks for it runs a kept-prepared
// statement outside a transaction without its caller's cancellation; a
// context already ended stays ended, and a transaction keeps its own.
func TestUninterrupted(t *testing.T) {
	live, cancel := context.WithCancel(context.Background())
	defer cancel()
	ended, end := context.WithCancel(context.Background())
	end()
	for _, c := range []struct {
		name        string
		dialect     bool
		tx          bool
		ctx         context.Context
		wantWatched bool
	}{
		{"on the pool", true, false, live, false},
		{"dialect without it", false, false, live, true},
		{"in a transaction", true, true, live, true},
		{"ended before", true, false, ended, true},
	} {
		q := conn{s: &Store{d: Dialect{UninterruptedReads: c.dialect}}}
		if c.tx {
			q.tx = &Tx{Tx: &sql.Tx{}}
		}
		got := q.uninterrupted(c.ctx)
		if watched := got.Done() != nil; watched != c.wantWatched {
			t.Errorf("%s: context can end: %v, want %v", c.name, watched, c.wantWatched)
		}
		if c.ctx.Err() != nil && got.Err() == nil {
			t.Errorf("%s: an ended context came back live", c.name)
		}
	}
}
