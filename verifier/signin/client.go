package signin

import (
	"net"
	"net/http"
	"strings"
	"unicode/utf8"

	"github.com/clearance/clearance/verifier/ratelimit"
	"github.com/clearance/clearance/verifier/storage"
)

// withClient returns rec with the browser's address and User-Agent, which
// Okta's System Log also records for the same sign-in: the Okta poller
// matches its events to decisions with them.
func (h *Handler) withClient(r *http.Request, rec storage.DecisionRecord) storage.DecisionRecord {
	var trusted []*net.IPNet
	if h.Identify != nil {
		trusted = h.Identify.Trusted
	}
	if a := ratelimit.ClientAddr(r, trusted); a.IsValid() {
		rec.ClientIP = a.String()
	}
	rec.UserAgent = storableText(r.UserAgent())
	return rec
}

// storableText makes a header value storable: valid UTF-8, no NUL, at most
// storage.MaxTextLen bytes. A decision must be recorded whatever the
// browser sent, so the value is cleaned rather than refused.
func storableText(s string) string {
	s = strings.ToValidUTF8(strings.ReplaceAll(s, "\x00", ""), "\uFFFD")
	if len(s) <= storage.MaxTextLen {
		return s
	}
	s = s[:storage.MaxTextLen]
	for !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s
}
