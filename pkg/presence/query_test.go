package presence_test

import (
	"bytes"
	"crypto/elliptic"
	"encoding/base64"
	"errors"
	"net/netip"
	"net/url"
	"strings"
	"testing"

	"github.com/clearance/clearance/pkg/presence"
)

const presenceURL = "https://sso.example.com/saml/presence"

func TestOriginOf(t *testing.T) {
	t.Parallel()
	good := map[string]string{
		presenceURL: "https://sso.example.com",
		"https://sso.example.com:8443/saml/presence": "https://sso.example.com:8443",
		"https://127.0.0.1:9443/saml/presence":       "https://127.0.0.1:9443",
		"https://[::1]:9443/saml/presence":           "https://[::1]:9443",
		"https://idp.example.com/a-b/c_d/e.f/~g":     "https://idp.example.com",
	}
	for in, want := range good {
		got, err := presence.OriginOf(in)
		if err != nil || got != want {
			t.Errorf("OriginOf(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{
		"",
		"http://sso.example.com/saml/presence",
		"HTTPS://sso.example.com/saml/presence",
		"https://sso.example.com",
		"https://sso.example.com/",
		"https://SSO.example.com/saml/presence",
		"https://sso.example.com:443/saml/presence",
		"https://user@sso.example.com/saml/presence",
		"https://user:pw@sso.example.com/saml/presence",
		"https://sso.example.com/saml/presence?x=1",
		"https://sso.example.com/saml/presence?",
		"https://sso.example.com/saml/presence#x",
		"https://sso.example.com/saml/presence/",
		"https://sso.example.com//saml/presence",
		"https://sso.example.com/saml/../presence",
		"https://sso.example.com/saml/./presence",
		"https://sso.example.com/saml%2Fpresence",
		"https://sso.example.com/saml/pres ence",
		"https://sso.example.com\\saml\\presence",
		"https://sso.example.com/saml/presence\n",
		"https://sso.example.com:/saml/presence",
		"https:///saml/presence",
		"https://evil.example@sso.example.com/saml/presence",
		"https://sso.example.com/" + strings.Repeat("a", presence.MaxPresenceURLLength),
	} {
		if got, err := presence.OriginOf(in); err == nil {
			t.Errorf("OriginOf(%q) = %q, want an error", in, got)
		}
	}
}

func TestAgentURLRoundTrip(t *testing.T) {
	t.Parallel()
	c := presence.NewChallenge()
	u, err := presence.AgentURL(presence.DefaultAgentAddr, c, presenceURL)
	if err != nil {
		t.Fatal(err)
	}
	want := "http://127.0.0.1:47470/v1/presence?challenge=" + c + "&return=https%3A%2F%2Fsso.example.com%2Fsaml%2Fpresence"
	if u != want {
		t.Fatalf("AgentURL = %q, want %q", u, want)
	}
	parsed, err := url.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	gotC, gotR, err := presence.ParseAgentQuery(parsed.RawQuery)
	if err != nil || gotC != c || gotR != presenceURL {
		t.Fatalf("ParseAgentQuery = %q, %q, %v", gotC, gotR, err)
	}
	// The other order, as a hand-written link might have it.
	if _, _, err := presence.ParseAgentQuery("return=" + url.QueryEscape(presenceURL) + "&challenge=" + c); err != nil {
		t.Fatal(err)
	}
	for _, addr := range []string{"", "localhost:47470", "10.0.0.1:47470", "0.0.0.0:47470", "127.0.0.1", "127.0.0.1:0", "[::1]"} {
		if _, err := presence.AgentURL(addr, c, presenceURL); err == nil {
			t.Errorf("AgentURL(%q) accepted a non-loopback or portless address", addr)
		}
	}
	if u, err := presence.AgentURL("[::1]:47470", c, presenceURL); err != nil || !strings.HasPrefix(u, "http://[::1]:47470/v1/presence?") {
		t.Errorf("AgentURL on IPv6 loopback = %q, %v", u, err)
	}
	if _, err := presence.AgentURL(presence.DefaultAgentAddr, "short", presenceURL); err == nil {
		t.Error("AgentURL accepted a bad challenge")
	}
	if _, err := presence.AgentURL(presence.DefaultAgentAddr, c, "https://sso.example.com/x?y"); err == nil {
		t.Error("AgentURL accepted a presence URL with a query")
	}
}

func TestParseAgentQueryRejects(t *testing.T) {
	t.Parallel()
	c := presence.NewChallenge()
	ret := "return=" + url.QueryEscape(presenceURL)
	for name, q := range map[string]string{
		"empty":                "",
		"no challenge":         ret,
		"no return":            "challenge=" + c,
		"second return":        "challenge=" + c + "&" + ret + "&" + ret,
		"second challenge":     "challenge=" + c + "&challenge=" + c + "&" + ret,
		"extra parameter":      "challenge=" + c + "&" + ret + "&x=1",
		"empty parameter":      "challenge=" + c + "&" + ret + "&",
		"bare name":            "challenge=" + c + "&" + ret + "&x",
		"semicolon separator":  "challenge=" + c + ";" + ret,
		"escaped name":         "chall%65nge=" + c + "&" + ret,
		"upper-case name":      "Challenge=" + c + "&" + ret,
		"escaped challenge":    "challenge=" + url.QueryEscape(c[:10]+"=") + c[10:] + "&" + ret,
		"percent challenge":    "challenge=%2D" + c[1:] + "&" + ret,
		"short challenge":      "challenge=" + c[:42] + "&" + ret,
		"padded challenge":     "challenge=" + c + "%3D&" + ret,
		"empty challenge":      "challenge=&" + ret,
		"empty return":         "challenge=" + c + "&return=",
		"bad escape in return": "challenge=" + c + "&return=https%3A%2F%2Fsso%zz",
		"huge return":          "challenge=" + c + "&return=" + strings.Repeat("a", presence.MaxPresenceURLLength+1),
		"huge query":           "challenge=" + c + "&" + ret + strings.Repeat("&x=1", 2000),
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			if _, _, err := presence.ParseAgentQuery(q); !errors.Is(err, presence.ErrQuery) {
				t.Fatalf("ParseAgentQuery(%q) error = %v, want ErrQuery", q, err)
			}
		})
	}
}

func TestRedirectQueryRoundTrip(t *testing.T) {
	t.Parallel()
	k := key(t, elliptic.P384())
	st, sig, err := presence.Sign(k, sample())
	if err != nil {
		t.Fatal(err)
	}
	q := presence.RedirectQuery(st, sig)
	if !strings.HasPrefix(q, "statement=") || !strings.Contains(q, "&signature=") || strings.Count(q, "=") != 2 || strings.ContainsAny(q, "+/%") {
		t.Fatalf("RedirectQuery = %q", q)
	}
	// What the browser brings back must be what url.Values reads too.
	v, err := url.ParseQuery(q)
	if err != nil || v.Get(presence.ParamStatement) != base64.RawURLEncoding.EncodeToString(st) {
		t.Fatalf("url.ParseQuery(%q) = %v, %v", q, v, err)
	}
	gotSt, gotSig, err := presence.ParseRedirectQuery(q)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(gotSt, st) || !bytes.Equal(gotSig, sig) {
		t.Fatal("ParseRedirectQuery changed the bytes")
	}
	if _, err := presence.Verify(k.Public(), gotSt, gotSig); err != nil {
		t.Fatal(err)
	}
	swapped := "signature=" + base64.RawURLEncoding.EncodeToString(sig) + "&statement=" + base64.RawURLEncoding.EncodeToString(st)
	if _, _, err := presence.ParseRedirectQuery(swapped); err != nil {
		t.Fatalf("either order is accepted: %v", err)
	}
}

func TestParseRedirectQueryRejects(t *testing.T) {
	t.Parallel()
	st := base64.RawURLEncoding.EncodeToString([]byte(golden))
	sig := base64.RawURLEncoding.EncodeToString(bytes.Repeat([]byte{1}, 70))
	good := "statement=" + st + "&signature=" + sig
	if _, _, err := presence.ParseRedirectQuery(good); err != nil {
		t.Fatal(err)
	}
	for name, q := range map[string]string{
		"empty":              "",
		"no signature":       "statement=" + st,
		"no statement":       "signature=" + sig,
		"twice":              good + "&signature=" + sig,
		"extra":              good + "&RelayState=x",
		"empty statement":    "statement=&signature=" + sig,
		"empty signature":    "statement=" + st + "&signature=",
		"padded":             "statement=" + st + "%3D%3D&signature=" + sig,
		"standard base64":    "statement=" + base64.RawStdEncoding.EncodeToString([]byte(golden+"??>")) + "&signature=" + sig,
		"newline in value":   "statement=" + st[:10] + "%0A" + st[10:] + "&signature=" + sig,
		"raw newline":        "statement=" + st[:10] + "\n" + st[10:] + "&signature=" + sig,
		"oversized sig":      "statement=" + st + "&signature=" + base64.RawURLEncoding.EncodeToString(make([]byte, presence.MaxSignatureSize+1)),
		"oversized stmt":     "statement=" + base64.RawURLEncoding.EncodeToString(make([]byte, presence.MaxStatementSize+1)) + "&signature=" + sig,
		"non-canonical bits": "statement=" + st + "&signature=" + sig[:len(sig)-1] + "B",
		"semicolon":          "statement=" + st + ";signature=" + sig,
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			if _, _, err := presence.ParseRedirectQuery(q); !errors.Is(err, presence.ErrQuery) {
				t.Fatalf("ParseRedirectQuery(%q) error = %v, want ErrQuery", q, err)
			}
		})
	}
}

// FuzzParseQuery feeds arbitrary raw queries to both query parsers. Nothing
// may panic; what they accept must be within limits and canonical.
func FuzzParseQuery(f *testing.F) {
	c := strings.Repeat("A", 43)
	f.Add("challenge=" + c + "&return=" + url.QueryEscape(presenceURL))
	f.Add("statement=" + base64.RawURLEncoding.EncodeToString([]byte(golden)) + "&signature=AQID")
	f.Add("")
	f.Add("a=b&a=b;c")
	f.Fuzz(func(t *testing.T, q string) {
		if ch, ret, err := presence.ParseAgentQuery(q); err == nil {
			if presence.CheckChallenge(ch) != nil || ret == "" || len(ret) > presence.MaxPresenceURLLength {
				t.Fatalf("ParseAgentQuery(%q) accepted %q, %q", q, ch, ret)
			}
		}
		if st, sig, err := presence.ParseRedirectQuery(q); err == nil {
			if len(st) == 0 || len(st) > presence.MaxStatementSize || len(sig) == 0 || len(sig) > presence.MaxSignatureSize {
				t.Fatalf("ParseRedirectQuery(%q) accepted sizes %d, %d", q, len(st), len(sig))
			}
			if again := presence.RedirectQuery(st, sig); len(again) != len(q) {
				t.Fatalf("ParseRedirectQuery accepted a non-canonical query %q (canonical %q)", q, again)
			}
		}
	})
}

func TestDefaultAgentAddrUsesDefaultPort(t *testing.T) {
	ap, err := netip.ParseAddrPort(presence.DefaultAgentAddr)
	if err != nil || int(ap.Port()) != presence.DefaultAgentPort || !ap.Addr().IsLoopback() {
		t.Fatalf("DefaultAgentAddr %q does not name loopback port %d", presence.DefaultAgentAddr, presence.DefaultAgentPort)
	}
}
