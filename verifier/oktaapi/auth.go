package oktaapi

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"go.step.sm/crypto/jose"
)

// Scopes of Okta's management API the verifier reads with.
const (
	ScopeUsers  = "okta.users.read"
	ScopeGroups = "okta.groups.read"
	ScopeLogs   = "okta.logs.read"
	ScopeApps   = "okta.apps.read"
)

// DefaultScopes are requested by a service app unless configured otherwise.
var DefaultScopes = []string{ScopeUsers, ScopeGroups, ScopeLogs}

// Authorizer adds credentials to a request to Okta.
type Authorizer interface {
	Authorize(ctx context.Context, req *http.Request) error
	// Invalidate forgets a cached access token Okta refused, and reports
	// whether there was one (a new one may then work).
	Invalidate() bool
}

// Scoper is an Authorizer that can ask for other scopes: a service app's
// access token carries only the scopes requested. An API token carries its
// admin's role whatever is asked, so it is no Scoper.
type Scoper interface {
	WithScopes(scopes ...string) Authorizer
}

// APIToken authorizes with an SSWS API token, which acts with the admin
// role of the admin who created it.
type APIToken struct {
	token string
}

var _ Authorizer = (*APIToken)(nil)

// NewAPIToken returns an authorizer for token.
func NewAPIToken(token string) (*APIToken, error) {
	token = strings.TrimSpace(token)
	if token == "" || len(token) > 1024 || strings.ContainsAny(token, " \t\r\n") {
		return nil, errors.New("okta API token: empty or malformed")
	}
	return &APIToken{token: token}, nil
}

// Authorize sets Authorization: SSWS.
func (t *APIToken) Authorize(_ context.Context, req *http.Request) error {
	req.Header.Set("Authorization", "SSWS "+t.token)
	return nil
}

// Invalidate does nothing: an API token cannot be refreshed.
func (t *APIToken) Invalidate() bool { return false }

// String never shows the token.
func (t *APIToken) String() string { return "APIToken(redacted)" }

// ReadSecretFile reads a secret (an API token, a private key) from a file
// that only its owner may read.
func ReadSecretFile(path string) ([]byte, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%s is readable by group or others (mode %04o); chmod 600 it", path, fi.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if len(b) > 64<<10 {
		return nil, fmt.Errorf("%s is larger than a secret file should be", path)
	}
	return b, nil
}

// ServiceApp authorizes as an OAuth 2.0 service app with the client
// credentials grant: a client assertion (RFC 7523) signed with the app's
// private key is exchanged at the org authorization server's token
// endpoint for an access token, which is cached until shortly before it
// expires.
type ServiceApp struct {
	ClientID string
	Key      *jose.JSONWebKey
	Scopes   []string
	// TokenURL is https://{org}/oauth2/v1/token.
	TokenURL string
	HTTP     *http.Client
	Now      func() time.Time

	mu     sync.Mutex
	cached map[string]accessToken // by space-joined scopes
}

var (
	_ Authorizer = (*ServiceApp)(nil)
	_ Scoper     = (*ServiceApp)(nil)
)

type accessToken struct {
	value   string
	expires time.Time
}

// NewServiceApp returns a service-app authorizer for the org, with the
// private key in PEM or JWK form.
func NewServiceApp(org *url.URL, clientID string, keyBytes []byte, scopes []string) (*ServiceApp, error) {
	clientID = strings.TrimSpace(clientID)
	if clientID == "" || len(clientID) > 256 {
		return nil, errors.New("okta client ID: empty or too long")
	}
	key, err := jose.ParseKey(keyBytes)
	if err != nil {
		return nil, fmt.Errorf("okta private key: %w", err)
	}
	if key.IsPublic() {
		return nil, errors.New("okta private key: the file holds a public key")
	}
	if len(scopes) == 0 {
		scopes = DefaultScopes
	}
	u := *org
	u.Path = "/oauth2/v1/token"
	return &ServiceApp{ClientID: clientID, Key: key, Scopes: scopes, TokenURL: u.String()}, nil
}

// WithScopes returns an authorizer for the same app asking for scopes.
func (s *ServiceApp) WithScopes(scopes ...string) Authorizer {
	return &scoped{app: s, scopes: scopes}
}

type scoped struct {
	app    *ServiceApp
	scopes []string
}

func (s *scoped) Authorize(ctx context.Context, req *http.Request) error {
	return s.app.authorize(ctx, req, s.scopes)
}
func (s *scoped) Invalidate() bool { return s.app.invalidate(s.scopes) }

// Authorize sets Authorization: Bearer with a cached or new access token.
func (s *ServiceApp) Authorize(ctx context.Context, req *http.Request) error {
	return s.authorize(ctx, req, s.Scopes)
}

// Invalidate forgets the cached token.
func (s *ServiceApp) Invalidate() bool { return s.invalidate(s.Scopes) }

func (s *ServiceApp) invalidate(scopes []string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	key := strings.Join(scopes, " ")
	_, ok := s.cached[key]
	delete(s.cached, key)
	return ok
}

func (s *ServiceApp) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

func (s *ServiceApp) authorize(ctx context.Context, req *http.Request, scopes []string) error {
	key := strings.Join(scopes, " ")
	s.mu.Lock()
	defer s.mu.Unlock()
	if t, ok := s.cached[key]; ok && s.now().Before(t.expires) {
		req.Header.Set("Authorization", "Bearer "+t.value)
		return nil
	}
	t, err := s.fetch(ctx, key)
	if err != nil {
		return err
	}
	if s.cached == nil {
		s.cached = map[string]accessToken{}
	}
	s.cached[key] = t
	req.Header.Set("Authorization", "Bearer "+t.value)
	return nil
}

// assertionLifetime: Okta accepts client assertions valid for up to an hour;
// a short one limits what a captured assertion is good for.
const assertionLifetime = 5 * time.Minute

// Assertion returns a signed client assertion for the token endpoint.
func (s *ServiceApp) Assertion() (string, error) {
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.SignatureAlgorithm(s.Key.Algorithm), Key: s.Key},
		new(jose.SignerOptions).WithType("JWT"))
	if err != nil {
		return "", fmt.Errorf("client assertion signer: %w", err)
	}
	jti := make([]byte, 16)
	if _, err := rand.Read(jti); err != nil {
		return "", err
	}
	now := s.now()
	claims := jose.Claims{
		Issuer:   s.ClientID,
		Subject:  s.ClientID,
		Audience: jose.Audience{s.TokenURL},
		IssuedAt: jose.NewNumericDate(now),
		Expiry:   jose.NewNumericDate(now.Add(assertionLifetime)),
		ID:       hex.EncodeToString(jti),
	}
	return jose.Signed(signer).Claims(claims).CompactSerialize()
}

func (s *ServiceApp) fetch(ctx context.Context, scopes string) (accessToken, error) {
	assertion, err := s.Assertion()
	if err != nil {
		return accessToken{}, err
	}
	form := url.Values{
		"grant_type":            {"client_credentials"},
		"scope":                 {scopes},
		"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"},
		"client_assertion":      {assertion},
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.TokenURL, strings.NewReader(form.Encode()))
	if err != nil {
		return accessToken{}, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	hc := &http.Client{Timeout: DefaultTimeout}
	if s.HTTP != nil {
		cp := *s.HTTP
		hc = &cp
	}
	hc.CheckRedirect = refuseRedirects // the assertion goes to Okta's token endpoint only
	resp, err := hc.Do(req)
	if err != nil {
		return accessToken{}, fmt.Errorf("okta token endpoint: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return accessToken{}, fmt.Errorf("okta token endpoint: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return accessToken{}, fmt.Errorf("okta token endpoint: %w", parseError(resp.StatusCode, body))
	}
	var tr struct {
		AccessToken string `json:"access_token"`
		TokenType   string `json:"token_type"`
		ExpiresIn   int64  `json:"expires_in"`
	}
	if err := json.Unmarshal(body, &tr); err != nil || tr.AccessToken == "" || !strings.EqualFold(tr.TokenType, "Bearer") {
		return accessToken{}, errors.New("okta token endpoint: no bearer access token in the response")
	}
	if strings.ContainsAny(tr.AccessToken, " \r\n") || len(tr.AccessToken) > 16<<10 {
		return accessToken{}, errors.New("okta token endpoint: malformed access token")
	}
	life := time.Duration(min(max(tr.ExpiresIn, 0), 24*3600)) * time.Second
	// Renew a minute early so that a request never carries a token that
	// expires on the way.
	return accessToken{value: tr.AccessToken, expires: s.now().Add(life - time.Minute)}, nil
}
