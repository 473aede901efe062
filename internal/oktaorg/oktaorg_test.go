package oktaorg

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"go.step.sm/crypto/jose"
)

// TestTokenEndpointChecksAssertion: the fake's token endpoint refuses what
// Okta refuses, so a client that passes it builds assertions Okta takes.
func TestTokenEndpointChecksAssertion(t *testing.T) {
	t.Parallel()
	o := New()
	defer o.Close()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	o.AddServiceApp("0oaapp", &jose.JSONWebKey{Key: key.Public(), Algorithm: "ES256"}, Scopes("okta.users.read"), Scopes("okta.users.read"))

	now := time.Now()
	claims := func(edit func(*jose.Claims)) jose.Claims {
		c := jose.Claims{Issuer: "0oaapp", Subject: "0oaapp", Audience: jose.Audience{o.TokenURL()},
			IssuedAt: jose.NewNumericDate(now), Expiry: jose.NewNumericDate(now.Add(5 * time.Minute)), ID: "jti-" + t.Name()}
		if edit != nil {
			edit(&c)
		}
		return c
	}
	sign := func(k *ecdsa.PrivateKey, c jose.Claims) string {
		s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: k}, nil)
		if err != nil {
			t.Fatal(err)
		}
		tok, err := jose.Signed(s).Claims(c).CompactSerialize()
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	ask := func(assertion, scope string) (int, map[string]any) {
		form := url.Values{"grant_type": {"client_credentials"}, "scope": {scope},
			"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"}, "client_assertion": {assertion}}
		resp, err := o.Server.Client().Post(o.TokenURL(), "application/x-www-form-urlencoded", strings.NewReader(form.Encode()))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body map[string]any
		json.NewDecoder(resp.Body).Decode(&body)
		return resp.StatusCode, body
	}

	good := sign(key, claims(func(c *jose.Claims) { c.ID = "jti-good" }))
	if code, body := ask(good, "okta.users.read"); code != 200 || body["token_type"] != "Bearer" {
		t.Fatalf("a good assertion: %d %v", code, body)
	}
	if code, body := ask(good, "okta.users.read"); code != 401 || body["error"] != "invalid_client" {
		t.Errorf("a replayed jti: %d %v, want 401 invalid_client", code, body)
	}
	for name, tc := range map[string]struct {
		assertion string
		scope     string
		want      string
	}{
		"other key":         {sign(other, claims(nil)), "okta.users.read", "invalid_client"},
		"wrong audience":    {sign(key, claims(func(c *jose.Claims) { c.ID = "a"; c.Audience = jose.Audience{o.URL() + "/oauth2/default/v1/token"} })), "okta.users.read", "invalid_client"},
		"expired":           {sign(key, claims(func(c *jose.Claims) { c.ID = "b"; c.Expiry = jose.NewNumericDate(now.Add(-time.Minute)) })), "okta.users.read", "invalid_client"},
		"too long-lived":    {sign(key, claims(func(c *jose.Claims) { c.ID = "c"; c.Expiry = jose.NewNumericDate(now.Add(3 * time.Hour)) })), "okta.users.read", "invalid_client"},
		"no jti":            {sign(key, claims(func(c *jose.Claims) { c.ID = "" })), "okta.users.read", "invalid_client"},
		"sub differs":       {sign(key, claims(func(c *jose.Claims) { c.ID = "d"; c.Subject = "0oaother" })), "okta.users.read", "invalid_client"},
		"unknown client":    {sign(key, claims(func(c *jose.Claims) { c.ID = "e"; c.Issuer, c.Subject = "0oanone", "0oanone" })), "okta.users.read", "invalid_client"},
		"not a JWT":         {"not.a.jwt", "okta.users.read", "invalid_client"},
		"scope not granted": {sign(key, claims(func(c *jose.Claims) { c.ID = "f" })), "okta.logs.read", "invalid_scope"},
	} {
		if code, body := ask(tc.assertion, tc.scope); code == 200 || body["error"] != tc.want {
			t.Errorf("%s: %d %v, want %s", name, code, body, tc.want)
		}
	}
}

// TestRequestsValidatedAgainstOpenAPI: a request Okta's description does
// not allow is recorded (and refused), so client tests catch it.
func TestRequestsValidatedAgainstOpenAPI(t *testing.T) {
	t.Parallel()
	o := New()
	defer o.Close()
	o.AddToken("t", Scopes("okta.users.read", "okta.logs.read"))
	for _, path := range []string{"/api/v1/users?limit=many", "/api/v1/logs?since=yesterday", "/api/v1/users?limit=200"} {
		req, _ := http.NewRequest("GET", o.URL()+path, nil)
		req.Header.Set("Authorization", "SSWS t")
		resp, err := o.Server.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	if bad := o.Invalid(); len(bad) != 2 || !strings.Contains(bad[0], "limit") || !strings.Contains(bad[1], "since") {
		t.Errorf("invalid requests recorded: %v", bad)
	}
}
