package presence_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clearance/clearance/agent/presence"
	"github.com/clearance/clearance/internal/testkit"
	pp "github.com/clearance/clearance/pkg/presence"
)

// onlyBrowsers is a browser check that allows only the connections whose
// client ports were let in: the "browser" of these tests dials its own
// connections, and every other connection is a program that is not one.
type onlyBrowsers struct {
	mu      sync.Mutex
	allowed map[uint16]bool
}

func (p *onlyBrowsers) let(conn net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.allowed == nil {
		p.allowed = map[uint16]bool{}
	}
	p.allowed[netip.MustParseAddrPort(conn.LocalAddr().String()).Port()] = true
}

func (p *onlyBrowsers) CheckPeer(_ context.Context, _, client netip.AddrPort) (presence.Peer, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.allowed[client.Port()] {
		return presence.Peer{PIDs: []int{1}, Program: "/usr/bin/browser"}, nil
	}
	return presence.Peer{PIDs: []int{2}, Program: "/usr/bin/script"}, fmt.Errorf("%w: /usr/bin/script", presence.ErrNotBrowser)
}

// browserGet asks for a statement as the browser: on a connection of its
// own, which the check lets in.
func browserGet(t *testing.T, a *agent, peer *onlyBrowsers, challenge string) response {
	t.Helper()
	conn, err := net.Dial("tcp", a.srv.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	peer.let(conn)
	u, _ := url.Parse(a.url(challenge))
	fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: %s\r\nSec-Fetch-Mode: navigate\r\nSec-Fetch-Dest: document\r\nConnection: close\r\n\r\n", u.RequestURI(), u.Host)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return response{status: resp.StatusCode, header: resp.Header}
}

// TestRefusedRequestsLeaveTheSigningBudget: requests that will never be
// signed (refused as not a browser, or earlier for their Host, query or
// Fetch Metadata) do not spend the statements a browser needs. Before, the
// budget was spent ahead of the browser check, and one program that is
// not a browser could shut the browser out.
func TestRefusedRequestsLeaveTheSigningBudget(t *testing.T) {
	t.Parallel()
	peer := &onlyBrowsers{}
	a := start(t, func(o *presence.Options) {
		o.MaxPerSecond = 1 // one statement, and the clock stands still
		o.Peer = peer
	})
	// Within the browser check's burst, so that nothing waits.
	var notBrowser []int
	for range presence.DefaultMaxChecksPerSecond - 1 {
		r := get(t, a.url(pp.NewChallenge()))
		if r.status == http.StatusSeeOther {
			t.Fatal("a program that is not a browser got a statement")
		}
		notBrowser = append(notBrowser, r.status)
	}
	for name, mod := range map[string]func(*http.Request){
		"bad_host":  func(r *http.Request) { r.Host = "evil.example:1" },
		"bad_query": func(r *http.Request) { r.URL.RawQuery += "&next=x" },
		"not_navigation": func(r *http.Request) {
			r.Header.Set("Sec-Fetch-Mode", "no-cors")
			r.Header.Set("Sec-Fetch-Dest", "image")
		},
	} {
		for range 20 {
			c := pp.NewChallenge()
			req, _ := http.NewRequest(http.MethodGet, a.url(c), nil)
			mod(req)
			if r := do(t, req); r.status == http.StatusSeeOther || r.status == http.StatusTooManyRequests {
				t.Fatalf("%s: status %d", name, r.status)
			}
		}
	}
	if r := browserGet(t, a, peer, pp.NewChallenge()); r.status != http.StatusSeeOther {
		t.Fatalf("after a flood of refused requests, the browser got %d, want 303", r.status)
	}
	for _, status := range notBrowser {
		if status != http.StatusForbidden {
			t.Errorf("a program that is not a browser got %d, want 403 (peer_not_browser)", status)
		}
	}
	// The one statement is spent: the budget still holds.
	if r := browserGet(t, a, peer, pp.NewChallenge()); r.status != http.StatusTooManyRequests {
		t.Fatalf("a second statement in the same second: %d, want 429", r.status)
	}
}

// TestBrowserSignsDuringAFlood: programs that are not browsers asking in a
// loop, as fast as they are answered, delay the browser's statement by
// their turns in the browser check's line, and do not stop it.
func TestBrowserSignsDuringAFlood(t *testing.T) {
	t.Parallel()
	peer := &onlyBrowsers{}
	a := start(t, func(o *presence.Options) {
		o.Peer = peer
		o.Now = time.Now
		o.Logger = slog.New(slog.DiscardHandler)
	})
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	statuses := map[int]int{}
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				resp, err := client.Get(a.url(pp.NewChallenge()))
				if err != nil {
					continue
				}
				resp.Body.Close()
				mu.Lock()
				statuses[resp.StatusCode]++
				mu.Unlock()
			}
		})
	}
	time.Sleep(500 * time.Millisecond) // the flood is under way
	for i := range 3 {
		start := time.Now()
		r := browserGet(t, a, peer, pp.NewChallenge())
		if r.status != http.StatusSeeOther {
			t.Errorf("browser request %d during the flood: status %d after %v, want 303", i, r.status, time.Since(start).Round(time.Millisecond))
		}
		time.Sleep(100 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	if statuses[http.StatusSeeOther] != 0 || statuses[http.StatusForbidden] == 0 {
		t.Errorf("the flood's answers: %v; want only refusals, as not a browser", statuses)
	}
}

// TestRefusalsLoggedSampled: a flood of refused requests is a warning line
// per reason every 10 s that says how many were left out, not a line each;
// what the request chose is clipped. Before, every refusal wrote a line.
func TestRefusalsLoggedSampled(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	clock := now
	logs := &testkit.Buffer{}
	a := start(t, func(o *presence.Options) {
		o.Now = func() time.Time { mu.Lock(); defer mu.Unlock(); return clock }
		o.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	})
	huge := strings.Repeat("x", 4<<10)
	flood := func(n int) {
		for range n {
			req, _ := http.NewRequest(http.MethodGet, a.url(pp.NewChallenge()), nil)
			req.Host = "evil.example:1"
			if r := do(t, req); r.status != http.StatusForbidden {
				t.Fatalf("bad host: status %d", r.status)
			}
			req, _ = http.NewRequest(http.MethodGet, a.url(pp.NewChallenge()), nil)
			req.Header.Set("Sec-Fetch-Mode", huge)
			if r := do(t, req); r.status != http.StatusForbidden {
				t.Fatalf("not a navigation: status %d", r.status)
			}
		}
	}
	flood(100)
	lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
	if n := strings.Count(logs.String(), "presence refused"); n != 2 {
		t.Fatalf("%d lines for 200 refusals of two reasons, want 2:\n%s", n, strings.Join(lines[:min(len(lines), 5)], "\n"))
	}
	for _, reason := range []string{"bad_host", "not_navigation"} {
		if !strings.Contains(logs.String(), "reason="+reason) {
			t.Errorf("no line for %s:\n%s", reason, logs.String())
		}
	}
	if len(logs.String()) > 1500 {
		t.Errorf("the log holds %d bytes: the request's header was not clipped:\n%s", len(logs.String()), logs.String())
	}

	mu.Lock()
	clock = clock.Add(10 * time.Second)
	mu.Unlock()
	before := len(logs.String())
	flood(1)
	later := logs.String()[before:]
	for _, reason := range []string{"bad_host", "not_navigation"} {
		if !hasLine(later, "reason="+reason, "others_not_logged=99") {
			t.Errorf("10 s on, the %s line does not say 99 were left out:\n%s", reason, later)
		}
	}
}

// hasLine reports whether a line of s holds every one of parts.
func hasLine(s string, parts ...string) bool {
	for _, line := range strings.Split(s, "\n") {
		all := true
		for _, p := range parts {
			all = all && strings.Contains(line, p)
		}
		if all {
			return true
		}
	}
	return false
}

// TestConnectionsBounded: any local program can open connections to the
// endpoint, and each is a file descriptor the agent needs for its stream
// and its files. It holds at most MaxConns: past it, a new connection
// closes the oldest that has sent nothing, so a browser, which sends its
// request at once, is served while a program holds idle connections. A
// connection serves one request and is closed: a kept-alive one is one a
// program could hold for nothing.
func TestConnectionsBounded(t *testing.T) {
	t.Parallel()
	const max = 4
	a := start(t, func(o *presence.Options) { o.MaxConns = max })
	var held []net.Conn
	for range 3 * max {
		c, err := net.Dial("tcp", a.srv.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
		defer c.Close()
	}
	testkit.Eventually(t, 5*time.Second, "the endpoint to hold its bound", func() bool { return a.srv.Conns() == max })

	// Meanwhile a request is served, on a connection of its own.
	resp, err := client.Get(a.base + "/nope")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("a request while idle connections are held: %d, want 404", resp.StatusCode)
	}
	if !resp.Close {
		t.Errorf("the endpoint kept the connection alive (Connection: %q)", resp.Header.Get("Connection"))
	}
	if n := a.srv.Conns(); n > max {
		t.Errorf("%d connections held, the bound is %d", n, max)
	}
	// The oldest idle ones were closed by the server.
	closed := 0
	for _, c := range held {
		_ = c.SetReadDeadline(time.Now().Add(time.Second))
		if _, err := c.Read(make([]byte, 1)); err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
			closed++
		}
	}
	if closed < 2*max {
		t.Errorf("%d of the %d idle connections closed by the endpoint, want at least %d", closed, len(held), 2*max)
	}
	// Said once, not once a connection.
	if n := strings.Count(a.logs.String(), "level=WARN msg=\"presence connection closed to make room"); n != 1 {
		t.Errorf("%d warning lines for the closed connections, want 1:\n%s", n, a.logs.String())
	}
}

// TestRequestWithABodyClosedAtOnce: no page load has a body. A request
// that says it has one, and never sends it, is answered and closed at
// once: answered the usual way, the server read on for the body until its
// read timeout (5 s), and a program sending such requests held every place
// in the connection table, so a browser's connection was the one closed.
func TestRequestWithABodyClosedAtOnce(t *testing.T) {
	t.Parallel()
	a := start(t, nil)
	c, err := net.Dial("tcp", a.srv.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Length: 100000\r\n\r\n", pp.AgentPath, a.srv.Addr())
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("status %d, want 400", resp.StatusCode)
	}
	// Closed without waiting for the body (the read timeout is 5 s).
	_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
	if _, err := br.ReadByte(); errors.Is(err, os.ErrDeadlineExceeded) {
		t.Error("the connection was held open waiting for the body")
	}
	if !strings.Contains(a.logs.String(), "reason=has_body") {
		t.Errorf("the refusal was not logged:\n%s", a.logs.String())
	}
}
