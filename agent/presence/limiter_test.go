package presence

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"sync"
	"testing"
	"time"

	pp "github.com/clearance/clearance/pkg/presence"
)

var epoch = time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)

// TestReserveInOrder: past the burst, each reservation is due one token
// after the one before it, until the line would wait longer than allowed;
// then nothing is spent, and a turn given back goes to the next in line.
func TestReserveInOrder(t *testing.T) {
	t.Parallel()
	now := epoch
	l := newLimiter(2, func() time.Time { return now })
	for i := range 2 {
		if wait, ok := l.reserve(time.Second); !ok || wait != 0 {
			t.Fatalf("burst %d: wait %v, %v", i, wait, ok)
		}
	}
	for _, want := range []time.Duration{500 * time.Millisecond, time.Second} {
		if wait, ok := l.reserve(time.Second); !ok || wait != want {
			t.Fatalf("wait %v, %v; want %v", wait, ok, want)
		}
	}
	// The line is a second long: the next would wait 1.5 s.
	for range 3 {
		if wait, ok := l.reserve(time.Second); ok {
			t.Fatalf("a full line took a reservation due in %v", wait)
		}
	}
	// One waiter leaves: the next one takes its turn.
	l.cancel()
	if wait, ok := l.reserve(time.Second); !ok || wait != time.Second {
		t.Fatalf("after a cancel: wait %v, %v; want 1s", wait, ok)
	}
	// A second on, two tokens have come to the two waiting: the line is
	// empty, and the next waits for the next token.
	now = now.Add(time.Second)
	if wait, ok := l.reserve(time.Second); !ok || wait != 500*time.Millisecond {
		t.Fatalf("a second on: wait %v, %v; want 500ms", wait, ok)
	}
	// A signing budget's allow never goes into debt.
	if l.allow() {
		t.Fatal("allow spent a token that is owed")
	}
}

// TestFullLineRefusedAtOnce: when more requests wait for the browser check
// than the line holds, the next is refused at once with 429, before any
// check runs; a request whose client leaves gives its turn back.
func TestFullLineRefusedAtOnce(t *testing.T) {
	t.Parallel()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	var checks countingPeer
	srv, err := New(Options{
		Listen:             "127.0.0.1:0",
		PresenceURL:        func() string { return "https://sso.example.com/saml/presence" },
		Device:             func() (string, crypto.Signer) { return "6F1C2B0A-5D3E-4C7B-9A8F-0E1D2C3B4A59", key },
		Peer:               &checks,
		MaxChecksPerSecond: 1,
		Now:                func() time.Time { return epoch }, // no token ever comes
		Logger:             slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Interrupt(nil) })
	target, _ := pp.AgentURL(srv.Addr().String(), pp.NewChallenge(), "https://sso.example.com/saml/presence")
	serve := func(ctx context.Context) *httptest.ResponseRecorder {
		ctx = context.WithValue(ctx, http.LocalAddrContextKey, net.TCPAddrFromAddrPort(srv.Addr()))
		req := httptest.NewRequestWithContext(ctx, http.MethodGet, target, nil)
		req.RequestURI = req.URL.RequestURI()
		req.RemoteAddr = "127.0.0.1:50000"
		w := httptest.NewRecorder()
		srv.ServeHTTP(w, req)
		return w
	}
	// The burst: checked at once.
	if w := serve(context.Background()); w.Code != http.StatusSeeOther {
		t.Fatalf("first request: %d", w.Code)
	}
	// maxCheckWait seconds of line, each waiting for a token.
	ctx, leave := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	codes := make(chan int, int(maxCheckWait/time.Second))
	for range cap(codes) {
		wg.Go(func() { codes <- serve(ctx).Code })
	}
	deadline := time.Now().Add(10 * time.Second)
	for srv.checks.owed() < float64(cap(codes)) {
		if time.Now().After(deadline) {
			t.Fatalf("the line never filled: %v owed", srv.checks.owed())
		}
		time.Sleep(time.Millisecond)
	}
	w := serve(context.Background())
	if w.Code != http.StatusTooManyRequests || w.Header().Get("Retry-After") == "" {
		t.Fatalf("beyond the line: %d, Retry-After %q; want 429", w.Code, w.Header().Get("Retry-After"))
	}
	// Those waiting leave (their browsers closed the tab).
	leave()
	wg.Wait()
	close(codes)
	for c := range codes {
		if c != http.StatusTooManyRequests {
			t.Errorf("a request that left while waiting got %d", c)
		}
	}
	if n := checks.n(); n != 1 {
		t.Errorf("%d browser checks ran, want 1: none for a request refused or gone", n)
	}
	if owed := srv.checks.owed(); owed != 0 {
		t.Errorf("%v tokens still owed after everyone left", owed)
	}
}

// owed is how many tokens reservations are waiting for.
func (l *limiter) owed() float64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return max(0, -l.tokens)
}

type countingPeer struct {
	mu    sync.Mutex
	count int
}

func (p *countingPeer) CheckPeer(context.Context, netip.AddrPort, netip.AddrPort) (Peer, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.count++
	return Peer{PIDs: []int{1}, Program: "/usr/bin/browser"}, nil
}

func (p *countingPeer) n() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.count
}
