// Package config owns clearance-verifier's settings and where they come from.
// Each setting has a flag, a CLEARANCE_* environment variable and a key in the
// YAML file given with --config; the first of those that is set wins, in that
// order, then the default.
package config

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"net/url"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/clearance/clearance/pkg/cli"
	"github.com/clearance/clearance/pkg/presence"
	"github.com/clearance/clearance/pkg/regularfile"
	"github.com/clearance/clearance/verifier/access"
	"github.com/clearance/clearance/verifier/cloudflare"
	"github.com/clearance/clearance/verifier/decision"
	"github.com/clearance/clearance/verifier/enroll"
	"github.com/clearance/clearance/verifier/grpcconn"
	"github.com/clearance/clearance/verifier/idp"
	"github.com/clearance/clearance/verifier/ingest"
	"github.com/clearance/clearance/verifier/ratelimit"
	"github.com/clearance/clearance/verifier/scep"
	"github.com/clearance/clearance/verifier/signin"
	"github.com/clearance/clearance/verifier/storage"
)

// Config is the verifier's configuration.
type Config struct {
	DataDir            string
	Database           string // "" (SQLite in DataDir) or a postgres:// URL, which may hold a password: log DatabaseLabel
	GRPCListen         string
	HTTPListen         string
	PublicURL          string
	Policies           string
	DeviceCertLifetime time.Duration
	MaxReportSkew      time.Duration
	ReportHistory      int
	LiveCheckTimeout   time.Duration
	LogLevel           string
	LogFormat          string

	// Sign-in (SAML IdP for Okta).
	SSOListen string
	// SSOPublicURL is the base URL browsers reach the SSO listener at; the
	// SSO URL given to Okta is SSOPublicURL + "/saml/sso" and the IdP Issuer
	// URI is SSOPublicURL + "/saml/metadata".
	SSOPublicURL string
	// OktaAudience is Okta's Audience URI (its SP entity ID), OktaACSURL its
	// Assertion Consumer Service URL; OktaRequestCert, when set, is the PEM
	// file of Okta's request-signing certificate: requests must then be signed.
	OktaAudience string
	// OktaACSURLs are the identity provider's ACS URLs, the org's first:
	// with a custom domain and Okta's Redirect Domain left on Dynamic, Okta
	// builds the ACS URL from the domain the sign-in came through, so each
	// domain's is listed.
	OktaACSURLs     []string
	OktaRequestCert string
	// AllowUnsignedRequests answers AuthnRequests without checking Okta's
	// signature when no OktaRequestCert is given. Off by default: without a
	// signature, whoever builds a request names the user it asserts.
	AllowUnsignedRequests bool
	// OktaOrgURL, when set, is the org the verifier reads users, groups and
	// the System Log from, with an API token read from OktaAPITokenFile
	// (or the CLEARANCE_OKTA_API_TOKEN variable) or as the service app
	// OktaClientID with its private key in OktaPrivateKeyFile.
	OktaOrgURL         string
	OktaAPITokenFile   string
	OktaClientID       string
	OktaPrivateKeyFile string
	// OktaSyncInterval is how often users and groups are reconciled in
	// full; changes are read every minute between.
	OktaSyncInterval time.Duration
	// OktaAlertEvents are the System Log event types that raise the
	// unmatched sign-in alert when no Clearance allow precedes them.
	OktaAlertEvents []string
	// DebugSAML logs refused AuthnRequests' decoded XML (bounded and
	// sampled), to see what Okta really sends during a first pilot.
	DebugSAML bool
	// MaxHeldRequestAge: "Check again" on a sign-in held longer than this
	// sends the person back to Okta to start over, rather than answering a
	// request Okta has likely given up on.
	MaxHeldRequestAge time.Duration
	// IdPKeyBits is the size of the RSA signing key created on first start;
	// IdPSigningKey, when set, is a go.step.sm/crypto/kms URI used instead.
	IdPKeyBits    int
	IdPSigningKey string
	// Sign is what SAML responses carry signatures on: idp.SignBoth,
	// idp.SignResponse or idp.SignAssertion.
	Sign string
	// MaxPostureAge: reports older than this deny. LiveCheckAfter: reports
	// older than this get a live check before deciding.
	MaxPostureAge  time.Duration
	LiveCheckAfter time.Duration
	// MaxRequestSkew bounds how far an AuthnRequest's IssueInstant may be
	// from our clock, either way.
	MaxRequestSkew time.Duration
	// PendingSignInTTL is how long a denied sign-in can be resumed with
	// "Check again".
	PendingSignInTTL time.Duration
	// ClientCertHeader, when set, names the header a TLS-terminating proxy
	// puts the browser certificate in (URL-encoded PEM); it is honoured only
	// from TrustedProxies.
	ClientCertHeader string
	TrustedProxies   []*net.IPNet
	// DecisionRetention is how long the decision log is kept.
	DecisionRetention time.Duration
	// AuditRetention is how long the audit log is kept; zero keeps the
	// default (storage.DefaultAuditRetention).
	AuditRetention time.Duration

	// Enforcement lowers every policy's enforcement to at most this mode
	// (monitor, warn or enforce: enforce leaves each policy's own).
	Enforcement string
	// BypassPeriod is how often one policy may be resolved later on one Mac.
	BypassPeriod time.Duration

	// Browser certificates (SCEP, on the SSO listener at /scep).
	// SCEPChallenge is the static challenge (a secret; one-time challenges
	// from `scep challenge` work alongside it); empty allows only one-time ones.
	SCEPChallenge       string
	BrowserCertLifetime time.Duration
	// BrowserCertGrace is how long a Mac's older browser certificates keep
	// counting once its agent reports a newer one in a keychain.
	BrowserCertGrace time.Duration
	// SCEPRateLimit is how many browser certificates one Mac may get per day.
	SCEPRateLimit int
	// RequireAgentVouchedCert: a browser certificate counts only if the
	// Mac's agent reported it in a user keychain.
	RequireAgentVouchedCert bool

	// BrowserBinding is how a sign-in is bound to the Mac: BindingAgent (the
	// agent's loopback proof of presence, signed by the device key),
	// BindingCertificate (a browser certificate from SCEP, vouched for by
	// the agent) or BindingEither (the agent whenever the Mac's agent is
	// connected; a certificate alone only for a Mac whose agent is not).
	BrowserBinding string
	// AgentPresencePort is the loopback port agents serve proofs of
	// presence on (clearance-agent --presence-listen).
	AgentPresencePort int

	// SCIMUsers is whether a sign-in's username must be a user Okta
	// provisioned over SCIM or the API sync read: SCIMOptional or
	// SCIMRequired. A deactivated
	// user is denied either way.
	SCIMUsers string
	// UserBinding is whether the user signing in must be bound to the Mac:
	// off, warn (allow, log and show the mismatch) or enforce.
	UserBinding string
	// UserBindingRule binds a Mac's local accounts to directory users
	// (access.Binds).
	UserBindingRule string

	// EnrollApproval admits new devices: EnrollAuto (any with a valid
	// secret), EnrollKnown (serials on the imported list; others wait for
	// approval) or EnrollManual (every new device waits). A known device
	// moves to another key only with proof of its current one, whatever
	// this says.
	EnrollApproval string

	// Limits on what outside parties can make the verifier do.
	// SSORateLimit is the requests a second one client address may make to
	// the sign-in listener, sustained (0: no limit), SSORateBurst how many
	// at once; SSORateExempt are addresses never limited.
	SSORateLimit  float64
	SSORateBurst  int
	SSORateExempt []*net.IPNet
	// SSOUnsignedRateLimit is the sign-ins a second, from every address
	// together, that may store anything for a request Okta did not sign, in
	// each of two buckets (0: no limit); only with AllowUnsignedRequests.
	SSOUnsignedRateLimit float64
	// GRPC* bound the gRPC listener's connections (zero: grpcconn's
	// defaults): concurrent calls on any connection, and for connections
	// without a device certificate, their number in all and per client
	// address, calls on one, and when one is closed (idle, or old).
	GRPCMaxStreams      int
	GRPCUnauthConns     int
	GRPCUnauthPerSource int
	GRPCUnauthStreams   int
	GRPCUnauthIdle      time.Duration
	GRPCUnauthMaxAge    time.Duration

	// Cloudflare's device posture integration (custom_s2s), served on the
	// HTTP listener when CloudflareTeam is set. CloudflareTeam is the Zero
	// Trust team domain as Access writes it in iss; CloudflareAUD the
	// Access application's AUD tag; CloudflareCertsURL where its signing
	// keys are (default: the team's).
	CloudflareTeam          string
	CloudflareAUD           string
	CloudflareCertsURL      string
	CloudflareMatchHostname bool
	// CloudflareScoreCompliant and CloudflareScoreWarn are the scores of
	// an allowed device without and with warnings; a denied one scores 0.
	CloudflareScoreCompliant int
	CloudflareScoreWarn      int
	// SSOMaxConns and SSOMaxConnsPerSource bound the sign-in listener's
	// connections, in all and per client address; GRPCDevicePerSource the
	// gRPC connections with a device certificate per client address.
	SSOMaxConns          int
	SSOMaxConnsPerSource int
	GRPCDevicePerSource  int

	// file is the settings file read ("" when none); sources says where
	// each setting's value came from, by name, so that the file read again
	// can be compared with what is in force.
	file    string
	sources map[string]source
}

// source is where one setting's value came from.
type source struct {
	text string // the value in force, as given
	// by is the flag (--name) or variable (CLEARANCE_NAME) that set it;
	// "" when the file or the default did.
	by string
	// inFile and fileText: what the settings file says, whether or not
	// it is the value in force.
	inFile   bool
	fileText string
}

// CloudflareConfigured reports whether the Cloudflare posture endpoint is on.
func (c *Config) CloudflareConfigured() bool { return c.CloudflareTeam != "" && c.CloudflareAUD != "" }

// CloudflareScores are the configured scores.
func (c *Config) CloudflareScores() cloudflare.Scores {
	return cloudflare.Scores{Compliant: c.CloudflareScoreCompliant, Warning: c.CloudflareScoreWarn}
}

// CloudflareAPIURL is the URL of the posture endpoint on the HTTP listener
// as this machine names it: the --public-url host with the --http-listen
// port. Cloudflare reaches it through the Access application's hostname.
func (c *Config) CloudflareAPIURL() string {
	host := c.PublicHost()
	if host == "" {
		host = "localhost"
	}
	_, port, _ := net.SplitHostPort(c.HTTPListen)
	return "https://" + net.JoinHostPort(host, port) + cloudflare.Path
}

// Enrollment admission policies (Config.EnrollApproval); the same words as
// package enroll's.
const (
	EnrollAuto   = "auto"
	EnrollKnown  = "known"
	EnrollManual = "manual"
)

// SCIM user requirements (Config.SCIMUsers).
const (
	SCIMOptional = "optional"
	SCIMRequired = "required"
)

// User bindings (Config.UserBinding).
const (
	UserBindingOff     = "off"
	UserBindingWarn    = "warn"
	UserBindingEnforce = "enforce"
)

// Browser bindings (Config.BrowserBinding).
const (
	BindingAgent       = "agent"
	BindingCertificate = "certificate"
	BindingEither      = "either"
)

// DefaultLiveCheckTimeout is how long a sign-in, and an admin RequestCheck
// that names no timeout, waits for the agent's fresh report by default.
const DefaultLiveCheckTimeout = access.DefaultLiveCheckTimeout

// DefaultAgentPresencePort is the port clearance-agent's --presence-listen
// defaults to, on 127.0.0.1.
const DefaultAgentPresencePort = presence.DefaultAgentPort

// PresenceURL is where agents send browsers back with a proof of presence.
func (c *Config) PresenceURL() string {
	return strings.TrimSuffix(c.SSOPublicURL, "/") + "/saml/presence"
}

// RequestsClientCerts reports whether the sign-in listener asks browsers
// for certificates: only when a certificate can bind a sign-in (asking
// otherwise makes macOS offer any matching identity to the user).
func (c *Config) RequestsClientCerts() bool { return c.BrowserBinding != BindingAgent }

// SCEPURL is the SCEP endpoint Macs enroll at.
func (c *Config) SCEPURL() string { return strings.TrimSuffix(c.SSOPublicURL, "/") + "/scep" }

// SSOURL is the URL Okta sends browsers to (its "IdP Single Sign-On URL").
func (c *Config) SSOURL() string { return strings.TrimSuffix(c.SSOPublicURL, "/") + "/saml/sso" }

// MetadataURL is the IdP's entity ID (Okta's "IdP Issuer URI").
func (c *Config) MetadataURL() string {
	return strings.TrimSuffix(c.SSOPublicURL, "/") + "/saml/metadata"
}

// SSOHost is the host name of SSOPublicURL.
func (c *Config) SSOHost() string {
	u, err := url.Parse(c.SSOPublicURL)
	if err != nil {
		return ""
	}
	return u.Hostname()
}

// OktaConfigured reports whether the Okta service-provider settings are given.
func (c *Config) OktaConfigured() bool { return c.OktaAudience != "" && len(c.OktaACSURLs) > 0 }

// PublicHost is the host name of PublicURL.
func (c *Config) PublicHost() string {
	u, err := url.Parse(c.PublicURL)
	if err != nil {
		return ""
	}
	return u.Hostname()
}

// IsPostgres reports whether database names a PostgreSQL database.
func IsPostgres(database string) bool {
	return strings.HasPrefix(database, "postgres://") || strings.HasPrefix(database, "postgresql://")
}

// DatabaseLabel names the database for logs without its password: "sqlite"
// or "postgres HOST/DB".
func DatabaseLabel(database string) string {
	if database == "" {
		return "sqlite"
	}
	u, err := url.Parse(database)
	if err != nil || storage.PasswordPastHost(database) {
		return "postgres"
	}
	return "postgres " + u.Host + u.Path
}

// setting is one line of the settings table: everything about a setting is
// said here, once. The flag is --name, the YAML key name with '_' for '-',
// the environment variable CLEARANCE_ + the key in upper case.
type setting struct {
	name  string
	group string // heading in the help
	def   string
	usage string
	val   value
}

// value parses a setting: kind is the type word the help shows.
type value struct {
	kind string
	set  func(c *Config, v string) error
}

func (s setting) key() string { return strings.ReplaceAll(s.name, "-", "_") }
func (s setting) env() string { return "CLEARANCE_" + strings.ToUpper(s.key()) }

// Help groups, in the order the help shows them.
const (
	GroupStorage  = "Storage"
	GroupListen   = "Listeners"
	GroupReports  = "Agents and reports"
	GroupOkta     = "Okta"
	GroupSignIn   = "Sign-in"
	GroupBrowser  = "Browser certificates"
	GroupLimits   = "Limits"
	GroupCF       = "Cloudflare"
	GroupLogging  = "Logging"
	GroupSettings = "Settings file"
)

var groupOrder = []string{GroupStorage, GroupListen, GroupReports, GroupOkta, GroupSignIn, GroupBrowser, GroupCF, GroupLimits, GroupLogging, GroupSettings}

func text(kind string, dst func(*Config) *string) value {
	return value{kind, func(c *Config, v string) error { *dst(c) = v; return nil }}
}

func dur(dst func(*Config) *time.Duration, min, max time.Duration) value {
	return value{"duration", func(c *Config, v string) error {
		d, err := cli.ParseDuration(v)
		if err != nil {
			return fmt.Errorf("%q is not a duration (e.g. 30s, 5m, 720h, 30d)", v)
		}
		if d < min || d > max {
			return fmt.Errorf("%s is outside the allowed range %s to %s", d, min, max)
		}
		*dst(c) = d
		return nil
	}}
}

func intRange(dst func(*Config) *int, min, max int) value {
	return value{"int", func(c *Config, v string) error {
		n, err := strconv.Atoi(v)
		if err != nil || n < min || n > max {
			return fmt.Errorf("%q is not a whole number from %d to %d", v, min, max)
		}
		*dst(c) = n
		return nil
	}}
}

func rate(dst func(*Config) *float64, max float64) value {
	return value{"number", func(c *Config, v string) error {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || f < 0 || f > max || f != f {
			return fmt.Errorf("%q is not a number from 0 to %g", v, max)
		}
		*dst(c) = f
		return nil
	}}
}

func port(dst func(*Config) *int) value {
	return value{"port", func(c *Config, v string) error {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("%q is not a port number from 1 to 65535", v)
		}
		*dst(c) = n
		return nil
	}}
}

func boolean(dst func(*Config) *bool) value {
	return value{"bool", func(c *Config, v string) error {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return fmt.Errorf("%q is not true or false", v)
		}
		*dst(c) = b
		return nil
	}}
}

func listenAddr(dst func(*Config) *string) value {
	return value{"host:port", func(c *Config, v string) error {
		if _, _, err := net.SplitHostPort(v); err != nil {
			return fmt.Errorf("%q is not HOST:PORT (e.g. :8443 or 127.0.0.1:8443)", v)
		}
		*dst(c) = v
		return nil
	}}
}

func oneOf(dst func(*Config) *string, allowed ...string) value {
	return value{strings.Join(allowed, "|"), func(c *Config, v string) error {
		for _, a := range allowed {
			if v == a {
				*dst(c) = v
				return nil
			}
		}
		return fmt.Errorf("%q is not one of %s", v, strings.Join(allowed, ", "))
	}}
}

func httpsURL(dst func(*Config) *string) value {
	return value{"URL", func(c *Config, v string) error {
		u, err := url.Parse(v)
		if err != nil || u.Scheme != "https" || u.Hostname() == "" || u.RawQuery != "" || u.Fragment != "" {
			return fmt.Errorf("%q is not an https:// URL with a host (and no query)", v)
		}
		*dst(c) = v
		return nil
	}}
}

// httpsURLs is a comma-separated list of httpsURL values (at least one).
func httpsURLs(dst func(*Config) *[]string) value {
	return value{"URLs", func(c *Config, v string) error {
		var out []string
		for _, part := range strings.Split(v, ",") {
			if part = strings.TrimSpace(part); part == "" {
				continue
			}
			var one string
			if err := httpsURL(func(*Config) *string { return &one }).set(c, part); err != nil {
				return err
			}
			if !slices.Contains(out, one) {
				out = append(out, one)
			}
		}
		if len(out) == 0 {
			return errors.New("lists no URL")
		}
		*dst(c) = out
		return nil
	}}
}

func absURI(dst func(*Config) *string) value {
	return value{"URI", func(c *Config, v string) error {
		u, err := url.Parse(v)
		if err != nil || !u.IsAbs() || len(v) > 1024 {
			return fmt.Errorf("%q is not an absolute URI (Okta shows it as e.g. https://www.okta.com/saml2/service-provider/sp…)", v)
		}
		*dst(c) = v
		return nil
	}}
}

func cidrs(dst func(*Config) *[]*net.IPNet) value {
	return value{"CIDRs", func(c *Config, v string) error {
		var out []*net.IPNet
		for _, part := range strings.Split(v, ",") {
			part = strings.TrimSpace(part)
			if part == "" {
				continue
			}
			if !strings.Contains(part, "/") {
				if ip := net.ParseIP(part); ip != nil {
					bits := 128
					if ip.To4() != nil {
						ip, bits = ip.To4(), 32
					}
					out = append(out, &net.IPNet{IP: ip, Mask: net.CIDRMask(bits, bits)})
					continue
				}
			}
			_, n, err := net.ParseCIDR(part)
			if err != nil {
				return fmt.Errorf("%q is not an IP address or CIDR (e.g. 10.0.0.0/8, 192.0.2.7)", part)
			}
			out = append(out, n)
		}
		*dst(c) = out
		return nil
	}}
}

var eventType = regexp.MustCompile(`^[a-z][A-Za-z0-9_]*(\.[A-Za-z0-9_]+){1,6}$`)

var headerName = regexp.MustCompile(`^[A-Za-z0-9-]{1,64}$`)

var settings = []setting{
	{"data-dir", GroupStorage, "", "directory for the CA, keys, admin token and SQLite database (created on first start)", text("path", func(c *Config) *string { return &c.DataDir })},
	{"database", GroupStorage, "", "empty for SQLite in the data dir, or a postgres:// URL of a PostgreSQL database several replicas share (holds a password: prefer the env or config file)", value{"URL", func(c *Config, v string) error {
		if !IsPostgres(v) {
			// The value is not repeated: it may hold a password.
			return errors.New("the database must be empty (SQLite in the data dir) or a postgres:// or postgresql:// URL")
		}
		c.Database = v
		return nil
	}}},
	{"audit-retention", GroupStorage, durText(storage.DefaultAuditRetention), "how long events are kept in the audit log (who changed devices, secrets, exemptions and people)", dur(func(c *Config) *time.Duration { return &c.AuditRetention }, 30*24*time.Hour, 10*365*24*time.Hour)},
	{"grpc-listen", GroupListen, ":8443", "address for gRPC (agents, admin API, health, reflection); TLS, client certs requested", listenAddr(func(c *Config) *string { return &c.GRPCListen })},
	{"http-listen", GroupListen, ":8080", "address for HTTPS /healthz, /metrics (which needs the data dir's metrics.token as a bearer token) and, with --cloudflare-team, Cloudflare's /cloudflare/v1/posture; TLS, no client certs", listenAddr(func(c *Config) *string { return &c.HTTPListen })},
	{"public-url", GroupListen, "https://localhost:8443", "URL agents and browsers use to reach this verifier; its host is in the TLS certificate", value{"URL", func(c *Config, v string) error {
		u, err := url.Parse(v)
		if err != nil || u.Scheme != "https" || u.Hostname() == "" {
			return fmt.Errorf("%q is not an https:// URL with a host", v)
		}
		c.PublicURL = v
		return nil
	}}},
	{"policies", GroupReports, "", "policy YAML file (see examples/policies.yaml); reloaded on SIGHUP", text("path", func(c *Config) *string { return &c.Policies })},
	{"enroll-approval", GroupReports, EnrollAuto, "which new devices enroll without approval: auto (any with a valid enroll secret and a serial number no enrolled device has), known (serial numbers imported with `devices import`; recommended), manual (none)", oneOf(func(c *Config) *string { return &c.EnrollApproval }, EnrollAuto, EnrollKnown, EnrollManual)},
	{"device-cert-lifetime", GroupReports, durText(enroll.DefaultCertLifetime), "lifetime of device certificates", dur(func(c *Config) *time.Duration { return &c.DeviceCertLifetime }, time.Hour, 365*24*time.Hour)},
	{"max-report-skew", GroupReports, durText(ingest.DefaultMaxSkew), "how far a report's observed_at may be from the verifier's clock", dur(func(c *Config) *time.Duration { return &c.MaxReportSkew }, 10*time.Second, 24*time.Hour)},
	{"report-history", GroupReports, strconv.Itoa(ingest.DefaultKeep), "reports kept per device (the latest always is)", intRange(func(c *Config) *int { return &c.ReportHistory }, 1, 100000)},
	{"live-check-timeout", GroupSignIn, durText(DefaultLiveCheckTimeout), "how long a sign-in, and an admin RequestCheck that names no timeout, waits for a fresh report after CheckNow", dur(func(c *Config) *time.Duration { return &c.LiveCheckTimeout }, 100*time.Millisecond, time.Minute)},
	{"sso-listen", GroupListen, ":8444", "address for sign-in (SAML SSO, the agent's proof of presence, remediation pages, SCEP); TLS; browser certificates requested only with --browser-binding certificate or either", listenAddr(func(c *Config) *string { return &c.SSOListen })},
	{"sso-public-url", GroupListen, "", "base URL browsers reach --sso-listen at (default: the --public-url host with the --sso-listen port)", httpsURL(func(c *Config) *string { return &c.SSOPublicURL })},
	{"okta-audience", GroupOkta, "", "Okta's Audience URI (its SP entity ID), from the IdP's settings in Okta", absURI(func(c *Config) *string { return &c.OktaAudience })},
	{"okta-acs-url", GroupOkta, "", "Okta's Assertion Consumer Service URL, https://{org}/sso/saml2/{idpId}; comma-separated when Okta may build it from more than one domain (the first is the org's)", httpsURLs(func(c *Config) *[]string { return &c.OktaACSURLs })},
	{"okta-request-cert", GroupOkta, "", "PEM file of Okta's request-signing certificate (or two, during a rotation); AuthnRequests must be signed by one", text("path", func(c *Config) *string { return &c.OktaRequestCert })},
	{"okta-org-url", GroupOkta, "", "the Okta org to read users, groups and the System Log from (https://{org}.okta.com), with --okta-api-token-file or --okta-client-id", httpsURL(func(c *Config) *string { return &c.OktaOrgURL })},
	{"okta-api-token-file", GroupOkta, "", "file (mode 0600) holding an Okta API token (SSWS) of a read-only administrator; CLEARANCE_OKTA_API_TOKEN may hold the token itself instead", text("path", func(c *Config) *string { return &c.OktaAPITokenFile })},
	{"okta-client-id", GroupOkta, "", "client ID of an Okta API service app (client credentials, private_key_jwt) to read with instead of an API token; needs --okta-private-key-file", text("ID", func(c *Config) *string { return &c.OktaClientID })},
	{"okta-private-key-file", GroupOkta, "", "file (mode 0600) holding the service app's private key, PEM or JWK", text("path", func(c *Config) *string { return &c.OktaPrivateKeyFile })},
	{"okta-alert-events", GroupOkta, "user.session.start", "comma-separated Okta System Log event types that alert (clearance_okta_unmatched_signins_total) when a Mac's successful one has no Clearance allow before it; add user.authentication.sso when Clearance is required at every app sign-in", value{"types", func(c *Config, v string) error {
		var out []string
		for _, part := range strings.Split(v, ",") {
			part = strings.TrimSpace(part)
			if part == "" {
				continue
			}
			if !eventType.MatchString(part) {
				return fmt.Errorf("%q is not an Okta event type (e.g. user.session.start)", part)
			}
			out = append(out, part)
		}
		c.OktaAlertEvents = out
		return nil
	}}},
	{"okta-sync-interval", GroupOkta, durText(15 * time.Minute), "how often users, groups and memberships are reconciled with Okta in full (changes are read every minute between)", dur(func(c *Config) *time.Duration { return &c.OktaSyncInterval }, time.Minute, 24*time.Hour)},
	{"debug-saml", GroupOkta, "false", "log refused AuthnRequests' decoded XML (the first 4 KiB, at most four a second; never RelayState), to see what Okta sends during a first pilot", boolean(func(c *Config) *bool { return &c.DebugSAML })},
	{"max-held-request-age", GroupSignIn, durText(signin.DefaultMaxHeldAge), "Check again on a sign-in held longer than this restarts it at Okta instead of answering Okta's old request", dur(func(c *Config) *time.Duration { return &c.MaxHeldRequestAge }, 30*time.Second, time.Hour)},
	{"allow-unsigned-requests", GroupOkta, "false", "answer AuthnRequests Okta did not sign when --okta-request-cert is not set (unsafe: whoever builds a request names the user it asserts)", boolean(func(c *Config) *bool { return &c.AllowUnsignedRequests })},
	{"idp-key-bits", GroupOkta, "2048", "size of the RSA SAML signing key created on first start", value{"2048|3072", func(c *Config, v string) error {
		switch v {
		case "2048", "3072":
			c.IdPKeyBits, _ = strconv.Atoi(v)
			return nil
		}
		return fmt.Errorf("%q is not 2048 or 3072 (Okta needs an RSA key)", v)
	}}},
	{"idp-signing-key", GroupOkta, "", "a go.step.sm/crypto/kms URI of an RSA key to sign SAML with instead of DIR/idp-key.pem", text("URI", func(c *Config) *string { return &c.IdPSigningKey })},
	{"sign", GroupOkta, idp.SignBoth, "what each SAML response signs: both (the Response and the Assertion), response or assertion; one signature is half the RSA work of a sign-in; Okta's Response Signature Verification must accept it (Response, Assertion or Either)", oneOf(func(c *Config) *string { return &c.Sign }, idp.SignBoth, idp.SignResponse, idp.SignAssertion)},
	{"max-posture-age", GroupSignIn, durText(decision.DefaultMaxPostureAge), "a device whose latest report is older than this is denied", dur(func(c *Config) *time.Duration { return &c.MaxPostureAge }, 10*time.Second, 24*time.Hour)},
	{"live-check-after", GroupSignIn, durText(decision.DefaultLiveCheckAfter), "a sign-in asks the agent for a fresh report when the latest is older than this", dur(func(c *Config) *time.Duration { return &c.LiveCheckAfter }, time.Second, 24*time.Hour)},
	{"max-request-skew", GroupOkta, durText(idp.DefaultMaxRequestSkew), "how far an AuthnRequest's IssueInstant may be from this clock", dur(func(c *Config) *time.Duration { return &c.MaxRequestSkew }, 10*time.Second, idp.RequestSkewLimit)},
	{"pending-sign-in-ttl", GroupSignIn, durText(signin.DefaultPendingTTL), "how long a denied sign-in can be resumed with Check again", dur(func(c *Config) *time.Duration { return &c.PendingSignInTTL }, 30*time.Second, time.Hour)},
	{"client-cert-header", GroupBrowser, "", "header in which a TLS-terminating proxy passes the browser certificate (URL-encoded PEM); needs --trusted-proxies", value{"header", func(c *Config, v string) error {
		if !headerName.MatchString(v) {
			return fmt.Errorf("%q is not a header name", v)
		}
		c.ClientCertHeader = v
		return nil
	}}},
	{"trusted-proxies", GroupBrowser, "", "comma-separated IPs or CIDRs of proxies in front of the sign-in listener: their X-Forwarded-For names the client for --sso-rate-limit (the entry they wrote, the rightmost not theirs), and their --client-cert-header is believed", cidrs(func(c *Config) *[]*net.IPNet { return &c.TrustedProxies })},
	{"scep-challenge", GroupBrowser, "", "static SCEP challenge put in the user-scope profile (a secret: prefer the env or config file); empty allows only one-time challenges", value{"secret", func(c *Config, v string) error {
		if len(v) < 16 || len(v) > 255 {
			return errors.New("the SCEP challenge must be 16 to 255 characters (it is a shared secret)")
		}
		c.SCEPChallenge = v
		return nil
	}}},
	{"browser-cert-lifetime", GroupBrowser, durText(scep.DefaultLifetime), "lifetime of browser certificates issued through SCEP", dur(func(c *Config) *time.Duration { return &c.BrowserCertLifetime }, time.Hour, 5*365*24*time.Hour)},
	{"browser-cert-grace", GroupBrowser, durText(scep.DefaultGrace), "how long a Mac's older browser certificates keep counting once its agent reports a newer one", dur(func(c *Config) *time.Duration { return &c.BrowserCertGrace }, 0, 90*24*time.Hour)},
	{"scep-rate-limit", GroupBrowser, strconv.Itoa(scep.DefaultRateLimit), "browser certificates one Mac may get per 24 hours", intRange(func(c *Config) *int { return &c.SCEPRateLimit }, 1, 1000)},
	{"require-agent-vouched-cert", GroupBrowser, "true", "honour a browser certificate only if the Mac's agent reports it in a user keychain", boolean(func(c *Config) *bool { return &c.RequireAgentVouchedCert })},
	{"browser-binding", GroupSignIn, BindingAgent, "how a sign-in is bound to the Mac: agent (the agent's signed proof of presence on loopback), certificate (a SCEP browser certificate the agent vouches for; weaker) or either (the agent's proof, a certificate alone only for a Mac whose agent is not connected)", oneOf(func(c *Config) *string { return &c.BrowserBinding }, BindingAgent, BindingCertificate, BindingEither)},
	{"scim-users", GroupSignIn, SCIMOptional, "optional: any username Okta sends may sign in, and a user Okta deactivated (over SCIM or in the API sync) is denied; required: the username must also be one Okta provisioned over SCIM or the API sync reads (turn on once the first import is done)", oneOf(func(c *Config) *string { return &c.SCIMUsers }, SCIMOptional, SCIMRequired)},
	{"user-binding", GroupSignIn, UserBindingWarn, "whether the user signing in must be bound to the Mac (assigned with the admin API's AssignDevice, or a local account matched by --user-binding-rule): off, warn (allow, log and show the mismatch) or enforce (deny)", oneOf(func(c *Config) *string { return &c.UserBinding }, UserBindingOff, UserBindingWarn, UserBindingEnforce)},
	{"user-binding-rule", GroupSignIn, "email-local-part", "how a Mac's local accounts name directory users: email-local-part (jdoe is jdoe@…) or a pattern such as {local}@example.com", value{"rule", func(c *Config, v string) error {
		if v != "email-local-part" && (!strings.Contains(v, "{local}") || len(v) > 200) {
			return fmt.Errorf("%q is neither email-local-part nor a pattern holding {local}", v)
		}
		c.UserBindingRule = v
		return nil
	}}},
	{"agent-presence-port", GroupSignIn, strconv.Itoa(DefaultAgentPresencePort), "loopback port agents serve proofs of presence on (clearance-agent --presence-listen)", port(func(c *Config) *int { return &c.AgentPresencePort })},
	{"enforcement", GroupSignIn, string(decision.Enforce), "lowers every policy's enforcement to at most this: monitor (never block; record would-deny), warn (show the page with Continue) or enforce (each policy's own setting); SIGHUP applies a change made in the settings file", oneOf(func(c *Config) *string { return &c.Enforcement }, string(decision.Monitor), string(decision.Warn), string(decision.Enforce))},
	{"bypass-period", GroupSignIn, durText(decision.DefaultBypassPeriod), "after a person chooses Resolve later on a policy that allows it, how long until that Mac may resolve the same policy later again", dur(func(c *Config) *time.Duration { return &c.BypassPeriod }, time.Hour, 365*24*time.Hour)},
	{"decision-retention", GroupSignIn, durText(storage.DefaultDecisionRetention), "how long decisions are kept in the decision log", dur(func(c *Config) *time.Duration { return &c.DecisionRetention }, time.Hour, 10*365*24*time.Hour)},
	{"sso-rate-limit", GroupLimits, strconv.Itoa(ratelimit.DefaultRate), "requests a second one client address may make to the sign-in listener (every path but /healthz), sustained; more get 429 with Retry-After; 0 turns the limit off", rate(func(c *Config) *float64 { return &c.SSORateLimit }, 100000)},
	{"sso-rate-burst", GroupLimits, strconv.Itoa(ratelimit.DefaultBurst), "requests one client address may make at once, above --sso-rate-limit, after a quiet spell", intRange(func(c *Config) *int { return &c.SSORateBurst }, 1, 1000000)},
	{"sso-unsigned-rate-limit", GroupLimits, strconv.Itoa(ratelimit.DefaultUnsignedRate), "with --allow-unsigned-requests: sign-ins a second, from every address together, that may store anything for a request Okta did not sign (kept for minutes; ten seconds' worth at once; browsers that show their Mac are counted apart); more get 503 with Retry-After; 0 turns the limit off", rate(func(c *Config) *float64 { return &c.SSOUnsignedRateLimit }, 100000)},
	{"sso-rate-exempt", GroupLimits, "", "comma-separated IPs or CIDRs never rate-limited (an office's NAT address, behind --trusted-proxies the address they name)", cidrs(func(c *Config) *[]*net.IPNet { return &c.SSORateExempt })},
	{"grpc-max-streams", GroupLimits, strconv.Itoa(grpcconn.DefaultMaxStreams), "concurrent calls on one gRPC connection (an agent needs two)", intRange(func(c *Config) *int { return &c.GRPCMaxStreams }, 2, 10000)},
	{"grpc-unauthenticated-conns", GroupLimits, strconv.Itoa(grpcconn.DefaultUnauthenticatedConns), "gRPC connections without a device certificate (enrollment, admin tools, health, reflection) held at once; a new one closes the oldest", intRange(func(c *Config) *int { return &c.GRPCUnauthConns }, 1, 1000000)},
	{"grpc-unauthenticated-conns-per-source", GroupLimits, strconv.Itoa(grpcconn.DefaultUnauthenticatedPerSource), "of those, held at once from one client address (an IPv6 /64); its new one closes its oldest", intRange(func(c *Config) *int { return &c.GRPCUnauthPerSource }, 1, 100000)},
	{"grpc-unauthenticated-streams", GroupLimits, strconv.Itoa(grpcconn.DefaultUnauthenticatedStreams), "concurrent calls on a gRPC connection without a device certificate", intRange(func(c *Config) *int { return &c.GRPCUnauthStreams }, 1, 1000)},
	{"grpc-unauthenticated-idle", GroupLimits, durText(grpcconn.DefaultUnauthenticatedIdle), "a gRPC connection without a device certificate and no call in flight this long is closed (GOAWAY)", dur(func(c *Config) *time.Duration { return &c.GRPCUnauthIdle }, time.Second, time.Hour)},
	{"grpc-unauthenticated-max-age", GroupLimits, durText(grpcconn.DefaultUnauthenticatedMaxAge), "a gRPC connection without a device certificate this old is closed (GOAWAY, then 30s for calls in flight)", dur(func(c *Config) *time.Duration { return &c.GRPCUnauthMaxAge }, 10*time.Second, 24*time.Hour)},
	{"cloudflare-team", GroupCF, "", "Zero Trust team name or domain (<team>.cloudflareaccess.com); turns on the device posture endpoint /cloudflare/v1/posture on --http-listen", value{"team", func(c *Config, v string) error {
		issuer, err := cloudflare.TeamDomain(v)
		if err != nil {
			return err
		}
		c.CloudflareTeam = issuer
		return nil
	}}},
	{"cloudflare-aud", GroupCF, "", "Application Audience (AUD) tag of the Access application in front of the posture endpoint", value{"tag", func(c *Config, v string) error {
		v = strings.TrimSpace(v)
		if v == "" || len(v) > 256 {
			return errors.New("is not an AUD tag (Zero Trust shows it on the Access application's Basic information)")
		}
		c.CloudflareAUD = v
		return nil
	}}},
	{"cloudflare-certs-url", GroupCF, "", "where Access's signing keys are (default: the team domain + /cdn-cgi/access/certs)", value{"URL", func(c *Config, v string) error {
		if err := cloudflare.CheckCertsURL(v); err != nil {
			return err
		}
		c.CloudflareCertsURL = v
		return nil
	}}},
	{"cloudflare-match-hostname", GroupCF, "false", "match a device Cloudflare names by no enrolled serial number by its hostname, when exactly one enrolled device has it", boolean(func(c *Config) *bool { return &c.CloudflareMatchHostname })},
	{"cloudflare-score-compliant", GroupCF, strconv.Itoa(cloudflare.DefaultScoreCompliant), "score of a device every counting policy passes on fresh posture (denied devices score 0)", intRange(func(c *Config) *int { return &c.CloudflareScoreCompliant }, 1, 100)},
	{"cloudflare-score-warn", GroupCF, strconv.Itoa(cloudflare.DefaultScoreWarning), "score of an allowed device with warnings (an advisory policy, or a policy in warn mode, does not pass)", intRange(func(c *Config) *int { return &c.CloudflareScoreWarn }, 1, 100)},
	{"sso-max-conns", GroupLimits, strconv.Itoa(ratelimit.DefaultSSOConns), "connections the sign-in listener holds at once; a new one closes an idle one, else one of the address holding the most", intRange(func(c *Config) *int { return &c.SSOMaxConns }, 16, 1000000)},
	{"sso-max-conns-per-source", GroupLimits, strconv.Itoa(ratelimit.DefaultSSOConnsPerSource), "of those, held at once from one TCP peer address (an IPv6 /64; --trusted-proxies and --sso-rate-exempt are not counted per address); its new one closes its idle one, else its oldest that has not begun a request, else its oldest", intRange(func(c *Config) *int { return &c.SSOMaxConnsPerSource }, 1, 1000000)},
	{"grpc-device-conns-per-source", GroupLimits, strconv.Itoa(grpcconn.DefaultDevicePerSource), "gRPC connections with a current device certificate held at once from one client address (an IPv6 /64; Macs behind one NAT address share it); its new one closes its oldest", intRange(func(c *Config) *int { return &c.GRPCDevicePerSource }, 1, 1000000)},
	{"log-level", GroupLogging, "info", "how much to log", oneOf(func(c *Config) *string { return &c.LogLevel }, "debug", "info", "warn", "error")},
	{"log-format", GroupLogging, "text", "text for people, json for log collectors", oneOf(func(c *Config) *string { return &c.LogFormat }, "text", "json")},
}

// maxFileSize bounds the config file.
const maxFileSize = 1 << 20

// settingFlag is a setting's flag. It keeps the text given: the value is
// checked by the setting's own rules once every source is known, so an
// error names where the bad value came from.
type settingFlag struct {
	v      string
	isBool bool
}

func (f *settingFlag) String() string {
	if f == nil {
		return ""
	}
	return f.v
}
func (f *settingFlag) Set(v string) error { f.v = v; return nil }
func (f *settingFlag) IsBoolFlag() bool   { return f.isBool }

// Binding is a command's settings: the flags Bind declared, resolved with
// the environment and the config file by Resolve.
type Binding struct {
	fs         *cli.FlagSet
	bound      map[string]bool
	flags      map[string]*settingFlag
	configFile *string
	// audLater: see AUDLater.
	audLater bool
}

// AUDLater lets --cloudflare-team resolve without --cloudflare-aud, for a
// command that prints what to create in Cloudflare: the AUD tag exists
// only once the Access application it describes has been created.
func (b *Binding) AUDLater() *Binding {
	b.audLater = true
	return b
}

// Bind declares flags on fs for the named settings (every setting when none
// is named), and --config, under their help groups. A command binds only the
// settings it uses: the others keep their defaults, and their keys are
// accepted but not used in a config file shared with serve.
func Bind(fs *cli.FlagSet, names ...string) *Binding {
	b := &Binding{fs: fs, bound: map[string]bool{}, flags: map[string]*settingFlag{}}
	for _, n := range names {
		if _, ok := lookup(n); !ok {
			panic("config: no setting " + n)
		}
		b.bound[n] = true
	}
	if len(names) == 0 {
		for _, s := range settings {
			b.bound[s.name] = true
		}
	}
	for _, g := range groups() {
		fs.Group(g)
		for _, s := range settings {
			if s.group != g || !b.bound[s.name] {
				continue
			}
			f := &settingFlag{v: s.def, isBool: s.val.kind == "bool"}
			fs.Var(f, s.name, s.usage)
			fs.Describe(s.name, s.val.kind, "")
			b.flags[s.name] = f
		}
	}
	fs.Group(GroupSettings)
	b.configFile = fs.String("config", "", "a YAML file (`path`) with the same keys as the flags, '_' for '-' (env CLEARANCE_CONFIG)")
	return b
}

// groups is groupOrder, then any group a setting names that it lacks.
func groups() []string {
	named := make([]string, len(settings))
	for i, s := range settings {
		named[i] = s.group
	}
	return cli.GroupOrder(groupOrder, named)
}

func lookup(name string) (setting, bool) {
	for _, s := range settings {
		if s.name == name {
			return s, true
		}
	}
	return setting{}, false
}

// SharedFooter is Footer for the commands that bind some of serve's
// settings beside flags of their own.
const SharedFooter = "The settings it shares with serve can also come from the environment, CLEARANCE_ and the flag's name in upper case with '_' for '-' (CLEARANCE_DATA_DIR), or from the --config file, the flag's name with '_' for '-' (data_dir: /var/lib/clearance); the other flags only from the command line. A flag wins over the environment, the environment over the file."

// Footer says where settings come from besides flags; the help prints it
// under the flags.
const Footer = "Each setting can also come from the environment, CLEARANCE_ and the flag's name in upper case with '_' for '-' (CLEARANCE_DATA_DIR), or from the --config file, the flag's name with '_' for '-' (data_dir: /var/lib/clearance). A flag wins over the environment, the environment over the file."

// Resolve reads the config file (--config, else CLEARANCE_CONFIG) and the
// environment and returns the configuration, once the flags are parsed.
func (b *Binding) Resolve(getenv func(string) string) (*Config, error) {
	explicit := map[string]bool{}
	b.fs.Visit(func(f *flag.Flag) { explicit[f.Name] = true })
	configFile := *b.configFile
	if configFile == "" {
		configFile = getenv("CLEARANCE_CONFIG")
	}
	var file map[string]fileValue
	if configFile != "" {
		var err error
		if file, err = readFile(configFile); err != nil {
			return nil, err
		}
	}

	c := &Config{file: configFile, sources: map[string]source{}}
	var errs []error
	for _, s := range settings {
		v, from := s.def, "default"
		if b.bound[s.name] {
			var src source
			if fv, ok := file[s.key()]; ok {
				v, from = fv.value, fmt.Sprintf("%s:%d: %s", configFile, fv.line, s.key())
				src.inFile, src.fileText = true, fv.value
			}
			if ev := getenv(s.env()); ev != "" {
				v, from, src.by = ev, s.env(), s.env()
			}
			if explicit[s.name] {
				v, from, src.by = b.flags[s.name].v, "--"+s.name, "--"+s.name
			}
			src.text = v
			c.sources[s.name] = src
		}
		if v == "" && s.def == "" {
			continue
		}
		if err := s.val.set(c, v); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", from, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if err := c.finish(b.audLater); err != nil {
		return nil, err
	}
	return c, nil
}

// SettingsFile is the settings file the settings were read from (--config
// or CLEARANCE_CONFIG); "" when there is none.
func (c *Config) SettingsFile() string { return c.file }

// SetBy names where a setting's value in force came from: its flag
// (--enforcement), its environment variable (CLEARANCE_ENFORCEMENT), the
// settings file, or the default.
func (c *Config) SetBy(name string) string {
	src, ok := c.sources[name]
	switch {
	case !ok:
		return "default"
	case src.by != "":
		return src.by
	case src.inFile:
		return "settings file"
	}
	return "default"
}

// Outranked is a setting the settings file gives a value that is not in
// force, because a flag or an environment variable sets it.
type Outranked struct {
	Key string // the settings file's key: enforcement
	By  string // what sets it instead: --enforcement, CLEARANCE_ENFORCEMENT
}

// Compare compares next, the same settings resolved again after the
// settings file changed, with c, the settings in force. changed are the
// settings file keys whose value next would put in force differs from
// c's; outranked the keys the file gives a value a flag or an environment
// variable overrides, in next. Neither says any value: some are secrets.
func (c *Config) Compare(next *Config) (changed []string, outranked []Outranked) {
	for _, s := range settings {
		was, ok := c.sources[s.name]
		now, ok2 := next.sources[s.name]
		if !ok || !ok2 {
			continue
		}
		if was.text != now.text {
			changed = append(changed, s.key())
		}
		if now.by != "" && now.inFile && now.fileText != now.text {
			outranked = append(outranked, Outranked{Key: s.key(), By: now.by})
		}
	}
	return changed, outranked
}

// ErrNoDataDir says how to give the data dir.
var ErrNoDataDir = errors.New("--data-dir is required (or CLEARANCE_DATA_DIR, or data_dir in the config file)")

// Load parses args (without the program and subcommand names) with every
// setting bound to fs, resolves them with the environment and the YAML file
// named by --config, and requires the data dir: serve's configuration.
func Load(fs *flag.FlagSet, args []string, getenv func(string) string) (*Config, error) {
	b := Bind(cli.Wrap(fs))
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	c, err := b.Resolve(getenv)
	if err != nil {
		return nil, err
	}
	if c.DataDir == "" {
		return nil, ErrNoDataDir
	}
	return c, nil
}

type fileValue struct {
	value string
	line  int
}

func readFile(path string) (map[string]fileValue, error) {
	// A FIFO or a device in the file's place is refused, not waited on:
	// SIGHUP's reload reads it on the one goroutine every reload takes.
	data, err := regularfile.Read(path, maxFileSize)
	switch {
	case errors.Is(err, regularfile.ErrTooLarge):
		return nil, fmt.Errorf("config file %s is larger than %d bytes", path, maxFileSize)
	case err != nil:
		return nil, fmt.Errorf("config file: %w", err)
	}
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, fmt.Errorf("config file %s: %w", path, err)
	}
	out := map[string]fileValue{}
	if len(root.Content) == 0 {
		return out, nil
	}
	top := root.Content[0]
	if top.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("%s:%d: the config file must be a mapping of key: value", path, top.Line)
	}
	known := map[string]bool{}
	for _, s := range settings {
		known[s.key()] = true
	}
	var errs []error
	for i := 0; i+1 < len(top.Content); i += 2 {
		k, v := top.Content[i], top.Content[i+1]
		switch {
		case !known[k.Value]:
			errs = append(errs, fmt.Errorf("%s:%d: unknown key %q (known: %s)", path, k.Line, k.Value, knownKeys()))
		case v.Kind != yaml.ScalarNode || v.Alias != nil:
			errs = append(errs, fmt.Errorf("%s:%d: %s must be a single value", path, v.Line, k.Value))
		case out[k.Value].line != 0:
			errs = append(errs, fmt.Errorf("%s:%d: %s is set twice (first on line %d)", path, k.Line, k.Value, out[k.Value].line))
		default:
			out[k.Value] = fileValue{value: v.Value, line: v.Line}
		}
	}
	return out, errors.Join(errs...)
}

func knownKeys() string {
	keys := make([]string, 0, len(settings))
	for _, s := range settings {
		keys = append(keys, s.key())
	}
	sort.Strings(keys)
	return strings.Join(keys, ", ")
}

// durText writes a default duration as the help and docs show it: the
// largest whole unit (720h, 5m, 30s), as time.ParseDuration reads it back.
func durText(d time.Duration) string {
	switch {
	case d%time.Hour == 0:
		return strconv.FormatInt(int64(d/time.Hour), 10) + "h"
	case d%time.Minute == 0:
		return strconv.FormatInt(int64(d/time.Minute), 10) + "m"
	case d%time.Second == 0:
		return strconv.FormatInt(int64(d/time.Second), 10) + "s"
	}
	return d.String()
}

// canonicalBaseURL lower-cases an https base URL's host and drops the
// default port and any trailing slash.
func canonicalBaseURL(s string) (string, error) {
	u, err := url.Parse(s)
	if err != nil || u.Scheme != "https" || u.Hostname() == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return "", fmt.Errorf("%q is not an https URL with a host (and nothing after the path)", s)
	}
	host := strings.ToLower(u.Hostname())
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	if p := u.Port(); p != "" && p != "443" {
		host += ":" + p
	}
	return "https://" + host + strings.TrimSuffix(u.EscapedPath(), "/"), nil
}

// finish fills derived defaults and checks settings that depend on each other.
func (c *Config) finish(audLater bool) error {
	if c.SSOPublicURL == "" {
		_, port, _ := net.SplitHostPort(c.SSOListen)
		host := c.PublicHost()
		if host == "" {
			host = "localhost"
		}
		c.SSOPublicURL = "https://" + net.JoinHostPort(host, port)
	}
	// Agents sign proofs of presence for the presence URL exactly as the
	// verifier names it, and compare it byte for byte: keep it canonical
	// (lower-case host, no default port, no trailing slash).
	canon, err := canonicalBaseURL(c.SSOPublicURL)
	if err != nil {
		return fmt.Errorf("--sso-public-url: %w", err)
	}
	c.SSOPublicURL = canon
	if c.BrowserBinding != BindingCertificate {
		if strings.HasSuffix(c.SSOPublicURL, ":0") {
			return fmt.Errorf("--sso-public-url %s names port 0 (from --sso-listen): set --sso-public-url to the https:// URL browsers reach the sign-in listener at", c.SSOPublicURL)
		}
		if _, err := presence.OriginOf(c.PresenceURL()); err != nil {
			return fmt.Errorf("--sso-public-url %s cannot carry proofs of presence (%v); give a plain https://host[:port] URL", c.SSOPublicURL, err)
		}
	}
	if (c.OktaAudience == "") != (len(c.OktaACSURLs) == 0) {
		return errors.New("set both --okta-audience and --okta-acs-url (Okta shows both on the identity provider's page), or neither")
	}
	if c.OktaRequestCert != "" && !c.OktaConfigured() {
		return errors.New("--okta-request-cert needs --okta-audience and --okta-acs-url")
	}
	if c.OktaAPITokenFile != "" && c.OktaClientID != "" {
		return errors.New("set --okta-api-token-file or --okta-client-id, not both")
	}
	if (c.OktaClientID == "") != (c.OktaPrivateKeyFile == "") {
		return errors.New("--okta-client-id and --okta-private-key-file go together")
	}
	if c.OktaOrgURL == "" && (c.OktaAPITokenFile != "" || c.OktaClientID != "") {
		return errors.New("an Okta API credential needs --okta-org-url")
	}
	if c.ClientCertHeader != "" && len(c.TrustedProxies) == 0 {
		return errors.New("--client-cert-header needs --trusted-proxies: a certificate header is believed only from a trusted proxy")
	}
	if (c.CloudflareTeam == "") != (c.CloudflareAUD == "") && !(audLater && c.CloudflareAUD == "") {
		return errors.New("set both --cloudflare-team and --cloudflare-aud (the Access application's AUD tag), or neither")
	}
	if c.CloudflareCertsURL != "" && c.CloudflareTeam == "" {
		return errors.New("--cloudflare-certs-url needs --cloudflare-team and --cloudflare-aud")
	}
	if err := c.CloudflareScores().Check(); err != nil {
		return fmt.Errorf("--cloudflare-score-*: %w", err)
	}
	if c.LiveCheckAfter >= c.MaxPostureAge {
		return fmt.Errorf("--live-check-after (%s) must be shorter than --max-posture-age (%s)", c.LiveCheckAfter, c.MaxPostureAge)
	}
	return nil
}
