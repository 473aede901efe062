package oktaapi_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.step.sm/crypto/jose"
	"go.step.sm/crypto/pemutil"

	"github.com/clearance/clearance/internal/oktaorg"
	"github.com/clearance/clearance/verifier/oktaapi"
)

const readAll = "read-all-token"

// sleeps records the client's waits instead of waiting, and moves the
// client's clock on by them.
type sleeps struct {
	mu     sync.Mutex
	d      []time.Duration
	offset time.Duration
}

func (s *sleeps) sleep(_ context.Context, d time.Duration) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.d = append(s.d, d)
	s.offset += d
	return nil
}

func (s *sleeps) now() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return time.Now().Add(s.offset)
}

func (s *sleeps) all() []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Duration(nil), s.d...)
}

// newOrg starts a fake org with an all-reading API token and returns a
// client for it whose waits are recorded.
func newOrg(t *testing.T) (*oktaorg.Org, *oktaapi.Client, *sleeps) {
	t.Helper()
	org := oktaorg.New()
	t.Cleanup(org.Close)
	org.AddToken(readAll, oktaorg.Scopes(oktaapi.ScopeUsers, oktaapi.ScopeGroups, oktaapi.ScopeLogs, oktaapi.ScopeApps))
	tok, err := oktaapi.NewAPIToken(readAll)
	if err != nil {
		t.Fatal(err)
	}
	c, err := oktaapi.NewClient(org.URL(), tok)
	if err != nil {
		t.Fatal(err)
	}
	c.HTTP = org.Server.Client()
	s := &sleeps{}
	c.Sleep = s.sleep
	c.Now = s.now
	c.Jitter = func(n time.Duration) time.Duration { return n / 2 }
	t.Cleanup(func() {
		if bad := org.Invalid(); len(bad) > 0 {
			t.Errorf("requests that do not validate against Okta's OpenAPI description:\n%s", strings.Join(bad, "\n"))
		}
	})
	return org, c, s
}

func addUsers(org *oktaorg.Org, n int) {
	for i := range n {
		org.PutUser(oktaorg.User{ID: fmt.Sprintf("00u%06d", i), Login: fmt.Sprintf("user%d@example.com", i)})
	}
}

func TestListFollowsNextLinks(t *testing.T) {
	t.Parallel()
	org, c, _ := newOrg(t)
	addUsers(org, 450)
	var got []string
	if err := c.Users(context.Background(), "", func(us []oktaapi.User) error {
		for _, u := range us {
			got = append(got, u.ID)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(got) != 450 || got[0] != "00u000000" || got[449] != "00u000449" {
		t.Fatalf("got %d users (%v … %v), want 450 in order", len(got), got[0], got[len(got)-1])
	}
	if n := len(org.Requests()); n != 3 {
		t.Errorf("%d requests for 450 users in pages of 200, want 3", n)
	}
}

func TestRateLimitIsWaitedOut(t *testing.T) {
	t.Parallel()
	org, c, s := newOrg(t)
	addUsers(org, 450)
	org.FailNext(429)
	n := 0
	if err := c.Users(context.Background(), "", func(us []oktaapi.User) error { n += len(us); return nil }); err != nil {
		t.Fatal(err)
	}
	if n != 450 {
		t.Fatalf("got %d users, want 450", n)
	}
	// One 429, one wait until the window's reset (a minute at most, plus
	// jitter), then the same request once more: 4 requests, not a loop.
	if got := len(org.Requests()); got != 4 {
		t.Errorf("%d requests, want 4 (3 pages + the one refused)", got)
	}
	waits := s.all()
	if len(waits) != 1 || waits[0] < time.Second || waits[0] > oktaapi.MaxRateLimitWait+30*time.Second {
		t.Errorf("waits %v, want one wait until the window resets", waits)
	}
}

func TestServerErrorsRetriedThenReported(t *testing.T) {
	t.Parallel()
	org, c, s := newOrg(t)
	addUsers(org, 10)
	org.FailNext(503, 500)
	if err := c.Users(context.Background(), "", func([]oktaapi.User) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if waits := s.all(); len(waits) != 2 || waits[1] <= waits[0] {
		t.Errorf("waits %v, want 2 (one per 5xx), the second longer", waits)
	}
	org.FailNext(500, 500, 500, 500, 500)
	err := c.Users(context.Background(), "", func([]oktaapi.User) error { return nil })
	var e *oktaapi.Error
	if !errors.As(err, &e) || e.Status != 500 || e.Code != "E0000009" || e.ID == "" {
		t.Fatalf("err = %v, want Okta's 500 error body", err)
	}
}

func TestBadTokenIsUnauthorized(t *testing.T) {
	t.Parallel()
	org, c, _ := newOrg(t)
	bad, _ := oktaapi.NewAPIToken("not-a-token")
	c.Auth = bad
	err := c.Users(context.Background(), "", func([]oktaapi.User) error { return nil })
	if !oktaapi.IsUnauthorized(err) || !strings.Contains(err.Error(), "E0000011") {
		t.Fatalf("err = %v, want 401 E0000011", err)
	}
	if strings.Contains(err.Error(), "not-a-token") {
		t.Error("the error shows the token")
	}
	if len(org.Requests()) != 1 {
		t.Errorf("%d requests with a refused token, want 1 (no retry)", len(org.Requests()))
	}
}

func newKey(t *testing.T) (priv []byte, pub *jose.JSONWebKey) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	blk, err := pemutil.Serialize(k, pemutil.WithPKCS8(true))
	if err != nil {
		t.Fatal(err)
	}
	return pemEncode(blk), &jose.JSONWebKey{Key: k.Public(), Algorithm: "ES256"}
}

func TestServiceAppTokenCached(t *testing.T) {
	t.Parallel()
	org, c, _ := newOrg(t)
	addUsers(org, 450)
	priv, pub := newKey(t)
	all := oktaorg.Scopes(oktaapi.ScopeUsers, oktaapi.ScopeGroups, oktaapi.ScopeLogs)
	org.AddServiceApp("0oaservice", pub, all, all)
	app, err := oktaapi.NewServiceApp(c.Org, "0oaservice", priv, nil)
	if err != nil {
		t.Fatal(err)
	}
	app.HTTP = org.Server.Client()
	c.Auth = app
	for range 3 {
		if err := c.Users(context.Background(), "", func([]oktaapi.User) error { return nil }); err != nil {
			t.Fatal(err)
		}
	}
	if n := org.TokensIssued(); n != 1 {
		t.Errorf("%d access tokens fetched for 9 requests, want 1 (cached)", n)
	}
	// Okta revokes the token: the next request gets a 401, fetches a new
	// token once and goes on.
	org.RevokeAccessTokens()
	if err := c.Users(context.Background(), "", func([]oktaapi.User) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if n := org.TokensIssued(); n != 2 {
		t.Errorf("%d access tokens fetched after a revocation, want 2", n)
	}
}

func TestServiceAppWrongKeyRefused(t *testing.T) {
	t.Parallel()
	org, c, _ := newOrg(t)
	_, pub := newKey(t)
	other, _ := newKey(t)
	org.AddServiceApp("0oaservice", pub, oktaorg.Scopes(oktaapi.ScopeUsers), oktaorg.Scopes(oktaapi.ScopeUsers))
	app, err := oktaapi.NewServiceApp(c.Org, "0oaservice", other, []string{oktaapi.ScopeUsers})
	if err != nil {
		t.Fatal(err)
	}
	app.HTTP = org.Server.Client()
	c.Auth = app
	err = c.Users(context.Background(), "", func([]oktaapi.User) error { return nil })
	if !oktaapi.IsUnauthorized(err) {
		t.Fatalf("err = %v, want invalid_client", err)
	}
}

func TestNextLinkToAnotherOriginRefused(t *testing.T) {
	t.Parallel()
	org, c, _ := newOrg(t)
	// A next link Okta never sends: another host. The credential must not
	// follow it.
	_, err := c.Get(context.Background(), "https://attacker.example/api/v1/users")
	if err == nil || !strings.Contains(err.Error(), "origin") {
		t.Fatalf("err = %v, want a refusal of another origin", err)
	}
	if len(org.Requests()) != 0 {
		t.Error("a request was sent")
	}
}

// respondingOrg is an "org" that answers every request with respond.
func respondingOrg(t *testing.T, respond http.HandlerFunc) (*oktaapi.Client, *atomic.Int64) {
	t.Helper()
	var hits atomic.Int64
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		respond(w, r)
	}))
	t.Cleanup(srv.Close)
	tok, err := oktaapi.NewAPIToken("SECRET-SSWS")
	if err != nil {
		t.Fatal(err)
	}
	c, err := oktaapi.NewClient(srv.URL, tok)
	if err != nil {
		t.Fatal(err)
	}
	c.HTTP = srv.Client()
	return c, &hits
}

// TestRedirectsNotFollowed: a redirect, even to the same host over plain
// HTTP (where Go would resend the token), is an error, not a request.
func TestRedirectsNotFollowed(t *testing.T) {
	t.Parallel()
	plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t.Errorf("the redirect was followed, with Authorization %q", r.Header.Get("Authorization"))
	}))
	t.Cleanup(plain.Close)
	c, hits := respondingOrg(t, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, plain.URL+r.URL.Path, http.StatusFound)
	})
	_, err := c.Get(context.Background(), c.URL("/api/v1/users", nil))
	if err == nil || !strings.Contains(err.Error(), "redirect") {
		t.Fatalf("err = %v, want a refused redirect", err)
	}
	if hits.Load() == 0 {
		t.Fatal("the org was never asked")
	}
}

// TestFarRateLimitResetBounded: a reset hours away is waited at most
// MaxRateLimitWait, once, not before every later request.
func TestFarRateLimitResetBounded(t *testing.T) {
	t.Parallel()
	c, _ := respondingOrg(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Rate-Limit-Remaining", "0")
		w.Header().Set("X-Rate-Limit-Reset", strconv.FormatInt(time.Now().Add(1000*time.Hour).Unix(), 10))
		w.Write([]byte("[]"))
	})
	var slept time.Duration
	c.Sleep = func(_ context.Context, d time.Duration) error { slept += d; return nil }
	for range 3 {
		if _, err := c.Get(context.Background(), c.URL("/api/v1/users", nil)); err != nil {
			t.Fatal(err)
		}
	}
	if slept > 2*oktaapi.MaxRateLimitWait+time.Second {
		t.Errorf("slept %s over 3 requests; a hostile reset may cost at most %s each", slept, oktaapi.MaxRateLimitWait)
	}
}

// TestNextLinkCycleRefused: pages that link back to one another end the
// listing with an error instead of looping.
func TestNextLinkCycleRefused(t *testing.T) {
	t.Parallel()
	var c *oktaapi.Client
	c, hits := respondingOrg(t, func(w http.ResponseWriter, r *http.Request) {
		next := "/api/v1/users?after=a"
		if r.URL.Query().Get("after") == "a" {
			next = "/api/v1/users?after=b"
		}
		w.Header().Set("Link", "<"+c.URL(next[:strings.Index(next, "?")], nil)+next[strings.Index(next, "?"):]+`>; rel="next"`)
		w.Write([]byte("[]"))
	})
	err := oktaapi.List(context.Background(), c, c.URL("/api/v1/users", nil), func([]json.RawMessage) error { return nil })
	if err == nil || !strings.Contains(err.Error(), "already read") {
		t.Fatalf("err = %v after %d requests, want a refused cycle", err, hits.Load())
	}
	if hits.Load() > 4 {
		t.Errorf("%d requests for a two-page cycle", hits.Load())
	}
}
