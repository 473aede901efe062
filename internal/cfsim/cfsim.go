// Package cfsim stands in for Cloudflare in tests of the device posture
// integration: Access's signing keys served as a JWKS on loopback, the
// application tokens Access mints for a service token, and the posture
// integration's side of the call (batches of devices POSTed with the token,
// every answer checked against Cloudflare's contract).
package cfsim

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.step.sm/crypto/jose"
)

// Key is one signing key of the team.
type Key struct {
	KID  string
	Priv *rsa.PrivateKey
}

// NewKey makes an RSA-2048 key named kid.
func NewKey(kid string) (*Key, error) {
	priv, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	return &Key{KID: kid, Priv: priv}, nil
}

// PKCS8PEM is the private key as a PKCS#8 PEM block (what npm jose's
// importPKCS8 reads).
func (k *Key) PKCS8PEM() []byte {
	der, err := x509.MarshalPKCS8PrivateKey(k.Priv)
	if err != nil {
		panic(err) // an RSA key always marshals
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

// Access is a Zero Trust team's Access: its issuer, one application's AUD
// tag, and the keys it signs with, served at CertsURL.
type Access struct {
	Issuer string // https://<team>.cloudflareaccess.com
	AUD    string

	srv     *httptest.Server
	mu      sync.Mutex
	keys    []*Key // the current one first, as Access lists them
	failing bool
	fetches atomic.Int64
}

// New starts a team's key set on loopback with one key.
func New(team, aud string) (*Access, error) {
	k, err := NewKey("kid-1")
	if err != nil {
		return nil, err
	}
	a := &Access{Issuer: "https://" + team + ".cloudflareaccess.com", AUD: aud, keys: []*Key{k}}
	a.srv = httptest.NewServer(http.HandlerFunc(a.serveCerts))
	return a, nil
}

// CertsURL is where the keys are (the verifier's --cloudflare-certs-url).
func (a *Access) CertsURL() string { return a.srv.URL + "/cdn-cgi/access/certs" }

// Close stops serving the keys.
func (a *Access) Close() { a.srv.Close() }

// Fetches counts the key set's fetches.
func (a *Access) Fetches() int64 { return a.fetches.Load() }

// SetFailing makes the key set answer 503 (true) or the keys again.
func (a *Access) SetFailing(on bool) {
	a.mu.Lock()
	a.failing = on
	a.mu.Unlock()
}

// Current is the key Access signs new tokens with.
func (a *Access) Current() *Key {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.keys[0]
}

// Rotate makes a new current key; the previous one stays listed, as Access
// keeps it for seven days.
func (a *Access) Rotate(kid string) (*Key, error) {
	k, err := NewKey(kid)
	if err != nil {
		return nil, err
	}
	a.mu.Lock()
	a.keys = append([]*Key{k}, a.keys[:1]...)
	a.mu.Unlock()
	return k, nil
}

func (a *Access) serveCerts(w http.ResponseWriter, r *http.Request) {
	a.fetches.Add(1)
	a.mu.Lock()
	failing, keys := a.failing, append([]*Key(nil), a.keys...)
	a.mu.Unlock()
	if failing || r.URL.Path != "/cdn-cgi/access/certs" {
		http.Error(w, "unavailable", http.StatusServiceUnavailable)
		return
	}
	set := jose.JSONWebKeySet{}
	var certs []string
	for _, k := range keys {
		set.Keys = append(set.Keys, jose.JSONWebKey{Key: &k.Priv.PublicKey, KeyID: k.KID, Algorithm: "RS256", Use: "sig"})
		der, _ := x509.MarshalPKIXPublicKey(&k.Priv.PublicKey)
		certs = append(certs, string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})))
	}
	// Access also lists the keys as PEM; readers must ignore what they do not use.
	body := map[string]any{"keys": set.Keys, "public_cert": map[string]string{"kid": keys[0].KID, "cert": certs[0]}}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(body)
}

// Token is what an application token says; Sign turns it into a JWT.
type Token struct {
	Key       *Key
	Audience  []string
	Issuer    string
	IssuedAt  time.Time
	NotBefore time.Time
	Expiry    time.Time // zero: no exp claim
	// CommonName is the service token's Client ID.
	CommonName string
	// Algorithm overrides RS256 (to test refusals); only RS256 and HS256
	// are offered.
	Algorithm string
}

// ServiceToken is the token Access mints for the posture integration's
// service token at now, valid for a day, signed with the current key.
func (a *Access) ServiceToken(now time.Time) Token {
	return Token{
		Key: a.Current(), Audience: []string{a.AUD}, Issuer: a.Issuer,
		IssuedAt: now, NotBefore: now, Expiry: now.Add(24 * time.Hour),
		CommonName: "88bf3b6d86161464f6509f7219099e57.access",
	}
}

// Sign signs t.
func (t Token) Sign() (string, error) {
	claims := map[string]any{
		"aud": t.Audience, "iss": t.Issuer, "sub": "", "type": "app",
		"iat": t.IssuedAt.Unix(), "nbf": t.NotBefore.Unix(), "common_name": t.CommonName,
	}
	if !t.Expiry.IsZero() {
		claims["exp"] = t.Expiry.Unix()
	}
	alg, key := jose.SignatureAlgorithm(jose.RS256), any(t.Key.Priv)
	if t.Algorithm == "HS256" {
		// The public key's modulus as an HMAC secret: the confusion a
		// verifier that trusts the header's alg falls for.
		alg, key = jose.HS256, t.Key.Priv.PublicKey.N.Bytes()
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", t.Key.KID))
	if err != nil {
		return "", err
	}
	return jose.Signed(signer).Claims(claims).CompactSerialize()
}

// Device is one device as the posture integration sends it.
type Device struct {
	DeviceID     string `json:"device_id"`
	Email        string `json:"email"`
	SerialNumber string `json:"serial_number"`
	MACAddress   string `json:"mac_address"`
	VirtualIPv4  string `json:"virtual_ipv4"`
	Hostname     string `json:"hostname"`
}

// Request is the body Cloudflare posts.
type Request struct {
	Devices []Device `json:"devices"`
}

// Result is one device's answer.
type Result struct {
	S2SID string `json:"s2s_id"`
	Score int    `json:"score"`
}

// Response is the body the posture integration reads.
type Response struct {
	Result map[string]Result `json:"result"`
}

// Client posts batches as the posture integration does.
type Client struct {
	URL  string
	HTTP *http.Client
}

// Post sends body with token in Cf-Access-Jwt-Assertion and returns the
// status and body.
func (c *Client) Post(ctx context.Context, token string, body []byte) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.URL, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Cf-Access-Jwt-Assertion", token)
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	return resp.StatusCode, b, err
}

// Score posts devices and checks the answer against the contract: 200,
// JSON, every device asked about present and nothing else, each score an
// integer from 0 to 100.
func (c *Client) Score(ctx context.Context, token string, devices []Device) (Response, error) {
	body, err := json.Marshal(Request{Devices: devices})
	if err != nil {
		return Response{}, err
	}
	status, raw, err := c.Post(ctx, token, body)
	if err != nil {
		return Response{}, err
	}
	if status != http.StatusOK {
		return Response{}, fmt.Errorf("HTTP %d: %s", status, strings.TrimSpace(string(raw)))
	}
	return Check(devices, raw)
}

// Check reads a response body and checks it answers exactly devices.
func Check(devices []Device, raw []byte) (Response, error) {
	// Scores must be JSON integers: decode them as numbers first.
	var loose struct {
		Result map[string]struct {
			S2SID *string     `json:"s2s_id"`
			Score json.Number `json:"score"`
		} `json:"result"`
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(&loose); err != nil {
		return Response{}, fmt.Errorf("response is not the JSON Cloudflare reads: %w", err)
	}
	if loose.Result == nil {
		return Response{}, errors.New(`response has no "result" object`)
	}
	out := Response{Result: make(map[string]Result, len(loose.Result))}
	var errs []error
	for id, r := range loose.Result {
		n, err := r.Score.Int64()
		if err != nil || strings.ContainsAny(string(r.Score), ".eE") {
			errs = append(errs, fmt.Errorf("device %s: score %q is not an integer", id, r.Score))
			continue
		}
		if n < 0 || n > 100 {
			errs = append(errs, fmt.Errorf("device %s: score %d is not between 0 and 100", id, n))
		}
		if r.S2SID == nil {
			errs = append(errs, fmt.Errorf("device %s: no s2s_id", id))
			continue
		}
		out.Result[id] = Result{S2SID: *r.S2SID, Score: int(n)}
	}
	asked := map[string]bool{}
	for _, d := range devices {
		asked[d.DeviceID] = true
		if _, ok := out.Result[d.DeviceID]; !ok {
			errs = append(errs, fmt.Errorf("device %s asked about, not answered", d.DeviceID))
		}
	}
	for id := range out.Result {
		if !asked[id] {
			errs = append(errs, fmt.Errorf("device %s answered, never asked about", id))
		}
	}
	if len(errs) > 10 {
		errs = append(errs[:10], fmt.Errorf("and %d more", len(errs)-10))
	}
	return out, errors.Join(errs...)
}
