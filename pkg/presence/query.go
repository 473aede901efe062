package presence

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"strings"
)

// Names both sides agree on.
const (
	// AgentPath is the agent's endpoint.
	AgentPath = "/v1/presence"
	// DefaultAgentPort and DefaultAgentAddr are where the agent listens
	// unless configured otherwise (clearance-agent --presence-listen); the
	// verifier sends browsers to the same port (--agent-presence-port).
	DefaultAgentPort = 47470
	DefaultAgentAddr = "127.0.0.1:47470"

	// ParamChallenge and ParamReturn are the agent URL's parameters.
	ParamChallenge = "challenge"
	ParamReturn    = "return"
	// ParamStatement and ParamSignature are the parameters of the agent's
	// redirect back to the presence URL.
	ParamStatement = "statement"
	ParamSignature = "signature"

	// MaxPresenceURLLength bounds the presence URL.
	MaxPresenceURLLength = 1024
	// maxQueryLength bounds a raw query before it is split: generous for
	// the longest valid one.
	maxQueryLength = 4096
)

// ErrQuery is the error for a malformed query string; match with errors.Is.
var ErrQuery = errors.New("presence query malformed")

// OriginOf checks that presenceURL is a URL the agent may sign for and
// returns its origin, the value of a statement's origin field. A presence
// URL is https://host[:port]/path in canonical form: lower-case host, no
// default port, no user info, query or fragment, and a path of plain
// characters (letters, digits, "/", "-", ".", "_", "~") without empty,
// "." or ".." segments, so it means the same to every parser.
func OriginOf(presenceURL string) (string, error) {
	bad := func(why string) (string, error) {
		return "", fmt.Errorf("presence URL %s", why)
	}
	if len(presenceURL) > MaxPresenceURLLength {
		return bad(fmt.Sprintf("longer than %d bytes", MaxPresenceURLLength))
	}
	rest, ok := strings.CutPrefix(presenceURL, "https://")
	if !ok {
		return bad("must start with https://")
	}
	i := strings.IndexByte(rest, '/')
	if i < 0 {
		return bad("has no path")
	}
	origin, path := "https://"+rest[:i], rest[i:]
	if err := CheckOrigin(origin); err != nil {
		return bad(fmt.Sprintf("has a bad origin: %v", err))
	}
	for _, seg := range strings.Split(path[1:], "/") {
		if seg == "" || seg == "." || seg == ".." {
			return bad("has an empty, \".\" or \"..\" path segment")
		}
		for j := 0; j < len(seg); j++ {
			c := seg[j]
			if !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~') {
				return bad("path may hold only letters, digits and - . _ ~ /")
			}
		}
	}
	// Belt and braces: the standard parser must read the same parts.
	u, err := url.Parse(presenceURL)
	if err != nil || u.Scheme != "https" || u.User != nil || u.Host != rest[:i] || u.Path != path || u.RawQuery != "" || u.Fragment != "" || u.String() != presenceURL {
		return bad("is not in canonical form")
	}
	return origin, nil
}

// AgentURL is where the verifier sends the browser: the agent at agentAddr
// (a loopback host:port) asked to sign challenge for presenceURL.
func AgentURL(agentAddr, challenge, presenceURL string) (string, error) {
	ap, err := netip.ParseAddrPort(agentAddr)
	if err != nil || !ap.Addr().IsLoopback() || ap.Port() == 0 {
		return "", fmt.Errorf("agent address %q is not a loopback IP address and port", agentAddr)
	}
	if err := CheckChallenge(challenge); err != nil {
		return "", err
	}
	if _, err := OriginOf(presenceURL); err != nil {
		return "", err
	}
	return "http://" + ap.String() + AgentPath + "?" +
		ParamChallenge + "=" + challenge + "&" + ParamReturn + "=" + url.QueryEscape(presenceURL), nil
}

// ParseAgentQuery reads the agent URL's raw query strictly: exactly one
// challenge (canonical, unescaped) and one return, in either order, and
// nothing else. The return URL is percent-decoded but not otherwise
// checked: the agent compares it with the presence URL it knows.
func ParseAgentQuery(rawQuery string) (challenge, returnURL string, err error) {
	vals, err := splitQuery(rawQuery, ParamChallenge, ParamReturn)
	if err != nil {
		return "", "", err
	}
	if err := CheckChallenge(vals[0]); err != nil {
		return "", "", fmt.Errorf("%w: %w", ErrQuery, err)
	}
	ret, err := url.QueryUnescape(vals[1])
	if err != nil {
		return "", "", fmt.Errorf("%w: %s is not properly percent-encoded", ErrQuery, ParamReturn)
	}
	if ret == "" || len(ret) > MaxPresenceURLLength {
		return "", "", fmt.Errorf("%w: %s is empty or longer than %d bytes", ErrQuery, ParamReturn, MaxPresenceURLLength)
	}
	return vals[0], ret, nil
}

// RedirectQuery is the query the agent appends to the presence URL.
func RedirectQuery(statement, signature []byte) string {
	return ParamStatement + "=" + base64.RawURLEncoding.EncodeToString(statement) +
		"&" + ParamSignature + "=" + base64.RawURLEncoding.EncodeToString(signature)
}

// ParseRedirectQuery reads the presence URL's raw query strictly: exactly
// one statement and one signature, in either order, each canonical
// base64url without padding and within its size limit, and nothing else.
func ParseRedirectQuery(rawQuery string) (statement, signature []byte, err error) {
	vals, err := splitQuery(rawQuery, ParamStatement, ParamSignature)
	if err != nil {
		return nil, nil, err
	}
	statement, err = decodeB64(vals[0], MaxStatementSize)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %s: %v", ErrQuery, ParamStatement, err)
	}
	signature, err = decodeB64(vals[1], MaxSignatureSize)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %s: %v", ErrQuery, ParamSignature, err)
	}
	if len(statement) == 0 || len(signature) == 0 {
		return nil, nil, fmt.Errorf("%w: empty %s or %s", ErrQuery, ParamStatement, ParamSignature)
	}
	return statement, signature, nil
}

// splitQuery returns the raw values of exactly the two named parameters.
// Names are compared unescaped; ";" is no separator.
func splitQuery(raw, a, b string) ([2]string, error) {
	var vals [2]string
	var seen [2]bool
	if len(raw) > maxQueryLength {
		return vals, fmt.Errorf("%w: longer than %d bytes", ErrQuery, maxQueryLength)
	}
	if raw == "" {
		return vals, fmt.Errorf("%w: empty; want %s and %s", ErrQuery, a, b)
	}
	for _, part := range strings.Split(raw, "&") {
		name, val, ok := strings.Cut(part, "=")
		if !ok {
			return vals, fmt.Errorf("%w: a parameter has no value", ErrQuery)
		}
		var i int
		switch name {
		case a:
			i = 0
		case b:
			i = 1
		default:
			return vals, fmt.Errorf("%w: unexpected parameter; want only %s and %s", ErrQuery, a, b)
		}
		if seen[i] {
			return vals, fmt.Errorf("%w: %s given twice", ErrQuery, name)
		}
		seen[i], vals[i] = true, val
	}
	for i, name := range [2]string{a, b} {
		if !seen[i] {
			return vals, fmt.Errorf("%w: %s missing", ErrQuery, name)
		}
	}
	return vals, nil
}
