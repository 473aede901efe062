// Package state owns the agent's state directory: what is stored there, with
// which permissions, and how each file is replaced (atomically, fsync'd) so a
// crash never leaves a half-written identity or a sequence number that could
// repeat.
//
// Layout of the state dir:
//
//	key.uri                 KMS URI of the device key (mackms:… or softkms:…)
//	device.key              P-256 private key, PEM, 0600 (key-file storage only)
//	identity.json           device id, verifier address, enrollment time
//	device.pem              device certificate, PEM
//	chain.pem               issuing chain, PEM, nearest first, ending with the root
//	seq                     last posture report seq used, decimal
//	policyset.pb            last PolicySet received (serialized), for offline checks
//	osquery/                spawn mode: osqueryd's socket, database and pid file
//	last-settings.json      the last settings that ran, 0600: the enroll secret among them
//	com.clearance.agent.plist  optional local settings (see package config)
package state

import (
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/clearance/clearance/pkg/atomicfile"
	"github.com/clearance/clearance/pkg/certpem"
	"github.com/clearance/clearance/pkg/owner"

	"google.golang.org/protobuf/proto"

	agentv1 "github.com/clearance/clearance/proto/gen/clearance/agent/v1"
)

// File names inside the state dir.
const (
	KeyURIFile = "key.uri"
	KeyFile    = "device.key"
	// PreviousKeyURIFile records the key a rotation replaced, kept until
	// the verifier accepts the new key on its word (see devicekey.Rotate).
	PreviousKeyURIFile = "previous-key.uri"
	// PendingFile says that enrollment waits for the security team's
	// approval (see enroll.Pending), for `clearance-agent status`.
	PendingFile = "enroll-pending.json"
	// RefusalFile holds the verifier's last refusal that retrying soon
	// cannot fix (a revoked device, a bad secret), for `clearance-agent
	// status`; removed once the verifier accepts the device.
	RefusalFile = "refusal.json"
	ContactFile = "contact.json"
	// RunningFile records the settings the running agent uses, and the
	// last new settings it would not take, for `clearance-agent status`.
	RunningFile = "running.json"
	// LastSettingsFile holds the last settings that ran (config.Recorded),
	// which the agent runs at a start where the files' would not. It
	// holds the enroll secret: 0600, like the key file.
	LastSettingsFile = "last-settings.json"
	IdentityFile     = "identity.json"
	CertFile         = "device.pem"
	ChainFile        = "chain.pem"
	SeqFile          = "seq"
	PolicySetFile    = "policyset.pb"
	// PresenceURLFile holds the verifier's presence URL from the last
	// session, so that sign-ins work while the stream reconnects.
	PresenceURLFile = "presence-url"
	OsqueryDir      = "osquery"
)

// ErrNotEnrolled is returned by LoadIdentity when the state dir holds no
// device certificate yet.
var ErrNotEnrolled = errors.New("not enrolled")

// Dir is a state directory.
type Dir struct {
	Path string

	mu      sync.Mutex
	seq     uint64
	seqRead bool
}

// Open creates the directory (0700) if needed and returns it. An existing
// directory must be owned by the agent's user (or root) and writable by no
// one else: it says which key is the device's, holds the key file and the
// report sequence, and MkdirAll never tightens a directory that was there
// before.
func Open(path string) (*Dir, error) {
	if path == "" {
		return nil, errors.New("state dir is not set")
	}
	if err := os.MkdirAll(path, 0o700); err != nil {
		return nil, fmt.Errorf("creating state dir: %w", err)
	}
	// Used by its resolved path from here on: a link to it, or a
	// directory above it, that another user could point elsewhere or move
	// would hand them every file the agent reads and writes.
	real, err := owner.Resolve("directory of the state dir", path)
	if err != nil {
		return nil, fmt.Errorf("state dir: %w", err)
	}
	st, err := os.Stat(real)
	if err != nil {
		return nil, fmt.Errorf("state dir: %w", err)
	}
	if err := owner.Check("state dir", real, st, 0o022); err != nil {
		return nil, err
	}
	return &Dir{Path: real}, nil
}

// File returns the path of name inside the state dir.
func (d *Dir) File(name string) string { return filepath.Join(d.Path, name) }

// Identity is what enrollment produced.
type Identity struct {
	DeviceID   string    `json:"device_id"`
	Verifier   string    `json:"verifier"`
	EnrolledAt time.Time `json:"enrolled_at"`
	// EnrollSecretID names the enroll secret the device enrolled with, as
	// the verifier's `secret list` does; "" when unknown (an enrollment
	// older than the record, a secret of another form).
	EnrollSecretID string              `json:"enroll_secret_id,omitempty"`
	Cert           *x509.Certificate   `json:"-"`
	Chain          []*x509.Certificate `json:"-"`
}

// Lifetime returns the certificate's validity window.
func (id *Identity) Lifetime() (notBefore, notAfter time.Time) {
	return id.Cert.NotBefore, id.Cert.NotAfter
}

// DeviceCAKeyID is the subject key id of the CA that issued the device
// certificate: the verifier's device CA, which also issues the browser
// certificates. It comes from that CA's certificate in the chain received
// at enrollment, else from the device certificate's authority key id; nil
// when neither says.
func (id *Identity) DeviceCAKeyID() []byte {
	for _, c := range id.Chain {
		if len(c.SubjectKeyId) > 0 && id.Cert.CheckSignatureFrom(c) == nil {
			return c.SubjectKeyId
		}
	}
	return id.Cert.AuthorityKeyId
}

// RenewAt is when renewal is due: two thirds into the certificate's life,
// which leaves a third of it for retries while the device is offline.
func (id *Identity) RenewAt() time.Time {
	nb, na := id.Lifetime()
	return nb.Add(na.Sub(nb) * 2 / 3)
}

// LoadIdentity reads identity.json, device.pem and chain.pem.
func (d *Dir) LoadIdentity() (*Identity, error) {
	raw, err := os.ReadFile(d.File(IdentityFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, ErrNotEnrolled
	}
	if err != nil {
		return nil, fmt.Errorf("reading identity: %w", err)
	}
	id := new(Identity)
	if err := json.Unmarshal(raw, id); err != nil {
		return nil, fmt.Errorf("reading %s: %w", d.File(IdentityFile), err)
	}
	certs, err := readCerts(d.File(CertFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, ErrNotEnrolled
	}
	if err != nil {
		return nil, err
	}
	if len(certs) != 1 {
		return nil, fmt.Errorf("%s holds %d certificates, want 1", d.File(CertFile), len(certs))
	}
	id.Cert = certs[0]
	// An empty chain file, as an agent stored one before it kept only the
	// verified path, is no chain: the identity still loads.
	if fi, serr := os.Stat(d.File(ChainFile)); serr == nil && fi.Size() == 0 {
		id.Chain = nil
	} else if id.Chain, err = readCerts(d.File(ChainFile)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	if id.DeviceID == "" {
		return nil, fmt.Errorf("%s has no device id", d.File(IdentityFile))
	}
	return id, nil
}

// SaveIdentity stores a new or renewed identity. The certificate is written
// last: LoadIdentity treats its absence as "not enrolled", so a crash midway
// is seen as an unfinished enrollment, never as a mismatched identity.
func (d *Dir) SaveIdentity(id *Identity) error {
	raw, err := json.MarshalIndent(id, "", "  ")
	if err != nil {
		return err
	}
	if err := atomicfile.Write(d.File(IdentityFile), append(raw, '\n'), 0o600); err != nil {
		return fmt.Errorf("saving identity: %w", err)
	}
	if err := atomicfile.Write(d.File(ChainFile), encodeCerts(id.Chain), 0o644); err != nil {
		return fmt.Errorf("saving chain: %w", err)
	}
	if err := atomicfile.Write(d.File(CertFile), encodeCerts([]*x509.Certificate{id.Cert}), 0o644); err != nil {
		return fmt.Errorf("saving certificate: %w", err)
	}
	return nil
}

// DiscardCertificate moves the device certificate aside (device.pem.rejected)
// so the next start enrolls again with the same key.
func (d *Dir) DiscardCertificate() error {
	err := os.Rename(d.File(CertFile), d.File(CertFile+".rejected"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}

// LastSeq returns the last seq used (0 if none).
func (d *Dir) LastSeq() (uint64, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.loadSeqLocked()
}

func (d *Dir) loadSeqLocked() (uint64, error) {
	if d.seqRead {
		return d.seq, nil
	}
	raw, err := os.ReadFile(d.File(SeqFile))
	switch {
	case errors.Is(err, fs.ErrNotExist):
		d.seq = 0
	case err != nil:
		return 0, fmt.Errorf("reading seq: %w", err)
	default:
		n, perr := strconv.ParseUint(strings.TrimSpace(string(raw)), 10, 64)
		if perr != nil {
			// A corrupt seq file must not restart the count at 1: the
			// verifier would reject every report. Refuse and say where.
			return 0, fmt.Errorf("%s is corrupt (%q): fix or raise it by hand", d.File(SeqFile), strings.TrimSpace(string(raw)))
		}
		d.seq = n
	}
	d.seqRead = true
	return d.seq, nil
}

// NextSeq reserves the next seq: it is durably recorded before it is
// returned, so a report carrying it can be sent, and a crash after this call
// never reuses it.
func (d *Dir) NextSeq() (uint64, error) {
	return d.RaiseSeq(0)
}

// RaiseSeq reserves a seq that is greater than both the last one used and
// floor. It recovers from a verifier that already accepted higher numbers
// (state dir restored from an old backup, or wiped and re-enrolled).
func (d *Dir) RaiseSeq(floor uint64) (uint64, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	cur, err := d.loadSeqLocked()
	if err != nil {
		return 0, err
	}
	next := max(cur, floor) + 1
	if err := atomicfile.Write(d.File(SeqFile), []byte(strconv.FormatUint(next, 10)+"\n"), 0o600); err != nil {
		return 0, fmt.Errorf("saving seq: %w", err)
	}
	d.seq = next
	return next, nil
}

// SavePolicySet caches the last PolicySet for offline use.
func (d *Dir) SavePolicySet(ps *agentv1.PolicySet) error {
	raw, err := proto.MarshalOptions{Deterministic: true}.Marshal(ps)
	if err != nil {
		return err
	}
	return atomicfile.Write(d.File(PolicySetFile), raw, 0o600)
}

// LoadPolicySet returns the cached PolicySet, or nil if there is none.
func (d *Dir) LoadPolicySet() (*agentv1.PolicySet, error) {
	raw, err := os.ReadFile(d.File(PolicySetFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	ps := new(agentv1.PolicySet)
	if err := proto.Unmarshal(raw, ps); err != nil {
		return nil, fmt.Errorf("reading %s: %w", d.File(PolicySetFile), err)
	}
	return ps, nil
}

// SavePresenceURL keeps the verifier's presence URL (empty removes it).
func (d *Dir) SavePresenceURL(u string) error {
	if u == "" {
		err := os.Remove(d.File(PresenceURLFile))
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return err
	}
	return atomicfile.Write(d.File(PresenceURLFile), []byte(u+"\n"), 0o600)
}

// LoadPresenceURL returns the saved presence URL, or "" if there is none.
func (d *Dir) LoadPresenceURL() (string, error) {
	raw, err := os.ReadFile(d.File(PresenceURLFile))
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	if len(raw) > 2048 {
		return "", fmt.Errorf("reading %s: %d bytes is not a URL", d.File(PresenceURLFile), len(raw))
	}
	return strings.TrimSpace(string(raw)), nil
}

func readCerts(path string) ([]*x509.Certificate, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	certs, err := certpem.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	return certs, nil
}

func encodeCerts(certs []*x509.Certificate) []byte {
	var out []byte
	for _, c := range certs {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return out
}

// Pending is an enrollment that waits for the security team's approval, as
// the verifier last said.
type Pending struct {
	RequestID   string    `json:"request_id"`
	Reason      string    `json:"reason"`
	RequestedAt time.Time `json:"requested_at"`
	// LastAsked is when the agent last asked (its own clock).
	LastAsked time.Time `json:"last_asked"`
	Verifier  string    `json:"verifier"`
}

// SavePending records that enrollment waits for approval.
func (d *Dir) SavePending(p Pending) error { return d.saveJSON(PendingFile, p) }

// LoadPending returns the recorded wait for approval, nil when there is
// none.
func (d *Dir) LoadPending() (*Pending, error) { return loadJSON[Pending](d, PendingFile) }

// ClearPending removes the record once enrolled, or refused for good.
func (d *Dir) ClearPending() error {
	if err := os.Remove(d.File(PendingFile)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// Refusal is the verifier's last refusal that retrying soon cannot fix.
type Refusal struct {
	// Code is the gRPC status code's name ("PermissionDenied").
	Code string `json:"code"`
	// Message is the verifier's words, with what the agent was doing.
	Message string `json:"message"`
	// At and RetryAt are this Mac's clock's: when it was refused, and
	// when the agent asks again.
	At       time.Time `json:"at"`
	RetryAt  time.Time `json:"retry_at"`
	Verifier string    `json:"verifier"`
}

// Contact is what the running agent last knew of its verifier, for
// `clearance-agent status` to say whether the Mac is reporting: when the
// stream last connected, when a report was last acknowledged (stored by
// the verifier), and the last time it could not connect, and why. Times
// are this Mac's clock's.
type Contact struct {
	Verifier    string    `json:"verifier"`
	ConnectedAt time.Time `json:"connected_at,omitzero"`
	AckedAt     time.Time `json:"acked_at,omitzero"`
	AckedSeq    uint64    `json:"acked_seq,omitempty"`
	// FailedAt and Failure: the last attempt that did not connect, or a
	// session that ended, with the verifier's (or the network's) words.
	FailedAt time.Time `json:"failed_at,omitzero"`
	Failure  string    `json:"failure,omitempty"`
}

// Running is what the running agent uses: its process, its version, when
// it started with the settings it has, those settings' fingerprints (see
// config.Fingerprints: never their values), and the last new settings it
// would not take. Times are this Mac's clock's.
type Running struct {
	PID       int       `json:"pid"`
	Version   string    `json:"version"`
	StartedAt time.Time `json:"started_at"`
	// Settings are the fingerprints of the settings in use, by plist key.
	Settings map[string]string `json:"settings"`
	// Pinned are the settings the agent's command line or environment
	// gives, by plist key, with where from ("flag --presence-listen"):
	// the files do not change them.
	Pinned map[string]string `json:"pinned,omitempty"`
	// LastRanAt, when set, says the agent started with the last settings
	// that ran, recorded then (LastSettingsFile), the files' not running.
	LastRanAt time.Time `json:"last_ran_at,omitzero"`
	// RejectedAt, Rejected and RejectedKeys: the last settings the files
	// gave that would not run, why, and which keys they changed; zero once
	// the agent runs with what the files say.
	RejectedAt   time.Time `json:"rejected_at,omitzero"`
	Rejected     string    `json:"rejected,omitempty"`
	RejectedKeys []string  `json:"rejected_keys,omitempty"`
	// RejectedBrief is why as the agent's reports tell the verifier: the
	// refused setting's key, never a value.
	RejectedBrief string `json:"rejected_brief,omitempty"`
}

// SaveRunning records r.
func (d *Dir) SaveRunning(r Running) error { return d.saveJSON(RunningFile, r) }

// LoadRunning returns the recorded running agent, nil when there is none.
func (d *Dir) LoadRunning() (*Running, error) { return loadJSON[Running](d, RunningFile) }

// maxLastSettings bounds the last settings read back: a CA bundle and a
// few paths are far smaller.
const maxLastSettings = 1 << 20

// SaveLastSettings records the last settings that ran (raw, JSON), 0600,
// atomically: a crash leaves the previous record or this one.
func (d *Dir) SaveLastSettings(raw []byte) error {
	if err := atomicfile.Write(d.File(LastSettingsFile), raw, 0o600); err != nil {
		return fmt.Errorf("recording the settings that ran: %w", err)
	}
	return nil
}

// LoadLastSettings returns the recorded last settings that ran, nil when
// there are none. Like the key file, the record must be a regular file of
// the agent's own that no one else may read or write: it holds the enroll
// secret, and says which verifier and CA to trust.
func (d *Dir) LoadLastSettings() ([]byte, error) {
	path := d.File(LastSettingsFile)
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("the last settings that ran: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("the last settings that ran: %w", err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("the last settings that ran, %s, are not a regular file", path)
	}
	if err := owner.Check("record of the last settings that ran", path, st, 0o077); err != nil {
		return nil, err
	}
	raw, err := io.ReadAll(io.LimitReader(f, maxLastSettings+1))
	if err != nil {
		return nil, fmt.Errorf("the last settings that ran: %w", err)
	}
	if len(raw) > maxLastSettings {
		return nil, fmt.Errorf("the last settings that ran, %s, are larger than %d bytes", path, maxLastSettings)
	}
	return raw, nil
}

// RemoveLastSettings removes the record of the last settings that ran, as
// an uninstall does: it holds the enroll secret. None is no error.
func (d *Dir) RemoveLastSettings() error {
	if err := os.Remove(d.File(LastSettingsFile)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// SaveContact records c.
func (d *Dir) SaveContact(c Contact) error { return d.saveJSON(ContactFile, c) }

// LoadContact returns the recorded contact, nil when there is none.
func (d *Dir) LoadContact() (*Contact, error) { return loadJSON[Contact](d, ContactFile) }

// SaveRefusal records the verifier's refusal.
func (d *Dir) SaveRefusal(r Refusal) error { return d.saveJSON(RefusalFile, r) }

// LoadRefusal returns the recorded refusal, nil when there is none.
func (d *Dir) LoadRefusal() (*Refusal, error) { return loadJSON[Refusal](d, RefusalFile) }

// ClearRefusal removes the record; none is no error.
func (d *Dir) ClearRefusal() error {
	if err := os.Remove(d.File(RefusalFile)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// saveJSON writes v as JSON to the state file name, 0600, atomically.
func (d *Dir) saveJSON(name string, v any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return atomicfile.Write(d.File(name), append(raw, '\n'), 0o600)
}

// loadJSON reads the state file name as a T, nil when there is none.
func loadJSON[T any](d *Dir, name string) (*T, error) {
	raw, err := os.ReadFile(d.File(name))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var v T
	if err := json.Unmarshal(raw, &v); err != nil {
		return nil, fmt.Errorf("%s: %w", d.File(name), err)
	}
	return &v, nil
}
