// Package devicekey owns the device's signing key: an ECDSA P-256 key in the
// Secure Enclave on macOS (through go.step.sm/crypto/kms mackms), or a 0600
// key file in the state dir everywhere else and whenever the Secure Enclave
// cannot be used. The key never leaves this package except as a
// crypto.Signer; its KMS URI is recorded in the state dir so the same key is
// found again on every start.
package devicekey

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/clearance/clearance/pkg/atomicfile"
	"github.com/clearance/clearance/pkg/owner"

	"go.step.sm/crypto/keyutil"
	"go.step.sm/crypto/kms"
	"go.step.sm/crypto/kms/apiv1"
	"go.step.sm/crypto/pemutil"

	"github.com/clearance/clearance/agent/state"
)

// Label names the Secure Enclave key in the keychain.
const Label = "com.clearance.agent.device"

// Storage says where the key lives.
type Storage string

// Storage kinds.
const (
	SecureEnclave Storage = "secure-enclave"
	KeyFile       Storage = "key-file"
)

// Key is the device key.
type Key struct {
	crypto.Signer
	// URI is the key's KMS URI (mackms:… or softkms:…).
	URI     string
	Storage Storage
	// Fallback, when set, says why the Secure Enclave is not used.
	Fallback string
}

// Options tune Open.
type Options struct {
	// PreferSecureEnclave tries the Secure Enclave first (default on macOS
	// builds with cgo; see SecureEnclaveSupport).
	PreferSecureEnclave bool
	Logger              *slog.Logger
}

// SecureEnclaveSupport returns nil when this build can create Secure Enclave
// keys, else why not.
func SecureEnclaveSupport() error { return secureEnclaveSupport() }

// Open loads the device key recorded in dir, or creates one. Creating tries
// the Secure Enclave when preferred and supported, and falls back to a key
// file, logging why.
func Open(ctx context.Context, dir *state.Dir, opts Options) (*Key, error) {
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	log = log.With("component", "devicekey")
	raw, err := readRecord(dir.File(state.KeyURIFile))
	switch {
	case err == nil:
		return load(ctx, dir, strings.TrimSpace(string(raw)))
	case !errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("reading key uri: %w", err)
	}

	// No key recorded. A Secure Enclave key outlives the state dir (it is
	// in the keychain, by label): a state dir wiped by hand or by a
	// reinstall finds it again, so the verifier still knows this Mac by
	// its key and no approval is needed.
	if opts.PreferSecureEnclave && secureEnclaveSupport() == nil {
		k, err := recoverSecureEnclave(ctx, log)
		switch {
		case err != nil:
			log.Warn("looking for an earlier Secure Enclave key failed; creating a new one", "err", err)
		case k != nil:
			if err := atomicfile.Write(dir.File(state.KeyURIFile), []byte(k.URI+"\n"), 0o600); err != nil {
				return nil, fmt.Errorf("recording key uri: %w", err)
			}
			log.Info("device key found in the keychain", "storage", k.Storage)
			return k, nil
		}
	}

	// No key yet: create one.
	return create(ctx, dir, opts, log)
}

// create makes a new device key and records it in dir.
func create(ctx context.Context, dir *state.Dir, opts Options, log *slog.Logger) (*Key, error) {
	var fallback string
	if opts.PreferSecureEnclave {
		serr := secureEnclaveSupport()
		if serr == nil {
			k, err := createSecureEnclave(ctx)
			if err == nil {
				if err := atomicfile.Write(dir.File(state.KeyURIFile), []byte(k.URI+"\n"), 0o600); err != nil {
					return nil, fmt.Errorf("recording key uri: %w", err)
				}
				log.Info("device key created", "storage", k.Storage)
				return k, nil
			}
			serr = err
		}
		fallback = serr.Error()
		log.Warn("secure enclave unavailable, using a key file", "reason", fallback)
	}
	k, err := createFile(dir)
	if err != nil {
		return nil, err
	}
	k.Fallback = fallback
	log.Info("device key created", "storage", k.Storage)
	return k, nil
}

// LoadRecorded loads the key recorded in dir without creating one
// (fs.ErrNotExist when none is recorded), for `clearance-agent status`.
func LoadRecorded(ctx context.Context, dir *state.Dir) (*Key, error) {
	raw, err := readRecord(dir.File(state.KeyURIFile))
	if err != nil {
		return nil, err
	}
	return load(ctx, dir, strings.TrimSpace(string(raw)))
}

// Describe reports the recorded key's storage without loading it, for
// `clearance-agent status`.
func Describe(dir *state.Dir) (Storage, string, error) {
	raw, err := readRecord(dir.File(state.KeyURIFile))
	if err != nil {
		return "", "", err
	}
	uri := strings.TrimSpace(string(raw))
	if strings.HasPrefix(uri, "mackms:") {
		return SecureEnclave, uri, nil
	}
	return KeyFile, uri, nil
}

func load(ctx context.Context, dir *state.Dir, uri string) (*Key, error) {
	typ, err := apiv1.TypeOf(uri)
	if err != nil {
		return nil, fmt.Errorf("device key uri %q: %w", uri, err)
	}
	switch typ {
	case apiv1.MacKMS:
		if err := secureEnclaveSupport(); err != nil {
			return nil, fmt.Errorf("the device key is in the Secure Enclave (%s), but %w", uri, err)
		}
		return openKMS(ctx, apiv1.MacKMS, uri, SecureEnclave)
	case apiv1.SoftKMS:
		path := strings.TrimPrefix(uri, "softkms:path=")
		if err := checkKeyFile(path); err != nil {
			return nil, err
		}
		return openKMS(ctx, apiv1.SoftKMS, uri, KeyFile)
	default:
		return nil, fmt.Errorf("device key uri %q: unsupported kms %q", uri, typ)
	}
}

func openKMS(ctx context.Context, typ apiv1.Type, uri string, storage Storage) (*Key, error) {
	km, err := kms.New(ctx, apiv1.Options{Type: typ})
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", typ, err)
	}
	defer km.Close()
	signer, err := km.CreateSigner(&apiv1.CreateSignerRequest{SigningKey: uri})
	if err != nil {
		return nil, fmt.Errorf("loading device key: %w", err)
	}
	if err := checkPublic(signer.Public()); err != nil {
		return nil, err
	}
	return &Key{Signer: signer, URI: uri, Storage: storage}, nil
}

// recoverSecureEnclave returns the one Secure Enclave key labelled Label,
// nil if there is none. Several (a rotation cut short) are ambiguous: nil,
// and a new key waits for approval rather than guessing.
func recoverSecureEnclave(ctx context.Context, log *slog.Logger) (*Key, error) {
	km, err := kms.New(ctx, apiv1.Options{Type: apiv1.MacKMS})
	if err != nil {
		return nil, fmt.Errorf("opening mackms: %w", err)
	}
	defer km.Close()
	search, ok := km.(apiv1.SearchableKeyManager)
	if !ok {
		return nil, errors.New("mackms cannot search keys")
	}
	resp, err := search.SearchKeys(&apiv1.SearchKeysRequest{Query: "mackms:label=" + Label + ";se=true"})
	if err != nil {
		return nil, err
	}
	switch n := len(resp.Results); {
	case n == 0:
		return nil, nil
	case n > 1:
		log.Warn("several Secure Enclave keys carry the device key's label; using none", "keys", n)
		return nil, nil
	}
	r := resp.Results[0]
	signer, err := km.CreateSigner(&r.CreateSignerRequest)
	if err != nil {
		return nil, fmt.Errorf("opening Secure Enclave key: %w", err)
	}
	if err := checkPublic(signer.Public()); err != nil {
		return nil, err
	}
	return &Key{Signer: signer, URI: r.Name, Storage: SecureEnclave}, nil
}

func createSecureEnclave(ctx context.Context) (*Key, error) {
	km, err := kms.New(ctx, apiv1.Options{Type: apiv1.MacKMS})
	if err != nil {
		return nil, fmt.Errorf("opening mackms: %w", err)
	}
	defer km.Close()
	resp, err := km.CreateKey(&apiv1.CreateKeyRequest{
		Name:               "mackms:label=" + Label + ";se=true",
		SignatureAlgorithm: apiv1.ECDSAWithSHA256,
	})
	if err != nil {
		return nil, fmt.Errorf("creating Secure Enclave key: %w", err)
	}
	signer, err := km.CreateSigner(&resp.CreateSignerRequest)
	if err != nil {
		return nil, fmt.Errorf("opening Secure Enclave key: %w", err)
	}
	// resp.Name carries the key's hash, so later lookups find exactly this
	// key even if another with the same label exists.
	return &Key{Signer: signer, URI: resp.Name, Storage: SecureEnclave}, nil
}

func createFile(dir *state.Dir) (*Key, error) {
	priv, err := keyutil.GenerateKey("EC", "P-256", 0)
	if err != nil {
		return nil, fmt.Errorf("generating device key: %w", err)
	}
	block, err := pemutil.Serialize(priv)
	if err != nil {
		return nil, fmt.Errorf("encoding device key: %w", err)
	}
	// A rotation keeps the old key file until the verifier took the new
	// key: the new one gets a name of its own.
	path := dir.File(state.KeyFile)
	if _, err := os.Stat(path); err == nil {
		path = dir.File(fmt.Sprintf("device-%d.key", time.Now().UnixNano()))
	}
	if err := atomicfile.Write(path, pemEncode(block), 0o600); err != nil {
		return nil, fmt.Errorf("writing device key: %w", err)
	}
	uri := "softkms:path=" + path
	if err := atomicfile.Write(dir.File(state.KeyURIFile), []byte(uri+"\n"), 0o600); err != nil {
		return nil, fmt.Errorf("recording key uri: %w", err)
	}
	return &Key{Signer: priv.(crypto.Signer), URI: uri, Storage: KeyFile}, nil
}

// checkKeyFile refuses a key file others can read or write: a key anyone on
// the machine could copy is no device identity. It must also be the agent's
// own (its user's or root's), in a directory no one else may write: a key
// another user owns is one they know, and a directory they may write lets
// them put another file in its place.
func checkKeyFile(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("device key file: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("device key file %s is not a regular file", path)
	}
	if err := owner.Check("device key file", path, fi, 0); err != nil {
		return err
	}
	if perm := fi.Mode().Perm(); owner.Bits(fi, 0o077) != 0 {
		return fmt.Errorf("device key file %s has mode %04o; it must not be accessible to group or others (chmod 600)", path, perm)
	}
	parent := filepath.Dir(path)
	st, err := os.Stat(parent)
	if err != nil {
		return fmt.Errorf("device key file's directory: %w", err)
	}
	return owner.Check("directory of the device key file", parent, st, 0o022)
}

// maxRecordSize bounds a key record: a KMS URI is far shorter.
const maxRecordSize = 4 << 10

// readRecord reads a key record (key.uri, previous-key.uri). A record names
// the key the agent signs with, or a file it deletes, so it must be a
// regular file of the agent's own that no one else may write; a missing one
// is an error matching fs.ErrNotExist.
func readRecord(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("device key record %s is not a regular file", path)
	}
	if err := owner.Check("device key record", path, st, 0o022); err != nil {
		return nil, err
	}
	raw, err := io.ReadAll(io.LimitReader(f, maxRecordSize+1))
	if err != nil {
		return nil, err
	}
	if len(raw) > maxRecordSize {
		return nil, fmt.Errorf("device key record %s is larger than %d bytes", path, maxRecordSize)
	}
	return raw, nil
}

func checkPublic(pub crypto.PublicKey) error {
	k, ok := pub.(*ecdsa.PublicKey)
	if !ok || k.Curve != elliptic.P256() {
		return fmt.Errorf("device key is %T, want ECDSA P-256", pub)
	}
	return nil
}

// Fingerprint is a public key's SHA-256 (PKIX DER) in lowercase hex: the
// admin API shows the same for the device and for requests that wait for
// approval, so a person can compare them.
func Fingerprint(pub crypto.PublicKey) (string, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:]), nil
}

// Rotate moves the device to a new key: the current key is recorded as the
// previous one (it stays until the verifier accepted the new key, which
// the agent proves with the previous key's signature: see
// OpenPrevious and ForgetPrevious), and a new key is created and recorded.
// A rotation already under way is refused: its previous key is the one the
// verifier knows.
func Rotate(ctx context.Context, dir *state.Dir, opts Options) (*Key, error) {
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	log = log.With("component", "devicekey")
	if _, err := os.Stat(dir.File(state.PreviousKeyURIFile)); err == nil {
		return nil, errors.New("a key rotation is already under way: the agent finishes it when it next enrolls")
	}
	raw, err := readRecord(dir.File(state.KeyURIFile))
	if err != nil {
		return nil, fmt.Errorf("reading the current key's uri (no key to rotate from?): %w", err)
	}
	if err := atomicfile.Write(dir.File(state.PreviousKeyURIFile), raw, 0o600); err != nil {
		return nil, fmt.Errorf("recording the previous key: %w", err)
	}
	k, err := create(ctx, dir, opts, log)
	if err != nil {
		os.Remove(dir.File(state.PreviousKeyURIFile))
		return nil, err
	}
	return k, nil
}

// OpenPrevious loads the key a rotation replaced, nil when no rotation is
// under way.
func OpenPrevious(ctx context.Context, dir *state.Dir) (*Key, error) {
	raw, err := readRecord(dir.File(state.PreviousKeyURIFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading previous key uri: %w", err)
	}
	return load(ctx, dir, strings.TrimSpace(string(raw)))
}

// ForgetPrevious ends a rotation once the verifier took the new key: the
// previous key is deleted (its file, or its Secure Enclave item) and no
// longer recorded.
func ForgetPrevious(ctx context.Context, dir *state.Dir) error {
	// It names a file to delete: only the agent's own record may.
	raw, err := readRecord(dir.File(state.PreviousKeyURIFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	uri := strings.TrimSpace(string(raw))
	switch {
	case strings.HasPrefix(uri, "softkms:path="):
		path := strings.TrimPrefix(uri, "softkms:path=")
		cur, _ := os.ReadFile(dir.File(state.KeyURIFile))
		if strings.TrimSpace(string(cur)) != uri {
			if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("deleting previous key file: %w", err)
			}
		}
	case strings.HasPrefix(uri, "mackms:"):
		if err := deleteKMSKey(ctx, uri); err != nil {
			return err
		}
	}
	return os.Remove(dir.File(state.PreviousKeyURIFile))
}

func deleteKMSKey(ctx context.Context, uri string) error {
	km, err := kms.New(ctx, apiv1.Options{Type: apiv1.MacKMS})
	if err != nil {
		return fmt.Errorf("opening mackms: %w", err)
	}
	defer km.Close()
	del, ok := km.(apiv1.KeyDeleter)
	if !ok {
		return errors.New("mackms cannot delete keys")
	}
	if err := del.DeleteKey(&apiv1.DeleteKeyRequest{Name: uri}); err != nil {
		return fmt.Errorf("deleting previous Secure Enclave key: %w", err)
	}
	return nil
}
