package signin

import (
	"context"
	"crypto/sha1" // osquery names keychain certificates by SHA-1; not a security use
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/clearance/clearance/verifier/ca"
	"github.com/clearance/clearance/verifier/decision"
	"github.com/clearance/clearance/verifier/httpsconn"
	"github.com/clearance/clearance/verifier/reason"
	"github.com/clearance/clearance/verifier/storage"
)

// MaxCertHeader bounds the proxy's certificate header (a URL-encoded PEM
// certificate is 2-4 KiB).
const MaxCertHeader = 16 << 10

// CertVerifier checks a client certificate's chain; *ca.Authority implements it.
type CertVerifier interface {
	VerifyClientCert(leaf *x509.Certificate, now time.Time) error
}

var _ CertVerifier = (*ca.Authority)(nil)

// CertStore is what identification reads.
type CertStore interface {
	GetCert(ctx context.Context, serial string) (storage.Cert, error)
	GetBrowserCert(ctx context.Context, serial string) (storage.BrowserCert, error)
	GetDevice(ctx context.Context, id string) (storage.Device, error)
}

// Identifier maps a sign-in's client certificate to an enrolled device.
type Identifier struct {
	CA    CertVerifier
	Store CertStore
	// Header, when set, is the header in which a TLS-terminating proxy
	// passes the browser certificate; it is believed only from Trusted.
	Header  string
	Trusted []*net.IPNet
	// RequireVouched: a browser certificate counts only if the Mac's agent
	// reported it in a user keychain (checked by the decision, against the
	// report it decides from).
	RequireVouched bool
}

// Identity is who the certificate says the device is.
type Identity struct {
	DeviceID   string
	CertSerial string // lowercase hex
	// Via is "tls" (the handshake) or "proxy" (the trusted header).
	Via string
	// Browser is set for a browser certificate (nil for the agent's own).
	Browser *decision.BrowserCert
	// Device is the device's record as read to identify it.
	Device *storage.Device
}

// IdentifyError says why no device was identified.
type IdentifyError struct {
	Reason     reason.Code
	Detail     string
	CertSerial string // when a certificate was presented
	// DeviceID is the device the certificate is on record for, when that
	// is known (a revoked or replaced certificate), so the decision log
	// shows the refusal under that device.
	DeviceID string
}

func (e *IdentifyError) Error() string { return string(e.Reason) + ": " + e.Detail }

// Identify returns the enrolled device behind r's client certificate: the
// TLS handshake's, or — only when r comes from a trusted proxy — the
// configured header's. A header from anyone else is refused, never ignored:
// it means someone is trying to speak for a certificate they do not hold.
func (i *Identifier) Identify(ctx context.Context, r *http.Request, now time.Time) (Identity, *IdentifyError) {
	leaf, via, ierr := i.certificate(r)
	if ierr != nil {
		return Identity{}, ierr
	}
	serial := ca.SerialHex(leaf)
	fail := func(code reason.Code, format string, args ...any) (Identity, *IdentifyError) {
		return Identity{}, &IdentifyError{Reason: code, Detail: fmt.Sprintf(format, args...), CertSerial: serial}
	}
	if err := i.CA.VerifyClientCert(leaf, now); err != nil {
		if errors.Is(err, ca.ErrCertExpired) || errors.Is(err, ca.ErrCertNotYetValid) {
			return fail(reason.ExpiredCert, "%v", err)
		}
		return fail(reason.UntrustedCert, "%v", err)
	}
	// The chain is ours; now the record: every certificate the verifier
	// issued is stored, so one that is not is not honoured.
	if id, ok := i.current(ctx, leaf, serial, via); ok {
		return id, nil
	}
	rec, err := i.Store.GetCert(ctx, serial)
	switch {
	case errors.Is(err, storage.ErrNotFound):
		return fail(reason.UnknownCert, "certificate %s is not in the verifier's records", serial)
	case err != nil:
		return fail(reason.Storage, "reading certificate record: %v", err)
	}
	if ca.IsBrowserCert(leaf) {
		uuid, err := ca.HardwareUUIDFromCert(leaf)
		if err != nil {
			return fail(reason.UnknownCert, "%v", err)
		}
		bc, err := i.Store.GetBrowserCert(ctx, serial)
		switch {
		case errors.Is(err, storage.ErrNotFound):
			return fail(reason.UnknownCert, "certificate %s is not a recorded browser certificate", serial)
		case err != nil:
			return fail(reason.Storage, "reading certificate record: %v", err)
		case bc.RevokedAt(now):
			return Identity{}, &IdentifyError{Reason: reason.RevokedCert, CertSerial: serial, DeviceID: bc.DeviceID, Detail: fmt.Sprintf("certificate %s stopped counting at %s (%s)", serial, bc.RevokeAfter.UTC().Format(time.RFC3339), bc.RevokedReason)}
		}
		dev, err := i.Store.GetDevice(ctx, rec.DeviceID)
		switch {
		case errors.Is(err, storage.ErrNotFound):
			return fail(reason.UnknownCert, "certificate %s names no enrolled device", serial)
		case err != nil:
			return fail(reason.Storage, "reading device: %v", err)
		case !strings.EqualFold(dev.HardwareUUID, uuid):
			return fail(reason.UnknownCert, "certificate %s names hardware UUID %s, recorded for device %s with another", serial, uuid, dev.ID)
		}
		sum := sha1.Sum(leaf.Raw)
		return Identity{DeviceID: dev.ID, CertSerial: serial, Via: via, Device: &dev, Browser: &decision.BrowserCert{
			Serial: serial, SHA1: hex.EncodeToString(sum[:]), RequireVouched: i.RequireVouched,
		}}, nil
	}
	id, err := ca.DeviceIDFromCert(leaf)
	if err != nil {
		return fail(reason.UnknownCert, "%v", err)
	}
	if rec.DeviceID != id {
		return fail(reason.UnknownCert, "certificate %s is recorded for another device", serial)
	}
	dev, err := i.Store.GetDevice(ctx, id)
	switch {
	case errors.Is(err, storage.ErrNotFound):
		return fail(reason.UnknownCert, "device %s is not enrolled", id)
	case err != nil:
		return fail(reason.Storage, "reading device: %v", err)
	case dev.CertSerial != serial && !dev.Revoked():
		// The device enrolled again or renewed: only its current
		// certificate speaks for it.
		return Identity{}, &IdentifyError{Reason: reason.SupersededCert, CertSerial: serial, DeviceID: id,
			Detail: fmt.Sprintf("certificate %s was replaced by %s", serial, dev.CertSerial)}
	}
	return Identity{DeviceID: id, CertSerial: serial, Via: via, Device: &dev}, nil
}

// current identifies the common case with one read: the agent's own
// certificate, whose serial is its device's current one. A device's
// current serial is set only in the transaction that stores that
// certificate for that device (enrollment, renewal), and a device
// certificate's record is never changed, nor deleted while it is its
// device's current one (the sweep removes only superseded ones, once
// expired), so the record the full path would read is there and names
// this device. Every other case (a browser
// certificate, a superseded or unknown one, a failed read) takes the full
// path, which says why.
func (i *Identifier) current(ctx context.Context, leaf *x509.Certificate, serial, via string) (Identity, bool) {
	if ca.IsBrowserCert(leaf) {
		return Identity{}, false
	}
	id, err := ca.DeviceIDFromCert(leaf)
	if err != nil {
		return Identity{}, false
	}
	dev, err := i.Store.GetDevice(ctx, id)
	if err != nil || dev.ID != id || dev.CertSerial == "" || dev.CertSerial != serial {
		return Identity{}, false
	}
	return Identity{DeviceID: id, CertSerial: serial, Via: via, Device: &dev}, true
}

// Presented reports whether the browser offered a certificate at all: in
// the TLS handshake, or through a trusted proxy's header.
func (i *Identifier) Presented(r *http.Request) bool {
	if i.Header != "" && i.trusted(r.RemoteAddr) {
		return len(r.Header.Values(i.Header)) > 0
	}
	st := httpsconn.State(r)
	return st != nil && len(st.PeerCertificates) > 0
}

func (i *Identifier) certificate(r *http.Request) (*x509.Certificate, string, *IdentifyError) {
	if i.Header != "" {
		if vals := r.Header.Values(i.Header); len(vals) > 0 {
			if !i.trusted(r.RemoteAddr) {
				return nil, "", &IdentifyError{Reason: reason.SpoofedCertHeader,
					Detail: fmt.Sprintf("header %s from %s, which is not a trusted proxy", i.Header, r.RemoteAddr)}
			}
			if len(vals) != 1 {
				return nil, "", &IdentifyError{Reason: reason.BadCertHeader, Detail: fmt.Sprintf("header %s appears %d times", i.Header, len(vals))}
			}
			c, err := ParseCertHeader(vals[0])
			if err != nil {
				return nil, "", &IdentifyError{Reason: reason.BadCertHeader, Detail: err.Error()}
			}
			return c, "proxy", nil
		}
		if i.trusted(r.RemoteAddr) {
			// The proxy terminated TLS and passed no certificate: the
			// browser presented none.
			return nil, "", &IdentifyError{Reason: reason.NoClientCert, Detail: "the trusted proxy passed no certificate"}
		}
	}
	st := httpsconn.State(r)
	if st == nil || len(st.PeerCertificates) == 0 {
		return nil, "", &IdentifyError{Reason: reason.NoClientCert, Detail: "the browser presented no certificate"}
	}
	return st.PeerCertificates[0], "tls", nil
}

func (i *Identifier) trusted(remoteAddr string) bool {
	host, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		host = remoteAddr
	}
	ip := net.ParseIP(host)
	if ip == nil {
		return false
	}
	for _, n := range i.Trusted {
		if n.Contains(ip) {
			return true
		}
	}
	return false
}

// ParseCertHeader parses the certificate a TLS-terminating proxy passes in a
// header: a URL-encoded PEM certificate (nginx's $ssl_client_escaped_cert,
// Envoy's and HAProxy's equivalents), or the same PEM with spaces for
// newlines. Exactly one certificate, nothing else.
func ParseCertHeader(v string) (*x509.Certificate, error) {
	if len(v) > MaxCertHeader {
		return nil, fmt.Errorf("certificate header is %d bytes, limit %d", len(v), MaxCertHeader)
	}
	if v == "" {
		return nil, errors.New("certificate header is empty")
	}
	// The header may be query-escaped, path-escaped (a '+' kept as is) or
	// not escaped at all; each reading is tried, and only one that yields
	// exactly one certificate is accepted.
	var firstErr error
	for _, unescape := range []func(string) (string, error){url.QueryUnescape, url.PathUnescape, func(s string) (string, error) { return s, nil }} {
		s, err := unescape(v)
		if err != nil {
			if firstErr == nil {
				firstErr = fmt.Errorf("certificate header is not URL-encoded: %v", err)
			}
			continue
		}
		c, err := parsePEMHeader(s)
		if err == nil {
			return c, nil
		}
		if firstErr == nil {
			firstErr = err
		}
	}
	return nil, firstErr
}

func parsePEMHeader(s string) (*x509.Certificate, error) {
	const begin, end = "-----BEGIN CERTIFICATE-----", "-----END CERTIFICATE-----"
	if b, rest, ok := strings.Cut(s, begin); ok && strings.TrimSpace(b) == "" {
		body, after, ok := strings.Cut(rest, end)
		if !ok || strings.TrimSpace(after) != "" {
			return nil, errors.New("certificate header is not one PEM certificate")
		}
		// Proxies differ: QueryUnescape turns a '+' left unescaped into ' ',
		// and some put the PEM on one line with spaces for newlines. Try
		// spaces as '+' first, then as separators; only a body that decodes
		// to a certificate is accepted, so the guess cannot change which
		// certificate is read.
		body = strings.NewReplacer("\r", "", "\n", "", "\t", "").Replace(body)
		body = strings.Trim(body, " ")
		for _, cand := range []string{strings.ReplaceAll(body, " ", "+"), strings.ReplaceAll(body, " ", "")} {
			der, err := base64.StdEncoding.DecodeString(cand)
			if err != nil {
				continue
			}
			if c, err := x509.ParseCertificate(der); err == nil {
				return c, nil
			}
		}
		return nil, errors.New("certificate header holds no readable certificate")
	}
	block, rest := pem.Decode([]byte(s))
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, errors.New("certificate header holds no PEM certificate")
	}
	if strings.TrimSpace(string(rest)) != "" {
		return nil, errors.New("certificate header holds more than one PEM block")
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("certificate header: %v", err)
	}
	return c, nil
}
