package ratelimit

import (
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/clearance/clearance/pkg/logsample"
)

// maxForwardedFor bounds the X-Forwarded-For entries read: a proxy chain is
// a few hops; anything longer was padded by the client, whose entries
// (the leftmost) are never used anyway.
const maxForwardedFor = 32

// ClientAddr is the address r is counted under. A request from an address
// in trusted (a proxy in front of the verifier) is counted under the
// address that proxy saw, read from X-Forwarded-For; any other request
// under its own peer address.
//
// A proxy appends the address of whoever connected to it to the right of
// X-Forwarded-For; everything to the left of that came from the client and
// can say anything. So the entries are read from the right, past trusted
// proxies (a chain of them), and the first that is not one is the client.
// An entry that does not parse stops the walk at the hop to its right: the
// request is counted under that proxy's address, shared with everyone
// behind it, rather than under an address a client may have written. The
// zero Addr is returned when r's peer address does not parse.
func ClientAddr(r *http.Request, trusted []*net.IPNet) netip.Addr {
	peer, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	client := peer.Addr().Unmap()
	if !contains(trusted, client) {
		return client
	}
	vals := r.Header.Values("X-Forwarded-For")
	var entries []string
	for _, v := range vals {
		entries = append(entries, strings.Split(v, ",")...)
	}
	for i := len(entries) - 1; i >= 0 && i >= len(entries)-maxForwardedFor; i-- {
		a, ok := parseHop(entries[i])
		if !ok {
			return client
		}
		client = a
		if !contains(trusted, a) {
			return a
		}
	}
	return client
}

// parseHop reads one X-Forwarded-For entry: an address, or an address with
// a port (some proxies write one).
func parseHop(s string) (netip.Addr, bool) {
	s = strings.TrimSpace(s)
	if a, err := netip.ParseAddr(s); err == nil && a.Zone() == "" {
		return a.Unmap(), true
	}
	if ap, err := netip.ParseAddrPort(s); err == nil && ap.Addr().Zone() == "" {
		return ap.Addr().Unmap(), true
	}
	return netip.Addr{}, false
}

func contains(nets []*net.IPNet, a netip.Addr) bool {
	if !a.IsValid() {
		return false
	}
	ip := net.IP(a.AsSlice())
	for _, n := range nets {
		if n.Contains(ip) {
			return true
		}
	}
	return false
}

// Metrics counts refused requests; *metrics.Metrics implements it.
type Metrics interface {
	RateLimited(path string)
}

// Middleware limits how often each client address may call a listener.
type Middleware struct {
	Limiter *Limiter
	// Trusted are the proxies whose X-Forwarded-For names the client
	// (ClientAddr); Exempt the client addresses never limited (an office's
	// NAT address whose people all sign in at nine).
	Trusted, Exempt []*net.IPNet
	// Skip, when it returns true, lets a request through uncounted
	// (/healthz, which load balancers poll and which costs at most one
	// write a second however often it is called).
	Skip func(*http.Request) bool
	// Paths are the paths counted under their own name in metrics; any
	// other path is counted as "other", so a client cannot make new series.
	// A path ending in "/" names every path under it (/scim/v2/).
	Paths []string
	// Page writes the answer to a refused request, with status 429.
	Page    func(w http.ResponseWriter, r *http.Request)
	Metrics Metrics
	Log     *slog.Logger
	Now     func() time.Time
	// sample keeps the log to one line per interval during a flood.
	sample logsample.Sample
}

// logEvery is how often a flood of refused requests is logged.
const logEvery = 10 * time.Second

// Wrap returns next behind the limit. A request over it is answered at
// once, before its body or query is read: 429, Retry-After in whole
// seconds, and the page.
func (m *Middleware) Wrap(next http.Handler) http.Handler {
	m.sample.Every = logEvery
	now := m.Now
	if now == nil {
		now = time.Now
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if m.Skip != nil && m.Skip(r) {
			next.ServeHTTP(w, r)
			return
		}
		src := ClientAddr(r, m.Trusted)
		if contains(m.Exempt, src) {
			next.ServeHTTP(w, r)
			return
		}
		ok, wait := m.Limiter.Allow(src)
		if ok {
			next.ServeHTTP(w, r)
			return
		}
		path := "other"
		for _, p := range m.Paths {
			if r.URL.Path == p || strings.HasSuffix(p, "/") && strings.HasPrefix(r.URL.Path, p) {
				path = p
				break
			}
		}
		if m.Metrics != nil {
			m.Metrics.RateLimited(path)
		}
		if ok, skipped := m.sample.Take(now()); ok && m.Log != nil {
			m.Log.Warn("rate_limited", "component", "ratelimit", "client", src.String(), "path", path,
				"retry_after", wait.Round(time.Millisecond), "others_not_logged", skipped)
		}
		// The connection is kept: a refusal on it costs a map lookup and a
		// small page, a new connection a TLS handshake.
		w.Header().Set("Retry-After", RetryAfter(wait))
		m.Page(w, r)
	})
}
