package cloudflare_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"go.step.sm/crypto/jose"

	"github.com/clearance/clearance/internal/cfsim"
	"github.com/clearance/clearance/verifier/cloudflare"
)

const aud = "4714c1358e65fe4b408ad6d432a5f878f08194bdb4752441fd56faefa9b2b6f2"

var now = time.Date(2026, 12, 3, 4, 0, 0, 0, time.UTC)

func newAccess(t testing.TB) *cfsim.Access {
	t.Helper()
	a, err := cfsim.New("clearance-test", aud)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Close)
	return a
}

func newVerifier(t testing.TB, a *cfsim.Access, clock *time.Time) *cloudflare.TokenVerifier {
	t.Helper()
	v, err := cloudflare.NewTokenVerifier(cloudflare.TokenOptions{
		Team: "clearance-test", Audience: aud, CertsURL: a.CertsURL(),
		Now: func() time.Time { return *clock },
	})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func sign(t *testing.T, tok cfsim.Token) string {
	t.Helper()
	s, err := tok.Sign()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func reasonOf(err error) string {
	var te *cloudflare.TokenError
	if errors.As(err, &te) {
		return te.Reason
	}
	if err != nil {
		return "untyped: " + err.Error()
	}
	return ""
}

func TestVerify(t *testing.T) {
	t.Parallel()
	a := newAccess(t)
	foreign, err := cfsim.NewKey(a.Current().KID) // same kid, another key
	if err != nil {
		t.Fatal(err)
	}
	stranger, err := cfsim.NewKey("kid-stranger")
	if err != nil {
		t.Fatal(err)
	}
	good := a.ServiceToken(now.Add(-time.Minute))
	tampered := func() string {
		s := sign(t, good)
		parts := strings.Split(s, ".")
		parts[1] = parts[1][:len(parts[1])-2] + "AA"
		return strings.Join(parts, ".")
	}()
	mod := func(f func(*cfsim.Token)) string {
		tok := good
		f(&tok)
		return sign(t, tok)
	}
	for _, tc := range []struct {
		name, token, want string
	}{
		{"valid", sign(t, good), ""},
		{"valid within leeway of exp", mod(func(tk *cfsim.Token) { tk.Expiry = now.Add(-20 * time.Second) }), ""},
		{"audience among several", mod(func(tk *cfsim.Token) { tk.Audience = []string{"other", aud} }), ""},
		{"no token", "", cloudflare.RefusedNoToken},
		{"not a JWT", "not.a.jwt", cloudflare.RefusedMalformed},
		{"garbage", strings.Repeat("A", 100), cloudflare.RefusedNotCompact},
		{"oversized", strings.Repeat("A", cloudflare.MaxTokenBytes+1), cloudflare.RefusedMalformed},
		{"tampered claims", tampered, cloudflare.RefusedBadSignature},
		{"foreign key under a known kid", mod(func(tk *cfsim.Token) { tk.Key = foreign }), cloudflare.RefusedBadSignature},
		{"unknown kid", mod(func(tk *cfsim.Token) { tk.Key = stranger }), cloudflare.RefusedUnknownKey},
		{"HS256 with the public key", mod(func(tk *cfsim.Token) { tk.Algorithm = "HS256" }), cloudflare.RefusedAlgorithm},
		{"wrong audience", mod(func(tk *cfsim.Token) { tk.Audience = []string{"another-app"} }), cloudflare.RefusedAudience},
		{"no audience", mod(func(tk *cfsim.Token) { tk.Audience = []string{} }), cloudflare.RefusedAudience},
		{"null audience", mod(func(tk *cfsim.Token) { tk.Audience = nil }), cloudflare.RefusedMalformed},
		{"wrong issuer", mod(func(tk *cfsim.Token) { tk.Issuer = "https://evil.cloudflareaccess.com" }), cloudflare.RefusedIssuer},
		{"issuer without https", mod(func(tk *cfsim.Token) { tk.Issuer = "clearance-test.cloudflareaccess.com" }), cloudflare.RefusedIssuer},
		{"expired", mod(func(tk *cfsim.Token) { tk.Expiry = now.Add(-time.Minute) }), cloudflare.RefusedExpired},
		{"no exp", mod(func(tk *cfsim.Token) { tk.Expiry = time.Time{} }), cloudflare.RefusedExpired},
		{"not yet valid", mod(func(tk *cfsim.Token) { tk.NotBefore = now.Add(time.Minute) }), cloudflare.RefusedNotYetValid},
		{"issued in the future", mod(func(tk *cfsim.Token) { tk.IssuedAt = now.Add(time.Hour) }), cloudflare.RefusedNotYetValid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clock := now
			v := newVerifier(t, a, &clock)
			c, err := v.Verify(context.Background(), tc.token)
			if got := reasonOf(err); got != tc.want {
				t.Fatalf("Verify = %v (reason %q), want reason %q", err, got, tc.want)
			}
			if err == nil && c.CommonName != good.CommonName {
				t.Errorf("common_name = %q", c.CommonName)
			}
			if err != nil && tc.token != "" && strings.Contains(err.Error(), tc.token) {
				t.Errorf("the error repeats the token")
			}
		})
	}
}

// TestVerifyCompactOnly: Access sends a compact JWS, and only that form is
// read. The same genuine signature in the JWS JSON serialization (whose
// unprotected header no signature covers), or in a compact form that the
// parser would first strip of whitespace or padding, is refused.
func TestVerifyCompactOnly(t *testing.T) {
	t.Parallel()
	a := newAccess(t)
	compact := sign(t, a.ServiceToken(now.Add(-time.Minute)))
	parts := strings.Split(compact, ".")
	protected, payload, signature := parts[0], parts[1], parts[2]
	asJSON := func(v any) string {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	unprotected := map[string]string{"kid": a.Current().KID}
	for _, tc := range []struct{ name, token, want string }{
		{"compact", compact, ""},
		{"flattened JSON", asJSON(map[string]any{"protected": protected, "payload": payload, "signature": signature}), cloudflare.RefusedNotCompact},
		{"flattened JSON with an unprotected header", asJSON(map[string]any{"protected": protected, "header": unprotected, "payload": payload, "signature": signature}), cloudflare.RefusedNotCompact},
		{"general JSON", asJSON(map[string]any{"payload": payload, "signatures": []any{map[string]any{"protected": protected, "signature": signature}}}), cloudflare.RefusedNotCompact},
		{"general JSON with an unprotected header", asJSON(map[string]any{"payload": payload, "signatures": []any{map[string]any{"protected": protected, "header": unprotected, "signature": signature}}}), cloudflare.RefusedNotCompact},
		{"JSON after a space", " " + asJSON(map[string]any{"protected": protected, "payload": payload, "signature": signature}), cloudflare.RefusedNotCompact},
		{"compact with a line break", protected + ".\n" + payload + "." + signature, cloudflare.RefusedNotCompact},
		{"compact with padding", compact + "==", cloudflare.RefusedNotCompact},
		{"four parts", compact + ".e30", cloudflare.RefusedNotCompact},
		{"empty payload", protected + ".." + signature, cloudflare.RefusedNotCompact},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clock := now
			v := newVerifier(t, a, &clock)
			if _, err := v.Verify(context.Background(), tc.token); reasonOf(err) != tc.want {
				t.Fatalf("Verify = %v, want reason %q", err, tc.want)
			}
		})
	}
}

// TestKeyRotation: a token signed with a key made after the set was
// fetched is verified after one more fetch; made-up kids fetch at most once
// per MinRefresh.
func TestKeyRotation(t *testing.T) {
	t.Parallel()
	a := newAccess(t)
	clock := now
	v := newVerifier(t, a, &clock)
	ctx := context.Background()
	if _, err := v.Verify(ctx, sign(t, a.ServiceToken(now))); err != nil {
		t.Fatal(err)
	}
	if n := a.Fetches(); n != 1 {
		t.Fatalf("%d fetches for the first token, want 1", n)
	}
	for range 50 {
		if _, err := v.Verify(ctx, sign(t, a.ServiceToken(now))); err != nil {
			t.Fatal(err)
		}
	}
	if n := a.Fetches(); n != 1 {
		t.Fatalf("%d fetches after 51 tokens of a known key, want 1", n)
	}

	clock = clock.Add(cloudflare.DefaultMinRefresh)
	if _, err := a.Rotate("kid-2"); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(ctx, sign(t, a.ServiceToken(clock))); err != nil {
		t.Fatalf("token of the rotated key: %v", err)
	}
	if n := a.Fetches(); n != 2 {
		t.Fatalf("%d fetches after a rotation, want 2", n)
	}

	// A flood of made-up kids, concurrently: at most one more fetch.
	stranger, _ := cfsim.NewKey("made-up")
	tok := a.ServiceToken(clock)
	clock = clock.Add(cloudflare.DefaultMinRefresh)
	var wg sync.WaitGroup
	for i := range 200 {
		tok.Key = &cfsim.Key{KID: "made-up-" + string(rune('a'+i%26)), Priv: stranger.Priv}
		s := sign(t, tok)
		wg.Go(func() {
			if _, err := v.Verify(ctx, s); reasonOf(err) != cloudflare.RefusedUnknownKey {
				t.Errorf("made-up kid: %v", err)
			}
		})
	}
	wg.Wait()
	if n := a.Fetches(); n != 3 {
		t.Fatalf("%d fetches after 200 made-up kids, want 3", n)
	}
}

// TestKeySetUnavailable fails closed: no keys ever fetched refuses every
// token; keys fetched once keep working while fetching fails, until
// KeyLifetime.
func TestKeySetUnavailable(t *testing.T) {
	t.Parallel()
	a := newAccess(t)
	a.SetFailing(true)
	clock := now
	v := newVerifier(t, a, &clock)
	ctx := context.Background()
	tok := sign(t, a.ServiceToken(now))
	if _, err := v.Verify(ctx, tok); reasonOf(err) != cloudflare.RefusedJWKSUnavailable {
		t.Fatalf("no key set: %v", err)
	}
	a.SetFailing(false)
	if _, err := v.Verify(ctx, tok); reasonOf(err) != cloudflare.RefusedJWKSUnavailable {
		t.Fatalf("within MinRefresh of the failed fetch: %v, want still refused", err)
	}
	clock = clock.Add(cloudflare.DefaultMinRefresh)
	if _, err := v.Verify(ctx, tok); err != nil {
		t.Fatalf("after the key set came back: %v", err)
	}
	a.SetFailing(true)
	clock = clock.Add(2 * cloudflare.DefaultRefreshAfter)
	if _, err := v.Verify(ctx, sign(t, a.ServiceToken(clock))); err != nil {
		t.Fatalf("cached keys while the set is down: %v", err)
	}
	clock = clock.Add(cloudflare.DefaultKeyLifetime)
	if _, err := v.Verify(ctx, sign(t, a.ServiceToken(clock))); reasonOf(err) != cloudflare.RefusedJWKSUnavailable {
		t.Fatalf("keys past their lifetime: %v", err)
	}

	// A key set that cannot be reached at all.
	a.Close()
	v = newVerifier(t, a, &clock)
	if _, err := v.Verify(ctx, tok); reasonOf(err) != cloudflare.RefusedJWKSUnavailable {
		t.Fatalf("unreachable key set: %v", err)
	}
}

func TestTeamAndCertsURL(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"acme": "https://acme.cloudflareaccess.com", "ACME.cloudflareaccess.com": "https://acme.cloudflareaccess.com",
		"https://acme.cloudflareaccess.com/": "https://acme.cloudflareaccess.com",
		"":                                   "", "a b": "", "acme.example.com": "", "-acme": "", "https://acme.cloudflareaccess.com/x": "",
	} {
		got, err := cloudflare.TeamDomain(in)
		if (err == nil) != (want != "") || got != want {
			t.Errorf("TeamDomain(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for in, ok := range map[string]bool{
		"https://acme.cloudflareaccess.com/cdn-cgi/access/certs": true, "http://127.0.0.1:9/certs": true,
		"http://localhost:9/certs": true, "http://acme.cloudflareaccess.com/cdn-cgi/access/certs": false,
		"ftp://x/y": false, "certs": false,
	} {
		if err := cloudflare.CheckCertsURL(in); (err == nil) != ok {
			t.Errorf("CheckCertsURL(%q) = %v, want ok %v", in, err, ok)
		}
	}
}

func TestParseKeySet(t *testing.T) {
	t.Parallel()
	for name, body := range map[string]string{
		"empty": `{}`, "no keys": `{"keys":[]}`, "not JSON": `{`, "EC only": `{"keys":[{"kty":"EC","crv":"P-256","kid":"e","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]}`,
	} {
		if _, err := cloudflare.ParseKeySet([]byte(body)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &small.PublicKey, KeyID: "small", Algorithm: "RS256", Use: "sig"}}})
	if _, err := cloudflare.ParseKeySet(body); err == nil {
		t.Error("a 1024-bit key was accepted")
	}
}

// FuzzVerify: any header value is refused with a reason or verified; one
// that verifies is the compact form Access sends, and nothing panics.
func FuzzVerify(f *testing.F) {
	a := newAccess(f)
	tok, err := a.ServiceToken(now.Add(-time.Minute)).Sign()
	if err != nil {
		f.Fatal(err)
	}
	parts := strings.Split(tok, ".")
	for _, s := range []string{
		tok, tok + "==", " " + tok, tok + ".e30", parts[0] + ".." + parts[2],
		`{"protected":"` + parts[0] + `","payload":"` + parts[1] + `","signature":"` + parts[2] + `"}`,
		"", ".", "..", "a.b.c", strings.Repeat("A", 9000),
	} {
		f.Add(s)
	}
	clock := now
	v := newVerifier(f, a, &clock)
	f.Fuzz(func(t *testing.T, token string) {
		claims, err := v.Verify(context.Background(), token)
		if err != nil {
			var te *cloudflare.TokenError
			if !errors.As(err, &te) || te.Reason == "" {
				t.Fatalf("Verify(%q) = %v, not a refusal with a reason", token, err)
			}
			return
		}
		if claims == nil || strings.Count(token, ".") != 2 || strings.ContainsAny(token, " \t\r\n={}") {
			t.Fatalf("Verify(%q) accepted a token that is not compact: %+v", token, claims)
		}
	})
}
