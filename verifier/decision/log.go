package decision

import (
	"log/slog"
	"strings"
)

// LogAttrs returns the attributes of a one-line decision log, snake_case
// keys, for a static message such as
//
//	logger.LogAttrs(ctx, slog.LevelInfo, "sso_decision", d.LogAttrs()...)
//
// It names policies by id and status only: osquery's messages can be long and
// quote host details, and the decision log keeps the full findings. Nothing
// here is secret (no nonce, key, certificate or SAML content); the username
// is included because the decision log is per user.
func (d Decision) LogAttrs() []slog.Attr {
	attrs := make([]slog.Attr, 0, 14)
	attrs = append(attrs,
		slog.Bool("allow", d.Allow),
		slog.String("reason", string(d.Reason)),
		slog.String("user", d.Username),
		slog.String("device_id", d.DeviceID),
		slog.String("policy_set_version", d.PolicySetVersion),
	)
	if d.ReportSeq != 0 {
		attrs = append(attrs, slog.Uint64("report_seq", d.ReportSeq))
	}
	if d.ReportPolicySetVersion != "" && d.ReportPolicySetVersion != d.PolicySetVersion {
		attrs = append(attrs, slog.String("report_policy_set_version", d.ReportPolicySetVersion))
	}
	if !d.ObservedAt.IsZero() {
		attrs = append(attrs, slog.Duration("posture_age", d.PostureAge))
	}
	if d.CertVouching != VouchingNone {
		attrs = append(attrs, slog.String("cert_vouching", string(d.CertVouching)))
	}
	if d.LiveCheck != LiveCheckNone {
		attrs = append(attrs, slog.String("live_check", d.LiveCheck.String()))
	}
	if len(d.Failing) > 0 {
		attrs = append(attrs, slog.String("failing", joinFindings(d.Failing)))
		critical := 0
		for _, f := range d.Failing {
			if f.Critical {
				critical++
			}
		}
		if critical > 0 {
			attrs = append(attrs, slog.Int("critical_failing", critical))
		}
	}
	if d.Mode != "" && d.Mode != ModeEnforce {
		attrs = append(attrs, slog.String("mode", string(d.Mode)))
	}
	if d.WouldDeny != "" {
		attrs = append(attrs, slog.String("would_deny", string(d.WouldDeny)))
	}
	if len(d.Advisory) > 0 {
		attrs = append(attrs, slog.String("advisory", joinFindings(d.Advisory)))
	}
	if d.BindingMismatch {
		attrs = append(attrs, slog.Bool("user_not_bound", true))
	}
	return attrs
}

// joinFindings renders findings as "filevault:FAIL,firewall:ERROR".
func joinFindings(fs []Finding) string {
	var b strings.Builder
	for i, f := range fs {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(f.PolicyID)
		b.WriteByte(':')
		b.WriteString(string(f.Status))
	}
	return b.String()
}
