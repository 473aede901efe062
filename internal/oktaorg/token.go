package oktaorg

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"strings"
	"time"

	"go.step.sm/crypto/jose"
)

// maxAssertionLife is the longest a client assertion may be valid for, as
// Okta requires (an hour).
const maxAssertionLife = time.Hour

// tokenLife is how long an access token lasts, as Okta's org authorization
// server issues them.
const tokenLife = time.Hour

// token is the org authorization server's token endpoint for the client
// credentials grant with a private_key_jwt client assertion.
func (o *Org) token(w http.ResponseWriter, r *http.Request) {
	oauthErr := func(status int, code, desc string) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		json.NewEncoder(w).Encode(map[string]string{"error": code, "error_description": desc})
	}
	if err := r.ParseForm(); err != nil {
		oauthErr(400, "invalid_request", "malformed form")
		return
	}
	f := r.PostForm
	if f.Get("grant_type") != "client_credentials" {
		oauthErr(400, "unsupported_grant_type", "The authorization grant type is not supported by the authorization server.")
		return
	}
	if f.Get("client_assertion_type") != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer" {
		oauthErr(401, "invalid_client", "client_assertion_type is invalid.")
		return
	}
	tok, err := jose.ParseSigned(f.Get("client_assertion"))
	if err != nil {
		oauthErr(401, "invalid_client", "The client_assertion token is invalid.")
		return
	}
	var unverified jose.Claims
	if err := tok.UnsafeClaimsWithoutVerification(&unverified); err != nil {
		oauthErr(401, "invalid_client", "The client_assertion token is invalid.")
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	app := o.apps[unverified.Issuer]
	if app == nil {
		oauthErr(401, "invalid_client", "The client_assertion token has an invalid issuer.")
		return
	}
	var c jose.Claims
	if err := tok.Claims(app.key, &c); err != nil {
		oauthErr(401, "invalid_client", "The client_assertion signature is invalid.")
		return
	}
	now := o.now()
	switch {
	case c.Issuer != c.Subject:
		oauthErr(401, "invalid_client", "The client_assertion token has an invalid subject.")
		return
	case len(c.Audience) != 1 || c.Audience[0] != o.TokenURL():
		oauthErr(401, "invalid_client", "The audience claim for client_assertion must be the endpoint invoked for the request.")
		return
	case c.Expiry == nil || !now.Before(c.Expiry.Time()):
		oauthErr(401, "invalid_client", "The client_assertion token is expired.")
		return
	case c.Expiry.Time().After(now.Add(maxAssertionLife + time.Minute)):
		oauthErr(401, "invalid_client", "The client_assertion token has an expiration too far in the future.")
		return
	case c.ID == "":
		oauthErr(401, "invalid_client", "The client_assertion token must contain a 'jti' claim.")
		return
	case o.jtis[c.ID]:
		oauthErr(401, "invalid_client", "The client_assertion token has already been used.")
		return
	}
	o.jtis[c.ID] = true
	scopes := strings.Fields(f.Get("scope"))
	if len(scopes) == 0 {
		oauthErr(400, "invalid_scope", "The authorization server resource does not have any configured default scopes, 'scope' must be provided.")
		return
	}
	got := Grant{}
	for _, s := range scopes {
		if !app.granted[s] {
			oauthErr(400, "invalid_scope", "One or more scopes are not configured for the authorization server resource.")
			return
		}
		// The token carries the scope, but the API answers 403 unless the
		// app's admin role allows it too.
		if app.role[s] {
			got[s] = true
		}
	}
	b := make([]byte, 24)
	rand.Read(b)
	at := "eyJfake." + hex.EncodeToString(b)
	o.access[at] = accessGrant{scopes: got, expires: now.Add(tokenLife)}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{
		"token_type": "Bearer", "expires_in": int(tokenLife / time.Second),
		"access_token": at, "scope": strings.Join(scopes, " "),
	})
}

// TokensIssued is how many access tokens the token endpoint has issued
// (revoked ones included).
func (o *Org) TokensIssued() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.access)
}

// RevokeAccessTokens revokes every access token issued so far.
func (o *Org) RevokeAccessTokens() {
	o.mu.Lock()
	defer o.mu.Unlock()
	for k, a := range o.access {
		a.expires = time.Time{}
		o.access[k] = a
	}
}
