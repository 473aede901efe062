// Package oktaapi owns the verifier's read-only client for Okta's management
// API: authentication (an SSWS API token, or an OAuth 2.0 service app that
// signs private_key_jwt client assertions), Link-header paging, Okta's rate
// limits and error bodies, and the few resources the verifier reads (users,
// groups, group members, apps and System Log events). It also holds what is
// built directly on those reads: the credential's capability report, the
// user and group sync loop (into the user store, through StoreDirectory) and the
// System Log poller that correlates Okta sign-ins with Clearance decisions.
package oktaapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Limits on what the client reads and how long it waits.
const (
	// MaxBodyLen bounds one response body: a page of 200 users is well
	// under a megabyte; an org that sends more is refused, not buffered.
	MaxBodyLen = 16 << 20
	// DefaultTimeout bounds one HTTP exchange.
	DefaultTimeout = 30 * time.Second
	// MaxRateLimitWait bounds one wait for a rate-limit window to reset:
	// Okta's windows are a minute; a reset further away is a clock or
	// header problem, and waiting longer would stall the caller.
	MaxRateLimitWait = 2 * time.Minute
	// MaxPages bounds one listing: 100,000 users at 200 a page is 500.
	MaxPages = 10000
	// maxAttempts bounds the tries of one request (429 and 5xx).
	maxAttempts = 4
)

// Client reads Okta's management API for one org.
type Client struct {
	// Org is the org's base URL, e.g. https://example.okta.com.
	Org *url.URL
	// Auth adds credentials to each request.
	Auth Authorizer
	// HTTP sends requests; nil means a client with DefaultTimeout that
	// verifies the org's certificate with the system roots (SSL_CERT_FILE
	// and SSL_CERT_DIR are honoured by Go's crypto/x509).
	HTTP *http.Client
	// Log receives warnings (rate limits, retries); nil discards them.
	Log *slog.Logger
	// Now and Sleep are the clock; Jitter returns a random duration in
	// [0, n). nil: the real ones.
	Now    func() time.Time
	Sleep  func(ctx context.Context, d time.Duration) error
	Jitter func(n time.Duration) time.Duration

	mu sync.Mutex
	// pausedUntil is when the current rate-limit window resets, once a
	// response said none of it was left: requests wait for it instead of
	// earning a 429.
	pausedUntil time.Time
}

// NewClient returns a client for the org at orgURL (https, no path).
func NewClient(orgURL string, auth Authorizer) (*Client, error) {
	u, err := ParseOrgURL(orgURL)
	if err != nil {
		return nil, err
	}
	return &Client{Org: u, Auth: auth}, nil
}

// ParseOrgURL checks an org URL: https (http only for loopback, which tests
// use), a host, no path beyond "/", no query, no credentials.
func ParseOrgURL(s string) (*url.URL, error) {
	u, err := url.Parse(strings.TrimSpace(s))
	if err != nil {
		return nil, fmt.Errorf("okta org URL: %w", err)
	}
	if u.Scheme != "https" || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" || (u.Path != "" && u.Path != "/") {
		return nil, fmt.Errorf("okta org URL %q: want https://{org}.okta.com with no path", s)
	}
	return &url.URL{Scheme: u.Scheme, Host: u.Host}, nil
}

func (c *Client) httpClient() *http.Client {
	hc := &http.Client{Timeout: DefaultTimeout}
	if c.HTTP != nil {
		cp := *c.HTTP
		hc = &cp
	}
	hc.CheckRedirect = refuseRedirects
	return hc
}

// refuseRedirects: Okta's API answers where it is asked. A redirect is
// never followed, so that neither the token (Go resends it to the same
// host, whatever the scheme or port) nor a forged body from elsewhere is
// involved.
func refuseRedirects(req *http.Request, _ []*http.Request) error {
	return fmt.Errorf("okta answered with a redirect to %s://%s%s; redirects are not followed", req.URL.Scheme, req.URL.Host, pathOf(req.URL.String()))
}

func (c *Client) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

func (c *Client) sleep(ctx context.Context, d time.Duration) error {
	if c.Sleep != nil {
		return c.Sleep(ctx, d)
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

func (c *Client) jitter(n time.Duration) time.Duration {
	if n <= 0 {
		return 0
	}
	if c.Jitter != nil {
		return c.Jitter(n)
	}
	return rand.N(n)
}

func (c *Client) log() *slog.Logger {
	if c.Log != nil {
		return c.Log
	}
	return slog.New(slog.DiscardHandler)
}

// URL returns the org URL for path (which starts with "/") and query.
func (c *Client) URL(path string, q url.Values) string {
	u := *c.Org
	u.Path = path
	u.RawQuery = q.Encode()
	return u.String()
}

// Page is one page of a list.
type Page struct {
	Body []byte
	// Next is the Link rel="next" URL exactly as Okta sent it; empty on the
	// last page.
	Next string
}

// Get fetches one page at rawURL, which must be on the org's origin.
func (c *Client) Get(ctx context.Context, rawURL string) (Page, error) {
	if err := c.sameOrigin(rawURL); err != nil {
		return Page{}, err
	}
	var lastErr error
	for attempt := 1; attempt <= maxAttempts; attempt++ {
		if err := c.waitWindow(ctx); err != nil {
			return Page{}, err
		}
		p, retryAfter, err := c.once(ctx, rawURL)
		if err == nil {
			return p, nil
		}
		lastErr = err
		if retryAfter == retryWithBackoff {
			retryAfter = c.backoff(attempt)
		}
		if retryAfter < 0 || attempt == maxAttempts {
			break
		}
		c.log().Warn("okta_request_retry", "component", "oktaapi", "path", pathOf(rawURL), "attempt", attempt, "wait", retryAfter.Round(time.Millisecond), "err", err)
		if err := c.sleep(ctx, retryAfter); err != nil {
			return Page{}, err
		}
	}
	return Page{}, lastErr
}

// List fetches every page from first on, following rel="next", and hands
// each page's items to fn.
func List[T any](ctx context.Context, c *Client, first string, fn func([]T) error) error {
	next := first
	seen := map[string]bool{}
	for next != "" {
		// A next link back to any page already read would loop forever.
		if seen[next] {
			return fmt.Errorf("okta's next link for %s points back at a page already read", pathOf(next))
		}
		if len(seen) >= MaxPages {
			return fmt.Errorf("okta's list at %s is longer than %d pages", pathOf(first), MaxPages)
		}
		seen[next] = true
		p, err := c.Get(ctx, next)
		if err != nil {
			return err
		}
		var items []T
		if err := json.Unmarshal(p.Body, &items); err != nil {
			return fmt.Errorf("decoding %s: %w", pathOf(next), err)
		}
		if err := fn(items); err != nil {
			return err
		}
		if p.Next == next {
			return fmt.Errorf("okta's next link for %s points at the same page", pathOf(next))
		}
		next = p.Next
	}
	return nil
}

// retryWithBackoff asks Get to wait longer at each attempt (a server
// error, a network failure).
const retryWithBackoff = time.Duration(-2)

// once sends one request. retry is how long to wait before trying again,
// retryWithBackoff, or -1 when trying again would not help.
func (c *Client) once(ctx context.Context, rawURL string) (p Page, retry time.Duration, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		return Page{}, -1, err
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "clearance-verifier")
	if err := c.Auth.Authorize(ctx, req); err != nil {
		return Page{}, -1, err
	}
	resp, err := c.httpClient().Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return Page{}, -1, ctx.Err()
		}
		// A network error or timeout: worth one more try after a pause.
		return Page{}, retryWithBackoff, fmt.Errorf("GET %s: %w", pathOf(rawURL), err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxBodyLen+1))
	if err != nil {
		return Page{}, retryWithBackoff, fmt.Errorf("GET %s: reading body: %w", pathOf(rawURL), err)
	}
	if len(body) > MaxBodyLen {
		return Page{}, -1, fmt.Errorf("GET %s: body larger than %d bytes", pathOf(rawURL), MaxBodyLen)
	}
	rl := parseRateLimit(resp.Header)
	if rl.known && rl.remaining <= 0 && resp.StatusCode != http.StatusTooManyRequests {
		c.pauseUntil(rl.reset)
	}
	switch {
	case resp.StatusCode == http.StatusOK:
		next, err := nextLink(resp.Header)
		if err != nil {
			return Page{}, -1, fmt.Errorf("GET %s: %w", pathOf(rawURL), err)
		}
		if next != "" {
			if err := c.sameOrigin(next); err != nil {
				return Page{}, -1, err
			}
		}
		return Page{Body: body, Next: next}, 0, nil
	case resp.StatusCode == http.StatusTooManyRequests:
		apiErr := parseError(resp.StatusCode, body)
		return Page{}, c.rateLimitWait(rl), apiErr
	case resp.StatusCode == http.StatusUnauthorized:
		// A cached access token Okta no longer takes (revoked, or the
		// clocks disagree on its expiry) is fetched anew, once: the retry
		// carries a fresh one, and a second 401 finds nothing to forget.
		if c.Auth.Invalidate() {
			return Page{}, 0, parseError(resp.StatusCode, body)
		}
		return Page{}, -1, parseError(resp.StatusCode, body)
	case resp.StatusCode >= 500:
		return Page{}, retryWithBackoff, parseError(resp.StatusCode, body)
	default:
		return Page{}, -1, parseError(resp.StatusCode, body)
	}
}

// rateLimitWait is how long to wait after a 429: until the window resets,
// plus jitter so that replicas do not all come back at the same instant.
func (c *Client) rateLimitWait(rl rateLimit) time.Duration {
	d := 30 * time.Second // Okta always sends the reset; this is for a proxy that did not
	if rl.known && !rl.reset.IsZero() {
		d = rl.reset.Sub(c.now())
	}
	d = min(max(d, 0), MaxRateLimitWait)
	d += time.Second + c.jitter(time.Second+d/10)
	c.pauseUntil(c.now().Add(d))
	return d
}

// backoff is the pause after failed attempt n (from 1): 2s, 4s, 8s, plus
// up to as much again of jitter.
func (c *Client) backoff(n int) time.Duration {
	d := time.Second << min(n, 5)
	return d + c.jitter(d)
}

func (c *Client) pauseUntil(t time.Time) {
	// Okta's windows are a minute long: a reset further off than one wait
	// is not believed, so one response cannot slow every later request.
	t = minTime(t, c.now().Add(MaxRateLimitWait))
	c.mu.Lock()
	defer c.mu.Unlock()
	if t.After(c.pausedUntil) {
		c.pausedUntil = t
	}
}

// waitWindow waits, when the last response left no requests in the
// window, until the window resets.
func (c *Client) waitWindow(ctx context.Context) error {
	c.mu.Lock()
	until := c.pausedUntil
	c.mu.Unlock()
	d := until.Sub(c.now())
	if d <= 0 {
		return nil
	}
	d = min(d, MaxRateLimitWait)
	c.log().Info("okta_rate_limit_wait", "component", "oktaapi", "wait", d.Round(time.Millisecond))
	return c.sleep(ctx, d)
}

// sameOrigin refuses a URL that is not on the org's scheme and host: a
// next link elsewhere would carry our credentials to another server.
func (c *Client) sameOrigin(rawURL string) error {
	u, err := url.Parse(rawURL)
	if err != nil {
		return fmt.Errorf("okta link: %w", err)
	}
	if u.Scheme != c.Org.Scheme || !strings.EqualFold(u.Host, c.Org.Host) || u.User != nil {
		return fmt.Errorf("okta link to %s://%s is not on the org's origin %s", u.Scheme, u.Host, c.Org)
	}
	return nil
}

// pathOf is rawURL's path, for errors and logs: the query may carry
// cursors and search terms, which need not be logged.
func pathOf(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "(bad URL)"
	}
	return u.Path
}

// rateLimit is what X-Rate-Limit-* said.
type rateLimit struct {
	known            bool
	limit, remaining int
	reset            time.Time
}

func parseRateLimit(h http.Header) rateLimit {
	rem, err1 := strconv.Atoi(h.Get("X-Rate-Limit-Remaining"))
	reset, err2 := strconv.ParseInt(h.Get("X-Rate-Limit-Reset"), 10, 64)
	lim, _ := strconv.Atoi(h.Get("X-Rate-Limit-Limit"))
	if err1 != nil || err2 != nil || reset <= 0 || reset > 1<<40 {
		return rateLimit{}
	}
	return rateLimit{known: true, limit: lim, remaining: rem, reset: time.Unix(reset, 0)}
}

// maxLinkHeaders bounds the Link values read from one response.
const maxLinkHeaders = 16

// nextLink returns the rel="next" target of h's Link headers, unchanged.
func nextLink(h http.Header) (string, error) {
	vals := h.Values("Link")
	if len(vals) > maxLinkHeaders {
		return "", errors.New("too many Link headers")
	}
	next := ""
	for _, v := range vals {
		for _, link := range splitLinks(v) {
			target, params, ok := parseLink(link)
			if !ok {
				return "", fmt.Errorf("malformed Link header")
			}
			for _, rel := range strings.Fields(params["rel"]) {
				if strings.EqualFold(rel, "next") {
					if next != "" && next != target {
						return "", errors.New("two different rel=\"next\" links")
					}
					next = target
				}
			}
		}
	}
	return next, nil
}

// splitLinks splits a Link value at the commas between links (a comma
// inside <...> or a quoted string belongs to the link).
func splitLinks(v string) []string {
	var (
		out     []string
		start   int
		inURI   bool
		inQuote bool
	)
	for i := 0; i < len(v); i++ {
		switch ch := v[i]; {
		case inQuote:
			if ch == '\\' {
				i++
			} else if ch == '"' {
				inQuote = false
			}
		case ch == '<':
			inURI = true
		case ch == '>':
			inURI = false
		case ch == '"' && !inURI:
			inQuote = true
		case ch == ',' && !inURI:
			out = append(out, v[start:i])
			start = i + 1
		}
	}
	out = append(out, v[start:])
	var links []string
	for _, l := range out {
		if strings.TrimSpace(l) != "" {
			links = append(links, l)
		}
	}
	return links
}

// parseLink reads `<uri>; name=value; name="value"`.
func parseLink(s string) (string, map[string]string, bool) {
	s = strings.TrimSpace(s)
	if !strings.HasPrefix(s, "<") {
		return "", nil, false
	}
	end := strings.IndexByte(s, '>')
	if end < 0 {
		return "", nil, false
	}
	target := s[1:end]
	params := map[string]string{}
	for _, p := range strings.Split(s[end+1:], ";") {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		name, val, ok := strings.Cut(p, "=")
		if !ok {
			continue
		}
		val = strings.TrimSpace(val)
		if len(val) >= 2 && val[0] == '"' && val[len(val)-1] == '"' {
			val = val[1 : len(val)-1]
		}
		params[strings.ToLower(strings.TrimSpace(name))] = val
	}
	return target, params, true
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}
