// Package reason is the vocabulary of sign-in outcomes: every reason a
// sign-in request is refused, a browser names no device, or a device is
// allowed or denied, as the stable code that is logged, stored in the
// decision log, counted in metrics and used by verifier/web to choose what
// the person at the Mac is told.
//
// The values never change once released: the decision log, dashboards and
// alerts key on them. Adding a code is fine; renaming one is not.
package reason

// Code is one stable, machine-readable outcome, snake_case.
type Code string

// String returns the code itself.
func (c Code) String() string { return string(c) }

// Refused sign-in requests: the AuthnRequest cannot be served at all (a
// request problem, not a device problem). Nothing is decided about a device.
const (
	NotConfigured Code = "okta_not_configured"
	// RequestCertMissing: Okta's request-signing certificate is not set and
	// unsigned requests are not allowed.
	RequestCertMissing Code = "okta_request_cert_missing"
	BadBinding         Code = "bad_binding"
	Oversized          Code = "oversized_request"
	BadEncoding        Code = "bad_encoding"
	NotDeflate         Code = "not_deflate"
	MalformedXML       Code = "malformed_xml"
	DTD                Code = "dtd_forbidden"
	WrongVersion       Code = "wrong_version"
	BadID              Code = "bad_request_id"
	WrongIssuer        Code = "wrong_issuer"
	WrongACS           Code = "wrong_acs"
	WrongBinding       Code = "wrong_protocol_binding"
	WrongDestination   Code = "wrong_destination"
	StaleRequest       Code = "stale_request"
	FutureRequest      Code = "future_request"
	Replayed           Code = "replayed_request"
	MissingSignature   Code = "missing_signature"
	BadSignature       Code = "bad_signature"
	UnsupportedSigAlg  Code = "unsupported_sig_alg"
	NoSubject          Code = "missing_subject"
	BadSubject         Code = "bad_subject"
	Passive            Code = "passive_not_supported"
)

// "Check again" on a held sign-in.
const (
	RetryBadToken  Code = "bad_retry_token"
	RetryExpired   Code = "sign_in_expired"
	RetryOtherCert Code = "retry_from_other_certificate"
	RetryDone      Code = "sign_in_already_completed"
	// RetryRestart: the held sign-in is older than the request Okta would
	// still accept an answer to; the person starts over at Okta.
	RetryRestart Code = "sign_in_restarted"
	// RetryAgentRunning: the held sign-in was bound by a certificate
	// (--browser-binding either) while the Mac had no agent connected; it
	// has one now, so the person starts over and the agent proves the Mac.
	RetryAgentRunning Code = "sign_in_restarted_agent_running"
)

// The browser's certificate names no usable device. These are decisions
// (kept in the decision log), not malformed requests.
const (
	NoClientCert      Code = "no_client_cert"
	UntrustedCert     Code = "untrusted_client_cert"
	ExpiredCert       Code = "expired_client_cert"
	UnknownCert       Code = "unknown_client_cert"
	SupersededCert    Code = "superseded_client_cert"
	RevokedCert       Code = "revoked_client_cert"
	SpoofedCertHeader Code = "spoofed_client_cert_header"
	BadCertHeader     Code = "bad_client_cert_header"
)

// The agent's proof of presence (the browser came back from the agent on
// loopback with a signed statement, or could not be sent there).
const (
	// AgentNotRunning: the browser's Mac (known from an earlier sign-in) has
	// no agent connected, so it was not sent to the loopback.
	AgentNotRunning Code = "agent_not_running"
	// PresenceMalformed: the statement or its signature is not well formed.
	PresenceMalformed Code = "presence_malformed"
	// PresenceUnknown: the statement answers no sign-in this verifier started.
	PresenceUnknown Code = "presence_unknown_sign_in"
	// PresenceOtherBrowser: the sign-in was started in another browser (its
	// sign-in cookie is missing or different).
	PresenceOtherBrowser Code = "presence_other_browser"
	// PresenceReplayed: the sign-in was already completed by a proof.
	PresenceReplayed Code = "presence_replayed"
	// PresenceExpired: the proof came back after the challenge expired.
	PresenceExpired Code = "presence_expired"
	// PresenceWrongOrigin: the statement was signed for another verifier.
	PresenceWrongOrigin Code = "presence_wrong_origin"
	// PresenceUnknownDevice: the statement names no enrolled device.
	PresenceUnknownDevice Code = "presence_unknown_device"
	// PresenceBadSignature: the statement is not signed by the named
	// device's current key (another key, or one replaced by re-enrollment).
	PresenceBadSignature Code = "presence_bad_signature"
	// PresenceOtherDevice: the sign-in was sent to the agent because the
	// browser's certificate named a Mac whose agent is connected, and the
	// proof came from another Mac.
	PresenceOtherDevice Code = "presence_other_device"
	// PresenceClock: the statement's time is too far from the verifier's.
	PresenceClock Code = "presence_clock_skew"
	// RetryOtherBrowser: "Check again" from another browser than the one
	// the held sign-in was bound to.
	RetryOtherBrowser Code = "retry_from_other_browser"
)

// Storage is the failure to read or write what a sign-in needs: the sign-in
// fails closed and the person is told to try again.
const Storage Code = "storage_unavailable"

// ClientGone: the browser closed its connection (or its HTTP/2 stream)
// while its sign-in was being answered, which cancels what the verifier
// was doing for it. Nothing failed at the verifier, and anyone can cause
// it: it is counted, not alerted on.
const ClientGone Code = "client_gone"

// RateLimited: the client's address sent more requests to the sign-in
// listener than its rate limit allows; it is answered 429 with Retry-After,
// and nothing about the request is read or stored.
const RateLimited Code = "rate_limited"

// RetryTooOften: a Mac's held sign-ins were pressed again (Check again,
// Continue, Resolve later) more often than a person does; each press
// writes a decision and asks the agent for a fresh check. Answered 429
// with Retry-After; nothing is stored for the press.
const RetryTooOften Code = "retry_too_often"

// Busy: more sign-ins on requests Okta did not sign (allowed only with
// allow_unsigned_requests) arrived, from every address together, than
// sso_unsigned_rate_limit allows; answered 503 with Retry-After, and
// nothing is stored for the request.
const Busy Code = "busy"

// SigningFailed: the device passed, but the response could not be signed.
const SigningFailed Code = "signing_failed"

// InvalidACSURL: the configured ACS URL is not one a response may be posted to.
const InvalidACSURL Code = "invalid_acs_url"

// Decisions about a device, in the decision package's precedence order
// (see decision.Precedence).
const (
	// Allowed: every check passed.
	Allowed Code = "allowed"
	// UnknownDevice: no enrolled device.
	UnknownDevice Code = "unknown_device"
	// DeviceRevoked: the device is revoked.
	DeviceRevoked Code = "device_revoked"
	// UserUnknown: SCIM users are required and the username is not one Okta
	// provisioned.
	UserUnknown Code = "user_not_provisioned"
	// UserDeactivated: Okta deactivated the user (over SCIM or in the API
	// sync).
	UserDeactivated Code = "user_deactivated"
	// UserNotBound: --user-binding enforce, and the user is not bound to
	// this Mac.
	UserNotBound Code = "user_not_bound"
	// NoPolicies: no policy set is loaded, so nothing can be vouched for.
	NoPolicies Code = "no_policies"
	// NoReport: the device has never sent a usable report.
	NoReport Code = "no_report"
	// DeviceMismatch: the report is about another device.
	DeviceMismatch Code = "device_mismatch"
	// ClockSkew: the report's time is too far in the future.
	ClockSkew Code = "clock_skew"
	// StalePosture: the report is too old.
	StalePosture Code = "stale_posture"
	// CertNotVouched: the browser certificate is not one the Mac's agent
	// reported in a user keychain.
	CertNotVouched Code = "cert_not_vouched"
	// PolicyFailed: a required policy's query returned no rows.
	PolicyFailed Code = "policy_failed"
	// PolicyError: a required policy's query could not run.
	PolicyError Code = "policy_error"
	// PolicyMissing: the report has no result for a required policy.
	PolicyMissing Code = "policy_missing"
)
