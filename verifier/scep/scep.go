// Package scep owns the SCEP endpoint (RFC 8894) at which Macs enroll the
// browser's device certificate, as the user-scope profile asks them to:
// GetCACaps, GetCACert (the RSA RA certificate and the device CA chain) and
// PKIOperation (PKCSReq). A request is answered with a certificate only if
// its CSR names exactly one Mac by hardware UUID, its challenge is the
// static one or an unused one-time one, that Mac is enrolled and not
// revoked, and it has not had too many certificates today. Every refusal of
// a message that can be answered is a signed CertRep FAILURE with a
// failInfo; nothing is issued or recorded for it.
package scep

import (
	"bytes"
	"context"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/smallstep/pkcs7"

	"github.com/clearance/clearance/pkg/logsample"
	"github.com/clearance/clearance/verifier/ca"
	"github.com/clearance/clearance/verifier/storage"
)

// Path is where the lead mounts the handler (on the SSO listener).
const Path = "/scep"

// Limits on what is read before anything is parsed.
const (
	// MaxMessageSize bounds a PKIOperation message (the POST body, or the
	// decoded GET message). A PKCSReq with an RSA 4096 CSR is about 4 KiB.
	MaxMessageSize = 64 << 10
	// maxQuery bounds a GET query: base64 of MaxMessageSize, percent-encoded.
	maxQuery = 3*((MaxMessageSize+2)/3*4) + 256
)

// Capabilities is the GetCACaps answer: only what this endpoint does.
// SCEPStandard implies AES, SHA-256 and POSTPKIOperation; they are listed
// too for clients that look for them by name. No Renewal: RenewalReq is
// refused (a Mac re-enrolls with a challenge instead).
const Capabilities = "POSTPKIOperation\nSHA-256\nAES\nSCEPStandard\n"

// Content types of the answers.
const (
	contentTypeCACaps = "text/plain"
	contentTypeCARA   = "application/x-x509-ca-ra-cert"
	contentTypePKIMsg = "application/x-pki-message"
)

func init() {
	// The envelope of a CertRep SUCCESS is encrypted with pkcs7's package
	// default, DES-CBC unless changed. "AES" in Capabilities promises
	// AES-128-CBC. Nothing else in the verifier encrypts with pkcs7.
	pkcs7.ContentEncryptionAlgorithm = pkcs7.EncryptionAlgorithmAES128CBC
}

// Store is what issuing a browser certificate reads and writes;
// storage.Store implements it.
type Store interface {
	GetDeviceByHardwareUUID(ctx context.Context, hardwareUUID string) (storage.Device, error)
	CountBrowserCertsSince(ctx context.Context, deviceID string, since time.Time) (int, error)
	SCEPChallengeUsable(ctx context.Context, hash []byte, now time.Time) (bool, error)
	RecordBrowserCert(ctx context.Context, c storage.BrowserCert, challengeHash []byte, limit storage.IssueLimit, now time.Time, audit storage.AuditEvent) error
}

// Issuer issues browser certificates; *ca.Authority implements it.
type Issuer interface {
	IssueBrowserCert(pub crypto.PublicKey, hardwareUUID string, lifetime time.Duration) (*x509.Certificate, error)
	// Chain is the issuing chain, DER, nearest first (device CA, root).
	Chain() [][]byte
}

var _ Issuer = (*ca.Authority)(nil)

// Metrics counts enrollments; the lead's metrics implement it.
type Metrics interface {
	SCEPIssued()
	SCEPRefused(reason string)
}

type nopMetrics struct{}

func (nopMetrics) SCEPIssued()        {}
func (nopMetrics) SCEPRefused(string) {}

// Defaults for the settings behind Options (browser-cert-lifetime,
// browser-cert-grace, which applies when an agent reports a new certificate,
// scep-rate-limit).
const (
	DefaultLifetime  = 365 * 24 * time.Hour
	DefaultGrace     = 72 * time.Hour
	DefaultRateLimit = 10
)

// Options configure New.
type Options struct {
	CA Issuer
	// RA decrypts requests and signs replies (ca.Authority.LoadOrCreateRA).
	RA    *ca.RA
	Store Store
	// StaticChallenge is the challenge in the user-scope profile; empty
	// accepts only one-time challenges. Compared in constant time.
	StaticChallenge string
	// Lifetime of issued certificates (config browser-cert-lifetime).
	Lifetime time.Duration
	// RateLimit is how many certificates one Mac may get per 24 hours
	// (config scep-rate-limit).
	RateLimit int
	Logger    *slog.Logger // default slog.Default()
	Metrics   Metrics      // optional
	Now       func() time.Time
}

// Handler serves SCEP at Path.
type Handler struct {
	issuer    Issuer
	ra        *ca.RA
	store     Store
	static    [sha256.Size]byte // SHA-256 of the static challenge, if any
	hasStatic bool
	lifetime  time.Duration
	rateLimit int
	log       *slog.Logger
	metrics   Metrics
	now       func() time.Time
	// refused samples the refusals' log lines by reason: anyone who can
	// reach the listener can cause them as often as the rate limit lets
	// them.
	refused logsample.Samples

	caCerts []byte // the GetCACert answer
}

// New checks opts and builds the handler.
func New(opts Options) (*Handler, error) {
	switch {
	case opts.CA == nil:
		return nil, errors.New("scep: no CA")
	case opts.RA == nil || opts.RA.Cert == nil || opts.RA.Key == nil:
		return nil, errors.New("scep: no RA certificate and key")
	case opts.Store == nil:
		return nil, errors.New("scep: no store")
	case opts.Lifetime <= 0:
		return nil, errors.New("scep: browser certificate lifetime must be positive")
	case opts.RateLimit < 1:
		return nil, errors.New("scep: rate limit must be at least 1")
	}
	h := &Handler{
		issuer:    opts.CA,
		ra:        opts.RA,
		store:     opts.Store,
		lifetime:  opts.Lifetime,
		rateLimit: opts.RateLimit,
		log:       opts.Logger,
		metrics:   opts.Metrics,
		now:       opts.Now,
	}
	if opts.StaticChallenge != "" {
		h.static, h.hasStatic = sha256.Sum256([]byte(opts.StaticChallenge)), true
	}
	if h.log == nil {
		h.log = slog.Default()
	}
	h.log = h.log.With("component", "scep")
	if h.metrics == nil {
		h.metrics = nopMetrics{}
	}
	if h.now == nil {
		h.now = time.Now
	}

	// GetCACert: the RA first (what clients encrypt to; they pick it by its
	// keyEncipherment usage), then the device CA and the root.
	ders := [][]byte{opts.RA.Cert.Raw}
	ders = append(ders, opts.CA.Chain()...)
	deg, err := pkcs7.DegenerateCertificate(bytes.Join(ders, nil))
	if err != nil {
		return nil, fmt.Errorf("scep: encoding GetCACert: %w", err)
	}
	h.caCerts = deg
	return h, nil
}

// ServeHTTP answers GET and POST at Path by operation.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodPost {
		w.Header().Set("Allow", "GET, POST")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	if len(r.URL.RawQuery) > maxQuery {
		h.refuseHTTP(w, r, RefuseOversized, http.StatusRequestURITooLong, fmt.Errorf("query of %d bytes", len(r.URL.RawQuery)))
		return
	}
	q := r.URL.Query()
	op := q.Get("operation")
	switch {
	case op == "GetCACaps" && r.Method == http.MethodGet:
		w.Header().Set("Content-Type", contentTypeCACaps)
		_, _ = io.WriteString(w, Capabilities)
	case op == "GetCACert" && r.Method == http.MethodGet:
		w.Header().Set("Content-Type", contentTypeCARA)
		_, _ = w.Write(h.caCerts)
	case op == "PKIOperation":
		msg, err := readMessage(w, r, q.Get("message"))
		switch {
		case errors.Is(err, errOversized):
			h.refuseHTTP(w, r, RefuseOversized, http.StatusRequestEntityTooLarge, err)
			return
		case err != nil:
			h.refuseHTTP(w, r, RefuseMalformedMessage, http.StatusBadRequest, err)
			return
		}
		h.pkiOperation(w, r, msg)
	default:
		h.refuseHTTP(w, r, RefuseUnknownOperation, http.StatusBadRequest, fmt.Errorf("operation %.40q with %s", op, r.Method))
	}
}

var errOversized = errors.New("message too large")

// readMessage returns the PKIOperation message: the POST body, or the GET
// message parameter (base64), each at most MaxMessageSize bytes.
func readMessage(w http.ResponseWriter, r *http.Request, param string) ([]byte, error) {
	if r.Method == http.MethodPost {
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxMessageSize))
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return nil, fmt.Errorf("%w: body over %d bytes", errOversized, MaxMessageSize)
		}
		if err != nil {
			return nil, fmt.Errorf("reading body: %w", err)
		}
		return body, nil
	}
	if len(param) > base64.StdEncoding.EncodedLen(MaxMessageSize)+64 {
		return nil, fmt.Errorf("%w: message parameter of %d bytes", errOversized, len(param))
	}
	// An unescaped '+' in a query decodes as a space; some clients send
	// line-wrapped base64.
	param = strings.NewReplacer(" ", "+", "\r", "", "\n", "").Replace(param)
	msg, err := base64.StdEncoding.DecodeString(param)
	if err != nil {
		return nil, fmt.Errorf("message parameter is not base64: %w", err)
	}
	if len(msg) > MaxMessageSize {
		return nil, fmt.Errorf("%w: message of %d bytes", errOversized, len(msg))
	}
	return msg, nil
}

// refusedLogEvery is how often a refusal of one reason is logged at warn;
// the others in between are logged at debug and counted in the next line.
const refusedLogEvery = 10 * time.Second

// logRefused logs a refused request: at warn at most once per
// refusedLogEvery for its reason, saying how many were left out, and at
// debug otherwise. Every refusal is counted in the metrics whatever the
// log shows.
func (h *Handler) logRefused(l *slog.Logger, reason Reason, attrs ...any) {
	attrs = append([]any{"reason", reason}, attrs...)
	if ok, skipped := h.refused.Take(string(reason), refusedLogEvery, h.now()); ok {
		l.Warn("scep request refused", append(attrs, "others_not_logged", skipped)...)
		return
	}
	l.Debug("scep request refused", attrs...)
}

// refuseHTTP answers a request that cannot be answered with a CertRep
// (there is no transaction to address it to) with a plain HTTP error.
func (h *Handler) refuseHTTP(w http.ResponseWriter, r *http.Request, reason Reason, status int, cause error) {
	h.logRefused(h.log, reason, "remote_addr", r.RemoteAddr, "error", cause)
	h.metrics.SCEPRefused(string(reason))
	http.Error(w, http.StatusText(status), status)
}
