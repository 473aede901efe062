// Package server assembles clearance-verifier: it creates or loads the data
// dir (PKI, admin token, database), builds the gRPC and HTTP listeners with
// their deliberate TLS modes, and runs them as actors.
package server

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"

	"github.com/clearance/clearance/pkg/certpem"
	"github.com/clearance/clearance/pkg/logsample"
	"github.com/clearance/clearance/pkg/run"
	adminv1 "github.com/clearance/clearance/proto/gen/clearance/admin/v1"
	agentv1 "github.com/clearance/clearance/proto/gen/clearance/agent/v1"
	"github.com/clearance/clearance/verifier/access"
	"github.com/clearance/clearance/verifier/admin"
	"github.com/clearance/clearance/verifier/agentapi"
	"github.com/clearance/clearance/verifier/ca"
	"github.com/clearance/clearance/verifier/cloudflare"
	"github.com/clearance/clearance/verifier/cluster"
	"github.com/clearance/clearance/verifier/config"
	"github.com/clearance/clearance/verifier/datadir"
	"github.com/clearance/clearance/verifier/decision"
	"github.com/clearance/clearance/verifier/enroll"
	"github.com/clearance/clearance/verifier/grpcconn"
	"github.com/clearance/clearance/verifier/grpclite"
	"github.com/clearance/clearance/verifier/httpsconn"
	"github.com/clearance/clearance/verifier/hub"
	"github.com/clearance/clearance/verifier/idp"
	"github.com/clearance/clearance/verifier/ingest"
	"github.com/clearance/clearance/verifier/metrics"
	"github.com/clearance/clearance/verifier/oktaapi"
	"github.com/clearance/clearance/verifier/ratelimit"
	"github.com/clearance/clearance/verifier/reason"
	"github.com/clearance/clearance/verifier/rollout"
	"github.com/clearance/clearance/verifier/scep"
	"github.com/clearance/clearance/verifier/scim"
	"github.com/clearance/clearance/verifier/signin"
	"github.com/clearance/clearance/verifier/storage"
	"github.com/clearance/clearance/verifier/storage/postgres"
	"github.com/clearance/clearance/verifier/storage/sqlite"
	"github.com/clearance/clearance/verifier/web"
)

// DBFile is the SQLite database's file name in the data dir.
const DBFile = datadir.SQLiteFile

// MaxMessageSize bounds any gRPC message the verifier receives: a report's
// payload limit plus room for the envelope. Larger messages are refused by
// gRPC with RESOURCE_EXHAUSTED before they are read into memory.
const MaxMessageSize = 512 << 10

// connBuffer is the gRPC write buffer size per connection (shared while
// the connection is idle). There is no read buffer: the connection is TLS,
// which holds each record it decrypts already, so gRPC reads frames
// straight from it instead of copying them through another 4 KiB per
// connection.
const connBuffer = 4 << 10

// grpcStopGrace is how long calls get to finish at shutdown; agent streams
// never end on their own, so they are cut after it.
const grpcStopGrace = 5 * time.Second

// Server is a configured verifier, ready to run.
type Server struct {
	cfg        *config.Config
	log        *slog.Logger
	now        func() time.Time
	CA         *ca.Authority
	Store      storage.Store
	Hub        *hub.Hub
	Metrics    *metrics.Metrics
	policies   *policySource
	admin      *admin.Server
	grpcDevice *grpclite.Server // connections with a device certificate (grpcconn sorts them)
	grpcOther  *grpc.Server     // every other connection, on tighter terms
	grpcTLS    *tls.Config
	grpcHealth *health.Server
	http       *http.Server
	sso        *http.Server
	health     *storeHealth
	// IdP is the SAML identity provider Okta calls; Gate decides sign-ins.
	IdP  *idp.IdP
	Gate *access.Gate
	// Rollout keeps grace, bypass and exemption state for sign-ins.
	Rollout *rollout.Source
	// Relay connects the hub to other replicas sharing a PostgreSQL
	// database; nil with SQLite.
	Relay *postgres.Relay

	// Okta reads Okta's management API (nil: no --okta-org-url).
	Okta     *oktaapi.Client
	oktaHTTP *http.Client
	oktaPoll time.Duration
	// hubRelay, when set, is the hub's relay on SQLite too (tests).
	hubRelay cluster.Relay
	// helloTimeout bounds the wait for a Connect stream's Hello (0: the
	// default, agentapi.HelloTimeout).
	helloTimeout time.Duration
	// reread resolves the settings again on SIGHUP (WithSettingsReread).
	reread func() (*config.Config, error)
	// oktaRequestCerts are Okta's request-signing certificates
	// (--okta-request-cert), and samlCert the verifier's SAML signing
	// certificate: their expiry is watched (checkCertExpiry).
	oktaRequestCerts []*x509.Certificate
	samlCert         *x509.Certificate

	// GRPCAddr, HTTPAddr and SSOAddr are the bound addresses once Actors
	// has run (useful with port 0).
	GRPCAddr, HTTPAddr, SSOAddr net.Addr
}

// Option changes how New builds the server (for tests).
type Option func(*Server)

// WithOktaHTTP sends requests to Okta through c (tests: a fake org's
// certificate).
func WithOktaHTTP(c *http.Client) Option { return func(s *Server) { s.oktaHTTP = c } }

// WithOktaPollInterval sets how often the System Log and Okta's changed
// users are read (default a minute).
func WithOktaPollInterval(d time.Duration) Option { return func(s *Server) { s.oktaPoll = d } }

// WithHelloTimeout bounds the wait for a Connect stream's Hello (tests).
func WithHelloTimeout(d time.Duration) Option { return func(s *Server) { s.helloTimeout = d } }

// WithHubRelay gives the hub this relay to other replicas (tests: one
// that cannot answer); a PostgreSQL store's own relay is used otherwise.
func WithHubRelay(r cluster.Relay) Option { return func(s *Server) { s.hubRelay = r } }

// WithClock injects the clock.
func WithClock(now func() time.Time) Option { return func(s *Server) { s.now = now } }

// OpenStore opens the data dir's SQLite database.
func OpenStore(ctx context.Context, dataDir string) (*sqlite.Store, error) {
	return sqlite.Open(ctx, filepath.Join(dataDir, DBFile))
}

var (
	_ storage.Store = (*sqlite.Store)(nil)
	_ storage.Store = (*postgres.Store)(nil)
)

// OpenDatabase opens the database the --database setting names: SQLite in
// the data dir when it is empty, else PostgreSQL. serve and the CLI use it.
func OpenDatabase(ctx context.Context, dataDir, database string) (storage.Store, error) {
	if database == "" {
		return OpenStore(ctx, dataDir)
	}
	if err := checkPostgresURL(database); err != nil {
		return nil, err
	}
	return postgres.Open(ctx, database)
}

func checkPostgresURL(database string) error {
	if !config.IsPostgres(database) {
		return errors.New("the database must be empty (SQLite in the data dir) or a postgres:// URL")
	}
	if storage.PasswordPastHost(database) {
		return errors.New("the database URL has more than one '@', or one after its host: percent-encode '/', '?', '#' and '@' in its password and in parameters' values (%2F, %3F, %23, %40)")
	}
	return nil
}

// DatabaseSchema reads, changing nothing, the schema version of the
// database serve uses for dataDir and database (as OpenDatabase takes
// them; 0: no verifier's tables) and this binary's.
func DatabaseSchema(ctx context.Context, dataDir, database string) (current, latest int64, err error) {
	if database == "" {
		return sqlite.SchemaVersion(ctx, filepath.Join(dataDir, datadir.SQLiteFile))
	}
	if err := checkPostgresURL(database); err != nil {
		return 0, 0, err
	}
	return postgres.SchemaVersion(ctx, database)
}

// New prepares the data dir and everything that serves from it.
func New(ctx context.Context, cfg *config.Config, log *slog.Logger, opts ...Option) (*Server, error) {
	s := &Server{cfg: cfg, log: log, now: time.Now}
	for _, o := range opts {
		o(s)
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("creating data dir: %w", err)
	}
	if cfg.Policies == "" {
		// Without policies every device would pass vacuously: fail closed.
		return nil, errors.New("no policy file: pass --policies FILE (examples/policies.yaml is a good start)")
	}
	var err error
	if s.policies, err = newPolicySource(cfg.Policies); err != nil {
		return nil, fmt.Errorf("loading policies: %w", err)
	}
	hosts := []string{"localhost", "127.0.0.1", "::1"}
	if h := cfg.SSOHost(); h != "" && h != cfg.PublicHost() {
		hosts = append([]string{h}, hosts...)
	}
	if h := cfg.PublicHost(); h != "" {
		hosts = append([]string{h}, hosts...)
	}
	if s.CA, err = ca.LoadOrCreate(cfg.DataDir, ca.Options{Hosts: hosts, Now: s.now}); err != nil {
		return nil, fmt.Errorf("loading PKI: %w", err)
	}
	if r := s.CA.Report(); r.CreatedCA || r.ServerCert != ca.ServerCertKept {
		log.Info("pki ready", "component", "server", "created_ca", r.CreatedCA, "server_cert", string(r.ServerCert), "ca", filepath.Join(cfg.DataDir, "ca.pem"))
	}
	token, err := admin.LoadOrCreateToken(filepath.Join(cfg.DataDir, admin.TokenFile))
	if err != nil {
		return nil, err
	}
	scrapeToken, err := metrics.LoadOrCreateToken(filepath.Join(cfg.DataDir, metrics.TokenFile))
	if err != nil {
		return nil, err
	}
	if s.Store, err = OpenDatabase(ctx, cfg.DataDir, cfg.Database); err != nil {
		return nil, fmt.Errorf("opening database (%s): %w", config.DatabaseLabel(cfg.Database), err)
	}
	log.Info("database open", "component", "server", "database", config.DatabaseLabel(cfg.Database))
	// The offline commands (secret, scep challenge) act on the database the
	// record names, so they write where this server reads.
	if err := datadir.Write(cfg.DataDir, datadir.Record{Database: cfg.Database, GRPCAddress: cfg.GRPCListen}); err != nil {
		s.Store.Close()
		return nil, err
	}
	s.Metrics = metrics.New()
	s.health = &storeHealth{store: s.Store, now: s.now, metrics: s.Metrics, log: log.With("component", "health")}
	s.Hub = &hub.Hub{Nonces: s.Store, Reports: s.Store, Now: s.now, OnChange: s.Metrics.AgentsConnected, Log: log,
		CurrentKey: func(ctx context.Context, deviceID string) ([]byte, error) {
			d, err := s.Store.GetDevice(ctx, deviceID)
			if err == nil && d.Revoked() {
				return nil, nil
			}
			return d.PublicKey, err
		}}
	if pg, ok := s.Store.(*postgres.Store); ok {
		// Other replicas may share this database: live checks for agents
		// streaming to them go through the relay.
		s.Relay = pg.Relay(postgres.RelayOptions{Logger: log})
		s.Hub.Relay = s.Relay
		switch may, err := pg.PublicMayConnect(ctx); {
		case err != nil:
			log.Warn("could not read who may connect to the database", "component", "server", "err", err)
		case may:
			log.Warn("any role on the database server may connect to this database, and flood the replicas' signals: REVOKE CONNECT ON DATABASE ... FROM PUBLIC (see docs/deploy-verifier.md)", "component", "server")
		}
	}
	if s.hubRelay != nil {
		s.Hub.Relay = s.hubRelay
	}
	if cfg.EnrollApproval == "" || cfg.EnrollApproval == config.EnrollAuto {
		// The default, so that a first verifier works at once; the
		// secret sits on every Mac, readable by its users.
		log.Warn("enroll_approval is auto: any machine with an enroll secret enrolls a hardware UUID and serial number no device has yet; in production use known (serial numbers imported from your MDM: clearance-verifier devices import) or manual", "component", "server")
	}
	agents := &agentapi.Server{
		Store: s.Store,
		CA:    s.CA,
		Enroller: &enroll.Service{
			Store: s.Store, CA: s.CA, CertLifetime: cfg.DeviceCertLifetime, Admission: cfg.EnrollApproval, Now: s.now, Logger: log,
		},
		Ingest:   &ingest.Verifier{Store: s.Store, Now: s.now, MaxSkew: cfg.MaxReportSkew, Keep: cfg.ReportHistory},
		Hub:      s.Hub,
		Policies: s.policies,
		Metrics:  s.Metrics,
		Logger:   log,
		Now:      s.now,
		// Only a verifier that binds sign-ins by the agent's proof asks
		// agents to give one.
		PresenceURL:      presenceURL(cfg),
		BrowserCertGrace: cfg.BrowserCertGrace,
		HelloTimeout:     s.helloTimeout,
	}
	s.Rollout = &rollout.Source{Store: s.Store, Settings: s.policies, Ceiling: decision.Enforcement(cfg.Enforcement), Period: cfg.BypassPeriod}
	s.Metrics.PoliciesLoaded(s.now())
	s.Metrics.EnforcementCeiling(string(s.Rollout.CurrentCeiling()))
	log.Info("enforcement ceiling", "component", "server", "enforcement", string(s.Rollout.CurrentCeiling()), "set_by", cfg.SetBy("enforcement"))
	// Grace starts that no policy holds any more (its grace removed, or it
	// moved to warn or monitor) are forgotten now and after each reload.
	forgetGraces := func(snap access.PolicySnapshot) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		switch n, err := s.Rollout.ForgetIdleGraces(ctx, snap.Rollout); {
		case err != nil:
			log.Error("grace periods no policy holds were not forgotten; they are at the next reload", "component", "server", "err", err)
		case n > 0:
			log.Info("grace periods forgotten: their policy no longer has a grace, or is not enforced", "component", "server", "forgotten", n)
		}
	}
	forgetGraces(s.policies.Snapshot())
	s.policies.loaded = forgetGraces
	s.Gate = &access.Gate{
		Store: s.Store, Checker: s.Hub, Policies: s.policies,
		MaxPostureAge: cfg.MaxPostureAge, MaxClockSkew: cfg.MaxReportSkew, LiveCheckAfter: cfg.LiveCheckAfter,
		LiveCheckTimeout: cfg.LiveCheckTimeout, Metrics: s.Metrics, Now: s.now, Rollout: s.Rollout,
		People: s.Store, Scopes: s.policies,
		Rules: access.PeopleRules{RequireProvisioned: cfg.SCIMUsers == config.SCIMRequired,
			Binding: decision.UserBinding(cfg.UserBinding), BindingRule: cfg.UserBindingRule},
	}
	s.admin = &admin.Server{Store: s.Store, Hub: s.Hub, Policies: s.policies, Metrics: s.Metrics, Logger: log, Now: s.now, Access: s.Gate,
		CheckTimeout: cfg.LiveCheckTimeout, Ceiling: s.Rollout.CurrentCeiling, MaxPostureAge: cfg.MaxPostureAge}
	if err := s.buildOkta(cfg, log); err != nil {
		return nil, err
	}
	if err := s.buildSSO(ctx, cfg, log); err != nil {
		return nil, err
	}

	// gRPC: TLS with the server certificate; client certificates are
	// requested but not required, because Enroll comes before a device has
	// one. agentapi.Authenticate verifies them per call, so an expired or
	// revoked certificate gets a precise status instead of a handshake error.
	// grpcconn does the handshake and serves connections with a device
	// certificate from grpcDevice, the others from grpcOther on tighter
	// terms (few calls, closed when idle or old, few of them); both serve
	// every service.
	s.grpcTLS = &tls.Config{
		GetCertificate: s.CA.GetServerCertificate,
		ClientAuth:     tls.RequestClientCert,
		MinVersion:     tls.VersionTLS12,
	}
	lim := grpcconn.Limits{
		MaxStreams: cfg.GRPCMaxStreams, UnauthenticatedStreams: cfg.GRPCUnauthStreams,
		UnauthenticatedIdle: cfg.GRPCUnauthIdle, UnauthenticatedMaxAge: cfg.GRPCUnauthMaxAge,
	}
	adminAuth := &admin.Auth{Token: token, Store: s.Store, Now: s.now, Logger: log, Metrics: s.Metrics}
	unaryAuth, streamAuth := adminAuth.Interceptors()
	// Health Watch and reflection streams are bounded before anything else
	// runs.
	long := grpcconn.NewLongStreams(s.Metrics)
	// Device connections (agents, each holding one mostly idle stream for
	// days) are served by grpclite, which holds no buffers while idle;
	// their messages are bounded by a report's size.
	dev := grpcconn.DeviceTerms(lim)
	dev.MaxRecvMsgSize = MaxMessageSize
	dev.WriteBufferSize = connBuffer
	dev.UnaryInterceptors = []grpc.UnaryServerInterceptor{unaryAuth}
	dev.StreamInterceptors = []grpc.StreamServerInterceptor{long.Interceptor(), streamAuth}
	dev.Logger = log
	s.grpcDevice = grpclite.NewServer(dev)
	// Every other connection: grpc-go's server with small buffers (a write
	// buffer shared while idle); the unauthenticated terms carry their own,
	// smaller message bound (grpcconn.UnauthenticatedMaxMessage).
	s.grpcOther = grpc.NewServer(append(grpcconn.UnauthenticatedOptions(lim),
		grpc.ChainUnaryInterceptor(unaryAuth),
		grpc.ChainStreamInterceptor(long.Interceptor(), streamAuth),
		grpc.ReadBufferSize(0),
		grpc.WriteBufferSize(connBuffer),
		grpc.SharedWriteBuffer(true),
	)...)
	s.grpcHealth = health.NewServer()
	for _, srv := range []reflection.GRPCServer{s.grpcDevice, s.grpcOther} {
		agentv1.RegisterAgentServiceServer(srv, agents)
		adminv1.RegisterAdminServiceServer(srv, s.admin)
		healthpb.RegisterHealthServer(srv, s.grpcHealth)
		reflection.Register(srv)
	}

	// /metrics needs the scrape token (metrics.token in the data dir): it
	// shows the fleet's state and every refusal, to whoever reaches the
	// port otherwise. /healthz stays open for load balancers.
	scrapeRefused := &logsample.Sample{Every: time.Minute}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", s.health.serveHTTP)
	mux.Handle("GET /metrics", metrics.RequireToken(scrapeToken, s.metricsHandler(), func(r *http.Request) {
		if ok, skipped := scrapeRefused.Take(s.now()); ok {
			log.Warn("metrics_unauthorized: a scrape without the metrics token was refused", "component", "server", "remote", r.RemoteAddr, "others_not_logged", skipped)
		}
	}))
	if cfg.CloudflareConfigured() {
		cf, err := s.cloudflareHandler(cfg, log)
		if err != nil {
			return nil, err
		}
		mux.Handle("POST "+cloudflare.Path, cf)
	}
	s.http = &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: handshakeAndHeaders,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		// HTTP/1.1 only, as on the sign-in listener.
		TLSNextProto: noHTTP2,
		// HTTPS with the same server certificate; nothing here needs a
		// client certificate (Cloudflare's posture calls carry an Access
		// application token instead).
		TLSConfig: &tls.Config{GetCertificate: s.CA.GetServerCertificate, MinVersion: tls.VersionTLS12},
		// Failed handshakes are anyone's to cause: debug, as on the sign-in
		// listener.
		ErrorLog: slog.NewLogLogger(log.With("component", "http").Handler(), slog.LevelDebug),
	}
	return s, nil
}

// cloudflareHandler is Cloudflare's device posture endpoint: Access's
// application token checked against the team's keys, devices scored by the
// same Gate sign-ins go through.
func (s *Server) cloudflareHandler(cfg *config.Config, log *slog.Logger) (http.Handler, error) {
	m := s.Metrics.NewCloudflare()
	tokens, err := cloudflare.NewTokenVerifier(cloudflare.TokenOptions{
		Team: cfg.CloudflareTeam, Audience: cfg.CloudflareAUD, CertsURL: cfg.CloudflareCertsURL,
		Now: s.now, Log: log, Fetched: m.JWKSFetch,
	})
	if err != nil {
		return nil, fmt.Errorf("cloudflare: %w", err)
	}
	store, ok := s.Store.(cloudflare.Store)
	if !ok {
		return nil, fmt.Errorf("cloudflare: the %T store cannot find devices by serial number", s.Store)
	}
	log.Info("cloudflare device posture endpoint on", "component", "server", "path", cloudflare.Path, "issuer", tokens.Issuer(), "match_hostname", cfg.CloudflareMatchHostname)
	return &cloudflare.Handler{
		Tokens: tokens, Store: store, Decide: s.Gate, Scores: cfg.CloudflareScores(),
		MatchHostname: cfg.CloudflareMatchHostname, Metrics: m, Log: log, Now: s.now, Grace: s.Rollout,
	}, nil
}

// buildSSO prepares the sign-in listener: the SAML IdP, device
// identification from browser certificates, and the pages.
func (s *Server) buildSSO(ctx context.Context, cfg *config.Config, log *slog.Logger) error {
	ident, err := idp.LoadOrCreate(ctx, cfg.DataDir, cfg.IdPKeyBits, cfg.IdPSigningKey, s.now())
	if err != nil {
		return fmt.Errorf("loading SAML signing identity: %w", err)
	}
	if ident.Created {
		log.Info("saml signing certificate created", "component", "server", "cert", filepath.Join(cfg.DataDir, idp.CertFile), "sha256", ident.Fingerprint())
	}
	settings := idp.Settings{
		MetadataURL: cfg.MetadataURL(), SSOURL: cfg.SSOURL(),
		Audience: cfg.OktaAudience, ACSURLs: cfg.OktaACSURLs, MaxRequestSkew: cfg.MaxRequestSkew,
		AllowUnsigned: cfg.AllowUnsignedRequests, Sign: cfg.Sign,
	}
	if cfg.OktaRequestCert != "" {
		data, err := os.ReadFile(cfg.OktaRequestCert)
		if err != nil {
			return fmt.Errorf("--okta-request-cert: %w", err)
		}
		certs, err := certpem.Parse(data)
		if err != nil {
			return fmt.Errorf("--okta-request-cert %s: %w", cfg.OktaRequestCert, err)
		}
		// Every certificate in the file counts: Okta's current one and,
		// during a rotation, the next.
		settings.RequestCerts = certs
		s.oktaRequestCerts = certs
	}
	s.samlCert = ident.Cert
	if s.IdP, err = idp.New(ident, settings); err != nil {
		return err
	}
	switch {
	case !s.IdP.SignaturesCheckable():
		log.Warn("okta_request_cert is not set: sign-ins are refused until Okta's request-signing certificate is given (or allow_unsigned_requests, which lets whoever builds a request name the user it asserts)", "component", "server")
	case len(settings.RequestCerts) == 0:
		s.Metrics.UnsignedRequestsAllowed(true)
		log.Warn("UNSIGNED AUTHNREQUESTS ARE ANSWERED (allow_unsigned_requests): whoever can send a browser to the sign-in URL names the user the response asserts; set okta_request_cert", "component", "server")
	}
	if !s.IdP.Configured() {
		log.Warn("okta is not configured: sign-ins are refused until okta_audience and okta_acs_url are set (see clearance-verifier okta setup)", "component", "server")
	}
	pages, err := web.New()
	if err != nil {
		return err
	}
	binding := signin.Binding(cfg.BrowserBinding)
	var pres *signin.Presence
	if binding != signin.BindingCertificate {
		candidate := make([]byte, 32)
		_, _ = rand.Read(candidate)
		key, err := s.Store.ServerKey(ctx, deviceHintKey, candidate)
		if err != nil {
			return fmt.Errorf("loading the device-hint key: %w", err)
		}
		pres = &signin.Presence{
			AgentAddr: net.JoinHostPort("127.0.0.1", strconv.Itoa(cfg.AgentPresencePort)),
			URL:       cfg.PresenceURL(), Devices: s.Store, Connected: s.Hub.Connected, MaybeConnected: s.Hub.MaybeConnected,
			HintKey: key, MaxSkew: cfg.MaxReportSkew,
		}
		if err := pres.Check(); err != nil {
			return fmt.Errorf("proof of presence: %w", err)
		}
	}
	h := &signin.Handler{
		IdP:      s.IdP,
		Binding:  binding,
		Presence: pres,
		Identify: &signin.Identifier{CA: s.CA, Store: s.Store, Header: cfg.ClientCertHeader, Trusted: cfg.TrustedProxies, RequireVouched: cfg.RequireAgentVouchedCert},
		Gate:     s.Gate,
		Store:    s.Store,
		Pages:    pages,
		Rollout:  s.Rollout,
		Options: signin.Options{Log: log, Metrics: s.Metrics, Now: s.now, PendingTTL: cfg.PendingSignInTTL,
			MaxHeldAge: cfg.MaxHeldRequestAge, DebugSAML: cfg.DebugSAML,
			Presses: ratelimit.NewKeyed(ratelimit.Options{Rate: ratelimit.PressPerMacRate, Burst: ratelimit.PressPerMacBurst, Now: s.now})},
	}
	// Unsigned requests are answered only without Okta's certificate.
	if cfg.AllowUnsignedRequests && cfg.OktaRequestCert == "" {
		if rate := cfg.SSOUnsignedRateLimit; rate > 0 {
			burst := ratelimit.UnsignedBurst(rate)
			h.UnsignedStarts = &signin.UnsignedLimits{
				Anyone: ratelimit.NewShared(rate, burst, s.now),
				Known:  ratelimit.NewShared(rate, burst, s.now),
				PerMac: ratelimit.NewKeyed(ratelimit.Options{Rate: ratelimit.UnsignedPerMacRate, Burst: ratelimit.UnsignedPerMacBurst, Now: s.now}),
			}
		} else {
			log.Warn("sso_unsigned_rate_limit is 0: sign-ins on requests Okta did not sign are not bounded from every address together", "component", "server")
		}
	}
	ra, raReason, err := s.CA.LoadOrCreateRA()
	if err != nil {
		return fmt.Errorf("loading the SCEP RA certificate: %w", err)
	}
	if raReason != ca.ServerCertKept {
		log.Info("scep ra certificate issued", "component", "server", "reason", string(raReason))
	}
	enrollCerts, err := scep.New(scep.Options{
		CA: s.CA, RA: ra, Store: s.Store, StaticChallenge: cfg.SCEPChallenge,
		Lifetime: cfg.BrowserCertLifetime, RateLimit: cfg.SCEPRateLimit,
		Logger: log, Metrics: s.Metrics, Now: s.now,
	})
	if err != nil {
		return fmt.Errorf("SCEP endpoint: %w", err)
	}
	mux := http.NewServeMux()
	h.Register(mux)
	// Macs enroll their browser certificate here (the user-scope profile's
	// SCEP URL): same public listener, no client certificate needed.
	mux.Handle(scep.Path, enrollCerts)
	mux.HandleFunc("GET /healthz", s.health.serveHTTP)
	// Okta's SCIM provisioning: same public listener, a bearer token
	// instead of a client certificate.
	mux.Handle(scim.Prefix+"/", &scim.Handler{Store: s.Store, BaseURL: strings.TrimSuffix(cfg.SSOPublicURL, "/") + scim.Prefix,
		Log: log, Now: s.now})
	var handler http.Handler = mux
	if cfg.SSORateLimit > 0 {
		handler = s.rateLimited(cfg, pages, log, mux)
	} else {
		log.Warn("sso_rate_limit is 0: the sign-in listener does not limit how often one address may call it", "component", "server")
	}
	s.sso = &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: handshakeAndHeaders,
		ReadTimeout:       30 * time.Second,
		// A sign-in may wait for a live check.
		WriteTimeout: 30 * time.Second,
		// A sign-in's requests come seconds apart; a browser opens a new
		// connection for the next sign-in.
		IdleTimeout:    ssoIdle,
		MaxHeaderBytes: 64 << 10,
		TLSNextProto:   noHTTP2,
		TLSConfig:      ssoTLS(cfg, s.CA),
		ErrorLog:       slog.NewLogLogger(log.With("component", "sso").Handler(), slog.LevelDebug),
	}
	return nil
}

// http1Only is c offering HTTP/1.1 alone in ALPN.
func http1Only(c *tls.Config) *tls.Config {
	c = c.Clone()
	c.NextProtos = []string{"http/1.1"}
	return c
}

// noHTTP2 keeps an HTTPS listener to HTTP/1.1: one request at a time on a
// connection, so the bound on connections bounds the requests whose
// headers and bodies are held at once. Over HTTP/2 each connection may
// carry 250 at once (Go's default), and 20 connections that held the
// headers and part of the body of 100 sign-in requests each took 417 MB.
// A sign-in is two or three small requests; browsers lose nothing.
var noHTTP2 = map[string]func(*http.Server, *tls.Conn, http.Handler){}

// handshakeAndHeaders bounds a connection's TLS handshake and then each
// request's headers (net/http bounds the handshake by the least of its
// timeouts): a browser needs well under a second for both.
const handshakeAndHeaders = 5 * time.Second

// ssoIdle closes a sign-in listener connection idle this long.
const ssoIdle = 30 * time.Second

// rateLimited puts the sign-in listener behind a token bucket per client
// address: every path is one a browser or a Mac reaches without
// credentials, and each costs work (a signature check, an RSA decryption
// for SCEP) or, for unsigned sign-ins, rows. /healthz is left to load
// balancers: it writes at most once a second however often it is polled.
func (s *Server) rateLimited(cfg *config.Config, pages *web.Renderer, log *slog.Logger, next http.Handler) http.Handler {
	burst := cfg.SSORateBurst
	if burst <= 0 {
		burst = ratelimit.DefaultBurst
	}
	m := &ratelimit.Middleware{
		Limiter: ratelimit.New(ratelimit.Options{Rate: cfg.SSORateLimit, Burst: burst, Now: s.now}),
		Trusted: cfg.TrustedProxies, Exempt: cfg.SSORateExempt,
		Skip: func(r *http.Request) bool { return r.URL.Path == "/healthz" },
		Paths: []string{signin.PathSSO, signin.PathRetry, signin.PathPresence, signin.PathMetadata, signin.PathCert, scep.Path,
			scim.Prefix + "/"},
		Page: func(w http.ResponseWriter, r *http.Request) {
			// A client over its limit does not keep the connection: its
			// next request costs it a new handshake, and an idle timer it
			// could keep resetting is gone.
			w.Header().Set("Connection", "close")
			if strings.HasPrefix(r.URL.Path, scim.Prefix+"/") {
				// Okta reads a SCIM error and retries after Retry-After.
				scim.WriteError(w, http.StatusTooManyRequests, "too many requests from this address; retry later")
				return
			}
			pages.Refused(w, http.StatusTooManyRequests, web.Refused{Reason: reason.RateLimited})
		},
		Metrics: s.Metrics, Log: log, Now: s.now,
	}
	return m.Wrap(next)
}

// presenceURL is the URL agents sign proofs of presence for: none when
// sign-ins are bound by certificate only, so agents refuse to sign.
func presenceURL(cfg *config.Config) string {
	if cfg.BrowserBinding == config.BindingCertificate {
		return ""
	}
	return cfg.PresenceURL()
}

// metricsHandler serves the registry, and repeats the unsigned-requests
// warning on every scrape: whoever reads the metrics is told too.
func (s *Server) metricsHandler() http.Handler {
	h := promhttp.HandlerFor(s.Metrics.Registry, promhttp.HandlerOpts{})
	if !s.cfg.AllowUnsignedRequests || s.cfg.OktaRequestCert != "" {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.log.Warn("UNSIGNED AUTHNREQUESTS ARE ANSWERED (allow_unsigned_requests): set okta_request_cert", "component", "server")
		h.ServeHTTP(w, r)
	})
}

// deviceHintKey names the key that signs browsers' device-hint cookies.
const deviceHintKey = "device-hint"

// ssoTLS is the sign-in listener's TLS. With certificate binding, browser
// certificates are requested, not required, and verified per request by
// signin.Identifier: a browser without one, or with one from another CA,
// gets a page that says so instead of a TLS error; ClientCAs only names the
// device CA in the handshake, so browsers offer the right certificate. With
// agent binding none is asked for: a request would make macOS offer any
// matching identity to the person, for nothing.
func ssoTLS(cfg *config.Config, authority *ca.Authority) *tls.Config {
	c := &tls.Config{GetCertificate: authority.GetServerCertificate, MinVersion: tls.VersionTLS12, ClientAuth: tls.NoClientCert}
	if cfg.RequestsClientCerts() {
		c.ClientAuth, c.ClientCAs = tls.RequestClientCert, authority.ClientCAs()
	}
	return c
}

// auditStart records what this start puts in force, as what SIGHUP
// changes is: a ceiling lowered, or a policy file edited, while the
// verifier was stopped shows there. It runs once the listeners are bound:
// a start that fails records nothing.
func (s *Server) auditStart(log *slog.Logger) {
	ps := s.policies.Current()
	ev := storage.AuditEvent{At: s.now(), Actor: StartActor, Action: "verifier.start",
		Detail: fmt.Sprintf("enforcement ceiling %s (set by %s), policy set %s, %d policies, on %s, gRPC %s",
			s.Rollout.CurrentCeiling(), s.cfg.SetBy("enforcement"), ps.GetVersion(), len(ps.GetPolicies()), hostName(), s.GRPCAddr)}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.Store.AppendAudit(ctx, ev); err != nil {
		log.Error("audit event not recorded", "action", ev.Action, "err", err)
	}
}

// Actors adds the server's long-running parts to g. Listeners are opened
// here so a busy port fails start-up at once.
func (s *Server) Actors(g *run.Group) error {
	rawGRPC, err := net.Listen("tcp", s.cfg.GRPCListen)
	if err != nil {
		return fmt.Errorf("gRPC listener: %w", err)
	}
	grpcLn := grpcconn.New(rawGRPC, grpcconn.Options{
		TLS: s.grpcTLS,
		// Only a current certificate of an enrolled, unrevoked device gets
		// device terms; any other is served like a connection without one.
		Device:          (&agentapi.CurrentCerts{CA: s.CA, Devices: s.Store, Now: s.now}).Device,
		Unauthenticated: s.cfg.GRPCUnauthConns, PerSource: s.cfg.GRPCUnauthPerSource, DevicePerSource: s.cfg.GRPCDevicePerSource,
		Metrics: s.Metrics, Log: s.log,
	})
	httpLn, err := net.Listen("tcp", s.cfg.HTTPListen)
	if err != nil {
		grpcLn.Close()
		return fmt.Errorf("HTTP listener: %w", err)
	}
	ssoLn, err := net.Listen("tcp", s.cfg.SSOListen)
	if err != nil {
		grpcLn.Close()
		httpLn.Close()
		return fmt.Errorf("SSO listener: %w", err)
	}
	s.GRPCAddr, s.HTTPAddr, s.SSOAddr = grpcLn.Addr(), httpLn.Addr(), ssoLn.Addr()
	log := s.log.With("component", "server")
	// Both HTTPS listeners are open to anyone: each holds a bounded number
	// of connections, so a flood of them cannot take the memory, or the
	// file descriptors the gRPC listener's agents need.
	httpConns := ratelimit.NewConns(httpLn, ratelimit.ConnsOptions{
		Name: "http", Max: ratelimit.HTTPConns, PerSource: ratelimit.HTTPConnsPerSource, Metrics: s.Metrics, Log: s.log, Now: s.now,
	})
	ssoConns := ratelimit.NewConns(ssoLn, ratelimit.ConnsOptions{
		Name: "sso", Max: orDefault(s.cfg.SSOMaxConns, ratelimit.DefaultSSOConns),
		PerSource: orDefault(s.cfg.SSOMaxConnsPerSource, ratelimit.DefaultSSOConnsPerSource),
		Exempt:    append(append([]*net.IPNet{}, s.cfg.TrustedProxies...), s.cfg.SSORateExempt...),
		Metrics:   s.Metrics, Log: s.log, Now: s.now,
	})
	// TLS is ended here, not by the servers, so that what a request's
	// headers can make a connection hold is bounded by their lines too.
	httpTLS := httpsconn.Listen(httpConns, httpsconn.Options{TLS: http1Only(s.http.TLSConfig), Now: s.now, Handshake: handshakeAndHeaders,
		Log:    s.log.With("component", "http"),
		Closed: func() { s.Metrics.HTTPConnClosed("http", ratelimit.ClosedHeaderLines) }})
	ssoTLS := httpsconn.Listen(ssoConns, httpsconn.Options{TLS: http1Only(s.sso.TLSConfig), Now: s.now, Handshake: handshakeAndHeaders,
		Log:    s.log.With("component", "sso"),
		Closed: func() { s.Metrics.HTTPConnClosed("sso", ratelimit.ClosedHeaderLines) }})
	s.http.ConnState = func(c net.Conn, st http.ConnState) { httpConns.ConnState(c, st); httpTLS.ConnState(c, st) }
	s.sso.ConnState = func(c net.Conn, st http.ConnState) { ssoConns.ConnState(c, st); ssoTLS.ConnState(c, st) }
	s.http.ConnContext, s.sso.ConnContext = httpsconn.ConnContext, httpsconn.ConnContext
	s.checkDescriptors(log)
	s.auditStart(log)
	// `devices` and `decisions` find the admin API at the bound address.
	if err := datadir.Write(s.cfg.DataDir, datadir.Record{Database: s.cfg.Database, GRPCAddress: grpcLn.Addr().String()}); err != nil {
		log.Warn("recording the gRPC address failed", "err", err)
	}

	// Added first, so its interrupt runs first: the moment shutdown
	// begins, /healthz says so, while the HTTPS listener stays up until
	// the other actors have stopped (interrupts run in the order added).
	stopDrain := make(chan struct{})
	g.Add("drain", func() error { <-stopDrain; return nil }, func(error) {
		if !s.health.stopping.Swap(true) {
			log.Info("draining: /healthz answers 503 until the verifier has stopped")
		}
		stopOnce(stopDrain)
	})

	g.Add("sso", func() error {
		log.Info("sso listening", "addr", ssoLn.Addr().String(), "sso_url", s.cfg.SSOURL())
		if err := s.sso.Serve(ssoTLS); !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	}, func(error) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.sso.Shutdown(ctx)
	})

	streamsEnded := make(chan struct{})
	g.Add("grpc", func() error {
		log.Info("grpc listening", "addr", grpcLn.Addr().String())
		s.grpcHealth.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
		return grpcLn.Serve(s.grpcDevice, s.grpcOther)
	}, func(error) {
		s.grpcHealth.Shutdown()
		// The streams cut below keep their presence records (hub.Retire).
		s.Hub.Retire()
		stopped := make(chan struct{})
		go func() { // ends when both have stopped, cut or not
			var wg sync.WaitGroup
			wg.Add(2)
			go func() { defer wg.Done(); s.grpcDevice.GracefulStop() }()
			go func() { defer wg.Done(); s.grpcOther.GracefulStop() }()
			wg.Wait()
			close(stopped)
		}()
		select {
		case <-stopped:
		case <-time.After(grpcStopGrace):
			// Agent streams never end on their own; cut them.
			s.grpcDevice.Stop()
			s.grpcOther.Stop()
			<-stopped
		}
		grpcLn.Close()
		close(streamsEnded)
	})

	if s.Hub.Relay != nil {
		// The relay outlives the agent streams: when it stops, this
		// replica's presence rows are deleted, and a stream still open
		// here would count as no agent on the other replicas, where
		// --browser-binding either lets a certificate decide alone.
		ctx, cancel := context.WithCancel(context.Background())
		g.Add("relay", func() error { return s.Hub.Run(ctx) }, func(error) {
			wctx, wcancel := context.WithTimeout(context.Background(), 2*grpcStopGrace)
			defer wcancel()
			select {
			case <-streamsEnded:
				// Cut streams' handlers may still be returning.
				if !s.Hub.WaitEmpty(wctx) {
					log.Warn("agent streams still open; the relay stops anyway", "streams", s.Hub.Count())
				}
			case <-wctx.Done():
				log.Warn("agent streams still open; the relay stops anyway", "streams", s.Hub.Count())
			}
			cancel()
		})
	}

	g.Add("http", func() error {
		log.Info("https listening", "addr", httpLn.Addr().String())
		if err := s.http.Serve(httpTLS); !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	}, func(error) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.http.Shutdown(ctx)
	})

	// SIGHUP reloads the settings file's enforcement and the policies; a
	// bad file is logged and what was in force stays.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	stopHup := make(chan struct{})
	g.Add("sighup", func() error {
		for {
			select {
			case <-hup:
				// Reload logs what failed, file by file.
				_ = s.Reload(context.Background())
			case <-stopHup:
				return nil
			}
		}
	}, func(error) { signal.Stop(hup); close(stopHup) })

	// The server certificate is renewed in place well before it expires
	// (listeners pick it up through GetCertificate), however long the
	// verifier runs.
	stopRenew := make(chan struct{})
	s.checkCertExpiry(log)
	g.Add("server-cert", func() error {
		t := time.NewTicker(12 * time.Hour)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				reason, err := s.CA.RefreshServerCert()
				switch {
				case err != nil:
					log.Error("renewing the server certificate failed", "err", err)
				case reason != ca.ServerCertKept:
					log.Info("server certificate re-issued", "reason", string(reason))
				}
				s.checkCertExpiry(log)
			case <-stopRenew:
				return nil
			}
		}
	}, func(error) { close(stopRenew) })

	// clearance_devices{state} is counted from the whole database now and
	// then: a count per minute costs a read per device. The agent versions
	// are counted with it, in one grouped read.
	stopStates := make(chan struct{})
	g.Add("device-states", func() error {
		t := time.NewTicker(DeviceStatesInterval)
		defer t.Stop()
		for {
			s.CountDevices(context.Background())
			select {
			case <-t.C:
			case <-stopStates:
				return nil
			}
		}
	}, func(error) { close(stopStates) })

	s.oktaActors(g)

	// Expired nonces, request IDs, held sign-ins and superseded device
	// certificates are swept so their tables stay small; decisions and
	// audit events past their retention too.
	stopGC := make(chan struct{})
	g.Add("gc", func() error {
		t := time.NewTicker(time.Minute)
		defer t.Stop()
		skewLog := logsample.Sample{Every: databaseSkewLogEvery}
		s.checkDatabaseClock(context.Background(), log, &skewLog)
		for {
			select {
			case <-t.C:
				s.checkDatabaseClock(context.Background(), log, &skewLog)
				s.sweep(context.Background(), log)
			case <-stopGC:
				return nil
			}
		}
	}, func(error) { close(stopGC) })
	return nil
}

// stopOnce closes c unless it is closed already: an actor may be
// interrupted more than once.
func stopOnce(c chan struct{}) {
	select {
	case <-c:
	default:
		close(c)
	}
}

func orDefault(n, def int) int {
	if n > 0 {
		return n
	}
	return def
}

// DeviceStatesInterval is how often the device-state gauges are counted.
const DeviceStatesInterval = time.Minute

// CountDevices counts the devices by agent version and by state into the
// clearance_devices_by_agent_version and clearance_devices gauges, and
// those whose agent rejected the settings it was given into
// clearance_devices_settings_rejected (the server does it every
// DeviceStatesInterval). The versions come first, in one grouped read:
// the states read the reports of connected Macs, and a count of states
// that fails or runs out of time does not take the versions with it.
func (s *Server) CountDevices(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, DeviceStatesInterval)
	defer cancel()
	versions, err := s.Store.CountAgentVersions(ctx)
	if err != nil {
		s.log.Warn("counting devices by agent version failed", "component", "server", "err", err)
	} else {
		s.Metrics.AgentVersions(versions)
	}
	counts, err := s.admin.CountDevices(ctx, s.cfg.MaxPostureAge)
	if err != nil {
		s.log.Warn("counting devices by state failed", "component", "server", "err", err)
		return
	}
	s.Metrics.Devices(counts.States, counts.SettingsRejected)
}

// CertExpiryWarning is how long before a certificate the verifier depends
// on expires that its log warns, at start and twice a day.
const CertExpiryWarning = 30 * 24 * time.Hour

// checkCertExpiry records when each certificate the verifier depends on
// expires (clearance_certificate_expiry_timestamp_seconds) and warns of
// those that expire within CertExpiryWarning, with what to do: Okta's
// request-signing certificate above all, past which every signed sign-in
// is refused.
func (s *Server) checkCertExpiry(log *slog.Logger) {
	now := s.now()
	type watched struct {
		name, advice string
		cert         *x509.Certificate
	}
	var latest *x509.Certificate
	for _, c := range s.oktaRequestCerts {
		if latest == nil || c.NotAfter.After(latest.NotAfter) {
			latest = c
		}
	}
	var leaf *x509.Certificate
	if tc := s.CA.ServerCertificate(); tc.Leaf != nil {
		leaf = tc.Leaf
	} else if len(tc.Certificate) > 0 {
		leaf, _ = x509.ParseCertificate(tc.Certificate[0])
	}
	for _, w := range []watched{
		{"okta_request", "every sign-in Okta signs will be refused (bad_signature): put Okta's new request-signing certificate in --okta-request-cert (both, during the change) and restart", latest},
		{"saml_signing", "Okta will refuse this verifier's responses: make a new SAML signing identity and give Okta its certificate (docs/okta.md)", s.samlCert},
		{"tls", "the verifier re-issues it on its own; if this persists, see the log for why it could not", leaf},
		{"ca", "every agent's trust in this verifier ends with it: plan a new CA (docs/operations.md, The data dir)", s.CA.Root()},
		{"device_ca", "device certificates cannot outlive it: plan a new CA (docs/operations.md, The data dir)", s.CA.DeviceCA()},
	} {
		if w.cert == nil {
			continue
		}
		s.Metrics.CertificateExpiry(w.name, w.cert.NotAfter)
		if left := w.cert.NotAfter.Sub(now); left < CertExpiryWarning {
			log.Warn("certificate expires soon", "component", "server", "cert", w.name, "not_after", w.cert.NotAfter.UTC(),
				"days_left", int(left.Hours()/24), "then", w.advice)
		}
	}
}

// lapsedNonceKept is how long an expired nonce is kept: twice the skew a
// report's observed_at may have (the Mac's clock may be that far either
// way), since a report older than that is refused as stale anyway.
func lapsedNonceKept(skew time.Duration) time.Duration {
	if skew <= 0 {
		skew = ingest.DefaultMaxSkew
	}
	return 2 * skew
}

// auditRetention is how long the audit log is kept: configured, or the
// default when the setting is unset (zero), never "keep nothing".
func auditRetention(d time.Duration) time.Duration {
	if d <= 0 {
		return storage.DefaultAuditRetention
	}
	return d
}

func (s *Server) sweep(ctx context.Context, log *slog.Logger) {
	now := s.now()
	for _, sw := range []struct {
		what string
		run  func(context.Context, time.Time) (int, error)
		at   time.Time
	}{
		// A live check's nonce is kept a while after it expires, so that
		// an answer arriving late is known for what it is (stored as a
		// report that answers no check) rather than refused as a nonce
		// never issued, which would end the agent's stream.
		{"nonces", s.Store.DeleteExpiredNonces, now.Add(-lapsedNonceKept(s.cfg.MaxReportSkew))},
		{"request_ids", s.Store.DeleteExpiredRequestIDs, now},
		{"pending_sign_ins", s.Store.DeleteExpiredPendingSignIns, now},
		{"sign_in_challenges", s.Store.DeleteExpiredSignInChallenges, now},
		{"decisions", s.Store.DeleteDecisionsBefore, now.Add(-s.cfg.DecisionRetention)},
		{"pending_enrollments", s.Store.DeleteExpiredEnrollmentRequests, now.Add(-enroll.DefaultPendingMaxAge)},
		{"okta_sign_ins", s.Store.DeleteOktaSignInsBefore, now.Add(-s.cfg.DecisionRetention)},
		{"audit", s.Store.DeleteAuditBefore, now.Add(-auditRetention(s.cfg.AuditRetention))},
		// A device's superseded certificates, once expired: renewals
		// and re-enrollments would otherwise grow the table for good.
		{"certs", s.Store.DeleteSupersededDeviceCerts, now},
	} {
		if n, err := sw.run(ctx, sw.at); err != nil {
			log.Warn("sweeping failed", "table", sw.what, "err", err)
		} else if n > 0 {
			log.Debug("swept", "table", sw.what, "count", n)
		}
	}
}

// Close releases the database.
func (s *Server) Close() error { return s.Store.Close() }

// descriptorReserve is what the process needs besides connections: the
// database, the data dir's files, the log.
const descriptorReserve = 64

// checkDescriptors logs whether the listeners' bounds leave file
// descriptors for agents: every connection is one, and agents' connections
// are bounded only per device and address. A flood on the HTTPS listeners
// or of gRPC handshakes stops at its bounds; what is left of RLIMIT_NOFILE
// is what agents can use.
func (s *Server) checkDescriptors(log *slog.Logger) {
	limit := openFileLimit()
	if limit == 0 {
		return
	}
	bounded := uint64(orDefault(s.cfg.SSOMaxConns, ratelimit.DefaultSSOConns) + ratelimit.HTTPConns +
		orDefault(s.cfg.GRPCUnauthConns, grpcconn.DefaultUnauthenticatedConns) + grpcconn.MaxHandshakes + descriptorReserve)
	if limit <= bounded || limit-bounded < minAgentDescriptors {
		log.Warn("the open-file limit (RLIMIT_NOFILE) leaves few connections for agents: the HTTPS listeners and unauthenticated gRPC connections may hold most of it; raise the limit (LimitNOFILE= in systemd) or lower sso_max_conns",
			"nofile", limit, "held_by_bounds", bounded, "left_for_agents", int64(limit)-int64(bounded))
		return
	}
	log.Info("file descriptors", "nofile", limit, "held_by_bounds", bounded, "left_for_agents", limit-bounded)
}

// minAgentDescriptors is the fewest descriptors left for agents' own
// connections below which the start-up log warns.
const minAgentDescriptors = 1024
