package oktaapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
)

// Okta error codes the verifier acts on.
const (
	// CodeRateLimited is Okta's "API call exceeded rate limit due to too
	// many requests".
	CodeRateLimited = "E0000047"
	// CodeForbidden is "You do not have permission to perform the
	// requested action" (a missing admin role or scope).
	CodeForbidden = "E0000006"
	// CodeInvalidToken is "Invalid token provided" (SSWS).
	CodeInvalidToken = "E0000011"
)

// maxErrorText bounds each text taken from an error body.
const maxErrorText = 512

// Error is an Okta API error: the HTTP status and Okta's error body.
type Error struct {
	Status  int
	Code    string // errorCode, e.g. E0000047
	Summary string // errorSummary
	ID      string // errorId, which Okta support can look up
	Causes  []string
	// OAuth is the OAuth error code ("invalid_scope", "invalid_client")
	// when the body was an OAuth error instead.
	OAuth string
}

func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "okta: %d %s", e.Status, http.StatusText(e.Status))
	if e.Code != "" {
		fmt.Fprintf(&b, " %s", e.Code)
	}
	if e.OAuth != "" {
		fmt.Fprintf(&b, " %s", e.OAuth)
	}
	if e.Summary != "" {
		fmt.Fprintf(&b, ": %s", e.Summary)
	}
	for _, c := range e.Causes {
		fmt.Fprintf(&b, "; %s", c)
	}
	if e.ID != "" {
		fmt.Fprintf(&b, " (errorId %s)", e.ID)
	}
	return b.String()
}

// IsForbidden reports whether err is Okta refusing the credential this
// resource (403): the role or scope is missing, the credential is fine.
func IsForbidden(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Status == http.StatusForbidden
}

// IsUnauthorized reports whether err is Okta refusing the credential (401,
// or the token endpoint refusing the client).
func IsUnauthorized(err error) bool {
	var e *Error
	return errors.As(err, &e) && (e.Status == http.StatusUnauthorized || e.OAuth == "invalid_client")
}

// parseError reads Okta's error body; whatever it holds, the result is an
// *Error with at least the status.
func parseError(status int, body []byte) *Error {
	var raw struct {
		Code    string `json:"errorCode"`
		Summary string `json:"errorSummary"`
		ID      string `json:"errorId"`
		Causes  []struct {
			Summary string `json:"errorSummary"`
		} `json:"errorCauses"`
		OAuth       string `json:"error"`
		Description string `json:"error_description"`
	}
	e := &Error{Status: status}
	if json.Unmarshal(body, &raw) != nil {
		return e
	}
	e.Code, e.ID, e.OAuth = clean(raw.Code), clean(raw.ID), clean(raw.OAuth)
	e.Summary = clean(raw.Summary)
	if e.Summary == "" {
		e.Summary = clean(raw.Description)
	}
	for i, c := range raw.Causes {
		if i == 8 {
			break
		}
		if s := clean(c.Summary); s != "" {
			e.Causes = append(e.Causes, s)
		}
	}
	return e
}

// clean bounds s and drops control characters, so an error body cannot
// forge log lines.
func clean(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	if len(s) > maxErrorText {
		s = strings.ToValidUTF8(s[:maxErrorText], "") + "…"
	}
	return strings.TrimSpace(s)
}
