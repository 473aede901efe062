package report

import (
	"strings"
	"time"
	"unicode/utf8"

	"github.com/clearance/clearance/pkg/printable"
	agentv1 "github.com/clearance/clearance/proto/gen/clearance/agent/v1"
)

// MaxSettingsReasonSize bounds PostureReport.settings_rejection.reason, in
// bytes: enough for the settings' error and the keys they changed, as
// `clearance-agent status` shows them; the verifier keeps one per device.
const MaxSettingsReasonSize = 256

// SettingsReason is why, as a report carries it: on one line, every
// control or invisible character escaped (pkg/printable), cut to
// MaxSettingsReasonSize bytes on a character boundary, "…" marking the cut.
// An empty why, which no error gives, reads "no reason given". The
// result is always a reason Check accepts.
func SettingsReason(why string) string {
	s := printable.Line(strings.TrimSpace(why))
	if s == "" {
		return "no reason given"
	}
	if len(s) <= MaxSettingsReasonSize {
		return s
	}
	const more = "…"
	n := MaxSettingsReasonSize - len(more)
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + more
}

// checkSettingsRejection refuses a rejection a report may not carry: one
// with no time, a time before 1970 or after the report's observedAt (the
// agent stamps it with the time it rejected them, before the report), or
// a reason that is empty, longer than MaxSettingsReasonSize, not UTF-8 or
// holding a control character. nil (no rejection) passes.
func checkSettingsRejection(s *agentv1.SettingsRejection, observedAt time.Time) error {
	if s == nil {
		return nil
	}
	bad := func(msg string) error { return malformed("settings_rejection: %s", msg) }
	reason := s.GetReason()
	switch {
	case s.GetAt() == nil:
		return bad("at is missing")
	case s.GetAt().CheckValid() != nil:
		return malformed("settings_rejection: at: %v", s.GetAt().CheckValid())
	case !s.GetAt().AsTime().After(time.Unix(0, 0)):
		return bad("at is before 1970")
	case s.GetAt().AsTime().After(observedAt):
		return bad("at is after observed_at")
	case reason == "":
		return bad("reason is empty")
	case len(reason) > MaxSettingsReasonSize:
		return malformed("settings_rejection: reason is %d bytes, limit %d", len(reason), MaxSettingsReasonSize)
	case !utf8.ValidString(reason):
		return bad("reason is not UTF-8")
	case strings.ContainsFunc(reason, printable.Hidden):
		// What SettingsReason escapes: a control, format (bidirectional,
		// zero-width) or line-separator character would reach an admin's
		// terminal as it is through grpcurl.
		return bad("reason holds a control, format or line-separator character")
	}
	return nil
}
