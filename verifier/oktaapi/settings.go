package oktaapi

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
)

// TokenEnv holds an API token when no token file is given.
const TokenEnv = "CLEARANCE_OKTA_API_TOKEN"

// Settings say which org to read and with which credential.
type Settings struct {
	OrgURL         string
	APITokenFile   string
	ClientID       string
	PrivateKeyFile string
	// Scopes a service app asks for; nil: DefaultScopes.
	Scopes []string
	// Getenv reads TokenEnv; nil: no environment.
	Getenv func(string) string
	// HTTP, when set, sends the requests (tests trust a test org's
	// certificate with it); nil: the system roots.
	HTTP *http.Client
}

// ErrNotConfigured: no org URL, so nothing is read from Okta.
var ErrNotConfigured = errors.New("no Okta org configured (--okta-org-url)")

// New builds a client from s and names the credential for people (never
// showing the secret).
func New(s Settings) (*Client, string, error) {
	if s.OrgURL == "" {
		return nil, "", ErrNotConfigured
	}
	org, err := ParseOrgURL(s.OrgURL)
	if err != nil {
		return nil, "", err
	}
	var (
		auth   Authorizer
		method string
	)
	switch {
	case s.ClientID != "":
		key, err := ReadSecretFile(s.PrivateKeyFile)
		if err != nil {
			return nil, "", fmt.Errorf("okta private key: %w", err)
		}
		app, err := NewServiceApp(org, s.ClientID, key, s.Scopes)
		if err != nil {
			return nil, "", err
		}
		app.HTTP = s.HTTP
		auth, method = app, "service app "+s.ClientID+" (private_key_jwt)"
	default:
		var token string
		switch {
		case s.APITokenFile != "":
			b, err := ReadSecretFile(s.APITokenFile)
			if err != nil {
				return nil, "", fmt.Errorf("okta API token: %w", err)
			}
			token, method = string(b), "API token from "+s.APITokenFile
		case s.Getenv != nil && s.Getenv(TokenEnv) != "":
			token, method = s.Getenv(TokenEnv), "API token from "+TokenEnv
		default:
			return nil, "", errors.New("no Okta API credential: set --okta-api-token-file (or " + TokenEnv + "), or --okta-client-id with --okta-private-key-file")
		}
		t, err := NewAPIToken(strings.TrimSpace(token))
		if err != nil {
			return nil, "", err
		}
		auth = t
	}
	return &Client{Org: org, Auth: auth, HTTP: s.HTTP}, method, nil
}
