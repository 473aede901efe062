package ca

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/clearance/clearance/pkg/atomicfile"
	"github.com/clearance/clearance/pkg/certpem"
	"github.com/clearance/clearance/verifier/secretfile"
)

// Errors LoadOrCreate returns for files it will not use; match with errors.Is.
var (
	// ErrKeyFileMode: a key file is readable or writable by group or others.
	ErrKeyFileMode = errors.New("key file permissions too open")
	// ErrKeyMismatch: a certificate's public key is not its key file's.
	ErrKeyMismatch = errors.New("certificate does not match its key")
)

const (
	keyFileMode  fs.FileMode = 0o600
	certFileMode fs.FileMode = 0o644
)

type dir string

func (d dir) path(name string) string { return filepath.Join(string(d), name) }

// pair is a certificate file and its key file.
type pair struct {
	dir      dir
	certName string
	keyName  string
}

func (d dir) pair(certName, keyName string) pair {
	return pair{dir: d, certName: certName, keyName: keyName}
}

type pairState int

const (
	pairAbsent pairState = iota
	pairPartial
	pairComplete
)

func (p pair) state() (pairState, error) {
	var n int
	for _, name := range []string{p.certName, p.keyName} {
		_, err := os.Lstat(p.dir.path(name))
		switch {
		case err == nil:
			n++
		case !errors.Is(err, fs.ErrNotExist):
			return 0, fmt.Errorf("checking %s: %w", name, err)
		}
	}
	return pairState(n), nil
}

func (p pair) exists(name string) bool {
	_, err := os.Lstat(p.dir.path(name))
	return err == nil
}

// load reads the pair: the first certificate in the file, any that follow
// it, and the key, which must match the first certificate.
func (p pair) load() (*x509.Certificate, []*x509.Certificate, crypto.Signer, error) {
	key, err := readKey(p.dir.path(p.keyName))
	if err != nil {
		return nil, nil, nil, fmt.Errorf("loading %s: %w", p.keyName, err)
	}
	certs, err := readCerts(p.dir.path(p.certName))
	if err != nil {
		return nil, nil, nil, fmt.Errorf("loading %s: %w", p.certName, err)
	}
	pub, ok := certs[0].PublicKey.(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(key.Public()) {
		return nil, nil, nil, fmt.Errorf("%w: %s is not the certificate for %s", ErrKeyMismatch, p.certName, p.keyName)
	}
	return certs[0], certs[1:], key, nil
}

// write writes the certificate (followed by chain) and, unless key is nil,
// the key. The key goes first: see createCAs.
func (p pair) write(leaf []byte, chain [][]byte, key crypto.Signer) error {
	if key != nil {
		der, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			return fmt.Errorf("encoding %s: %w", p.keyName, err)
		}
		data := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
		if err := atomicfile.Write(p.dir.path(p.keyName), data, keyFileMode); err != nil {
			return err
		}
	}
	data := pemCert(leaf)
	for _, der := range chain {
		data = append(data, pemCert(der)...)
	}
	return atomicfile.Write(p.dir.path(p.certName), data, certFileMode)
}

func readKey(path string) (crypto.Signer, error) {
	// Not through a link, ours, and 0600 (secretfile says why).
	data, err := secretfile.Read(path)
	if errors.Is(err, secretfile.ErrMode) {
		return nil, fmt.Errorf("%w: %w", ErrKeyFileMode, err)
	}
	if err != nil {
		return nil, err
	}
	block, rest := pem.Decode(data)
	if block == nil {
		return nil, errors.New("no PEM block")
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return nil, errors.New("data after the key's PEM block")
	}
	var key any
	switch block.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("PEM block %q is not a private key", block.Type)
	}
	if err != nil {
		return nil, err
	}
	switch k := key.(type) {
	case *ecdsa.PrivateKey, *rsa.PrivateKey, ed25519.PrivateKey:
		return k.(crypto.Signer), nil
	}
	return nil, fmt.Errorf("unsupported key type %T", key)
}

func readCerts(path string) ([]*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return certpem.Parse(data)
}
