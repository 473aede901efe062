// Package metrics owns the verifier's Prometheus metrics. Every method is
// safe on a nil *Metrics, so components work without metrics in tests.
package metrics

import (
	"cmp"
	"regexp"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Metrics are the verifier's counters, gauges and histograms.
type Metrics struct {
	Registry        *prometheus.Registry
	reportsAccepted prometheus.Counter
	reportsRejected *prometheus.CounterVec
	agents          prometheus.Gauge
	ingestSeconds   prometheus.Histogram
	enrollments     *prometheus.CounterVec
	renewals        *prometheus.CounterVec
	liveChecks      *prometheus.CounterVec
	ssoDecisions    *prometheus.CounterVec
	ssoRefused      *prometheus.CounterVec
	ssoSeconds      *prometheus.HistogramVec
	scepIssued      prometheus.Counter
	scepRefused     *prometheus.CounterVec
	devices         *prometheus.GaugeVec
	agentVersions   *prometheus.GaugeVec
	devicesRejected prometheus.Gauge
	unsigned        prometheus.Gauge
	reportsResent   prometheus.Counter
	checksLapsed    prometheus.Counter
	storeWritable   prometheus.Gauge
	databaseSkew    prometheus.Gauge
	clockSkew       prometheus.Histogram
	rateLimited     *prometheus.CounterVec
	ssoUnrecorded   *prometheus.CounterVec
	adminRefused    *prometheus.CounterVec
	ssoBusy         *prometheus.CounterVec
	grpcConns       *prometheus.GaugeVec
	grpcRefused     *prometheus.CounterVec
	grpcStreams     *prometheus.CounterVec
	httpConns       *prometheus.GaugeVec
	httpClosed      *prometheus.CounterVec
	reloads         *prometheus.CounterVec
	policiesLoaded  prometheus.Gauge
	certExpiry      *prometheus.GaugeVec
	ceiling         *prometheus.GaugeVec

	// versionsMu guards versionLabels, the labels the last count set,
	// so that the next removes those it does not set again.
	versionsMu    sync.Mutex
	versionLabels map[string]int
}

// Device states (clearance_devices{state}): every enrolled, unrevoked device
// is counted in exactly one.
const (
	// DeviceOffline: its agent holds no stream to any verifier.
	DeviceOffline = "offline"
	// DeviceStale: connected, but its latest report is older than
	// --max-posture-age (or there is none): a sign-in needs a live check.
	DeviceStale = "stale"
	// DeviceFailing: a fresh report on which a required policy does not pass.
	DeviceFailing = "failing"
	// DeviceCompliant: a fresh report on which every required policy passes.
	DeviceCompliant = "compliant"
)

// DeviceStates are the states clearance_devices reports, always all of them.
var DeviceStates = []string{DeviceCompliant, DeviceFailing, DeviceStale, DeviceOffline}

// UnsignedRequestsAllowed records whether unsigned AuthnRequests are answered.
func (m *Metrics) UnsignedRequestsAllowed(on bool) {
	if on {
		m.unsigned.Set(1)
	} else {
		m.unsigned.Set(0)
	}
}

// New registers the metrics (and Go/process collectors) in a fresh registry.
func New() *Metrics {
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		reportsAccepted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "clearance_reports_accepted_total", Help: "Posture reports verified and stored.",
		}),
		reportsRejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "clearance_reports_rejected_total", Help: "Posture reports refused, by reason.",
		}, []string{"reason"}),
		agents: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "clearance_agents_connected", Help: "Agents holding a Connect stream to this verifier.",
		}),
		ingestSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "clearance_ingest_duration_seconds",
			Help:    "Time from receiving a report to its ack being queued (verify + durable store).",
			Buckets: prometheus.ExponentialBuckets(0.0002, 2, 14),
		}),
		enrollments: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "clearance_enrollments_total", Help: "Enroll calls, by outcome.",
		}, []string{"outcome"}),
		renewals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "clearance_renewals_total", Help: "Renew calls of authenticated devices, by outcome (renewed; current_cert: the device had been issued as many certificates as it may be lately, and was answered with its current one; too_many_certs: refused for that reason; revoked_device, wrong_key, bad_csr, internal).",
		}, []string{"outcome"}),
		liveChecks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "clearance_live_checks_total", Help: "CheckNow round trips, by outcome.",
		}, []string{"outcome"}),
		ssoDecisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "clearance_sso_decisions_total", Help: "Sign-in decisions, by result (allow, deny), reason and enforcement mode (enforce, monitor: allowed but would deny, warn, warned, bypassed, exempt).",
		}, []string{"result", "reason", "mode"}),
		ssoRefused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "clearance_sso_requests_refused_total", Help: "AuthnRequests refused before any decision, by reason.",
		}, []string{"reason"}),
		ssoSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "clearance_sso_decision_duration_seconds",
			Help:    "Time from receiving a sign-in to its decision (live check included), by result.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		}, []string{"result"}),
		scepIssued: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "clearance_scep_certificates_issued_total", Help: "Browser certificates issued through SCEP.",
		}),
		scepRefused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "clearance_scep_requests_refused_total", Help: "SCEP requests refused, by reason.",
		}, []string{"reason"}),
	}
	m.devices = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "clearance_devices",
		Help: "Enrolled, unrevoked devices by state (compliant, failing, stale, offline), counted periodically from the whole database.",
	}, []string{"state"})
	for _, st := range DeviceStates {
		m.devices.WithLabelValues(st)
	}
	m.agentVersions = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "clearance_devices_by_agent_version",
		Help: "Enrolled, unrevoked devices by the agent version they last gave, counted periodically from the whole database: the 20 most common versions each under its own, the rest as other; unknown for devices that gave none, invalid for one that is not 1 to 64 letters, digits, '.', '_', '+' and '-' (not first).",
	}, []string{"version"})
	m.devicesRejected = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "clearance_devices_settings_rejected",
		Help: "Enrolled, unrevoked devices whose latest report said their agent rejected the settings it was given (a configuration profile it cannot use) and runs on others, counted with clearance_devices.",
	})
	m.unsigned = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "clearance_sso_unsigned_requests_allowed",
		Help: "1 when AuthnRequests Okta did not sign are answered (allow_unsigned_requests without okta_request_cert): whoever builds a request names the user the response asserts. Alert on it.",
	})
	m.reportsResent = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "clearance_reports_resent_total",
		Help: "Exact resends of stored reports (their ack was lost), acknowledged again without storing anything.",
	})
	m.checksLapsed = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "clearance_live_check_answers_lapsed_total",
		Help: "Reports that answered a live check after it expired: stored as reports, answering no check.",
	})
	m.storeWritable = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "clearance_store_writable",
		Help: "1 if the last write probe of the database (run by /healthz) committed, 0 if it failed.",
	})
	m.databaseSkew = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "clearance_database_clock_skew_seconds",
		Help: "This verifier's clock minus the database server's, measured every minute (PostgreSQL only). Replicas must agree within a minute: alert beyond 30 seconds.",
	})
	m.clockSkew = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "clearance_agent_clock_skew_seconds",
		Help:    "How far an agent's own clock is from the verifier's, absolute, as seen when it connects or enrolls.",
		Buckets: []float64{1, 5, 30, 60, 300, 900, 3600, 86400},
	})
	m.rateLimited = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "clearance_sso_rate_limited_total",
		Help: "Requests to the sign-in listener answered 429 because their client address was over --sso-rate-limit, by path (other paths as \"other\").",
	}, []string{"path"})
	m.ssoUnrecorded = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "clearance_sso_unrecorded_total",
		Help: "Sign-ins refused without a decision-log row: unsigned requests (anyone can send one) that identified no device, whose proof of presence was refused, or that were over --sso-unsigned-rate-limit (reason busy), by reason.",
	}, []string{"reason"})
	m.adminRefused = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "clearance_admin_refused_total",
		Help: "Admin API calls refused, by reason: no_token, malformed (no bearer token), unknown (no token of ours: made up, or a real id with a wrong value), revoked, expired (a named token's holder still using it), role (a read token calling what changes the verifier), unavailable (the database could not check a named token).",
	}, []string{"reason"})
	for _, r := range AdminRefusals {
		m.adminRefused.WithLabelValues(r)
	}
	m.ssoBusy = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "clearance_sso_unsigned_busy_total",
		Help: "Sign-ins on unsigned requests refused busy (503) by --sso-unsigned-rate-limit, by bucket: no_mac (browsers that showed no Mac), one_mac (one Mac's own bucket: that Mac, or whoever holds its certificate or hint, signs in more than once every 2 s), macs (every Mac's together). Each is in clearance_sso_unrecorded_total{reason=\"busy\"} too.",
	}, []string{"bucket"})
	for _, b := range []string{"no_mac", "one_mac", "macs"} {
		m.ssoBusy.WithLabelValues(b)
	}
	m.grpcConns = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "clearance_grpc_connections",
		Help: "Open gRPC connections by class: device (a device certificate), unauthenticated (none: enrollment, admin tools, health, reflection) and handshaking (TLS not done yet).",
	}, []string{"class"})
	for _, c := range []string{"device", "unauthenticated", "handshaking"} {
		m.grpcConns.WithLabelValues(c)
	}
	m.grpcRefused = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "clearance_grpc_connections_closed_total",
		Help: "gRPC connections the verifier closed to keep within its limits, by reason: evicted_per_source (a client address over --grpc-unauthenticated-conns-per-source), handshakes (too many TLS handshakes at once), evicted (the oldest unauthenticated connection, to make room under --grpc-unauthenticated-conns), handshake_failed (TLS failed or timed out), evicted_per_device (a device's oldest connection, past 4 for one device), evicted_device_per_source (a client address over --grpc-device-conns-per-source).",
	}, []string{"reason"})
	m.grpcStreams = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "clearance_grpc_streams_refused_total",
		Help: "Long-lived gRPC streams (health Watch, reflection) refused with RESOURCE_EXHAUSTED because as many were already open, by method.",
	}, []string{"method"})
	m.httpConns = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "clearance_http_connections",
		Help: "Open connections of the HTTPS listeners, by listener: sso (--sso-listen) and http (--http-listen: /metrics, /healthz).",
	}, []string{"listener"})
	m.httpClosed = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "clearance_http_connections_closed_total",
		Help: "Connections of the HTTPS listeners closed to keep within their limits, by listener and reason: evicted_per_source (its client address held --sso-max-conns-per-source), evicted (the listener held --sso-max-conns; the http listener: 32 per address, 128 in all), header_lines (a request's headers ran past 200 lines).",
	}, []string{"listener", "reason"})
	for _, l := range []string{"sso", "http"} {
		m.httpConns.WithLabelValues(l)
	}
	m.reloads = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "clearance_reloads_total",
		Help: "Re-reads of the policy file and the settings file (SIGHUP, or ReloadPolicies for the policy file), by file (policies, settings) and result (ok, failed: what was in force stays).",
	}, []string{"file", "result"})
	m.policiesLoaded = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "clearance_policies_loaded_timestamp_seconds",
		Help: "When the policy set in force was read from the policy file (Unix time): at start, then at each reload that succeeded.",
	})
	m.ceiling = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "clearance_enforcement_ceiling",
		Help: "1 for the --enforcement ceiling in force on this verifier (monitor, warn, enforce), 0 for the others.",
	}, []string{"mode"})
	for _, r := range []string{ReloadOK, ReloadFailed} {
		for _, f := range []string{ReloadPolicies, ReloadSettings} {
			m.reloads.WithLabelValues(f, r)
		}
	}
	m.certExpiry = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "clearance_certificate_expiry_timestamp_seconds",
		Help: "When each certificate the verifier depends on expires (Unix time), by cert: okta_request (Okta's request-signing certificate, the latest of --okta-request-cert's; past it every signed sign-in is refused), saml_signing (the verifier's SAML signing certificate Okta holds), tls (the server certificate, re-issued on its own), ca (the root agents trust), device_ca (the issuer of device certificates).",
	}, []string{"cert"})
	m.Registry.MustRegister(m.reloads, m.policiesLoaded, m.ceiling, m.certExpiry)
	m.Registry.MustRegister(m.rateLimited, m.ssoUnrecorded, m.adminRefused, m.ssoBusy, m.grpcConns, m.grpcRefused, m.grpcStreams, m.httpConns, m.httpClosed)
	m.storeWritable.Set(1)
	m.Registry.MustRegister(m.scepIssued, m.scepRefused, m.devices, m.agentVersions, m.devicesRejected, m.unsigned, m.reportsResent, m.checksLapsed, m.storeWritable, m.clockSkew, m.databaseSkew)
	m.Registry.MustRegister(m.reportsAccepted, m.reportsRejected, m.agents, m.ingestSeconds, m.enrollments, m.renewals, m.liveChecks,
		m.ssoDecisions, m.ssoRefused, m.ssoSeconds,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// ReportAccepted counts a stored report and how long it took.
func (m *Metrics) ReportAccepted(d time.Duration) {
	if m == nil {
		return
	}
	m.reportsAccepted.Inc()
	m.ingestSeconds.Observe(d.Seconds())
}

// ReportRejected counts a refused report.
func (m *Metrics) ReportRejected(reason string) {
	if m == nil {
		return
	}
	m.reportsRejected.WithLabelValues(reason).Inc()
}

// AgentsConnected sets the connected-agents gauge.
func (m *Metrics) AgentsConnected(n int) {
	if m == nil {
		return
	}
	m.agents.Set(float64(n))
}

// Enrollment counts an Enroll call's outcome.
func (m *Metrics) Enrollment(outcome string) {
	if m == nil {
		return
	}
	m.enrollments.WithLabelValues(outcome).Inc()
}

// Renewal counts a Renew call's outcome.
func (m *Metrics) Renewal(outcome string) {
	if m == nil {
		return
	}
	m.renewals.WithLabelValues(outcome).Inc()
}

// LiveCheck counts a live check's outcome.
func (m *Metrics) LiveCheck(outcome string) {
	if m == nil {
		return
	}
	m.liveChecks.WithLabelValues(outcome).Inc()
}

// SSODecision counts a sign-in decision and how long it took.
func (m *Metrics) SSODecision(allow bool, reason, mode string, d time.Duration) {
	if m == nil {
		return
	}
	result := "deny"
	if allow {
		result = "allow"
	}
	m.ssoDecisions.WithLabelValues(result, reason, mode).Inc()
	m.ssoSeconds.WithLabelValues(result).Observe(d.Seconds())
}

// SSORefused counts an AuthnRequest refused before any decision.
func (m *Metrics) SSORefused(reason string) {
	if m == nil {
		return
	}
	m.ssoRefused.WithLabelValues(reason).Inc()
}

// SCEPIssued counts a browser certificate issued through SCEP.
func (m *Metrics) SCEPIssued() {
	if m == nil {
		return
	}
	m.scepIssued.Inc()
}

// SCEPRefused counts a refused SCEP request.
func (m *Metrics) SCEPRefused(reason string) {
	if m == nil {
		return
	}
	m.scepRefused.WithLabelValues(reason).Inc()
}

// Devices sets the device-state gauges (a state missing from counts is
// 0) and the count of devices whose settings were rejected.
func (m *Metrics) Devices(counts map[string]int, settingsRejected int) {
	if m == nil {
		return
	}
	for _, st := range DeviceStates {
		m.devices.WithLabelValues(st).Set(float64(counts[st]))
	}
	m.devicesRejected.Set(float64(settingsRejected))
}

// The labels of clearance_devices_by_agent_version that are no version.
const (
	// AgentVersionUnknown: the device's agent gave no version.
	AgentVersionUnknown = "unknown"
	// AgentVersionInvalid: a version that is not one (plausibleVersion),
	// or one of these words.
	AgentVersionInvalid = "invalid"
	// AgentVersionOther: a plausible version less common than the
	// maxAgentVersions that have a label of their own.
	AgentVersionOther = "other"
)

// maxAgentVersions is how many versions clearance_devices_by_agent_version
// names; with unknown, invalid and other it has at most 23 series,
// whatever devices send.
const maxAgentVersions = 20

// versionPattern is a version as clearance-pkg -version takes them (and
// so as a package's agent reports it): 1 to 64 letters, digits, '.', '_',
// '+' and '-', not starting with '-' (1.2.3, 1.2.3-rc.1, 0.0.0-dev,
// 1.2.3+build.5, dev).
var versionPattern = regexp.MustCompile(`^[A-Za-z0-9._+][A-Za-z0-9._+-]{0,63}$`)

// plausibleVersion reports whether v may be a label of its own: a device
// key holder can send any string as its agent's version.
func plausibleVersion(v string) bool {
	switch v {
	case AgentVersionUnknown, AgentVersionInvalid, AgentVersionOther:
		return false
	}
	return versionPattern.MatchString(v)
}

// agentVersionLabels bounds counts, devices by the agent version they
// gave, to the labels of clearance_devices_by_agent_version: "" is
// unknown, what is not plausibleVersion is invalid, and past the
// maxAgentVersions most common versions (a tie goes to the version first
// in byte order) the rest are other. Labels no device has are left out.
func agentVersionLabels(counts map[string]int) map[string]int {
	out := map[string]int{}
	type version struct {
		name    string
		devices int
	}
	var plausible []version
	for v, n := range counts {
		switch {
		case n <= 0:
		case v == "":
			out[AgentVersionUnknown] += n
		case !plausibleVersion(v):
			out[AgentVersionInvalid] += n
		default:
			plausible = append(plausible, version{v, n})
		}
	}
	slices.SortFunc(plausible, func(a, b version) int {
		return cmp.Or(cmp.Compare(b.devices, a.devices), cmp.Compare(a.name, b.name))
	})
	for i, v := range plausible {
		if i < maxAgentVersions {
			out[v.name] = v.devices
		} else {
			out[AgentVersionOther] += v.devices
		}
	}
	return out
}

// AgentVersions sets clearance_devices_by_agent_version from counts,
// devices by the agent version they gave (see agentVersionLabels), and
// removes the labels the last count set that this one does not: a version
// no device runs any more leaves no series behind.
func (m *Metrics) AgentVersions(counts map[string]int) {
	if m == nil {
		return
	}
	labels := agentVersionLabels(counts)
	m.versionsMu.Lock()
	defer m.versionsMu.Unlock()
	for v, n := range labels {
		m.agentVersions.WithLabelValues(v).Set(float64(n))
	}
	for v := range m.versionLabels {
		if _, ok := labels[v]; !ok {
			m.agentVersions.DeleteLabelValues(v)
		}
	}
	m.versionLabels = labels
}

// ReportResent counts an exact resend of a stored report, acknowledged again.
func (m *Metrics) ReportResent() {
	if m == nil {
		return
	}
	m.reportsResent.Inc()
}

// CheckAnswerLapsed counts a report that answered a live check after the
// check expired.
func (m *Metrics) CheckAnswerLapsed() {
	if m == nil {
		return
	}
	m.checksLapsed.Inc()
}

// Reload files and results (clearance_reloads_total{file,result}).
const (
	ReloadPolicies = "policies"
	ReloadSettings = "settings"
	ReloadOK       = "ok"
	ReloadFailed   = "failed"
)

// Reloaded counts one re-read of file (ReloadPolicies, ReloadSettings);
// a policy file read at at puts a new set in force.
func (m *Metrics) Reloaded(file string, err error, at time.Time) {
	if m == nil {
		return
	}
	if err != nil {
		m.reloads.WithLabelValues(file, ReloadFailed).Inc()
		return
	}
	m.reloads.WithLabelValues(file, ReloadOK).Inc()
	if file == ReloadPolicies {
		m.PoliciesLoaded(at)
	}
}

// PoliciesLoaded records when the policy set in force was read.
func (m *Metrics) PoliciesLoaded(at time.Time) {
	if m == nil {
		return
	}
	m.policiesLoaded.Set(float64(at.UnixNano()) / 1e9)
}

// CertificateExpiry records when the certificate named cert expires.
func (m *Metrics) CertificateExpiry(cert string, notAfter time.Time) {
	if m == nil {
		return
	}
	m.certExpiry.WithLabelValues(cert).Set(float64(notAfter.Unix()))
}

// EnforcementCeiling records the ceiling in force.
func (m *Metrics) EnforcementCeiling(mode string) {
	if m == nil {
		return
	}
	for _, e := range []string{"monitor", "warn", "enforce"} {
		v := 0.0
		if e == mode {
			v = 1
		}
		m.ceiling.WithLabelValues(e).Set(v)
	}
}

// StoreWritable records the outcome of the last write probe.
func (m *Metrics) StoreWritable(ok bool) {
	if m == nil {
		return
	}
	if ok {
		m.storeWritable.Set(1)
	} else {
		m.storeWritable.Set(0)
	}
}

// DatabaseClockSkew sets how far this verifier's clock is ahead of the
// database server's (negative: behind).
func (m *Metrics) DatabaseClockSkew(d time.Duration) {
	if m == nil {
		return
	}
	m.databaseSkew.Set(d.Seconds())
}

// AgentClockSkew records how far an agent's clock is from the verifier's.
func (m *Metrics) AgentClockSkew(d time.Duration) {
	if m == nil {
		return
	}
	m.clockSkew.Observe(d.Abs().Seconds())
}

// RateLimited counts a request the sign-in listener refused with 429.
func (m *Metrics) RateLimited(path string) {
	if m == nil {
		return
	}
	m.rateLimited.WithLabelValues(path).Inc()
}

// SSOUnrecorded counts a sign-in refused without a decision-log row.
func (m *Metrics) SSOUnrecorded(reason string) {
	if m == nil {
		return
	}
	m.ssoUnrecorded.WithLabelValues(reason).Inc()
}

// AdminRefusals are the reasons of clearance_admin_refused_total.
var AdminRefusals = []string{"no_token", "malformed", "unknown", "revoked", "expired", "role", "unavailable"}

// AdminRefused counts an admin API call refused, by one of AdminRefusals.
func (m *Metrics) AdminRefused(reason string) {
	if m == nil {
		return
	}
	m.adminRefused.WithLabelValues(reason).Inc()
}

// SSOUnsignedBusy counts an unsigned sign-in refused busy, by bucket.
func (m *Metrics) SSOUnsignedBusy(bucket string) {
	if m == nil {
		return
	}
	m.ssoBusy.WithLabelValues(bucket).Inc()
}

// GRPCConns moves the open-connections gauge of class by delta.
func (m *Metrics) GRPCConns(class string, delta int) {
	if m == nil {
		return
	}
	m.grpcConns.WithLabelValues(class).Add(float64(delta))
}

// GRPCConnClosed counts a connection closed to keep within a limit.
func (m *Metrics) GRPCConnClosed(reason string) {
	if m == nil {
		return
	}
	m.grpcRefused.WithLabelValues(reason).Inc()
}

// HTTPConns moves the open-connections gauge of an HTTPS listener.
func (m *Metrics) HTTPConns(listener string, delta int) {
	if m == nil {
		return
	}
	m.httpConns.WithLabelValues(listener).Add(float64(delta))
}

// HTTPConnClosed counts a connection an HTTPS listener closed to keep
// within its limits.
func (m *Metrics) HTTPConnClosed(listener, reason string) {
	if m == nil {
		return
	}
	m.httpClosed.WithLabelValues(listener, reason).Inc()
}

// GRPCStreamRefused counts a long-lived stream refused at its cap.
func (m *Metrics) GRPCStreamRefused(method string) {
	if m == nil {
		return
	}
	m.grpcStreams.WithLabelValues(method).Inc()
}
