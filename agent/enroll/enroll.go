// Package enroll owns the device's identity ceremonies with the verifier:
// first enrollment (enroll secret + CSR + facts for a device certificate),
// renewal over mutual TLS at two thirds of the certificate's life, and the
// decision to enroll again when the verifier no longer knows the
// certificate.
//
// Re-enrollment policy: the agent enrolls again, with the same key, only
// when an enroll secret is configured and either its certificate has expired
// or the verifier answers Unauthenticated (certificate unknown, e.g. after
// the verifier's data was reset). A revoked device (PermissionDenied) never
// re-enrolls on its own: its key never enrolls again, and the Mac comes back
// only with a new key (clearance-agent rotate-key) whose request the
// security team approves. Certificates are
// checked in the verifier's time (package clock), learnt from the very
// response that carries them, so a device whose clock is off keeps the
// certificate it was issued instead of enrolling again and again.
package enroll

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/clearance/clearance/agent/clock"
	"github.com/clearance/clearance/agent/conn"
	"github.com/clearance/clearance/agent/retry"
	"github.com/clearance/clearance/agent/state"
	"github.com/clearance/clearance/agent/version"
	"github.com/clearance/clearance/pkg/deviceid"
	"github.com/clearance/clearance/pkg/keyrotation"
	"github.com/clearance/clearance/pkg/logsample"
	agentv1 "github.com/clearance/clearance/proto/gen/clearance/agent/v1"
)

// ErrNoSecret means enrollment is needed but no enroll secret is configured.
var ErrNoSecret = retry.Permanent(errors.New("enrollment needed but no enroll secret is configured (--enroll-secret, CLEARANCE_ENROLL_SECRET or the EnrollSecret plist key)"))

// ErrUnusableResponse wraps why a certificate the verifier issued cannot be
// used (not for this key, not from the configured CA). Enrolling again
// would spend another use of the secret on the same answer.
var ErrUnusableResponse = retry.Permanent(errors.New("the verifier's answer cannot be used"))

// callTimeout bounds one Enroll or Renew call, so a verifier that accepts
// the connection but never answers cannot stall the agent.
const callTimeout = time.Minute

// Manager holds the device identity and performs the ceremonies.
type Manager struct {
	Dir *state.Dir
	// Signer is the device key.
	Signer       crypto.Signer
	Verifier     string
	Roots        *x509.CertPool
	EnrollSecret string
	// Previous, when set, is the key a rotation replaced (see
	// devicekey.Rotate): the next enrollment proves the new key with its
	// signature, and OnRotated is called once the verifier took it.
	Previous  crypto.Signer
	OnRotated func(ctx context.Context) error
	// Facts reads the device facts (through osquery).
	Facts func(ctx context.Context) (*agentv1.DeviceFacts, error)
	// Clock is the verifier's time as the agent knows it, shared with the
	// stream; Enroll and Renew responses correct it (default: the system
	// clock). After waits (default time.After).
	Clock  *clock.Clock
	After  func(time.Duration) <-chan time.Time
	Logger *slog.Logger

	mu      sync.Mutex
	id      *state.Identity
	changed chan struct{}

	stopOnce sync.Once
	stop     chan struct{}
}

func (m *Manager) init() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.changed == nil {
		m.changed = make(chan struct{}, 1)
	}
	m.stopOnce.Do(func() { m.stop = make(chan struct{}) })
	if m.Clock == nil {
		m.Clock = clock.New(clock.System(), m.Logger)
	}
}

// now is the verifier's time as best known.
func (m *Manager) now() time.Time {
	m.init()
	return m.Clock.Now()
}

// learn corrects the clock from a response's verifier_time, received at
// the device's local time receivedAt.
func (m *Manager) learn(vt *timestamppb.Timestamp, receivedAt time.Time) {
	if vt != nil && vt.IsValid() {
		m.Clock.Learn(vt.AsTime(), receivedAt)
	}
}

func (m *Manager) after(d time.Duration) <-chan time.Time {
	if m.After != nil {
		return m.After(d)
	}
	return time.After(d)
}

func (m *Manager) log() *slog.Logger {
	l := m.Logger
	if l == nil {
		l = slog.Default()
	}
	return l.With("component", "enroll")
}

// Identity returns the current identity, nil before enrollment.
func (m *Manager) Identity() *state.Identity {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.id
}

func (m *Manager) set(id *state.Identity) {
	m.init()
	m.mu.Lock()
	m.id = id
	m.mu.Unlock()
	select {
	case m.changed <- struct{}{}:
	default:
	}
}

// ClientCert is the TLS client certificate for mutual TLS.
func (m *Manager) ClientCert() (*tls.Certificate, error) {
	id := m.Identity()
	if id == nil {
		return nil, state.ErrNotEnrolled
	}
	return conn.Certificate(id.Cert, id.Chain, m.Signer), nil
}

// Ensure returns a usable identity: the stored one, or a new enrollment when
// there is none or the stored certificate has expired.
func (m *Manager) Ensure(ctx context.Context) (*state.Identity, error) {
	m.init()
	if id := m.Identity(); id != nil && m.now().Before(id.Cert.NotAfter) {
		return id, nil
	}
	id, err := m.Dir.LoadIdentity()
	switch {
	case errors.Is(err, state.ErrNotEnrolled):
		if m.EnrollSecret == "" {
			return nil, ErrNoSecret
		}
		return m.Enroll(ctx)
	case err != nil:
		return nil, err
	}
	if !m.now().Before(id.Cert.NotAfter) && m.Clock.Local().Before(id.Cert.NotAfter) && m.Clock.Forget() {
		// Expired only in the verifier's time as learnt: a verifier that
		// taught a time far ahead (only a broken or compromised one would)
		// must not leave a Mac without a secret unable to connect again
		// and hear the right time. The verifier judges the certificate.
		m.log().Warn("device certificate expired only in the verifier's time as learnt; using this Mac's clock until the verifier is heard again",
			"device_id", id.DeviceID, "not_after", id.Cert.NotAfter)
	}
	if !m.now().Before(id.Cert.NotAfter) {
		m.log().Warn("device certificate expired", "device_id", id.DeviceID, "not_after", id.Cert.NotAfter)
		if m.EnrollSecret == "" {
			return nil, fmt.Errorf("device certificate expired on %s: %w", id.Cert.NotAfter.Format(time.RFC3339), ErrNoSecret)
		}
		return m.Enroll(ctx)
	}
	m.set(id)
	return id, nil
}

// Forget discards the stored certificate after the verifier said it does
// not know it; the next Ensure enrolls again (with the same key). Without an
// enroll secret the certificate is kept: there would be nothing better.
func (m *Manager) Forget(reason string) bool {
	if m.EnrollSecret == "" {
		m.log().Error("verifier does not recognize this device; enroll again with an enroll secret", "reason", reason)
		return false
	}
	m.log().Warn("verifier does not recognize this device, enrolling again", "reason", reason)
	if err := m.Dir.DiscardCertificate(); err != nil {
		m.log().Error("discarding certificate failed", "err", err)
	}
	m.mu.Lock()
	m.id = nil
	m.mu.Unlock()
	return true
}

// SecretID is the id an enroll secret carries, by which the verifier's
// `secret list` names it: the verifier's secrets read "<id>.<value>",
// the id 16 lower-case hex characters that reveal nothing of the value.
// It is "" for a secret of another form.
func SecretID(secret string) string {
	id, _, ok := strings.Cut(strings.TrimSpace(secret), ".")
	if !ok || len(id) != 16 || strings.Trim(id, "0123456789abcdef") != "" {
		return ""
	}
	return id
}

// Enroll performs the enrollment ceremony and stores the result.
func (m *Manager) Enroll(ctx context.Context) (*state.Identity, error) {
	m.init()
	log := m.log()
	if m.EnrollSecret == "" {
		return nil, ErrNoSecret
	}
	// 1. Facts, read through osquery.
	facts, err := m.Facts(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading device facts: %w", err)
	}
	facts = proto.CloneOf(facts)
	facts.AgentVersion = version.Version

	// 2. CSR for the device key.
	csr, err := m.csr(facts.GetHardwareUuid())
	if err != nil {
		return nil, err
	}

	req := &agentv1.EnrollRequest{
		EnrollSecret: m.EnrollSecret,
		Csr:          csr,
		Facts:        facts,
		AgentTime:    timestamppb.New(m.Clock.Local()),
	}
	// A rotation: the key the verifier knows vouches for the new one, so
	// no approval is needed.
	if m.Previous != nil {
		if req.KeyProof, err = keyrotation.Sign(m.Previous, csr); err != nil {
			return nil, err
		}
	}

	// 3. Enroll over TLS that verifies the verifier.
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	cc, err := conn.Dial(m.Verifier, m.Roots, nil, m.now)
	if err != nil {
		return nil, err
	}
	defer cc.Close()
	resp, err := agentv1.NewAgentServiceClient(cc).Enroll(ctx, req)
	switch retry.Of(retry.Enroll, err) {
	case retry.Pending:
		m.pending(retry.PendingOf(err))
	case retry.Stop:
		// The verifier's answer for good (the security team rejected the
		// request, the secret is wrong): no request waits for approval any
		// more, whatever it said before. The refusal is recorded for status
		// by the stream, which decides when to ask again.
		if err := m.Dir.ClearPending(); err != nil {
			log.Warn("clearing the wait for approval failed", "err", err)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("enrolling with %s: %w", m.Verifier, err)
	}
	m.learn(resp.GetVerifierTime(), m.Clock.Local())

	// 4. Check what came back before trusting it, in the verifier's time:
	// the certificate names the device id the answer does (the id every
	// report carries, and the verifier checks against the certificate).
	cert, chain, certID, err := m.checkIssued(resp.GetCertificate(), resp.GetCaChain())
	if err != nil {
		return nil, fmt.Errorf("%w: enrollment response: %w", ErrUnusableResponse, err)
	}
	if resp.GetDeviceId() != certID {
		return nil, fmt.Errorf("%w: enrollment response names device %q, its certificate %q", ErrUnusableResponse, logsample.Clip(resp.GetDeviceId()), certID)
	}

	// 5. Store.
	id := &state.Identity{DeviceID: resp.GetDeviceId(), Verifier: m.Verifier, EnrolledAt: m.now().UTC(), EnrollSecretID: SecretID(m.EnrollSecret), Cert: cert, Chain: chain}
	if err := m.Dir.SaveIdentity(id); err != nil {
		return nil, err
	}
	m.set(id)
	if err := m.Dir.ClearPending(); err != nil {
		log.Warn("clearing the wait for approval failed", "err", err)
	}
	if m.Previous != nil {
		// The verifier took the new key: the old one is of no more use.
		m.Previous = nil
		if m.OnRotated != nil {
			if err := m.OnRotated(ctx); err != nil {
				log.Warn("deleting the previous device key failed", "err", err)
			}
		}
		log.Info("device key rotated", "device_id", id.DeviceID)
	}
	log.Info("enrolled", "device_id", id.DeviceID, "not_after", cert.NotAfter, "verifier", m.Verifier)
	return id, nil
}

// pending records and says that the verifier holds this enrollment for
// the security team's approval: loudly the first time for a request, then
// quietly at each poll.
func (m *Manager) pending(p *agentv1.EnrollmentPending) {
	prev, _ := m.Dir.LoadPending()
	// The verifier's words, kept and shown as they are up to a bound: a
	// verifier chooses their length.
	rec := state.Pending{RequestID: logsample.Clip(p.GetRequestId()), Reason: logsample.Clip(p.GetReason()), LastAsked: m.Clock.Local().UTC(), Verifier: m.Verifier}
	if t := p.GetRequestedAt(); t.IsValid() {
		rec.RequestedAt = t.AsTime().UTC()
	}
	if err := m.Dir.SavePending(rec); err != nil {
		m.log().Warn("recording the wait for approval failed", "err", err)
	}
	// The verifier answered, and a refusal recorded before (a revoked
	// Mac's, whose new key now waits) no longer says where this Mac is.
	if err := m.Dir.ClearRefusal(); err != nil {
		m.log().Warn("clearing the recorded refusal failed", "err", err)
	}
	log := m.log().With("request_id", rec.RequestID, "reason", rec.Reason)
	if prev == nil || prev.RequestID != rec.RequestID {
		log.Warn("enrollment waits for approval by the security team; this Mac reports once it is approved (clearance-verifier devices pending lists the request)")
		return
	}
	log.Info("enrollment still waits for approval")
}

// Renew gets a fresh certificate for the same key over mutual TLS.
func (m *Manager) Renew(ctx context.Context) (*state.Identity, error) {
	m.init()
	cur := m.Identity()
	if cur == nil {
		return nil, state.ErrNotEnrolled
	}
	csr, err := m.csr(cur.DeviceID)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	cc, err := conn.Dial(m.Verifier, m.Roots, m.ClientCert, m.now)
	if err != nil {
		return nil, err
	}
	defer cc.Close()
	resp, err := agentv1.NewAgentServiceClient(cc).Renew(ctx, &agentv1.RenewRequest{Csr: csr})
	if err != nil {
		return nil, fmt.Errorf("renewing with %s: %w", m.Verifier, err)
	}
	// The time known before this answer, from the stream's Session: the
	// renewed certificate must be valid in it too, not only in the time
	// the same answer teaches. Otherwise an answer could bring a
	// certificate valid only in a time of its choosing, and replace one
	// that works with one the verifier refuses once it is honest again.
	before := m.now()
	m.learn(resp.GetVerifierTime(), m.Clock.Local())
	cert, chain, certID, err := m.checkIssued(resp.GetCertificate(), resp.GetCaChain())
	if err != nil {
		return nil, fmt.Errorf("%w: renewal response: %w", ErrUnusableResponse, err)
	}
	if certID != cur.DeviceID {
		return nil, fmt.Errorf("%w: renewal response: certificate names device %q, not this device's %q", ErrUnusableResponse, certID, cur.DeviceID)
	}
	if before.Before(cert.NotBefore) || !before.Before(cert.NotAfter) {
		return nil, fmt.Errorf("%w: renewal response: certificate valid from %s to %s, not at %s, the verifier's time before this answer",
			ErrUnusableResponse, cert.NotBefore.UTC().Format(time.RFC3339), cert.NotAfter.UTC().Format(time.RFC3339), before.UTC().Format(time.RFC3339))
	}
	id := &state.Identity{DeviceID: cur.DeviceID, Verifier: cur.Verifier, EnrolledAt: cur.EnrolledAt, EnrollSecretID: cur.EnrollSecretID, Cert: cert, Chain: chain}
	if err := m.Dir.SaveIdentity(id); err != nil {
		return nil, err
	}
	m.set(id)
	m.log().Info("certificate renewed", "device_id", id.DeviceID, "not_after", cert.NotAfter)
	return id, nil
}

func (m *Manager) csr(cn string) ([]byte, error) {
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject:            pkix.Name{CommonName: cn},
		SignatureAlgorithm: x509.ECDSAWithSHA256,
	}, m.Signer)
	if err != nil {
		return nil, fmt.Errorf("creating certificate request: %w", err)
	}
	return der, nil
}

// maxChain bounds the ca_chain an answer may carry; the verifier sends
// its device CA and root. maxCertSize bounds each certificate in it, and
// the issued one: the verifier's are under 2 KiB, and the agent presents
// them in every handshake, which the verifier's TLS refuses past 256 KiB.
const (
	maxChain    = 8
	maxCertSize = 16 << 10
)

// checkIssued parses an issued certificate and checks it is for our key,
// names a device and chains to the configured CA, so a confused verifier
// cannot leave the agent with an identity it cannot use. The chain it
// returns, to store and present, is the path the certificate was verified
// by (nearest first, ending with the root), not whatever the answer
// carried: a chain padded with more certificates made every handshake
// larger than the verifier's TLS accepts.
func (m *Manager) checkIssued(der []byte, chainDER [][]byte) (*x509.Certificate, []*x509.Certificate, string, error) {
	if len(der) > maxCertSize {
		return nil, nil, "", fmt.Errorf("certificate of %d bytes, more than %d", len(der), maxCertSize)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, "", fmt.Errorf("parsing certificate: %w", err)
	}
	pub, err := x509.MarshalPKIXPublicKey(m.Signer.Public())
	if err != nil {
		return nil, nil, "", err
	}
	if !bytes.Equal(pub, cert.RawSubjectPublicKeyInfo) {
		return nil, nil, "", errors.New("certificate is not for this device's key")
	}
	id, err := deviceid.FromCert(cert)
	if err != nil {
		return nil, nil, "", err
	}
	if len(chainDER) > maxChain {
		return nil, nil, "", fmt.Errorf("ca_chain of %d certificates, more than %d", len(chainDER), maxChain)
	}
	inter := x509.NewCertPool()
	for i, d := range chainDER {
		if len(d) > maxCertSize {
			return nil, nil, "", fmt.Errorf("ca_chain[%d] of %d bytes, more than %d", i, len(d), maxCertSize)
		}
		c, err := x509.ParseCertificate(d)
		if err != nil {
			return nil, nil, "", fmt.Errorf("parsing ca_chain[%d]: %w", i, err)
		}
		inter.AddCert(c)
	}
	chains, err := cert.Verify(x509.VerifyOptions{
		Roots:         m.Roots,
		Intermediates: inter,
		CurrentTime:   m.now(),
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	if err != nil {
		return nil, nil, "", fmt.Errorf("certificate does not chain to the configured verifier CA: %w", err)
	}
	return cert, slices.Clone(chains[0][1:]), id, nil
}
