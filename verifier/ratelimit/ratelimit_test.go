package ratelimit

import (
	"bytes"
	"encoding/binary"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newClock() *clock { return &clock{t: time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)} }

var office = netip.MustParseAddr("198.51.100.7")

// TestBurstThenRate: an address gets its burst at once, then the sustained
// rate, and is told how long to wait.
func TestBurstThenRate(t *testing.T) {
	t.Parallel()
	c := newClock()
	l := New(Options{Rate: 10, Burst: 100, Now: c.Now})
	for i := range 100 {
		if ok, _ := l.Allow(office); !ok {
			t.Fatalf("request %d of the burst refused", i+1)
		}
	}
	ok, wait := l.Allow(office)
	if ok || wait != 100*time.Millisecond {
		t.Fatalf("101st at once: allowed %v, wait %v; want refused, 100ms", ok, wait)
	}
	// Ten seconds on, the sustained rate: ten a second, no more.
	c.Add(time.Second)
	n := 0
	for range 50 {
		if ok, _ := l.Allow(office); ok {
			n++
		}
	}
	if n != 10 {
		t.Errorf("%d allowed in the next second, want 10", n)
	}
	// Another address is not affected.
	if ok, _ := l.Allow(netip.MustParseAddr("203.0.113.9")); !ok {
		t.Error("a second address shares the first one's bucket")
	}
	// A quiet spell refills the bucket to the burst, not beyond.
	c.Add(time.Hour)
	n = 0
	for range 500 {
		if ok, _ := l.Allow(office); ok {
			n++
		}
	}
	if n != 100 {
		t.Errorf("%d allowed after an hour's quiet, want the burst of 100", n)
	}
	// A clock stepped back gives nothing.
	c.Add(-time.Hour)
	if ok, _ := l.Allow(office); ok {
		t.Error("a clock stepped back refilled the bucket")
	}
}

// TestNothingAllowedWithoutRate: a limiter with no rate refuses, it does
// not let everything through.
func TestNothingAllowedWithoutRate(t *testing.T) {
	t.Parallel()
	l := New(Options{Rate: 0, Burst: 0})
	if ok, wait := l.Allow(office); ok || wait <= 0 {
		t.Errorf("allowed %v, wait %v; want refused with a wait", ok, wait)
	}
}

// TestIPv6CountedByPrefix: the addresses of one /64 share a bucket; an
// IPv4-mapped address is its IPv4 address.
func TestIPv6CountedByPrefix(t *testing.T) {
	t.Parallel()
	l := New(Options{Rate: 1, Burst: 1, Now: newClock().Now})
	if ok, _ := l.Allow(netip.MustParseAddr("2001:db8:1:2::1")); !ok {
		t.Fatal("first request refused")
	}
	if ok, _ := l.Allow(netip.MustParseAddr("2001:db8:1:2:ffff:ffff:ffff:ffff")); ok {
		t.Error("another address of the same /64 got a bucket of its own")
	}
	if ok, _ := l.Allow(netip.MustParseAddr("2001:db8:1:3::1")); !ok {
		t.Error("another /64 shares the first one's bucket")
	}
	if ok, _ := l.Allow(netip.MustParseAddr("192.0.2.1")); !ok {
		t.Fatal("IPv4 refused")
	}
	if ok, _ := l.Allow(netip.MustParseAddr("::ffff:192.0.2.1")); ok {
		t.Error("an IPv4-mapped address got a bucket apart from its IPv4 address")
	}
}

// TestMillionSourcesStayUnderTheCap: a million distinct source addresses
// (a botnet, or one IPv6 host walking its addresses: here IPv4, one each)
// never grow the table past its cap, and its memory stays bounded.
func TestMillionSourcesStayUnderTheCap(t *testing.T) {
	const max = 1000
	l := New(Options{Rate: 10, Burst: 100, MaxSources: max, Now: newClock().Now})
	var before, after runtime.MemStats
	for i := range 1_000_000 {
		var b [4]byte
		binary.BigEndian.PutUint32(b[:], 0x0a000000+uint32(i))
		if ok, _ := l.Allow(netip.AddrFrom4(b)); !ok {
			t.Fatalf("source %d refused its first request", i)
		}
		if i == max {
			runtime.GC()
			runtime.ReadMemStats(&before)
		}
		if n := l.Len(); n > max {
			t.Fatalf("after %d sources the table holds %d, cap %d", i+1, n, max)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	if l.Len() != max {
		t.Errorf("table holds %d, want the cap %d", l.Len(), max)
	}
	if grew := int64(after.HeapAlloc) - int64(before.HeapAlloc); grew > 1<<20 {
		t.Errorf("heap grew %d bytes from a full table of %d to a million sources", grew, max)
	}
	// The default cap, filled: about 200 bytes an entry.
	if testing.Short() {
		return
	}
	full := New(Options{Rate: 10, Burst: 100, Now: newClock().Now})
	runtime.GC()
	runtime.ReadMemStats(&before)
	for i := range 2 * DefaultMaxSources {
		var b [4]byte
		binary.BigEndian.PutUint32(b[:], 0x0b000000+uint32(i))
		full.Allow(netip.AddrFrom4(b))
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	per := (int64(after.HeapAlloc) - int64(before.HeapAlloc)) / DefaultMaxSources
	t.Logf("%d sources: %d bytes each", full.Len(), per)
	if full.Len() != DefaultMaxSources || per > 250 {
		t.Errorf("%d sources at %d bytes each; want %d at most 250 bytes each (15 MiB in all, as documented)", full.Len(), per, DefaultMaxSources)
	}
}

// TestEvictsLeastRecent: when full, the source heard from least recently is
// forgotten, not an active one.
func TestEvictsLeastRecent(t *testing.T) {
	t.Parallel()
	l := New(Options{Rate: 1, Burst: 2, MaxSources: 2, Now: newClock().Now})
	a, b, c := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2"), netip.MustParseAddr("192.0.2.3")
	l.Allow(a)
	l.Allow(a)
	l.Allow(b)
	l.Allow(a) // a is now the most recent, and empty
	l.Allow(c) // evicts b
	if ok, _ := l.Allow(a); ok {
		t.Error("the active, empty source was forgotten and refilled")
	}
}

func ipnets(t *testing.T, cidrs ...string) []*net.IPNet {
	t.Helper()
	var out []*net.IPNet
	for _, c := range cidrs {
		_, n, err := net.ParseCIDR(c)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, n)
	}
	return out
}

func TestClientAddr(t *testing.T) {
	t.Parallel()
	trusted := ipnets(t, "10.0.0.0/24", "2001:db8:ffff::/48")
	for _, tc := range []struct {
		name, remote string
		xff          []string
		want         string
	}{
		{"direct", "203.0.113.5:4431", nil, "203.0.113.5"},
		{"direct, its header ignored", "203.0.113.5:4431", []string{"198.51.100.1"}, "203.0.113.5"},
		{"through a proxy", "10.0.0.2:5000", []string{"198.51.100.1"}, "198.51.100.1"},
		{"client-written entries on the left are ignored", "10.0.0.2:5000", []string{"1.2.3.4, 5.6.7.8, 198.51.100.1"}, "198.51.100.1"},
		{"two proxies", "10.0.0.2:5000", []string{"1.2.3.4, 198.51.100.1, 10.0.0.3"}, "198.51.100.1"},
		{"two header lines read in order", "10.0.0.2:5000", []string{"1.2.3.4", "198.51.100.1"}, "198.51.100.1"},
		{"an entry with a port", "10.0.0.2:5000", []string{"198.51.100.1:61000"}, "198.51.100.1"},
		{"IPv6 with a port", "10.0.0.2:5000", []string{"[2001:db8::7]:443"}, "2001:db8::7"},
		{"IPv6 proxy", "[2001:db8:ffff::1]:5000", []string{"198.51.100.1"}, "198.51.100.1"},
		{"mapped peer", "[::ffff:10.0.0.2]:5000", []string{"198.51.100.1"}, "198.51.100.1"},
		{"no header from a proxy: the proxy", "10.0.0.2:5000", nil, "10.0.0.2"},
		{"garbage: the proxy, not a written address", "10.0.0.2:5000", []string{"198.51.100.1, not-an-address"}, "10.0.0.2"},
		{"garbage behind a trusted hop: that hop", "10.0.0.2:5000", []string{"junk, 10.0.0.9"}, "10.0.0.9"},
		{"empty entry", "10.0.0.2:5000", []string{"198.51.100.1,"}, "10.0.0.2"},
		{"a zone is not an address", "10.0.0.2:5000", []string{"fe80::1%eth0"}, "10.0.0.2"},
		{"only proxies: the leftmost", "10.0.0.2:5000", []string{"10.0.0.7, 10.0.0.3"}, "10.0.0.7"},
		{"unparseable peer", "@", nil, "invalid IP"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "/saml/sso", nil)
			r.RemoteAddr = tc.remote
			for _, v := range tc.xff {
				r.Header.Add("X-Forwarded-For", v)
			}
			if got := ClientAddr(r, trusted); got.String() != tc.want {
				t.Errorf("ClientAddr = %s, want %s", got, tc.want)
			}
		})
	}
}

// TestClientAddrHostileHeader: a huge, padded header costs a bounded walk
// and names no address the client chose.
func TestClientAddrHostileHeader(t *testing.T) {
	t.Parallel()
	trusted := ipnets(t, "10.0.0.0/8")
	r := httptest.NewRequest(http.MethodGet, "/saml/sso", nil)
	r.RemoteAddr = "10.0.0.2:5000"
	r.Header.Set("X-Forwarded-For", "6.6.6.6,"+strings.Repeat("10.1.1.1,", 10000)+"10.0.0.3")
	if got := ClientAddr(r, trusted); got.String() != "10.1.1.1" {
		t.Errorf("ClientAddr = %s, want the last trusted hop read (10.1.1.1), never the client's 6.6.6.6", got)
	}
}

func FuzzClientAddr(f *testing.F) {
	f.Add("10.0.0.2:5000", "198.51.100.1, 10.0.0.3")
	f.Add("10.0.0.2:5000", "[2001:db8::7]:443,,junk")
	f.Add("[::1]:1", "")
	trusted := []*net.IPNet{{IP: net.IPv4(10, 0, 0, 0).To4(), Mask: net.CIDRMask(8, 32)}}
	f.Fuzz(func(t *testing.T, remote, xff string) {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.RemoteAddr = remote
		r.Header.Set("X-Forwarded-For", xff)
		got := ClientAddr(r, trusted)
		peer, err := netip.ParseAddrPort(remote)
		switch {
		case err != nil:
			if got.IsValid() {
				t.Fatalf("unparseable peer %q gave %s", remote, got)
			}
		case !contains(trusted, peer.Addr().Unmap()):
			if got != peer.Addr().Unmap() {
				t.Fatalf("untrusted peer %s: got %s from its header", peer, got)
			}
		case !got.IsValid():
			t.Fatalf("trusted peer %s: no address", peer)
		}
	})
}

type countMetrics struct {
	mu sync.Mutex
	n  map[string]int
}

func (m *countMetrics) RateLimited(path string) { m.mu.Lock(); m.n[path]++; m.mu.Unlock() }

// TestMiddleware: over its limit a client gets 429 with Retry-After and the
// page, and the handler never runs; /healthz, exempt addresses and other
// clients are not limited; a flood is logged once per interval; metrics
// name only known paths.
func TestMiddleware(t *testing.T) {
	t.Parallel()
	c := newClock()
	var logs bytes.Buffer
	metrics := &countMetrics{n: map[string]int{}}
	served := 0
	m := &Middleware{
		Limiter: New(Options{Rate: 1, Burst: 2, Now: c.Now}),
		Trusted: ipnets(t, "10.0.0.1/32"),
		Exempt:  ipnets(t, "198.51.100.0/24"),
		Skip:    func(r *http.Request) bool { return r.URL.Path == "/healthz" },
		Paths:   []string{"/saml/sso"},
		Page: func(w http.ResponseWriter, _ *http.Request) {
			w.WriteHeader(http.StatusTooManyRequests)
			_, _ = w.Write([]byte("too many"))
		},
		Metrics: metrics,
		Log:     slog.New(slog.NewTextHandler(&logs, nil)),
		Now:     c.Now,
	}
	h := m.Wrap(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { served++ }))
	get := func(remote, path, xff string) *httptest.ResponseRecorder {
		r := httptest.NewRequest(http.MethodGet, path, nil)
		r.RemoteAddr = remote
		if xff != "" {
			r.Header.Set("X-Forwarded-For", xff)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}
	for range 2 {
		if w := get("203.0.113.5:1", "/saml/sso", ""); w.Code != http.StatusOK {
			t.Fatalf("within the burst: %d", w.Code)
		}
	}
	for _, path := range []string{"/saml/sso", "/saml/sso", "/nonexistent"} {
		w := get("203.0.113.5:1", path, "")
		if w.Code != http.StatusTooManyRequests || w.Header().Get("Retry-After") != "1" || w.Body.String() != "too many" {
			t.Errorf("over the limit: %d, Retry-After %q, body %q; want 429, 1, the page", w.Code, w.Header().Get("Retry-After"), w.Body.String())
		}
	}
	if served != 2 {
		t.Errorf("the handler ran %d times, want 2", served)
	}
	if w := get("203.0.113.5:1", "/healthz", ""); w.Code != http.StatusOK {
		t.Errorf("/healthz limited: %d", w.Code)
	}
	for range 10 {
		if w := get("198.51.100.20:1", "/saml/sso", ""); w.Code != http.StatusOK {
			t.Fatalf("exempt address limited: %d", w.Code)
		}
		// Through the trusted proxy, the exempt office is exempt too.
		if w := get("10.0.0.1:1", "/saml/sso", "198.51.100.21"); w.Code != http.StatusOK {
			t.Fatalf("exempt address through the proxy limited: %d", w.Code)
		}
	}
	// Through the proxy, the client behind it is counted, not the proxy.
	for i := range 2 {
		if w := get("10.0.0.1:1", "/saml/sso", "192.0.2.77"); w.Code != http.StatusOK {
			t.Fatalf("client %d behind the proxy limited: %d", i, w.Code)
		}
	}
	if w := get("10.0.0.1:1", "/saml/sso", "192.0.2.78"); w.Code != http.StatusOK {
		t.Errorf("a second client behind the proxy shares the first one's bucket: %d", w.Code)
	}
	if metrics.n["/saml/sso"] != 2 || metrics.n["other"] != 1 || len(metrics.n) != 2 {
		t.Errorf("metrics %v; want /saml/sso 2, other 1", metrics.n)
	}
	if n := strings.Count(logs.String(), "msg=rate_limited"); n != 1 {
		t.Errorf("%d log lines for 3 refusals within 10s, want 1:\n%s", n, logs.String())
	}
	c.Add(11 * time.Second)
	for range 3 { // two from the refilled bucket, then a refusal
		get("203.0.113.5:1", "/saml/sso", "")
	}
	if !strings.Contains(logs.String(), "others_not_logged=2") {
		t.Errorf("the next line does not say how many were left out:\n%s", logs.String())
	}
}

// TestMiddlewarePathPrefix: a path ending in "/" counts every path under
// it under that one label (the SCIM endpoints), and nothing else.
func TestMiddlewarePathPrefix(t *testing.T) {
	t.Parallel()
	c := newClock()
	metrics := &countMetrics{n: map[string]int{}}
	m := &Middleware{
		Limiter: New(Options{Rate: 1, Burst: 1, Now: c.Now}),
		Paths:   []string{"/scim/v2/"},
		Page:    func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusTooManyRequests) },
		Metrics: metrics,
		Now:     c.Now,
	}
	h := m.Wrap(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	for _, path := range []string{"/scim/v2/Users", "/scim/v2/Users", "/scim/v2/Groups/abc", "/scim/v2", "/scim/v2x"} {
		r := httptest.NewRequest(http.MethodGet, path, nil)
		r.RemoteAddr = "203.0.113.9:1"
		h.ServeHTTP(httptest.NewRecorder(), r)
	}
	if metrics.n["/scim/v2/"] != 2 || metrics.n["other"] != 2 || len(metrics.n) != 2 {
		t.Errorf("metrics %v; want /scim/v2/ 2, other 2", metrics.n)
	}
}

// A rate too small to express its wait as a Duration says an hour, not
// nothing; a Shared bucket is one bucket for every caller.
func TestTinyRateWaitsAnHour(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	s := NewShared(1e-300, 1, func() time.Time { return now })
	if ok, _ := s.Allow(); !ok {
		t.Fatal("the first of a burst of one refused")
	}
	if ok, wait := s.Allow(); ok || wait != time.Hour {
		t.Fatalf("second: %v, wait %v; want refused, an hour", ok, wait)
	}
	if got := RetryAfter(time.Hour); got != "3600" {
		t.Errorf("Retry-After for an hour: %q", got)
	}
	if got := RetryAfter(10 * time.Millisecond); got != "1" {
		t.Errorf("Retry-After for 10ms: %q", got)
	}
}

// Keyed gives each key its own bucket.
func TestKeyedBucketPerKey(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	k := NewKeyed(Options{Rate: 1, Burst: 2, Now: func() time.Time { return now }})
	for range 2 {
		if ok, _ := k.Allow("mac-a"); !ok {
			t.Fatal("within mac-a's burst: refused")
		}
	}
	if ok, wait := k.Allow("mac-a"); ok || wait != time.Second {
		t.Errorf("mac-a beyond its burst: %v, wait %v", ok, wait)
	}
	if ok, _ := k.Allow("mac-b"); !ok {
		t.Error("mac-b refused for mac-a's spending")
	}
}
