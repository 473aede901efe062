package presence_test

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/clearance/clearance/pkg/presence"
	"github.com/clearance/clearance/pkg/report"
)

func key(t testing.TB, c elliptic.Curve) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(c, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// A fixed challenge keeps the golden bytes below readable.
var challenge = base64.RawURLEncoding.EncodeToString(bytes.Repeat([]byte{0xfb}, 32))

func sample() presence.Statement {
	return presence.Statement{
		Challenge: challenge,
		DeviceID:  "6F1C2B0A-5D3E-4C7B-9A8F-0E1D2C3B4A59",
		Origin:    "https://sso.example.com",
		Time:      time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC),
	}
}

const golden = "clearance-presence v1\n" +
	"challenge=-_v7-_v7-_v7-_v7-_v7-_v7-_v7-_v7-_v7-_v7-_s\n" +
	"device=6F1C2B0A-5D3E-4C7B-9A8F-0E1D2C3B4A59\n" +
	"origin=https://sso.example.com\n" +
	"time=2026-11-23T10:00:00Z\n"

func TestMarshalIsTheDocumentedFormat(t *testing.T) {
	t.Parallel()
	b, err := sample().Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != golden {
		t.Fatalf("Marshal =\n%s\nwant\n%s", b, golden)
	}
	s, err := presence.Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	if s != sample() {
		t.Fatalf("Parse(Marshal(s)) = %+v, want %+v", s, sample())
	}
}

func TestMarshalConvertsToUTC(t *testing.T) {
	t.Parallel()
	s := sample()
	s.Time = s.Time.In(time.FixedZone("CET", 3600))
	b, err := s.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != golden {
		t.Fatalf("Marshal of a non-UTC time =\n%s", b)
	}
}

func TestMarshalRefusesNonCanonicalFields(t *testing.T) {
	t.Parallel()
	for name, mut := range map[string]func(*presence.Statement){
		"short challenge":    func(s *presence.Statement) { s.Challenge = s.Challenge[:42] },
		"padded challenge":   func(s *presence.Statement) { s.Challenge += "=" },
		"empty device":       func(s *presence.Statement) { s.DeviceID = "" },
		"device with space":  func(s *presence.Statement) { s.DeviceID = "a b" },
		"upper-case origin":  func(s *presence.Statement) { s.Origin = "https://SSO.example.com" },
		"origin with path":   func(s *presence.Statement) { s.Origin = "https://sso.example.com/" },
		"fractional seconds": func(s *presence.Statement) { s.Time = s.Time.Add(time.Millisecond) },
		"five-digit year":    func(s *presence.Statement) { s.Time = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) },
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			s := sample()
			mut(&s)
			if _, err := s.Marshal(); !errors.Is(err, presence.ErrMalformed) {
				t.Fatalf("Marshal error = %v, want ErrMalformed", err)
			}
		})
	}
}

func TestSignVerifyRoundTrip(t *testing.T) {
	t.Parallel()
	for _, c := range []elliptic.Curve{elliptic.P256(), elliptic.P384()} {
		t.Run(c.Params().Name, func(t *testing.T) {
			t.Parallel()
			k := key(t, c)
			st, sig, err := presence.Sign(k, sample())
			if err != nil {
				t.Fatal(err)
			}
			if string(st) != golden {
				t.Fatalf("signed bytes are not the statement's canonical bytes:\n%s", st)
			}
			got, err := presence.Verify(k.Public(), st, sig)
			if err != nil {
				t.Fatal(err)
			}
			if got != sample() {
				t.Fatalf("Verify = %+v, want %+v", got, sample())
			}
		})
	}
}

func TestVerifyRejects(t *testing.T) {
	t.Parallel()
	k := key(t, elliptic.P256())
	other := key(t, elliptic.P256())
	p384 := key(t, elliptic.P384())
	st, sig, err := presence.Sign(k, sample())
	if err != nil {
		t.Fatal(err)
	}
	_, otherSig, _ := presence.Sign(other, sample())
	reportSig, err := report.SignPayload(k, st)
	if err != nil {
		t.Fatal(err)
	}
	// The digest without any context, and with the report's context, signed
	// directly: neither is a presence signature.
	raw := func(prefix string) []byte {
		h := sha256.Sum256(append([]byte(prefix), st...))
		s, _ := ecdsa.SignASN1(rand.Reader, k, h[:])
		return s
	}
	tampered := bytes.Replace(st, []byte("sso.example.com"), []byte("sso.example.org"), 1)
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	edPub, _, _ := ed25519.GenerateKey(rand.Reader)
	p224 := key(t, elliptic.P224())
	// A malformed statement, correctly signed, still fails: what a
	// compromised agent could send.
	badSigned := []byte(strings.Replace(golden, "time=2026-11-23T10:00:00Z", "time=2026-11-23T10:00:00.5Z", 1))
	badSig, _ := presence.SignBytes(k, badSigned)

	tests := []struct {
		name   string
		pub    crypto.PublicKey
		st     []byte
		sig    []byte
		want   error
		detail string
	}{
		{"another device's key", k.Public(), st, otherSig, presence.ErrBadSignature, ""},
		{"verified with another key", other.Public(), st, sig, presence.ErrBadSignature, ""},
		{"P-384 key, P-256 signature", p384.Public(), st, sig, presence.ErrBadSignature, ""},
		{"posture report signature", k.Public(), st, reportSig, presence.ErrBadSignature, ""},
		{"signature without context", k.Public(), st, raw(""), presence.ErrBadSignature, ""},
		{"signature with report context", k.Public(), st, raw(report.Context), presence.ErrBadSignature, ""},
		{"tampered statement", k.Public(), tampered, sig, presence.ErrBadSignature, ""},
		{"no signature", k.Public(), st, nil, presence.ErrBadSignature, ""},
		{"garbage signature", k.Public(), st, []byte{0x30, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01}, presence.ErrBadSignature, ""},
		{"oversized signature", k.Public(), st, make([]byte, presence.MaxSignatureSize+1), presence.ErrTooLarge, "signature"},
		{"oversized statement", k.Public(), make([]byte, presence.MaxStatementSize+1), sig, presence.ErrTooLarge, ""},
		{"rsa key", &rsaKey.PublicKey, st, sig, presence.ErrKeyType, "rsa"},
		{"ed25519 key", edPub, st, sig, presence.ErrKeyType, "ed25519"},
		{"P-224 key", p224.Public(), st, sig, presence.ErrKeyType, "p-224"},
		{"nil key", nil, st, sig, presence.ErrKeyType, ""},
		{"typed nil key", (*ecdsa.PublicKey)(nil), st, sig, presence.ErrKeyType, ""},
		{"signed but malformed", k.Public(), badSigned, badSig, presence.ErrMalformed, "time"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := presence.Verify(tc.pub, tc.st, tc.sig)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Verify error = %v, want %v", err, tc.want)
			}
			if got != (presence.Statement{}) {
				t.Fatalf("Verify returned a statement with its error: %+v", got)
			}
			if tc.detail != "" && !strings.Contains(strings.ToLower(err.Error()), tc.detail) {
				t.Fatalf("error %q does not mention %q", err, tc.detail)
			}
		})
	}
}

func TestParseRejects(t *testing.T) {
	t.Parallel()
	line := func(i int) string { return strings.SplitAfter(golden, "\n")[i] }
	replace := func(old, new string) string {
		if !strings.Contains(golden, old) {
			t.Fatalf("golden lacks %q", old)
		}
		return strings.Replace(golden, old, new, 1)
	}
	tests := map[string]string{
		"empty":                     "",
		"only a newline":            "\n",
		"no final newline":          strings.TrimSuffix(golden, "\n"),
		"two final newlines":        golden + "\n",
		"CRLF":                      strings.ReplaceAll(golden, "\n", "\r\n"),
		"blank line inside":         replace("device=", "\ndevice="),
		"extra field":               golden + "extra=1\n",
		"missing field":             strings.Replace(golden, line(2), "", 1),
		"duplicate field":           replace(line(2), line(2)+line(2)),
		"fields out of order":       line(0) + line(2) + line(1) + line(3) + line(4),
		"other version":             replace("clearance-presence v1", "clearance-presence v2"),
		"version with space":        replace("clearance-presence v1", "clearance-presence  v1"),
		"no version line":           strings.Replace(golden, line(0), "", 1),
		"space before value":        replace("device=", "device= "),
		"space after name":          replace("device=", "device ="),
		"trailing space":            replace("example.com\n", "example.com \n"),
		"tab":                       replace("device=", "device=\t"),
		"upper-case name":           replace("device=", "Device="),
		"colon separator":           replace("device=", "device:"),
		"NUL in value":              replace("device=6F1C", "device=6F\x001C"),
		"non-ASCII device":          replace("device=6F1C", "device=6F1Ç"),
		"long device":               replace("device=6F1C2B0A", "device="+strings.Repeat("A", 65)),
		"empty device":              replace("device=6F1C2B0A-5D3E-4C7B-9A8F-0E1D2C3B4A59", "device="),
		"device with dot":           replace("device=6F1C", "device=6F.1C"),
		"device with underscore":    replace("device=6F1C", "device=6F_1C"),
		"challenge with padding":    replace("_s\n", "_s=\n"),
		"challenge standard b64":    replace("-_v7", "+/v7"),
		"challenge non-canonical":   replace("-_s\n", "-_t\n"),
		"challenge too short":       replace("_s\n", "\n"),
		"challenge too long":        replace("_s\n", "_v7-_s\n"),
		"challenge empty":           replace(line(1), "challenge=\n"),
		"challenge percent-encoded": replace("-_v7-_v7-", "%2D_v7-_v7"),
		"http origin":               replace("https://sso", "http://sso"),
		"origin upper case":         replace("sso.example", "SSO.example"),
		"origin scheme upper case":  replace("https://", "HTTPS://"),
		"origin trailing slash":     replace("example.com\n", "example.com/\n"),
		"origin path":               replace("example.com\n", "example.com/saml\n"),
		"origin query":              replace("example.com\n", "example.com?x\n"),
		"origin fragment":           replace("example.com\n", "example.com#x\n"),
		"origin userinfo":           replace("https://sso", "https://u@sso"),
		"origin default port":       replace("example.com\n", "example.com:443\n"),
		"origin port zero":          replace("example.com\n", "example.com:0\n"),
		"origin port leading zero":  replace("example.com\n", "example.com:08443\n"),
		"origin port too big":       replace("example.com\n", "example.com:65536\n"),
		"origin port sign":          replace("example.com\n", "example.com:+8443\n"),
		"origin empty port":         replace("example.com\n", "example.com:\n"),
		"origin trailing dot":       replace("example.com\n", "example.com.\n"),
		"origin empty label":        replace("sso.example", "sso..example"),
		"origin hyphen label":       replace("sso.example", "-sso.example"),
		"origin underscore":         replace("sso.example", "s_o.example"),
		"origin unicode host":       replace("sso.example", "ßso.example"),
		"origin percent host":       replace("sso.example", "ss%6f.example"),
		"origin long label":         replace("sso.example", strings.Repeat("a", 64)+".example"),
		"origin long host":          replace("sso.example.com", strings.Repeat("a.", 127)+"com"),
		"origin short IPv4":         replace("sso.example.com", "127.1"),
		"origin IPv4 leading zero":  replace("sso.example.com", "127.000.0.1"),
		"origin IPv6 no brackets":   replace("sso.example.com", "::1"),
		"origin IPv6 upper case":    replace("sso.example.com", "[FE80::1]"),
		"origin IPv6 long form":     replace("sso.example.com", "[0:0:0:0:0:0:0:1]"),
		"origin IPv6 zone":          replace("sso.example.com", "[fe80::1%25en0]"),
		"origin IPv4-in-IPv6":       replace("sso.example.com", "[::ffff:127.0.0.1]"),
		"origin no host":            replace("sso.example.com", ""),
		"time with offset":          replace("10:00:00Z", "11:00:00+01:00"),
		"time with fraction":        replace("10:00:00Z", "10:00:00.000Z"),
		"time lower-case z":         replace("10:00:00Z", "10:00:00z"),
		"time lower-case t":         replace("2026-11-23T", "2026-11-23t"),
		"time with space":           replace("2026-11-23T", "2026-11-23 "),
		"time without seconds":      replace("10:00:00Z", "10:00Z"),
		"time invalid date":         replace("2026-11-23", "2026-02-30"),
		"time leap second":          replace("10:00:00Z", "23:59:60Z"),
		"time unix seconds":         replace("2026-11-23T10:00:00Z", "1795428000"),
		"oversized":                 golden + strings.Repeat("x", presence.MaxStatementSize),
	}
	for name, in := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			s, err := presence.Parse([]byte(in))
			if !errors.Is(err, presence.ErrMalformed) && !errors.Is(err, presence.ErrTooLarge) {
				t.Fatalf("Parse(%q) error = %v, want ErrMalformed or ErrTooLarge", in, err)
			}
			if s != (presence.Statement{}) {
				t.Fatalf("Parse returned a statement with its error: %+v", s)
			}
		})
	}
}

func TestParseAcceptsEveryOriginForm(t *testing.T) {
	t.Parallel()
	for _, origin := range []string{
		"https://sso.example.com",
		"https://sso.example.com:8443",
		"https://localhost:1",
		"https://127.0.0.1:65535",
		"https://[::1]:8443",
		"https://[2001:db8::1]",
		"https://xn--bcher-kva.example",
		"https://a",
		"https://" + strings.Repeat("a.", 125) + "com", // 253 characters
	} {
		s := sample()
		s.Origin = origin
		b, err := s.Marshal()
		if err != nil {
			t.Fatalf("Marshal with origin %q: %v", origin, err)
		}
		if _, err := presence.Parse(b); err != nil {
			t.Fatalf("Parse with origin %q: %v", origin, err)
		}
		if len(b) > presence.MaxStatementSize {
			t.Fatalf("a valid statement is %d bytes, over the limit", len(b))
		}
	}
}

func TestLongestStatementFits(t *testing.T) {
	t.Parallel()
	s := sample()
	s.DeviceID = strings.Repeat("A", presence.MaxDeviceIDLength)
	s.Origin = "https://" + strings.Repeat("a", 61) + "." + strings.Repeat("b", 63) + "." + strings.Repeat("c", 63) + "." + strings.Repeat("d", 61) + ":65535"
	b, err := s.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if len(b) > presence.MaxStatementSize {
		t.Fatalf("the longest valid statement is %d bytes, limit %d", len(b), presence.MaxStatementSize)
	}
	if _, err := presence.Parse(b); err != nil {
		t.Fatal(err)
	}
}

func TestCheckTime(t *testing.T) {
	t.Parallel()
	s := sample()
	for _, tc := range []struct {
		name string
		now  time.Time
		ok   bool
	}{
		{"just signed", s.Time, true},
		{"a minute later", s.Time.Add(time.Minute), true},
		{"at the limit", s.Time.Add(2 * time.Minute), true},
		{"too old", s.Time.Add(2*time.Minute + time.Second), false},
		{"agent slightly ahead", s.Time.Add(-20 * time.Second), true},
		{"agent far ahead", s.Time.Add(-31 * time.Second), false},
	} {
		err := s.CheckTime(tc.now, 2*time.Minute, 30*time.Second)
		if (err == nil) != tc.ok || (err != nil && !errors.Is(err, presence.ErrStale)) {
			t.Errorf("%s: CheckTime = %v, want ok=%v", tc.name, err, tc.ok)
		}
	}
}

func TestNewChallenge(t *testing.T) {
	t.Parallel()
	a, b := presence.NewChallenge(), presence.NewChallenge()
	if a == b {
		t.Fatal("two challenges are equal")
	}
	for _, c := range []string{a, b} {
		if err := presence.CheckChallenge(c); err != nil {
			t.Fatalf("NewChallenge() = %q: %v", c, err)
		}
	}
}

// FuzzParse feeds arbitrary bytes to Parse. Nothing may panic, and anything
// accepted must be canonical: it marshals back to exactly the same bytes.
func FuzzParse(f *testing.F) {
	f.Add([]byte(golden))
	f.Add([]byte{})
	f.Add([]byte(strings.Replace(golden, "sso.example.com", "[::1]:8443", 1)))
	f.Add([]byte(strings.Replace(golden, "10:00:00Z", "10:00:00+00:00", 1)))
	f.Add([]byte("clearance-presence v1\nchallenge=\ndevice=\norigin=\ntime=\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		s, err := presence.Parse(in)
		if err != nil {
			return
		}
		again, err := s.Marshal()
		if err != nil {
			t.Fatalf("Parse accepted %q but Marshal refuses it: %v", in, err)
		}
		if !bytes.Equal(again, in) {
			t.Fatalf("Parse accepted a non-canonical statement %q (canonical %q)", in, again)
		}
		if len(in) > presence.MaxStatementSize {
			t.Fatalf("Parse accepted %d bytes", len(in))
		}
	})
}

// FuzzVerify checks that no statement nobody signed is accepted, whatever
// the bytes.
func FuzzVerify(f *testing.F) {
	k := key(f, elliptic.P256())
	st, sig, err := presence.Sign(k, sample())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(st, sig)
	f.Add([]byte{}, []byte{})
	f.Add(st, []byte{0x30, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01})
	f.Fuzz(func(t *testing.T, in, s []byte) {
		if _, err := presence.Verify(k.Public(), in, s); err == nil && !bytes.Equal(in, st) {
			t.Fatalf("accepted a statement nobody signed: %q", in)
		}
	})
}
