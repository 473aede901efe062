// Package presence owns the proof-of-presence statement: the small signed
// text with which the agent on a Mac tells the verifier "this browser, at
// this sign-in, is on the Mac that holds this device key". The agent signs
// it (agent/presence) and the verifier checks it at /saml/presence; both
// use this package, so they agree on every byte.
//
// # The statement
//
// A statement is five lines of ASCII, each ending in "\n", in this order and
// nothing else:
//
//	clearance-presence v1
//	challenge=<43 characters: 32 random bytes, base64url without padding>
//	device=<device id: 1 to 64 letters, digits or hyphens>
//	origin=https://<host>[:<port>]
//	time=<RFC 3339 UTC to the second, e.g. 2026-11-23T10:00:00Z>
//
// The origin is the verifier's SSO origin as the agent derives it from the
// presence URL it is configured with (OriginOf): scheme https, a lower-case
// host (DNS name, IPv4, or bracketed IPv6) and a port only when it is not
// 443. There is exactly one encoding of any statement: Parse accepts only
// bytes that Marshal would produce, so a signed statement cannot be
// re-encoded into another that means the same.
//
// # The signature
//
// ECDSA (ASN.1 DER) with the device key over H(Context || statement), where
// H is SHA-256 for P-256 keys and SHA-384 for P-384 keys, as for posture
// reports (pkg/report). Context differs from the report's, so a presence
// signature can never pass for a report, and neither can pass for a CSR or
// TLS signature. The signed bytes are the statement's exact bytes; they are
// sent as they were signed and never re-marshalled.
//
// # Verifying
//
// The verifier decodes the agent's redirect with ParseRedirectQuery, reads
// the device id with Parse to find that device's current enrolled key, then
// calls Verify, which checks the signature before it trusts anything. The
// caller then checks what only it knows: that the challenge is one it
// issued to this browser and has not used, that the origin is its own, and
// that the time is recent (CheckTime).
//
// # The redirect parameters
//
// The verifier sends the browser to AgentURL (the agent's
// http://127.0.0.1:47470/v1/presence?challenge=…&return=…); the agent reads
// it with ParseAgentQuery and redirects to
// <presence URL>?statement=…&signature=… (RedirectQuery), both values
// base64url without padding.
package presence

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/clearance/clearance/pkg/deviceid"
	"github.com/clearance/clearance/pkg/devicesig"
)

// Context is prefixed to the statement before hashing. It must never equal
// or be a prefix of pkg/report's Context.
const Context = "clearance presence statement v1\n"

// VersionLine is the statement's first line (without its newline).
const VersionLine = "clearance-presence v1"

// Limits.
const (
	// MaxStatementSize bounds a statement; the longest valid one (a
	// 253-character host name and a port) is under 460 bytes.
	MaxStatementSize = 512
	// MaxSignatureSize bounds a signature: DER ECDSA P-384 is at most
	// 104 bytes.
	MaxSignatureSize = 128
	// ChallengeSize is the number of random bytes in a challenge.
	ChallengeSize = 32
	// MaxDeviceIDLength matches the verifier's device ids.
	MaxDeviceIDLength = deviceid.MaxLength
	maxHostLength     = 253
)

// TimeLayout is the statement's time format: RFC 3339, UTC, whole seconds.
const TimeLayout = "2006-01-02T15:04:05Z"

// Errors; match with errors.Is.
var (
	ErrMalformed    = errors.New("presence statement malformed")
	ErrTooLarge     = errors.New("presence statement too large")
	ErrBadSignature = errors.New("presence signature does not verify")
	ErrKeyType      = devicesig.ErrKeyType
	ErrStale        = errors.New("presence statement outside its time window")
)

// Statement is what the agent vouches for.
type Statement struct {
	// Challenge is the verifier's one-time challenge, base64url without
	// padding, exactly as it was received.
	Challenge string
	DeviceID  string
	// Origin is the verifier's SSO origin, https://host[:port].
	Origin string
	// Time is when the agent signed, truncated to the second.
	Time time.Time
}

var fieldNames = [...]string{"challenge", "device", "origin", "time"}

// Marshal returns the statement's canonical bytes, or an error when a field
// is not in canonical form (Time is converted to UTC and must have no
// fraction of a second).
func (s Statement) Marshal() ([]byte, error) {
	if err := CheckChallenge(s.Challenge); err != nil {
		return nil, err
	}
	if err := checkDeviceID(s.DeviceID); err != nil {
		return nil, err
	}
	if err := CheckOrigin(s.Origin); err != nil {
		return nil, err
	}
	if s.Time.Nanosecond() != 0 {
		return nil, fmt.Errorf("%w: time has a fraction of a second", ErrMalformed)
	}
	ts := s.Time.UTC().Format(TimeLayout)
	if err := checkTime(ts); err != nil {
		return nil, err
	}
	var b bytes.Buffer
	b.WriteString(VersionLine + "\n")
	for i, v := range [...]string{s.Challenge, s.DeviceID, s.Origin, ts} {
		b.WriteString(fieldNames[i])
		b.WriteByte('=')
		b.WriteString(v)
		b.WriteByte('\n')
	}
	return b.Bytes(), nil
}

// Parse reads a statement strictly: the version line, the four fields in
// order, each once, each in canonical form, and nothing else. It does not
// check a signature: use Verify for anything to be trusted.
func Parse(b []byte) (Statement, error) {
	var s Statement
	if len(b) > MaxStatementSize {
		return s, fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, len(b), MaxStatementSize)
	}
	bad := func(format string, a ...any) (Statement, error) {
		return Statement{}, fmt.Errorf("%w: "+format, append([]any{ErrMalformed}, a...)...)
	}
	if len(b) == 0 || b[len(b)-1] != '\n' {
		return bad("does not end with a newline")
	}
	lines := strings.Split(string(b[:len(b)-1]), "\n")
	if lines[0] != VersionLine {
		return bad("first line is not %q", VersionLine)
	}
	if len(lines) != 1+len(fieldNames) {
		return bad("%d lines, want %d", len(lines), 1+len(fieldNames))
	}
	var vals [len(fieldNames)]string
	for i, name := range fieldNames {
		v, ok := strings.CutPrefix(lines[i+1], name+"=")
		if !ok {
			return bad("line %d is not %s=…", i+2, name)
		}
		vals[i] = v
	}
	s = Statement{Challenge: vals[0], DeviceID: vals[1], Origin: vals[2]}
	if err := checkTime(vals[3]); err != nil {
		return Statement{}, err
	}
	s.Time, _ = time.Parse(TimeLayout, vals[3])
	// Marshal checks every field; equal bytes prove the encoding canonical.
	again, err := s.Marshal()
	if err != nil {
		return Statement{}, err
	}
	if !bytes.Equal(again, b) {
		return bad("not in canonical form")
	}
	return s, nil
}

// CheckTime returns ErrStale unless s was signed within maxAge before now
// and no more than skew after it (clocks differ a little).
func (s Statement) CheckTime(now time.Time, maxAge, skew time.Duration) error {
	switch {
	case s.Time.After(now.Add(skew)):
		return fmt.Errorf("%w: signed at %s, %s ahead of the verifier's clock", ErrStale, s.Time.Format(TimeLayout), s.Time.Sub(now).Round(time.Second))
	case now.Sub(s.Time) > maxAge:
		return fmt.Errorf("%w: signed at %s, %s ago (limit %s)", ErrStale, s.Time.Format(TimeLayout), now.Sub(s.Time).Round(time.Second), maxAge)
	}
	return nil
}

// NewChallenge returns ChallengeSize random bytes from crypto/rand,
// base64url without padding.
func NewChallenge() string {
	b := make([]byte, ChallengeSize)
	_, _ = rand.Read(b) // never fails since Go 1.24; a failure crashes the program
	return base64.RawURLEncoding.EncodeToString(b)
}

// CheckChallenge returns nil when c is ChallengeSize bytes in canonical
// base64url without padding.
func CheckChallenge(c string) error {
	b, err := decodeB64(c, ChallengeSize)
	if err != nil {
		return fmt.Errorf("%w: challenge: %v", ErrMalformed, err)
	}
	if len(b) != ChallengeSize {
		return fmt.Errorf("%w: challenge is %d bytes, want %d", ErrMalformed, len(b), ChallengeSize)
	}
	return nil
}

// decodeB64 decodes canonical base64url without padding, of at most max
// bytes. The standard decoder skips CR and LF even in strict mode, so the
// alphabet is checked first.
func decodeB64(s string, max int) ([]byte, error) {
	if len(s) > base64.RawURLEncoding.EncodedLen(max) {
		return nil, fmt.Errorf("longer than %d bytes", max)
	}
	for i := 0; i < len(s); i++ {
		if !isB64(s[i]) {
			return nil, errors.New("not base64url without padding")
		}
	}
	b, err := base64.RawURLEncoding.Strict().DecodeString(s)
	if err != nil {
		return nil, errors.New("not canonical base64url without padding")
	}
	return b, nil
}

func isB64(c byte) bool {
	return 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_'
}

func checkDeviceID(id string) error {
	if id == "" || len(id) > MaxDeviceIDLength {
		return fmt.Errorf("%w: device id must be 1 to %d characters", ErrMalformed, MaxDeviceIDLength)
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-') {
			return fmt.Errorf("%w: device id may hold only letters, digits and hyphens", ErrMalformed)
		}
	}
	return nil
}

func checkTime(ts string) error {
	t, err := time.Parse(TimeLayout, ts)
	if err != nil || t.Format(TimeLayout) != ts {
		return fmt.Errorf("%w: time is not RFC 3339 UTC to the second (%s)", ErrMalformed, TimeLayout)
	}
	return nil
}

// CheckOrigin returns nil when o is a canonical https origin:
// "https://" host [":" port], host lower-case, port only when not 443.
func CheckOrigin(o string) error {
	rest, ok := strings.CutPrefix(o, "https://")
	if !ok {
		return fmt.Errorf("%w: origin must start with https://", ErrMalformed)
	}
	host, port := rest, ""
	if i := strings.LastIndexByte(rest, ':'); i >= 0 && !strings.HasSuffix(rest, "]") {
		host, port = rest[:i], rest[i+1:]
		if err := checkPort(port); err != nil {
			return err
		}
	}
	return checkHost(host)
}

func checkPort(p string) error {
	n, err := strconv.Atoi(p)
	switch {
	case err != nil || p == "" || p[0] < '1' || p[0] > '9' || strconv.Itoa(n) != p:
		return fmt.Errorf("%w: origin port must be a decimal number without leading zeros", ErrMalformed)
	case n > 65535:
		return fmt.Errorf("%w: origin port out of range", ErrMalformed)
	case n == 443:
		return fmt.Errorf("%w: origin names the default port 443; leave it out", ErrMalformed)
	}
	return nil
}

func checkHost(h string) error {
	bad := func(why string) error { return fmt.Errorf("%w: origin host %s", ErrMalformed, why) }
	if strings.HasPrefix(h, "[") {
		inner, ok := strings.CutSuffix(h[1:], "]")
		a, err := netip.ParseAddr(inner)
		if !ok || err != nil || !a.Is6() || a.Is4In6() || a.Zone() != "" || a.String() != inner {
			return bad("is not a canonical IPv6 address in brackets")
		}
		return nil
	}
	if h == "" || len(h) > maxHostLength {
		return bad(fmt.Sprintf("must be 1 to %d characters", maxHostLength))
	}
	if a, err := netip.ParseAddr(h); err == nil {
		if !a.Is4() || a.String() != h {
			return bad("is not a canonical IPv4 address")
		}
		return nil
	}
	labels := strings.Split(h, ".")
	for _, l := range labels {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return bad("has an empty, over-long or hyphen-edged label")
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-') {
				return bad("may hold only lower-case letters, digits, hyphens and dots")
			}
		}
	}
	// A name whose last label is all digits would read as a shortened
	// IPv4 address ("127.1") to some parsers.
	if last := labels[len(labels)-1]; strings.Trim(last, "0123456789") == "" {
		return bad("ends in a numeric label but is not an IPv4 address")
	}
	return nil
}

// Sign marshals s and signs the bytes. It returns exactly the bytes signed.
func Sign(signer crypto.Signer, s Statement) (statement, signature []byte, err error) {
	statement, err = s.Marshal()
	if err != nil {
		return nil, nil, err
	}
	signature, err = SignBytes(signer, statement)
	if err != nil {
		return nil, nil, err
	}
	return statement, signature, nil
}

// SignBytes signs already marshalled statement bytes.
func SignBytes(signer crypto.Signer, statement []byte) ([]byte, error) {
	sig, err := devicesig.Sign(signer, Context, statement)
	if err != nil {
		return nil, fmt.Errorf("signing presence statement: %w", err)
	}
	return sig, nil
}

// Verify checks signature over the exact statement bytes with pub, and only
// then parses them. The caller still checks the challenge, the device, the
// origin and the time against what it expects.
func Verify(pub crypto.PublicKey, statement, signature []byte) (Statement, error) {
	if len(statement) > MaxStatementSize {
		return Statement{}, fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, len(statement), MaxStatementSize)
	}
	if len(signature) > MaxSignatureSize {
		return Statement{}, fmt.Errorf("%w: signature is %d bytes, limit %d", ErrTooLarge, len(signature), MaxSignatureSize)
	}
	if ok, err := devicesig.Verify(pub, Context, statement, signature); err != nil {
		return Statement{}, err
	} else if !ok {
		return Statement{}, ErrBadSignature
	}
	return Parse(statement)
}
