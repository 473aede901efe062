package cloudflare

import (
	"context"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"time"

	"go.step.sm/crypto/jose"
)

// Header is the request header Cloudflare Access puts its application token in.
const Header = "Cf-Access-Jwt-Assertion"

// Defaults of Options' zero fields.
const (
	// DefaultLeeway is the clock skew allowed on exp, nbf and iat.
	DefaultLeeway = 30 * time.Second
	// DefaultMinRefresh is the least time between two fetches of the keys:
	// tokens naming made-up key ids cannot turn into a flood of requests
	// to Cloudflare.
	DefaultMinRefresh = 10 * time.Second
	// DefaultRefreshAfter is the age past which the keys are fetched again
	// on the next request (Access rotates them every six weeks and keeps
	// the previous one valid for seven days).
	DefaultRefreshAfter = time.Hour
	// DefaultKeyLifetime is how long keys are used after their last
	// successful fetch while fetching fails; past it, every token is
	// refused (fail closed).
	DefaultKeyLifetime = 24 * time.Hour
	// fetchTimeout bounds one fetch of the keys.
	fetchTimeout = 5 * time.Second
	// maxJWKSBytes bounds the key set read (Access serves two keys, a few KiB).
	maxJWKSBytes = 256 << 10
	// MaxTokenBytes bounds the token parsed (Access tokens are about 1 KiB).
	MaxTokenBytes = 16 << 10
	// minRSABits refuses weak keys even from the key set.
	minRSABits = 2048
)

// Why a token was refused: the outcome label of clearance_cloudflare_requests_total.
const (
	RefusedNoToken         = "no_token"
	RefusedMalformed       = "malformed_token"
	RefusedNotCompact      = "not_compact_jws"
	RefusedAlgorithm       = "wrong_algorithm"
	RefusedUnknownKey      = "unknown_key"
	RefusedBadSignature    = "bad_signature"
	RefusedAudience        = "wrong_audience"
	RefusedIssuer          = "wrong_issuer"
	RefusedExpired         = "expired"
	RefusedNotYetValid     = "not_yet_valid"
	RefusedJWKSUnavailable = "jwks_unavailable"
)

// TokenError is why a token was refused. Reason is logged and counted;
// nothing of the token itself is in it.
type TokenError struct {
	Reason string
	Err    error
}

func (e *TokenError) Error() string {
	if e.Err == nil {
		return e.Reason
	}
	return e.Reason + ": " + e.Err.Error()
}

func (e *TokenError) Unwrap() error { return e.Err }

func refuse(reason string, err error) error { return &TokenError{Reason: reason, Err: err} }

// Claims are the claims of an Access token that the verifier reads.
type Claims struct {
	jose.Claims
	// CommonName is the service token's Client ID, for a Service Auth
	// policy; Email is empty then.
	CommonName string `json:"common_name"`
	Email      string `json:"email"`
	Type       string `json:"type"`
}

// TokenOptions configure a TokenVerifier.
type TokenOptions struct {
	// Team is the Zero Trust team name or domain: "acme",
	// "acme.cloudflareaccess.com" or "https://acme.cloudflareaccess.com".
	Team string
	// Audience is the Access application's AUD tag.
	Audience string
	// CertsURL is where the signing keys are (default: the team domain's
	// /cdn-cgi/access/certs). https, or http to a loopback address (tests).
	CertsURL string
	// Client fetches the keys (default: a client with a 5 s timeout).
	Client *http.Client
	Now    func() time.Time
	Log    *slog.Logger
	// Fetched, when set, is told of every fetch of the keys (metrics).
	Fetched func(ok bool)
	// Leeway, MinRefresh, RefreshAfter and KeyLifetime: the Default*
	// constants when zero.
	Leeway, MinRefresh, RefreshAfter, KeyLifetime time.Duration
}

// TokenVerifier checks Cloudflare Access application tokens: RS256 only,
// signed by a key of the team's key set, for one application audience,
// from the team's issuer, within their validity (a small leeway).
type TokenVerifier struct {
	o      TokenOptions
	issuer string

	mu        sync.RWMutex
	keys      map[string]*rsa.PublicKey
	fetchedAt time.Time // last successful fetch
	triedAt   time.Time // last attempt
	fetching  sync.Mutex
}

var teamName = regexp.MustCompile(`^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$`)

// TeamDomain normalizes a team name or domain to the issuer Access puts in
// iss: "https://<team>.cloudflareaccess.com".
func TeamDomain(team string) (string, error) {
	t := strings.ToLower(strings.TrimSpace(team))
	t = strings.TrimPrefix(t, "https://")
	t = strings.TrimSuffix(t, "/")
	t = strings.TrimSuffix(t, ".cloudflareaccess.com")
	if !teamName.MatchString(t) {
		return "", fmt.Errorf("%q is not a Zero Trust team name (the <team> of <team>.cloudflareaccess.com)", team)
	}
	return "https://" + t + ".cloudflareaccess.com", nil
}

// CertsURL is the team's key set URL.
func CertsURL(issuer string) string { return issuer + "/cdn-cgi/access/certs" }

// CheckCertsURL accepts https URLs, and http only to a loopback address.
func CheckCertsURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return fmt.Errorf("%q is not a URL", raw)
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		host := u.Hostname()
		if ip := net.ParseIP(host); (ip != nil && ip.IsLoopback()) || host == "localhost" {
			return nil
		}
	}
	return fmt.Errorf("%q must be https (http only to a loopback address)", raw)
}

// NewTokenVerifier checks o and returns a verifier. It fetches nothing yet.
func NewTokenVerifier(o TokenOptions) (*TokenVerifier, error) {
	issuer, err := TeamDomain(o.Team)
	if err != nil {
		return nil, err
	}
	if strings.TrimSpace(o.Audience) == "" {
		return nil, errors.New("no Access application audience (AUD tag)")
	}
	if o.CertsURL == "" {
		o.CertsURL = CertsURL(issuer)
	}
	if err := CheckCertsURL(o.CertsURL); err != nil {
		return nil, err
	}
	if o.Client == nil {
		o.Client = &http.Client{Timeout: fetchTimeout, CheckRedirect: httpsOnly}
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	for _, d := range []struct {
		v   *time.Duration
		def time.Duration
	}{{&o.Leeway, DefaultLeeway}, {&o.MinRefresh, DefaultMinRefresh}, {&o.RefreshAfter, DefaultRefreshAfter}, {&o.KeyLifetime, DefaultKeyLifetime}} {
		if *d.v <= 0 {
			*d.v = d.def
		}
	}
	return &TokenVerifier{o: o, issuer: issuer}, nil
}

// Issuer is the iss tokens must carry.
func (v *TokenVerifier) Issuer() string { return v.issuer }

// Verify checks token and returns its claims, or a *TokenError.
func (v *TokenVerifier) Verify(ctx context.Context, token string) (*Claims, error) {
	// 1. Parse: one compact JWS, RS256, naming its key.
	if token == "" {
		return nil, refuse(RefusedNoToken, nil)
	}
	if len(token) > MaxTokenBytes {
		return nil, refuse(RefusedMalformed, fmt.Errorf("token is %d bytes, more than %d", len(token), MaxTokenBytes))
	}
	if err := checkCompact(token); err != nil {
		return nil, refuse(RefusedNotCompact, err)
	}
	tok, err := jose.ParseSigned(token)
	if err != nil {
		return nil, refuse(RefusedMalformed, err)
	}
	if len(tok.Headers) != 1 {
		return nil, refuse(RefusedMalformed, errors.New("not exactly one signature"))
	}
	h := tok.Headers[0]
	if h.Algorithm != "RS256" {
		return nil, refuse(RefusedAlgorithm, fmt.Errorf("alg %q, want RS256", clip(h.Algorithm)))
	}
	if h.KeyID == "" {
		return nil, refuse(RefusedUnknownKey, errors.New("no kid"))
	}

	// 2. The key: from the team's key set, fetched again for a new kid.
	key, err := v.key(ctx, h.KeyID)
	if err != nil {
		return nil, err
	}

	// 3. The signature, then the claims.
	if err := tok.Claims(key); err != nil {
		return nil, refuse(RefusedBadSignature, err)
	}
	var c Claims
	if err := tok.UnsafeClaimsWithoutVerification(&c); err != nil { // verified just above
		return nil, refuse(RefusedMalformed, err)
	}
	now := v.o.Now()
	if c.Expiry == nil {
		return nil, refuse(RefusedExpired, errors.New("no exp"))
	}
	err = c.ValidateWithLeeway(jose.Expected{Issuer: v.issuer, Audience: jose.Audience{v.o.Audience}, Time: now}, v.o.Leeway)
	switch {
	case err == nil:
		return &c, nil
	case errors.Is(err, jose.ErrInvalidIssuer):
		return nil, refuse(RefusedIssuer, fmt.Errorf("iss %q, want %q", clip(c.Issuer), v.issuer))
	case errors.Is(err, jose.ErrInvalidAudience):
		return nil, refuse(RefusedAudience, errors.New("aud does not name this application"))
	case errors.Is(err, jose.ErrExpired):
		return nil, refuse(RefusedExpired, fmt.Errorf("expired at %s", c.Expiry.Time().UTC().Format(time.RFC3339)))
	case errors.Is(err, jose.ErrNotValidYet), errors.Is(err, jose.ErrIssuedInTheFuture):
		return nil, refuse(RefusedNotYetValid, err)
	}
	return nil, refuse(RefusedMalformed, err)
}

// checkCompact accepts only the compact serialization Access sends: three
// non-empty base64url parts, unpadded, joined by two dots. The parser
// below also takes the JWS JSON serialization, whose unprotected "header"
// no signature covers, and strips whitespace and padding first; none of
// that is anything Access sends, so none of it is read at all.
func checkCompact(token string) error {
	if strings.HasPrefix(strings.TrimSpace(token), "{") {
		return errors.New("a JWS JSON serialization, not the compact one")
	}
	dots, part := 0, 0
	for i := 0; i < len(token); i++ {
		switch c := token[i]; {
		case 'A' <= c && c <= 'Z', 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '-', c == '_':
			part++
		case c == '.' && part > 0:
			dots, part = dots+1, 0
		default:
			return fmt.Errorf("not a compact JWS: byte %d is not a base64url character or a dot between parts", i)
		}
	}
	if dots != 2 || part == 0 {
		return errors.New("not a compact JWS: not three parts joined by dots")
	}
	return nil
}

// key returns the public key kid names. A kid not in the cached set, or a
// set older than RefreshAfter, fetches the set again, at most once per
// MinRefresh; a set not fetched for KeyLifetime is not used at all.
func (v *TokenVerifier) key(ctx context.Context, kid string) (*rsa.PublicKey, error) {
	now := v.o.Now()
	v.mu.RLock()
	k, ok := v.keys[kid]
	age := now.Sub(v.fetchedAt)
	v.mu.RUnlock()
	if ok && age < v.o.RefreshAfter {
		return k, nil
	}

	// One fetch at a time; whoever waited reads what it fetched.
	v.fetching.Lock()
	v.mu.RLock()
	tried := v.triedAt
	v.mu.RUnlock()
	if tried.IsZero() || now.Sub(tried) >= v.o.MinRefresh {
		v.refresh(ctx, now)
	}
	v.fetching.Unlock()

	v.mu.RLock()
	defer v.mu.RUnlock()
	if v.fetchedAt.IsZero() || now.Sub(v.fetchedAt) >= v.o.KeyLifetime {
		return nil, refuse(RefusedJWKSUnavailable, errors.New("no usable signing keys: the key set could not be fetched"))
	}
	if k, ok := v.keys[kid]; ok {
		return k, nil
	}
	return nil, refuse(RefusedUnknownKey, fmt.Errorf("kid %q is not in the key set", clip(kid)))
}

// refresh fetches the key set and, if it is usable, replaces the cached one.
func (v *TokenVerifier) refresh(ctx context.Context, now time.Time) {
	v.mu.Lock()
	v.triedAt = now
	v.mu.Unlock()
	keys, err := v.fetch(ctx)
	if v.o.Fetched != nil {
		v.o.Fetched(err == nil)
	}
	if err != nil {
		v.o.Log.Error("cloudflare_jwks_unavailable: fetching Cloudflare Access's signing keys failed; tokens are refused once the cached keys are too old", "component", "cloudflare",
			"certs_url", v.o.CertsURL, "err", err)
		return
	}
	v.mu.Lock()
	v.keys, v.fetchedAt = keys, now
	v.mu.Unlock()
	v.o.Log.Info("cloudflare signing keys fetched", "component", "cloudflare", "keys", len(keys))
}

// fetch reads the key set: the RSA signing keys it names, by kid.
func (v *TokenVerifier) fetch(ctx context.Context) (map[string]*rsa.PublicKey, error) {
	// The fetch outlives no request by much, but a caller that gave up
	// must not leave the others without keys.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), fetchTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, v.o.CertsURL, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := v.o.Client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKSBytes+1))
	if err != nil {
		return nil, err
	}
	if len(body) > maxJWKSBytes {
		return nil, fmt.Errorf("key set larger than %d bytes", maxJWKSBytes)
	}
	return ParseKeySet(body)
}

// ParseKeySet reads a JWKS: its RSA signature keys of at least 2048 bits,
// by kid. Other keys are skipped; a set with none is an error.
func ParseKeySet(body []byte) (map[string]*rsa.PublicKey, error) {
	var raw struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(body, &raw); err != nil {
		return nil, fmt.Errorf("key set: %w", err)
	}
	keys := make(map[string]*rsa.PublicKey, len(raw.Keys))
	for _, r := range raw.Keys {
		var k jose.JSONWebKey
		if err := k.UnmarshalJSON(r); err != nil {
			continue // a key type this library does not read is not ours to use
		}
		pub, ok := k.Key.(*rsa.PublicKey)
		if !ok || k.KeyID == "" || pub.N.BitLen() < minRSABits {
			continue
		}
		if (k.Use != "" && k.Use != "sig") || (k.Algorithm != "" && k.Algorithm != "RS256") {
			continue
		}
		keys[k.KeyID] = pub
	}
	if len(keys) == 0 {
		return nil, errors.New("key set has no RSA signing key")
	}
	return keys, nil
}

// clip bounds a value from a token before it is logged.
func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}

// httpsOnly follows a redirect of the keys' URL only to another https URL:
// keys fetched in the clear could be anyone's.
func httpsOnly(req *http.Request, via []*http.Request) error {
	if req.URL.Scheme != "https" {
		return fmt.Errorf("the Access keys' URL redirects to %s://%s, not https", req.URL.Scheme, req.URL.Host)
	}
	if len(via) >= 5 {
		return errors.New("the Access keys' URL redirects more than 5 times")
	}
	return nil
}
